/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The purge channel in a simulator (issue 13): N engines (cluster/purge.h,
 * the shipped code) on virtual time in microseconds, exchanging their real
 * encoded messages over a virtual network: 1 ms links (+0-100 us jitter),
 * optional loss. Each node is one CPU: a datagram sent costs SEND_US of it
 * (seal + sendto), one received RECV_US, a purge applied APPLY_US (one
 * LMDB write txn), so an origin's fan-out to 999 members takes its time.
 * Gossip (the backstop) is modelled as memberlist does it: every
 * GOSSIP_MS each node sends its queued broadcasts to GOSSIP_NODES random
 * members, each broadcast retransmitted RETRANSMIT_MULT * log10(N + 1)
 * times; a node that learns a purge by gossip gossips it on.
 *
 * For each scenario: PURGES purges from random origins, one at a time;
 * per purge the time from the call until every node has applied it, and
 * until the origin has every acknowledgement (when the admin call
 * returns). Scenarios: "direct" (the shipped design: datagrams to every
 * member + gossip), "direct, 1% loss" (retries every 200 ms), "gossip
 * only" (no direct datagrams, for comparison).
 *
 * `sim_purge table [N]` prints the table (default N = 1000); ctest runs
 * `sim_purge check` (1000 nodes; 200 under sanitizers): direct, with and
 * without loss, must reach every node in under 1 s.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "cluster/purge.h"
#include "core/alloc.h"

#ifndef SH_SIM_N
#define SH_SIM_N 1000u
#endif

#define SEND_US         5
#define RECV_US         10
#define APPLY_US        200
#define LINK_US         1000
#define JITTER_US       100
#define GOSSIP_MS       200
#define GOSSIP_NODES    3
#define RETRANSMIT_MULT 4
#define TICK_MS         50
#define PURGES          20

typedef struct {
    uint64_t at;
    unsigned from, to;
    int gossip;
    size_t len;
    uint8_t *data;
} ev_t;

typedef struct {
    uint8_t *data;
    size_t len;
    unsigned left;
} bq_t;

typedef struct {
    sh_pe_t *e;
    uint64_t busy;
    uint64_t gossip_phase;
    bq_t *bq;
    size_t nbq;
    uint64_t applied_at; /* of the purge under measurement, 0 = not yet */
    char name[16];
} node_t;

static struct {
    unsigned n;
    node_t *nodes;
    ev_t *heap;
    size_t nheap, capheap;
    uint64_t now;
    unsigned cur;
    uint64_t rng;
    double loss;
    int direct;
    uint64_t cur_seq;
    char cur_origin[16];
    uint64_t done_at;
    unsigned applied;
    uint64_t msgs, bytes;
} S;

static double urand(void)
{
    S.rng ^= S.rng << 13;
    S.rng ^= S.rng >> 7;
    S.rng ^= S.rng << 17;
    return (double)(S.rng >> 11) / 9007199254740992.0;
}

static void push(ev_t ev)
{
    if (S.nheap == S.capheap) {
        S.capheap = S.capheap ? S.capheap * 2 : 4096;
        S.heap = sh_realloc(S.heap, S.capheap * sizeof(ev_t));
    }
    size_t i = S.nheap++;
    while (i > 0 && S.heap[(i - 1) / 2].at > ev.at) {
        S.heap[i] = S.heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    S.heap[i] = ev;
}

static ev_t pop(void)
{
    ev_t top = S.heap[0], last = S.heap[--S.nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= S.nheap)
            break;
        if (c + 1 < S.nheap && S.heap[c + 1].at < S.heap[c].at)
            c++;
        if (S.heap[c].at >= last.at)
            break;
        S.heap[i] = S.heap[c];
        i = c;
    }
    if (S.nheap > 0)
        S.heap[i] = last;
    return top;
}

static uint64_t cpu(unsigned node, uint64_t cost)
{
    node_t *nd = &S.nodes[node];
    uint64_t start = nd->busy > S.now ? nd->busy : S.now;
    nd->busy = start + cost;
    return nd->busy;
}

static void wire(unsigned from, unsigned to, const uint8_t *d, size_t len, int gossip)
{
    uint64_t dep = cpu(from, SEND_US);
    S.msgs++;
    S.bytes += len + 65;
    if (urand() < S.loss)
        return;
    ev_t ev = {
        dep + LINK_US + (uint64_t)(urand() * JITTER_US), from, to, gossip, len, sh_malloc(len)};
    memcpy(ev.data, d, len);
    push(ev);
}

static int io_send(void *ud, const char *to, const uint8_t *d, size_t len)
{
    (void)ud;
    wire(S.cur, (unsigned)atoi(to + 1), d, len, 0);
    return 0;
}

static int io_broadcast(void *ud, const char *key, const uint8_t *d, size_t len)
{
    (void)ud;
    (void)key;
    node_t *nd = &S.nodes[S.cur];
    nd->bq = sh_realloc(nd->bq, (nd->nbq + 1) * sizeof(bq_t));
    bq_t *b = &nd->bq[nd->nbq++];
    b->data = sh_malloc(len);
    memcpy(b->data, d, len);
    b->len = len;
    b->left = (unsigned)(RETRANSMIT_MULT * ceil(log10((double)S.n + 1)));
    return 0;
}

static int io_apply(void *ud, const sh_purge_rec_t *r, uint64_t *count)
{
    (void)ud;
    *count = 0;
    uint64_t t = cpu(S.cur, APPLY_US);
    node_t *nd = &S.nodes[S.cur];
    if (r->seq == S.cur_seq && strcmp(r->origin, S.cur_origin) == 0 && nd->applied_at == 0) {
        nd->applied_at = t;
        S.applied++;
    }
    return 0;
}

static void io_flush(void *ud)
{
    (void)ud;
}

static void io_done(void *ud, void *waiter, uint64_t seq, int timed_out)
{
    (void)ud;
    (void)waiter;
    (void)seq;
    if (!timed_out && S.done_at == 0)
        S.done_at = S.now;
}

static void gossip_round(unsigned i)
{
    node_t *nd = &S.nodes[i];
    S.cur = i;
    for (unsigned k = 0; k < GOSSIP_NODES && nd->nbq > 0; k++) {
        unsigned to = (unsigned)(urand() * S.n);
        if (to == i)
            continue;
        for (size_t b = 0; b < nd->nbq; b++)
            wire(i, to, nd->bq[b].data, nd->bq[b].len, 1);
    }
    for (size_t b = 0; b < nd->nbq;) {
        if (--nd->bq[b].left == 0) {
            sh_free(nd->bq[b].data);
            nd->bq[b] = nd->bq[--nd->nbq];
        } else {
            b++;
        }
    }
}

static void setup(unsigned n, double loss, int direct, uint64_t seed)
{
    memset(&S, 0, sizeof(S));
    S.n = n;
    S.loss = loss;
    S.direct = direct;
    S.rng = seed;
    S.nodes = sh_calloc(n, sizeof(node_t));
    const char **names = sh_calloc(n, sizeof(char *));
    for (unsigned i = 0; i < n; i++)
        snprintf(S.nodes[i].name, sizeof(S.nodes[i].name), "n%u", i);
    for (unsigned i = 0; i < n; i++)
        names[i] = S.nodes[i].name;
    sh_pe_io_t io = {NULL, io_send, io_broadcast, io_apply, io_flush, io_done};
    for (unsigned i = 0; i < n; i++) {
        S.nodes[i].e = sh_pe_create(S.nodes[i].name, &io, 1000, 3600000);
        sh_pe_set_live(S.nodes[i].e, names, direct ? n : 0);
        S.nodes[i].gossip_phase = (uint64_t)(urand() * GOSSIP_MS * 1000);
    }
    sh_free(names);
}

static void teardown(void)
{
    for (unsigned i = 0; i < S.n; i++) {
        sh_pe_destroy(S.nodes[i].e);
        for (size_t b = 0; b < S.nodes[i].nbq; b++)
            sh_free(S.nodes[i].bq[b].data);
        sh_free(S.nodes[i].bq);
    }
    while (S.nheap > 0)
        sh_free(pop().data);
    sh_free(S.heap);
    sh_free(S.nodes);
}

/* Run until every node applied the current purge and the origin has its
 * acks (or limit_us); periodic work (gossip rounds, engine ticks) on a
 * 1 ms grid between events. */
static void run_until(uint64_t limit_us, int need_done)
{
    uint64_t next_grid = (S.now / 1000 + 1) * 1000;
    while (S.now < limit_us) {
        if (S.applied == S.n && (!need_done || S.done_at))
            return;
        if (S.nheap > 0 && S.heap[0].at < next_grid) {
            ev_t ev = pop();
            S.now = ev.at;
            node_t *nd = &S.nodes[ev.to];
            uint64_t start = nd->busy > S.now ? nd->busy : S.now;
            nd->busy = start + RECV_US;
            uint64_t keep = S.now;
            S.now = nd->busy;
            S.cur = ev.to;
            int rc =
                sh_pe_recv(nd->e, S.nodes[ev.from].name, ev.data, ev.len, (int64_t)(S.now / 1000));
            if (rc == 1 && ev.gossip) /* the service re-gossips a new broadcast */
                io_broadcast(NULL, "", ev.data, ev.len);
            S.now = keep;
            sh_free(ev.data);
            continue;
        }
        S.now = next_grid;
        next_grid += 1000;
        uint64_t ms = S.now / 1000;
        for (unsigned i = 0; i < S.n; i++) {
            node_t *nd = &S.nodes[i];
            if ((S.now + nd->gossip_phase) % (GOSSIP_MS * 1000) < 1000)
                gossip_round(i);
            if ((ms + i) % TICK_MS == 0) {
                S.cur = i;
                sh_pe_tick(nd->e, (int64_t)ms);
            }
        }
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double p50_all, max_all, p50_done, max_done;
    unsigned incomplete;
    double msgs_per_purge;
} result_t;

static result_t scenario(unsigned n, double loss, int direct, uint64_t seed)
{
    setup(n, loss, direct, seed);
    uint64_t all[PURGES], done[PURGES];
    result_t res = {0};
    S.now = 1000000; /* 1 s: wall-clock-like sequences */
    for (unsigned p = 0; p < PURGES; p++) {
        unsigned o = (unsigned)(urand() * n);
        for (unsigned i = 0; i < n; i++)
            S.nodes[i].applied_at = 0;
        S.applied = 0;
        S.done_at = 0;
        snprintf(S.cur_origin, sizeof(S.cur_origin), "%s", S.nodes[o].name);
        S.cur = o;
        uint64_t t0 = S.now;
        int waiter;
        S.cur_seq = (uint64_t)(S.now / 1000) * 1000;
        S.cur_seq =
            sh_pe_issue(S.nodes[o].e, SH_CACHE_PURGE_KEY, 0, "", "k", 1, (int64_t)(S.now / 1000),
                        direct ? &waiter : NULL, (int64_t)(S.now / 1000) + 30000);
        /* the origin's own apply happened inside issue, before cur_seq was known */
        if (S.nodes[o].applied_at == 0) {
            S.nodes[o].applied_at = S.now;
            S.applied++;
        }
        run_until(t0 + 30000000, direct);
        uint64_t last = 0;
        for (unsigned i = 0; i < n; i++) {
            if (S.nodes[i].applied_at == 0)
                res.incomplete++;
            else if (S.nodes[i].applied_at > last)
                last = S.nodes[i].applied_at;
        }
        all[p] = last - t0;
        done[p] = S.done_at ? S.done_at - t0 : 0;
        S.now += 100000; /* 100 ms between purges */
        run_until(S.now, 0);
    }
    res.msgs_per_purge = (double)S.msgs / PURGES;
    teardown();
    qsort(all, PURGES, sizeof(uint64_t), cmp_u64);
    qsort(done, PURGES, sizeof(uint64_t), cmp_u64);
    res.p50_all = (double)all[PURGES / 2] / 1000.0;
    res.max_all = (double)all[PURGES - 1] / 1000.0;
    res.p50_done = (double)done[PURGES / 2] / 1000.0;
    res.max_done = (double)done[PURGES - 1] / 1000.0;
    return res;
}

static void row(const char *name, result_t r, int direct)
{
    if (direct)
        printf("%-22s %9.1f %9.1f %11.1f %11.1f %10.0f %s\n", name, r.p50_all, r.max_all,
               r.p50_done, r.max_done, r.msgs_per_purge, r.incomplete ? "INCOMPLETE" : "");
    else
        printf("%-22s %9.1f %9.1f %11s %11s %10.0f %s\n", name, r.p50_all, r.max_all, "-", "-",
               r.msgs_per_purge, r.incomplete ? "INCOMPLETE" : "");
}

int main(int argc, char **argv)
{
    int check = argc > 1 && strcmp(argv[1], "check") == 0;
    unsigned n = argc > 2 ? (unsigned)atoi(argv[2]) : SH_SIM_N;
    if (n < 2)
        n = SH_SIM_N;
    printf("purge channel, %u nodes, 1 ms links, %d purges each (ms from the call):\n", n, PURGES);
    printf("%-22s %9s %9s %11s %11s %10s\n", "scenario", "all p50", "all max", "acked p50",
           "acked max", "msgs/purge");
    result_t d = scenario(n, 0.0, 1, 0x9e3779b97f4a7c15ull);
    row("direct + gossip", d, 1);
    result_t l = scenario(n, 0.01, 1, 0x2545f4914f6cdd1dull);
    row("direct + gossip, 1% loss", l, 1);
    result_t g = scenario(n, 0.0, 0, 0x853c49e6748fea9bull);
    row("gossip only", g, 0);
    if (!check)
        return 0;
    int ok = !d.incomplete && !l.incomplete && !g.incomplete && d.max_all < 1000.0 &&
             l.max_all < 1000.0 && d.max_done < 1000.0;
    printf("%s: every node applied every purge; direct reaches all %u nodes in under 1 s\n",
           ok ? "ok" : "FAIL", n);
    return ok ? 0 : 1;
}
