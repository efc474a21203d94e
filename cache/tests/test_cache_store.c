/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the cache store (cache.h, issue 12): fill / lookup / abort,
 * streaming bodies in chunks, restart, eviction by max_size and inactive
 * (virtual clock), purge by key / prefix / tag and nothing else, soft purge,
 * a purge dropping a fill begun before it, a full map degrading with a log
 * line, a kill -9 during fills leaving a store that opens and serves, and
 * lookups racing fills on several threads. Each test uses its own directory
 * under $TMPDIR and removes it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/cache_internal.h"
#include "core/err.h"
#include "core/log.h"

static _Atomic int64_t vclock = 1700000000000;

static int64_t test_clock(void *arg)
{
    (void)arg;
    return atomic_load(&vclock);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

typedef struct {
    char dir[256];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/shcacheXXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static sh_cache_conf_t conf_of(const fixture *f)
{
    sh_cache_conf_t cf = {0};
    cf.path = f->dir;
    /* A zone per test: one that fails without releasing spoils no other. */
    cf.zone = strrchr(f->dir, '/') + 1;
    cf.zone_size = 1 << 20;
    cf.loader_sleep = 1;
    cf.clock = test_clock;
    return cf;
}

static sh_cache_t *open_ok(const sh_cache_conf_t *cf)
{
    sh_cache_t *c = NULL;
    assert_int_equal(sh_cache_open(cf, &c), 0);
    assert_non_null(c);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    return c;
}

/* The body of key k: bytes derived from the key, so a body can be checked
 * against its key after a crash. */
static void body_of(const char *k, uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (const char *s = k; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    for (size_t i = 0; i < n; i++) {
        h = h * 1103515245u + 12345u;
        p[i] = (uint8_t)(h >> 16);
    }
}

static int fill_tags(sh_cache_t *c, const char *key, size_t len, const char *const *tags,
                     size_t ntags)
{
    sh_cache_field_t fl[2] = {{"content-type", 12, "text/plain", 10}, {"x-a", 3, "b", 1}};
    size_t tl[8];
    for (size_t i = 0; i < ntags; i++)
        tl[i] = strlen(tags[i]);
    sh_cache_meta_t m = {.status = 200,
                         .fields = fl,
                         .nfields = 2,
                         .stored_at = atomic_load(&vclock),
                         .valid_until = atomic_load(&vclock) + 60000,
                         .stale_while_revalidate = -1,
                         .stale_if_error = 5000,
                         .etag = "\"e1\"",
                         .etag_len = 4,
                         .last_modified = -1,
                         .tags = tags,
                         .tag_len = tl,
                         .ntags = ntags};
    sh_cache_fill_t *f;
    int rc = sh_cache_fill_begin(c, key, strlen(key), &m, &f);
    if (rc < 0)
        return rc;
    uint8_t *b = malloc(len ? len : 1);
    body_of(key, b, len);
    /* Odd-sized pieces, as a response streams. */
    for (size_t off = 0; off < len;) {
        size_t n = len - off < 7001 ? len - off : 7001;
        sh_cache_fill_append(f, b + off, n);
        off += n;
    }
    free(b);
    return sh_cache_fill_commit(f, NULL, NULL);
}

static int fill(sh_cache_t *c, const char *key, size_t len)
{
    return fill_tags(c, key, len, NULL, 0);
}

/* 1 when key is a hit with its full, right body; 0 on a miss. */
static int check_hit(sh_cache_t *c, const char *key, size_t len)
{
    sh_cache_hit_t *h;
    int rc = sh_cache_lookup(c, key, strlen(key), SH_CACHE_LOOKUP_NOCOUNT, &h, NULL);
    if (rc == SH_ENOENT)
        return 0;
    assert_int_equal(rc, 0);
    const sh_cache_meta_t *m = sh_cache_hit_meta(h);
    assert_int_equal(m->status, 200);
    assert_int_equal(m->body_len, len);
    uint8_t *want = malloc(len + 1), *got = malloc(len + 1);
    body_of(key, want, len);
    size_t have;
    const void *first = sh_cache_hit_body(h, &have);
    assert_true(have <= len);
    if (have)
        assert_memory_equal(first, want, have);
    size_t off = 0;
    while (off < len) {
        long n = sh_cache_hit_read(h, off, got + off, 10000);
        assert_true(n > 0);
        off += (size_t)n;
    }
    assert_int_equal(sh_cache_hit_read(h, len, got, 10), 0);
    if (len)
        assert_memory_equal(got, want, len);
    free(want);
    free(got);
    sh_cache_hit_free(h);
    return 1;
}

static void test_fill_lookup_abort(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    sh_cache_t *c = open_ok(&cf);
    sh_cache_hit_t *h;
    uint32_t uses = 0;
    assert_int_equal(sh_cache_lookup(c, "k1", 2, 0, &h, &uses), SH_ENOENT);
    assert_int_equal(uses, 1);
    assert_int_equal(sh_cache_lookup(c, "k1", 2, 0, &h, &uses), SH_ENOENT);
    assert_int_equal(uses, 2); /* min_uses counting */

    const char *tags[] = {"t1", "t2"};
    assert_int_equal(fill_tags(c, "k1", 1024, tags, 2), 0);
    assert_int_equal(fill(c, "big", 300000), 0); /* 5 chunks */
    assert_int_equal(fill(c, "empty", 0), 0);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    assert_true(check_hit(c, "k1", 1024));
    assert_true(check_hit(c, "big", 300000));
    assert_true(check_hit(c, "empty", 0));

    assert_int_equal(sh_cache_lookup(c, "k1", 2, 0, &h, &uses), 0);
    const sh_cache_meta_t *m = sh_cache_hit_meta(h);
    assert_int_equal(m->nfields, 2);
    assert_memory_equal(m->fields[0].name, "content-type", 12);
    assert_int_equal(m->ntags, 2);
    assert_memory_equal(m->tags[1], "t2", 2);
    assert_int_equal(m->etag_len, 4);
    assert_int_equal(m->stale_if_error, 5000);
    assert_int_equal(m->stale_while_revalidate, -1);
    sh_cache_hit_free(h);

    /* A range read in the middle of a chunked body. */
    assert_int_equal(sh_cache_lookup(c, "big", 3, SH_CACHE_LOOKUP_NOBODY, &h, NULL), 0);
    size_t have;
    sh_cache_hit_body(h, &have);
    assert_int_equal(have, 0);
    uint8_t want[300000], got[5000];
    body_of("big", want, sizeof(want));
    assert_int_equal(sh_cache_hit_read(h, 131000, got, sizeof(got)), (long)sizeof(got));
    assert_memory_equal(got, want + 131000, sizeof(got));
    sh_cache_hit_free(h);

    /* An aborted fill (streamed past a chunk) leaves nothing: no entry, no
     * chunk, and a pending fill is invisible until commit. */
    uint64_t chunks0, entries0, chunks1, entries1;
    sh_cache__records(c, &chunks0, &entries0);
    sh_cache_meta_t mm = {
        .status = 200, .stale_while_revalidate = -1, .stale_if_error = -1, .last_modified = -1};
    sh_cache_fill_t *f;
    assert_int_equal(sh_cache_fill_begin(c, "ab", 2, &mm, &f), 0);
    for (int i = 0; i < 30; i++)
        assert_int_equal(sh_cache_fill_append(f, want, 10000), 0);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    assert_int_equal(sh_cache_lookup(c, "ab", 2, 0, &h, NULL), SH_ENOENT);
    sh_cache__records(c, &chunks1, &entries1);
    assert_true(chunks1 > chunks0); /* streamed already */
    sh_cache_fill_abort(f);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    assert_int_equal(sh_cache_lookup(c, "ab", 2, 0, &h, NULL), SH_ENOENT);
    sh_cache__records(c, &chunks1, &entries1);
    assert_int_equal(chunks1, chunks0);
    assert_int_equal(entries1, entries0);

    /* Replacing an entry: the new one wins. */
    assert_int_equal(fill(c, "k1", 5), 0);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    assert_true(check_hit(c, "k1", 5));

    sh_cache_stats_t st;
    sh_cache_stats(c, &st);
    assert_int_equal(st.fills, 4);
    assert_int_equal(st.entries, 3);
    /* Bad arguments. */
    assert_int_equal(sh_cache_fill_begin(c, "", 0, &mm, &f), SH_EINVAL);
    mm.status = 0;
    assert_int_equal(sh_cache_fill_begin(c, "x", 1, &mm, &f), SH_EINVAL);
    sh_cache_release(c);
}

typedef struct {
    sh_cache_t *c[16];
    size_t n;
} taken;

static void take_ref(sh_cache_t *c, void *arg)
{
    taken *t = arg;
    if (t->n < 16)
        t->c[t->n++] = sh_cache_ref(c);
}

static void test_restart_keeps_entries(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    cf.loader_files = 7; /* several loader rounds */
    sh_cache_t *c = open_ok(&cf);
    char k[64];
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "http://h/r/%d", i);
        assert_int_equal(fill(c, k, (size_t)(i % 5 == 0 ? 150000 : 100 + i)), 0);
    }
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    /* A second open of the same path and zone shares the store. */
    sh_cache_t *c2 = NULL;
    assert_int_equal(sh_cache_open(&cf, &c2), 0);
    assert_ptr_equal(c, c2);
    sh_cache_release(c2);
    sh_cache_conf_t other = cf;
    other.zone = "other";
    assert_int_equal(sh_cache_open(&other, &c2), SH_EEXIST);
    sh_cache_release(c);
    assert_null(sh_cache_find(cf.zone));

    c = open_ok(&cf);
    sh_cache_stats_t st;
    sh_cache_stats(c, &st);
    assert_int_equal(st.entries, 50);
    assert_int_equal(st.loading, 0);
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof(k), "http://h/r/%d", i);
        assert_true(check_hit(c, k, (size_t)(i % 5 == 0 ? 150000 : 100 + i)));
    }
    sh_cache_t *byname = sh_cache_find(cf.zone);
    assert_ptr_equal(byname, c);
    sh_cache_release(byname);
    /* sh_cache_each may take references (no self-deadlock). */
    taken t = {0};
    sh_cache_each(take_ref, &t);
    assert_true(t.n >= 1);
    for (size_t i = 0; i < t.n; i++)
        sh_cache_release(t.c[i]);
    sh_cache_release(c);
}

/* Lookups while the loader runs: hits come from LMDB, uses are counted
 * (min_uses), and keys looked up before the loader reached them are hits
 * after it, too. */
static void test_lookup_while_loading(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    sh_cache_t *c = open_ok(&cf);
    char k[64];
    for (int i = 0; i < 40; i++) {
        snprintf(k, sizeof(k), "wl/%d", i);
        fill(c, k, 100);
    }
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    sh_cache_release(c);
    cf.loader_files = 1;
    cf.loader_sleep = 20; /* about a second of loading */
    assert_int_equal(sh_cache_open(&cf, &c), 0);
    sh_cache_stats_t st;
    sh_cache_stats(c, &st);
    int was_loading = st.loading;
    for (int i = 0; i < 40; i++) {
        snprintf(k, sizeof(k), "wl/%d", i);
        sh_cache_hit_t *h;
        assert_int_equal(sh_cache_lookup(c, k, strlen(k), 0, &h, NULL), 0);
        sh_cache_hit_free(h);
    }
    sh_cache_hit_t *h;
    uint32_t uses = 0;
    assert_int_equal(sh_cache_lookup(c, "wl/new", 6, 0, &h, &uses), SH_ENOENT);
    assert_int_equal(sh_cache_lookup(c, "wl/new", 6, 0, &h, &uses), SH_ENOENT);
    assert_int_equal(uses, 2);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    for (int i = 0; i < 40; i++) {
        snprintf(k, sizeof(k), "wl/%d", i);
        assert_true(check_hit(c, k, 100));
    }
    sh_cache_stats(c, &st);
    assert_int_equal(st.entries, 40);
    if (!was_loading)
        print_message("note: the loader had finished before the first lookup\n");
    sh_cache_release(c);
}

static void test_eviction_max_size(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    cf.max_size = 1 << 20;
    sh_cache_t *c = open_ok(&cf);
    char k[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(k, sizeof(k), "http://h/d/%d", i);
        fill(c, k, i % 10 == 0 ? 80000 : 4000);
        if (i % 100 == 99) {
            assert_int_equal(sh_cache_sync(c, 60000), 0);
            sh_cache_stats_t st;
            sh_cache_stats(c, &st);
            assert_true(st.size <= cf.max_size);
        }
    }
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    sh_cache_stats_t st;
    sh_cache_stats(c, &st);
    assert_true(st.size <= cf.max_size);
    assert_true(st.size > cf.max_size / 2);
    assert_true(st.evictions > 2000);
    assert_int_equal(st.fills, 3000);
    /* Least recently used first: the newest is there, the oldest is not. */
    assert_true(check_hit(c, "http://h/d/2999", 4000));
    assert_false(check_hit(c, "http://h/d/0", 80000));
    /* The store holds what the index says (no leaked chunks). */
    uint64_t chunks, entries;
    sh_cache__records(c, &chunks, &entries);
    assert_int_equal(entries, st.entries);
    sh_cache_release(c);
}

/* The keys_zone holds zone_size / 128 keys: past that, the least recently
 * used go, stored or only counted (min_uses). */
static void test_keys_zone_capacity(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    cf.zone_size = 128 * 50;
    sh_cache_t *c = open_ok(&cf);
    char k[64];
    for (int i = 0; i < 120; i++) {
        snprintf(k, sizeof(k), "kz/%d", i);
        fill(c, k, 100);
    }
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    sh_cache_stats_t st;
    sh_cache_stats(c, &st);
    assert_int_equal(st.index_capacity, 50);
    assert_true(st.index_entries <= 50);
    assert_true(st.entries <= 50);
    assert_true(st.evictions >= 70);
    assert_true(check_hit(c, "kz/119", 100));
    uint64_t chunks, entries;
    sh_cache__records(c, &chunks, &entries);
    assert_int_equal(entries, st.entries);
    /* A scan of unknown keys fills the zone with use counts; the next new
     * key is still counted (min_uses), the oldest count making room. */
    sh_cache_hit_t *h;
    uint32_t uses;
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof(k), "scan/%d", i);
        sh_cache_lookup(c, k, strlen(k), 0, &h, &uses);
    }
    sh_cache_stats(c, &st);
    assert_true(st.index_entries <= 50 + 50 / 8 + 1);
    assert_int_equal(sh_cache_sync(c, 60000), 0); /* the manager trims */
    sh_cache_stats(c, &st);
    assert_true(st.index_entries <= 50);
    assert_int_equal(sh_cache_lookup(c, "kz/x", 4, 0, &h, &uses), SH_ENOENT);
    assert_int_equal(sh_cache_lookup(c, "kz/x", 4, 0, &h, &uses), SH_ENOENT);
    assert_int_equal(uses, 2);
    sh_cache_release(c);
}

static void test_inactive(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    cf.inactive = 10000;
    sh_cache_t *c = open_ok(&cf);
    assert_int_equal(fill(c, "old", 100), 0);
    assert_int_equal(fill(c, "used", 100), 0);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    atomic_fetch_add(&vclock, 6000);
    sh_cache_hit_t *h;
    assert_int_equal(sh_cache_lookup(c, "used", 4, 0, &h, NULL), 0); /* a use */
    sh_cache_hit_free(h);
    atomic_fetch_add(&vclock, 6000);
    assert_int_equal(sh_cache_sync(c, 60000), 0); /* the manager runs after a batch */
    assert_false(check_hit(c, "old", 100));
    assert_true(check_hit(c, "used", 100));
    sh_cache_stats_t st;
    sh_cache_stats(c, &st);
    assert_int_equal(st.expired, 1);
    sh_cache_release(c);
}

static void test_min_free(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    sh_cache_t *c = open_ok(&cf);
    char k[64];
    for (int i = 0; i < 40; i++) {
        snprintf(k, sizeof(k), "mf/%d", i);
        fill(c, k, 10000);
    }
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    sh_cache_stats_t st0, st;
    sh_cache_stats(c, &st0);
    assert_int_equal(st0.evictions, 0);
    /* A reload asks for more free space than any disk has: the store stops
     * growing (held 5% under its size), it does not empty itself. */
    cf.min_free = (uint64_t)1 << 62;
    sh_cache_t *c2;
    assert_int_equal(sh_cache_open(&cf, &c2), 0);
    assert_ptr_equal(c, c2);
    assert_int_equal(sh_cache_sync(c, 60000), 0); /* a manager pass notices */
    for (int i = 40; i < 80; i++) {
        snprintf(k, sizeof(k), "mf/%d", i);
        fill(c, k, 10000);
    }
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    sh_cache_stats(c, &st);
    assert_true(st.size < st0.size);
    assert_true(st.size > st0.size / 2);
    assert_true(st.evictions >= 40);
    assert_true(check_hit(c, "mf/79", 10000));
    sh_cache_release(c2);
    sh_cache_release(c);
}

static void test_purge(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    sh_cache_t *c = open_ok(&cf);
    const char *t12[] = {"t1", "t2"}, *t2[] = {"t2"}, *t3[] = {"t3"};
    char variant[64];
    snprintf(variant, sizeof(variant), "http/a/1%cgzip", SH_CACHE_VARIANT_SEP);
    fill_tags(c, "http/a/1", 100, t12, 2);
    fill_tags(c, variant, 100, t12, 2);
    fill_tags(c, "http/a/10", 100, t2, 1);
    fill_tags(c, "http/a/2", 100, t2, 1);
    fill_tags(c, "http/b/1", 100, t3, 1);
    fill_tags(c, "http/b/2", 200000, t3, 1);
    fill(c, "other", 100);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    uint64_t n = 99;
    /* Key: the key and its variants, not http/a/10. */
    assert_int_equal(sh_cache_purge(c, SH_CACHE_PURGE_KEY, "http/a/1", 8, 0, &n), 0);
    assert_int_equal(n, 2);
    assert_false(check_hit(c, "http/a/1", 100));
    assert_false(check_hit(c, variant, 100));
    assert_true(check_hit(c, "http/a/10", 100));
    assert_true(check_hit(c, "http/a/2", 100));
    /* Tag: every entry with it, nothing else. */
    assert_int_equal(sh_cache_purge(c, SH_CACHE_PURGE_TAG, "t3", 2, 0, &n), 0);
    assert_int_equal(n, 2);
    assert_false(check_hit(c, "http/b/1", 100));
    assert_false(check_hit(c, "http/b/2", 200000));
    assert_true(check_hit(c, "http/a/10", 100));
    assert_true(check_hit(c, "other", 100));
    /* Prefix. */
    assert_int_equal(sh_cache_purge(c, SH_CACHE_PURGE_PREFIX, "http/a/", 7, 0, &n), 0);
    assert_int_equal(n, 2);
    assert_false(check_hit(c, "http/a/10", 100));
    assert_false(check_hit(c, "http/a/2", 100));
    assert_true(check_hit(c, "other", 100));
    assert_int_equal(sh_cache_purge(c, SH_CACHE_PURGE_TAG, "nope", 4, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(sh_cache_purge(c, SH_CACHE_PURGE_KEY, "", 0, 0, &n), SH_EINVAL);
    sh_cache_stats_t st;
    sh_cache_stats(c, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.purged, 6);
    /* A long prefix (past the indexed part of a key). */
    char lk[1200];
    memset(lk, 'x', sizeof(lk) - 1);
    lk[sizeof(lk) - 1] = 0;
    fill(c, lk, 10);
    lk[900] = 'y';
    fill(c, lk, 10);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    assert_int_equal(sh_cache_purge(c, SH_CACHE_PURGE_PREFIX, lk, 901, 0, &n), 0);
    assert_int_equal(n, 1);
    assert_true(check_hit(c, lk, 10) == 0);
    lk[900] = 'x';
    assert_true(check_hit(c, lk, 10));
    sh_cache_release(c);
}

static long sink(void *arg, const void *p, size_t n)
{
    uint8_t **w = arg;
    memcpy(*w, p, n);
    *w += n;
    return (long)n;
}

static long sink_short(void *arg, const void *p, size_t n)
{
    (void)arg;
    (void)p;
    return n > 1000 ? 1000 : (long)n; /* a socket buffer that fills */
}

/* A hit pins its chunked body: purged meanwhile, it stays readable (here
 * through the zero-copy sh_cache_hit_send) until the hit is freed, then the
 * body goes. */
static void test_pin_and_send(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    sh_cache_t *c = open_ok(&cf);
    assert_int_equal(fill(c, "pin", 300000), 0);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    sh_cache_hit_t *h;
    assert_int_equal(sh_cache_lookup(c, "pin", 3, SH_CACHE_LOOKUP_NOBODY, &h, NULL), 0);
    uint64_t n, chunks, entries;
    assert_int_equal(sh_cache_purge(c, SH_CACHE_PURGE_KEY, "pin", 3, 0, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    static uint8_t want[300000], got[300000];
    body_of("pin", want, sizeof(want));
    uint8_t *w = got;
    assert_int_equal(sh_cache_hit_send(h, 0, sizeof(got), sink, &w), (long)sizeof(got));
    assert_memory_equal(got, want, sizeof(got));
    w = got;
    assert_int_equal(sh_cache_hit_send(h, 70000, 5000, sink, &w), 5000);
    assert_memory_equal(got, want + 70000, 5000);
    /* The bytes to the end of chunk 0, then 1000 of chunk 1. */
    assert_int_equal(sh_cache_hit_send(h, 65000, 100000, sink_short, NULL),
                     (long)(h->chunk_size - 65000 + 1000));
    assert_int_equal(sh_cache_hit_send(h, 300000, 10, sink, &w), 0);
    sh_cache__records(c, &chunks, &entries);
    assert_int_equal(entries, 0);
    assert_int_equal(chunks, 5);
    sh_cache_hit_free(h);
    /* Unpinned, the body is deleted after its short grace (bounded wait). */
    for (int i = 0; i < 200; i++) {
        assert_int_equal(sh_cache_sync(c, 60000), 0);
        sh_cache__records(c, &chunks, &entries);
        if (chunks == 0)
            break;
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(chunks, 0);
    sh_cache_release(c);
}

static void test_soft_purge(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    sh_cache_t *c = open_ok(&cf);
    const char *tg[] = {"s"};
    fill_tags(c, "soft/1", 100, tg, 1);
    fill_tags(c, "soft/2", 100000, tg, 1);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    uint64_t n;
    assert_int_equal(sh_cache_purge(c, SH_CACHE_PURGE_TAG, "s", 1, 1, &n), 0);
    assert_int_equal(n, 2);
    assert_true(check_hit(c, "soft/1", 100));
    assert_true(check_hit(c, "soft/2", 100000));
    sh_cache_hit_t *h;
    assert_int_equal(sh_cache_lookup(c, "soft/1", 6, 0, &h, NULL), 0);
    assert_int_equal(sh_cache_hit_meta(h)->valid_until, 0);
    assert_int_equal(sh_cache_hit_meta(h)->ntags, 1);
    sh_cache_hit_free(h);
    /* Still reachable by tag after the rewrite. */
    assert_int_equal(sh_cache_purge(c, SH_CACHE_PURGE_TAG, "s", 1, 0, &n), 0);
    assert_int_equal(n, 2);
    sh_cache_release(c);
}

static void done_cb(void *arg, int status, uint64_t count)
{
    (void)count;
    atomic_store((_Atomic int *)arg, status == 0 ? 1 : status);
}

/* A revalidation rewrites the metadata, keeps the body (inline and
 * chunked), and moves the entry's tags. */
static void test_update_meta(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    sh_cache_t *c = open_ok(&cf);
    const char *t1[] = {"old"};
    fill_tags(c, "u/small", 500, t1, 1);
    fill_tags(c, "u/big", 200000, t1, 1);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    const char *t2[] = {"new"};
    size_t t2l[] = {3};
    sh_cache_field_t fl[1] = {{"x-new", 5, "1", 1}};
    sh_cache_meta_t m = {.status = 200,
                         .fields = fl,
                         .nfields = 1,
                         .valid_until = 424242,
                         .stale_while_revalidate = -1,
                         .stale_if_error = -1,
                         .last_modified = -1,
                         .tags = t2,
                         .tag_len = t2l,
                         .ntags = 1};
    _Atomic int st1 = 0, st2 = 0, st3 = 0;
    assert_int_equal(sh_cache_update_meta(c, "u/small", 7, &m, done_cb, (void *)&st1), 0);
    assert_int_equal(sh_cache_update_meta(c, "u/big", 5, &m, done_cb, (void *)&st2), 0);
    assert_int_equal(sh_cache_update_meta(c, "u/none", 6, &m, done_cb, (void *)&st3), 0);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    assert_int_equal(atomic_load(&st1), 1);
    assert_int_equal(atomic_load(&st2), 1);
    assert_int_equal(atomic_load(&st3), SH_ENOENT);
    assert_true(check_hit(c, "u/small", 500));
    assert_true(check_hit(c, "u/big", 200000));
    sh_cache_hit_t *h;
    assert_int_equal(sh_cache_lookup(c, "u/big", 5, 0, &h, NULL), 0);
    assert_int_equal(sh_cache_hit_meta(h)->valid_until, 424242);
    assert_int_equal(sh_cache_hit_meta(h)->nfields, 1);
    sh_cache_hit_free(h);
    uint64_t n;
    assert_int_equal(sh_cache_purge(c, SH_CACHE_PURGE_TAG, "old", 3, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(sh_cache_purge(c, SH_CACHE_PURGE_TAG, "new", 3, 0, &n), 0);
    assert_int_equal(n, 2);
    sh_cache_release(c);
}

static void test_purge_drops_older_fill(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    sh_cache_t *c = open_ok(&cf);
    sh_cache_meta_t m = {
        .status = 200, .stale_while_revalidate = -1, .stale_if_error = -1, .last_modified = -1};
    sh_cache_fill_t *f1, *f2;
    assert_int_equal(sh_cache_fill_begin(c, "p/1", 3, &m, &f1), 0);
    assert_int_equal(sh_cache_fill_begin(c, "q/1", 3, &m, &f2), 0);
    sh_cache_fill_append(f1, "abc", 3);
    sh_cache_fill_append(f2, "abc", 3);
    uint64_t n;
    assert_int_equal(sh_cache_purge(c, SH_CACHE_PURGE_PREFIX, "p/", 2, 0, &n), 0);
    sh_cache_fill_commit(f1, NULL, NULL);
    sh_cache_fill_commit(f2, NULL, NULL);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    sh_cache_hit_t *h;
    assert_int_equal(sh_cache_lookup(c, "p/1", 3, 0, &h, NULL), SH_ENOENT);
    assert_int_equal(sh_cache_lookup(c, "q/1", 3, 0, &h, NULL), 0);
    sh_cache_hit_free(h);
    sh_cache_release(c);
}

static void test_map_full(void **state)
{
    fixture *fx = *state;
    char logp[300];
    snprintf(logp, sizeof(logp), "%s.log", fx->dir);
    int lfd = open(logp, O_CREAT | O_TRUNC | O_RDWR, 0600);
    assert_true(lfd >= 0);
    sh_log_set_fd(lfd);
    sh_cache_conf_t cf = conf_of(fx);
    cf.map_size = 2 << 20; /* 2 MB, no max_size: only the map bounds it */
    sh_cache_t *c = open_ok(&cf);
    char k[64];
    int ok_after = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof(k), "full/%d", i);
        fill(c, k, 30000);
        assert_int_equal(sh_cache_sync(c, 60000), 0);
        sh_cache_hit_t *h;
        int rc = sh_cache_lookup(c, k, strlen(k), 0, &h, NULL);
        assert_true(rc == 0 || rc == SH_ENOENT); /* never an error */
        if (rc == 0) {
            sh_cache_hit_free(h);
            sh_cache_stats_t st;
            sh_cache_stats(c, &st);
            ok_after += st.map_full > 0;
        }
    }
    sh_cache_stats_t st;
    sh_cache_stats(c, &st);
    assert_true(st.map_full > 0);
    assert_true(st.fills_dropped > 0);
    assert_true(ok_after > 0); /* fills work again after the eviction */
    sh_cache_release(c);
    sh_log_set_fd(2);
    char buf[8192] = {0};
    pread(lfd, buf, sizeof(buf) - 1, 0);
    close(lfd);
    unlink(logp);
    assert_non_null(strstr(buf, "not cached"));
}

/* Lookups on another thread while the map grows under them (the read side
 * of the resize lock). */
typedef struct {
    sh_cache_t *c;
    _Atomic int stop;
    _Atomic long hits;
} grow_reader;

static void *grow_read(void *p)
{
    grow_reader *g = p;
    while (!atomic_load(&g->stop)) {
        sh_cache_hit_t *h;
        if (sh_cache_lookup(g->c, "more/1", 6, SH_CACHE_LOOKUP_NOCOUNT, &h, NULL) == 0) {
            uint8_t b[4096];
            sh_cache_hit_read(h, 0, b, sizeof(b));
            sh_cache_hit_free(h);
            atomic_fetch_add(&g->hits, 1);
        }
    }
    return NULL;
}

/* map_size follows the configuration: a full 2 MB map, a restart with 8 MB
 * keeps the entries and stores new ones; a restart with less than the data
 * in use keeps it all (LMDB rounds up); a reload that raises map_size grows
 * the running map while lookups go on. */
static void test_map_grow(void **state)
{
    fixture *fx = *state;
    char logp[300];
    snprintf(logp, sizeof(logp), "%s.log", fx->dir);
    int lfd = open(logp, O_CREAT | O_TRUNC | O_RDWR, 0600);
    assert_true(lfd >= 0);
    sh_log_set_fd(lfd);
    int level = sh_log_get_level();
    sh_log_set_level(SH_LOG_NOTICE);
    sh_cache_conf_t cf = conf_of(fx);
    cf.map_size = 2 << 20;
    sh_cache_t *c = open_ok(&cf);
    sh_cache_stats_t st;
    sh_cache_stats(c, &st);
    assert_int_equal(st.map_size, 2 << 20);
    char k[64];
    int n = 0;
    for (; n < 200; n++) {
        snprintf(k, sizeof(k), "grow/%d", n);
        fill(c, k, 30000);
        assert_int_equal(sh_cache_sync(c, 60000), 0);
        sh_cache_stats(c, &st);
        if (st.map_full)
            break;
    }
    assert_true(st.map_full > 0);
    /* What the eviction after the full map left. */
    char kept[200] = {0};
    int nkept = 0;
    for (int i = 0; i <= n && i < 200; i++) {
        snprintf(k, sizeof(k), "grow/%d", i);
        kept[i] = (char)check_hit(c, k, 30000);
        nkept += kept[i];
    }
    assert_true(nkept > 10);
    sh_cache_release(c);

    cf.map_size = 8 << 20;
    c = open_ok(&cf);
    sh_cache_stats(c, &st);
    assert_int_equal(st.map_size, 8 << 20);
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof(k), "grow/%d", i);
        if (kept[i])
            assert_true(check_hit(c, k, 30000));
    }
    for (int i = 0; i < 60; i++) {
        snprintf(k, sizeof(k), "more/%d", i);
        assert_int_equal(fill(c, k, 30000), 0);
    }
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    sh_cache_stats(c, &st);
    assert_int_equal(st.map_full, 0);
    for (int i = 0; i < 60; i++) {
        snprintf(k, sizeof(k), "more/%d", i);
        assert_true(check_hit(c, k, 30000));
    }
    sh_cache_release(c);

    /* Smaller than the data in use: LMDB keeps what is stored. */
    cf.map_size = 1 << 20;
    c = open_ok(&cf);
    sh_cache_stats(c, &st);
    assert_true(st.map_size > (1 << 20));
    for (int i = 0; i < 60; i++) {
        snprintf(k, sizeof(k), "more/%d", i);
        assert_true(check_hit(c, k, 30000));
    }
    /* A reload with a larger map_size grows the running map. */
    cf.map_size = 16 << 20;
    grow_reader g = {.c = c};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, grow_read, &g), 0);
    for (int i = 0; i < 60000 && atomic_load(&g.hits) < 10; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_true(atomic_load(&g.hits) >= 10);
    long before = atomic_load(&g.hits);
    sh_cache_t *c2 = NULL;
    assert_int_equal(sh_cache_open(&cf, &c2), 0);
    assert_ptr_equal(c, c2);
    fill(c, "after/1", 30000);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    atomic_store(&g.stop, 1);
    pthread_join(th, NULL);
    assert_true(atomic_load(&g.hits) > before);
    sh_cache_stats(c, &st);
    assert_int_equal(st.map_size, 16 << 20);
    assert_true(check_hit(c, "after/1", 30000));
    assert_true(check_hit(c, "more/59", 30000));
    sh_cache_release(c2);
    sh_cache_release(c);
    sh_log_set_fd(2);
    sh_log_set_level(level);
    static char buf[1 << 18];
    memset(buf, 0, sizeof(buf));
    pread(lfd, buf, sizeof(buf) - 1, 0);
    close(lfd);
    unlink(logp);
    assert_non_null(strstr(buf, "not cached"));
    if (!strstr(buf, "changed from 2097152 to 8388608 bytes"))
        fprintf(stderr, "%s", buf);
    assert_non_null(strstr(buf, "changed from 2097152 to 8388608 bytes"));
    assert_non_null(strstr(buf, "grown from"));
}

static void test_kill9_during_fills(void **state)
{
    fixture *fx = *state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        sh_cache_conf_t cf = conf_of(fx);
        sh_cache_t *c;
        if (sh_cache_open(&cf, &c) < 0)
            _exit(2);
        char k[64];
        for (int i = 0;; i++) {
            snprintf(k, sizeof(k), "kill/%d", i);
            fill(c, k, i % 3 == 0 ? 200000 : 500);
            if (i == 50) {
                sh_cache_sync(c, 60000);
                if (write(pfd[1], "x", 1) != 1)
                    _exit(3);
            }
            /* A fill left open forever: streamed chunks, never committed. */
            if (i % 7 == 0) {
                sh_cache_meta_t m = {.status = 200, .last_modified = -1};
                sh_cache_fill_t *f;
                uint8_t b[70000] = {1};
                if (sh_cache_fill_begin(c, "open", 4, &m, &f) == 0)
                    sh_cache_fill_append(f, b, sizeof(b));
            }
        }
    }
    close(pfd[1]);
    char ch;
    assert_int_equal(read(pfd[0], &ch, 1), 1);
    close(pfd[0]);
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL); /* let it be in the middle of more fills */
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));

    sh_cache_conf_t cf = conf_of(fx);
    sh_cache_t *c = open_ok(&cf);
    sh_cache_stats_t st;
    sh_cache_stats(c, &st);
    assert_true(st.entries >= 51);
    char k[64];
    uint64_t hits = 0, expect_chunks = 0;
    for (int i = 0; i < 100000; i++) {
        snprintf(k, sizeof(k), "kill/%d", i);
        size_t len = i % 3 == 0 ? 200000 : 500;
        if (!check_hit(c, k, len)) {
            if (i > 50)
                break;
            fail_msg("committed entry %s lost", k);
        }
        hits++;
        if (len > 65520)
            expect_chunks += (len + 65519) / 65520;
    }
    assert_int_equal(hits, st.entries);
    /* The sweep removed what the uncommitted fills had streamed. */
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    uint64_t chunks, entries;
    sh_cache__records(c, &chunks, &entries);
    assert_int_equal(entries, st.entries);
    assert_int_equal(chunks, expect_chunks);
    /* And it takes fills. */
    assert_int_equal(fill(c, "after", 1000), 0);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    assert_true(check_hit(c, "after", 1000));
    sh_cache_release(c);
}

typedef struct {
    sh_cache_t *c;
    int id;
    _Atomic int *errors;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    char k[64];
    for (int i = 0; i < 1500; i++) {
        snprintf(k, sizeof(k), "mt/%d", (i * 7 + a->id) % 300);
        sh_cache_hit_t *h;
        int rc = sh_cache_lookup(a->c, k, strlen(k), 0, &h, NULL);
        if (rc == 0) {
            size_t want = (size_t)((i * 7 + a->id) % 300) % 4 == 0 ? 100000 : 300;
            uint8_t *b = malloc(want);
            long got = 0, n;
            while ((n = sh_cache_hit_read(h, (uint64_t)got, b + got, want - (size_t)got)) > 0)
                got += n;
            if ((size_t)got != sh_cache_hit_meta(h)->body_len) {
                fprintf(stderr, "short read of %s: %ld of %llu (%ld)\n", k, got,
                        (unsigned long long)sh_cache_hit_meta(h)->body_len, n);
                atomic_fetch_add(a->errors, 1);
            }
            free(b);
            sh_cache_hit_free(h);
        } else if (rc == SH_ENOENT) {
            int j = (i * 7 + a->id) % 300;
            fill(a->c, k, j % 4 == 0 ? 100000 : 300);
        } else {
            fprintf(stderr, "lookup of %s: %d\n", k, rc);
            atomic_fetch_add(a->errors, 1);
        }
        if (i % 500 == 0) {
            uint64_t n2;
            sh_cache_purge_async(a->c, SH_CACHE_PURGE_PREFIX, "mt/1", 4, 0, NULL, NULL);
            (void)n2;
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    fixture *fx = *state;
    sh_cache_conf_t cf = conf_of(fx);
    cf.max_size = 4 << 20;
    sh_cache_t *c = open_ok(&cf);
    _Atomic int errors = 0;
    pthread_t th[4];
    worker_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (worker_arg){c, i, &errors};
        pthread_create(&th[i], NULL, worker, &a[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&errors), 0);
    assert_int_equal(sh_cache_sync(c, 60000), 0);
    sh_cache_stats_t st;
    sh_cache_stats(c, &st);
    assert_true(st.fills > 0);
    assert_true(st.size <= cf.max_size);
    sh_cache_release(c);
}

int main(void)
{
    sh_log_set_level(SH_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fill_lookup_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_while_loading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_max_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_zone_capacity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inactive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_soft_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pin_and_send, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_drops_older_fill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_grow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_during_fills, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
