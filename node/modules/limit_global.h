/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Global rate limits (issue 13): the cluster side of `limit_req_zone ...
 * global` (NGINX Plus's `sync` is the same word). Workers admit against
 * their own zone table (limit_zone.h), never waiting on the network; this
 * module, run by the cluster thread as a service (cluster/service.h,
 * channel 3), keeps every node's table close to the cluster's.
 *
 * Design: per-shard aggregators by rendezvous hashing. A global zone's
 * keys fall in 64 shards (the top bits of the key's public id); each shard
 * has an owner, the live member with the highest hash of (zone, shard,
 * name). Every 100 ms (the tick) a node drains the keys its workers
 * admitted requests for and sends each key's count to its shard's owner
 * in a REPORT (one datagram per owner, at most SH_LG_MAX_ITEMS keys, as
 * many as needed); the owner adds the counts to its own entry of the key
 * (the leaky bucket drained to now, sh_limit_req_merge) and answers at
 * once with the key's excess in a REPLY; the reporter then holds
 * max(its own excess, owner's + what it admitted since it reported). So a
 * key's bucket lives at its owner, every node's view of an active key is
 * at most one tick plus a round trip old, and a node sends and receives
 * about two datagrams per tick per owner it talks to, whatever the
 * cluster's size: O(active keys), not O(N^2) (the simulator's table,
 * node/tests/sim_limit.c, compares it with fan-out to every peer).
 * The owner's own requests need no message. Admission is a local leaky
 * bucket, so the rate holds over time even when views lag: every admitted
 * request ends up in the owner's bucket, which drains at the rate.
 *
 * Degraded mode: a node that hears fewer than half of the members it
 * knows (alive ones, minus owners that stopped answering; suspect and
 * failed members count as not heard, left ones not at all) admits its
 * share, rate * heard / known; with half or more it takes the whole rate
 * (a majority cannot tell a partition from failed nodes, and failed nodes
 * must not keep their share). A failed member counts as known but unheard
 * for SH_LG_DEAD_HOLD_MS after SWIM declared it dead, then not at all: a
 * minority cut off for longer takes the whole rate (it cannot tell the
 * others from dead ones forever). An owner that does not answer a report
 * within 300 ms is passed over (its shards move) until it answers a probe
 * (an empty report, every 2 s while SWIM lists it). Shown in
 * /metrics (shoal_limit_global_degraded, _share), in the log (each
 * change) and by `nodectl limits`.
 *
 * Wire (big endian), one message per datagram:
 *   type:u8 version:u8 zone:u64 seq:u32 n:u16 then n items: id:u64 v:varint
 *   REPORT (1): v = requests admitted since the last report
 *   REPLY  (2): v = the owner's excess (thousandths of a request), seq echoed
 *   RATE   (3): zone 0; an item per zone: id = the zone's id, v = requests/s
 *               this node admitted in it (the cluster estimate of nodectl
 *               limits); sent each second directly to the next 16 live
 *               members in turn (not gossiped: flat cost per node)
 * Anything short, of another version, with n above SH_LG_MAX_ITEMS, a
 * varint over 10 bytes or trailing bytes is dropped and counted.
 *
 * Threads: the engine (sh_lg_*) on one thread (the cluster thread, or a
 * simulator); it locks a zone's stripes one at a time, never across I/O.
 */
#ifndef SH_LIMIT_GLOBAL_H
#define SH_LIMIT_GLOBAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "node/modules/limit_zone.h"

#define SH_LIMIT_CHANNEL    3u   /* the service's channel (cluster/service.h) */
#define SH_LG_TICK_MS       100u /* the report period */
#define SH_LG_SHARDS        64u
#define SH_LG_MAX_ITEMS     512u /* keys per message at most */
#define SH_LG_NOREPLY_MS    300u /* an owner silent this long is passed over */
#define SH_LG_EXCLUDE_MS    2000u
#define SH_LG_DEAD_HOLD_MS  30000u /* a failed member counts as unheard this long */
#define SH_LG_HDR           16u
#define SH_LG_MAX_ITEM_SIZE 18u

enum { SH_LG_REPORT = 1, SH_LG_REPLY = 2, SH_LG_RATE = 3 };

typedef struct {
    uint64_t id, v;
} sh_lg_item_t;

typedef struct {
    unsigned type;
    uint64_t zone;
    uint32_t seq;
    size_t n;
    sh_lg_item_t items[SH_LG_MAX_ITEMS];
} sh_lg_msg_t;

/* Encode m into out (cap bytes): the length, or 0 when it does not fit. */
size_t sh_lg_encode(const sh_lg_msg_t *m, uint8_t *out, size_t cap);
/* Decode: 0, or SH_EPARSE / SH_EVERSION with *reason (static). Pure. */
int sh_lg_decode(const uint8_t *in, size_t len, sh_lg_msg_t *m, const char **reason);

/* ---- the engine: one node's side */

typedef struct sh_lg_s sh_lg_t;

typedef struct {
    void *ud;
    /* one datagram to member `to`; 0 or a negative SH_E* */
    int (*send)(void *ud, const char *to, const uint8_t *data, size_t len);
    /* gossip (may be NULL: no rate reports) */
    int (*broadcast)(void *ud, const char *key, const uint8_t *data, size_t len);
    size_t max_payload;
} sh_lg_io_t;

typedef struct {
    uint64_t reports_sent, replies_sent, reports_recv, replies_recv, items_sent, items_recv;
    uint64_t bytes_sent, msgs_sent, bytes_recv, msgs_recv;
    uint64_t malformed, unknown_zone, exclusions, send_failed, evicted_for_merge;
} sh_lg_stats_t;

sh_lg_t *sh_lg_create(const char *self, const sh_lg_io_t *io);
void sh_lg_destroy(sh_lg_t *g);
/* Zones (global, kept by the caller while added). */
void sh_lg_zone_add(sh_lg_t *g, sh_limit_zone_t *z);
void sh_lg_zone_remove(sh_lg_t *g, sh_limit_zone_t *z);
int sh_lg_has_zone(const sh_lg_t *g, const sh_limit_zone_t *z);
/* A member's status (sh_swim_status_t: 0 alive, 1 suspect, 2 dead, 3 left). */
void sh_lg_member(sh_lg_t *g, const char *name, int status, uint64_t now);
/* 1 when this node has not joined its cluster yet (shown as degraded). */
void sh_lg_set_alone(sh_lg_t *g, int alone);
void sh_lg_tick(sh_lg_t *g, uint64_t now);
void sh_lg_recv(sh_lg_t *g, const char *from, const uint8_t *data, size_t len, uint64_t now);
const sh_lg_stats_t *sh_lg_stats(const sh_lg_t *g);
/* The owner of key id h0 in z now ("" if none). */
const char *sh_lg_owner(sh_lg_t *g, const sh_limit_zone_t *z, uint64_t h0);
/* JSON text (malloc'd) of every zone: see `nodectl limits`. */
char *sh_lg_json(sh_lg_t *g, uint64_t now);
void sh_lg_metrics(sh_lg_t *g, FILE *f);

/* ---- the service (cluster thread): registered when a global zone is
 * configured; idempotent, any thread. */
void sh_limit_global_register(void);

#endif
