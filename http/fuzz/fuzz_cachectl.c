/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness of http/cachectl.h: the input is split into response
 * fields ("Name: value" lines) and evaluated as nginx's proxy_cache would;
 * the Cache-Control parser, X-Accel-Expires, If-None-Match matching and the
 * range rule get the raw bytes too. Invariants: a non-cacheable result has
 * a reason; a range result lies inside the body.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/cachectl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    sh_http1_header_t hs[32];
    size_t n = 0;
    while (p < end && n < 32) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon != NULL)
            hs[n++] =
                (sh_http1_header_t){p, (size_t)(colon - p), colon + 1, (size_t)(le - colon - 1)};
        p = eol ? eol + 1 : end;
    }
    for (unsigned ign = 0; ign < 64; ign += 21) {
        sh_cachectl_t c;
        sh_cachectl_eval(hs, n, 1700000000, ign, &c);
        if (!c.cacheable && c.reason == NULL)
            abort();
    }
    sh_cc_t cc;
    sh_cachectl_parse_cc((const char *)data, size, &cc);
    int64_t until;
    (void)sh_cachectl_parse_xae((const char *)data, size, 1700000000, &until);
    (void)sh_cachectl_etag_match((const char *)data, size, "\"abc\"", 5);
    int64_t from, to;
    if (sh_cachectl_range((const char *)data, size, 1000, &from, &to) == 1 &&
        (from < 0 || to >= 1000 || from > to))
        abort();
    return 0;
}
