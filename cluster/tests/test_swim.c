/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SWIM state machine on small simulated clusters: join, refutation, leave,
 * failure, channels, restart under the same name, the buddy system and the
 * local health multiplier.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "sim.h"

static sh_swim_conf_t lan(void)
{
    sh_swim_conf_t c;
    memset(&c, 0, sizeof(c));
    sh_swim_conf_lan(&c);
    return c;
}

static int status_of(sim_t *sim, unsigned obs, unsigned subj)
{
    char name[32];
    snprintf(name, sizeof(name), "node-%u", subj);
    const sh_swim_member_t *m = sh_swim_member(sim_node(sim, obs), name);
    return m ? m->status : -1;
}

/* Every live node sees subj in status st. */
static int all_see(sim_t *sim, unsigned subj, int st)
{
    for (unsigned i = 0; i < sim_size(sim); i++)
        if (!sim_is_down(sim, i) && i != subj && status_of(sim, i, subj) != st)
            return 0;
    return 1;
}

/* Run until cond or the deadline (virtual ms); returns elapsed ms or -1. */
#define RUN_UNTIL(sim, limit_ms, cond)                                                             \
    ({                                                                                             \
        uint64_t t0_ = sim_now(sim);                                                               \
        long r_ = -1;                                                                              \
        while (sim_now(sim) - t0_ < (limit_ms)) {                                                  \
            if (cond) {                                                                            \
                r_ = (long)(sim_now(sim) - t0_);                                                   \
                break;                                                                             \
            }                                                                                      \
            sim_run(sim, 100);                                                                     \
        }                                                                                          \
        r_;                                                                                        \
    })

static void join_all(sim_t *sim)
{
    for (unsigned i = 1; i < sim_size(sim); i++)
        sh_swim_join(sim_node(sim, i), "n0");
}

static int converged(sim_t *sim)
{
    for (unsigned i = 0; i < sim_size(sim); i++)
        if (!sim_is_down(sim, i) && sh_swim_num_members(sim_node(sim, i), 1) != sim_size(sim))
            return 0;
    return 1;
}

static void test_join_through_seed(void **state)
{
    sh_swim_conf_t c = lan();
    sim_t *sim = sim_create(5, &c, 7);
    join_all(sim);
    assert_true(RUN_UNTIL(sim, 10000, converged(sim)) >= 0);
    for (unsigned i = 0; i < 5; i++)
        assert_true(all_see(sim, i, SH_SWIM_ALIVE));
    sim_destroy(sim);
}

static void test_kill_is_dead_everywhere(void **state)
{
    sh_swim_conf_t c = lan();
    sim_t *sim = sim_create(8, &c, 11);
    join_all(sim);
    assert_true(RUN_UNTIL(sim, 10000, converged(sim)) >= 0);
    sim_kill(sim, 3);
    long t = RUN_UNTIL(sim, 120000, all_see(sim, 3, SH_SWIM_DEAD));
    assert_true(t > 0);
    for (unsigned i = 0; i < 8; i++)
        if (i != 3)
            assert_true(all_see(sim, i, SH_SWIM_ALIVE));
    sim_destroy(sim);
}

static void test_leave_is_left(void **state)
{
    sh_swim_conf_t c = lan();
    sim_t *sim = sim_create(6, &c, 5);
    join_all(sim);
    assert_true(RUN_UNTIL(sim, 10000, converged(sim)) >= 0);
    sh_swim_leave(sim_node(sim, 2), sim_now(sim));
    /* the goodbye goes to every live member directly, at once */
    assert_true(sh_swim_leave_sent(sim_node(sim, 2)));
    sim_kill(sim, 2);
    assert_true(RUN_UNTIL(sim, 10000, all_see(sim, 2, SH_SWIM_LEFT)) >= 0);
    sim_destroy(sim);
}

/* A short partition of one node: it is suspected, refutes with a higher
 * incarnation when it comes back, and nobody declares it dead. */
static void test_refutation(void **state)
{
    sh_swim_conf_t c = lan();
    sim_t *sim = sim_create(6, &c, 3);
    join_all(sim);
    assert_true(RUN_UNTIL(sim, 10000, converged(sim)) >= 0);
    unsigned char g[6] = {0, 1, 0, 0, 0, 0};
    sim_partition(sim, g);
    int suspected = 0;
    for (int i = 0; i < 60 && !suspected; i++) {
        sim_run(sim, 100);
        for (unsigned o = 0; o < 6; o++)
            suspected |= o != 1 && status_of(sim, o, 1) == SH_SWIM_SUSPECT;
    }
    assert_true(suspected);
    sim_heal(sim);
    assert_true(RUN_UNTIL(sim, 5000, all_see(sim, 1, SH_SWIM_ALIVE)) >= 0);
    assert_true(sh_swim_member(sim_node(sim, 0), "node-1")->incarnation > 1);
    assert_true(sh_swim_stats(sim_node(sim, 1))->refutes >= 1);
    sim_destroy(sim);
}

/* kill -9, declared dead, then a new process with the same name and
 * address rejoins and is alive everywhere with a higher incarnation. */
static void test_restart_rejoins(void **state)
{
    sh_swim_conf_t c = lan();
    sim_t *sim = sim_create(5, &c, 9);
    join_all(sim);
    assert_true(RUN_UNTIL(sim, 10000, converged(sim)) >= 0);
    sim_kill(sim, 4);
    assert_true(RUN_UNTIL(sim, 120000, all_see(sim, 4, SH_SWIM_DEAD)) >= 0);
    uint64_t old = sh_swim_member(sim_node(sim, 0), "node-4")->incarnation;
    sim_restart(sim, 4, &c, 0);
    assert_true(RUN_UNTIL(sim, 10000, all_see(sim, 4, SH_SWIM_ALIVE) && converged(sim)) >= 0);
    assert_true(sh_swim_member(sim_node(sim, 1), "node-4")->incarnation > old);
    sim_destroy(sim);
}

/* A replicated key/value channel: broadcast reaches all; push-pull brings
 * a late joiner up to date. */
typedef struct {
    char val[32];
    int merges;
} kv;

static int kv_merge(void *ud, const char *from, const uint8_t *d, size_t n)
{
    kv *k = ud;
    if (n == 0 || n >= sizeof(k->val) || (strlen(k->val) == n && memcmp(k->val, d, n) == 0))
        return 0;
    if (n > 0)
        memcpy(k->val, d, n);
    k->val[n] = 0;
    k->merges++;
    return 1;
}

static int kv_state(void *ud, int join, uint8_t **out, size_t *len)
{
    kv *k = ud;
    *len = strlen(k->val);
    *out = *len ? sh_memdup(k->val, *len) : NULL;
    return 0;
}

static void kv_merge_state(void *ud, const uint8_t *d, size_t n, int join)
{
    kv_merge(ud, "", d, n);
}

static const sh_channel_ops_t kv_ops = {"kv", kv_merge, kv_state, kv_merge_state};

static void test_channel(void **state)
{
    sh_swim_conf_t c = lan();
    sim_t *sim = sim_create(6, &c, 21);
    kv kvs[6];
    memset(kvs, 0, sizeof(kvs));
    for (unsigned i = 0; i < 6; i++)
        assert_int_equal(sh_swim_channel_register(sim_node(sim, i), 7, &kv_ops, &kvs[i]), 0);
    assert_int_equal(sh_swim_channel_register(sim_node(sim, 0), 7, &kv_ops, &kvs[0]), -8);
    for (unsigned i = 1; i < 5; i++) /* node 5 joins later */
        sh_swim_join(sim_node(sim, i), "n0");
    sim_run(sim, 3000);
    assert_int_equal(sh_swim_channel_broadcast(sim_node(sim, 2), 7, "k", (const uint8_t *)"v1", 2),
                     0);
    assert_true(RUN_UNTIL(sim, 5000,
                          !strcmp(kvs[0].val, "v1") && !strcmp(kvs[1].val, "v1") &&
                              !strcmp(kvs[3].val, "v1") && !strcmp(kvs[4].val, "v1")) >= 0);
    sh_swim_join(sim_node(sim, 5), "n1");
    assert_true(RUN_UNTIL(sim, 3000, !strcmp(kvs[5].val, "v1")) >= 0);
    sim_destroy(sim);
}

/* Buddy system: a suspect learns of its suspicion from the probe itself. */
static void test_buddy_and_lhm(void **state)
{
    sh_swim_conf_t c = lan();
    sim_t *sim = sim_create(5, &c, 13);
    join_all(sim);
    assert_true(RUN_UNTIL(sim, 10000, converged(sim)) >= 0);
    /* node 0 cannot hear anyone: its probes fail, helpers' nacks do not
     * arrive either, so its health score rises (it becomes patient). */
    sim_slow(sim, 0, 2500);
    sim_run(sim, 20000);
    assert_true(sh_swim_health_score(sim_node(sim, 0)) > 0);
    sim_slow(sim, 0, 0);
    assert_true(RUN_UNTIL(sim, 30000, sh_swim_health_score(sim_node(sim, 0)) == 0) >= 0);
    sim_destroy(sim);
}

/* ----------------------------------------- slim periodic push-pull -- */

static struct {
    char addr[64];
    int kind, calls;
} pp_seen;

static void raw_send(void *ud, const char *addr, const uint8_t *buf, size_t len)
{
    (void)ud, (void)addr, (void)buf, (void)len;
}

static void raw_pushpull(void *ud, const char *addr, int kind)
{
    (void)ud;
    snprintf(pp_seen.addr, sizeof(pp_seen.addr), "%s", addr);
    pp_seen.kind = kind;
    pp_seen.calls++;
}

static const sh_swim_transport_t raw_t = {raw_send, raw_pushpull, NULL};

static sh_swim_t *raw_node(const char *name, const char *addr, const char *meta)
{
    sh_swim_conf_t c = lan();
    c.name = name;
    c.addr = addr;
    c.meta = (const uint8_t *)meta;
    c.meta_len = strlen(meta);
    return sh_swim_create(&c, &raw_t, NULL, 0);
}

/* a -> b, returning the reply kind b would use. */
static int raw_send_pp(sh_swim_t *a, sh_swim_t *b, int kind, size_t *len)
{
    uint8_t *buf = NULL;
    size_t n = sh_swim_pushpull_encode(a, kind, &buf);
    int reply = -1;
    assert_int_equal(sh_swim_pushpull_merge(b, buf, n, 1000, &reply), 0);
    sh_free(buf);
    if (len)
        *len = n;
    return reply;
}

static void test_slim_pushpull(void **state)
{
    (void)state;
    sh_swim_t *a = raw_node("a", "127.0.0.1:7001", "meta-of-a-0123456789");
    sh_swim_t *b = raw_node("b", "[::1]:7002", "meta-of-b-0123456789");
    sh_swim_t *c = raw_node("c", "host-c:7003", "meta-of-c-0123456789");
    /* A full frame (join, reconnect, older peer) is answered in full. */
    assert_int_equal(raw_send_pp(c, b, SH_SWIM_PP_JOIN, NULL), SH_SWIM_PP_FULL);
    assert_int_equal(raw_send_pp(a, b, SH_SWIM_PP_FULL, NULL), SH_SWIM_PP_FULL);
    /* b knows a and c; a slim frame from b carries only b's meta and is
     * smaller than the full one, and is answered slim. */
    size_t full = 0, slim = 0;
    pp_seen.calls = 0;
    sh_swim_t *probe = raw_node("p", "127.0.0.1:7009", "");
    raw_send_pp(b, probe, SH_SWIM_PP_FULL, &full);
    sh_swim_destroy(probe);
    pp_seen.calls = 0;
    assert_int_equal(raw_send_pp(b, a, SH_SWIM_PP_SLIM, &slim), SH_SWIM_PP_SLIM);
    assert_true(slim < full);
    /* a learned b with its meta and address (packed IPv6)... */
    const sh_swim_member_t *m = sh_swim_member(a, "b");
    assert_non_null(m);
    assert_string_equal(m->addr, "[::1]:7002");
    assert_int_equal(m->meta_len, strlen("meta-of-b-0123456789"));
    /* ...but not c, whose meta the slim frame lacks: it asks b for a full
     * exchange at once instead. */
    assert_null(sh_swim_member(a, "c"));
    assert_int_equal(pp_seen.calls, 1);
    assert_int_equal(pp_seen.kind, SH_SWIM_PP_FULL);
    assert_string_equal(pp_seen.addr, "[::1]:7002");
    assert_int_equal(raw_send_pp(a, b, SH_SWIM_PP_FULL, NULL), SH_SWIM_PP_FULL);
    raw_send_pp(b, a, SH_SWIM_PP_FULL, NULL);
    m = sh_swim_member(a, "c");
    assert_non_null(m);
    assert_string_equal(m->addr, "host-c:7003");
    assert_memory_equal(m->meta, "meta-of-c-0123456789", m->meta_len);
    /* Steady state: slim both ways changes nothing, asks for nothing, and
     * our own entry without meta in a slim frame is not refuted. */
    pp_seen.calls = 0;
    uint64_t inc = sh_swim_member(a, "a")->incarnation;
    raw_send_pp(a, b, SH_SWIM_PP_SLIM, NULL);
    raw_send_pp(b, a, SH_SWIM_PP_SLIM, NULL);
    assert_int_equal(pp_seen.calls, 0);
    assert_int_equal(sh_swim_member(a, "a")->incarnation, inc);
    assert_int_equal(sh_swim_member(b, "c")->meta_len, strlen("meta-of-c-0123456789"));
    sh_swim_destroy(a);
    sh_swim_destroy(b);
    sh_swim_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_through_seed), cmocka_unit_test(test_kill_is_dead_everywhere),
        cmocka_unit_test(test_leave_is_left),     cmocka_unit_test(test_refutation),
        cmocka_unit_test(test_restart_rejoins),   cmocka_unit_test(test_channel),
        cmocka_unit_test(test_buddy_and_lhm),     cmocka_unit_test(test_slim_pushpull),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
