/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of HTTP dates (node/httpdate.h): IMF-fixdate formatting, the
 * three parsed forms, calendar edges and rejections. No I/O, no clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "http/httpdate.h"

static int64_t parse(const char *s)
{
    int64_t t = -42;
    if (sh_http_date_parse(s, strlen(s), &t) != 0)
        return -1;
    return t;
}

static void test_format(void **state)
{
    (void)state;
    char b[SH_HTTP_DATE_LEN + 1];
    assert_int_equal(sh_http_date_format(b, 784111777), SH_HTTP_DATE_LEN);
    assert_string_equal(b, "Sun, 06 Nov 1994 08:49:37 GMT");
    sh_http_date_format(b, 0);
    assert_string_equal(b, "Thu, 01 Jan 1970 00:00:00 GMT");
    sh_http_date_format(b, 951782400); /* leap day of a year divisible by 400 */
    assert_string_equal(b, "Tue, 29 Feb 2000 00:00:00 GMT");
    sh_http_date_format(b, 2145916555);
    assert_string_equal(b, "Thu, 31 Dec 2037 23:55:55 GMT");
    sh_http_date_format(b, -5); /* clamped */
    assert_string_equal(b, "Thu, 01 Jan 1970 00:00:00 GMT");
}

static void test_parse_forms(void **state)
{
    (void)state;
    assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
    assert_int_equal(parse("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
    assert_int_equal(parse("Sun Nov  6 08:49:37 1994"), 784111777);
    assert_int_equal(parse("Sun Nov 16 08:49:37 1994"), 784111777 + 10 * 86400);
    assert_int_equal(parse("Thursday, 01-Jan-15 00:00:00 GMT"), 1420070400); /* 20xx */
    assert_int_equal(parse("Tue, 29 Feb 2000 00:00:00 GMT"), 951782400);
}

static void test_parse_rejects(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "0",
                         "Sun, 06 Nov 1994 08:49:37 UTC",
                         "Sun, 6 Nov 1994 08:49:37 GMT",
                         "Sun, 06 Nov 1994 24:00:00 GMT",
                         "Sun, 31 Nov 1994 08:49:37 GMT",
                         "Mon, 29 Feb 1900 00:00:00 GMT",
                         "Sun, 06 Foo 1994 08:49:37 GMT",
                         "Sun, 06 Nov 1969 08:49:37 GMT",
                         "Sun, 06 Nov 1994 08:49:37 GMT ",
                         "Sun Nov  6 08:49:37 94",
                         "Sunday, 06 Nov 1994 08:49:37 GMT",
                         "Sun, 06 Nov 1994 08-49-37 GMT"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t t;
        assert_int_equal(sh_http_date_parse(bad[i], strlen(bad[i]), &t), SH_EPARSE);
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    char b[SH_HTTP_DATE_LEN + 1];
    for (int64_t t = 0; t < 4102444800; t += 86400 * 37 + 3671) {
        sh_http_date_format(b, t);
        assert_int_equal(parse(b), t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_parse_forms),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
