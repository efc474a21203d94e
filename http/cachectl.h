/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Response cacheability as nginx's proxy_cache decides it from the
 * upstream's response head (ngx_http_upstream.c's header handlers):
 *
 *   X-Accel-Expires  N seconds, "@T" an absolute time, 0: not cached; when
 *                    valid it wins over everything below (nginx clears
 *                    no_cache and expired for it)
 *   Cache-Control    no-cache, no-store, private: not cached; s-maxage=N
 *                    (before max-age=N) the lifetime, 0: not cached; a
 *                    non-digit in the number: not cached;
 *                    stale-while-revalidate=N and stale-if-error=N
 *   Expires          the lifetime when nothing above gave one; a past or
 *                    invalid date: not cached
 *   Set-Cookie       not cached
 *   Vary             "*" (or longer than 128 bytes): not cached; else the
 *                    entry is one variant, keyed by the named fields
 *
 * proxy_ignore_headers turns each off (SH_CACHECTL_IGN_*). When no header
 * gives a lifetime, proxy_cache_valid's time for the status applies (the
 * caller's job: valid_until is 0 then). Pure: headers and a time in, a
 * decision out; any thread. Part of the HTTP codec (header-value rules).
 */
#ifndef SH_CACHECTL_H
#define SH_CACHECTL_H

#include <stddef.h>
#include <stdint.h>

#include "http/http1.h"

/* proxy_ignore_headers */
#define SH_CACHECTL_IGN_XA_EXPIRES    0x01 /* X-Accel-Expires */
#define SH_CACHECTL_IGN_EXPIRES       0x02
#define SH_CACHECTL_IGN_CACHE_CONTROL 0x04
#define SH_CACHECTL_IGN_SET_COOKIE    0x08
#define SH_CACHECTL_IGN_VARY          0x10
#define SH_CACHECTL_IGN_OTHER         0x20 /* X-Accel-Redirect/-Limit-Rate/-Buffering/-Charset */

#define SH_CACHECTL_VARY_MAX 128 /* nginx's NGX_HTTP_CACHE_VARY_LEN */

typedef struct {
    int cacheable;       /* 0: the response is not stored */
    const char *reason;  /* static text when not cacheable */
    int64_t valid_until; /* absolute (seconds) the headers give; 0: none */
    int64_t updating;    /* stale-while-revalidate seconds, -1: none */
    int64_t error;       /* stale-if-error seconds, -1: none */
    const char *vary;    /* Vary value (points into the head), NULL: none */
    size_t vary_len;
} sh_cachectl_t;

/* Decide for a response head hs[0..n) at time now (seconds) with the
 * proxy_ignore_headers bits ignore. Always fills out. */
void sh_cachectl_eval(const sh_http1_header_t *hs, size_t n, int64_t now, unsigned ignore,
                      sh_cachectl_t *out);

/* Parse a Cache-Control value: bits for no-cache, no-store, private,
 * and the numbers (-1 when absent, -2 when malformed). */
#define SH_CC_NO_CACHE 0x1
#define SH_CC_NO_STORE 0x2
#define SH_CC_PRIVATE  0x4
typedef struct {
    unsigned flags;
    int64_t max_age, s_maxage, swr, sie;
} sh_cc_t;
void sh_cachectl_parse_cc(const char *v, size_t len, sh_cc_t *cc);

/* Parse X-Accel-Expires: 0 with *until set (0 when the value says "do
 * not cache"), or SH_EPARSE (ignored, as nginx). */
int sh_cachectl_parse_xae(const char *v, size_t len, int64_t now, int64_t *until);

/* Whether a client's If-None-Match value (a list, or "*") matches etag,
 * by the weak comparison (RFC 9110 13.1.2). */
int sh_cachectl_etag_match(const char *inm, size_t inm_len, const char *etag, size_t etag_len);

/* nginx's single-range rule on a body of size bytes: 1 with [*from,*to]
 * for one satisfiable "bytes=" range, 0 to ignore the field (bad syntax,
 * several ranges: the whole body), -1 for unsatisfiable (416). */
int sh_cachectl_range(const char *v, size_t len, int64_t size, int64_t *from, int64_t *to);

#endif
