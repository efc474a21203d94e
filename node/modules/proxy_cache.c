/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_cache: nginx's response cache on the request pipeline.
 *
 *   precontent  lookup(): the key ($scheme$proxy_host$request_uri by
 *               default), proxy_cache_methods / _bypass / _min_uses, the
 *               store's entry (its Vary variant), freshness; a fresh
 *               entry is answered here (HIT: HEAD, If-None-Match /
 *               If-Modified-Since -> 304, one Range -> 206); an expired
 *               one is kept for use_stale and revalidation; a miss may
 *               wait for another request's fill (proxy_cache_lock: the
 *               request is paused and polls every LOCK_POLL ms).
 *   proxy       r->up_hooks: HEAD sent as GET, the client's conditionals
 *               kept back, If-None-Match / If-Modified-Since added to
 *               revalidate; answer() hears the upstream's head (its
 *               cacheability, by http/cachectl.h, is decided there from
 *               the fields as received: X-Accel-Expires is hidden from
 *               the client later) and failures (use_stale).
 *   filter      store_header() (early: before gzip and add_header) begins
 *               a fill with the head; store_body() streams the body into
 *               it; the fill is committed at the body's end, aborted when
 *               the request ends before.
 *
 * The lock table and the counters are process-wide (a reload keeps them):
 * a lock is held from the miss until the store committed the entry (the
 * writer thread's callback releases it), so 100 concurrent misses of one
 * key make one upstream request whatever worker they land on.
 */
#include "node/modules/proxy_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cache/cache.h"
#include "cluster/purge.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "http/cachectl.h"
#include "http/http1.h"
#include "http/httpdate.h"
#include "node/modules/limit_zone.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/pipeline.h"
#include "node/pipeline/reqlog.h"
#include "node/pipeline/subrequest.h"
#include "node/pipeline/vars.h"
#include "node/proxy/proxy.h"

#define LOCK_POLL_MS 5
#define READ_PIECE   (64 * 1024)

/* $upstream_cache_status */
enum { ST_NONE = 0, ST_MISS, ST_BYPASS, ST_EXPIRED, ST_STALE, ST_UPDATING, ST_REVALIDATED, ST_HIT };
static const char *const st_names[] = {"",      "MISS",     "BYPASS",      "EXPIRED",
                                       "STALE", "UPDATING", "REVALIDATED", "HIT"};

/* proxy_cache_use_stale */
#define US_ERROR          0x0001
#define US_TIMEOUT        0x0002
#define US_INVALID_HEADER 0x0004
#define US_UPDATING       0x0008
#define US_HTTP_500       0x0010
#define US_HTTP_502       0x0020
#define US_HTTP_503       0x0040
#define US_HTTP_504       0x0080
#define US_HTTP_403       0x0100
#define US_HTTP_404       0x0200
#define US_HTTP_429       0x0400
#define US_OFF            0x8000

static const sh_conf_enum_t use_stale_names[] = {{"error", US_ERROR},
                                                 {"timeout", US_TIMEOUT},
                                                 {"invalid_header", US_INVALID_HEADER},
                                                 {"updating", US_UPDATING},
                                                 {"http_500", US_HTTP_500},
                                                 {"http_502", US_HTTP_502},
                                                 {"http_503", US_HTTP_503},
                                                 {"http_504", US_HTTP_504},
                                                 {"http_403", US_HTTP_403},
                                                 {"http_404", US_HTTP_404},
                                                 {"http_429", US_HTTP_429},
                                                 {"off", US_OFF},
                                                 {NULL, 0}};

static const sh_conf_enum_t ignore_names[] = {{"X-Accel-Expires", SH_CACHECTL_IGN_XA_EXPIRES},
                                              {"Expires", SH_CACHECTL_IGN_EXPIRES},
                                              {"Cache-Control", SH_CACHECTL_IGN_CACHE_CONTROL},
                                              {"Set-Cookie", SH_CACHECTL_IGN_SET_COOKIE},
                                              {"Vary", SH_CACHECTL_IGN_VARY},
                                              {"X-Accel-Redirect", SH_CACHECTL_IGN_OTHER},
                                              {"X-Accel-Limit-Rate", SH_CACHECTL_IGN_OTHER},
                                              {"X-Accel-Buffering", SH_CACHECTL_IGN_OTHER},
                                              {"X-Accel-Charset", SH_CACHECTL_IGN_OTHER},
                                              {NULL, 0}};

/* entry flags (sh_cache_meta_t.flags) */
#define EF_VARY_MAIN 0x1 /* the key's Vary record: no body, names the fields */

/* ------------------------------------------------------ process-wide -- */

/* Counters of one zone, kept across reloads (never freed). */
typedef struct zstat_s {
    char name[64];
    _Atomic uint64_t hits, misses, expired, stale, updating, revalidated, bypass;
    _Atomic uint64_t bytes_served, fills, not_cached, lock_waits;
    struct zstat_s *next;
} zstat_t;

/* A cache lock: key (zone '\0' key) held by token until its fill commits
 * or the holder gives up; expires at `until` (proxy_cache_lock_age). */
typedef struct lock_s {
    struct lock_s *next;
    uint64_t token;
    int64_t until;
    int committing; /* the holder's fill is queued: the entry is about to be visible */
    size_t len;
    char key[];
} lock_t;

#define LOCK_BUCKETS 1024
static struct {
    pthread_mutex_t mu;
    zstat_t *zstats;
    lock_t *locks[LOCK_BUCKETS];
    uint64_t seq;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static zstat_t *zstat_get(const char *name)
{
    pthread_mutex_lock(&g.mu);
    zstat_t *z = g.zstats;
    while (z != NULL && strcmp(z->name, name) != 0)
        z = z->next;
    if (z == NULL) {
        z = sh_new(zstat_t);
        snprintf(z->name, sizeof(z->name), "%s", name);
        z->next = g.zstats;
        g.zstats = z;
    }
    pthread_mutex_unlock(&g.mu);
    return z;
}

#define COUNT(z, f, n) atomic_fetch_add_explicit(&(z)->f, (n), memory_order_relaxed)

static uint32_t lhash(const char *k, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)k[i]) * 16777619u;
    return h % LOCK_BUCKETS;
}

/* Take the lock of k for age ms: the token (> 0), or 0 when another holds
 * it and it is not older than its age. */
static uint64_t lock_take(const char *k, size_t n, int64_t age)
{
    uint32_t b = lhash(k, n);
    int64_t now = wall_ms();
    uint64_t tok = 0;
    pthread_mutex_lock(&g.mu);
    lock_t **pp = &g.locks[b], *l;
    while ((l = *pp) != NULL && !(l->len == n && memcmp(l->key, k, n) == 0))
        pp = &l->next;
    if (l != NULL && l->until > now) {
        pthread_mutex_unlock(&g.mu);
        return 0;
    }
    if (l == NULL) {
        l = sh_malloc(sizeof(*l) + n);
        l->len = n;
        memcpy(l->key, k, n);
        l->next = g.locks[b];
        g.locks[b] = l;
    }
    l->token = tok = ++g.seq;
    l->until = now + age;
    pthread_mutex_unlock(&g.mu);
    return tok;
}

/* The holder of tok (or a new holder, when tok is 0 and nobody holds k)
 * has queued its fill: lookups of k wait for the commit instead of going
 * upstream, so a client's next request after a MISS is a HIT as nginx's
 * (whose file is in place before the response ends). The token, 0 when
 * another request holds k. */
static uint64_t lock_committing(const char *k, size_t n, uint64_t tok)
{
    if (tok == 0 && (tok = lock_take(k, n, 2000)) == 0)
        return 0;
    uint32_t b = lhash(k, n);
    pthread_mutex_lock(&g.mu);
    for (lock_t *l = g.locks[b]; l != NULL; l = l->next)
        if (l->len == n && memcmp(l->key, k, n) == 0 && l->token == tok) {
            l->committing = 1;
            if (l->until < wall_ms() + 2000)
                l->until = wall_ms() + 2000;
        }
    pthread_mutex_unlock(&g.mu);
    return tok;
}

/* Whether k's fill is being committed now. */
static int is_committing(const char *k, size_t n)
{
    uint32_t b = lhash(k, n);
    int64_t now = wall_ms();
    int yes = 0;
    pthread_mutex_lock(&g.mu);
    for (lock_t *l = g.locks[b]; l != NULL; l = l->next)
        if (l->len == n && memcmp(l->key, k, n) == 0) {
            yes = l->committing && l->until > now;
            break;
        }
    pthread_mutex_unlock(&g.mu);
    return yes;
}

static void lock_release(const char *k, size_t n, uint64_t tok)
{
    uint32_t b = lhash(k, n);
    pthread_mutex_lock(&g.mu);
    lock_t **pp = &g.locks[b], *l;
    while ((l = *pp) != NULL && !(l->len == n && memcmp(l->key, k, n) == 0))
        pp = &l->next;
    if (l != NULL && l->token == tok) {
        *pp = l->next;
        sh_free(l);
    }
    pthread_mutex_unlock(&g.mu);
}

/* What a fill's commit callback releases (on the writer thread). */
typedef struct {
    uint64_t tok;
    size_t len;
    char key[];
} unlock_t;

static void fill_done(void *arg, int status, uint64_t count)
{
    (void)status;
    (void)count;
    unlock_t *u = arg;
    if (u->tok != 0)
        lock_release(u->key, u->len, u->tok);
    sh_free(u);
}

/* ------------------------------------------------------ configuration -- */

typedef struct zone_s {
    char *name;
    sh_cache_t *cache; /* NULL: the store could not open (warned) */
    zstat_t *st;
    struct zone_s *next;
} zone_t;

typedef struct {
    zone_t *zones;
    sh_cv_t *default_key; /* $scheme$proxy_host$request_uri */
} pc_main_t;

typedef struct {
    int status; /* 0: any */
    int64_t ms;
} valid_t;

typedef struct {
    char *zone_name; /* proxy_cache NAME; "" for off; NULL unset */
    const zone_t *zone;
    sh_cv_t *key;
    int key_own;
    valid_t *valid;
    size_t nvalid;
    int valid_set;
    unsigned methods; /* bit per SH_HTTP_* method id; 0 unset */
    sh_cv_t **bypass;
    size_t nbypass;
    int bypass_set;
    sh_cv_t **nocache;
    size_t nnocache;
    int nocache_set;
    int min_uses;
    int use_stale; /* US_* bits; -1 unset */
    int lock;
    uint64_t lock_timeout, lock_age;
    int revalidate;
    int convert_head;
    int ignore;               /* SH_CACHECTL_IGN_*; -1 unset */
    int64_t max_range_offset; /* -1: no limit; -2 unset */
    char *tag_header;         /* NULL unset */
    int tag_pass;
    int bg_update; /* proxy_cache_background_update */
} pc_loc_t;

extern sh_conf_module_t sh_proxy_cache_module;

static void *pc_create_main(void)
{
    return sh_new(pc_main_t);
}

static void pc_destroy_main(void *conf)
{
    pc_main_t *m = conf;
    if (m == NULL)
        return;
    zone_t *z = m->zones;
    while (z != NULL) {
        zone_t *n = z->next;
        sh_cache_release(z->cache);
        sh_free(z->name);
        sh_free(z);
        z = n;
    }
    sh_cv_destroy(m->default_key);
    sh_free(m);
}

static void *pc_create_loc(void)
{
    pc_loc_t *c = sh_new(pc_loc_t);
    c->min_uses = SH_CONF_UNSET;
    c->use_stale = SH_CONF_UNSET;
    c->lock = SH_CONF_UNSET;
    c->lock_timeout = SH_CONF_UNSET_MSEC;
    c->lock_age = SH_CONF_UNSET_MSEC;
    c->revalidate = SH_CONF_UNSET;
    c->convert_head = SH_CONF_UNSET;
    c->ignore = SH_CONF_UNSET;
    c->max_range_offset = -2;
    c->tag_pass = SH_CONF_UNSET;
    c->bg_update = SH_CONF_UNSET;
    return c;
}

static void cvs_free(sh_cv_t **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sh_cv_destroy(v[i]);
    sh_free(v);
}

static void pc_destroy_loc(void *conf)
{
    pc_loc_t *c = conf;
    if (c == NULL)
        return;
    sh_free(c->zone_name);
    if (c->key_own)
        sh_cv_destroy(c->key);
    if (c->valid_set)
        sh_free(c->valid);
    if (c->bypass_set)
        cvs_free(c->bypass, c->nbypass);
    if (c->nocache_set)
        cvs_free(c->nocache, c->nnocache);
    sh_free(c->tag_header);
    sh_free(c);
}

static int pc_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    pc_loc_t *p = parent, *c = conf;
    if (c->zone_name == NULL && p->zone_name != NULL)
        c->zone_name = sh_strdup(p->zone_name);
    (void)cf;
    if (c->key == NULL)
        c->key = p->key; /* NULL everywhere: the default, set at postconfiguration */
    if (!c->valid_set) {
        c->valid = p->valid;
        c->nvalid = p->nvalid;
    }
    if (c->methods == 0)
        c->methods = p->methods ? p->methods : (1u << SH_HTTP_GET) | (1u << SH_HTTP_HEAD);
    if (!c->bypass_set) {
        c->bypass = p->bypass;
        c->nbypass = p->nbypass;
    }
    if (!c->nocache_set) {
        c->nocache = p->nocache;
        c->nnocache = p->nnocache;
    }
    SH_CONF_MERGE(c->min_uses, p->min_uses, 1);
    SH_CONF_MERGE(c->use_stale, p->use_stale, US_OFF);
    SH_CONF_MERGE(c->lock, p->lock, 0);
    SH_CONF_MERGE_MSEC(c->lock_timeout, p->lock_timeout, 5000);
    SH_CONF_MERGE_MSEC(c->lock_age, p->lock_age, 5000);
    SH_CONF_MERGE(c->revalidate, p->revalidate, 0);
    SH_CONF_MERGE(c->convert_head, p->convert_head, 1);
    SH_CONF_MERGE(c->ignore, p->ignore, 0);
    if (c->max_range_offset == -2)
        c->max_range_offset = p->max_range_offset == -2 ? -1 : p->max_range_offset;
    if (c->tag_header == NULL)
        c->tag_header = sh_strdup(p->tag_header ? p->tag_header : "Surrogate-Key");
    SH_CONF_MERGE(c->tag_pass, p->tag_pass, 0);
    SH_CONF_MERGE(c->bg_update, p->bg_update, 0);
    return 0;
}

/* The http block's main conf of this module while walking. */
static pc_main_t *main_of(sh_conf_t *cf)
{
    sh_http_block_t *b = cf->user;
    return sh_http_main_conf(b->main, &sh_proxy_cache_module);
}

/* proxy_cache_path PATH [levels=] keys_zone=NAME:SIZE [max_size=] [inactive=]
 * [min_free=] [use_temp_path=] [manager_*=] [loader_*=] [map_size=] */
static int path_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    (void)conf;
    char **a = cf->node->args;
    unsigned n = cf->node->nargs;
    sh_cache_conf_t cc = {.use_temp_path = 1};
    char path[4096];
    if (a[1][0] == '/')
        snprintf(path, sizeof(path), "%s", a[1]);
    else
        snprintf(path, sizeof(path), "%s%s", cf->prefix, a[1]);
    cc.path = path;
    char zname[64] = "";
    for (unsigned i = 2; i < n; i++) {
        char *eq = strchr(a[i], '=');
        if (eq == NULL)
            return sh_conf_error(cf, "invalid parameter \"%s\"", a[i]);
        size_t kl = (size_t)(eq - a[i]);
        const char *v = eq + 1;
#define K(s) (kl == sizeof(s) - 1 && strncmp(a[i], s, kl) == 0)
        int bad = 0;
        if (K("keys_zone")) {
            const char *colon = strchr(v, ':');
            if (colon == NULL || colon == v || (size_t)(colon - v) >= sizeof(zname) ||
                sh_conf_parse_size(colon + 1, &cc.zone_size) != 0 || cc.zone_size == 0)
                return sh_conf_error(cf, "invalid keys zone size \"%s\"", a[i]);
            memcpy(zname, v, (size_t)(colon - v));
            zname[colon - v] = 0;
        } else if (K("levels")) {
            cc.levels = v;
        } else if (K("use_temp_path")) {
            cc.use_temp_path = strcmp(v, "on") == 0;
            bad = strcmp(v, "on") != 0 && strcmp(v, "off") != 0;
        } else if (K("max_size")) {
            size_t s;
            bad = sh_conf_parse_size(v, &s) != 0;
            cc.max_size = s;
        } else if (K("min_free")) {
            size_t s;
            bad = sh_conf_parse_size(v, &s) != 0;
            cc.min_free = s;
        } else if (K("map_size")) {
            size_t s;
            bad = sh_conf_parse_size(v, &s) != 0;
            cc.map_size = s;
        } else if (K("inactive")) {
            bad = sh_conf_parse_msec(v, &cc.inactive) != 0;
        } else if (K("manager_files") || K("loader_files")) {
            int x;
            bad = sh_conf_parse_int(v, &x) != 0;
            if (K("manager_files"))
                cc.manager_files = (unsigned)x;
            else
                cc.loader_files = (unsigned)x;
        } else if (K("manager_sleep")) {
            bad = sh_conf_parse_msec(v, &cc.manager_sleep) != 0;
        } else if (K("manager_threshold")) {
            bad = sh_conf_parse_msec(v, &cc.manager_threshold) != 0;
        } else if (K("loader_sleep")) {
            bad = sh_conf_parse_msec(v, &cc.loader_sleep) != 0;
        } else if (K("loader_threshold")) {
            bad = sh_conf_parse_msec(v, &cc.loader_threshold) != 0;
        } else {
            return sh_conf_error(cf, "invalid parameter \"%s\"", a[i]);
        }
#undef K
        if (bad)
            return sh_conf_error(cf, "invalid value in \"%s\"", a[i]);
    }
    if (zname[0] == 0)
        return sh_conf_error(cf, "\"proxy_cache_path\" must have \"keys_zone\" parameter");
    pc_main_t *m = main_of(cf);
    for (zone_t *z = m->zones; z != NULL; z = z->next)
        if (strcmp(z->name, zname) == 0)
            return sh_conf_error(cf, "duplicate zone \"%s\"", zname);
    cc.zone = zname;
    zone_t *z = sh_new(zone_t);
    z->name = sh_strdup(zname);
    z->st = zstat_get(zname);
    int rc = sh_cache_open(&cc, &z->cache);
    if (rc != 0) {
        z->cache = NULL;
        if (rc != SH_EUNSUPP) {
            sh_free(z->name);
            sh_free(z);
            return sh_conf_error(cf, "proxy_cache_path \"%s\" could not be opened (%s)", path,
                                 sh_strerror(rc));
        }
        sh_conf_warn(cf,
                     "proxy_cache_path \"%s\": the store is not available in this build, "
                     "responses are not cached",
                     path);
    }
    z->next = m->zones;
    m->zones = z;
    return 0;
}

static int cache_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    pc_loc_t *c = conf;
    if (c->zone_name != NULL)
        return sh_conf_error(cf, "\"proxy_cache\" directive is duplicate");
    const char *v = cf->node->args[1];
    c->zone_name = sh_strdup(strcmp(v, "off") == 0 ? "" : v);
    return 0;
}

static int key_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    pc_loc_t *c = conf;
    if (c->key != NULL)
        return sh_conf_error(cf, "\"proxy_cache_key\" directive is duplicate");
    if (sh_cv_compile(cf, cf->node->args[1], &c->key) != 0)
        return SH_EINVAL;
    c->key_own = 1;
    return 0;
}

/* proxy_cache_valid [code ...|any] time (200 301 302 without codes) */
static int valid_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    pc_loc_t *c = conf;
    char **a = cf->node->args;
    unsigned n = cf->node->nargs;
    uint64_t ms;
    if (sh_conf_parse_msec(a[n - 1], &ms) != 0)
        return sh_conf_error(cf, "invalid time value \"%s\"", a[n - 1]);
    static const int defaults[] = {200, 301, 302};
    size_t add = n == 2 ? 3 : n - 2;
    c->valid = sh_realloc(c->valid, (c->nvalid + add) * sizeof(valid_t));
    c->valid_set = 1;
    for (size_t i = 0; i < add; i++) {
        int code;
        if (n == 2) {
            code = defaults[i];
        } else if (strcmp(a[1 + i], "any") == 0) {
            code = 0;
        } else if (sh_conf_parse_int(a[1 + i], &code) != 0 || code < 100 || code > 599) {
            return sh_conf_error(cf, "invalid status \"%s\"", a[1 + i]);
        }
        c->valid[c->nvalid++] = (valid_t){code, (int64_t)ms};
    }
    return 0;
}

static int methods_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    pc_loc_t *c = conf;
    c->methods = (1u << SH_HTTP_GET) | (1u << SH_HTTP_HEAD);
    for (unsigned i = 1; i < cf->node->nargs; i++) {
        const char *m = cf->node->args[i];
        if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0 && strcmp(m, "POST") != 0)
            return sh_conf_error(cf, "invalid value \"%s\"", m);
        c->methods |= 1u << sh_http1_method_id(m, strlen(m));
    }
    return 0;
}

/* proxy_cache_bypass / proxy_no_cache: string ... (offset 0 / 1) */
static int cond_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    pc_loc_t *c = conf;
    sh_cv_t ***v = cmd->offset ? &c->nocache : &c->bypass;
    size_t *nv = cmd->offset ? &c->nnocache : &c->nbypass;
    int *set = cmd->offset ? &c->nocache_set : &c->bypass_set;
    if (!*set) {
        *v = NULL;
        *nv = 0;
        *set = 1;
    }
    for (unsigned i = 1; i < cf->node->nargs; i++) {
        *v = sh_realloc(*v, (*nv + 1) * sizeof(sh_cv_t *));
        if (sh_cv_compile(cf, cf->node->args[i], &(*v)[*nv]) != 0)
            return SH_EINVAL;
        (*nv)++;
    }
    return 0;
}

/* A bit list (use_stale, ignore_headers): `off` alone clears. */
static int bits_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    int *field = (int *)((char *)conf + cmd->offset);
    const sh_conf_enum_t *names = cmd->post;
    int v = 0;
    for (unsigned i = 1; i < cf->node->nargs; i++) {
        const sh_conf_enum_t *e = names;
        while (e->name != NULL && strcasecmp(e->name, cf->node->args[i]) != 0)
            e++;
        if (e->name == NULL)
            return sh_conf_error(cf, "invalid value \"%s\"", cf->node->args[i]);
        v |= (int)e->value;
    }
    if ((v & US_OFF) && names == use_stale_names && v != US_OFF)
        return sh_conf_error(cf, "\"off\" cannot be combined with other values");
    *field = v;
    return 0;
}

static int range_offset_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    pc_loc_t *c = conf;
    size_t s;
    if (sh_conf_parse_size(cf->node->args[1], &s) != 0)
        return sh_conf_error(cf, "invalid value \"%s\"", cf->node->args[1]);
    c->max_range_offset = (int64_t)s;
    return 0;
}

/* proxy_cache_tag_header NAME [pass] (a Shoal directive) */
static int tag_header_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    pc_loc_t *c = conf;
    sh_free(c->tag_header);
    c->tag_header = sh_strdup(cf->node->args[1]);
    c->tag_pass = 0;
    if (cf->node->nargs == 3) {
        if (strcmp(cf->node->args[2], "pass") != 0)
            return sh_conf_error(cf, "invalid value \"%s\" (pass)", cf->node->args[2]);
        c->tag_pass = 1;
    }
    return 0;
}

#define LOC     (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)
#define LOFF(f) offsetof(pc_loc_t, f)

static const sh_conf_cmd_t pc_cmds[] = {
    {"proxy_cache_path", SH_CTX_HTTP | SH_CONF_2MORE, path_set, 0, NULL},
    {"cache_purge_log", SH_CTX_HTTP | SH_CONF_TAKE12, sh_purge_log_set, 0, NULL},
    {"proxy_cache", LOC | SH_CONF_TAKE1, cache_set, 0, NULL},
    {"proxy_cache_key", LOC | SH_CONF_TAKE1, key_set, 0, NULL},
    {"proxy_cache_valid", LOC | SH_CONF_1MORE, valid_set, 0, NULL},
    {"proxy_cache_methods", LOC | SH_CONF_1MORE, methods_set, 0, NULL},
    {"proxy_cache_bypass", LOC | SH_CONF_1MORE, cond_set, 0, NULL},
    {"proxy_no_cache", LOC | SH_CONF_1MORE, cond_set, 1, NULL},
    {"proxy_cache_min_uses", LOC | SH_CONF_TAKE1, sh_conf_set_num, LOFF(min_uses), NULL},
    {"proxy_cache_use_stale", LOC | SH_CONF_1MORE, bits_set, LOFF(use_stale), use_stale_names},
    {"proxy_cache_lock", LOC | SH_CONF_FLAG, sh_conf_set_flag, LOFF(lock), NULL},
    {"proxy_cache_lock_timeout", LOC | SH_CONF_TAKE1, sh_conf_set_msec, LOFF(lock_timeout), NULL},
    {"proxy_cache_lock_age", LOC | SH_CONF_TAKE1, sh_conf_set_msec, LOFF(lock_age), NULL},
    {"proxy_cache_revalidate", LOC | SH_CONF_FLAG, sh_conf_set_flag, LOFF(revalidate), NULL},
    {"proxy_cache_convert_head", LOC | SH_CONF_FLAG, sh_conf_set_flag, LOFF(convert_head), NULL},
    {"proxy_ignore_headers", LOC | SH_CONF_1MORE, bits_set, LOFF(ignore), ignore_names},
    {"proxy_cache_max_range_offset", LOC | SH_CONF_TAKE1, range_offset_set, 0, NULL},
    {"proxy_cache_tag_header", LOC | SH_CONF_TAKE12, tag_header_set, 0, NULL},
    {"proxy_cache_background_update", LOC | SH_CONF_FLAG, sh_conf_set_flag, LOFF(bg_update), NULL},
    {NULL, 0, NULL, 0, NULL}};

/* ------------------------------------------------------ request -- */

typedef struct pc_ctx_s {
    sh_request_t *r;
    const pc_loc_t *conf;
    const zone_t *zone;
    int status; /* ST_* */
    char *key;  /* the evaluated key (the variant's when the entry varies) */
    size_t key_len;
    size_t base_len;     /* the key without the variant part */
    sh_cache_hit_t *hit; /* the entry found (fresh or not) */
    sh_cache_fill_t *fill;
    uint64_t lock_tok; /* the lock we hold, 0: none */
    uv_timer_t *timer; /* lock wait */
    int64_t wait_until;
    uint8_t store : 1;   /* the upstream's response may be stored */
    uint8_t from_up : 1; /* the upstream's head arrived */
    uint8_t cacheable : 1;
    uint8_t waiting : 1;
    uint8_t serving : 1; /* answering from the cache */
    uint8_t revalidating : 1;
    uint8_t done_lookup : 1;
    /* the upstream's answer as received */
    sh_cachectl_t cc;
    int64_t valid_ms; /* absolute */
    char *vary;       /* copy of the Vary value */
    size_t vary_len;
    sh_buf_t tags; /* tag words, NUL separated */
    char *etag;
    size_t etag_len;
    int64_t last_modified;
    /* the upstream request */
    sh_up_hooks_t hooks;
    sh_http1_header_t extra[2];
    char ims[SH_HTTP_DATE_LEN + 1];
    /* a body being served */
    uint64_t off, end;
    struct pc_send_s *sending; /* serve_body is inside sh_cache_hit_send */
    /* proxy_cache_background_update: the subrequest refreshing the entry
     * this request answers STALE (detached when r ends first) */
    sh_request_t *bg_sub;
    uint64_t bg_tok; /* the key's lock, for the subrequest to take */
    uint8_t bg_running : 1;
} pc_ctx_t;

static int64_t now_ms(void)
{
    return wall_ms();
}

static const sh_http1_header_t *req_header(const sh_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->h.nheaders; i++)
        if (sh_http1_name_is(&r->headers[i], name))
            return &r->headers[i];
    return NULL;
}

/* serve_body's state while sh_cache_hit_send runs: the sink may end r
 * (the client is gone), and ctx_cleanup then leaves the hit to it, since
 * the store is still reading from it. */
typedef struct pc_send_s {
    sh_request_t *r;
    struct pc_ctx_s *x;
    sh_cache_hit_t *orphan; /* set when r ended inside the sink */
    int gone;
} pc_send_t;

static void ctx_cleanup(sh_request_t *r, void *data)
{
    (void)r;
    pc_ctx_t *x = data;
    if (x->bg_running && x->bg_sub != NULL)
        sh_subrequest_detach(x->bg_sub); /* the client went away first: it goes on alone */
    if (x->bg_tok != 0)
        lock_release(x->key, x->base_len, x->bg_tok);
    if (x->fill != NULL)
        sh_cache_fill_abort(x->fill);
    if (x->lock_tok != 0)
        lock_release(x->key, x->base_len, x->lock_tok);
    if (x->sending != NULL)
        x->sending->orphan = x->hit; /* still being read: serve_body frees it */
    else if (x->hit != NULL)
        sh_cache_hit_free(x->hit);
    if (x->timer != NULL)
        uv_close((uv_handle_t *)x->timer, (uv_close_cb)sh_free);
    sh_free(x->key);
    sh_free(x->vary);
    sh_free(x->etag);
    sh_buf_dispose(&x->tags);
    sh_free(x);
}

/* A list of conditions (bypass, no_cache): true when one is non-empty and
 * not "0", as nginx. */
static int cond_true(sh_request_t *r, sh_cv_t *const *v, size_t n)
{
    sh_buf_t b = {0};
    int yes = 0;
    for (size_t i = 0; i < n && !yes; i++) {
        b.len = 0;
        sh_cv_eval(v[i], r, &b);
        yes = b.len > 0 && !(b.len == 1 && b.data[0] == '0');
    }
    sh_buf_dispose(&b);
    return yes;
}

static int64_t valid_for(const pc_loc_t *c, int status)
{
    for (size_t i = 0; i < c->nvalid; i++)
        if (c->valid[i].status == status)
            return c->valid[i].ms;
    for (size_t i = 0; i < c->nvalid; i++)
        if (c->valid[i].status == 0)
            return c->valid[i].ms;
    return 0;
}

/* ---- answering from the cache */

static void serve_body(sh_request_t *r);

/* The response is complete. A background refresh goes on alone once r
 * ends (ctx_cleanup detaches it): unlike nginx, the client's next request
 * on the connection does not wait for it. */
static void finish(sh_request_t *r, pc_ctx_t *x)
{
    (void)x;
    sh_request_finish(r);
}

static void serve_drained(sh_request_t *r)
{
    r->on_drain = NULL;
    serve_body(r);
}

/* Body bytes straight from the LMDB map to the protocol (which writes or
 * copies them before returning): no copy of our own. */
static long serve_sink(void *arg, const void *p, size_t n)
{
    pc_send_t *s = arg;
    if (sh_request_out_queued(s->r) > SH_WBUF_HIGH)
        return 0;
    COUNT(s->x->zone->st, bytes_served, n);
    if (sh_response_body(s->r, p, n) != 0) {
        s->gone = 1; /* r is freed: ctx_cleanup set s->orphan */
        return SH_ECLOSED;
    }
    s->x->off += n;
    return (long)n;
}

/* Send [off, end) of the entry's body, pausing on backpressure. */
static void serve_body(sh_request_t *r)
{
    pc_ctx_t *x = sh_request_ctx(r, &sh_proxy_cache_module);
    while (x->off < x->end) {
        if (sh_request_out_queued(r) > SH_WBUF_HIGH) {
            r->on_drain = serve_drained;
            return;
        }
        pc_send_t s = {r, x, NULL, 0};
        x->sending = &s;
        long got = sh_cache_hit_send(x->hit, x->off, (size_t)(x->end - x->off), serve_sink, &s);
        if (s.gone) {
            sh_cache_hit_free(s.orphan);
            return;
        }
        x->sending = NULL;
        if (got < 0 || (got == 0 && sh_request_out_queued(r) <= SH_WBUF_HIGH)) {
            sh_req_log(SH_LOG_ERR, r->c, r, NULL,
                       "cache entry \"%.*s\" went away while it was sent", (int)x->key_len, x->key);
            sh_request_abort(r);
            return;
        }
    }
    /* every byte is queued: let the store forget the pinned body now */
    sh_cache_hit_free(x->hit);
    x->hit = NULL;
    if (sh_response_end(r, NULL, 0) == 0 && !r->freed)
        finish(r, x);
}

static int date_eq(const sh_http1_header_t *h, int64_t ms)
{
    int64_t t;
    return h != NULL && ms >= 0 && sh_http_date_parse(h->value, h->value_len, &t) == 0 &&
           t == ms / 1000;
}

static int accepts_ranges(const sh_cache_meta_t *m)
{
    for (size_t i = 0; i < m->nfields; i++)
        if (m->fields[i].name_len == 13 && strncasecmp(m->fields[i].name, "accept-ranges", 13) == 0)
            return !(m->fields[i].value_len == 4 &&
                     strncasecmp(m->fields[i].value, "none", 4) == 0);
    return 0;
}

/* A range past the cached body: nginx's 416 page with Content-Range
 * "bytes *\/LEN" (ngx_http_range_not_satisfiable). */
static void send_416(sh_request_t *r, pc_ctx_t *x, int64_t size)
{
    static const char page[] =
        "<html>\r\n<head><title>416 Requested Range Not Satisfiable</title></head>\r\n"
        "<body>\r\n<center><h1>416 Requested Range Not Satisfiable</h1></center>\r\n"
        "<hr><center>shoal</center>\r\n</body>\r\n</html>\r\n";
    char crange[48];
    int cl = snprintf(crange, sizeof(crange), "bytes */%lld", (long long)size);
    sh_http1_header_t hs[2] = {{"Content-Type", 12, "text/html", 9},
                               {"Content-Range", 13, crange, (size_t)cl}};
    if (sh_response_start(r, 416, NULL, 0, hs, 2, (int64_t)sizeof(page) - 1,
                          r->head_only ? SH_RESP_NO_BODY : 0) != 0)
        return;
    if (!r->head_only && sh_response_body(r, page, sizeof(page) - 1) != 0)
        return;
    if (sh_response_end(r, NULL, 0) == 0 && !r->freed)
        finish(r, x);
}

/* Answer r from x->hit (status already set in x->status). */
static void serve(sh_request_t *r, pc_ctx_t *x)
{
    const sh_cache_meta_t *m = sh_cache_hit_meta(x->hit);
    const pc_loc_t *c = x->conf;
    x->serving = 1;
    r->discard_body = 1;
    sh_http1_header_t hs[SH_RESP_FIELDS_MAX];
    size_t n = 0;
    for (size_t i = 0; i < m->nfields && n < SH_RESP_FIELDS_MAX - 80; i++)
        hs[n++] = (sh_http1_header_t){m->fields[i].name, m->fields[i].name_len, m->fields[i].value,
                                      m->fields[i].value_len};
    if (r->c->w->rt->http != NULL && r->c->w->rt->http->want_fields) {
        /* $upstream_http_NAME of a hit: the cached fields (nginx; what
         * auth_request_set reads when the auth location caches) */
        r->up_fields.len = 0;
        for (size_t i = 0; i < m->nfields; i++) {
            sh_buf_append(&r->up_fields, m->fields[i].name, m->fields[i].name_len);
            sh_buf_append(&r->up_fields, ": ", 2);
            sh_buf_append(&r->up_fields, m->fields[i].value, m->fields[i].value_len);
            sh_buf_append(&r->up_fields, "\r\n", 2);
        }
    }
    int64_t size = (int64_t)m->body_len;
    int status = m->status;
    unsigned flags = 0;
    char crange[96];
    x->off = 0;
    x->end = (uint64_t)size;
    if (status == 200) {
        const sh_http1_header_t *inm = req_header(r, "if-none-match");
        const sh_http1_header_t *ims = req_header(r, "if-modified-since");
        int nm = inm != NULL ? m->etag != NULL && sh_cachectl_etag_match(inm->value, inm->value_len,
                                                                         m->etag, m->etag_len)
                             : date_eq(ims, m->last_modified);
        if (nm) {
            if (sh_response_start(r, 304, NULL, 0, hs, n, -1, SH_RESP_NO_BODY) == 0 &&
                sh_response_end(r, NULL, 0) == 0 && !r->freed)
                finish(r, x);
            return;
        }
        const sh_http1_header_t *rg = req_header(r, "range");
        const sh_http1_header_t *ir = req_header(r, "if-range");
        /* nginx serves ranges of a cached response when the upstream sent
         * Accept-Ranges (ngx_http_upstream_copy_allow_ranges) */
        int use = rg != NULL && r->h.method_id == SH_HTTP_GET && accepts_ranges(m);
        if (use && ir != NULL)
            use = (m->etag != NULL && ir->value_len == m->etag_len &&
                   memcmp(ir->value, m->etag, m->etag_len) == 0) ||
                  date_eq(ir, m->last_modified);
        int64_t from = 0, to = size - 1;
        int pr = use ? sh_cachectl_range(rg->value, rg->value_len, size, &from, &to) : 0;
        if (pr != 0 && c->max_range_offset >= 0 && from > c->max_range_offset)
            pr = 0; /* nginx: past proxy_cache_max_range_offset, the whole body */
        if (pr < 0) {
            send_416(r, x, size); /* $upstream_cache_status stays HIT */
            return;
        }
        if (pr > 0) {
            int cl = snprintf(crange, sizeof(crange), "bytes %lld-%lld/%lld", (long long)from,
                              (long long)to, (long long)size);
            hs[n++] = (sh_http1_header_t){"Content-Range", 13, crange, (size_t)cl};
            status = 206;
            x->off = (uint64_t)from;
            x->end = (uint64_t)to + 1;
        }
    }
    if (r->head_only) {
        flags |= SH_RESP_NO_BODY;
        x->end = x->off;
    }
    if (sh_response_start(r, status, NULL, 0, hs, n,
                          (int64_t)(status == 206 ? x->end - x->off : (uint64_t)size), flags) != 0)
        return;
    serve_body(r);
}

/* ---- the upstream side */

static int store_eligible(pc_ctx_t *x);

static int up_answer(sh_request_t *r, int status, const sh_http1_header_t *hs, size_t n)
{
    pc_ctx_t *x = sh_request_ctx(r, &sh_proxy_cache_module);
    const pc_loc_t *c = x->conf;
    int64_t now = now_ms();
    if (status > 0 && status == 304 && x->revalidating && x->hit != NULL) {
        x->status = ST_REVALIDATED;
        /* the entry is fresh again: its lifetime from the 304's fields */
        sh_cachectl_t cc;
        sh_cachectl_eval(hs, n, now / 1000, (unsigned)c->ignore, &cc);
        int64_t v = cc.valid_until ? cc.valid_until * 1000
                                   : now + valid_for(c, sh_cache_hit_meta(x->hit)->status);
        x->valid_ms = v;
        return 1;
    }
    int bit = status == SH_UP_ERROR     ? US_ERROR
              : status == SH_UP_TIMEOUT ? US_TIMEOUT
              : status == SH_UP_INVALID ? US_INVALID_HEADER
              : status == 500           ? US_HTTP_500
              : status == 502           ? US_HTTP_502
              : status == 503           ? US_HTTP_503
              : status == 504           ? US_HTTP_504
              : status == 403           ? US_HTTP_403
              : status == 404           ? US_HTTP_404
              : status == 429           ? US_HTTP_429
                                        : 0;
    if (bit != 0 && x->hit != NULL) {
        const sh_cache_meta_t *m = sh_cache_hit_meta(x->hit);
        int in_window = m->stale_if_error >= 0 && now < m->valid_until + m->stale_if_error;
        if ((c->use_stale & bit) || (in_window && status < 0) || (in_window && status >= 500)) {
            x->status = ST_STALE;
            return 1;
        }
    }
    if (status < 0)
        return 0;
    /* the head as received: X-Accel-Expires is hidden from the client later */
    x->from_up = 1;
    if (!x->store)
        return 0;
    sh_cachectl_eval(hs, n, now / 1000, (unsigned)c->ignore, &x->cc);
    x->cacheable = x->cc.cacheable;
    x->valid_ms = x->cc.valid_until ? x->cc.valid_until * 1000 : 0;
    if (x->cacheable && x->valid_ms == 0) {
        int64_t v = valid_for(c, status);
        if (v > 0)
            x->valid_ms = now + v;
        else
            x->cacheable = 0;
    }
    if (x->cc.vary != NULL) {
        x->vary = sh_malloc(x->cc.vary_len + 1);
        memcpy(x->vary, x->cc.vary, x->cc.vary_len);
        x->vary_len = x->cc.vary_len;
    }
    x->last_modified = -1;
    size_t tl = strlen(c->tag_header);
    for (size_t i = 0; i < n; i++) {
        const sh_http1_header_t *h = &hs[i];
        if (status == 200 && h->name_len == 4 && strncasecmp(h->name, "etag", 4) == 0 &&
            x->etag == NULL) {
            x->etag = sh_malloc(h->value_len + 1);
            memcpy(x->etag, h->value, h->value_len);
            x->etag_len = h->value_len;
        } else if (status == 200 && h->name_len == 13 &&
                   strncasecmp(h->name, "last-modified", 13) == 0) {
            int64_t t;
            if (sh_http_date_parse(h->value, h->value_len, &t) == 0)
                x->last_modified = t * 1000;
        } else if (h->name_len == tl && strncasecmp(h->name, c->tag_header, tl) == 0) {
            const char *p = h->value, *e = h->value + h->value_len, *s;
            size_t sl;
            while ((s = sh_http1_next_word(&p, e, &sl)) != NULL) {
                if (sl <= SH_CACHE_TAG_MAX) {
                    sh_buf_append(&x->tags, s, sl);
                    sh_buf_append(&x->tags, "", 1);
                }
            }
        }
    }
    (void)store_eligible;
    return 0;
}

static void up_respond(sh_request_t *r)
{
    pc_ctx_t *x = sh_request_ctx(r, &sh_proxy_cache_module);
    COUNT(x->zone->st, stale, x->status == ST_STALE);
    COUNT(x->zone->st, revalidated, x->status == ST_REVALIDATED);
    if (x->status == ST_REVALIDATED && x->zone->cache != NULL) {
        /* store the entry again with its new lifetime (body copied) */
        const sh_cache_meta_t *m = sh_cache_hit_meta(x->hit);
        sh_cache_meta_t nm = *m;
        nm.valid_until = x->valid_ms;
        nm.stored_at = now_ms();
        sh_cache_fill_t *f;
        if (sh_cache_fill_begin(x->zone->cache, x->key, x->key_len, &nm, &f) == 0) {
            uint64_t off = 0;
            char *buf = sh_malloc(READ_PIECE);
            int ok = 1;
            while (off < m->body_len) {
                long got = sh_cache_hit_read(x->hit, off, buf, READ_PIECE);
                if (got <= 0) {
                    ok = 0;
                    break;
                }
                sh_cache_fill_append(f, buf, (size_t)got);
                off += (uint64_t)got;
            }
            sh_free(buf);
            if (ok) {
                unlock_t *u = sh_malloc(sizeof(*u) + x->base_len);
                u->tok = x->lock_tok;
                u->len = x->base_len;
                memcpy(u->key, x->key, x->base_len);
                x->lock_tok = 0;
                sh_cache_fill_commit(f, fill_done, u);
            } else {
                sh_cache_fill_abort(f);
            }
        }
    }
    serve(r, x);
}

/* ---- the store filter */

static int store_eligible(pc_ctx_t *x)
{
    return x != NULL && x->store && x->from_up && !x->serving && x->cacheable &&
           x->zone->cache != NULL;
}

static int store_body(sh_request_t *r, unsigned next, const char *data, size_t len, int last)
{
    pc_ctx_t *x = sh_request_ctx(r, &sh_proxy_cache_module);
    if (x != NULL && x->fill != NULL) {
        if (len > 0)
            sh_cache_fill_append(x->fill, data, len);
        if (last) {
            unlock_t *u = sh_malloc(sizeof(*u) + x->base_len);
            u->tok = lock_committing(x->key, x->base_len, x->lock_tok);
            u->len = x->base_len;
            memcpy(u->key, x->key, x->base_len);
            x->lock_tok = 0; /* released by the commit's callback */
            if (sh_cache_fill_commit(x->fill, fill_done, u) == 0)
                COUNT(x->zone->st, fills, 1);
            x->fill = NULL;
        }
    }
    if (r->head_only) /* a HEAD sent as GET: the body was for the cache */
        return last ? sh_body_next(r, next, NULL, 0, 1) : 0;
    return sh_body_next(r, next, data, len, last);
}

/* Vary's field names, lower case, into names[]; the variant's values
 * appended to key. Returns the number of names. */
static size_t vary_names(const char *v, size_t len, char names[][64], size_t max)
{
    size_t n = 0, l;
    const char *p = v, *e = v + len, *s;
    while (n < max && (s = sh_http1_next_word(&p, e, &l)) != NULL) {
        if (l >= 64)
            continue;
        for (size_t k = 0; k < l; k++)
            names[n][k] = (char)(s[k] >= 'A' && s[k] <= 'Z' ? s[k] + 32 : s[k]);
        names[n][l] = 0;
        n++;
    }
    return n;
}

static void variant_key(sh_request_t *r, sh_buf_t *b, char names[][64], size_t n)
{
    sh_buf_append(b, "\x01", 1);
    for (size_t i = 0; i < n; i++) {
        const sh_http1_header_t *h = req_header(r, names[i]);
        sh_buf_appends(b, names[i]);
        sh_buf_append(b, ":", 1);
        if (h != NULL)
            sh_buf_append(b, h->value, h->value_len);
        sh_buf_append(b, "\n", 1);
    }
}

static int store_header(sh_request_t *r, sh_resp_head_t *h)
{
    pc_ctx_t *x = sh_request_ctx(r, &sh_proxy_cache_module);
    if (x == NULL || !x->from_up || x->serving)
        return 0;
    const pc_loc_t *c = x->conf;
    size_t tl = strlen(c->tag_header);
    if (!c->tag_pass)
        for (size_t i = 0; i < h->n; i++)
            if (h->f[i].name_len == tl && strncasecmp(h->f[i].name, c->tag_header, tl) == 0)
                h->f[i].name_len = 0; /* the tags are the cache's, not the client's */
    if (!store_eligible(x))
        return 0;
    if ((h->flags & SH_RESP_NO_BODY) && !r->head_only && h->status != 204)
        return 0; /* (a 204 is stored as nginx does: an empty body) */
    if (c->nnocache > 0 && cond_true(r, c->nocache, c->nnocache))
        return 0;
    int64_t now = now_ms();
    sh_cache_field_t fs[SH_RESP_FIELDS_MAX];
    size_t nf = 0;
    for (size_t i = 0; i < h->n; i++) {
        const sh_http1_header_t *f = &h->f[i];
        if (f->name_len == 0)
            continue;
        if ((!(h->flags & SH_RESP_NO_SERVER) && f->name_len == 6 &&
             strncasecmp(f->name, "server", 6) == 0) ||
            (!(h->flags & SH_RESP_NO_DATE) && f->name_len == 4 &&
             strncasecmp(f->name, "date", 4) == 0))
            continue; /* the pipeline's own: a hit gets fresh ones */
        fs[nf++] = (sh_cache_field_t){f->name, f->name_len, f->value, f->value_len};
    }
    const char *tags[SH_CACHE_TAGS_MAX];
    size_t tag_len[SH_CACHE_TAGS_MAX], ntags = 0;
    for (size_t o = 0; o < x->tags.len && ntags < SH_CACHE_TAGS_MAX;) {
        tags[ntags] = x->tags.data + o;
        tag_len[ntags] = strlen(x->tags.data + o);
        o += tag_len[ntags++] + 1;
    }
    sh_cache_meta_t m = {.status = h->status,
                         .fields = fs,
                         .nfields = nf,
                         .stored_at = now,
                         .valid_until = x->valid_ms,
                         .stale_while_revalidate = x->cc.updating >= 0 ? x->cc.updating * 1000 : -1,
                         .stale_if_error = x->cc.error >= 0 ? x->cc.error * 1000 : -1,
                         .etag = x->etag,
                         .etag_len = x->etag_len,
                         .last_modified = x->last_modified,
                         .tags = tags,
                         .tag_len = tag_len,
                         .ntags = ntags};
    const char *key = x->key;
    size_t klen = x->base_len;
    sh_buf_t vk = {0};
    if (x->vary != NULL) {
        /* the key's record names the fields; the response is the variant's */
        char names[16][64];
        size_t nn = vary_names(x->vary, x->vary_len, names, 16);
        const char *np[16];
        size_t nl[16];
        for (size_t i = 0; i < nn; i++) {
            np[i] = names[i];
            nl[i] = strlen(names[i]);
        }
        sh_cache_meta_t vm = {.status = h->status,
                              .stored_at = now,
                              .valid_until = x->valid_ms,
                              .stale_while_revalidate = -1,
                              .stale_if_error = -1,
                              .last_modified = -1,
                              .vary = np,
                              .vary_len = nl,
                              .nvary = nn,
                              .tags = tags,
                              .tag_len = tag_len,
                              .ntags = ntags,
                              .flags = EF_VARY_MAIN};
        sh_cache_fill_t *vf;
        if (sh_cache_fill_begin(x->zone->cache, x->key, x->base_len, &vm, &vf) == 0)
            sh_cache_fill_commit(vf, NULL, NULL);
        sh_buf_append(&vk, x->key, x->base_len);
        variant_key(r, &vk, names, nn);
        key = vk.data;
        klen = vk.len;
    }
    int rc = sh_cache_fill_begin(x->zone->cache, key, klen, &m, &x->fill);
    sh_buf_dispose(&vk);
    if (rc != 0) {
        x->fill = NULL;
        COUNT(x->zone->st, not_cached, 1);
        return 0;
    }
    if (sh_body_filter_attach(r, store_body) != 0) {
        sh_cache_fill_abort(x->fill);
        x->fill = NULL;
    }
    return 0;
}

static int store_applies(const sh_http_main_t *m, const sh_http_loc_t *loc)
{
    (void)m;
    const pc_loc_t *c = sh_http_loc_conf(loc, &sh_proxy_cache_module);
    return c != NULL && c->zone != NULL;
}

static const sh_filter_t store_f = {
    .name = "proxy_cache", .applies = store_applies, .header = store_header, .early = 1};

/* ---- the lookup */

static void wait_timer_cb(uv_timer_t *t)
{
    sh_phase_resume(t->data);
}

/* Go to the upstream (the content phase: proxy_pass). */
static int go_upstream(sh_request_t *r, pc_ctx_t *x, int status, int store)
{
    x->status = status;
    x->store = store;
    const pc_loc_t *c = x->conf;
    /* nginx sends the client's conditionals and Range only when the
     * response is not for the cache (its cache headers otherwise) */
    x->hooks.strip_cond = store;
    x->hooks.answer = up_answer;
    x->hooks.respond = up_respond;
    if (r->head_only && c->convert_head && store) {
        x->hooks.method = "GET";
        x->hooks.method_len = 3;
    }
    r->up_hooks = &x->hooks;
    zstat_t *z = x->zone->st;
    switch (status) {
    case ST_MISS:
        COUNT(z, misses, 1);
        break;
    case ST_EXPIRED:
        COUNT(z, expired, 1);
        break;
    case ST_BYPASS:
        COUNT(z, bypass, 1);
        break;
    }
    return SH_PH_NEXT;
}

static int fresh(const sh_cache_meta_t *m, int64_t now)
{
    return now < m->valid_until;
}

/* proxy_cache_max_range_offset (ngx_http_upstream_cache_check_range): a
 * range starting at or past the offset, or a suffix range, is not for the
 * cache. */
static int range_cacheable(sh_request_t *r, int64_t max)
{
    const sh_http1_header_t *h = req_header(r, "range");
    if (h == NULL || h->value_len < 6 || strncasecmp(h->value, "bytes=", 6) != 0)
        return 1;
    const char *p = h->value + 6, *e = h->value + h->value_len;
    while (p < e && *p == ' ')
        p++;
    if (p < e && *p == '-')
        return 0;
    int64_t off = 0;
    while (p < e && *p >= '0' && *p <= '9' && off < INT64_MAX / 10 - 10)
        off = off * 10 + (*p++ - '0');
    return off < max;
}

/* Pause r and look again in LOCK_POLL_MS (the lock or a commit). 0. */
static int start_wait(sh_request_t *r, pc_ctx_t *x, int64_t now)
{
    if (!x->waiting) {
        x->waiting = 1;
        x->wait_until = now + (int64_t)x->conf->lock_timeout;
        COUNT(x->zone->st, lock_waits, 1);
        x->timer = sh_new(uv_timer_t);
        uv_timer_init(&r->w->loop, x->timer);
        x->timer->data = r;
    }
    uv_timer_start(x->timer, wait_timer_cb, LOCK_POLL_MS, 0);
    return 0;
}

/* The refresh ended while r was still there (stored or not). */
static void bg_done(sh_request_t *sub, void *ud)
{
    (void)sub;
    pc_ctx_t *x = ud;
    x->bg_running = 0;
    x->bg_sub = NULL;
}

/* Start the background refresh of r's expired entry: a subrequest for r's
 * URI that takes over the key's lock (x->lock_tok). 0 or an SH_E*. */
static int bg_start(sh_request_t *r, pc_ctx_t *x)
{
    sh_buf_t u = {0};
    sh_buf_append(&u, r->uri.p, r->uri.len);
    if (r->args.len > 0) {
        sh_buf_append(&u, "?", 1);
        sh_buf_append(&u, r->args.p, r->args.len);
    }
    x->bg_tok = x->lock_tok;
    x->lock_tok = 0;
    x->bg_running = 1;
    sh_request_t *sub = NULL;
    int rc = sh_subrequest(r, u.data, u.len, 0, bg_done, x, &sub);
    sh_buf_dispose(&u);
    if (rc != 0) {
        x->bg_running = 0;
        x->lock_tok = x->bg_tok;
        x->bg_tok = 0;
        return rc;
    }
    if (x->bg_running)
        x->bg_sub = sub; /* not done already */
    return 0;
}

static int lookup(sh_request_t *r, pc_ctx_t *x)
{
    const pc_loc_t *c = x->conf;
    sh_cache_t *cache = x->zone->cache;
    int64_t now = now_ms();
    if (x->hit != NULL) {
        sh_cache_hit_free(x->hit);
        x->hit = NULL;
    }
    /* the body is sent from the map (serve_body), not copied at lookup */
    unsigned lf = SH_CACHE_LOOKUP_NOBODY;
    uint32_t uses = 0;
    sh_cache_hit_t *hit = NULL;
    int rc = sh_cache_lookup(cache, x->key, x->base_len,
                             lf | (x->waiting ? SH_CACHE_LOOKUP_NOCOUNT : 0), &hit, &uses);
    if (rc == 0 && (sh_cache_hit_meta(hit)->flags & EF_VARY_MAIN)) {
        const sh_cache_meta_t *vm = sh_cache_hit_meta(hit);
        char names[16][64];
        size_t nn = 0;
        for (size_t i = 0; i < vm->nvary && nn < 16; i++)
            if (vm->vary_len[i] < 64) {
                memcpy(names[nn], vm->vary[i], vm->vary_len[i]);
                names[nn++][vm->vary_len[i]] = 0;
            }
        sh_cache_hit_free(hit);
        hit = NULL;
        sh_buf_t vk = {0};
        sh_buf_append(&vk, x->key, x->base_len);
        variant_key(r, &vk, names, nn);
        rc = sh_cache_lookup(cache, vk.data, vk.len, lf, &hit, &uses);
        sh_buf_dispose(&vk);
    }
    if (rc == 0) {
        const sh_cache_meta_t *m = sh_cache_hit_meta(hit);
        x->hit = hit;
        if (fresh(m, now)) {
            x->status = ST_HIT;
            COUNT(x->zone->st, hits, 1);
            serve(r, x);
            return SH_PH_DONE;
        }
        /* expired (or soft-purged): one request refreshes it */
        int updating_ok =
            (c->use_stale & US_UPDATING) ||
            (m->stale_while_revalidate >= 0 && now < m->valid_until + m->stale_while_revalidate);
        pc_ctx_t *px = r->parent != NULL ? sh_request_ctx(r->parent, &sh_proxy_cache_module) : NULL;
        if (px != NULL && px->bg_tok != 0 && px->base_len == x->base_len &&
            memcmp(px->key, x->key, x->base_len) == 0) {
            x->lock_tok = px->bg_tok; /* the background refresh: its parent's lock */
            px->bg_tok = 0;
        } else {
            x->lock_tok = lock_take(x->key, x->base_len, (int64_t)c->lock_age);
        }
        if (x->lock_tok == 0 && updating_ok) {
            x->status = ST_UPDATING;
            COUNT(x->zone->st, updating, 1);
            serve(r, x);
            return SH_PH_DONE;
        }
        /* proxy_cache_background_update: STALE now, a subrequest refreshes */
        if (x->lock_tok != 0 && updating_ok && c->bg_update && r->parent == NULL &&
            bg_start(r, x) == 0) {
            x->status = ST_STALE;
            COUNT(x->zone->st, stale, 1);
            serve(r, x);
            return SH_PH_DONE;
        }
        if (c->revalidate && m->status == 200 && (m->etag != NULL || m->last_modified >= 0)) {
            size_t ne = 0;
            if (m->etag != NULL)
                x->extra[ne++] = (sh_http1_header_t){"If-None-Match", 13, m->etag, m->etag_len};
            if (m->last_modified >= 0) {
                sh_http_date_format(x->ims, m->last_modified / 1000);
                x->extra[ne++] =
                    (sh_http1_header_t){"If-Modified-Since", 17, x->ims, SH_HTTP_DATE_LEN};
            }
            x->hooks.extra = x->extra;
            x->hooks.nextra = ne;
            x->revalidating = 1;
        }
        return go_upstream(r, x, ST_EXPIRED, 1);
    }
    /* a miss: while the key's fill is being committed, wait for it */
    if (is_committing(x->key, x->base_len) && (!x->waiting || now < x->wait_until)) {
        if (start_wait(r, x, now) == 0)
            return SH_PH_PAUSE;
    }
    if ((int)uses < c->min_uses && !x->waiting)
        return go_upstream(r, x, ST_MISS, 0);
    if (c->max_range_offset >= 0 && !range_cacheable(r, c->max_range_offset))
        return go_upstream(r, x, ST_MISS, 0); /* the range goes upstream, uncached (nginx) */
    if (!c->lock)
        return go_upstream(r, x, ST_MISS, 1);
    x->lock_tok = lock_take(x->key, x->base_len, (int64_t)c->lock_age);
    if (x->lock_tok != 0)
        return go_upstream(r, x, ST_MISS, 1);
    if (x->waiting && now >= x->wait_until)
        return go_upstream(r, x, ST_MISS, 0); /* nginx: not cached after the timeout */
    start_wait(r, x, now);
    return SH_PH_PAUSE;
}

static int lookup_handler(sh_request_t *r)
{
    if (r->loc == NULL)
        return SH_PH_DECLINED;
    const pc_loc_t *c = sh_http_loc_conf(r->loc, &sh_proxy_cache_module);
    if (c == NULL || c->zone == NULL || c->zone->cache == NULL || !sh_proxy_enabled(r->loc))
        return SH_PH_DECLINED;
    pc_ctx_t *x = sh_request_ctx(r, &sh_proxy_cache_module);
    if (x != NULL) {
        if (x->waiting && x->status == ST_NONE)
            return lookup(r, x);
        return SH_PH_DECLINED; /* decided before (an internal redirect came back) */
    }
    if (r->h.method_id < 0 || r->h.method_id >= 32 || !(c->methods & (1u << r->h.method_id)))
        return SH_PH_DECLINED;
    x = sh_new(pc_ctx_t);
    x->r = r;
    x->conf = c;
    x->zone = c->zone;
    if (sh_request_cleanup_add(r, ctx_cleanup, x) != 0) {
        sh_free(x);
        return SH_PH_DECLINED;
    }
    sh_request_ctx(r, &sh_proxy_cache_module) = x;
    sh_buf_t kb = {0};
    sh_cv_eval(c->key, r, &kb);
    x->key = sh_malloc(kb.len + 1);
    memcpy(x->key, kb.data ? kb.data : "", kb.len);
    x->key[kb.len] = 0;
    x->key_len = x->base_len = kb.len;
    sh_buf_dispose(&kb);
    if ((c->nbypass > 0 && cond_true(r, c->bypass, c->nbypass)) || sh_purge_holding())
        return go_upstream(r, x, ST_BYPASS, 1); /* holding: purges not caught up yet */
    return lookup(r, x);
}

/* ------------------------------------------------------ module -- */

static int var_status(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    pc_ctx_t *x = sh_request_ctx(r, &sh_proxy_cache_module);
    if (x == NULL || x->status == ST_NONE)
        return 0;
    sh_buf_appends(out, st_names[x->status]);
    return 1;
}

static int pc_preconf(sh_conf_t *cf, sh_http_main_t *m)
{
    pc_main_t *pm = sh_http_main_conf(m, &sh_proxy_cache_module);
    int rc = sh_vars_define(cf, "upstream_cache_status", var_status, NULL);
    if (rc == 0)
        rc = sh_cv_compile(cf, "$scheme$proxy_host$request_uri", &pm->default_key);
    return rc;
}

/* Resolve `proxy_cache NAME` in every location (after the merge). */
static int pc_init_main(sh_conf_t *cf, sh_http_main_t *hm, void *conf)
{
    (void)cf;
    (void)hm;
    (void)conf;
    return 0;
}

static int resolve_loc(sh_conf_t *cf, pc_main_t *pm, pc_loc_t *c)
{
    if (c->key == NULL)
        c->key = pm->default_key;
    if (c->zone_name == NULL || c->zone_name[0] == 0)
        return 0;
    for (const zone_t *z = pm->zones; z != NULL; z = z->next)
        if (strcmp(z->name, c->zone_name) == 0) {
            c->zone = z;
            return 0;
        }
    return sh_conf_error(cf, "\"proxy_cache\" zone \"%s\" is unknown", c->zone_name);
}

typedef struct {
    sh_conf_t *cf;
    pc_main_t *pm;
} resolve_t;

static int resolve_each(sh_http_loc_t *loc, void *ud)
{
    resolve_t *x = ud;
    pc_loc_t *c = sh_http_loc_conf(loc, &sh_proxy_cache_module);
    return c != NULL ? resolve_loc(x->cf, x->pm, c) : 0;
}

static int pc_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    resolve_t rx = {cf, sh_http_main_conf(m, &sh_proxy_cache_module)};
    if (sh_limit_zone_each_loc(m, resolve_each, &rx) != 0)
        return SH_EINVAL;
    int rc = sh_phase_add(cf, m, SH_PHASE_PRECONTENT, lookup_handler);
    if (rc == 0)
        rc = sh_filter_add(cf, m, &store_f);
    return rc;
}

static const sh_http_module_t pc_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_main = pc_create_main,
    .destroy_main = pc_destroy_main,
    .init_main = pc_init_main,
    .create_loc = pc_create_loc,
    .merge_loc = pc_merge_loc,
    .destroy_loc = pc_destroy_loc,
    .preconfiguration = pc_preconf,
    .postconfiguration = pc_postconf,
};

sh_conf_module_t sh_proxy_cache_module = {
    .name = "proxy_cache",
    .cmds = pc_cmds,
    .ctx = &pc_ctx,
};

/* ------------------------------------------------------ observability -- */

#define ZSNAP_MAX 64
typedef struct {
    FILE *f;
    int json;
    int first;
    /* for /metrics: every zone first, then family by family (Prometheus'
     * text format wants each family's lines together) */
    struct {
        char name[64];
        zstat_t *st;
        sh_cache_stats_t s;
    } z[ZSNAP_MAX];
    size_t n;
} emit_t;

static void emit_zone(sh_cache_t *cache, void *arg)
{
    emit_t *e = arg;
    const char *name = sh_cache_zone(cache);
    zstat_t *z = zstat_get(name);
    sh_cache_stats_t s;
    sh_cache_stats(cache, &s);
#define L(v) (unsigned long long)atomic_load_explicit(&z->v, memory_order_relaxed)
    if (e->json) {
        fprintf(e->f,
                "%s{\"zone\":\"%s\",\"path\":\"%s\",\"hits\":%llu,\"misses\":%llu,"
                "\"expired\":%llu,\"stale\":%llu,\"updating\":%llu,\"revalidated\":%llu,"
                "\"bypass\":%llu,\"bytes_served\":%llu,\"fills\":%llu,\"fills_dropped\":%llu,"
                "\"evictions\":%llu,\"expired_removed\":%llu,\"purged\":%llu,\"entries\":%llu,"
                "\"size\":%llu,\"max_size\":%llu,\"lock_waits\":%llu}",
                e->first ? "" : ",", name, sh_cache_path(cache), L(hits), L(misses), L(expired),
                L(stale), L(updating), L(revalidated), L(bypass), L(bytes_served),
                (unsigned long long)s.fills, (unsigned long long)s.fills_dropped,
                (unsigned long long)s.evictions, (unsigned long long)s.expired,
                (unsigned long long)s.purged, (unsigned long long)s.entries,
                (unsigned long long)s.size, (unsigned long long)s.max_size, L(lock_waits));
        e->first = 0;
        return;
    }
    if (e->n < ZSNAP_MAX) {
        snprintf(e->z[e->n].name, sizeof(e->z[0].name), "%s", name);
        e->z[e->n].st = z;
        e->z[e->n].s = s;
        e->n++;
    }
#undef L
}

void sh_proxy_cache_metrics(FILE *f)
{
    emit_t *e = sh_new(emit_t);
    e->f = f;
    sh_cache_each(emit_zone, e);
    static const struct {
        const char *name, *type, *help, *status;
        size_t off; /* in zstat_t, or (with store 1) in sh_cache_stats_t */
        int store;
    } fam[] = {
        {"shoal_cache_requests_total", "counter",
         "Requests of proxy_cache locations by $upstream_cache_status.", "hit",
         offsetof(zstat_t, hits), 0},
        {NULL, NULL, NULL, "miss", offsetof(zstat_t, misses), 0},
        {NULL, NULL, NULL, "expired", offsetof(zstat_t, expired), 0},
        {NULL, NULL, NULL, "stale", offsetof(zstat_t, stale), 0},
        {NULL, NULL, NULL, "updating", offsetof(zstat_t, updating), 0},
        {NULL, NULL, NULL, "revalidated", offsetof(zstat_t, revalidated), 0},
        {NULL, NULL, NULL, "bypass", offsetof(zstat_t, bypass), 0},
        {"shoal_cache_served_bytes_total", "counter", "Body bytes answered from the cache.", NULL,
         offsetof(zstat_t, bytes_served), 0},
        {"shoal_cache_fills_total", "counter", "Responses stored.", NULL,
         offsetof(sh_cache_stats_t, fills), 1},
        {"shoal_cache_fills_dropped_total", "counter",
         "Fills dropped (writer queue, map or disk full).", NULL,
         offsetof(sh_cache_stats_t, fills_dropped), 1},
        {"shoal_cache_evictions_total", "counter",
         "Entries removed for max_size, min_free, the keys_zone or inactive.", NULL,
         offsetof(sh_cache_stats_t, evictions), 2},
        {"shoal_cache_purged_total", "counter", "Entries removed or marked stale by purges.", NULL,
         offsetof(sh_cache_stats_t, purged), 1},
        {"shoal_cache_entries", "gauge", "Entries stored.", NULL,
         offsetof(sh_cache_stats_t, entries), 1},
        {"shoal_cache_size_bytes", "gauge", "Bytes stored.", NULL, offsetof(sh_cache_stats_t, size),
         1},
        {"shoal_cache_max_size_bytes", "gauge", "The max_size in force.", NULL,
         offsetof(sh_cache_stats_t, max_size), 1},
    };
    const char *cur = NULL;
    for (size_t i = 0; i < sizeof(fam) / sizeof(fam[0]) && e->n > 0; i++) {
        if (fam[i].name != NULL) {
            cur = fam[i].name;
            fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", cur, fam[i].help, cur, fam[i].type);
        }
        for (size_t k = 0; k < e->n; k++) {
            uint64_t v;
            if (fam[i].store == 0)
                v = atomic_load_explicit((_Atomic uint64_t *)((char *)e->z[k].st + fam[i].off),
                                         memory_order_relaxed);
            else
                v = *(const uint64_t *)((const char *)&e->z[k].s + fam[i].off) +
                    (fam[i].store == 2 ? e->z[k].s.expired : 0);
            if (fam[i].status != NULL)
                fprintf(f, "%s{zone=\"%s\",status=\"%s\"} %llu\n", cur, e->z[k].name, fam[i].status,
                        (unsigned long long)v);
            else
                fprintf(f, "%s{zone=\"%s\"} %llu\n", cur, e->z[k].name, (unsigned long long)v);
        }
    }
    sh_free(e);
}

char *sh_proxy_cache_stats_json(void)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (f == NULL)
        return NULL;
    emit_t *e = sh_new(emit_t);
    e->f = f;
    e->json = 1;
    e->first = 1;
    fputc('[', f);
    sh_cache_each(emit_zone, e);
    fputc(']', f);
    sh_free(e);
    fclose(f);
    return out;
}
