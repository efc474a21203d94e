/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small string-keyed hash map (open addressing, linear probing, FNV-1a)
 * used by the membership table and the broadcast queue. Keys are borrowed:
 * the caller keeps each key alive while it is in the map (they live in the
 * values). Single-threaded.
 */
#ifndef SH_STRMAP_H
#define SH_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *key; /* NULL: empty; SH_STRMAP_TOMB: deleted */
    void *val;
    uint64_t hash; /* of key: probes compare it before the string (no strcmp,
                    * no cache miss on the key, for the other keys of a chain) */
} sh_strmap_slot_t;

typedef struct {
    sh_strmap_slot_t *slots;
    size_t cap;  /* power of two */
    size_t used; /* live + tombstones */
    size_t len;  /* live */
} sh_strmap_t;

uint64_t sh_strmap_hash(const char *s);
void sh_strmap_init(sh_strmap_t *m);
void sh_strmap_dispose(sh_strmap_t *m);
void *sh_strmap_get(const sh_strmap_t *m, const char *key);
/* Insert or replace; key must outlive the entry. */
void sh_strmap_put(sh_strmap_t *m, const char *key, void *val);
/* Remove; returns the value or NULL. */
void *sh_strmap_del(sh_strmap_t *m, const char *key);

#endif
