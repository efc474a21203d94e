/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The response store behind proxy_cache (issue 12, "Store"): one LMDB
 * environment per proxy_cache_path, opened once per process and shared by
 * every worker thread. This is the only public header of cache/; it knows
 * LMDB, protobuf-c and the HTTP codec, never a worker, a connection or a
 * request (layer order core -> http -> proto -> cache -> cluster -> node).
 *
 * Threads:
 * - Lookups and body reads run on any thread (worker loops). Each takes a
 *   short read-only LMDB transaction (MDB_NOTLS, a pool of reset txns renewed
 *   per call), copies what it needs and resets it: no read txn is held while
 *   a slow client drains, so readers never pin old pages for long and never
 *   wait for the writer.
 * - Fills are built on the caller's thread (copying data into the fill) and
 *   handed to the cache's own writer thread through a queue bounded in bytes;
 *   the writer commits in batches. A worker never waits for a write txn. When
 *   the queue is over its bound, the fill is dropped (counted), never waited
 *   for.
 * - Purges run on the writer thread; sh_cache_purge() blocks its caller until
 *   done (call it from the admin/cluster thread, never a worker loop);
 *   sh_cache_purge_async() does not block.
 * - A loader thread rebuilds the in-memory index (the keys_zone) from LMDB at
 *   open; until it is done, lookups go to LMDB directly.
 *
 * Keys: the evaluated proxy_cache_key string. Its 16-byte BLAKE2b digest
 * (crypto_generichash) is the LMDB key of the entry; the full key string is
 * stored in the entry and compared on lookup. A Vary variant is stored under
 * the key KEY SH_CACHE_VARIANT_SEP VALUES (the module builds it), so a purge
 * of KEY also removes its variants and a prefix purge reaches them as well.
 *
 * A hit of a chunked body pins it, so a slow client can finish reading a
 * body whose entry was replaced, purged or evicted meanwhile.
 *
 * Durability: LMDB transactions, MDB_NOSYNC plus a periodic env sync by the
 * writer: a kill -9 loses at most the batches not yet committed and never
 * leaves a half entry visible (the entry record, the only way to the body
 * chunks, is written once every chunk is, and checks they are); chunks of
 * fills that never committed are orphans swept by the loader at the next
 * open.
 * A full map or a full disk drops the fills of that batch with one log line.
 *
 * Status: everything below is implemented.
 */
#ifndef SH_CACHE_H
#define SH_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sh_cache_s sh_cache_t;
typedef struct sh_cache_fill_s sh_cache_fill_t;
typedef struct sh_cache_hit_s sh_cache_hit_t;

/* Separator between a key and its Vary variant values (see above). */
#define SH_CACHE_VARIANT_SEP '\x01'
/* Longest key string accepted (longer: lookups miss, fills are dropped). */
#define SH_CACHE_KEY_MAX 4096
/* Longest tag kept (longer tags are ignored); at most SH_CACHE_TAGS_MAX tags. */
#define SH_CACHE_TAG_MAX  256
#define SH_CACHE_TAGS_MAX 64

/* The arguments of one proxy_cache_path. Sizes in bytes, times in ms; 0
 * means "the default" unless said otherwise. Strings are copied by
 * sh_cache_open(). */
typedef struct {
    const char *path;  /* the directory; created if missing; holds data.mdb */
    const char *zone;  /* keys_zone name */
    size_t zone_size;  /* keys_zone size: index capacity is zone_size / 128
                          entries (nginx: ~8000 keys per megabyte); required */
    uint64_t max_size; /* max_size: stored bytes kept under it, LRU first;
                          0 = no limit but the map */
    uint64_t inactive; /* inactive (ms): entries unused that long are removed;
                          default 10 minutes */
    uint64_t min_free; /* min_free: free disk space kept (statvfs); 0 = none */
    uint64_t map_size; /* LMDB map size; 0 = derived: 2 * max_size + 64 MB,
                          or 1 GB without max_size (a Shoal extension).
                          Set at each start (LMDB keeps at least the pages
                          in use, so a smaller one never truncates); a
                          reload that raises it grows the map at once, a
                          smaller one waits for the next start */
    /* Accepted for nginx compatibility; LMDB has no file tree or temp files,
     * so levels and use_temp_path change nothing. */
    const char *levels;
    int use_temp_path;
    /* manager_files (max entries removed per manager pass, default 100),
     * manager_sleep / manager_threshold (ms, defaults 50 / 200): the writer
     * thread's eviction pass between batches follows them. */
    unsigned manager_files;
    uint64_t manager_sleep, manager_threshold;
    /* loader_files (entries per read txn, default 100), loader_sleep /
     * loader_threshold (ms, defaults 50 / 200): the loader thread's pace. */
    unsigned loader_files;
    uint64_t loader_sleep, loader_threshold;
    /* Library tuning (not directives). */
    size_t chunk_size; /* body chunk record size; bodies up to it are stored
                          inline in the entry record; default 16 LMDB
                          pages less their 16-byte header (65520) */
    size_t queue_max;  /* bytes queued to the writer before fills are dropped;
                          default 64 MB */
    /* The clock (ms since the Unix epoch); NULL = CLOCK_REALTIME. Tests drive
     * virtual time through it. Called from any thread. */
    int64_t (*clock)(void *arg);
    void *clock_arg;
} sh_cache_conf_t;

/* One response header field as stored (bytes, not NUL terminated). */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} sh_cache_field_t;

/* The metadata of an entry. For sh_cache_fill_begin() the caller owns every
 * pointer (copied at the call); in a hit the hit owns them. Times are ms
 * since the Unix epoch; "window" fields are durations in ms (-1 = none). */
typedef struct {
    int status;                     /* the response status */
    const sh_cache_field_t *fields; /* header fields to replay, in order */
    size_t nfields;
    int64_t stored_at;              /* when the response was received */
    int64_t valid_until;            /* fresh until; a soft purge sets it to 0 */
    int64_t stale_while_revalidate; /* window after valid_until, -1 none */
    int64_t stale_if_error;         /* window after valid_until, -1 none */
    const char *etag;               /* ETag as received (with quotes); NULL none */
    size_t etag_len;
    int64_t last_modified;   /* Last-Modified (ms); -1 none */
    const char *const *vary; /* Vary field names (lower case) of the
                                main entry; the module stores the
                                variant under KEY SEP VALUES */
    const size_t *vary_len;
    size_t nvary;
    const char *const *tags; /* purge tags (e.g. Surrogate-Key words) */
    const size_t *tag_len;
    size_t ntags;
    uint64_t body_len; /* set by the store on a hit; ignored by
                          fill_begin (the bytes appended count) */
    uint32_t flags;    /* the module's own bits, stored as is */
} sh_cache_meta_t;

/* ---- open / release ----------------------------------------------------- */

/* Open (or share) the cache of conf->path. A cache already open in this
 * process with the same path and zone name is shared: its reference count
 * goes up and max_size, inactive, min_free, manager_* are updated in place
 * (a reload keeps the store and the index). The same path under another
 * zone name, or the same zone name on another path, is SH_EEXIST.
 * Returns 0 and *out, or SH_EINVAL (bad conf), SH_EIO (LMDB/filesystem:
 * logged with the path), SH_EEXIST. Any thread (startup / reload). */
int sh_cache_open(const sh_cache_conf_t *conf, sh_cache_t **out);
/* Take one more reference. Any thread. */
sh_cache_t *sh_cache_ref(sh_cache_t *c);
/* Drop a reference; the last one stops the writer (committing what is
 * queued), the loader, and closes the environment. NULL is a no-op. Must not
 * be called with fills or hits of this cache still open. */
void sh_cache_release(sh_cache_t *c);
/* The cache opened in this process under keys_zone name (a new reference),
 * or NULL. For the admin API and the module's `proxy_cache NAME`. */
sh_cache_t *sh_cache_find(const char *zone);
/* Call fn on every open cache (e.g. purge or stats over all zones), under
 * the registry lock: fn may take a reference (sh_cache_ref), read stats,
 * purge; it must not open, find or release caches. */
void sh_cache_each(void (*fn)(sh_cache_t *c, void *arg), void *arg);
const char *sh_cache_zone(const sh_cache_t *c);
const char *sh_cache_path(const sh_cache_t *c);

/* ---- lookup ---------------------------------------------------------------- */

enum {
    SH_CACHE_LOOKUP_NOBODY = 1 << 0, /* do not read the first chunk of a chunked
                                        body (HEAD, 304, revalidation); an
                                        inline body (<= chunk_size) comes with
                                        the record anyway */
    SH_CACHE_LOOKUP_NOCOUNT = 1 << 1 /* do not count a use nor touch the LRU */
};

/* Look key up. Returns 0 with *hit (the decoded metadata and the first
 * bytes of the body, see sh_cache_hit_body), or SH_ENOENT for a miss with
 * *uses = how many lookups of this key the keys_zone has counted (this one
 * included; for proxy_cache_min_uses), or SH_EIO (store error, logged; treat
 * as a miss). A lookup counts a use and refreshes the entry's LRU position
 * unless SH_CACHE_LOOKUP_NOCOUNT. Freshness is the caller's decision (from
 * meta.valid_until and the stale windows). uses may be NULL. Any thread;
 * never waits for the writer. */
int sh_cache_lookup(sh_cache_t *c, const char *key, size_t key_len, unsigned flags,
                    sh_cache_hit_t **hit, uint32_t *uses);
/* The hit's metadata; valid until sh_cache_hit_free(). */
const sh_cache_meta_t *sh_cache_hit_meta(const sh_cache_hit_t *h);
/* The body bytes copied at lookup, from offset 0: *len is the whole body
 * when it fits in one chunk (inline), else the first chunk; 0 with
 * SH_CACHE_LOOKUP_NOBODY. Valid until sh_cache_hit_free(). */
const void *sh_cache_hit_body(const sh_cache_hit_t *h, size_t *len);
/* Copy up to cap body bytes from offset off into buf (a short read txn per
 * call, spanning chunks as needed). A hit pins its body: replacing, purging
 * or evicting the entry leaves the body readable until sh_cache_hit_free().
 * Returns the bytes copied (0 at or past the end), or
 * SH_ENOENT when the body is gone (end the response), or SH_EIO. Any thread,
 * one at a time per hit. */
long sh_cache_hit_read(sh_cache_hit_t *h, uint64_t off, void *buf, size_t cap);
/* Zero-copy body reads: hand the body bytes [off, off + max) to sink
 * straight from the LMDB map, one short read txn per call held only while
 * sink runs, so sink must not block (a non-blocking write(2), SSL_write, a
 * copy into an output buffer). sink returns how many of the n bytes it took
 * (0..n; fewer ends the call) or a negative error, returned as is. Returns
 * the bytes taken in all (0 at the end), or SH_ENOENT / SH_EIO as
 * sh_cache_hit_read. Any thread, one at a time per hit. */
typedef long (*sh_cache_sink_fn)(void *arg, const void *p, size_t n);
long sh_cache_hit_send(sh_cache_hit_t *h, uint64_t off, size_t max, sh_cache_sink_fn sink,
                       void *arg);
void sh_cache_hit_free(sh_cache_hit_t *h);

/* ---- fill ------------------------------------------------------------------ */

/* Done callback of a fill or an async purge: status 0 (committed / purged,
 * count = entries removed or marked) or a negative SH_E* (dropped). Runs on
 * the writer thread: keep it short and thread-safe (uv_async_send). */
typedef void (*sh_cache_done_cb)(void *arg, int status, uint64_t count);

/* Begin storing the response for key; meta is copied (its body_len is
 * ignored). The entry becomes visible only at commit, replacing any older
 * entry of the key atomically. Returns 0 and *fill, or SH_ELIMIT (key or
 * metadata too large, queue full: the response is simply not cached), or
 * SH_EINVAL. Any thread; the fill is then used by one thread at a time. */
int sh_cache_fill_begin(sh_cache_t *c, const char *key, size_t key_len, const sh_cache_meta_t *meta,
                        sh_cache_fill_t **fill);
/* Append body bytes (copied). Full chunks are handed to the writer as they
 * fill, so a large body streams into the store as it streams to the client.
 * Returns 0, or SH_ELIMIT when the fill was dropped (queue over its bound, a
 * map/disk full): keep calling append/commit or abort as usual, they are
 * cheap no-ops on a dropped fill. */
int sh_cache_fill_append(sh_cache_fill_t *f, const void *data, size_t len);
/* Replace the metadata before commit (e.g. trailers or a status learned
 * late). Returns 0 or SH_ELIMIT. */
int sh_cache_fill_set_meta(sh_cache_fill_t *f, const sh_cache_meta_t *meta);
/* Finish: the entry (metadata, body length = bytes appended) is committed by
 * the writer with its batch; cb (may be NULL) fires after that commit or the
 * drop. Frees f. Returns 0 if queued, or SH_ELIMIT if the fill had been
 * dropped (cb still fires with that status). */
int sh_cache_fill_commit(sh_cache_fill_t *f, sh_cache_done_cb cb, void *arg);
/* Abandon the fill (the upstream failed, the response turned uncacheable):
 * nothing becomes visible, chunks already written are deleted. Frees f. */
void sh_cache_fill_abort(sh_cache_fill_t *f);

/* Replace the metadata of key's stored entry, keeping its body without
 * copying it: a revalidation (304 from the upstream: new valid_until,
 * refreshed header fields, tags). meta is copied (body_len ignored). cb
 * (may be NULL) fires on the writer thread with 0, SH_ENOENT (no such entry
 * any more), SH_ESTATE (a matching purge came after this call) or
 * SH_ELIMIT (store full). Returns 0 if queued, SH_EINVAL, or SH_ELIMIT
 * (metadata too large, queue full). Any thread; never blocks. */
int sh_cache_update_meta(sh_cache_t *c, const char *key, size_t key_len,
                         const sh_cache_meta_t *meta, sh_cache_done_cb cb, void *arg);

/* ---- purge ----------------------------------------------------------------- */

enum sh_cache_purge_kind {
    SH_CACHE_PURGE_KEY,    /* the exact key (and its Vary variants) */
    SH_CACHE_PURGE_PREFIX, /* every key starting with str */
    SH_CACHE_PURGE_TAG     /* every entry stored with tag str */
};

/* Remove (soft = 0) or mark stale (soft = 1: valid_until becomes 0, so
 * `use_stale updating` serves the old entry while one request refreshes it)
 * every entry that matches. Fills begun before the purge and committed after
 * it are dropped when they match it, so nothing older than the purge
 * survives it. Sets *count (may be NULL) to the entries affected. Returns 0,
 * SH_EINVAL, or SH_EIO. Blocks until the writer is done: call it from the
 * admin/cluster thread or a test, never a worker loop. */
int sh_cache_purge(sh_cache_t *c, enum sh_cache_purge_kind kind, const char *str, size_t len,
                   int soft, uint64_t *count);
/* The same without blocking: cb(arg, status, count) on the writer thread. */
int sh_cache_purge_async(sh_cache_t *c, enum sh_cache_purge_kind kind, const char *str, size_t len,
                         int soft, sh_cache_done_cb cb, void *arg);

/* ---- stats ----------------------------------------------------------------- */

/* Counters since open (relaxed atomics; any thread). The module counts
 * HIT/MISS/STALE as the client sees them; these are the store's view. */
typedef struct {
    uint64_t lookups, found, not_found;     /* sh_cache_lookup outcomes */
    uint64_t fills, fills_dropped;          /* committed / dropped fills */
    uint64_t fill_bytes;                    /* body bytes committed */
    uint64_t evictions, expired;            /* removed for max_size/min_free/
                                               keys_zone / for inactive */
    uint64_t purged;                        /* removed or marked by purges */
    uint64_t map_full, io_errors;           /* batches lost to a full map/disk */
    uint64_t entries;                       /* entries stored now */
    uint64_t size;                          /* stored bytes now (records +
                                               bodies; what max_size bounds) */
    uint64_t max_size, map_size;            /* the limits in force */
    uint64_t index_entries, index_capacity; /* keys_zone nodes / capacity */
    uint64_t batches;                       /* write txns committed */
    int loading;                            /* 1 while the loader runs */
} sh_cache_stats_t;

void sh_cache_stats(sh_cache_t *c, sh_cache_stats_t *out);

/* Wait until the writer has committed everything queued before this call
 * and the loader is done (tests, shutdown, bench). Blocks; not on a worker
 * loop. Returns 0 or SH_ETIMEDOUT after timeout_ms. */
int sh_cache_sync(sh_cache_t *c, uint64_t timeout_ms);

/* ---- the stored-entry codec (pure; exposed for the fuzz harness) ----------- */

/* Decode an entry record (header, protobuf metadata, inline body) as stored
 * in LMDB. On success returns 0 and *out (free with sh_cache_hit_free; its
 * body is the inline body, if any); else SH_EPARSE with *why a static
 * reason. Touches nothing but its arguments. */
int sh_cache_entry_decode(const void *rec, size_t len, sh_cache_hit_t **out, const char **why);

#endif
