/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Broadcast queue: see broadcast.h. Items sit in one list per transmit
 * count, each list ordered by when its items entered it, latest first, so
 * packing walks lists 0, 1, ... and stops as soon as the packet is full:
 * O(taken + skipped), not a sort. List 0 is therefore newest first; an item
 * packed moves to the head of the next list, and the items of one packet
 * keep their relative order there. Every link is O(1): keeping each list
 * sorted by queue id instead meant walking thousands of updates per packed
 * item when many members change at once (a partition), which dominated the
 * 1,000-node simulations.
 */
#include "cluster/broadcast.h"

#include <string.h>

#include "cluster/strmap.h"
#include "cluster/wire.h"
#include "core/alloc.h"

typedef struct item {
    struct item *prev, *next;
    char *key;    /* in the same allocation, after the item */
    uint8_t *msg; /* likewise, after the key */
    size_t len;
    uint64_t id; /* queue order: larger is newer */
    unsigned transmits;
} item;

#define LENS 512u /* lens[] buckets; longer messages count in the last one */

struct sh_bcast_s {
    /* how many queued messages have each length (clamped to LENS - 1):
     * packing stops at once when the room left is below the smallest
     * cost, instead of walking up to 64 items that cannot fit */
    uint32_t lens[LENS];
    item *lists[SH_BCAST_MAX_TRANSMITS + 1];
    item *tails[SH_BCAST_MAX_TRANSMITS + 1];
    sh_strmap_t by_key;
    size_t n, max;
    uint64_t next_id;
    uint64_t overflows;
};

sh_bcast_t *sh_bcast_create(size_t max)
{
    sh_bcast_t *b = sh_new(sh_bcast_t);
    sh_strmap_init(&b->by_key);
    b->max = max ? max : 1;
    return b;
}

static void unlink_item(sh_bcast_t *b, item *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        b->lists[it->transmits] = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        b->tails[it->transmits] = it->prev;
    it->prev = it->next = NULL;
}

/* Push at the head of the list of its transmit count. */
static void link_item(sh_bcast_t *b, item *it)
{
    unsigned t = it->transmits;
    it->prev = NULL;
    it->next = b->lists[t];
    if (it->next)
        it->next->prev = it;
    else
        b->tails[t] = it;
    b->lists[t] = it;
}

static void free_item(sh_bcast_t *b, item *it)
{
    unlink_item(b, it);
    sh_strmap_del(&b->by_key, it->key);
    b->lens[it->len < LENS ? it->len : LENS - 1]--;
    sh_free(it);
    b->n--;
}

void sh_bcast_destroy(sh_bcast_t *b)
{
    if (b == NULL)
        return;
    for (unsigned t = 0; t <= SH_BCAST_MAX_TRANSMITS; t++)
        while (b->lists[t])
            free_item(b, b->lists[t]);
    sh_strmap_dispose(&b->by_key);
    sh_free(b);
}

void sh_bcast_queue(sh_bcast_t *b, const char *key, const uint8_t *msg, size_t len)
{
    item *old = sh_strmap_get(&b->by_key, key);
    if (old)
        free_item(b, old);
    if (b->n >= b->max) {
        /* Drop the oldest of the most transmitted: it has done the most. */
        for (int t = SH_BCAST_MAX_TRANSMITS; t >= 0; t--) {
            item *it = b->tails[t];
            if (it == NULL)
                continue;
            free_item(b, it);
            b->overflows++;
            break;
        }
    }
    /* one allocation for the item, its key and its message */
    size_t klen = strlen(key) + 1;
    item *it = sh_malloc(sizeof(item) + klen + len);
    it->prev = it->next = NULL;
    it->key = (char *)(it + 1);
    memcpy(it->key, key, klen);
    it->msg = (uint8_t *)it->key + klen;
    if (len)
        memcpy(it->msg, msg, len);
    it->len = len;
    it->transmits = 0;
    it->id = ++b->next_id;
    link_item(b, it);
    sh_strmap_put(&b->by_key, it->key, it);
    b->lens[len < LENS ? len : LENS - 1]++;
    b->n++;
}

size_t sh_bcast_pack(sh_bcast_t *b, uint8_t *out, size_t cap, unsigned limit)
{
    if (limit < 1)
        limit = 1;
    if (limit > SH_BCAST_MAX_TRANSMITS)
        limit = SH_BCAST_MAX_TRANSMITS;
    size_t used = 0;
    item *taken = NULL; /* last taken first, so relinking at heads keeps the order */
    unsigned skipped = 0;
    /* No queued update costs less than mincost: below it nothing left can
     * fit, and stopping there takes exactly what the full walk would. */
    size_t mincost = 8;
    for (size_t l = 0; l < LENS; l++)
        if (b->lens[l]) {
            size_t c = sh_wire_update_cost(l);
            mincost = c > mincost ? c : mincost;
            break;
        }
    for (unsigned t = 0; t <= SH_BCAST_MAX_TRANSMITS && cap - used >= mincost; t++) {
        for (item *it = b->lists[t], *nx; it && cap - used >= mincost; it = nx) {
            nx = it->next;
            size_t cost = sh_wire_update_cost(it->len);
            if (cost > cap - used) {
                /* Bound the scan for a small enough update. */
                if (++skipped > 64)
                    goto done;
                continue;
            }
            used += sh_wire_append_update(out + used, it->msg, it->len);
            unlink_item(b, it);
            it->next = taken; /* relink after the walk */
            taken = it;
        }
    }
done:
    while (taken) {
        item *it = taken;
        taken = it->next;
        it->next = NULL;
        it->transmits++;
        if (it->transmits >= limit) {
            sh_strmap_del(&b->by_key, it->key);
            b->lens[it->len < LENS ? it->len : LENS - 1]--;
            sh_free(it);
            b->n--;
        } else {
            link_item(b, it);
        }
    }
    return used;
}

int sh_bcast_transmits(const sh_bcast_t *b, const char *key)
{
    item *it = sh_strmap_get(&b->by_key, key);
    return it ? (int)it->transmits : -1;
}

size_t sh_bcast_len(const sh_bcast_t *b)
{
    return b->n;
}
uint64_t sh_bcast_overflows(const sh_bcast_t *b)
{
    return b->overflows;
}
