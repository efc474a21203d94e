/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Channels: how a module replicates its state over gossip without touching
 * the SWIM core (issue 5, style.md rule 11). A channel registers an ops
 * table under a small id (0 is membership itself, which uses the same
 * interface for its push-pull state). Its updates travel as
 * sh.gossip.ChannelMsg piggybacked on probe traffic with the same
 * retransmit budget as membership updates; its full state travels in every
 * push-pull exchange. All callbacks run on the cluster thread, inside
 * sh_swim_* calls; they must not call back into the same sh_swim_t except
 * sh_swim_channel_broadcast.
 */
#ifndef SH_CHANNEL_H
#define SH_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#define SH_CHANNEL_MEMBERSHIP 0u
#define SH_CHANNEL_MAX        32u

typedef struct sh_channel_ops_s {
    const char *name;
    /*
     * Merge an update broadcast by node `from`. Return 1 if it was new to
     * this node (the core then re-gossips it), 0 if known or stale.
     */
    int (*merge)(void *ud, const char *from, const uint8_t *data, size_t len);
    /*
     * The full local state for push-pull: *out is sh_malloc'd (the core
     * frees it) or NULL with *len 0. join is 1 when the peer is joining.
     * 0 or a negative SH_E* (the channel is then left out of the exchange).
     */
    int (*local_state)(void *ud, int join, uint8_t **out, size_t *len);
    /* Merge a peer's full state (anti-entropy; also how joiners catch up). */
    void (*merge_state)(void *ud, const uint8_t *data, size_t len, int join);
} sh_channel_ops_t;

#endif
