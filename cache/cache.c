/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The LMDB response store (cache.h): open/share, lookups on worker threads,
 * fills handed to one writer thread, purge, the manager (eviction) and the
 * loader. cache_entry.c is the record codec, cache_index.c the keys_zone.
 *
 * LMDB layout, one environment per proxy_cache_path (data.mdb in the
 * directory), four named DBs:
 *   "e"  hash(key) -> entry record (cache_internal.h)
 *   "k"  key string (first KTRUNC bytes) -> hash, dupsort: prefix purge
 *   "t"  tag -> hash, dupsort: tag purge
 *   "b"  body_id.chunk -> chunk bytes: bodies larger than one chunk
 * An entry record is written in the same txn as, or after, every chunk of
 * its body, and it is the only way to reach them: a body nobody points to is
 * invisible, and is deleted by the writer (an aborted or dropped fill), once
 * no hit pins it (a replaced, purged or evicted entry, so a client reading
 * it now can finish) or by the loader's sweep at the next open (what a crash
 * left).
 *
 * Threads: lookups/reads on any thread through a pool of reset read-only
 * txns (MDB_NOTLS); fills queue ops (bounded in bytes) to the writer thread,
 * which applies each queue drain in one write txn and then runs the manager
 * (inactive, max_size, keys_zone capacity, min_free, graves); the loader
 * thread fills the index at open. The registry of open caches is the one
 * process-wide mutable state: LMDB forbids opening an environment twice in a
 * process, so sharing one across workers and reloads needs it.
 */
#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "cache/cache_internal.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"

#define KTRUNC        400  /* key bytes indexed in "k" (LMDB keys stop at 511) */
#define GRACE_MS      2000 /* an unpinned dropped body lives that long */
#define PIN_BUCKETS   256
#define PURGE_LOG     256   /* purges remembered to drop older fills */
#define POOL_MAX      256   /* reset read txns kept */
#define SYNC_EVERY_MS 30000 /* fsync of the NOSYNC environment */
#define IDLE_TICK_MS  1000
#define BATCH_MAX     ((size_t)8 << 20) /* bytes applied per write txn */

enum { OP_CHUNK, OP_COMMIT, OP_ABORT, OP_PURGE, OP_SYNC, OP_SWEEP, OP_DROPBAD, OP_UPDATE };

typedef struct op {
    struct op *next;
    int kind;
    size_t bytes;     /* counted against queue_max */
    uint64_t body_id; /* chunk, commit, abort */
    uint32_t idx;     /* chunk: its index; commit, abort: chunks sent */
    uint8_t hash[SH_CACHE__HASH];
    uint8_t *data; /* chunk bytes, or the record of a commit */
    size_t len;
    uint64_t epoch; /* commit: purge epoch at begin; purge: its own */
    int pkind, soft;
    char *str; /* purge argument */
    size_t slen;
    uint64_t *ids; /* sweep: orphan body ids */
    size_t nids;
    sh_cache_done_cb cb;
    void *arg;
    int status;
    uint64_t count;
} op;

typedef struct {
    uint64_t epoch;
    int kind;
    char *str;
    size_t len;
} purge_rec;

typedef struct {
    uint64_t body_id;
    uint32_t nchunks;
    int64_t at; /* monotonic ms; 0: delete now */
    uint64_t bytes;
} grave;

/* A chunked body a hit may still read (sh_cache_hit_read). */
typedef struct pin {
    struct pin *next;
    uint64_t id;
    uint32_t n;
} pin;

typedef struct {
    uint8_t hash[SH_CACHE__HASH];
    uint64_t size; /* UINT64_MAX: remove */
} ixop;

/* What one write txn did, applied to the index and the writer state only
 * once it commits. */
typedef struct {
    ixop *ix;
    size_t nix, cap;
    grave *gv;
    size_t ngv, gcap;
    uint64_t evicted, expired, purged;
} txlog;

struct sh_cache_s {
    sh_cache_t *reg_next;
    _Atomic int refs; /* changed under reg_mu, but sh_cache_ref (a holder's) */
    char *path, *zone;
    uint64_t zone_size;
    _Atomic uint64_t max_size, inactive, min_free;
    unsigned manager_files, loader_files;
    uint64_t manager_sleep, manager_threshold, loader_sleep, loader_threshold;
    /* map_size: the map in force (mdb_env_info's); map_want: what the
     * configuration asks for (a reload may raise it; the writer grows the
     * map to it between batches). */
    _Atomic uint64_t map_size, map_want;
    /* Excludes mdb_env_set_mapsize from live read txns: every read txn is
     * taken and ended under the read side (one uncontended atomic each way
     * on the hit path); a resize takes the write side (writer-preferring,
     * so a stream of hits cannot starve it). */
    pthread_rwlock_t map_lk;
    size_t chunk_size, queue_max;
    int64_t (*clock)(void *);
    void *clock_arg;

    MDB_env *env;
    MDB_dbi dbe, dbk, dbt, dbb;
    sh_cache__index_t *ix;

    pthread_mutex_t pool_mu;
    MDB_txn *pool[POOL_MAX];
    size_t npool;

    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;
    op *q_head, **q_tail;
    size_t q_bytes;
    int stop;
    _Atomic uint64_t purge_epoch;
    _Atomic uint64_t next_body_id;
    uint64_t first_body_id;
    pthread_t writer, loader;
    _Atomic int loading;
    _Atomic int loader_stop;

    /* writer thread only */
    purge_rec plog[PURGE_LOG];
    uint64_t plog_epoch; /* epoch of the last purge applied */
    grave *graves;
    size_t ngraves, cap_graves;
    uint64_t grave_bytes;

    pthread_mutex_t pin_mu;
    pin *pins[PIN_BUCKETS];
    /* lookups between their read txn and pinning the body they found: a
     * dropped body may be deleted before its grace only while this is 0 */
    _Atomic int lookups_busy;
    int64_t last_sync, last_full_log;
    uint64_t emergency; /* bytes to free after a full map/disk */
    uint64_t disk_cap;  /* size kept under while the disk is below min_free */

    _Atomic uint64_t st_lookups, st_found, st_not_found, st_fills, st_dropped, st_fill_bytes,
        st_evicted, st_expired, st_purged, st_map_full, st_io_errors, st_batches;
};

struct sh_cache_fill_s {
    sh_cache_t *c;
    uint8_t hash[SH_CACHE__HASH];
    uint8_t *meta;
    size_t meta_len;
    uint64_t body_id;
    uint32_t nchunks;
    uint64_t total;
    uint8_t *buf;
    size_t blen, bcap;
    uint64_t epoch;
    int dropped;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static sh_cache_t *reg_head;

#define CNT(c, name, n) atomic_fetch_add_explicit(&(c)->name, (n), memory_order_relaxed)

static int64_t now_ms(const sh_cache_t *c)
{
    if (c->clock)
        return c->clock(c->clock_arg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void key_hash(const char *key, size_t len, uint8_t *out)
{
    crypto_generichash(out, SH_CACHE__HASH, (const unsigned char *)key, len, NULL, 0);
}

static void chunk_key(uint8_t *k, uint64_t id, uint32_t idx)
{
    for (int i = 0; i < 8; i++)
        k[i] = (uint8_t)(id >> (56 - 8 * i));
    for (int i = 0; i < 4; i++)
        k[8 + i] = (uint8_t)(idx >> (24 - 8 * i));
}

static uint64_t chunk_key_id(const uint8_t *k)
{
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id = id << 8 | k[i];
    return id;
}

static int is_full(int rc)
{
    return rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT || rc == MDB_TXN_FULL;
}

/* ---- registry, open, release ------------------------------------------- */

static int mkdirs(const char *path)
{
    char *p = sh_strdup(path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char ch = *s;
            *s = '\0';
            if (mkdir(p, 0700) < 0 && errno != EEXIST) {
                sh_free(p);
                return -1;
            }
            if (!ch)
                break;
            *s = ch;
        }
    }
    sh_free(p);
    return 0;
}

static uint64_t conf_map_size(const sh_cache_conf_t *conf)
{
    return conf->map_size   ? conf->map_size
           : conf->max_size ? conf->max_size * 2 + ((uint64_t)64 << 20)
                            : (uint64_t)1 << 30;
}

static void apply_settings(sh_cache_t *c, const sh_cache_conf_t *conf)
{
    atomic_store(&c->map_want, conf_map_size(conf));
    atomic_store(&c->max_size, conf->max_size);
    atomic_store(&c->inactive, conf->inactive ? conf->inactive : 600000);
    atomic_store(&c->min_free, conf->min_free);
    c->manager_files = conf->manager_files ? conf->manager_files : 100;
    c->manager_sleep = conf->manager_sleep ? conf->manager_sleep : 50;
    c->manager_threshold = conf->manager_threshold ? conf->manager_threshold : 200;
    c->zone_size = conf->zone_size;
    if (c->ix)
        sh_cache__index_set_capacity(c->ix,
                                     conf->zone_size / 128 > 16 ? conf->zone_size / 128 : 16);
}

static void *writer_main(void *arg);
static void *loader_main(void *arg);
static void drop_bad(sh_cache_t *c, const uint8_t *hash);

static int lmdb_fail(const sh_cache_t *c, const char *what, int rc)
{
    sh_log_err("cache \"%s\": %s %s: %s", c->zone, what, c->path, mdb_strerror(rc));
    return SH_EIO;
}

static int open_env(sh_cache_t *c)
{
    int rc = mdb_env_create(&c->env);
    if (rc)
        return lmdb_fail(c, "mdb_env_create", rc);
    mdb_env_set_maxdbs(c->env, 4);
    mdb_env_set_maxreaders(c->env, 1024);
    /* 0: open with the size the file records (LMDB's default for a new
     * file), so the change to the configured size can be told in the log. */
    mdb_env_set_mapsize(c->env, 0);
    char dp[PATH_MAX + 16];
    struct stat sb;
    snprintf(dp, sizeof(dp), "%s/data.mdb", c->path);
    int existed = stat(dp, &sb) == 0 && sb.st_size > 0;
    /* NOSYNC: a process crash loses nothing LMDB committed (the page cache
     * has it); the writer syncs every SYNC_EVERY_MS against power loss.
     * NORDAHEAD: lookups are random reads. */
    rc = mdb_env_open(c->env, c->path, MDB_NOTLS | MDB_NOSYNC | MDB_NORDAHEAD, 0600);
    if (rc) {
        lmdb_fail(c, "cannot open", rc);
        mdb_env_close(c->env);
        c->env = NULL;
        return SH_EIO;
    }
    int dead = 0;
    mdb_reader_check(c->env, &dead); /* readers a kill -9 left behind */
    MDB_envinfo ei;
    mdb_env_info(c->env, &ei);
    uint64_t was = ei.me_mapsize, want = atomic_load(&c->map_want);
    /* No txn is active yet. LMDB rounds a size below the pages in use up to
     * them, so a smaller map_size never truncates what is stored. */
    rc = mdb_env_set_mapsize(c->env, (size_t)want);
    if (rc) {
        lmdb_fail(c, "cannot set the map size", rc);
        mdb_env_close(c->env);
        c->env = NULL;
        return SH_EIO;
    }
    mdb_env_info(c->env, &ei);
    atomic_store(&c->map_size, (uint64_t)ei.me_mapsize);
    if (existed && was != (uint64_t)ei.me_mapsize)
        sh_log_notice("cache \"%s\": map size of %s changed from %llu to %llu bytes%s", c->zone,
                      c->path, (unsigned long long)was, (unsigned long long)ei.me_mapsize,
                      (uint64_t)ei.me_mapsize > want ? " (the data in use needs more than map_size)"
                                                     : "");
    MDB_txn *t;
    rc = mdb_txn_begin(c->env, NULL, 0, &t);
    if (!rc)
        rc = mdb_dbi_open(t, "e", MDB_CREATE, &c->dbe);
    if (!rc)
        rc = mdb_dbi_open(t, "k", MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED, &c->dbk);
    if (!rc)
        rc = mdb_dbi_open(t, "t", MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED, &c->dbt);
    if (!rc)
        rc = mdb_dbi_open(t, "b", MDB_CREATE, &c->dbb);
    if (!rc) {
        /* Body ids go on from the largest one stored. */
        MDB_cursor *cur;
        MDB_val k, v;
        uint64_t last = 0;
        if (!mdb_cursor_open(t, c->dbb, &cur)) {
            if (!mdb_cursor_get(cur, &k, &v, MDB_LAST) && k.mv_size == 12)
                last = chunk_key_id(k.mv_data);
            mdb_cursor_close(cur);
        }
        c->first_body_id = last + 1;
        atomic_store(&c->next_body_id, last + 1);
        rc = mdb_txn_commit(t);
    } else {
        mdb_txn_abort(t);
    }
    if (rc) {
        lmdb_fail(c, "cannot initialise", rc);
        mdb_env_close(c->env);
        c->env = NULL;
        return SH_EIO;
    }
    return 0;
}

int sh_cache_open(const sh_cache_conf_t *conf, sh_cache_t **out)
{
    *out = NULL;
    if (!conf || !conf->path || !*conf->path || !conf->zone || !*conf->zone || !conf->zone_size)
        return SH_EINVAL;
    if (sodium_init() < 0)
        return SH_EIO;
    if (mkdirs(conf->path) < 0) {
        sh_log_err("cache \"%s\": cannot create %s: %s", conf->zone, conf->path, strerror(errno));
        return SH_EIO;
    }
    char real[PATH_MAX];
    if (!realpath(conf->path, real)) {
        sh_log_err("cache \"%s\": %s: %s", conf->zone, conf->path, strerror(errno));
        return SH_EIO;
    }
    pthread_mutex_lock(&reg_mu);
    for (sh_cache_t *c = reg_head; c; c = c->reg_next) {
        int same_path = strcmp(c->path, real) == 0, same_zone = strcmp(c->zone, conf->zone) == 0;
        if (same_path && same_zone) {
            atomic_fetch_add(&c->refs, 1);
            apply_settings(c, conf);
            pthread_mutex_unlock(&reg_mu);
            *out = c;
            return 0;
        }
        if (same_path || same_zone) {
            pthread_mutex_unlock(&reg_mu);
            sh_log_err("cache \"%s\": %s is already open as zone \"%s\"", conf->zone, real,
                       c->zone);
            return SH_EEXIST;
        }
    }
    sh_cache_t *c = sh_new(sh_cache_t);
    atomic_store(&c->refs, 1);
    c->path = sh_strdup(real);
    c->zone = sh_strdup(conf->zone);
    apply_settings(c, conf);
    c->loader_files = conf->loader_files ? conf->loader_files : 100;
    c->loader_sleep = conf->loader_sleep ? conf->loader_sleep : 50;
    c->loader_threshold = conf->loader_threshold ? conf->loader_threshold : 200;
    c->chunk_size = conf->chunk_size ? conf->chunk_size : 65536;
    if (c->chunk_size > SH_CACHE__CHUNK_MAX)
        c->chunk_size = SH_CACHE__CHUNK_MAX;
    c->queue_max = conf->queue_max ? conf->queue_max : (size_t)64 << 20;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->map_lk, &ra);
    pthread_rwlockattr_destroy(&ra);
    c->clock = conf->clock;
    c->clock_arg = conf->clock_arg;
    pthread_mutex_init(&c->pool_mu, NULL);
    pthread_mutex_init(&c->pin_mu, NULL);
    pthread_mutex_init(&c->q_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->q_cv, &ca);
    pthread_condattr_destroy(&ca);
    c->q_tail = &c->q_head;
    int rc = open_env(c);
    if (rc < 0)
        goto fail_env;
    if (!conf->chunk_size) {
        /* A chunk fills 16 overflow pages exactly: LMDB puts a 16-byte page
         * header before a large value, so 64 KB would take 17 pages. */
        MDB_stat ms;
        if (mdb_env_stat(c->env, &ms) == 0 && ms.ms_psize >= 4096)
            c->chunk_size = (size_t)ms.ms_psize * 16 - 16;
    }
    c->ix = sh_cache__index_create(conf->zone_size / 128 > 16 ? conf->zone_size / 128 : 16);
    c->last_sync = mono_ms();
    atomic_store(&c->loading, 1);
    if (pthread_create(&c->writer, NULL, writer_main, c) != 0) {
        rc = SH_EIO;
        goto fail_writer;
    }
    if (pthread_create(&c->loader, NULL, loader_main, c) != 0) {
        rc = SH_EIO;
        goto fail_loader;
    }
    c->reg_next = reg_head;
    reg_head = c;
    pthread_mutex_unlock(&reg_mu);
    sh_log_info("cache \"%s\": opened %s (map %llu bytes)", c->zone, c->path,
                (unsigned long long)c->map_size);
    *out = c;
    return 0;

fail_loader:
    pthread_mutex_lock(&c->q_mu);
    c->stop = 1;
    pthread_cond_signal(&c->q_cv);
    pthread_mutex_unlock(&c->q_mu);
    pthread_join(c->writer, NULL);
fail_writer:
    sh_cache__index_destroy(c->ix);
    mdb_env_close(c->env);
fail_env:
    pthread_mutex_unlock(&reg_mu);
    pthread_cond_destroy(&c->q_cv);
    pthread_mutex_destroy(&c->q_mu);
    pthread_mutex_destroy(&c->pool_mu);
    pthread_mutex_destroy(&c->pin_mu);
    pthread_rwlock_destroy(&c->map_lk);
    sh_free(c->path);
    sh_free(c->zone);
    sh_free(c);
    return rc;
}

sh_cache_t *sh_cache_ref(sh_cache_t *c)
{
    /* The caller holds a reference (or runs in sh_cache_each, which keeps
     * releases out): the count cannot reach zero meanwhile. */
    atomic_fetch_add(&c->refs, 1);
    return c;
}

void sh_cache_release(sh_cache_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&reg_mu);
    if (atomic_fetch_sub(&c->refs, 1) > 1) {
        pthread_mutex_unlock(&reg_mu);
        return;
    }
    for (sh_cache_t **pp = &reg_head; *pp; pp = &(*pp)->reg_next) {
        if (*pp == c) {
            *pp = c->reg_next;
            break;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    atomic_store(&c->loader_stop, 1);
    pthread_join(c->loader, NULL);
    pthread_mutex_lock(&c->q_mu);
    c->stop = 1;
    pthread_cond_signal(&c->q_cv);
    pthread_mutex_unlock(&c->q_mu);
    pthread_join(c->writer, NULL);
    for (size_t i = 0; i < c->npool; i++)
        mdb_txn_abort(c->pool[i]);
    mdb_env_sync(c->env, 1);
    mdb_env_close(c->env);
    sh_cache__index_destroy(c->ix);
    for (size_t i = 0; i < PURGE_LOG; i++)
        sh_free(c->plog[i].str);
    sh_free(c->graves);
    pthread_cond_destroy(&c->q_cv);
    pthread_mutex_destroy(&c->q_mu);
    pthread_mutex_destroy(&c->pool_mu);
    for (size_t i = 0; i < PIN_BUCKETS; i++) {
        for (pin *p = c->pins[i], *nx; p; p = nx) {
            nx = p->next;
            sh_free(p);
        }
    }
    pthread_mutex_destroy(&c->pin_mu);
    pthread_rwlock_destroy(&c->map_lk);
    sh_free(c->path);
    sh_free(c->zone);
    sh_free(c);
}

sh_cache_t *sh_cache_find(const char *zone)
{
    pthread_mutex_lock(&reg_mu);
    sh_cache_t *c = reg_head;
    while (c && strcmp(c->zone, zone) != 0)
        c = c->reg_next;
    if (c)
        atomic_fetch_add(&c->refs, 1);
    pthread_mutex_unlock(&reg_mu);
    return c;
}

void sh_cache_each(void (*fn)(sh_cache_t *c, void *arg), void *arg)
{
    pthread_mutex_lock(&reg_mu);
    for (sh_cache_t *c = reg_head; c; c = c->reg_next)
        fn(c, arg);
    pthread_mutex_unlock(&reg_mu);
}

const char *sh_cache_zone(const sh_cache_t *c)
{
    return c->zone;
}

const char *sh_cache_path(const sh_cache_t *c)
{
    return c->path;
}

/* ---- pins ------------------------------------------------------------------ */

static void pin_add(sh_cache_t *c, uint64_t id)
{
    pthread_mutex_lock(&c->pin_mu);
    pin **pp = &c->pins[id % PIN_BUCKETS];
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    if (!*pp) {
        *pp = sh_new(pin);
        (*pp)->id = id;
    }
    (*pp)->n++;
    pthread_mutex_unlock(&c->pin_mu);
}

void sh_cache__unpin(sh_cache_t *c, uint64_t id)
{
    pthread_mutex_lock(&c->pin_mu);
    pin **pp = &c->pins[id % PIN_BUCKETS];
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    if (*pp && --(*pp)->n == 0) {
        pin *p = *pp;
        *pp = p->next;
        sh_free(p);
    }
    pthread_mutex_unlock(&c->pin_mu);
}

static int pinned(sh_cache_t *c, uint64_t id)
{
    pthread_mutex_lock(&c->pin_mu);
    pin *p = c->pins[id % PIN_BUCKETS];
    while (p && p->id != id)
        p = p->next;
    pthread_mutex_unlock(&c->pin_mu);
    return p != NULL;
}

/* ---- read txns and lookups ---------------------------------------------- */

/* Another process grew the map (LMDB's MDB_MAP_RESIZED): adopt its size
 * with no read txn of ours live. Called without the read side held. */
static void map_adopt(sh_cache_t *c)
{
    pthread_rwlock_wrlock(&c->map_lk);
    if (mdb_env_set_mapsize(c->env, 0) == 0) {
        MDB_envinfo ei;
        mdb_env_info(c->env, &ei);
        atomic_store(&c->map_size, (uint64_t)ei.me_mapsize);
    }
    pthread_rwlock_unlock(&c->map_lk);
}

/* A write txn on the writer thread (which holds no read txn), with
 * MDB_MAP_RESIZED handled as for reads. */
static int wtxn_begin(sh_cache_t *c, MDB_txn **t)
{
    int rc = mdb_txn_begin(c->env, NULL, 0, t);
    if (rc == MDB_MAP_RESIZED) {
        map_adopt(c);
        rc = mdb_txn_begin(c->env, NULL, 0, t);
    }
    return rc;
}

static void rdlock(sh_cache_t *c)
{
    pthread_rwlock_rdlock(&c->map_lk);
}

static void rdunlock(sh_cache_t *c)
{
    pthread_rwlock_unlock(&c->map_lk);
}

/* A read txn begun, renewed or fresh, with MDB_MAP_RESIZED handled. The
 * caller holds the read side of map_lk until it ends the txn. */
static int rtxn_begin(sh_cache_t *c, MDB_txn **t)
{
    int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, t);
    if (rc == MDB_MAP_RESIZED) {
        rdunlock(c);
        map_adopt(c);
        rdlock(c);
        rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, t);
    }
    return rc;
}

static MDB_txn *rtxn_get(sh_cache_t *c)
{
    MDB_txn *t = NULL;
    rdlock(c);
    pthread_mutex_lock(&c->pool_mu);
    if (c->npool)
        t = c->pool[--c->npool];
    pthread_mutex_unlock(&c->pool_mu);
    if (t && mdb_txn_renew(t) != 0) {
        mdb_txn_abort(t);
        t = NULL;
    }
    if (!t) {
        int rc = rtxn_begin(c, &t);
        if (rc) {
            rdunlock(c);
            sh_log_err("cache \"%s\": read txn: %s", c->zone, mdb_strerror(rc));
            return NULL;
        }
    }
    return t;
}

static void rtxn_put(sh_cache_t *c, MDB_txn *t)
{
    mdb_txn_reset(t);
    pthread_mutex_lock(&c->pool_mu);
    if (c->npool < POOL_MAX) {
        c->pool[c->npool++] = t;
        t = NULL;
    }
    pthread_mutex_unlock(&c->pool_mu);
    if (t)
        mdb_txn_abort(t);
    rdunlock(c);
}

static int lookup(sh_cache_t *c, const char *key, size_t key_len, unsigned flags,
                  sh_cache_hit_t **hit, uint32_t *uses);

int sh_cache_lookup(sh_cache_t *c, const char *key, size_t key_len, unsigned flags,
                    sh_cache_hit_t **hit, uint32_t *uses)
{
    atomic_fetch_add(&c->lookups_busy, 1);
    int rc = lookup(c, key, key_len, flags, hit, uses);
    atomic_fetch_sub(&c->lookups_busy, 1);
    return rc;
}

static int lookup(sh_cache_t *c, const char *key, size_t key_len, unsigned flags,
                  sh_cache_hit_t **hit, uint32_t *uses)
{
    *hit = NULL;
    uint32_t u = 1;
    CNT(c, st_lookups, 1);
    if (key_len == 0 || key_len > SH_CACHE_KEY_MAX) {
        CNT(c, st_not_found, 1);
        if (uses)
            *uses = 1;
        return SH_ENOENT;
    }
    uint8_t h[SH_CACHE__HASH];
    key_hash(key, key_len, h);
    int count = !(flags & SH_CACHE_LOOKUP_NOCOUNT);
    int loading = atomic_load_explicit(&c->loading, memory_order_acquire);
    /* While the loader runs the index is partial: a miss there is asked of
     * LMDB, but uses are counted from the start (min_uses). */
    int st = sh_cache__index_lookup(c->ix, h, now_ms(c), count, 1, &u);
    if (uses)
        *uses = u ? u : 1;
    if (!loading && st != SH_CACHE__STORED) {
        CNT(c, st_not_found, 1);
        return SH_ENOENT;
    }
    MDB_txn *t = rtxn_get(c);
    if (!t)
        return SH_EIO;
    MDB_val k = {SH_CACHE__HASH, h}, v;
    int rc = mdb_get(t, c->dbe, &k, &v);
    if (rc) {
        rtxn_put(c, t);
        if (rc != MDB_NOTFOUND) {
            sh_log_err("cache \"%s\": lookup: %s", c->zone, mdb_strerror(rc));
            return SH_EIO;
        }
        CNT(c, st_not_found, 1);
        return SH_ENOENT;
    }
    sh_cache_hit_t *hh;
    const char *why;
    rc = sh_cache__hit_make(v.mv_data, v.mv_size, 1, &hh, &why);
    if (rc < 0) {
        rtxn_put(c, t);
        sh_log_warn("cache \"%s\": unreadable entry (%s), treated as a miss and removed", c->zone,
                    why);
        drop_bad(c, h);
        CNT(c, st_not_found, 1);
        return SH_ENOENT;
    }
    if (hh->pb->key.len != key_len || memcmp(hh->pb->key.data, key, key_len) != 0) {
        rtxn_put(c, t); /* another key with the same 128-bit digest */
        sh_cache_hit_free(hh);
        CNT(c, st_not_found, 1);
        return SH_ENOENT;
    }
    if (hh->body_id && !(flags & SH_CACHE_LOOKUP_NOBODY)) {
        uint8_t ck[12];
        chunk_key(ck, hh->body_id, 0);
        MDB_val kk = {sizeof(ck), ck}, cv;
        if (mdb_get(t, c->dbb, &kk, &cv) == 0 && cv.mv_size <= hh->meta.body_len) {
            hh->body = sh_memdup(cv.mv_data, cv.mv_size);
            hh->body_have = cv.mv_size;
        }
    }
    if (hh->body_id)
        pin_add(c, hh->body_id); /* before the txn ends: see manager() */
    rtxn_put(c, t);
    hh->c = c;
    CNT(c, st_found, 1);
    *hit = hh;
    return 0;
}

/* sh_cache_hit_read is sh_cache_hit_send into a caller's buffer. */
typedef struct {
    uint8_t *out;
    size_t got;
} read_into_t;

static long read_into(void *arg, const void *p, size_t n)
{
    read_into_t *ri = arg;
    memcpy(ri->out + ri->got, p, n);
    ri->got += n;
    return (long)n;
}

long sh_cache_hit_read(sh_cache_hit_t *h, uint64_t off, void *buf, size_t cap)
{
    read_into_t ri = {buf, 0};
    return sh_cache_hit_send(h, off, cap, read_into, &ri);
}

long sh_cache_hit_send(sh_cache_hit_t *h, uint64_t off, size_t max, sh_cache_sink_fn sink,
                       void *arg)
{
    uint64_t blen = h->meta.body_len;
    if (off >= blen || max == 0)
        return 0;
    if (max > LONG_MAX)
        max = LONG_MAX;
    if (max > blen - off)
        max = (size_t)(blen - off);
    size_t got = 0;
    if (off < h->body_have) {
        size_t n = h->body_have - (size_t)off;
        if (n > max)
            n = max;
        long r = sink(arg, h->body + off, n);
        if (r < 0)
            return r;
        got += (size_t)r;
        off += (size_t)r;
        if ((size_t)r < n)
            return (long)got;
    }
    if (got == max)
        return (long)got;
    if (!h->body_id || !h->c)
        return got ? (long)got : SH_ENOENT;
    sh_cache_t *c = h->c;
    MDB_txn *t = rtxn_get(c);
    if (!t)
        return SH_EIO;
    long rc = 0;
    while (got < max) {
        uint32_t idx = (uint32_t)(off / h->chunk_size);
        size_t within = (size_t)(off % h->chunk_size);
        uint8_t ck[12];
        chunk_key(ck, h->body_id, idx);
        MDB_val k = {sizeof(ck), ck}, v;
        int mrc = mdb_get(t, c->dbb, &k, &v);
        if (mrc || v.mv_size <= within) {
            if (mrc && mrc != MDB_NOTFOUND)
                rc = SH_EIO;
            else if (!got)
                rc = SH_ENOENT;
            break;
        }
        size_t n = v.mv_size - within;
        if (n > max - got)
            n = max - got;
        long r = sink(arg, (const uint8_t *)v.mv_data + within, n);
        if (r < 0) {
            rc = r;
            break;
        }
        got += (size_t)r;
        off += (size_t)r;
        if ((size_t)r < n)
            break;
    }
    rtxn_put(c, t);
    return rc < 0 ? rc : (long)got;
}

/* ---- the queue to the writer -------------------------------------------- */

static int enqueue(sh_cache_t *c, op *o, int force)
{
    pthread_mutex_lock(&c->q_mu);
    if (!force && c->q_bytes + o->bytes > c->queue_max) {
        pthread_mutex_unlock(&c->q_mu);
        return SH_ELIMIT;
    }
    if (o->kind == OP_PURGE)
        o->epoch = atomic_fetch_add(&c->purge_epoch, 1) + 1;
    o->next = NULL;
    *c->q_tail = o;
    c->q_tail = &o->next;
    c->q_bytes += o->bytes;
    pthread_cond_signal(&c->q_cv);
    pthread_mutex_unlock(&c->q_mu);
    return 0;
}

/* Have the writer remove an entry whose record does not decode (a record
 * from a newer format or a damaged file), so it is reported once. */
static void drop_bad(sh_cache_t *c, const uint8_t *hash)
{
    op *o = sh_new(op);
    o->kind = OP_DROPBAD;
    memcpy(o->hash, hash, SH_CACHE__HASH);
    o->bytes = sizeof(op);
    enqueue(c, o, 1);
}

static void op_free(op *o)
{
    sh_free(o->data);
    sh_free(o->str);
    sh_free(o->ids);
    sh_free(o);
}

/* ---- fills ---------------------------------------------------------------- */

int sh_cache_fill_begin(sh_cache_t *c, const char *key, size_t key_len, const sh_cache_meta_t *meta,
                        sh_cache_fill_t **fill)
{
    *fill = NULL;
    if (!key || !meta)
        return SH_EINVAL;
    uint8_t *pb;
    size_t n;
    int rc = sh_cache__meta_pack(key, key_len, meta, &pb, &n);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&c->q_mu);
    int full = c->q_bytes >= c->queue_max;
    pthread_mutex_unlock(&c->q_mu);
    if (full) {
        sh_free(pb);
        CNT(c, st_dropped, 1);
        return SH_ELIMIT;
    }
    sh_cache_fill_t *f = sh_new(sh_cache_fill_t);
    f->c = c;
    key_hash(key, key_len, f->hash);
    f->meta = pb;
    f->meta_len = n;
    f->body_id = atomic_fetch_add(&c->next_body_id, 1);
    f->epoch = atomic_load(&c->purge_epoch);
    *fill = f;
    return 0;
}

static void fill_drop(sh_cache_fill_t *f)
{
    if (f->dropped)
        return;
    f->dropped = 1;
    sh_free(f->buf);
    f->buf = NULL;
    f->blen = f->bcap = 0;
    CNT(f->c, st_dropped, 1);
}

static int flush_chunk(sh_cache_fill_t *f)
{
    op *o = sh_new(op);
    o->kind = OP_CHUNK;
    o->body_id = f->body_id;
    o->idx = f->nchunks;
    o->data = f->buf;
    o->len = f->blen;
    o->bytes = f->blen + sizeof(op);
    f->buf = NULL;
    f->blen = f->bcap = 0;
    if (enqueue(f->c, o, 0) < 0) {
        op_free(o);
        fill_drop(f);
        return SH_ELIMIT;
    }
    f->nchunks++;
    return 0;
}

int sh_cache_fill_append(sh_cache_fill_t *f, const void *data, size_t len)
{
    if (f->dropped)
        return SH_ELIMIT;
    sh_cache_t *c = f->c;
    uint64_t max = atomic_load_explicit(&c->max_size, memory_order_relaxed);
    if ((max && f->total + len > max) || f->total + len > c->map_size / 4 ||
        f->nchunks >= UINT32_MAX - 1) {
        fill_drop(f); /* could never be kept */
        return SH_ELIMIT;
    }
    const uint8_t *p = data;
    f->total += len;
    while (len) {
        if (f->blen == f->bcap) {
            size_t nc = f->bcap ? f->bcap * 2 : 4096;
            if (nc > c->chunk_size)
                nc = c->chunk_size;
            f->buf = sh_realloc(f->buf, nc);
            f->bcap = nc;
        }
        size_t n = f->bcap - f->blen;
        if (n > len)
            n = len;
        memcpy(f->buf + f->blen, p, n);
        f->blen += n;
        p += n;
        len -= n;
        if (f->blen == c->chunk_size && flush_chunk(f) < 0)
            return SH_ELIMIT;
    }
    return 0;
}

int sh_cache_fill_set_meta(sh_cache_fill_t *f, const sh_cache_meta_t *meta)
{
    if (f->dropped)
        return SH_ELIMIT;
    Sh__Cache__Meta *old = sh_cache__meta_unpack(f->meta, f->meta_len);
    if (!old)
        return SH_EINVAL;
    uint8_t *pb;
    size_t n;
    int rc = sh_cache__meta_pack((const char *)old->key.data, old->key.len, meta, &pb, &n);
    sh_cache__meta_free(old);
    if (rc < 0)
        return rc;
    sh_free(f->meta);
    f->meta = pb;
    f->meta_len = n;
    return 0;
}

static void fill_free(sh_cache_fill_t *f)
{
    sh_free(f->meta);
    sh_free(f->buf);
    sh_free(f);
}

/* An abort op: deletes the chunks already sent; cb learns status. */
static void send_abort(sh_cache_fill_t *f, sh_cache_done_cb cb, void *arg, int status)
{
    if (!f->nchunks && !cb)
        return;
    op *o = sh_new(op);
    o->kind = OP_ABORT;
    o->body_id = f->body_id;
    o->idx = f->nchunks;
    o->bytes = sizeof(op);
    o->cb = cb;
    o->arg = arg;
    o->status = status;
    enqueue(f->c, o, 1);
}

int sh_cache_fill_commit(sh_cache_fill_t *f, sh_cache_done_cb cb, void *arg)
{
    sh_cache_t *c = f->c;
    if (!f->dropped && f->nchunks && f->blen)
        flush_chunk(f);
    if (f->dropped) {
        send_abort(f, cb, arg, SH_ELIMIT);
        fill_free(f);
        return SH_ELIMIT;
    }
    int inl = f->nchunks == 0;
    size_t rlen = SH_CACHE__HDR + f->meta_len + (inl ? f->blen : 0);
    op *o = sh_new(op);
    o->kind = OP_COMMIT;
    o->data = sh_malloc(rlen);
    o->len = rlen;
    sh_cache__hdr_t hd = {(uint32_t)f->meta_len, f->total, inl ? 0 : f->body_id,
                          inl ? 0 : (uint32_t)c->chunk_size};
    sh_cache__hdr_put(o->data, &hd);
    memcpy(o->data + SH_CACHE__HDR, f->meta, f->meta_len);
    if (inl && f->blen)
        memcpy(o->data + SH_CACHE__HDR + f->meta_len, f->buf, f->blen);
    memcpy(o->hash, f->hash, SH_CACHE__HASH);
    o->body_id = f->body_id;
    o->idx = f->nchunks;
    o->epoch = f->epoch;
    o->bytes = rlen + sizeof(op);
    o->cb = cb;
    o->arg = arg;
    if (enqueue(c, o, 0) < 0) {
        op_free(o);
        fill_drop(f);
        send_abort(f, cb, arg, SH_ELIMIT);
        fill_free(f);
        return SH_ELIMIT;
    }
    fill_free(f);
    return 0;
}

void sh_cache_fill_abort(sh_cache_fill_t *f)
{
    if (!f)
        return;
    send_abort(f, NULL, NULL, 0);
    fill_free(f);
}

int sh_cache_update_meta(sh_cache_t *c, const char *key, size_t key_len,
                         const sh_cache_meta_t *meta, sh_cache_done_cb cb, void *arg)
{
    if (!key || !meta)
        return SH_EINVAL;
    uint8_t *pb;
    size_t n;
    int rc = sh_cache__meta_pack(key, key_len, meta, &pb, &n);
    if (rc < 0)
        return rc;
    op *o = sh_new(op);
    o->kind = OP_UPDATE;
    key_hash(key, key_len, o->hash);
    o->data = pb;
    o->len = n;
    o->epoch = atomic_load(&c->purge_epoch);
    o->bytes = sizeof(op) + n;
    o->cb = cb;
    o->arg = arg;
    if (enqueue(c, o, 0) < 0) {
        op_free(o);
        return SH_ELIMIT;
    }
    return 0;
}

/* ---- purge, sync ---------------------------------------------------------- */

int sh_cache_purge_async(sh_cache_t *c, enum sh_cache_purge_kind kind, const char *str, size_t len,
                         int soft, sh_cache_done_cb cb, void *arg)
{
    /* an empty prefix is every entry (the purge channel's catch-up flush) */
    if (!str || (len == 0 && kind != SH_CACHE_PURGE_PREFIX) || len > SH_CACHE_KEY_MAX ||
        (kind != SH_CACHE_PURGE_KEY && kind != SH_CACHE_PURGE_PREFIX && kind != SH_CACHE_PURGE_TAG))
        return SH_EINVAL;
    if (kind == SH_CACHE_PURGE_TAG && len > SH_CACHE_TAG_MAX)
        return SH_EINVAL;
    op *o = sh_new(op);
    o->kind = OP_PURGE;
    o->pkind = kind;
    o->soft = soft ? 1 : 0;
    o->str = sh_strndup(str, len);
    o->slen = len;
    o->bytes = sizeof(op) + len;
    o->cb = cb;
    o->arg = arg;
    enqueue(c, o, 1);
    return 0;
}

/* A blocking wait on a writer callback; heap allocated and shared so a
 * timed-out waiter can leave before the callback fires. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status, refs;
    uint64_t count;
} waiter;

static waiter *waiter_new(void)
{
    waiter *w = sh_new(waiter);
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    w->refs = 2;
    return w;
}

static void waiter_unref(waiter *w)
{
    pthread_mutex_lock(&w->mu);
    int last = --w->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (last) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        sh_free(w);
    }
}

static void waiter_cb(void *arg, int status, uint64_t count)
{
    waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    w->status = status;
    w->count = count;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    waiter_unref(w);
}

/* Wait for w until deadline (monotonic ms; 0 = forever). 0 or SH_ETIMEDOUT. */
static int waiter_wait(waiter *w, int64_t deadline)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done) {
        if (!deadline) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        struct timespec ts = {deadline / 1000, (deadline % 1000) * 1000000};
        if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
            break;
    }
    int rc = w->done ? 0 : SH_ETIMEDOUT;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int sh_cache_purge(sh_cache_t *c, enum sh_cache_purge_kind kind, const char *str, size_t len,
                   int soft, uint64_t *count)
{
    if (count)
        *count = 0;
    waiter *w = waiter_new();
    int rc = sh_cache_purge_async(c, kind, str, len, soft, waiter_cb, w);
    if (rc < 0) {
        waiter_unref(w);
        waiter_unref(w);
        return rc;
    }
    waiter_wait(w, 0);
    rc = w->status;
    if (count)
        *count = w->count;
    waiter_unref(w);
    return rc;
}

int sh_cache_sync(sh_cache_t *c, uint64_t timeout_ms)
{
    int64_t deadline = mono_ms() + (int64_t)timeout_ms;
    waiter *w = waiter_new();
    op *o = sh_new(op);
    o->kind = OP_SYNC;
    o->bytes = sizeof(op);
    o->cb = waiter_cb;
    o->arg = w;
    enqueue(c, o, 1);
    int rc = waiter_wait(w, deadline);
    waiter_unref(w);
    while (rc == 0 && atomic_load(&c->loading)) {
        if (mono_ms() >= deadline)
            return SH_ETIMEDOUT;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return rc;
}

/* ---- stats ---------------------------------------------------------------- */

void sh_cache_stats(sh_cache_t *c, sh_cache_stats_t *s)
{
    memset(s, 0, sizeof(*s));
#define LD(x) atomic_load_explicit(&c->x, memory_order_relaxed)
    s->lookups = LD(st_lookups);
    s->found = LD(st_found);
    s->not_found = LD(st_not_found);
    s->fills = LD(st_fills);
    s->fills_dropped = LD(st_dropped);
    s->fill_bytes = LD(st_fill_bytes);
    s->evictions = LD(st_evicted);
    s->expired = LD(st_expired);
    s->purged = LD(st_purged);
    s->map_full = LD(st_map_full);
    s->io_errors = LD(st_io_errors);
    s->batches = LD(st_batches);
    s->max_size = LD(max_size);
    s->loading = LD(loading);
#undef LD
    s->map_size = c->map_size;
    sh_cache__index_totals(c->ix, &s->size, &s->entries, &s->index_entries, &s->index_capacity);
}

uint64_t sh_cache__memory(sh_cache_t *c)
{
    return sh_cache__index_memory(c->ix);
}

void sh_cache__records(sh_cache_t *c, uint64_t *chunks, uint64_t *entries)
{
    *chunks = *entries = 0;
    MDB_txn *t = rtxn_get(c);
    if (!t)
        return;
    MDB_stat st;
    if (!mdb_stat(t, c->dbb, &st))
        *chunks = st.ms_entries;
    if (!mdb_stat(t, c->dbe, &st))
        *entries = st.ms_entries;
    rtxn_put(c, t);
}

/* ---- the writer thread ---------------------------------------------------- */

static void tx_ix(txlog *l, const uint8_t *h, uint64_t size)
{
    if (l->nix == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->ix = sh_realloc(l->ix, l->cap * sizeof(*l->ix));
    }
    memcpy(l->ix[l->nix].hash, h, SH_CACHE__HASH);
    l->ix[l->nix++].size = size;
}

static void tx_grave(txlog *l, uint64_t id, uint32_t n, int64_t at, uint64_t bytes)
{
    if (l->ngv == l->gcap) {
        l->gcap = l->gcap ? l->gcap * 2 : 16;
        l->gv = sh_realloc(l->gv, l->gcap * sizeof(*l->gv));
    }
    l->gv[l->ngv++] = (grave){id, n, at, bytes};
}

static uint32_t nchunks_of(const sh_cache__hdr_t *h)
{
    return h->body_id ? (uint32_t)((h->body_len + h->chunk_size - 1) / h->chunk_size) : 0;
}

static uint64_t entry_size(size_t rec_len, const sh_cache__hdr_t *h)
{
    return rec_len + (h->body_id ? h->body_len : 0);
}

static MDB_val ktrunc(const uint8_t *key, size_t len)
{
    return (MDB_val){len > KTRUNC ? KTRUNC : len, (void *)(uintptr_t)key};
}

/* Delete every chunk of body id (n, the count expected, is a hint only: a
 * crash may have left more or fewer). */
static int del_chunks(sh_cache_t *c, MDB_txn *t, uint64_t id, uint32_t n)
{
    (void)n;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t, c->dbb, &cur);
    if (rc)
        return rc;
    for (;;) {
        uint8_t ck[12];
        chunk_key(ck, id, 0);
        MDB_val k = {sizeof(ck), ck}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc || k.mv_size != 12 || chunk_key_id(k.mv_data) != id)
            break;
        rc = mdb_cursor_del(cur, 0);
        if (rc)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Remove the entry of hash and its index rows; its body becomes a grave.
 * *found tells whether there was one. */
static int del_entry(sh_cache_t *c, MDB_txn *t, const uint8_t *hash, txlog *l, int *found)
{
    MDB_val k = {SH_CACHE__HASH, (void *)(uintptr_t)hash}, v;
    *found = 0;
    int rc = mdb_get(t, c->dbe, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    *found = 1;
    sh_cache__hdr_t hd;
    const char *why;
    Sh__Cache__Meta *pb = NULL;
    if (sh_cache__hdr_parse(v.mv_data, v.mv_size, &hd, &why) == 0) {
        pb = sh_cache__meta_unpack((const uint8_t *)v.mv_data + SH_CACHE__HDR, hd.meta_len);
        if (hd.body_id)
            tx_grave(l, hd.body_id, nchunks_of(&hd), mono_ms(), hd.body_len);
    }
    if (pb) {
        MDB_val kk = ktrunc(pb->key.data, pb->key.len), hv = {SH_CACHE__HASH, (void *)hash};
        rc = mdb_del(t, c->dbk, &kk, &hv);
        for (size_t i = 0; (rc == 0 || rc == MDB_NOTFOUND) && i < pb->n_tags; i++) {
            MDB_val tk = {pb->tags[i].len, pb->tags[i].data};
            rc = mdb_del(t, c->dbt, &tk, &hv);
        }
        sh_cache__meta_free(pb);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
    }
    rc = mdb_del(t, c->dbe, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int key_matches(const purge_rec *p, const ProtobufCBinaryData *key,
                       const Sh__Cache__Meta *pb)
{
    switch (p->kind) {
    case SH_CACHE_PURGE_KEY:
        return (key->len == p->len && memcmp(key->data, p->str, p->len) == 0) ||
               (key->len > p->len && memcmp(key->data, p->str, p->len) == 0 &&
                key->data[p->len] == (uint8_t)SH_CACHE_VARIANT_SEP);
    case SH_CACHE_PURGE_PREFIX:
        return key->len >= p->len && memcmp(key->data, p->str, p->len) == 0;
    default:
        for (size_t i = 0; i < pb->n_tags; i++)
            if (pb->tags[i].len == p->len && memcmp(pb->tags[i].data, p->str, p->len) == 0)
                return 1;
        return 0;
    }
}

/* A fill begun before a purge that matches it must not outlive the purge. */
static int purged_since(sh_cache_t *c, const op *o, const Sh__Cache__Meta *pb)
{
    if (o->epoch >= c->plog_epoch)
        return 0;
    if (c->plog_epoch - o->epoch > PURGE_LOG)
        return 1; /* older than what we remember: drop to be safe */
    for (uint64_t e = o->epoch + 1; e <= c->plog_epoch; e++) {
        const purge_rec *p = &c->plog[e % PURGE_LOG];
        if (p->epoch == e && key_matches(p, &pb->key, pb))
            return 1;
    }
    return 0;
}

static int apply_commit(sh_cache_t *c, MDB_txn *t, op *o, txlog *l)
{
    sh_cache__hdr_t hd;
    const char *why;
    if (sh_cache__hdr_parse(o->data, o->len, &hd, &why) < 0)
        return SH_EPARSE;
    Sh__Cache__Meta *pb = sh_cache__meta_unpack(o->data + SH_CACHE__HDR, hd.meta_len);
    if (!pb)
        return SH_EPARSE;
    int rc = 0;
    if (purged_since(c, o, pb)) {
        o->status = SH_ESTATE;
        goto drop;
    }
    /* Every chunk must be there: one lost with a failed batch drops the
     * fill rather than leaving a body with a hole. */
    for (uint32_t i = 0; i < o->idx; i++) {
        uint8_t ck[12];
        chunk_key(ck, o->body_id, i);
        MDB_val k = {sizeof(ck), ck}, v;
        rc = mdb_get(t, c->dbb, &k, &v);
        if (rc == MDB_NOTFOUND) {
            o->status = SH_EIO;
            rc = 0;
            goto drop;
        }
        if (rc)
            goto out;
    }
    int found;
    rc = del_entry(c, t, o->hash, l, &found);
    if (rc)
        goto out;
    MDB_val k = {SH_CACHE__HASH, o->hash}, v = {o->len, o->data};
    rc = mdb_put(t, c->dbe, &k, &v, 0);
    if (rc)
        goto out;
    MDB_val kk = ktrunc(pb->key.data, pb->key.len), hv = {SH_CACHE__HASH, o->hash};
    rc = mdb_put(t, c->dbk, &kk, &hv, 0);
    for (size_t i = 0; rc == 0 && i < pb->n_tags; i++) {
        MDB_val tk = {pb->tags[i].len, pb->tags[i].data};
        rc = mdb_put(t, c->dbt, &tk, &hv, 0);
    }
    if (rc == MDB_KEYEXIST)
        rc = 0;
    if (rc)
        goto out;
    tx_ix(l, o->hash, entry_size(o->len, &hd));
    o->status = 0;
    o->count = hd.body_len;
    goto out;
drop:
    if (o->idx)
        rc = del_chunks(c, t, o->body_id, o->idx);
out:
    sh_cache__meta_free(pb);
    return rc;
}

/* A revalidation: the entry's record gets new metadata, its body stays
 * (inline bytes copied along, chunks untouched). */
static int apply_update(sh_cache_t *c, MDB_txn *t, op *o, txlog *l)
{
    Sh__Cache__Meta *nb = sh_cache__meta_unpack(o->data, o->len), *ob = NULL;
    uint8_t *nr = NULL;
    int rc = 0;
    o->status = SH_ENOENT;
    if (!nb)
        return 0;
    if (purged_since(c, o, nb)) {
        o->status = SH_ESTATE;
        goto out;
    }
    MDB_val k = {SH_CACHE__HASH, o->hash}, v;
    rc = mdb_get(t, c->dbe, &k, &v);
    if (rc) {
        rc = rc == MDB_NOTFOUND ? 0 : rc;
        goto out;
    }
    sh_cache__hdr_t hd;
    const char *why;
    if (sh_cache__hdr_parse(v.mv_data, v.mv_size, &hd, &why) < 0)
        goto out;
    const uint8_t *rec = v.mv_data;
    ob = sh_cache__meta_unpack(rec + SH_CACHE__HDR, hd.meta_len);
    if (!ob || ob->key.len != nb->key.len || memcmp(ob->key.data, nb->key.data, nb->key.len) != 0)
        goto out;
    /* Build the whole new record before the first write moves the map. */
    size_t body = hd.body_id ? 0 : (size_t)hd.body_len;
    size_t nl = SH_CACHE__HDR + o->len + body;
    nr = sh_malloc(nl);
    hd.meta_len = (uint32_t)o->len;
    sh_cache__hdr_put(nr, &hd);
    memcpy(nr + SH_CACHE__HDR, o->data, o->len);
    if (body)
        memcpy(nr + SH_CACHE__HDR + o->len, rec + v.mv_size - body, body);
    MDB_val hv = {SH_CACHE__HASH, o->hash};
    for (size_t i = 0; (rc == 0 || rc == MDB_NOTFOUND) && i < ob->n_tags; i++) {
        MDB_val tk = {ob->tags[i].len, ob->tags[i].data};
        rc = mdb_del(t, c->dbt, &tk, &hv);
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    MDB_val nv = {nl, nr};
    if (!rc)
        rc = mdb_put(t, c->dbe, &k, &nv, 0);
    for (size_t i = 0; rc == 0 && i < nb->n_tags; i++) {
        MDB_val tk = {nb->tags[i].len, nb->tags[i].data};
        rc = mdb_put(t, c->dbt, &tk, &hv, 0);
    }
    if (rc == MDB_KEYEXIST)
        rc = 0;
    if (!rc) {
        tx_ix(l, o->hash, entry_size(nl, &hd));
        o->status = 0;
    }
out:
    sh_free(nr);
    sh_cache__meta_free(ob);
    sh_cache__meta_free(nb);
    return rc;
}

typedef struct {
    uint8_t (*h)[SH_CACHE__HASH];
    size_t n, cap;
} hashes;

static void hs_add(hashes *hs, const void *h)
{
    if (hs->n == hs->cap) {
        hs->cap = hs->cap ? hs->cap * 2 : 16;
        hs->h = sh_realloc(hs->h, hs->cap * SH_CACHE__HASH);
    }
    memcpy(hs->h[hs->n++], h, SH_CACHE__HASH);
}

/* Hashes of the keys starting with p (in "k"); full keys checked when p
 * is longer than the indexed part. */
static int collect_prefix(sh_cache_t *c, MDB_txn *t, const char *p, size_t len, hashes *hs)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t, c->dbk, &cur);
    if (rc)
        return rc;
    size_t pl = len > KTRUNC ? KTRUNC : len;
    MDB_val k = {pl, (void *)(uintptr_t)p}, v;
    rc = mdb_cursor_get(cur, &k, &v, pl ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0 && k.mv_size >= pl && memcmp(k.mv_data, p, pl) == 0) {
        int ok = 1;
        if (len > KTRUNC) {
            MDB_val ek = {SH_CACHE__HASH, v.mv_data}, ev;
            sh_cache__hdr_t hd;
            const char *why;
            ok = 0;
            if (mdb_get(t, c->dbe, &ek, &ev) == 0 &&
                sh_cache__hdr_parse(ev.mv_data, ev.mv_size, &hd, &why) == 0) {
                Sh__Cache__Meta *pb =
                    sh_cache__meta_unpack((const uint8_t *)ev.mv_data + SH_CACHE__HDR, hd.meta_len);
                ok = pb && pb->key.len >= len && memcmp(pb->key.data, p, len) == 0;
                sh_cache__meta_free(pb);
            }
        }
        if (ok && v.mv_size == SH_CACHE__HASH)
            hs_add(hs, v.mv_data);
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int collect_tag(sh_cache_t *c, MDB_txn *t, const char *tag, size_t len, hashes *hs)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t, c->dbt, &cur);
    if (rc)
        return rc;
    MDB_val k = {len, (void *)(uintptr_t)tag}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
    while (rc == 0) {
        if (v.mv_size == SH_CACHE__HASH)
            hs_add(hs, v.mv_data);
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Soft purge: the entry stays, valid_until becomes 0. */
static int mark_stale(sh_cache_t *c, MDB_txn *t, const uint8_t *hash, int *found)
{
    MDB_val k = {SH_CACHE__HASH, (void *)(uintptr_t)hash}, v;
    *found = 0;
    int rc = mdb_get(t, c->dbe, &k, &v);
    if (rc)
        return rc == MDB_NOTFOUND ? 0 : rc;
    sh_cache__hdr_t hd;
    const char *why;
    if (sh_cache__hdr_parse(v.mv_data, v.mv_size, &hd, &why) < 0)
        return 0;
    const uint8_t *rec = v.mv_data;
    Sh__Cache__Meta *pb = sh_cache__meta_unpack(rec + SH_CACHE__HDR, hd.meta_len);
    if (!pb)
        return 0;
    *found = 1;
    if (pb->valid_until == 0) {
        sh_cache__meta_free(pb);
        return 0;
    }
    pb->valid_until = 0;
    size_t ml = sh__cache__meta__get_packed_size(pb);
    size_t body = hd.body_id ? 0 : (size_t)hd.body_len;
    size_t nl = SH_CACHE__HDR + ml + body;
    uint8_t *nr = sh_malloc(nl);
    hd.meta_len = (uint32_t)ml;
    sh_cache__hdr_put(nr, &hd);
    sh__cache__meta__pack(pb, nr + SH_CACHE__HDR);
    if (body)
        memcpy(nr + SH_CACHE__HDR + ml, rec + v.mv_size - body, body);
    sh_cache__meta_free(pb);
    MDB_val nv = {nl, nr};
    rc = mdb_put(t, c->dbe, &k, &nv, 0);
    sh_free(nr);
    return rc;
}

static int apply_purge(sh_cache_t *c, MDB_txn *t, op *o, txlog *l)
{
    hashes hs = {0};
    int rc = 0;
    if (o->pkind == SH_CACHE_PURGE_KEY) {
        uint8_t h[SH_CACHE__HASH];
        key_hash(o->str, o->slen, h);
        hs_add(&hs, h);
        char *vp = sh_malloc(o->slen + 1);
        memcpy(vp, o->str, o->slen);
        vp[o->slen] = SH_CACHE_VARIANT_SEP;
        rc = collect_prefix(c, t, vp, o->slen + 1, &hs);
        sh_free(vp);
    } else if (o->pkind == SH_CACHE_PURGE_PREFIX) {
        rc = collect_prefix(c, t, o->str, o->slen, &hs);
    } else {
        rc = collect_tag(c, t, o->str, o->slen, &hs);
    }
    uint64_t n = 0;
    for (size_t i = 0; rc == 0 && i < hs.n; i++) {
        int found = 0;
        if (o->soft) {
            rc = mark_stale(c, t, hs.h[i], &found);
        } else {
            rc = del_entry(c, t, hs.h[i], l, &found);
            if (rc == 0 && found)
                tx_ix(l, hs.h[i], UINT64_MAX);
        }
        n += found;
    }
    sh_free(hs.h);
    o->count = n;
    o->status = rc ? SH_EIO : 0;
    l->purged += n;
    return rc;
}

static void log_full(sh_cache_t *c, int rc, size_t lost)
{
    int64_t now = mono_ms();
    if (now - c->last_full_log < 10000 && c->last_full_log)
        return;
    c->last_full_log = now;
    sh_log_warn("cache \"%s\": %s (map %llu bytes, %s): %zu fill(s) not cached, evicting", c->zone,
                mdb_strerror(rc), (unsigned long long)c->map_size, c->path, lost);
}

static void txlog_apply(sh_cache_t *c, txlog *l)
{
    for (size_t i = 0; i < l->nix; i++) {
        if (l->ix[i].size == UINT64_MAX)
            sh_cache__index_remove(c->ix, l->ix[i].hash);
        else
            sh_cache__index_store(c->ix, l->ix[i].hash, l->ix[i].size, now_ms(c), 0);
    }
    for (size_t i = 0; i < l->ngv; i++) {
        if (c->ngraves == c->cap_graves) {
            c->cap_graves = c->cap_graves ? c->cap_graves * 2 : 64;
            c->graves = sh_realloc(c->graves, c->cap_graves * sizeof(grave));
        }
        c->graves[c->ngraves++] = l->gv[i];
        c->grave_bytes += l->gv[i].bytes;
    }
    CNT(c, st_evicted, l->evicted);
    CNT(c, st_expired, l->expired);
    CNT(c, st_purged, l->purged);
}

static void txlog_reset(txlog *l)
{
    l->nix = l->ngv = 0;
    l->evicted = l->expired = l->purged = 0;
}

static void remember_purge(sh_cache_t *c, const op *o)
{
    purge_rec *p = &c->plog[o->epoch % PURGE_LOG];
    sh_free(p->str);
    p->epoch = o->epoch;
    p->kind = o->pkind;
    p->str = sh_memdup(o->str, o->slen);
    p->len = o->slen;
    if (o->epoch > c->plog_epoch)
        c->plog_epoch = o->epoch;
}

/* Apply one drained queue in one write txn. */
static void apply_batch(sh_cache_t *c, op *batch, txlog *l)
{
    MDB_txn *t = NULL;
    int rc = wtxn_begin(c, &t);
    size_t ncommits = 0;
    for (op *o = batch; o; o = o->next)
        ncommits += o->kind == OP_COMMIT;
    txlog_reset(l);
    for (op *o = batch; !rc && o; o = o->next) {
        switch (o->kind) {
        case OP_CHUNK: {
            uint8_t ck[12];
            chunk_key(ck, o->body_id, o->idx);
            MDB_val k = {sizeof(ck), ck}, v = {o->len, o->data};
            rc = mdb_put(t, c->dbb, &k, &v, 0);
            break;
        }
        case OP_COMMIT:
            o->status = SH_EIO;
            rc = apply_commit(c, t, o, l);
            if (rc == SH_EPARSE)
                rc = 0;
            break;
        case OP_ABORT:
            rc = del_chunks(c, t, o->body_id, o->idx);
            break;
        case OP_PURGE:
            rc = apply_purge(c, t, o, l);
            remember_purge(c, o);
            break;
        case OP_SWEEP:
            for (size_t i = 0; !rc && i < o->nids; i++)
                rc = del_chunks(c, t, o->ids[i], 0);
            break;
        case OP_UPDATE:
            rc = apply_update(c, t, o, l);
            break;
        case OP_DROPBAD: {
            MDB_val k = {SH_CACHE__HASH, o->hash}, v;
            sh_cache_hit_t *h;
            const char *why;
            rc = mdb_get(t, c->dbe, &k, &v);
            if (rc == 0 && sh_cache__hit_make(v.mv_data, v.mv_size, 0, &h, &why) == 0) {
                sh_cache_hit_free(h); /* replaced meanwhile by a good one */
            } else if (rc == 0) {
                rc = mdb_del(t, c->dbe, &k, NULL);
                if (rc == 0)
                    tx_ix(l, o->hash, UINT64_MAX);
            }
            if (rc == MDB_NOTFOUND)
                rc = 0;
            break;
        }
        default:
            break;
        }
    }
    if (!rc)
        rc = mdb_txn_commit(t);
    else if (t)
        mdb_txn_abort(t);
    if (rc) {
        /* The whole batch is lost: its fills are not cached, its purges are
         * redone alone after the eviction makes room. */
        if (is_full(rc)) {
            CNT(c, st_map_full, 1);
            uint64_t size, st, nodes, cap;
            sh_cache__index_totals(c->ix, &size, &st, &nodes, &cap);
            c->emergency = size / 10 + 1;
            log_full(c, rc, ncommits);
        } else {
            CNT(c, st_io_errors, 1);
            sh_log_err("cache \"%s\": write txn: %s; %zu fill(s) not cached", c->zone,
                       mdb_strerror(rc), ncommits);
        }
        txlog_reset(l);
        for (op *o = batch; o; o = o->next) {
            if (o->kind == OP_COMMIT) {
                o->status = SH_ELIMIT;
                CNT(c, st_dropped, 1);
                /* Its chunks from earlier batches are orphans now. */
                if (o->idx)
                    tx_grave(l, o->body_id, o->idx, 0, (uint64_t)o->idx * c->chunk_size);
            }
            if (o->kind == OP_PURGE)
                o->status = SH_EIO;
            if (o->kind == OP_UPDATE)
                o->status = SH_ELIMIT;
        }
        txlog_apply(c, l);
        return;
    }
    CNT(c, st_batches, 1);
    for (op *o = batch; o; o = o->next) {
        if (o->kind == OP_COMMIT) {
            if (o->status == 0) {
                CNT(c, st_fills, 1);
                CNT(c, st_fill_bytes, o->count);
            } else {
                CNT(c, st_dropped, 1);
                o->status = SH_ELIMIT;
            }
        }
    }
    txlog_apply(c, l);
}

/* Redo the purges of a lost batch in their own txn. */
static void redo_purges(sh_cache_t *c, op *batch, txlog *l)
{
    for (op *o = batch; o; o = o->next) {
        if (o->kind != OP_PURGE || o->status == 0)
            continue;
        MDB_txn *t;
        txlog_reset(l);
        int rc = wtxn_begin(c, &t);
        if (!rc) {
            rc = apply_purge(c, t, o, l);
            if (rc)
                mdb_txn_abort(t);
            else
                rc = mdb_txn_commit(t);
        }
        if (rc) {
            o->status = SH_EIO;
            sh_log_err("cache \"%s\": purge failed: %s", c->zone, mdb_strerror(rc));
        } else {
            txlog_apply(c, l);
        }
    }
}

static int over_limits(sh_cache_t *c, uint64_t freed)
{
    uint64_t size, st, nodes, cap;
    sh_cache__index_totals(c->ix, &size, &st, &nodes, &cap);
    uint64_t max = atomic_load_explicit(&c->max_size, memory_order_relaxed);
    if (max && size > max)
        return 1;
    if (nodes > cap)
        return 1;
    if (c->emergency && freed < c->emergency)
        return 1;
    return c->disk_cap && size > c->disk_cap;
}

/* The cache manager: inactive entries, then LRU while over max_size, the
 * keys_zone capacity, min_free or after a full map; then the graves. At most
 * manager_files removals per txn, txns repeated for manager_threshold ms
 * (unbounded: until done, for sh_cache_sync). */
static void manager(sh_cache_t *c, txlog *l, int unbounded)
{
    int loading = atomic_load(&c->loading);
    if (loading && !c->emergency)
        return;
    /* min_free: LMDB's file never shrinks, so removing entries frees pages
     * for reuse, not disk space. Below min_free the store stops growing: the
     * size is held 5% under what it was, until the disk has room again. */
    uint64_t min_free = atomic_load_explicit(&c->min_free, memory_order_relaxed);
    if (min_free) {
        struct statvfs sv;
        if (statvfs(c->path, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize < min_free) {
            if (!c->disk_cap) {
                uint64_t size, st, nodes, cap;
                sh_cache__index_totals(c->ix, &size, &st, &nodes, &cap);
                c->disk_cap = size - size / 20 + 1;
                sh_log_warn("cache \"%s\": free disk space under min_free, size held at %llu bytes",
                            c->zone, (unsigned long long)c->disk_cap);
            }
        } else {
            c->disk_cap = 0;
        }
    } else {
        c->disk_cap = 0;
    }
    int64_t now = now_ms(c), t0 = mono_ms();
    int64_t inactive = (int64_t)atomic_load_explicit(&c->inactive, memory_order_relaxed);
    uint64_t freed = 0;
    int more = 1;
    while (more && (unbounded || mono_ms() - t0 <= (int64_t)c->manager_threshold)) {
        MDB_txn *t;
        if (wtxn_begin(c, &t))
            return;
        txlog_reset(l);
        unsigned n = 0;
        int rc = 0;
        more = 0;
        uint8_t last[SH_CACHE__HASH];
        int have_last = 0;
        while (n < c->manager_files) {
            uint8_t h[SH_CACHE__HASH];
            int64_t lu;
            int stored;
            if (!sh_cache__index_oldest(c->ix, h, &lu, &stored))
                break;
            int expired = lu <= now - inactive;
            if (!expired && !over_limits(c, freed))
                break;
            /* The index changes only after commit: stop at a repeat. */
            if (have_last && memcmp(last, h, sizeof(h)) == 0) {
                more = 1;
                break;
            }
            memcpy(last, h, sizeof(h));
            have_last = 1;
            if (!stored) {
                sh_cache__index_remove(c->ix, h);
                continue;
            }
            int found;
            rc = del_entry(c, t, h, l, &found);
            if (rc)
                break;
            uint64_t size, st, nodes, cap;
            sh_cache__index_totals(c->ix, &size, &st, &nodes, &cap);
            /* Remove from the index now so the next oldest is seen; the
             * entry is gone for lookups either way once this commits. */
            sh_cache__index_remove(c->ix, h);
            uint64_t after;
            sh_cache__index_totals(c->ix, &after, &st, &nodes, &cap);
            freed += size - after;
            if (expired)
                l->expired++;
            else
                l->evicted++;
            n++;
            more = 1;
        }
        if (rc) {
            mdb_txn_abort(t);
            sh_log_err("cache \"%s\": eviction: %s", c->zone, mdb_strerror(rc));
            return;
        }
        rc = mdb_txn_commit(t);
        if (rc) {
            sh_log_err("cache \"%s\": eviction commit: %s", c->zone, mdb_strerror(rc));
            return;
        }
        txlog_apply(c, l);
        if (n == 0)
            break;
    }
    if (c->emergency && (freed >= c->emergency || !more))
        c->emergency = 0;
    /* Graves: bodies no entry points to any more, deleted once no hit pins
     * them and GRACE_MS passed (the grace covers a lookup between reading
     * the entry and pinning its body); past grave_max bytes, at once. */
    uint64_t max = atomic_load_explicit(&c->max_size, memory_order_relaxed);
    uint64_t grave_max = max / 4 > ((uint64_t)16 << 20) ? max / 4 : (uint64_t)16 << 20;
    int64_t mnow = mono_ms();
    size_t keep = 0, due = 0;
    /* at once past grave_max, but only while no lookup is between its read
     * txn and its pin: one that began before a body's entry went away may
     * still pin it (a lookup that begins later cannot see that entry) */
    int hurry = c->grave_bytes > grave_max && atomic_load(&c->lookups_busy) == 0;
    for (size_t i = 0; i < c->ngraves; i++)
        due += (hurry || c->graves[i].at + GRACE_MS <= mnow) && !pinned(c, c->graves[i].body_id);
    if (due) {
        MDB_txn *t;
        if (wtxn_begin(c, &t))
            return;
        int rc = 0;
        uint64_t gone = 0;
        for (size_t i = 0; i < c->ngraves; i++) {
            grave *g = &c->graves[i];
            if (!rc && (hurry || g->at + GRACE_MS <= mnow) && !pinned(c, g->body_id)) {
                rc = del_chunks(c, t, g->body_id, g->nchunks);
                gone += g->bytes;
            } else {
                c->graves[keep++] = *g;
            }
        }
        if (rc) {
            mdb_txn_abort(t);
        } else if (mdb_txn_commit(t) == 0) {
            c->ngraves = keep;
            c->grave_bytes -= gone;
        }
    }
}

/* The configuration asks for a larger map (a reload raised map_size or
 * max_size): grow it now, between write txns, with every read txn of this
 * process ended (the write side of map_lk). A smaller size waits for the
 * next start. */
static void map_grow(sh_cache_t *c)
{
    uint64_t want = atomic_load(&c->map_want), have = atomic_load(&c->map_size);
    if (want <= have)
        return;
    pthread_rwlock_wrlock(&c->map_lk);
    int rc = mdb_env_set_mapsize(c->env, (size_t)want);
    MDB_envinfo ei;
    mdb_env_info(c->env, &ei);
    atomic_store(&c->map_size, (uint64_t)ei.me_mapsize);
    pthread_rwlock_unlock(&c->map_lk);
    if (rc) {
        atomic_store(&c->map_want, have); /* do not try again each batch */
        sh_log_err("cache \"%s\": cannot grow the map of %s to %llu bytes: %s", c->zone, c->path,
                   (unsigned long long)want, mdb_strerror(rc));
        return;
    }
    c->emergency = 0; /* the room a full map asked for is there now */
    sh_log_notice("cache \"%s\": map size of %s grown from %llu to %llu bytes", c->zone, c->path,
                  (unsigned long long)have, (unsigned long long)ei.me_mapsize);
}

static void *writer_main(void *arg)
{
    sh_cache_t *c = arg;
    txlog l = {0};
    pthread_mutex_lock(&c->q_mu);
    for (;;) {
        if (!c->q_head && !c->stop) {
            uint64_t max = atomic_load(&c->max_size);
            uint64_t size, st, nodes, cap;
            sh_cache__index_totals(c->ix, &size, &st, &nodes, &cap);
            int busy = (max && size > max) || nodes > cap || c->emergency || c->ngraves ||
                       (c->disk_cap && size > c->disk_cap);
            int64_t wait = busy ? (int64_t)c->manager_sleep : IDLE_TICK_MS;
            int64_t dl = mono_ms() + wait;
            struct timespec ts = {dl / 1000, (dl % 1000) * 1000000};
            pthread_cond_timedwait(&c->q_cv, &c->q_mu, &ts);
        }
        /* One txn takes up to BATCH_MAX bytes, so a burst cannot grow one
         * txn past what the map holds between manager passes. */
        op *batch = c->q_head, **bt = &batch;
        size_t taken = 0;
        while (*bt && taken < BATCH_MAX) {
            taken += (*bt)->bytes;
            bt = &(*bt)->next;
        }
        c->q_head = *bt;
        *bt = NULL;
        if (!c->q_head)
            c->q_tail = &c->q_head;
        c->q_bytes -= taken;
        int stopping = c->stop;
        pthread_mutex_unlock(&c->q_mu);
        map_grow(c);
        int syncing = 0;
        for (op *o = batch; o; o = o->next)
            syncing |= o->kind == OP_SYNC;
        if (batch) {
            apply_batch(c, batch, &l);
            redo_purges(c, batch, &l);
            for (op *o = batch; o; o = o->next)
                if (o->cb && o->kind != OP_SYNC)
                    o->cb(o->arg, o->status, o->count);
        }
        /* A sync returns once the manager has caught up too, however long
         * that takes on a loaded machine (tests see the limits hold). */
        manager(c, &l, syncing);
        for (op *o = batch, *nx; o; o = nx) {
            nx = o->next;
            if (o->cb && o->kind == OP_SYNC)
                o->cb(o->arg, o->status, o->count);
            op_free(o);
        }
        if (mono_ms() - c->last_sync >= SYNC_EVERY_MS) {
            mdb_env_sync(c->env, 1);
            c->last_sync = mono_ms();
        }
        pthread_mutex_lock(&c->q_mu);
        if (stopping && !c->q_head)
            break;
    }
    pthread_mutex_unlock(&c->q_mu);
    sh_free(l.ix);
    sh_free(l.gv);
    return NULL;
}

/* ---- the loader thread ---------------------------------------------------- */

typedef struct {
    uint64_t *v;
    size_t mask, n;
} idset;

static void ids_add(idset *s, uint64_t id);

static void ids_grow(idset *s)
{
    idset o = *s;
    s->mask = o.mask ? o.mask * 2 + 1 : 1023;
    s->v = sh_calloc(s->mask + 1, sizeof(uint64_t));
    s->n = 0;
    for (size_t i = 0; o.v && i <= o.mask; i++)
        if (o.v[i])
            ids_add(s, o.v[i]);
    sh_free(o.v);
}

static void ids_add(idset *s, uint64_t id)
{
    if ((s->n + 1) * 2 > s->mask)
        ids_grow(s);
    size_t i = (size_t)(id * 0x9E3779B97F4A7C15ull) & s->mask;
    while (s->v[i] && s->v[i] != id)
        i = (i + 1) & s->mask;
    if (!s->v[i]) {
        s->v[i] = id;
        s->n++;
    }
}

static int ids_has(const idset *s, uint64_t id)
{
    if (!s->v)
        return 0;
    size_t i = (size_t)(id * 0x9E3779B97F4A7C15ull) & s->mask;
    while (s->v[i]) {
        if (s->v[i] == id)
            return 1;
        i = (i + 1) & s->mask;
    }
    return 0;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void *loader_main(void *arg)
{
    sh_cache_t *c = arg;
    idset live = {0};
    uint8_t last[SH_CACHE__HASH];
    int have_last = 0, done = 0;
    uint64_t loaded = 0;
    int64_t now = now_ms(c);
    while (!done && !atomic_load(&c->loader_stop)) {
        MDB_txn *t;
        MDB_cursor *cur;
        rdlock(c);
        if (rtxn_begin(c, &t)) {
            rdunlock(c);
            break;
        }
        if (mdb_cursor_open(t, c->dbe, &cur)) {
            mdb_txn_abort(t);
            rdunlock(c);
            break;
        }
        MDB_val k = {SH_CACHE__HASH, last}, v;
        int rc;
        if (!have_last) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        } else {
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            if (!rc && k.mv_size == SH_CACHE__HASH && memcmp(k.mv_data, last, SH_CACHE__HASH) == 0)
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        unsigned n = 0;
        int64_t t0 = mono_ms();
        while (!rc && n < c->loader_files && mono_ms() - t0 <= (int64_t)c->loader_threshold) {
            sh_cache__hdr_t hd;
            const char *why;
            if (k.mv_size == SH_CACHE__HASH &&
                sh_cache__hdr_parse(v.mv_data, v.mv_size, &hd, &why) == 0) {
                sh_cache__index_store(c->ix, k.mv_data, entry_size(v.mv_size, &hd), now, 1);
                if (hd.body_id)
                    ids_add(&live, hd.body_id);
                loaded++;
            } else if (k.mv_size == SH_CACHE__HASH) {
                sh_log_warn("cache \"%s\": unreadable entry (%s) removed", c->zone, why);
                drop_bad(c, k.mv_data);
            }
            if (k.mv_size == SH_CACHE__HASH) {
                memcpy(last, k.mv_data, SH_CACHE__HASH);
                have_last = 1;
            }
            n++;
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(cur);
        mdb_txn_abort(t);
        rdunlock(c);
        if (rc)
            done = 1;
        else
            sleep_ms(c->loader_sleep);
    }
    /* The sweep: bodies from before this open that no entry points to are
     * what a crash or a lost batch left. */
    op *sw = NULL;
    if (done && !atomic_load(&c->loader_stop)) {
        MDB_txn *t;
        MDB_cursor *cur;
        rdlock(c);
        if (!rtxn_begin(c, &t)) {
            if (!mdb_cursor_open(t, c->dbb, &cur)) {
                MDB_val k, v;
                int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
                while (!rc && k.mv_size == 12) {
                    uint64_t id = chunk_key_id(k.mv_data);
                    if (id >= c->first_body_id)
                        break;
                    if (!ids_has(&live, id)) {
                        if (!sw) {
                            sw = sh_new(op);
                            sw->kind = OP_SWEEP;
                        }
                        sw->ids = sh_realloc(sw->ids, (sw->nids + 1) * sizeof(uint64_t));
                        sw->ids[sw->nids++] = id;
                    }
                    uint8_t nk[12];
                    chunk_key(nk, id + 1, 0);
                    k = (MDB_val){sizeof(nk), nk};
                    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
                }
                mdb_cursor_close(cur);
            }
            mdb_txn_abort(t);
        }
        rdunlock(c);
    }
    if (sw) {
        sh_log_notice("cache \"%s\": %zu orphan bod%s from an interrupted run swept", c->zone,
                      sw->nids, sw->nids == 1 ? "y" : "ies");
        sw->bytes = sizeof(op);
        enqueue(c, sw, 1);
    }
    sh_free(live.v);
    if (done)
        sh_log_info("cache \"%s\": loaded %llu entries", c->zone, (unsigned long long)loaded);
    atomic_store_explicit(&c->loading, 0, memory_order_release);
    return NULL;
}
