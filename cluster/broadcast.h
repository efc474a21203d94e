/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The broadcast queue: updates waiting to piggyback on probe and gossip
 * packets (issue 5). Each update is an encoded sh.gossip.Update under a key;
 * queuing a new update under a key replaces the old one (a newer alive for
 * a node supersedes its older suspect). Packing takes the least transmitted
 * updates first and, among equals, the newest, as many as fit in the space
 * left in a packet; an update is dropped after `limit` transmissions
 * (lambda * ceil(log10(N + 1)), computed by the caller). The queue holds at
 * most `max` updates; past it, the most transmitted oldest one is dropped and
 * counted. Pure; owned by one sh_swim_t.
 */
#ifndef SH_BROADCAST_H
#define SH_BROADCAST_H

#include <stddef.h>
#include <stdint.h>

#define SH_BCAST_MAX_TRANSMITS 64u

typedef struct sh_bcast_s sh_bcast_t;

sh_bcast_t *sh_bcast_create(size_t max);
void sh_bcast_destroy(sh_bcast_t *b);

/* Queue msg[0..len) (copied) under key (copied), replacing a queued one. */
void sh_bcast_queue(sh_bcast_t *b, const char *key, const uint8_t *msg, size_t len);

/*
 * Append queued updates as raw Packet.updates fields into out[0..cap);
 * returns the bytes written. Each taken update's transmit count rises and it
 * is dropped on reaching limit (1..SH_BCAST_MAX_TRANSMITS).
 */
size_t sh_bcast_pack(sh_bcast_t *b, uint8_t *out, size_t cap, unsigned limit);

/* Transmissions of the update queued under key, or -1 if none is queued. */
int sh_bcast_transmits(const sh_bcast_t *b, const char *key);
size_t sh_bcast_len(const sh_bcast_t *b);
/* Updates dropped because the queue was full. */
uint64_t sh_bcast_overflows(const sh_bcast_t *b);

#endif
