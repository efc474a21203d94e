/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The global rate limit in a simulator (issue 13): N nodes on virtual time
 * (1 ms steps), each with its own real limit zone (limit_zone.h) and
 * nginx's leaky bucket (limit_req.h), admitting requests that arrive at
 * random (Poisson) on every node, and exchanging real encoded messages
 * (limit_global.h) over a virtual network (0-1 ms of delay, or as given).
 * Two designs, one table:
 *   owners  the shipped engine (sh_lg_*): reports to per-shard owners
 *           chosen by rendezvous hashing, answered with the key's bucket;
 *   fanout  every node sends its deltas to every other node each tick and
 *           merges what it receives (no replies) - the N^2 design.
 * For each: bytes per node per second on the limit channel (payload plus
 * the gossip framing and the AEAD envelope, 65 bytes a datagram; IP and
 * UDP headers left out), datagrams per node per second, and the error of
 * the admitted rate (steady state, after the first 2 s) against the rate
 * times the keys in use. A second run kills one node at 3 s (its clients
 * go to the others): the error over [4 s, 5 s), from 1 s after the death.
 *
 * ctest runs `sim_limit check` (5 and 50 nodes, and asserts the error
 * bounds); `sim_limit table [N...]` prints the table (bench/limits.sh and
 * the notes run it with 5 50 1000).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "node/modules/limit_global.h"
#include "node/modules/limit_req.h"
#include "node/modules/limit_zone.h"

#define WHEEL    512u
#define OVERHEAD 65u /* framing + seal per datagram */

typedef struct pkt {
    struct pkt *next;
    unsigned from, to;
    size_t len;
    uint8_t data[];
} pkt_t;

typedef struct {
    sh_limit_zone_t *z;
    sh_lg_t *g;      /* owners design */
    uint64_t tick0;  /* phase of its tick */
    double next_arr; /* next request (ms) */
    double rate;     /* requests/s offered here */
    int down;
    char name[16];
} node_t;

typedef struct {
    unsigned n;
    int fanout;
    node_t *nodes;
    pkt_t *wheel[WHEEL];
    uint64_t now;
    uint64_t rng;
    unsigned delay_max;
    uint64_t burst;
    uint64_t rate; /* thousandths per second, per key */
    unsigned keys;
    uint64_t bytes, msgs;
    uint64_t *admitted_ms; /* admitted per 100 ms window */
    size_t nwin;
    unsigned cur_from; /* sender of the io callbacks */
    uint8_t buf[2048];
} sim_t;

static double urand(sim_t *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return (double)(s->rng >> 11) / 9007199254740992.0;
}

static void deliver_later(sim_t *s, unsigned from, unsigned to, const uint8_t *d, size_t len)
{
    pkt_t *p = sh_malloc(sizeof(pkt_t) + len);
    p->from = from;
    p->to = to;
    p->len = len;
    memcpy(p->data, d, len);
    unsigned delay = 1 + (s->delay_max ? (unsigned)(urand(s) * s->delay_max) : 0);
    uint64_t at = (s->now + delay) % WHEEL;
    p->next = s->wheel[at];
    s->wheel[at] = p;
    s->bytes += len + OVERHEAD;
    s->msgs++;
}

static unsigned index_of(const char *name)
{
    return (unsigned)atoi(name + 1);
}

static int io_send(void *ud, const char *to, const uint8_t *data, size_t len)
{
    sim_t *s = ud;
    deliver_later(s, s->cur_from, index_of(to), data, len);
    return 0;
}

/* One request at node i for key k: limit_req's single-zone path. */
static void admit(sim_t *s, unsigned i, unsigned k)
{
    node_t *nd = &s->nodes[i];
    char key[16];
    int kl = snprintf(key, sizeof(key), "key%u", k);
    sh_limit_id_t id;
    sh_limit_zone_hash(nd->z, key, (size_t)kl, &id);
    sh_limit_stripe_t *st = sh_limit_zone_lock(nd->z, &id);
    sh_limit_zone_entry_t *e = sh_limit_zone_find(st, &id, 1);
    int64_t now = (int64_t)s->now, ex = 0;
    int ok;
    if (e == NULL) {
        e = sh_limit_zone_insert(st, &id);
        if (e == NULL) {
            sh_limit_zone_remove(st, sh_limit_zone_oldest(st), 1);
            e = sh_limit_zone_insert(st, &id);
        }
        e->v0 = 0;
        e->v1 = now;
        ok = 1;
    } else {
        sh_limit_req_state_t x = {e->v0, e->v1};
        ok = sh_limit_req_lookup(&x, now, sh_limit_zone_rate_now(nd->z), s->burst, 1, &ex) ==
             SH_LIMIT_REQ_OK;
        e->v0 = x.excess;
        e->v1 = x.last;
    }
    if (ok) {
        sh_limit_zone_mark(st, e, 1);
        s->admitted_ms[s->now / 100]++;
    }
    sh_limit_zone_unlock(st);
}

/* ---- the fan-out design */

typedef struct {
    sh_lg_msg_t m;
} fan_t;

static fan_t fan_msg;

static void fan_collect(void *ud, uint64_t h0, uint32_t n)
{
    sh_lg_msg_t *m = ud;
    if (m->n < SH_LG_MAX_ITEMS) {
        m->items[m->n].id = h0;
        m->items[m->n].v = n;
        m->n++;
    }
}

static void fan_tick(sim_t *s, unsigned i)
{
    node_t *nd = &s->nodes[i];
    sh_lg_msg_t *m = &fan_msg.m;
    m->type = SH_LG_REPORT;
    m->zone = sh_limit_zone_global_id(nd->z);
    m->n = 0;
    for (unsigned k = 0; k < sh_limit_zone_nstripes(nd->z); k++) {
        sh_limit_stripe_t *st = sh_limit_zone_stripe(nd->z, k);
        sh_limit_zone_drain(st, fan_collect, m);
        sh_limit_zone_unlock(st);
    }
    if (m->n == 0)
        return;
    /* in datagrams of at most 75 keys (1,400 bytes) */
    sh_lg_msg_t part;
    for (size_t off = 0; off < m->n; off += 75) {
        part.type = m->type;
        part.zone = m->zone;
        part.seq = 0;
        part.n = m->n - off < 75 ? m->n - off : 75;
        memcpy(part.items, m->items + off, part.n * sizeof(sh_lg_item_t));
        size_t len = sh_lg_encode(&part, s->buf, sizeof(s->buf));
        for (unsigned j = 0; j < s->n; j++)
            if (j != i)
                deliver_later(s, i, j, s->buf, len);
    }
}

static void fan_recv(sim_t *s, unsigned to, const uint8_t *d, size_t len)
{
    node_t *nd = &s->nodes[to];
    sh_lg_msg_t *m = &fan_msg.m;
    const char *why;
    if (sh_lg_decode(d, len, m, &why) != 0)
        abort();
    for (size_t i = 0; i < m->n; i++) {
        sh_limit_id_t id;
        sh_limit_zone_id_of(nd->z, m->items[i].id, &id);
        sh_limit_stripe_t *st = sh_limit_zone_lock(nd->z, &id);
        sh_limit_zone_entry_t *e = sh_limit_zone_find(st, &id, 1);
        if (e == NULL) {
            e = sh_limit_zone_insert(st, &id);
            if (e == NULL) {
                sh_limit_zone_remove(st, sh_limit_zone_oldest(st), 1);
                e = sh_limit_zone_insert(st, &id);
            }
            e->v0 = 0;
            e->v1 = SH_LIMIT_REQ_NEVER;
        }
        sh_limit_req_state_t x = {e->v0, e->v1};
        sh_limit_req_merge(&x, (int64_t)s->now, (int64_t)m->items[i].v * 1000,
                           sh_limit_zone_rate_now(nd->z));
        e->v0 = x.excess;
        e->v1 = x.last;
        sh_limit_zone_unlock(st);
    }
}

/* ---- the run */

typedef struct {
    double bytes_node_s, msgs_node_s, err_steady, err_kill, worst_second;
    double err_win[3]; /* seconds [2,8), [8,14), [14,20) of a 20 s run */
} result_t;

static void step(sim_t *s)
{
    /* deliveries due now */
    pkt_t *p = s->wheel[s->now % WHEEL];
    s->wheel[s->now % WHEEL] = NULL;
    while (p != NULL) {
        pkt_t *next = p->next;
        if (!s->nodes[p->to].down) {
            if (s->fanout) {
                fan_recv(s, p->to, p->data, p->len);
            } else {
                s->cur_from = p->to;
                char from[16];
                snprintf(from, sizeof(from), "n%u", p->from);
                sh_lg_recv(s->nodes[p->to].g, from, p->data, p->len, s->now);
            }
        }
        sh_free(p);
        p = next;
    }
    for (unsigned i = 0; i < s->n; i++) {
        node_t *nd = &s->nodes[i];
        if (nd->down)
            continue;
        while (nd->next_arr < (double)s->now + 1) {
            admit(s, i, s->keys > 1 ? (unsigned)(urand(s) * s->keys) : 0);
            nd->next_arr += -log(1.0 - urand(s)) * 1000.0 / nd->rate;
        }
        if ((s->now + nd->tick0) % SH_LG_TICK_MS == 0) {
            if (s->fanout) {
                fan_tick(s, i);
            } else {
                s->cur_from = i;
                sh_lg_tick(nd->g, s->now);
            }
        }
    }
    s->now++;
}

/* n nodes, keys keys of rate r/s each, offered `over` times the allowed
 * rate in all (uneven: node 0 takes 80%), kill: node 1 dies at 3 s. */
static result_t run(unsigned n, int fanout, unsigned keys, double r, double over, int uneven,
                    int kill, unsigned seconds)
{
    sim_t *s = sh_new(sim_t);
    s->n = n;
    s->fanout = fanout;
    s->rng = 0x9e3779b97f4a7c15ull ^ (n * 131ull + keys);
    s->delay_max = 1;
    /* a burst of 200 ms of the rate (2 at least): with burst=0 nginx's
     * bucket admits less than the rate from random arrivals even on one
     * node (an arrival just before the drain is refused and the wait it
     * leaves is lost), which would hide the cluster's own error */
    s->burst = (uint64_t)(r * 200 > 2000 ? r * 200 : 2000);
    s->rate = (uint64_t)(r * 1000);
    s->keys = keys;
    s->nwin = seconds * 10 + 1;
    s->admitted_ms = sh_calloc(s->nwin, sizeof(uint64_t));
    s->nodes = sh_calloc(n, sizeof(node_t));
    sh_lg_io_t io = {s, io_send, NULL, 1400 - OVERHEAD};
    double total = r * keys * over;
    size_t zsize = keys * 64 * 4 > SH_LIMIT_ZONE_MIN ? keys * 64 * 4 : SH_LIMIT_ZONE_MIN;
    for (unsigned i = 0; i < n; i++) {
        node_t *nd = &s->nodes[i];
        snprintf(nd->name, sizeof(nd->name), "n%u", i);
        nd->z = sh_limit_zone_create(zsize);
        sh_limit_zone_set_global(nd->z, s->rate);
        nd->tick0 = (uint64_t)(urand(s) * SH_LG_TICK_MS);
        nd->rate = uneven ? (i == 0 ? total * 0.8 : total * 0.2 / (n - 1)) : total / n;
        nd->next_arr = -log(1.0 - urand(s)) * 1000.0 / nd->rate;
        if (!fanout) {
            nd->g = sh_lg_create(nd->name, &io);
            sh_lg_zone_add(nd->g, nd->z);
        }
    }
    if (!fanout) /* a converged membership */
        for (unsigned i = 0; i < n; i++)
            for (unsigned j = 0; j < n; j++)
                sh_lg_member(s->nodes[i].g, s->nodes[j].name, 0, 0);
    uint64_t killed_at = 3000, bytes0 = 0, msgs0 = 0;
    for (s->now = 1; s->now < (uint64_t)seconds * 1000;) {
        if (s->now == 2000) {
            bytes0 = s->bytes;
            msgs0 = s->msgs;
        }
        if (kill && s->now == killed_at) {
            /* node 1 dies: its clients go to the others, who learn it (as
             * SWIM would tell them) a second later; until then its shards'
             * reporters pass it over when it stops answering */
            node_t *d = &s->nodes[1];
            d->down = 1;
            double extra = d->rate / (n - 1);
            for (unsigned i = 0; i < n; i++)
                if (i != 1)
                    s->nodes[i].rate += extra;
        }
        if (kill && !fanout && s->now == killed_at + 1000)
            for (unsigned i = 0; i < n; i++)
                if (i != 1)
                    sh_lg_member(s->nodes[i].g, "n1", 2, s->now);
        step(s);
    }
    result_t res;
    double secs = seconds - 2.0;
    unsigned alive = n - (kill ? 1 : 0);
    res.bytes_node_s = (double)(s->bytes - bytes0) / secs / alive;
    res.msgs_node_s = (double)(s->msgs - msgs0) / secs / alive;
    double allowed = r * keys;
    uint64_t adm = 0;
    unsigned from = kill ? 4 : 2, to = kill ? 5 : seconds;
    double worst = 0;
    for (unsigned sec = from; sec < to; sec++) {
        uint64_t a = 0;
        for (unsigned w = sec * 10; w < sec * 10 + 10; w++)
            a += s->admitted_ms[w];
        adm += a;
        double e = fabs((double)a - allowed) / allowed;
        if (e > worst)
            worst = e;
    }
    double err = ((double)adm / (to - from) - allowed) / allowed;
    res.err_steady = kill ? 0 : err;
    res.err_kill = kill ? err : 0;
    res.worst_second = worst;
    for (unsigned w = 0; w < 3; w++) {
        unsigned a0 = 2 + 6 * w, a1 = a0 + 6;
        uint64_t sum = 0;
        res.err_win[w] = 0;
        if (kill || a1 > seconds)
            continue;
        for (unsigned x = a0 * 10; x < a1 * 10; x++)
            sum += s->admitted_ms[x];
        res.err_win[w] = ((double)sum / (a1 - a0) - allowed) / allowed;
    }
    for (unsigned i = 0; i < WHEEL; i++)
        while (s->wheel[i]) {
            pkt_t *p = s->wheel[i];
            s->wheel[i] = p->next;
            sh_free(p);
        }
    if (getenv("SIM_DEBUG")) {
        uint64_t ev = 0, ov = 0;
        for (unsigned i = 0; i < n; i++) {
            ev += sh_limit_zone_evictions(s->nodes[i].z);
            ov += sh_limit_zone_dirty_overflows(s->nodes[i].z);
        }
        fprintf(stderr, "# n=%u keys=%u evictions=%llu dirty_overflows=%llu\n", n, keys,
                (unsigned long long)ev, (unsigned long long)ov);
    }
    for (unsigned i = 0; i < n; i++) {
        sh_lg_destroy(s->nodes[i].g);
        sh_limit_zone_destroy(s->nodes[i].z);
    }
    sh_free(s->nodes);
    sh_free(s->admitted_ms);
    sh_free(s);
    return res;
}

typedef struct {
    const char *name;
    unsigned keys;
    double rate;
    int uneven;
} scen_t;

static int table(const unsigned *sizes, size_t nsizes, int check)
{
    /* the allowed rate grows with the cluster (per-node traffic stays
     * comparable): hot = one key at 100 r/s per node; many = 200 keys at
     * 0.4 r/s per node each (sparse: a node sees a key less than once a
     * second, so its view is mostly older than a tick) */
    printf("%-6s %-8s %-14s %12s %10s %10s %10s %10s\n", "nodes", "design", "traffic", "B/node/s",
           "dgram/n/s", "err", "worst 1s", "err-kill");
    int bad = 0;
    for (size_t si = 0; si < nsizes; si++) {
        unsigned n = sizes[si];
        scen_t sc[] = {
            {"hot even", 1, 100.0 * n, 0},
            {"hot 80%", 1, 100.0 * n, 1},
            {"many(200)", 200, 0.4 * n, 0},
        };
        for (int fan = 0; fan <= 1; fan++) {
            for (size_t k = 0; k < sizeof(sc) / sizeof(sc[0]); k++) {
                if (fan && n > 200 && k > 0)
                    continue; /* fan-out at 1,000 nodes: the hot case says enough */
                unsigned secs = n >= 1000 ? 6 : 8;
                if (getenv("SIM_SECONDS"))
                    secs = (unsigned)atoi(getenv("SIM_SECONDS"));
                result_t a = run(n, fan, sc[k].keys, sc[k].rate, 2.0, sc[k].uneven, 0, secs);
                result_t b = run(n, fan, sc[k].keys, sc[k].rate, 2.0, sc[k].uneven, 1, 6);
                printf("%-6u %-8s %-14s %12.0f %10.1f %+9.1f%% %9.1f%% %+9.1f%%\n", n,
                       fan ? "fanout" : "owners", sc[k].name, a.bytes_node_s, a.msgs_node_s,
                       a.err_steady * 100, a.worst_second * 100, b.err_kill * 100);
                fflush(stdout);
                double bound = sc[k].keys > 1 ? 0.10 : 0.05;
                if (check && !fan && (fabs(a.err_steady) > bound || fabs(b.err_kill) > bound)) {
                    printf("# FAIL: owners, %u nodes, %s: error above %.0f%%\n", n, sc[k].name,
                           bound * 100);
                    bad = 1;
                }
            }
        }
    }
    return bad;
}

/* `sparse N...`: the many(200) case of the owners design for 20 s: its
 * error over [2,8), [8,14) and [14,20). The over-admission of sparse keys
 * in the table's 8 s runs is the start of the keys' lives: a node that
 * sees a key about once in N / (0.8 r) seconds judges it on a view that
 * drained since its last report, so every node admits its first requests
 * until the owner's bucket holds about that much of the rate above the
 * burst; afterwards the cluster admits the rate. */
static int sparse(const unsigned *sizes, size_t nsizes)
{
    printf("%-6s %-14s %12s %10s %10s %10s\n", "nodes", "traffic", "B/node/s", "err 2-8s",
           "err 8-14s", "err 14-20s");
    for (size_t si = 0; si < nsizes; si++) {
        unsigned n = sizes[si];
        result_t a = run(n, 0, 200, 0.4 * n, 2.0, 0, 0, 20);
        printf("%-6u %-14s %12.0f %+9.1f%% %+9.1f%% %+9.1f%%\n", n, "many(200)", a.bytes_node_s,
               a.err_win[0] * 100, a.err_win[1] * 100, a.err_win[2] * 100);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "sparse") == 0) {
        unsigned sizes[16];
        size_t n = 0;
        for (int i = 2; i < argc && n < 16; i++)
            sizes[n++] = (unsigned)atoi(argv[i]);
        if (n == 0) {
            sizes[n++] = 50;
            sizes[n++] = 1000;
        }
        return sparse(sizes, n);
    }
    if (argc >= 2 && strcmp(argv[1], "table") == 0) {
        unsigned sizes[16];
        size_t n = 0;
        for (int i = 2; i < argc && n < 16; i++)
            sizes[n++] = (unsigned)atoi(argv[i]);
        if (n == 0) {
            sizes[n++] = 5;
            sizes[n++] = 50;
            sizes[n++] = 1000;
        }
        return table(sizes, n, 0);
    }
    /* `check` (ctest): 5 and 50 nodes, errors within 5% */
    unsigned sizes[] = {5, 50};
    return table(sizes, 2, 1);
}
