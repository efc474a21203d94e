/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for nginx-style URI normalization
 * (sh_http_normalize_uri: percent-decoding, slash merging, dot segments),
 * which decides what location a request reaches. Invariants checked:
 * the output is never longer than the input, starts with '/', has no
 * empty, "." or ".." segment left, and normalizing it again changes
 * nothing (idempotence).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/pipeline/http_conf.h"

static int clean(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '/')
            continue;
        /* segment after this slash */
        size_t j = i + 1;
        while (j < n && p[j] != '/')
            j++;
        size_t seg = j - i - 1;
        if (seg == 0 && j < n)
            return 0; /* "//" */
        if (seg == 1 && p[i + 1] == '.')
            return 0;
        if (seg == 2 && p[i + 1] == '.' && p[i + 2] == '.')
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char *out = malloc(size ? size : 1);
    size_t n = 0;
    if (sh_http_normalize_uri((const char *)data, size, out, &n) == 0) {
        if (n > size || !clean(out, n))
            abort();
        char *again = malloc(n ? n : 1);
        size_t m = 0;
        /* a decoded "%2F" may form new segments only through decoding, so
         * idempotence holds for outputs without '%' */
        if (memchr(out, '%', n) == NULL) {
            if (sh_http_normalize_uri(out, n, again, &m) != 0 || m != n || memcmp(again, out, n))
                abort();
        }
        free(again);
    }
    free(out);
    return 0;
}
