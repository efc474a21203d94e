/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the metrics store (node/pipeline/metrics.h): counts from
 * worker threads summed at scrape time, a block handed to the next worker
 * keeping its counts, writers racing a scraper (totals never go back and
 * end exact), a full series table counted as dropped, label escaping.
 * The process-wide store is shared by the tests: each uses labels of its own.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "node/pipeline/metrics.h"

static char *scrape(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    sh_metrics_write(f);
    fclose(f);
    return buf;
}

/* The value of the first line starting with prefix (a whole series), or -1. */
static long long value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, series, n) == 0 && l[n] == ' ')
            return atoll(l + n + 1);
    return -1;
}

typedef struct {
    unsigned g, s;
    int n, status, fail;
    uint64_t ms;
} job_t;

static void *worker(void *arg)
{
    job_t *j = arg;
    sh_metrics_worker_attach();
    for (int i = 0; i < j->n; i++)
        sh_metrics_upstream_try(j->g, j->s, j->status, j->fail, j->ms, i > 0);
    sh_metrics_worker_detach();
    return NULL;
}

static void run(job_t *j)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, worker, j), 0);
    pthread_join(t, NULL);
}

static void counts_and_histogram(void **state)
{
    (void)state;
    job_t ok = {sh_metrics_label("g1"), sh_metrics_label("10.0.0.1:80"), 10, 200, 0, 3};
    job_t bad = {ok.g, ok.s, 4, 504, 2, 1200};
    run(&ok);
    run(&bad);
    char *m = scrape();
    assert_int_equal(
        value(m, "shoal_upstream_requests_total{upstream=\"g1\",server=\"10.0.0.1:80\"}"), 14);
    assert_int_equal(
        value(m, "shoal_upstream_retries_total{upstream=\"g1\",server=\"10.0.0.1:80\"}"), 9 + 3);
    assert_int_equal(value(m,
                           "shoal_upstream_failures_total{upstream=\"g1\",server=\"10.0.0.1:80\","
                           "reason=\"timeout\"}"),
                     4);
    assert_int_equal(value(m, "shoal_upstream_responses_total{upstream=\"g1\",server=\"10.0.0.1:"
                              "80\",class=\"2xx\"}"),
                     10);
    /* 3 ms: above 2.5 ms, within 5 ms; 1.2 s: within 2.5 s */
    assert_int_equal(value(m, "shoal_upstream_response_duration_seconds_bucket{upstream=\"g1\","
                              "server=\"10.0.0.1:80\",le=\"0.0025\"}"),
                     0);
    assert_int_equal(value(m, "shoal_upstream_response_duration_seconds_bucket{upstream=\"g1\","
                              "server=\"10.0.0.1:80\",le=\"0.005\"}"),
                     10);
    assert_int_equal(value(m, "shoal_upstream_response_duration_seconds_bucket{upstream=\"g1\","
                              "server=\"10.0.0.1:80\",le=\"2.5\"}"),
                     14);
    assert_int_equal(value(m, "shoal_upstream_response_duration_seconds_count{upstream=\"g1\","
                              "server=\"10.0.0.1:80\"}"),
                     14);
    assert_non_null(strstr(m, "shoal_upstream_response_duration_seconds_sum{upstream=\"g1\","
                              "server=\"10.0.0.1:80\"} 4.830000\n"));
    free(m);
}

static void block_reused(void **state)
{
    (void)state;
    job_t a = {sh_metrics_label("g2"), sh_metrics_label("s2"), 5, 200, 0, 1};
    run(&a);
    run(&a); /* the next worker takes the same block and adds */
    char *m = scrape();
    assert_int_equal(value(m, "shoal_upstream_requests_total{upstream=\"g2\",server=\"s2\"}"), 10);
    free(m);
}

static volatile int racing;

static void *scraper(void *arg)
{
    long long *bad = arg;
    long long last = 0;
    while (racing) {
        char *m = scrape();
        long long v = value(m, "shoal_upstream_requests_total{upstream=\"g3\",server=\"s3\"}");
        if (v >= 0 && v < last)
            (*bad)++;
        if (v > last)
            last = v;
        free(m);
    }
    return NULL;
}

static void race(void **state)
{
    (void)state;
    job_t j = {sh_metrics_label("g3"), sh_metrics_label("s3"), 200000, 200, 0, 0};
    pthread_t w1, w2, r;
    long long bad = 0;
    racing = 1;
    assert_int_equal(pthread_create(&r, NULL, scraper, &bad), 0);
    assert_int_equal(pthread_create(&w1, NULL, worker, &j), 0);
    assert_int_equal(pthread_create(&w2, NULL, worker, &j), 0);
    pthread_join(w1, NULL);
    pthread_join(w2, NULL);
    racing = 0;
    pthread_join(r, NULL);
    assert_int_equal(bad, 0);
    char *m = scrape();
    assert_int_equal(value(m, "shoal_upstream_requests_total{upstream=\"g3\",server=\"s3\"}"),
                     400000);
    free(m);
}

static void *many(void *arg)
{
    (void)arg;
    sh_metrics_worker_attach();
    char name[32];
    for (int i = 0; i < 700; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        sh_metrics_upstream_try(sh_metrics_label("g4"), sh_metrics_label(name), 200, 0, 0, 0);
    }
    sh_metrics_worker_detach();
    return NULL;
}

static void table_full(void **state)
{
    (void)state;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, many, NULL), 0);
    pthread_join(t, NULL);
    char *m = scrape();
    long long dropped = value(m, "shoal_metrics_series_dropped_total");
    int series = 0;
    for (const char *p = m; (p = strstr(p, "shoal_upstream_requests_total{upstream=\"g4\"")); p++)
        series++;
    assert_true(dropped > 0);
    assert_int_equal(series + dropped, 700);
    free(m);
}

static void escaping(void **state)
{
    (void)state;
    job_t j = {sh_metrics_label("a\"b\\c"), sh_metrics_label("x"), 1, 200, 0, 0};
    run(&j);
    char *m = scrape();
    assert_int_equal(
        value(m, "shoal_upstream_requests_total{upstream=\"a\\\"b\\\\c\",server=\"x\"}"), 1);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_and_histogram),
        cmocka_unit_test(block_reused),
        cmocka_unit_test(race),
        cmocka_unit_test(escaping),
        cmocka_unit_test(table_full), /* last: the block it fills stays full */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
