/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the push-pull frame reader (ppframe.h, issue 15). The first byte
 * picks the mode and a piece size:
 *   bit 0 clear: the rest is raw bytes from the network, fed in pieces;
 *   bit 0 set:   the rest is a plaintext, sealed as a frame (bit 1: legacy)
 *                under the test key; then byte 1..2 pick a position whose
 *                byte is flipped (past the end: none), so the reader sees
 *                every field of a well-formed frame altered once.
 * A frame that opens is handed to the wire decoder, as pushpull.c does.
 * Invariants checked: never more taken than given, nothing held before a
 * stream head opens, the plaintext of an unaltered frame is what was sealed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/ppframe.h"
#include "cluster/wire.h"
#include "core/alloc.h"
#include "core/err.h"

static void run(sh_keyring_t *kr, const uint8_t *f, size_t n, size_t piece, const uint8_t *want,
                size_t want_len)
{
    sh_ppframe_reader_t *r = sh_ppframe_reader_create(kr);
    size_t off = 0;
    int rc = SH_EAGAIN;
    const char *why = NULL;
    while (off < n && rc == SH_EAGAIN) {
        size_t k = piece < n - off ? piece : n - off;
        size_t t = sh_ppframe_feed(r, f + off, k, &rc, &why);
        if (t > k)
            abort();
        off += t;
        if (!sh_ppframe_authenticated(r) && !sh_ppframe_legacy(r) && sh_ppframe_held(r) != 0)
            abort(); /* nothing allocated before a stream head opens */
        if (t < k)
            break;
    }
    if (rc == 0) {
        size_t len = 0;
        const uint8_t *pt = sh_ppframe_plaintext(r, &len);
        if (want != NULL && (len != want_len || memcmp(pt, want, len) != 0))
            abort();
        sh_wire_stats_t st = {0};
        Sh__Gossip__PushPull *pp = NULL;
        if (sh_wire_decode_pushpull(pt, len, &pp, &st, NULL) == 0)
            sh_wire_pushpull_free(pp);
    } else if (rc != SH_EAGAIN && why == NULL) {
        abort(); /* every refusal has its reason */
    }
    sh_ppframe_reader_destroy(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sh_keyring_t *kr;
    if (kr == NULL) {
        uint8_t k[SH_KEYRING_KEYLEN];
        memset(k, 0x5a, sizeof(k));
        kr = sh_keyring_create();
        sh_keyring_install(kr, k);
    }
    if (size < 1 || size > (1u << 20))
        return 0;
    uint8_t mode = data[0];
    size_t piece = ((size_t)(mode >> 2) * 97) % 70000 + 1;
    if (!(mode & 1)) {
        run(kr, data + 1, size - 1, piece, NULL, 0);
        return 0;
    }
    if (size < 4)
        return 0;
    size_t pos = ((size_t)data[1] << 8) | data[2];
    const uint8_t *pt = data + 3;
    size_t len = size - 3;
    uint8_t *f = NULL;
    long fl = sh_ppframe_seal(kr, pt, len, mode & 2, &f);
    if (fl > 0) {
        run(kr, f, (size_t)fl, piece, pt, len);
        if (pos < (size_t)fl) {
            f[pos] ^= (uint8_t)(1u << (data[1] & 7));
            run(kr, f, (size_t)fl, piece, NULL, 0);
        }
    }
    sh_free(f);
    return 0;
}
