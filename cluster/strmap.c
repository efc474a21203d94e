/* SPDX-License-Identifier: Apache-2.0 */
/* String-keyed hash map: see strmap.h. */
#include "cluster/strmap.h"

#include <string.h>

#include "core/alloc.h"

static const char tomb_mark;
#define TOMB (&tomb_mark)

uint64_t sh_strmap_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

void sh_strmap_init(sh_strmap_t *m)
{
    m->cap = 16;
    m->slots = sh_calloc(m->cap, sizeof(*m->slots));
    m->used = m->len = 0;
}

void sh_strmap_dispose(sh_strmap_t *m)
{
    sh_free(m->slots);
    memset(m, 0, sizeof(*m));
}

static size_t find(const sh_strmap_t *m, const char *key, uint64_t h, int *found)
{
    size_t mask = m->cap - 1, i = (size_t)h & mask, tomb = (size_t)-1;
    for (;;) {
        const char *k = m->slots[i].key;
        if (k == NULL) {
            *found = 0;
            return tomb != (size_t)-1 ? tomb : i;
        }
        if (k == TOMB) {
            if (tomb == (size_t)-1)
                tomb = i;
        } else if (m->slots[i].hash == h && strcmp(k, key) == 0) {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static void put_hashed(sh_strmap_t *m, const char *key, uint64_t h, void *val);

static void grow(sh_strmap_t *m)
{
    sh_strmap_slot_t *old = m->slots;
    size_t ocap = m->cap;
    if (m->len * 2 >= m->cap)
        m->cap *= 2;
    m->slots = sh_calloc(m->cap, sizeof(*m->slots));
    m->used = m->len = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].key && old[i].key != TOMB)
            put_hashed(m, old[i].key, old[i].hash, old[i].val);
    sh_free(old);
}

void *sh_strmap_get(const sh_strmap_t *m, const char *key)
{
    int found;
    size_t i = find(m, key, sh_strmap_hash(key), &found);
    return found ? m->slots[i].val : NULL;
}

void sh_strmap_put(sh_strmap_t *m, const char *key, void *val)
{
    put_hashed(m, key, sh_strmap_hash(key), val);
}

static void put_hashed(sh_strmap_t *m, const char *key, uint64_t h, void *val)
{
    if ((m->used + 1) * 4 >= m->cap * 3)
        grow(m);
    int found;
    size_t i = find(m, key, h, &found);
    if (!found) {
        if (m->slots[i].key == NULL)
            m->used++;
        m->len++;
    }
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->slots[i].hash = h;
}

void *sh_strmap_del(sh_strmap_t *m, const char *key)
{
    int found;
    size_t i = find(m, key, sh_strmap_hash(key), &found);
    if (!found)
        return NULL;
    void *v = m->slots[i].val;
    m->slots[i].key = TOMB;
    m->slots[i].val = NULL;
    m->len--;
    return v;
}
