/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The push-pull frame reader (ppframe.h, issue 15): round trips in both
 * formats and in any piece sizes; nothing allocated before a stream head
 * opens and never more than one unopened chunk after; legacy frames grown
 * one step at a time (each step visible to the caller's budget first);
 * every forgery, truncation, reordering and splice refused with its reason;
 * an older node's reader sees a stream frame as a too-large length.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/ppframe.h"
#include "core/alloc.h"
#include "core/err.h"

static sh_keyring_t *kr, *other;

static int setup(void **state)
{
    uint8_t k[SH_KEYRING_KEYLEN];
    memset(k, 0x5a, sizeof(k));
    kr = sh_keyring_create();
    sh_keyring_install(kr, k);
    memset(k, 0xa5, sizeof(k));
    other = sh_keyring_create();
    sh_keyring_install(other, k);
    return 0;
}

static int teardown(void **state)
{
    sh_keyring_destroy(kr);
    sh_keyring_destroy(other);
    return 0;
}

static uint8_t *plaintext(size_t n)
{
    uint8_t *p = sh_malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + (i >> 8));
    return p;
}

/* Feed in pieces of `piece` bytes (0: random sizes); returns the last rc. */
static int feed(sh_ppframe_reader_t *r, const uint8_t *f, size_t n, size_t piece, size_t *taken,
                const char **why)
{
    size_t off = 0;
    int rc = SH_EAGAIN;
    while (off < n && rc == SH_EAGAIN) {
        size_t k = piece ? piece : (size_t)(rand() % 3000) + 1;
        if (k > n - off)
            k = n - off;
        off += sh_ppframe_feed(r, f + off, k, &rc, why);
    }
    *taken = off;
    return rc;
}

static void round_trip(int legacy, size_t n, size_t piece)
{
    uint8_t *pt = plaintext(n), *f = NULL;
    long fl = sh_ppframe_seal(kr, pt, n, legacy, &f);
    assert_true(fl > 0);
    /* extra bytes after the frame are never taken */
    uint8_t *g = sh_malloc((size_t)fl + 10);
    memcpy(g, f, (size_t)fl);
    memset(g + fl, 'x', 10);
    sh_ppframe_reader_t *r = sh_ppframe_reader_create(kr);
    size_t taken = 0;
    const char *why = NULL;
    assert_int_equal(feed(r, g, (size_t)fl + 10, piece, &taken, &why), 0);
    assert_int_equal(taken, (size_t)fl);
    assert_int_equal(sh_ppframe_legacy(r), legacy);
    assert_true(sh_ppframe_authenticated(r));
    size_t len = 0;
    const uint8_t *out = sh_ppframe_plaintext(r, &len);
    assert_int_equal(len, n);
    assert_memory_equal(out, pt, n);
    size_t room = 1;
    assert_null(sh_ppframe_buf(r, &room));
    sh_ppframe_reader_destroy(r);
    sh_free(pt);
    sh_free(f);
    sh_free(g);
}

static void test_round_trips(void **state)
{
    size_t sizes[] = {1, 3, 100, 65535, 65536, 65537, 200000, 3 * 65536};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        for (int legacy = 0; legacy < 2; legacy++) {
            round_trip(legacy, sizes[i], 1 << 20);
            round_trip(legacy, sizes[i], 0);
            if (sizes[i] < 1000)
                round_trip(legacy, sizes[i], 1);
        }
}

/* Nothing is allocated before the 54-byte head opens; after it, never more
 * than one chunk's room plus the plaintext opened so far. */
static void test_memory_before_authentication(void **state)
{
    size_t n = 5 * 65536 + 17;
    uint8_t *pt = plaintext(n), *f = NULL;
    long fl = sh_ppframe_seal(kr, pt, n, 0, &f);
    sh_ppframe_reader_t *r = sh_ppframe_reader_create(kr);
    int rc = SH_EAGAIN;
    const char *why = NULL;
    size_t off = 0;
    while (off < SH_PPFRAME_HEADLEN - 1) {
        assert_int_equal(sh_ppframe_next_grow(r), 0);
        off += sh_ppframe_feed(r, f + off, 1, &rc, &why);
        assert_int_equal(sh_ppframe_held(r), 0);
        assert_false(sh_ppframe_authenticated(r));
    }
    off += sh_ppframe_feed(r, f + off, 1, &rc, &why);
    assert_int_equal(rc, SH_EAGAIN);
    assert_true(sh_ppframe_authenticated(r));
    assert_int_equal(sh_ppframe_held(r), 0);
    /* the first buffer: one chunk, plus the plaintext it will open to */
    assert_int_equal(sh_ppframe_next_grow(r), 2 * SH_PPFRAME_CHUNK + SH_KEYRING_STREAM_ABYTES);
    while (rc == SH_EAGAIN) {
        /* the growth announced is exactly what buf allocates */
        size_t before = sh_ppframe_held(r), g = sh_ppframe_next_grow(r), room = 0;
        uint8_t *b = sh_ppframe_buf(r, &room);
        assert_int_equal(sh_ppframe_held(r), before + g);
        size_t k = room < 4096 ? room : 4096;
        memcpy(b, f + off, k);
        off += k;
        rc = sh_ppframe_fill(r, k, &why);
        /* one chunk of room, plus plaintext at most twice what has opened
         * and the chunk being read */
        assert_true(sh_ppframe_held(r) <=
                    2 * off + 2 * (SH_PPFRAME_CHUNK + SH_KEYRING_STREAM_ABYTES));
    }
    assert_int_equal(rc, 0);
    assert_int_equal(off, (size_t)fl);
    sh_ppframe_reader_destroy(r);
    sh_free(f);
    sh_free(pt);
}

/* A legacy frame cannot be opened early: it grows as data arrives (at most
 * twice what came, from one step), and the caller sees each growth before
 * it is allocated. */
static void test_legacy_steps(void **state)
{
    uint8_t len[4] = {0x01, 0x00, 0x00, 0x00}; /* 16 MiB announced */
    sh_ppframe_reader_t *r = sh_ppframe_reader_create(kr);
    int rc;
    const char *why = NULL;
    assert_int_equal(sh_ppframe_feed(r, len, 4, &rc, &why), 4);
    assert_int_equal(rc, SH_EAGAIN);
    assert_true(sh_ppframe_legacy(r));
    assert_int_equal(sh_ppframe_held(r), 0);
    uint8_t junk[4096];
    memset(junk, 0x42, sizeof(junk));
    for (size_t sent = 0; sent < 20 * SH_PPFRAME_STEP; sent += sizeof(junk)) {
        size_t g = sh_ppframe_next_grow(r), before = sh_ppframe_held(r);
        sh_ppframe_feed(r, junk, sizeof(junk), &rc, &why);
        assert_int_equal(rc, SH_EAGAIN);
        assert_int_equal(sh_ppframe_held(r), before + g);
        assert_true(sh_ppframe_held(r) <= 2 * sent + SH_PPFRAME_STEP);
    }
    assert_false(sh_ppframe_authenticated(r));
    sh_ppframe_reader_destroy(r);
}

static void expect_refused(const uint8_t *f, size_t n, int want_rc, const char *want_why)
{
    sh_ppframe_reader_t *r = sh_ppframe_reader_create(kr);
    size_t taken = 0;
    const char *why = NULL;
    int rc = feed(r, f, n, 0, &taken, &why);
    assert_int_equal(rc, want_rc);
    assert_non_null(why);
    assert_string_equal(why, want_why);
    size_t room = 1;
    assert_null(sh_ppframe_buf(r, &room));
    sh_ppframe_reader_destroy(r);
}

static void test_refusals(void **state)
{
    uint8_t b[64];
    memcpy(b, "GET / HTTP/1.1\r\n", 16);
    expect_refused(b, 16, SH_EPARSE, "bad_magic");
    uint8_t big[4] = {0x01, 0x00, 0x00, 0x01}, small[4] = {0, 0, 0, 10};
    expect_refused(big, 4, SH_ELIMIT, "bad_length");
    expect_refused(small, 4, SH_ELIMIT, "bad_length");

    uint8_t *pt = plaintext(200000), *f = NULL, *g = NULL;
    long fl = sh_ppframe_seal(kr, pt, 200000, 0, &f);
    /* the head under a key we do not have, and forged under ours */
    long gl = sh_ppframe_seal(other, pt, 100, 0, &g);
    expect_refused(g, (size_t)gl, SH_ENOENT, "bad_header");
    uint8_t forged[SH_PPFRAME_HEADLEN];
    memcpy(forged, f, sizeof(forged));
    forged[40] ^= 1;
    expect_refused(forged, sizeof(forged), SH_EAUTH, "bad_header");
    /* the key id in the head is authenticated (AD) */
    memcpy(forged, f, sizeof(forged));
    forged[0] = SH_PPFRAME_MAGIC;
    sh_free(g);
    gl = sh_ppframe_seal(other, pt, 100, 0, &g);
    memcpy(g + 1, f + 1, 4); /* our key id on their stream */
    expect_refused(g, (size_t)gl, SH_EAUTH, "bad_header");
    sh_free(g);

    /* a body chunk altered, dropped, or repeated */
    uint8_t *h = sh_memdup(f, (size_t)fl);
    h[SH_PPFRAME_HEADLEN + 70000] ^= 0x80;
    expect_refused(h, (size_t)fl, SH_EAUTH, "bad_chunk");
    size_t c1 = SH_PPFRAME_CHUNK + SH_KEYRING_STREAM_ABYTES;
    memcpy(h, f, (size_t)fl);
    memmove(h + SH_PPFRAME_HEADLEN + c1, h + SH_PPFRAME_HEADLEN + 2 * c1,
            (size_t)fl - SH_PPFRAME_HEADLEN - 2 * c1); /* chunk 2 dropped */
    expect_refused(h, (size_t)fl - c1, SH_EAUTH, "bad_chunk");
    memcpy(h, f, (size_t)fl);
    memcpy(h + SH_PPFRAME_HEADLEN + c1, h + SH_PPFRAME_HEADLEN, c1); /* chunk 1 twice */
    expect_refused(h, (size_t)fl, SH_EAUTH, "bad_chunk");
    /* a chunk spliced from another stream under the same key */
    uint8_t *o = NULL;
    sh_ppframe_seal(kr, pt, 200000, 0, &o);
    memcpy(h, f, (size_t)fl);
    memcpy(h + SH_PPFRAME_HEADLEN + c1, o + SH_PPFRAME_HEADLEN + c1, c1);
    expect_refused(h, (size_t)fl, SH_EAUTH, "bad_chunk");
    sh_free(o);
    sh_free(h);

    /* a truncated stream never completes */
    sh_ppframe_reader_t *r = sh_ppframe_reader_create(kr);
    int rc;
    const char *why = NULL;
    assert_int_equal(sh_ppframe_feed(r, f, (size_t)fl - 1, &rc, &why), (size_t)fl - 1);
    assert_int_equal(rc, SH_EAGAIN);
    size_t len = 1;
    assert_null(sh_ppframe_plaintext(r, &len));
    sh_ppframe_reader_destroy(r);
    sh_free(f);

    /* a legacy frame under another key, and one tampered with */
    gl = sh_ppframe_seal(other, pt, 1000, 1, &g);
    expect_refused(g, (size_t)gl, SH_ENOENT, "bad_envelope");
    sh_free(g);
    gl = sh_ppframe_seal(kr, pt, 1000, 1, &g);
    g[500] ^= 1;
    expect_refused(g, (size_t)gl, SH_EAUTH, "bad_envelope");
    sh_free(g);
    sh_free(pt);
}

/* An older node reads the first 4 bytes as a length: a stream frame must
 * be refused there as too large (and our fallback then sends legacy). */
static void test_older_reader_refuses_stream(void **state)
{
    uint8_t *f = NULL, pt[10] = {3, 1, 2};
    assert_true(sh_ppframe_seal(kr, pt, sizeof(pt), 0, &f) > 0);
    uint32_t n = ((uint32_t)f[0] << 24) | ((uint32_t)f[1] << 16) | ((uint32_t)f[2] << 8) | f[3];
    assert_true(n > SH_PPFRAME_MAX);
    sh_free(f);
    uint8_t *big = NULL;
    assert_int_equal(sh_ppframe_seal(kr, pt, 0, 0, &big), SH_ELIMIT);
    assert_null(big);
}

int main(void)
{
    srand(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_memory_before_authentication),
        cmocka_unit_test(test_legacy_steps),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_older_reader_refuses_stream),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
