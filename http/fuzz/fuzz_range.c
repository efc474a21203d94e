/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for the Range and conditional-request rules
 * (http/cond.h), which read Range, If-Range and the If-* fields from the
 * network. Invariants: no crash or overread (ASan); every range returned
 * is non-empty and inside the representation; their sizes add up to no
 * more than it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/cond.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int64_t rep = (int64_t)data[0] * 97 + data[1];
    data += 2;
    size -= 2;
    char *copy = malloc(size ? size : 1); /* exact size: ASan sees overreads */
    memcpy(copy, data, size);
    static sh_http_range_t rg[SH_RANGES_MAX];
    int n = sh_http_range_parse(copy, size, rep, rep % 5 == 0 ? -1 : (int)(rep % 7), rg);
    if (n > SH_RANGES_MAX)
        abort();
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (rg[i].start < 0 || rg[i].start >= rg[i].end || rg[i].end > rep)
            abort();
        total += rg[i].end - rg[i].start;
    }
    if (total > rep)
        abort();
    sh_http_cond_t c = {copy, copy, copy, copy, size, size, size, size};
    int s = sh_http_cond_eval(&c, copy, size / 2, rep, (int)(rep % 3));
    if (s != 200 && s != 304 && s != 412)
        abort();
    (void)sh_http_if_range(copy, size, copy, size, rep);
    free(copy);
    return 0;
}
