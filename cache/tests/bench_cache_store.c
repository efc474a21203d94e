/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Store micro-benchmark (issue 12), run by bench/cache_store.sh:
 *   bench_cache_store DIR ENTRIES BODY_BYTES THREADS
 * fills ENTRIES distinct keys with BODY_BYTES bodies (fills/s until the
 * writer has committed them), then THREADS threads look up random stored
 * keys copying the whole body (hits/s), then handing it to a sink with
 * sh_cache_hit_send (zero-copy), then unknown keys (misses/s), and
 * prints memory per entry: the keys_zone index, and the LMDB file beyond
 * the body bytes (disk blocks of data.mdb). Figures depend on the machine
 * and its load: compare ratios, not absolute numbers.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cache/cache.h"
#include "cache/cache_internal.h"
#include "core/err.h"
#include "core/log.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    sh_cache_t *c;
    long entries, ops;
    size_t body;
    int miss, zerocopy;
    unsigned seed;
    long bad;
} targ;

static long sink(void *arg, const void *p, size_t n)
{
    uint8_t **w = arg;
    memcpy(*w, p, n);
    *w += n;
    return (long)n;
}

static void *lookups(void *p)
{
    targ *a = p;
    uint8_t *buf = malloc(a->body + 1);
    char k[64];
    for (long i = 0; i < a->ops; i++) {
        long j = (long)(rand_r(&a->seed) % (unsigned)a->entries);
        int n = snprintf(k, sizeof(k), a->miss ? "http://bench/miss/%ld" : "http://bench/e/%ld", j);
        sh_cache_hit_t *h;
        int rc =
            sh_cache_lookup(a->c, k, (size_t)n, a->zerocopy ? SH_CACHE_LOOKUP_NOBODY : 0, &h, NULL);
        if (a->miss) {
            a->bad += rc != SH_ENOENT;
            continue;
        }
        if (rc != 0) {
            a->bad++;
            continue;
        }
        uint64_t off = 0;
        if (a->zerocopy) {
            /* The sink stands for a write(2) into a socket buffer. */
            uint8_t *w = buf;
            long r = sh_cache_hit_send(h, 0, a->body, sink, &w);
            off = r > 0 ? (uint64_t)r : 0;
        } else {
            size_t have;
            const void *b = sh_cache_hit_body(h, &have);
            memcpy(buf, b, have);
            off = have;
            while (off < sh_cache_hit_meta(h)->body_len) {
                long r = sh_cache_hit_read(h, off, buf + off, a->body - off);
                if (r <= 0)
                    break;
                off += (uint64_t)r;
            }
        }
        a->bad += off != a->body;
        sh_cache_hit_free(h);
    }
    free(buf);
    return NULL;
}

static double run(sh_cache_t *c, long entries, size_t body, int threads, long ops, int miss,
                  int zerocopy, long *bad)
{
    pthread_t th[64];
    targ a[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        a[i] = (targ){c, entries, ops, body, miss, zerocopy, (unsigned)i * 7919u + 1, 0};
        pthread_create(&th[i], NULL, lookups, &a[i]);
    }
    *bad = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        *bad += a[i].bad;
    }
    return (double)(ops * threads) / (now_s() - t0);
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s DIR ENTRIES BODY_BYTES THREADS [LOOKUPS]\n", argv[0]);
        return 2;
    }
    long entries = atol(argv[2]);
    size_t body = (size_t)atol(argv[3]);
    int threads = atoi(argv[4]);
    if (entries <= 0 || threads <= 0 || threads > 64)
        return 2;
    sh_log_set_level(SH_LOG_WARN);
    sh_cache_conf_t cf = {.path = argv[1],
                          .zone = "bench",
                          .zone_size = (size_t)256 << 20,
                          .map_size = (uint64_t)entries * (body + 2048) * 3 + (64u << 20)};
    sh_cache_t *c;
    if (sh_cache_open(&cf, &c) != 0 || sh_cache_sync(c, 600000) != 0)
        return 1;
    uint8_t *b = malloc(body + 1);
    memset(b, 'x', body);
    sh_cache_field_t fl[4] = {{"content-type", 12, "application/json", 16},
                              {"cache-control", 13, "max-age=60", 10},
                              {"etag", 4, "\"0123456789\"", 12},
                              {"date", 4, "Wed, 02 Dec 2026 11:00:00 GMT", 29}};
    sh_cache_meta_t m = {.status = 200,
                         .fields = fl,
                         .nfields = 4,
                         .stored_at = 1,
                         .valid_until = 1LL << 50,
                         .stale_while_revalidate = -1,
                         .stale_if_error = -1,
                         .last_modified = -1};
    char k[64];
    double t0 = now_s();
    long dropped = 0;
    for (long i = 0; i < entries; i++) {
        int n = snprintf(k, sizeof(k), "http://bench/e/%ld", i);
        sh_cache_fill_t *f;
        if (sh_cache_fill_begin(c, k, (size_t)n, &m, &f) != 0) {
            dropped++;
            sh_cache_sync(c, 600000); /* queue full: let the writer catch up */
            i--;
            continue;
        }
        int rc = sh_cache_fill_append(f, b, body);
        if (sh_cache_fill_commit(f, NULL, NULL) != 0 || rc != 0) {
            dropped++;
            sh_cache_sync(c, 600000);
            i--;
        }
    }
    sh_cache_sync(c, 600000);
    double fill_s = now_s() - t0;
    sh_cache_stats_t st;
    sh_cache_stats(c, &st);
    double idx = (double)sh_cache__memory(c); /* before misses add min_uses nodes */
    long ops = argc == 6 ? atol(argv[5]) : entries < 20000 ? 20000 : entries;
    long bad_hit, bad_miss, bad_zc;
    double hits = run(c, entries, body, threads, ops, 0, 0, &bad_hit);
    double zc = run(c, entries, body, threads, ops, 0, 1, &bad_zc);
    double misses = run(c, entries, body, threads, ops, 1, 0, &bad_miss);
    char dp[4200];
    snprintf(dp, sizeof(dp), "%s/data.mdb", sh_cache_path(c));
    struct stat sb;
    stat(dp, &sb);
    double disk = (double)sb.st_blocks * 512.0;
    printf("entries %llu body %zu threads %d\n", (unsigned long long)st.entries, body, threads);
    printf("fills/s %.0f (committed %llu, queue-full retries %ld, batches %llu)\n",
           (double)entries / fill_s, (unsigned long long)st.fills, dropped,
           (unsigned long long)st.batches);
    printf("hits/s %.0f (whole body copied; errors %ld)\n", hits, bad_hit);
    printf("hits/s %.0f with sh_cache_hit_send (zero-copy sink; errors %ld)\n", zc, bad_zc);
    printf("misses/s %.0f (errors %ld)\n", misses, bad_miss);
    printf("memory/entry index %.1f bytes\n", idx / (double)st.entries);
    printf("disk/entry beyond body %.1f bytes (data.mdb %.1f MB)\n",
           (disk - (double)body * (double)st.entries) / (double)st.entries, disk / 1048576.0);
    sh_cache_release(c);
    free(b);
    return bad_hit || bad_miss || bad_zc;
}
