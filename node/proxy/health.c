/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Active health checks, the process-wide registry of upstream servers'
 * health, and the quorum rule of the cluster view (see health.h).
 *
 * Locks: one registry mutex (G.mu) guards the entry list, the check
 * settings, the observations and the decision; the balancers read only
 * the atomic `out` of an entry. The probe thread holds the lock to pick
 * due probes and to record a result, never across I/O.
 */
#include "node/proxy/health.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "core/privs.h"
#include "node/pipeline/http_conf.h"
#include "node/proxy/health_match.h"
#include "node/proxy/proxy.h"
#include "node/proxy/upstream.h"

/* ------------------------------------------------------------ types -- */

typedef struct hc_check_s {
    _Atomic int refs;
    uint64_t interval, jitter;
    int fails, passes;
    int port;    /* 0: the server's */
    int probers; /* nodes probing each server in a cluster */
    int quorum;  /* failing observers that take it out; 0: a majority */
    char *uri;
    char *host; /* Host: the group name, as $proxy_host */
    sh_hc_match_t *match;
    unsigned mandatory : 1;
    unsigned persistent : 1;
    const char *file;
    unsigned line;
} hc_check_t;

struct sh_hc_peer_s {
    sh_hc_peer_t *next;
    char ups[128];
    char server[80];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t kh;  /* sh_hc_hash("ups/server"): the server's name on the wire */
    uint8_t down; /* `down` in the newest configuration: not probed */
    int refs;     /* configuration generations using it */
    hc_check_t *check;
    /* probe thread, under the lock */
    uint64_t due;
    int fail_row, pass_row;
    uint8_t in_flight;
    /* decision, under the lock */
    uint8_t local;    /* SH_HC_*: this node's probes */
    uint8_t cluster;  /* SH_HC_*: the quorum's verdict */
    uint8_t prober;   /* this node probes it */
    uint8_t passed;   /* a pass was seen (here or by a prober): mandatory is met */
    uint8_t pub_pass; /* passive state last published */
    uint8_t nprobers;
    uint8_t quorum;
    /* the probers, cached until the membership or the check changes */
    uint64_t pgen;
    const hc_check_t *pchk;
    uint8_t pself;
    size_t pidx[SH_HC_MAX_OBS];
    char why[96];
    sh_hc_obs_t obs[SH_HC_MAX_OBS];
    int nobs;
    /* any thread */
    _Atomic int out;
    _Atomic uint64_t passive_until; /* monotonic ms */
    _Atomic uint64_t nchecks, nfails;
};

/* The last sequence number merged from each origin. */
typedef struct {
    char node[64];
    uint8_t part;  /* of its messages (a node's word is split by server);
                    * ORIGIN_ANY: the newest message of any part */
    uint8_t parts; /* ORIGIN_ANY: how many parts that one had */
    uint64_t seq;
} origin_t;

#define ORIGIN_ANY 255u

static struct {
    pthread_mutex_t mu;
    sh_hc_peer_t *peers;
    char self[64];
    uint64_t last_seq;
    char (*members)[64];
    size_t nmembers;
    uint64_t mgen; /* bumped by each change of members (never 0) */
    uint64_t version;
    origin_t *origins;
    size_t norigins;
    void (*notify)(void *ud, const char *ups, const char *server, const char *state,
                   const char *why);
    void *notify_ud;
    /* the probe thread */
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t stop;
    uv_timer_t tick;
    int running;
    uint64_t rng;
} G = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* FNV-1a then a 64-bit finalizer (splitmix): stable across nodes. */
uint64_t sh_hc_hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

/* Highest random weight: the k members with the largest score probe. */
uint64_t sh_hc_rendezvous(uint64_t key_hash, const char *node)
{
    uint64_t h = sh_hc_hash(node, strlen(node)) ^ (key_hash * 0x9E3779B97F4A7C15ull);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static void check_unref(hc_check_t *c)
{
    if (c == NULL || atomic_fetch_sub(&c->refs, 1) > 1)
        return;
    sh_hc_match_destroy(c->match);
    sh_free(c->uri);
    sh_free(c->host);
    sh_free(c);
}

static hc_check_t *check_ref(hc_check_t *c)
{
    if (c != NULL)
        atomic_fetch_add(&c->refs, 1);
    return c;
}

int sh_hc_out(const sh_hc_peer_t *p)
{
    return p != NULL && atomic_load_explicit(&p->out, memory_order_relaxed) != 0;
}

void sh_hc_passive_down(sh_hc_peer_t *p, uint64_t fail_timeout_ms)
{
    if (p != NULL)
        atomic_store_explicit(&p->passive_until, mono_ms() + fail_timeout_ms, memory_order_relaxed);
}

static const char *state_text(int s)
{
    return s == SH_HC_UP ? "up" : s == SH_HC_DOWN ? "down" : "unknown";
}

/* ---------------------------------------------------------- decision -- */

static int is_member(const char *name)
{
    for (size_t i = 0; i < G.nmembers; i++)
        if (strcmp(G.members[i], name) == 0)
            return 1;
    return 0;
}

/* The probers of e: the top-k members by rendezvous score. Fills out[]
 * with member indexes; returns how many. */
static size_t choose_probers(const sh_hc_peer_t *e, size_t *out, size_t max)
{
    size_t k = e->check != NULL ? (size_t)e->check->probers : SH_HC_PROBERS;
    if (k > G.nmembers)
        k = G.nmembers;
    if (k > max)
        k = max;
    uint64_t score[SH_HC_MAX_OBS];
    size_t n = 0;
    for (size_t i = 0; i < G.nmembers; i++) {
        uint64_t s = sh_hc_rendezvous(e->kh, G.members[i]);
        if (n < k) {
            out[n] = i;
            score[n] = s;
            n++;
        } else if (s > score[k - 1]) {
            out[k - 1] = i;
            score[k - 1] = s;
        } else {
            continue;
        }
        /* keep the chosen sorted by score, highest first */
        for (size_t j = n - 1; j > 0 && score[j] > score[j - 1]; j--) {
            uint64_t ts = score[j];
            score[j] = score[j - 1];
            score[j - 1] = ts;
            size_t ti = out[j];
            out[j] = out[j - 1];
            out[j - 1] = ti;
        }
    }
    return n;
}

static sh_hc_obs_t *obs_find(sh_hc_peer_t *e, const char *node)
{
    for (int i = 0; i < e->nobs; i++)
        if (strcmp(e->obs[i].node, node) == 0)
            return &e->obs[i];
    return NULL;
}

/* How long a word stays valid without being repeated. A member that
 * dies or leaves is forgotten at once (membership); this only covers a
 * live member that stopped speaking, so it is long against the refresh
 * (broadcast every second, sent directly every 10 s). */
static uint64_t obs_ttl(const sh_hc_peer_t *e)
{
    uint64_t iv = e->check ? e->check->interval : 5000;
    uint64_t t = 10 * iv;
    return t < 60000 ? 60000 : t;
}

typedef struct {
    const char *ups, *server, *state, *why;
} change_t;

/* Recompute the verdict of e (lock held). Returns 1 when `out` changed,
 * with what to tell in *ch. */
static int decide(sh_hc_peer_t *e, uint64_t now, change_t *ch)
{
    size_t np = 0;
    int self_in = 0;
    if (G.nmembers == 0) {
        self_in = 1; /* alone: this node is the one observer */
        np = 1;
    } else {
        if (e->pgen != G.mgen || e->pchk != e->check) {
            e->nprobers = (uint8_t)choose_probers(e, e->pidx, SH_HC_MAX_OBS);
            e->pself = 0;
            for (size_t i = 0; i < e->nprobers; i++)
                if (strcmp(G.members[e->pidx[i]], G.self) == 0)
                    e->pself = 1;
            e->pgen = G.mgen;
            e->pchk = e->check;
        }
        np = e->nprobers;
        self_in = e->pself;
    }
    const size_t *idx = e->pidx;
    int prober = e->check != NULL && self_in;
    if (e->prober && !prober) {
        /* no longer ours to probe: what we saw ages here, not on the wire */
        e->local = SH_HC_UNKNOWN;
        e->fail_row = e->pass_row = 0;
        G.version++;
    } else if (!e->prober && prober) {
        e->due = 0; /* probe at once */
    }
    e->prober = (uint8_t)prober;
    e->nprobers = (uint8_t)np;
    int q = e->check != NULL && e->check->quorum > 0 ? e->check->quorum : (int)np / 2 + 1;
    if (q > (int)np && np > 0)
        q = (int)np;
    e->quorum = (uint8_t)q;
    int down = 0, up = 0;
    /* this node's word */
    int self_passive = atomic_load_explicit(&e->passive_until, memory_order_relaxed) > now;
    if ((self_in && e->check != NULL && e->local == SH_HC_DOWN) || self_passive)
        down++;
    else if (self_in && e->check != NULL && e->local == SH_HC_UP)
        up++;
    /* the others' */
    uint64_t ttl = obs_ttl(e);
    for (int i = 0; i < e->nobs; i++) {
        const sh_hc_obs_t *o = &e->obs[i];
        /* (words of non-members are dropped when the members change) */
        if (strcmp(o->node, G.self) == 0 || now - o->seen > ttl || G.nmembers == 0)
            continue;
        int its_prober = 0;
        for (size_t j = 0; j < np && G.nmembers > 0; j++)
            if (strcmp(G.members[idx[j]], o->node) == 0)
                its_prober = 1;
        if ((its_prober && o->active == SH_HC_DOWN) || o->passive)
            down++;
        else if (its_prober && o->active == SH_HC_UP) {
            up++;
            e->passed = 1;
        }
    }
    if (e->local == SH_HC_UP && e->prober)
        e->passed = 1;
    int cluster = down >= q ? SH_HC_DOWN : up > 0 ? SH_HC_UP : SH_HC_UNKNOWN;
    int out = cluster == SH_HC_DOWN || (e->prober && e->local == SH_HC_DOWN) ||
              (e->check != NULL && e->check->mandatory && !e->passed);
    int was = atomic_load_explicit(&e->out, memory_order_relaxed);
    int changed_cluster = cluster != e->cluster;
    e->cluster = (uint8_t)cluster;
    if (out == was && !changed_cluster)
        return 0;
    atomic_store_explicit(&e->out, out, memory_order_relaxed);
    ch->ups = e->ups;
    ch->server = e->server;
    ch->state = out ? (cluster == SH_HC_DOWN ? "down"
                       : e->passed           ? "down (this node)"
                                             : "checking")
                    : "up";
    ch->why = e->why;
    return out != was;
}

static void tell(const change_t *ch, int n)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(ch[i].state, "up") == 0)
            sh_log_notice("health: upstream server %s in upstream \"%s\" is up", ch[i].server,
                          ch[i].ups);
        else
            sh_log_warn("health: upstream server %s in upstream \"%s\" is %s%s%s", ch[i].server,
                        ch[i].ups, ch[i].state, ch[i].why[0] ? ": " : "", ch[i].why);
        if (G.notify != NULL)
            G.notify(G.notify_ud, ch[i].ups, ch[i].server, ch[i].state, ch[i].why);
    }
}

/* Decide every entry (lock held); the changes are copied to be told
 * after the lock is released. */
typedef struct {
    change_t ch[32];
    char text[32][4][96];
    int n;
} changes_t;

static void note(changes_t *cs, const change_t *c)
{
    if (cs->n >= 32)
        return;
    int i = cs->n++;
    snprintf(cs->text[i][0], 96, "%s", c->ups);
    snprintf(cs->text[i][1], 96, "%s", c->server);
    snprintf(cs->text[i][2], 96, "%s", c->state);
    snprintf(cs->text[i][3], 96, "%s", c->why);
    cs->ch[i] = (change_t){cs->text[i][0], cs->text[i][1], cs->text[i][2], cs->text[i][3]};
}

static void decide_all(changes_t *cs)
{
    uint64_t now = mono_ms();
    for (sh_hc_peer_t *e = G.peers; e != NULL; e = e->next) {
        if (e->refs == 0)
            continue;
        change_t c;
        if (decide(e, now, &c))
            note(cs, &c);
    }
}

/* ------------------------------------------------------------ registry -- */

static sh_hc_peer_t *peer_acquire(const char *ups, const sh_ups_server_t *s)
{
    for (sh_hc_peer_t *e = G.peers; e != NULL; e = e->next)
        if (strcmp(e->ups, ups) == 0 && strcmp(e->server, s->name) == 0) {
            e->refs++;
            if (s->rslot == 0) { /* a `resolve` server's other slots: the same entry */
                e->addr = s->addr;
                e->addrlen = s->addrlen;
            }
            e->down = s->down;
            return e;
        }
    sh_hc_peer_t *e = sh_new(sh_hc_peer_t);
    snprintf(e->ups, sizeof(e->ups), "%s", ups);
    snprintf(e->server, sizeof(e->server), "%s", s->name);
    char key[256];
    int kl = snprintf(key, sizeof(key), "%s/%s", e->ups, e->server);
    e->kh = sh_hc_hash(key, (size_t)kl < sizeof(key) ? (size_t)kl : sizeof(key) - 1);
    e->addr = s->addr;
    e->addrlen = s->addrlen;
    e->down = s->down;
    e->refs = 1;
    e->next = G.peers;
    G.peers = e;
    return e;
}

static void peer_free(sh_hc_peer_t *e)
{
    check_unref(e->check);
    sh_free(e);
}

/* ------------------------------------------------------------- probes -- */

typedef struct {
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t wr;
    uv_timer_t timer;
    sh_hc_peer_t *e;
    hc_check_t *chk;
    char *buf;
    size_t len, cap;
    char req[1024];
    int closing;
    int done;
    char why[96];
} probe_t;

static void probe_result(probe_t *p, int ok, const char *why)
{
    changes_t cs = {.n = 0};
    sh_hc_peer_t *e = p->e;
    pthread_mutex_lock(&G.mu);
    e->in_flight = 0;
    atomic_fetch_add_explicit(&e->nchecks, 1, memory_order_relaxed);
    if (!ok)
        atomic_fetch_add_explicit(&e->nfails, 1, memory_order_relaxed);
    int before = e->local;
    if (ok) {
        e->fail_row = 0;
        e->pass_row++;
        if (e->local != SH_HC_UP && (e->pass_row >= p->chk->passes || e->local == SH_HC_UNKNOWN))
            e->local = SH_HC_UP;
        e->why[0] = '\0';
    } else {
        e->pass_row = 0;
        e->fail_row++;
        /* a new server counts as healthy until `fails` failures, unless
         * mandatory: then its first check decides (NGINX Plus) */
        if (e->local != SH_HC_DOWN &&
            (e->fail_row >= p->chk->fails || (e->local == SH_HC_UNKNOWN && p->chk->mandatory)))
            e->local = SH_HC_DOWN;
        snprintf(e->why, sizeof(e->why), "%s", why);
    }
    if (before != e->local) {
        G.version++;
        if (e->local == SH_HC_DOWN)
            sh_log_warn("health: check of %s in upstream \"%s\" failed (%s), failing here",
                        e->server, e->ups, why);
    }
    change_t c;
    if (decide(e, mono_ms(), &c))
        note(&cs, &c);
    pthread_mutex_unlock(&G.mu);
    tell(cs.ch, cs.n);
}

static void probe_closed(uv_handle_t *h)
{
    probe_t *p = h->data;
    if (--p->closing > 0)
        return;
    check_unref(p->chk);
    sh_free(p->buf);
    sh_free(p);
}

static void probe_finish(probe_t *p, int ok, const char *why)
{
    if (p->done)
        return;
    p->done = 1;
    uv_timer_stop(&p->timer);
    if (ok) {
        char mwhy[96] = "";
        ok = sh_hc_match_test(p->chk->match, p->buf, p->len, mwhy, sizeof(mwhy));
        if (!ok)
            why = mwhy;
        probe_result(p, ok, why);
    } else {
        probe_result(p, 0, why);
    }
    p->closing = 2;
    uv_close((uv_handle_t *)&p->tcp, probe_closed);
    uv_close((uv_handle_t *)&p->timer, probe_closed);
}

static void probe_timeout(uv_timer_t *t)
{
    probe_t *p = t->data;
    if (p->why[0])
        probe_finish(p, 0, p->why);
    else
        probe_finish(p, 0, p->len ? "timed out reading the response" : "timed out");
}

static void probe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    probe_t *p = h->data;
    if (p->cap - p->len < 4096) {
        p->cap = p->cap ? p->cap * 2 : 8192;
        p->buf = sh_realloc(p->buf, p->cap);
    }
    *b = uv_buf_init(p->buf + p->len, (unsigned)(p->cap - p->len));
}

static void probe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    probe_t *p = s->data;
    if (n > 0) {
        p->len += (size_t)n;
        if (p->len >= SH_HC_BODY_MAX + 16384)
            probe_finish(p, 1, "");
        return;
    }
    if (n == UV_EOF)
        probe_finish(p, 1, "");
    else if (n < 0)
        probe_finish(p, p->len > 0, uv_strerror((int)n));
}

static void probe_written(uv_write_t *w, int status)
{
    probe_t *p = w->data;
    if (p->done)
        return;
    if (status != 0) {
        probe_finish(p, 0, uv_strerror(status));
        return;
    }
    uv_read_start((uv_stream_t *)&p->tcp, probe_alloc, probe_read);
}

static void probe_connected(uv_connect_t *c, int status)
{
    probe_t *p = c->data;
    if (p->done)
        return;
    if (status != 0) {
        char why[96];
        snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
        probe_finish(p, 0, why);
        return;
    }
    uv_buf_t b = uv_buf_init(p->req, (unsigned)strlen(p->req));
    p->wr.data = p;
    uv_write(&p->wr, (uv_stream_t *)&p->tcp, &b, 1, probe_written);
}

/* Start a probe of e (lock held: e and its check are stable). */
static void probe_start(sh_hc_peer_t *e, uint64_t now)
{
    hc_check_t *c = e->check;
    probe_t *p = sh_new(probe_t);
    p->e = e;
    p->chk = check_ref(c);
    snprintf(p->req, sizeof(p->req),
             "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: shoal-health-check\r\n"
             "Connection: close\r\n\r\n",
             c->uri, c->host);
    uint64_t j = c->jitter ? (G.rng = G.rng * 6364136223846793005ull + 1442695040888963407ull,
                              (G.rng >> 33) % (c->jitter + 1))
                           : 0;
    e->due = now + c->interval + j;
    e->in_flight = 1;
    struct sockaddr_storage sa = e->addr;
    if (c->port > 0) {
        if (sa.ss_family == AF_INET)
            ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)c->port);
        else if (sa.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)c->port);
    }
    uv_tcp_init(&G.loop, &p->tcp);
    uv_timer_init(&G.loop, &p->timer);
    p->tcp.data = p->timer.data = p->conn.data = p;
    uv_timer_start(&p->timer, probe_timeout, c->interval, 0);
    int rc = uv_tcp_connect(&p->conn, &p->tcp, (struct sockaddr *)&sa, probe_connected);
    if (rc != 0) {
        /* finish from the loop, not under the lock: a zero timer */
        snprintf(p->why, sizeof(p->why), "connect: %s", uv_strerror(rc));
        uv_timer_stop(&p->timer);
        uv_timer_start(&p->timer, probe_timeout, 0, 0);
    }
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
    uint64_t now = mono_ms();
    changes_t cs = {.n = 0};
    pthread_mutex_lock(&G.mu);
    sh_hc_peer_t **pp = &G.peers;
    while (*pp != NULL) {
        sh_hc_peer_t *e = *pp;
        if (e->refs == 0 && !e->in_flight) {
            *pp = e->next;
            peer_free(e);
            continue;
        }
        pp = &e->next;
        if (e->refs == 0)
            continue;
        /* passive state changes and ageing observations move verdicts too */
        int pass = atomic_load_explicit(&e->passive_until, memory_order_relaxed) > now;
        if (pass != e->pub_pass) {
            e->pub_pass = (uint8_t)pass;
            G.version++;
        }
        change_t c;
        if (decide(e, now, &c))
            note(&cs, &c);
        if (e->check != NULL && e->prober && !e->down && !e->in_flight && now >= e->due)
            probe_start(e, now);
    }
    pthread_mutex_unlock(&G.mu);
    tell(cs.ch, cs.n);
}

static void stop_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    probe_t *p = h->data;
    if (p == NULL || p->done)
        return;
    p->done = 1;
    uv_timer_stop(&p->timer);
    p->closing = 2;
    uv_close((uv_handle_t *)&p->tcp, probe_closed);
    uv_close((uv_handle_t *)&p->timer, probe_closed);
}

static void stop_cb(uv_async_t *a)
{
    (void)a;
    uv_timer_stop(&G.tick);
    uv_close((uv_handle_t *)&G.tick, NULL);
    uv_close((uv_handle_t *)&G.stop, NULL);
    /* probes under way: closed without a result */
    uv_walk(&G.loop, stop_walk, NULL);
}

static void thread_main(void *arg)
{
    (void)arg;
    /* `user`: the probes never run as root (core/privs.h); fail closed */
    if (sh_privs_drop_thread() != 0) {
        sh_log_err("health: the probe thread could not switch user; no active checks");
        return;
    }
    uv_run(&G.loop, UV_RUN_DEFAULT);
}

int sh_health_start(void)
{
    if (G.running)
        return 0;
    G.rng = mono_ms() | 1;
    uv_loop_init(&G.loop);
    uv_async_init(&G.loop, &G.stop, stop_cb);
    uv_timer_init(&G.loop, &G.tick);
    G.stop.data = G.tick.data = NULL;
    uv_timer_start(&G.tick, tick_cb, 0, 100);
    if (uv_thread_create(&G.thread, thread_main, NULL) != 0) {
        sh_log_err("health: the probe thread could not start");
        return SH_EIO;
    }
    G.running = 1;
    return 0;
}

void sh_health_stop(void)
{
    if (!G.running)
        return;
    uv_async_send(&G.stop);
    uv_thread_join(&G.thread);
    uv_run(&G.loop, UV_RUN_DEFAULT);
    uv_loop_close(&G.loop);
    pthread_mutex_lock(&G.mu);
    for (sh_hc_peer_t *e = G.peers; e != NULL; e = e->next)
        e->in_flight = 0; /* closed without a result */
    pthread_mutex_unlock(&G.mu);
    G.running = 0;
}

/* ------------------------------------------------------------- views -- */

void sh_hc_json(const sh_hc_peer_t *cp, sh_buf_t *b)
{
    sh_hc_peer_t *e = (sh_hc_peer_t *)cp;
    if (e == NULL) {
        sh_buf_appends(b, "null");
        return;
    }
    uint64_t now = mono_ms();
    pthread_mutex_lock(&G.mu);
    const hc_check_t *c = e->check;
    sh_buf_appendf(b,
                   "{\"checked\":%s,\"out\":%s,\"local\":\"%s\",\"cluster\":\"%s\","
                   "\"prober\":%s,\"probers\":%u,\"quorum\":%u,\"checks\":%llu,\"fails\":%llu,"
                   "\"passive_down\":%s",
                   c ? "true" : "false", atomic_load(&e->out) ? "true" : "false",
                   e->prober ? state_text(e->local) : "not probing", state_text(e->cluster),
                   e->prober ? "true" : "false", e->nprobers, e->quorum,
                   (unsigned long long)atomic_load(&e->nchecks),
                   (unsigned long long)atomic_load(&e->nfails),
                   atomic_load(&e->passive_until) > now ? "true" : "false");
    if (c != NULL)
        sh_buf_appendf(b, ",\"interval_ms\":%llu,\"uri\":", (unsigned long long)c->interval);
    if (c != NULL)
        sh_buf_append_json_str(b, c->uri);
    if (c != NULL && c->match != NULL) {
        sh_buf_appends(b, ",\"match\":");
        sh_buf_append_json_str(b, sh_hc_match_name(c->match));
    }
    sh_buf_appends(b, ",\"last_failure\":");
    sh_buf_append_json_str(b, e->why);
    sh_buf_appends(b, ",\"observers\":[");
    size_t idx[SH_HC_MAX_OBS];
    size_t np = G.nmembers ? choose_probers(e, idx, SH_HC_MAX_OBS) : 0;
    int first = 1;
    if (G.nmembers == 0 || e->prober || atomic_load(&e->passive_until) > now) {
        sh_buf_appends(b, "{\"node\":");
        sh_buf_append_json_str(b, G.self[0] ? G.self : "self");
        sh_buf_appendf(b, ",\"self\":true,\"prober\":%s,\"active\":\"%s\",\"passive\":%s}",
                       e->prober ? "true" : "false", e->prober ? state_text(e->local) : "unknown",
                       atomic_load(&e->passive_until) > now ? "true" : "false");
        first = 0;
    }
    for (int i = 0; i < e->nobs; i++) {
        const sh_hc_obs_t *o = &e->obs[i];
        if (strcmp(o->node, G.self) == 0)
            continue;
        int pr = 0;
        for (size_t j = 0; j < np; j++)
            pr |= strcmp(G.members[idx[j]], o->node) == 0;
        sh_buf_appends(b, first ? "{\"node\":" : ",{\"node\":");
        first = 0;
        sh_buf_append_json_str(b, o->node);
        sh_buf_appendf(b,
                       ",\"self\":false,\"prober\":%s,\"active\":\"%s\",\"passive\":%s,"
                       "\"age_ms\":%llu,\"stale\":%s}",
                       pr ? "true" : "false", state_text(o->active), o->passive ? "true" : "false",
                       (unsigned long long)(now - o->seen),
                       now - o->seen > obs_ttl(e) || (G.nmembers > 0 && !is_member(o->node))
                           ? "true"
                           : "false");
    }
    sh_buf_appends(b, "],\"probed_by\":[");
    for (size_t j = 0; j < np; j++) {
        if (j)
            sh_buf_appends(b, ",");
        sh_buf_append_json_str(b, G.members[idx[j]]);
    }
    sh_buf_appends(b, "]}");
    pthread_mutex_unlock(&G.mu);
}

char *sh_health_json_all(void)
{
    sh_buf_t b = {0};
    sh_buf_appends(&b, "[");
    /* the entries outlive this call: only the probe thread frees, and
     * only entries no configuration holds; list them under the lock */
    pthread_mutex_lock(&G.mu);
    size_t n = 0;
    for (sh_hc_peer_t *e = G.peers; e != NULL; e = e->next)
        n += e->refs > 0;
    sh_hc_peer_t **list = sh_calloc(n ? n : 1, sizeof(*list));
    n = 0;
    for (sh_hc_peer_t *e = G.peers; e != NULL; e = e->next)
        if (e->refs > 0) {
            e->refs++; /* held while listed */
            list[n++] = e;
        }
    pthread_mutex_unlock(&G.mu);
    for (size_t i = 0; i < n; i++) {
        sh_buf_appends(&b, i ? ",{\"upstream\":" : "{\"upstream\":");
        sh_buf_append_json_str(&b, list[i]->ups);
        sh_buf_appends(&b, ",\"server\":");
        sh_buf_append_json_str(&b, list[i]->server);
        sh_buf_appends(&b, ",\"health\":");
        sh_hc_json(list[i], &b);
        sh_buf_appends(&b, "}");
    }
    pthread_mutex_lock(&G.mu);
    for (size_t i = 0; i < n; i++)
        list[i]->refs--;
    pthread_mutex_unlock(&G.mu);
    sh_free(list);
    sh_buf_appends(&b, "]");
    return sh_buf_take_cstr(&b);
}

uint64_t sh_health_version(void)
{
    pthread_mutex_lock(&G.mu);
    uint64_t v = G.version;
    pthread_mutex_unlock(&G.mu);
    return v;
}

static void metric_esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

void sh_health_metrics(FILE *f)
{
    static const char *const heads[] = {
        "# HELP shoal_upstream_health_checks_total Active health checks this node sent.\n"
        "# TYPE shoal_upstream_health_checks_total counter\n",
        "# HELP shoal_upstream_health_check_fails_total Active health checks that failed.\n"
        "# TYPE shoal_upstream_health_check_fails_total counter\n",
        "# HELP shoal_upstream_health_up 1 when the server is in service on this node (health "
        "checks, local and cluster-wide), else 0.\n"
        "# TYPE shoal_upstream_health_up gauge\n",
        "# HELP shoal_upstream_health_cluster_down 1 when a quorum of the server's observers see "
        "it failing.\n"
        "# TYPE shoal_upstream_health_cluster_down gauge\n",
        "# HELP shoal_upstream_health_prober 1 when this node probes the server.\n"
        "# TYPE shoal_upstream_health_prober gauge\n",
    };
    pthread_mutex_lock(&G.mu);
    for (int k = 0; k < 5; k++) {
        int any = 0;
        for (sh_hc_peer_t *e = G.peers; e != NULL; e = e->next) {
            if (e->refs == 0 || e->check == NULL)
                continue;
            if (!any)
                fputs(heads[k], f);
            any = 1;
            static const char *const names[] = {
                "shoal_upstream_health_checks_total", "shoal_upstream_health_check_fails_total",
                "shoal_upstream_health_up", "shoal_upstream_health_cluster_down",
                "shoal_upstream_health_prober"};
            unsigned long long v = k == 0   ? atomic_load(&e->nchecks)
                                   : k == 1 ? atomic_load(&e->nfails)
                                   : k == 2 ? !atomic_load(&e->out)
                                   : k == 3 ? e->cluster == SH_HC_DOWN
                                            : e->prober;
            fprintf(f, "%s{upstream=\"", names[k]);
            metric_esc(f, e->ups);
            fputs("\",server=\"", f);
            metric_esc(f, e->server);
            fprintf(f, "\"} %llu\n", v);
        }
    }
    pthread_mutex_unlock(&G.mu);
}

/* ------------------------------------------------------------ cluster -- */

void sh_health_set_notify(void (*fn)(void *, const char *, const char *, const char *,
                                     const char *),
                          void *ud)
{
    pthread_mutex_lock(&G.mu);
    G.notify = fn;
    G.notify_ud = ud;
    pthread_mutex_unlock(&G.mu);
}

void sh_health_set_self(const char *self)
{
    pthread_mutex_lock(&G.mu);
    snprintf(G.self, sizeof(G.self), "%s", self ? self : "");
    pthread_mutex_unlock(&G.mu);
}

void sh_health_set_members(const char *const *names, size_t n)
{
    changes_t cs = {.n = 0};
    pthread_mutex_lock(&G.mu);
    sh_free(G.members);
    G.members = n ? sh_calloc(n, sizeof(*G.members)) : NULL;
    G.nmembers = n;
    for (size_t i = 0; i < n; i++)
        snprintf(G.members[i], sizeof(G.members[i]), "%s", names[i]);
    G.mgen++;
    G.version++;
    /* the words of nodes that are no longer members go */
    for (sh_hc_peer_t *e = G.peers; e != NULL; e = e->next)
        for (int i = 0; i < e->nobs;)
            if (!is_member(e->obs[i].node))
                e->obs[i] = e->obs[--e->nobs];
            else
                i++;
    decide_all(&cs);
    pthread_mutex_unlock(&G.mu);
    tell(cs.ch, cs.n);
}

void sh_health_forget(const char *node)
{
    changes_t cs = {.n = 0};
    pthread_mutex_lock(&G.mu);
    for (sh_hc_peer_t *e = G.peers; e != NULL; e = e->next)
        for (int i = 0; i < e->nobs; i++)
            if (strcmp(e->obs[i].node, node) == 0) {
                e->obs[i] = e->obs[--e->nobs];
                break;
            }
    for (size_t i = 0; i < G.norigins;)
        if (strcmp(G.origins[i].node, node) == 0)
            G.origins[i] = G.origins[--G.norigins];
        else
            i++;
    decide_all(&cs);
    pthread_mutex_unlock(&G.mu);
    tell(cs.ch, cs.n);
}

/*
 * The wire form of one node's observations (little-endian):
 *   u8 name length, the origin's name (gossip relays: the sender is not
 *   the origin), u8 magic 'H', u8 format 2, u16 count, u64 seq (wall
 *   clock ms or the last + 1: a restarted node's words are newer),
 *   u8 part, u8 parts,
 *   count x { u64 server key hash, u8 active (SH_HC_*), u8 flags (1 passive, 2 prober) }
 * Only servers with something to say are listed (probed, or passive
 * down). A node's word is split in `parts` messages by server (key hash
 * mod parts) when it exceeds a datagram; each message is the whole word
 * of its origin on the servers of its part.
 */
#define REC_LEN 10u
#define HDR_LEN 14u

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

uint8_t *sh_health_encode_local(unsigned part, unsigned parts, size_t *len, uint64_t *version)
{
    uint64_t now = mono_ms();
    if (parts == 0 || parts > 255 || part >= parts)
        parts = 1, part = 0;
    pthread_mutex_lock(&G.mu);
    size_t n = 0;
    for (sh_hc_peer_t *e = G.peers; e != NULL; e = e->next)
        n += e->refs > 0;
    if (n > 65535)
        n = 65535;
    size_t nl = strlen(G.self);
    uint8_t *buf = sh_malloc(1 + nl + HDR_LEN + n * REC_LEN);
    buf[0] = (uint8_t)nl;
    memcpy(buf + 1, G.self, nl);
    uint8_t *out = buf + 1 + nl;
    size_t k = 0;
    for (sh_hc_peer_t *e = G.peers; e != NULL && k < n; e = e->next) {
        if (e->refs == 0 || e->kh % parts != part)
            continue;
        int passive = atomic_load_explicit(&e->passive_until, memory_order_relaxed) > now;
        if (!(e->prober && e->local != SH_HC_UNKNOWN) && !passive)
            continue;
        uint8_t *r = out + HDR_LEN + k * REC_LEN;
        put_u64(r, e->kh);
        r[8] = e->prober ? e->local : SH_HC_UNKNOWN;
        r[9] = (uint8_t)((passive ? 1 : 0) | (e->prober ? 2 : 0));
        k++;
    }
    out[0] = 'H';
    out[1] = 2;
    out[2] = (uint8_t)(k & 0xff);
    out[3] = (uint8_t)(k >> 8);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seq = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    if (seq <= G.last_seq)
        seq = G.last_seq + 1;
    G.last_seq = seq;
    put_u64(out + 4, seq);
    out[12] = (uint8_t)part;
    out[13] = (uint8_t)parts;
    if (version != NULL)
        *version = G.version;
    pthread_mutex_unlock(&G.mu);
    *len = 1 + nl + HDR_LEN + k * REC_LEN;
    return buf;
}

/* The index of the sequence record of (node, part), made on first use
 * (lock held; the table may move: keep indexes, not pointers). */
static size_t origin_get(const char *node, unsigned part)
{
    for (size_t i = 0; i < G.norigins; i++)
        if (G.origins[i].part == part && strcmp(G.origins[i].node, node) == 0)
            return i;
    G.origins = sh_realloc(G.origins, (G.norigins + 1) * sizeof(*G.origins));
    origin_t *o = &G.origins[G.norigins];
    memset(o, 0, sizeof(*o));
    snprintf(o->node, sizeof(o->node), "%s", node);
    o->part = (uint8_t)part;
    return G.norigins++;
}

int sh_health_merge_remote(const uint8_t *data, size_t len)
{
    char from[64];
    if (len < 1 || data[0] == 0 || data[0] >= sizeof(from) || len < 1u + data[0])
        return SH_EPARSE;
    memcpy(from, data + 1, data[0]);
    from[data[0]] = '\0';
    if (strlen(from) != data[0])
        return SH_EPARSE;
    len -= 1u + data[0];
    data += 1u + data[0];
    if (len < HDR_LEN || data[0] != 'H' || data[1] != 2)
        return SH_EPARSE;
    unsigned part = data[12], parts = data[13];
    if (parts == 0 || part >= parts)
        return SH_EPARSE;
    size_t k = (size_t)data[2] | (size_t)data[3] << 8;
    if (len != HDR_LEN + k * REC_LEN)
        return SH_EPARSE;
    for (size_t i = 0; i < k; i++) {
        const uint8_t *r = data + HDR_LEN + i * REC_LEN;
        if (r[8] > SH_HC_DOWN || (r[9] & ~3u) != 0)
            return SH_EPARSE;
    }
    uint64_t seq = get_u64(data + 4);
    uint64_t now = mono_ms();
    changes_t cs = {.n = 0};
    int changed = 0;
    pthread_mutex_lock(&G.mu);
    if (strcmp(from, G.self) == 0 || !is_member(from)) {
        /* ourselves, or not a live member (yet): nothing kept, so the
         * table of origins stays bounded by the membership */
        pthread_mutex_unlock(&G.mu);
        return 0;
    }
    size_t ai = origin_get(from, ORIGIN_ANY), oi = origin_get(from, part);
    origin_t *any = &G.origins[ai], *o = &G.origins[oi];
    if (seq <= o->seq || (parts != any->parts && seq < any->seq)) {
        /* older than what we have of this part, or a part of an older
         * split (a relayed straggler) */
        pthread_mutex_unlock(&G.mu);
        return 0;
    }
    if (seq > any->seq) {
        any->seq = seq;
        any->parts = (uint8_t)parts;
    }
    o->seq = seq;
    /* every entry: what the message says, or nothing (the node has no word) */
    for (sh_hc_peer_t *e = G.peers; e != NULL; e = e->next) {
        if (e->kh % parts != part)
            continue; /* another message's servers */
        const uint8_t *rec = NULL;
        for (size_t i = 0; i < k; i++)
            if (get_u64(data + HDR_LEN + i * REC_LEN) == e->kh)
                rec = data + HDR_LEN + i * REC_LEN;
        sh_hc_obs_t *ob = obs_find(e, from);
        if (rec == NULL) {
            if (ob != NULL) {
                *ob = e->obs[--e->nobs];
                changed = 1;
            }
            continue;
        }
        if (ob == NULL) {
            if (e->nobs >= SH_HC_MAX_OBS)
                continue;
            ob = &e->obs[e->nobs++];
            memset(ob, 0, sizeof(*ob));
            snprintf(ob->node, sizeof(ob->node), "%s", from);
            changed = 1;
        }
        changed |= ob->active != rec[8] || ob->passive != (rec[9] & 1);
        ob->active = rec[8];
        ob->passive = rec[9] & 1;
        ob->prober = (rec[9] & 2) != 0;
        ob->seen = now;
    }
    decide_all(&cs);
    pthread_mutex_unlock(&G.mu);
    tell(cs.ch, cs.n);
    (void)changed;
    return 1; /* a newer word of its origin: spread it */
}

/* ------------------------------------------------------ configuration -- */

typedef struct {
    char *name;
    sh_hc_match_t *m;
} named_match_t;

typedef struct {
    hc_check_t *chk;
    const sh_http_loc_t *loc;
    char *match_name;
} loc_check_t;

typedef struct {
    named_match_t *matches;
    size_t nmatches;
    loc_check_t *checks;
    size_t nchecks;
    sh_hc_peer_t **held; /* entries this configuration acquired */
    size_t nheld;
} hc_main_t;

static void *hc_create_main(void)
{
    return sh_new(hc_main_t);
}

static void hc_destroy_main(void *conf)
{
    hc_main_t *m = conf;
    for (size_t i = 0; i < m->nmatches; i++) {
        sh_free(m->matches[i].name);
        sh_hc_match_destroy(m->matches[i].m);
    }
    for (size_t i = 0; i < m->nchecks; i++) {
        check_unref(m->checks[i].chk);
        sh_free(m->checks[i].match_name);
    }
    if (m->nheld > 0) {
        pthread_mutex_lock(&G.mu);
        for (size_t i = 0; i < m->nheld; i++)
            m->held[i]->refs--;
        /* without the probe thread nothing frees them later */
        if (!G.running) {
            sh_hc_peer_t **pp = &G.peers;
            while (*pp != NULL) {
                sh_hc_peer_t *e = *pp;
                if (e->refs == 0 && !e->in_flight) {
                    *pp = e->next;
                    peer_free(e);
                } else {
                    pp = &e->next;
                }
            }
        }
        pthread_mutex_unlock(&G.mu);
    }
    sh_free(m->held);
    sh_free(m->matches);
    sh_free(m->checks);
    sh_free(m);
}

static hc_main_t *main_of(sh_conf_t *cf, sh_http_block_t **bp)
{
    sh_http_block_t *b = cf->user;
    *bp = b;
    return sh_http_main_conf(b->main, &sh_health_module);
}

static int match_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    (void)conf;
    sh_http_block_t *b;
    hc_main_t *m = main_of(cf, &b);
    const char *name = cf->node->args[1];
    for (size_t i = 0; i < m->nmatches; i++)
        if (strcmp(m->matches[i].name, name) == 0)
            return sh_conf_error(cf, "duplicate match \"%s\"", name);
    char err[SH_CONF_ERRLEN];
    sh_hc_match_t *mt = sh_hc_match_build(name, cf->node->child, err, sizeof(err));
    if (mt == NULL)
        return sh_conf_error(cf, "%s", err);
    m->matches = sh_realloc(m->matches, (m->nmatches + 1) * sizeof(*m->matches));
    m->matches[m->nmatches++] = (named_match_t){sh_strdup(name), mt};
    return 0;
}

static int hc_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    (void)conf;
    sh_http_block_t *b;
    hc_main_t *m = main_of(cf, &b);
    const sh_conf_node_t *n = cf->node;
    for (size_t i = 0; i < m->nchecks; i++)
        if (m->checks[i].loc == b->loc)
            return sh_conf_error(cf, "\"health_check\" directive is duplicate");
    hc_check_t *c = sh_new(hc_check_t);
    atomic_init(&c->refs, 1);
    c->interval = 5000;
    c->fails = 1;
    c->passes = 1;
    c->probers = SH_HC_PROBERS;
    c->file = n->file;
    c->line = n->line;
    char *match_name = NULL;
    int rc = 0;
    for (unsigned i = 1; i < n->nargs && rc == 0; i++) {
        const char *a = n->args[i];
        if (strncmp(a, "interval=", 9) == 0) {
            if (sh_conf_parse_msec(a + 9, &c->interval) != 0 || c->interval < 10)
                rc = -1;
        } else if (strncmp(a, "jitter=", 7) == 0) {
            if (sh_conf_parse_msec(a + 7, &c->jitter) != 0)
                rc = -1;
        } else if (strncmp(a, "fails=", 6) == 0) {
            if (sh_conf_parse_int(a + 6, &c->fails) != 0 || c->fails < 1)
                rc = -1;
        } else if (strncmp(a, "passes=", 7) == 0) {
            if (sh_conf_parse_int(a + 7, &c->passes) != 0 || c->passes < 1)
                rc = -1;
        } else if (strncmp(a, "uri=", 4) == 0) {
            if (a[4] != '/' || strpbrk(a + 4, " \r\n\t") != NULL || strlen(a + 4) > 512)
                rc = -1;
            else {
                sh_free(c->uri);
                c->uri = sh_strdup(a + 4);
            }
        } else if (strncmp(a, "match=", 6) == 0) {
            sh_free(match_name);
            match_name = sh_strdup(a + 6);
        } else if (strncmp(a, "port=", 5) == 0) {
            if (sh_conf_parse_int(a + 5, &c->port) != 0 || c->port < 1 || c->port > 65535)
                rc = -1;
        } else if (strncmp(a, "probers=", 8) == 0) {
            if (sh_conf_parse_int(a + 8, &c->probers) != 0 || c->probers < 1 ||
                c->probers > SH_HC_MAX_OBS)
                rc = -1;
        } else if (strncmp(a, "quorum=", 7) == 0) {
            if (sh_conf_parse_int(a + 7, &c->quorum) != 0 || c->quorum < 1)
                rc = -1;
        } else if (strcmp(a, "mandatory") == 0) {
            c->mandatory = 1;
        } else if (strcmp(a, "persistent") == 0) {
            c->persistent = 1;
        } else if (strcmp(a, "type=http") == 0) {
            /* the only type */
        } else if (strncmp(a, "type=", 5) == 0) {
            sh_free(match_name);
            check_unref(c);
            return sh_conf_error(cf, "health_check %s is not supported (type=http only)", a);
        } else {
            rc = -1;
        }
        if (rc != 0) {
            sh_free(match_name);
            check_unref(c);
            return sh_conf_error(cf, "invalid parameter \"%s\"", a);
        }
    }
    if (c->persistent && !c->mandatory) {
        sh_free(match_name);
        check_unref(c);
        return sh_conf_error(cf, "\"persistent\" requires \"mandatory\"");
    }
    if (c->uri == NULL)
        c->uri = sh_strdup("/");
    m->checks = sh_realloc(m->checks, (m->nchecks + 1) * sizeof(*m->checks));
    m->checks[m->nchecks++] = (loc_check_t){c, b->loc, match_name};
    return 0;
}

static int hold(hc_main_t *m, sh_hc_peer_t *e)
{
    m->held = sh_realloc(m->held, (m->nheld + 1) * sizeof(*m->held));
    m->held[m->nheld++] = e;
    return 0;
}

/* Every server of every group gets its entry (passive failures are
 * shared too); the checked groups get their check. */
static int hc_postconf(sh_conf_t *cf, sh_http_main_t *hm)
{
    hc_main_t *m = sh_http_main_conf(hm, &sh_health_module);
    sh_upstream_main_t *um = sh_http_main_conf(hm, &sh_upstream_module);
    hc_check_t **of = um && um->n ? sh_calloc(um->n, sizeof(*of)) : NULL;
    for (size_t i = 0; i < m->nchecks; i++) {
        loc_check_t *lc = &m->checks[i];
        const sh_upstream_t *cu = sh_proxy_loc_upstream(lc->loc);
        if (cu == NULL || um == NULL) {
            sh_free(of);
            return sh_conf_error(cf,
                                 "%s:%u: \"health_check\" needs \"proxy_pass\" to an upstream "
                                 "in its location",
                                 lc->chk->file, lc->chk->line);
        }
        if (sh_proxy_loc_https(lc->loc)) {
            /* the probes are cleartext HTTP: to a TLS server they would all
             * fail and take every server out */
            sh_free(of);
            return sh_conf_error(cf,
                                 "%s:%u: \"health_check\" with \"proxy_pass https://\" is not "
                                 "supported yet (the probes are cleartext HTTP)",
                                 lc->chk->file, lc->chk->line);
        }
        if (of[cu->index] != NULL) {
            sh_free(of);
            return sh_conf_error(cf,
                                 "%s:%u: upstream \"%s\" already has a \"health_check\" (one per "
                                 "upstream group)",
                                 lc->chk->file, lc->chk->line, cu->name);
        }
        if (lc->match_name != NULL) {
            for (size_t k = 0; k < m->nmatches; k++)
                if (strcmp(m->matches[k].name, lc->match_name) == 0)
                    lc->chk->match = sh_hc_match_ref(m->matches[k].m);
            if (lc->chk->match == NULL) {
                sh_free(of);
                return sh_conf_error(cf, "%s:%u: match \"%s\" not found", lc->chk->file,
                                     lc->chk->line, lc->match_name);
            }
        }
        sh_free(lc->chk->host);
        lc->chk->host = sh_strdup(cu->name);
        of[cu->index] = lc->chk;
    }
    changes_t cs = {.n = 0};
    pthread_mutex_lock(&G.mu);
    uint64_t now = mono_ms();
    for (size_t i = 0; um != NULL && i < um->n; i++) {
        sh_upstream_t *u = um->ups[i];
        for (size_t k = 0; k < u->nservers; k++) {
            sh_ups_server_t *s = &u->servers[k];
            sh_hc_peer_t *e = peer_acquire(u->name, s);
            hold(m, e);
            s->hc = e;
            if (e->check != of[i]) {
                int fresh = e->check == NULL;
                check_unref(e->check);
                e->check = check_ref(of[i]);
                if (fresh) {
                    e->local = SH_HC_UNKNOWN;
                    e->passed = 0;
                    e->due = 0;
                    e->fail_row = e->pass_row = 0;
                    /* mandatory: out until the first pass (persistent keeps a
                     * healthy server of a reload in, which a kept entry does) */
                    if (of[i] != NULL && of[i]->mandatory)
                        atomic_store(&e->out, 1);
                }
            }
            change_t c;
            if (decide(e, now, &c))
                note(&cs, &c);
        }
    }
    pthread_mutex_unlock(&G.mu);
    sh_free(of);
    (void)cs; /* at load: nothing to announce yet */
    return 0;
}

#define LOCATION (SH_CTX_LOCATION)

static const sh_conf_cmd_t hc_cmds[] = {
    {"health_check", LOCATION | SH_CONF_ANY, hc_set, 0, NULL},
    {"match", SH_CTX_HTTP | SH_CONF_BLOCK | SH_CONF_TAKE1, match_set, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t hc_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_main = hc_create_main,
    .destroy_main = hc_destroy_main,
    .postconfiguration = hc_postconf,
};

sh_conf_module_t sh_health_module = {
    .name = "health_check",
    .cmds = hc_cmds,
    .ctx = &hc_ctx,
};
