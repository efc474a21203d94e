/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cluster thread: see cluster.h. One uv_loop owns a UDP socket and a
 * TCP listener on `bind` (gossip and push-pull), the admin listener, one
 * timer that drives sh_swim_tick at sh_swim_next_deadline, the join retry
 * timer, and a uv_async for stop. Every datagram is size-checked and opened
 * with the keyring before the SWIM code sees it; push-pull connections are
 * pushpull.c's (one frame each way, ppframe.h). All handles are embedded
 * in sh_cluster_t or in per-connection structs freed in their close
 * callbacks.
 */
#include "cluster/cluster.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "cluster/cluster_internal.h"
#include "cluster/wire.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "core/privs.h"

/* ---------------------------------------------------------- addresses -- */

/* "host:port" or "[v6]:port" to a sockaddr; numeric hosts only. */
int sh_cluster__parse_addr(const char *s, struct sockaddr_storage *ss)
{
    char host[128];
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
            return SH_EINVAL;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
            return SH_EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    int port = atoi(colon + 1);
    if (port <= 0 || port > 65535)
        return SH_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return SH_EINVAL;
}

static int parse_addr(const char *s, struct sockaddr_storage *ss)
{
    return sh_cluster__parse_addr(s, ss);
}

uint64_t sh_cluster__wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

void sh_cluster__format_addr(const struct sockaddr *sa, char *out, size_t n)
{
    char ip[64] = "?";
    if (sa->sa_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof(ip));
        snprintf(out, n, "[%s]:%u", ip, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    } else {
        uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof(ip));
        snprintf(out, n, "%s:%u", ip, ntohs(((const struct sockaddr_in *)sa)->sin_port));
    }
}

/* --------------------------------------------------------------- tick -- */

static void on_tick(uv_timer_t *t);

static void reschedule(sh_cluster_t *c)
{
    if (c->stopping > 1 || c->swim == NULL)
        return;
    uint64_t now = uv_now(&c->loop), d = sh_swim_next_deadline(c->swim);
    uv_timer_start(&c->tick, on_tick, d > now ? d - now : 0, 0);
}

void sh_cluster__reschedule(sh_cluster_t *c)
{
    reschedule(c);
}

static void on_tick(uv_timer_t *t)
{
    sh_cluster_t *c = container_of(t, sh_cluster_t, tick);
    sh_swim_tick(c->swim, uv_now(&c->loop));
    reschedule(c);
}

/* "packets from 10.0.0.5:7946 rejected: no key in our keyring opens them",
 * at most once a minute per address (a forged flood must not flood the
 * log); the counter in /metrics counts every one. */
void sh_cluster__rejected_log(sh_cluster_t *c, const char *what, const char *from)
{
    uint64_t now = uv_now(&c->loop);
    char host[80];
    snprintf(host, sizeof(host), "%s", from);
    char *colon = strrchr(host, ':'); /* per host: a peer's ports vary */
    if (colon != NULL)
        *colon = '\0';
    unsigned slot = 0;
    for (unsigned i = 0; i < SH_CLUSTER_REJECT_SLOTS; i++) {
        if (strcmp(c->reject_host[i], host) == 0) {
            slot = i;
            break;
        }
        if (c->reject_at[i] < c->reject_at[slot])
            slot = i; /* else the oldest entry */
    }
    if (strcmp(c->reject_host[slot], host) == 0 && c->reject_at[slot] != 0 &&
        now - c->reject_at[slot] < 60000)
        return;
    snprintf(c->reject_host[slot], sizeof(c->reject_host[slot]), "%s", host);
    c->reject_at[slot] = now ? now : 1;
    sh_log_warn("cluster: %s %s rejected: no key in our keyring opens them (a stale or foreign "
                "key; %llu rejected so far)",
                what, from, (unsigned long long)c->wst.not_opened);
}

/* ---------------------------------------------------------------- UDP -- */

static void t_send(void *ud, const char *addr, const uint8_t *buf, size_t len)
{
    sh_cluster_t *c = ud;
    struct sockaddr_storage ss;
    if (parse_addr(addr, &ss) != 0)
        return;
    long n = sh_keyring_seal(c->kr, buf, len, c->sbuf, sizeof(c->sbuf));
    if (n < 0)
        return;
    uv_buf_t b = uv_buf_init((char *)c->sbuf, (unsigned)n);
    /* Datagrams are fire-and-forget: a full socket buffer is a loss. */
    (void)uv_udp_try_send(&c->udp, &b, 1, (const struct sockaddr *)&ss);
}

static void udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sh_cluster_t *c = container_of((uv_udp_t *)h, sh_cluster_t, udp);
    *buf = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                     unsigned flags)
{
    sh_cluster_t *c = container_of(h, sh_cluster_t, udp);
    if (nread <= 0 || addr == NULL || (flags & UV_UDP_PARTIAL))
        return;
    /* size, then the keyring (version, key id, tag); never parsed before. */
    if ((size_t)nread > SH_WIRE_MAX_UDP) {
        c->wst.too_big++;
        return;
    }
    long n = sh_keyring_open(c->kr, (const uint8_t *)buf->base, (size_t)nread, c->scratch,
                             sizeof(c->scratch));
    char from[80];
    sh_cluster__format_addr(addr, from, sizeof(from));
    if (n < 0) {
        c->wst.not_opened++;
        sh_cluster__rejected_log(c, "packets from", from);
        return;
    }
    sh_swim_recv_bytes(c->swim, from, c->scratch, (size_t)n, uv_now(&c->loop));
    reschedule(c);
}

/* --------------------------------------------------------------- join -- */
/*
 * Each round resolves every `join` entry (static now; dns: through
 * uv_getaddrinfo; file: and exec: on the thread pool) and push-pulls with
 * every address found. Joining never gives up while it is needed (issue
 * 16): whenever this node is alone, or none of the addresses its last
 * round found is a live member any more (a restarted seed, the halves of a
 * split), rounds repeat with exponential backoff from 1 s to
 * join_retry_max; otherwise a watch every 5 s checks that again. Every
 * failure is logged with its reason (join_done, the providers).
 */

#define JOIN_WATCH_MS 5000

static void join_round(sh_cluster_t *c);

static void join_timer_cb(uv_timer_t *t)
{
    join_round(container_of(t, sh_cluster_t, join_timer));
}

static void target_add(sh_cluster_t *c, const char *addr)
{
    for (unsigned i = 0; i < c->njoin_targets; i++)
        if (strcmp(c->join_targets[i], addr) == 0)
            return;
    if (c->njoin_targets >= 256)
        return;
    c->join_targets = sh_realloc(c->join_targets, (c->njoin_targets + 1) * sizeof(char *));
    c->join_targets[c->njoin_targets++] = sh_strdup(addr);
}

static void targets_clear(sh_cluster_t *c)
{
    for (unsigned i = 0; i < c->njoin_targets; i++)
        sh_free(c->join_targets[i]);
    sh_free(c->join_targets);
    c->join_targets = NULL;
    c->njoin_targets = 0;
}

typedef struct {
    sh_cluster_t *c;
    unsigned live_others, live_targets;
} need_ctx;

static void need_cb(void *arg, const sh_swim_member_t *m)
{
    need_ctx *x = arg;
    if (strcmp(m->name, x->c->conf->node_name) == 0 ||
        (m->status != SH_SWIM_ALIVE && m->status != SH_SWIM_SUSPECT))
        return;
    x->live_others++;
    for (unsigned i = 0; i < x->c->njoin_targets; i++)
        if (strcmp(x->c->join_targets[i], m->addr) == 0)
            x->live_targets++;
}

/* Does this node need a join round: it has a join list and is alone, or
 * knows no live member among the addresses its list gave last time. */
static int need_join(sh_cluster_t *c)
{
    if (c->conf->njoin == 0 || c->left || c->stopping)
        return 0;
    need_ctx x = {c, 0, 0};
    sh_swim_foreach(c->swim, need_cb, &x);
    if (x.live_others == 0)
        return 1;
    /* the targets other than ourselves: none known means the list only
     * names this node, which is fine once others joined us */
    unsigned others = 0;
    for (unsigned i = 0; i < c->njoin_targets; i++)
        others += strcmp(c->join_targets[i], c->conf->advertise) != 0;
    return others > 0 && x.live_targets == 0;
}

static void join_maybe_retry(sh_cluster_t *c)
{
    if (c->joins_pending > 0 || c->stopping || c->left)
        return;
    if (!need_join(c)) {
        c->join_backoff = 0;
        if (c->conf->njoin > 0)
            uv_timer_start(&c->join_timer, join_timer_cb, JOIN_WATCH_MS, 0);
        return;
    }
    uint64_t b = c->join_backoff ? c->join_backoff * 2 : 1000;
    if (b > c->conf->join_retry_max)
        b = c->conf->join_retry_max;
    c->join_backoff = b;
    if (c->join_round_failed) {
        c->join_round_failed = 0;
        sh_log_err("cluster: could not join any member of the join list (%u address%s found); "
                   "retrying in %llu ms",
                   c->njoin_targets, c->njoin_targets == 1 ? "" : "es", (unsigned long long)b);
    }
    uv_timer_start(&c->join_timer, join_timer_cb, b, 0);
}

void sh_cluster__join_done(sh_cluster_t *c, int ok)
{
    if (c->joins_pending > 0)
        c->joins_pending--;
    if (ok) {
        c->join_round_ok = 1;
        if (!c->joined)
            sh_log_notice("cluster: joined (%zu members)", sh_swim_num_members(c->swim, 1));
        c->joined = 1;
    }
    if (c->joins_pending == 0 && !c->join_round_ok)
        c->join_round_failed = 1;
    join_maybe_retry(c);
}

static void join_addr(sh_cluster_t *c, const char *addr)
{
    target_add(c, addr);
    if (strcmp(addr, c->conf->advertise) == 0)
        return;
    c->joins_pending++;
    sh_swim_join(c->swim, addr); /* -> sh_cluster__pushpull(join) -> join_done */
}

/* Addresses separated by whitespace, commas or newlines; # comments. */
static unsigned join_list(sh_cluster_t *c, char *text)
{
    unsigned n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *s2 = NULL;
        for (char *tok = strtok_r(line, " \t\r,", &s2); tok; tok = strtok_r(NULL, " \t\r,", &s2)) {
            join_addr(c, tok);
            n++;
        }
    }
    return n;
}

typedef struct {
    uv_work_t work;
    uv_getaddrinfo_t gai;
    sh_cluster_t *c;
    char *spec;
    char *out;
    char port[8];
    char err[160]; /* why the provider gave nothing (pool thread) */
} jreq;

static void jwork(uv_work_t *w)
{
    jreq *r = container_of(w, jreq, work);
    size_t cap = 65536, len = 0;
    int file = strncmp(r->spec, "file:", 5) == 0;
    r->out = sh_malloc(cap + 1);
    FILE *f = file ? fopen(r->spec + 5, "r") : popen(r->spec + 5, "r");
    if (f == NULL) {
        snprintf(r->err, sizeof(r->err), "%s failed (%s)", file ? "fopen()" : "popen()",
                 strerror(errno));
    } else {
        size_t n;
        while (len < cap && (n = fread(r->out + len, 1, cap - len, f)) > 0)
            len += n;
        if (file) {
            fclose(f);
        } else {
            int st = pclose(f);
            if (st == -1)
                snprintf(r->err, sizeof(r->err), "pclose() failed (%s)", strerror(errno));
            else if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
                snprintf(r->err, sizeof(r->err), "exited with status %d", WEXITSTATUS(st));
            else if (WIFSIGNALED(st))
                snprintf(r->err, sizeof(r->err), "killed by signal %d", WTERMSIG(st));
        }
    }
    r->out[len] = 0;
}

static void jwork_done(uv_work_t *w, int status)
{
    jreq *r = container_of(w, jreq, work);
    sh_cluster_t *c = r->c;
    c->joins_pending--;
    if (!c->stopping && status == 0) {
        if (r->err[0] != '\0')
            sh_log_warn("cluster: join provider %s: %s", r->spec, r->err);
        if (join_list(c, r->out) == 0 && r->err[0] == '\0')
            sh_log_warn("cluster: join provider %s gave no address", r->spec);
    }
    sh_free(r->out);
    sh_free(r->spec);
    sh_free(r);
    if (c->joins_pending == 0 && !c->join_round_ok)
        c->join_round_failed = 1;
    join_maybe_retry(c);
}

static void jdns_done(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    jreq *r = container_of(g, jreq, gai);
    sh_cluster_t *c = r->c;
    c->joins_pending--;
    if (status != 0 && !c->stopping)
        sh_log_warn("cluster: join provider dns:%s:%s: %s", r->spec, r->port, uv_strerror(status));
    if (status == 0 && !c->stopping) {
        for (struct addrinfo *a = res; a; a = a->ai_next) {
            if (a->ai_socktype != SOCK_STREAM && a->ai_socktype != 0)
                continue;
            char addr[80];
            sh_cluster__format_addr(a->ai_addr, addr, sizeof(addr));
            join_addr(c, addr);
        }
    }
    uv_freeaddrinfo(res);
    sh_free(r->spec);
    sh_free(r);
    if (c->joins_pending == 0 && !c->join_round_ok)
        c->join_round_failed = 1;
    join_maybe_retry(c);
}

/* A host name in a static entry ("seed-1:7946"): resolved like dns:. */
static int is_numeric(const char *hostport)
{
    struct sockaddr_storage ss;
    return parse_addr(hostport, &ss) == 0;
}

static void start_dns(sh_cluster_t *c, const char *spec)
{
    jreq *r = sh_new(jreq);
    r->c = c;
    r->spec = sh_strdup(spec);
    char *colon = strrchr(r->spec, ':');
    snprintf(r->port, sizeof(r->port), "%s", colon ? colon + 1 : "7946");
    if (colon)
        *colon = 0;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->joins_pending++;
    int rc = uv_getaddrinfo(&c->loop, &r->gai, jdns_done, r->spec, r->port, &hints);
    if (rc != 0) {
        sh_log_warn("cluster: join provider dns:%s: %s", spec, uv_strerror(rc));
        c->joins_pending--;
        sh_free(r->spec);
        sh_free(r);
    }
}

static void join_round(sh_cluster_t *c)
{
    if (c->stopping || c->left)
        return;
    if (!need_join(c)) {
        join_maybe_retry(c); /* the watch */
        return;
    }
    if (c->joined)
        sh_log_warn("cluster: no live member left among the join list's addresses; joining again");
    c->joined = 0;
    c->join_round_ok = 0;
    c->join_round_failed = 0;
    targets_clear(c);
    c->joins_pending++; /* held until every entry is started */
    for (unsigned i = 0; i < c->conf->njoin; i++) {
        const char *j = c->conf->join[i];
        if (strncmp(j, "dns:", 4) == 0) {
            start_dns(c, j + 4);
        } else if (strncmp(j, "file:", 5) == 0 || strncmp(j, "exec:", 5) == 0) {
            jreq *r = sh_new(jreq);
            r->c = c;
            r->spec = sh_strdup(j);
            c->joins_pending++;
            if (uv_queue_work(&c->loop, &r->work, jwork, jwork_done) != 0) {
                c->joins_pending--;
                sh_free(r->spec);
                sh_free(r);
            }
        } else if (!is_numeric(j)) {
            start_dns(c, j);
        } else {
            join_addr(c, j);
        }
    }
    c->joins_pending--;
    if (c->joins_pending == 0 && !c->join_round_ok)
        c->join_round_failed = 1;
    join_maybe_retry(c);
    reschedule(c);
}

/* The admin API's leave was undone by a join (admin.c): start watching. */
void sh_cluster__join_resume(sh_cluster_t *c)
{
    c->join_backoff = 0;
    uv_timer_start(&c->join_timer, join_timer_cb, JOIN_WATCH_MS, 0);
}

/* ---------------------------------------------------- start and stop -- */

static void stop_check(uv_timer_t *t)
{
    sh_cluster_t *c = container_of(t, sh_cluster_t, stop_timer);
    uint64_t now = uv_now(&c->loop);
    if (!sh_swim_leave_sent(c->swim) && now < c->stop_deadline)
        return;
    /* The leave went out (or time is up): stop accepting and wind down. */
    c->stopping = 2;
    uv_stop(&c->loop);
}

static void stop_async_cb(uv_async_t *a)
{
    sh_cluster_t *c = container_of(a, sh_cluster_t, stop_async);
    if (c->stopping)
        return;
    if (c->swim == NULL) { /* admin only: nobody to tell */
        c->stopping = 2;
        uv_stop(&c->loop);
        return;
    }
    c->stopping = 1;
    uint64_t now = uv_now(&c->loop);
    sh_swim_leave(c->swim, now);
    /* Push the leave out now rather than at the next gossip tick. */
    sh_swim_tick(c->swim, now);
    reschedule(c);
    c->stop_deadline = now + c->stop_timeout;
    uv_timer_start(&c->stop_timer, stop_check, 0, 20);
}

static void thread_main(void *arg)
{
    sh_cluster_t *c = arg;
    /* `user`: the thread that reads the network runs as the user, and so
     * do libuv's pool threads it starts (join providers) */
    if (sh_privs_drop_thread() != 0)
        _exit(1);
    /* the first join round here, not in sh_cluster_start: libuv's pool
     * threads it may start inherit this thread's (dropped) credentials */
    if (c->swim != NULL) { /* admin only (no cluster block): no gossip, no services */
        sh_cluster__services_run(c);
        join_round(c);
        reschedule(c);
    }
    uv_run(&c->loop, UV_RUN_DEFAULT);
}

/* Membership changes become events on the admin event stream. */
static void t_notify(void *ud, const sh_swim_member_t *m, int old)
{
    sh_cluster_t *c = ud;
    sh_cluster__services_member(c, m, old);
    if (strcmp(m->name, c->conf->node_name) != 0) {
        /* what an operator must see, at its level (issue 16) */
        if (m->status == SH_SWIM_ALIVE)
            sh_log_notice("cluster: member %s (%s) %s", m->name, m->addr,
                          old < 0                  ? "joined"
                          : old == SH_SWIM_SUSPECT ? "is alive again (refuted the suspicion)"
                                                   : "rejoined");
        else if (m->status == SH_SWIM_SUSPECT)
            sh_log_warn("cluster: member %s (%s) is suspected of failure (no answer to probes)",
                        m->name, m->addr);
        else if (m->status == SH_SWIM_DEAD)
            sh_log_err("cluster: member %s (%s) failed (suspected and never refuted)", m->name,
                       m->addr);
        else if (m->status == SH_SWIM_LEFT)
            sh_log_notice("cluster: member %s (%s) left", m->name, m->addr);
    }
    if (c->nsubs == 0)
        return;
    const char *type = NULL;
    switch (m->status) {
    case SH_SWIM_ALIVE:
        type = old == SH_SWIM_SUSPECT ? "member-alive" : "member-join";
        break;
    case SH_SWIM_SUSPECT:
        type = "member-suspect";
        break;
    case SH_SWIM_DEAD:
        type = "member-failed";
        break;
    case SH_SWIM_LEFT:
        type = "member-leave";
        break;
    default:
        return;
    }
    sh_cluster__event(c, type,
                      json_pack("{s:s,s:s,s:s,s:I,s:s}", "name", m->name, "addr", m->addr, "status",
                                sh_swim_status_name(m->status), "incarnation",
                                (json_int_t)m->incarnation, "previous",
                                old < 0 ? "none" : sh_swim_status_name(old)));
}

static void keyring_changed(void *ud, const char *what)
{
    sh_cluster_t *c = ud;
    char hex[16];
    snprintf(hex, sizeof(hex), "%08x", (unsigned)sh_keyring_primary_id(c->kr));
    sh_cluster__event(c, "keyring",
                      json_pack("{s:s,s:s,s:I,s:i}", "source", what, "primary", hex, "gen",
                                (json_int_t)sh_keysync_gen(c->ks), "keys",
                                (int)sh_keyring_count(c->kr)));
}

static void heartbeat_cb(uv_timer_t *t)
{
    sh_cluster_t *c = container_of(t, sh_cluster_t, heartbeat);
    sh_cluster__event(c, NULL, NULL); /* a comment line on every stream */
}

/* Region and zone steer gossip (swim.h distance): 0 same zone, 1 same
 * region, 2 another region. Members without a region are near. */
static int t_distance(void *ud, const uint8_t *meta, size_t len)
{
    sh_cluster_t *c = ud;
    const char *ours = c->conf->region ? c->conf->region : "";
    const char *our_zone = c->conf->zone ? c->conf->zone : "";
    if (len == 0 || ours[0] == '\0')
        return 0;
    Sh__Gossip__NodeMeta *m = sh__gossip__node_meta__unpack(&sh_wire_allocator, len, meta);
    if (m == NULL)
        return 0;
    int d = 0;
    if (m->region != NULL && m->region[0] != '\0' && strcmp(m->region, ours) != 0)
        d = 2;
    else if (m->zone != NULL && our_zone[0] != '\0' && strcmp(m->zone, our_zone) != 0)
        d = 1;
    sh__gossip__node_meta__free_unpacked(m, &sh_wire_allocator);
    return d;
}

static const sh_swim_transport_t transport = {t_send, sh_cluster__pushpull, t_notify, t_distance};

static int bind_all(sh_cluster_t *c)
{
    struct sockaddr_storage ss;
    if (parse_addr(c->conf->bind, &ss) != 0) {
        sh_log_err("cluster: bind \"%s\" is not a numeric host:port", c->conf->bind);
        return SH_EINVAL;
    }
    int rc;
    uv_udp_init(&c->loop, &c->udp);
    uv_tcp_init(&c->loop, &c->tcp);
    if ((rc = uv_udp_bind(&c->udp, (const struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&c->tcp, 128, sh_cluster__pp_accept)) != 0) {
        sh_log_err("cluster: cannot bind %s: %s", c->conf->bind, uv_strerror(rc));
        return SH_EIO;
    }
    uv_udp_recv_start(&c->udp, udp_alloc, udp_recv);
    return sh_cluster__admin_bind(c);
}

static void close_all(uv_handle_t *h, void *arg)
{
    if (uv_is_closing(h))
        return;
    /* Connection handles carry their owner in data and are freed by their
     * close callbacks; the handles embedded in sh_cluster_t have no data. */
    if (h->data == NULL) {
        uv_close(h, NULL);
    } else if (*(unsigned *)h->data == SH_PP_MAGIC) {
        sh_cluster__pp_close_handle(h);
    } else if (*(unsigned *)h->data == SH_ADMIN_MAGIC) {
        sh_cluster__admin_close(h);
    } else {
        uv_close(h, NULL);
    }
}

/*
 * Without a cluster block the thread serves only the admin API (issue 17:
 * /metrics, /v1/upstreams, /nginx_status and reload on every node): no
 * keyring, no SWIM, no gossip sockets; c->swim stays NULL and admin.c
 * answers the cluster paths with 404.
 */
static int start_admin_only(sh_cluster_t *c)
{
    if (uv_loop_init(&c->loop) != 0)
        return SH_EIO;
    uv_timer_init(&c->loop, &c->heartbeat);
    uv_timer_start(&c->heartbeat, heartbeat_cb, 15000, 15000);
    uv_timer_init(&c->loop, &c->tick);
    uv_timer_init(&c->loop, &c->join_timer);
    uv_timer_init(&c->loop, &c->stop_timer);
    uv_async_init(&c->loop, &c->stop_async, stop_async_cb);
    int rc = sh_cluster__admin_bind(c);
    if (rc == 0 && !c->admin_on)
        rc = 1; /* the implicit default could not bind: nothing to run */
    if (rc == 0 && uv_thread_create(&c->thread, thread_main, c) != 0)
        rc = SH_EIO;
    if (rc != 0) {
        uv_walk(&c->loop, close_all, c);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        uv_loop_close(&c->loop);
        sh_cluster__admin_dispose(c);
        return rc;
    }
    sh_log_notice("admin API on %s%s (no cluster block: admin only)", c->conf->admin_listen,
                  c->conf->admin_ssl_certificate ? " (TLS)" : "");
    return 0;
}

int sh_cluster_start(void *conf, const sh_cluster_hooks_t *hooks, sh_cluster_t **out)
{
    *out = NULL;
    sh_cluster_conf_t *cc = conf;
    if (cc == NULL || (!cc->present && strcmp(cc->admin_listen, "off") == 0))
        return 0;
    sh_cluster_t *c = sh_new(sh_cluster_t);
    c->conf = cc;
    if (hooks != NULL)
        c->hooks = *hooks;
    c->started_unix_ms = sh_cluster__wall_ms();
    int rc = SH_EIO;
    if (!cc->present) {
        rc = start_admin_only(c);
        if (rc != 0) {
            sh_free(c);
            return rc > 0 ? 0 : rc;
        }
        *out = c;
        return 0;
    }
    c->kr = sh_keyring_create();
    if (c->kr == NULL)
        goto fail_kr;
    c->ks = sh_keysync_create(c->kr, cc->node_name, cc->ring_path, keyring_changed, c);
    char kerr[512];
    if (sh_keysync_load(c->ks, (const uint8_t(*)[SH_KEYRING_KEYLEN])cc->keys, cc->nkeys,
                        cc->key_path, c->started_unix_ms, kerr, sizeof(kerr)) != 0) {
        sh_log_err("cluster: keyring: %s", kerr);
        goto fail_loop;
    }
    if (uv_loop_init(&c->loop) != 0)
        goto fail_loop;
    uv_timer_init(&c->loop, &c->heartbeat);
    uv_timer_start(&c->heartbeat, heartbeat_cb, 15000, 15000);
    uv_timer_init(&c->loop, &c->tick);
    uv_timer_init(&c->loop, &c->join_timer);
    uv_timer_init(&c->loop, &c->stop_timer);
    uv_async_init(&c->loop, &c->stop_async, stop_async_cb);
    sh_swim_conf_t sc = cc->swim;
    sc.seed = (uint64_t)uv_hrtime() ^ ((uint64_t)(uintptr_t)c << 16);
    c->swim = sh_swim_create(&sc, &transport, c, uv_now(&c->loop));
    sh_keysync_attach(c->ks, c->swim);
    if ((rc = bind_all(c)) != 0)
        goto fail_bind;
    sh_cluster__services_start(c);
    if (uv_thread_create(&c->thread, thread_main, c) != 0) {
        sh_cluster__services_stop(c);
        rc = SH_EIO;
        goto fail_bind;
    }
    if (cc->advertise_auto != NULL)
        sh_log_notice("cluster: bind %s is a wildcard: advertising %s, the address of interface %s "
                      "(set \"advertise\" to choose another)",
                      cc->bind, cc->advertise, cc->advertise_auto);
    sh_log_notice("cluster: node \"%s\" gossiping on %s (advertise %s), admin on %s", cc->node_name,
                  cc->bind, cc->advertise, c->admin_on ? cc->admin_listen : "off");
    *out = c;
    return 0;
fail_bind:
    uv_walk(&c->loop, close_all, c);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
    sh_cluster__admin_dispose(c);
    sh_swim_destroy(c->swim);
fail_loop:
    sh_keysync_destroy(c->ks);
    sh_keyring_destroy(c->kr);
    targets_clear(c);
fail_kr:
    sh_free(c);
    return rc;
}

void sh_cluster_stop(sh_cluster_t *c, uint64_t timeout_ms)
{
    if (c == NULL)
        return;
    c->stop_timeout = timeout_ms;
    uv_async_send(&c->stop_async);
    uv_thread_join(&c->thread);
    sh_cluster__services_stop(c);
    /* The thread is gone: close what is left from this thread. */
    uv_walk(&c->loop, close_all, c);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&c->loop) != 0)
        sh_log_warn("cluster: loop closed with handles left");
    sh_cluster__admin_dispose(c);
    sh_swim_destroy(c->swim);
    sh_keysync_destroy(c->ks);
    sh_keyring_destroy(c->kr);
    targets_clear(c);
    sh_free(c);
}
