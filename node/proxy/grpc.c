/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC to upstreams (issue 14): `grpc_pass` and its directives.
 *
 * Life of a call (worker thread):
 *   content handler -> pick a server (the upstream group's balancer) ->
 *   a backend HTTP/2 connection of this worker to that address with room
 *   for one more stream, or a new one -> submit the request as a stream
 *   (its DATA pulled from what the client sent, flow controlled both
 *   ways) -> response HEADERS to the client at once -> DATA as it comes
 *   (acknowledged to the backend only while the client takes it) ->
 *   trailers end the client's stream.
 *
 * Local failures are gRPC answers (HTTP 200, trailers-only, as nginx and
 * Envoy): no server, a refused or dead connection or a reset stream are
 * grpc-status 14 (UNAVAILABLE); the call's deadline (grpc-timeout) or
 * grpc_read_timeout / grpc_connect_timeout / grpc_send_timeout are 4
 * (DEADLINE_EXCEEDED). After the response head went out, the same status
 * goes in the trailers. grpc_next_upstream sends a call to the next server
 * by proxy_next_upstream's rules (a call that reached a server only with
 * non_idempotent, unless the server refused the stream); a call keeps the
 * first REPLAY_MAX bytes of its body so that it can be sent again. With
 * grpc_intercept_errors, a status with an error_page is answered with the
 * page. A client's RST_STREAM frees the request, whose cleanup resets the
 * backend stream (CANCEL); its trailers, if any, end the backend stream.
 *
 * grpcs:// (grpc_ssl_*, node/proxy/proxy_ssl.c): the TLS handshake (ALPN
 * h2) runs under grpc_connect_timeout, then the session's bytes go through
 * the TLS layer; closing sends close_notify.
 *
 * The request body reaches this module through r->sink (node.h's
 * sh_body_sink_t), which also tells it when the client drained the
 * response and when the request ends (detach).
 */
#include <ctype.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/pipeline.h"
#include "node/pipeline/reqlog.h"
#include "node/pipeline/vars.h"
#include "node/proxy/grpc.h"
#include "node/proxy/proxy.h"
#include "node/proxy/proxy_ssl.h"
#include "node/proxy/upstream.h"

#define MAX_FIELDS 128
#define REPLAY_MAX (64 * 1024) /* request body kept to send again to another server */

typedef struct {
    char *pass; /* as written, NULL when unset (this level only) */
    char *host;
    const sh_upstream_t *ups;
    const char *file;
    unsigned line;
    int ssl; /* grpcs:// (node/proxy/proxy_ssl.c, grpc_ssl_*) */
    uint64_t connect_timeout, send_timeout, read_timeout;
    int next_upstream; /* SH_NU_* (proxy.h) */
    int next_upstream_tries;
    uint64_t next_upstream_timeout;
    int intercept_errors;       /* grpc_intercept_errors */
    sh_proxy_header_t *headers; /* names in lower case */
    size_t nheaders;
    int headers_set;
    char **hide;
    size_t nhide;
    int hide_set;
} grpc_loc_t;

/* ------------------------------------------------------ runtime types -- */

typedef struct gconn_s gconn_t;

typedef struct greq_s {
    sh_request_t *r;
    const grpc_loc_t *conf;
    sh_ups_rt_t *rt;
    gconn_t *g;
    sh_link_t link; /* g->streams */
    int32_t sid;    /* 0: not submitted yet */
    int peer;       /* -1: none picked */
    uint64_t tried;
    uint64_t deadline; /* ms on the worker clock; 0: none */
    uv_timer_t timer;
    sh_buf_t body; /* request body bytes not yet taken by the session */
    size_t body_off;
    uint64_t body_sent;
    int tries;          /* servers tried so far */
    uint8_t replay : 1; /* body holds every byte from the first (REPLAY_MAX) */
    uint8_t sent : 1;   /* the request went to a server (a stream was submitted) */
    sh_buf_t rh, th;    /* response head / trailer fields: len,name,len,value */
    size_t nrh, nth;
    int status;
    size_t unconsumed; /* response DATA bytes not acknowledged yet */
    uint8_t body_eof : 1;
    uint8_t deferred : 1;      /* its data provider is deferred */
    uint8_t client_paused : 1; /* the client was told to stop sending */
    uint8_t want_resume : 1;   /* resume the client after the session wrote */
    uint8_t got_head : 1;
    uint8_t done : 1; /* the client's response ended (or r is gone) */
} greq_t;

struct gconn_s {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_timer_t timer; /* connect, then send timeout */
    sh_link_t link;   /* the worker's pool */
    sh_link_t streams;
    nghttp2_session *s;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[96];
    sh_buf_t wbuf, inflight;
    sh_upssl_t *tls; /* grpcs:// (NULL: h2c) */
    uint64_t tlskey; /* its settings' pool key (0: h2c) */
    sh_buf_t pbuf;   /* grpcs: plaintext out of the session, to encrypt */
    sh_buf_t plain;  /* grpcs: plaintext read, for the session */
    uint64_t send_timeout, connect_timeout;
    int nstreams;
    int handles; /* open libuv handles */
    uint8_t ready : 1;
    uint8_t dead : 1;
    uint8_t writing : 1;
    uint8_t in_recv : 1;
    uint8_t goaway : 1;
};

static _Thread_local sh_link_t gpool;
static _Thread_local int gpool_ready;
/* the worker's nghttp2 client callbacks and options, made on first use */
static _Thread_local nghttp2_session_callbacks *cbs;
static _Thread_local nghttp2_option *opt;

extern sh_conf_module_t sh_grpc_module;

/* ------------------------------------------------------ conf -- */

static void *grpc_create_loc(void)
{
    grpc_loc_t *c = sh_new(grpc_loc_t);
    c->connect_timeout = SH_CONF_UNSET_MSEC;
    c->send_timeout = SH_CONF_UNSET_MSEC;
    c->read_timeout = SH_CONF_UNSET_MSEC;
    c->next_upstream = SH_CONF_UNSET;
    c->next_upstream_tries = SH_CONF_UNSET;
    c->next_upstream_timeout = SH_CONF_UNSET_MSEC;
    c->intercept_errors = SH_CONF_UNSET;
    return c;
}

static void grpc_destroy_loc(void *conf)
{
    grpc_loc_t *c = conf;
    sh_free(c->pass);
    sh_free(c->host);
    if (c->headers_set)
        sh_proxy_headers_free(c->headers, c->nheaders);
    if (c->hide_set)
        sh_proxy_names_free(c->hide, c->nhide);
    sh_free(c);
}

static int grpc_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    grpc_loc_t *p = parent, *c = conf;
    if (!c->headers_set) {
        c->headers = p->headers;
        c->nheaders = p->nheaders;
    }
    if (!c->hide_set) {
        c->hide = p->hide;
        c->nhide = p->nhide;
    }
    SH_CONF_MERGE_MSEC(c->connect_timeout, p->connect_timeout, 60000);
    SH_CONF_MERGE_MSEC(c->send_timeout, p->send_timeout, 60000);
    SH_CONF_MERGE_MSEC(c->read_timeout, p->read_timeout, 60000);
    SH_CONF_MERGE(c->next_upstream, p->next_upstream, SH_NU_ERROR | SH_NU_TIMEOUT);
    SH_CONF_MERGE(c->next_upstream_tries, p->next_upstream_tries, 0);
    SH_CONF_MERGE_MSEC(c->next_upstream_timeout, p->next_upstream_timeout, 0);
    SH_CONF_MERGE(c->intercept_errors, p->intercept_errors, 0);
    if (c->pass != NULL && c->ups == NULL) {
        c->ups = sh_upstream_get_at(cf, c->host, c->ssl ? 443 : 80, c->file, c->line);
        if (c->ups == NULL)
            return SH_EINVAL;
    }
    return 0;
}

static int grpc_pass_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    grpc_loc_t *c = conf;
    const char *url = cf->node->args[1];
    if (c->pass != NULL)
        return sh_conf_error(cf, "\"grpc_pass\" directive is duplicate");
    const char *hp = url;
    if (strncmp(url, "grpcs://", 8) == 0) {
        hp = url + 8;
        c->ssl = 1;
    } else if (strncmp(url, "grpc://", 7) == 0)
        hp = url + 7;
    else if (strstr(url, "://") != NULL)
        return sh_conf_error(cf, "invalid URL prefix in \"%s\"", url);
    if (strchr(url, '$') != NULL)
        return sh_conf_error(cf, "variables in \"grpc_pass\" are not supported yet");
    size_t hl = strlen(hp);
    if (hl == 0 || strchr(hp, '/') != NULL)
        return sh_conf_error(cf, "invalid host in \"%s\"", url);
    c->pass = sh_strdup(url);
    c->host = sh_strndup(hp, hl);
    c->file = cf->node->file;
    c->line = cf->node->line;
    return 0;
}

static int set_header_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    grpc_loc_t *c = conf;
    return sh_proxy_headers_add(cf, &c->headers, &c->nheaders, &c->headers_set, 64, 1);
}

static int hide_header_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    grpc_loc_t *c = conf;
    sh_proxy_names_add(&c->hide, &c->nhide, &c->hide_set, cf->node->args[1]);
    return 0;
}

#define GLOC    (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)
#define GOFF(f) offsetof(grpc_loc_t, f)

static const sh_conf_cmd_t grpc_cmds[] = {
    {"grpc_pass", SH_CTX_LOCATION | SH_CTX_IF | SH_CONF_TAKE1, grpc_pass_set, 0, NULL},
    {"grpc_set_header", GLOC | SH_CONF_TAKE2, set_header_set, 0, NULL},
    {"grpc_hide_header", GLOC | SH_CONF_TAKE1, hide_header_set, 0, NULL},
    {"grpc_connect_timeout", GLOC | SH_CONF_TAKE1, sh_conf_set_msec, GOFF(connect_timeout), NULL},
    {"grpc_send_timeout", GLOC | SH_CONF_TAKE1, sh_conf_set_msec, GOFF(send_timeout), NULL},
    {"grpc_read_timeout", GLOC | SH_CONF_TAKE1, sh_conf_set_msec, GOFF(read_timeout), NULL},
    {"grpc_next_upstream", GLOC | SH_CONF_1MORE, sh_next_upstream_set, GOFF(next_upstream), NULL},
    {"grpc_next_upstream_tries", GLOC | SH_CONF_TAKE1, sh_conf_set_num, GOFF(next_upstream_tries),
     NULL},
    {"grpc_next_upstream_timeout", GLOC | SH_CONF_TAKE1, sh_conf_set_msec,
     GOFF(next_upstream_timeout), NULL},
    {"grpc_intercept_errors", GLOC | SH_CONF_FLAG, sh_conf_set_flag, GOFF(intercept_errors), NULL},
    {NULL, 0, NULL, 0, NULL}};

/* ------------------------------------------------------ helpers -- */

int sh_grpc_parse_timeout(const char *v, size_t len, uint64_t *ms)
{
    if (len < 2 || len > 9)
        return -1;
    uint64_t n = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    switch (v[len - 1]) {
    case 'H':
        *ms = n * 3600000;
        break;
    case 'M':
        *ms = n * 60000;
        break;
    case 'S':
        *ms = n * 1000;
        break;
    case 'm':
        *ms = n;
        break;
    case 'u':
        *ms = (n + 999) / 1000;
        break;
    case 'n':
        *ms = (n + 999999) / 1000000;
        break;
    default:
        return -1;
    }
    return 0;
}

static int name_is(const char *n, size_t nl, const char *lower)
{
    size_t l = strlen(lower);
    if (nl != l)
        return 0;
    for (size_t i = 0; i < l; i++)
        if (tolower((unsigned char)n[i]) != lower[i])
            return 0;
    return 1;
}

static void put_field(sh_buf_t *b, const uint8_t *n, size_t nl, const uint8_t *v, size_t vl)
{
    uint32_t l = (uint32_t)nl;
    sh_buf_append(b, &l, 4);
    sh_buf_append(b, n, nl);
    l = (uint32_t)vl;
    sh_buf_append(b, &l, 4);
    sh_buf_append(b, v, vl);
}

/* Fields stored by put_field as an array (pointing into b). */
static size_t get_fields(const sh_buf_t *b, size_t n, sh_http1_header_t *out, size_t max)
{
    size_t o = 0, k = 0;
    for (size_t i = 0; i < n && k < max; i++) {
        uint32_t l;
        memcpy(&l, b->data + o, 4);
        out[k].name = b->data + o + 4;
        out[k].name_len = l;
        o += 4 + l;
        memcpy(&l, b->data + o, 4);
        out[k].value = b->data + o + 4;
        out[k].value_len = l;
        o += 4 + l;
        k++;
    }
    return k;
}

/* ------------------------------------------------------ backend connections -- */

static void g_flush(gconn_t *g);
static void g_fail(gconn_t *g, int timeout, const char *why);
static void greq_attach(greq_t *gr);
static void greq_error(greq_t *gr, int code, const char *msg);
static void greq_submit(greq_t *gr);
static void greq_release(greq_t *gr);
static int may_retry(greq_t *gr, int bit, int unprocessed);
static void greq_retry(greq_t *gr);

static void g_handle_closed(uv_handle_t *h)
{
    gconn_t *g = h->data;
    if (--g->handles > 0)
        return;
    if (g->s != NULL)
        nghttp2_session_del(g->s);
    sh_upssl_destroy(g->tls);
    sh_buf_dispose(&g->pbuf);
    sh_buf_dispose(&g->plain);
    sh_buf_dispose(&g->wbuf);
    sh_buf_dispose(&g->inflight);
    sh_free(g);
}

static void g_close(gconn_t *g)
{
    if (g->dead)
        return;
    g->dead = 1;
    sh_list_remove(&g->link);
    if (g->tls != NULL && g->ready) {
        /* our close_notify, when the socket takes it now (never waits) */
        sh_buf_t cn = {0};
        if (sh_upssl_shutdown(g->tls, &cn)) {
            uv_buf_t b = uv_buf_init(cn.data, (unsigned)cn.len);
            (void)uv_try_write((uv_stream_t *)&g->tcp, &b, 1);
        }
        sh_buf_dispose(&cn);
    }
    uv_close((uv_handle_t *)&g->timer, g_handle_closed);
    uv_close((uv_handle_t *)&g->tcp, g_handle_closed);
}

static void g_timer_cb(uv_timer_t *t)
{
    gconn_t *g = t->data;
    g_fail(g, 1, g->ready ? "upstream timed out (send)" : "upstream timed out (connect)");
}

static void g_written(uv_write_t *req, int status)
{
    gconn_t *g = req->data;
    g->writing = 0;
    g->inflight.len = 0;
    if (g->dead)
        return;
    if (g->ready) /* the handshake runs under the connect timeout */
        uv_timer_stop(&g->timer);
    if (status < 0) {
        g_fail(g, 0, "upstream write failed");
        return;
    }
    g_flush(g);
}

/* Let the clients whose body was held back send again. */
static void g_resume_clients(gconn_t *g)
{
    for (sh_link_t *l = g->streams.next; l != &g->streams;) {
        greq_t *gr = container_of(l, greq_t, link);
        l = l->next;
        if (gr->want_resume && gr->r != NULL) {
            gr->want_resume = 0;
            gr->client_paused = 0;
            sh_request_body_resume(gr->r);
        }
    }
}

static void g_flush(gconn_t *g)
{
    if (g->dead || g->in_recv)
        return;
    while (!g->writing) {
        /* grpcs: the session's bytes go through TLS into wbuf */
        sh_buf_t *dst = g->tls != NULL ? &g->pbuf : &g->wbuf;
        while (g->ready && dst->len < 256 * 1024) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(g->s, &data);
            if (n < 0) {
                g_fail(g, 0, nghttp2_strerror((int)n));
                return;
            }
            if (n == 0)
                break;
            sh_buf_append(dst, data, (size_t)n);
        }
        if (g->tls != NULL && g->pbuf.len > 0) {
            uv_buf_t pb = uv_buf_init(g->pbuf.data, (unsigned)g->pbuf.len);
            int rc = sh_upssl_write(g->tls, &pb, 1, &g->wbuf);
            g->pbuf.len = 0;
            if (rc != 0) {
                g_fail(g, 0, "SSL_write() failed");
                return;
            }
        }
        if (g->wbuf.len == 0)
            break;
        sh_buf_t t = g->inflight;
        g->inflight = g->wbuf;
        g->wbuf = t;
        g->wbuf.len = 0;
        uv_buf_t b = uv_buf_init(g->inflight.data, (unsigned)g->inflight.len);
        g->writing = 1;
        g->wreq.data = g;
        int rc = uv_write(&g->wreq, (uv_stream_t *)&g->tcp, &b, 1, g_written);
        if (rc != 0) {
            g->writing = 0;
            g_fail(g, 0, uv_strerror(rc));
            return;
        }
        if (g->ready)
            uv_timer_start(&g->timer, g_timer_cb, g->send_timeout, 0);
    }
    if (!g->ready)
        return;
    g_resume_clients(g);
    if (g->goaway && g->nstreams == 0)
        g_close(g);
}

/* Every stream of g fails; those that sent the backend nothing may go to
 * the next server. */
static void g_fail(gconn_t *g, int timeout, const char *why)
{
    if (g->dead)
        return;
    g_close(g);
    while (!sh_list_empty(&g->streams)) {
        greq_t *gr = container_of(g->streams.next, greq_t, link);
        sh_list_remove(&gr->link);
        gr->g = NULL;
        gr->sid = 0;
        g->nstreams--;
        if (gr->r == NULL) {
            greq_release(gr);
            continue;
        }
        sh_req_log(SH_LOG_ERR, NULL, gr->r, g->name, "%s while talking to gRPC upstream", why);
        sh_upstream_done(gr->rt, gr->peer, 1, sh_worker_now(gr->r->w));
        if (may_retry(gr, timeout ? SH_NU_TIMEOUT : SH_NU_ERROR, 0)) {
            greq_retry(gr);
            continue;
        }
        gr->peer = -1;
        greq_error(gr, timeout ? 4 : 14, timeout ? "upstream timed out" : "upstream unavailable");
    }
}

static void g_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)h;
    (void)sz;
    static _Thread_local char rbuf[64 * 1024];
    *b = uv_buf_init(rbuf, sizeof(rbuf));
}

/* Plaintext from the backend, for the session. */
static void g_recv(gconn_t *g, const char *data, size_t len)
{
    g->in_recv = 1;
    ssize_t rc = len > 0 ? nghttp2_session_mem_recv(g->s, (const uint8_t *)data, len) : 0;
    g->in_recv = 0;
    if (rc < 0) {
        g_fail(g, 0, nghttp2_strerror((int)rc));
        return;
    }
    g_flush(g);
}

static void g_ready(gconn_t *g);

/* grpcs: ciphertext from the backend, the handshake while it runs (under
 * the connect timeout), then the session's bytes. */
static void g_tls_input(gconn_t *g, const char *data, size_t len)
{
    const char *why;
    if (!g->ready) {
        int rc = sh_upssl_handshake(g->tls, data, len, &g->wbuf, &why);
        if (rc < 0) {
            g_fail(g, 0, why);
            return;
        }
        if (rc == 0) {
            g_flush(g);
            return;
        }
        if (!sh_upssl_alpn_h2(g->tls))
            sh_log_warn("%s did not select ALPN \"h2\"", g->name);
        uv_timer_stop(&g->timer);
        g_ready(g);
        if (g->dead)
            return;
        data = NULL; /* records that came with the handshake's end */
        len = 0;
    }
    g->plain.len = 0;
    int rc = sh_upssl_read(g->tls, data, len, &g->plain, &g->wbuf, &why);
    if (g->plain.len > 0) {
        g_recv(g, g->plain.data, g->plain.len);
        if (g->dead)
            return;
    } else {
        g_flush(g);
    }
    if (g->plain.cap > 256 * 1024)
        sh_buf_dispose(&g->plain);
    if (rc == SH_ECLOSED)
        g_fail(g, 0, "upstream closed the connection (close_notify)");
    else if (rc != 0)
        g_fail(g, 0, why);
}

static void g_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    gconn_t *g = s->data;
    if (g->dead)
        return;
    if (n < 0) {
        g_fail(g, 0, n == UV_EOF ? "upstream closed the connection" : uv_strerror((int)n));
        return;
    }
    if (n == 0)
        return;
    if (g->tls != NULL) {
        g_tls_input(g, b->base, (size_t)n);
        return;
    }
    g_recv(g, b->base, (size_t)n);
}

static void g_connected(uv_connect_t *req, int status)
{
    gconn_t *g = req->data;
    if (g->dead)
        return;
    uv_timer_stop(&g->timer);
    if (status < 0) {
        char why[128];
        snprintf(why, sizeof(why), "connect() failed (%s)", uv_strerror(status));
        g_fail(g, 0, why);
        return;
    }
    uv_tcp_nodelay(&g->tcp, 1);
    uv_read_start((uv_stream_t *)&g->tcp, g_alloc, g_read);
    if (g->tls != NULL) { /* the handshake first, under the connect timer */
        uv_timer_start(&g->timer, g_timer_cb, g->connect_timeout, 0);
        g_tls_input(g, NULL, 0);
        return;
    }
    g_ready(g);
}

/* The connection (and its TLS) is up: the session starts and the streams
 * that waited are submitted. */
static void g_ready(gconn_t *g)
{
    g->ready = 1;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    nghttp2_submit_settings(g->s, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(g->s, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    /* the streams that waited for the connection */
    for (sh_link_t *l = g->streams.next; l != &g->streams; l = l->next) {
        greq_t *gr = container_of(l, greq_t, link);
        greq_submit(gr);
    }
    g_flush(g);
}

/* ---- nghttp2 callbacks (client side) */

/*
 * Whether gr may go to another server of its group after a failure of
 * kind bit (SH_NU_*), nginx's rules as proxy_next_upstream: the kind is in
 * grpc_next_upstream, nothing reached the client, the request can be sent
 * again (nothing of its body was sent, or all of it is kept), a request
 * that reached the server (gRPC calls are POSTs) only with non_idempotent
 * unless the server did not process it (unprocessed: REFUSED_STREAM, RFC
 * 9113 8.7), grpc_next_upstream_tries and _timeout allow it, and not
 * every server was tried.
 */
static int may_retry(greq_t *gr, int bit, int unprocessed)
{
    const grpc_loc_t *c = gr->conf;
    sh_request_t *r = gr->r;
    if (r == NULL || gr->done || gr->peer < 0 || r->resp_started || !(c->next_upstream & bit))
        return 0;
    if (gr->body_sent > 0 && !gr->replay)
        return 0;
    if (gr->sent && !unprocessed && !(c->next_upstream & SH_NU_NON_IDEMPOTENT))
        return 0;
    if (c->next_upstream_tries > 0 && gr->tries + 1 >= c->next_upstream_tries)
        return 0;
    if (c->next_upstream_timeout > 0 &&
        sh_worker_now(r->w) - r->start_ms >= c->next_upstream_timeout)
        return 0;
    uint64_t tried = gr->tried | 1ull << (gr->peer % 64);
    return (size_t)__builtin_popcountll(tried) < gr->rt->conf->nservers;
}

/* gr leaves its connection: its stream (if any) is reset and no longer
 * its own, or it stops waiting for the connection. */
static void greq_leave(greq_t *gr)
{
    gconn_t *g = gr->g;
    if (g == NULL)
        return;
    if (gr->sid > 0) {
        nghttp2_session_set_stream_user_data(g->s, gr->sid, NULL);
        if (gr->unconsumed > 0)
            nghttp2_session_consume(g->s, gr->sid, gr->unconsumed);
        nghttp2_submit_rst_stream(g->s, NGHTTP2_FLAG_NONE, gr->sid, NGHTTP2_CANCEL);
    }
    gr->unconsumed = 0;
    sh_list_remove(&gr->link);
    sh_list_init(&gr->link);
    g->nstreams--;
    gr->g = NULL;
    gr->sid = 0;
    g_flush(g);
}

/* gr (off any stream and connection, its server let go) goes to the next
 * server: the response so far is forgotten, the body sent again. */
static void greq_retry(greq_t *gr)
{
    gr->tried |= 1ull << (gr->peer % 64);
    gr->peer = -1;
    gr->tries++;
    gr->sent = 0;
    gr->got_head = 0;
    gr->status = 0;
    gr->rh.len = gr->th.len = 0;
    gr->nrh = gr->nth = 0;
    gr->body_off = 0;
    gr->body_sent = 0;
    gr->deferred = 0;
    greq_attach(gr);
}

static greq_t *stream_req(nghttp2_session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(s, id);
}

static void greq_timer_arm(greq_t *gr);
static void greq_detach(sh_request_t *r);

static int cb_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    greq_t *gr = stream_req(s, f->hd.stream_id);
    if (gr != NULL && f->hd.type == NGHTTP2_HEADERS && gr->got_head) {
        gr->th.len = 0;
        gr->nth = 0;
    }
    return 0;
}

static int cb_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                     const uint8_t *v, size_t vl, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    greq_t *gr = stream_req(s, f->hd.stream_id);
    if (gr == NULL || gr->r == NULL)
        return 0;
    if (!gr->got_head) {
        if (nl == 7 && memcmp(n, ":status", 7) == 0) {
            int st = 0;
            for (size_t i = 0; i < vl && i < 3; i++)
                st = st * 10 + (v[i] - '0');
            gr->status = st;
            return 0;
        }
        if (nl > 0 && n[0] == ':')
            return 0;
        for (size_t i = 0; i < gr->conf->nhide; i++)
            if (name_is((const char *)n, nl, gr->conf->hide[i]))
                return 0;
        if (gr->nrh < MAX_FIELDS) {
            put_field(&gr->rh, n, nl, v, vl);
            gr->nrh++;
        }
    } else if (gr->nth < MAX_FIELDS && !(nl > 0 && n[0] == ':')) {
        put_field(&gr->th, n, nl, v, vl);
        gr->nth++;
    }
    return 0;
}

/* The client's response is over: r may be freed on return. */
static void greq_finish(greq_t *gr, const sh_http1_header_t *tr, size_t n)
{
    sh_request_t *r = gr->r;
    gr->done = 1;
    uv_timer_stop(&gr->timer);
    if (sh_response_end(r, tr, n) == 0)
        sh_request_finish(r);
}

static int cb_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    gconn_t *g = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        g->goaway = 1;
        sh_list_remove(&g->link); /* no new streams here */
        sh_list_init(&g->link);
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    greq_t *gr = stream_req(s, f->hd.stream_id);
    if (gr == NULL || gr->r == NULL || gr->done)
        return 0;
    greq_timer_arm(gr);
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_DATA) {
        if (end)
            greq_finish(gr, NULL, 0);
        return 0;
    }
    sh_http1_header_t hs[MAX_FIELDS];
    if (!gr->got_head) {
        if (gr->status >= 100 && gr->status < 200)
            return 0; /* interim */
        /* grpc_next_upstream http_500 ...: the next server */
        int bit = sh_next_upstream_status(gr->status);
        if (bit != 0 && may_retry(gr, bit, 0)) {
            sh_req_log(SH_LOG_WARN, NULL, gr->r, g->name,
                       "upstream answered %d, trying the next server", gr->status);
            greq_leave(gr);
            /* nginx counts 5xx and 429 as failures of the server, not 403/404 */
            sh_upstream_done(gr->rt, gr->peer, bit != SH_NU_HTTP_403 && bit != SH_NU_HTTP_404,
                             sh_worker_now(gr->r->w));
            greq_retry(gr);
            return 0;
        }
        gr->got_head = 1;
        sh_request_t *r = gr->r;
        /* grpc_intercept_errors on: a status of 300 or more that has an
         * error_page is answered with the page (nginx); the backend
         * stream is reset */
        const sh_error_pages_t *ep;
        if (gr->conf->intercept_errors && gr->status >= 300 &&
            (ep = sh_request_error_pages(r)) != NULL && ep->has(r, gr->status)) {
            int status = gr->status;
            gr->done = 1;
            greq_detach(r);
            sh_phase_answer(r, status);
            return 0;
        }
        size_t n = get_fields(&gr->rh, gr->nrh, hs, MAX_FIELDS);
        if (end) { /* trailers-only */
            gr->done = 1;
            uv_timer_stop(&gr->timer);
            if (sh_response_start(r, gr->status, NULL, 0, hs, n, 0, SH_RESP_NO_BODY) == 0 &&
                sh_response_end(r, NULL, 0) == 0)
                sh_request_finish(r);
            return 0;
        }
        if (sh_response_start(r, gr->status, NULL, 0, hs, n, -1, 0) == 0)
            sh_response_flush(r);
        return 0;
    }
    /* trailers */
    size_t n = get_fields(&gr->th, gr->nth, hs, MAX_FIELDS);
    greq_finish(gr, hs, n);
    return 0;
}

static int greq_drained(sh_request_t *r)
{
    greq_t *gr = sh_request_ctx(r, &sh_grpc_module);
    if (gr == NULL || gr->g == NULL || gr->sid <= 0 || gr->unconsumed == 0)
        return 1;
    nghttp2_session_consume(gr->g->s, gr->sid, gr->unconsumed);
    gr->unconsumed = 0;
    g_flush(gr->g);
    return 1;
}

static int cb_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    greq_t *gr = stream_req(s, id);
    if (gr == NULL || gr->r == NULL || gr->done || !gr->got_head) {
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    sh_request_t *r = gr->r;
    r->up_bytes_received += len;
    if (sh_response_body(r, (const char *)data, len) != 0) {
        /* r is gone (its cleanup reset the stream): the connection's
         * window gets the bytes back */
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    if (sh_request_out_queued(r) < SH_WBUF_HIGH)
        nghttp2_session_consume(s, id, len);
    else
        gr->unconsumed += len; /* acknowledged when the client drains */
    return 0;
}

static int cb_stream_close(nghttp2_session *s, int32_t id, uint32_t err, void *ud)
{
    gconn_t *g = ud;
    greq_t *gr = stream_req(s, id);
    if (gr == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    sh_list_remove(&gr->link);
    gr->g = NULL;
    gr->sid = 0;
    g->nstreams--;
    if (gr->r == NULL) {
        greq_release(gr);
        return 0;
    }
    if (gr->peer >= 0)
        sh_upstream_done(gr->rt, gr->peer, err != 0 && err != NGHTTP2_CANCEL,
                         sh_worker_now(gr->r->w));
    if (gr->done) {
        gr->peer = -1;
        return 0;
    }
    if (!gr->got_head && may_retry(gr, SH_NU_ERROR, err == NGHTTP2_REFUSED_STREAM)) {
        greq_retry(gr);
        return 0;
    }
    gr->peer = -1;
    if (err == 0 && gr->got_head) { /* END_STREAM without trailers */
        greq_finish(gr, NULL, 0);
        return 0;
    }
    char msg[96];
    snprintf(msg, sizeof(msg), "upstream reset the stream (%s)", nghttp2_http2_strerror(err));
    sh_req_log(SH_LOG_ERR, NULL, gr->r, g->name, "%s", msg);
    greq_error(gr, 14, msg);
    return 0;
}

/* The request body for the backend, from what the client sent. */
static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ud;
    greq_t *gr = src->ptr;
    if (gr->r == NULL || gr->done || id != gr->sid) /* id: a stream gr left */
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t avail = gr->body.len - gr->body_off;
    if (avail == 0 && !gr->body_eof) {
        gr->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? avail : length;
    memcpy(buf, gr->body.data + gr->body_off, n);
    gr->body_off += n;
    gr->body_sent += n;
    if (gr->r != NULL)
        gr->r->up_bytes_sent += n;
    if (gr->body_off == gr->body.len && !gr->replay) {
        gr->body.len = gr->body_off = 0;
        if (gr->body.cap > SH_WBUF_HIGH)
            sh_buf_dispose(&gr->body);
    }
    if (gr->body_eof && gr->body.len == gr->body_off) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        /* the client's trailers end the backend stream too */
        sh_http1_header_t tr[MAX_FIELDS];
        size_t nt = sh_request_trailers(gr->r, tr, MAX_FIELDS);
        if (nt > 0) {
            nghttp2_nv nv[MAX_FIELDS];
            char lname[MAX_FIELDS][64];
            size_t k = 0;
            for (size_t i = 0; i < nt; i++) {
                if (tr[i].name_len == 0 || tr[i].name_len >= 64 || tr[i].name[0] == ':')
                    continue;
                for (size_t j = 0; j < tr[i].name_len; j++)
                    lname[k][j] = (char)tolower((unsigned char)tr[i].name[j]);
                nv[k] = (nghttp2_nv){(uint8_t *)lname[k], (uint8_t *)tr[i].value, tr[i].name_len,
                                     tr[i].value_len, NGHTTP2_NV_FLAG_NONE};
                k++;
            }
            if (k > 0 && nghttp2_submit_trailer(s, id, nv, k) == 0)
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
    }
    if (gr->client_paused && gr->body.len - gr->body_off < SH_WBUF_LOW)
        gr->want_resume = 1;
    return (ssize_t)n;
}

static gconn_t *g_new(sh_worker_t *w, const sh_ups_server_t *srv, greq_t *gr, uint64_t tlskey)
{
    const grpc_loc_t *conf = gr->conf;
    if (cbs == NULL) {
        nghttp2_session_callbacks_new(&cbs);
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, cb_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cbs, cb_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cb_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cb_data_chunk);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb_stream_close);
        nghttp2_option_new(&opt);
        nghttp2_option_set_no_auto_window_update(opt, 1);
    }
    gconn_t *g = sh_new(gconn_t);
    memcpy(&g->addr, &srv->addr, srv->addrlen);
    g->addrlen = srv->addrlen;
    snprintf(g->name, sizeof(g->name), "%s://%s", conf->ssl ? "grpcs" : "grpc", srv->name);
    g->send_timeout = conf->send_timeout;
    g->connect_timeout = conf->connect_timeout;
    g->tlskey = tlskey;
    sh_list_init(&g->streams);
    if (conf->ssl) {
        g->tls = sh_upssl_grpc_create(gr->r, gr->rt, gr->peer, conf->host);
        if (g->tls == NULL) {
            sh_free(g);
            return NULL;
        }
    }
    if (nghttp2_session_client_new2(&g->s, cbs, g, opt) != 0) {
        sh_upssl_destroy(g->tls);
        sh_free(g);
        return NULL;
    }
    uv_tcp_init(&w->loop, &g->tcp);
    uv_timer_init(&w->loop, &g->timer);
    g->tcp.data = g->timer.data = g->creq.data = g;
    g->handles = 2;
    sh_list_insert_head(&gpool, &g->link);
    int rc = uv_tcp_connect(&g->creq, &g->tcp, (const struct sockaddr *)&srv->addr, g_connected);
    if (rc != 0) {
        g->ready = 0;
        return g; /* failed by the caller after it attached */
    }
    uv_timer_start(&g->timer, g_timer_cb, conf->connect_timeout, 0);
    return g;
}

/* ------------------------------------------------------ calls -- */

static void greq_timer_cb(uv_timer_t *t)
{
    greq_t *gr = t->data;
    if (gr->r == NULL || gr->done)
        return;
    int deadline = gr->deadline != 0 && sh_worker_now(gr->r->w) + 5 >= gr->deadline;
    if (!deadline && !gr->got_head && may_retry(gr, SH_NU_TIMEOUT, 0)) {
        sh_req_log(SH_LOG_ERR, NULL, gr->r, gr->g ? gr->g->name : NULL,
                   "upstream timed out, trying the next server");
        greq_leave(gr);
        sh_upstream_done(gr->rt, gr->peer, 1, sh_worker_now(gr->r->w));
        greq_retry(gr);
        return;
    }
    sh_req_log(SH_LOG_ERR, NULL, gr->r, gr->g ? gr->g->name : NULL, "%s",
               deadline ? "gRPC deadline exceeded (grpc-timeout)" : "upstream timed out");
    greq_error(gr, 4, deadline ? "deadline exceeded" : "upstream timed out");
}

/* Arm the call's timer: the read timeout, or the deadline when sooner. */
static void greq_timer_arm(greq_t *gr)
{
    uint64_t ms = gr->conf->read_timeout;
    if (gr->deadline != 0) {
        uint64_t now = sh_worker_now(gr->r->w);
        uint64_t left = gr->deadline > now ? gr->deadline - now : 0;
        if (left < ms)
            ms = left;
    }
    uv_timer_start(&gr->timer, greq_timer_cb, ms, 0);
}

/* Submit gr as a stream of its (ready) connection. */
static void greq_submit(greq_t *gr)
{
    sh_request_t *r = gr->r;
    gconn_t *g = gr->g;
    nghttp2_nv nv[SH_MAX_REQUEST_HEADERS + 80];
    size_t k = 0;
    sh_buf_t *sb = &r->scratch;
    sb->len = 0;
    /* values evaluated into scratch first: offsets, fixed up below */
    size_t voff[64], vlen[64];
    for (size_t i = 0; i < gr->conf->nheaders && i < 64; i++) {
        voff[i] = sb->len;
        sh_cv_eval(gr->conf->headers[i].value, r, sb);
        vlen[i] = sb->len - voff[i];
    }
#define NV(n, nl, v, vl)                                                                           \
    nv[k++] = (nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), (nl), (vl), NGHTTP2_NV_FLAG_NONE}
    NV(":method", 7, r->h.method, r->h.method_len);
    if (gr->conf->ssl)
        NV(":scheme", 7, "https", 5);
    else
        NV(":scheme", 7, "http", 4);
    if (r->h.host != NULL)
        NV(":authority", 10, r->h.host, r->h.host_len);
    else
        NV(":authority", 10, gr->conf->host, strlen(gr->conf->host));
    NV(":path", 5, r->h.target, r->h.target_len);
    char lname[SH_MAX_REQUEST_HEADERS][64];
    for (size_t i = 0; i < r->h.nheaders && k < SH_MAX_REQUEST_HEADERS; i++) {
        const sh_http1_header_t *h = &r->headers[i];
        if (h->name_len == 0 || h->name_len >= 64 || name_is(h->name, h->name_len, "host") ||
            name_is(h->name, h->name_len, "connection") ||
            name_is(h->name, h->name_len, "keep-alive") ||
            name_is(h->name, h->name_len, "proxy-connection") ||
            name_is(h->name, h->name_len, "transfer-encoding") ||
            name_is(h->name, h->name_len, "upgrade") ||
            name_is(h->name, h->name_len, "content-length"))
            continue;
        if (name_is(h->name, h->name_len, "te") &&
            !(h->value_len == 8 && strncasecmp(h->value, "trailers", 8) == 0))
            continue;
        int set = 0;
        for (size_t j = 0; j < gr->conf->nheaders; j++)
            if (name_is(h->name, h->name_len, gr->conf->headers[j].name))
                set = 1;
        if (set)
            continue;
        for (size_t j = 0; j < h->name_len; j++)
            lname[i][j] = (char)tolower((unsigned char)h->name[j]);
        NV(lname[i], h->name_len, h->value, h->value_len);
    }
    for (size_t i = 0; i < gr->conf->nheaders && i < 64; i++) {
        if (vlen[i] == 0)
            continue; /* nginx: an empty value removes the field */
        NV(gr->conf->headers[i].name, gr->conf->headers[i].name_len, sb->data + voff[i], vlen[i]);
    }
#undef NV
    nghttp2_data_provider prd = {.source.ptr = gr, .read_callback = body_read};
    int32_t id = nghttp2_submit_request(g->s, NULL, nv, k, &prd, gr);
    sb->len = 0;
    if (id < 0) {
        sh_list_remove(&gr->link);
        gr->g = NULL;
        g->nstreams--;
        sh_upstream_done(gr->rt, gr->peer, 0, sh_worker_now(r->w));
        gr->peer = -1;
        greq_error(gr, 14, nghttp2_strerror(id));
        return;
    }
    gr->sid = id;
    gr->sent = 1;
}

/* Pick a server and a connection for gr, and submit it when it can be. */
static void greq_attach(greq_t *gr)
{
    sh_request_t *r = gr->r;
    sh_worker_t *w = r->w;
    int peer = sh_upstream_pick(gr->rt, gr->tried, sh_worker_now(w), r);
    if (peer >= 0 && gr->tried != 0 && (gr->tried & (1ull << (peer % 64))) &&
        gr->rt->conf->nservers <= 64) {
        sh_upstream_done(gr->rt, peer, 0, sh_worker_now(w)); /* all were tried */
        peer = -1;
    }
    if (peer < 0) {
        sh_req_log(SH_LOG_ERR, NULL, r, gr->conf->pass, "no live upstreams");
        greq_error(gr, 14, "no live upstreams");
        return;
    }
    gr->peer = peer;
    const sh_ups_server_t *srv = &gr->rt->conf->servers[peer];
    uint64_t tlskey = gr->conf->ssl ? sh_upssl_grpc_key(r, gr->conf->host) : 0;
    gconn_t *g = NULL;
    for (sh_link_t *l = gpool.next; l != &gpool; l = l->next) {
        gconn_t *c = container_of(l, gconn_t, link);
        if (c->dead || c->goaway || c->tlskey != tlskey || c->addrlen != srv->addrlen ||
            memcmp(&c->addr, &srv->addr, srv->addrlen) != 0)
            continue;
        uint32_t max =
            c->ready
                ? nghttp2_session_get_remote_settings(c->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
                : 100;
        if ((uint32_t)c->nstreams < (max > 1000 ? 1000 : max)) {
            g = c;
            break;
        }
    }
    int fresh = 0;
    if (g == NULL) {
        g = g_new(w, srv, gr, tlskey);
        if (g == NULL) {
            sh_upstream_done(gr->rt, peer, 0, sh_worker_now(w));
            gr->peer = -1;
            greq_error(gr, 14, "out of memory");
            return;
        }
        fresh = 1;
    }
    gr->g = g;
    sh_list_insert_head(&g->streams, &gr->link);
    g->nstreams++;
    greq_timer_arm(gr);
    if (fresh && !uv_is_active((uv_handle_t *)&g->timer)) {
        g_fail(g, 0, "connect() failed");
        return;
    }
    if (g->ready) {
        greq_submit(gr);
        if (gr->g != NULL)
            g_flush(g);
    }
}

/* Answer gr's client with a gRPC status (trailers-only before the head,
 * trailers after it); the backend stream, if any, is reset. */
static void greq_error(greq_t *gr, int code, const char *msg)
{
    sh_request_t *r = gr->r;
    if (r == NULL || gr->done)
        return;
    gr->done = 1;
    uv_timer_stop(&gr->timer);
    if (gr->g != NULL && gr->sid > 0) {
        /* reset; gr stays the stream's until it is closed */
        nghttp2_submit_rst_stream(gr->g->s, NGHTTP2_FLAG_NONE, gr->sid, NGHTTP2_CANCEL);
        g_flush(gr->g);
    } else if (gr->g != NULL) { /* still connecting */
        sh_list_remove(&gr->link);
        gr->g->nstreams--;
        gr->g = NULL;
    }
    if (gr->peer >= 0) {
        sh_upstream_done(gr->rt, gr->peer, code == 4, sh_worker_now(r->w));
        gr->peer = -1;
    }
    char cs[8];
    snprintf(cs, sizeof(cs), "%d", code);
    sh_http1_header_t hs[3] = {
        {"content-type", 12, "application/grpc", 16},
        {"grpc-status", 11, cs, strlen(cs)},
        {"grpc-message", 12, msg, strlen(msg)},
    };
    if (!r->resp_started) {
        if (sh_response_start(r, 200, NULL, 0, hs, 3, 0, SH_RESP_NO_BODY) == 0 &&
            sh_response_end(r, NULL, 0) == 0)
            sh_request_finish(r);
        return;
    }
    if (sh_response_end(r, hs + 1, 2) == 0)
        sh_request_finish(r);
}

static void greq_timer_closed(uv_handle_t *h)
{
    greq_t *gr = h->data;
    sh_buf_dispose(&gr->body);
    sh_buf_dispose(&gr->rh);
    sh_buf_dispose(&gr->th);
    sh_free(gr);
}

static void greq_release(greq_t *gr)
{
    uv_close((uv_handle_t *)&gr->timer, greq_timer_closed);
}

/* The request is freed (done, or the client reset it): the backend
 * stream is reset if open; gr lives until the session lets it go. */
static void greq_detach(sh_request_t *r)
{
    greq_t *gr = sh_request_ctx(r, &sh_grpc_module);
    r->sink = NULL;
    if (gr == NULL)
        return;
    gr->r = NULL;
    sh_request_ctx(r, &sh_grpc_module) = NULL;
    uv_timer_stop(&gr->timer);
    if (gr->peer >= 0) {
        sh_upstream_done(gr->rt, gr->peer, 0, sh_worker_now(r->w));
        gr->peer = -1;
    }
    gconn_t *g = gr->g;
    if (g != NULL && gr->sid > 0) {
        if (gr->unconsumed > 0) /* the connection's window gets them back */
            nghttp2_session_consume(g->s, gr->sid, gr->unconsumed);
        gr->unconsumed = 0;
        nghttp2_submit_rst_stream(g->s, NGHTTP2_FLAG_NONE, gr->sid, NGHTTP2_CANCEL);
        g_flush(g); /* gr may be released in there */
        return;
    }
    if (g != NULL) {
        sh_list_remove(&gr->link);
        g->nstreams--;
        gr->g = NULL;
    }
    greq_release(gr);
}

/* Request body bytes from the client (sh_proxy_body hands them over). */
static int greq_body(sh_request_t *r, const char *data, size_t len, int last)
{
    greq_t *gr = sh_request_ctx(r, &sh_grpc_module);
    if (gr == NULL || gr->done)
        return 0;
    if (gr->replay && gr->body.len + len > REPLAY_MAX)
        gr->replay = 0; /* too large to keep: it cannot be sent again */
    if (gr->body_off > 0 && gr->body_off == gr->body.len && !gr->replay)
        gr->body.len = gr->body_off = 0;
    sh_buf_append(&gr->body, data, len);
    if (last)
        gr->body_eof = 1;
    if (gr->g != NULL && gr->sid > 0 && gr->deferred) {
        gr->deferred = 0;
        nghttp2_session_resume_data(gr->g->s, gr->sid);
        g_flush(gr->g);
    }
    if (gr->body.len - gr->body_off > SH_WBUF_HIGH) {
        gr->client_paused = 1;
        return 1;
    }
    return 0;
}

static void sink_start(sh_request_t *r)
{
    (void)r; /* grpc_pass streams the body: nothing is buffered first */
}

static int sink_tunnel(sh_request_t *r, const char *data, size_t len)
{
    (void)r;
    (void)data;
    (void)len;
    return 0; /* no 101 on gRPC */
}

/* The request body goes to the backend stream (node.h's sh_body_sink_t). */
static const sh_body_sink_t grpc_sink = {
    .start = sink_start,
    .body = greq_body,
    .drained = greq_drained,
    .tunnel = sink_tunnel,
    .detach = greq_detach,
};

static int grpc_handler(sh_request_t *r)
{
    const grpc_loc_t *c = sh_http_loc_conf(r->loc, &sh_grpc_module);
    if (c == NULL || c->pass == NULL)
        return SH_PH_DECLINED;
    if (!gpool_ready) { /* the calling worker's pool, on its first call */
        sh_list_init(&gpool);
        gpool_ready = 1;
    }
    greq_t *gr = sh_new(greq_t);
    gr->r = r;
    gr->conf = c;
    gr->peer = -1;
    gr->replay = 1;
    gr->rt = &r->w->ups[c->ups->index];
    sh_list_init(&gr->link);
    uv_timer_init(&r->w->loop, &gr->timer);
    gr->timer.data = gr;
    sh_request_ctx(r, &sh_grpc_module) = gr;
    r->sink = &grpc_sink;
    for (size_t i = 0; i < r->h.nheaders; i++) {
        const sh_http1_header_t *h = &r->headers[i];
        uint64_t ms;
        if (name_is(h->name, h->name_len, "grpc-timeout") &&
            sh_grpc_parse_timeout(h->value, h->value_len, &ms) == 0)
            gr->deadline = sh_worker_now(r->w) + ms;
    }
    if (!r->body.done)
        sh_request_body_resume(r);
    else
        gr->body_eof = 1;
    if (r->freed)
        return SH_PH_DONE;
    greq_attach(gr);
    return SH_PH_DONE;
}

int sh_grpc_loc_grpcs(const sh_http_loc_t *loc)
{
    const grpc_loc_t *c = sh_http_loc_conf(loc, &sh_grpc_module);
    return c != NULL && c->pass != NULL && c->ssl;
}

static int grpc_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_phase_add(cf, m, SH_PHASE_CONTENT, grpc_handler);
}

void sh_grpc_close_all(sh_worker_t *w)
{
    (void)w;
    if (!gpool_ready)
        return;
    while (!sh_list_empty(&gpool)) {
        gconn_t *g = container_of(gpool.next, gconn_t, link);
        g_fail(g, 0, "worker stopping");
    }
    if (cbs != NULL) {
        nghttp2_session_callbacks_del(cbs);
        nghttp2_option_del(opt);
        cbs = NULL;
        opt = NULL;
    }
}

static const sh_http_module_t grpc_http_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = grpc_create_loc,
    .merge_loc = grpc_merge_loc,
    .destroy_loc = grpc_destroy_loc,
    .postconfiguration = grpc_postconf,
};

sh_conf_module_t sh_grpc_module = {
    .name = "grpc",
    .cmds = grpc_cmds,
    .ctx = &grpc_http_ctx,
};
