/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Worker threads (see worker.h), and the small per-worker services the
 * request path uses: the shared read buffer, the cached Date value, the
 * cached clock, and the try-then-queue write helper.
 */
#include "node/conn/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "core/privs.h"
#include "node/conn/http2.h"
#include "node/conn/timeq.h"
#include "node/pipeline/metrics.h"
#include "node/pipeline/subrequest.h"
#include "node/proxy/grpc.h"
#include "node/proxy/health.h"
#include "node/proxy/proxy.h"
#include "node/proxy/upstream.h"

typedef struct {
    uv_write_t req;
    sh_sent_cb cb;
    char data[];
} queued_write_t;

static void queued_done(uv_write_t *req, int status)
{
    queued_write_t *q = container_of(req, queued_write_t, req);
    sh_sent_cb cb = q->cb;
    uv_stream_t *s = req->handle;
    sh_free(q);
    if (cb != NULL && status != UV_ECANCELED)
        cb(s, status);
}

int sh_stream_send(uv_stream_t *s, const uv_buf_t *bufs, unsigned n, sh_sent_cb cb)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (total == 0)
        return 0;
    size_t done = 0;
    if (s->write_queue_size == 0) {
        int rc = uv_try_write(s, bufs, n);
        if (rc >= 0)
            done = (size_t)rc;
        else if (rc != UV_EAGAIN)
            return SH_EIO;
        if (done == total)
            return 0;
    }
    /* Copy what the socket did not take; the caller's bytes may live in
     * the shared read buffer, which is reused by the next read. */
    queued_write_t *q = sh_malloc(sizeof(*q) + (total - done));
    q->cb = cb;
    size_t skip = done, w = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t l = bufs[i].len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(q->data + w, bufs[i].base + skip, l - skip);
        w += l - skip;
        skip = 0;
    }
    uv_buf_t b = uv_buf_init(q->data, (unsigned)w);
    if (uv_write(&q->req, s, &b, 1, queued_done) != 0) {
        sh_free(q);
        return SH_EIO;
    }
    return 0;
}

uint64_t sh_worker_now(sh_worker_t *w)
{
    return uv_now(&w->loop);
}

const char *sh_worker_date(sh_worker_t *w, size_t *len)
{
    time_t now = time(NULL);
    if (now != w->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        w->date_len = strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        w->date_sec = now;
    }
    *len = w->date_len;
    return w->date;
}

void sh_worker_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    sh_worker_t *w = container_of(h->loop, sh_worker_t, loop);
    if (!w->rbuf_busy) {
        w->rbuf_busy = 1;
        *buf = uv_buf_init(w->rbuf, sizeof(w->rbuf));
        return;
    }
    /* Should not happen (reads are processed before the next one), but a
     * private buffer is always correct. */
    *buf = uv_buf_init(sh_malloc(SH_READ_BUF), SH_READ_BUF);
}

void sh_worker_release_rbuf(sh_worker_t *w, const uv_buf_t *buf)
{
    if (buf == NULL || buf->base == NULL)
        return;
    if (buf->base == w->rbuf)
        w->rbuf_busy = 0;
    else
        sh_free(buf->base);
}

/* ------------------------------------------------------ listeners -- */

static void on_connection(uv_stream_t *server, int status)
{
    sh_worker_t *w = container_of(server->loop, sh_worker_t, loop);
    if (status < 0) {
        sh_log_err("accept() failed (%s)", uv_strerror(status));
        return;
    }
    const sh_http_addr_t *addr = server->data;
    uint64_t before = w->nconns;
    SH_WORKER_COUNT(w, accepted);
    sh_conn_accept(w, server, addr);
    /* nginx's "handled": accepted and not refused (worker_connections) */
    if (w->nconns > before)
        SH_WORKER_COUNT(w, handled);
    SH_WORKER_SET(w, active, w->nconns);
}

static int bind_socket(const sh_http_addr_t *a, int reuseport, char *err)
{
    int fd = socket(a->opt.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, 256, "socket() for %s failed (%d: %s)", a->opt.text, errno, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a->opt.addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->opt.addr, a->opt.addrlen) != 0) {
        snprintf(err, 256, "bind() to %s failed (%d: %s)", a->opt.text, errno, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* One upstream server's passive health in one worker, as last published. */
struct sh_worker_health_s {
    _Atomic uint32_t fails, down, conns;
};

static void worker_free(sh_worker_t *w)
{
    sh_free(w->health);
    for (size_t i = 0; i < w->nups; i++)
        sh_upstream_rt_dispose(&w->ups[i]);
    sh_free(w->ups);
    sh_free(w->listeners);
    sh_free(w->listen_fds);
    sh_buf_dispose(&w->h2_out);
    sh_buf_dispose(&w->h2_hdr);
    sh_free(w);
}

/* The index of an address of old_rt equal to a, or -1. */
static int same_addr(const sh_runtime_t *old_rt, const sh_http_addr_t *a)
{
    const sh_http_main_t *om = old_rt ? old_rt->http : NULL;
    for (size_t j = 0; om != NULL && j < om->naddrs; j++)
        if (om->addrs[j].opt.addrlen == a->opt.addrlen &&
            memcmp(&om->addrs[j].opt.addr, &a->opt.addr, a->opt.addrlen) == 0)
            return (int)j;
    return -1;
}

static int create_common(const sh_runtime_t *rt, int n, sh_worker_t **old, int nold,
                         sh_worker_t ***out, char *err)
{
    const sh_http_main_t *m = rt->http;
    const sh_runtime_t *old_rt = nold > 0 ? old[0]->rt : NULL;
    size_t naddrs = m ? m->naddrs : 0;
    /* A probe bind without SO_REUSEPORT first: with it, a port held by
     * another process of ours would be silently shared. */
    for (size_t i = 0; i < naddrs; i++) {
        if (same_addr(old_rt, &m->addrs[i]) >= 0)
            continue;
        int fd = bind_socket(&m->addrs[i], 0, err);
        if (fd < 0)
            return SH_EIO;
        close(fd);
    }
    sh_worker_t **ws = sh_calloc((size_t)n, sizeof(*ws));
    const sh_upstream_main_t *um = m ? sh_http_main_conf(m, &sh_upstream_module) : NULL;
    for (int k = 0; k < n; k++) {
        sh_worker_t *w = sh_new(sh_worker_t);
        ws[k] = w;
        w->id = k;
        w->rt = rt;
        sh_list_init(&w->conns);
        sh_list_init(&w->bg);
        w->listen_fds = sh_calloc(naddrs ? naddrs : 1, sizeof(int));
        w->nlisteners = naddrs;
        for (size_t i = 0; i < naddrs; i++) {
            int j = same_addr(old_rt, &m->addrs[i]);
            if (j >= 0) {
                /* the running generation's socket: no refused connection */
                w->listen_fds[i] = fcntl(old[k % nold]->listen_fds[j], F_DUPFD_CLOEXEC, 0);
                if (w->listen_fds[i] < 0)
                    snprintf(err, 256, "dup() of the socket of %s failed (%d: %s)",
                             m->addrs[i].opt.text, errno, strerror(errno));
            } else {
                w->listen_fds[i] = bind_socket(&m->addrs[i], n > 1, err);
            }
            if (w->listen_fds[i] < 0) {
                for (int j2 = 0; j2 <= k; j2++) {
                    for (size_t q = 0; q < (j2 == k ? i : naddrs); q++)
                        close(ws[j2]->listen_fds[q]);
                    worker_free(ws[j2]);
                }
                sh_free(ws);
                return SH_EIO;
            }
        }
        if (um != NULL) {
            w->nups = um->n;
            w->ups = sh_calloc(um->n ? um->n : 1, sizeof(*w->ups));
            for (size_t i = 0; i < um->n; i++) {
                sh_upstream_rt_init(&w->ups[i], um->ups[i]);
                w->nhealth += um->ups[i]->nservers;
            }
            w->health = sh_calloc(w->nhealth ? w->nhealth : 1, sizeof(*w->health));
        }
    }
    *out = ws;
    return 0;
}

int sh_workers_create(const sh_runtime_t *rt, int n, sh_worker_t ***out, char *err)
{
    return create_common(rt, n, NULL, 0, out, err);
}

int sh_workers_create_from(const sh_runtime_t *rt, int n, sh_worker_t **old, int nold,
                           sh_worker_t ***out, char *err)
{
    return create_common(rt, n, old, nold, out, err);
}

/* ------------------------------------------------------ counters -- */

/*
 * reading/writing/waiting as nginx counts them: a request head being read;
 * a request being served, its body included (each HTTP/2 stream with a
 * request, as nginx's requests); a connection waiting for a request (an
 * idle keep-alive one, or HTTP/2 without streams: nginx's reusable
 * connections). A closing connection is active as in nginx, and counted
 * as writing (nginx's lingering close keeps its request).
 */
void sh_worker_counters_refresh(sh_worker_t *w)
{
    uint64_t reading = 0, writing = 0, waiting = 0;
    for (sh_link_t *l = w->conns.next; l != &w->conns; l = l->next) {
        const sh_conn_t *c = container_of(l, sh_conn_t, link);
        if (c->h2 != NULL && c->state != SH_CONN_CLOSING) {
            size_t n = sh_http2_nstreams(c->h2);
            if (n == 0)
                waiting++;
            writing += n;
        } else if (c->state == SH_CONN_HEAD && c->r == NULL && c->in.len == 0) {
            waiting++;
        } else if (c->state == SH_CONN_HEAD) {
            reading++;
        } else {
            writing++;
        }
    }
    SH_WORKER_SET(w, reading, reading);
    SH_WORKER_SET(w, writing, writing);
    SH_WORKER_SET(w, waiting, waiting);
    SH_WORKER_SET(w, active, w->nconns);
}

/*
 * Each second: the counters above, and each upstream server's passive
 * health as upstream.c decides it (out while fails >= max_fails within
 * fail_timeout of the window; a group of one server never goes out).
 */
static void stats_cb(uv_timer_t *t)
{
    sh_worker_t *w = container_of(t, sh_worker_t, stats_timer);
    uint64_t now = sh_worker_now(w);
    sh_worker_counters_refresh(w);
    size_t h = 0;
    for (size_t i = 0; i < w->nups; i++) {
        const sh_ups_rt_t *rt = &w->ups[i];
        for (size_t k = 0; k < rt->conf->nservers && h < w->nhealth; k++, h++) {
            const sh_ups_server_t *sv = &rt->conf->servers[k];
            const sh_peer_rt_t *p = &rt->peers[k];
            int down = !rt->single && sv->max_fails > 0 && p->fails >= sv->max_fails &&
                       now - p->checked <= sv->fail_timeout;
            atomic_store_explicit(&w->health[h].fails, (uint32_t)p->fails, memory_order_relaxed);
            atomic_store_explicit(&w->health[h].down, (uint32_t)down, memory_order_relaxed);
            /* a zone's count is the process's: published by one worker */
            uint32_t conns = rt->conf->zone == NULL || w->id == 0 ? (uint32_t)p->conns : 0;
            atomic_store_explicit(&w->health[h].conns, conns, memory_order_relaxed);
        }
    }
}

static uint64_t ld(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

void sh_workers_totals(sh_worker_t **ws, int n, sh_worker_totals_t *t)
{
    for (int k = 0; k < n; k++) {
        sh_worker_counters_t *c = &ws[k]->ctr;
        t->accepted += ld(&c->accepted);
        t->handled += ld(&c->handled);
        t->requests += ld(&c->requests);
        t->active += ld(&c->active);
        t->reading += ld(&c->reading);
        t->writing += ld(&c->writing);
        t->waiting += ld(&c->waiting);
        t->proxy_protocol_bad += ld(&c->proxy_protocol_bad);
        t->h2_early_responses += ld(&c->h2_early_responses);
    }
}

/* One server's health entries h .. h + nslot - 1 (a `resolve` server's
 * slots) summed over the workers; down counts the workers where any is. */
static void health_sum(sh_worker_t **ws, int n, size_t h, size_t nslot, uint64_t *fails,
                       unsigned *down, uint64_t *conns)
{
    for (int q = 0; q < n; q++) {
        unsigned d = 0;
        for (size_t k = h; k < h + nslot; k++) {
            if (k >= ws[q]->nhealth)
                continue;
            sh_worker_health_t *x = &ws[q]->health[k];
            *fails += atomic_load_explicit(&x->fails, memory_order_relaxed);
            d |= atomic_load_explicit(&x->down, memory_order_relaxed) != 0;
            *conns += atomic_load_explicit(&x->conns, memory_order_relaxed);
        }
        *down += d;
    }
}

char *sh_workers_upstreams_json(sh_worker_t **ws, int n)
{
    sh_buf_t b = {0};
    sh_buf_appends(&b, "[");
    const sh_runtime_t *rt = n > 0 ? ws[0]->rt : NULL;
    const sh_upstream_main_t *um =
        rt && rt->http ? sh_http_main_conf(rt->http, &sh_upstream_module) : NULL;
    size_t h = 0;
    for (size_t i = 0; um != NULL && i < um->n; i++) {
        const sh_upstream_t *u = um->ups[i];
        sh_buf_appends(&b, i ? ",{\"name\":" : "{\"name\":");
        sh_buf_append_json_str(&b, u->name);
        sh_buf_appendf(&b, ",\"implicit\":%s,\"balancer\":", u->implicit ? "true" : "false");
        sh_buf_append_json_str(&b, u->balancer ? u->balancer->name : "round_robin");
        sh_buf_appendf(&b, ",\"keepalive\":%d,\"servers\":[", u->keepalive);
        unsigned up_servers = 0;
        for (size_t k = 0; k < u->nservers; k++, h++) {
            const sh_ups_server_t *sv = &u->servers[k];
            if (sv->rslot > 0)
                continue; /* a `resolve` server's slots: summed in its first */
            uint64_t fails = 0, conns = 0;
            unsigned down = 0;
            health_sum(ws, n, h, sv->resolve ? SH_UPS_RADDR_MAX : 1, &fails, &down, &conns);
            const char *state = sv->down              ? "down (configured)"
                                : sh_hc_out(sv->hc)   ? "down (health check)"
                                : down == 0           ? "up"
                                : down == (unsigned)n ? "down"
                                                      : "partly down";
            up_servers += !sv->down && down == 0 && !sh_hc_out(sv->hc);
            sh_buf_appends(&b, k ? ",{\"addr\":" : "{\"addr\":");
            sh_buf_append_json_str(&b, sv->name);
            sh_buf_appendf(&b,
                           ",\"state\":\"%s\",\"workers_down\":%u,\"workers\":%d,"
                           "\"fails\":%llu,\"active\":%llu,\"weight\":%d,\"max_fails\":%d,"
                           "\"fail_timeout_ms\":%llu,\"max_conns\":%d,\"backup\":%s}",
                           state, down, n, (unsigned long long)fails, (unsigned long long)conns,
                           sv->weight, sv->max_fails, (unsigned long long)sv->fail_timeout,
                           sv->max_conns, sv->backup ? "true" : "false");
            /* active checks and the cluster's view (health.h) */
            b.len--; /* reopen the object */
            sh_buf_appends(&b, ",\"health\":");
            sh_hc_json(sv->hc, &b);
            sh_buf_appends(&b, "}");
        }
        sh_buf_appendf(&b, "],\"servers_up\":%u}", up_servers);
    }
    sh_buf_appends(&b, "]");
    /* the caller frees with free() */
    return sh_buf_take_cstr(&b);
}

/* A label value with \\ and " escaped (names as written in the config). */
static void put_esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f);
        fputc(*s, f);
    }
}

void sh_workers_upstreams_metrics(sh_worker_t **ws, int n, FILE *f)
{
    const sh_runtime_t *rt = n > 0 ? ws[0]->rt : NULL;
    const sh_upstream_main_t *um =
        rt && rt->http ? sh_http_main_conf(rt->http, &sh_upstream_module) : NULL;
    static const char *const fam[3][2] = {
        {"shoal_upstream_server_up",
         "1 when the server is up in every worker (passive health), 0 when down in any"},
        {"shoal_upstream_server_fails", "Failures counted in the current fail_timeout window"},
        {"shoal_upstream_server_connections", "Connections open to the server (all workers)"}};
    for (int m = 0; m < 3; m++) {
        fprintf(f, "# HELP %s %s.\n# TYPE %s gauge\n", fam[m][0], fam[m][1], fam[m][0]);
        size_t h = 0;
        for (size_t i = 0; um != NULL && i < um->n; i++) {
            const sh_upstream_t *u = um->ups[i];
            for (size_t k = 0; k < u->nservers; k++, h++) {
                if (u->servers[k].rslot > 0)
                    continue; /* a `resolve` server's slots: summed in its first */
                uint64_t fails = 0, conns = 0;
                unsigned down = 0;
                health_sum(ws, n, h, u->servers[k].resolve ? SH_UPS_RADDR_MAX : 1, &fails, &down,
                           &conns);
                uint64_t v = m == 0   ? (uint64_t)(!u->servers[k].down && down == 0)
                             : m == 1 ? fails
                                      : conns;
                fprintf(f, "%s{upstream=\"", fam[m][0]);
                put_esc(f, u->name);
                fputs("\",server=\"", f);
                put_esc(f, u->servers[k].name);
                fprintf(f, "\"} %llu\n", (unsigned long long)v);
            }
        }
    }
}

static void wake_cb(uv_async_t *a);

static void *worker_main(void *arg)
{
    sh_worker_t *w = arg;
    /* `user`: a worker never serves as root (core/privs.h); fail closed */
    if (sh_privs_drop_thread() != 0)
        _exit(1);
    sh_metrics_worker_attach(); /* this thread's counters (metrics.h) */
    uv_run(&w->loop, UV_RUN_DEFAULT);
    sh_metrics_worker_detach();
    int rc = uv_loop_close(&w->loop);
    if (rc != 0)
        sh_log_warn("worker %d: loop closed with handles open (%s)", w->id, uv_strerror(rc));
    return NULL;
}

int sh_workers_start(sh_worker_t **ws, int n)
{
    for (int k = 0; k < n; k++) {
        sh_worker_t *w = ws[k];
        uv_loop_init(&w->loop);
        uv_async_init(&w->loop, &w->wake, wake_cb);
        uv_timer_init(&w->loop, &w->stop_timer);
        sh_http2_worker_init(w);
        sh_request_worker_init(w);
        sh_timers_init(&w->timers, &w->loop, sh_conn_timeout);
        sh_timers_init(&w->up_timers, &w->loop, sh_uconn_timeout);
        w->listeners = sh_calloc(w->nlisteners ? w->nlisteners : 1, sizeof(uv_tcp_t));
        for (size_t i = 0; i < w->nlisteners; i++) {
            const sh_http_addr_t *a = &w->rt->http->addrs[i];
            uv_tcp_t *l = &w->listeners[i];
            uv_tcp_init(&w->loop, l);
            l->data = (void *)a;
            uv_tcp_open(l, w->listen_fds[i]);
            int rc = uv_listen((uv_stream_t *)l, a->opt.backlog, on_connection);
            if (rc != 0) {
                sh_log(SH_LOG_EMERG, "listen() to %s failed (%s)", a->opt.text, uv_strerror(rc));
                return SH_EIO;
            }
        }
        uv_timer_init(&w->loop, &w->stats_timer);
        uv_timer_start(&w->stats_timer, stats_cb, 0, 1000);
        uv_unref((uv_handle_t *)&w->stats_timer);
    }
    /* Threads start only once every worker's socket listens: the kernel
     * spreads connections over the SO_REUSEPORT group from the first SYN,
     * so none is sent to one worker just because its socket came first. */
    for (int k = 0; k < n; k++)
        if (pthread_create(&ws[k]->thread, NULL, worker_main, ws[k]) != 0)
            return SH_EIO;
    return 0;
}

/* ------------------------------------------------------ stopping -- */

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void finish_stop(sh_worker_t *w)
{
    /* every connection and pooled upstream connection frees itself */
    sh_link_t *l = w->conns.next;
    while (l != &w->conns) {
        sh_conn_t *c = container_of(l, sh_conn_t, link);
        l = l->next;
        sh_conn_close(c);
    }
    sh_subrequest_cancel_background(w);
    sh_proxy_close_pools(w);
    sh_grpc_close_all(w);
    sh_request_cache_clear(w);
    sh_proxy_cache_clear(w);
    sh_timers_close(&w->timers);
    sh_timers_close(&w->up_timers);
    uv_walk(&w->loop, close_walk_cb, NULL);
}

static void stop_timer_cb(uv_timer_t *t)
{
    sh_worker_t *w = container_of(t, sh_worker_t, stop_timer);
    if ((w->nconns == 0 && w->nbg == 0) || sh_worker_now(w) >= w->stop_deadline) {
        if (w->nconns > 0)
            sh_log_notice("worker %d: drain timeout, closing %llu connections", w->id,
                          (unsigned long long)w->nconns);
        finish_stop(w);
        return;
    }
    sh_conn_close_idle(w);
    uv_timer_start(&w->stop_timer, stop_timer_cb, 50, 0);
}

static void wake_cb(uv_async_t *a)
{
    sh_worker_t *w = container_of(a, sh_worker_t, wake);
    if (w->stopping)
        return;
    w->stopping = 1;
    for (size_t i = 0; i < w->nlisteners; i++)
        uv_close((uv_handle_t *)&w->listeners[i], NULL);
    sh_conn_close_idle(w);
    sh_proxy_close_pools(w);
    w->stop_deadline = sh_worker_now(w) + atomic_load(&w->stop_timeout);
    stop_timer_cb(&w->stop_timer);
}

void sh_workers_stop(sh_worker_t **ws, int n, uint64_t timeout_ms)
{
    for (int k = 0; k < n; k++) {
        atomic_store(&ws[k]->stop_timeout, timeout_ms);
        uv_async_send(&ws[k]->wake);
    }
}

void sh_workers_wait(sh_worker_t **ws, int n)
{
    for (int k = 0; k < n; k++)
        pthread_join(ws[k]->thread, NULL);
}

void sh_workers_free(sh_worker_t **ws, int n)
{
    for (int k = 0; k < n; k++)
        worker_free(ws[k]);
    sh_free(ws);
}

void sh_workers_join(sh_worker_t **ws, int n)
{
    sh_workers_wait(ws, n);
    sh_workers_free(ws, n);
}
