/* SPDX-License-Identifier: Apache-2.0 */
/* The shared state table of the limit zones (see limit_zone.h). */
#include "node/modules/limit_zone.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/conf.h"
#include "core/log.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/vars.h"

#define STRIPES_MAX 64
#define CACHELINE   64

struct sh_limit_stripe_s {
    _Alignas(CACHELINE) pthread_mutex_t mu;
    uint32_t *buckets; /* index + 1 of the first entry; 0: empty */
    sh_limit_zone_entry_t *e;
    uint32_t cap;   /* entries */
    uint32_t mask;  /* buckets - 1 */
    uint32_t fresh; /* entries never used so far: e[fresh..cap) */
    uint32_t free;  /* free list through chain (index + 1) */
    uint32_t head;  /* LRU, most recent first (index + 1) */
    uint32_t tail;
    _Atomic uint32_t used;
    _Atomic uint64_t evictions;
    /* global zones: keys with accepted requests since the last drain */
    struct dirty_rec {
        uint32_t ix; /* entry index + 1 */
        uint32_t n;  /* requests */
    } * dirty;
    uint32_t ndirty;
    _Atomic uint64_t dirty_overflows;
    /* global zones: the text of a few keys seen lately, for `nodectl limits` */
    struct key_sample {
        uint64_t h0;
        char text[SH_LIMIT_SAMPLE_TEXT];
    } * samples;
};

struct sh_limit_zone_s {
    sh_limit_stripe_t *stripes;
    unsigned nstripes;
    unsigned shift; /* stripe = h0 >> shift */
    void *mem;      /* buckets and entries of every stripe */
    size_t size, capacity;
    unsigned char key[crypto_shorthash_siphashx24_KEYBYTES];
    _Atomic uint64_t results[SH_LIMIT_RESULTS];
    /* global zones */
    _Atomic int global; /* set once, after the rest (read by the registry walk) */
    unsigned char gkey[crypto_generichash_KEYBYTES]; /* the shared hash key */
    uint64_t gid, rate;
    _Atomic uint32_t share; /* millionths */
    /* registry */
    struct sh_limit_zone_s *next;
    unsigned refs;
    char *kind, *name, *def;
};

static unsigned floor_pow2(size_t n)
{
    unsigned p = 1;
    while ((size_t)p * 2 <= n && p < (1u << 30))
        p *= 2;
    return p;
}

sh_limit_zone_t *sh_limit_zone_create(size_t size)
{
    if (size < SH_LIMIT_ZONE_MIN)
        size = SH_LIMIT_ZONE_MIN;
    if (sodium_init() < 0)
        abort(); /* libsodium cannot run: nothing here can */
    sh_limit_zone_t *z = sh_new(sh_limit_zone_t);
    z->size = size;
    randombytes_buf(z->key, sizeof(z->key));
    /* one entry costs its 48 bytes and at most one bucket head; a stripe
     * per 256 entries, up to 64 */
    const size_t per = sizeof(sh_limit_zone_entry_t) + sizeof(uint32_t);
    unsigned ns = floor_pow2(size / per / 256);
    if (ns > STRIPES_MAX)
        ns = STRIPES_MAX;
    size_t hdr = ns * sizeof(sh_limit_stripe_t);
    size_t cap = (size - hdr) / ns / per;
    unsigned nb = floor_pow2(cap);
    z->nstripes = ns;
    z->shift = 64;
    for (unsigned n = ns; n > 1; n /= 2)
        z->shift--;
    z->stripes = aligned_alloc(CACHELINE, hdr);
    if (z->stripes == NULL)
        abort();
    memset(z->stripes, 0, hdr);
    /* calloc: the pages are touched only as entries are used */
    size_t stripe_bytes = cap * sizeof(sh_limit_zone_entry_t) + nb * sizeof(uint32_t);
    z->mem = sh_calloc(ns, stripe_bytes);
    for (unsigned i = 0; i < ns; i++) {
        sh_limit_stripe_t *s = &z->stripes[i];
        pthread_mutex_init(&s->mu, NULL);
        char *base = (char *)z->mem + i * stripe_bytes;
        s->e = (sh_limit_zone_entry_t *)base;
        s->buckets = (uint32_t *)(base + cap * sizeof(sh_limit_zone_entry_t));
        s->cap = (uint32_t)cap;
        s->mask = nb - 1;
    }
    z->capacity = cap * ns;
    return z;
}

void sh_limit_zone_destroy(sh_limit_zone_t *z)
{
    if (z == NULL)
        return;
    for (unsigned i = 0; i < z->nstripes; i++) {
        pthread_mutex_destroy(&z->stripes[i].mu);
        sh_free(z->stripes[i].dirty);
        sh_free(z->stripes[i].samples);
    }
    free(z->stripes);
    sh_free(z->mem);
    sh_free(z->kind);
    sh_free(z->name);
    sh_free(z->def);
    sh_free(z);
}

/* ------------------------------------------------------ registry -- */

/* Process-wide on purpose (style.md rule 8 is broken here): zones outlive
 * the configuration generation that made them, as nginx's shared zones
 * outlive a cycle, so the next generation can find them. Touched only by
 * the loading thread, the destroying one and /metrics. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static sh_limit_zone_t *reg_head;

sh_limit_zone_t *sh_limit_zone_acquire(const char *kind, const char *name, size_t size,
                                       const char *def)
{
    pthread_mutex_lock(&reg_mu);
    sh_limit_zone_t *z;
    for (z = reg_head; z != NULL; z = z->next)
        if (z->size == size && strcmp(z->kind, kind) == 0 && strcmp(z->name, name) == 0 &&
            strcmp(z->def, def) == 0)
            break;
    if (z == NULL) {
        z = sh_limit_zone_create(size);
        z->kind = sh_strdup(kind);
        z->name = sh_strdup(name);
        z->def = sh_strdup(def);
        z->next = reg_head;
        reg_head = z;
    }
    z->refs++;
    pthread_mutex_unlock(&reg_mu);
    return z;
}

void sh_limit_zone_release(sh_limit_zone_t *z)
{
    if (z == NULL)
        return;
    pthread_mutex_lock(&reg_mu);
    int last = --z->refs == 0;
    if (last)
        for (sh_limit_zone_t **p = &reg_head; *p != NULL; p = &(*p)->next)
            if (*p == z) {
                *p = z->next;
                break;
            }
    pthread_mutex_unlock(&reg_mu);
    if (last)
        sh_limit_zone_destroy(z);
}

void sh_limit_zone_foreach(void (*fn)(sh_limit_zone_t *z, void *ud), void *ud)
{
    pthread_mutex_lock(&reg_mu);
    for (sh_limit_zone_t *z = reg_head; z != NULL; z = z->next)
        fn(z, ud);
    pthread_mutex_unlock(&reg_mu);
}

size_t sh_limit_zone_globals(sh_limit_zone_t **out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&reg_mu);
    for (sh_limit_zone_t *z = reg_head; z != NULL && n < max; z = z->next)
        if (z->global) {
            z->refs++;
            out[n++] = z;
        }
    pthread_mutex_unlock(&reg_mu);
    return n;
}

unsigned sh_limit_zone_refs(sh_limit_zone_t *z)
{
    pthread_mutex_lock(&reg_mu);
    unsigned r = z->refs;
    pthread_mutex_unlock(&reg_mu);
    return r;
}

const char *sh_limit_zone_name(const sh_limit_zone_t *z)
{
    return z->name != NULL ? z->name : "";
}

const char *sh_limit_zone_kind(const sh_limit_zone_t *z)
{
    return z->kind != NULL ? z->kind : "";
}

size_t sh_limit_zone_capacity(const sh_limit_zone_t *z)
{
    return z->capacity;
}

size_t sh_limit_zone_used(sh_limit_zone_t *z)
{
    size_t n = 0;
    for (unsigned i = 0; i < z->nstripes; i++)
        n += atomic_load_explicit(&z->stripes[i].used, memory_order_relaxed);
    return n;
}

uint64_t sh_limit_zone_evictions(sh_limit_zone_t *z)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < z->nstripes; i++)
        n += atomic_load_explicit(&z->stripes[i].evictions, memory_order_relaxed);
    return n;
}

void sh_limit_zone_count(sh_limit_zone_t *z, int result)
{
    atomic_fetch_add_explicit(&z->results[result], 1, memory_order_relaxed);
}

uint64_t sh_limit_zone_counter(const sh_limit_zone_t *z, int result)
{
    return atomic_load_explicit(&((sh_limit_zone_t *)z)->results[result], memory_order_relaxed);
}

/* ------------------------------------------------------ one key -- */

void sh_limit_zone_hash(const sh_limit_zone_t *z, const void *key, size_t len, sh_limit_id_t *id)
{
    if (z->global) {
        unsigned char g[16];
        crypto_generichash(g, sizeof(g), key, len, z->gkey, sizeof(z->gkey));
        uint64_t h0;
        memcpy(&h0, g, 8);
        sh_limit_zone_id_of(z, h0, id);
        return;
    }
    unsigned char out[crypto_shorthash_siphashx24_BYTES];
    crypto_shorthash_siphashx24(out, key, len, z->key);
    memcpy(&id->h0, out, 8);
    memcpy(&id->h1, out + 8, 8);
}

sh_limit_stripe_t *sh_limit_zone_lock(sh_limit_zone_t *z, const sh_limit_id_t *id)
{
    /* h1: secret on every zone (h0 of a global zone is public) */
    sh_limit_stripe_t *s = &z->stripes[z->nstripes == 1 ? 0 : id->h1 >> z->shift];
    pthread_mutex_lock(&s->mu);
    return s;
}

void sh_limit_zone_unlock(sh_limit_stripe_t *s)
{
    pthread_mutex_unlock(&s->mu);
}

static uint32_t ix(const sh_limit_stripe_t *s, const sh_limit_zone_entry_t *e)
{
    return (uint32_t)(e - s->e) + 1;
}

static void lru_unlink(sh_limit_stripe_t *s, sh_limit_zone_entry_t *e)
{
    if (e->prev)
        s->e[e->prev - 1].next = e->next;
    else
        s->head = e->next;
    if (e->next)
        s->e[e->next - 1].prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = 0;
}

static void lru_push(sh_limit_stripe_t *s, sh_limit_zone_entry_t *e)
{
    uint32_t i = ix(s, e);
    e->prev = 0;
    e->next = s->head;
    if (s->head)
        s->e[s->head - 1].prev = i;
    else
        s->tail = i;
    s->head = i;
}

sh_limit_zone_entry_t *sh_limit_zone_find(sh_limit_stripe_t *s, const sh_limit_id_t *id, int touch)
{
    uint32_t i = s->buckets[id->h1 & s->mask];
    while (i != 0) {
        sh_limit_zone_entry_t *e = &s->e[i - 1];
        if (e->h0 == id->h0 && e->h1 == id->h1) {
            if (touch && s->head != i) {
                lru_unlink(s, e);
                lru_push(s, e);
            }
            return e;
        }
        i = e->chain;
    }
    return NULL;
}

sh_limit_zone_entry_t *sh_limit_zone_insert(sh_limit_stripe_t *s, const sh_limit_id_t *id)
{
    sh_limit_zone_entry_t *e;
    if (s->free != 0) {
        e = &s->e[s->free - 1];
        s->free = e->chain;
    } else if (s->fresh < s->cap) {
        e = &s->e[s->fresh++];
    } else {
        return NULL;
    }
    memset(e, 0, sizeof(*e));
    e->h0 = id->h0;
    e->h1 = id->h1;
    uint32_t *b = &s->buckets[id->h1 & s->mask];
    e->chain = *b;
    *b = ix(s, e);
    lru_push(s, e);
    atomic_store_explicit(&s->used, atomic_load_explicit(&s->used, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return e;
}

sh_limit_zone_entry_t *sh_limit_zone_oldest(sh_limit_stripe_t *s)
{
    return s->tail ? &s->e[s->tail - 1] : NULL;
}

void sh_limit_zone_remove(sh_limit_stripe_t *s, sh_limit_zone_entry_t *e, int evicted)
{
    uint32_t i = ix(s, e);
    uint32_t *p = &s->buckets[e->h1 & s->mask];
    while (*p != i)
        p = &s->e[*p - 1].chain;
    *p = e->chain;
    lru_unlink(s, e);
    e->chain = s->free;
    s->free = i;
    atomic_store_explicit(&s->used, atomic_load_explicit(&s->used, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    if (evicted)
        atomic_fetch_add_explicit(&s->evictions, 1, memory_order_relaxed);
}

/* ------------------------------------------------------ global zones -- */

void sh_limit_zone_set_global(sh_limit_zone_t *z, uint64_t rate)
{
    if (z->global)
        return;
    /* the shared key and the zone id: from what every node configures */
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "shoal global limit\n%s\n%s\n%s", sh_limit_zone_kind(z),
                     sh_limit_zone_name(z), z->def ? z->def : "");
    unsigned char h[crypto_generichash_KEYBYTES + 8];
    crypto_generichash(h, sizeof(h), (const unsigned char *)buf,
                       (size_t)(n < (int)sizeof(buf) ? n : (int)sizeof(buf) - 1), NULL, 0);
    memcpy(z->gkey, h, sizeof(z->gkey));
    memcpy(&z->gid, h + sizeof(z->gkey), 8);
    z->rate = rate;
    atomic_store(&z->share, 1000000u);
    for (unsigned i = 0; i < z->nstripes; i++) {
        uint32_t cap =
            z->stripes[i].cap < SH_LIMIT_DIRTY_MAX ? z->stripes[i].cap : SH_LIMIT_DIRTY_MAX;
        z->stripes[i].dirty = sh_calloc(cap ? cap : 1, sizeof(struct dirty_rec));
        z->stripes[i].samples = sh_calloc(SH_LIMIT_SAMPLES, sizeof(struct key_sample));
    }
    z->global = 1;
}

int sh_limit_zone_is_global(const sh_limit_zone_t *z)
{
    return z->global;
}

uint64_t sh_limit_zone_global_id(const sh_limit_zone_t *z)
{
    return z->gid;
}

uint64_t sh_limit_zone_rate(const sh_limit_zone_t *z)
{
    return z->rate;
}

uint64_t sh_limit_zone_rate_now(const sh_limit_zone_t *z)
{
    uint64_t r = z->rate * atomic_load_explicit(&z->share, memory_order_relaxed) / 1000000u;
    return r ? r : 1;
}

void sh_limit_zone_set_share(sh_limit_zone_t *z, uint32_t ppm)
{
    atomic_store_explicit(&z->share, ppm > 1000000u ? 1000000u : ppm, memory_order_relaxed);
}

uint32_t sh_limit_zone_share(const sh_limit_zone_t *z)
{
    return atomic_load_explicit(&((sh_limit_zone_t *)z)->share, memory_order_relaxed);
}

void sh_limit_zone_id_of(const sh_limit_zone_t *z, uint64_t h0, sh_limit_id_t *id)
{
    unsigned char out[crypto_shorthash_siphash24_BYTES];
    crypto_shorthash_siphash24(out, (const unsigned char *)&h0, sizeof(h0), z->key);
    id->h0 = h0;
    memcpy(&id->h1, out, 8);
}

static uint32_t dirty_cap(const sh_limit_stripe_t *s)
{
    return s->cap < SH_LIMIT_DIRTY_MAX ? s->cap : SH_LIMIT_DIRTY_MAX;
}

void sh_limit_zone_mark(sh_limit_stripe_t *s, sh_limit_zone_entry_t *e, uint32_t n)
{
    if (s->dirty == NULL)
        return;
    if (e->dirty != 0 && e->dirty <= s->ndirty && s->dirty[e->dirty - 1].ix == ix(s, e)) {
        s->dirty[e->dirty - 1].n += n;
        return;
    }
    if (s->ndirty >= dirty_cap(s)) {
        atomic_fetch_add_explicit(&s->dirty_overflows, 1, memory_order_relaxed);
        return;
    }
    s->dirty[s->ndirty].ix = ix(s, e);
    s->dirty[s->ndirty].n = n;
    e->dirty = (uint16_t)++s->ndirty;
}

uint32_t sh_limit_zone_pending(sh_limit_stripe_t *s, const sh_limit_zone_entry_t *e)
{
    if (s->dirty == NULL || e->dirty == 0 || e->dirty > s->ndirty ||
        s->dirty[e->dirty - 1].ix != ix(s, e))
        return 0;
    return s->dirty[e->dirty - 1].n;
}

unsigned sh_limit_zone_nstripes(const sh_limit_zone_t *z)
{
    return z->nstripes;
}

sh_limit_stripe_t *sh_limit_zone_stripe(sh_limit_zone_t *z, unsigned i)
{
    sh_limit_stripe_t *s = &z->stripes[i];
    pthread_mutex_lock(&s->mu);
    return s;
}

void sh_limit_zone_drain(sh_limit_stripe_t *s, void (*fn)(void *ud, uint64_t h0, uint32_t n),
                         void *ud)
{
    for (uint32_t i = 0; i < s->ndirty; i++) {
        const struct dirty_rec *d = &s->dirty[i];
        sh_limit_zone_entry_t *e = &s->e[d->ix - 1];
        if (e->dirty == i + 1) {
            e->dirty = 0;
            fn(ud, e->h0, d->n);
        } /* else the entry was removed (and maybe reused) since: dropped */
    }
    s->ndirty = 0;
}

void sh_limit_zone_sample(sh_limit_stripe_t *s, uint64_t h0, const char *key, size_t len)
{
    if (s->samples == NULL)
        return;
    struct key_sample *k = &s->samples[h0 % SH_LIMIT_SAMPLES];
    if (k->h0 == h0 && k->text[0] != '\0')
        return;
    size_t n = len < SH_LIMIT_SAMPLE_TEXT - 1 ? len : SH_LIMIT_SAMPLE_TEXT - 1;
    int printable = 1;
    for (size_t i = 0; i < n; i++)
        printable &= key[i] >= 0x20 && key[i] < 0x7f && key[i] != '"' && key[i] != '\\';
    k->h0 = h0;
    if (printable) {
        memcpy(k->text, key, n);
        k->text[n] = '\0';
    } else { /* $binary_remote_addr and the like: hex */
        static const char hx[] = "0123456789abcdef";
        size_t j = 0;
        k->text[j++] = '0';
        k->text[j++] = 'x';
        for (size_t i = 0; i < len && j + 2 < SH_LIMIT_SAMPLE_TEXT; i++) {
            k->text[j++] = hx[(unsigned char)key[i] >> 4];
            k->text[j++] = hx[(unsigned char)key[i] & 15];
        }
        k->text[j] = '\0';
    }
}

int sh_limit_zone_key_text(sh_limit_zone_t *z, uint64_t h0, char *out, size_t outlen)
{
    sh_limit_id_t id;
    sh_limit_zone_id_of(z, h0, &id);
    sh_limit_stripe_t *s = sh_limit_zone_lock(z, &id);
    int found = 0;
    if (s->samples != NULL) {
        const struct key_sample *k = &s->samples[h0 % SH_LIMIT_SAMPLES];
        if (k->h0 == h0 && k->text[0] != '\0') {
            snprintf(out, outlen, "%s", k->text);
            found = 1;
        }
    }
    sh_limit_zone_unlock(s);
    return found;
}

uint64_t sh_limit_zone_dirty_overflows(const sh_limit_zone_t *z)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < z->nstripes; i++)
        n += atomic_load_explicit(&z->stripes[i].dirty_overflows, memory_order_relaxed);
    return n;
}

/* ------------------------------------------------------ configuration -- */

int sh_limit_zone_parse(sh_conf_t *cf, const char *arg, char **name, size_t *size)
{
    const char *v = arg + 5; /* after "zone=" */
    const char *colon = strrchr(v, ':');
    if (colon == NULL || colon == v || colon[1] == '\0')
        return sh_conf_error(cf, "invalid zone size \"%s\"", arg);
    if (sh_conf_parse_size(colon + 1, size) != 0)
        return sh_conf_error(cf, "invalid zone size \"%s\"", arg);
    *name = sh_strndup(v, (size_t)(colon - v));
    if (*size < SH_LIMIT_ZONE_MIN || *size > SH_LIMIT_ZONE_MAX) {
        int rc = *size < SH_LIMIT_ZONE_MIN
                     ? sh_conf_error(cf, "zone \"%s\" is too small", *name)
                     : sh_conf_error(cf, "zone \"%s\" is too large (at most 1g)", *name);
        sh_free(*name);
        *name = NULL;
        return rc;
    }
    return 0;
}

static int each_loc(sh_http_loc_t *loc, int (*fn)(sh_http_loc_t *loc, void *ud), void *ud)
{
    int rc = fn(loc, ud);
    for (size_t i = 0; i < loc->nchildren && rc == 0; i++)
        rc = each_loc(loc->children[i], fn, ud);
    return rc;
}

int sh_limit_zone_each_loc(sh_http_main_t *m, int (*fn)(sh_http_loc_t *loc, void *ud), void *ud)
{
    int rc = fn(m->loc, ud);
    for (size_t i = 0; i < m->nservers && rc == 0; i++)
        rc = each_loc(m->servers[i]->loc, fn, ud);
    return rc;
}

void *sh_limit_main_create(void)
{
    return sh_new(sh_limit_main_t);
}

void sh_limit_main_destroy(void *conf)
{
    sh_limit_main_t *m = conf;
    for (size_t i = 0; i < m->n; i++) {
        sh_free(m->defs[i]->name);
        sh_cv_destroy(m->defs[i]->key);
        sh_limit_zone_release(m->defs[i]->zone);
        sh_free(m->defs[i]);
    }
    sh_free(m->defs);
    sh_free(m);
}

sh_limit_def_t *sh_limit_main_find(sh_limit_main_t *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->defs[i]->name, name) == 0)
            return m->defs[i];
    return NULL;
}

sh_limit_def_t *sh_limit_main_add(sh_limit_main_t *m, char *name, sh_cv_t *key,
                                  sh_limit_zone_t *zone)
{
    sh_limit_def_t *d = sh_new(sh_limit_def_t);
    d->name = name;
    d->key = key;
    d->zone = zone;
    m->defs = sh_realloc(m->defs, (m->n + 1) * sizeof(*m->defs));
    m->defs[m->n++] = d;
    return d;
}

void *sh_limit_loc_create(void)
{
    sh_limit_loc_t *c = sh_new(sh_limit_loc_t);
    c->status = SH_CONF_UNSET;
    c->log_level = SH_CONF_UNSET;
    c->dry_run = SH_CONF_UNSET;
    return c;
}

void sh_limit_loc_destroy(void *conf)
{
    sh_limit_loc_t *c = conf;
    if (c->set) {
        for (size_t i = 0; i < c->n; i++)
            sh_free(c->limits[i].name);
        sh_free(c->limits);
    }
    sh_free(c);
}

int sh_limit_loc_merge(sh_conf_t *cf, void *parent, void *conf)
{
    (void)cf;
    sh_limit_loc_t *p = parent, *c = conf;
    if (!c->set) { /* nginx: a level with any limit replaces the outer list */
        c->limits = p->limits;
        c->n = p->n;
    }
    SH_CONF_MERGE(c->status, p->status, 503);
    SH_CONF_MERGE(c->log_level, p->log_level, SH_LOG_ERR);
    SH_CONF_MERGE(c->dry_run, p->dry_run, 0);
    return 0;
}

int sh_limit_loc_add(sh_conf_t *cf, sh_limit_loc_t *c, const char *zone, uint64_t a, uint64_t b)
{
    const char *dname = cf->node->args[0];
    if (!c->set) {
        c->limits = NULL;
        c->n = 0;
        c->set = 1;
    }
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->limits[i].name, zone) == 0)
            return sh_conf_error(cf, "\"%s\" directive is duplicate", dname);
    if (c->n >= SH_LIMITS_MAX)
        return sh_conf_error(cf, "too many \"%s\" at one level (at most %d)", dname, SH_LIMITS_MAX);
    c->limits = sh_realloc(c->limits, (c->n + 1) * sizeof(*c->limits));
    c->limits[c->n++] = (sh_limit_t){.name = sh_strdup(zone), .node = cf->node, .a = a, .b = b};
    return 0;
}

typedef struct {
    sh_conf_t *cf;
    sh_limit_main_t *m;
    const sh_conf_module_t *mod;
} resolve_t;

static int resolve_loc(sh_http_loc_t *loc, void *ud)
{
    resolve_t *x = ud;
    sh_limit_loc_t *c = sh_http_loc_conf(loc, x->mod);
    if (c == NULL || !c->set)
        return 0;
    for (size_t i = 0; i < c->n; i++) {
        sh_limit_t *l = &c->limits[i];
        if (l->def != NULL)
            continue;
        l->def = sh_limit_main_find(x->m, l->name);
        if (l->def == NULL) {
            x->cf->node = l->node;
            return sh_conf_error(x->cf, "zero size shared memory zone \"%s\"", l->name);
        }
    }
    return 0;
}

int sh_limit_resolve(sh_conf_t *cf, sh_http_main_t *m, const sh_conf_module_t *mod)
{
    resolve_t x = {cf, sh_http_main_conf(m, mod), mod};
    return sh_limit_zone_each_loc(m, resolve_loc, &x);
}

int sh_limit_postconf(sh_conf_t *cf, sh_http_main_t *m, const sh_conf_module_t *mod,
                      sh_phase_handler_pt handler)
{
    int rc = sh_limit_resolve(cf, m, mod);
    if (rc == 0)
        rc = sh_phase_add(cf, m, SH_PHASE_PREACCESS, handler);
    return rc;
}

sh_limit_main_t *sh_limit_main_of(sh_conf_t *cf, const sh_conf_module_t *mod)
{
    const sh_http_block_t *b = cf->user;
    return sh_http_main_conf(b->main, mod);
}

/* limit_req_status / limit_conn_status: 400..599, and the log levels */
int sh_limit_zone_set_status(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    int *f = (int *)((char *)conf + cmd->offset);
    int v;
    if (*f != SH_CONF_UNSET)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", cf->node->args[0]);
    if (sh_conf_parse_int(cf->node->args[1], &v) != 0)
        return sh_conf_error(cf, "invalid value \"%s\"", cf->node->args[1]);
    if (v < 400 || v > 599)
        return sh_conf_error(cf, "value must be between 400 and 599");
    *f = v;
    return 0;
}

const sh_conf_enum_t sh_limit_zone_log_levels[] = {{"info", SH_LOG_INFO},
                                                   {"notice", SH_LOG_NOTICE},
                                                   {"warn", SH_LOG_WARN},
                                                   {"error", SH_LOG_ERR},
                                                   {NULL, 0}};

/* ------------------------------------------------------ per request -- */

size_t sh_limit_key_eval(sh_request_t *r, const sh_limit_def_t *d, size_t max, size_t *mark)
{
    *mark = r->scratch.len;
    sh_cv_eval(d->key, r, &r->scratch);
    size_t klen = r->scratch.len - *mark;
    if (klen > max) {
        sh_log_err("the value of the \"%s\" key is more than %zu bytes", sh_cv_source(d->key), max);
        klen = 0;
    }
    if (klen == 0)
        r->scratch.len = *mark;
    return klen;
}

int sh_limit_status_var(sh_buf_t *out, const char *const *names, int st)
{
    if (st == 0)
        return 0;
    sh_buf_appends(out, names[st]);
    return 1;
}

/* ------------------------------------------------------ metrics -- */

typedef struct {
    FILE *f;
    int family; /* Prometheus wants each family's lines together */
} metrics_t;

static void metric_lines(sh_limit_zone_t *z, void *ud)
{
    metrics_t *m = ud;
    static const char *const names[SH_LIMIT_RESULTS] = {"passed", "delayed", "rejected",
                                                        "delayed_dry_run", "rejected_dry_run"};
    int conn = strcmp(z->kind, "limit_conn") == 0;
    switch (m->family) {
    case 0:
        for (int i = 0; i < SH_LIMIT_RESULTS; i++)
            if (!conn || (i != SH_LIMIT_DELAYED && i != SH_LIMIT_DELAYED_DRY_RUN))
                fprintf(m->f,
                        "shoal_limit_decisions_total{kind=\"%s\",zone=\"%s\",result=\"%s\"} %llu\n",
                        z->kind, z->name, names[i],
                        (unsigned long long)sh_limit_zone_counter(z, i));
        break;
    case 1:
        fprintf(m->f, "shoal_limit_zone_entries{kind=\"%s\",zone=\"%s\"} %zu\n", z->kind, z->name,
                sh_limit_zone_used(z));
        break;
    case 2:
        fprintf(m->f, "shoal_limit_zone_capacity{kind=\"%s\",zone=\"%s\"} %zu\n", z->kind, z->name,
                z->capacity);
        break;
    default:
        fprintf(m->f, "shoal_limit_zone_evictions_total{kind=\"%s\",zone=\"%s\"} %llu\n", z->kind,
                z->name, (unsigned long long)sh_limit_zone_evictions(z));
    }
}

void sh_limit_zone_metrics(FILE *f)
{
    static const char *const head[] = {
        "# HELP shoal_limit_decisions_total limit_req and limit_conn decisions by zone and "
        "result (one per request, on the zone that decided).\n"
        "# TYPE shoal_limit_decisions_total counter\n",
        "# HELP shoal_limit_zone_entries Keys a limit zone holds.\n"
        "# TYPE shoal_limit_zone_entries gauge\n",
        "# HELP shoal_limit_zone_capacity Keys a limit zone can hold.\n"
        "# TYPE shoal_limit_zone_capacity gauge\n",
        "# HELP shoal_limit_zone_evictions_total States a full limit zone dropped.\n"
        "# TYPE shoal_limit_zone_evictions_total counter\n"};
    for (int i = 0; i < 4; i++) {
        metrics_t m = {f, i};
        fputs(head[i], f);
        sh_limit_zone_foreach(metric_lines, &m);
    }
}
