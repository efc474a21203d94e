/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for HTTP date parsing (sh_http_date_parse), which reads
 * Last-Modified and If-Modified-Since from the network. Invariants: no
 * crash or overread (ASan), a parsed time is in range, and formatting it
 * then parsing the result gives the same time.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/httpdate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1); /* exact size: ASan sees overreads */
    memcpy(copy, data, size);
    int64_t t;
    if (sh_http_date_parse(copy, size, &t) == 0) {
        if (t < 0 || t > 253402300799)
            abort();
        char b[SH_HTTP_DATE_LEN + 1];
        sh_http_date_format(b, t);
        int64_t t2;
        if (sh_http_date_parse(b, SH_HTTP_DATE_LEN, &t2) != 0 || t2 != t)
            abort();
    }
    free(copy);
    return 0;
}
