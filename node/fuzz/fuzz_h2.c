/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for what Shoal parses itself on the TLS and HTTP/2
 * path. The first input byte picks:
 *
 *   0: ALPN selection (sh_tls_alpn_select) on the rest, h2 allowed or not
 *   1: a session-ticket key file (sh_tls_parse_ticket_key)
 *   else: the rest is an HTTP/2 client byte stream after the connection
 *      preface, fed to an nghttp2 server session (frames, HPACK) in two
 *      parts; each complete request header block goes through
 *      sh_http2_build_head, the HTTP/2 -> request translation.
 *
 * Beyond "no crash, no sanitizer report" it asserts the contracts: the ALPN
 * choice lies inside the client's list and is a name we offer; a parsed key
 * has a valid length; a built head has every field inside the copy, at
 * most `max` fields, a method and a path, and no pseudo-field left.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/conn/http2.h"
#include "node/conn/tls.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

#define MAX_FIELDS 64
#define MAX_IN     256

typedef struct {
    sh_h2_field_t in[MAX_IN];
    char *copies[MAX_IN * 2];
    size_t n;
} block_t;

static void block_reset(block_t *b)
{
    for (size_t i = 0; i < b->n * 2; i++)
        free(b->copies[i]);
    b->n = 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)s;
    (void)f;
    (void)flags;
    block_t *b = ud;
    if (b->n >= MAX_IN)
        return 0;
    char *n = malloc(nl + 1), *v = malloc(vl + 1);
    memcpy(n, name, nl);
    memcpy(v, value, vl);
    b->copies[2 * b->n] = n;
    b->copies[2 * b->n + 1] = v;
    b->in[b->n++] = (sh_h2_field_t){n, nl, v, vl};
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    block_t *b = ud;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    char *head = NULL;
    size_t head_len = 0;
    sh_h2_pseudo_t ps;
    sh_http1_header_t fields[MAX_FIELDS];
    const char *why = NULL;
    ssize_t n = sh_http2_build_head(b->in, b->n, &head, &head_len, &ps, fields, MAX_FIELDS, &why);
    if (n < 0) {
        CHECK(why != NULL && head == NULL && (n == SH_EPARSE || n == SH_ELIMIT));
    } else {
        CHECK((size_t)n <= MAX_FIELDS);
        CHECK(ps.method_len > 0 && ps.path_len > 0);
        CHECK(ps.method >= head && ps.method + ps.method_len <= head + head_len);
        CHECK(ps.path >= head && ps.path + ps.path_len <= head + head_len);
        for (ssize_t i = 0; i < n; i++) {
            CHECK(fields[i].name_len > 0 && fields[i].name[0] != ':');
            CHECK(fields[i].value + fields[i].value_len <= head + head_len);
        }
    }
    sh_free(head);
    block_reset(b);
    return 0;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    (void)f;
    block_reset(ud);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    if (mode == 0 || mode == 0x80) {
        const unsigned char *out = NULL;
        unsigned char outlen = 0;
        int rc = sh_tls_alpn_select(data, (unsigned)(size > 65535 ? 65535 : size), mode == 0, &out,
                                    &outlen);
        if (rc == 1) {
            CHECK(out >= data && out + outlen <= data + size);
            CHECK((outlen == 2 && memcmp(out, "h2", 2) == 0 && mode == 0) ||
                  (outlen == 8 &&
                   (memcmp(out, "http/1.1", 8) == 0 || memcmp(out, "http/1.0", 8) == 0)));
        } else {
            CHECK(rc == 0 || rc == SH_EPARSE);
        }
        return 0;
    }
    if (mode == 1) {
        sh_tls_ticket_key_t k;
        const char *why = NULL;
        int rc = sh_tls_parse_ticket_key(data, size, &k, &why);
        CHECK(rc == 0 ? (size == 48 || size == 80) && (k.key_len == 16 || k.key_len == 32)
                      : why != NULL);
        return 0;
    }
    static block_t b;
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session *s;
    nghttp2_session_server_new(&s, cbs, &b);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_session_mem_recv(s, (const uint8_t *)SH_H2_PREFACE, SH_H2_PREFACE_LEN);
    size_t split = size ? (size_t)(mode % (size + 1)) : 0;
    if (nghttp2_session_mem_recv(s, data, split) >= 0)
        nghttp2_session_mem_recv(s, data + split, size - split);
    nghttp2_session_del(s);
    block_reset(&b);
    return 0;
}
