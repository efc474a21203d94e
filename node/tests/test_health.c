/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of shared backend health (health.h, health_match.h) and the
 * shared TLS ticket keys (tls_tickets.h):
 * - match blocks: status lists and ranges, `!`, header conditions, body
 *   regexes, the default (2xx/3xx), refused conditions;
 * - the quorum rule, driven by hand-made observation messages: one
 *   failing observer of three is no quorum, two are; a newer word replaces
 *   an older one, an older is ignored; a forgotten node's word goes;
 *   passive failures vote; malformed messages are refused;
 * - rendezvous hashing: deterministic, spread evenly, and a member's
 *   departure moves only the servers it probed;
 * - ticket keys: the wire round trip, newest first, three at most, aged
 *   keys refused, malformed input refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/conf.h"
#include "core/err.h"
#include "node/conn/tls_tickets.h"
#include "node/pipeline/node.h"
#include "node/pipeline/runtime.h"
#include "node/proxy/health.h"
#include "node/proxy/health_match.h"
#include "node/proxy/upstream.h"

extern sh_conf_module_t sh_proxy_module;

static sh_conf_module_t *const modules[] = {&sh_core_module, &sh_http_core_module,
                                            &sh_upstream_module, &sh_proxy_module,
                                            &sh_health_module};
#define NMODULES (sizeof(modules) / sizeof(modules[0]))

/* ---- match */

static sh_hc_match_t *match_of(const char *body, char *err)
{
    char text[2048];
    snprintf(text, sizeof(text), "match m {\n%s\n}\n", body);
    sh_conf_doc_t *doc = NULL;
    char perr[SH_CONF_ERRLEN];
    assert_int_equal(sh_conf_parse_buffer("t.conf", text, strlen(text), NULL, &doc, perr), 0);
    sh_hc_match_t *m = sh_hc_match_build("m", sh_conf_doc_root(doc)->child, err, SH_CONF_ERRLEN);
    sh_conf_doc_destroy(doc);
    return m;
}

static int passes(const sh_hc_match_t *m, const char *resp)
{
    char why[128];
    return sh_hc_match_test(m, resp, strlen(resp), why, sizeof(why));
}

#define R200                                                                                       \
    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Ready: yes\r\nContent-Length: 5\r\n\r\nhello"
#define R302 "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n"
#define R503 "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"

static void test_match(void **state)
{
    (void)state;
    char err[SH_CONF_ERRLEN];
    /* default: 2xx and 3xx */
    assert_true(passes(NULL, R200));
    assert_true(passes(NULL, R302));
    assert_false(passes(NULL, R503));
    assert_false(passes(NULL, "garbage"));
    assert_false(passes(NULL, ""));

    sh_hc_match_t *m = match_of("status 200 204;", err);
    assert_non_null(m);
    assert_true(passes(m, R200));
    assert_false(passes(m, R302));
    sh_hc_match_destroy(m);

    m = match_of("status ! 500-599;", err);
    assert_true(passes(m, R200) && passes(m, R302));
    assert_false(passes(m, R503));
    sh_hc_match_destroy(m);

    m = match_of("status 200-399; header Content-Type ~ \"^text/\"; header X-Ready = yes;"
                 "header ! X-Bad; body ~ \"hel+o\";",
                 err);
    assert_non_null(m);
    assert_true(passes(m, R200));
    assert_false(passes(m, R302)); /* no Content-Type */
    sh_hc_match_destroy(m);

    m = match_of("header X-Ready != yes;", err);
    assert_false(passes(m, R200));
    sh_hc_match_destroy(m);
    m = match_of("body !~ hello;", err);
    assert_false(passes(m, R200));
    assert_true(passes(m, R503));
    sh_hc_match_destroy(m);
    m = match_of("header Location;", err);
    assert_true(passes(m, R302));
    assert_false(passes(m, R200));
    sh_hc_match_destroy(m);

    /* the body tested stops at Content-Length */
    m = match_of("body !~ trailing;", err);
    assert_true(passes(m, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhitrailing"));
    sh_hc_match_destroy(m);

    /* refused */
    assert_null(match_of("status 99;", err));
    assert_null(match_of("status 300-200;", err));
    assert_null(match_of("status;", err));
    assert_null(match_of("header A ?? b;", err));
    assert_null(match_of("body hello;", err));
    assert_null(match_of("body ~ \"(\";", err));
    assert_null(match_of("require $x;", err));
    assert_non_null(strstr(err, "require"));
    assert_null(match_of("nonsense;", err));
}

/* ---- quorum, on a loaded configuration */

static sh_runtime_t *load(const char *loc_extra, const char **server_out)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "events { }\n"
             "http {\n"
             "    upstream u { server 127.0.0.1:19001; server 127.0.0.1:19002; }\n"
             "    server { listen 127.0.0.1:18080;\n"
             "        location / { proxy_pass http://u; health_check %s; } }\n"
             "}\n",
             loc_extra);
    sh_runtime_t *rt = NULL;
    char err[SH_CONF_ERRLEN] = "";
    if (sh_runtime_load(NULL, "test.conf", text, "", modules, NMODULES, -1, &rt, err) != 0)
        fail_msg("load failed: %s", err);
    *server_out = "127.0.0.1:19001";
    return rt;
}

static const sh_ups_server_t *server0(sh_runtime_t *rt)
{
    sh_http_main_t *m = sh_http_main(rt->main_confs);
    const sh_upstream_main_t *um = sh_http_main_conf(m, &sh_upstream_module);
    return &um->ups[0]->servers[0];
}

static uint64_t seqs = 1000;

/* A message of node `from` about server s: active (SH_HC_*), passive. */
static size_t msg_part(uint8_t *out, const char *from, const char *ups, const char *srv, int active,
                       int passive, uint64_t seq, unsigned part, unsigned parts);

static size_t msg(uint8_t *out, const char *from, const char *ups, const char *srv, int active,
                  int passive, uint64_t seq)
{
    return msg_part(out, from, ups, srv, active, passive, seq, 0, 1);
}

static size_t msg_part(uint8_t *out, const char *from, const char *ups, const char *srv, int active,
                       int passive, uint64_t seq, unsigned part, unsigned parts)
{
    size_t nl = strlen(from), o = 0;
    out[o++] = (uint8_t)nl;
    memcpy(out + o, from, nl);
    o += nl;
    out[o++] = 'H';
    out[o++] = 2;
    out[o++] = 1;
    out[o++] = 0;
    for (int i = 0; i < 8; i++)
        out[o++] = (uint8_t)(seq >> (8 * i));
    out[o++] = (uint8_t)part;
    out[o++] = (uint8_t)parts;
    char key[256];
    int kl = snprintf(key, sizeof(key), "%s/%s", ups, srv);
    uint64_t kh = sh_hc_hash(key, (size_t)kl);
    for (int i = 0; i < 8; i++)
        out[o++] = (uint8_t)(kh >> (8 * i));
    out[o++] = (uint8_t)active;
    out[o++] = (uint8_t)((passive ? 1 : 0) | 2);
    return o;
}

static void say(const char *from, const char *srv, int active, int passive)
{
    uint8_t b[256];
    size_t n = msg(b, from, "u", srv, active, passive, ++seqs);
    assert_true(sh_health_merge_remote(b, n) >= 0);
}

static void test_quorum(void **state)
{
    (void)state;
    const char *srv;
    sh_runtime_t *rt = load("probers=3", &srv);
    const sh_ups_server_t *s = server0(rt);
    assert_non_null(s->hc);
    sh_health_set_self("n1");
    const char *members[] = {"n1", "n2", "n3"};
    sh_health_set_members(members, 3);
    assert_false(sh_hc_out(s->hc));

    say("n2", srv, SH_HC_DOWN, 0);
    assert_false(sh_hc_out(s->hc)); /* 1 of 3: a bad link of n2's */
    say("n3", srv, SH_HC_DOWN, 0);
    assert_true(sh_hc_out(s->hc)); /* 2 of 3: a quorum */
    say("n3", srv, SH_HC_UP, 0);
    assert_false(sh_hc_out(s->hc));

    /* an older word of n3 is ignored */
    uint8_t b[256];
    size_t n = msg(b, "n3", "u", srv, SH_HC_DOWN, 0, 5);
    assert_int_equal(sh_health_merge_remote(b, n), 0);
    assert_false(sh_hc_out(s->hc));

    /* passive failures vote too */
    say("n3", srv, SH_HC_UNKNOWN, 1);
    assert_true(sh_hc_out(s->hc));
    /* a node that left: its word goes */
    sh_health_forget("n3");
    assert_false(sh_hc_out(s->hc));
    /* a word from a non-member does not count */
    say("n9", srv, SH_HC_DOWN, 0);
    assert_false(sh_hc_out(s->hc));
    /* the other server is untouched */
    say("n3", srv, SH_HC_DOWN, 0);
    assert_true(sh_hc_out(s->hc));
    const sh_ups_server_t *s1 = s + 1;
    assert_false(sh_hc_out(s1->hc));

    /* the JSON view names the probers and the words */
    sh_buf_t jb = {0};
    sh_hc_json(s->hc, &jb);
    sh_buf_append(&jb, "", 1);
    assert_non_null(strstr(jb.data, "\"cluster\":\"down\""));
    assert_non_null(strstr(jb.data, "\"node\":\"n2\""));
    assert_non_null(strstr(jb.data, "\"probers\":3"));
    sh_buf_dispose(&jb);

    /* a word split in parts: a part covers only its servers (key hash mod
     * parts), and n2's word on other parts stays */
    {
        char key[64];
        int kl = snprintf(key, sizeof(key), "u/%s", srv);
        unsigned mine = (unsigned)(sh_hc_hash(key, (size_t)kl) % 3);
        uint8_t pb[256];
        size_t pn = msg_part(pb, "n2", "u", srv, SH_HC_UP, 0, ++seqs, (mine + 1) % 3, 3);
        assert_int_equal(sh_health_merge_remote(pb, pn), 1);
        assert_true(sh_hc_out(s->hc)); /* n2's DOWN on our server's part stands */
        pn = msg_part(pb, "n2", "u", srv, SH_HC_UP, 0, ++seqs, mine, 3);
        assert_int_equal(sh_health_merge_remote(pb, pn), 1);
        assert_false(sh_hc_out(s->hc)); /* n2 now says UP: 1 of 3 down */
        pn = msg_part(pb, "n2", "u", srv, SH_HC_DOWN, 0, ++seqs, mine, 3);
        assert_int_equal(sh_health_merge_remote(pb, pn), 1);
        assert_true(sh_hc_out(s->hc));
        /* a straggler of an older split (2 parts, an older seq) is ignored */
        unsigned m2 = (unsigned)(sh_hc_hash(key, (size_t)kl) % 2);
        pn = msg_part(pb, "n2", "u", srv, SH_HC_UP, 0, seqs - 2, m2, 2);
        assert_int_equal(sh_health_merge_remote(pb, pn), 0);
        assert_true(sh_hc_out(s->hc));
        /* a newer word in one part replaces them all */
        pn = msg_part(pb, "n2", "u", srv, SH_HC_DOWN, 0, ++seqs, 0, 1);
        assert_int_equal(sh_health_merge_remote(pb, pn), 1);
        assert_true(sh_hc_out(s->hc));
    }

    /* malformed */
    assert_int_equal(sh_health_merge_remote(b, 0), SH_EPARSE);
    assert_int_equal(sh_health_merge_remote(b, n - 1), SH_EPARSE);
    uint8_t bad[256];
    memcpy(bad, b, n);
    bad[1 + 2] = 'X'; /* magic */
    assert_int_equal(sh_health_merge_remote(bad, n), SH_EPARSE);
    memcpy(bad, b, n);
    bad[n - 2] = 7; /* state */
    assert_int_equal(sh_health_merge_remote(bad, n), SH_EPARSE);
    memcpy(bad, b, n);
    bad[1 + 2 + 12] = 1; /* part 1 of 1 */
    assert_int_equal(sh_health_merge_remote(bad, n), SH_EPARSE);
    memcpy(bad, b, n);
    bad[0] = 200; /* name longer than the message */
    assert_int_equal(sh_health_merge_remote(bad, n), SH_EPARSE);

    /* alone again: no word of others counts, nothing is out */
    sh_health_forget("n2");
    sh_health_forget("n3");
    sh_health_set_members(NULL, 0);
    assert_false(sh_hc_out(s->hc));
    sh_runtime_destroy(rt);
}

static void test_quorum_setting(void **state)
{
    (void)state;
    const char *srv;
    sh_runtime_t *rt = load("probers=3 quorum=1", &srv);
    const sh_ups_server_t *s = server0(rt);
    sh_health_set_self("n1");
    const char *members[] = {"n1", "n2", "n3"};
    sh_health_set_members(members, 3);
    say("n2", srv, SH_HC_DOWN, 0);
    assert_true(sh_hc_out(s->hc)); /* quorum=1: one observer suffices */
    sh_health_forget("n2");
    sh_health_set_members(NULL, 0);
    sh_runtime_destroy(rt);

    /* mandatory: out until a prober says it passed */
    rt = load("probers=2 mandatory", &srv);
    s = server0(rt);
    sh_health_set_members(members, 3);
    assert_true(sh_hc_out(s->hc));
    say("n2", srv, SH_HC_UP, 0);
    say("n3", srv, SH_HC_UP, 0);
    assert_false(sh_hc_out(s->hc));
    sh_health_forget("n2");
    sh_health_forget("n3");
    sh_health_set_members(NULL, 0);
    sh_runtime_destroy(rt);
}

/* ---- rendezvous */

static void top2(uint64_t kh, const char *const *m, size_t n, int *a, int *b)
{
    *a = *b = -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t s = sh_hc_rendezvous(kh, m[i]);
        if (*a < 0 || s > sh_hc_rendezvous(kh, m[*a])) {
            *b = *a;
            *a = (int)i;
        } else if (*b < 0 || s > sh_hc_rendezvous(kh, m[*b])) {
            *b = (int)i;
        }
    }
}

static void test_rendezvous(void **state)
{
    (void)state;
    const char *m9[] = {"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"};
    int count[9] = {0};
    int moved = 0, kept = 0;
    for (int k = 0; k < 3000; k++) {
        char key[64];
        int kl = snprintf(key, sizeof(key), "u/10.0.%d.%d:80", k / 250, k % 250);
        uint64_t kh = sh_hc_hash(key, (size_t)kl);
        assert_int_equal(sh_hc_rendezvous(kh, "n3"), sh_hc_rendezvous(kh, "n3"));
        int a, b;
        top2(kh, m9, 9, &a, &b);
        count[a]++;
        count[b]++;
        /* n8 leaves: servers it did not probe keep their probers */
        int a2, b2;
        top2(kh, m9, 8, &a2, &b2);
        if (a != 8 && b != 8) {
            assert_true((a2 == a && b2 == b) || (a2 == b && b2 == a));
            kept++;
        } else {
            moved++;
        }
    }
    for (int i = 0; i < 9; i++) /* 6000 picks over 9: ~667 each */
        assert_true(count[i] > 500 && count[i] < 850);
    assert_true(moved > 450 && moved < 900); /* ~2/9 of the servers */
    assert_true(kept > 2000);
}

/* ---- ticket keys */

static uint64_t wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t key_msg(uint8_t *out, const uint8_t *names, const uint64_t *created, size_t n)
{
    size_t o = 0;
    out[o++] = 'K';
    out[o++] = 1;
    out[o++] = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        memset(out + o, names[i], 16);
        memset(out + o + 16, 0x11, 64);
        for (int b = 0; b < 8; b++)
            out[o + 80 + b] = (uint8_t)(created[i] >> (8 * b));
        out[o + 88] = 2;
        memcpy(out + o + 89, "nx", 2);
        o += 91;
    }
    return o;
}

static void test_ticket_keys(void **state)
{
    (void)state;
    sh_tls_tickets_note_timeout(60000); /* period 1 min */
    assert_int_equal(sh_tls_tickets_period(), 60000);
    uint64_t now = wall();
    uint8_t b[1024];
    uint8_t names[] = {1, 2, 3, 4};
    uint64_t created[] = {now - 1000, now - 70000, now - 130000, now - 200000};
    size_t n = key_msg(b, names, created, 4);
    assert_int_equal(sh_tls_tickets_merge(b, n), 1);
    sh_tls_shared_key_t ks[SH_TLS_TICKET_KEYS + 1];
    size_t got = sh_tls_tickets_list(ks, 4, now);
    assert_int_equal(got, 3);           /* the 200 s old one aged out (3 x 60 s) */
    assert_int_equal(ks[0].name[0], 1); /* newest first */
    assert_int_equal(ks[2].name[0], 3);
    assert_string_equal(ks[0].origin, "nx");
    assert_int_equal(sh_tls_tickets_merge(b, n), 0); /* nothing new */

    /* round trip */
    uint64_t v;
    size_t len;
    uint8_t *enc = sh_tls_tickets_encode(&len, &v);
    assert_int_equal(len, 3 + 3 * 91);
    assert_int_equal(sh_tls_tickets_merge(enc, len), 0);
    sh_free(enc);

    /* a newer key pushes the oldest out */
    uint8_t n5[] = {5};
    uint64_t c5[] = {now};
    n = key_msg(b, n5, c5, 1);
    assert_int_equal(sh_tls_tickets_merge(b, n), 1);
    got = sh_tls_tickets_list(ks, 4, now);
    assert_int_equal(got, 3);
    assert_int_equal(ks[0].name[0], 5);
    assert_int_equal(ks[2].name[0], 2);

    /* malformed */
    assert_int_equal(sh_tls_tickets_merge(b, 2), SH_EPARSE);
    assert_int_equal(sh_tls_tickets_merge(b, n - 1), SH_EPARSE);
    b[0] = 'X';
    assert_int_equal(sh_tls_tickets_merge(b, n), SH_EPARSE);
    b[0] = 'K';
    b[3 + 88] = 100; /* origin longer than the message */
    assert_int_equal(sh_tls_tickets_merge(b, n), SH_EPARSE);

    /* rotation: not due while the newest is young; due a period later */
    sh_tls_tickets_set_maker(1, "self");
    assert_int_equal(sh_tls_tickets_rotate(now), 0);
    assert_int_equal(sh_tls_tickets_rotate(now + 60001), 1);
    got = sh_tls_tickets_list(ks, 4, now + 60001);
    assert_string_equal(ks[0].origin, "self");
    /* a non-maker waits a grace longer */
    sh_tls_tickets_set_maker(0, "self");
    assert_int_equal(sh_tls_tickets_rotate(now + 120002), 0);
    assert_int_equal(sh_tls_tickets_rotate(now + 130003), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),          cmocka_unit_test(test_quorum),
        cmocka_unit_test(test_quorum_setting), cmocka_unit_test(test_rendezvous),
        cmocka_unit_test(test_ticket_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
