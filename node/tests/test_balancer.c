/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the upstream balancers (node/upstream.c): configurations
 * go through the real loader (so directive errors are tested as users see
 * them), then one worker's state is driven directly: pick/done with a
 * virtual clock (the `now` argument) and fake requests carrying a client
 * address or query arguments. No sockets, no loop.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/log.h"
#include "node/pipeline/node.h"
#include "node/pipeline/runtime.h"
#include "node/proxy/upstream.h"

extern sh_conf_module_t sh_proxy_module;

static sh_conf_module_t *const modules[] = {&sh_core_module, &sh_http_core_module,
                                            &sh_upstream_module, &sh_proxy_module};
#define NMODULES (sizeof(modules) / sizeof(modules[0]))

/* ---- helpers */

typedef struct {
    sh_runtime_t *rt;
    sh_ups_rt_t ups;
} group_t;

static int load_text(const char *ups_body, sh_runtime_t **out, char *err, int warn_fd)
{
    char text[8192];
    snprintf(text, sizeof(text),
             "events { }\n"
             "http {\n"
             "    upstream u {\n%s\n    }\n"
             "    server { listen 127.0.0.1:18080; location / { proxy_pass http://u; } }\n"
             "}\n",
             ups_body);
    return sh_runtime_load(NULL, "test.conf", text, "", modules, NMODULES, warn_fd, out, err);
}

static const sh_upstream_t *find_u(sh_runtime_t *rt)
{
    sh_http_main_t *m = sh_http_main(rt->main_confs);
    assert_non_null(m);
    const sh_upstream_main_t *um = sh_http_main_conf(m, &sh_upstream_module);
    for (size_t i = 0; i < um->n; i++)
        if (strcmp(um->ups[i]->name, "u") == 0)
            return um->ups[i];
    fail_msg("no upstream u");
    return NULL;
}

static void group_open(group_t *g, const char *ups_body)
{
    char err[SH_CONF_ERRLEN] = "";
    int rc = load_text(ups_body, &g->rt, err, -1);
    if (rc != 0)
        fail_msg("load failed: %s", err);
    sh_upstream_rt_init(&g->ups, find_u(g->rt));
}

static void group_close(group_t *g)
{
    sh_upstream_rt_dispose(&g->ups);
    sh_runtime_destroy(g->rt);
}

/* A request with just what the balancers read. */
typedef struct {
    sh_conn_t c;
    sh_request_t r;
    char args[64];
} fake_t;

static sh_request_t *req_ip(fake_t *f, const char *ip)
{
    memset(f, 0, sizeof(*f));
    f->r.c = &f->c;
    if (strchr(ip, ':') != NULL) {
        f->c.peer.sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &f->c.peer.sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&f->c.peer;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    }
    return &f->r;
}

static sh_request_t *req_key(fake_t *f, unsigned k)
{
    req_ip(f, "192.0.2.1");
    snprintf(f->args, sizeof(f->args), "k=key-%u", k);
    f->r.args = (sh_str_t){f->args, strlen(f->args)};
    return &f->r;
}

/* pick then done(success) at once: connection counts stay at zero */
static int pick_ok(group_t *g, uint64_t now, sh_request_t *r)
{
    int i = sh_upstream_pick(&g->ups, 0, now, r);
    if (i >= 0)
        sh_upstream_done(&g->ups, i, 0, now);
    return i;
}

/* ---- round robin */

static void test_rr_smooth_sequence(void **state)
{
    (void)state;
    group_t g;
    group_open(&g, "server 127.0.0.1:9001 weight=5; server 127.0.0.1:9002; "
                   "server 127.0.0.1:9003;");
    char seq[15] = "";
    for (int k = 0; k < 14; k++)
        seq[k] = (char)('a' + pick_ok(&g, 1000, NULL));
    /* nginx's smooth WRR: a a b a c a a, twice */
    assert_string_equal(seq, "aabacaaaabacaa");
    group_close(&g);
}

static void test_rr_split_322(void **state)
{
    (void)state;
    group_t g;
    group_open(&g, "server 127.0.0.1:9001 weight=3; server 127.0.0.1:9002 weight=2; "
                   "server 127.0.0.1:9003 weight=2;");
    int n[3] = {0};
    for (int k = 0; k < 700; k++)
        n[pick_ok(&g, 1000, NULL)]++;
    assert_int_equal(n[0], 300);
    assert_int_equal(n[1], 200);
    assert_int_equal(n[2], 200);
    group_close(&g);
}

static void test_rr_down_and_tried(void **state)
{
    (void)state;
    group_t g;
    group_open(&g, "server 127.0.0.1:9001; server 127.0.0.1:9002 down; server 127.0.0.1:9003;");
    for (int k = 0; k < 20; k++)
        assert_int_not_equal(pick_ok(&g, 1000, NULL), 1);
    /* tried bits exclude a server for the retry */
    for (int k = 0; k < 10; k++) {
        int i = sh_upstream_pick(&g.ups, 1ull << 0, 1000, NULL);
        assert_int_equal(i, 2);
        sh_upstream_done(&g.ups, i, 0, 1000);
    }
    assert_int_equal(sh_upstream_pick(&g.ups, (1ull << 0) | (1ull << 2), 1000, NULL), -1);
    group_close(&g);
}

/* ---- passive health */

static void test_max_fails_fail_timeout(void **state)
{
    (void)state;
    group_t g;
    group_open(&g, "server 127.0.0.1:9001 max_fails=2 fail_timeout=10s; "
                   "server 127.0.0.1:9002 max_fails=2 fail_timeout=10s;");
    uint64_t t = 100000;
    /* one failure: still in */
    assert_int_equal(sh_upstream_pick(&g.ups, 0, t, NULL), 0);
    sh_upstream_done(&g.ups, 0, 1, t);
    int saw0 = 0;
    for (int k = 0; k < 10; k++)
        saw0 |= pick_ok(&g, t + 1, NULL) == 0;
    assert_true(saw0);
    /* the second failure within the window takes it out for fail_timeout */
    int i;
    while ((i = sh_upstream_pick(&g.ups, 0, t + 2, NULL)) != 0)
        sh_upstream_done(&g.ups, i, 0, t + 2);
    sh_upstream_done(&g.ups, 0, 1, t + 2);
    for (int k = 0; k < 50; k++)
        assert_int_equal(pick_ok(&g, t + 2 + (uint64_t)k * 200, NULL), 1);
    assert_int_equal(pick_ok(&g, t + 2 + 10000, NULL), 1); /* still <= fail_timeout */
    /* after fail_timeout: one probe; while it is in flight, out again */
    uint64_t t2 = t + 2 + 10001;
    int probe = -1;
    for (int k = 0; k < 4 && probe < 0; k++) {
        i = sh_upstream_pick(&g.ups, 0, t2, NULL);
        if (i == 0)
            probe = i;
        else
            sh_upstream_done(&g.ups, i, 0, t2);
    }
    assert_int_equal(probe, 0);
    for (int k = 0; k < 10; k++)
        assert_int_equal(pick_ok(&g, t2 + 1, NULL), 1);
    /* the probe fails: out for another fail_timeout */
    sh_upstream_done(&g.ups, 0, 1, t2 + 5);
    for (int k = 0; k < 10; k++)
        assert_int_equal(pick_ok(&g, t2 + 5 + 9000, NULL), 1);
    /* next probe succeeds: back for good, failures forgotten */
    uint64_t t3 = t2 + 5 + 10001;
    probe = -1;
    for (int k = 0; k < 4 && probe < 0; k++) {
        i = sh_upstream_pick(&g.ups, 0, t3, NULL);
        if (i == 0)
            probe = i;
        else
            sh_upstream_done(&g.ups, i, 0, t3);
    }
    assert_int_equal(probe, 0);
    sh_upstream_done(&g.ups, 0, 0, t3 + 3);
    assert_int_equal(g.ups.peers[0].fails, 0);
    int n0 = 0;
    for (int k = 0; k < 100; k++)
        n0 += pick_ok(&g, t3 + 10, NULL) == 0;
    assert_in_range(n0, 40, 60); /* effective weight recovered: even split again */
    group_close(&g);
}

static void test_all_down_and_single(void **state)
{
    (void)state;
    group_t g;
    group_open(&g, "server 127.0.0.1:9001; server 127.0.0.1:9002;");
    for (int k = 0; k < 2; k++) {
        int i = sh_upstream_pick(&g.ups, 0, 5000, NULL);
        sh_upstream_done(&g.ups, i, 1, 5000);
    }
    assert_int_equal(sh_upstream_pick(&g.ups, 0, 5001, NULL), -1); /* fast 502 */
    assert_int_equal(sh_upstream_pick(&g.ups, 0, 15001, NULL) >= 0, 1);
    group_close(&g);

    /* a group of one never goes out, whatever its failures */
    group_open(&g, "server 127.0.0.1:9001 max_fails=1;");
    for (int k = 0; k < 5; k++) {
        assert_int_equal(sh_upstream_pick(&g.ups, 0, 5000, NULL), 0);
        sh_upstream_done(&g.ups, 0, 1, 5000);
    }
    assert_int_equal(sh_upstream_pick(&g.ups, 0, 5001, NULL), 0);
    sh_upstream_done(&g.ups, 0, 0, 5001);
    group_close(&g);

    /* ... but `down` and max_conns still apply to it */
    group_open(&g, "server 127.0.0.1:9001 max_conns=1;");
    assert_int_equal(sh_upstream_pick(&g.ups, 0, 1, NULL), 0);
    assert_int_equal(sh_upstream_pick(&g.ups, 0, 1, NULL), -1);
    sh_upstream_done(&g.ups, 0, 0, 1);
    assert_int_equal(sh_upstream_pick(&g.ups, 0, 1, NULL), 0);
    sh_upstream_done(&g.ups, 0, 0, 1);
    group_close(&g);
}

static void test_backup(void **state)
{
    (void)state;
    const char *methods[] = {"", "least_conn;"};
    for (size_t m = 0; m < 2; m++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "%s server 127.0.0.1:9001 fail_timeout=5s; server 127.0.0.1:9002 "
                 "fail_timeout=5s; server 127.0.0.1:9003 backup;",
                 methods[m]);
        group_t g;
        group_open(&g, body);
        for (int k = 0; k < 50; k++)
            assert_int_not_equal(pick_ok(&g, 1000, NULL), 2);
        /* one primary out: the other takes everything, still no backup */
        int i;
        while ((i = sh_upstream_pick(&g.ups, 0, 2000, NULL)) != 0)
            sh_upstream_done(&g.ups, i, 0, 2000);
        sh_upstream_done(&g.ups, 0, 1, 2000);
        for (int k = 0; k < 20; k++)
            assert_int_equal(pick_ok(&g, 2001, NULL), 1);
        /* both out: the backup */
        assert_int_equal(sh_upstream_pick(&g.ups, 0, 2002, NULL), 1);
        sh_upstream_done(&g.ups, 1, 1, 2002);
        for (int k = 0; k < 20; k++)
            assert_int_equal(pick_ok(&g, 2003, NULL), 2);
        /* a primary tried on this request: the backup serves the retry */
        group_close(&g);
        group_open(&g, body);
        assert_int_equal(sh_upstream_pick(&g.ups, 3, 1000, NULL), 2);
        sh_upstream_done(&g.ups, 2, 0, 1000);
        /* primaries back after fail_timeout */
        group_close(&g);
    }
    group_t g;
    group_open(&g, "server 127.0.0.1:9001 fail_timeout=5s; server 127.0.0.1:9002 backup;");
    sh_upstream_done(&g.ups, sh_upstream_pick(&g.ups, 0, 1000, NULL), 1, 1000);
    assert_int_equal(pick_ok(&g, 1001, NULL), 1);
    assert_int_equal(pick_ok(&g, 6001, NULL), 0);
    assert_int_equal(pick_ok(&g, 6002, NULL), 0);
    group_close(&g);
}

static void test_max_conns(void **state)
{
    (void)state;
    const char *methods[] = {
        "",        "least_conn;", "ip_hash;", "hash $arg_k;", "hash $arg_k consistent;",
        "random;", "random two;"};
    for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "%s server 127.0.0.1:9001 max_conns=2; server 127.0.0.1:9002 max_conns=1;",
                 methods[m]);
        group_t g;
        group_open(&g, body);
        fake_t f;
        int held[3];
        for (int k = 0; k < 3; k++) {
            held[k] = sh_upstream_pick(&g.ups, 0, 1000, req_key(&f, (unsigned)k));
            assert_true(held[k] >= 0);
        }
        assert_int_equal(g.ups.peers[0].conns, 2);
        assert_int_equal(g.ups.peers[1].conns, 1);
        /* every server at its max_conns: none */
        assert_int_equal(sh_upstream_pick(&g.ups, 0, 1000, req_key(&f, 7)), -1);
        sh_upstream_done(&g.ups, 1, 0, 1000);
        for (int k = 0; k < 5; k++) {
            int i = sh_upstream_pick(&g.ups, 0, 1000, req_key(&f, (unsigned)k));
            assert_int_equal(i, 1);
            sh_upstream_done(&g.ups, i, 0, 1000);
        }
        group_close(&g);
    }
}

/* ---- least_conn */

static void test_least_conn(void **state)
{
    (void)state;
    group_t g;
    group_open(&g, "least_conn; server 127.0.0.1:9001; server 127.0.0.1:9002; "
                   "server 127.0.0.1:9003;");
    /* two long requests on a and b: the next ones go to the idle c */
    assert_int_equal(sh_upstream_pick(&g.ups, 0, 1, NULL), 0);
    assert_int_equal(sh_upstream_pick(&g.ups, 0, 1, NULL), 1);
    for (int k = 0; k < 10; k++)
        assert_int_equal(pick_ok(&g, 1, NULL), 2);
    /* c gets busy too; a finishes: a is preferred */
    assert_int_equal(sh_upstream_pick(&g.ups, 0, 1, NULL), 2);
    sh_upstream_done(&g.ups, 0, 0, 1);
    assert_int_equal(pick_ok(&g, 1, NULL), 0);
    group_close(&g);

    /* weighted: conns / weight; ties by smooth WRR (5/1/1 sequence when idle) */
    group_open(&g, "least_conn; server 127.0.0.1:9001 weight=5; server 127.0.0.1:9002; "
                   "server 127.0.0.1:9003;");
    char seq[8] = "";
    for (int k = 0; k < 7; k++)
        seq[k] = (char)('a' + pick_ok(&g, 1, NULL));
    assert_string_equal(seq, "aabacaa");
    /* a with 4 conns (0.8 per weight) vs b, c with 1 each: a still preferred */
    for (int k = 0; k < 4; k++)
        g.ups.peers[0].conns++;
    g.ups.peers[1].conns = g.ups.peers[2].conns = 1;
    assert_int_equal(sh_upstream_pick(&g.ups, 0, 1, NULL), 0);
    /* a at 5 conns (1.0): ties with b and c */
    int n[3] = {0};
    for (int k = 0; k < 70; k++)
        n[pick_ok(&g, 1, NULL)]++;
    assert_int_equal(n[0], 50);
    assert_int_equal(n[1], 10);
    assert_int_equal(n[2], 10);
    group_close(&g);
}

/* ---- ip_hash */

/* The k-th of a set of scattered /24s (octets from a multiplicative hash:
 * evenly spaced subnets all land on one server with nginx's formula). */
static void subnet(char *out, size_t len, unsigned k)
{
    uint32_t x = (k + 1) * 2654435761u;
    snprintf(out, len, "%u.%u.%u.1", 1 + (x >> 24) % 223, (x >> 16) & 0xff, (x >> 8) & 0xff);
}

static void test_ip_hash(void **state)
{
    (void)state;
    group_t g;
    group_open(&g, "ip_hash; server 127.0.0.1:9001; server 127.0.0.1:9002; "
                   "server 127.0.0.1:9003; server 127.0.0.1:9004;");
    fake_t f;
    int first = pick_ok(&g, 1, req_ip(&f, "10.20.30.40"));
    for (int k = 0; k < 20; k++)
        assert_int_equal(pick_ok(&g, 1, req_ip(&f, "10.20.30.40")), first);
    /* the whole /24 goes to one server */
    char ip[32];
    for (int k = 0; k < 256; k += 17) {
        snprintf(ip, sizeof(ip), "10.20.30.%d", k);
        assert_int_equal(pick_ok(&g, 1, req_ip(&f, ip)), first);
    }
    /* nginx's formula, by hand: hash = 89, (hash * 113 + octet) % 6271 */
    unsigned h = 89;
    h = (h * 113 + 10) % 6271;
    h = (h * 113 + 20) % 6271;
    h = (h * 113 + 30) % 6271;
    assert_int_equal(first, (int)(h % 4));
    /* different /24s spread over every server */
    int seen[4] = {0};
    for (int k = 0; k < 64; k++) {
        subnet(ip, sizeof(ip), (unsigned)k);
        seen[pick_ok(&g, 1, req_ip(&f, ip))]++;
    }
    for (int k = 0; k < 4; k++)
        assert_true(seen[k] > 0);
    /* IPv6: the whole address */
    int v6 = pick_ok(&g, 1, req_ip(&f, "2001:db8::1"));
    for (int k = 0; k < 10; k++)
        assert_int_equal(pick_ok(&g, 1, req_ip(&f, "2001:db8::1")), v6);
    int v6seen[4] = {0};
    for (int k = 0; k < 64; k++) {
        snprintf(ip, sizeof(ip), "2001:db8::%x", k + 1);
        v6seen[pick_ok(&g, 1, req_ip(&f, ip))]++;
    }
    int used = 0;
    for (int k = 0; k < 4; k++)
        used += v6seen[k] > 0;
    assert_true(used >= 3); /* the last bytes count: they spread */
    /* the client's server goes out: it rehashes elsewhere, and stays there;
     * clients of other servers do not move */
    int other_map[64];
    for (int k = 0; k < 64; k++) {
        subnet(ip, sizeof(ip), (unsigned)k);
        other_map[k] = pick_ok(&g, 1, req_ip(&f, ip));
    }
    int i = sh_upstream_pick(&g.ups, 0, 2, req_ip(&f, "10.20.30.40"));
    sh_upstream_done(&g.ups, i, 1, 2);
    int moved = pick_ok(&g, 3, req_ip(&f, "10.20.30.40"));
    assert_int_not_equal(moved, first);
    for (int k = 0; k < 10; k++)
        assert_int_equal(pick_ok(&g, 4, req_ip(&f, "10.20.30.40")), moved);
    for (int k = 0; k < 64; k++) {
        subnet(ip, sizeof(ip), (unsigned)k);
        if (other_map[k] != first)
            assert_int_equal(pick_ok(&g, 5, req_ip(&f, ip)), other_map[k]);
    }
    /* and comes back after fail_timeout (10s default) */
    assert_int_equal(pick_ok(&g, 2 + 10001, req_ip(&f, "10.20.30.40")), first);
    group_close(&g);
}

/* ---- hash */

static void test_hash_plain(void **state)
{
    (void)state;
    group_t g;
    group_open(&g, "hash $arg_k; server 127.0.0.1:9001; server 127.0.0.1:9002 weight=2; "
                   "server 127.0.0.1:9003;");
    fake_t f;
    int map[1000], n[3] = {0};
    for (unsigned k = 0; k < 1000; k++) {
        map[k] = pick_ok(&g, 1, req_key(&f, k));
        n[map[k]]++;
        assert_int_equal(pick_ok(&g, 1, req_key(&f, k)), map[k]);
    }
    /* by weight: about 1/4, 1/2, 1/4 */
    assert_in_range(n[0], 180, 320);
    assert_in_range(n[1], 400, 600);
    assert_in_range(n[2], 180, 320);
    /* server 1 out: only its keys move */
    unsigned k1 = 0;
    while (map[k1] != 1)
        k1++;
    assert_int_equal(sh_upstream_pick(&g.ups, 0, 2, req_key(&f, k1)), 1);
    sh_upstream_done(&g.ups, 1, 1, 2);
    for (unsigned k = 0; k < 1000; k++) {
        int now = pick_ok(&g, 3, req_key(&f, k));
        if (map[k] != 1)
            assert_int_equal(now, map[k]);
        else
            assert_int_not_equal(now, 1);
    }
    group_close(&g);
}

static void chash_map(const char *body, int *map, unsigned nkeys)
{
    group_t g;
    group_open(&g, body);
    fake_t f;
    for (unsigned k = 0; k < nkeys; k++)
        map[k] = pick_ok(&g, 1, req_key(&f, k));
    group_close(&g);
}

static void test_hash_consistent_movement(void **state)
{
    (void)state;
    enum { NKEYS = 10000 };
    static int before[NKEYS], after[NKEYS];
    /* five servers, then the same without the fourth: ports name servers */
    chash_map("hash $arg_k consistent; server 127.0.0.1:9001; server 127.0.0.1:9002; "
              "server 127.0.0.1:9003; server 127.0.0.1:9004; server 127.0.0.1:9005;",
              before, NKEYS);
    chash_map("hash $arg_k consistent; server 127.0.0.1:9001; server 127.0.0.1:9002; "
              "server 127.0.0.1:9003; server 127.0.0.1:9005;",
              after, NKEYS);
    static const int port_of_before[5] = {9001, 9002, 9003, 9004, 9005};
    static const int port_of_after[4] = {9001, 9002, 9003, 9005};
    int moved = 0, per[5] = {0};
    for (unsigned k = 0; k < NKEYS; k++) {
        int pb = port_of_before[before[k]], pa = port_of_after[after[k]];
        per[before[k]]++;
        if (pb != pa) {
            moved++;
            /* only the removed server's keys move */
            assert_int_equal(pb, 9004);
        }
    }
    print_message("consistent hash: %d of %d keys moved (%.1f%%, ideal 20%%); "
                  "spread %d %d %d %d %d\n",
                  moved, NKEYS, moved * 100.0 / NKEYS, per[0], per[1], per[2], per[3], per[4]);
    assert_int_equal(moved, per[3]);
    assert_in_range(moved, NKEYS * 14 / 100, NKEYS * 26 / 100);
    for (int s = 0; s < 5; s++)
        assert_in_range(per[s], NKEYS * 12 / 100, NKEYS * 28 / 100);

    /* a server going out at runtime moves only its keys, and they come back */
    group_t g;
    group_open(&g, "hash $arg_k consistent; server 127.0.0.1:9001; server 127.0.0.1:9002; "
                   "server 127.0.0.1:9003; server 127.0.0.1:9004; server 127.0.0.1:9005;");
    fake_t f;
    int i = sh_upstream_pick(&g.ups, 0, 100, req_key(&f, 0));
    sh_upstream_done(&g.ups, i, 1, 100);
    for (unsigned k = 0; k < 2000; k++) {
        int now = pick_ok(&g, 101, req_key(&f, k));
        if (before[k] != before[0])
            assert_int_equal(now, before[k]);
        else
            assert_int_not_equal(now, before[0]);
    }
    for (unsigned k = 0; k < 2000; k++)
        assert_int_equal(pick_ok(&g, 100 + 10001 + k, req_key(&f, k)), before[k]);
    group_close(&g);
}

/* ---- random */

static void test_random(void **state)
{
    (void)state;
    group_t g;
    group_open(&g, "random; server 127.0.0.1:9001 weight=3; server 127.0.0.1:9002;");
    int n[2] = {0};
    for (int k = 0; k < 10000; k++)
        n[pick_ok(&g, 1, NULL)]++;
    assert_in_range(n[0], 7000, 8000);
    group_close(&g);

    /* two: of two distinct draws, the one with fewer connections */
    group_open(&g, "random two least_conn; server 127.0.0.1:9001; server 127.0.0.1:9002; "
                   "server 127.0.0.1:9003;");
    g.ups.peers[1].conns = 5;
    int m[3] = {0};
    for (int k = 0; k < 3000; k++)
        m[pick_ok(&g, 1, NULL)]++;
    assert_int_equal(m[1], 0); /* the loaded server never wins a pair */
    assert_in_range(m[0], 1200, 1800);
    g.ups.peers[1].conns = 0;
    group_close(&g);

    group_open(&g, "random two; server 127.0.0.1:9001; server 127.0.0.1:9002;");
    g.ups.peers[0].conns = 1;
    for (int k = 0; k < 100; k++)
        assert_int_equal(pick_ok(&g, 1, NULL), 1);
    g.ups.peers[0].conns = 0;
    /* a failed server is never drawn while out */
    sh_upstream_done(&g.ups, sh_upstream_pick(&g.ups, 2, 5, NULL), 1, 5);
    for (int k = 0; k < 100; k++)
        assert_int_equal(pick_ok(&g, 6, NULL), 1);
    group_close(&g);
}

/* ---- configuration */

static void expect_error(const char *body, const char *want)
{
    sh_runtime_t *rt = NULL;
    char err[SH_CONF_ERRLEN] = "";
    int rc = load_text(body, &rt, err, -1);
    if (rc == 0) {
        sh_runtime_destroy(rt);
        fail_msg("loaded, wanted \"%s\"", want);
    }
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\", wanted \"%s\"", err, want);
}

static void test_config(void **state)
{
    (void)state;
    /* backup with a method that has none: refused at the backup's line,
     * whichever comes first */
    expect_error("ip_hash;\nserver 127.0.0.1:1;\nserver 127.0.0.1:2 backup;",
                 "test.conf:6: balancing method does not support parameter \"backup\"");
    expect_error("server 127.0.0.1:1;\nserver 127.0.0.1:2 backup;\nhash $arg_k consistent;",
                 "test.conf:5: balancing method does not support parameter \"backup\"");
    expect_error("random two;\nserver 127.0.0.1:1 backup;", "balancing method does not support");
    expect_error("hash $nope_nope; server 127.0.0.1:1;", "nope_nope");
    expect_error("hash $arg_k sideways; server 127.0.0.1:1;",
                 "test.conf:4: invalid parameter \"sideways\"");
    expect_error("random three; server 127.0.0.1:1;", "invalid parameter \"three\"");
    expect_error("random two most_conn; server 127.0.0.1:1;", "invalid parameter \"most_conn\"");
    expect_error("least_conn x; server 127.0.0.1:1;", "invalid number of arguments");

    /* least_conn keeps backups; a redefined method warns (as nginx) and the
     * last one wins */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    sh_runtime_t *rt = NULL;
    char err[SH_CONF_ERRLEN] = "";
    int rc = load_text("random;\nserver 127.0.0.1:1;\nserver 127.0.0.1:2;\nleast_conn;\n"
                       "server 127.0.0.1:3 backup;",
                       &rt, err, fds[1]);
    close(fds[1]);
    char warn[1024] = "";
    ssize_t n = read(fds[0], warn, sizeof(warn) - 1);
    close(fds[0]);
    assert_int_equal(rc, 0);
    assert_true(n > 0);
    assert_non_null(strstr(warn, "test.conf:7: load balancing method redefined"));
    sh_ups_rt_t ups;
    sh_upstream_rt_init(&ups, find_u(rt));
    assert_string_equal(ups.ops->name, "least_conn");
    sh_upstream_rt_dispose(&ups);
    sh_runtime_destroy(rt);
}

int main(void)
{
    sh_log_set_level(SH_LOG_ERR); /* "temporarily disabled" warnings are expected */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rr_smooth_sequence),
        cmocka_unit_test(test_rr_split_322),
        cmocka_unit_test(test_rr_down_and_tried),
        cmocka_unit_test(test_max_fails_fail_timeout),
        cmocka_unit_test(test_all_down_and_single),
        cmocka_unit_test(test_backup),
        cmocka_unit_test(test_max_conns),
        cmocka_unit_test(test_least_conn),
        cmocka_unit_test(test_ip_hash),
        cmocka_unit_test(test_hash_plain),
        cmocka_unit_test(test_hash_consistent_movement),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
