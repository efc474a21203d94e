/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the files of cache/ share (style.md, rule 1): the stored record
 * layout (cache_entry.c), the in-memory index (cache_index.c) and the hit
 * object. Not a public header: only cache/ includes it.
 *
 * An entry record (LMDB DB "e", key = 16-byte BLAKE2b of the key string):
 *   0  u32 magic "SHC1"      4  u32 meta_len
 *   8  u64 body_len          16 u64 body_id (0: body inline after the meta)
 *   24 u32 chunk_size (0 when inline)   28 u32 reserved (0)
 *   32 meta_len bytes of sh.cache.Meta (proto/cache.proto)
 *   then body_len bytes of body when inline.
 * All integers little endian. A chunked body lives in DB "b" under the key
 * body_id (u64 big endian) . chunk index (u32 big endian), chunk_size bytes
 * each but the last.
 */
#ifndef SH_CACHE_INTERNAL_H
#define SH_CACHE_INTERNAL_H

#include <stdint.h>

#include "cache/cache.h"
#include "proto/cache.pb-c.h"

#define SH_CACHE__HDR       32
#define SH_CACHE__MAGIC     0x31434853u /* "SHC1" read little endian */
#define SH_CACHE__HASH      16
#define SH_CACHE__META_MAX  (1u << 20) /* largest metadata message */
#define SH_CACHE__CHUNK_MAX (1u << 24)

typedef struct {
    uint32_t meta_len;
    uint64_t body_len;
    uint64_t body_id;
    uint32_t chunk_size;
} sh_cache__hdr_t;

/* Parse and check the fixed header of a record of len bytes: 0, or
 * SH_EPARSE with *why. Pure. */
int sh_cache__hdr_parse(const void *rec, size_t len, sh_cache__hdr_t *h, const char **why);
/* Write the header into out (SH_CACHE__HDR bytes). */
void sh_cache__hdr_put(void *out, const sh_cache__hdr_t *h);

/* Pack key + meta into a new buffer (sh_free it). SH_ELIMIT when too large
 * (key, tags, metadata), SH_EINVAL when malformed. */
int sh_cache__meta_pack(const char *key, size_t key_len, const sh_cache_meta_t *m, uint8_t **out,
                        size_t *len);
/* Unpack a metadata message (our allocator); NULL when malformed. */
Sh__Cache__Meta *sh_cache__meta_unpack(const void *p, size_t n);
void sh_cache__meta_free(Sh__Cache__Meta *pb);

struct sh_cache_hit_s {
    sh_cache_meta_t meta;
    Sh__Cache__Meta *pb;
    sh_cache_field_t *fields;
    const char **vary;
    size_t *vary_len;
    const char **tags;
    size_t *tag_len;
    uint8_t *body; /* copied body bytes from offset 0 */
    size_t body_have;
    int body_in_arena;
    struct blk *arena; /* every allocation of the hit, h included */
    sh_cache_t *c;     /* NULL for a decoded-only record */
    uint64_t body_id;
    uint32_t chunk_size;
};

/* Build a hit from a record: header, metadata, and with_body: the inline
 * body copied (a chunked body is left to the caller). Pure. */
int sh_cache__hit_make(const void *rec, size_t len, int with_body, sh_cache_hit_t **out,
                       const char **why);

/* ---- the in-memory index (keys_zone), cache_index.c ---- */

typedef struct sh_cache__index_s sh_cache__index_t;

enum { SH_CACHE__ABSENT, SH_CACHE__UNSTORED, SH_CACHE__STORED };

sh_cache__index_t *sh_cache__index_create(uint64_t capacity);
void sh_cache__index_destroy(sh_cache__index_t *ix);
/* A worker's lookup of hash: with count, uses++ and last use = now (LRU
 * head); with create, an absent node is made (unstored, for min_uses) while
 * under capacity. Returns the state seen and *uses (after counting). */
int sh_cache__index_lookup(sh_cache__index_t *ix, const uint8_t *hash, int64_t now, int count,
                           int create, uint32_t *uses);
/* The writer: hash is stored with size bytes (node made if absent). With
 * if_absent (the loader), a node already stored is left alone (the writer's
 * is newer); one a lookup made for min_uses becomes stored, uses kept. */
void sh_cache__index_store(sh_cache__index_t *ix, const uint8_t *hash, uint64_t size, int64_t now,
                           int if_absent);
/* The writer: forget hash. */
void sh_cache__index_remove(sh_cache__index_t *ix, const uint8_t *hash);
/* The least recently used node: 1 with its hash, last use and stored flag,
 * or 0 when empty. */
int sh_cache__index_oldest(sh_cache__index_t *ix, uint8_t *hash, int64_t *last_use, int *stored);
/* Totals: stored bytes, stored entries, all nodes, capacity. */
void sh_cache__index_totals(sh_cache__index_t *ix, uint64_t *size, uint64_t *stored,
                            uint64_t *nodes, uint64_t *capacity);
void sh_cache__index_set_capacity(sh_cache__index_t *ix, uint64_t capacity);
/* Bytes of memory the index uses now (bench: memory per entry). */
uint64_t sh_cache__index_memory(sh_cache__index_t *ix);

/* Bytes of memory the index of c uses now (bench). */
uint64_t sh_cache__memory(sh_cache_t *c);
/* Drop the pin a hit holds on its chunked body (sh_cache_hit_free). */
void sh_cache__unpin(sh_cache_t *c, uint64_t body_id);
/* Records in the body chunk DB, and in the entry DB (tests). */
void sh_cache__records(sh_cache_t *c, uint64_t *chunks, uint64_t *entries);

#endif
