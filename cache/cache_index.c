/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The keys_zone: an in-memory index of the entries of one cache (hash ->
 * stored size, last use, uses), so a miss costs no LMDB read, min_uses is
 * counted before anything is stored, and eviction by max_size and inactive
 * picks the least recently used entry without scanning the store.
 *
 * 64 shards, each a chained hash table and an LRU list under its own mutex:
 * workers touch one shard per lookup, the writer thread stores and removes.
 * The global LRU entry is the oldest of the 64 shard tails (a 64-step scan,
 * not a store scan; the order is a global sequence number, so equal
 * times do not reorder). A node is 72 bytes plus its bucket pointer. Totals are
 * relaxed atomics. Any thread.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "cache/cache_internal.h"
#include "core/alloc.h"

#define NSHARDS 64

typedef struct node {
    struct node *hnext, *prev, *next;
    uint8_t hash[SH_CACHE__HASH];
    uint64_t size;
    int64_t last_use;
    uint64_t seq; /* LRU order: times tie, sequence numbers do not */
    uint32_t uses;
    uint32_t stored;
} node;

_Static_assert(sizeof(node) == 72, "index node size (memory per entry)");

typedef struct {
    pthread_mutex_t mu;
    node **tab;
    size_t mask; /* buckets - 1 */
    size_t n;
    node lru; /* sentinel: lru.next is the most recent, lru.prev the oldest */
} shard;

struct sh_cache__index_s {
    shard sh[NSHARDS];
    _Atomic uint64_t size, stored, nodes, capacity, seq;
};

static uint64_t h64(const uint8_t *h)
{
    uint64_t v;
    memcpy(&v, h, sizeof(v));
    return v;
}

static shard *shard_of(sh_cache__index_t *ix, const uint8_t *h)
{
    return &ix->sh[h[15] % NSHARDS];
}

sh_cache__index_t *sh_cache__index_create(uint64_t capacity)
{
    sh_cache__index_t *ix = sh_new(sh_cache__index_t);
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &ix->sh[i];
        pthread_mutex_init(&s->mu, NULL);
        s->mask = 63;
        s->tab = sh_calloc(s->mask + 1, sizeof(node *));
        s->lru.next = s->lru.prev = &s->lru;
    }
    atomic_store(&ix->capacity, capacity);
    return ix;
}

void sh_cache__index_destroy(sh_cache__index_t *ix)
{
    if (!ix)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &ix->sh[i];
        for (node *n = s->lru.next, *nx; n != &s->lru; n = nx) {
            nx = n->next;
            sh_free(n);
        }
        sh_free(s->tab);
        pthread_mutex_destroy(&s->mu);
    }
    sh_free(ix);
}

static node *find(shard *s, const uint8_t *h)
{
    for (node *n = s->tab[h64(h) & s->mask]; n; n = n->hnext)
        if (memcmp(n->hash, h, SH_CACHE__HASH) == 0)
            return n;
    return NULL;
}

static void lru_unlink(node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
}

static void lru_front(sh_cache__index_t *ix, shard *s, node *n)
{
    n->seq = atomic_fetch_add_explicit(&ix->seq, 1, memory_order_relaxed);
    n->next = s->lru.next;
    n->prev = &s->lru;
    s->lru.next->prev = n;
    s->lru.next = n;
}

static void grow(shard *s)
{
    size_t nm = s->mask * 2 + 1;
    node **nt = sh_calloc(nm + 1, sizeof(node *));
    for (size_t i = 0; i <= s->mask; i++) {
        for (node *n = s->tab[i], *nx; n; n = nx) {
            nx = n->hnext;
            size_t b = h64(n->hash) & nm;
            n->hnext = nt[b];
            nt[b] = n;
        }
    }
    sh_free(s->tab);
    s->tab = nt;
    s->mask = nm;
}

static node *insert(sh_cache__index_t *ix, shard *s, const uint8_t *h, int64_t now)
{
    node *n = sh_new(node);
    memcpy(n->hash, h, SH_CACHE__HASH);
    n->last_use = now;
    size_t b = h64(h) & s->mask;
    n->hnext = s->tab[b];
    s->tab[b] = n;
    lru_front(ix, s, n);
    if (++s->n > s->mask + 1)
        grow(s);
    atomic_fetch_add_explicit(&ix->nodes, 1, memory_order_relaxed);
    return n;
}

static void drop(sh_cache__index_t *ix, shard *s, node *n)
{
    node **pp = &s->tab[h64(n->hash) & s->mask];
    while (*pp != n)
        pp = &(*pp)->hnext;
    *pp = n->hnext;
    lru_unlink(n);
    s->n--;
    atomic_fetch_sub_explicit(&ix->nodes, 1, memory_order_relaxed);
    if (n->stored) {
        atomic_fetch_sub_explicit(&ix->size, n->size, memory_order_relaxed);
        atomic_fetch_sub_explicit(&ix->stored, 1, memory_order_relaxed);
    }
    sh_free(n);
}

int sh_cache__index_lookup(sh_cache__index_t *ix, const uint8_t *hash, int64_t now, int count,
                           int create, uint32_t *uses)
{
    shard *s = shard_of(ix, hash);
    int st = SH_CACHE__ABSENT;
    *uses = count ? 1 : 0;
    pthread_mutex_lock(&s->mu);
    node *n = find(s, hash);
    if (n) {
        st = n->stored ? SH_CACHE__STORED : SH_CACHE__UNSTORED;
        if (count) {
            if (n->uses < UINT32_MAX)
                n->uses++;
            n->last_use = now;
            lru_unlink(n);
            lru_front(ix, s, n);
        }
        *uses = n->uses;
    } else if (create && count) {
        /* Use counts may pass the capacity by an eighth: the writer's
         * manager brings the zone back under it, oldest first, as nginx
         * forces the oldest out. Past that, a count at this shard's LRU end
         * makes room (a stored node is the writer's to remove). */
        uint64_t cap = atomic_load_explicit(&ix->capacity, memory_order_relaxed);
        uint64_t lim = cap + cap / 8 + 1;
        if (atomic_load_explicit(&ix->nodes, memory_order_relaxed) >= lim &&
            s->lru.prev != &s->lru && !s->lru.prev->stored)
            drop(ix, s, s->lru.prev);
        if (atomic_load_explicit(&ix->nodes, memory_order_relaxed) < lim) {
            n = insert(ix, s, hash, now);
            n->uses = 1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

void sh_cache__index_store(sh_cache__index_t *ix, const uint8_t *hash, uint64_t size, int64_t now,
                           int if_absent)
{
    shard *s = shard_of(ix, hash);
    pthread_mutex_lock(&s->mu);
    node *n = find(s, hash);
    if (n && if_absent && n->stored) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (!n) {
        n = insert(ix, s, hash, now);
        n->uses = 1;
    } else {
        n->last_use = now;
        lru_unlink(n);
        lru_front(ix, s, n);
    }
    if (n->stored) {
        atomic_fetch_sub_explicit(&ix->size, n->size, memory_order_relaxed);
    } else {
        n->stored = 1;
        atomic_fetch_add_explicit(&ix->stored, 1, memory_order_relaxed);
    }
    n->size = size;
    atomic_fetch_add_explicit(&ix->size, size, memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
}

void sh_cache__index_remove(sh_cache__index_t *ix, const uint8_t *hash)
{
    shard *s = shard_of(ix, hash);
    pthread_mutex_lock(&s->mu);
    node *n = find(s, hash);
    if (n)
        drop(ix, s, n);
    pthread_mutex_unlock(&s->mu);
}

int sh_cache__index_oldest(sh_cache__index_t *ix, uint8_t *hash, int64_t *last_use, int *stored)
{
    int found = 0;
    uint64_t best = 0;
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &ix->sh[i];
        pthread_mutex_lock(&s->mu);
        node *n = s->lru.prev;
        if (n != &s->lru && (!found || n->seq < best)) {
            found = 1;
            best = n->seq;
            memcpy(hash, n->hash, SH_CACHE__HASH);
            *last_use = n->last_use;
            *stored = (int)n->stored;
        }
        pthread_mutex_unlock(&s->mu);
    }
    return found;
}

void sh_cache__index_totals(sh_cache__index_t *ix, uint64_t *size, uint64_t *stored,
                            uint64_t *nodes, uint64_t *capacity)
{
    *size = atomic_load_explicit(&ix->size, memory_order_relaxed);
    *stored = atomic_load_explicit(&ix->stored, memory_order_relaxed);
    *nodes = atomic_load_explicit(&ix->nodes, memory_order_relaxed);
    *capacity = atomic_load_explicit(&ix->capacity, memory_order_relaxed);
}

void sh_cache__index_set_capacity(sh_cache__index_t *ix, uint64_t capacity)
{
    atomic_store(&ix->capacity, capacity);
}

uint64_t sh_cache__index_memory(sh_cache__index_t *ix)
{
    uint64_t m = sizeof(*ix);
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &ix->sh[i];
        pthread_mutex_lock(&s->mu);
        m += (s->mask + 1) * sizeof(node *) + s->n * sizeof(node);
        pthread_mutex_unlock(&s->mu);
    }
    return m;
}
