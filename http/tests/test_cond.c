/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of conditional requests and byte ranges (http/cond.h), the
 * cases read off nginx's not_modified and range filters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/cond.h"

static sh_http_range_t rg[SH_RANGES_MAX];

static int parse(const char *v, int64_t size, int max)
{
    return sh_http_range_parse(v, strlen(v), size, max, rg);
}

static void test_single(void **state)
{
    (void)state;
    assert_int_equal(parse("bytes=0-99", 1000, -1), 1);
    assert_true(rg[0].start == 0 && rg[0].end == 100);
    assert_int_equal(parse("bytes=990-", 1000, -1), 1);
    assert_true(rg[0].start == 990 && rg[0].end == 1000);
    assert_int_equal(parse("bytes=-10", 1000, -1), 1);
    assert_true(rg[0].start == 990 && rg[0].end == 1000);
    assert_int_equal(parse("bytes=-5000", 1000, -1), 1); /* suffix longer: all */
    assert_true(rg[0].start == 0 && rg[0].end == 1000);
    assert_int_equal(parse("bytes=500-5000", 1000, -1), 1); /* end clamped */
    assert_true(rg[0].start == 500 && rg[0].end == 1000);
    assert_int_equal(parse("BYTES= 1 - 2 ", 1000, -1), 1);
    assert_true(rg[0].start == 1 && rg[0].end == 3);
}

static void test_errors(void **state)
{
    (void)state;
    assert_int_equal(parse("items=0-1", 1000, -1), SH_RANGE_IGNORE);
    assert_int_equal(parse("bytes=", 1000, -1), SH_RANGE_IGNORE); /* shorter than 7 */
    assert_int_equal(parse("bytes=abc", 1000, -1), SH_RANGE_UNSATISFIABLE);
    assert_int_equal(parse("bytes=5-3", 1000, -1), SH_RANGE_UNSATISFIABLE);
    assert_int_equal(parse("bytes=1000-", 1000, -1), SH_RANGE_UNSATISFIABLE);
    assert_int_equal(parse("bytes=0-", 0, -1), SH_RANGE_IGNORE); /* empty body */
    assert_int_equal(parse("bytes=-0", 1000, -1), SH_RANGE_UNSATISFIABLE);
    assert_int_equal(parse("bytes=1-2x", 1000, -1), SH_RANGE_UNSATISFIABLE);
    assert_int_equal(parse("bytes=99999999999999999999-", 1000, -1), SH_RANGE_UNSATISFIABLE);
}

static void test_multi(void **state)
{
    (void)state;
    assert_int_equal(parse("bytes=0-9,20-29, -5", 1000, -1), 3);
    assert_true(rg[1].start == 20 && rg[1].end == 30 && rg[2].start == 995);
    assert_int_equal(parse("bytes=0-9,20-29", 1000, 1), SH_RANGE_IGNORE); /* max_ranges 1 */
    assert_int_equal(parse("bytes=0-9", 1000, 0), SH_RANGE_IGNORE);       /* max_ranges 0 */
    assert_int_equal(parse("bytes=0-9,2000-", 1000, -1), 1); /* the unsatisfiable one dropped */
    assert_int_equal(parse("bytes=0-999,0-999", 1000, -1), SH_RANGE_IGNORE); /* > size */
}

static int cond(const char *inm, const char *ims, const char *im, const char *ius, int mode)
{
    sh_http_cond_t c = {inm,
                        im,
                        ims,
                        ius,
                        inm ? strlen(inm) : 0,
                        im ? strlen(im) : 0,
                        ims ? strlen(ims) : 0,
                        ius ? strlen(ius) : 0};
    return sh_http_cond_eval(&c, "\"5f-10\"", 7, 784111777, mode);
}

static void test_cond(void **state)
{
    (void)state;
    const char *d = "Sun, 06 Nov 1994 08:49:37 GMT", *later = "Mon, 07 Nov 1994 08:49:37 GMT";
    assert_int_equal(cond(NULL, NULL, NULL, NULL, SH_IMS_EXACT), 200);
    assert_int_equal(cond("\"5f-10\"", NULL, NULL, NULL, SH_IMS_EXACT), 304);
    assert_int_equal(cond("W/\"5f-10\"", NULL, NULL, NULL, SH_IMS_EXACT), 304);
    assert_int_equal(cond("\"a\", \"5f-10\"", NULL, NULL, NULL, SH_IMS_EXACT), 304);
    assert_int_equal(cond("*", NULL, NULL, NULL, SH_IMS_EXACT), 304);
    assert_int_equal(cond("\"5f-1\"", NULL, NULL, NULL, SH_IMS_EXACT), 200);
    assert_int_equal(cond(NULL, d, NULL, NULL, SH_IMS_EXACT), 304);
    assert_int_equal(cond(NULL, later, NULL, NULL, SH_IMS_EXACT), 200);
    assert_int_equal(cond(NULL, later, NULL, NULL, SH_IMS_BEFORE), 304);
    assert_int_equal(cond(NULL, d, NULL, NULL, SH_IMS_OFF), 200);
    /* nginx: both present, both must say not modified */
    assert_int_equal(cond("\"x\"", d, NULL, NULL, SH_IMS_EXACT), 200);
    assert_int_equal(cond("\"5f-10\"", later, NULL, NULL, SH_IMS_EXACT), 200);
    assert_int_equal(cond(NULL, NULL, "\"x\"", NULL, SH_IMS_EXACT), 412);
    assert_int_equal(cond(NULL, NULL, "\"5f-10\"", NULL, SH_IMS_EXACT), 200);
    assert_int_equal(cond(NULL, NULL, NULL, "Sat, 05 Nov 1994 08:49:37 GMT", SH_IMS_EXACT), 412);
    assert_int_equal(cond(NULL, NULL, NULL, d, SH_IMS_EXACT), 200);
}

static void test_if_range(void **state)
{
    (void)state;
    assert_true(sh_http_if_range("\"5f-10\"", 7, "\"5f-10\"", 7, 5));
    assert_false(sh_http_if_range("W/\"5f-10\"", 9, "\"5f-10\"", 7, 5));
    assert_false(sh_http_if_range("\"5f-10\"", 7, NULL, 0, 5));
    const char *d = "Sun, 06 Nov 1994 08:49:37 GMT";
    assert_true(sh_http_if_range(d, strlen(d), NULL, 0, 784111777));
    assert_false(sh_http_if_range(d, strlen(d), NULL, 0, 784111778));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single),   cmocka_unit_test(test_errors),
        cmocka_unit_test(test_multi),    cmocka_unit_test(test_cond),
        cmocka_unit_test(test_if_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
