/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/2 on the client side with nghttp2 (see http2.h for the model).
 *
 * Objects: one sh_h2_t per connection (c->h2) owns the nghttp2 session
 * and the streams; one h2_stream_t per stream holds what outlives the
 * stream's request: the header block while it arrives, request body
 * bytes the proxy does not take yet, response body bytes nghttp2 has not
 * pulled yet, and trailers. The request (sh_request_t) is freed as soon
 * as its response is complete or aborted, exactly as on HTTP/1.1; the
 * stream goes when nghttp2 closes it.
 *
 * nghttp2 callbacks run only inside nghttp2_session_mem_recv (input) and
 * nghttp2_session_mem_send (the write pass): everything else only submits
 * frames and marks the connection for the end-of-iteration write pass.
 * The session is freed in the connection's close callback, never inside
 * one of its own callbacks.
 */
#include "node/conn/http2.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/pipeline/metrics.h"
#include "node/pipeline/node.h"
#include "node/pipeline/reqlog.h"
#include "node/pipeline/vars.h"
#include "node/proxy/proxy.h"

#define CONN_WINDOW            (4 * 1024 * 1024) /* connection receive window */
#define STREAM_WINDOW          (256 * 1024)      /* SETTINGS_INITIAL_WINDOW_SIZE */
#define OUT_BATCH              (64 * 1024)       /* frames gathered per socket write */
#define MAX_ADDED              64                /* add_header fields per response */
#define SH_MAX_RESPONSE_FIELDS 128               /* as the proxy's MAX_RESP_HEADERS */
/* per-second ceilings of frames that carry no request (flood defences) */
#define MAX_SETTINGS_PER_SEC   64
#define MAX_PING_PER_SEC       128
#define MAX_EMPTY_DATA_PER_SEC 128
#define MAX_CONTROL_PER_SEC    4096
#define RESET_BURST            1000 /* nghttp2's rapid-reset token bucket */
#define CLOSED_RING            64   /* recently closed streams remembered (RFC 9113 5.1) */
#define ID_GAPS                16   /* ranges of stream ids the client skipped (5.1.1) */
#define RESET_RATE             33

typedef struct {
    int enable;      /* `http2 on` */
    int max_streams; /* http2_max_concurrent_streams */
} h2_conf_t;

typedef struct h2_stream_s {
    sh_h2_t *h2;
    int32_t id;
    sh_request_t *r; /* NULL once the response is complete or aborted */
    sh_link_t link;  /* h2->streams */
    sh_buf_t hbuf;   /* header block: [u32 name len][name][u32 value len][value]... */
    size_t nfields;
    size_t hsize;  /* RFC 9113 header list size so far */
    sh_buf_t body; /* request body bytes waiting for the proxy */
    sh_buf_t out;  /* response body bytes waiting for nghttp2 */
    size_t out_off;
    sh_buf_t trailers; /* as hbuf: response trailers */
    size_t ntrailers;
    sh_buf_t held; /* as hbuf: a head held until the response ends (SH_RESP_HELD) */
    size_t nheld;
    sh_buf_t rtrailers; /* as hbuf: the request's trailers (for grpc_pass) */
    size_t nrtrailers;
    int64_t body_left;      /* request body bytes the content-length still announces, or -1 */
    uint8_t too_large : 1;  /* the header list went over the limit: 431 */
    uint8_t body_eof : 1;   /* END_STREAM from the client */
    uint8_t out_eof : 1;    /* the response body is complete */
    uint8_t deferred : 1;   /* the data source said DEFERRED: resume on data */
    uint8_t end_sent : 1;   /* our END_STREAM is out (the response is whole) */
    uint8_t rst_sent : 1;   /* RST_STREAM(NO_ERROR) after it (early_reset) */
    uint8_t client_rst : 1; /* the client reset the stream */
    uint8_t we_rst : 1;     /* we (or nghttp2) reset it */
    uint8_t responded : 1;  /* a response was submitted */
} h2_stream_t;

enum { CHECK_NONE = 0, CHECK_DATA, CHECK_PRIORITY };

enum {
    CLOSED_NONE = 0,
    CLOSED_CLIENT_RST, /* the client sent RST_STREAM */
    CLOSED_BOTH_END    /* END_STREAM both ways */
};

struct sh_h2_s {
    sh_conn_t *c;
    nghttp2_session *s;
    sh_link_t streams;
    sh_link_t dirty; /* worker's h2_dirty list: a write pass is due */
    size_t nstreams;
    int max_streams;
    size_t header_limit;
    uint64_t win; /* second of the counters below */
    uint32_t n_settings, n_ping, n_empty_data, n_control;
    /* DATA frames sent and WINDOW_UPDATE frames received: a client
     * acknowledging what it got (a stream's and the connection's window
     * per DATA frame, as gRPC clients do) is no flood */
    uint64_t data_sent, wu_recv;
    uint32_t opened_this_read;
    const char *calm; /* why the client is told to calm down, or NULL */
    /* A connection error found by our own checks in a callback (RFC 9113
     * rules nghttp2 leaves to the application, see check_frame): the
     * error code for GOAWAY and why, for the log. */
    uint32_t conn_err;
    const char *conn_why;
    /* Streams the client closed lately and how (RFC 9113 5.1: a frame on
     * a stream the client reset is a stream error, one after both ends
     * sent END_STREAM a connection error, both STREAM_CLOSED; nghttp2
     * keeps no closed streams and ignores them) */
    struct {
        int32_t id;
        uint8_t how; /* CLOSED_* */
    } recent[CLOSED_RING];
    unsigned recent_next;
    /* Odd stream ids below the highest the client opened that it never
     * used (RFC 9113 5.1.1: they are idle for ever, so a HEADERS there is
     * a lower identifier than a previous one) */
    struct {
        int32_t lo, hi;
    } gaps[ID_GAPS];
    unsigned gaps_next;
    int32_t last_id; /* highest stream id the client opened */
    uint8_t check;   /* CHECK_*: due after the bytes track_frames followed */
    uint8_t pri[5];  /* the PRIORITY payload under way (track_frames) */
    uint8_t pri_n;
    int32_t fr_sid; /* stream of the frame whose payload is coming */
    uint8_t goaway : 1;
    uint8_t closed : 1; /* the connection is closing: no more session calls */
    uint8_t in_recv : 1;
    /* Frame boundaries of the client's bytes, followed beside nghttp2
     * (which does not tell whether it holds part of a frame), so that a
     * preface, frame or header block under way is timed by
     * client_header_timeout from its first byte (sh_http2_head_pending) */
    uint8_t in_block : 1; /* HEADERS or PUSH_PROMISE without END_HEADERS */
    uint8_t fr_type;      /* type of the frame whose payload is coming */
    uint8_t fr_nhdr;      /* bytes of the next 9-byte frame header seen */
    uint8_t fr_hdr[9];
    uint32_t preface_seen; /* bytes of the 24-byte preface seen */
    uint32_t fr_left;      /* payload bytes of the current frame to come */
};

extern sh_conf_module_t sh_http2_module;

/* ------------------------------------------------ conf -- */

static void *h2_create_loc(void)
{
    h2_conf_t *c = sh_new(h2_conf_t);
    c->enable = SH_CONF_UNSET;
    c->max_streams = SH_CONF_UNSET;
    return c;
}

static int h2_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    h2_conf_t *p = parent, *c = conf;
    (void)cf;
    SH_CONF_MERGE(c->enable, p->enable, 0);
    SH_CONF_MERGE(c->max_streams, p->max_streams, 128);
    return 0;
}

static void h2_destroy_loc(void *conf)
{
    sh_free(conf);
}

static int max_streams_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    h2_conf_t *c = conf;
    int rc = sh_conf_set_num(cf, cmd, conf);
    if (rc == 0 && (c->max_streams < 1 || c->max_streams > 65536))
        return sh_conf_error(cf, "\"%s\" must be between 1 and 65536", cf->node->args[0]);
    return rc;
}

/* nginx 1.19.7 made these obsolete (warned, ignored); configurations
 * written before still carry them. post: the directive to use instead. */
static int obsolete_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)conf;
    sh_conf_warn(cf, "the \"%s\" directive is obsolete, use the \"%s\" directive instead",
                 cf->node->args[0], (const char *)cmd->post);
    return 0;
}

static const sh_conf_cmd_t h2_cmds[] = {
    {"http2", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_FLAG, sh_conf_set_flag,
     offsetof(h2_conf_t, enable), NULL},
    {"http2_max_concurrent_streams", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE1, max_streams_set,
     offsetof(h2_conf_t, max_streams), NULL},
    /* nginx's buffer sizing: our buffers follow the flow-control windows */
    {"http2_recv_buffer_size", SH_CTX_HTTP | SH_CONF_TAKE1, sh_conf_set_ignore, 0, NULL},
    {"http2_chunk_size", SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_TAKE1,
     sh_conf_set_ignore, 0, NULL},
    {"http2_body_preread_size", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE1, sh_conf_set_ignore, 0,
     NULL},
    {"http2_idle_timeout", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE1, obsolete_set, 0,
     "keepalive_timeout"},
    {"http2_max_requests", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE1, obsolete_set, 0,
     "keepalive_requests"},
    {"http2_recv_timeout", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE1, obsolete_set, 0,
     "client_header_timeout"},
    {"http2_max_field_size", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE1, obsolete_set, 0,
     "large_client_header_buffers"},
    {"http2_max_header_size", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE1, obsolete_set, 0,
     "large_client_header_buffers"},
    /* server push: gone from browsers; nginx 1.25.1 dropped it too */
    {"http2_push", SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_TAKE1,
     sh_conf_set_unsupported, 0, NULL},
    {"http2_push_preload", SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_FLAG,
     sh_conf_set_unsupported, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

/* $http2: "h2" over TLS, "h2c" in clear text, else empty (nginx). */
static int http2_var_get(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    if (r->c->h2 != NULL)
        sh_buf_appends(out, r->c->tls != NULL ? "h2" : "h2c");
    return 1;
}

static int h2_preconf(sh_conf_t *cf, sh_http_main_t *m)
{
    (void)m;
    return sh_vars_define(cf, "http2", http2_var_get, NULL);
}

static const sh_http_module_t h2_http_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .preconfiguration = h2_preconf,
    .create_loc = h2_create_loc,
    .merge_loc = h2_merge_loc,
    .destroy_loc = h2_destroy_loc,
};

sh_conf_module_t sh_http2_module = {
    .name = "http2",
    .cmds = h2_cmds,
    .ctx = &h2_http_ctx,
};

int sh_http2_enabled(const sh_http_addr_t *addr, const sh_http_srv_t *srv)
{
    if (addr != NULL && addr->opt.http2)
        return 1;
    if (srv == NULL)
        return 0;
    const h2_conf_t *c = sh_http_loc_conf(srv->loc, &sh_http2_module);
    return c != NULL && c->enable == 1;
}

/* ------------------------------------------------ pure: request head -- */

static int name_is(const sh_h2_field_t *f, const char *n)
{
    size_t l = strlen(n);
    return f->name_len == l && memcmp(f->name, n, l) == 0;
}

ssize_t sh_http2_build_head(const sh_h2_field_t *in, size_t nin, char **head, size_t *head_len,
                            sh_h2_pseudo_t *ps, sh_http1_header_t *fields, size_t max,
                            const char **why)
{
    memset(ps, 0, sizeof(*ps));
    ps->content_length = -1;
    *head = NULL;
    *head_len = 0;
    int regular = 0, have_host = 0;
    size_t ncookie = 0, cookie_bytes = 0, total = 0, nregular = 0;
    const sh_h2_field_t *pm = NULL, *pp = NULL, *pa = NULL, *pscheme = NULL;
    for (size_t i = 0; i < nin; i++) {
        const sh_h2_field_t *f = &in[i];
        if (f->name_len == 0) {
            *why = "empty field name";
            return SH_EPARSE;
        }
        if (f->name[0] == ':') {
            const sh_h2_field_t **slot = NULL;
            if (regular) {
                *why = "pseudo-header field after a regular field";
                return SH_EPARSE;
            }
            if (name_is(f, ":method"))
                slot = &pm;
            else if (name_is(f, ":path"))
                slot = &pp;
            else if (name_is(f, ":authority"))
                slot = &pa;
            else if (name_is(f, ":scheme"))
                slot = &pscheme;
            else {
                *why = "unknown pseudo-header field";
                return SH_EPARSE;
            }
            if (*slot != NULL) {
                *why = "repeated pseudo-header field";
                return SH_EPARSE;
            }
            *slot = f;
            continue;
        }
        regular = 1;
        for (size_t k = 0; k < f->name_len; k++)
            if (f->name[k] >= 'A' && f->name[k] <= 'Z') {
                *why = "upper-case field name";
                return SH_EPARSE;
            }
        if (name_is(f, "cookie")) {
            ncookie++;
            cookie_bytes += f->value_len + 2;
            continue;
        }
        if (name_is(f, "host"))
            have_host = 1;
        if (name_is(f, "content-length")) {
            int64_t v = 0;
            if (f->value_len == 0 || f->value_len > 18) {
                *why = "invalid content-length";
                return SH_EPARSE;
            }
            for (size_t k = 0; k < f->value_len; k++) {
                if (f->value[k] < '0' || f->value[k] > '9') {
                    *why = "invalid content-length";
                    return SH_EPARSE;
                }
                v = v * 10 + (f->value[k] - '0');
            }
            if (ps->content_length >= 0 && ps->content_length != v) {
                *why = "conflicting content-length";
                return SH_EPARSE;
            }
            ps->content_length = v;
        }
        nregular++;
        total += f->name_len + f->value_len;
    }
    if (pm == NULL || pm->value_len == 0) {
        *why = "no :method";
        return SH_EPARSE;
    }
    if (pm->value_len == 7 && memcmp(pm->value, "CONNECT", 7) == 0) {
        *why = "CONNECT is not supported";
        return SH_EPARSE;
    }
    if (pp == NULL || pp->value_len == 0 || pscheme == NULL || pscheme->value_len == 0) {
        *why = "no :path or :scheme";
        return SH_EPARSE;
    }
    size_t nfields = nregular + (ncookie > 0) + (!have_host && pa != NULL);
    if (nfields > max) {
        *why = "too many header fields";
        return SH_ELIMIT;
    }
    size_t size = pm->value_len + pp->value_len + pscheme->value_len + (pa ? pa->value_len : 0) +
                  total + (ncookie ? 6 + cookie_bytes : 0) + (pa ? 4 + pa->value_len : 0) + 1;
    char *h = sh_malloc(size);
    size_t o = 0;
#define COPY(dst, dl, src, sl)                                                                     \
    do {                                                                                           \
        memcpy(h + o, (src), (sl));                                                                \
        (dst) = h + o;                                                                             \
        (dl) = (sl);                                                                               \
        o += (sl);                                                                                 \
    } while (0)
    COPY(ps->method, ps->method_len, pm->value, pm->value_len);
    COPY(ps->path, ps->path_len, pp->value, pp->value_len);
    COPY(ps->scheme, ps->scheme_len, pscheme->value, pscheme->value_len);
    if (pa != NULL)
        COPY(ps->authority, ps->authority_len, pa->value, pa->value_len);
    size_t k = 0;
    if (!have_host && pa != NULL) {
        /* $http_host and routing see the authority as a Host field */
        fields[k].name = "host";
        fields[k].name_len = 4;
        fields[k].value = ps->authority;
        fields[k].value_len = ps->authority_len;
        k++;
    }
    for (size_t i = 0; i < nin; i++) {
        const sh_h2_field_t *f = &in[i];
        if (f->name[0] == ':' || name_is(f, "cookie"))
            continue;
        COPY(fields[k].name, fields[k].name_len, f->name, f->name_len);
        COPY(fields[k].value, fields[k].value_len, f->value, f->value_len);
        k++;
    }
    if (ncookie > 0) {
        COPY(fields[k].name, fields[k].name_len, "cookie", 6);
        fields[k].value = h + o;
        size_t start = o;
        for (size_t i = 0, j = 0; i < nin; i++) {
            if (!name_is(&in[i], "cookie"))
                continue;
            if (j++ > 0) {
                memcpy(h + o, "; ", 2);
                o += 2;
            }
            memcpy(h + o, in[i].value, in[i].value_len);
            o += in[i].value_len;
        }
        fields[k].value_len = o - start;
        k++;
    }
#undef COPY
    *head = h;
    *head_len = o;
    return (ssize_t)k;
}

/* ------------------------------------------------ nghttp2 allocator -- */

static void *mem_malloc(size_t n, void *ud)
{
    (void)ud;
    return sh_malloc(n);
}

static void mem_free(void *p, void *ud)
{
    (void)ud;
    sh_free(p);
}

static void *mem_calloc(size_t n, size_t size, void *ud)
{
    (void)ud;
    return sh_calloc(n, size);
}

static void *mem_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    return sh_realloc(p, n);
}

static nghttp2_mem h2_mem = {NULL, mem_malloc, mem_free, mem_calloc, mem_realloc};

/* ------------------------------------------------ write pass -- */

static void flush(sh_h2_t *h2);

static void check_cb(uv_check_t *h)
{
    sh_worker_t *w = container_of(h, sh_worker_t, h2_check);
    while (!sh_list_empty(&w->h2_dirty)) {
        sh_h2_t *h2 = container_of(w->h2_dirty.next, sh_h2_t, dirty);
        sh_list_remove(&h2->dirty);
        flush(h2);
    }
    uv_check_stop(&w->h2_check);
    uv_idle_stop(&w->h2_idle);
}

static void idle_cb(uv_idle_t *h)
{
    (void)h; /* its being active is the point: see schedule() */
}

void sh_http2_worker_init(sh_worker_t *w)
{
    uv_check_init(&w->loop, &w->h2_check);
    uv_idle_init(&w->loop, &w->h2_idle);
    sh_list_init(&w->h2_dirty);
}

/* Have flush(h2) run at the end of this loop iteration (the check phase).
 * An active check handle does not keep libuv's poll phase from blocking,
 * which comes first: a write pass asked for by a timer (a request resumed
 * by proxy_cache_lock, limit_req), a write completed at once (its
 * callback runs in the pending phase) or anything else before the poll
 * would wait there for the next event, up to a second when the client is
 * waiting for these very frames. An active idle handle makes that poll
 * return at once. */
static void schedule(sh_h2_t *h2)
{
    if (h2->closed || h2->dirty.next != &h2->dirty)
        return;
    sh_worker_t *w = h2->c->w;
    if (sh_list_empty(&w->h2_dirty)) {
        uv_check_start(&w->h2_check, check_cb);
        uv_idle_start(&w->h2_idle, idle_cb);
    }
    sh_list_insert_head(&w->h2_dirty, &h2->dirty);
}

static int conn_queued_high(const sh_h2_t *h2)
{
    return h2->c->tcp.write_queue_size > SH_WBUF_HIGH;
}

/* Gather frames from nghttp2 and write them, while the socket keeps up. */
static void flush(sh_h2_t *h2)
{
    sh_conn_t *c = h2->c;
    if (h2->closed || c->closing || c->state == SH_CONN_CLOSING)
        return;
    sh_buf_t *out = &c->w->h2_out;
    while (!conn_queued_high(h2)) {
        out->len = 0;
        for (;;) {
            const uint8_t *d;
            ssize_t n = nghttp2_session_mem_send(h2->s, &d);
            if (n < 0) {
                sh_log_info("client %llu: HTTP/2 send error: %s", (unsigned long long)c->id,
                            nghttp2_strerror((int)n));
                sh_conn_close(c);
                return;
            }
            if (n == 0)
                break;
            sh_buf_append(out, d, (size_t)n);
            if (out->len >= OUT_BATCH)
                break;
        }
        if (h2->closed || c->closing)
            return;
        if (out->len == 0)
            break;
        uv_buf_t b = uv_buf_init(out->data, (unsigned)out->len);
        if (sh_conn_send(c, &b, 1) != 0) {
            sh_conn_close(c);
            return;
        }
    }
    if (out->cap > 4 * OUT_BATCH)
        sh_buf_dispose(out);
    if (!nghttp2_session_want_read(h2->s) && !nghttp2_session_want_write(h2->s)) {
        sh_conn_close_after_write(c); /* GOAWAY sent or received, nothing left */
        return;
    }
    if (h2->goaway && h2->nstreams == 0 && !nghttp2_session_want_write(h2->s)) {
        sh_conn_close_after_write(c);
        return;
    }
    sh_conn_update_io(c);
}

/* ------------------------------------------------ streams -- */

static h2_stream_t *stream_of(const sh_request_t *r)
{
    return r->h2s;
}

#define OUT_KEEP_MAX (1024 * 1024) /* larger buffers are not kept */

/* A stream's response buffer goes back to its worker's cache. */
static void out_give(sh_worker_t *w, sh_buf_t *b)
{
    if (b->data != NULL && b->cap <= OUT_KEEP_MAX && !w->stopping &&
        w->nh2_out_cache < (int)(sizeof(w->h2_out_cache) / sizeof(w->h2_out_cache[0]))) {
        b->len = 0;
        w->h2_out_cache[w->nh2_out_cache++] = *b;
        *b = (sh_buf_t){0};
        return;
    }
    sh_buf_dispose(b);
}

/* Before the first body byte: a warm buffer from the cache. */
static void out_take(sh_worker_t *w, sh_buf_t *b)
{
    if (b->data == NULL && w->nh2_out_cache > 0)
        *b = w->h2_out_cache[--w->nh2_out_cache];
}

static void stream_free(h2_stream_t *st)
{
    sh_list_remove(&st->link);
    st->h2->nstreams--;
    sh_buf_dispose(&st->hbuf);
    sh_buf_dispose(&st->body);
    out_give(st->h2->c->w, &st->out);
    sh_buf_dispose(&st->trailers);
    sh_buf_dispose(&st->held);
    sh_buf_dispose(&st->rtrailers);
    sh_free(st);
}

/* The request leaves its stream (response complete, aborted, or the
 * stream is gone). */
static void detach_request(h2_stream_t *st)
{
    sh_request_t *r = st->r;
    if (r == NULL)
        return;
    st->r = NULL;
    r->h2s = NULL;
    sh_request_free(r);
}

static void calm_down(sh_h2_t *h2, const char *why)
{
    if (h2->calm == NULL) {
        h2->calm = why;
        h2->c->w->h2_floods++;
        sh_metrics_h2_flood();
    }
}

/* Consume (acknowledge) received DATA bytes: the peer may send more. */
static void consume(h2_stream_t *st, size_t n)
{
    if (n > 0 && !st->h2->closed)
        nghttp2_session_consume(st->h2->s, st->id, n);
}

/* proxy_request_buffering on: the body collects in r->rb until it is
 * whole or over client_body_buffer_size, then the proxy starts (as on
 * HTTP/1.1: a whole body goes with a Content-Length and may be sent again
 * on a retry). The bytes are acknowledged at once, so the client's window
 * does not bound what can be buffered. r may be finished on return. */
static void buffer_body(h2_stream_t *st, const char *data, size_t len, int last)
{
    sh_request_t *r = st->r;
    sh_buf_append(&r->rb, data, len);
    consume(st, len);
    if (last)
        r->body.done = 1;
    if (last || r->rb.len > r->core->client_body_buffer_size) {
        r->buffering = 0;
        r->rb_complete = last;
        r->body_wanted = 0; /* until the proxy asks for the rest */
        r->sink->start(r);
    }
}

/* Hand buffered request body bytes to the proxy while it takes them. */
static void feed_body(h2_stream_t *st)
{
    sh_request_t *r = st->r;
    if (r == NULL || !r->body_wanted || r->body.done)
        return;
    sh_h2_t *h2 = st->h2;
    if (r->buffering) {
        sh_buf_t b = st->body;
        st->body = (sh_buf_t){0};
        buffer_body(st, b.data, b.len, st->body_eof);
        sh_buf_dispose(&b);
        schedule(h2);
        return;
    }
    if (st->body.len > 0) {
        sh_buf_t b = st->body;
        st->body = (sh_buf_t){0};
        int last = st->body_eof;
        if (r->sink != NULL && r->sink->body(r, b.data, b.len, last))
            r->body_wanted = 0;
        consume(st, b.len);
        sh_buf_dispose(&b);
        if (last)
            r->body.done = 1;
    } else if (st->body_eof) {
        r->body.done = 1;
        if (r->sink != NULL)
            r->sink->body(r, "", 0, 1);
    }
    schedule(st->h2);
}

static void body_end(h2_stream_t *st)
{
    st->body_eof = 1;
    sh_request_t *r = st->r;
    if (r == NULL || r->body.done)
        return;
    if (r->discard_body) {
        r->body.done = 1;
        return;
    }
    feed_body(st);
}

/* Lower-case copy of a field name into b; returns its offset. */
static size_t put_lower(sh_buf_t *b, const char *s, size_t n)
{
    size_t off = b->len;
    char *d = sh_buf_reserve(b, n);
    for (size_t i = 0; i < n; i++)
        d[i] = (char)tolower((unsigned char)s[i]);
    b->len += n;
    return off;
}

/* A stream's request fields and trailers, its response trailers and a
 * held response head are kept as records (a 4-byte length, then the
 * bytes: name, then value); lower: the name lowercased. */
static void field_put(sh_buf_t *b, const void *name, size_t namelen, const void *value,
                      size_t valuelen, int lower)
{
    uint32_t l = (uint32_t)namelen;
    sh_buf_append(b, &l, 4);
    if (lower)
        put_lower(b, name, namelen);
    else
        sh_buf_append(b, name, namelen);
    l = (uint32_t)valuelen;
    sh_buf_append(b, &l, 4);
    sh_buf_append(b, value, valuelen);
}

/* The record at *o of b; *o moves past it. */
static const char *field_take(const sh_buf_t *b, size_t *o, size_t *len)
{
    uint32_t l;
    memcpy(&l, b->data + *o, 4);
    const char *p = b->data + *o + 4;
    *len = l;
    *o += 4 + (size_t)l;
    return p;
}

/* The first n records of b (at most max) as nghttp2 fields; how many. */
static size_t field_nv(const sh_buf_t *b, size_t n, nghttp2_nv *nv, size_t max)
{
    size_t o = 0, k = 0;
    for (; k < n && k < max; k++) {
        nv[k].name = (uint8_t *)field_take(b, &o, &nv[k].namelen);
        nv[k].value = (uint8_t *)field_take(b, &o, &nv[k].valuelen);
        nv[k].flags = NGHTTP2_NV_FLAG_NONE;
    }
    return k;
}

/* The request head is complete: build the request and dispatch it. */
static int request_ready(h2_stream_t *st, int end_stream)
{
    sh_h2_t *h2 = st->h2;
    sh_conn_t *c = h2->c;
    sh_request_t *r = sh_request_new(c);
    st->r = r;
    r->h2s = st;
    r->h.version = 20;
    r->h.headers = r->headers;
    r->h.max_headers = SH_MAX_REQUEST_HEADERS;
    r->h.content_length = -1;
    st->body_eof = end_stream;
    if (!st->too_large) {
        /* the records of hbuf as a field list */
        sh_h2_field_t *in = sh_malloc((st->nfields ? st->nfields : 1) * sizeof(*in));
        size_t o = 0;
        for (size_t i = 0; i < st->nfields; i++) {
            in[i].name = field_take(&st->hbuf, &o, &in[i].name_len);
            in[i].value = field_take(&st->hbuf, &o, &in[i].value_len);
        }
        sh_h2_pseudo_t ps;
        const char *why = NULL;
        ssize_t n = sh_http2_build_head(in, st->nfields, &r->head, &r->head_len, &ps, r->headers,
                                        SH_MAX_REQUEST_HEADERS, &why);
        sh_free(in);
        sh_buf_dispose(&st->hbuf);
        if (n == SH_EPARSE) {
            /* RFC 9113 8.1.1: a malformed request is a stream error */
            sh_req_log(SH_LOG_INFO, c, NULL, NULL, "client sent invalid HTTP/2 request: %s", why);
            detach_request(st);
            nghttp2_submit_rst_stream(h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
            return 0;
        }
        if (n == SH_ELIMIT) {
            st->too_large = 1;
        } else {
            r->h.nheaders = (size_t)n;
            r->h.method = ps.method;
            r->h.method_len = ps.method_len;
            r->h.method_id = sh_http1_method_id(ps.method, ps.method_len);
            r->h.target = ps.path;
            r->h.target_len = ps.path_len;
            r->h.keep_alive = 1;
            for (size_t i = 0; i < (size_t)n; i++)
                if (sh_http1_name_is(&r->headers[i], "host")) {
                    r->h.host = r->headers[i].value;
                    r->h.host_len = r->headers[i].value_len;
                    break;
                }
            /* RFC 9113 8.3.1: a host field naming another entity than
             * :authority makes the request malformed; nginx answers 400
             * (it does so even for equal values, which we serve) */
            if (ps.authority != NULL && r->h.host != NULL &&
                (r->h.host_len != ps.authority_len ||
                 strncasecmp(r->h.host, ps.authority, ps.authority_len) != 0))
                r->bad_host = 1;
            st->body_left = end_stream ? 0 : ps.content_length;
            if (!end_stream) {
                /* no length: the upstream gets the body chunked */
                r->h.content_length = ps.content_length;
                r->h.chunked = ps.content_length < 0;
            } else if (ps.content_length > 0) {
                r->h.content_length = -1; /* nghttp2 resets the stream */
            }
        }
    }
    if (st->too_large) {
        sh_buf_dispose(&st->hbuf);
        r->h.status = 431;
        r->h.method = "GET";
        r->h.method_len = 3;
        r->h.target = "/";
        r->h.target_len = 1;
        r->body.done = 1;
        r->discard_body = 1;
        r->srv = c->addr->default_srv;
        sh_req_log(SH_LOG_INFO, c, r, NULL, "client sent too large HTTP/2 header list");
        sh_request_respond(r, 431, NULL, NULL, 0, NULL);
        return 0;
    }
    /* keepalive_requests (nginx 1.19.7+ for HTTP/2): the connection's
     * last request; GOAWAY names it, the client opens a new connection */
    const sh_http_core_loc_t *core =
        sh_http_loc_conf(c->addr->default_srv->loc, &sh_http_core_module);
    if (core->keepalive_requests > 0 && c->nrequests + 1 >= (uint32_t)core->keepalive_requests &&
        !h2->goaway) {
        h2->goaway = 1;
        nghttp2_submit_goaway(h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR, NULL, 0);
        schedule(h2);
    }
    sh_request_dispatch(r);
    /* r may be complete and freed now (a local response) */
    if (st->r != NULL && st->body_eof)
        body_end(st);
    return 0;
}

/* ------------------------------------------------ nghttp2 callbacks -- */

static void count_second(sh_h2_t *h2)
{
    uint64_t sec = sh_worker_now(h2->c->w) / 1000;
    if (sec != h2->win) {
        h2->win = sec;
        h2->n_settings = h2->n_ping = h2->n_empty_data = h2->n_control = 0;
    }
}

/* A connection error (RFC 9113 5.4.1) found by check_frame: GOAWAY with
 * code once nghttp2 returns (sh_http2_input). */
static int conn_error(sh_h2_t *h2, uint32_t code, const char *why)
{
    h2->conn_err = code;
    h2->conn_why = why;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static void closed_add(sh_h2_t *h2, int32_t id, uint8_t how)
{
    h2->recent[h2->recent_next].id = id;
    h2->recent[h2->recent_next].how = how;
    h2->recent_next = (h2->recent_next + 1) % CLOSED_RING;
}

static int in_gap(const sh_h2_t *h2, int32_t id)
{
    for (unsigned i = 0; i < ID_GAPS; i++)
        if (h2->gaps[i].lo != 0 && id >= h2->gaps[i].lo && id <= h2->gaps[i].hi)
            return 1;
    return 0;
}

/* The rules of RFC 9113 on stream states that nghttp2 leaves to us (it
 * forgets closed streams and skips PRIORITY frames once RFC 7540
 * priorities are off), checked on each frame header from the client:
 *
 *   6.3    PRIORITY on stream 0: connection error PROTOCOL_ERROR
 *   5.1.1  HEADERS opening a stream below one already opened (an id the
 *          client skipped): connection error PROTOCOL_ERROR; any frame
 *          but PRIORITY there is one on an idle stream (5.1), the same
 *   5.1    a frame on a stream the client reset, other than PRIORITY:
 *          stream error STREAM_CLOSED (once; later ones are ignored);
 *          DATA or HEADERS after END_STREAM both ways: connection error
 *          STREAM_CLOSED (WINDOW_UPDATE and RST_STREAM may still come
 *          after our END_STREAM: ignored). Frames on streams we reset
 *          are ignored, as the RFC asks (they may have been in flight).
 *
 * Streams the client closed are remembered CLOSED_RING deep, skipped ids
 * ID_GAPS ranges deep; older ones are ignored as nghttp2 does. */
static int check_frame(sh_h2_t *h2, nghttp2_session *s, const nghttp2_frame_hd *hd)
{
    int32_t id = hd->stream_id;
    if (hd->type == NGHTTP2_PRIORITY && id == 0)
        return conn_error(h2, NGHTTP2_PROTOCOL_ERROR, "PRIORITY frame on stream 0");
    if (id == 0 || (id & 1) == 0 || hd->type == NGHTTP2_PRIORITY)
        return 0; /* even ids: nghttp2's (PROTOCOL_ERROR) */
    if (id > h2->last_id) {
        if (hd->type == NGHTTP2_HEADERS) {
            if (id > h2->last_id + 2) {
                h2->gaps[h2->gaps_next].lo = h2->last_id + 2;
                h2->gaps[h2->gaps_next].hi = id - 2;
                h2->gaps_next = (h2->gaps_next + 1) % ID_GAPS;
            }
            h2->last_id = id;
        }
        return 0; /* other frames on idle streams: nghttp2's */
    }
    if (nghttp2_session_find_stream(s, id) != NULL)
        return 0;
    if (in_gap(h2, id))
        return conn_error(h2, NGHTTP2_PROTOCOL_ERROR,
                          hd->type == NGHTTP2_HEADERS
                              ? "stream identifier lower than a previous one"
                              : "frame on an idle stream");
    for (unsigned i = 0; i < CLOSED_RING; i++) {
        if (h2->recent[i].id != id)
            continue;
        if (h2->recent[i].how == CLOSED_CLIENT_RST) {
            h2->recent[i].how = CLOSED_NONE;
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_STREAM_CLOSED);
            return 0;
        }
        if (h2->recent[i].how == CLOSED_BOTH_END &&
            (hd->type == NGHTTP2_DATA || hd->type == NGHTTP2_HEADERS))
            return conn_error(h2, NGHTTP2_STREAM_CLOSED,
                              hd->type == NGHTTP2_DATA ? "DATA on a closed stream"
                                                       : "HEADERS on a closed stream");
        return 0;
    }
    return 0;
}

static int on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *ud)
{
    (void)s;
    sh_h2_t *h2 = ud;
    count_second(h2);
    switch (hd->type) {
    case NGHTTP2_HEADERS:
        /* nginx's rule against rapid reset: no more new streams in one
         * read than twice the concurrency limit */
        if (++h2->opened_this_read > 2u * (uint32_t)h2->max_streams)
            calm_down(h2, "too many streams opened at once");
        break;
    case NGHTTP2_DATA:
        if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM) &&
            ++h2->n_empty_data > MAX_EMPTY_DATA_PER_SEC)
            calm_down(h2, "empty DATA frame flood");
        break;
    case NGHTTP2_SETTINGS:
        if (++h2->n_settings > MAX_SETTINGS_PER_SEC)
            calm_down(h2, "SETTINGS flood");
        break;
    case NGHTTP2_PING:
        if (++h2->n_ping > MAX_PING_PER_SEC)
            calm_down(h2, "PING flood");
        break;
    case NGHTTP2_CONTINUATION:
        break; /* nghttp2 limits CONTINUATION frames per header block */
    case NGHTTP2_WINDOW_UPDATE:
        if (h2->wu_recv < 2 * h2->data_sent + 64) {
            h2->wu_recv++;
            break;
        }
        /* fall through */
    default:
        if (++h2->n_control > MAX_CONTROL_PER_SEC)
            calm_down(h2, "control frame flood");
        break;
    }
    if (h2->calm != NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return check_frame(h2, s, hd);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    sh_h2_t *h2 = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2_stream_t *st = sh_new(h2_stream_t);
    st->h2 = h2;
    st->id = frame->hd.stream_id;
    st->body_left = -1;
    sh_list_insert_head(&h2->streams, &st->link);
    h2->nstreams++;
    sh_metrics_h2_stream();
    nghttp2_session_set_stream_user_data(s, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    sh_h2_t *h2 = ud;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        /* the request's trailers (nghttp2 checked them: END_STREAM, no
         * pseudo-header): kept for a content handler that forwards them
         * (sh_request_trailers), within the same header list limit */
        if (st == NULL || st->too_large || st->nrtrailers >= SH_MAX_REQUEST_HEADERS)
            return 0;
        st->hsize += namelen + valuelen + 32;
        if (st->hsize > h2->header_limit)
            return 0;
        field_put(&st->rtrailers, name, namelen, value, valuelen, 0);
        st->nrtrailers++;
        return 0;
    }
    if (st == NULL || st->too_large)
        return 0;
    st->hsize += namelen + valuelen + 32; /* RFC 9113 6.5.2 */
    if (st->hsize > h2->header_limit || st->nfields >= SH_MAX_REQUEST_HEADERS + 4) {
        st->too_large = 1;
        h2->c->w->h2_header_limit++;
        return 0;
    }
    field_put(&st->hbuf, name, namelen, value, valuelen, 0);
    st->nfields++;
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    (void)ud;
    h2_stream_t *st =
        frame->hd.stream_id ? nghttp2_session_get_stream_user_data(s, frame->hd.stream_id) : NULL;
    if (st == NULL)
        return 0;
    int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
            return request_ready(st, end);
        if (end)
            body_end(st); /* trailers end the body */
        break;
    case NGHTTP2_DATA:
        if (end)
            body_end(st);
        break;
    case NGHTTP2_RST_STREAM:
        st->client_rst = 1;
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(s, id);
    if (st == NULL) {
        nghttp2_session_consume_connection(s, len);
        return 0;
    }
    if (st->body_left > 0)
        st->body_left -= (int64_t)len < st->body_left ? (int64_t)len : st->body_left;
    sh_request_t *r = st->r;
    if (r == NULL || r->discard_body || r->body.done) {
        consume(st, len);
        return 0;
    }
    r->body_received += len;
    if (r->core != NULL && r->core->client_max_body_size > 0 &&
        r->body_received > r->core->client_max_body_size) {
        sh_req_log(SH_LOG_ERR, NULL, r, NULL, "client intended to send too large body: %llu+ bytes",
                   (unsigned long long)r->body_received);
        consume(st, len);
        r->body.done = 1;
        r->discard_body = 1;
        if (r->resp_started)
            sh_request_abort(r);
        else
            sh_request_respond(r, 413, NULL, NULL, 0, NULL);
        return 0;
    }
    if (r->body_wanted && st->body.len == 0 && r->buffering) {
        buffer_body(st, (const char *)data, len, 0);
        schedule(st->h2);
        return 0;
    }
    if (r->body_wanted && st->body.len == 0) {
        if (r->sink != NULL && r->sink->body(r, (const char *)data, len, 0))
            r->body_wanted = 0;
        consume(st, len);
        return 0;
    }
    /* not yet (connecting) or the upstream pushes back: held within the
     * stream's window, acknowledged when the proxy takes it */
    sh_buf_append(&st->body, data, len);
    return 0;
}

/* RFC 9113 8.1: a response complete while the client is still sending
 * its body (an early response: 413, 403, `return`, an error page, an
 * upstream that answered first) is followed by RST_STREAM(NO_ERROR), which
 * tells the client to stop sending without discarding the response. Only
 * once the response's END_STREAM is out (nghttp2 sends RST_STREAM before
 * queued DATA, so earlier it would cut the response) and once the request
 * is finished (so the stream's close does not end a request still being
 * answered): whichever of the two comes last calls this.
 *
 * When the rest of the body (by its content-length) fits in the window
 * the client holds, it may all be in flight already: it is read and
 * dropped instead (consumed as it comes; the client ends the stream),
 * since clients that treat a reset during their upload as an error (curl
 * 7.88: error 92) then keep the response. */
static void early_reset(h2_stream_t *st)
{
    sh_h2_t *h2 = st->h2;
    if (!st->end_sent || st->r != NULL || st->body_eof || st->rst_sent || h2->closed)
        return;
    st->rst_sent = 1;
    SH_WORKER_COUNT(h2->c->w, h2_early_responses);
    if (st->body_left >= 0 &&
        st->body_left <= nghttp2_session_get_stream_local_window_size(h2->s, st->id))
        return;
    nghttp2_submit_rst_stream(h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    schedule(h2);
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    if (frame->hd.type == NGHTTP2_DATA)
        ((sh_h2_t *)ud)->data_sent++;
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        h2_stream_t *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
        if (st != NULL)
            st->we_rst = 1;
        return 0;
    }
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
        (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA))
        return 0;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (st != NULL) {
        st->end_sent = 1;
        early_reset(st);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
    (void)error_code;
    sh_h2_t *h2 = ud;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(s, id);
    if (st == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    if (!st->we_rst && (st->client_rst || (st->body_eof && st->end_sent)))
        closed_add(h2, id, st->client_rst ? CLOSED_CLIENT_RST : CLOSED_BOTH_END);
    if (st->r != NULL && !st->r->resp_done) {
        h2->c->w->h2_client_resets++; /* the client gave up on it */
        sh_metrics_h2_reset();
    }
    detach_request(st);
    stream_free(st);
    if (h2->nstreams == 0)
        schedule(h2); /* timers, or the close after GOAWAY */
    return 0;
}

/* The response body for nghttp2's DATA frames: how many bytes the next
 * frame carries, without copying them (NGHTTP2_DATA_FLAG_NO_COPY):
 * send_data() then writes the frame straight from the stream's buffer into
 * the connection's output, one copy fewer than through nghttp2's buffer.
 * nghttp2 calls send_data() for this frame before it reads again. */
static ssize_t data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ud;
    (void)buf;
    h2_stream_t *st = src->ptr;
    size_t avail = st->out.len - st->out_off;
    if (avail == 0 && !st->out_eof) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? avail : length;
    if (n > 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (st->out_eof && n == avail) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->ntrailers > 0) {
            nghttp2_nv nv[SH_MAX_REQUEST_HEADERS];
            size_t k = field_nv(&st->trailers, st->ntrailers, nv, SH_MAX_REQUEST_HEADERS);
            if (nghttp2_submit_trailer(s, id, nv, k) == 0)
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
    }
    sh_request_t *r = st->r;
    if (n == 0 && r != NULL)
        sh_request_drained(r); /* else send_data() tells once the bytes are out */
    return (ssize_t)n;
}

/* A DATA frame data_read() sized: its header, then length bytes from the
 * stream's buffer (and padding, which Shoal never asks for), appended to
 * the connection's output batch. The whole frame is written each time;
 * once the batch is full the write pass pauses to send it. */
static int send_data(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
                     size_t length, nghttp2_data_source *src, void *ud)
{
    (void)s;
    sh_h2_t *h2 = ud;
    h2_stream_t *st = src->ptr;
    sh_buf_t *out = &h2->c->w->h2_out;
    size_t pad = frame->data.padlen;
    sh_buf_append(out, framehd, 9);
    if (pad > 0) {
        uint8_t pl = (uint8_t)(pad - 1);
        sh_buf_append(out, &pl, 1);
    }
    sh_buf_append(out, st->out.data + st->out_off, length);
    for (size_t i = 1; i < pad; i++)
        sh_buf_append(out, "", 1);
    st->out_off += length;
    if (st->out_off == st->out.len) {
        st->out.len = st->out_off = 0;
        if (st->out.cap > OUT_KEEP_MAX)
            sh_buf_dispose(&st->out);
    }
    sh_request_t *r = st->r;
    if (r != NULL && st->out.len - st->out_off < SH_WBUF_LOW)
        sh_request_drained(r);
    return out->len >= OUT_BATCH ? NGHTTP2_ERR_PAUSE : 0;
}

/* ------------------------------------------------ connection -- */

int sh_http2_start(sh_conn_t *c)
{
    const sh_http_srv_t *srv = c->addr->default_srv;
    const h2_conf_t *hc = sh_http_loc_conf(srv->loc, &sh_http2_module);
    const sh_http_core_loc_t *core = sh_http_loc_conf(srv->loc, &sh_http_core_module);
    sh_h2_t *h2 = sh_new(sh_h2_t);
    h2->c = c;
    h2->max_streams = hc->max_streams;
    h2->header_limit = core->large_header_buffer_size * (size_t)core->large_header_buffers;
    sh_list_init(&h2->streams);
    sh_list_init(&h2->dirty);

    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_send_data_callback(cbs, send_data);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, 256);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_continuations(opt, 8);
    nghttp2_option_set_stream_reset_rate_limit(opt, RESET_BURST, RESET_RATE);
    int rc = nghttp2_session_server_new3(&h2->s, cbs, h2, opt, &h2_mem);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (rc != 0) {
        sh_log_err("nghttp2_session_server_new3() failed: %s", nghttp2_strerror(rc));
        sh_free(h2);
        return SH_EIO;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)h2->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)h2->header_limit},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    nghttp2_submit_settings(h2->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    nghttp2_session_set_local_window_size(h2->s, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    c->h2 = h2;
    c->proto = &sh_http2_proto;
    c->w->h2_conns++;
    schedule(h2);
    return 0;
}

/* Follow the frame boundaries over len more bytes from the client; stop
 * where a check of check_frame is due (h2->check): right after the header
 * of a DATA frame (nghttp2 does not tell us of DATA on streams it forgot)
 * and after the payload of a PRIORITY frame (nghttp2 skips them unread
 * once RFC 7540 priorities are off). Returns the bytes followed. */
static size_t track_frames(sh_h2_t *h2, const unsigned char *p, size_t len)
{
    size_t i = 0;
    if (h2->preface_seen < SH_H2_PREFACE_LEN) {
        size_t k = SH_H2_PREFACE_LEN - h2->preface_seen;
        k = k < len ? k : len;
        h2->preface_seen += (uint32_t)k;
        i = k;
    }
    while (i < len) {
        if (h2->fr_left > 0) {
            size_t k = len - i < h2->fr_left ? len - i : h2->fr_left;
            for (size_t j = 0; j < k && h2->pri_n < 5; j++)
                h2->pri[h2->pri_n++] = p[i + j];
            h2->fr_left -= (uint32_t)k;
            i += k;
            if (h2->fr_type == NGHTTP2_PRIORITY && h2->fr_left == 0 && h2->pri_n == 5) {
                h2->check = CHECK_PRIORITY;
                return i;
            }
            continue;
        }
        h2->fr_hdr[h2->fr_nhdr++] = p[i++];
        if (h2->fr_nhdr < 9)
            continue;
        h2->fr_nhdr = 0;
        const uint8_t *hd = h2->fr_hdr;
        h2->fr_left = (uint32_t)hd[0] << 16 | (uint32_t)hd[1] << 8 | hd[2];
        h2->fr_type = hd[3];
        h2->fr_sid = (int32_t)(((uint32_t)hd[5] << 24 | (uint32_t)hd[6] << 16 |
                                (uint32_t)hd[7] << 8 | hd[8]) &
                               0x7fffffff);
        /* a PRIORITY of another size is nghttp2's (FRAME_SIZE_ERROR) */
        h2->pri_n = hd[3] == NGHTTP2_PRIORITY && h2->fr_left == 5 ? 0 : 5;
        if (hd[3] == NGHTTP2_HEADERS || hd[3] == NGHTTP2_PUSH_PROMISE)
            h2->in_block = !(hd[4] & NGHTTP2_FLAG_END_HEADERS);
        else if (hd[3] == NGHTTP2_CONTINUATION && (hd[4] & NGHTTP2_FLAG_END_HEADERS))
            h2->in_block = 0;
        if (hd[3] == NGHTTP2_DATA) {
            h2->check = CHECK_DATA;
            return i;
        }
    }
    return i;
}

/* The check track_frames asked for, with nghttp2 having read every frame
 * before (a DATA frame's header but its last byte, so the stream is as
 * the frame finds it). 0, or NGHTTP2_ERR_CALLBACK_FAILURE with
 * h2->conn_err set. */
static int run_check(sh_h2_t *h2)
{
    int what = h2->check;
    h2->check = CHECK_NONE;
    if (what == CHECK_DATA) {
        nghttp2_frame_hd hd = {.length = h2->fr_left,
                               .stream_id = h2->fr_sid,
                               .type = NGHTTP2_DATA,
                               .flags = h2->fr_hdr[4]};
        return check_frame(h2, h2->s, &hd);
    }
    /* RFC 9113 5.3.1: a stream cannot depend on itself: a stream error
     * PROTOCOL_ERROR, or a connection error for an idle stream (nghttp2
     * sends no RST_STREAM there, and a client must not receive one) */
    uint32_t dep = ((uint32_t)h2->pri[0] << 24 | (uint32_t)h2->pri[1] << 16 |
                    (uint32_t)h2->pri[2] << 8 | h2->pri[3]) &
                   0x7fffffff;
    if (h2->fr_sid == 0 || dep != (uint32_t)h2->fr_sid)
        return 0;
    if (h2->fr_sid > nghttp2_session_get_last_proc_stream_id(h2->s))
        return conn_error(h2, NGHTTP2_PROTOCOL_ERROR, "an idle stream depends on itself");
    sh_log_info("client %llu: HTTP/2 stream %d depends on itself", (unsigned long long)h2->c->id,
                (int)h2->fr_sid);
    nghttp2_submit_rst_stream(h2->s, NGHTTP2_FLAG_NONE, h2->fr_sid, NGHTTP2_PROTOCOL_ERROR);
    return 0;
}

int sh_http2_head_pending(const sh_h2_t *h2)
{
    /* a DATA frame under way is body: timed per read, as nginx times a
     * body (client_body_timeout between two reads) */
    return h2->preface_seen < SH_H2_PREFACE_LEN || h2->fr_nhdr > 0 || h2->in_block ||
           (h2->fr_left > 0 && h2->fr_type != NGHTTP2_DATA);
}

int sh_http2_idle(const sh_h2_t *h2)
{
    return !h2->closed && h2->nstreams == 0 && !sh_http2_head_pending(h2);
}

int sh_http2_input(sh_h2_t *h2, const char *data, size_t len)
{
    sh_conn_t *c = h2->c;
    if (h2->closed || c->closing)
        return -1;
    h2->opened_this_read = 0;
    ssize_t n = 0;
    const uint8_t *p = (const uint8_t *)data;
    h2->in_recv = 1;
    while (len > 0 && n >= 0 && h2->conn_err == 0) {
        size_t k = track_frames(h2, p, len);
        /* a DATA frame's last header byte goes after its check */
        size_t feed = h2->check == CHECK_DATA ? k - 1 : k;
        n = feed > 0 ? nghttp2_session_mem_recv(h2->s, p, feed) : 0;
        if (n < 0 || h2->closed || c->closing)
            break;
        if (h2->check != CHECK_NONE && run_check(h2) != 0)
            break;
        if (feed < k)
            n = nghttp2_session_mem_recv(h2->s, p + feed, 1);
        p += k;
        len -= k;
    }
    h2->check = CHECK_NONE;
    h2->in_recv = 0;
    if (h2->closed || c->closing)
        return -1;
    if (h2->calm != NULL) {
        sh_log_warn("client %llu: %s, closing the HTTP/2 connection", (unsigned long long)c->id,
                    h2->calm);
        nghttp2_session_terminate_session(h2->s, NGHTTP2_ENHANCE_YOUR_CALM);
    } else if (h2->conn_err != 0) {
        sh_log_info("client %llu: HTTP/2 error: %s", (unsigned long long)c->id, h2->conn_why);
        nghttp2_session_terminate_session(h2->s, h2->conn_err);
    } else if (n < 0) {
        sh_log_info("client %llu: HTTP/2 error: %s", (unsigned long long)c->id,
                    nghttp2_strerror((int)n));
        if (n == NGHTTP2_ERR_FLOODED) {
            c->w->h2_floods++;
            sh_metrics_h2_flood();
        }
        /* RFC 9113 3.4: an invalid preface is a connection error
         * PROTOCOL_ERROR: GOAWAY (which may be omitted) and close */
        nghttp2_session_terminate_session(
            h2->s, n == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
    }
    schedule(h2);
    return 0;
}

void sh_http2_written(sh_h2_t *h2)
{
    schedule(h2);
}

int sh_http2_want_read(const sh_h2_t *h2)
{
    if (h2->closed)
        return 0;
    /* a peer that does not read what it asks for (PINGs, SETTINGS ACKs,
     * responses) is not read either */
    return !conn_queued_high(h2) && nghttp2_session_want_read(h2->s);
}

uint64_t sh_http2_timeout(const sh_h2_t *h2)
{
    const sh_http_core_loc_t *core =
        sh_http_loc_conf(h2->c->addr->default_srv->loc, &sh_http_core_module);
    /* Idle: keepalive_timeout. With streams: send_timeout, re-armed on
     * every read and write pass, so a client that stops reading (and
     * opening windows) cannot hold upstream connections for ever. */
    return h2->nstreams > 0 ? core->send_timeout : core->keepalive_timeout;
}

void sh_http2_shutdown(sh_h2_t *h2)
{
    if (h2->closed)
        return;
    if (!h2->goaway) {
        h2->goaway = 1;
        nghttp2_submit_goaway(h2->s, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(h2->s), NGHTTP2_NO_ERROR,
                              NULL, 0);
    }
    schedule(h2);
}

void sh_http2_close(sh_h2_t *h2)
{
    if (h2->closed)
        return;
    h2->closed = 1;
    if (h2->dirty.next != &h2->dirty)
        sh_list_remove(&h2->dirty);
    for (sh_link_t *l = h2->streams.next; l != &h2->streams; l = l->next)
        detach_request(container_of(l, h2_stream_t, link));
}

void sh_http2_destroy(sh_h2_t *h2)
{
    if (h2 == NULL)
        return;
    while (!sh_list_empty(&h2->streams))
        stream_free(container_of(h2->streams.next, h2_stream_t, link));
    nghttp2_session_del(h2->s);
    sh_free(h2);
}

/* ------------------------------------------------ responses -- */

/* HTTP/2 framing: content-length when known (RFC 9113 8.1.1), none on
 * 1xx, 204 and 304; no connection-specific fields. */
static void h2_frame(sh_request_t *r, sh_resp_head_t *h)
{
    (void)r;
    if (h->length >= 0 && h->status != 204 && h->status != 304 && h->status >= 200) {
        size_t n = sh_fmt_u64(h->clen, (uint64_t)h->length);
        sh_resp_head_add(h, "content-length", 14, h->clen, n);
    }
}

/* The filtered head as a HEADERS frame: names lower-cased into one buffer
 * (offsets first, pointers at the end), values as given. */
static int h2_send_head(sh_request_t *r, const sh_resp_head_t *h)
{
    h2_stream_t *st = stream_of(r);
    if (st == NULL || st->h2->closed)
        return -1;
    sh_h2_t *h2 = st->h2;
    sh_worker_t *w = r->c->w;
    r->resp_started = 1;
    sh_buf_t *nb = &w->h2_hdr;
    nb->len = 0;
    nghttp2_nv nv[SH_RESP_FIELDS_MAX + 1];
    size_t offs[SH_RESP_FIELDS_MAX + 1];
    size_t k = 0;
    int status = h->status;
    char code[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), 0};
    nv[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < h->n; i++) {
        if (h->f[i].name_len == 0)
            continue; /* deleted by a filter */
        offs[k] = put_lower(nb, h->f[i].name, h->f[i].name_len);
        nv[k++] = (nghttp2_nv){NULL, (uint8_t *)h->f[i].value, h->f[i].name_len, h->f[i].value_len,
                               NGHTTP2_NV_FLAG_NONE};
    }
    for (size_t i = 1; i < k; i++)
        nv[i].name = (uint8_t *)nb->data + offs[i];
    size_t head_bytes = 0;
    for (size_t i = 0; i < k; i++)
        head_bytes += nv[i].namelen + nv[i].valuelen + 4;
    r->bytes_sent += head_bytes; /* before HPACK: what the fields weigh */
    int rc;
    if ((h->flags & (SH_RESP_NO_BODY | SH_RESP_HELD)) == (SH_RESP_NO_BODY | SH_RESP_HELD)) {
        /* the HEADERS go with END_STREAM at sh_response_end(), so the
         * client sees the response end only then (a HEAD sent upstream
         * as GET: once its body is stored) */
        st->held.len = 0;
        for (size_t i = 0; i < k; i++)
            field_put(&st->held, nv[i].name, nv[i].namelen, nv[i].value, nv[i].valuelen, 0);
        st->nheld = k;
        rc = 0;
    } else if (h->flags & SH_RESP_NO_BODY) {
        st->out_eof = 1;
        rc = nghttp2_submit_response(h2->s, st->id, nv, k, NULL);
    } else {
        /* a known length sizes the body buffer once, not by a chain of
         * reallocs that copy what it holds (capped: the producer pauses
         * above SH_WBUF_HIGH) */
        if (h->length > 0) {
            out_take(w, &st->out);
            size_t want = (uint64_t)h->length < SH_WBUF_HIGH + OUT_BATCH ? (size_t)h->length
                                                                         : SH_WBUF_HIGH + OUT_BATCH;
            if (st->out.cap - st->out.len < want) {
                if (st->out.len == 0)
                    sh_buf_dispose(&st->out); /* a realloc would copy it */
                sh_buf_reserve(&st->out, want);
            }
        }
        nghttp2_data_provider prd = {.source.ptr = st, .read_callback = data_read};
        rc = nghttp2_submit_response(h2->s, st->id, nv, k, &prd);
    }
    if (nb->cap > 64 * 1024)
        sh_buf_dispose(nb);
    if (rc != 0) {
        sh_log_info("client %llu: nghttp2_submit_response() failed: %s",
                    (unsigned long long)r->c->id, nghttp2_strerror(rc));
        sh_http2_request_abort(r);
        return -1;
    }
    st->responded = 1;
    schedule(h2);
    return 0;
}

static int h2_flush(sh_request_t *r)
{
    (void)r;
    return 0; /* the session writes at the end of the loop iteration */
}

static void h2_send_timer(sh_request_t *r)
{
    (void)r; /* HTTP/2: the connection's own timer */
}

static void h2_head_done(sh_request_t *r)
{
    (void)r; /* each stream buffers its own body (flow control) */
}

int sh_http2_response_body(sh_request_t *r, const char *data, size_t len)
{
    h2_stream_t *st = stream_of(r);
    if (st == NULL || st->h2->closed)
        return -1;
    out_take(st->h2->c->w, &st->out);
    sh_buf_append(&st->out, data, len);
    r->bytes_sent += len;
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->h2->s, st->id);
    }
    schedule(st->h2);
    return 0;
}

int sh_http2_response_end(sh_request_t *r, const sh_http1_header_t *trailers, size_t n)
{
    h2_stream_t *st = stream_of(r);
    if (st == NULL || st->h2->closed)
        return -1;
    if (st->nheld > 0) {
        /* a held head (SH_RESP_NO_BODY | SH_RESP_HELD): out now, alone */
        nghttp2_nv nv[SH_RESP_FIELDS_MAX + 1];
        size_t k = field_nv(&st->held, st->nheld, nv, SH_RESP_FIELDS_MAX + 1);
        st->nheld = 0;
        st->out_eof = 1;
        int rc = nghttp2_submit_response(st->h2->s, st->id, nv, k, NULL);
        if (rc != 0) {
            sh_log_info("client %llu: nghttp2_submit_response() failed: %s",
                        (unsigned long long)r->c->id, nghttp2_strerror(rc));
            sh_http2_request_abort(r);
            return -1;
        }
        st->responded = 1;
        schedule(st->h2);
        return 0;
    }
    if (st->out_eof)
        return 0; /* a response without a body ended with its head */
    for (size_t i = 0; i < n && i < SH_MAX_REQUEST_HEADERS; i++) {
        field_put(&st->trailers, trailers[i].name, trailers[i].name_len, trailers[i].value,
                  trailers[i].value_len, 1);
        st->ntrailers++;
    }
    st->out_eof = 1;
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->h2->s, st->id);
    }
    schedule(st->h2);
    return 0;
}

void sh_http2_request_finish(sh_request_t *r)
{
    h2_stream_t *st = stream_of(r);
    r->resp_done = 1;
    if (st == NULL) {
        sh_request_free(r);
        return;
    }
    detach_request(st);
    early_reset(st);
}

void sh_http2_request_abort(sh_request_t *r)
{
    h2_stream_t *st = stream_of(r);
    if (st == NULL) {
        sh_request_free(r);
        return;
    }
    if (!st->h2->closed) {
        nghttp2_submit_rst_stream(st->h2->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        schedule(st->h2);
    }
    detach_request(st);
}

void sh_http2_body_resume(sh_request_t *r)
{
    h2_stream_t *st = stream_of(r);
    if (st == NULL || r->body.done)
        return;
    r->body_wanted = 1;
    feed_body(st);
}

size_t sh_http2_out_queued(const sh_request_t *r)
{
    const h2_stream_t *st = stream_of(r);
    return st ? st->out.len - st->out_off : 0;
}

const sh_http_proto_t sh_http2_proto = {
    .name = "HTTP/2.0",
    .frame = h2_frame,
    .send_head = h2_send_head,
    .flush = h2_flush,
    .send_body = sh_http2_response_body,
    .end = sh_http2_response_end,
    .finish = sh_http2_request_finish,
    .abort = sh_http2_request_abort,
    .body_resume = sh_http2_body_resume,
    .queued = sh_http2_out_queued,
    .send_timer = h2_send_timer,
    .head_done = h2_head_done,
    .trailers = sh_http2_request_trailers,
    .head_ends_response = 1,
};

size_t sh_http2_nstreams(const sh_h2_t *h2)
{
    return h2->nstreams;
}

size_t sh_http2_request_trailers(const sh_request_t *r, sh_http1_header_t *out, size_t max)
{
    const h2_stream_t *st = r->h2s;
    if (st == NULL)
        return 0;
    size_t o = 0, k = 0;
    for (size_t i = 0; i < st->nrtrailers && k < max; i++, k++) {
        out[k].name = field_take(&st->rtrailers, &o, &out[k].name_len);
        out[k].value = field_take(&st->rtrailers, &o, &out[k].value_len);
    }
    return k;
}
