/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The proxy module: `proxy_pass` and its settings, and the runtime that
 * carries one request to an upstream server and its response back.
 *
 * Life of a proxied request (worker thread):
 *   start -> pick a server -> pooled idle connection or connect -> send the
 *   request head -> ask the client connection for the body (streamed, with
 *   backpressure) -> read the response head -> send the client head ->
 *   stream the body back (backpressure) -> response complete: the upstream
 *   connection goes back to the pool if it can carry another request.
 *
 * Failures before any response byte reached the client are retried on the
 * next server when that is safe (nothing of the request body was sent, or
 * the request has no body), like nginx's `proxy_next_upstream error
 * timeout`: a connect failure, a refused or reset connection, a stale
 * pooled connection. When no server is left: 502 (504 on a timeout). After
 * the client has seen bytes, the only honest answer is to close.
 *
 * Framing is re-done on both sides: request and response bodies are
 * decoded (Content-Length or chunked) and re-encoded, so nothing the
 * client sends in chunk extensions or malformed framing reaches the
 * backend verbatim.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "http/http1.h"
#include "node/conn/timeq.h"
#include "node/pipeline/corevars.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/metrics.h"
#include "node/pipeline/node.h"
#include "node/pipeline/reqlog.h"
#include "node/pipeline/vars.h"
#include "node/proxy/proxy.h"
#include "node/proxy/proxy_ssl.h"
#include "node/proxy/resolver.h"
#include "node/proxy/upstream.h"

#define MAX_RESP_HEADERS 128
#define MAX_RESP_HEAD    (64 * 1024)

typedef struct {
    /* proxy_pass (this level only, as nginx) */
    char *pass; /* as written, NULL when unset */
    const sh_upstream_t *ups;
    char *uri; /* URI part of proxy_pass, NULL when none */
    size_t uri_len;
    char *host; /* $proxy_host: group name or host:port */
    int ssl;    /* https: TLS to the servers (node/proxy/proxy_ssl.c) */
    const char *file;
    unsigned line;
    int pass_inherited; /* an `if` location's: its parent's proxy_pass (nginx) */
    sh_cv_t *pass_cv;   /* proxy_pass with variables: the URL, evaluated per request */
    /* inherited */
    sh_proxy_header_t *headers;
    size_t nheaders;
    int headers_set;  /* this level had proxy_set_header */
    int http_version; /* 10 or 11 */
    uint64_t connect_timeout;
    uint64_t send_timeout;
    uint64_t read_timeout;
    int buffering;
    int request_buffering;
    int intercept_errors; /* proxy_intercept_errors */
    /* proxy_next_upstream: NU_* bits; -1 unset */
    int next_upstream;
    int next_upstream_tries;        /* 0: no limit */
    uint64_t next_upstream_timeout; /* ms, 0: no limit */
    /* proxy_hide_header / proxy_pass_header (names, lower-case) */
    char **hide;
    size_t nhide;
    int hide_set;
    char **passh;
    size_t npassh;
    int passh_set;
    /* proxy_method, proxy_set_body (complex values; *_own: set at this
     * level), proxy_pass_request_body, proxy_pass_request_headers */
    sh_cv_t *method;
    sh_cv_t *set_body;
    int method_own, set_body_own;
    int pass_body;
    int pass_headers;
} proxy_loc_t;

/* proxy_next_upstream kinds (proxy.h's, shared with grpc_next_upstream) */
#define NU_ERROR          SH_NU_ERROR
#define NU_TIMEOUT        SH_NU_TIMEOUT
#define NU_INVALID_HEADER SH_NU_INVALID_HEADER
#define NU_HTTP_500       SH_NU_HTTP_500
#define NU_HTTP_502       SH_NU_HTTP_502
#define NU_HTTP_503       SH_NU_HTTP_503
#define NU_HTTP_504       SH_NU_HTTP_504
#define NU_HTTP_403       SH_NU_HTTP_403
#define NU_HTTP_404       SH_NU_HTTP_404
#define NU_HTTP_429       SH_NU_HTTP_429
#define NU_NON_IDEMPOTENT SH_NU_NON_IDEMPOTENT
#define NU_OFF            SH_NU_OFF

static const sh_conf_enum_t next_upstream_names[] = {{"error", NU_ERROR},
                                                     {"timeout", NU_TIMEOUT},
                                                     {"invalid_header", NU_INVALID_HEADER},
                                                     {"http_500", NU_HTTP_500},
                                                     {"http_502", NU_HTTP_502},
                                                     {"http_503", NU_HTTP_503},
                                                     {"http_504", NU_HTTP_504},
                                                     {"http_403", NU_HTTP_403},
                                                     {"http_404", NU_HTTP_404},
                                                     {"http_429", NU_HTTP_429},
                                                     {"non_idempotent", NU_NON_IDEMPOTENT},
                                                     {"off", NU_OFF},
                                                     {NULL, 0}};

enum pstate { P_CONNECTING, P_SENDING, P_HEAD, P_BODY, P_TUNNEL, P_DONE };

struct sh_uconn_s {
    uv_tcp_t tcp;
    sh_timeq_entry_t tq; /* connect, read or idle timeout (w->up_timers) */
    uv_connect_t creq;
    sh_worker_t *w;
    sh_ups_rt_t *ups;
    int peer;
    struct sh_proxy_req_s *p; /* NULL while idle */
    sh_link_t link;           /* pool idle list */
    sh_buf_t in;              /* unconsumed response bytes */
    /* https: the TLS layer, the pool key of its settings (0: cleartext),
     * and buffers for the bytes it makes */
    sh_upssl_t *tls;
    uint64_t key;
    sh_buf_t tls_out, plain;
    uint32_t nrequests;
    uint8_t connected : 1;
    uint8_t closing : 1;
    uint8_t reading : 1;
    uint8_t idle : 1;
    uint8_t closing_handles;
};

typedef struct sh_proxy_req_s {
    sh_request_t *r;
    const proxy_loc_t *conf;
    sh_ups_rt_t *ups;
    sh_uconn_t *u;
    int peer;
    int ssl; /* TLS to the upstream: the URL's scheme (with variables, per request) */
    uint64_t tried;
    int tries;
    int state;
    sh_http1_response_t resp;
    sh_body_t rbody;         /* response body framing */
    uint64_t req_body_sent;  /* request body bytes handed to the upstream */
    uint64_t resp_body_len;  /* response body bytes of this try: $upstream_response_length */
    uint8_t req_chunked : 1; /* we chunk-encode the request body */
    uint8_t req_body_done : 1;
    uint8_t up_paused : 1; /* upstream reads stopped: client is slow */
    uint8_t reused : 1;    /* the connection came from the pool */
    uint8_t got_bytes : 1; /* any response byte arrived on this try */
    uint8_t up_keep : 1;   /* the upstream connection can be pooled */
    uint8_t no_pool : 1;   /* a pooled connection just failed: use a new one */
    uint8_t try_open : 1;  /* try_begin() without try_end() */
    uint8_t tunnel : 1;    /* after 101: raw bytes both ways */
    uint8_t head_conv : 1; /* a HEAD sent as GET: the body is not the client's */
    int stale_retries;
    uint64_t try_start, connect_ms, header_ms;
    /* proxy_pass with variables: "host[:port]\0uri" of this request's URL
     * (uri empty: none), and the resolver query under way */
    char *dyn;
    size_t dyn_uri_len;
    sh_resolve_job_t *rjob;
    int wait_peer; /* the `resolve` server the query is for */

    /* ---- kept across reuse from the worker's free list (P_ZERO) */
    sh_buf_t head; /* request head for the upstream, kept for retries */
    sh_buf_t tail; /* chunked response bytes since the last data span: the
                    * last-chunk line and the trailer section end up here */
    sh_http1_header_t resp_headers[MAX_RESP_HEADERS];
} sh_proxy_req_t;

#define P_ZERO offsetof(sh_proxy_req_t, head)

extern sh_conf_module_t sh_proxy_module;

/* ------------------------------------------------------ conf -- */

static void *proxy_create_loc(void)
{
    proxy_loc_t *c = sh_new(proxy_loc_t);
    c->http_version = SH_CONF_UNSET;
    c->connect_timeout = SH_CONF_UNSET_MSEC;
    c->send_timeout = SH_CONF_UNSET_MSEC;
    c->read_timeout = SH_CONF_UNSET_MSEC;
    c->buffering = SH_CONF_UNSET;
    c->request_buffering = SH_CONF_UNSET;
    c->intercept_errors = SH_CONF_UNSET;
    c->next_upstream = SH_CONF_UNSET;
    c->next_upstream_tries = SH_CONF_UNSET;
    c->next_upstream_timeout = SH_CONF_UNSET_MSEC;
    c->pass_body = SH_CONF_UNSET;
    c->pass_headers = SH_CONF_UNSET;
    return c;
}

void sh_proxy_headers_free(sh_proxy_header_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sh_free(h[i].name);
        sh_cv_destroy(h[i].value);
    }
    sh_free(h);
}

static void proxy_destroy_loc(void *conf)
{
    proxy_loc_t *c = conf;
    if (c->hide_set)
        sh_proxy_names_free(c->hide, c->nhide);
    if (c->passh_set)
        sh_proxy_names_free(c->passh, c->npassh);
    if (!c->pass_inherited) {
        sh_cv_destroy(c->pass_cv);
        sh_free(c->pass);
        sh_free(c->uri);
        sh_free(c->host);
    }
    if (c->headers_set)
        sh_proxy_headers_free(c->headers, c->nheaders);
    if (c->method_own)
        sh_cv_destroy(c->method);
    if (c->set_body_own)
        sh_cv_destroy(c->set_body);
    sh_free(c);
}

static int proxy_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    proxy_loc_t *p = parent, *c = conf;
    if (!c->headers_set) { /* nginx: inherited only if this level sets none */
        c->headers = p->headers;
        c->nheaders = p->nheaders;
    }
    SH_CONF_MERGE(c->http_version, p->http_version, 11);
    SH_CONF_MERGE_MSEC(c->connect_timeout, p->connect_timeout, 60000);
    SH_CONF_MERGE_MSEC(c->send_timeout, p->send_timeout, 60000);
    SH_CONF_MERGE_MSEC(c->read_timeout, p->read_timeout, 60000);
    SH_CONF_MERGE(c->buffering, p->buffering, 1);
    SH_CONF_MERGE(c->request_buffering, p->request_buffering, 1);
    SH_CONF_MERGE(c->intercept_errors, p->intercept_errors, 0);
    SH_CONF_MERGE(c->next_upstream, p->next_upstream, NU_ERROR | NU_TIMEOUT);
    SH_CONF_MERGE(c->next_upstream_tries, p->next_upstream_tries, 0);
    SH_CONF_MERGE_MSEC(c->next_upstream_timeout, p->next_upstream_timeout, 0);
    if (!c->hide_set) {
        c->hide = p->hide;
        c->nhide = p->nhide;
    }
    if (!c->passh_set) {
        c->passh = p->passh;
        c->npassh = p->npassh;
    }
    SH_CONF_MERGE_PTR(c->method, p->method, NULL);
    SH_CONF_MERGE_PTR(c->set_body, p->set_body, NULL);
    SH_CONF_MERGE(c->pass_body, p->pass_body, 1);
    SH_CONF_MERGE(c->pass_headers, p->pass_headers, 1);
    const sh_http_block_t *blk = cf->user;
    if (c->pass == NULL && p->pass != NULL && blk->loc != NULL && blk->loc->match == SH_LOC_IF) {
        /* an `if` block's implicit location proxies as its location */
        c->pass = p->pass;
        c->pass_cv = p->pass_cv;
        c->ups = p->ups;
        c->uri = p->uri;
        c->uri_len = p->uri_len;
        c->host = p->host;
        c->file = p->file;
        c->line = p->line;
        c->pass_inherited = 1;
    }
    if (c->pass != NULL && c->ups == NULL && c->pass_cv == NULL) {
        /* resolve now that every upstream block is known */
        c->ups = sh_upstream_get_at(cf, c->host, c->ssl ? 443 : 80, c->file, c->line);
        if (c->ups == NULL)
            return SH_EINVAL;
    }
    return 0;
}

static int proxy_pass_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    proxy_loc_t *c = conf;
    const char *url = cf->node->args[1];
    if (c->pass != NULL)
        return sh_conf_error(cf, "\"proxy_pass\" directive is duplicate");
    int https = strncmp(url, "https://", 8) == 0;
    if (!https && strncmp(url, "http://", 7) != 0)
        return sh_conf_error(cf, "invalid URL prefix in \"%s\"", url);
    if (strchr(url, '$') != NULL) {
        /* the URL is made per request: an upstream group by name, an
         * address, or a name through `resolver` (nginx) */
        c->pass = sh_strdup(url);
        c->file = cf->node->file;
        c->line = cf->node->line;
        return sh_cv_compile(cf, url, &c->pass_cv);
    }
    const char *hp = url + (https ? 8 : 7);
    c->ssl = https;
    const char *slash = strchr(hp, '/');
    size_t hl = slash ? (size_t)(slash - hp) : strlen(hp);
    if (hl == 0)
        return sh_conf_error(cf, "no host in \"%s\"", url);
    c->pass = sh_strdup(url);
    c->host = sh_strndup(hp, hl);
    if (slash != NULL) {
        c->uri = sh_strdup(slash);
        c->uri_len = strlen(slash);
    }
    c->file = cf->node->file;
    c->line = cf->node->line;
    return 0;
}

static int proxy_set_header_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    proxy_loc_t *c = conf;
    return sh_proxy_headers_add(cf, &c->headers, &c->nheaders, &c->headers_set, 256, 0);
}

int sh_proxy_headers_add(sh_conf_t *cf, sh_proxy_header_t **v, size_t *nv, int *set, size_t max,
                         int lower)
{
    const sh_conf_node_t *n = cf->node;
    if (!*set) {
        *v = NULL;
        *nv = 0;
        *set = 1;
    }
    if (*nv >= max)
        return sh_conf_error(cf, "too many \"%s\" directives", n->args[0]);
    sh_proxy_header_t h = {.name = sh_strdup(n->args[1]), .name_len = strlen(n->args[1])};
    if (lower)
        for (char *q = h.name; *q; q++)
            *q = (char)tolower((unsigned char)*q);
    int rc = sh_cv_compile(cf, n->args[2], &h.value);
    if (rc != 0) {
        sh_free(h.name);
        return rc;
    }
    *v = sh_realloc(*v, (*nv + 1) * sizeof(**v));
    (*v)[(*nv)++] = h;
    return 0;
}

static int http_version_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    proxy_loc_t *c = conf;
    const char *v = cf->node->args[1];
    if (c->http_version != SH_CONF_UNSET)
        return sh_conf_error(cf, "\"proxy_http_version\" directive is duplicate");
    if (strcmp(v, "1.0") == 0)
        c->http_version = 10;
    else if (strcmp(v, "1.1") == 0)
        c->http_version = 11;
    else
        return sh_conf_error(cf, "invalid value \"%s\" in \"proxy_http_version\" directive", v);
    return 0;
}

int sh_next_upstream_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    int *f = (int *)((char *)conf + cmd->offset);
    if (*f != SH_CONF_UNSET)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", cf->node->args[0]);
    return sh_next_upstream_parse(cf, f);
}

int sh_next_upstream_parse(sh_conf_t *cf, int *out)
{
    const sh_conf_node_t *n = cf->node;
    int mask = 0;
    for (unsigned i = 1; i < n->nargs; i++) {
        int found = 0;
        for (const sh_conf_enum_t *e = next_upstream_names; e->name; e++)
            if (strcmp(e->name, n->args[i]) == 0) {
                mask |= e->value;
                found = 1;
            }
        if (!found)
            return sh_conf_error(cf, "invalid value \"%s\" in \"%s\" directive", n->args[i],
                                 n->args[0]);
    }
    if ((mask & NU_OFF) && mask != NU_OFF)
        return sh_conf_error(cf, "invalid value \"off\" in \"%s\" directive", n->args[0]);
    *out = (mask & NU_OFF) ? 0 : mask;
    return 0;
}

int sh_next_upstream_status(int status)
{
    return status == 500   ? NU_HTTP_500
           : status == 502 ? NU_HTTP_502
           : status == 503 ? NU_HTTP_503
           : status == 504 ? NU_HTTP_504
           : status == 403 ? NU_HTTP_403
           : status == 404 ? NU_HTTP_404
           : status == 429 ? NU_HTTP_429
                           : 0;
}

/* proxy_hide_header / proxy_pass_header: a list per level, replacing the
 * parent's when set at this level (nginx). */
static int header_list_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    proxy_loc_t *c = conf;
    int hide = cmd->offset == 0;
    char ***v = hide ? &c->hide : &c->passh;
    size_t *nv = hide ? &c->nhide : &c->npassh;
    int *set = hide ? &c->hide_set : &c->passh_set;
    sh_proxy_names_add(v, nv, set, cf->node->args[1]);
    return 0;
}

void sh_proxy_names_add(char ***v, size_t *nv, int *set, const char *name)
{
    if (!*set) {
        *v = NULL;
        *nv = 0;
        *set = 1;
    }
    char *lc = sh_strdup(name);
    for (char *q = lc; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    *v = sh_realloc(*v, (*nv + 1) * sizeof(char *));
    (*v)[(*nv)++] = lc;
}

void sh_proxy_names_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sh_free(v[i]);
    sh_free(v);
}

/* proxy_method METHOD, proxy_set_body VALUE (variables allowed). */
static int cv_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    proxy_loc_t *c = conf;
    sh_cv_t **v = cmd->offset == 0 ? &c->method : &c->set_body;
    int *own = cmd->offset == 0 ? &c->method_own : &c->set_body_own;
    if (*own)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", cf->node->args[0]);
    *own = 1;
    return sh_cv_compile(cf, cf->node->args[1], v);
}

/* proxy_store: off is what happens here; storing responses in files is
 * not done (accepted with a warning). */
static int store_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)conf;
    if (strcmp(cf->node->args[1], "off") == 0)
        return 0;
    return sh_conf_set_unsupported(cf, cmd, conf);
}

#define PLOC    (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)
#define POFF(f) offsetof(proxy_loc_t, f)

static const sh_conf_cmd_t proxy_cmds[] = {
    {"proxy_pass", SH_CTX_LOCATION | SH_CTX_IF | SH_CTX_LIMIT_EXCEPT | SH_CONF_TAKE1,
     proxy_pass_set, 0, NULL},
    {"proxy_set_header", PLOC | SH_CONF_TAKE2, proxy_set_header_set, 0, NULL},
    {"proxy_http_version", PLOC | SH_CONF_TAKE1, http_version_set, 0, NULL},
    {"proxy_connect_timeout", PLOC | SH_CONF_TAKE1, sh_conf_set_msec, POFF(connect_timeout), NULL},
    {"proxy_send_timeout", PLOC | SH_CONF_TAKE1, sh_conf_set_msec, POFF(send_timeout), NULL},
    {"proxy_read_timeout", PLOC | SH_CONF_TAKE1, sh_conf_set_msec, POFF(read_timeout), NULL},
    {"proxy_buffering", PLOC | SH_CONF_FLAG, sh_conf_set_flag, POFF(buffering), NULL},
    {"proxy_intercept_errors", PLOC | SH_CONF_FLAG, sh_conf_set_flag, POFF(intercept_errors), NULL},
    {"proxy_request_buffering", PLOC | SH_CONF_FLAG, sh_conf_set_flag, POFF(request_buffering),
     NULL},
    {"proxy_next_upstream", PLOC | SH_CONF_1MORE, sh_next_upstream_set, POFF(next_upstream), NULL},
    {"proxy_next_upstream_tries", PLOC | SH_CONF_TAKE1, sh_conf_set_num, POFF(next_upstream_tries),
     NULL},
    {"proxy_next_upstream_timeout", PLOC | SH_CONF_TAKE1, sh_conf_set_msec,
     POFF(next_upstream_timeout), NULL},
    {"proxy_hide_header", PLOC | SH_CONF_TAKE1, header_list_set, 0, NULL},
    {"proxy_pass_header", PLOC | SH_CONF_TAKE1, header_list_set, 1, NULL},
    {"proxy_method", PLOC | SH_CONF_TAKE1, cv_set, 0, NULL},
    {"proxy_set_body", PLOC | SH_CONF_TAKE1, cv_set, 1, NULL},
    {"proxy_pass_request_body", PLOC | SH_CONF_FLAG, sh_conf_set_flag, POFF(pass_body), NULL},
    {"proxy_pass_request_headers", PLOC | SH_CONF_FLAG, sh_conf_set_flag, POFF(pass_headers), NULL},
    {"proxy_store", PLOC | SH_CONF_TAKE1, store_set, 0, "responses are not stored in files"},
    {NULL, 0, NULL, 0, NULL}};

/* The content handler of locations with proxy_pass. */
static int sink_drained(sh_request_t *r)
{
    if (r->proxy == NULL)
        return 0;
    sh_proxy_client_drained(r);
    return 1;
}

/* The request body goes to the upstream (node.h's sh_body_sink_t). */
static const sh_body_sink_t proxy_sink = {
    .start = sh_proxy_start,
    .body = sh_proxy_body,
    .drained = sink_drained,
    .tunnel = sh_proxy_tunnel_up,
    .detach = sh_proxy_detach,
};

static int proxy_handler(sh_request_t *r)
{
    const proxy_loc_t *c = sh_http_loc_conf(r->loc, &sh_proxy_module);
    if (c == NULL || c->pass == NULL)
        return SH_PH_DECLINED;
    r->sink = &proxy_sink;
    if (!c->pass_body || c->set_body != NULL) {
        r->discard_body = 1; /* the client's body is read and dropped */
        sh_proxy_start(r);
        return SH_PH_DONE;
    }
    if (!r->body.done && c->request_buffering) {
        /* proxy_request_buffering on (nginx's default): read a body of
         * up to client_body_buffer_size whole before choosing a server,
         * so it can be sent with a Content-Length, checked against
         * client_max_body_size, and sent again on a retry. A larger
         * one is streamed from there on (no temp files). */
        r->buffering = 1;
        sh_request_body_resume(r);
        return SH_PH_DONE;
    }
    sh_proxy_start(r);
    return SH_PH_DONE;
}

/* ---- the module's variables ($upstream_*, $proxy_host), registered by
 * the module that fills them (issue 10 item 7) */

/* One entry per try, joined as nginx does: the request's buffer named by
 * data (an offset into sh_request_t). */
static int var_tries(sh_request_t *r, const void *data, sh_buf_t *out)
{
    const sh_buf_t *b = (const sh_buf_t *)((const char *)r + (size_t)(uintptr_t)data);
    if (b->len == 0)
        return 0;
    sh_buf_append(out, b->data, b->len);
    return 1;
}

static int var_up_bytes(sh_request_t *r, const void *data, sh_buf_t *out)
{
    if (r->up_addr.len == 0)
        return 0;
    sh_buf_append_u64(out, data != NULL ? r->up_bytes_sent : r->up_bytes_received);
    return 1;
}

static int var_proxy_host(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    sh_proxy_host(r, out);
    return 1;
}

/* $proxy_add_x_forwarded_for: the client's X-Forwarded-For, ", ", then
 * $remote_addr (or $remote_addr alone). */
static int var_add_xff(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    const sh_http1_header_t *h = sh_vars_request_field(r, "x-forwarded-for", 15);
    if (h != NULL) {
        if (h->value_len > 0)
            sh_buf_append(out, h->value, h->value_len);
        sh_buf_append(out, ", ", 2);
    }
    sh_core_var_remote_addr(r, out);
    return 1;
}

#define ROFF(f) ((const void *)(uintptr_t)offsetof(sh_request_t, f))

static int proxy_preconf(sh_conf_t *cf, sh_http_main_t *m)
{
    (void)m;
    static const struct {
        const char *name;
        sh_var_get_pt get;
        const void *data;
    } vars[] = {
        {"upstream_addr", var_tries, ROFF(up_addr)},
        {"upstream_status", var_tries, ROFF(up_status)},
        {"upstream_connect_time", var_tries, ROFF(up_connect_time)},
        {"upstream_header_time", var_tries, ROFF(up_header_time)},
        {"upstream_response_time", var_tries, ROFF(up_response_time)},
        {"upstream_response_length", var_tries, ROFF(up_response_length)},
        {"upstream_bytes_received", var_up_bytes, NULL},
        {"upstream_bytes_sent", var_up_bytes, (const void *)1},
        {"proxy_host", var_proxy_host, NULL},
        {"proxy_add_x_forwarded_for", var_add_xff, NULL},
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        int rc = sh_vars_define(cf, vars[i].name, vars[i].get, vars[i].data);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int proxy_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    /* the label ids of /metrics, interned once here (metrics.h) */
    sh_upstream_main_t *um = sh_http_main_conf(m, &sh_upstream_module);
    for (size_t i = 0; um != NULL && i < um->n; i++) {
        sh_upstream_t *u = um->ups[i];
        u->metrics_id = sh_metrics_label(u->name);
        for (size_t k = 0; k < u->nservers; k++)
            u->servers[k].metrics_id = sh_metrics_label(u->servers[k].name);
    }
    return sh_phase_add(cf, m, SH_PHASE_CONTENT, proxy_handler);
}

static const sh_http_module_t proxy_http_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = proxy_create_loc,
    .merge_loc = proxy_merge_loc,
    .destroy_loc = proxy_destroy_loc,
    .preconfiguration = proxy_preconf,
    .postconfiguration = proxy_postconf,
};

sh_conf_module_t sh_proxy_module = {
    .name = "proxy",
    .cmds = proxy_cmds,
    .ctx = &proxy_http_ctx,
};

int sh_proxy_enabled(const sh_http_loc_t *loc)
{
    const proxy_loc_t *c = sh_http_loc_conf(loc, &sh_proxy_module);
    return c != NULL && c->pass != NULL;
}

const sh_upstream_t *sh_proxy_loc_upstream(const sh_http_loc_t *loc)
{
    const proxy_loc_t *c = loc ? sh_http_loc_conf(loc, &sh_proxy_module) : NULL;
    return c != NULL && c->pass != NULL ? c->ups : NULL;
}

int sh_proxy_loc_https(const sh_http_loc_t *loc)
{
    const proxy_loc_t *c = sh_http_loc_conf(loc, &sh_proxy_module);
    /* with variables the scheme is the request's: a TLS context is made
     * for it (nginx too) */
    return c != NULL && c->pass != NULL && (c->ssl || c->pass_cv != NULL);
}

void sh_proxy_host(sh_request_t *r, sh_buf_t *out)
{
    const sh_proxy_req_t *p = r->proxy;
    if (p != NULL && p->dyn != NULL) {
        sh_buf_appends(out, p->dyn);
        return;
    }
    const proxy_loc_t *c = r->loc ? sh_http_loc_conf(r->loc, &sh_proxy_module) : NULL;
    if (c != NULL && c->host != NULL)
        sh_buf_appends(out, c->host);
}

const char *sh_proxy_pass_of(const sh_http_loc_t *loc, size_t *uri_len)
{
    const proxy_loc_t *c = loc ? sh_http_loc_conf(loc, &sh_proxy_module) : NULL;
    if (c == NULL || c->pass == NULL || c->pass_cv != NULL)
        return NULL;
    *uri_len = c->uri != NULL ? c->uri_len : 0;
    return c->pass;
}

/* ------------------------------------------------------ runtime -- */

static void uconn_close(sh_uconn_t *u);
static void proxy_dispose(sh_proxy_req_t *p);
static void connect_next(sh_proxy_req_t *p);
static void up_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void up_written_cb(uv_stream_t *s, int status);

/* Known field names, classified once per field by length then bytes:
 * what the proxy drops, replaces or re-frames on either side. */
enum hkind {
    HK_OTHER = 0,
    HK_CONNECTION,
    HK_KEEP_ALIVE,
    HK_PROXY_CONNECTION,
    HK_TE,
    HK_TRAILER,
    HK_TRANSFER_ENCODING,
    HK_UPGRADE, /* last hop-by-hop kind */
    HK_HOST,
    HK_CONTENT_LENGTH,
    HK_EXPECT,
    HK_SERVER,
    HK_DATE,
    HK_X_HIDDEN /* X-Pad, X-Accel-*: hidden by default, as nginx */
};

static int name_eq(const sh_http1_header_t *h, const char *lower, size_t n)
{
    return h->name_len == n && strncasecmp(h->name, lower, n) == 0;
}

static int hdr_kind(const sh_http1_header_t *h)
{
    if (h->name_len > 8 && (h->name[0] | 0x20) == 'x' && strncasecmp(h->name, "x-accel-", 8) == 0)
        return HK_X_HIDDEN;
    switch (h->name_len) {
    case 2:
        return name_eq(h, "te", 2) ? HK_TE : HK_OTHER;
    case 4:
        return name_eq(h, "host", 4) ? HK_HOST : name_eq(h, "date", 4) ? HK_DATE : HK_OTHER;
    case 5:
        return name_eq(h, "x-pad", 5) ? HK_X_HIDDEN : HK_OTHER;
    case 6:
        return name_eq(h, "server", 6) ? HK_SERVER : name_eq(h, "expect", 6) ? HK_EXPECT : HK_OTHER;
    case 7:
        return name_eq(h, "upgrade", 7)   ? HK_UPGRADE
               : name_eq(h, "trailer", 7) ? HK_TRAILER
                                          : HK_OTHER;
    case 10:
        return name_eq(h, "connection", 10)   ? HK_CONNECTION
               : name_eq(h, "keep-alive", 10) ? HK_KEEP_ALIVE
                                              : HK_OTHER;
    case 14:
        return name_eq(h, "content-length", 14) ? HK_CONTENT_LENGTH : HK_OTHER;
    case 16:
        return name_eq(h, "proxy-connection", 16) ? HK_PROXY_CONNECTION : HK_OTHER;
    case 17:
        return name_eq(h, "transfer-encoding", 17) ? HK_TRANSFER_ENCODING : HK_OTHER;
    default:
        return HK_OTHER;
    }
}

static int is_hop_by_hop_kind(int k)
{
    return k >= HK_CONNECTION && k <= HK_UPGRADE;
}

/* Whether any Connection field names a field other than the usual
 * close / keep-alive / upgrade: only then is each field looked up in it. */
static int connection_names_fields(const sh_http1_header_t *hs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!name_eq(&hs[i], "connection", 10))
            continue;
        const char *v = hs[i].value, *end = v + hs[i].value_len, *t;
        size_t tl;
        while ((t = sh_http1_next_word(&v, end, &tl)) != NULL) {
            if (!(tl == 5 && strncasecmp(t, "close", 5) == 0) &&
                !(tl == 10 && strncasecmp(t, "keep-alive", 10) == 0) &&
                !(tl == 7 && strncasecmp(t, "upgrade", 7) == 0))
                return 1;
        }
    }
    return 0;
}

/* Whether header h is named in the Connection field (also hop-by-hop). */
static int named_in_connection(const sh_http1_header_t *hs, size_t n, const sh_http1_header_t *h)
{
    for (size_t i = 0; i < n; i++) {
        if (!name_eq(&hs[i], "connection", 10))
            continue;
        char name[128];
        if (h->name_len >= sizeof(name))
            return 0;
        memcpy(name, h->name, h->name_len);
        name[h->name_len] = '\0';
        if (sh_http1_has_token(hs[i].value, hs[i].value_len, name))
            return 1;
    }
    return 0;
}

static int set_by_conf(const proxy_loc_t *c, const sh_http1_header_t *h)
{
    for (size_t i = 0; i < c->nheaders; i++)
        if (c->headers[i].name_len == h->name_len &&
            strncasecmp(c->headers[i].name, h->name, h->name_len) == 0)
            return 1;
    return 0;
}

/* nginx's ngx_escape_uri(NGX_ESCAPE_URI): a changed URI as a request
 * target. */
static void append_uri_escaped(sh_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '#' || ch == '%' || ch == '?') {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            sh_buf_append(b, e, 3);
        } else {
            sh_buf_append(b, s + i, 1);
        }
    }
}

/* The client's conditional and range fields, which a module that
 * answers them itself (the cache) keeps from the upstream, as nginx's
 * proxy does when caching. */
static int is_conditional(const sh_http1_header_t *h)
{
    static const char *const names[] = {
        "if-modified-since", "if-unmodified-since", "if-none-match", "if-match", "range",
        "if-range"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (name_eq(h, names[i], strlen(names[i])))
            return 1;
    return 0;
}

static void build_request_head(sh_proxy_req_t *p)
{
    sh_request_t *r = p->r;
    const proxy_loc_t *c = p->conf;
    sh_buf_t *b = &p->head;
    const sh_up_hooks_t *hk = r->up_hooks;
    b->len = 0;
    if (hk != NULL && hk->method != NULL)
        sh_buf_append(b, hk->method, hk->method_len);
    else if (c->method != NULL)
        sh_cv_eval(c->method, r, b);
    else
        sh_buf_append(b, r->h.method, r->h.method_len);
    sh_buf_append(b, " ", 1);
    /* the client's path as it came, or the changed URI (rewrite, internal
     * redirect) escaped as nginx does */
    const char *path = r->uri_changed ? r->uri.p : r->path.p;
    size_t pl = r->uri_changed ? r->uri.len : r->path.len;
    const sh_http_loc_t *loc = sh_http_loc_real(r->loc);
    if (p->dyn != NULL && p->dyn_uri_len > 0) {
        /* proxy_pass with variables and a URI: that URI as it is (nginx) */
        sh_buf_append(b, p->dyn + strlen(p->dyn) + 1, p->dyn_uri_len);
        pl = 0;
    } else if (c->uri != NULL && !r->uri_break) {
        /* nginx: the part of the URI matching the location is replaced by
         * the URI in proxy_pass */
        if ((loc->match == SH_LOC_PREFIX || loc->match == SH_LOC_PREFERRED) &&
            pl >= loc->name_len && memcmp(path, loc->name, loc->name_len) == 0) {
            path += loc->name_len;
            pl -= loc->name_len;
        } else if (loc->match == SH_LOC_EXACT) {
            pl = 0;
        }
        sh_buf_append(b, c->uri, c->uri_len);
    }
    if (r->uri_changed)
        append_uri_escaped(b, path, pl);
    else
        sh_buf_append(b, path, pl);
    if (r->args.p != NULL && !(p->dyn != NULL && p->dyn_uri_len > 0)) {
        sh_buf_append(b, "?", 1);
        sh_buf_append(b, r->args.p, r->args.len);
    }
    sh_buf_appends(b, c->http_version == 10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");

    int host_set = 0, conn_set = 0;
    for (size_t i = 0; i < c->nheaders; i++) {
        const sh_proxy_header_t *h = &c->headers[i];
        size_t mark = b->len;
        sh_buf_append(b, h->name, h->name_len);
        sh_buf_append(b, ": ", 2);
        size_t vstart = b->len;
        sh_cv_eval(h->value, r, b);
        if (b->len == vstart) { /* an empty value removes the header */
            b->len = mark;
        } else {
            sh_buf_append(b, "\r\n", 2);
        }
        if (h->name_len == 4 && strncasecmp(h->name, "host", 4) == 0)
            host_set = 1;
        if (h->name_len == 10 && strncasecmp(h->name, "connection", 10) == 0)
            conn_set = 1;
    }
    if (!host_set) {
        sh_buf_appends(b, "Host: ");
        sh_buf_appends(b, p->dyn != NULL ? p->dyn : c->host);
        sh_buf_append(b, "\r\n", 2);
    }
    int conn_named = connection_names_fields(r->h.headers, r->h.nheaders);
    for (size_t i = 0; c->pass_headers && i < r->h.nheaders; i++) {
        const sh_http1_header_t *h = &r->h.headers[i];
        int k = hdr_kind(h);
        if (is_hop_by_hop_kind(k) || k == HK_HOST || k == HK_CONTENT_LENGTH || k == HK_EXPECT ||
            (c->nheaders > 0 && set_by_conf(c, h)) ||
            (hk != NULL && hk->strip_cond && is_conditional(h)) ||
            (conn_named && named_in_connection(r->h.headers, r->h.nheaders, h)))
            continue;
        sh_buf_append(b, h->name, h->name_len);
        sh_buf_append(b, ": ", 2);
        sh_buf_append(b, h->value, h->value_len);
        sh_buf_append(b, "\r\n", 2);
    }
    size_t set_body_at = 0;
    if (c->set_body != NULL) {
        /* proxy_set_body: its value is the body, after the head */
        r->scratch.len = 0;
        sh_cv_eval(c->set_body, r, &r->scratch);
        sh_buf_appends(b, "Content-Length: ");
        sh_buf_append_u64(b, r->scratch.len);
        sh_buf_append(b, "\r\n", 2);
        set_body_at = 1;
    } else if (!c->pass_body) {
        /* proxy_pass_request_body off: no body */
    } else if (r->rb_complete) {
        /* the whole body was read first: its length is known */
        sh_buf_appends(b, "Content-Length: ");
        sh_buf_append_u64(b, r->rb.len);
        sh_buf_append(b, "\r\n", 2);
    } else if (r->h.chunked) {
        sh_buf_appends(b, "Transfer-Encoding: chunked\r\n");
        p->req_chunked = 1;
    } else if (r->h.content_length >= 0) {
        sh_buf_appends(b, "Content-Length: ");
        sh_buf_append_u64(b, (uint64_t)r->h.content_length);
        sh_buf_append(b, "\r\n", 2);
    }
    for (size_t i = 0; hk != NULL && i < hk->nextra; i++) {
        sh_buf_append(b, hk->extra[i].name, hk->extra[i].name_len);
        sh_buf_append(b, ": ", 2);
        sh_buf_append(b, hk->extra[i].value, hk->extra[i].value_len);
        sh_buf_append(b, "\r\n", 2);
    }
    if (!conn_set && (c->http_version == 10 || p->ups->conf->keepalive == 0))
        sh_buf_appends(b, "Connection: close\r\n");
    sh_buf_append(b, "\r\n", 2);
    if (set_body_at && r->scratch.len > 0)
        sh_buf_append(b, r->scratch.data, r->scratch.len);
}

static uint64_t now_ms(sh_proxy_req_t *p)
{
    return sh_worker_now(p->r->c->w);
}

static void up_timer(sh_uconn_t *u, uint64_t ms)
{
    sh_timers_add(&u->w->up_timers, &u->tq, ms);
}

/* Bytes for the upstream: as they are, or encrypted on a TLS connection
 * (the ciphertext is written at once where the socket takes it, the rest
 * queued, as any send). 0 or SH_EIO. */
static int up_send(sh_uconn_t *u, const uv_buf_t *bufs, unsigned n, sh_sent_cb cb)
{
    if (u->tls == NULL)
        return sh_stream_send((uv_stream_t *)&u->tcp, bufs, n, cb);
    u->tls_out.len = 0;
    if (sh_upssl_write(u->tls, bufs, n, &u->tls_out) != 0)
        return SH_EIO;
    uv_buf_t b = uv_buf_init(u->tls_out.data, (unsigned)u->tls_out.len);
    int rc = u->tls_out.len > 0 ? sh_stream_send((uv_stream_t *)&u->tcp, &b, 1, cb) : 0;
    if (u->tls_out.cap > 64 * 1024)
        sh_buf_dispose(&u->tls_out);
    return rc;
}

static void uconn_closed(uv_handle_t *h)
{
    sh_uconn_t *u = h->data;
    if (--u->closing_handles == 0) {
        sh_buf_dispose(&u->in);
        sh_upssl_destroy(u->tls);
        sh_buf_dispose(&u->tls_out);
        sh_buf_dispose(&u->plain);
        sh_free(u);
    }
}

static void uconn_close(sh_uconn_t *u)
{
    if (u->idle) {
        sh_list_remove(&u->link);
        u->ups->nidle--;
        u->idle = 0;
    }
    u->p = NULL;
    if (u->closing)
        return;
    u->closing = 1;
    u->closing_handles = 1;
    sh_timers_remove(&u->tq);
    if (u->tls != NULL) {
        /* our close_notify (nginx's SSL_shutdown), when the socket takes it
         * now: never waits for the server's nor for a full socket buffer */
        sh_buf_t cn = {0};
        if (sh_upssl_shutdown(u->tls, &cn)) {
            uv_buf_t b = uv_buf_init(cn.data, (unsigned)cn.len);
            (void)uv_try_write((uv_stream_t *)&u->tcp, &b, 1);
        }
        sh_buf_dispose(&cn);
    }
    uv_close((uv_handle_t *)&u->tcp, uconn_closed);
}

/* ---- the pool */

static void pool_put(sh_uconn_t *u)
{
    sh_ups_rt_t *rt = u->ups;
    const sh_upstream_t *uc = rt->conf;
    u->p = NULL;
    if (uc->keepalive == 0 || u->w->stopping || u->in.len > 0 ||
        (uc->keepalive_requests > 0 && u->nrequests >= (uint32_t)uc->keepalive_requests)) {
        uconn_close(u);
        return;
    }
    if (rt->nidle >= uc->keepalive) { /* drop the least recently used */
        sh_uconn_t *old = container_of(rt->idle.prev, sh_uconn_t, link);
        uconn_close(old);
    }
    sh_list_insert_head(&rt->idle, &u->link);
    rt->nidle++;
    u->idle = 1;
    /* reading stays on (up_read_cb sees an idle connection), so taking it
     * from the pool costs no epoll_ctl */
    if (!u->reading) {
        u->reading = 1;
        uv_read_start((uv_stream_t *)&u->tcp, sh_worker_alloc_cb, up_read_cb);
    }
    up_timer(u, uc->keepalive_timeout);
}

static sh_uconn_t *pool_get(sh_ups_rt_t *rt, int peer, uint64_t key)
{
    for (sh_link_t *l = rt->idle.next; l != &rt->idle; l = l->next) {
        sh_uconn_t *u = container_of(l, sh_uconn_t, link);
        if (u->peer != peer || u->key != key)
            continue;
        sh_list_remove(&u->link);
        rt->nidle--;
        u->idle = 0;
        sh_timers_remove(&u->tq);
        return u;
    }
    return NULL;
}

/* ---- failure and retry */

enum { FAIL_ERROR, FAIL_TIMEOUT, FAIL_INVALID, FAIL_STATUS };

/* ---- $upstream_* bookkeeping: one entry per try */

static void append_secs(sh_buf_t *b, uint64_t ms)
{
    sh_buf_append_u64(b, ms / 1000);
    char frac[4] = {'.', (char)('0' + ms % 1000 / 100), (char)('0' + ms % 100 / 10),
                    (char)('0' + ms % 10)};
    sh_buf_append(b, frac, 4);
}

static void try_begin(sh_proxy_req_t *p)
{
    sh_request_t *r = p->r;
    if (r->up_addr.len > 0) {
        sh_buf_append(&r->up_addr, ", ", 2);
        sh_buf_append(&r->up_status, ", ", 2);
        sh_buf_append(&r->up_connect_time, ", ", 2);
        sh_buf_append(&r->up_header_time, ", ", 2);
        sh_buf_append(&r->up_response_time, ", ", 2);
        sh_buf_append(&r->up_response_length, ", ", 2);
    }
    p->resp_body_len = 0;
    const sh_ups_server_t *srv = &p->ups->conf->servers[p->peer];
    if (srv->resolve && p->ups->raddr[p->peer].len > 0) {
        /* the resolved peer's address, as NGINX Plus ("IP:port") */
        const struct sockaddr_storage *a = &p->ups->raddr[p->peer].addr;
        char ip[INET6_ADDRSTRLEN + 16];
        if (a->ss_family == AF_INET6) {
            ip[0] = '[';
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, ip + 1,
                      INET6_ADDRSTRLEN);
            strcat(ip, "]");
        } else {
            inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, ip, sizeof(ip));
        }
        sh_buf_appendf(&r->up_addr, "%s:%u", ip, (unsigned)srv->port);
    } else {
        sh_buf_appends(&r->up_addr, srv->name);
    }
    p->try_start = now_ms(p);
    p->connect_ms = p->header_ms = UINT64_MAX;
    p->try_open = 1;
}

/* fail: 0, or the try got no response: 1 an error, 2 a timeout (metrics) */
static void try_end_fail(sh_proxy_req_t *p, int status, int fail)
{
    if (!p->try_open)
        return;
    p->try_open = 0;
    sh_request_t *r = p->r;
    uint64_t now = now_ms(p);
    sh_metrics_upstream_try(p->ups->conf->metrics_id, p->ups->conf->servers[p->peer].metrics_id,
                            status, fail, now - p->try_start, p->tries > 0);
    if (status > 0)
        sh_buf_append_u64(&r->up_status, (uint64_t)status);
    else
        sh_buf_append(&r->up_status, "-", 1);
    if (p->connect_ms != UINT64_MAX)
        append_secs(&r->up_connect_time, p->connect_ms - p->try_start);
    else
        sh_buf_append(&r->up_connect_time, "-", 1);
    if (p->header_ms != UINT64_MAX)
        append_secs(&r->up_header_time, p->header_ms - p->try_start);
    else
        sh_buf_append(&r->up_header_time, "-", 1);
    append_secs(&r->up_response_time, now - p->try_start);
    sh_buf_append_u64(&r->up_response_length, p->resp_body_len);
}

static void try_end(sh_proxy_req_t *p, int status)
{
    try_end_fail(p, status, 0);
}

/* ---- failure and retry (proxy_next_upstream) */

static int is_idempotent(const sh_request_t *r)
{
    switch (r->h.method_id) {
    case SH_HTTP_GET:
    case SH_HTTP_HEAD:
    case SH_HTTP_PUT:
    case SH_HTTP_DELETE:
    case SH_HTTP_OPTIONS:
    case SH_HTTP_TRACE:
        return 1;
    default:
        return 0;
    }
}

/*
 * Whether a failed try may be retried on another server: the kind is in
 * proxy_next_upstream, nothing reached the client, the request can be
 * sent again (nothing of its body was consumed, or it has none), a
 * non-idempotent request only when nothing of it reached the server or
 * `non_idempotent` is set, and the tries and time limits allow it.
 */
static int may_retry(sh_proxy_req_t *p, int kind_bit, int stale)
{
    sh_request_t *r = p->r;
    const proxy_loc_t *c = p->conf;
    if (r->resp_started || r->c->w->stopping)
        return 0;
    if (!stale && !(c->next_upstream & kind_bit))
        return 0;
    int nothing_sent = p->state == P_CONNECTING;
    int has_body = r->h.content_length > 0 || r->h.chunked;
    if (!nothing_sent) {
        if (has_body && !r->rb_complete && (r->body_received > 0 || p->req_body_sent > 0))
            return 0; /* streamed away: it cannot be sent again */
        /* RFC 9110 9.2.2 / 9112 9.3.1: a non-idempotent request that may
         * have reached the server is not sent again, even on a pooled
         * connection that looked stale: the server may have applied it */
        if (!is_idempotent(r) && !(c->next_upstream & NU_NON_IDEMPOTENT))
            return 0;
    }
    if (c->next_upstream_tries > 0 && p->tries >= c->next_upstream_tries)
        return 0;
    if (c->next_upstream_timeout > 0 && now_ms(p) - r->start_ms >= c->next_upstream_timeout)
        return 0;
    /* every server tried once (a stale pooled connection does not count) */
    return p->tries < (int)p->ups->conf->nservers + p->stale_retries;
}

/* nginx's "upstream: \"http://10.0.1.1:8000/x\"": the server and the URI
 * of the request line sent to it (the head kept for retries). */
static const char *up_url(const sh_proxy_req_t *p, int peer, char *out, size_t len)
{
    const char *h = p->head.data, *sp = h ? memchr(h, ' ', p->head.len) : NULL;
    const char *end = sp ? memchr(sp + 1, ' ', p->head.len - (size_t)(sp + 1 - h)) : NULL;
    int n = end ? (int)(end - sp - 1) : 0;
    snprintf(out, len, "%s://%s%.*s", p->ssl ? "https" : "http", p->ups->conf->servers[peer].name,
             n, n ? sp + 1 : "");
    return out;
}

/* What the proxy was doing, in nginx's words. */
static const char *up_doing(const sh_proxy_req_t *p)
{
    return p->state == P_CONNECTING && p->u != NULL && p->u->tls != NULL
               ? "while SSL handshaking to upstream"
           : p->state == P_CONNECTING ? "while connecting to upstream"
           : p->state == P_SENDING    ? "while sending request to upstream"
           : p->state == P_BODY       ? "while reading upstream"
                                      : "while reading response header from upstream";
}

/* r->up_hooks->answer (the cache: use_stale, revalidation): status is the
 * upstream's, or SH_UP_* when no server is left. When the hook takes r,
 * the upstream is let go (as intercept() does) and the hook's respond()
 * answers r. Returns 1 then. */
static int hook_answer(sh_proxy_req_t *p, int status)
{
    sh_request_t *r = p->r;
    const sh_up_hooks_t *hk = r->up_hooks;
    if (hk == NULL || hk->answer == NULL ||
        !hk->answer(r, status, status > 0 ? p->resp.headers : NULL,
                    status > 0 ? p->resp.nheaders : 0))
        return 0;
    if (p->u != NULL) {
        try_end(p, status);
        sh_upstream_done(p->ups, p->peer, 0, now_ms(p));
        sh_uconn_t *u = p->u;
        p->u = NULL;
        uconn_close(u);
    }
    sh_proxy_detach(r);
    hk->respond(r);
    return 1;
}

static void up_fail(sh_proxy_req_t *p, int kind, const char *what)
{
    sh_request_t *r = p->r;
    sh_uconn_t *u = p->u;
    /* A pooled connection that fails before any response byte was most
     * likely closed by the server while idle: the pool's fault, not the
     * server's, and safe to send again once (RFC 9112 9.3.1). */
    int stale = p->reused && !p->got_bytes && kind == FAIL_ERROR && p->stale_retries < 2;
    const sh_ups_server_t *srv = &p->ups->conf->servers[p->peer];
    char url[512];
    (void)srv;
    sh_req_log(stale ? SH_LOG_INFO : SH_LOG_ERR, NULL, r, up_url(p, p->peer, url, sizeof(url)),
               "%s %s%s", what, up_doing(p), stale ? " (a pooled connection: retried)" : "");
    if (u != NULL) {
        p->u = NULL;
        uconn_close(u);
    }
    try_end_fail(p, kind == FAIL_TIMEOUT ? 504 : 502, kind == FAIL_TIMEOUT ? 2 : 1);
    sh_upstream_done(p->ups, p->peer, !stale, now_ms(p));
    int bit = kind == FAIL_TIMEOUT   ? NU_TIMEOUT
              : kind == FAIL_INVALID ? NU_INVALID_HEADER
                                     : NU_ERROR;
    p->tries++;
    if (stale) {
        p->stale_retries++;
        p->no_pool = 1;
    } else {
        p->tried |= 1ull << (p->peer % 64);
    }
    if (may_retry(p, bit, stale)) {
        connect_next(p);
        return;
    }
    if (!r->resp_started && hook_answer(p, kind == FAIL_TIMEOUT   ? SH_UP_TIMEOUT
                                           : kind == FAIL_INVALID ? SH_UP_INVALID
                                                                  : SH_UP_ERROR))
        return;
    if (!r->resp_started)
        sh_request_respond(r, kind == FAIL_TIMEOUT ? 504 : 502, NULL, NULL, 0, NULL);
    else
        sh_request_abort(r);
}

/* An upstream response whose status is listed in proxy_next_upstream
 * (http_500 ...): retried when allowed, else passed to the client. */
/* proxy_intercept_errors on: an upstream status of 300 or more that has
 * an error_page is answered with the page instead (nginx); the upstream
 * connection is closed (its body is not read). Returns 1 when it did. */
static int intercept(sh_proxy_req_t *p)
{
    sh_request_t *r = p->r;
    int status = p->resp.status;
    const sh_error_pages_t *ep;
    if (!p->conf->intercept_errors || status < 300 || (ep = sh_request_error_pages(r)) == NULL ||
        !ep->has(r, status))
        return 0;
    try_end(p, status);
    sh_upstream_done(p->ups, p->peer, 0, now_ms(p));
    sh_uconn_t *u = p->u;
    p->u = NULL;
    uconn_close(u);
    sh_proxy_detach(r);
    sh_phase_answer(r, status);
    return 1;
}

static int status_retry(sh_proxy_req_t *p, int status)
{
    int bit = sh_next_upstream_status(status);
    if (bit == 0 || !(p->conf->next_upstream & bit))
        return 0;
    p->tries++;
    p->tried |= 1ull << (p->peer % 64);
    if (!may_retry(p, bit, 0)) {
        p->tries--;
        return 0;
    }
    sh_uconn_t *u = p->u;
    p->u = NULL;
    uconn_close(u);
    try_end(p, status);
    /* nginx counts 5xx/429 kinds as failures of the server, not 403/404 */
    sh_upstream_done(p->ups, p->peer, bit != NU_HTTP_403 && bit != NU_HTTP_404, now_ms(p));
    char url[512];
    sh_req_log(SH_LOG_WARN, NULL, p->r, up_url(p, p->peer, url, sizeof(url)),
               "upstream answered %d, trying the next server", status);
    connect_next(p);
    return 1;
}

/* The worker's up_timers expire: an idle pooled connection past its
 * keepalive_timeout closes; an active one failed its connect or read
 * timeout. */
void sh_uconn_timeout(sh_timeq_entry_t *e)
{
    sh_uconn_t *u = container_of(e, sh_uconn_t, tq);
    sh_proxy_req_t *p = u->p;
    if (p == NULL) {
        uconn_close(u);
        return;
    }
    up_fail(p, FAIL_TIMEOUT, "upstream timed out (110: Connection timed out)");
}

/* ---- response */

static void response_complete(sh_proxy_req_t *p)
{
    sh_request_t *r = p->r;
    sh_uconn_t *u = p->u;
    p->state = P_DONE;
    p->u = NULL;
    try_end(p, p->resp.status);
    if (u != NULL) {
        sh_timers_remove(&u->tq);
        u->p = NULL;
        sh_upstream_done(p->ups, p->peer, 0, now_ms(p));
        if (p->up_keep && p->req_body_done && p->conf->http_version == 11)
            pool_put(u);
        else
            uconn_close(u);
    }
    if (!p->req_body_done)
        r->keepalive = 0; /* the rest of the request body was never read */
    sh_request_finish(r);
}

/* After bytes went to the client: stop reading the upstream while the
 * client's queue is above the high mark (resumed by
 * sh_proxy_client_drained). */
static void client_backpressure(sh_proxy_req_t *p)
{
    if (!p->up_paused && p->u != NULL && sh_request_out_queued(p->r) > SH_WBUF_HIGH) {
        p->up_paused = 1;
        p->u->reading = 0;
        uv_read_stop((uv_stream_t *)&p->u->tcp);
        /* while the client is the slow side, send_timeout applies to it
         * and proxy_read_timeout does not run against the upstream */
        sh_timers_remove(&p->u->tq);
        sh_request_send_timer(p->r);
    }
}

void sh_proxy_client_drained(sh_request_t *r)
{
    sh_proxy_req_t *p = r->proxy;
    if (p != NULL && p->up_paused && p->u != NULL) {
        p->up_paused = 0;
        p->u->reading = 1;
        uv_read_start((uv_stream_t *)&p->u->tcp, sh_worker_alloc_cb, up_read_cb);
        up_timer(p->u, p->conf->read_timeout);
    }
}

static int in_list(char *const *v, size_t n, const sh_http1_header_t *h)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(v[i]) == h->name_len && strncasecmp(v[i], h->name, h->name_len) == 0)
            return 1;
    return 0;
}

/* proxy_hide_header, and nginx's default hidden set (Date, Server,
 * X-Pad, X-Accel-*) unless proxy_pass_header names the field. */
static int is_hidden(const proxy_loc_t *c, const sh_http1_header_t *h, int kind)
{
    if (c->nhide > 0 && in_list(c->hide, c->nhide, h))
        return 1;
    if (kind == HK_SERVER || kind == HK_DATE || kind == HK_X_HIDDEN)
        return c->npassh == 0 || !in_list(c->passh, c->npassh, h);
    return 0;
}

static int flush_head(sh_proxy_req_t *p);

/* The client's response head from the upstream's: fields filtered
 * (hop-by-hop, framing, proxy_hide_header), framing decided by the
 * client's protocol (conn.c / http2.c). */
static int send_response_head(sh_proxy_req_t *p)
{
    sh_request_t *r = p->r;
    sh_http1_response_t *rs = &p->resp;
    int status = rs->status;
    /* a HEAD sent upstream as GET (r->up_hooks->method): the body is read
     * and passed to the body filters (the cache), not to the client */
    int conv = r->head_only && r->up_hooks != NULL && r->up_hooks->method != NULL;
    p->head_conv = conv;
    int no_body = (r->head_only && !conv) || status == 204 || status == 304 || status < 200;
    sh_http1_header_t hs[MAX_RESP_HEADERS];
    size_t n = 0;
    if (r->c->w->rt->http
            ->want_fields) { /* $upstream_http_NAME: the fields as the server sent them */
        r->up_fields.len = 0;
        for (size_t i = 0; i < rs->nheaders; i++) {
            sh_buf_append(&r->up_fields, rs->headers[i].name, rs->headers[i].name_len);
            sh_buf_append(&r->up_fields, ": ", 2);
            sh_buf_append(&r->up_fields, rs->headers[i].value, rs->headers[i].value_len);
            sh_buf_append(&r->up_fields, "\r\n", 2);
        }
    }
    /* proxy_pass_header Server/Date: the upstream's replaces ours */
    unsigned flags = 0;
    if (p->conf->npassh > 0)
        for (size_t i = 0; i < rs->nheaders; i++) {
            const sh_http1_header_t *h = &rs->headers[i];
            int k = hdr_kind(h);
            if (k == HK_SERVER && !is_hidden(p->conf, h, k))
                flags |= SH_RESP_NO_SERVER;
            else if (k == HK_DATE && !is_hidden(p->conf, h, k))
                flags |= SH_RESP_NO_DATE;
        }
    int conn_named = connection_names_fields(rs->headers, rs->nheaders);
    for (size_t i = 0; i < rs->nheaders; i++) {
        const sh_http1_header_t *h = &rs->headers[i];
        int k = hdr_kind(h);
        if (p->tunnel && (k == HK_UPGRADE || k == HK_CONNECTION)) {
            /* 101: the upgrade itself is what the client asked for */
        } else if (is_hop_by_hop_kind(k) || k == HK_CONTENT_LENGTH || is_hidden(p->conf, h, k) ||
                   (conn_named && named_in_connection(rs->headers, rs->nheaders, h))) {
            continue;
        }
        hs[n++] = *h;
    }
    p->rbody = (sh_body_t){.left = -1};
    int64_t length = -1;
    if (p->tunnel) {
        flags |= SH_RESP_TUNNEL;
    } else if (no_body) {
        if (rs->content_length >= 0 && (r->head_only || status == 304))
            length = rs->content_length;
        flags |= SH_RESP_NO_BODY;
        p->rbody.done = 1;
    } else if (rs->chunked) {
        p->rbody.chunked = 1;
        sh_http1_chunked_init(&p->rbody.chunk);
    } else if (rs->content_length >= 0) {
        length = rs->content_length;
        p->rbody.left = rs->content_length;
        if (rs->content_length == 0)
            p->rbody.done = 1;
    } else {
        p->rbody.until_close = 1;
        p->up_keep = 0;
    }
    if (conv && !no_body)
        flags |= SH_RESP_NO_BODY | SH_RESP_HELD; /* the client gets the head only, at the end */
    if (sh_response_start(r, status, rs->reason_phrase, rs->reason_len, hs, n, length, flags) != 0)
        return -1;
    /* sent with the first body bytes, or by flush_head() */
    if (p->rbody.done || p->tunnel)
        return flush_head(p);
    return 0;
}

static int flush_head(sh_proxy_req_t *p)
{
    if (sh_response_flush(p->r) != 0)
        return -1;
    client_backpressure(p);
    return 0;
}

/* Send one piece of response body. */
static int send_body(sh_proxy_req_t *p, const char *data, size_t len)
{
    if (len == 0 || (p->head_conv && p->r->nbf == 0))
        return 0;
    p->resp_body_len += len;
    if (sh_response_body(p->r, data, len) != 0)
        return -1;
    client_backpressure(p);
    return 0;
}

/* The trailer fields of a chunked response (RFC 9112 7.1.2), from the
 * bytes the decoder consumed after the last data: an optional CRLF ending
 * the last chunk, the last-chunk line "0[;ext]", then field lines up to
 * the empty line. The decoder has validated them; here they are only
 * split. Returns the number of fields written to tr (at most max). */
static size_t split_trailers(const sh_buf_t *tail, sh_http1_header_t *tr, size_t max)
{
    const char *p = tail->data, *end = p + tail->len;
    size_t n = 0;
    int seen_last = 0;
    while (p < end && n < max) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            break;
        const char *le = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
        if (!seen_last) {
            if (le > p && *p == '0') /* the last-chunk line */
                seen_last = 1;
        } else if (le == p) {
            break; /* the empty line ends the trailer section */
        } else {
            const char *colon = memchr(p, ':', (size_t)(le - p));
            if (colon != NULL) {
                const char *v = colon + 1, *ve = le;
                while (v < ve && (*v == ' ' || *v == '\t'))
                    v++;
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                tr[n++] = (sh_http1_header_t){p, (size_t)(colon - p), v, (size_t)(ve - v)};
            }
        }
        p = eol + 1;
    }
    return n;
}

static int send_body_end(sh_proxy_req_t *p)
{
    if (p->rbody.chunked && p->tail.len > 0) {
        /* trailers are passed on (HTTP/2 as a trailing HEADERS frame, a
         * chunked HTTP/1.1 response after its last chunk) */
        sh_http1_header_t tr[32];
        size_t n = split_trailers(&p->tail, tr, 32);
        if (n > 0)
            return sh_response_end(p->r, tr, n);
    }
    return sh_response_end(p->r, NULL, 0);
}

/* Consume response bytes; returns bytes consumed or -1 after the request
 * was failed, aborted or completed (p is gone then). A failed send to the
 * client has closed the client connection, which freed p. */
static ssize_t response_data_inner(sh_proxy_req_t *p, const char *data, size_t len);

static ssize_t response_data(sh_proxy_req_t *p, const char *data, size_t len)
{
    ssize_t n = response_data_inner(p, data, len);
    /* p is alive when n >= 0: send a head still waiting for body bytes
     * (a HEAD sent as GET: its head goes with the end, once the body is
     * stored, so the client's next request finds the entry) */
    if (n >= 0 && !p->head_conv && flush_head(p) != 0)
        return -1;
    return n;
}

static ssize_t response_data_inner(sh_proxy_req_t *p, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len || (p->state == P_BODY && p->rbody.done)) {
        if (p->state == P_TUNNEL) {
            if (send_body(p, data + off, len - off) != 0)
                return -1;
            return (ssize_t)len;
        }
        if (p->state == P_SENDING || p->state == P_HEAD) {
            p->resp.headers = p->resp_headers;
            p->resp.max_headers = MAX_RESP_HEADERS;
            sh_http1_limits_t lim = {.max_head = MAX_RESP_HEAD};
            ssize_t n = sh_http1_parse_response(data + off, len - off, &p->resp, &lim);
            if (n == SH_EAGAIN) {
                if (len - off >= MAX_RESP_HEAD) {
                    up_fail(p, FAIL_INVALID, "upstream sent too big header");
                    return -1;
                }
                return (ssize_t)off;
            }
            if (n < 0) {
                up_fail(p, FAIL_INVALID, "upstream sent invalid header");
                return -1;
            }
            if (p->resp.status >= 100 && p->resp.status < 200 && p->resp.status != 101) {
                off += (size_t)n; /* interim responses are not passed on */
                continue;
            }
            p->header_ms = now_ms(p);
            if (p->resp.status == 101) {
                if (!p->r->h.upgrade) {
                    up_fail(p, FAIL_INVALID, "upstream sent 101 without an upgrade request");
                    return -1;
                }
                /* RFC 9110 15.2.2: from here on, bytes both ways (WebSocket) */
                p->tunnel = 1;
                p->up_keep = 0;
                if (send_response_head(p) != 0)
                    return -1;
                off += (size_t)n;
                p->state = P_TUNNEL;
                sh_request_start_tunnel(p->r);
                continue;
            }
            if (status_retry(p, p->resp.status))
                return -1;
            if (intercept(p))
                return -1; /* the upstream is let go; r answers with the error page */
            if (hook_answer(p, p->resp.status))
                return -1; /* likewise: a module (the cache) answers r */
            p->up_keep = p->resp.keep_alive && p->conf->http_version == 11;
            if (send_response_head(p) != 0)
                return -1; /* the client connection is closed, p is gone */
            off += (size_t)n;
            p->state = P_BODY;
            continue;
        }
        /* P_BODY */
        if (p->rbody.done) {
            if (off < len)
                p->up_keep = 0; /* bytes after the response: not reusable */
            if (send_body_end(p) != 0)
                return -1;
            response_complete(p);
            return -1;
        }
        const char *d = data + off;
        size_t avail = len - off;
        if (p->rbody.until_close) {
            if (send_body(p, d, avail) != 0)
                return -1;
            off = len;
        } else if (p->rbody.chunked) {
            const char *span = NULL;
            size_t span_len = 0;
            int done = 0;
            ssize_t n = sh_http1_chunked_decode(&p->rbody.chunk, d, avail, &span, &span_len, &done);
            if (n < 0) {
                char url[512];
                sh_req_log(SH_LOG_ERR, NULL, p->r, up_url(p, p->peer, url, sizeof(url)),
                           "upstream sent invalid chunked response while reading upstream");
                p->up_keep = 0;
                goto aborted;
            }
            off += (size_t)n;
            if (span_len > 0)
                p->tail.len = 0; /* decoding stopped right after the data */
            else if (p->tail.len + (size_t)n <= 96 * 1024) /* trailers are bounded (64 KiB) */
                sh_buf_append(&p->tail, d, (size_t)n);
            if (span_len > 0 && send_body(p, span, span_len) != 0)
                return -1;
            if (done)
                p->rbody.done = 1;
            else if (n == 0 && span_len == 0)
                return (ssize_t)off;
        } else {
            size_t take = avail < (uint64_t)p->rbody.left ? avail : (size_t)p->rbody.left;
            if (send_body(p, d, take) != 0)
                return -1;
            off += take;
            p->rbody.left -= (int64_t)take;
            if (p->rbody.left == 0)
                p->rbody.done = 1;
        }
    }
    return (ssize_t)off;
aborted:
    sh_request_abort(p->r);
    return -1;
}

static void up_tls_input(sh_uconn_t *u, const char *data, size_t len);
static void up_data(sh_uconn_t *u, const char *data, size_t nread, const uv_buf_t *buf);

static void up_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sh_uconn_t *u = s->data;
    sh_proxy_req_t *p = u->p;
    if (u->tls != NULL && nread > 0) {
        up_tls_input(u, buf->base, (size_t)nread);
        sh_worker_release_rbuf(u->w, buf);
        return;
    }
    if (nread == 0 || p == NULL) {
        sh_worker_release_rbuf(u->w, buf);
        /* data or EOF on an idle pooled connection: the server closed it
         * or misbehaved; it cannot carry a request any more */
        if (nread != 0 && !u->closing)
            uconn_close(u);
        return;
    }
    if (nread < 0) {
        sh_worker_release_rbuf(u->w, buf);
        if (p->state == P_TUNNEL) {
            p->u = NULL;
            uconn_close(u);
            try_end(p, 101);
            sh_upstream_done(p->ups, p->peer, 0, now_ms(p));
            sh_request_end_tunnel(p->r);
            return;
        }
        if (p->state == P_BODY && p->rbody.until_close && nread == UV_EOF) {
            p->rbody.done = 1;
            response_data(p, "", 0);
            return;
        }
        if (p->state == P_BODY) {
            char url[512];
            sh_req_log(SH_LOG_ERR, NULL, p->r, up_url(p, p->peer, url, sizeof(url)),
                       "upstream prematurely closed connection while reading upstream");
            p->u = NULL;
            uconn_close(u);
            sh_upstream_done(p->ups, p->peer, 1, now_ms(p));
            sh_request_abort(p->r);
            return;
        }
        up_fail(p, FAIL_ERROR,
                nread == UV_EOF ? "upstream prematurely closed connection"
                                : uv_strerror((int)nread));
        return;
    }
    up_data(u, buf->base, (size_t)nread, buf);
}

/* Response bytes (plaintext) for u's request. rbuf: the worker's read
 * buffer that holds data, released here as soon as it is not needed, or
 * NULL. */
static void up_data(sh_uconn_t *u, const char *data, size_t nread, const uv_buf_t *buf)
{
    sh_proxy_req_t *p = u->p;
    p->got_bytes = 1;
    p->r->up_bytes_received += (uint64_t)nread;
    up_timer(u, p->conf->read_timeout);
    /* Process from the shared read buffer when nothing is pending, else
     * from the connection's own buffer, detached while it is processed so
     * the connection can go back to the pool empty. */
    sh_buf_t pending = u->in;
    size_t len = nread;
    if (pending.len > 0) {
        u->in = (sh_buf_t){0};
        sh_buf_append(&pending, data, len);
        if (buf != NULL)
            sh_worker_release_rbuf(u->w, buf);
        buf = NULL;
        data = pending.data;
        len = pending.len;
    }
    ssize_t used = response_data(p, data, len);
    if (used >= 0 && (size_t)used < len)
        sh_buf_append(&u->in, data + used, len - (size_t)used);
    if (pending.len > 0)
        sh_buf_dispose(&pending);
    if (buf != NULL)
        sh_worker_release_rbuf(u->w, buf);
}

static void start_exchange(sh_proxy_req_t *p);

static void tls_sent_cb(uv_stream_t *s, int status)
{
    (void)s;
    (void)status; /* handshake bytes: a write error shows up as a read error */
}

/* Ciphertext from a TLS upstream: the handshake while it runs, then
 * response bytes (decrypted) or, on an idle pooled connection, what the
 * server sends between requests (TLS 1.3 tickets are kept; anything else
 * ends the connection). */
static void up_tls_input(sh_uconn_t *u, const char *data, size_t len)
{
    sh_proxy_req_t *p = u->p;
    const char *why;
    u->tls_out.len = 0;
    if (p != NULL && p->state == P_CONNECTING) {
        int rc = sh_upssl_handshake(u->tls, data, len, &u->tls_out, &why);
        uv_buf_t b = uv_buf_init(u->tls_out.data, (unsigned)u->tls_out.len);
        if (rc >= 0 && b.len > 0 && sh_stream_send((uv_stream_t *)&u->tcp, &b, 1, tls_sent_cb) != 0)
            rc = -1, why = "send() to upstream failed";
        if (rc < 0) {
            up_fail(p, FAIL_ERROR, why);
            return;
        }
        if (rc == 1) {
            p->connect_ms = now_ms(p);
            start_exchange(p);
        }
        return;
    }
    u->plain.len = 0;
    int rc = sh_upssl_read(u->tls, data, len, &u->plain, &u->tls_out, &why);
    if (u->tls_out.len > 0 && !u->closing) {
        uv_buf_t b = uv_buf_init(u->tls_out.data, (unsigned)u->tls_out.len);
        (void)sh_stream_send((uv_stream_t *)&u->tcp, &b, 1, tls_sent_cb);
    }
    if (p == NULL) {
        if ((rc != 0 || u->plain.len > 0) && !u->closing)
            uconn_close(u);
        return;
    }
    if (u->plain.len > 0) {
        up_data(u, u->plain.data, u->plain.len, NULL);
        if (u->p != p || u->closing)
            return; /* the response completed or failed */
    }
    if (rc == SH_ECLOSED) {
        /* close_notify: the end of the stream, as a TCP EOF */
        uv_buf_t none = uv_buf_init(NULL, 0);
        up_read_cb((uv_stream_t *)&u->tcp, UV_EOF, &none);
    } else if (rc != 0) {
        up_fail(p, FAIL_ERROR, why);
    }
    if (u->plain.cap > 256 * 1024)
        sh_buf_dispose(&u->plain);
}

/* ---- request */

static void up_written_cb(uv_stream_t *s, int status)
{
    sh_uconn_t *u = s->data;
    sh_proxy_req_t *p = u->p;
    if (p == NULL || status < 0)
        return; /* a write error shows up as a read error too */
    if ((!p->req_body_done || p->tunnel) && s->write_queue_size < SH_WBUF_LOW)
        sh_request_body_resume(p->r);
}

static void start_exchange(sh_proxy_req_t *p)
{
    sh_uconn_t *u = p->u;
    sh_request_t *r = p->r;
    p->state = P_SENDING;
    u->nrequests++;
    uv_buf_t b = uv_buf_init(p->head.data, (unsigned)p->head.len);
    if (up_send(u, &b, 1, up_written_cb) != 0) {
        up_fail(p, FAIL_ERROR, "send() to upstream failed");
        return;
    }
    if (!u->reading) {
        u->reading = 1;
        uv_read_start((uv_stream_t *)&u->tcp, sh_worker_alloc_cb, up_read_cb);
    }
    up_timer(u, p->conf->read_timeout);
    if (!p->conf->pass_body || p->conf->set_body != NULL) {
        p->req_body_done = 1; /* no client body goes upstream */
        return;
    }
    if (r->rb.len > 0) {
        /* the part of the body read before the server was chosen */
        p->req_body_sent = 0;
        sh_proxy_body(r, r->rb.data, r->rb.len, r->rb_complete);
    }
    if (r->rb_complete || (r->h.content_length <= 0 && !r->h.chunked))
        p->req_body_done = 1;
    else
        sh_request_body_resume(r); /* the client connection feeds the rest */
}

static void connected_cb(uv_connect_t *req, int status)
{
    sh_uconn_t *u = req->data;
    if (status == UV_ECANCELED)
        return;
    sh_proxy_req_t *p = u->p;
    if (p == NULL) {
        if (!u->closing)
            uconn_close(u);
        return;
    }
    if (status < 0) {
        char what[128];
        snprintf(what, sizeof(what), "connect() failed (%s)", uv_strerror(status));
        up_fail(p, FAIL_ERROR, what);
        return;
    }
    u->connected = 1;
    uv_tcp_nodelay(&u->tcp, 1);
    if (p->ssl) {
        /* TLS: the handshake, within proxy_connect_timeout (nginx) */
        u->tls = sh_upssl_create(p->r, p->ups, p->peer);
        if (u->tls == NULL) {
            up_fail(p, FAIL_ERROR, "SSL_new() failed");
            return;
        }
        u->reading = 1;
        uv_read_start((uv_stream_t *)&u->tcp, sh_worker_alloc_cb, up_read_cb);
        up_tls_input(u, "", 0);
        return;
    }
    p->connect_ms = now_ms(p);
    start_exchange(p);
}

static void ups_resolved(void *data, int status, const sh_resolved_t *res);
static void set_raddr(sh_proxy_req_t *p, int peer, int status, const sh_resolved_t *res);

/* A `resolve` server's addresses (upstream.h), its first slot `first`: 1
 * when they are known now (maybe none), 0 when the request waits for the
 * resolver (ups_resolved goes on). The resolver is asked at most once a
 * second per worker; its cache keeps answers for their TTL (or valid=). */
static int resolve_peer(sh_proxy_req_t *p, int first)
{
    sh_ups_raddr_t *ra = &p->ups->raddr[first];
    uint64_t now = now_ms(p);
    if (ra->checked != 0 && now - ra->checked < 1000)
        return 1;
    const sh_ups_server_t *srv = &p->ups->conf->servers[first];
    char host[sizeof(srv->name)];
    snprintf(host, sizeof(host), "%s", srv->name);
    char *colon = strrchr(host, ':');
    if (colon != NULL && strchr(host, ']') == NULL)
        *colon = '\0';
    sh_resolved_t res;
    p->wait_peer = first;
    int rc = sh_resolve(p->r, host, &res, ups_resolved, p, &p->rjob);
    if (rc == 0)
        return 0;
    set_raddr(p, first, rc == 1 ? 0 : rc, rc == 1 ? &res : NULL);
    return 1;
}

/* A slot's address changed: its idle connections go. */
static void drop_slot(void *data, size_t slot)
{
    sh_ups_rt_t *rt = data;
    for (sh_link_t *l = rt->idle.next; l != &rt->idle;) {
        sh_uconn_t *u = container_of(l, sh_uconn_t, link);
        l = l->next;
        if (u->peer == (int)slot)
            uconn_close(u);
    }
}

static void set_raddr(sh_proxy_req_t *p, int first, int status, const sh_resolved_t *res)
{
    p->ups->raddr[first].checked = now_ms(p);
    if (status != 0 || res == NULL || res->n == 0)
        return; /* the last addresses stay, if any (nginx keeps serving them) */
    uint16_t port = htons(p->ups->conf->servers[first].port);
    struct sockaddr_storage all[SH_UPS_RADDR_MAX];
    socklen_t lens[SH_UPS_RADDR_MAX];
    size_t n = 0;
    for (size_t i = 0; i < res->n && n < SH_UPS_RADDR_MAX; i++) {
        struct sockaddr_storage *a = &all[n];
        *a = res->a[i];
        if (a->ss_family == AF_INET)
            ((struct sockaddr_in *)a)->sin_port = port;
        else
            ((struct sockaddr_in6 *)a)->sin6_port = port;
        lens[n++] = res->len[i];
    }
    sh_upstream_readdr(p->ups, (size_t)first, all, lens, n, drop_slot, p->ups);
}

static void ups_resolved(void *data, int status, const sh_resolved_t *res)
{
    sh_proxy_req_t *p = data;
    p->rjob = NULL;
    set_raddr(p, p->wait_peer, status, res);
    connect_next(p);
}

static void connect_next(sh_proxy_req_t *p)
{
    sh_worker_t *w = p->r->c->w;
    /* `resolve` servers: their addresses (slots) brought up to date first */
    for (size_t i = 0; p->ups->raddr != NULL && i < p->ups->conf->nservers; i++) {
        const sh_ups_server_t *sv = &p->ups->conf->servers[i];
        if (sv->resolve && sv->rslot == 0 && resolve_peer(p, (int)i) == 0)
            return; /* ups_resolved goes on */
    }
    int peer = sh_upstream_pick(p->ups, p->tried, sh_worker_now(w), p->r);
    if (peer < 0) {
        char url[512];
        snprintf(url, sizeof(url), "http://%s", p->ups->conf->name);
        sh_req_log(SH_LOG_ERR, NULL, p->r, url, "no live upstreams while connecting to upstream");
        sh_request_respond(p->r, 502, NULL, NULL, 0, NULL);
        return;
    }
    p->peer = peer;
    p->got_bytes = 0;
    p->state = P_CONNECTING;
    try_begin(p);
    uint64_t key = p->ssl ? sh_upssl_key(p->r) : 0;
    sh_uconn_t *u = p->no_pool ? NULL : pool_get(p->ups, peer, key);
    if (u != NULL) {
        p->reused = 1;
        p->u = u;
        u->p = p;
        p->connect_ms = p->try_start;
        start_exchange(p);
        return;
    }
    p->reused = 0;
    u = sh_new(sh_uconn_t);
    u->w = w;
    u->ups = p->ups;
    u->peer = peer;
    u->key = key;
    u->p = p;
    sh_list_init(&u->link);
    uv_tcp_init(&w->loop, &u->tcp);
    sh_timeq_entry_init(&u->tq);
    u->tcp.data = u;
    u->creq.data = u;
    p->u = u;
    const sh_ups_server_t *srv = &p->ups->conf->servers[peer];
    const struct sockaddr *sa = (const struct sockaddr *)&srv->addr;
    if (srv->resolve) /* the slot's address */
        sa = (const struct sockaddr *)&p->ups->raddr[peer].addr;
    int rc = uv_tcp_connect(&u->creq, &u->tcp, sa, connected_cb);
    if (rc != 0) {
        char what[128];
        snprintf(what, sizeof(what), "connect() failed (%s)", uv_strerror(rc));
        up_fail(p, FAIL_ERROR, what);
        return;
    }
    up_timer(u, p->conf->connect_timeout);
}

/* ---- proxy_pass with variables */

static void dyn_go(sh_proxy_req_t *p, const sh_resolved_t *res, int port)
{
    sh_request_t *r = p->r;
    p->ups = sh_resolver_ups(r->c->w, res, port);
    if (p->ups == NULL) {
        sh_request_respond(r, 502, NULL, NULL, 0, NULL);
        return;
    }
    build_request_head(p);
    connect_next(p);
}

static void dyn_resolved(void *data, int status, const sh_resolved_t *res)
{
    sh_proxy_req_t *p = data;
    p->rjob = NULL;
    const char *host = p->dyn;
    const char *colon = strrchr(host, ':');
    int port = colon != NULL && colon[1] != ']' ? atoi(colon + 1) : p->ssl ? 443 : 80;
    if (status != 0) {
        sh_req_log(SH_LOG_ERR, NULL, p->r, NULL, "%.*s could not be resolved (%s)",
                   (int)(colon != NULL ? (size_t)(colon - host) : strlen(host)), host,
                   status == SH_ETIMEDOUT ? "110: Operation timed out" : "3: Host not found");
        sh_request_respond(p->r, 502, NULL, NULL, 0, NULL);
        return;
    }
    dyn_go(p, res, port);
}

/* The URL of this request: an upstream group by name, an address, or a
 * name the location's resolver finds (the request waits for it). */
static void dyn_start(sh_proxy_req_t *p)
{
    sh_request_t *r = p->r;
    const proxy_loc_t *c = p->conf;
    r->scratch.len = 0;
    sh_cv_eval(c->pass_cv, r, &r->scratch);
    const char *u = r->scratch.data ? r->scratch.data : "";
    size_t ul = r->scratch.len;
    size_t skip = ul >= 7 && strncasecmp(u, "http://", 7) == 0    ? 7
                  : ul >= 8 && strncasecmp(u, "https://", 8) == 0 ? 8
                                                                  : 0;
    if (skip == 0) {
        sh_req_log(SH_LOG_ERR, NULL, r, NULL, "invalid URL prefix in \"%.*s\"", (int)ul, u);
        sh_request_respond(r, 500, NULL, NULL, 0, NULL);
        return;
    }
    p->ssl = skip == 8; /* the location has a TLS context for this (proxy_ssl.c) */
    const char *hp = u + skip, *end = u + ul;
    const char *slash = memchr(hp, '/', (size_t)(end - hp));
    size_t hl = (size_t)((slash ? slash : end) - hp);
    size_t uril = slash ? (size_t)(end - slash) : 0;
    if (hl == 0 || hl > 255) {
        sh_req_log(SH_LOG_ERR, NULL, r, NULL, "no host in \"%.*s\"", (int)ul, u);
        sh_request_respond(r, 500, NULL, NULL, 0, NULL);
        return;
    }
    sh_free(p->dyn);
    p->dyn = sh_malloc(hl + 1 + uril + 1);
    memcpy(p->dyn, hp, hl);
    p->dyn[hl] = '\0';
    if (uril > 0)
        memcpy(p->dyn + hl + 1, slash, uril);
    p->dyn[hl + 1 + uril] = '\0';
    p->dyn_uri_len = uril;
    /* an upstream group named so (nginx looks there first) */
    const sh_upstream_main_t *um = sh_http_main_conf(r->c->w->rt->http, &sh_upstream_module);
    for (size_t i = 0; i < um->n; i++)
        if (!um->ups[i]->implicit && strcmp(um->ups[i]->name, p->dyn) == 0) {
            p->ups = &r->c->w->ups[i];
            build_request_head(p);
            connect_next(p);
            return;
        }
    char name[256];
    int port = p->ssl ? 443 : 80;
    const char *h = p->dyn;
    const char *colon = strrchr(h, ':');
    size_t nl = hl;
    if (h[0] == '[') {
        const char *rb = strchr(h, ']');
        nl = rb ? (size_t)(rb - h - 1) : hl;
        memcpy(name, h + 1, nl);
        if (rb && rb[1] == ':')
            port = atoi(rb + 2);
    } else {
        if (colon != NULL) {
            nl = (size_t)(colon - h);
            port = atoi(colon + 1);
        }
        memcpy(name, h, nl);
    }
    name[nl] = '\0';
    if (port <= 0 || port > 65535) {
        sh_request_respond(r, 502, NULL, NULL, 0, NULL);
        return;
    }
    sh_resolved_t res;
    memset(&res.a[0], 0, sizeof(res.a[0]));
    res.n = 1;
    struct sockaddr_storage *a = &res.a[0];
    if (inet_pton(AF_INET, name, &((struct sockaddr_in *)a)->sin_addr) == 1) {
        a->ss_family = AF_INET;
        res.len[0] = sizeof(struct sockaddr_in);
        dyn_go(p, &res, port);
        return;
    }
    if (inet_pton(AF_INET6, name, &((struct sockaddr_in6 *)a)->sin6_addr) == 1) {
        a->ss_family = AF_INET6;
        res.len[0] = sizeof(struct sockaddr_in6);
        dyn_go(p, &res, port);
        return;
    }
    int rc = sh_resolve(r, name, &res, dyn_resolved, p, &p->rjob);
    if (rc == 1) {
        dyn_go(p, &res, port);
    } else if (rc == SH_EUNSUPP) {
        sh_req_log(SH_LOG_ERR, NULL, r, NULL, "no resolver defined to resolve %s", name);
        sh_request_respond(r, 502, NULL, NULL, 0, NULL);
    } else if (rc < 0) {
        dyn_resolved(p, rc, NULL);
    }
    /* 0: dyn_resolved comes later */
}

void sh_proxy_start(sh_request_t *r)
{
    const proxy_loc_t *c = sh_http_loc_conf(r->loc, &sh_proxy_module);
    sh_worker_t *w = r->c->w;
    sh_proxy_req_t *p;
    if (w->nproxy_cache > 0) {
        p = w->proxy_cache[--w->nproxy_cache];
        memset(p, 0, P_ZERO);
        p->head.len = p->tail.len = 0;
    } else {
        p = sh_new(sh_proxy_req_t);
    }
    p->r = r;
    p->conf = c;
    p->ssl = c->ssl;
    r->proxy = p;
    if (c->pass_cv != NULL) {
        dyn_start(p);
        return;
    }
    p->ups = &r->c->w->ups[c->ups->index];
    if (r->h.chunked && c->http_version == 10 && !r->rb_complete && c->pass_body &&
        c->set_body == NULL) {
        sh_request_respond(r, 411, NULL, NULL, 0, NULL);
        return;
    }
    build_request_head(p);
    connect_next(p);
}

int sh_proxy_body(sh_request_t *r, const char *data, size_t len, int last)
{
    sh_proxy_req_t *p = r->proxy;
    if (p == NULL || p->u == NULL)
        return 0;
    uv_stream_t *s = (uv_stream_t *)&p->u->tcp;
    uv_buf_t bufs[4];
    unsigned n = 0;
    char hdr[20];
    if (len > 0) {
        if (p->req_chunked) {
            n += sh_chunk_bufs(bufs + n, hdr, data, len);
        } else {
            bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
        }
    }
    if (last) {
        if (p->req_chunked)
            bufs[n++] = uv_buf_init("0\r\n\r\n", 5);
        p->req_body_done = 1;
    }
    p->req_body_sent += len;
    if (n > 0 && up_send(p->u, bufs, n, up_written_cb) != 0)
        return 0; /* the read side reports the failure */
    return s->write_queue_size > SH_WBUF_HIGH;
}

int sh_proxy_tunnel_up(sh_request_t *r, const char *data, size_t len)
{
    sh_proxy_req_t *p = r->proxy;
    if (p == NULL || p->u == NULL || len == 0)
        return 0;
    uv_stream_t *s = (uv_stream_t *)&p->u->tcp;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    p->req_body_sent += len;
    up_timer(p->u, p->conf->read_timeout);
    if (up_send(p->u, &b, 1, up_written_cb) != 0)
        return 0; /* the read side reports the failure */
    return s->write_queue_size > SH_WBUF_HIGH;
}

void sh_proxy_detach(sh_request_t *r)
{
    sh_proxy_req_t *p = r->proxy;
    if (p == NULL)
        return;
    r->proxy = NULL;
    sh_resolve_cancel(p->rjob);
    p->rjob = NULL;
    sh_free(p->dyn);
    p->dyn = NULL;
    if (p->try_open)
        try_end(p, 0); /* the client went away first (nginx logs 499) */
    if (p->u != NULL) {
        sh_upstream_done(p->ups, p->peer, 0, now_ms(p));
        uconn_close(p->u);
        p->u = NULL;
    }
    sh_worker_t *w = r->c->w;
    if (w->nproxy_cache < SH_CACHE_MAX && !w->stopping && p->head.cap <= 8192) {
        w->proxy_cache[w->nproxy_cache++] = p;
        return;
    }
    proxy_dispose(p);
}

static void proxy_dispose(sh_proxy_req_t *p)
{
    sh_free(p->dyn);
    sh_buf_dispose(&p->head);
    sh_buf_dispose(&p->tail);
    sh_free(p);
}

void sh_proxy_cache_clear(sh_worker_t *w)
{
    sh_resolver_worker_close(w); /* the worker stops: no request waits for it */
    while (w->nproxy_cache > 0)
        proxy_dispose(w->proxy_cache[--w->nproxy_cache]);
}

void sh_proxy_close_pools(sh_worker_t *w)
{
    for (size_t i = 0; i < w->nups; i++) {
        sh_ups_rt_t *rt = &w->ups[i];
        while (!sh_list_empty(&rt->idle))
            uconn_close(container_of(rt->idle.next, sh_uconn_t, link));
    }
    for (size_t i = 0; i < sh_resolver_nups(w); i++) { /* proxy_pass with variables */
        sh_ups_rt_t *rt = sh_resolver_ups_at(w, i);
        while (!sh_list_empty(&rt->idle))
            uconn_close(container_of(rt->idle.next, sh_uconn_t, link));
    }
}
