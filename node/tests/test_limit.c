/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the limits: limit_req's arithmetic on virtual time (the
 * functions are pure: state + now -> decision), checked against what nginx
 * 1.22 computes for the same sequences, and the zone table (capacity from
 * SIZE, LRU order, eviction, keyed hashing, the registry that keeps a zone
 * across a reload).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "node/modules/limit_req.h"
#include "node/modules/limit_zone.h"

#define RATE(n_per_s) ((uint64_t)(n_per_s)*1000)

/* One request against one zone as the handler runs it (single zone: the
 * lookup accounts); a new key starts with excess 0. Returns 0 passed,
 * 1 rejected; *delay the wait in ms. */
typedef struct {
    sh_limit_req_state_t st;
    int known;
} key_t_;

static int req(key_t_ *k, int64_t now, uint64_t rate, uint64_t burst, uint64_t delay,
               uint64_t *wait)
{
    int64_t ex = 0;
    *wait = 0;
    if (!k->known) {
        k->known = 1;
        k->st.excess = 0;
        k->st.last = now;
    } else if (sh_limit_req_lookup(&k->st, now, rate, burst * 1000, 1, &ex) == SH_LIMIT_REQ_BUSY) {
        return 1;
    }
    *wait = sh_limit_req_delay(ex, delay, rate);
    return 0;
}

static void burst_nodelay(void **state)
{
    (void)state;
    key_t_ k = {0};
    int passed = 0;
    uint64_t w;
    for (int i = 0; i < 30; i++) /* 30 at one instant: 1 + burst pass */
        passed += !req(&k, 1000, RATE(5), 10, INT64_MAX, &w);
    assert_int_equal(passed, 11);
    /* 200 ms later one more fits (5r/s drains one request per 200 ms) */
    assert_int_equal(req(&k, 1199, RATE(5), 10, INT64_MAX, &w), 1);
    assert_int_equal(req(&k, 1200, RATE(5), 10, INT64_MAX, &w), 0);
    assert_int_equal(req(&k, 1200, RATE(5), 10, INT64_MAX, &w), 1);
    assert_int_equal(k.st.excess, 10000);
}

static void two_stage_delay(void **state)
{
    (void)state;
    key_t_ k = {0};
    uint64_t w, waits[30];
    int passed = 0;
    for (int i = 0; i < 30; i++)
        if (!req(&k, 5000, RATE(5), 10, 4000, &waits[passed]))
            passed++;
    assert_int_equal(passed, 11);
    /* excess 0..4000 at once, then 5000..10000 wait (excess-4000)/5 ms */
    for (int i = 0; i < 5; i++)
        assert_int_equal(waits[i], 0);
    for (int i = 5; i < 11; i++)
        assert_int_equal(waits[i], (uint64_t)(i - 4) * 200);
    /* without delay= every excess waits: the second request 200 ms */
    key_t_ k2 = {0};
    req(&k2, 0, RATE(5), 10, 0, &w);
    assert_int_equal(w, 0);
    req(&k2, 0, RATE(5), 10, 0, &w);
    assert_int_equal(w, 200);
    (void)w;
}

static void per_minute(void **state)
{
    (void)state;
    /* 30r/m = 500 thousandths per second */
    key_t_ k = {0};
    uint64_t w;
    int r[5];
    for (int i = 0; i < 5; i++)
        r[i] = req(&k, 0, RATE(30) / 60, 2, INT64_MAX, &w);
    assert_int_equal(r[0] + r[1] + r[2], 0);
    assert_int_equal(r[3] + r[4], 2);
    /* excess 2000; 2.1 s drain 1050: 1950 passes, then 2950 does not */
    assert_int_equal(req(&k, 2100, RATE(30) / 60, 2, INT64_MAX, &w), 0);
    assert_int_equal(k.st.excess, 1950);
    assert_int_equal(req(&k, 2100, RATE(30) / 60, 2, INT64_MAX, &w), 1);
    /* ms precision: 1 ms drains 0 thousandths (500 * 1 / 1000) */
    assert_int_equal(sh_limit_req_excess(&k.st, 2101, RATE(30) / 60), 2950);
    assert_int_equal(sh_limit_req_excess(&k.st, 2102, RATE(30) / 60), 2949);
}

static void clock_and_never(void **state)
{
    (void)state;
    sh_limit_req_state_t st = {5000, 10000};
    /* a step back of up to 60 s counts 0 ms; more counts 1 ms */
    assert_int_equal(sh_limit_req_excess(&st, 9000, RATE(5)), 6000);
    assert_int_equal(sh_limit_req_excess(&st, 10000 - 60001, RATE(5)), 6000 - 5);
    /* never accounted: drained */
    sh_limit_req_state_t nv = {0, SH_LIMIT_REQ_NEVER};
    assert_int_equal(sh_limit_req_excess(&nv, 0, RATE(5)), 0);
    assert_int_equal(sh_limit_req_account(&nv, 77, RATE(5)), 0);
    assert_int_equal(nv.last, 77);
    /* AGAIN leaves the state; account stores it */
    int64_t ex;
    sh_limit_req_state_t a = {1000, 0};
    assert_int_equal(sh_limit_req_lookup(&a, 100, RATE(5), 10000, 0, &ex), SH_LIMIT_REQ_AGAIN);
    assert_int_equal(ex, 1500);
    assert_int_equal(a.excess, 1000);
    assert_int_equal(sh_limit_req_account(&a, 100, RATE(5)), 1500);
    /* BUSY leaves it too */
    sh_limit_req_state_t b = {10000, 0};
    assert_int_equal(sh_limit_req_lookup(&b, 0, RATE(5), 10000, 1, &ex), SH_LIMIT_REQ_BUSY);
    assert_int_equal(b.excess, 10000);
    /* huge elapsed times and rates do not overflow */
    sh_limit_req_state_t h = {3000, 0};
    assert_int_equal(sh_limit_req_excess(&h, INT64_MAX / 2, RATE(1000000)), 0);
}

static void merge(void **state)
{
    (void)state;
    /* local 2 requests at t=0 (excess 1000), a remote node reports 3 more
     * at t=200: drained 1000 by then, +3000 */
    sh_limit_req_state_t st = {1000, 0};
    sh_limit_req_merge(&st, 200, 3000, RATE(5));
    assert_int_equal(st.excess, 3000);
    assert_int_equal(st.last, 200);
    /* an older report adds without draining again */
    sh_limit_req_merge(&st, 100, 1000, RATE(5));
    assert_int_equal(st.excess, 4000);
    assert_int_equal(st.last, 200);
}

static void zone_capacity(void **state)
{
    (void)state;
    sh_limit_zone_t *z = sh_limit_zone_create(1024 * 1024);
    size_t cap = sh_limit_zone_capacity(z);
    printf("# 1m zone: %zu entries of %zu bytes (+ bucket heads)\n", cap,
           sizeof(sh_limit_zone_entry_t));
    assert_true(cap * (sizeof(sh_limit_zone_entry_t) + sizeof(uint32_t)) <= 1024 * 1024);
    assert_true(cap >= 19000);
    /* 100,000 distinct keys: inserts past a full stripe evict its oldest */
    size_t evicted = 0;
    for (unsigned i = 0; i < 100000; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
        sh_limit_id_t id;
        sh_limit_zone_hash(z, key, (size_t)n, &id);
        sh_limit_stripe_t *s = sh_limit_zone_lock(z, &id);
        assert_null(sh_limit_zone_find(s, &id, 1));
        sh_limit_zone_entry_t *e = sh_limit_zone_insert(s, &id);
        if (e == NULL) {
            sh_limit_zone_remove(s, sh_limit_zone_oldest(s), 1);
            evicted++;
            e = sh_limit_zone_insert(s, &id);
        }
        assert_non_null(e);
        sh_limit_zone_unlock(s);
    }
    assert_true(sh_limit_zone_used(z) <= cap);
    /* stripes fill evenly: nearly every slot is in use */
    assert_true(sh_limit_zone_used(z) > cap * 99 / 100);
    assert_int_equal(sh_limit_zone_evictions(z), evicted);
    assert_int_equal(sh_limit_zone_used(z) + evicted, 100000);
    printf("# after 100000 keys: %zu held, %zu evicted\n", sh_limit_zone_used(z), evicted);
    sh_limit_zone_destroy(z);
}

/* The identity of the i-th key ("k<i>", i from *next on) that falls in
 * stripe s (NULL: any), and its stripe. */
static sh_limit_stripe_t *key_in(sh_limit_zone_t *z, sh_limit_stripe_t *s, unsigned *next,
                                 sh_limit_id_t *id)
{
    for (;; (*next)++) {
        char k[16];
        int n = snprintf(k, sizeof(k), "k%u", *next);
        sh_limit_zone_hash(z, k, (size_t)n, id);
        sh_limit_stripe_t *got = sh_limit_zone_lock(z, id);
        sh_limit_zone_unlock(got);
        if (s == NULL || got == s) {
            (*next)++;
            return got;
        }
    }
}

static void zone_lru(void **state)
{
    (void)state;
    sh_limit_zone_t *z = sh_limit_zone_create(SH_LIMIT_ZONE_MIN);
    /* three keys of one stripe: LRU order is per stripe */
    sh_limit_id_t a, b, c;
    unsigned next = 0;
    sh_limit_stripe_t *s0 = key_in(z, NULL, &next, &a);
    key_in(z, s0, &next, &b);
    key_in(z, s0, &next, &c);
    sh_limit_stripe_t *s = sh_limit_zone_lock(z, &a);
    assert_ptr_equal(s, s0);
    sh_limit_zone_entry_t *ea = sh_limit_zone_insert(s, &a);
    sh_limit_zone_entry_t *eb = sh_limit_zone_insert(s, &b);
    sh_limit_zone_entry_t *ec = sh_limit_zone_insert(s, &c);
    assert_ptr_equal(sh_limit_zone_oldest(s), ea);
    assert_ptr_equal(sh_limit_zone_find(s, &a, 1), ea); /* touched: b is the oldest */
    assert_ptr_equal(sh_limit_zone_oldest(s), eb);
    assert_ptr_equal(sh_limit_zone_find(s, &b, 0), eb); /* not touched */
    assert_ptr_equal(sh_limit_zone_oldest(s), eb);
    sh_limit_zone_remove(s, eb, 0);
    assert_null(sh_limit_zone_find(s, &b, 0));
    assert_ptr_equal(sh_limit_zone_oldest(s), ec);
    assert_ptr_equal(sh_limit_zone_find(s, &a, 0), ea);
    /* the freed slot is reused */
    assert_ptr_equal(sh_limit_zone_insert(s, &b), eb);
    sh_limit_zone_unlock(s);
    assert_int_equal(sh_limit_zone_used(z), 3);
    assert_int_equal(sh_limit_zone_evictions(z), 0);
    /* fill every stripe: inserts fail past the capacity, never before */
    size_t n = 3;
    for (unsigned i = 0; i < 4 * sh_limit_zone_capacity(z); i++) {
        sh_limit_id_t id;
        sh_limit_zone_hash(z, &i, sizeof(i), &id);
        s = sh_limit_zone_lock(z, &id);
        if (sh_limit_zone_insert(s, &id) != NULL)
            n++;
        sh_limit_zone_unlock(s);
    }
    assert_int_equal(n, sh_limit_zone_capacity(z));
    assert_int_equal(sh_limit_zone_used(z), n);
    sh_limit_zone_destroy(z);
}

static void zone_hash_keyed(void **state)
{
    (void)state;
    sh_limit_zone_t *z1 = sh_limit_zone_create(SH_LIMIT_ZONE_MIN);
    sh_limit_zone_t *z2 = sh_limit_zone_create(SH_LIMIT_ZONE_MIN);
    sh_limit_id_t a, a2, b;
    sh_limit_zone_hash(z1, "127.0.0.1", 9, &a);
    sh_limit_zone_hash(z1, "127.0.0.1", 9, &a2);
    sh_limit_zone_hash(z2, "127.0.0.1", 9, &b);
    assert_memory_equal(&a, &a2, sizeof(a));
    assert_memory_not_equal(&a, &b, sizeof(a)); /* each zone draws its own key */
    sh_limit_zone_destroy(z1);
    sh_limit_zone_destroy(z2);
}

static void registry(void **state)
{
    (void)state;
    sh_limit_zone_t *a = sh_limit_zone_acquire("limit_req", "one", 65536, "$k rate=5r/s");
    sh_limit_zone_t *b = sh_limit_zone_acquire("limit_req", "one", 65536, "$k rate=5r/s");
    sh_limit_zone_t *c = sh_limit_zone_acquire("limit_req", "one", 65536, "$k rate=6r/s");
    sh_limit_zone_t *d = sh_limit_zone_acquire("limit_conn", "one", 65536, "$k rate=5r/s");
    assert_ptr_equal(a, b); /* same definition: the same zone and state */
    assert_ptr_not_equal(a, c);
    assert_ptr_not_equal(a, d);
    sh_limit_zone_release(a);
    sh_limit_zone_t *e = sh_limit_zone_acquire("limit_req", "one", 65536, "$k rate=5r/s");
    assert_ptr_equal(b, e); /* still referenced by b */
    sh_limit_zone_release(b);
    sh_limit_zone_release(c);
    sh_limit_zone_release(d);
    sh_limit_zone_release(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_nodelay), cmocka_unit_test(two_stage_delay),
        cmocka_unit_test(per_minute),    cmocka_unit_test(clock_and_never),
        cmocka_unit_test(merge),         cmocka_unit_test(zone_capacity),
        cmocka_unit_test(zone_lru),      cmocka_unit_test(zone_hash_keyed),
        cmocka_unit_test(registry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
