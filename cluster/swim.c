/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SWIM + Lifeguard state machine: see swim.h for the protocol. Invariants:
 * - every member, self included, is in mem[] and by_name, keyed by name;
 * - n_live counts alive + suspect members, n_susp the suspects (each with a
 *   suspicion record); susp_next is <= every suspicion deadline;
 * - at most one own probe is in flight; relays[] holds indirect probes we
 *   run for others;
 * - incarnations only grow; ours grows only to refute or to leave/update.
 * Cluster thread only. The formulas follow memberlist/Lifeguard (Dadgar et
 * al., "Lifeguard: Local Health Awareness for More Accurate Failure
 * Detection", 2018) so figures compare with Serf.
 */
#include "cluster/swim.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/broadcast.h"
#include "cluster/keyring.h"
#include "cluster/strmap.h"
#include "cluster/wire.h"
#include "core/alloc.h"
#include "core/err.h"

#define RELAYS      128u  /* indirect probes we run for others at once */
#define MAX_CONFIRM 16u   /* Lifeguard k is suspicion_mult - 2, bounded */
#define BCAST_MAX   8192u /* queued updates */
#define KEYLEN      (SH_WIRE_MAX_NAME + 32u)

typedef struct {
    uint64_t start, min, max, deadline;
    unsigned k, n;
    uint64_t who[MAX_CONFIRM + 1]; /* hashes of the suspecting nodes */
} suspicion;

typedef struct {
    sh_swim_member_t pub; /* name/addr/meta owned here */
    suspicion *susp;
    unsigned wire_ver; /* plaintext version of its last message, 0: none yet */
    int susp_full;     /* susp has all its confirmations: skip loading it */
    int dist;          /* transport's distance() of its meta: 0 near .. 2 another region */
} member;

typedef struct {
    int used, nack;
    uint32_t seq, orig_seq;
    uint64_t deadline;
    char addr[SH_WIRE_MAX_ADDR + 1];
} relay;

struct sh_swim_s {
    sh_swim_conf_t conf;
    sh_swim_transport_t t;
    void *ud;
    member *self;
    int any_far; /* some member was ever in another zone or region (transport distance) */
    member **mem;
    size_t n, cap, probe_idx, n_live, n_susp, n_dead;
    sh_strmap_t by_name;
    uint64_t now, rng, susp_next;
    uint32_t seq;
    struct {
        int active, indirect_done;
        uint32_t seq;
        char target[SH_WIRE_MAX_NAME + 1];
        uint64_t inc, direct_at, end_at;
        unsigned expected_nacks, nacks;
    } probe;
    uint64_t next_probe_at, next_gossip_at, next_pushpull_at, next_reconnect_at;
    relay relays[RELAYS];
    unsigned n_relays; /* used ones: the scans of relays[] skip an idle table */
    sh_bcast_t *bq;
    int awareness, leaving;
    struct {
        const sh_channel_ops_t *ops;
        void *ud;
    } ch[SH_CHANNEL_MAX];
    sh_wire_stats_t wst;
    sh_swim_stats_t st;
    uint8_t *buf;
    size_t buf_cap;        /* plaintext packet limit */
    sh_wire_arena_t arena; /* decoded packets and push-pull frames */
};

/* ------------------------------------------------------------ basics -- */

const char *sh_swim_status_name(int status)
{
    switch (status) {
    case SH_SWIM_ALIVE:
        return "alive";
    case SH_SWIM_SUSPECT:
        return "suspect";
    case SH_SWIM_DEAD:
        return "dead";
    case SH_SWIM_LEFT:
        return "left";
    default:
        return "unknown";
    }
}

void sh_swim_conf_lan(sh_swim_conf_t *c)
{
    /* memberlist's LAN profile probes every 1 s with a 500 ms timeout.
     * Measured here (bench/cluster-bench.sh beside Serf, and the
     * simulator's false-positive runs): 700/350 ms detects a failure
     * about 1.5 s sooner, still sends fewer bytes per node than Serf,
     * and raises no false deaths at 10% loss; Lifeguard's local health
     * multiplier stretches both when this node is slow. */
    c->probe_interval_ms = 700;
    c->probe_timeout_ms = 350;
    c->gossip_interval_ms = 200;
    c->pushpull_interval_ms = 30000;
    c->gossip_to_dead_ms = 30000;
    c->indirect_checks = 3;
    c->retransmit_mult = 4;
    c->suspicion_mult = 4;
    c->suspicion_max_mult = 6;
    c->awareness_max = 8;
    c->gossip_nodes = 3;
    c->mtu = 1400;
    c->lifeguard = 1;
    c->reconnect_interval_ms = 30000;
    c->reconnect_timeout_ms = 24ull * 3600 * 1000;
}

void sh_swim_conf_wan(sh_swim_conf_t *c)
{
    sh_swim_conf_lan(c);
    c->probe_interval_ms = 5000;
    c->probe_timeout_ms = 3000;
    c->gossip_interval_ms = 500;
    c->pushpull_interval_ms = 60000;
    c->gossip_to_dead_ms = 60000;
    c->suspicion_mult = 6;
    c->gossip_nodes = 4;
}

void sh_swim_conf_local(sh_swim_conf_t *c)
{
    sh_swim_conf_lan(c);
    c->probe_timeout_ms = 200;
    c->gossip_interval_ms = 100;
    c->pushpull_interval_ms = 15000;
    c->gossip_to_dead_ms = 15000;
    c->indirect_checks = 1;
    c->retransmit_mult = 2;
    c->suspicion_mult = 3;
}

static uint64_t rnd(sh_swim_t *s)
{
    /* xorshift64*: seeded, so the simulator is deterministic. */
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 2685821657736338717ull;
}

static size_t rnd_below(sh_swim_t *s, size_t n)
{
    return n ? (size_t)(rnd(s) % n) : 0;
}

static int is_live(const member *m)
{
    return m->pub.status == SH_SWIM_ALIVE || m->pub.status == SH_SWIM_SUSPECT;
}

static uint64_t scaled(const sh_swim_t *s, uint64_t t)
{
    return s->conf.lifeguard ? t * (uint64_t)(s->awareness + 1) : t;
}

static void awareness_delta(sh_swim_t *s, int d)
{
    int max = (int)s->conf.awareness_max - 1;
    s->awareness += d;
    if (s->awareness < 0)
        s->awareness = 0;
    if (s->awareness > max)
        s->awareness = max < 0 ? 0 : max;
}

static unsigned retransmit_limit(const sh_swim_t *s)
{
    double l = ceil(log10((double)s->n_live + 1.0));
    unsigned lim = s->conf.retransmit_mult * (unsigned)(l < 1 ? 1 : l);
    return lim ? lim : 1;
}

static member *get(const sh_swim_t *s, const char *name)
{
    return sh_strmap_get(&s->by_name, name);
}

static void set_status(sh_swim_t *s, member *m, int status)
{
    int old = m->pub.status;
    if (old == status)
        return;
    if (is_live(m))
        s->n_live--;
    if (old == SH_SWIM_SUSPECT)
        s->n_susp--;
    if (old == SH_SWIM_DEAD)
        s->n_dead--;
    if (status == SH_SWIM_DEAD)
        s->n_dead++;
    m->pub.status = status;
    if (is_live(m))
        s->n_live++;
    if (status == SH_SWIM_SUSPECT)
        s->n_susp++;
    if (status != SH_SWIM_SUSPECT && m->susp) {
        sh_free(m->susp);
        m->susp = NULL;
    }
    m->pub.changed_ms = s->now;
    if (s->t.notify)
        s->t.notify(s->ud, &m->pub, old);
}

static void set_meta(sh_swim_t *s, member *m, const uint8_t *meta, size_t len)
{
    if (m->pub.meta_len == len && (len == 0 || memcmp(m->pub.meta, meta, len) == 0))
        return;
    sh_free((void *)m->pub.meta);
    m->pub.meta = len ? sh_memdup(meta, len) : NULL;
    m->pub.meta_len = len;
    m->dist = m != s->self && s->t.distance != NULL ? s->t.distance(s->ud, meta, len) : 0;
    s->any_far |= m->dist > 0;
}

static void set_addr(member *m, const char *addr)
{
    if (m->pub.addr && strcmp(m->pub.addr, addr) == 0)
        return;
    sh_free((void *)m->pub.addr);
    m->pub.addr = sh_strdup(addr);
}

/* A new member, alive, at a random place in the probe order. */
static member *add_member(sh_swim_t *s, const char *name, const char *addr, uint64_t inc,
                          const uint8_t *meta, size_t meta_len)
{
    /* the name lives right after the member: a lookup's strcmp then
     * touches the cache line the caller reads next anyway */
    size_t nlen = strlen(name) + 1;
    member *m = sh_calloc(1, sizeof(member) + nlen);
    memcpy(m + 1, name, nlen);
    m->pub.name = (const char *)(m + 1);
    set_addr(m, addr);
    set_meta(s, m, meta, meta_len);
    m->pub.incarnation = inc;
    m->pub.status = -1;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->mem = sh_realloc(s->mem, s->cap * sizeof(*s->mem));
    }
    s->mem[s->n++] = m;
    size_t j = rnd_below(s, s->n);
    member *tmp = s->mem[j];
    s->mem[j] = m;
    s->mem[s->n - 1] = tmp;
    sh_strmap_put(&s->by_name, m->pub.name, m);
    /* status -1 -> alive: counts and notify with old_status -1 */
    s->n_live++;
    m->pub.status = SH_SWIM_ALIVE;
    m->pub.changed_ms = s->now;
    if (s->t.notify)
        s->t.notify(s->ud, &m->pub, -1);
    return m;
}

static void free_member(member *m)
{
    sh_free((void *)m->pub.addr);
    sh_free((void *)m->pub.meta);
    sh_free(m->susp);
    sh_free(m);
}

/* ------------------------------------------------------------ output -- */

static void queue_update(sh_swim_t *s, const char *key, const Sh__Gossip__Update *u)
{
    uint8_t stack[512];
    size_t len = sh__gossip__update__get_packed_size(u);
    uint8_t *b = len <= sizeof(stack) ? stack : sh_malloc(len);
    sh__gossip__update__pack(u, b);
    sh_bcast_queue(s->bq, key, b, len);
    if (b != stack)
        sh_free(b);
}

static void member_key(char *k, const char *name)
{
    snprintf(k, KEYLEN, "m:%s", name);
}

static void queue_alive(sh_swim_t *s, const member *m)
{
    Sh__Gossip__Alive a = SH__GOSSIP__ALIVE__INIT;
    a.node = (char *)m->pub.name;
    a.incarnation = m->pub.incarnation;
    a.addr = (char *)m->pub.addr;
    a.meta.data = (uint8_t *)m->pub.meta;
    a.meta.len = m->pub.meta_len;
    Sh__Gossip__Update u = SH__GOSSIP__UPDATE__INIT;
    u.kind_case = SH__GOSSIP__UPDATE__KIND_ALIVE;
    u.alive = &a;
    char k[KEYLEN];
    member_key(k, m->pub.name);
    queue_update(s, k, &u);
}

static size_t encode_suspect(const char *node, uint64_t inc, const char *from, uint8_t *out)
{
    Sh__Gossip__Suspect m = SH__GOSSIP__SUSPECT__INIT;
    m.node = (char *)node;
    m.incarnation = inc;
    m.from = (char *)from;
    Sh__Gossip__Update u = SH__GOSSIP__UPDATE__INIT;
    u.kind_case = SH__GOSSIP__UPDATE__KIND_SUSPECT;
    u.suspect = &m;
    return sh__gossip__update__pack(&u, out);
}

static void queue_suspect(sh_swim_t *s, const char *node, uint64_t inc, const char *from)
{
    uint8_t b[2 * SH_WIRE_MAX_NAME + 32];
    size_t len = encode_suspect(node, inc, from, b);
    char k[KEYLEN];
    member_key(k, node);
    sh_bcast_queue(s->bq, k, b, len);
}

static void queue_dead(sh_swim_t *s, const char *node, uint64_t inc, const char *from)
{
    Sh__Gossip__Dead d = SH__GOSSIP__DEAD__INIT;
    d.node = (char *)node;
    d.incarnation = inc;
    d.from = (char *)from;
    Sh__Gossip__Update u = SH__GOSSIP__UPDATE__INIT;
    u.kind_case = SH__GOSSIP__UPDATE__KIND_DEAD;
    u.dead = &d;
    char k[KEYLEN];
    member_key(k, node);
    queue_update(s, k, &u);
}

/*
 * Encode p (from = us) plus an optional pre-encoded update (the buddy
 * system's suspicion) plus as many queued updates as fit, and send.
 */
static void send_packet(sh_swim_t *s, const char *addr, Sh__Gossip__Packet *p, const uint8_t *extra,
                        size_t extra_len)
{
    p->from = (char *)s->self->pub.name;
    uint8_t *b = s->buf;
    sh_wire_put_header(b, SH_WIRE_KIND_PACKET);
    size_t n = SH_WIRE_HDRLEN + sh__gossip__packet__pack(p, b + SH_WIRE_HDRLEN);
    if (extra && n + sh_wire_update_cost(extra_len) <= s->buf_cap)
        n += sh_wire_append_update(b + n, extra, extra_len);
    if (n < s->buf_cap)
        n += sh_bcast_pack(s->bq, b + n, s->buf_cap - n, retransmit_limit(s));
    s->st.packets_sent++;
    s->st.bytes_sent += n;
    s->t.send(s->ud, addr, b, n);
}

static void send_ack(sh_swim_t *s, const char *addr, uint32_t seq)
{
    Sh__Gossip__Packet p = SH__GOSSIP__PACKET__INIT;
    Sh__Gossip__Ack a = SH__GOSSIP__ACK__INIT;
    a.seq = seq;
    p.ack = &a;
    send_packet(s, addr, &p, NULL, 0);
}

static void send_ping(sh_swim_t *s, const char *addr, uint32_t seq, const char *target,
                      const uint8_t *extra, size_t extra_len)
{
    Sh__Gossip__Packet p = SH__GOSSIP__PACKET__INIT;
    Sh__Gossip__Ping g = SH__GOSSIP__PING__INIT;
    g.seq = seq;
    g.target = (char *)target;
    p.ping = &g;
    send_packet(s, addr, &p, extra, extra_len);
}

/* -------------------------------------------------------- membership -- */

/* We were suspected or declared dead: outbid the rumour (SWIM 4.2). */
static void refute(sh_swim_t *s, uint64_t inc)
{
    uint64_t mine = s->self->pub.incarnation;
    s->self->pub.incarnation = (inc > mine ? inc : mine) + 1;
    s->st.refutes++;
    /* Lifeguard: being suspected is a sign we are the slow one. */
    awareness_delta(s, 1);
    queue_alive(s, s->self);
}

static void alive_node(sh_swim_t *s, const char *name, uint64_t inc, const char *addr,
                       const uint8_t *meta, size_t meta_len)
{
    member *m = get(s, name);
    if (m == s->self) {
        if (s->leaving || inc < m->pub.incarnation)
            return;
        if (inc == m->pub.incarnation && strcmp(addr, m->pub.addr) == 0 &&
            meta_len == m->pub.meta_len &&
            (meta_len == 0 || memcmp(meta, m->pub.meta, meta_len) == 0))
            return;     /* our own news coming back */
        refute(s, inc); /* someone else speaks for us, or an old self */
        return;
    }
    if (m == NULL) {
        m = add_member(s, name, addr, inc, meta, meta_len);
        queue_alive(s, m);
        return;
    }
    if (inc <= m->pub.incarnation)
        return;
    m->pub.incarnation = inc;
    set_addr(m, addr);
    set_meta(s, m, meta, meta_len);
    set_status(s, m, SH_SWIM_ALIVE);
    queue_alive(s, m);
}

/*
 * An alive entry of a slim push-pull: meta is unknown there, not empty. It
 * never adds a member nor raises an incarnation (both need the meta);
 * returns 1 instead, and the caller asks the sender for a full exchange.
 */
static int alive_node_nometa(sh_swim_t *s, const char *name, uint64_t inc, const char *addr)
{
    member *m = get(s, name);
    if (m == s->self) {
        if (s->leaving || inc < m->pub.incarnation ||
            (inc == m->pub.incarnation && strcmp(addr, m->pub.addr) == 0))
            return 0;   /* our own news coming back */
        refute(s, inc); /* someone else speaks for us, or an old self */
        return 0;
    }
    return m == NULL || inc > m->pub.incarnation;
}

static uint64_t susp_timeout(const suspicion *x)
{
    if (x->k < 1 || x->n == 0)
        return x->max;
    double frac = log((double)x->n + 1.0) / log((double)x->k + 1.0);
    double raw = (double)x->max - frac * (double)(x->max - x->min);
    uint64_t t = raw < (double)x->min ? x->min : (uint64_t)raw;
    return t;
}

static int confirm(sh_swim_t *s, suspicion *x, const char *from)
{
    if (x->n >= x->k)
        return 0;
    uint64_t h = sh_strmap_hash(from);
    for (unsigned i = 0; i <= x->n; i++)
        if (x->who[i] == h)
            return 0;
    x->who[++x->n] = h;
    x->deadline = x->start + susp_timeout(x);
    if (x->deadline < s->susp_next)
        s->susp_next = x->deadline;
    return 1;
}

static void suspect_node(sh_swim_t *s, const char *name, uint64_t inc, const char *from)
{
    member *m = get(s, name);
    if (m == NULL || inc < m->pub.incarnation)
        return;
    if (m == s->self) {
        if (!s->leaving)
            refute(s, inc);
        return;
    }
    if (m->pub.status == SH_SWIM_SUSPECT) {
        /* An independent confirmation shortens the timeout (Lifeguard) and
         * is passed on so others can count it too. */
        if (m->susp && !m->susp_full) {
            if (confirm(s, m->susp, from))
                queue_suspect(s, name, inc, from);
            m->susp_full = m->susp->n >= m->susp->k;
        }
        return;
    }
    if (m->pub.status != SH_SWIM_ALIVE)
        return;
    m->pub.incarnation = inc;
    suspicion *x = sh_new(suspicion);
    double n = (double)(s->n_live > 1 ? s->n_live : 1);
    double scale = fmax(1.0, log10(n));
    x->min = (uint64_t)((double)s->conf.suspicion_mult * scale * (double)s->conf.probe_interval_ms);
    x->max = s->conf.lifeguard ? x->min * s->conf.suspicion_max_mult : x->min;
    x->k = s->conf.suspicion_mult > 2 ? s->conf.suspicion_mult - 2 : 0;
    if (x->k > MAX_CONFIRM)
        x->k = MAX_CONFIRM;
    if (s->n_live < x->k + 2)
        x->k = 0;
    if (!s->conf.lifeguard)
        x->k = 0;
    x->start = s->now;
    x->who[0] = sh_strmap_hash(from);
    x->deadline = x->start + susp_timeout(x);
    set_status(s, m, SH_SWIM_SUSPECT);
    m->susp = x;
    m->susp_full = x->n >= x->k;
    if (x->deadline < s->susp_next)
        s->susp_next = x->deadline;
    if (strcmp(from, s->self->pub.name) == 0)
        s->st.suspects_raised++;
    queue_suspect(s, name, inc, from);
}

static void dead_node(sh_swim_t *s, const char *name, uint64_t inc, const char *from)
{
    member *m = get(s, name);
    if (m == NULL || inc < m->pub.incarnation)
        return;
    /* A dead member may still be declared left (its own leave arriving
     * late, or a force-leave, issue 6); nothing else moves a dead one. */
    int left = strcmp(from, name) == 0;
    if (m->pub.status == SH_SWIM_LEFT || (m->pub.status == SH_SWIM_DEAD && !left))
        return;
    if (m == s->self && !s->leaving) {
        refute(s, inc);
        return;
    }
    m->pub.incarnation = inc;
    set_status(s, m, left ? SH_SWIM_LEFT : SH_SWIM_DEAD);
    queue_dead(s, name, inc, from);
}

/* ------------------------------------------------------------ create -- */

sh_swim_t *sh_swim_create(const sh_swim_conf_t *conf, const sh_swim_transport_t *t, void *ud,
                          uint64_t now)
{
    sh_swim_t *s = sh_new(sh_swim_t);
    s->conf = *conf;
    s->conf.name = sh_strdup(conf->name);
    s->conf.addr = sh_strdup(conf->addr);
    s->conf.meta = NULL;
    if (s->conf.mtu < 512)
        s->conf.mtu = 512;
    s->t = *t;
    s->ud = ud;
    s->now = now;
    s->rng = conf->seed ? conf->seed : 0x9e3779b97f4a7c15ull;
    s->buf_cap = s->conf.mtu - SH_KEYRING_OVERHEAD;
    s->buf = sh_malloc(s->buf_cap + 64);
    s->bq = sh_bcast_create(BCAST_MAX);
    s->susp_next = UINT64_MAX;
    sh_strmap_init(&s->by_name);
    sh_wire_arena_init(&s->arena);
    s->self = add_member(s, conf->name, conf->addr, 1, conf->meta, conf->meta_len);
    queue_alive(s, s->self);
    /* Spread the first probe and push-pull of nodes started together. */
    s->next_probe_at = now + rnd_below(s, s->conf.probe_interval_ms + 1);
    s->next_gossip_at = now + rnd_below(s, s->conf.gossip_interval_ms + 1);
    s->next_reconnect_at = now + s->conf.reconnect_interval_ms;
    s->next_pushpull_at =
        now + s->conf.pushpull_interval_ms + rnd_below(s, s->conf.pushpull_interval_ms + 1);
    return s;
}

void sh_swim_destroy(sh_swim_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        free_member(s->mem[i]);
    sh_free(s->mem);
    sh_strmap_dispose(&s->by_name);
    sh_bcast_destroy(s->bq);
    sh_wire_arena_dispose(&s->arena);
    sh_free(s->buf);
    sh_free((void *)s->conf.name);
    sh_free((void *)s->conf.addr);
    sh_free(s);
}

void sh_swim_join(sh_swim_t *s, const char *addr)
{
    s->t.pushpull(s->ud, addr, 1);
}

/* ------------------------------------------------------------ probes -- */

/* Shuffle the probe order and forget members dead/left long enough. */
static void reshuffle(sh_swim_t *s)
{
    size_t w = 0;
    for (size_t i = 0; i < s->n; i++) {
        member *m = s->mem[i];
        uint64_t keep = m->pub.status == SH_SWIM_DEAD ? s->conf.reconnect_timeout_ms
                                                      : s->conf.gossip_to_dead_ms;
        if (m != s->self && !is_live(m) && s->now - m->pub.changed_ms > keep) {
            sh_strmap_del(&s->by_name, m->pub.name);
            free_member(m);
            continue;
        }
        s->mem[w++] = m;
    }
    s->n = w;
    for (size_t i = s->n; i > 1; i--) {
        size_t j = rnd_below(s, i);
        member *tmp = s->mem[i - 1];
        s->mem[i - 1] = s->mem[j];
        s->mem[j] = tmp;
    }
    /* near members first, each class still in random order (a stable
     * partition; nothing moves when every member is near) */
    size_t far = 0;
    for (size_t i = 0; i < s->n; i++)
        far += s->mem[i]->dist > 0;
    if (far == 0 || far == s->n)
        return;
    member **tmp = sh_malloc(s->n * sizeof(*tmp));
    size_t w2 = 0;
    for (int d = 0; d <= 2; d++)
        for (size_t i = 0; i < s->n; i++)
            if (s->mem[i]->dist == d || (d == 2 && s->mem[i]->dist > 2))
                tmp[w2++] = s->mem[i];
    memcpy(s->mem, tmp, s->n * sizeof(*tmp));
    sh_free(tmp);
}

static void start_probe(sh_swim_t *s)
{
    member *m = NULL;
    for (size_t tries = 0; tries <= s->n; tries++) {
        if (s->probe_idx >= s->n) {
            reshuffle(s);
            s->probe_idx = 0;
        }
        member *c = s->mem[s->probe_idx++];
        if (c != s->self && is_live(c)) {
            m = c;
            break;
        }
    }
    if (m == NULL) {
        s->next_probe_at = s->now + s->conf.probe_interval_ms;
        return;
    }
    s->probe.active = 1;
    s->probe.indirect_done = 0;
    s->probe.seq = ++s->seq;
    snprintf(s->probe.target, sizeof(s->probe.target), "%s", m->pub.name);
    s->probe.inc = m->pub.incarnation;
    s->probe.direct_at = s->now + scaled(s, s->conf.probe_timeout_ms);
    s->probe.end_at = s->now + scaled(s, s->conf.probe_interval_ms);
    s->probe.nacks = s->probe.expected_nacks = 0;
    s->next_probe_at = s->probe.end_at;
    s->st.probes++;
    uint8_t buddy[2 * SH_WIRE_MAX_NAME + 32];
    size_t blen = 0;
    if (s->conf.lifeguard && m->pub.status == SH_SWIM_SUSPECT)
        blen = encode_suspect(m->pub.name, m->pub.incarnation, s->self->pub.name, buddy);
    send_ping(s, m->pub.addr, s->probe.seq, m->pub.name, blen ? buddy : NULL, blen);
}

static void send_indirect(sh_swim_t *s)
{
    s->probe.indirect_done = 1;
    member *t = get(s, s->probe.target);
    if (t == NULL)
        return;
    member *picked[16];
    unsigned k = s->conf.indirect_checks > 16 ? 16 : s->conf.indirect_checks, got = 0;
    for (unsigned tries = 0; got < k && tries < 4 * k + 8 && s->n > 2; tries++) {
        member *c = s->mem[rnd_below(s, s->n)];
        if (c == s->self || c == t || c->pub.status != SH_SWIM_ALIVE)
            continue;
        int dup = 0;
        for (unsigned i = 0; i < got; i++)
            dup |= picked[i] == c;
        if (!dup)
            picked[got++] = c;
    }
    Sh__Gossip__IndirectPing ip = SH__GOSSIP__INDIRECT_PING__INIT;
    ip.seq = s->probe.seq;
    ip.target = (char *)t->pub.name;
    ip.target_addr = (char *)t->pub.addr;
    ip.nack = s->conf.lifeguard ? 1 : 0;
    for (unsigned i = 0; i < got; i++) {
        Sh__Gossip__Packet p = SH__GOSSIP__PACKET__INIT;
        p.indirect = &ip;
        send_packet(s, picked[i]->pub.addr, &p, NULL, 0);
        s->st.indirect_sent++;
    }
    s->probe.expected_nacks = s->conf.lifeguard ? got : 0;
}

static void probe_failed(sh_swim_t *s)
{
    s->probe.active = 0;
    s->st.probe_failures++;
    /* Lifeguard LHM: helpers that did not even nack suggest the problem is
     * ours; with no helpers, any failure counts against us. */
    if (s->probe.expected_nacks > 0) {
        if (s->probe.nacks < s->probe.expected_nacks)
            awareness_delta(s, (int)(s->probe.expected_nacks - s->probe.nacks));
    } else {
        awareness_delta(s, 1);
    }
    suspect_node(s, s->probe.target, s->probe.inc, s->self->pub.name);
}

static void gossip(sh_swim_t *s)
{
    if (sh_bcast_len(s->bq) == 0 || s->n < 2)
        return;
    member *picked[16];
    unsigned k = s->conf.gossip_nodes > 16 ? 16 : s->conf.gossip_nodes, got = 0;
    /* regions (transport distance): when there are near and far members,
     * at most one target a round is far; near ones learn first */
    size_t near = 0, farn = 0;
    if (s->any_far) /* else every member is near: nothing to count */
        for (size_t i = 0; i < s->n; i++)
            if (s->mem[i] != s->self && is_live(s->mem[i]))
                *(s->mem[i]->dist > 0 ? &farn : &near) += 1;
    unsigned far_quota = near > 0 && farn > 0 ? 1 : k, far_got = 0;
    for (int pass = 0; pass < 2 && got < k; pass++) {
        for (unsigned tries = 0; got < k && tries < 4 * k + 8; tries++) {
            member *c = s->mem[rnd_below(s, s->n)];
            if (c == s->self)
                continue;
            if (!is_live(c) && s->now - c->pub.changed_ms > s->conf.gossip_to_dead_ms)
                continue;
            if (pass == 0 && c->dist > 0 && far_got >= far_quota)
                continue;
            int dup = 0;
            for (unsigned i = 0; i < got; i++)
                dup |= picked[i] == c;
            if (!dup) {
                picked[got++] = c;
                far_got += c->dist > 0;
            }
        }
        if (far_quota == k || near >= k - far_quota)
            break; /* the second pass only fills up when near ones are too few */
    }
    for (unsigned i = 0; i < got && sh_bcast_len(s->bq) > 0; i++) {
        Sh__Gossip__Packet p = SH__GOSSIP__PACKET__INIT;
        send_packet(s, picked[i]->pub.addr, &p, NULL, 0);
    }
}

static uint64_t pushpull_interval(const sh_swim_t *s)
{
    /* memberlist's pushPullScale: above 32 members, grow with log2(N). */
    uint64_t iv = s->conf.pushpull_interval_ms;
    if (s->n_live <= 32)
        return iv;
    double mult = ceil(log2((double)s->n_live) - log2(32.0)) + 1.0;
    return (uint64_t)(mult * (double)iv);
}

/*
 * Heal partitions (as Serf's reconnect): with probability dead/live, push-
 * pull with a random dead member. If it is alive after all, it refutes our
 * view in the exchange and the news spreads from both sides.
 */
static void reconnect(sh_swim_t *s)
{
    if (s->n_dead == 0 || s->n < 2)
        return;
    double p = (double)s->n_dead / (double)(s->n_live ? s->n_live : 1);
    if ((double)(rnd(s) >> 11) / 9007199254740992.0 > p)
        return;
    for (unsigned tries = 0; tries < 32; tries++) {
        member *c = s->mem[rnd_below(s, s->n)];
        if (c != s->self && c->pub.status == SH_SWIM_DEAD) {
            s->st.reconnects++;
            s->t.pushpull(s->ud, c->pub.addr, 0);
            return;
        }
    }
}

void sh_swim_tick(sh_swim_t *s, uint64_t now)
{
    s->now = now;
    if (s->n_susp > 0 && now >= s->susp_next) {
        s->susp_next = UINT64_MAX;
        for (size_t i = 0; i < s->n; i++) {
            member *m = s->mem[i];
            if (m->pub.status != SH_SWIM_SUSPECT || m->susp == NULL)
                continue;
            if (now >= m->susp->deadline) {
                s->st.deaths_declared++;
                dead_node(s, m->pub.name, m->pub.incarnation, s->self->pub.name);
            } else if (m->susp->deadline < s->susp_next) {
                s->susp_next = m->susp->deadline;
            }
        }
    }
    for (unsigned i = 0; i < RELAYS && s->n_relays > 0; i++) {
        relay *r = &s->relays[i];
        if (!r->used || now < r->deadline)
            continue;
        r->used = 0;
        s->n_relays--;
        if (r->nack) {
            Sh__Gossip__Packet p = SH__GOSSIP__PACKET__INIT;
            Sh__Gossip__Nack nk = SH__GOSSIP__NACK__INIT;
            nk.seq = r->orig_seq;
            p.nack = &nk;
            send_packet(s, r->addr, &p, NULL, 0);
        }
    }
    if (s->probe.active && !s->probe.indirect_done && now >= s->probe.direct_at)
        send_indirect(s);
    if (s->probe.active && now >= s->probe.end_at)
        probe_failed(s);
    if (!s->probe.active && now >= s->next_probe_at)
        start_probe(s);
    if (now >= s->next_gossip_at) {
        s->next_gossip_at = now + s->conf.gossip_interval_ms;
        gossip(s);
    }
    if (s->conf.reconnect_interval_ms && now >= s->next_reconnect_at) {
        s->next_reconnect_at = now + s->conf.reconnect_interval_ms;
        reconnect(s);
    }
    if (s->conf.pushpull_interval_ms && now >= s->next_pushpull_at) {
        s->next_pushpull_at = now + pushpull_interval(s);
        for (unsigned tries = 0; tries < 8 && s->n > 1; tries++) {
            member *c = s->mem[rnd_below(s, s->n)];
            if (c != s->self && c->pub.status == SH_SWIM_ALIVE) {
                s->st.pushpulls++;
                s->t.pushpull(s->ud, c->pub.addr,
                              c->wire_ver >= 2 ? SH_SWIM_PP_SLIM : SH_SWIM_PP_FULL);
                break;
            }
        }
    }
}

uint64_t sh_swim_next_deadline(const sh_swim_t *s)
{
    uint64_t d = s->next_gossip_at;
    if (s->conf.reconnect_interval_ms && s->n_dead > 0 && s->next_reconnect_at < d)
        d = s->next_reconnect_at;
    if (!s->probe.active && s->next_probe_at < d)
        d = s->next_probe_at;
    if (s->probe.active) {
        uint64_t p = s->probe.indirect_done ? s->probe.end_at : s->probe.direct_at;
        if (p < d)
            d = p;
    }
    if (s->conf.pushpull_interval_ms && s->next_pushpull_at < d)
        d = s->next_pushpull_at;
    if (s->n_susp > 0 && s->susp_next < d)
        d = s->susp_next;
    for (unsigned i = 0; i < RELAYS && s->n_relays > 0; i++)
        if (s->relays[i].used && s->relays[i].deadline < d)
            d = s->relays[i].deadline;
    return d;
}

/* ----------------------------------------------------------- receive -- */

static void channel_update(sh_swim_t *s, const char *from, const Sh__Gossip__ChannelMsg *c)
{
    if (c->channel >= SH_CHANNEL_MAX || s->ch[c->channel].ops == NULL) {
        s->st.unknown_channel++;
        return;
    }
    const sh_channel_ops_t *ops = s->ch[c->channel].ops;
    if (ops->merge && ops->merge(s->ch[c->channel].ud, from, c->data.data, c->data.len) > 0) {
        /* New to us: pass it on. Identical updates collapse in the queue. */
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < c->data.len; i++)
            h = (h ^ c->data.data[i]) * 1099511628211ull;
        char key[64];
        snprintf(key, sizeof(key), "c%u#%016llx", c->channel, (unsigned long long)h);
        Sh__Gossip__Update u = SH__GOSSIP__UPDATE__INIT;
        u.kind_case = SH__GOSSIP__UPDATE__KIND_CHANNEL;
        u.channel = (Sh__Gossip__ChannelMsg *)c;
        queue_update(s, key, &u);
    }
}

static void apply_update(sh_swim_t *s, const char *from, const Sh__Gossip__Update *u)
{
    switch (u->kind_case) {
    case SH__GOSSIP__UPDATE__KIND_ALIVE:
        alive_node(s, u->alive->node, u->alive->incarnation, u->alive->addr, u->alive->meta.data,
                   u->alive->meta.len);
        break;
    case SH__GOSSIP__UPDATE__KIND_SUSPECT:
        suspect_node(s, u->suspect->node, u->suspect->incarnation, u->suspect->from);
        break;
    case SH__GOSSIP__UPDATE__KIND_DEAD:
        dead_node(s, u->dead->node, u->dead->incarnation, u->dead->from);
        break;
    case SH__GOSSIP__UPDATE__KIND_CHANNEL:
        channel_update(s, from, u->channel);
        break;
    default:
        break; /* a kind from a newer version */
    }
}

static void on_ack(sh_swim_t *s, uint32_t seq)
{
    if (s->probe.active && seq == s->probe.seq) {
        s->probe.active = 0;
        s->st.probe_acks++;
        awareness_delta(s, -1);
        return;
    }
    for (unsigned i = 0; i < RELAYS && s->n_relays > 0; i++) {
        relay *r = &s->relays[i];
        if (r->used && r->seq == seq) {
            r->used = 0;
            s->n_relays--;
            send_ack(s, r->addr, r->orig_seq);
            return;
        }
    }
    s->st.stale_acks++;
}

static void on_indirect(sh_swim_t *s, const char *from_addr, const Sh__Gossip__IndirectPing *ip)
{
    relay *r = NULL;
    for (unsigned i = 0; i < RELAYS && r == NULL; i++)
        if (!s->relays[i].used)
            r = &s->relays[i];
    if (r == NULL) {
        s->st.relay_table_full++;
        return;
    }
    r->used = 1;
    s->n_relays++;
    r->nack = ip->nack;
    r->seq = ++s->seq;
    r->orig_seq = ip->seq;
    r->deadline = s->now + s->conf.probe_timeout_ms;
    snprintf(r->addr, sizeof(r->addr), "%s", from_addr);
    s->st.indirect_relayed++;
    send_ping(s, ip->target_addr, r->seq, ip->target, NULL, 0);
}

int sh_swim_recv_bytes(sh_swim_t *s, const char *from_addr, const uint8_t *pt, size_t len,
                       uint64_t now)
{
    s->now = now;
    s->st.packets_recv++;
    s->st.bytes_recv += len;
    Sh__Gossip__Packet *p = NULL;
    ProtobufCAllocator *pa = sh_wire_arena_begin(&s->arena);
    int rc = sh_wire_decode_packet_pa(pt, len, &p, &s->wst, NULL, pa);
    if (rc < 0) {
        sh_wire_arena_end(&s->arena, pa);
        s->st.undecodable++;
        return rc;
    }
    if (strcmp(p->from, s->self->pub.name) != 0) {
        for (size_t i = 0; i < p->n_updates; i++)
            apply_update(s, p->from, p->updates[i]);
        member *peer = get(s, p->from);
        if (peer)
            peer->wire_ver = pt[0];
        if (p->ping) {
            if (strcmp(p->ping->target, s->self->pub.name) == 0)
                send_ack(s, from_addr, p->ping->seq);
            else
                s->st.wrong_target++;
        } else if (p->indirect) {
            on_indirect(s, from_addr, p->indirect);
        } else if (p->ack) {
            on_ack(s, p->ack->seq);
        } else if (p->nack) {
            if (s->probe.active && p->nack->seq == s->probe.seq) {
                s->probe.nacks++;
                s->st.nacks_recv++;
            }
        }
    }
    if (pa != &s->arena.pa)
        sh__gossip__packet__free_unpacked(p, pa);
    sh_wire_arena_end(&s->arena, pa);
    return 0;
}

/* "a.b.c.d:port" or "[v6]:port" as IP bytes then the port (big endian), or
 * 0 if the text is anything else. */
static size_t addr_pack(const char *a, uint8_t out[18])
{
    char host[64];
    const char *colon, *h = a;
    size_t hl;
    if (a[0] == '[') {
        colon = strstr(a, "]:");
        if (colon == NULL)
            return 0;
        h = a + 1;
        hl = (size_t)(colon - h);
        colon++;
    } else {
        colon = strrchr(a, ':');
        if (colon == NULL)
            return 0;
        hl = (size_t)(colon - a);
    }
    if (hl == 0 || hl >= sizeof(host))
        return 0;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end = NULL;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port == 0 || port > 65535)
        return 0;
    size_t n = a[0] == '[' ? 16 : 4;
    if (inet_pton(n == 4 ? AF_INET : AF_INET6, host, out) != 1)
        return 0;
    out[n] = (uint8_t)(port >> 8);
    out[n + 1] = (uint8_t)port;
    return n + 2;
}

/* The inverse of addr_pack; 0 or -1 if b is not 6 or 18 bytes. */
static int addr_unpack(const uint8_t *b, size_t len, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    if (len != 6 && len != 18)
        return -1;
    size_t n = len - 2;
    if (inet_ntop(n == 4 ? AF_INET : AF_INET6, b, host, sizeof(host)) == NULL)
        return -1;
    unsigned port = ((unsigned)b[n] << 8) | b[n + 1];
    int w = snprintf(out, cap, n == 4 ? "%s:%u" : "[%s]:%u", host, port);
    return w > 0 && (size_t)w < cap ? 0 : -1;
}

/* --------------------------------------------------------- push-pull -- */

size_t sh_swim_pushpull_encode(sh_swim_t *s, int join, uint8_t **out)
{
    Sh__Gossip__MemberState *ms = sh_calloc(s->n, sizeof(*ms));
    Sh__Gossip__MemberState **msp = sh_calloc(s->n, sizeof(*msp));
    uint8_t(*packed)[18] = join == SH_SWIM_PP_SLIM ? sh_calloc(s->n, sizeof(*packed)) : NULL;
    for (size_t i = 0; i < s->n; i++) {
        const member *m = s->mem[i];
        sh__gossip__member_state__init(&ms[i]);
        ms[i].name = (char *)m->pub.name;
        ms[i].addr = (char *)m->pub.addr;
        ms[i].incarnation = m->pub.incarnation;
        ms[i].status = (Sh__Gossip__Status)m->pub.status;
        if (join != SH_SWIM_PP_SLIM || m == s->self) {
            ms[i].meta.data = (uint8_t *)m->pub.meta;
            ms[i].meta.len = m->pub.meta_len;
        }
        if (packed) {
            char back[SH_WIRE_MAX_ADDR + 1];
            size_t pl = addr_pack(m->pub.addr, packed[i]);
            if (pl && addr_unpack(packed[i], pl, back, sizeof(back)) == 0 &&
                strcmp(back, m->pub.addr) == 0) {
                ms[i].addr = "";
                ms[i].addr_packed.data = packed[i];
                ms[i].addr_packed.len = pl;
            }
        }
        msp[i] = &ms[i];
    }
    Sh__Gossip__MemberList ml = SH__GOSSIP__MEMBER_LIST__INIT;
    ml.n_members = s->n;
    ml.members = msp;
    Sh__Gossip__ChannelState cs[SH_CHANNEL_MAX], *csp[SH_CHANNEL_MAX];
    uint8_t *owned[SH_CHANNEL_MAX] = {0};
    size_t nch = 0;
    size_t mlen = sh__gossip__member_list__get_packed_size(&ml);
    uint8_t *mbuf = sh_malloc(mlen);
    sh__gossip__member_list__pack(&ml, mbuf);
    sh__gossip__channel_state__init(&cs[nch]);
    cs[nch].channel = SH_CHANNEL_MEMBERSHIP;
    cs[nch].state.data = mbuf;
    cs[nch].state.len = mlen;
    csp[nch] = &cs[nch];
    nch++;
    for (uint32_t id = 1; id < SH_CHANNEL_MAX; id++) {
        const sh_channel_ops_t *ops = s->ch[id].ops;
        uint8_t *st = NULL;
        size_t stlen = 0;
        if (ops == NULL || ops->local_state == NULL ||
            ops->local_state(s->ch[id].ud, join == SH_SWIM_PP_JOIN, &st, &stlen) < 0)
            continue;
        owned[nch] = st;
        sh__gossip__channel_state__init(&cs[nch]);
        cs[nch].channel = id;
        cs[nch].state.data = st;
        cs[nch].state.len = stlen;
        csp[nch] = &cs[nch];
        nch++;
    }
    Sh__Gossip__PushPull pp = SH__GOSSIP__PUSH_PULL__INIT;
    pp.from = (char *)s->self->pub.name;
    pp.join = join == SH_SWIM_PP_JOIN;
    pp.slim = join == SH_SWIM_PP_SLIM;
    pp.n_channels = nch;
    pp.channels = csp;
    size_t len = SH_WIRE_HDRLEN + sh__gossip__push_pull__get_packed_size(&pp);
    uint8_t *b = sh_malloc(len);
    sh_wire_put_header(b, SH_WIRE_KIND_PUSHPULL);
    sh__gossip__push_pull__pack(&pp, b + SH_WIRE_HDRLEN);
    for (size_t i = 0; i < nch; i++)
        sh_free(owned[i]);
    sh_free(mbuf);
    sh_free(ms);
    sh_free(msp);
    sh_free(packed);
    *out = b;
    return len;
}

/* Returns 1 if a slim frame left something we need a full exchange for. */
static int merge_members(sh_swim_t *s, const char *from, const uint8_t *data, size_t len, int slim,
                         ProtobufCAllocator *pa)
{
    int need_full = 0;
    Sh__Gossip__MemberList *ml = sh__gossip__member_list__unpack(pa, len, data);
    if (ml == NULL) {
        s->st.undecodable++;
        return 0;
    }
    for (size_t i = 0; i < ml->n_members && i < SH_WIRE_MAX_MEMBERS; i++) {
        const Sh__Gossip__MemberState *m = ml->members[i];
        char packed[SH_WIRE_MAX_ADDR + 1];
        const char *addr = m->addr;
        if (slim && addr && addr[0] == '\0' &&
            addr_unpack(m->addr_packed.data, m->addr_packed.len, packed, sizeof(packed)) == 0)
            addr = packed;
        if (!sh_wire_valid_name(m->name, SH_WIRE_MAX_NAME) ||
            !sh_wire_valid_name(addr, SH_WIRE_MAX_ADDR) || m->meta.len > SH_WIRE_MAX_META)
            continue;
        switch (m->status) {
        case SH__GOSSIP__STATUS__STATUS_ALIVE:
            if (slim && strcmp(m->name, from) != 0)
                need_full |= alive_node_nometa(s, m->name, m->incarnation, addr);
            else
                alive_node(s, m->name, m->incarnation, addr, m->meta.data, m->meta.len);
            break;
        case SH__GOSSIP__STATUS__STATUS_LEFT:
            dead_node(s, m->name, m->incarnation, m->name);
            break;
        case SH__GOSSIP__STATUS__STATUS_SUSPECT:
        case SH__GOSSIP__STATUS__STATUS_DEAD:
            /* As memberlist: a remote "dead" is only a suspicion here, so
             * a live member gets its chance to refute. */
            suspect_node(s, m->name, m->incarnation, from);
            break;
        default:
            break;
        }
    }
    if (pa != &s->arena.pa)
        sh__gossip__member_list__free_unpacked(ml, pa);
    return need_full;
}

int sh_swim_pushpull_merge(sh_swim_t *s, const uint8_t *pt, size_t len, uint64_t now, int *reply)
{
    s->now = now;
    Sh__Gossip__PushPull *pp = NULL;
    ProtobufCAllocator *pa = sh_wire_arena_begin(&s->arena);
    int rc = sh_wire_decode_pushpull_pa(pt, len, &pp, &s->wst, NULL, pa);
    if (rc < 0) {
        sh_wire_arena_end(&s->arena, pa);
        s->st.undecodable++;
        return rc;
    }
    int slim = pp->slim && !pp->join, need_full = 0;
    if (reply)
        *reply = slim ? SH_SWIM_PP_SLIM : SH_SWIM_PP_FULL;
    for (size_t i = 0; i < pp->n_channels; i++) {
        const Sh__Gossip__ChannelState *c = pp->channels[i];
        if (c->channel == SH_CHANNEL_MEMBERSHIP) {
            need_full |= merge_members(s, pp->from, c->state.data, c->state.len, slim, pa);
        } else if (c->channel < SH_CHANNEL_MAX && s->ch[c->channel].ops &&
                   s->ch[c->channel].ops->merge_state) {
            s->ch[c->channel].ops->merge_state(s->ch[c->channel].ud, c->state.data, c->state.len,
                                               pp->join);
        } else {
            s->st.unknown_channel++;
        }
    }
    member *peer = strcmp(pp->from, s->self->pub.name) != 0 ? get(s, pp->from) : NULL;
    if (peer)
        peer->wire_ver = pt[0];
    /* A slim frame named members (or incarnations) we cannot take without
     * their meta: one full exchange with the sender fetches it all. */
    if (need_full && peer) {
        s->st.pushpulls++;
        s->t.pushpull(s->ud, peer->pub.addr, SH_SWIM_PP_FULL);
    }
    if (pa != &s->arena.pa)
        sh__gossip__push_pull__free_unpacked(pp, pa);
    sh_wire_arena_end(&s->arena, pa);
    return 0;
}

/* ----------------------------------------------------------- the rest -- */

void sh_swim_leave(sh_swim_t *s, uint64_t now)
{
    s->now = now;
    if (s->leaving)
        return;
    s->leaving = 1;
    dead_node(s, s->self->pub.name, s->self->pub.incarnation, s->self->pub.name);
    /* Besides the piggybacked copies, say goodbye to every live member
     * directly, once: a leave must not be mistaken for a failure because
     * gossip happened to pick others before we stopped (issue 5). */
    Sh__Gossip__Dead d = SH__GOSSIP__DEAD__INIT;
    d.node = (char *)s->self->pub.name;
    d.incarnation = s->self->pub.incarnation;
    d.from = (char *)s->self->pub.name;
    Sh__Gossip__Update u = SH__GOSSIP__UPDATE__INIT;
    u.kind_case = SH__GOSSIP__UPDATE__KIND_DEAD;
    u.dead = &d;
    uint8_t b[2 * SH_WIRE_MAX_NAME + 32];
    if (sh__gossip__update__get_packed_size(&u) > sizeof(b))
        return;
    size_t len = sh__gossip__update__pack(&u, b);
    for (size_t i = 0; i < s->n; i++) {
        member *m = s->mem[i];
        if (m == s->self || !is_live(m))
            continue;
        Sh__Gossip__Packet p = SH__GOSSIP__PACKET__INIT;
        send_packet(s, m->pub.addr, &p, b, len);
    }
}

int sh_swim_force_leave(sh_swim_t *s, const char *name, uint64_t now)
{
    member *m = get(s, name);
    if (m == NULL)
        return SH_ENOENT;
    if (m == s->self || m->pub.status == SH_SWIM_ALIVE)
        return SH_ESTATE;
    if (m->pub.status == SH_SWIM_LEFT)
        return 0;
    s->now = now;
    /* Gossiped as the member's own goodbye, so every node marks it left
     * (and stops trying to reconnect to it), as serf's force-leave. */
    dead_node(s, name, m->pub.incarnation, name);
    return 0;
}

void sh_swim_rejoin(sh_swim_t *s, uint64_t now)
{
    if (!s->leaving)
        return;
    s->now = now;
    s->leaving = 0;
    s->self->pub.incarnation++;
    set_status(s, s->self, SH_SWIM_ALIVE);
    queue_alive(s, s->self);
}

int sh_swim_leave_sent(const sh_swim_t *s)
{
    if (!s->leaving)
        return 0;
    if (s->n_live == 0)
        return 1;
    char k[KEYLEN];
    member_key(k, s->self->pub.name);
    /* Sent once is not enough: a member that misses that one packet
     * would see us fail instead of leave. Wait until the goodbye went to
     * several members (each passes it on), or was retransmitted to its
     * limit and dropped from the queue (-1); the caller bounds the wait. */
    int sent = sh_bcast_transmits(s->bq, k);
    unsigned want = s->n_live < 4 ? s->n_live : 4;
    return sent < 0 || (unsigned)sent >= want;
}

void sh_swim_set_meta(sh_swim_t *s, const uint8_t *meta, size_t len)
{
    set_meta(s, s->self, meta, len);
    s->self->pub.incarnation++;
    queue_alive(s, s->self);
}

int sh_swim_channel_register(sh_swim_t *s, uint32_t id, const sh_channel_ops_t *ops, void *ud)
{
    if (id == SH_CHANNEL_MEMBERSHIP || id >= SH_CHANNEL_MAX || ops == NULL)
        return SH_EINVAL;
    if (s->ch[id].ops)
        return SH_EEXIST;
    s->ch[id].ops = ops;
    s->ch[id].ud = ud;
    return 0;
}

int sh_swim_channel_broadcast(sh_swim_t *s, uint32_t id, const char *key, const uint8_t *data,
                              size_t len)
{
    if (id >= SH_CHANNEL_MAX || s->ch[id].ops == NULL)
        return SH_ENOENT;
    if (len > s->buf_cap / 2)
        return SH_ELIMIT;
    Sh__Gossip__ChannelMsg c = SH__GOSSIP__CHANNEL_MSG__INIT;
    c.channel = id;
    c.data.data = (uint8_t *)data;
    c.data.len = len;
    Sh__Gossip__Update u = SH__GOSSIP__UPDATE__INIT;
    u.kind_case = SH__GOSSIP__UPDATE__KIND_CHANNEL;
    u.channel = &c;
    char k[KEYLEN + 16];
    snprintf(k, sizeof(k), "c%u:%s", id, key);
    queue_update(s, k, &u);
    return 0;
}

size_t sh_swim_num_members(const sh_swim_t *s, int alive_only)
{
    return alive_only ? s->n_live : s->n;
}

void sh_swim_foreach(const sh_swim_t *s, void (*cb)(void *arg, const sh_swim_member_t *m),
                     void *arg)
{
    for (size_t i = 0; i < s->n; i++)
        cb(arg, &s->mem[i]->pub);
}

const sh_swim_member_t *sh_swim_member(const sh_swim_t *s, const char *name)
{
    member *m = get(s, name);
    return m ? &m->pub : NULL;
}

unsigned sh_swim_peer_version(const sh_swim_t *s, const char *addr)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->mem[i] != s->self && strcmp(s->mem[i]->pub.addr, addr) == 0)
            return s->mem[i]->wire_ver;
    return 0;
}

int sh_swim_health_score(const sh_swim_t *s)
{
    return s->awareness;
}

const sh_swim_stats_t *sh_swim_stats(const sh_swim_t *s)
{
    ((sh_swim_t *)s)->st.bcast_overflows = sh_bcast_overflows(s->bq);
    return &s->st;
}

size_t sh_swim_queue_len(const sh_swim_t *s)
{
    return sh_bcast_len(s->bq);
}

void sh_swim_forget_broadcasts(sh_swim_t *s)
{
    sh_bcast_destroy(s->bq);
    s->bq = sh_bcast_create(BCAST_MAX);
}
