/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The simulator: see sim.h. Packets in flight sit in a ring of 10 ms
 * buckets; every step delivers due packets, runs push-pulls requested
 * during the previous step (never re-entering a node), then ticks the nodes
 * whose deadline has come.
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/keyring.h"
#include "core/alloc.h"

#define RING 2048u /* steps: 20 s of maximum delay */

typedef struct pkt {
    struct pkt *next;
    unsigned from, to;
    size_t len;
    uint8_t data[];
} pkt;

typedef struct {
    unsigned from, to;
    int join;
} pp_req;

typedef struct {
    sim_t *sim;
    unsigned idx;
    sh_swim_t *swim;
    int down;
    unsigned lag; /* 0: normal */
    uint64_t next_run;
    pkt *inbox, **inbox_tail; /* for slow nodes */
    char name[32], addr[32];
    uint8_t region; /* sim_set_region: its one-byte meta; 0 = none */
} node;

struct sim {
    unsigned n;
    node *nodes;
    uint64_t now, rng;
    pkt *ring[RING];
    pp_req *pp;
    size_t npp, cap_pp;
    double loss;
    unsigned dmin, dmax;
    unsigned char *group;
    unsigned region_delay; /* extra ms between nodes of different regions */
    int regions_on;        /* distance() tells regions apart */
    sim_observe_fn obs;
    void *obs_arg;
    sim_net_stats_t net;
};

static uint64_t rnd(sim_t *s)
{
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 2685821657736338717ull;
}

static double rnd01(sim_t *s)
{
    return (double)(rnd(s) >> 11) / 9007199254740992.0;
}

unsigned sim_index(const char *name)
{
    const char *p = strchr(name, '-');
    return p ? (unsigned)atoi(p + 1) : (unsigned)atoi(name + 1);
}

static int cut(const sim_t *s, unsigned a, unsigned b)
{
    return s->group && s->group[a] != s->group[b];
}

static void t_send(void *ud, const char *addr, const uint8_t *buf, size_t len)
{
    node *nd = ud;
    sim_t *s = nd->sim;
    unsigned to = sim_index(addr);
    s->net.packets++;
    s->net.bytes += len + SH_KEYRING_OVERHEAD;
    if (to >= s->n || cut(s, nd->idx, to) || (s->loss > 0 && rnd01(s) < s->loss)) {
        s->net.lost++;
        return;
    }
    unsigned d = s->dmin + (s->dmax > s->dmin ? (unsigned)(rnd(s) % (s->dmax - s->dmin + 1)) : 0);
    if (s->nodes[nd->idx].region != s->nodes[to].region)
        d += s->region_delay;
    unsigned steps = (d + SIM_STEP_MS - 1) / SIM_STEP_MS;
    if (steps == 0)
        steps = 1;
    pkt *p = sh_malloc(sizeof(pkt) + len);
    p->from = nd->idx;
    p->to = to;
    p->len = len;
    memcpy(p->data, buf, len);
    unsigned slot = (unsigned)((s->now / SIM_STEP_MS + steps) % RING);
    p->next = s->ring[slot];
    s->ring[slot] = p;
}

static void t_pushpull(void *ud, const char *addr, int join)
{
    node *nd = ud;
    sim_t *s = nd->sim;
    if (s->npp == s->cap_pp) {
        s->cap_pp = s->cap_pp ? 2 * s->cap_pp : 64;
        s->pp = sh_realloc(s->pp, s->cap_pp * sizeof(*s->pp));
    }
    s->pp[s->npp++] = (pp_req){nd->idx, sim_index(addr), join};
}

static void t_notify(void *ud, const sh_swim_member_t *m, int old)
{
    node *nd = ud;
    if (nd->sim->obs)
        nd->sim->obs(nd->sim->obs_arg, nd->idx, m, old);
}

/* A node's meta is its region byte: another region is far (2). */
static int t_distance(void *ud, const uint8_t *meta, size_t len)
{
    node *nd = ud;
    if (!nd->sim->regions_on || len != 1 || nd->region == 0)
        return 0;
    return meta[0] != nd->region ? 2 : 0;
}

static const sh_swim_transport_t transport = {t_send, t_pushpull, t_notify, t_distance};

void sim_set_region(sim_t *s, unsigned i, uint8_t region)
{
    s->nodes[i].region = region;
    sh_swim_set_meta(s->nodes[i].swim, &region, 1);
}

void sim_regions(sim_t *s, int aware, unsigned delay_ms)
{
    s->regions_on = aware;
    s->region_delay = delay_ms;
}

sim_t *sim_create(unsigned n, const sh_swim_conf_t *conf, uint64_t seed)
{
    sim_t *s = sh_new(sim_t);
    s->n = n;
    s->rng = seed ? seed : 1;
    s->nodes = sh_calloc(n, sizeof(node));
    s->dmin = s->dmax = 1; /* one step */
    for (unsigned i = 0; i < n; i++) {
        node *nd = &s->nodes[i];
        nd->sim = s;
        nd->idx = i;
        nd->inbox_tail = &nd->inbox;
        snprintf(nd->name, sizeof(nd->name), "node-%u", i);
        snprintf(nd->addr, sizeof(nd->addr), "n%u", i);
        sh_swim_conf_t c = *conf;
        c.name = nd->name;
        c.addr = nd->addr;
        c.seed = seed * 1000003u + i + 1;
        nd->swim = sh_swim_create(&c, &transport, nd, 0);
    }
    return s;
}

void sim_destroy(sim_t *s)
{
    for (unsigned i = 0; i < RING; i++)
        while (s->ring[i]) {
            pkt *p = s->ring[i];
            s->ring[i] = p->next;
            sh_free(p);
        }
    for (unsigned i = 0; i < s->n; i++) {
        while (s->nodes[i].inbox) {
            pkt *p = s->nodes[i].inbox;
            s->nodes[i].inbox = p->next;
            sh_free(p);
        }
        sh_swim_destroy(s->nodes[i].swim);
    }
    sh_free(s->nodes);
    sh_free(s->pp);
    sh_free(s->group);
    sh_free(s);
}

static void exchange(sim_t *s, unsigned a, unsigned b, int join)
{
    if (b >= s->n || s->nodes[a].down || s->nodes[b].down || cut(s, a, b))
        return;
    uint8_t *buf = NULL;
    size_t len = sh_swim_pushpull_encode(s->nodes[a].swim, join, &buf);
    int reply = SH_SWIM_PP_FULL;
    sh_swim_pushpull_merge(s->nodes[b].swim, buf, len, s->now, &reply);
    s->net.pushpull_bytes += len + SH_KEYRING_OVERHEAD;
    sh_free(buf);
    len = sh_swim_pushpull_encode(s->nodes[b].swim, reply, &buf);
    sh_swim_pushpull_merge(s->nodes[a].swim, buf, len, s->now, NULL);
    s->net.pushpull_bytes += len + SH_KEYRING_OVERHEAD;
    sh_free(buf);
    s->net.pushpulls++;
    s->nodes[a].next_run = s->now;
    s->nodes[b].next_run = s->now;
}

void sim_converge(sim_t *s)
{
    for (unsigned i = 1; i < s->n; i++)
        exchange(s, i, 0, 1);
    uint8_t *buf = NULL;
    size_t len = sh_swim_pushpull_encode(s->nodes[0].swim, 0, &buf);
    for (unsigned i = 1; i < s->n; i++)
        sh_swim_pushpull_merge(s->nodes[i].swim, buf, len, s->now, NULL);
    sh_free(buf);
    for (unsigned i = 0; i < s->n; i++)
        sh_swim_forget_broadcasts(s->nodes[i].swim);
    s->npp = 0;
}

static void deliver(sim_t *s, node *nd, pkt *p)
{
    char from[32];
    snprintf(from, sizeof(from), "n%u", p->from);
    sh_swim_recv_bytes(nd->swim, from, p->data, p->len, s->now);
    sh_free(p);
}

static void run_node(sim_t *s, node *nd)
{
    /* As a libuv loop that wakes up late: expired timers run first, then
     * the I/O that queued up meanwhile. */
    sh_swim_tick(nd->swim, s->now);
    while (nd->inbox) {
        pkt *p = nd->inbox;
        nd->inbox = p->next;
        deliver(s, nd, p);
    }
    nd->inbox_tail = &nd->inbox;
    sh_swim_tick(nd->swim, s->now);
    uint64_t d = sh_swim_next_deadline(nd->swim);
    if (nd->lag) {
        /* A starved node gets the CPU only every lag ms. */
        uint64_t slot = (s->now / nd->lag + 1) * nd->lag;
        nd->next_run = d > slot ? d : slot;
    } else {
        nd->next_run = d;
    }
}

static void step(sim_t *s)
{
    s->now += SIM_STEP_MS;
    unsigned slot = (unsigned)((s->now / SIM_STEP_MS) % RING);
    pkt *p = s->ring[slot];
    s->ring[slot] = NULL;
    /* Deliver in send order (the bucket list is newest first). */
    pkt *rev = NULL;
    while (p) {
        pkt *nx = p->next;
        p->next = rev;
        rev = p;
        p = nx;
    }
    while (rev) {
        pkt *nx = rev->next;
        node *nd = &s->nodes[rev->to];
        rev->next = NULL;
        if (nd->down) {
            sh_free(rev);
        } else if (nd->lag) {
            *nd->inbox_tail = rev;
            nd->inbox_tail = &rev->next;
        } else {
            deliver(s, nd, rev);
            nd->next_run = s->now; /* re-read the deadline below */
        }
        rev = nx;
    }
    size_t npp = s->npp;
    for (size_t i = 0; i < npp; i++)
        exchange(s, s->pp[i].from, s->pp[i].to, s->pp[i].join);
    if (s->npp > npp) /* s->pp may be NULL when nothing was queued */
        memmove(s->pp, s->pp + npp, (s->npp - npp) * sizeof(*s->pp));
    s->npp -= npp;
    for (unsigned i = 0; i < s->n; i++) {
        node *nd = &s->nodes[i];
        if (nd->down)
            continue;
        if (nd->lag) {
            if (s->now >= nd->next_run)
                run_node(s, nd);
        } else if (s->now >= nd->next_run) {
            sh_swim_tick(nd->swim, s->now);
            nd->next_run = sh_swim_next_deadline(nd->swim);
        }
    }
}

void sim_run(sim_t *s, uint64_t ms)
{
    uint64_t end = s->now + ms;
    while (s->now < end)
        step(s);
}

uint64_t sim_now(const sim_t *s)
{
    return s->now;
}
sh_swim_t *sim_node(sim_t *s, unsigned i)
{
    return s->nodes[i].swim;
}
unsigned sim_size(const sim_t *s)
{
    return s->n;
}
void sim_set_loss(sim_t *s, double p)
{
    s->loss = p;
}

void sim_set_delay(sim_t *s, unsigned min_ms, unsigned max_ms)
{
    s->dmin = min_ms;
    s->dmax = max_ms < min_ms ? min_ms : max_ms;
    if (s->dmax >= (RING - 1) * SIM_STEP_MS)
        s->dmax = (RING - 2) * SIM_STEP_MS;
}

void sim_partition(sim_t *s, const unsigned char *group)
{
    if (s->group == NULL)
        s->group = sh_malloc(s->n);
    memcpy(s->group, group, s->n);
}

void sim_heal(sim_t *s)
{
    sh_free(s->group);
    s->group = NULL;
}

void sim_kill(sim_t *s, unsigned i)
{
    s->nodes[i].down = 1;
}

void sim_restart(sim_t *s, unsigned i, const sh_swim_conf_t *conf, unsigned join_to)
{
    node *nd = &s->nodes[i];
    sh_swim_destroy(nd->swim);
    sh_swim_conf_t c = *conf;
    c.name = nd->name;
    c.addr = nd->addr;
    c.seed = rnd(s);
    nd->swim = sh_swim_create(&c, &transport, nd, s->now);
    nd->down = 0;
    nd->next_run = s->now;
    sh_swim_join(nd->swim, s->nodes[join_to].addr);
}
void sim_slow(sim_t *s, unsigned i, unsigned lag_ms)
{
    s->nodes[i].lag = lag_ms;
}
int sim_is_down(const sim_t *s, unsigned i)
{
    return s->nodes[i].down;
}

void sim_observe(sim_t *s, sim_observe_fn fn, void *arg)
{
    s->obs = fn;
    s->obs_arg = arg;
}

const sim_net_stats_t *sim_net(const sim_t *s)
{
    return &s->net;
}
