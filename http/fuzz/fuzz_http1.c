/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for the HTTP/1.1 codec (node/http1.h). The first input
 * byte picks what the rest is fed to and with which limits:
 *
 *   bits 0-1  0, 3: request head; 1: response head; 2: chunked body
 *   bits 2-3  limits: defaults (NULL), tiny, small, defaults spelled out
 *   bits 4-5  room for 64, 4, 0 or 16 header fields
 *   bits 6-7  where a chunked body is split in two (with later bytes)
 *
 * Beyond "no crash, no sanitizer report" it asserts the contract: bytes
 * consumed never exceed the input; every returned span lies inside the
 * consumed bytes; a failure carries its reason; a prefix of the input either
 * needs more bytes or gives exactly the result of the whole input; and a
 * chunked body decodes to the same bytes whether fed at once, in two parts
 * or byte by byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "http/http1.h"

#define MAXH 64

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static int inside(const char *p, size_t n, const char *base, size_t len)
{
    return p >= base && n <= len && (size_t)(p - base) <= len - n;
}

static const sh_http1_limits_t *pick_limits(uint8_t sel, sh_http1_limits_t *lim)
{
    switch ((sel >> 2) & 3) {
    case 0:
        return NULL;
    case 1:
        *lim = (sh_http1_limits_t){.max_request_line = 24, .max_header_line = 16, .max_head = 96};
        return lim;
    case 2:
        *lim = (sh_http1_limits_t){.max_request_line = 64, .max_header_line = 128, .max_head = 512};
        return lim;
    default:
        *lim = (sh_http1_limits_t){
            .max_request_line = 8192, .max_header_line = 8192, .max_head = 65536};
        return lim;
    }
}

static size_t pick_max_headers(uint8_t sel)
{
    static const size_t n[4] = {MAXH, 4, 0, 16};
    return n[(sel >> 4) & 3];
}

static void check_headers(const sh_http1_header_t *h, size_t n, size_t max, const char *buf,
                          size_t head)
{
    CHECK(n <= max);
    for (size_t k = 0; k < n; k++) {
        CHECK(h[k].name_len > 0);
        CHECK(inside(h[k].name, h[k].name_len, buf, head));
        CHECK(inside(h[k].value, h[k].value_len, buf, head));
        CHECK(h[k].value >= h[k].name + h[k].name_len);
        CHECK(sh_http1_name_is(&h[k], "host") ==
              (h[k].name_len == 4 && strncasecmp(h[k].name, "host", 4) == 0));
    }
}

static void check_failure(ssize_t rc, int fail, const char *reason)
{
    CHECK(rc == SH_EPARSE || rc == SH_ELIMIT);
    CHECK(reason != NULL);
    if (rc == SH_ELIMIT)
        CHECK(fail == SH_HTTP1_FAIL_URI_TOO_LONG || fail == SH_HTTP1_FAIL_HEADER_TOO_LARGE ||
              fail == SH_HTTP1_FAIL_TOO_MANY_HEADERS);
    else
        CHECK(fail == SH_HTTP1_FAIL_SYNTAX || fail == SH_HTTP1_FAIL_VERSION ||
              fail == SH_HTTP1_FAIL_NOT_IMPLEMENTED);
}

/* --- requests ------------------------------------------------------------ */

static ssize_t req_parse(const char *buf, size_t len, sh_http1_request_t *r, sh_http1_header_t *h,
                         size_t max, const sh_http1_limits_t *lim)
{
    memset(r, 0, sizeof(*r));
    r->headers = h;
    r->max_headers = max;
    return sh_http1_parse_request(buf, len, r, lim);
}

static void check_request(const char *buf, size_t len, const sh_http1_request_t *r, ssize_t rc,
                          size_t max)
{
    if (rc == SH_EAGAIN) {
        CHECK(r->fail == SH_HTTP1_FAIL_NONE);
        return;
    }
    if (rc < 0) {
        check_failure(rc, r->fail, r->reason);
        CHECK(r->status == 400 || r->status == 414 || r->status == 431 || r->status == 501 ||
              r->status == 505);
        return;
    }
    size_t head = (size_t)rc;
    CHECK(head <= len);
    CHECK(r->fail == SH_HTTP1_FAIL_NONE);
    CHECK(r->version == 10 || r->version == 11);
    CHECK(r->method_len > 0 && inside(r->method, r->method_len, buf, head));
    CHECK(r->target_len > 0 && inside(r->target, r->target_len, buf, head));
    CHECK(r->method_id == sh_http1_method_id(r->method, r->method_len));
    check_headers(r->headers, r->nheaders, max, buf, head);
    CHECK(r->host == NULL || inside(r->host, r->host_len, buf, head));
    CHECK(r->version == 10 || r->host != NULL);
    /* the host rules: a kept host is a non-empty prefix of the value */
    if (r->host != NULL) {
        ssize_t hl = sh_http1_host(r->host, r->host_len);
        CHECK(hl == SH_EPARSE || (hl > 0 && (size_t)hl <= r->host_len));
    }
    const char *auth;
    size_t al;
    if (sh_http1_target_authority(r->target, r->target_len, &auth, &al)) {
        CHECK(inside(auth, al, r->target, r->target_len));
        ssize_t hl = sh_http1_host(auth, al);
        CHECK(hl == SH_EPARSE || (hl > 0 && (size_t)hl <= al));
    }
    CHECK(r->content_length >= -1);
    CHECK(!r->chunked || r->content_length == -1);
    CHECK(!r->chunked || r->version == 11);
    /* the head ends with an empty line */
    CHECK(buf[head - 1] == '\n');
}

static void fuzz_request(uint8_t sel, const char *buf, size_t len)
{
    sh_http1_limits_t lb;
    const sh_http1_limits_t *lim = pick_limits(sel, &lb);
    size_t max = pick_max_headers(sel);
    sh_http1_header_t h1[MAXH], h2[MAXH];
    sh_http1_request_t r1, r2;

    ssize_t rc = req_parse(buf, len, &r1, h1, max, lim);
    check_request(buf, len, &r1, rc, max);

    /* prefixes: just short of the head, half, and a few small ones */
    size_t cuts[5] = {len / 2, len ? len - 1 : 0, len / 3, 1, rc > 0 ? (size_t)rc - 1 : len / 4};
    for (size_t k = 0; k < 5; k++) {
        size_t m = cuts[k] <= len ? cuts[k] : len;
        ssize_t pr = req_parse(buf, m, &r2, h2, max, lim);
        check_request(buf, m, &r2, pr, max);
        if (rc > 0) {
            if (m < (size_t)rc) {
                CHECK(pr == SH_EAGAIN);
            } else {
                CHECK(pr == rc);
                CHECK(r2.method == r1.method && r2.target_len == r1.target_len);
                CHECK(r2.nheaders == r1.nheaders && r2.content_length == r1.content_length);
                CHECK(r2.keep_alive == r1.keep_alive && r2.chunked == r1.chunked);
                CHECK(r2.host == r1.host && r2.upgrade == r1.upgrade);
                CHECK(r2.expect_continue == r1.expect_continue);
            }
        } else if (rc == SH_EAGAIN) {
            CHECK(pr == SH_EAGAIN);
        } else {
            CHECK(pr == SH_EAGAIN || (pr == rc && r2.fail == r1.fail));
        }
    }

    /* pipelining: what follows a complete head parses on its own */
    if (rc > 0 && (size_t)rc < len) {
        ssize_t n2 = req_parse(buf + rc, len - (size_t)rc, &r2, h2, max, lim);
        check_request(buf + rc, len - (size_t)rc, &r2, n2, max);
    }
}

/* --- responses ------------------------------------------------------------ */

static ssize_t resp_parse(const char *buf, size_t len, sh_http1_response_t *r, sh_http1_header_t *h,
                          size_t max, const sh_http1_limits_t *lim)
{
    memset(r, 0, sizeof(*r));
    r->headers = h;
    r->max_headers = max;
    return sh_http1_parse_response(buf, len, r, lim);
}

static void check_response(const char *buf, size_t len, const sh_http1_response_t *r, ssize_t rc,
                           size_t max)
{
    if (rc == SH_EAGAIN) {
        CHECK(r->fail == SH_HTTP1_FAIL_NONE);
        return;
    }
    if (rc < 0) {
        check_failure(rc, r->fail, r->reason);
        return;
    }
    size_t head = (size_t)rc;
    CHECK(head <= len);
    CHECK(r->fail == SH_HTTP1_FAIL_NONE);
    CHECK(r->version == 10 || r->version == 11);
    CHECK(r->status >= 100 && r->status <= 999);
    CHECK(inside(r->reason_phrase, r->reason_len, buf, head));
    check_headers(r->headers, r->nheaders, max, buf, head);
    CHECK(r->content_length >= -1);
    CHECK(!r->chunked || r->content_length == -1);
    CHECK(buf[head - 1] == '\n');
}

static void fuzz_response(uint8_t sel, const char *buf, size_t len)
{
    sh_http1_limits_t lb;
    const sh_http1_limits_t *lim = pick_limits(sel, &lb);
    size_t max = pick_max_headers(sel);
    sh_http1_header_t h1[MAXH], h2[MAXH];
    sh_http1_response_t r1, r2;

    ssize_t rc = resp_parse(buf, len, &r1, h1, max, lim);
    check_response(buf, len, &r1, rc, max);

    size_t cuts[4] = {len / 2, len ? len - 1 : 0, 1, rc > 0 ? (size_t)rc - 1 : len / 4};
    for (size_t k = 0; k < 4; k++) {
        size_t m = cuts[k] <= len ? cuts[k] : len;
        ssize_t pr = resp_parse(buf, m, &r2, h2, max, lim);
        check_response(buf, m, &r2, pr, max);
        if (rc > 0) {
            if (m < (size_t)rc) {
                CHECK(pr == SH_EAGAIN);
            } else {
                CHECK(pr == rc && r2.status == r1.status && r2.nheaders == r1.nheaders);
                CHECK(r2.content_length == r1.content_length && r2.chunked == r1.chunked);
                CHECK(r2.keep_alive == r1.keep_alive);
            }
        } else if (rc == SH_EAGAIN) {
            CHECK(pr == SH_EAGAIN);
        } else {
            CHECK(pr == SH_EAGAIN || (pr == rc && r2.fail == r1.fail));
        }
    }
}

/* --- chunked ---------------------------------------------------------------- */

typedef struct {
    char *out;
    size_t out_len;
    size_t consumed;
    int done;
    int err;
} ck_result_t;

/* Feed buf[from..to) to d until it stops making progress. */
static void ck_feed(sh_http1_chunked_t *d, const char *buf, size_t to, ck_result_t *r, size_t len)
{
    while (!r->done && !r->err) {
        const char *data;
        size_t dlen;
        int done = 0;
        size_t avail = to - r->consumed;
        ssize_t n = sh_http1_chunked_decode(d, buf + r->consumed, avail, &data, &dlen, &done);
        if (n < 0) {
            CHECK(n == SH_EPARSE);
            r->err = 1;
            return;
        }
        CHECK((size_t)n <= avail);
        if (dlen) {
            CHECK(inside(data, dlen, buf + r->consumed, (size_t)n));
            CHECK(r->out_len + dlen <= len);
            memcpy(r->out + r->out_len, data, dlen);
            r->out_len += dlen;
        } else {
            CHECK(data == NULL);
        }
        r->consumed += (size_t)n;
        r->done = done;
        if (done)
            CHECK(d->remaining == 0);
        if (n == 0)
            return;
    }
}

static void fuzz_chunked(uint8_t sel, const char *buf, size_t len)
{
    ck_result_t whole = {.out = malloc(len + 1)};
    ck_result_t two = {.out = malloc(len + 1)};
    ck_result_t bytes = {.out = malloc(len + 1)};
    CHECK(whole.out && two.out && bytes.out);
    sh_http1_chunked_t d;

    sh_http1_chunked_init(&d);
    ck_feed(&d, buf, len, &whole, len);
    CHECK(whole.consumed <= len);
    /* it stops only when done, failed or out of bytes */
    CHECK(whole.done || whole.err || whole.consumed == len);

    size_t split =
        len ? ((size_t)(sel >> 6) * 0x9e37u + (len > 1 ? (uint8_t)buf[0] : 0)) % (len + 1) : 0;
    sh_http1_chunked_init(&d);
    ck_feed(&d, buf, split, &two, len);
    if (!two.done && !two.err)
        CHECK(two.consumed == split);
    ck_feed(&d, buf, len, &two, len);

    sh_http1_chunked_init(&d);
    for (size_t m = 1; m <= len && !bytes.done && !bytes.err; m++)
        ck_feed(&d, buf, m, &bytes, len);

    const ck_result_t *other[2] = {&two, &bytes};
    for (int k = 0; k < 2; k++) {
        CHECK(other[k]->err == whole.err);
        CHECK(other[k]->done == whole.done);
        /* a failing call consumes nothing it reports, so only a clean
         * run's byte counts compare; the data before a failure always do */
        if (!whole.err)
            CHECK(other[k]->consumed == whole.consumed);
        CHECK(other[k]->out_len == whole.out_len);
        CHECK(memcmp(other[k]->out, whole.out, whole.out_len) == 0);
    }
    free(whole.out);
    free(two.out);
    free(bytes.out);

    /* the helpers must be total on arbitrary bytes */
    (void)sh_http1_has_token(buf, len, "close");
    (void)sh_http1_method_id(buf, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    switch (sel & 3) {
    case 1:
        fuzz_response(sel, buf, len);
        break;
    case 2:
        fuzz_chunked(sel, buf, len);
        break;
    default:
        fuzz_request(sel, buf, len);
        break;
    }
    return 0;
}
