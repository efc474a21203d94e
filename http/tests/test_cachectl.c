/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the cacheability rules (http/cachectl.h): each backend
 * header nginx's proxy_cache honours, their priorities, proxy_ignore_headers,
 * the validators and the single-range rule. Pure, no I/O.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "http/cachectl.h"

#define NOW 1700000000

#define H(n, v)                                                                                    \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }

static sh_cachectl_t eval(const sh_http1_header_t *hs, size_t n, unsigned ign)
{
    sh_cachectl_t c;
    sh_cachectl_eval(hs, n, NOW, ign, &c);
    return c;
}

static void test_none(void **state)
{
    (void)state;
    sh_http1_header_t hs[] = {H("Content-Type", "text/plain")};
    sh_cachectl_t c = eval(hs, 1, 0);
    assert_int_equal(c.cacheable, 1);
    assert_int_equal(c.valid_until, 0); /* proxy_cache_valid decides */
    assert_int_equal(c.updating, -1);
    assert_int_equal(c.error, -1);
}

static void test_cache_control(void **state)
{
    (void)state;
    sh_http1_header_t a[] = {H("Cache-Control", "public, max-age=60")};
    assert_int_equal(eval(a, 1, 0).valid_until, NOW + 60);
    sh_http1_header_t b[] = {H("Cache-Control", "max-age=60, s-maxage=10")};
    assert_int_equal(eval(b, 1, 0).valid_until, NOW + 10);
    const char *no[] = {"no-cache",  "no-store",           "private",
                        "max-age=0", "Private, max-age=5", "max-age=1x"};
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        sh_http1_header_t h = {"cache-control", 13, no[i], strlen(no[i])};
        assert_int_equal(eval(&h, 1, 0).cacheable, 0);
        assert_int_equal(eval(&h, 1, SH_CACHECTL_IGN_CACHE_CONTROL).cacheable, 1);
    }
    sh_http1_header_t c[] = {H("Cache-Control", "max-age=5, stale-while-revalidate=30")};
    sh_cachectl_t x = eval(c, 1, 0);
    assert_int_equal(x.updating, 30);
    assert_int_equal(x.error, 30);
    sh_http1_header_t d[] = {
        H("Cache-Control", "max-age=5, stale-while-revalidate=30, stale-if-error=99")};
    x = eval(d, 1, 0);
    assert_int_equal(x.updating, 30);
    assert_int_equal(x.error, 99);
}

static void test_expires(void **state)
{
    (void)state;
    sh_http1_header_t a[] = {H("Expires", "Thu, 01 Jan 2099 00:00:00 GMT")};
    sh_cachectl_t c = eval(a, 1, 0);
    assert_int_equal(c.cacheable, 1);
    assert_true(c.valid_until > NOW);
    sh_http1_header_t b[] = {H("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")};
    assert_int_equal(eval(b, 1, 0).cacheable, 0);
    assert_int_equal(eval(b, 1, SH_CACHECTL_IGN_EXPIRES).cacheable, 1);
    sh_http1_header_t bad[] = {H("Expires", "0")};
    assert_int_equal(eval(bad, 1, 0).cacheable, 0);
    /* Cache-Control wins over Expires, in either order */
    sh_http1_header_t d[] = {H("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
                             H("Cache-Control", "max-age=7")};
    c = eval(d, 2, 0);
    assert_int_equal(c.cacheable, 1);
    assert_int_equal(c.valid_until, NOW + 7);
}

static void test_xae(void **state)
{
    (void)state;
    sh_http1_header_t a[] = {H("Cache-Control", "no-store"), H("X-Accel-Expires", "30")};
    sh_cachectl_t c = eval(a, 2, 0);
    assert_int_equal(c.cacheable, 1);
    assert_int_equal(c.valid_until, NOW + 30);
    assert_int_equal(eval(a, 2, SH_CACHECTL_IGN_XA_EXPIRES).cacheable, 0);
    sh_http1_header_t b[] = {H("X-Accel-Expires", "0"), H("Cache-Control", "max-age=60")};
    assert_int_equal(eval(b, 2, 0).cacheable, 0);
    sh_http1_header_t d[] = {H("X-Accel-Expires", "@1800000000")};
    assert_int_equal(eval(d, 1, 0).valid_until, 1800000000);
    sh_http1_header_t e[] = {H("X-Accel-Expires", "soon"), H("Cache-Control", "max-age=3")};
    assert_int_equal(eval(e, 2, 0).valid_until, NOW + 3);
}

static void test_cookie_vary(void **state)
{
    (void)state;
    sh_http1_header_t a[] = {H("Set-Cookie", "a=b"), H("Cache-Control", "max-age=60")};
    assert_int_equal(eval(a, 2, 0).cacheable, 0);
    assert_int_equal(eval(a, 2, SH_CACHECTL_IGN_SET_COOKIE).cacheable, 1);
    sh_http1_header_t b[] = {H("Vary", "*")};
    assert_int_equal(eval(b, 1, 0).cacheable, 0);
    assert_int_equal(eval(b, 1, SH_CACHECTL_IGN_VARY).cacheable, 1);
    sh_http1_header_t d[] = {H("Vary", "Accept-Encoding")};
    sh_cachectl_t c = eval(d, 1, 0);
    assert_int_equal(c.cacheable, 1);
    assert_int_equal(c.vary_len, 15);
}

static void test_etag(void **state)
{
    (void)state;
    assert_true(sh_cachectl_etag_match("\"a\"", 3, "\"a\"", 3));
    assert_true(sh_cachectl_etag_match("\"x\", W/\"a\"", 10, "\"a\"", 3));
    assert_true(sh_cachectl_etag_match("\"a\"", 3, "W/\"a\"", 5));
    assert_true(sh_cachectl_etag_match("*", 1, "\"a\"", 3));
    assert_false(sh_cachectl_etag_match("\"b\"", 3, "\"a\"", 3));
    assert_false(sh_cachectl_etag_match("*", 1, "", 0));
}

static void test_range(void **state)
{
    (void)state;
    int64_t f, t;
    assert_int_equal(sh_cachectl_range("bytes=0-9", 9, 100, &f, &t), 1);
    assert_int_equal(f, 0);
    assert_int_equal(t, 9);
    assert_int_equal(sh_cachectl_range("bytes=-10", 9, 100, &f, &t), 1);
    assert_int_equal(f, 90);
    assert_int_equal(sh_cachectl_range("bytes=90-", 9, 100, &f, &t), 1);
    assert_int_equal(t, 99);
    assert_int_equal(sh_cachectl_range("bytes=100-", 10, 100, &f, &t), -1);
    assert_int_equal(sh_cachectl_range("bytes=0-1,3-4", 13, 100, &f, &t), 0);
    assert_int_equal(sh_cachectl_range("items=0-1", 9, 100, &f, &t), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none),        cmocka_unit_test(test_cache_control),
        cmocka_unit_test(test_expires),     cmocka_unit_test(test_xae),
        cmocka_unit_test(test_cookie_vary), cmocka_unit_test(test_etag),
        cmocka_unit_test(test_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
