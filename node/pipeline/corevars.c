/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The http core module's variables (nginx's ngx_http_core_module ones),
 * registered by its preconfiguration with sh_vars_define like every other
 * module's, with nginx's values. Worker threads evaluate them.
 */
#include "node/pipeline/corevars.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/vars.h"

/* sh_buf_append that tolerates (NULL, 0): a request that failed to parse
 * has no method or target. */
static void app(sh_buf_t *out, const char *p, size_t n)
{
    if (n > 0)
        sh_buf_append(out, p, n);
}

void sh_core_var_remote_addr(sh_request_t *r, sh_buf_t *out)
{
    char ip[INET6_ADDRSTRLEN] = "";
    const struct sockaddr_in6 *p = sh_request_peer(r);
    if (p->sin6_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)p)->sin_addr, ip, sizeof(ip));
    else
        inet_ntop(AF_INET6, &p->sin6_addr, ip, sizeof(ip));
    sh_buf_appends(out, ip);
}

/* $host: the Host without its port, lower case; else the server's first
 * name. */
static int var_host(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->h.host != NULL && r->h.host_len > 0) {
        size_t n = r->h.host_len;
        const char *colon = r->h.host[0] == '[' ? NULL : memchr(r->h.host, ':', n);
        if (colon)
            n = (size_t)(colon - r->h.host);
        char *d = sh_buf_reserve(out, n);
        for (size_t k = 0; k < n; k++)
            d[k] = (char)tolower((unsigned char)r->h.host[k]);
        out->len += n;
    } else if (r->srv && r->srv->nnames > 0) {
        sh_buf_appends(out, r->srv->names[0]);
    }
    return 1;
}

static int var_remote_addr(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    sh_core_var_remote_addr(r, out);
    return 1;
}

static int var_remote_port(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (sh_request_peer(r)->sin6_port == 0)
        return 1; /* realip's address without a port: empty, as nginx */
    sh_buf_appendf(out, "%u", ntohs(sh_request_peer(r)->sin6_port));
    return 1;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* $remote_user: the user of "Authorization: Basic base64(user:password)". */
static int var_remote_user(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    const sh_http1_header_t *h = sh_vars_request_field(r, "authorization", 13);
    if (h == NULL || h->value_len < 6 || strncasecmp(h->value, "Basic ", 6) != 0)
        return 0;
    const char *s = h->value + 6, *e = h->value + h->value_len;
    while (s < e && *s == ' ')
        s++;
    char user[512];
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (; s < e && *s != '=' && *s != ' '; s++) {
        int v = b64val((unsigned char)*s);
        if (v < 0)
            return 0;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char ch = (char)((acc >> bits) & 0xff);
            if (ch == ':') {
                sh_buf_append(out, user, n);
                return 1;
            }
            if (n == sizeof(user))
                return 0;
            user[n++] = ch;
        }
    }
    return 0; /* nginx wants the ':' */
}

static int var_binary_remote_addr(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (sh_request_peer(r)->sin6_family == AF_INET)
        sh_buf_append(out, &((const struct sockaddr_in *)sh_request_peer(r))->sin_addr, 4);
    else
        sh_buf_append(out, &sh_request_peer(r)->sin6_addr, 16);
    return 1;
}

static int var_server_name(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->srv && r->srv->nnames > 0)
        sh_buf_appends(out, r->srv->names[0]);
    return 1;
}

static int var_server_port(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    const struct sockaddr_in *a = (const struct sockaddr_in *)&r->c->addr->opt.addr;
    sh_buf_appendf(out, "%u", ntohs(a->sin_port));
    return 1;
}

static int var_server_addr(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    const char *t = r->c->addr->opt.text, *colon = strrchr(t, ':');
    size_t n = colon ? (size_t)(colon - t) : strlen(t);
    if (n >= 2 && t[0] == '[')
        sh_buf_append(out, t + 1, n - 2);
    else
        sh_buf_append(out, t, n);
    return 1;
}

static int var_scheme(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    sh_buf_appends(out, r->c->tls != NULL ? "https" : "http");
    return 1;
}

static int var_https(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->c->tls != NULL)
        sh_buf_appends(out, "on");
    return 1;
}

static const char *version_text(const sh_request_t *r)
{
    return r->h.version == 10 ? "HTTP/1.0" : r->h.version == 20 ? "HTTP/2.0" : "HTTP/1.1";
}

static int var_request(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->h.method_len == 0)
        return 1;
    app(out, r->h.method, r->h.method_len);
    sh_buf_append(out, " ", 1);
    app(out, r->h.target, r->h.target_len);
    sh_buf_appends(out, r->h.version == 10   ? " HTTP/1.0"
                        : r->h.version == 20 ? " HTTP/2.0"
                                             : " HTTP/1.1");
    return 1;
}

static int var_request_uri(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    app(out, r->h.target, r->h.target_len);
    return 1;
}

/* $uri, $document_uri */
static int var_uri(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->uri.p != NULL) { /* normalized once, at dispatch */
        app(out, r->uri.p, r->uri.len);
        return 1;
    }
    if (r->path.p == NULL || r->path.len == 0)
        return 1;
    char *d = sh_buf_reserve(out, r->path.len);
    size_t n;
    if (sh_http_normalize_uri(r->path.p, r->path.len, d, &n) != 0) {
        memcpy(d, r->path.p, r->path.len);
        n = r->path.len;
    }
    out->len += n;
    return 1;
}

/* $args, $query_string */
static int var_args(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->args.p == NULL)
        return 0;
    app(out, r->args.p, r->args.len);
    return 1;
}

static int var_is_args(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->args.p != NULL)
        sh_buf_append(out, "?", 1);
    return 1;
}

static int var_request_method(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    app(out, r->h.method, r->h.method_len);
    return 1;
}

static int var_connection(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    sh_buf_appendf(out, "%llu", (unsigned long long)r->c->id);
    return 1;
}

static int var_connection_requests(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    sh_buf_appendf(out, "%u", r->c->nrequests);
    return 1;
}

static int var_msec(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)r;
    (void)data;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sh_buf_appendf(out, "%lld.%03ld", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
    return 1;
}

/* $content_length, $content_type: the request field named by data (its
 * length first). */
typedef struct {
    const char *name;
    size_t len;
} field_name_t;

static int var_field(sh_request_t *r, const void *data, sh_buf_t *out)
{
    const field_name_t *f = data;
    const sh_http1_header_t *h = sh_vars_request_field(r, f->name, f->len);
    if (h == NULL)
        return 0;
    app(out, h->value, h->value_len);
    return 1;
}

static int var_server_protocol(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    sh_buf_appends(out, version_text(r));
    return 1;
}

static int var_request_length(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    sh_buf_appendf(out, "%llu", (unsigned long long)(r->head_len + r->body_received));
    return 1;
}

static int var_request_time(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    uint64_t now = r->c->w != NULL ? sh_worker_now(r->c->w) : r->start_ms;
    uint64_t ms = r->start_ms != 0 && now > r->start_ms ? now - r->start_ms : 0;
    sh_buf_appendf(out, "%llu.%03llu", (unsigned long long)(ms / 1000),
                   (unsigned long long)(ms % 1000));
    return 1;
}

/* Per-thread cache of the formatted local time (one localtime_r a second). */
static _Thread_local struct {
    time_t sec;
    char local[64];
    char iso[64];
} tcache;

static void time_strings(void)
{
    time_t now = time(NULL);
    if (now == tcache.sec && tcache.local[0] != '\0')
        return;
    static const char *mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    localtime_r(&now, &tm);
    int off = (int)(tm.tm_gmtoff / 60) % (24 * 60);
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    snprintf(tcache.local, sizeof(tcache.local), "%02d/%s/%04d:%02d:%02d:%02d %c%02d%02d",
             tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign,
             off / 60, off % 60);
    snprintf(tcache.iso, sizeof(tcache.iso), "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, sign,
             off / 60, off % 60);
    tcache.sec = now;
}

/* $time_local (data NULL), $time_iso8601 */
static int var_time(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)r;
    time_strings();
    sh_buf_appends(out, data == NULL ? tcache.local : tcache.iso);
    return 1;
}

static int var_status(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    sh_buf_appendf(out, "%03d", r->status);
    return 1;
}

/* $body_bytes_sent (data NULL), $bytes_sent */
static int var_bytes_sent(sh_request_t *r, const void *data, sh_buf_t *out)
{
    sh_buf_appendf(out, "%llu",
                   (unsigned long long)(data == NULL ? r->body_bytes_sent : r->bytes_sent));
    return 1;
}

static int var_hostname(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)r;
    (void)data;
    char hn[256];
    if (gethostname(hn, sizeof(hn)) == 0) {
        hn[sizeof(hn) - 1] = '\0';
        sh_buf_appends(out, hn);
    }
    return 1;
}

static int var_pid(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)r;
    (void)data;
    sh_buf_appendf(out, "%ld", (long)getpid());
    return 1;
}

static int var_nginx_version(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)r;
    (void)data;
    sh_buf_appends(out, "1.25.0");
    return 1;
}

/* $request_id: 16 random bytes as 32 hex digits, made once per request. */
static int var_request_id(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    static const char hex[] = "0123456789abcdef";
    if (!r->has_id) {
        randombytes_buf(r->request_id, sizeof(r->request_id));
        r->has_id = 1;
    }
    char *d = sh_buf_reserve(out, 32);
    for (size_t i = 0; i < sizeof(r->request_id); i++) {
        d[2 * i] = hex[r->request_id[i] >> 4];
        d[2 * i + 1] = hex[r->request_id[i] & 15];
    }
    out->len += 32;
    return 1;
}

/* $connection_time: seconds since the connection was accepted, with ms. */
static int var_connection_time(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->c == NULL || r->c->w == NULL)
        return 0;
    uint64_t now = sh_worker_now(r->c->w);
    uint64_t ms = now > r->c->start_ms ? now - r->c->start_ms : 0;
    sh_buf_appendf(out, "%llu.%03llu", (unsigned long long)(ms / 1000),
                   (unsigned long long)(ms % 1000));
    return 1;
}

static int var_pipe(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    sh_buf_append(out, r->pipelined ? "p" : ".", 1);
    return 1;
}

/* $request_body: the body when it was read whole into memory first (the
 * proxy's request buffering), as nginx; else not set. */
static int var_request_body(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->h.content_length == 0 && !r->h.chunked)
        return 1; /* an empty body is read: "" (nginx), not unset */
    if (!r->rb_complete)
        return 0;
    if (r->rb.len > 0)
        sh_buf_append(out, r->rb.data, r->rb.len);
    return 1;
}

static int var_request_completion(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->resp_done)
        sh_buf_append(out, "OK", 2);
    return 1;
}

static int var_unset(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)r;
    (void)data;
    (void)out;
    return 0; /* $request_body_file: bodies are never written to files */
}

static int var_limit_rate(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)r;
    (void)data;
    sh_buf_append(out, "0", 1); /* no response rate limit (limit_rate is refused) */
    return 1;
}

int sh_core_vars_define(sh_conf_t *cf, sh_http_main_t *m)
{
    (void)m;
    if (sodium_init() < 0)
        return sh_conf_error(cf, "libsodium cannot initialize");
    static const field_name_t content_length = {"content-length", 14};
    static const field_name_t content_type = {"content-type", 12};
    static const struct {
        const char *name;
        sh_var_get_pt get;
        const void *data;
    } vars[] = {
        {"host", var_host, NULL},
        {"remote_addr", var_remote_addr, NULL},
        {"remote_port", var_remote_port, NULL},
        {"remote_user", var_remote_user, NULL},
        {"binary_remote_addr", var_binary_remote_addr, NULL},
        {"server_name", var_server_name, NULL},
        {"server_port", var_server_port, NULL},
        {"server_addr", var_server_addr, NULL},
        {"scheme", var_scheme, NULL},
        {"https", var_https, NULL},
        {"request", var_request, NULL},
        {"request_uri", var_request_uri, NULL},
        {"uri", var_uri, NULL},
        {"document_uri", var_uri, NULL},
        {"args", var_args, NULL},
        {"query_string", var_args, NULL},
        {"is_args", var_is_args, NULL},
        {"request_method", var_request_method, NULL},
        {"connection", var_connection, NULL},
        {"connection_requests", var_connection_requests, NULL},
        {"msec", var_msec, NULL},
        {"content_length", var_field, &content_length},
        {"content_type", var_field, &content_type},
        {"server_protocol", var_server_protocol, NULL},
        {"request_length", var_request_length, NULL},
        {"request_time", var_request_time, NULL},
        {"time_local", var_time, NULL},
        {"time_iso8601", var_time, (const void *)1},
        {"status", var_status, NULL},
        {"body_bytes_sent", var_bytes_sent, NULL},
        {"bytes_sent", var_bytes_sent, (const void *)1},
        {"hostname", var_hostname, NULL},
        {"pid", var_pid, NULL},
        {"nginx_version", var_nginx_version, NULL},
        {"request_id", var_request_id, NULL},
        {"connection_time", var_connection_time, NULL},
        {"pipe", var_pipe, NULL},
        {"request_body", var_request_body, NULL},
        {"request_body_file", var_unset, NULL},
        {"request_completion", var_request_completion, NULL},
        {"limit_rate", var_limit_rate, NULL},
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        int rc = sh_vars_define(cf, vars[i].name, vars[i].get, vars[i].data);
        if (rc != 0)
            return rc;
    }
    return 0;
}
