/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node's runtime types shared by the worker-side modules: the worker,
 * the client connection, the request, and the upstream connection. All of
 * them live on one worker thread and are touched only by it; the
 * configuration they point at (sh_runtime_t) is immutable and shared.
 *
 * Memory: a client connection holds no buffer while idle (reads land in
 * the worker's shared read buffer; only unconsumed bytes are kept). A
 * request owns a copy of its head and is freed when its response ends.
 */
#ifndef SH_NODE_H
#define SH_NODE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "http/http1.h"
#include "http/status.h"
#include "node/conn/proxyproto.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/pipeline.h"

#define SH_MAX_REQUEST_HEADERS 128
#define SH_WBUF_HIGH           (256 * 1024) /* stop reading the other side above this */
#define SH_WBUF_LOW            (64 * 1024)  /* and start again below this */
#define SH_READ_BUF            (64 * 1024)
#define SH_TLS_PLAIN_BUF       (32 * 1024)

typedef struct sh_runtime_s sh_runtime_t;
typedef struct sh_worker_s sh_worker_t;
typedef struct sh_conn_s sh_conn_t;
typedef struct sh_request_s sh_request_t;
typedef struct sh_uconn_s sh_uconn_t;
typedef struct sh_ups_rt_s sh_ups_rt_t;
typedef struct sh_tls_s sh_tls_t;

/* What a module (the cache) asks of the proxy for one request, set on
 * r->up_hooks before the content phase; the proxy knows nothing else of
 * it (node/proxy/proxy.c).
 * - method: sent instead of the client's (proxy_cache_convert_head sends
 *   GET for HEAD: the body is then read, passed to the body filters and
 *   not to the client); NULL: the client's.
 * - strip_cond: the client's If-Modified-Since, If-Unmodified-Since,
 *   If-None-Match, If-Match, Range and If-Range are not sent (nginx's
 *   proxy headers when caching: the cache answers them itself).
 * - extra: fields added to the upstream request (revalidation).
 * - answer: called when an upstream's response head arrived, before it
 *   goes to the client (status and fields as received), or when no server
 *   is left after a failure (status SH_UP_ERROR / SH_UP_TIMEOUT /
 *   SH_UP_INVALID, fields NULL). Returns 1 to take r over: the proxy
 *   then lets the upstream go, detaches from r and calls respond(r), which
 *   answers it; 0 to go on. */
#define SH_UP_ERROR   (-1)
#define SH_UP_TIMEOUT (-2)
#define SH_UP_INVALID (-3)
typedef struct sh_up_hooks_s {
    const char *method;
    size_t method_len;
    unsigned strip_cond;
    const sh_http1_header_t *extra;
    size_t nextra;
    int (*answer)(sh_request_t *r, int status, const sh_http1_header_t *hs, size_t n);
    void (*respond)(sh_request_t *r); /* after answer() took r */
} sh_up_hooks_t;

/* Doubly linked intrusive list. */
typedef struct sh_link_s {
    struct sh_link_s *prev, *next;
} sh_link_t;

static inline void sh_list_init(sh_link_t *h)
{
    h->prev = h->next = h;
}
static inline int sh_list_empty(const sh_link_t *h)
{
    return h->next == h;
}
static inline void sh_list_insert_head(sh_link_t *h, sh_link_t *l)
{
    l->next = h->next;
    l->prev = h;
    h->next->prev = l;
    h->next = l;
}
static inline void sh_list_remove(sh_link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

struct sh_worker_totals_s; /* node/worker.h */

/* The loaded configuration, as the workers use it. */
struct sh_runtime_s {
    void **main_confs; /* by module index */
    sh_conf_module_t *const *modules;
    unsigned nmodules;
    sh_http_main_t *http; /* NULL without an http block */
    int worker_processes;
    int worker_connections;
    uint64_t shutdown_timeout; /* ms to drain on stop */
    /* The node's counters summed over every worker (stub_status); set by
     * the main program before the workers start. Any thread. */
    void (*totals)(void *ud, struct sh_worker_totals_s *t);
    void *totals_ud;
};

enum sh_conn_state {
    SH_CONN_HEAD = 0, /* waiting for (more of) a request head */
    SH_CONN_BODY,     /* reading the request body */
    SH_CONN_WAIT,     /* request read; response under way */
    SH_CONN_TUNNEL,   /* after 101 Switching Protocols: bytes both ways */
    SH_CONN_CLOSING
};

/* A timeout entry (node/timeq.h). */
typedef struct {
    sh_link_t link;
    uint64_t deadline;
} sh_timeq_entry_t;

typedef struct sh_timeq_s sh_timeq_t;
typedef struct sh_timers_s {
    uv_timer_t timer;
    uint64_t armed; /* deadline the timer is set for; UINT64_MAX: none */
    sh_timeq_t **qs;
    size_t nqs;
    void (*expire)(sh_timeq_entry_t *e);
} sh_timers_t;

struct sh_conn_s {
    uv_tcp_t tcp;
    sh_timeq_entry_t tq; /* the connection's one timeout */
    /* when client_header_timeout ends the request head (and the TLS
     * handshake) under way; 0: none under way (conn.c, head_timer) */
    uint64_t head_deadline;
    sh_worker_t *w;
    const sh_http_addr_t *addr;
    sh_link_t link;      /* worker's connection list */
    sh_buf_t in;         /* bytes read but not consumed yet */
    sh_request_t *r;     /* the current request, or NULL */
    uint64_t id;         /* $connection */
    uint64_t start_ms;   /* accepted at (worker clock): $connection_time */
    uint32_t nrequests;  /* $connection_requests */
    uint8_t state;       /* enum sh_conn_state */
    uint8_t reading : 1; /* uv_read_start is on */
    uint8_t closing : 1;
    uint8_t in_process : 1;  /* inside process(): do not re-enter */
    uint8_t proto_known : 1; /* HTTP/1.1 or HTTP/2 decided (ALPN, preface) */
    uint8_t draining : 1;    /* processing bytes left after a request: pipelined */
    uint8_t tls_sniffed : 1; /* the first bytes on a TLS address were looked at */
    uint8_t closing_handles;
    sh_tls_t *tls;                /* on `listen ... ssl` addresses, else NULL */
    struct sh_h2_s *h2;           /* HTTP/2 session (node/http2.c), else NULL */
    const sh_http_proto_t *proto; /* HTTP/1.1 (conn.c) or HTTP/2 (http2.c) */
    struct sockaddr_in6 peer;     /* large enough for v4 and v6 */
    sh_pp_t *pp;                  /* `listen ... proxy_protocol`: the PROXY header read */
    uint8_t pp_done;              /* the PROXY header is read */
    uint8_t handle_closed;        /* the socket is closed: freed when holds is 0 */
    uint32_t holds; /* background subrequests (mirror) still reading it (sh_conn_hold) */
};

/* Body framing of one direction. */
typedef struct {
    int64_t left; /* Content-Length bytes still to come; -1: n/a */
    sh_http1_chunked_t chunk;
    uint8_t chunked : 1;
    uint8_t until_close : 1; /* responses without length: read to EOF */
    uint8_t done : 1;
} sh_body_t;

struct sh_request_s {
    sh_conn_t *c;
    sh_worker_t *w;              /* c->w, still valid when c is gone (deferred free) */
    sh_request_t *dead;          /* the worker's list of requests freed this iteration */
    void *ctx[SH_REQUEST_SLOTS]; /* per module index (sh_request_ctx) */
    struct {
        sh_cleanup_pt fn;
        void *data;
    } cleanup[SH_REQUEST_CLEANUPS];
    uint8_t ncleanup;
    uint8_t nredirects; /* internal redirects so far (at most 10) */
    uint8_t nbf;        /* body filters attached to this response */
    uint16_t ph;        /* index of the phase handler the request is at */
    int end_status;     /* the status to log when it ends early (408) */
    int err_status;     /* error_page: the status the redirected response gets */
    sh_body_filter_pt bf[SH_BODY_FILTERS_MAX];
    const sh_http1_header_t *trailers; /* for the writer, at the body's end */
    void (*on_drain)(sh_request_t *r); /* a content handler waits for the client */
    size_t ntrailers;
    char *head; /* copy of the request head; the parser's pointers point here */
    size_t head_len;
    sh_http1_request_t h;
    sh_str_t path; /* target up to '?' */
    sh_str_t args; /* after '?', without it */
    sh_str_t uri;  /* $uri: path normalized (decoded, dot segments, slashes) */
    const sh_http_srv_t *srv;
    const sh_http_loc_t *loc;
    const sh_http_core_loc_t *core;
    sh_body_t body; /* request body */
    uint64_t start_ms;
    int status; /* response status sent */
    uint64_t bytes_sent;
    uint64_t body_bytes_sent;
    uint64_t body_received;
    void *proxy;                       /* sh_proxy_req_t when proxying */
    const struct sh_body_sink_s *sink; /* who takes the request body, or NULL */
    const sh_up_hooks_t *up_hooks;     /* a module's wishes for the proxy, or NULL */
    void *h2s;                         /* the HTTP/2 stream (http2.c), NULL on HTTP/1.1 */
    uint64_t up_bytes_received;
    uint64_t up_bytes_sent;
    /* The client's address when a module (realip) set another than the
     * connection's peer: $remote_addr, allow/deny, logs and limits read
     * it through sh_request_peer(). */
    const struct sockaddr_in6 *client;
    /* A subrequest (node/pipeline/subrequest.h): its parent, the capture
     * protocol its response goes to instead of the client, its state. */
    sh_request_t *parent;
    const sh_http_proto_t *proto; /* NULL: the connection's */
    void *sub;
    uint8_t discard_body : 1; /* local response: read and drop the body */
    uint8_t resp_started : 1; /* a response byte went to the client */
    uint8_t resp_done : 1;
    uint8_t keepalive : 1;    /* keep the connection after this response */
    uint8_t resp_chunked : 1; /* we chunk-encode the response body */
    uint8_t head_only : 1;    /* HEAD: no response body */
    uint8_t body_wanted : 1;  /* the proxy takes request body bytes now */
    uint8_t sent_continue : 1;
    uint8_t buffering : 1;   /* reading the body into rb before proxying */
    uint8_t rb_complete : 1; /* rb holds the whole body */
    uint8_t bad_uri : 1;     /* the path could not be normalized: 400 at find-config */
    uint8_t internal : 1;    /* reached through an internal redirect */
    uint8_t paused : 1;      /* a phase handler paused it (sh_phase_resume) */
    uint8_t logged : 1;      /* the log phase ran */
    uint8_t freed : 1;       /* ended: back to the free list at the end of the iteration */
    uint8_t try_done : 1;    /* try_files chose $uri: it does not run again */
    uint8_t error_page : 1;  /* an error_page redirect happened (recursive_error_pages) */
    uint8_t bad_host : 1;    /* HTTP/2 host differing from :authority: 400 (conn.c) */
    uint8_t srv_checked : 1; /* the first server-config step ran (pipeline.c) */
    uint8_t pipelined : 1;   /* its head came behind another request's bytes: $pipe */
    uint8_t has_id : 1;      /* request_id is made */
    uint8_t request_id[16];  /* $request_id, made on first use */
    uint8_t loc_checked : 1; /* the first find-config step ran */
    /* the URI is not the request line's any more (rewrite, internal
     * redirect): a proxy sends r->uri, escaped, not the client's path */
    uint8_t uri_changed : 1;
    /* `rewrite ... break` changed the URI inside the location: proxy_pass
     * with a URI sends the whole changed URI (nginx's !valid_location) */
    uint8_t uri_break : 1;
    /* $1..$9 and named captures of the last regex that matched in the
     * rewrite module (rewrite, if), else NULL: the location's (vars.c) */
    const struct sh_captures_s *caps;
    const struct sh_captures_s *named_caps; /* its last regex with named groups */

    /* ---- From here on, kept when the object is reused for the next
     * request (per-worker free list): buffers are emptied, not freed, and
     * the header array is overwritten by the parser. Everything above is
     * zeroed (SH_REQUEST_ZERO). */
    sh_buf_t scratch;  /* for evaluated values */
    sh_buf_t hscratch; /* values header filters put in the response head */
    sh_buf_t out_head; /* HTTP/1.1 response head not yet sent */
    sh_buf_t uri_buf;  /* holds uri */
    sh_buf_t rb;       /* request body read before proxying (proxy_request_buffering) */
    /* Filled by the proxy for the $upstream_* variables: one entry per try,
     * joined by ", " as nginx does ("-" where a value does not apply). */
    sh_buf_t up_addr;         /* 127.0.0.1:9001, 127.0.0.1:9002 */
    sh_buf_t up_status;       /* 502, 200 */
    sh_buf_t up_connect_time; /* seconds with ms: 0.001 */
    sh_buf_t up_header_time;
    sh_buf_t up_response_time;
    sh_buf_t up_response_length; /* response body bytes of each try */
    /* "Name: value\r\n" lines of the upstream's response head and of the
     * head sent to the client, for $upstream_http_NAME / $sent_http_NAME;
     * kept only when the configuration uses those (sh_vars_want_fields). */
    sh_buf_t up_fields;
    sh_buf_t sent_fields;
    sh_http1_header_t headers[SH_MAX_REQUEST_HEADERS];
};

#define SH_REQUEST_ZERO offsetof(struct sh_request_s, scratch)

/* The protocol r's response goes through: a subrequest's capture, or the
 * client connection's. */
#define SH_PROTO(r) ((r)->proto != NULL ? (r)->proto : (r)->c->proto)

/* The client's address for r: realip's when it set one, else the peer. */
static inline const struct sockaddr_in6 *sh_request_peer(const sh_request_t *r)
{
    return r->client != NULL ? r->client : &r->c->peer;
}

/* A worker's connection counters (issue 6: /nginx_status, /metrics):
 * written by the worker only, read by the cluster thread with relaxed
 * atomics. reading/writing/waiting are refreshed each second. */
typedef struct {
    _Atomic uint64_t accepted, handled, requests, active;
    _Atomic uint64_t reading, writing, waiting;
    _Atomic uint64_t proxy_protocol_bad; /* closed for a malformed PROXY header */
    /* HTTP/2 responses complete before the request body, followed by
     * RST_STREAM(NO_ERROR) (RFC 9113 8.1; http2.c early_reset) */
    _Atomic uint64_t h2_early_responses;
} sh_worker_counters_t;
#define SH_WORKER_COUNT(w, f)  atomic_fetch_add_explicit(&(w)->ctr.f, 1, memory_order_relaxed)
#define SH_WORKER_SET(w, f, v) atomic_store_explicit(&(w)->ctr.f, (v), memory_order_relaxed)
typedef struct sh_worker_health_s sh_worker_health_t;
#define SH_CACHE_MAX 64 /* objects kept per worker free list */

struct sh_worker_s {
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t stop_timer;
    sh_timers_t timers;    /* client connection timeouts */
    sh_timers_t up_timers; /* upstream connection timeouts */
    pthread_t thread;
    int id;
    const sh_runtime_t *rt;
    uv_tcp_t *listeners;
    size_t nlisteners;
    sh_link_t conns;
    uint64_t nconns;
    sh_link_t bg; /* background subrequests (mirror) under way: a stop waits for them */
    uint64_t nbg;
    uint64_t conn_seq;
    sh_ups_rt_t *ups; /* per upstream runtime state, by upstream index */
    size_t nups;
    int *listen_fds; /* bound before the thread starts */
    int stopping;
    _Atomic uint64_t stop_timeout; /* set by the main thread before waking */
    uint64_t stop_deadline;
    uint64_t now_ms_cached;
    char date[40]; /* "Date: ..." value, refreshed each second */
    size_t date_len;
    int64_t date_sec;
    sh_request_t *req_cache[SH_CACHE_MAX]; /* free lists: no malloc per request */
    int nreq_cache;
    /* HTTP/2 streams' response buffers, kept warm (http2.c): a 100 KB body
     * neither grows a buffer by reallocs nor faults in fresh pages */
    sh_buf_t h2_out_cache[16];
    int nh2_out_cache;
    sh_request_t *dead; /* requests freed this iteration (deferred free) */
    uv_check_t dead_check;
    void *proxy_cache[SH_CACHE_MAX];
    int nproxy_cache;
    void *resolver; /* the resolver's per-worker state (node/proxy/resolver.c), or NULL */
    /* HTTP/2 (http2.c): connections due for a write pass at the end of
     * this loop iteration, scratch buffers, and counters */
    uv_check_t h2_check;
    uv_idle_t h2_idle; /* active with h2_check: the loop does not block in poll first */
    sh_link_t h2_dirty;
    sh_buf_t h2_out;
    sh_buf_t h2_hdr;
    uint64_t h2_conns;         /* HTTP/2 connections accepted */
    uint64_t h2_floods;        /* closed with GOAWAY(ENHANCE_YOUR_CALM) or FLOODED */
    uint64_t h2_header_limit;  /* header lists over the limit (431) */
    uint64_t h2_client_resets; /* streams the client reset before the response ended */
    uint64_t drained;          /* idle connections closed to make room (conn.c, drain_one) */
    char rbuf[SH_READ_BUF];
    uint8_t rbuf_busy;
    char tls_plain[SH_TLS_PLAIN_BUF]; /* decrypted bytes of one read, see conn.c */
    sh_worker_counters_t ctr;
    uv_timer_t stats_timer;     /* publishes the counters and upstream health */
    sh_worker_health_t *health; /* per upstream server, published each second */
    size_t nhealth;
};

/* Frame len bytes of data as one HTTP/1.1 chunk (RFC 9112 7.1) into
 * bufs[0..2]: the size line (written into hdr, 20 bytes), the data, and
 * the CRLF. Returns the number of bufs used (3). */
static inline unsigned sh_chunk_bufs(uv_buf_t *bufs, char *hdr, const char *data, size_t len)
{
    size_t hl = sh_fmt_hex(hdr, len);
    hdr[hl++] = '\r';
    hdr[hl++] = '\n';
    bufs[0] = uv_buf_init(hdr, (unsigned)hl);
    bufs[1] = uv_buf_init((char *)data, (unsigned)len);
    bufs[2] = uv_buf_init("\r\n", 2);
    return 3;
}

/* ---- worker.c */
/* Send bytes on a stream: written at once where the socket takes them,
 * the rest copied and queued. cb(stream, status) fires when a queued part
 * completes (never for a fully immediate write). Returns 0 or SH_EIO. */
typedef void (*sh_sent_cb)(uv_stream_t *s, int status);
int sh_stream_send(uv_stream_t *s, const uv_buf_t *bufs, unsigned n, sh_sent_cb cb);
uint64_t sh_worker_now(sh_worker_t *w);
const char *sh_worker_date(sh_worker_t *w, size_t *len);
void sh_worker_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
/* Return the shared read buffer after a read callback is done with it. */
void sh_worker_release_rbuf(sh_worker_t *w, const uv_buf_t *buf);

/* ---- conn.c */
void sh_conn_accept(sh_worker_t *w, uv_stream_t *server, const sh_http_addr_t *addr);
/* For http2.c: bytes to the client (encrypted on TLS); 0 or SH_EIO. */
int sh_conn_send(sh_conn_t *c, const uv_buf_t *bufs, unsigned n);
/* Close once everything queued is written (TLS close_notify first). */
void sh_conn_close_after_write(sh_conn_t *c);
/* Reading and the timer follow the connection's state again. */
void sh_conn_update_io(sh_conn_t *c);
/* A request object for c (from the worker's free list), and back. */
sh_request_t *sh_request_new(sh_conn_t *c);
void sh_request_free(sh_request_t *r);
/* Route a request whose head (r->h) is filled: local answer or proxy. */
void sh_request_dispatch(sh_request_t *r);
/* Stop the connection now (no response); closes handles, frees later. */
void sh_conn_close(sh_conn_t *c);
/* Keep c's memory (not its socket) after it closes, for a background
 * subrequest (mirror, a detached cache update) that outlives the client; unhold frees it when the
 * socket is closed and no hold is left. */
void sh_conn_hold(sh_conn_t *c);
void sh_conn_unhold(sh_conn_t *c);
/* Timeout of a client connection (the worker's timers' expire). */
void sh_conn_timeout(sh_timeq_entry_t *e);
/* Free the worker's cached request objects (at stop). */
void sh_request_cache_clear(sh_worker_t *w);
/* The worker's end-of-iteration pass that recycles freed requests. */
void sh_request_worker_init(sh_worker_t *w);
/* The module's context slot of a request. */
#define sh_request_ctx(r, m) ((r)->ctx[(m)->index])
/* nginx's 400 pages for client certificate failures (e: 495, 496), 421. */
void sh_request_client_cert_error(sh_request_t *r, int e);
/* Close idle keep-alive connections (graceful stop). */
void sh_conn_close_idle(sh_worker_t *w);
/* Send a locally generated response (error pages, return). */
void sh_request_respond(sh_request_t *r, int status, const char *ctype, const char *body,
                        size_t body_len, const char *location);
/* The response is complete: log, then keep-alive or close. */
void sh_request_finish(sh_request_t *r);
/* The response cannot be completed (upstream died mid-body): close. */
void sh_request_abort(sh_request_t *r);
/*
 * The request body's consumer (issue 10: the protocols never name the
 * proxy). A content handler that forwards the body (proxy_pass, grpc_pass)
 * sets r->sink before asking for the body; the protocols call it:
 * - start: a body being buffered (r->buffering, set by the handler) is
 *   complete, or larger than client_body_buffer_size: go on with what is
 *   in r->rb;
 * - body: a piece (last: the end); nonzero asks for no more until
 *   sh_request_body_resume;
 * - drained: the client took the queued response: 1 if the sink resumes
 *   its side, 0 to let the request's on_drain go on;
 * - tunnel: client bytes after a 101 (nonzero: pause reading);
 * - detach: the request ends (before the log phase): let go.
 */
typedef struct sh_body_sink_s {
    void (*start)(sh_request_t *r);
    int (*body)(sh_request_t *r, const char *data, size_t len, int last);
    int (*drained)(sh_request_t *r);
    int (*tunnel)(sh_request_t *r, const char *data, size_t len);
    void (*detach)(sh_request_t *r);
} sh_body_sink_t;

/* The body's consumer is ready for (more) request body bytes, or paused them. */
void sh_request_body_resume(sh_request_t *r);
/* The response was 101: the connection becomes a two-way tunnel. */
void sh_request_start_tunnel(sh_request_t *r);
/* The upstream side of the tunnel closed: flush and close the client. */
void sh_request_end_tunnel(sh_request_t *r);
/* The client is not taking the response as fast as it comes: time it
 * with send_timeout (the upstream is paused meanwhile). */
void sh_request_send_timer(sh_request_t *r);
/* Queued response bytes to the client. */
size_t sh_request_out_queued(const sh_request_t *r);
/* The request's trailers once its body ended (HTTP/2: the HEADERS frame
 * after the DATA), into out, pointing into the request's stream: their
 * number (0: none). grpc_pass forwards them. */
size_t sh_request_trailers(const sh_request_t *r, sh_http1_header_t *out, size_t max);
/* The client took the queued response below SH_WBUF_LOW: the proxy or the
 * request's on_drain goes on (called by the protocols). */
void sh_request_drained(sh_request_t *r);
/* A piece of a file as the response body (after the head), by the
 * protocol's sendfile when it has one: see sh_http_proto_t.sendfile. */
int sh_response_sendfile(sh_request_t *r, int fd, int64_t *off, size_t len);

/* ---- the response, whatever the client's protocol (HTTP/1.1 here in
 * conn.c, HTTP/2 in http2.c). Each returns 0, or -1 when the client
 * connection (or the HTTP/2 stream) is gone: r is freed then and must
 * not be touched. */
/* SH_RESP_* flags: node/pipeline.h */
/* Start the response: status, reason phrase (NULL: the standard one;
 * HTTP/1.1 only), fields without framing or hop-by-hop ones (the
 * protocol adds its own, and Server, Date and add_header fields), body
 * length (-1: unknown). The head may be held back to go out with the
 * first body bytes; sh_response_flush() sends it now. */
int sh_response_start(sh_request_t *r, int status, const char *reason, size_t reason_len,
                      const sh_http1_header_t *hs, size_t n, int64_t length, unsigned flags);
int sh_response_flush(sh_request_t *r);
/* A piece of body (copied or written before returning). */
int sh_response_body(sh_request_t *r, const char *data, size_t len);
/* The body is complete, with trailer fields (n may be 0). The caller then
 * calls sh_request_finish(). */
int sh_response_end(sh_request_t *r, const sh_http1_header_t *trailers, size_t n);

#endif
