/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The issue-5 properties on 1,000 simulated nodes (SH_SIM_N) (LAN profile, 10 ms
 * steps, 1-10 ms link delay): dissemination in O(log N) periods, a killed
 * node declared dead by everyone, false positives under 10% loss and with
 * CPU-starved members (with and without Lifeguard), partition and heal.
 * Figures are printed as "SIM ..." lines; assertions are loose bounds on
 * properties, never on timings of the machine.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "sim.h"

/* 1,000 nodes; sanitizer builds run the same scenarios on 100 (CMake sets
 * SH_SIM_N), where 1,000 would take minutes and gigabytes. */
#ifndef SH_SIM_N
#define SH_SIM_N 1000u
#endif
#define N ((unsigned)(SH_SIM_N))

/* Virtual durations: short under ctest; SHOAL_SIM_LONG=1 for the figures. */
static uint64_t dur(uint64_t short_ms, uint64_t long_ms)
{
    const char *e = getenv("SHOAL_SIM_LONG");
    return e && *e == '1' ? long_ms : short_ms;
}

typedef struct {
    sim_t *sim;
    unsigned *dead_seen; /* per subject: observers that saw it dead */
    unsigned *alive_seen;
    uint64_t first_suspect_ms, all_dead_ms;
    uint64_t false_suspects, false_deaths;
    unsigned char *falsely_dead; /* subjects ever falsely declared dead */
    unsigned char *excluded;     /* subjects whose suspicion is not "false" */
    unsigned *suspecting;        /* per subject: observers now seeing it suspect */
    uint64_t false_episodes;     /* a healthy node going from nobody to somebody suspecting */
} watch;

static void observe(void *arg, unsigned obs, const sh_swim_member_t *m, int old)
{
    watch *w = arg;
    unsigned subj = sim_index(m->name);
    if (subj >= N || old == -1)
        return;
    int real_down = sim_is_down(w->sim, subj) || w->excluded[subj];
    if (old == SH_SWIM_SUSPECT && w->suspecting[subj] > 0)
        w->suspecting[subj]--;
    if (m->status == SH_SWIM_SUSPECT) {
        if (w->suspecting[subj]++ == 0 && !real_down)
            w->false_episodes++;
        if (!real_down)
            w->false_suspects++;
        else if (w->first_suspect_ms == 0)
            w->first_suspect_ms = sim_now(w->sim);
    }
    if (m->status == SH_SWIM_DEAD) {
        w->dead_seen[subj]++;
        if (!real_down) {
            w->false_deaths++;
            w->falsely_dead[subj] = 1;
        }
    }
    if (m->status == SH_SWIM_ALIVE && old != SH_SWIM_ALIVE)
        w->alive_seen[subj]++;
}

static void watch_init(watch *w, sim_t *sim)
{
    memset(w, 0, sizeof(*w));
    w->sim = sim;
    w->dead_seen = sh_calloc(N, sizeof(unsigned));
    w->alive_seen = sh_calloc(N, sizeof(unsigned));
    w->falsely_dead = sh_calloc(N, 1);
    w->excluded = sh_calloc(N, 1);
    w->suspecting = sh_calloc(N, sizeof(unsigned));
    sim_observe(sim, observe, w);
}

static void watch_dispose(watch *w)
{
    sh_free(w->dead_seen);
    sh_free(w->alive_seen);
    sh_free(w->falsely_dead);
    sh_free(w->excluded);
    sh_free(w->suspecting);
}

static unsigned count(const unsigned char *v)
{
    unsigned c = 0;
    for (unsigned i = 0; i < N; i++)
        c += v[i];
    return c;
}

static sim_t *cluster(int lifeguard, uint64_t seed)
{
    sh_swim_conf_t c;
    memset(&c, 0, sizeof(c));
    sh_swim_conf_lan(&c);
    c.lifeguard = lifeguard;
    sim_t *sim = sim_create(N, &c, seed);
    sim_set_delay(sim, 1, 10);
    sim_converge(sim);
    return sim;
}

static double bytes_per_node_s(sim_t *sim, uint64_t ms)
{
    uint64_t b0 = sim_net(sim)->bytes + sim_net(sim)->pushpull_bytes;
    sim_run(sim, ms);
    uint64_t b1 = sim_net(sim)->bytes + sim_net(sim)->pushpull_bytes;
    return (double)(b1 - b0) / N / ((double)ms / 1000.0);
}

/* --- dissemination: a channel update reaches all in O(log N) periods -- */

typedef struct {
    uint64_t *got;
    sim_t *sim;
    unsigned n;
} flood;

static int fl_merge(void *ud, const char *from, const uint8_t *d, size_t n)
{
    uint64_t *slot = ud;
    if (*slot)
        return 0;
    *slot = 1; /* replaced by the time below */
    return 1;
}
static const sh_channel_ops_t fl_ops = {"flood", fl_merge, NULL, NULL};

static void test_dissemination(void **state)
{
    sim_t *sim = cluster(1, 101);
    uint64_t *got = sh_calloc(N, sizeof(uint64_t));
    for (unsigned i = 0; i < N; i++)
        sh_swim_channel_register(sim_node(sim, i), 9, &fl_ops, &got[i]);
    double quiet = bytes_per_node_s(sim, 10000);
    uint64_t t0 = sim_now(sim);
    got[0] = 1;
    sh_swim_channel_broadcast(sim_node(sim, 0), 9, "x", (const uint8_t *)"hello", 5);
    uint64_t b0 = sim_net(sim)->bytes;
    unsigned have = 0;
    uint64_t t_all = 0, t_half = 0;
    while (sim_now(sim) - t0 < 30000) {
        sim_run(sim, SIM_STEP_MS);
        have = 0;
        for (unsigned i = 0; i < N; i++)
            have += got[i] != 0;
        if (!t_half && have >= N / 2)
            t_half = sim_now(sim) - t0;
        if (have == N) {
            t_all = sim_now(sim) - t0;
            break;
        }
    }
    double dis_bytes = (double)(sim_net(sim)->bytes - b0) / N / ((double)t_all / 1000.0);
    printf("SIM dissemination N=%u: 50%% in %.2f probe periods, 100%% in %.2f probe periods "
           "= %.0f gossip rounds (%llu ms; log2(N)=%.1f); bytes/node/s quiet %.0f, while "
           "disseminating %.0f\n",
           N, t_half / 1000.0, t_all / 1000.0, t_all / 200.0, (unsigned long long)t_all, log2(N),
           quiet, dis_bytes);
    assert_int_equal(have, N);
    /* O(log N): a generous multiple of log2(N) probe periods. */
    assert_true((double)t_all / 1000.0 <= 2.0 * log2(N));
    sh_free(got);
    sim_destroy(sim);
}

/* --- regions: a broadcast reaches its own region first ------------------ */

#define RN 200u /* small enough for ten runs under ctest */

/* Two regions of N/2, 80 ms apart; node 0 broadcasts. Times (ms) until
 * every node of its region has it, and every node. */
static void region_run(int aware, uint64_t seed, uint64_t *t_near, uint64_t *t_all,
                       double *far_share)
{
    sh_swim_conf_t c;
    memset(&c, 0, sizeof(c));
    sh_swim_conf_lan(&c);
    c.lifeguard = 1;
    sim_t *sim = sim_create(RN, &c, seed);
    sim_set_delay(sim, 1, 5);
    for (unsigned i = 0; i < RN; i++)
        sim_set_region(sim, i, i < RN / 2 ? 1 : 2);
    sim_regions(sim, aware, 80);
    sim_converge(sim);
    sim_run(sim, 3000);
    uint64_t *got = sh_calloc(RN, sizeof(uint64_t));
    for (unsigned i = 0; i < RN; i++)
        sh_swim_channel_register(sim_node(sim, i), 9, &fl_ops, &got[i]);
    uint64_t t0 = sim_now(sim);
    got[0] = 1;
    sh_swim_channel_broadcast(sim_node(sim, 0), 9, "x", (const uint8_t *)"hello", 5);
    *t_near = *t_all = 0;
    while (sim_now(sim) - t0 < 30000) {
        sim_run(sim, SIM_STEP_MS);
        unsigned near = 0, all = 0;
        for (unsigned i = 0; i < RN; i++) {
            all += got[i] != 0;
            near += i < RN / 2 && got[i] != 0;
        }
        if (!*t_near && near == RN / 2)
            *t_near = sim_now(sim) - t0;
        if (all == RN) {
            *t_all = sim_now(sim) - t0;
            break;
        }
    }
    *far_share = 0;
    (void)far_share;
    sh_free(got);
    sim_destroy(sim);
}

static void test_regions(void **state)
{
    (void)state;
    uint64_t near0 = 0, all0 = 0, near1 = 0, all1 = 0;
    double f0, f1;
    /* the median of five seeds each way */
    uint64_t n0[5], a0[5], n1[5], a1[5];
    for (unsigned k = 0; k < 5; k++) {
        region_run(0, 900 + k, &n0[k], &a0[k], &f0);
        region_run(1, 900 + k, &n1[k], &a1[k], &f1);
        assert_true(a0[k] > 0 && a1[k] > 0); /* everyone has it, both ways */
    }
    for (unsigned i = 0; i < 5; i++)
        for (unsigned j = i + 1; j < 5; j++) {
            uint64_t *v[] = {n0, a0, n1, a1};
            for (unsigned q = 0; q < 4; q++)
                if (v[q][j] < v[q][i]) {
                    uint64_t t = v[q][i];
                    v[q][i] = v[q][j];
                    v[q][j] = t;
                }
        }
    near0 = n0[2], all0 = a0[2], near1 = n1[2], all1 = a1[2];
    printf("SIM regions N=%u in 2 regions 80 ms apart, broadcast from region 1 (median of 5): "
           "region-blind gossip: own region has it in %llu ms, everyone in %llu ms; "
           "region-aware (one far target a round): own region %llu ms, everyone %llu ms\n",
           RN, (unsigned long long)near0, (unsigned long long)all0, (unsigned long long)near1,
           (unsigned long long)all1);
    /* the region's own members learn first: no later than without regions */
    assert_true(near1 <= near0);
}

/* --- detection: kill -9 one node; everyone declares it dead ---------- */

static void test_detection(void **state)
{
    sim_t *sim = cluster(1, 202);
    watch w;
    watch_init(&w, sim);
    sim_run(sim, 2000);
    unsigned victim = N / 2;
    uint64_t t0 = sim_now(sim);
    sim_kill(sim, victim);
    uint64_t t_all = 0;
    while (sim_now(sim) - t0 < 120000) {
        sim_run(sim, 100);
        if (w.dead_seen[victim] >= N - 1) {
            t_all = sim_now(sim) - t0;
            break;
        }
    }
    printf("SIM detection N=%u (Lifeguard): first suspicion after %.1f s, first dead -> all %u "
           "see dead after %.1f s; false deaths %llu\n",
           N, (double)(w.first_suspect_ms - t0) / 1000.0, N - 1, (double)t_all / 1000.0,
           (unsigned long long)w.false_deaths);
    assert_true(t_all > 0);
    assert_int_equal(w.false_deaths, 0);
    watch_dispose(&w);
    sim_destroy(sim);
}

/* --- false positives under loss and with slow members ---------------- */

static void fp_run(const char *what, int lifeguard, double loss, unsigned slow, unsigned lag,
                   unsigned *fp_nodes, uint64_t *fp_susp)
{
    sim_t *sim = cluster(lifeguard, 303 + (uint64_t)lifeguard);
    watch w;
    watch_init(&w, sim);
    for (unsigned i = 0; i < slow; i++) {
        unsigned s = 7 + i * (N / (slow ? slow : 1));
        sim_slow(sim, s % N, lag);
        w.excluded[s % N] = 1; /* a starved node's own suspicion is not false */
    }
    sim_set_loss(sim, loss);
    const uint64_t run_ms = dur(20000, 60000);
    sim_run(sim, run_ms);
    *fp_nodes = count(w.falsely_dead);
    *fp_susp = w.false_episodes;
    printf("SIM false positives N=%u %s, Lifeguard %s, %.0f s: healthy nodes declared dead by "
           "someone %u (%.2f%%, %llu observer views), false suspicions of healthy nodes %llu "
           "(%.3f per node-minute), UDP %.0f B/node/s\n",
           N, what, lifeguard ? "on " : "off", run_ms / 1000.0, *fp_nodes, 100.0 * *fp_nodes / N,
           (unsigned long long)w.false_deaths, (unsigned long long)w.false_episodes,
           (double)w.false_episodes / N / (run_ms / 60000.0),
           (double)sim_net(sim)->bytes / N / (sim_now(sim) / 1000.0));
    watch_dispose(&w);
    sim_destroy(sim);
}

static void test_fp_loss(void **state)
{
    unsigned on, off;
    uint64_t s_on, s_off;
    fp_run("10% loss", 1, 0.10, 0, 0, &on, &s_on);
    fp_run("10% loss", 0, 0.10, 0, 0, &off, &s_off);
    assert_true(on <= N / 100); /* < 1% of nodes falsely dead */
}

static void test_fp_slow(void **state)
{
    unsigned on, off;
    uint64_t s_on, s_off;
    /* 1% of the nodes are CPU-starved: they run only every 2.5 s. */
    fp_run("1% slow members", 1, 0.0, N / 100, 2500, &on, &s_on);
    fp_run("1% slow members", 0, 0.0, N / 100, 2500, &off, &s_off);
    assert_true(s_on <= s_off); /* Lifeguard: fewer false suspicions */
    assert_true(on <= off);
}

/* --- partition and heal ----------------------------------------------- */

static void test_partition_heal(void **state)
{
    sim_t *sim = cluster(1, 404);
    watch w;
    watch_init(&w, sim);
    unsigned char *g = sh_malloc(N);
    for (unsigned i = 0; i < N; i++)
        g[i] = i % 5 == 0; /* 20% cut off from 80% */
    sim_partition(sim, g);
    for (unsigned i = 0; i < N; i++)
        w.excluded[i] = 1; /* suspicions across the cut are expected */
    const uint64_t cut_ms = dur(20000, 90000);
    sim_run(sim, cut_ms);
    unsigned dead_view = 0;
    for (unsigned i = 0; i < N; i++)
        dead_view += sh_swim_num_members(sim_node(sim, i), 1) < N;
    sim_heal(sim);
    uint64_t t0 = sim_now(sim), t_all = 0;
    while (sim_now(sim) - t0 < 300000) {
        sim_run(sim, 1000);
        unsigned ok = 0;
        for (unsigned i = 0; i < N; i++)
            ok += sh_swim_num_members(sim_node(sim, i), 1) == N;
        if (ok == N) {
            t_all = sim_now(sim) - t0;
            break;
        }
    }
    printf("SIM partition N=%u (20%%/80%% for %.0f s): %u nodes saw the other side go; after "
           "heal all see %u alive in %.1f s\n",
           N, cut_ms / 1000.0, dead_view, N, (double)t_all / 1000.0);
    assert_true(dead_view > 0);
    assert_true(t_all > 0);
    sh_free(g);
    watch_dispose(&w);
    sim_destroy(sim);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dissemination),  cmocka_unit_test(test_detection),
        cmocka_unit_test(test_fp_loss),        cmocka_unit_test(test_fp_slow),
        cmocka_unit_test(test_partition_heal), cmocka_unit_test(test_regions),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
