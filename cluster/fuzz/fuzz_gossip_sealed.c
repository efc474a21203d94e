/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the decoder after decryption: the input is the plaintext (header +
 * protobuf); it is sealed under the test key and fed through the whole
 * receive path, so the version check, protobuf-c and the meaning checks see
 * arbitrary input. The first input byte picks UDP packet or push-pull.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cluster/wire.h"
#include "core/alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sh_keyring_t *kr;
    if (kr == NULL) {
        uint8_t k[SH_KEYRING_KEYLEN];
        memset(k, 0x5a, sizeof(k));
        kr = sh_keyring_create();
        sh_keyring_install(kr, k);
    }
    if (size < 1 || size > SH_WIRE_MAX_UDP - SH_KEYRING_OVERHEAD)
        return 0;
    int pushpull = data[0] & 1;
    data++;
    size--;
    size_t cap = size + SH_KEYRING_OVERHEAD;
    uint8_t *sealed = sh_malloc(cap), *scratch = sh_malloc(cap);
    long n = sh_keyring_seal(kr, data, size, sealed, cap);
    sh_wire_stats_t st = {0};
    const char *why = NULL;
    if (n > 0) {
        if (pushpull) {
            Sh__Gossip__PushPull *pp = NULL;
            if (sh_wire_open_pushpull(kr, sealed, (size_t)n, scratch, &pp, &st, &why) == 0)
                sh_wire_pushpull_free(pp);
        } else {
            Sh__Gossip__Packet *p = NULL;
            if (sh_wire_open_packet(kr, sealed, (size_t)n, scratch, &p, &st, &why) == 0)
                sh_wire_packet_free(p);
        }
    }
    sh_free(sealed);
    sh_free(scratch);
    return 0;
}
