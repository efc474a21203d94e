/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for the grpc-timeout parser (sh_grpc_parse_timeout,
 * node/proxy/grpc.c), which turns a client's header into the call's
 * deadline. Invariants: it accepts only 1..8 digits and one unit letter
 * (H M S m u n); an accepted value is at most 99999999 hours in ms and
 * never zero for a non-zero count (units below a millisecond round up).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/proxy/grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64)
        return 0;
    uint64_t ms = 0;
    const char *v = (const char *)data;
    int rc = sh_grpc_parse_timeout(v, size, &ms);
    int shape = size >= 2 && size <= 9 && strchr("HMSmun", v[size - 1]) != NULL && v[size - 1] != 0;
    uint64_t n = 0;
    for (size_t i = 0; shape && i + 1 < size; i++) {
        if (v[i] < '0' || v[i] > '9')
            shape = 0;
        else
            n = n * 10 + (uint64_t)(v[i] - '0');
    }
    if ((rc == 0) != shape)
        abort();
    if (rc == 0 && (ms > 99999999ull * 3600000ull || (n > 0 && ms == 0)))
        abort();
    return 0;
}
