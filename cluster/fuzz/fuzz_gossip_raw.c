/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the gossip receive path before decryption: random bytes as a UDP
 * datagram and as a push-pull frame. Nearly everything must be refused by
 * the keyring; nothing may crash or leak. The same bytes as plaintext also
 * go through the decode arena the SWIM core uses (sh_wire_arena_t).
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
    uint8_t *scratch = sh_malloc(size + 1);
    sh_wire_stats_t st = {0};
    const char *why = NULL;
    Sh__Gossip__Packet *p = NULL;
    if (sh_wire_open_packet(kr, data, size, scratch, &p, &st, &why) == 0)
        sh_wire_packet_free(p);
    Sh__Gossip__PushPull *pp = NULL;
    if (sh_wire_open_pushpull(kr, data, size, scratch, &pp, &st, &why) == 0)
        sh_wire_pushpull_free(pp);
    sh_free(scratch);

    static sh_wire_arena_t arena;
    if (arena.pa.alloc == NULL)
        sh_wire_arena_init(&arena);
    ProtobufCAllocator *pa = sh_wire_arena_begin(&arena);
    volatile size_t touch = 0;
    if (sh_wire_decode_packet_pa(data, size, &p, &st, &why, pa) == 0)
        touch += strlen(p->from) + p->n_updates;
    if (sh_wire_decode_pushpull_pa(data, size, &pp, &st, &why, pa) == 0)
        touch += strlen(pp->from) + pp->n_channels;
    (void)touch;
    sh_wire_arena_end(&arena, pa);
    return 0;
}
