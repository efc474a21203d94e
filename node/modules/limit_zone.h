/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared state table behind limit_req_zone and limit_conn_zone: a
 * fixed-size hash table shared by every worker thread of the node, what
 * nginx keeps in a shared memory zone (an rbtree + an LRU queue in a slab).
 *
 * Layout. SIZE bytes (the zone=NAME:SIZE of the directive) are divided
 * into stripes (a power of two, up to 64, chosen by the key's hash); each
 * stripe has its own mutex, bucket array, entries, free list and LRU list,
 * so two workers contend only when their keys fall in the same stripe.
 * An entry is 48 bytes and its bucket head 4 (sizeof(sh_limit_zone_entry_t)
 * plus at most one uint32_t), so a 1m zone holds about 20,000 keys
 * (nginx: ~64 bytes per state with $binary_remote_addr, 16,000 per 1m);
 * sh_limit_zone_capacity() says exactly. Lookups are O(1): a bucket chain
 * of expected length below 2.
 *
 * Keys. An entry holds no key bytes: a key's identity is its 128-bit
 * SipHash-2-4 (libsodium's crypto_shorthash_siphashx24) under a random key
 * drawn when the zone is created, so a client can neither aim collisions
 * at one bucket nor find two keys with the same identity (2^-128 per pair).
 * This is what makes every entry the same size whatever the key's length.
 *
 * Eviction. When a stripe is full the caller decides what goes
 * (limit_req: nginx's expire, the least recently used entry first;
 * limit_conn: nothing, nginx never evicts a counted connection); the
 * table gives the LRU tail and frees what it is told to. LRU order is per
 * stripe (an approximation of nginx's single queue: the evicted entry is
 * the oldest of its stripe).
 *
 * Cluster-ready. Each entry carries two 64-bit values the zone's kind
 * interprets (limit_req: excess in thousandths of a request and the time
 * of its last update; limit_conn: local count and the count other nodes
 * report), both plain integers a remote delta can be added to: see
 * limit_req.h and limit_conn.h for the intended merge.
 *
 * Life. Zones are reference counted and found by definition
 * (sh_limit_zone_acquire): a reload that keeps a zone's name, size, kind
 * and definition text gets the same zone and its state, as nginx keeps
 * its shared zones across a reload; a changed definition gets a new zone.
 * The registry is process-wide (zones outlive the configuration
 * generation that made them) behind one mutex, touched only at load and
 * by /metrics.
 *
 * Threads: any; an entry is read and written only with its stripe locked.
 */
#ifndef SH_LIMIT_ZONE_H
#define SH_LIMIT_ZONE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct sh_limit_zone_s sh_limit_zone_t;
typedef struct sh_limit_stripe_s sh_limit_stripe_t;

/* A key's identity in one zone. */
typedef struct {
    uint64_t h0, h1;
} sh_limit_id_t;

typedef struct {
    uint64_t h0, h1; /* identity */
    uint32_t chain;  /* next entry in the bucket (index + 1; 0: none) */
    uint32_t prev;   /* LRU neighbours (index + 1; 0: none); head: most recent */
    uint32_t next;
    uint16_t pin; /* requests between lookup and account (nginx's count; one per worker at most) */
    uint16_t dirty; /* global zones: its record in the stripe's dirty log + 1 (0: none) */
    int64_t v0, v1; /* the kind's state (limit_req.h, limit_conn.h) */
} sh_limit_zone_entry_t;

_Static_assert(sizeof(sh_limit_zone_entry_t) == 48, "a zone entry is 48 bytes");

#define SH_LIMIT_ZONE_MIN (32 * 1024)       /* nginx: 8 pages */
#define SH_LIMIT_ZONE_MAX ((size_t)1 << 30) /* 20 million keys; memory is taken at load */

/* Decision counters of a zone, by result (/metrics). */
enum {
    SH_LIMIT_PASSED = 0,
    SH_LIMIT_DELAYED,
    SH_LIMIT_REJECTED,
    SH_LIMIT_DELAYED_DRY_RUN,
    SH_LIMIT_REJECTED_DRY_RUN,
    SH_LIMIT_RESULTS
};

/* Create a zone of size bytes (>= SH_LIMIT_ZONE_MIN), not registered;
 * sh_limit_zone_acquire is what configurations use. */
sh_limit_zone_t *sh_limit_zone_create(size_t size);
/* Free a zone from sh_limit_zone_create (NULL: no-op). */
void sh_limit_zone_destroy(sh_limit_zone_t *z);

/* The registered zone for (kind, name, size, def), created when none
 * matches; one more reference either way. def is the definition text that
 * must not change for the state to be kept (key and rate). */
sh_limit_zone_t *sh_limit_zone_acquire(const char *kind, const char *name, size_t size,
                                       const char *def);
/* One reference less; the last one frees the zone. NULL: no-op. */
void sh_limit_zone_release(sh_limit_zone_t *z);

/* The zone's name ("" for an unregistered one) and kind. */
const char *sh_limit_zone_name(const sh_limit_zone_t *z);
const char *sh_limit_zone_kind(const sh_limit_zone_t *z);

/* Entries the zone can hold at most. */
size_t sh_limit_zone_capacity(const sh_limit_zone_t *z);
/* Entries held now, and entries evicted so far (any thread; a snapshot). */
size_t sh_limit_zone_used(sh_limit_zone_t *z);
uint64_t sh_limit_zone_evictions(sh_limit_zone_t *z);
/* Count a decision (SH_LIMIT_*), and read the counters. */
void sh_limit_zone_count(sh_limit_zone_t *z, int result);
uint64_t sh_limit_zone_counter(const sh_limit_zone_t *z, int result);

/* Call fn for each registered zone (under the registry's lock: fn must
 * not acquire or release zones). */
void sh_limit_zone_foreach(void (*fn)(sh_limit_zone_t *z, void *ud), void *ud);

/* Append the registered zones' counters to f, Prometheus text format:
 * shoal_limit_decisions_total{kind,zone,result}, shoal_limit_zone_entries,
 * shoal_limit_zone_capacity, shoal_limit_zone_evictions_total. */
void sh_limit_zone_metrics(FILE *f);

/* ---- global zones (issue 13; limit_global.h runs the cluster side)
 *
 * A global zone's key identity must be the same on every node: h0 is the
 * first 64 bits of BLAKE2b(key) under a hash key derived from the zone's
 * name and definition (the same on every node with the same
 * configuration), and is what travels on the wire; h1 is SipHash-2-4(h0)
 * under this node's random key, and picks the stripe and the bucket, so a
 * client who knows the public h0 still cannot aim keys at one bucket.
 * Accepted requests are marked in a per-stripe dirty log (one record per
 * key, counting them) that the cluster thread drains every tick. */

#define SH_LIMIT_DIRTY_MAX 4096u /* dirty keys per stripe between two drains */

/* Make z global (once, before any key): rate in thousandths/s. */
void sh_limit_zone_set_global(sh_limit_zone_t *z, uint64_t rate);
int sh_limit_zone_is_global(const sh_limit_zone_t *z);
/* The cluster-wide id of the zone (from its name and definition). */
uint64_t sh_limit_zone_global_id(const sh_limit_zone_t *z);
uint64_t sh_limit_zone_rate(const sh_limit_zone_t *z);
/* The rate admitted now: rate * share (share in millionths, 1e6 = all). */
uint64_t sh_limit_zone_rate_now(const sh_limit_zone_t *z);
void sh_limit_zone_set_share(sh_limit_zone_t *z, uint32_t ppm);
uint32_t sh_limit_zone_share(const sh_limit_zone_t *z);
/* The local identity of a wire id h0 (global zones). */
void sh_limit_zone_id_of(const sh_limit_zone_t *z, uint64_t h0, sh_limit_id_t *id);
/* Count n accepted requests of e (stripe s locked). Silently not counted
 * (and counted in overflow) when the dirty log is full. */
void sh_limit_zone_mark(sh_limit_stripe_t *s, sh_limit_zone_entry_t *e, uint32_t n);
/* Requests of e counted since the last drain (stripe s locked). */
uint32_t sh_limit_zone_pending(sh_limit_stripe_t *s, const sh_limit_zone_entry_t *e);
/* Stripes of z, and the stripe number i (for drains). */
unsigned sh_limit_zone_nstripes(const sh_limit_zone_t *z);
sh_limit_stripe_t *sh_limit_zone_stripe(sh_limit_zone_t *z, unsigned i);
/* Drain stripe s (locked): fn(ud, h0, count) for each dirty key; the
 * log is empty after. */
void sh_limit_zone_drain(sh_limit_stripe_t *s, void (*fn)(void *ud, uint64_t h0, uint32_t n),
                         void *ud);
uint64_t sh_limit_zone_dirty_overflows(const sh_limit_zone_t *z);
/* Keep the text of key h0 (the first SH_LIMIT_SAMPLE_TEXT - 1 bytes,
 * unprintable ones as '?') in one of the stripe's SH_LIMIT_SAMPLES slots
 * (stripe s locked), so `nodectl limits` can name a hot key; and find it
 * again (0 when it is not kept). */
#define SH_LIMIT_SAMPLES     8u
#define SH_LIMIT_SAMPLE_TEXT 48u
void sh_limit_zone_sample(sh_limit_stripe_t *s, uint64_t h0, const char *key, size_t len);
int sh_limit_zone_key_text(sh_limit_zone_t *z, uint64_t h0, char *out, size_t outlen);
/* The registered global zones, one more reference each (release them):
 * how many were written to out (max at most). */
size_t sh_limit_zone_globals(sh_limit_zone_t **out, size_t max);
/* References held on a registered zone now. */
unsigned sh_limit_zone_refs(sh_limit_zone_t *z);

/* ---- one key */

/* The identity of key[0..len) in z. */
void sh_limit_zone_hash(const sh_limit_zone_t *z, const void *key, size_t len, sh_limit_id_t *id);
/* Lock the stripe of id and return it; every call below needs it held. */
sh_limit_stripe_t *sh_limit_zone_lock(sh_limit_zone_t *z, const sh_limit_id_t *id);
void sh_limit_zone_unlock(sh_limit_stripe_t *s);
/* The entry of id, or NULL. Found entries move to the LRU head when
 * touch is set. */
sh_limit_zone_entry_t *sh_limit_zone_find(sh_limit_stripe_t *s, const sh_limit_id_t *id, int touch);
/* A new entry for id (values zero, pin 0) at the LRU head, or NULL when
 * the stripe is full. id must not be present. */
sh_limit_zone_entry_t *sh_limit_zone_insert(sh_limit_stripe_t *s, const sh_limit_id_t *id);
/* The least recently used entry of the stripe, or NULL when empty. */
sh_limit_zone_entry_t *sh_limit_zone_oldest(sh_limit_stripe_t *s);
/* Remove e (its slot is free again); evicted: count it as an eviction. */
void sh_limit_zone_remove(sh_limit_stripe_t *s, sh_limit_zone_entry_t *e, int evicted);

/* ---- configuration helpers shared by limit_req and limit_conn */

#include "core/conf.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/pipeline.h"
#include "node/pipeline/vars.h"

/* What limit_req and limit_conn share: the zones an http block defines
 * (its main conf) and a level's list of limits (its loc conf, replaced
 * as a whole by a level that has any, as nginx). */
typedef struct {
    char *name;
    sh_cv_t *key;
    uint64_t rate; /* limit_req: thousandths of a request per second */
    sh_limit_zone_t *zone;
} sh_limit_def_t;

typedef struct {
    sh_limit_def_t **defs;
    size_t n;
} sh_limit_main_t;

#define SH_LIMITS_MAX 16 /* limit_req or limit_conn directives at one level */

typedef struct {
    char *name; /* the zone named, until resolved at postconfiguration */
    const sh_conf_node_t *node;
    sh_limit_def_t *def;
    uint64_t a, b; /* limit_req: burst, delay (thousandths); limit_conn: the number, - */
} sh_limit_t;

typedef struct {
    sh_limit_t *limits;
    size_t n;
    int set; /* this level has limits (owns them) */
    int status;
    int log_level;
    int dry_run;
} sh_limit_loc_t;

/* The main and loc conf callbacks of both modules (sh_http_module_t). */
void *sh_limit_main_create(void);
void sh_limit_main_destroy(void *conf);
void *sh_limit_loc_create(void);
void sh_limit_loc_destroy(void *conf);
int sh_limit_loc_merge(sh_conf_t *cf, void *parent, void *conf);
/* The zone named name in m, or NULL. */
sh_limit_def_t *sh_limit_main_find(sh_limit_main_t *m, const char *name);
/* Add a zone to m (takes name and key). */
sh_limit_def_t *sh_limit_main_add(sh_limit_main_t *m, char *name, sh_cv_t *key,
                                  sh_limit_zone_t *zone);
/* Add the limit of the directive at cf->node to c: "is duplicate" for a
 * zone named twice at one level, at most SH_LIMITS_MAX. 0 or SH_EINVAL. */
int sh_limit_loc_add(sh_conf_t *cf, sh_limit_loc_t *c, const char *zone, uint64_t a, uint64_t b);
/* Resolve the zone names of every level of m for module mod: "zero size
 * shared memory zone" (nginx's words) with the directive's file:line for
 * one never defined. */
int sh_limit_resolve(sh_conf_t *cf, sh_http_main_t *m, const sh_conf_module_t *mod);
/* Both modules' postconfiguration: sh_limit_resolve, then handler in the
 * preaccess phase. 0 or an error written into cf. */
int sh_limit_postconf(sh_conf_t *cf, sh_http_main_t *m, const sh_conf_module_t *mod,
                      sh_phase_handler_pt handler);

/* The sh_limit_main_t of module mod in the http block being parsed
 * (cf->user: its sh_http_block_t). */
sh_limit_main_t *sh_limit_main_of(sh_conf_t *cf, const sh_conf_module_t *mod);

/* limit_req_status, limit_conn_status: an int at cmd->offset, 400..599. */
int sh_limit_zone_set_status(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf);
/* limit_req_log_level, limit_conn_log_level: info | notice | warn | error. */
extern const sh_conf_enum_t sh_limit_zone_log_levels[];

/* The directives both modules take at the http, server and location
 * levels into their sh_limit_loc_t, named PREFIX_status, PREFIX_log_level
 * and PREFIX_dry_run (PREFIX: "limit_req" or "limit_conn"): entries of a
 * module's sh_conf_cmd_t table (left as written by clang-format: one
 * directive a line, as in the tables). SH_LIMIT_LOC_CTX: those levels. */
/* clang-format off */
#define SH_LIMIT_LOC_CTX (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)
#define SH_LIMIT_LOC_CMDS(prefix)                                                                  \
    {prefix "_status", SH_LIMIT_LOC_CTX | SH_CONF_TAKE1, sh_limit_zone_set_status,                 \
     offsetof(sh_limit_loc_t, status), NULL},                                                      \
    {prefix "_log_level", SH_LIMIT_LOC_CTX | SH_CONF_TAKE1, sh_conf_set_enum,                      \
     offsetof(sh_limit_loc_t, log_level), sh_limit_zone_log_levels},                               \
    {prefix "_dry_run", SH_LIMIT_LOC_CTX | SH_CONF_FLAG, sh_conf_set_flag,                         \
     offsetof(sh_limit_loc_t, dry_run), NULL}
/* clang-format on */

/* ---- per request (worker threads) */

/* Evaluate the key of d for r onto r->scratch; *mark gets the scratch
 * length before, and the key is r->scratch.data + *mark. Returns its
 * length, or 0 with r->scratch as it was when the value is empty or
 * longer than max bytes (logged, nginx's words: the limit is skipped).
 * The caller sets r->scratch.len back to *mark when done with the key. */
size_t sh_limit_key_eval(sh_request_t *r, const sh_limit_def_t *d, size_t max, size_t *mark);
/* $limit_req_status, $limit_conn_status: names[st] appended to out, 1;
 * 0 (not found) when st is 0 (no limit applied to the request). */
int sh_limit_status_var(sh_buf_t *out, const char *const *names, int st);

/* Parse "zone=NAME:SIZE" (arg) as nginx: *name gets a copy of NAME.
 * 0, or SH_EINVAL written into cf ("invalid zone size", "is too small",
 * "is too large": above SH_LIMIT_ZONE_MAX). */
int sh_limit_zone_parse(sh_conf_t *cf, const char *arg, char **name, size_t *size);
/* Call fn on every location level of m (http, servers, locations, nested
 * and named ones) until it returns non-zero; returns that or 0. */
int sh_limit_zone_each_loc(sh_http_main_t *m, int (*fn)(sh_http_loc_t *loc, void *ud), void *ud);

#endif
