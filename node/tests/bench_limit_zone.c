/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cost of one limit_req decision on a shared zone (hash, stripe lock,
 * find, arithmetic, unlock), on 1 and 2 threads, with keys spread over the
 * zone or one key for every thread (every lookup on the same stripe: the
 * worst contention). Run by bench/limits.sh; prints ns per lookup.
 *   bench_limit_zone [LOOKUPS per thread, default 5000000]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "node/modules/limit_req.h"
#include "node/modules/limit_zone.h"

#define KEYS 100000

typedef struct {
    sh_limit_zone_t *z;
    long n;
    int same_key;
    unsigned seed;
} job_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *run(void *arg)
{
    job_t *j = arg;
    char key[32];
    unsigned x = j->seed;
    for (long i = 0; i < j->n; i++) {
        x = x * 1103515245u + 12345u;
        int len = snprintf(key, sizeof(key), "k%u", j->same_key ? 7u : (x >> 8) % KEYS);
        sh_limit_id_t id;
        sh_limit_zone_hash(j->z, key, (size_t)len, &id);
        sh_limit_stripe_t *s = sh_limit_zone_lock(j->z, &id);
        sh_limit_zone_entry_t *e = sh_limit_zone_find(s, &id, 1);
        if (e == NULL) {
            e = sh_limit_zone_insert(s, &id);
            if (e == NULL) {
                sh_limit_zone_remove(s, sh_limit_zone_oldest(s), 1);
                e = sh_limit_zone_insert(s, &id);
            }
            e->v1 = now_ms();
        }
        sh_limit_req_state_t st = {e->v0, e->v1};
        int64_t ex;
        sh_limit_req_lookup(&st, i & ~1023L ? e->v1 : now_ms(), 1000000000, 1000000000, 1, &ex);
        e->v0 = st.excess;
        e->v1 = st.last;
        sh_limit_zone_unlock(s);
    }
    return NULL;
}

static double bench(sh_limit_zone_t *z, int threads, int same_key, long n)
{
    pthread_t th[2];
    job_t jobs[2];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job_t){z, n, same_key, 17u + (unsigned)i * 7919u};
        pthread_create(&th[i], NULL, run, &jobs[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    return ns / (double)n; /* per lookup per thread: wall time each thread saw */
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 5000000;
    sh_limit_zone_t *z = sh_limit_zone_create(8u << 20);
    bench(z, 1, 0, KEYS * 4L); /* fill: 100,000 live keys */
    printf("zone 8m: capacity %zu entries, %zu held\n", sh_limit_zone_capacity(z),
           sh_limit_zone_used(z));
    printf("1 thread,  100000 keys: %6.1f ns/lookup\n", bench(z, 1, 0, n));
    printf("2 threads, 100000 keys: %6.1f ns/lookup (wall time per lookup of each thread)\n",
           bench(z, 2, 0, n));
    printf("1 thread,  one key:     %6.1f ns/lookup\n", bench(z, 1, 1, n));
    printf("2 threads, one key:     %6.1f ns/lookup (one stripe: worst contention)\n",
           bench(z, 2, 1, n));
    sh_limit_zone_destroy(z);
    return 0;
}
