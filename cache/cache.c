/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Placeholder of the cache store (issue 12): the API of cache/cache.h with
 * every entry point answering SH_EUNSUPP, so the proxy_cache module can build
 * against it while the store is written.
 */
#include "cache/cache.h"

#include "core/err.h"

int sh_cache_open(const sh_cache_conf_t *conf, sh_cache_t **out) { *out = NULL; return SH_EUNSUPP; }
sh_cache_t *sh_cache_ref(sh_cache_t *c) { return c; }
void sh_cache_release(sh_cache_t *c) {}
sh_cache_t *sh_cache_find(const char *zone) { return NULL; }
void sh_cache_each(void (*fn)(sh_cache_t *c, void *arg), void *arg) {}
const char *sh_cache_zone(const sh_cache_t *c) { return ""; }
const char *sh_cache_path(const sh_cache_t *c) { return ""; }
int sh_cache_lookup(sh_cache_t *c, const char *key, size_t key_len, unsigned flags,
                    sh_cache_hit_t **hit, uint32_t *uses) { *hit = NULL; if (uses) *uses = 1; return SH_ENOENT; }
const sh_cache_meta_t *sh_cache_hit_meta(const sh_cache_hit_t *h) { return NULL; }
const void *sh_cache_hit_body(const sh_cache_hit_t *h, size_t *len) { *len = 0; return NULL; }
long sh_cache_hit_read(sh_cache_hit_t *h, uint64_t off, void *buf, size_t cap) { return SH_EUNSUPP; }
void sh_cache_hit_free(sh_cache_hit_t *h) {}
int sh_cache_fill_begin(sh_cache_t *c, const char *key, size_t key_len,
                        const sh_cache_meta_t *meta, sh_cache_fill_t **fill) { *fill = NULL; return SH_EUNSUPP; }
int sh_cache_fill_append(sh_cache_fill_t *f, const void *data, size_t len) { return SH_EUNSUPP; }
int sh_cache_fill_set_meta(sh_cache_fill_t *f, const sh_cache_meta_t *meta) { return SH_EUNSUPP; }
int sh_cache_fill_commit(sh_cache_fill_t *f, sh_cache_done_cb cb, void *arg) { return SH_EUNSUPP; }
void sh_cache_fill_abort(sh_cache_fill_t *f) {}
int sh_cache_purge(sh_cache_t *c, enum sh_cache_purge_kind kind, const char *str, size_t len,
                   int soft, uint64_t *count) { if (count) *count = 0; return SH_EUNSUPP; }
int sh_cache_purge_async(sh_cache_t *c, enum sh_cache_purge_kind kind, const char *str,
                         size_t len, int soft, sh_cache_done_cb cb, void *arg) { return SH_EUNSUPP; }
void sh_cache_stats(sh_cache_t *c, sh_cache_stats_t *out) { *out = (sh_cache_stats_t){0}; }
int sh_cache_sync(sh_cache_t *c, uint64_t timeout_ms) { return SH_EUNSUPP; }
int sh_cache_entry_decode(const void *rec, size_t len, sh_cache_hit_t **out, const char **why) { *out = NULL; *why = "not implemented"; return SH_EUNSUPP; }
