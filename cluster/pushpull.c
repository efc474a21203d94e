/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Push-pull over TCP on the gossip port (issue 5), hardened against
 * unauthenticated peers (issue 15). One exchange per connection: the
 * initiator sends one frame (ppframe.h), the responder merges it and answers
 * with one frame in the same format, and both close.
 *
 * What a peer without a key can cost us, and how it is bounded:
 * - Connections: at most PP_MAX_INBOUND inbound at once. When the table is
 *   full, the oldest connection that has not yet proven it holds a key is
 *   closed to make room (reason "evicted"); when every one has, the new one
 *   is accepted and closed at once ("conn_limit"). Our own push-pulls have
 *   their own PP_MAX_OUTBOUND, so a flood never stops a join. Refused and
 *   evicted handles live on the heap until their close callback (the
 *   stack handle closed here before aborted the node in uv__finish_close).
 * - Time: a stream head (54 bytes) must open within PP_AUTH_MS of the
 *   accept, a legacy frame must be whole and open within PP_LEGACY_MS
 *   ("auth_timeout"); the exchange ends within PP_EXCHANGE_MS ("timeout").
 * - Memory: before its head opens, a stream frame is read into a fixed
 *   54-byte buffer; then at most one unopened 64 KiB chunk is buffered. A
 *   legacy frame (older nodes) cannot be opened before it is whole, so it
 *   is buffered 64 KiB at a time, each step charged first to a global
 *   budget for unauthenticated bytes (PP_BUDGET_UNAUTH). Every frame's
 *   buffers are charged to a per-peer (remote IP) and a global budget
 *   (PP_BUDGET_PEER, PP_BUDGET_TOTAL): a step over budget ends the
 *   connection ("budget").
 * Every refusal is counted by reason (c->pp.rejected, in /metrics as
 * shoal_gossip_rejected_total{reason=...}).
 *
 * Format: we send stream frames (wire version 3), except to a member whose
 * last message was of an older version (legacy frames); to an address we
 * know nothing of (a join), a stream frame the peer closes on without a
 * byte of answer is retried once as a legacy frame (an older node refuses
 * the stream's first byte as a too-large length).
 *
 * Cluster thread only. Connection handles are embedded in a ppconn freed
 * in the last close callback.
 */
#include <string.h>
#include <uv.h>

#include "cluster/cluster_internal.h"
#include "cluster/ppframe.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"

#define PP_MAX_INBOUND  64u
#define PP_MAX_OUTBOUND 64u
#define PP_AUTH_MS      2000u
#define PP_LEGACY_MS    5000u
#define PP_EXCHANGE_MS  10000u
#define PP_BUDGET_TOTAL (32u << 20)
/* one largest frame, its chunk buffer and slack: a peer's biggest exchange
 * always fits, two of them at once from one address do not */
#define PP_BUDGET_PEER   (SH_PPFRAME_MAX + (1u << 20))
#define PP_BUDGET_UNAUTH (8u << 20)

const char *const sh_cluster__pp_reasons[SH_PP_R_N] = {
    [SH_PP_R_CONN_LIMIT] = "conn_limit",
    [SH_PP_R_EVICTED] = "evicted",
    [SH_PP_R_AUTH_TIMEOUT] = "auth_timeout",
    [SH_PP_R_TIMEOUT] = "timeout",
    [SH_PP_R_BUDGET] = "budget",
    [SH_PP_R_TRUNCATED] = "truncated",
    [SH_PP_R_BAD_MAGIC] = "bad_magic",
    [SH_PP_R_BAD_LENGTH] = "bad_length",
    [SH_PP_R_BAD_HEADER] = "bad_header",
    [SH_PP_R_BAD_CHUNK] = "bad_chunk",
    [SH_PP_R_BAD_ENVELOPE] = "bad_envelope",
    [SH_PP_R_UNDECODABLE] = "undecodable",
};

typedef struct ppconn_s ppconn;

struct ppconn_s {
    unsigned magic; /* SH_PP_MAGIC: tells close_all whose handle this is */
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer;
    sh_cluster_t *c;
    ppconn *prev, *next; /* c->pp's list, oldest first, while not closing */
    int initiator, join, kind, closing, handles, reported;
    int legacy_out;    /* initiator: we sent a legacy frame */
    int may_fall_back; /* initiator: retry legacy if the peer closes without a byte */
    int phase;         /* inbound: 0 head, 1 legacy seen, 2 authenticated */
    void *admin_req;   /* the admin join request this push-pull answers, or NULL */
    sh_ppframe_reader_t *rd;
    size_t charged; /* bytes of rd's buffers charged to the budgets */
    size_t charged_unauth;
    uint64_t started;
    struct sockaddr_storage peer;
    char addr[SH_WIRE_MAX_ADDR + 1]; /* initiator: whom we called */
    const char *why;                 /* initiator: why a join push-pull failed, for the log */
    uint8_t *out;
};

static void reject_count(sh_cluster_t *c, int reason)
{
    c->pp.rejected[reason]++;
}

/* ------------------------------------------------------------ budgets -- */

static int same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr)) == 0;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return 0;
}

/* Charge g more bytes of p's frame: 0, or -1 if a budget would be exceeded. */
static int charge(ppconn *p, size_t g)
{
    sh_cluster_t *c = p->c;
    int unauth = !sh_ppframe_authenticated(p->rd);
    if (c->pp.buffered + g > PP_BUDGET_TOTAL)
        return -1;
    if (unauth && c->pp.buffered_unauth + g > PP_BUDGET_UNAUTH)
        return -1;
    size_t peer = g;
    for (ppconn *q = c->pp.head; q; q = q->next)
        if (same_ip(&q->peer, &p->peer))
            peer += q->charged;
    if (peer > PP_BUDGET_PEER)
        return -1;
    p->charged += g;
    c->pp.buffered += g;
    if (unauth) {
        p->charged_unauth += g;
        c->pp.buffered_unauth += g;
    }
    return 0;
}

static void uncharge_unauth(ppconn *p)
{
    p->c->pp.buffered_unauth -= p->charged_unauth;
    p->charged_unauth = 0;
}

/* ------------------------------------------------------ the connection -- */

static void pp_closed(uv_handle_t *h)
{
    ppconn *p = h->data;
    if (--p->handles > 0)
        return;
    sh_free(p->out);
    sh_free(p);
}

/* The outcome of a join push-pull, reported once (a timeout is a failure). */
static void pp_join_result(ppconn *p, int ok)
{
    if (!p->initiator || !p->join || p->reported)
        return;
    p->reported = 1;
    if (!ok)
        sh_log_warn("cluster: join %s failed: %s", p->addr,
                    p->why ? p->why
                           : "the peer closed the connection without an answer (does its keyring "
                             "hold our primary key?)");
    if (p->admin_req != NULL)
        sh_cluster__admin_join_done(p->c, p->admin_req, ok);
    sh_cluster__join_done(p->c, ok);
}

static void unlink_conn(ppconn *p)
{
    sh_cluster_t *c = p->c;
    if (p->prev)
        p->prev->next = p->next;
    else
        c->pp.head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        c->pp.tail = p->prev;
    p->prev = p->next = NULL;
}

/* Close p: it leaves the table and gives its budget back now; the memory
 * goes in the close callbacks. */
static void pp_close(ppconn *p)
{
    if (p->closing)
        return;
    sh_cluster_t *c = p->c;
    pp_join_result(p, 0);
    p->closing = 1;
    unlink_conn(p);
    if (p->initiator)
        c->pp.n_out--;
    else
        c->pp.n_in--;
    uncharge_unauth(p);
    c->pp.buffered -= p->charged;
    p->charged = 0;
    sh_ppframe_reader_destroy(p->rd);
    p->rd = NULL;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, pp_closed);
    uv_close((uv_handle_t *)&p->tcp, pp_closed);
}

static void pp_reject(ppconn *p, int reason)
{
    reject_count(p->c, reason);
    /* a sealed part no key of ours opens: say so, as the UDP path does */
    if (reason == SH_PP_R_BAD_HEADER || reason == SH_PP_R_BAD_CHUNK ||
        reason == SH_PP_R_BAD_ENVELOPE) {
        if (p->initiator) {
            p->why = "its answer was rejected: no key in our keyring opens it";
        } else {
            char from[SH_WIRE_MAX_ADDR + 1];
            sh_cluster__format_addr((const struct sockaddr *)&p->peer, from, sizeof(from));
            sh_cluster__rejected_log(p->c, "push-pull from", from);
        }
    } else if (reason == SH_PP_R_UNDECODABLE && p->initiator) {
        p->why = "its answer could not be decoded";
    }
    pp_close(p);
}

void sh_cluster__pp_close_handle(uv_handle_t *h)
{
    pp_close(h->data);
}

static void pp_timeout(uv_timer_t *t)
{
    ppconn *p = t->data;
    if (p->initiator)
        p->why = "timed out (no answer in time)";
    pp_reject(p, !p->initiator && p->phase < 2 ? SH_PP_R_AUTH_TIMEOUT : SH_PP_R_TIMEOUT);
}

/* Time left until started + ms (at least 1 ms). */
static void pp_deadline(ppconn *p, uint64_t ms)
{
    uint64_t now = uv_now(&p->c->loop), end = p->started + ms;
    uv_timer_start(&p->timer, pp_timeout, end > now ? end - now : 1, 0);
}

static ppconn *pp_new(sh_cluster_t *c, int initiator)
{
    if (c->stopping > 1 || (initiator && c->pp.n_out >= PP_MAX_OUTBOUND))
        return NULL;
    ppconn *p = sh_new(ppconn);
    p->magic = SH_PP_MAGIC;
    p->c = c;
    p->initiator = initiator;
    if (initiator)
        c->pp.n_out++;
    else
        c->pp.n_in++;
    p->prev = c->pp.tail;
    if (p->prev)
        p->prev->next = p;
    else
        c->pp.head = p;
    c->pp.tail = p;
    p->rd = sh_ppframe_reader_create(c->kr);
    p->started = uv_now(&c->loop);
    uv_tcp_init(&c->loop, &p->tcp);
    uv_timer_init(&c->loop, &p->timer);
    p->tcp.data = p->timer.data = p;
    p->handles = 2;
    pp_deadline(p, initiator ? PP_EXCHANGE_MS : PP_AUTH_MS);
    return p;
}

static void pp_written(uv_write_t *w, int status)
{
    ppconn *p = w->data;
    if (status < 0 || !p->initiator)
        pp_close(p); /* the responder is done once its answer is out */
}

static int pp_send_state(ppconn *p, int kind, int legacy)
{
    uint8_t *pt = NULL;
    size_t len = sh_swim_pushpull_encode(p->c->swim, kind, &pt);
    long n = sh_ppframe_seal(p->c->kr, pt, len, legacy, &p->out);
    sh_free(pt);
    if (n < 0)
        return (int)n;
    if (legacy)
        p->c->pp.legacy_out++;
    uv_buf_t b = uv_buf_init((char *)p->out, (unsigned)n);
    p->write.data = p;
    return uv_write(&p->write, (uv_stream_t *)&p->tcp, &b, 1, pp_written);
}

static void pp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    ppconn *p = h->data;
    size_t g = sh_ppframe_next_grow(p->rd), len = 0;
    uint8_t *b = NULL;
    /* A zero-length buffer makes libuv call pp_read with UV_ENOBUFS. */
    if (g == 0 || charge(p, g) == 0)
        b = sh_ppframe_buf(p->rd, &len);
    *buf = uv_buf_init((char *)b, b ? (unsigned)len : 0);
}

static void start_outbound(sh_cluster_t *c, const char *addr, int kind, void *admin_req, int legacy,
                           int may_fall_back);

/* An older node closes on our stream frame without a byte: once, legacy. */
static void pp_fall_back(ppconn *p)
{
    sh_cluster_t *c = p->c;
    char addr[sizeof(p->addr)];
    memcpy(addr, p->addr, sizeof(addr));
    int kind = p->kind;
    void *req = p->join ? p->admin_req : NULL;
    int join = p->join;
    p->reported = 1; /* the retry reports */
    pp_close(p);
    c->pp.fallbacks++;
    start_outbound(c, addr, kind, join ? req : NULL, 1, 0);
}

static void pp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ppconn *p = s->data;
    sh_cluster_t *c = p->c;
    if (nread == UV_ENOBUFS) {
        pp_reject(p, SH_PP_R_BUDGET);
        return;
    }
    if (nread < 0) {
        if (p->initiator && p->may_fall_back && sh_ppframe_taken(p->rd) == 0) {
            pp_fall_back(p);
            return;
        }
        pp_reject(p, SH_PP_R_TRUNCATED);
        return;
    }
    if (nread == 0)
        return;
    const char *why = NULL;
    int rc = sh_ppframe_fill(p->rd, (size_t)nread, &why);
    if (rc == SH_EAGAIN) {
        if (!p->initiator && p->phase == 0 && sh_ppframe_legacy(p->rd)) {
            p->phase = 1;
            c->pp.legacy_in++;
            pp_deadline(p, PP_LEGACY_MS);
        } else if (!p->initiator && p->phase < 2 && sh_ppframe_authenticated(p->rd)) {
            p->phase = 2;
            pp_deadline(p, PP_EXCHANGE_MS);
        }
        return;
    }
    if (rc < 0) {
        int r = SH_PP_R_BAD_MAGIC;
        for (int i = 0; i < SH_PP_R_N; i++)
            if (why && strcmp(why, sh_cluster__pp_reasons[i]) == 0)
                r = i;
        pp_reject(p, r);
        return;
    }
    uv_read_stop(s);
    p->phase = 2;
    uncharge_unauth(p);
    size_t len = 0;
    const uint8_t *pt = sh_ppframe_plaintext(p->rd, &len);
    /* Our first join takes the cluster's keyring (keysync.h). */
    sh_keysync_set_joining(c->ks, p->initiator && p->join && !c->joined);
    int reply = SH_SWIM_PP_FULL;
    rc = sh_swim_pushpull_merge(c->swim, pt, len, uv_now(&c->loop), &reply);
    sh_keysync_set_joining(c->ks, 0);
    if (rc < 0) {
        pp_reject(p, SH_PP_R_UNDECODABLE);
        return;
    }
    if (p->initiator) {
        pp_join_result(p, 1);
        pp_close(p);
    } else if (pp_send_state(p, reply, sh_ppframe_legacy(p->rd)) != 0) {
        pp_close(p);
    }
    sh_cluster__reschedule(c);
}

static void pp_connected(uv_connect_t *req, int status)
{
    ppconn *p = req->data;
    if (status < 0 || p->closing) {
        if (status < 0)
            p->why = uv_strerror(status);
        pp_close(p);
        return;
    }
    if (pp_send_state(p, p->kind, p->legacy_out) != 0 ||
        uv_read_start((uv_stream_t *)&p->tcp, pp_alloc, pp_read) != 0)
        pp_close(p);
}

static void start_outbound(sh_cluster_t *c, const char *addr, int kind, void *admin_req, int legacy,
                           int may_fall_back)
{
    int join = kind == SH_SWIM_PP_JOIN;
    struct sockaddr_storage ss;
    ppconn *p = NULL;
    if (strlen(addr) >= sizeof(p->addr) || sh_cluster__parse_addr(addr, &ss) != 0 ||
        (p = pp_new(c, 1)) == NULL) {
        if (join)
            sh_log_warn("cluster: join %s failed: %s", addr,
                        strlen(addr) >= sizeof(p->addr) || sh_cluster__parse_addr(addr, &ss) != 0
                            ? "not a numeric host:port"
                            : "too many connections");
        if (join && admin_req != NULL)
            sh_cluster__admin_join_done(c, admin_req, 0);
        if (join)
            sh_cluster__join_done(c, 0);
        return;
    }
    p->join = join;
    p->kind = kind;
    p->admin_req = join ? admin_req : NULL;
    p->legacy_out = legacy;
    p->may_fall_back = may_fall_back;
    p->peer = ss;
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    p->connect.data = p;
    int rc = uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&ss, pp_connected);
    if (rc != 0) {
        p->why = uv_strerror(rc);
        pp_close(p);
    }
}

void sh_cluster__pushpull(void *ud, const char *addr, int kind)
{
    sh_cluster_t *c = ud;
    /* The format: what the member's last message says it reads. */
    unsigned v = sh_swim_peer_version(c->swim, addr);
    start_outbound(c, addr, kind, kind == SH_SWIM_PP_JOIN ? c->admin_join : NULL, v != 0 && v < 3,
                   v == 0);
}

static void reject_closed(uv_handle_t *h)
{
    sh_free(h);
}

void sh_cluster__pp_accept(uv_stream_t *server, int status)
{
    sh_cluster_t *c = container_of((uv_tcp_t *)server, sh_cluster_t, tcp);
    if (status < 0)
        return;
    if (c->pp.n_in >= PP_MAX_INBOUND && c->stopping <= 1) {
        ppconn *v = c->pp.head;
        while (v && (v->initiator || v->phase == 2))
            v = v->next;
        if (v != NULL)
            pp_reject(v, SH_PP_R_EVICTED); /* the oldest without a key proven */
    }
    if (c->pp.n_in >= PP_MAX_INBOUND || c->stopping > 1) {
        /* Accept and close, so the backlog never fills; the handle lives
         * until its close callback. */
        uv_tcp_t *tmp = sh_new(uv_tcp_t);
        uv_tcp_init(&c->loop, tmp);
        (void)uv_accept(server, (uv_stream_t *)tmp);
        uv_close((uv_handle_t *)tmp, reject_closed);
        if (c->stopping <= 1)
            reject_count(c, SH_PP_R_CONN_LIMIT);
        return;
    }
    ppconn *p = pp_new(c, 0);
    int len = sizeof(p->peer);
    if (uv_accept(server, (uv_stream_t *)&p->tcp) != 0 ||
        uv_tcp_getpeername(&p->tcp, (struct sockaddr *)&p->peer, &len) != 0 ||
        uv_read_start((uv_stream_t *)&p->tcp, pp_alloc, pp_read) != 0)
        pp_close(p);
}
