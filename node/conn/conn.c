/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP/1.1 client connection: reads requests (pipelined or not),
 * routes each to a local answer (`return`, errors) or to the proxy, feeds
 * the request body to the proxy with backpressure, and after each
 * response either waits for the next request (keep-alive) or closes.
 *
 * States (enum sh_conn_state): HEAD -> BODY -> WAIT -> HEAD ... Reading is
 * on in HEAD, in BODY while the proxy wants bytes, and off in WAIT, so a
 * pipelining client cannot make us buffer without bound: what arrived
 * after the current request stays in c->in until its turn.
 *
 * Memory: an idle keep-alive connection owns no buffer; reads land in the
 * worker's shared buffer and only unconsumed bytes are copied to c->in.
 * Worker thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "http/status.h"
#include "node/conn/http2.h"
#include "node/conn/timeq.h"
#include "node/conn/tls.h"
#include "node/pipeline/node.h"
#include "node/pipeline/reqlog.h"
#include "node/pipeline/vars.h"
#include "node/proxy/proxy.h"

#define LINGER_MS       5000
#define SH_PIPELINE_MAX (64 * 1024)

typedef struct {
    uv_shutdown_t req;
    sh_conn_t *c;
} shutdown_t;

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static ssize_t process(sh_conn_t *c, const char *data, size_t len);
static void finalize(sh_request_t *r);
static void update_io(sh_conn_t *c);
static const sh_http_proto_t http1_proto;
static int h1_flush(sh_request_t *r);

/* ------------------------------------------------------ closing -- */

static void conn_release(sh_conn_t *c)
{
    sh_buf_dispose(&c->in);
    sh_http2_destroy(c->h2);
    sh_tls_destroy(c->tls);
    if (c->pp != NULL)
        sh_pp_release(c->pp);
    sh_free(c->pp);
    sh_free(c);
}

static void conn_closed(uv_handle_t *h)
{
    sh_conn_t *c = h->data;
    if (--c->closing_handles == 0) {
        c->handle_closed = 1;
        if (c->holds == 0) /* else the last background subrequest frees it */
            conn_release(c);
    }
}

void sh_conn_hold(sh_conn_t *c)
{
    c->holds++;
}

void sh_conn_unhold(sh_conn_t *c)
{
    if (--c->holds == 0 && c->handle_closed)
        conn_release(c);
}

static void request_dispose(sh_request_t *r)
{
    sh_buf_dispose(&r->scratch);
    sh_buf_dispose(&r->uri_buf);
    sh_buf_dispose(&r->out_head);
    sh_buf_dispose(&r->hscratch);
    sh_buf_dispose(&r->rb);
    sh_buf_dispose(&r->up_addr);
    sh_buf_dispose(&r->up_status);
    sh_buf_dispose(&r->up_connect_time);
    sh_buf_dispose(&r->up_header_time);
    sh_buf_dispose(&r->up_response_time);
    sh_buf_dispose(&r->up_response_length);
    sh_buf_dispose(&r->up_fields);
    sh_buf_dispose(&r->sent_fields);
    sh_free(r);
}

sh_request_t *sh_request_new(sh_conn_t *c)
{
    sh_worker_t *w = c->w;
    sh_request_t *r;
    SH_WORKER_COUNT(w, requests); /* nginx counts a request from its first byte */
    if (w->nreq_cache > 0) {
        r = w->req_cache[--w->nreq_cache];
        memset(r, 0, SH_REQUEST_ZERO);
        r->scratch.len = r->uri_buf.len = r->rb.len = r->up_addr.len = r->up_status.len = 0;
        r->out_head.len = r->hscratch.len = 0;
        r->up_connect_time.len = r->up_header_time.len = r->up_response_time.len = 0;
        r->up_response_length.len = 0;
        r->up_fields.len = r->sent_fields.len = 0;
    } else {
        r = sh_new(sh_request_t);
    }
    r->c = c;
    r->w = w;
    return r;
}

/* Back to the free list (or freed), once nothing can touch r any more. */
static void recycle(sh_request_t *r)
{
    sh_worker_t *w = r->w;
    sh_free(r->head);
    r->head = NULL;
    /* keep a few for the next requests, unless they grew large */
    if (w->nreq_cache < SH_CACHE_MAX && !w->stopping && r->scratch.cap <= 4096 &&
        r->out_head.cap <= 8192 && r->rb.cap <= 65536 && r->hscratch.cap <= 4096)
        w->req_cache[w->nreq_cache++] = r;
    else
        request_dispose(r);
}

static void dead_cb(uv_check_t *h)
{
    sh_worker_t *w = container_of(h, sh_worker_t, dead_check);
    uv_check_stop(h);
    while (w->dead != NULL) {
        sh_request_t *r = w->dead;
        w->dead = r->dead;
        recycle(r);
    }
}

void sh_request_worker_init(sh_worker_t *w)
{
    uv_check_init(&w->loop, &w->dead_check);
}

/* The one end of every request: the upstream let go, the log phase, the
 * cleanup hooks; the memory is recycled at the end of the loop iteration,
 * so callers up the stack may still look at r (r->freed). */
void sh_request_free(sh_request_t *r)
{
    if (r->freed)
        return;
    if (r->sink != NULL)
        r->sink->detach(r);
    sh_phase_log(r);
    while (r->ncleanup > 0) {
        r->ncleanup--;
        r->cleanup[r->ncleanup].fn(r, r->cleanup[r->ncleanup].data);
    }
    r->freed = 1;
    sh_worker_t *w = r->w;
    if (uv_is_closing((uv_handle_t *)&w->dead_check)) { /* the worker's loop is ending */
        recycle(r);
        return;
    }
    if (w->dead == NULL)
        uv_check_start(&w->dead_check, dead_cb);
    r->dead = w->dead;
    w->dead = r;
}

void sh_request_cache_clear(sh_worker_t *w)
{
    while (w->dead != NULL) {
        sh_request_t *r = w->dead;
        w->dead = r->dead;
        recycle(r);
    }
    while (w->nreq_cache > 0)
        request_dispose(w->req_cache[--w->nreq_cache]);
    while (w->nh2_out_cache > 0)
        sh_buf_dispose(&w->h2_out_cache[--w->nh2_out_cache]);
}

void sh_conn_close(sh_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->state = SH_CONN_CLOSING;
    if (c->h2 != NULL)
        sh_http2_close(c->h2);
    if (c->r != NULL) {
        sh_request_free(c->r);
        c->r = NULL;
    }
    sh_list_remove(&c->link);
    c->w->nconns--;
    SH_WORKER_SET(c->w, active, c->w->nconns);
    sh_timers_remove(&c->tq);
    c->closing_handles = 1;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void linger_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sh_conn_t *c = s->data;
    sh_worker_release_rbuf(c->w, buf);
    if (nread < 0)
        sh_conn_close(c);
    /* else: drop what the client still sends until it sees our FIN */
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    shutdown_t *sd = container_of(req, shutdown_t, req);
    sh_conn_t *c = sd->c;
    sh_free(sd);
    if (c->closing)
        return;
    if (status < 0) {
        sh_conn_close(c);
        return;
    }
    /* Lingering close (as nginx): the response is out and FIN sent; keep
     * reading briefly so a client still sending does not get an RST that
     * would destroy the response in its receive buffer. */
    uv_read_start((uv_stream_t *)&c->tcp, sh_worker_alloc_cb, linger_read_cb);
    c->reading = 1;
    sh_timers_add(&c->w->timers, &c->tq, LINGER_MS);
}

/* Every connection timeout (header, body, keep-alive, send, linger) ends
 * the connection: nginx answers none of them (a 408 is only logged). */
void sh_conn_timeout(sh_timeq_entry_t *e)
{
    sh_conn_t *c = container_of(e, sh_conn_t, tq);
    if (c->r != NULL && c->state == SH_CONN_BODY)
        c->r->end_status = 408; /* nginx logs client_body_timeout as 408 */
    sh_conn_close(c);
}

/* Close once every queued byte is written. */
void sh_conn_close_after_write(sh_conn_t *c)
{
    if (c->closing || c->state == SH_CONN_CLOSING)
        return;
    c->state = SH_CONN_CLOSING;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    if (c->tls != NULL)
        sh_tls_shutdown(c->tls); /* close_notify, queued before the FIN */
    shutdown_t *sd = sh_new(shutdown_t);
    sd->c = c;
    if (uv_shutdown(&sd->req, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
        sh_free(sd);
        sh_conn_close(c);
        return;
    }
    sh_timers_add(&c->w->timers, &c->tq, 60000);
}

void sh_conn_close_idle(sh_worker_t *w)
{
    sh_link_t *l = w->conns.next;
    while (l != &w->conns) {
        sh_conn_t *c = container_of(l, sh_conn_t, link);
        l = l->next;
        if (c->h2 != NULL)
            sh_http2_shutdown(c->h2); /* GOAWAY; closes when its streams are done */
        else if (c->r == NULL && c->in.len == 0 && c->state == SH_CONN_HEAD && c->nrequests > 0)
            sh_conn_close(c); /* idle keep-alive only: a new connection's first
                                 request may be in flight (nginx's c->idle) */
    }
}

/* ------------------------------------------------------ output -- */

static void client_written(uv_stream_t *s, int status)
{
    sh_conn_t *c = s->data;
    if (c->closing)
        return;
    if (status < 0) {
        sh_conn_close(c);
        return;
    }
    if (c->h2 != NULL) {
        if (s->write_queue_size < SH_WBUF_LOW)
            sh_http2_written(c->h2);
        return;
    }
    if (c->r != NULL && s->write_queue_size < SH_WBUF_LOW)
        sh_request_drained(c->r);
    /* send_timeout runs between two successive writes of a response */
    if (!c->closing && !c->in_process && c->state == SH_CONN_WAIT)
        update_io(c);
}

static void h1_send_timer(sh_request_t *r)
{
    sh_conn_t *c = r->c;
    if (!c->closing && c->tcp.write_queue_size > 0)
        sh_timers_add(&c->w->timers, &c->tq, r->core->send_timeout);
}

/* Bytes to the client: encrypted first on TLS connections. */
int sh_conn_send(sh_conn_t *c, const uv_buf_t *bufs, unsigned n)
{
    if (c->tls != NULL)
        return sh_tls_send(c->tls, bufs, n);
    return sh_stream_send((uv_stream_t *)&c->tcp, bufs, n, client_written);
}

static size_t h1_queued(const sh_request_t *r)
{
    return r->c->tcp.write_queue_size;
}

/* Raw bytes to the client (HTTP/1.1 connections). A failure closes the
 * connection, which frees r. */
static int request_send(sh_request_t *r, const uv_buf_t *bufs, unsigned n)
{
    sh_conn_t *c = r->c;
    if (c->closing)
        return SH_ECLOSED;
    r->resp_started = 1;
    for (unsigned i = 0; i < n; i++)
        r->bytes_sent += bufs[i].len;
    if (sh_conn_send(c, bufs, n) != 0) {
        sh_conn_close(c);
        return SH_EIO;
    }
    return 0;
}

/* HTTP/1.1 framing (RFC 9112 6): Content-Length when the length is
 * known, else chunked (HTTP/1.1 clients) or the end of the connection
 * (HTTP/1.0); Connection as keep-alive was decided. */
static void h1_frame(sh_request_t *r, sh_resp_head_t *h)
{
    if (h->flags & SH_RESP_TUNNEL) {
        r->keepalive = 0; /* Connection: upgrade came with the fields */
        return;
    }
    if (h->length >= 0) {
        size_t n = sh_fmt_u64(h->clen, (uint64_t)h->length);
        sh_resp_head_add(h, "Content-Length", 14, h->clen, n);
    } else if (!(h->flags & SH_RESP_NO_BODY)) {
        if (r->h.version == 11) {
            r->resp_chunked = 1;
            sh_resp_head_add(h, "Transfer-Encoding", 17, "chunked", 7);
        } else {
            r->keepalive = 0; /* HTTP/1.0: the end of the body is the close */
        }
    }
    if (r->c->w->stopping)
        r->keepalive = 0;
    if (!r->keepalive)
        sh_resp_head_add(h, "Connection", 10, "close", 5);
    else if (r->h.version == 10)
        sh_resp_head_add(h, "Connection", 10, "keep-alive", 10);
}

/* HTTP/1.1: the head is serialized into r->out_head and goes out with the
 * first body bytes (one write), or on flush. */
static int h1_send_head(sh_request_t *r, const sh_resp_head_t *h)
{
    sh_buf_t *b = &r->out_head;
    b->len = 0;
    const char *reason = h->reason;
    size_t reason_len = h->reason_len;
    if (reason == NULL || reason_len == 0) {
        reason = sh_http_status_text(h->status);
        reason_len = strlen(reason);
    }
    char sl[13] = "HTTP/1.1 000 ";
    sl[9] = (char)('0' + h->status / 100 % 10);
    sl[10] = (char)('0' + h->status / 10 % 10);
    sl[11] = (char)('0' + h->status % 10);
    sh_buf_append(b, sl, sizeof(sl));
    sh_buf_append(b, reason, reason_len);
    sh_buf_append(b, "\r\n", 2);
    for (size_t i = 0; i < h->n; i++) {
        if (h->f[i].name_len == 0)
            continue; /* deleted by a filter */
        sh_buf_append(b, h->f[i].name, h->f[i].name_len);
        sh_buf_append(b, ": ", 2);
        sh_buf_append(b, h->f[i].value, h->f[i].value_len);
        sh_buf_append(b, "\r\n", 2);
    }
    sh_buf_append(b, "\r\n", 2);
    return 0;
}

/* sendfile(2) straight to the socket (HTTP/1.1 cleartext, identity
 * framing): only when nothing is queued before it, so bytes keep their
 * order; SH_EAGAIN when the socket is full or a write is queued (the
 * caller sends a chunk the usual way and comes back when it drained). */
static int h1_sendfile(sh_request_t *r, int fd, int64_t *off, size_t len)
{
    sh_conn_t *c = r->c;
    if (c->tls != NULL || r->resp_chunked)
        return SH_EUNSUPP;
    if (c->closing)
        return SH_ECLOSED;
    if (r->out_head.len > 0 && h1_flush(r) != 0)
        return SH_ECLOSED;
    if (c->tcp.write_queue_size > 0)
        return SH_EAGAIN;
    uv_os_fd_t sock;
    if (uv_fileno((uv_handle_t *)&c->tcp, &sock) != 0)
        return SH_EUNSUPP;
    off_t o = (off_t)*off;
    ssize_t n = sendfile(sock, fd, &o, len);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return SH_EAGAIN;
        if (errno == EINVAL || errno == ENOSYS)
            return SH_EUNSUPP;
        sh_conn_close(c);
        return SH_ECLOSED;
    }
    if (n == 0)
        return SH_EIO; /* the file shrank under us */
    *off = (int64_t)o;
    r->resp_started = 1;
    r->bytes_sent += (uint64_t)n;
    r->body_bytes_sent += (uint64_t)n;
    return (int)n;
}

static int h1_flush(sh_request_t *r)
{
    if (r->out_head.len == 0)
        return 0;
    uv_buf_t b = uv_buf_init(r->out_head.data, (unsigned)r->out_head.len);
    r->out_head.len = 0;
    return request_send(r, &b, 1);
}

static int h1_send_body(sh_request_t *r, const char *data, size_t len)
{
    uv_buf_t bufs[4];
    unsigned n = 0;
    if (r->out_head.len > 0) {
        bufs[n++] = uv_buf_init(r->out_head.data, (unsigned)r->out_head.len);
        r->out_head.len = 0;
    }
    char hdr[20];
    if (r->resp_chunked) {
        n += sh_chunk_bufs(bufs + n, hdr, data, len);
    } else {
        bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
    }
    return request_send(r, bufs, n);
}

static int h1_end(sh_request_t *r, const sh_http1_header_t *trailers, size_t n)
{
    if (!r->resp_chunked)
        return h1_flush(r);
    uv_buf_t bufs[2];
    unsigned k = 0;
    if (r->out_head.len > 0) {
        bufs[k++] = uv_buf_init(r->out_head.data, (unsigned)r->out_head.len);
        r->out_head.len = 0;
    }
    if (n == 0) {
        bufs[k++] = uv_buf_init("0\r\n\r\n", 5);
        return request_send(r, bufs, k);
    }
    /* RFC 9112 7.1.2: the trailer section after the last chunk */
    sh_buf_t t = {0};
    sh_buf_appends(&t, "0\r\n");
    for (size_t i = 0; i < n; i++) {
        sh_buf_append(&t, trailers[i].name, trailers[i].name_len);
        sh_buf_append(&t, ": ", 2);
        sh_buf_append(&t, trailers[i].value, trailers[i].value_len);
        sh_buf_append(&t, "\r\n", 2);
    }
    sh_buf_append(&t, "\r\n", 2);
    bufs[k++] = uv_buf_init(t.data, (unsigned)t.len);
    int rc = request_send(r, bufs, k);
    sh_buf_dispose(&t);
    return rc;
}

/* An error before a request object exists (unparseable head). */
static void respond_bare(sh_conn_t *c, sh_request_t *r, int status)
{
    r->keepalive = 0;
    r->h.version = 11;
    sh_request_respond(r, status, NULL, NULL, 0, NULL);
    (void)c;
}

/* ------------------------------------------------------ life cycle -- */

/* The request's head is read: the connection reads its body next (when
 * the request wants it), or waits (the next pipelined request stays in
 * c->in until this one ends). */
static void h1_head_done(sh_request_t *r)
{
    r->c->state = r->body.done ? SH_CONN_WAIT : SH_CONN_BODY;
}

static void h1_abort(sh_request_t *r)
{
    sh_conn_close(r->c);
}

static void h1_finish(sh_request_t *r)
{
    sh_conn_t *c = r->c;
    if (c->closing)
        return;
    r->resp_done = 1;
    if (!r->body.done && r->discard_body && r->keepalive) {
        /* the rest of the body is read and dropped; then finalize */
        r->body_wanted = 1;
        if (!c->in_process)
            update_io(c);
        return;
    }
    finalize(r);
}

/* Process what is buffered in c->in (pipelined requests, body bytes that
 * arrived before the proxy wanted them). */
static void drain_in(sh_conn_t *c)
{
    if (c->in.len == 0)
        return;
    sh_buf_t pending = c->in;
    c->in = (sh_buf_t){0};
    c->in_process = 1;
    c->draining = 1;
    ssize_t used = process(c, pending.data, pending.len);
    c->draining = 0;
    c->in_process = 0;
    if (used >= 0 && (size_t)used < pending.len && !c->closing)
        sh_buf_append(&c->in, pending.data + used, pending.len - (size_t)used);
    sh_buf_dispose(&pending);
}

static void finalize(sh_request_t *r)
{
    sh_conn_t *c = r->c;
    int keep = r->keepalive && r->body.done && !c->w->stopping;
    sh_request_free(r);
    c->r = NULL;
    if (!keep) {
        sh_conn_close_after_write(c);
        return;
    }
    c->state = SH_CONN_HEAD;
    if (c->in_process)
        return; /* the input loop goes on with what is buffered */
    drain_in(c);
    if (!c->closing)
        update_io(c);
}

/* Reading and the connection timer follow the state. */
void sh_conn_update_io(sh_conn_t *c)
{
    update_io(c);
}

/* client_header_timeout runs from the first byte of a request head (from
 * the accept for the first request, TLS handshake included) to the end of
 * the head, as nginx has it: reads do not push it back, so a client that
 * trickles a byte at a time is closed at the timeout all the same. */
static void head_timer(sh_conn_t *c, uint64_t timeout)
{
    sh_timers_t *t = &c->w->timers;
    if (c->head_deadline == 0) {
        sh_timers_add(t, &c->tq, timeout);
        c->head_deadline = c->tq.deadline;
    } else if (!sh_timers_armed_at(&c->tq, c->head_deadline)) {
        sh_timers_add_at(t, &c->tq, timeout, c->head_deadline);
    }
}

static void update_io(sh_conn_t *c)
{
    if (c->closing || c->state == SH_CONN_CLOSING)
        return;
    if (c->h2 != NULL) {
        int want = sh_http2_want_read(c->h2);
        if (want && !c->reading) {
            uv_read_start((uv_stream_t *)&c->tcp, sh_worker_alloc_cb, read_cb);
            c->reading = 1;
        } else if (!want && c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
        }
        /* the handshake (0-RTT), the preface and a header block under
         * way: client_header_timeout from their first byte */
        if ((c->tls != NULL && !sh_tls_handshake_done(c->tls)) || sh_http2_head_pending(c->h2)) {
            const sh_http_core_loc_t *core =
                sh_http_loc_conf(c->addr->default_srv->loc, &sh_http_core_module);
            head_timer(c, core->client_header_timeout);
            return;
        }
        c->head_deadline = 0;
        uint64_t ht = sh_http2_timeout(c->h2);
        if (ht > 0)
            sh_timers_add(&c->w->timers, &c->tq, ht);
        else
            sh_timers_remove(&c->tq);
        return;
    }
    const sh_http_core_loc_t *core =
        sh_http_loc_conf(c->addr->default_srv->loc, &sh_http_core_module);
    /* Reading stays on while a response is under way (a stop and a start
     * cost two epoll_ctl calls per request); what arrives then is kept in
     * c->in, up to SH_PIPELINE_MAX, after which reading stops. */
    /* TLS 1.3 early data: requests may be served before the handshake
     * completes; until it does, reading goes on (a request held for it,
     * sh_tls_resume_held, waits for the client's Finished) and it is timed
     * as a request head (a replayed flight never completes it and must not
     * hold the connection for keepalive_timeout) */
    int hs_pending = c->tls != NULL && !sh_tls_handshake_done(c->tls);
    int want =
        c->state == SH_CONN_HEAD ||
        ((c->state == SH_CONN_WAIT || hs_pending) && c->in.len < SH_PIPELINE_MAX) ||
        ((c->state == SH_CONN_BODY || c->state == SH_CONN_TUNNEL) && c->r && c->r->body_wanted);
    if (want && !c->reading) {
        uv_read_start((uv_stream_t *)&c->tcp, sh_worker_alloc_cb, read_cb);
        c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    uint64_t t = 0;
    if (c->state == SH_CONN_HEAD && (c->in.len > 0 || c->nrequests == 0 || hs_pending)) {
        head_timer(c, core->client_header_timeout);
        return;
    }
    if (!hs_pending)
        c->head_deadline = 0; /* the next head starts its own */
    if (c->state == SH_CONN_HEAD)
        t = core->keepalive_timeout;
    else if (c->state == SH_CONN_BODY && c->r && c->r->body_wanted)
        t = c->r->core->client_body_timeout; /* nginx: between two reads */
    else if (c->state == SH_CONN_WAIT && c->r && c->tcp.write_queue_size > 0)
        t = c->r->core->send_timeout;
    else if (hs_pending) {
        head_timer(c, core->client_header_timeout);
        return;
    }
    if (t > 0)
        sh_timers_add(&c->w->timers, &c->tq, t);
    else
        sh_timers_remove(&c->tq);
}

void sh_request_start_tunnel(sh_request_t *r)
{
    sh_conn_t *c = r->c;
    c->state = SH_CONN_TUNNEL;
    r->body.done = 1;
    r->body_wanted = 1;
    r->keepalive = 0;
    sh_timers_remove(&c->tq); /* the upstream side times the tunnel */
    if (c->in_process)
        return;
    drain_in(c);
    if (!c->closing)
        update_io(c);
}

void sh_request_end_tunnel(sh_request_t *r)
{
    sh_conn_close_after_write(r->c);
}

static void h1_body_resume(sh_request_t *r)
{
    sh_conn_t *c = r->c;
    if (c->closing || (r->body.done && c->state != SH_CONN_TUNNEL))
        return;
    r->body_wanted = 1;
    if (r->h.expect_continue && r->body_received == 0 && c->in.len == 0 && !r->sent_continue) {
        /* RFC 9110 10.1.1: the client waits for this before sending */
        r->sent_continue = 1;
        uv_buf_t b = uv_buf_init("HTTP/1.1 100 Continue\r\n\r\n", 25);
        if (sh_conn_send(c, &b, 1) != 0) {
            sh_conn_close(c);
            return;
        }
    }
    if (c->in_process)
        return;
    drain_in(c);
    if (!c->closing)
        update_io(c);
}

/* Body bytes from the client; returns bytes consumed, -1 if the
 * connection is gone. */
static ssize_t body_feed(sh_request_t *r, const char *data, size_t len)
{
    sh_conn_t *c = r->c;
    size_t off = 0;
    while (!r->body.done && r->body_wanted && !c->closing) {
        const char *span = data + off;
        size_t span_len;
        int last = 0;
        if (r->body.chunked) {
            int done = 0;
            span = NULL;
            span_len = 0;
            ssize_t n = sh_http1_chunked_decode(&r->body.chunk, data + off, len - off, &span,
                                                &span_len, &done);
            if (n < 0) {
                r->keepalive = 0;
                r->body.done = 1; /* nothing more will be read */
                if (r->resp_started)
                    sh_request_abort(r);
                else
                    sh_request_respond(r, 400, NULL, NULL, 0, NULL);
                return -1;
            }
            off += (size_t)n;
            last = done;
            if (n == 0 && !done && span_len == 0)
                break;
        } else {
            if (off == len)
                break;
            span_len = len - off;
            if ((uint64_t)span_len > (uint64_t)r->body.left)
                span_len = (size_t)r->body.left;
            r->body.left -= (int64_t)span_len;
            off += span_len;
            last = r->body.left == 0;
        }
        r->body_received += span_len;
        if (r->body.chunked && r->core->client_max_body_size > 0 &&
            r->body_received > r->core->client_max_body_size) {
            sh_req_log(SH_LOG_ERR, c, r, NULL,
                       "client intended to send too large chunked body: %llu+ bytes",
                       (unsigned long long)r->body_received);
            r->keepalive = 0;
            r->body.done = 1;
            if (r->resp_started)
                sh_request_abort(r);
            else
                sh_request_respond(r, 413, NULL, NULL, 0, NULL);
            return -1;
        }
        if (last) {
            r->body.done = 1;
            c->state = SH_CONN_WAIT;
        }
        if (r->buffering) {
            sh_buf_append(&r->rb, span, span_len);
            if (last || r->rb.len > r->core->client_body_buffer_size) {
                r->buffering = 0;
                r->rb_complete = last;
                r->body_wanted = 0; /* until the proxy asks for the rest */
                r->sink->start(r);
                if (c->closing)
                    return -1;
                if (c->r != r) /* answered and finished already */
                    return (ssize_t)off;
            }
        } else if (!r->discard_body) {
            if (r->sink != NULL && r->sink->body(r, span, span_len, last))
                r->body_wanted = 0;
        }
        if (c->closing)
            return -1;
        if (last) {
            if (r->resp_done) /* a local response waited for the body */
                finalize(r);
            break;
        }
    }
    return (ssize_t)off;
}

static void head_error(sh_conn_t *c, sh_request_t *r)
{
    int status = r->h.status ? r->h.status : 400;
    sh_req_log(SH_LOG_INFO, c, r, NULL, "client sent invalid request: %s",
               r->h.reason ? r->h.reason : "?");
    r->body.done = 1;
    respond_bare(c, r, status);
}

/* Keep the head: r->h's parsed pointers move from base[0..n) to r's own
 * copy (a previous partial copy is released). */
static void keep_head(sh_request_t *r, const char *base, size_t n)
{
    char *copy = sh_memdup(base, n);
    ptrdiff_t d = copy - base;
    sh_free(r->head);
    r->head = copy;
    r->head_len = n;
    if (r->h.method)
        r->h.method += d;
    if (r->h.target)
        r->h.target += d;
    if (r->h.host)
        r->h.host += d;
    for (size_t i = 0; i < r->h.nheaders; i++) {
        r->headers[i].name += d;
        r->headers[i].value += d;
    }
}

static ssize_t process(sh_conn_t *c, const char *data, size_t len)
{
    size_t off = 0;
    for (;;) {
        if (c->closing)
            return -1;
        switch (c->state) {
        case SH_CONN_HEAD: {
            if (off == len)
                return (ssize_t)off;
            sh_request_t *r = c->r;
            if (r == NULL) {
                r = sh_request_new(c);
                r->pipelined = off > 0 || c->draining;
                c->r = r;
            }
            const sh_http_core_loc_t *core =
                sh_http_loc_conf(c->addr->default_srv->loc, &sh_http_core_module);
            sh_http1_limits_t lim = {
                .max_request_line = core->large_header_buffer_size,
                .max_header_line = core->large_header_buffer_size,
                .max_head = core->large_header_buffer_size * (size_t)core->large_header_buffers,
            };
            r->h.headers = r->headers;
            r->h.max_headers = SH_MAX_REQUEST_HEADERS;
            ssize_t n = sh_http1_parse_request(data + off, len - off, &r->h, &lim);
            if (n == SH_EAGAIN || n < 0) {
                /* The parsed fields point into data, which conn_input may
                 * free when this returns; a request line already read is
                 * logged later (a header timeout's 408, a 400) from a copy. */
                if (r->h.method != NULL)
                    keep_head(r, data + off, len - off);
                if (n == SH_EAGAIN)
                    return (ssize_t)off;
                head_error(c, r);
                return -1;
            }
            keep_head(r, data + off, (size_t)n);
            off += (size_t)n;
            sh_request_dispatch(r);
            continue;
        }
        case SH_CONN_BODY: {
            sh_request_t *r = c->r;
            if (r == NULL || !r->body_wanted || (off == len && !r->body.done))
                return (ssize_t)off;
            ssize_t n = body_feed(r, data + off, len - off);
            if (n < 0)
                return -1;
            off += (size_t)n;
            if (c->r != r)
                continue; /* the request ended inside body_feed */
            if (c->state == SH_CONN_BODY && (off == len || !r->body_wanted))
                return (ssize_t)off;
            continue;
        }
        case SH_CONN_WAIT:
            return (ssize_t)off;
        case SH_CONN_TUNNEL: {
            sh_request_t *r = c->r;
            if (r == NULL || !r->body_wanted)
                return (ssize_t)off;
            if (off < len && r->sink != NULL && r->sink->tunnel(r, data + off, len - off))
                r->body_wanted = 0;
            return c->closing ? -1 : (ssize_t)len;
        }
        default:
            return -1;
        }
    }
}

/* The first bytes of a connection: HTTP/2 by ALPN (TLS) or by the
 * connection preface (cleartext, where HTTP/2 is on), else HTTP/1.1.
 * Returns 1 to go on with HTTP/1.1, 0 when the bytes were taken (HTTP/2,
 * or a preface prefix kept in c->in), -1 when the connection closed. */
static int detect_protocol(sh_conn_t *c, const char *data, size_t len)
{
    if (c->tls != NULL) {
        c->proto_known = 1;
        const char *alpn = sh_tls_alpn(c->tls);
        if (alpn == NULL || strcmp(alpn, "h2") != 0)
            return 1;
    } else {
        if (!sh_http2_enabled(c->addr, c->addr->default_srv)) {
            c->proto_known = 1;
            return 1;
        }
        size_t have = c->in.len;
        size_t cmp = have + len < SH_H2_PREFACE_LEN ? have + len : SH_H2_PREFACE_LEN;
        /* compare what is buffered plus what arrived with the preface */
        for (size_t i = 0; i < cmp; i++) {
            char ch = i < have ? c->in.data[i] : data[i - have];
            if (ch != SH_H2_PREFACE[i]) {
                c->proto_known = 1;
                return 1;
            }
        }
        if (cmp < SH_H2_PREFACE_LEN) {
            sh_buf_append(&c->in, data, len);
            return 0;
        }
        c->proto_known = 1;
    }
    if (sh_http2_start(c) != 0) {
        sh_conn_close(c);
        return -1;
    }
    if (c->in.len > 0) {
        sh_buf_t pending = c->in;
        c->in = (sh_buf_t){0};
        sh_buf_append(&pending, data, len);
        int rc = sh_http2_input(c->h2, pending.data, pending.len);
        sh_buf_dispose(&pending);
        return rc;
    }
    return sh_http2_input(c->h2, data, len);
}

/* Plaintext for the connection (from the socket or decrypted): processed
 * after what is pending in c->in; what is not consumed is kept there.
 * Returns 0, or -1 when the connection closed. */
static int conn_input(void *arg, const char *data, size_t len)
{
    sh_conn_t *c = arg;
    if (c->h2 != NULL)
        return sh_http2_input(c->h2, data, len);
    if (!c->proto_known) {
        int rc = detect_protocol(c, data, len);
        if (rc != 1)
            return rc;
    }
    sh_buf_t pending = c->in;
    if (pending.len > 0) {
        c->in = (sh_buf_t){0};
        sh_buf_append(&pending, data, len);
        data = pending.data;
        len = pending.len;
    }
    c->in_process = 1;
    ssize_t used = process(c, data, len);
    c->in_process = 0;
    if (used >= 0 && (size_t)used < len && !c->closing)
        sh_buf_append(&c->in, data + used, len - (size_t)used);
    if (pending.len > 0)
        sh_buf_dispose(&pending);
    return c->closing ? -1 : 0;
}

/* nginx's answer to plain HTTP on a TLS address (its 497, sent as 400),
 * in clear text, then close. */
#define PLAIN_ON_TLS_BODY                                                                          \
    "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n"  \
    "<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n"                                      \
    "<center>The plain HTTP request was sent to HTTPS port</center>\r\n"                           \
    "<hr><center>shoal</center>\r\n</body>\r\n</html>\r\n"
static const char plain_on_tls[] =
    "HTTP/1.1 400 Bad Request\r\nServer: shoal\r\nContent-Type: text/html\r\n"
    "Content-Length: 248\r\nConnection: close\r\n\r\n" PLAIN_ON_TLS_BODY;
_Static_assert(sizeof(PLAIN_ON_TLS_BODY) - 1 == 248, "Content-Length of plain_on_tls");

/* The first byte of a TLS connection: a handshake record (0x16), else
 * most likely a plain HTTP request line. Returns 1 when answered. */
static int plain_http_on_tls(sh_conn_t *c, const char *data, size_t len)
{
    c->tls_sniffed = 1;
    unsigned char b = len > 0 ? (unsigned char)data[0] : 0x16;
    if (b == 0x16 || !(b >= 'A' && b <= 'Z'))
        return 0;
    sh_req_log(SH_LOG_INFO, c, NULL, NULL, "client sent plain HTTP request to HTTPS port");
    uv_buf_t out = uv_buf_init((char *)plain_on_tls, sizeof(plain_on_tls) - 1);
    if (sh_stream_send((uv_stream_t *)&c->tcp, &out, 1, client_written) != 0) {
        sh_conn_close(c);
        return 1;
    }
    sh_conn_close_after_write(c);
    return 1;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sh_conn_t *c = s->data;
    if (nread == 0) {
        sh_worker_release_rbuf(c->w, buf);
        return;
    }
    if (nread < 0) {
        sh_worker_release_rbuf(c->w, buf);
        if (c->r != NULL && c->state == SH_CONN_BODY)
            sh_req_log(SH_LOG_INFO, c, c->r, NULL,
                       "client prematurely closed connection while reading client request body");
        sh_conn_close(c);
        return;
    }
    const char *data = buf->base;
    size_t len = (size_t)nread;
    if (c->pp != NULL && !c->pp_done) { /* PROXY protocol: before TLS */
        size_t used = 0;
        int rc = sh_pp_input(c->pp, data, len, &used);
        if (rc <= 0) {
            sh_worker_release_rbuf(c->w, buf);
            if (rc < 0) {
                SH_WORKER_COUNT(c->w, proxy_protocol_bad);
                sh_log_err("broken header while reading PROXY protocol, client %llu",
                           (unsigned long long)c->id);
                sh_conn_close(c);
            }
            return;
        }
        c->pp_done = 1;
        sh_pp_release(c->pp);
        data += used;
        len -= used;
        if (len == 0) {
            sh_worker_release_rbuf(c->w, buf);
            return;
        }
    }
    if (c->tls != NULL && !c->tls_sniffed && plain_http_on_tls(c, data, len)) {
        sh_worker_release_rbuf(c->w, buf);
        return;
    }
    if (c->tls != NULL) {
        /* Everything that arrived is decrypted now, even when the request
         * state does not want more: what is not consumed waits in c->in,
         * as on plain connections (reading stops; OpenSSL holds no
         * record we would have to come back for). */
        int rc = sh_tls_input(c->tls, data, len, c->w->tls_plain, sizeof(c->w->tls_plain),
                              conn_input, c);
        sh_worker_release_rbuf(c->w, buf);
        if (c->closing)
            return;
        if (rc != 0) { /* close_notify is the client's EOF, as a FIN */
            sh_conn_close(c);
            return;
        }
        sh_tls_resume_held(c->tls); /* requests that came in early data */
        if (c->closing)
            return;
        update_io(c);
        return;
    }
    conn_input(c, data, len);
    sh_worker_release_rbuf(c->w, buf);
    if (!c->closing)
        update_io(c);
}

/* Whether c may be closed to make room (nginx's reusable connections): it
 * waits for a request and holds no byte of one. HTTP/1.1 idle keep-alive
 * and connections that have sent nothing yet, HTTP/2 without streams or a
 * header block under way; never one mid-request or mid-handshake. */
static int reusable(const sh_conn_t *c)
{
    if (c->closing || c->state != SH_CONN_HEAD)
        return 0;
    if (c->h2 != NULL ? !sh_http2_idle(c->h2)
                      : !(c->r == NULL && c->in.len == 0 &&
                          (c->tls == NULL || !c->tls_sniffed || sh_tls_handshake_done(c->tls))))
        return 0;
    /* Bytes waiting in the socket are a request (or handshake) under way
     * that the loop has not read yet: a client that connected just before
     * a burst of accepts would otherwise lose its connection unread. */
    uv_os_fd_t fd;
    char b;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0)
        return 0;
    return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
           (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* worker_connections is full: close the oldest reusable connection
 * (nginx's ngx_drain_connections) so that the new one, nc, is served.
 * Returns 1 when room was made. */
static int drain_one(sh_worker_t *w, const sh_conn_t *nc)
{
    /* accepted connections go in at the head: the tail is the oldest */
    for (sh_link_t *l = w->conns.prev; l != &w->conns; l = l->prev) {
        sh_conn_t *c = container_of(l, sh_conn_t, link);
        if (c == nc || !reusable(c))
            continue;
        if (w->drained++ % 1024 == 0)
            sh_log_warn("%d worker_connections are not enough, reusing connections",
                        w->rt->worker_connections);
        sh_conn_close(c);
        return 1;
    }
    return 0;
}

void sh_conn_accept(sh_worker_t *w, uv_stream_t *server, const sh_http_addr_t *addr)
{
    sh_conn_t *c = sh_new(sh_conn_t);
    c->w = w;
    c->addr = addr;
    c->proto = &http1_proto;
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        c->closing_handles = 1;
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
        return;
    }
    sh_timeq_entry_init(&c->tq);
    sh_list_insert_head(&w->conns, &c->link);
    w->nconns++;
    c->id = ++w->conn_seq;
    c->start_ms = sh_worker_now(w);
    int plen = sizeof(c->peer);
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &plen);
    uv_tcp_nodelay(&c->tcp, 1);
    if (w->rt->worker_connections > 0 && w->nconns > (uint64_t)w->rt->worker_connections &&
        !drain_one(w, c)) {
        sh_log_warn("%d worker_connections are not enough", w->rt->worker_connections);
        sh_conn_close(c);
        return;
    }
    if (addr->opt.ssl) {
        c->tls = sh_tls_create(addr, (uv_stream_t *)&c->tcp, client_written, c->id);
        if (c->tls == NULL) {
            sh_conn_close(c);
            return;
        }
    }
    if (addr->opt.proxy_protocol)
        c->pp = sh_new(sh_pp_t);
    c->state = SH_CONN_HEAD;
    update_io(c);
}

static const sh_http_proto_t http1_proto = {
    .name = "HTTP/1.1",
    .frame = h1_frame,
    .send_head = h1_send_head,
    .flush = h1_flush,
    .send_body = h1_send_body,
    .end = h1_end,
    .finish = h1_finish,
    .abort = h1_abort,
    .body_resume = h1_body_resume,
    .queued = h1_queued,
    .send_timer = h1_send_timer,
    .sendfile = h1_sendfile,
    .head_done = h1_head_done,
    .absolute_form = 1,
};
