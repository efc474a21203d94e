/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the HTTP/1.1 codec (node/http1.h): request and response
 * heads, every rejection the header promises, limits, incremental feeding,
 * the chunked decoder and the small helpers. Single-threaded, no I/O.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "http/http1.h"

#define MAXH 64

typedef struct {
    sh_http1_header_t hdrs[MAXH];
    sh_http1_request_t req;
} req_ctx_t;

static ssize_t parse_req_n(req_ctx_t *c, const char *s, size_t n, const sh_http1_limits_t *lim)
{
    memset(c, 0, sizeof(*c));
    c->req.headers = c->hdrs;
    c->req.max_headers = MAXH;
    return sh_http1_parse_request(s, n, &c->req, lim);
}

static ssize_t parse_req(req_ctx_t *c, const char *s)
{
    return parse_req_n(c, s, strlen(s), NULL);
}

typedef struct {
    sh_http1_header_t hdrs[MAXH];
    sh_http1_response_t resp;
} resp_ctx_t;

static ssize_t parse_resp(resp_ctx_t *c, const char *s)
{
    memset(c, 0, sizeof(*c));
    c->resp.headers = c->hdrs;
    c->resp.max_headers = MAXH;
    return sh_http1_parse_response(s, strlen(s), &c->resp, NULL);
}

static int span_is(const char *p, size_t n, const char *want)
{
    return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

#define assert_span(p, n, want) assert_true(span_is((p), (n), (want)))

/* --- requests: the good path ---------------------------------------------- */

static void test_simple_get(void **state)
{
    (void)state;
    req_ctx_t c;
    const char *s = "GET /index.html?q=1 HTTP/1.1\r\n"
                    "Host: example.com\r\n"
                    "User-Agent:  curl/8.0 \t\r\n"
                    "Accept:*/*\r\n"
                    "\r\n";
    assert_int_equal(parse_req(&c, s), (ssize_t)strlen(s));
    assert_span(c.req.method, c.req.method_len, "GET");
    assert_int_equal(c.req.method_id, SH_HTTP_GET);
    assert_span(c.req.target, c.req.target_len, "/index.html?q=1");
    assert_int_equal(c.req.version, 11);
    assert_int_equal(c.req.nheaders, 3);
    assert_span(c.hdrs[0].name, c.hdrs[0].name_len, "Host");
    assert_span(c.hdrs[0].value, c.hdrs[0].value_len, "example.com");
    assert_span(c.hdrs[1].value, c.hdrs[1].value_len, "curl/8.0");
    assert_span(c.hdrs[2].name, c.hdrs[2].name_len, "Accept");
    assert_span(c.hdrs[2].value, c.hdrs[2].value_len, "*/*");
    assert_span(c.req.host, c.req.host_len, "example.com");
    assert_int_equal(c.req.content_length, -1);
    assert_false(c.req.chunked);
    assert_true(c.req.keep_alive);
    assert_false(c.req.expect_continue);
    assert_false(c.req.upgrade);
    assert_int_equal(c.req.fail, SH_HTTP1_FAIL_NONE);
}

static void test_post_content_length(void **state)
{
    (void)state;
    req_ctx_t c;
    const char *s = "POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
    ssize_t n = parse_req(&c, s);
    assert_int_equal(n, (ssize_t)strlen(s) - 11);
    assert_int_equal(c.req.method_id, SH_HTTP_POST);
    assert_int_equal(c.req.content_length, 11);
    assert_false(c.req.chunked);
    assert_memory_equal(s + n, "hello world", 11);
}

static void test_post_chunked(void **state)
{
    (void)state;
    req_ctx_t c;
    const char *s = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n";
    assert_int_equal(parse_req(&c, s), (ssize_t)strlen(s));
    assert_true(c.req.chunked);
    assert_int_equal(c.req.content_length, -1);
}

static void test_empty_value_and_empty_host(void **state)
{
    (void)state;
    req_ctx_t c;
    const char *s = "GET / HTTP/1.1\r\nHost:\r\nX-Empty:   \r\n\r\n";
    assert_int_equal(parse_req(&c, s), (ssize_t)strlen(s));
    assert_non_null(c.req.host);
    assert_int_equal(c.req.host_len, 0);
    assert_int_equal(c.hdrs[1].value_len, 0);
}

static void test_value_with_obs_text_and_tab(void **state)
{
    (void)state;
    req_ctx_t c;
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: "
                    "abcdefgh\tijklmnop\xc3\xa9qrstuvwxyz0123456789\r\n\r\n";
    assert_int_equal(parse_req(&c, s), (ssize_t)strlen(s));
    assert_span(c.hdrs[1].value, c.hdrs[1].value_len,
                "abcdefgh\tijklmnop\xc3\xa9qrstuvwxyz0123456789");
}

static void test_http10_keep_alive(void **state)
{
    (void)state;
    req_ctx_t c;
    /* 1.0 closes by default and needs no Host */
    assert_true(parse_req(&c, "GET / HTTP/1.0\r\n\r\n") > 0);
    assert_int_equal(c.req.version, 10);
    assert_false(c.req.keep_alive);
    assert_null(c.req.host);

    assert_true(parse_req(&c, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") > 0);
    assert_true(c.req.keep_alive);

    assert_true(parse_req(&c, "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n") > 0);
    assert_false(c.req.keep_alive);

    /* 1.0 cannot expect 100 or upgrade (RFC 9110 10.1.1, 7.8) */
    assert_true(parse_req(&c, "GET / HTTP/1.0\r\nExpect: 100-continue\r\nConnection: upgrade\r\n"
                              "Upgrade: websocket\r\n\r\n") > 0);
    assert_false(c.req.expect_continue);
    assert_false(c.req.upgrade);
}

static void test_connection_tokens(void **state)
{
    (void)state;
    req_ctx_t c;
    assert_true(parse_req(&c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") > 0);
    assert_false(c.req.keep_alive);
    assert_true(parse_req(&c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n") > 0);
    assert_false(c.req.keep_alive);
    assert_true(parse_req(&c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, ,Close ,bar\r\n\r\n") >
                0);
    assert_false(c.req.keep_alive);
    /* split across two fields */
    assert_true(
        parse_req(&c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: te\r\nConnection: close\r\n\r\n") >
        0);
    assert_false(c.req.keep_alive);
    /* substring is not a token */
    assert_true(parse_req(&c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed, xclose\r\n\r\n") >
                0);
    assert_true(c.req.keep_alive);
    assert_true(parse_req(&c, "GET / HTTP/1.1\r\nHost: a\r\nconnection: Keep-Alive\r\n\r\n") > 0);
    assert_true(c.req.keep_alive);
}

static void test_expect_continue(void **state)
{
    (void)state;
    req_ctx_t c;
    assert_true(parse_req(&c, "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                              "Expect: 100-Continue\r\n\r\n") > 0);
    assert_true(c.req.expect_continue);
    assert_true(parse_req(&c, "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n") > 0);
    assert_false(c.req.expect_continue);
}

static void test_upgrade(void **state)
{
    (void)state;
    req_ctx_t c;
    assert_true(parse_req(&c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                              "Upgrade: websocket\r\n\r\n") > 0);
    assert_true(c.req.upgrade);
    assert_true(c.req.keep_alive);
    /* Connection: upgrade without Upgrade */
    assert_true(parse_req(&c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n") > 0);
    assert_false(c.req.upgrade);
    /* Upgrade without the Connection token */
    assert_true(parse_req(&c, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n") > 0);
    assert_false(c.req.upgrade);
}

static void test_pipelined(void **state)
{
    (void)state;
    req_ctx_t c;
    const char *s = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                    "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
                    "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t len = strlen(s), off = 0;

    ssize_t n = parse_req_n(&c, s, len, NULL);
    assert_true(n > 0);
    assert_span(c.req.target, c.req.target_len, "/1");
    off += (size_t)n;

    n = parse_req_n(&c, s + off, len - off, NULL);
    assert_true(n > 0);
    assert_span(c.req.target, c.req.target_len, "/2");
    off += (size_t)n + (size_t)c.req.content_length;

    n = parse_req_n(&c, s + off, len - off, NULL);
    assert_true(n > 0);
    assert_span(c.req.target, c.req.target_len, "/3");
    off += (size_t)n;
    assert_int_equal(off, len);
}

static void test_lf_only(void **state)
{
    (void)state;
    req_ctx_t c;
    const char *s = "GET / HTTP/1.1\nHost: a\nX: y\r\n\n";
    assert_int_equal(parse_req(&c, s), (ssize_t)strlen(s));
    assert_int_equal(c.req.nheaders, 2);
    assert_span(c.hdrs[1].value, c.hdrs[1].value_len, "y");
}

static void test_leading_empty_lines(void **state)
{
    (void)state;
    req_ctx_t c;
    /* RFC 9112 2.2: ignored before the request-line */
    const char *s = "\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(parse_req(&c, s), (ssize_t)strlen(s));
    assert_span(c.req.method, c.req.method_len, "GET");
    assert_int_equal(parse_req(&c, "\r\n"), SH_EAGAIN);
    assert_int_equal(parse_req(&c, "\r\r\n"), SH_EPARSE);
}

static void test_target_forms(void **state)
{
    (void)state;
    req_ctx_t c;
    assert_true(parse_req(&c, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n") >
                0);
    assert_int_equal(c.req.method_id, SH_HTTP_CONNECT);
    assert_true(parse_req(&c, "CONNECT [::1]:8443 HTTP/1.1\r\nHost: x\r\n\r\n") > 0);
    assert_true(parse_req(&c, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n") > 0);
    assert_true(parse_req(&c, "GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n") > 0);
    assert_span(c.req.target, c.req.target_len, "http://a.example/x?y");

    assert_int_equal(parse_req(&c, "GET * HTTP/1.1\r\nHost: a\r\n\r\n"), SH_EPARSE);
    assert_int_equal(parse_req(&c, "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n"), SH_EPARSE);
    assert_int_equal(parse_req(&c, "CONNECT a.example HTTP/1.1\r\nHost: a\r\n\r\n"), SH_EPARSE);
    assert_int_equal(parse_req(&c, "CONNECT u@a:1 HTTP/1.1\r\nHost: a\r\n\r\n"), SH_EPARSE);
    assert_int_equal(parse_req(&c, "GET index.html HTTP/1.1\r\nHost: a\r\n\r\n"), SH_EPARSE);
    assert_int_equal(c.req.status, 400);
}

/* Issue 15: nginx's host rules, and the absolute-form authority. */
static void test_host_rules(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        ssize_t want; /* kept length, or SH_EPARSE */
    } cases[] = {
        {"a", 1},
        {"A.", 1},
        {"a.", 1},
        {".a", 2},
        {"a:80", 1},
        {"[::1]:80", 5},
        {"[::1", 4},
        {"a:b:c", 1},
        {"a\\b", 3},
        {"a_b", 3},
        {"EVIL.EX.:99", 7},
        {"a b", SH_EPARSE},
        {"a\tb", SH_EPARSE},
        {"a/b", SH_EPARSE},
        {"..", SH_EPARSE},
        {"a..b", SH_EPARSE},
        {".", SH_EPARSE},
        {":80", SH_EPARSE},
        {"", SH_EPARSE},
        {"a\x7f", SH_EPARSE},
        {"a:1..2", SH_EPARSE},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
        assert_int_equal(sh_http1_host(cases[k].in, strlen(cases[k].in)), cases[k].want);
    assert_int_equal(sh_http1_host("a\0b", 3), SH_EPARSE);

    const char *a;
    size_t al;
    assert_int_equal(sh_http1_target_authority("http://e.x:8/p?q", 16, &a, &al), 1);
    assert_span(a, al, "e.x:8");
    assert_int_equal(sh_http1_target_authority("http://e.x?q", 12, &a, &al), 1);
    assert_span(a, al, "e.x");
    assert_int_equal(sh_http1_target_authority("/p", 2, &a, &al), 0);
    assert_int_equal(sh_http1_target_authority("e.x:443", 7, &a, &al), 0);

    req_ctx_t c;
    assert_true(parse_req(&c, "GET ftp://e.x/p HTTP/1.1\r\nHost: a\r\n\r\n") > 0);
    assert_true(parse_req(&c, "GET http://[::1]:/p HTTP/1.1\r\nHost: a\r\n\r\n") > 0);
    static const char *bad[] = {"http:foo",      "http:///p",       "http://u@e.x/p",
                                "http://e_x/p",  "http://e.x:8x/p", "http://e.x#f",
                                "http://e%41/p", "http://[::1/p",   "http://e.x:1:2/p"};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        char req[128];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", bad[k]);
        assert_int_equal(parse_req(&c, req), SH_EPARSE);
    }
}

static void test_other_method(void **state)
{
    (void)state;
    req_ctx_t c;
    assert_true(parse_req(&c, "PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n") > 0);
    assert_int_equal(c.req.method_id, SH_HTTP_OTHER);
    assert_span(c.req.method, c.req.method_len, "PROPFIND");
    /* methods are case-sensitive */
    assert_true(parse_req(&c, "get / HTTP/1.1\r\nHost: a\r\n\r\n") > 0);
    assert_int_equal(c.req.method_id, SH_HTTP_OTHER);
}

static void test_content_length_variants(void **state)
{
    (void)state;
    req_ctx_t c;
    assert_true(parse_req(&c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n") > 0);
    assert_int_equal(c.req.content_length, 5);
    assert_true(
        parse_req(&c,
                  "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n") >
        0);
    assert_int_equal(c.req.content_length, 5);
    assert_true(parse_req(&c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n") > 0);
    assert_int_equal(c.req.content_length, 0);
    assert_true(
        parse_req(&c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n") >
        0);
    assert_int_equal(c.req.content_length, INT64_MAX);
    assert_true(parse_req(&c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n") > 0);
    assert_int_equal(c.req.content_length, 7);
}

/* --- requests: every rejection --------------------------------------------- */

typedef struct {
    const char *in;
    ssize_t rc;
    int fail;
    int status;
} bad_t;

static const bad_t bad_requests[] = {
    /* framing (RFC 9112 6) */
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
     SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
     SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", SH_EPARSE,
     SH_HTTP1_FAIL_SYNTAX, 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX,
     400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX,
     400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX,
     400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX,
     400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX,
     400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX,
     400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX,
     400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", SH_EPARSE,
     SH_HTTP1_FAIL_SYNTAX, 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", SH_EPARSE,
     SH_HTTP1_FAIL_SYNTAX, 400},
    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", SH_EPARSE,
     SH_HTTP1_FAIL_SYNTAX, 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", SH_EPARSE,
     SH_HTTP1_FAIL_SYNTAX, 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
     "identity\r\n\r\n",
     SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", SH_EPARSE,
     SH_HTTP1_FAIL_NOT_IMPLEMENTED, 501},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-custom\r\nTransfer-Encoding: "
     "chunked\r\n\r\n",
     SH_EPARSE, SH_HTTP1_FAIL_NOT_IMPLEMENTED, 501},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", SH_EPARSE,
     SH_HTTP1_FAIL_SYNTAX, 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", SH_EPARSE,
     SH_HTTP1_FAIL_SYNTAX, 400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX,
     400},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", SH_EPARSE,
     SH_HTTP1_FAIL_SYNTAX, 400},
    /* field syntax (RFC 9112 5) */
    {"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: b\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: b\x01\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: b\x7f\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789abcdef\x1b"
     "0123456789\r\n\r\n",
     SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    /* Host (RFC 9110 7.2) */
    {"GET / HTTP/1.1\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    /* request-line (RFC 9112 3) */
    {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_VERSION, 505},
    {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_VERSION, 505},
    {"GET / HTTP/0.9\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_VERSION, 505},
    {"GET / HTTP/1.10\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/2\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / http/1.1\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET /\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET /0123456789abcdef\xff HTTP/1.1\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GET / HTTP/1.1\rHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"GE\rT / HTTP/1.1\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"G\xc3\xa9T / HTTP/1.1\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {" GET / HTTP/1.1\r\nHost: a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
    {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_VERSION, 505},
    {"\x00\x00\x00", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX, 400},
};

static void check_bad(const bad_t *b, size_t n)
{
    req_ctx_t c;
    ssize_t rc = parse_req_n(&c, b->in, n, NULL);
    if (rc != b->rc || c.req.fail != b->fail || c.req.status != b->status) {
        fprintf(stderr, "input %zu bytes: \"", n);
        for (size_t k = 0; k < n; k++) {
            unsigned char ch = (unsigned char)b->in[k];
            if (ch >= 0x20 && ch < 0x7f)
                fputc(ch, stderr);
            else
                fprintf(stderr, "\\x%02x", ch);
        }
        fprintf(stderr, "\"\n  got rc %zd fail %d status %d (%s)\n", rc, c.req.fail, c.req.status,
                c.req.reason ? c.req.reason : "-");
    }
    assert_int_equal(rc, b->rc);
    assert_int_equal(c.req.fail, b->fail);
    assert_int_equal(c.req.status, b->status);
    assert_non_null(c.req.reason);
}

static void test_rejections(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof(bad_requests) / sizeof(bad_requests[0]); k++) {
        const bad_t *b = &bad_requests[k];
        size_t n = strlen(b->in);
        if (b->in[0] == '\0')
            n = 3; /* the NUL garbage case */
        check_bad(b, n);
    }
}

/* Byte-by-byte feeding of every bad request: EAGAIN until the failure, then
 * the same failure as the whole input. */
static void test_rejections_incremental(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof(bad_requests) / sizeof(bad_requests[0]); k++) {
        const bad_t *b = &bad_requests[k];
        size_t n = b->in[0] ? strlen(b->in) : 3;
        int failed = 0;
        for (size_t m = 0; m <= n; m++) {
            req_ctx_t c;
            ssize_t rc = parse_req_n(&c, b->in, m, NULL);
            if (rc == SH_EAGAIN) {
                assert_false(failed);
                continue;
            }
            failed = 1;
            assert_int_equal(rc, b->rc);
            assert_int_equal(c.req.fail, b->fail);
        }
        assert_true(failed);
    }
}

/* --- limits ---------------------------------------------------------------- */

static char *make_request(size_t target_len, size_t value_len, size_t nfields)
{
    size_t cap = target_len + value_len + nfields * 32 + 256;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n = (size_t)sprintf(s, "GET /");
    memset(s + n, 'a', target_len);
    n += target_len;
    n += (size_t)sprintf(s + n, " HTTP/1.1\r\nHost: a\r\nX-Big: ");
    memset(s + n, 'v', value_len);
    n += value_len;
    n += (size_t)sprintf(s + n, "\r\n");
    for (size_t k = 0; k < nfields; k++)
        n += (size_t)sprintf(s + n, "X-F%zu: %zu\r\n", k, k);
    sprintf(s + n, "\r\n");
    return s;
}

static void test_limit_request_line(void **state)
{
    (void)state;
    req_ctx_t c;
    sh_http1_limits_t lim = {.max_request_line = 64};
    /* "GET /" + t + " HTTP/1.1\r\n" = 16 + t bytes: 48 fits exactly */
    char *s = make_request(48, 1, 0);
    assert_true(parse_req_n(&c, s, strlen(s), &lim) > 0);
    free(s);

    s = make_request(49, 1, 0);
    assert_int_equal(parse_req_n(&c, s, strlen(s), &lim), SH_ELIMIT);
    assert_int_equal(c.req.fail, SH_HTTP1_FAIL_URI_TOO_LONG);
    assert_int_equal(c.req.status, 414);
    /* known as soon as 64 bytes of the line are in, before any line end */
    assert_int_equal(parse_req_n(&c, s, 63, &lim), SH_EAGAIN);
    assert_int_equal(parse_req_n(&c, s, 64, &lim), SH_ELIMIT);
    assert_int_equal(c.req.fail, SH_HTTP1_FAIL_URI_TOO_LONG);
    free(s);

    /* the default is 8192 */
    s = make_request(9000, 1, 0);
    assert_int_equal(parse_req_n(&c, s, strlen(s), NULL), SH_ELIMIT);
    assert_int_equal(c.req.status, 414);
    free(s);
}

static void test_limit_header_line(void **state)
{
    (void)state;
    req_ctx_t c;
    sh_http1_limits_t lim = {.max_header_line = 64};
    /* "X-Big: " + v + "\r\n" = 9 + v */
    char *s = make_request(1, 55, 0);
    assert_true(parse_req_n(&c, s, strlen(s), &lim) > 0);
    free(s);
    s = make_request(1, 56, 0);
    assert_int_equal(parse_req_n(&c, s, strlen(s), &lim), SH_ELIMIT);
    assert_int_equal(c.req.fail, SH_HTTP1_FAIL_HEADER_TOO_LARGE);
    assert_int_equal(c.req.status, 431);
    free(s);
    s = make_request(1, 9000, 0);
    assert_int_equal(parse_req_n(&c, s, strlen(s), NULL), SH_ELIMIT);
    assert_int_equal(c.req.fail, SH_HTTP1_FAIL_HEADER_TOO_LARGE);
    free(s);
}

static void test_limit_too_many_headers(void **state)
{
    (void)state;
    req_ctx_t c;
    /* Host + X-Big + 62 = 64 fields fit, 65 do not */
    char *s = make_request(1, 1, 62);
    assert_true(parse_req_n(&c, s, strlen(s), NULL) > 0);
    assert_int_equal(c.req.nheaders, 64);
    free(s);
    s = make_request(1, 1, 63);
    assert_int_equal(parse_req_n(&c, s, strlen(s), NULL), SH_ELIMIT);
    assert_int_equal(c.req.fail, SH_HTTP1_FAIL_TOO_MANY_HEADERS);
    assert_int_equal(c.req.status, 431);
    free(s);

    /* a caller with room for no headers */
    sh_http1_request_t r;
    memset(&r, 0, sizeof(r));
    const char *g = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(sh_http1_parse_request(g, strlen(g), &r, NULL), (ssize_t)strlen(g));
    g = "GET / HTTP/1.0\r\nA: b\r\n\r\n";
    assert_int_equal(sh_http1_parse_request(g, strlen(g), &r, NULL), SH_ELIMIT);
    assert_int_equal(r.fail, SH_HTTP1_FAIL_TOO_MANY_HEADERS);
}

static void test_limit_head(void **state)
{
    (void)state;
    req_ctx_t c;
    char *s = make_request(1, 1, 10);
    size_t n = strlen(s);
    sh_http1_limits_t lim = {.max_head = n};
    assert_int_equal(parse_req_n(&c, s, n, &lim), (ssize_t)n);
    lim.max_head = n - 1;
    assert_int_equal(parse_req_n(&c, s, n, &lim), SH_ELIMIT);
    assert_int_equal(c.req.fail, SH_HTTP1_FAIL_HEADER_TOO_LARGE);
    assert_int_equal(c.req.status, 431);
    /* a head that never ends is cut at the limit, not buffered forever */
    assert_int_equal(parse_req_n(&c, s, n - 2, &lim), SH_EAGAIN);
    free(s);

    /* the default is 64 KiB: 9 lines of 8000 bytes fit each line limit */
    size_t cap = 9 * 8100 + 64;
    char *big = malloc(cap);
    assert_non_null(big);
    size_t m = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int k = 0; k < 9; k++) {
        m += (size_t)sprintf(big + m, "X%d: ", k);
        memset(big + m, 'z', 8000);
        m += 8000;
        m += (size_t)sprintf(big + m, "\r\n");
    }
    m += (size_t)sprintf(big + m, "\r\n");
    assert_int_equal(parse_req_n(&c, big, m, NULL), SH_ELIMIT);
    assert_int_equal(c.req.fail, SH_HTTP1_FAIL_HEADER_TOO_LARGE);
    free(big);
}

/* --- incremental feeding --------------------------------------------------- */

static void check_incremental(const char *s)
{
    size_t n = strlen(s);
    req_ctx_t whole, part;
    ssize_t rc = parse_req_n(&whole, s, n, NULL);
    assert_true(rc > 0);
    for (size_t m = 0; m < (size_t)rc; m++)
        assert_int_equal(parse_req_n(&part, s, m, NULL), SH_EAGAIN);
    for (size_t m = (size_t)rc; m <= n; m++) {
        assert_int_equal(parse_req_n(&part, s, m, NULL), rc);
        assert_true(part.req.method == whole.req.method);
        assert_true(part.req.target == whole.req.target);
        assert_int_equal(part.req.target_len, whole.req.target_len);
        assert_int_equal(part.req.nheaders, whole.req.nheaders);
        assert_int_equal(part.req.content_length, whole.req.content_length);
        assert_int_equal(part.req.keep_alive, whole.req.keep_alive);
        assert_int_equal(part.req.chunked, whole.req.chunked);
        for (size_t h = 0; h < whole.req.nheaders; h++) {
            assert_true(part.hdrs[h].name == whole.hdrs[h].name);
            assert_int_equal(part.hdrs[h].value_len, whole.hdrs[h].value_len);
        }
    }
}

static void test_incremental(void **state)
{
    (void)state;
    check_incremental("GET /x HTTP/1.1\r\nHost: a\r\nCookie: aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n");
    check_incremental(
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    check_incremental("GET / HTTP/1.0\nConnection: keep-alive\n\nGET /next");
    check_incremental("\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
}

/* --- responses --------------------------------------------------------------- */

static void test_response_basic(void **state)
{
    (void)state;
    resp_ctx_t c;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
    assert_int_equal(parse_resp(&c, s), (ssize_t)strlen(s) - 5);
    assert_int_equal(c.resp.version, 11);
    assert_int_equal(c.resp.status, 200);
    assert_span(c.resp.reason_phrase, c.resp.reason_len, "OK");
    assert_int_equal(c.resp.content_length, 5);
    assert_false(c.resp.chunked);
    assert_true(c.resp.keep_alive);
    assert_int_equal(c.resp.nheaders, 2);
    assert_int_equal(c.resp.fail, SH_HTTP1_FAIL_NONE);
}

static void test_response_variants(void **state)
{
    (void)state;
    resp_ctx_t c;
    assert_true(parse_resp(&c, "HTTP/1.1 404 Not Found Here\r\n\r\n") > 0);
    assert_int_equal(c.resp.status, 404);
    assert_span(c.resp.reason_phrase, c.resp.reason_len, "Not Found Here");
    assert_int_equal(c.resp.content_length, -1);

    /* no reason phrase, with and without the SP */
    assert_true(parse_resp(&c, "HTTP/1.1 204 \r\n\r\n") > 0);
    assert_int_equal(c.resp.status, 204);
    assert_int_equal(c.resp.reason_len, 0);
    assert_true(parse_resp(&c, "HTTP/1.1 204\r\n\r\n") > 0);
    assert_int_equal(c.resp.reason_len, 0);
    assert_true(parse_resp(&c, "HTTP/1.1 999 \xe2\x9c\x93\r\n\n") > 0);
    assert_int_equal(c.resp.status, 999);

    assert_true(parse_resp(&c, "HTTP/1.0 200 OK\r\n\r\n") > 0);
    assert_int_equal(c.resp.version, 10);
    assert_false(c.resp.keep_alive);
    assert_true(parse_resp(&c, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n") > 0);
    assert_true(c.resp.keep_alive);
    assert_true(parse_resp(&c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n") > 0);
    assert_false(c.resp.keep_alive);

    assert_true(parse_resp(&c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") > 0);
    assert_true(c.resp.chunked);
    assert_int_equal(c.resp.content_length, -1);

    assert_true(parse_resp(&c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                               "Upgrade: websocket\r\n\r\n") > 0);
    assert_int_equal(c.resp.status, 101);
    assert_true(c.resp.has_connection_upgrade);

    /* responses carry no Host rule */
    assert_true(parse_resp(&c, "HTTP/1.1 200 OK\r\nHost: a\r\nHost: b\r\n\r\n") > 0);

    assert_int_equal(parse_resp(&c, "HTTP/1.1 200 O"), SH_EAGAIN);
    assert_int_equal(parse_resp(&c, "HTTP/1.1 200 OK\r\n"), SH_EAGAIN);
}

static void test_response_bad(void **state)
{
    (void)state;
    resp_ctx_t c;
    static const struct {
        const char *in;
        ssize_t rc;
        int fail;
    } cases[] = {
        {"HTTP/1.1 20 OK\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX},
        {"HTTP/1.1 2000 OK\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX},
        {"HTTP/1.1 099 OK\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX},
        {"HTTP/1.1 2x0 OK\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX},
        {"HTTP/1.1  200 OK\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX},
        {"HTTP/1.1 200 O\x01K\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX},
        {"HTTP/1.1 200 OK\rX\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX},
        {"HTTP/2.0 200 OK\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_VERSION},
        {"HTTP/1.1200 OK\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX},
        {"ICY 200 OK\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", SH_EPARSE,
         SH_HTTP1_FAIL_SYNTAX},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", SH_EPARSE,
         SH_HTTP1_FAIL_SYNTAX},
        {"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", SH_EPARSE,
         SH_HTTP1_FAIL_NOT_IMPLEMENTED},
        {"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX},
        {"HTTP/1.1 200 OK\r\nX : a\r\n\r\n", SH_EPARSE, SH_HTTP1_FAIL_SYNTAX},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        ssize_t rc = parse_resp(&c, cases[k].in);
        if (rc != cases[k].rc || c.resp.fail != cases[k].fail)
            fprintf(stderr, "case %zu: rc %zd fail %d\n", k, rc, c.resp.fail);
        assert_int_equal(rc, cases[k].rc);
        assert_int_equal(c.resp.fail, cases[k].fail);
        assert_non_null(c.resp.reason);
    }

    sh_http1_limits_t lim = {.max_request_line = 32};
    const char *s = "HTTP/1.1 200 A very long reason phrase indeed\r\n\r\n";
    memset(&c, 0, sizeof(c));
    c.resp.headers = c.hdrs;
    c.resp.max_headers = MAXH;
    assert_int_equal(sh_http1_parse_response(s, strlen(s), &c.resp, &lim), SH_ELIMIT);
    assert_int_equal(c.resp.fail, SH_HTTP1_FAIL_HEADER_TOO_LARGE);
}

/* --- chunked ---------------------------------------------------------------- */

typedef struct {
    char out[4096];
    size_t out_len;
    int done;
    ssize_t err;     /* SH_EPARSE once failed */
    size_t consumed; /* total bytes consumed */
} dec_t;

/* Feed buf in pieces of `step` bytes (0 = all at once), re-feeding what a
 * call left unconsumed as a real caller would. */
static void decode_steps(dec_t *r, const char *buf, size_t len, size_t step)
{
    sh_http1_chunked_t d;
    sh_http1_chunked_init(&d);
    memset(r, 0, sizeof(*r));
    size_t avail = step ? 0 : len;
    while (!r->done) {
        const char *data;
        size_t dlen;
        int done = 0;
        ssize_t n = sh_http1_chunked_decode(&d, buf + r->consumed, avail - r->consumed, &data,
                                            &dlen, &done);
        if (n < 0) {
            r->err = n;
            return;
        }
        assert_true((size_t)n <= avail - r->consumed);
        if (dlen) {
            assert_true(data >= buf + r->consumed && data + dlen <= buf + r->consumed + (size_t)n);
            assert_true(r->out_len + dlen <= sizeof(r->out));
            memcpy(r->out + r->out_len, data, dlen);
            r->out_len += dlen;
        }
        r->consumed += (size_t)n;
        r->done = done;
        if (n == 0 && !done) {
            if (avail == len)
                return; /* needs more than there is */
            avail = avail + step > len ? len : avail + step;
        }
    }
}

static void test_chunked_basic(void **state)
{
    (void)state;
    dec_t r;
    const char *s = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT";
    decode_steps(&r, s, strlen(s), 0);
    assert_int_equal(r.err, 0);
    assert_true(r.done);
    assert_int_equal(r.out_len, 11);
    assert_memory_equal(r.out, "hello world", 11);
    /* bytes after the end are left alone */
    assert_int_equal(r.consumed, strlen(s) - 4);

    for (size_t step = 1; step < 8; step++) {
        dec_t b;
        decode_steps(&b, s, strlen(s), step);
        assert_true(b.done);
        assert_int_equal(b.out_len, 11);
        assert_memory_equal(b.out, "hello world", 11);
        assert_int_equal(b.consumed, r.consumed);
    }
}

static void test_chunked_spans(void **state)
{
    (void)state;
    sh_http1_chunked_t d;
    sh_http1_chunked_init(&d);
    const char *s = "a\r\n0123456789\r\n0\r\n\r\n";
    const char *data;
    size_t dlen;
    int done = 0;
    /* stops right after the first data span */
    ssize_t n = sh_http1_chunked_decode(&d, s, strlen(s), &data, &dlen, &done);
    assert_int_equal(n, 13);
    assert_true(data == s + 3);
    assert_int_equal(dlen, 10);
    assert_false(done);
    n = sh_http1_chunked_decode(&d, s + 13, strlen(s) - 13, &data, &dlen, &done);
    assert_int_equal(n, (ssize_t)strlen(s) - 13);
    assert_null(data);
    assert_int_equal(dlen, 0);
    assert_true(done);
    /* once done, nothing more is consumed */
    n = sh_http1_chunked_decode(&d, "5\r\n", 3, &data, &dlen, &done);
    assert_int_equal(n, 0);
    assert_true(done);

    /* a partial data span */
    sh_http1_chunked_init(&d);
    n = sh_http1_chunked_decode(&d, "A\r\n0123", 7, &data, &dlen, &done);
    assert_int_equal(n, 7);
    assert_int_equal(dlen, 4);
    assert_int_equal(d.remaining, 6);
    assert_false(done);
}

static void test_chunked_extensions_trailers(void **state)
{
    (void)state;
    dec_t r;
    const char *ok[] = {
        "3;name=value\r\nabc\r\n0\r\n\r\n",
        "3 ; a ; b = \"q;\\\"x\" ;c=d\r\nabc\r\n0;last\r\n\r\n",
        "3;flag\r\nabc\r\n0\r\nTrailer-A: 1\r\nX: \t\r\n\r\n",
        "00003\r\nabc\r\n000\r\n\r\n",
        "3\r\nabc\r\n0\r\nChecksum:abc\r\n\r\n",
    };
    for (size_t k = 0; k < sizeof(ok) / sizeof(ok[0]); k++) {
        for (size_t step = 0; step < 3; step++) {
            decode_steps(&r, ok[k], strlen(ok[k]), step);
            if (r.err || !r.done)
                fprintf(stderr, "case %zu step %zu failed\n", k, step);
            assert_int_equal(r.err, 0);
            assert_true(r.done);
            assert_int_equal(r.consumed, strlen(ok[k]));
            assert_memory_equal(r.out, "abc", 3);
        }
    }
    /* upper-case hex and the largest allowed size line */
    sh_http1_chunked_t d;
    sh_http1_chunked_init(&d);
    const char *data;
    size_t dlen;
    int done;
    assert_int_equal(sh_http1_chunked_decode(&d, "4000000000000000\r\n", 18, &data, &dlen, &done),
                     18);
    assert_int_equal(d.remaining, UINT64_C(1) << 62);
    sh_http1_chunked_init(&d);
    assert_int_equal(sh_http1_chunked_decode(&d, "FfFf\r\n", 6, &data, &dlen, &done), 6);
    assert_int_equal(d.remaining, 0xffff);
}

static void test_chunked_bad(void **state)
{
    (void)state;
    const char *bad[] = {
        "x\r\n",                        /* not hex */
        "\r\n",                         /* no digits */
        "-1\r\n",                       /* sign */
        "0x5\r\nhello\r\n0\r\n\r\n",    /* C prefix */
        "5\r\nhelloX\r\n0\r\n\r\n",     /* missing CRLF after data */
        "5\r\nhello\rX0\r\n\r\n",       /* CR without LF */
        "5\r\nhello\n0\r\n\r\n",        /* bare LF after data */
        "5\nhello\r\n0\r\n\r\n",        /* bare LF after size */
        "5\r\r\nhello\r\n",             /* bare CR */
        "5 \r\nhello\r\n",              /* whitespace not followed by ';' */
        "5;\r\nhello\r\n",              /* empty extension name */
        "5;a=\r\nhello\r\n",            /* empty extension value */
        "5;a=\"x\r\nhello\r\n",         /* unterminated quoted string */
        "5;a=b c\r\nhello\r\n",         /* junk after value */
        "5;a\x01\r\nhello\r\n",         /* CTL in extension */
        "5;a\nhello\r\n",               /* bare LF in extension */
        "4000000000000001\r\n",         /* over 2^62 */
        "ffffffffffffffffff\r\n",       /* over 2^64 */
        "0\r\nX: a\r\n folded\r\n\r\n", /* obs-fold in trailers */
        "0\r\nX : a\r\n\r\n",           /* whitespace before colon */
        "0\r\nX: a\x7f\r\n\r\n",        /* DEL in trailer */
        "0\r\nNoColon\r\n\r\n",
        "0\r\n\n", /* bare LF ending */
        "0\r\n\rX",
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        for (size_t step = 0; step < 2; step++) {
            dec_t r;
            decode_steps(&r, bad[k], strlen(bad[k]), step);
            if (r.err != SH_EPARSE)
                fprintf(stderr, "chunked case %zu step %zu accepted\n", k, step);
            assert_int_equal(r.err, SH_EPARSE);
        }
    }

    /* the error is sticky */
    sh_http1_chunked_t d;
    sh_http1_chunked_init(&d);
    const char *data;
    size_t dlen;
    int done;
    assert_int_equal(sh_http1_chunked_decode(&d, "z", 1, &data, &dlen, &done), SH_EPARSE);
    assert_int_equal(sh_http1_chunked_decode(&d, "0\r\n\r\n", 5, &data, &dlen, &done), SH_EPARSE);
    assert_false(done);
}

static void test_chunked_limits(void **state)
{
    (void)state;
    sh_http1_chunked_t d;
    const char *data;
    size_t dlen;
    int done;
    char *buf = malloc(70000);
    assert_non_null(buf);

    /* a size line of 4096 bytes (CRLF included) is fine, 4097 is not */
    sh_http1_chunked_init(&d);
    memset(buf, '0', 4093);
    memcpy(buf + 4093, "1\r\n", 3);
    assert_int_equal(sh_http1_chunked_decode(&d, buf, 4096, &data, &dlen, &done), 4096);
    assert_int_equal(d.remaining, 1);

    sh_http1_chunked_init(&d);
    memset(buf, '0', 4094);
    memcpy(buf + 4094, "1\r\n", 3);
    assert_int_equal(sh_http1_chunked_decode(&d, buf, 4097, &data, &dlen, &done), SH_EPARSE);

    /* a long extension counts too */
    sh_http1_chunked_init(&d);
    memcpy(buf, "1;a=", 4);
    memset(buf + 4, 'b', 5000);
    assert_int_equal(sh_http1_chunked_decode(&d, buf, 5004, &data, &dlen, &done), SH_EPARSE);

    /* one trailer line over 4096 */
    sh_http1_chunked_init(&d);
    memcpy(buf, "0\r\nX: ", 6);
    memset(buf + 6, 'b', 5000);
    assert_int_equal(sh_http1_chunked_decode(&d, buf, 5006, &data, &dlen, &done), SH_EPARSE);

    /* many trailer lines, over 64 KiB in all */
    sh_http1_chunked_init(&d);
    size_t n = (size_t)sprintf(buf, "0\r\n");
    while (n < 69000)
        n += (size_t)sprintf(buf + n, "X-Trailer: %01000d\r\n", 0);
    assert_int_equal(sh_http1_chunked_decode(&d, buf, n, &data, &dlen, &done), SH_EPARSE);
    free(buf);
}

/* --- helpers --------------------------------------------------------------- */

static void test_has_token(void **state)
{
    (void)state;
    const char *v = " keep-alive ,\tUpgrade,, close ";
    assert_true(sh_http1_has_token(v, strlen(v), "close"));
    assert_true(sh_http1_has_token(v, strlen(v), "upgrade"));
    assert_true(sh_http1_has_token(v, strlen(v), "KEEP-ALIVE"));
    assert_false(sh_http1_has_token(v, strlen(v), "clos"));
    assert_false(sh_http1_has_token(v, strlen(v), "alive"));
    assert_false(sh_http1_has_token("", 0, "close"));
    assert_false(sh_http1_has_token(",,", 2, "close"));
    assert_true(sh_http1_has_token("close", 5, "close"));
    /* only the first len bytes count */
    assert_false(sh_http1_has_token("close", 4, "close"));
    assert_false(sh_http1_has_token("x close y", 9, "close"));
}

static void test_next_word(void **state)
{
    (void)state;
    const char *v = " a-b ,\tUpgrade,, x y", *p = v, *e = v + strlen(v), *w;
    size_t n;
    w = sh_http1_next_word(&p, e, &n);
    assert_non_null(w);
    assert_int_equal(n, 3);
    assert_memory_equal(w, "a-b", 3);
    w = sh_http1_next_word(&p, e, &n);
    assert_int_equal(n, 7);
    assert_memory_equal(w, "Upgrade", 7);
    w = sh_http1_next_word(&p, e, &n);
    assert_int_equal(n, 1);
    assert_memory_equal(w, "x", 1);
    w = sh_http1_next_word(&p, e, &n);
    assert_int_equal(n, 1);
    assert_memory_equal(w, "y", 1);
    assert_null(sh_http1_next_word(&p, e, &n));
    assert_ptr_equal(p, e);
    p = ", \t,";
    assert_null(sh_http1_next_word(&p, p + 4, &n));
    /* only up to e */
    p = "close";
    w = sh_http1_next_word(&p, p + 4, &n);
    assert_int_equal(n, 4);
}

static void test_method_id_and_name_is(void **state)
{
    (void)state;
    static const struct {
        const char *m;
        int id;
    } ids[] = {
        {"GET", SH_HTTP_GET},         {"HEAD", SH_HTTP_HEAD},     {"POST", SH_HTTP_POST},
        {"PUT", SH_HTTP_PUT},         {"DELETE", SH_HTTP_DELETE}, {"CONNECT", SH_HTTP_CONNECT},
        {"OPTIONS", SH_HTTP_OPTIONS}, {"TRACE", SH_HTTP_TRACE},   {"PATCH", SH_HTTP_PATCH},
        {"get", SH_HTTP_OTHER},       {"GETS", SH_HTTP_OTHER},    {"", SH_HTTP_OTHER},
        {"PURGE", SH_HTTP_OTHER},     {"PATCHY", SH_HTTP_OTHER},
    };
    for (size_t k = 0; k < sizeof(ids) / sizeof(ids[0]); k++)
        assert_int_equal(sh_http1_method_id(ids[k].m, strlen(ids[k].m)), ids[k].id);
    assert_int_equal(sh_http1_method_id("GETX", 3), SH_HTTP_GET);

    sh_http1_header_t h = {.name = "Content-Length", .name_len = 14};
    assert_true(sh_http1_name_is(&h, "content-length"));
    assert_true(sh_http1_name_is(&h, "CONTENT-LENGTH"));
    assert_false(sh_http1_name_is(&h, "content-lengt"));
    assert_false(sh_http1_name_is(&h, "content-lengths"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_post_chunked),
        cmocka_unit_test(test_empty_value_and_empty_host),
        cmocka_unit_test(test_value_with_obs_text_and_tab),
        cmocka_unit_test(test_http10_keep_alive),
        cmocka_unit_test(test_connection_tokens),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_lf_only),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_target_forms),
        cmocka_unit_test(test_other_method),
        cmocka_unit_test(test_content_length_variants),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_rejections_incremental),
        cmocka_unit_test(test_limit_request_line),
        cmocka_unit_test(test_limit_header_line),
        cmocka_unit_test(test_limit_too_many_headers),
        cmocka_unit_test(test_limit_head),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_response_basic),
        cmocka_unit_test(test_response_variants),
        cmocka_unit_test(test_response_bad),
        cmocka_unit_test(test_chunked_basic),
        cmocka_unit_test(test_chunked_spans),
        cmocka_unit_test(test_chunked_extensions_trailers),
        cmocka_unit_test(test_chunked_bad),
        cmocka_unit_test(test_chunked_limits),
        cmocka_unit_test(test_has_token),
        cmocka_unit_test(test_next_word),
        cmocka_unit_test(test_method_id_and_name_is),
        cmocka_unit_test(test_host_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
