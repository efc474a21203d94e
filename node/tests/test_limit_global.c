/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Global rate limits (limit_global.h), unit level: the wire codec (round
 * trip, every refusal), shard owners (every node agrees; a member that
 * fails moves only its shards), the degraded share (majority rule, failed
 * members), and one report/reply exchange between two engines on virtual
 * time (the reporter ends up with the owner's bucket).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/modules/limit_global.h"
#include "node/modules/limit_req.h"
#include "node/modules/limit_zone.h"

static void codec(void **state)
{
    (void)state;
    static sh_lg_msg_t m, back;
    uint8_t buf[SH_LG_HDR + SH_LG_MAX_ITEMS * SH_LG_MAX_ITEM_SIZE];
    m.type = SH_LG_REPORT;
    m.zone = 0x0102030405060708ull;
    m.seq = 77;
    m.n = 3;
    m.items[0] = (sh_lg_item_t){1, 0};
    m.items[1] = (sh_lg_item_t){UINT64_MAX, 127};
    m.items[2] = (sh_lg_item_t){42, UINT64_MAX};
    size_t n = sh_lg_encode(&m, buf, sizeof(buf));
    assert_int_equal(n, SH_LG_HDR + 9 + 9 + 18);
    const char *why = NULL;
    assert_int_equal(sh_lg_decode(buf, n, &back, &why), 0);
    assert_int_equal(back.type, SH_LG_REPORT);
    assert_true(back.zone == m.zone && back.seq == 77 && back.n == 3);
    assert_true(back.items[1].id == UINT64_MAX && back.items[1].v == 127);
    assert_true(back.items[2].v == UINT64_MAX);
    /* refusals, each with a reason */
    assert_int_equal(sh_lg_decode(buf, SH_LG_HDR - 1, &back, &why), SH_EPARSE);
    assert_string_equal(why, "short");
    assert_int_equal(sh_lg_decode(buf, n - 1, &back, &why), SH_EPARSE);
    assert_int_equal(sh_lg_decode(buf, n - 5, &back, &why), SH_EPARSE);
    uint8_t x[sizeof(buf)];
    memcpy(x, buf, n);
    x[n] = 0;
    assert_int_equal(sh_lg_decode(x, n + 1, &back, &why), SH_EPARSE);
    assert_string_equal(why, "trailing bytes");
    x[1] = 2;
    assert_int_equal(sh_lg_decode(x, n, &back, &why), SH_EVERSION);
    memcpy(x, buf, n);
    x[0] = 9;
    assert_int_equal(sh_lg_decode(x, n, &back, &why), SH_EPARSE);
    assert_string_equal(why, "unknown type");
    memcpy(x, buf, n);
    x[14] = 0xff; /* n = 65,3xx items */
    assert_int_equal(sh_lg_decode(x, n, &back, &why), SH_EPARSE);
    assert_string_equal(why, "too many items");
    /* an 11-byte varint */
    uint8_t v[SH_LG_HDR + 8 + 11];
    memcpy(v, buf, SH_LG_HDR);
    v[14] = 0;
    v[15] = 1;
    memset(v + SH_LG_HDR, 0, 8);
    memset(v + SH_LG_HDR + 8, 0x80, 10);
    v[SH_LG_HDR + 18] = 1;
    assert_int_equal(sh_lg_decode(v, sizeof(v), &back, &why), SH_EPARSE);
    /* too small an output buffer */
    assert_int_equal(sh_lg_encode(&m, buf, SH_LG_HDR + 10), 0);
}

/* ---- engines wired to each other (delivery on demand) */

#define NE 5
typedef struct {
    uint8_t data[2048];
    size_t len;
    unsigned from, to;
} msg_t;

static msg_t q[256];
static unsigned nq;
static unsigned cur;

static int io_send(void *ud, const char *to, const uint8_t *data, size_t len)
{
    (void)ud;
    assert_true(nq < 256 && len <= sizeof(q[0].data));
    memcpy(q[nq].data, data, len);
    q[nq].len = len;
    q[nq].from = cur;
    q[nq].to = (unsigned)(to[1] - '0');
    nq++;
    return 0;
}

static sh_lg_t *g[NE];
static sh_limit_zone_t *z[NE];

static void engines(unsigned n)
{
    sh_lg_io_t io = {NULL, io_send, NULL, 1300};
    char name[16];
    for (unsigned i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "n%u", i);
        g[i] = sh_lg_create(name, &io);
        z[i] = sh_limit_zone_create(SH_LIMIT_ZONE_MIN);
        sh_limit_zone_set_global(z[i], 10 * 1000); /* 10 r/s */
        sh_lg_zone_add(g[i], z[i]);
    }
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = 0; j < n; j++) {
            snprintf(name, sizeof(name), "n%u", j);
            sh_lg_member(g[i], name, 0, 0);
        }
    nq = 0;
}

static void engines_free(unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        sh_lg_destroy(g[i]);
        sh_limit_zone_destroy(z[i]);
    }
}

/* Deliver what is queued now (answers queue up for the next call). */
static void deliver(uint64_t now)
{
    static msg_t batch[256];
    unsigned n = nq;
    memcpy(batch, q, n * sizeof(msg_t));
    nq = 0;
    for (unsigned i = 0; i < n; i++) {
        char from[16];
        snprintf(from, sizeof(from), "n%u", batch[i].from);
        cur = batch[i].to;
        sh_lg_recv(g[batch[i].to], from, batch[i].data, batch[i].len, now);
    }
}

static void owners(void **state)
{
    (void)state;
    engines(NE);
    for (unsigned i = 0; i < NE; i++) {
        cur = i;
        sh_lg_tick(g[i], 100);
    }
    /* every engine names the same owner for every shard */
    unsigned moved = 0, per[NE] = {0};
    for (uint64_t s = 0; s < 64; s++) {
        uint64_t id = s << 58 | 12345;
        const char *o = sh_lg_owner(g[0], z[0], id);
        assert_true(o[0] == 'n');
        per[o[1] - '0']++;
        for (unsigned i = 1; i < NE; i++)
            assert_string_equal(sh_lg_owner(g[i], z[i], id), o);
    }
    for (unsigned i = 0; i < NE; i++)
        assert_true(per[i] > 0); /* 64 shards spread over 5 */
    /* n3 fails: only its shards move */
    char before[64][8];
    for (uint64_t s = 0; s < 64; s++)
        snprintf(before[s], 8, "%s", sh_lg_owner(g[0], z[0], s << 58));
    sh_lg_member(g[0], "n3", 1, 200);
    cur = 0;
    sh_lg_tick(g[0], 200);
    for (uint64_t s = 0; s < 64; s++) {
        const char *o = sh_lg_owner(g[0], z[0], s << 58);
        assert_string_not_equal(o, "n3");
        if (strcmp(o, before[s]) != 0) {
            assert_string_equal(before[s], "n3");
            moved++;
        }
    }
    assert_int_equal(moved, per[3]);
    engines_free(NE);
}

static void share(void **state)
{
    (void)state;
    engines(NE);
    cur = 0;
    sh_lg_tick(g[0], 100);
    assert_int_equal(sh_limit_zone_share(z[0]), 1000000);
    /* two of five suspect: three heard, a majority: the whole rate */
    sh_lg_member(g[0], "n3", 1, 100);
    sh_lg_member(g[0], "n4", 1, 100);
    sh_lg_tick(g[0], 200);
    assert_int_equal(sh_limit_zone_share(z[0]), 1000000);
    /* three of five unheard (one failed just now): 2/5 */
    sh_lg_member(g[0], "n2", 2, 200);
    sh_lg_tick(g[0], 300);
    assert_int_equal(sh_limit_zone_share(z[0]), 400000);
    assert_int_equal(sh_limit_zone_rate_now(z[0]), 4000);
    /* a failed member stops counting after SH_LG_DEAD_HOLD_MS: 2 of 4 */
    sh_lg_tick(g[0], 200 + SH_LG_DEAD_HOLD_MS);
    assert_int_equal(sh_limit_zone_share(z[0]), 1000000);
    /* left members never count */
    sh_lg_member(g[0], "n1", 3, 400);
    sh_lg_member(g[0], "n2", 3, 400);
    sh_lg_tick(g[0], 500 + SH_LG_DEAD_HOLD_MS);
    assert_int_equal(sh_limit_zone_share(z[0]), 333333); /* n0 of n0, n3, n4 (suspect) */
    char *j = sh_lg_json(g[0], 600);
    assert_non_null(strstr(j, "\"zones\""));
    free(j);
    engines_free(NE);
}

/* n0 admits 5 requests of a key owned by n1; after a tick and the
 * exchange, n1's bucket holds them and n0 holds n1's excess. */
static void exchange(void **state)
{
    (void)state;
    engines(2);
    cur = 0;
    sh_lg_tick(g[0], 100);
    cur = 1;
    sh_lg_tick(g[1], 100);
    assert_int_equal(nq, 2); /* each sends its rates to the other */
    deliver(100);
    assert_int_equal(nq, 0);
    /* a key whose shard n1 owns */
    char key[16];
    sh_limit_id_t id;
    for (unsigned k = 0;; k++) {
        snprintf(key, sizeof(key), "k%u", k);
        sh_limit_zone_hash(z[0], key, strlen(key), &id);
        if (strcmp(sh_lg_owner(g[0], z[0], id.h0), "n1") == 0)
            break;
    }
    sh_limit_stripe_t *s = sh_limit_zone_lock(z[0], &id);
    sh_limit_zone_entry_t *e = sh_limit_zone_insert(s, &id);
    e->v0 = 4000;
    e->v1 = 150;
    sh_limit_zone_mark(s, e, 5);
    assert_int_equal(sh_limit_zone_pending(s, e), 5);
    sh_limit_zone_unlock(s);
    cur = 0;
    sh_lg_tick(g[0], 200);
    assert_int_equal(nq, 1); /* one report, to n1 */
    assert_int_equal(q[0].to, 1);
    deliver(200); /* n1 merges and replies */
    assert_int_equal(nq, 1);
    assert_int_equal(q[0].to, 0);
    sh_limit_id_t id1;
    sh_limit_zone_hash(z[1], key, strlen(key), &id1);
    assert_true(id1.h0 == id.h0); /* the same public id on both nodes */
    s = sh_limit_zone_lock(z[1], &id1);
    e = sh_limit_zone_find(s, &id1, 0);
    assert_non_null(e);
    assert_int_equal(e->v0, 5000); /* five requests, at 200 */
    sh_limit_zone_unlock(s);
    deliver(210);
    s = sh_limit_zone_lock(z[0], &id);
    e = sh_limit_zone_find(s, &id, 0);
    /* ours drained from 4000 at 150 to 210 (600 gone) = 3400, theirs 5000 */
    assert_int_equal(e->v0, 5000);
    assert_int_equal(e->v1, 210);
    assert_int_equal(sh_limit_zone_pending(s, e), 0);
    sh_limit_zone_unlock(s);
    const sh_lg_stats_t *st = sh_lg_stats(g[0]);
    assert_int_equal(st->reports_sent, 1);
    assert_int_equal(st->replies_recv, 1);
    /* n1 stops answering: after SH_LG_NOREPLY_MS its shards move to n0 */
    s = sh_limit_zone_lock(z[0], &id);
    sh_limit_zone_mark(s, e, 1);
    sh_limit_zone_unlock(s);
    cur = 0;
    sh_lg_tick(g[0], 300);
    nq = 0; /* lost */
    sh_lg_tick(g[0], 300 + SH_LG_NOREPLY_MS);
    assert_string_equal(sh_lg_owner(g[0], z[0], id.h0), "n0");
    assert_int_equal(sh_lg_stats(g[0])->exclusions, 1);
    /* until it answers a probe (an empty report) */
    nq = 0;
    sh_lg_tick(g[0], 300 + SH_LG_NOREPLY_MS + SH_LG_EXCLUDE_MS);
    unsigned probes = 0;
    for (unsigned i = 0; i < nq; i++) /* and its rates (each second) */
        probes += q[i].to == 1 && q[i].data[0] == SH_LG_REPORT && q[i].data[15] == 0;
    assert_int_equal(probes, 1);
    deliver(3000); /* n1 answers with an empty reply */
    deliver(3001);
    cur = 0;
    sh_lg_tick(g[0], 3100);
    assert_string_equal(sh_lg_owner(g[0], z[0], id.h0), "n1");
    engines_free(2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec),
        cmocka_unit_test(owners),
        cmocka_unit_test(share),
        cmocka_unit_test(exchange),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
