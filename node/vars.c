/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Variables and complex values (see vars.h). Variables are looked up by
 * name at compile time into a getter and a parameter (the NAME of
 * $http_NAME, $arg_NAME, $cookie_NAME), so evaluation is a switch, not a
 * lookup. Getters append to the output buffer directly: no per-variable
 * allocation.
 */
#include "node/vars.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/node.h"

enum var_id {
    V_LITERAL = 0,
    V_HOST,
    V_REMOTE_ADDR,
    V_REMOTE_PORT,
    V_BINARY_REMOTE_ADDR,
    V_SERVER_NAME,
    V_SERVER_PORT,
    V_SCHEME,
    V_REQUEST,
    V_REQUEST_URI,
    V_URI,
    V_ARGS,
    V_REQUEST_METHOD,
    V_HTTP,
    V_ARG,
    V_COOKIE,
    V_PROXY_ADD_XFF,
    V_CONNECTION,
    V_CONNECTION_REQUESTS,
    V_MSEC,
    V_CONTENT_LENGTH,
    V_CONTENT_TYPE,
    V_SERVER_PROTOCOL,
    V_PROXY_HOST,
    V_REQUEST_LENGTH,
};

typedef struct {
    int id;
    char *text; /* literal text, or the NAME of $http_NAME etc. */
    size_t len;
} part_t;

struct sh_cv_s {
    part_t *parts;
    size_t nparts;
    char *source;
};

static const struct {
    const char *name;
    int id;
} simple_vars[] = {
    {"host", V_HOST},
    {"remote_addr", V_REMOTE_ADDR},
    {"remote_port", V_REMOTE_PORT},
    {"binary_remote_addr", V_BINARY_REMOTE_ADDR},
    {"server_name", V_SERVER_NAME},
    {"server_port", V_SERVER_PORT},
    {"scheme", V_SCHEME},
    {"request", V_REQUEST},
    {"request_uri", V_REQUEST_URI},
    {"uri", V_URI},
    {"document_uri", V_URI},
    {"args", V_ARGS},
    {"query_string", V_ARGS},
    {"request_method", V_REQUEST_METHOD},
    {"proxy_add_x_forwarded_for", V_PROXY_ADD_XFF},
    {"connection", V_CONNECTION},
    {"connection_requests", V_CONNECTION_REQUESTS},
    {"msec", V_MSEC},
    {"content_length", V_CONTENT_LENGTH},
    {"content_type", V_CONTENT_TYPE},
    {"server_protocol", V_SERVER_PROTOCOL},
    {"proxy_host", V_PROXY_HOST},
    {"request_length", V_REQUEST_LENGTH},
};

static int is_var_char(int c)
{
    return isalnum(c) || c == '_';
}

static void add_part(sh_cv_t *cv, int id, const char *text, size_t len)
{
    cv->parts = sh_realloc(cv->parts, (cv->nparts + 1) * sizeof(*cv->parts));
    part_t *p = &cv->parts[cv->nparts++];
    p->id = id;
    p->text = sh_strndup(text, len);
    p->len = len;
    if (id == V_HTTP) /* header names compare as lower-case with '_' for '-' */
        for (size_t i = 0; i < len; i++)
            p->text[i] = p->text[i] == '_' ? '-' : (char)tolower((unsigned char)p->text[i]);
}

int sh_cv_compile(sh_conf_t *cf, const char *text, sh_cv_t **out)
{
    sh_cv_t *cv = sh_new(sh_cv_t);
    cv->source = sh_strdup(text);
    const char *p = text, *lit = text;
    while (*p) {
        if (*p != '$') {
            p++;
            continue;
        }
        const char *name, *end;
        if (p[1] == '{') {
            name = p + 2;
            end = strchr(name, '}');
            if (end == NULL) {
                sh_cv_destroy(cv);
                return sh_conf_error(cf, "the closing bracket in \"%s\" variable is missing",
                                     name);
            }
        } else {
            name = p + 1;
            end = name;
            while (is_var_char((unsigned char)*end))
                end++;
            if (end == name) { /* a lone '$' is literal */
                p++;
                continue;
            }
        }
        if (p > lit)
            add_part(cv, V_LITERAL, lit, (size_t)(p - lit));
        size_t nl = (size_t)(end - name);
        int id = -1;
        for (size_t i = 0; i < sizeof(simple_vars) / sizeof(simple_vars[0]); i++)
            if (strlen(simple_vars[i].name) == nl && memcmp(simple_vars[i].name, name, nl) == 0)
                id = simple_vars[i].id;
        if (id >= 0)
            add_part(cv, id, name, nl);
        else if (nl > 5 && memcmp(name, "http_", 5) == 0)
            add_part(cv, V_HTTP, name + 5, nl - 5);
        else if (nl > 4 && memcmp(name, "arg_", 4) == 0)
            add_part(cv, V_ARG, name + 4, nl - 4);
        else if (nl > 7 && memcmp(name, "cookie_", 7) == 0)
            add_part(cv, V_COOKIE, name + 7, nl - 7);
        else {
            sh_cv_destroy(cv);
            return sh_conf_error(cf, "unknown \"%.*s\" variable", (int)nl, name);
        }
        p = end + (p[1] == '{' ? 1 : 0);
        lit = p;
    }
    if (p > lit)
        add_part(cv, V_LITERAL, lit, (size_t)(p - lit));
    *out = cv;
    return 0;
}

void sh_cv_destroy(sh_cv_t *cv)
{
    if (cv == NULL)
        return;
    for (size_t i = 0; i < cv->nparts; i++)
        sh_free(cv->parts[i].text);
    sh_free(cv->parts);
    sh_free(cv->source);
    sh_free(cv);
}

int sh_cv_is_literal(const sh_cv_t *cv, sh_str_t *lit)
{
    if (cv->nparts == 0) {
        *lit = (sh_str_t){"", 0};
        return 1;
    }
    if (cv->nparts == 1 && cv->parts[0].id == V_LITERAL) {
        *lit = (sh_str_t){cv->parts[0].text, cv->parts[0].len};
        return 1;
    }
    return 0;
}

static const sh_http1_header_t *find_header(const sh_request_t *r, const char *lname, size_t len)
{
    for (size_t i = 0; i < r->h.nheaders; i++) {
        const sh_http1_header_t *h = &r->h.headers[i];
        if (h->name_len == len && strncasecmp(h->name, lname, len) == 0)
            return h;
    }
    return NULL;
}

static void append_remote_addr(sh_request_t *r, sh_buf_t *out)
{
    char ip[INET6_ADDRSTRLEN] = "";
    const struct sockaddr_in6 *p = &r->c->peer;
    if (p->sin6_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)p)->sin_addr, ip, sizeof(ip));
    else
        inet_ntop(AF_INET6, &p->sin6_addr, ip, sizeof(ip));
    sh_buf_appends(out, ip);
}

static int find_param(const char *s, size_t len, char sep, const char *name, size_t nlen,
                      sh_str_t *val)
{
    const char *p = s, *end = s + len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == sep))
            p++;
        const char *e = memchr(p, sep, (size_t)(end - p));
        if (e == NULL)
            e = end;
        if ((size_t)(e - p) > nlen && p[nlen] == '=' && strncasecmp(p, name, nlen) == 0) {
            *val = (sh_str_t){p + nlen + 1, (size_t)(e - p - nlen - 1)};
            return 1;
        }
        p = e + 1;
    }
    return 0;
}

void sh_cv_eval(const sh_cv_t *cv, sh_request_t *r, sh_buf_t *out)
{
    for (size_t i = 0; i < cv->nparts; i++) {
        const part_t *pt = &cv->parts[i];
        const sh_http1_header_t *h;
        sh_str_t v;
        switch (pt->id) {
        case V_LITERAL:
            sh_buf_append(out, pt->text, pt->len);
            break;
        case V_HOST:
            if (r->h.host != NULL && r->h.host_len > 0) {
                size_t n = r->h.host_len;
                const char *colon = r->h.host[0] == '[' ? NULL : memchr(r->h.host, ':', n);
                if (colon)
                    n = (size_t)(colon - r->h.host);
                for (size_t k = 0; k < n; k++) {
                    char ch = (char)tolower((unsigned char)r->h.host[k]);
                    sh_buf_append(out, &ch, 1);
                }
            } else if (r->srv && r->srv->nnames > 0) {
                sh_buf_appends(out, r->srv->names[0]);
            }
            break;
        case V_REMOTE_ADDR:
            append_remote_addr(r, out);
            break;
        case V_REMOTE_PORT:
            sh_buf_appendf(out, "%u", ntohs(r->c->peer.sin6_port));
            break;
        case V_BINARY_REMOTE_ADDR:
            if (r->c->peer.sin6_family == AF_INET)
                sh_buf_append(out, &((const struct sockaddr_in *)&r->c->peer)->sin_addr, 4);
            else
                sh_buf_append(out, &r->c->peer.sin6_addr, 16);
            break;
        case V_SERVER_NAME:
            if (r->srv && r->srv->nnames > 0)
                sh_buf_appends(out, r->srv->names[0]);
            break;
        case V_SERVER_PORT: {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&r->c->addr->opt.addr;
            sh_buf_appendf(out, "%u", ntohs(a->sin_port));
            break;
        }
        case V_SCHEME:
            sh_buf_appends(out, r->c->addr->opt.ssl ? "https" : "http");
            break;
        case V_REQUEST:
            sh_buf_append(out, r->h.method, r->h.method_len);
            sh_buf_append(out, " ", 1);
            sh_buf_append(out, r->h.target, r->h.target_len);
            sh_buf_appends(out, r->h.version == 10 ? " HTTP/1.0" : " HTTP/1.1");
            break;
        case V_REQUEST_URI:
            sh_buf_append(out, r->h.target, r->h.target_len);
            break;
        case V_URI:
            sh_buf_append(out, r->path.p, r->path.len);
            break;
        case V_ARGS:
            sh_buf_append(out, r->args.p, r->args.len);
            break;
        case V_REQUEST_METHOD:
            sh_buf_append(out, r->h.method, r->h.method_len);
            break;
        case V_HTTP:
            h = find_header(r, pt->text, pt->len);
            if (h != NULL)
                sh_buf_append(out, h->value, h->value_len);
            break;
        case V_ARG:
            if (find_param(r->args.p, r->args.len, '&', pt->text, pt->len, &v))
                sh_buf_append(out, v.p, v.len);
            break;
        case V_COOKIE:
            h = find_header(r, "cookie", 6);
            if (h != NULL && find_param(h->value, h->value_len, ';', pt->text, pt->len, &v))
                sh_buf_append(out, v.p, v.len);
            break;
        case V_PROXY_ADD_XFF:
            h = find_header(r, "x-forwarded-for", 15);
            if (h != NULL) {
                sh_buf_append(out, h->value, h->value_len);
                sh_buf_append(out, ", ", 2);
            }
            append_remote_addr(r, out);
            break;
        case V_CONNECTION:
            sh_buf_appendf(out, "%llu", (unsigned long long)r->c->id);
            break;
        case V_CONNECTION_REQUESTS:
            sh_buf_appendf(out, "%u", r->c->nrequests);
            break;
        case V_MSEC: {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            sh_buf_appendf(out, "%lld.%03ld", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
            break;
        }
        case V_CONTENT_LENGTH:
            h = find_header(r, "content-length", 14);
            if (h != NULL)
                sh_buf_append(out, h->value, h->value_len);
            break;
        case V_CONTENT_TYPE:
            h = find_header(r, "content-type", 12);
            if (h != NULL)
                sh_buf_append(out, h->value, h->value_len);
            break;
        case V_SERVER_PROTOCOL:
            sh_buf_appends(out, r->h.version == 10 ? "HTTP/1.0" : "HTTP/1.1");
            break;
        case V_PROXY_HOST:
            sh_proxy_host(r, out);
            break;
        case V_REQUEST_LENGTH:
            sh_buf_appendf(out, "%llu", (unsigned long long)(r->head_len + r->body_received));
            break;
        }
    }
}
