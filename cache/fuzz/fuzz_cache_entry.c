/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for the stored-entry decoder (sh_cache_entry_decode):
 * an LMDB record is untrusted input (a file another version or a crash may
 * have left). The first byte picks the mode: odd, the rest is a whole
 * record; even, the rest is the metadata message and the harness puts a
 * valid header (and an inline body of the last byte's length) in front, so
 * the fuzzer reaches the protobuf decoder and the meaning checks without
 * having to forge the header. Invariants: no crash or overread (ASan); a
 * decoded entry is within its limits, and packing its metadata again then
 * decoding that gives the same entry.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_internal.h"
#include "core/alloc.h"

static void check_same(const sh_cache_meta_t *a, const sh_cache_meta_t *b)
{
    if (a->status != b->status || a->nfields != b->nfields || a->ntags != b->ntags ||
        a->nvary != b->nvary || a->valid_until != b->valid_until || a->stored_at != b->stored_at ||
        a->etag_len != b->etag_len || a->flags != b->flags || a->body_len != b->body_len)
        abort();
    for (size_t i = 0; i < a->nfields; i++)
        if (a->fields[i].name_len != b->fields[i].name_len ||
            memcmp(a->fields[i].name, b->fields[i].name, a->fields[i].name_len) != 0 ||
            a->fields[i].value_len != b->fields[i].value_len)
            abort();
}

static void one(const uint8_t *rec, size_t len)
{
    sh_cache_hit_t *h;
    const char *why;
    if (sh_cache_entry_decode(rec, len, &h, &why) != 0) {
        if (!why || !*why)
            abort();
        return;
    }
    const sh_cache_meta_t *m = sh_cache_hit_meta(h);
    if (m->status < 100 || m->status > 999 || m->ntags > SH_CACHE_TAGS_MAX)
        abort();
    size_t blen;
    const void *body = sh_cache_hit_body(h, &blen);
    if (blen > m->body_len || (blen && !body))
        abort();
    uint8_t *pb;
    size_t n;
    int rc = sh_cache__meta_pack((const char *)h->pb->key.data, h->pb->key.len, m, &pb, &n);
    if (rc == 0) {
        /* Re-encode as an inline record and decode again. */
        size_t rl = SH_CACHE__HDR + n + blen;
        uint8_t *r = sh_malloc(rl);
        sh_cache__hdr_t hd = {(uint32_t)n, blen, 0, 0};
        sh_cache__hdr_put(r, &hd);
        memcpy(r + SH_CACHE__HDR, pb, n);
        if (blen)
            memcpy(r + SH_CACHE__HDR + n, body, blen);
        sh_cache_hit_t *h2;
        if (sh_cache_entry_decode(r, rl, &h2, &why) != 0)
            abort();
        sh_cache_meta_t a = *m;
        a.body_len = blen;
        check_same(&a, sh_cache_hit_meta(h2));
        sh_cache_hit_free(h2);
        sh_free(r);
        sh_free(pb);
    }
    sh_cache_hit_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1) {
        uint8_t *copy = malloc(size - 1 ? size - 1 : 1); /* exact size for ASan */
        memcpy(copy, data + 1, size - 1);
        one(copy, size - 1);
        free(copy);
        return 0;
    }
    size_t ml = size - 1, bl = size > 1 ? data[size - 1] : 0;
    size_t rl = SH_CACHE__HDR + ml + bl;
    uint8_t *r = malloc(rl);
    sh_cache__hdr_t hd = {(uint32_t)ml, bl, 0, 0};
    sh_cache__hdr_put(r, &hd);
    memcpy(r + SH_CACHE__HDR, data + 1, ml);
    memset(r + SH_CACHE__HDR + ml, 'b', bl);
    one(r, rl);
    free(r);
    return 0;
}
