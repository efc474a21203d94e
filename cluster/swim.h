/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SWIM membership with Lifeguard (issue 5), as a pure state machine: it
 * never touches a socket or reads the clock. The owner feeds it time (ms on
 * any monotonic scale) through sh_swim_tick() at sh_swim_next_deadline(),
 * received plaintext packets through sh_swim_recv_bytes(), and push-pull
 * frames through sh_swim_pushpull_*; it emits plaintext packets (wire
 * header + protobuf, not yet sealed) through the transport ops table. The
 * libuv binding (cluster.c) and the simulator (tests/sim.c) are two owners.
 *
 * Failure detection: every probe interval one member is probed, in a
 * shuffled round robin; without an ack within the probe timeout, k members
 * are asked to probe it indirectly; without any ack by the end of the
 * interval it is suspected. A suspicion is refuted by the member itself
 * with a higher incarnation; unrefuted it becomes dead when the suspicion
 * timeout expires. A member that leaves says so (dead from itself = left).
 *
 * Lifeguard (enabled by conf.lifeguard): (1) local health multiplier: a
 * node that misses nacks from its indirect helpers or gets suspected itself
 * scales its probe interval and timeout up to awareness_max times; (2) the
 * suspicion timeout starts at suspicion_max_mult times the minimum and
 * shrinks towards it with each independent confirmation; (3) buddy system:
 * a probe of a suspect carries the suspicion, so the suspect refutes it at
 * once. Without Lifeguard the timeout is the fixed minimum.
 *
 * Dissemination: updates wait in a broadcast queue and piggyback on every
 * packet (probes, acks, and gossip packets to gossip_nodes random members
 * every gossip interval), each about retransmit_mult*ceil(log10(N+1))
 * times, within mtu bytes. Push-pull: full state with one random member
 * every push-pull interval (scaled up above 32 members) and on join.
 *
 * One sh_swim_t belongs to one thread (the cluster thread); nothing locks.
 */
#ifndef SH_SWIM_H
#define SH_SWIM_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/channel.h"

typedef struct sh_swim_s sh_swim_t;

typedef enum {
    SH_SWIM_ALIVE = 0,   /* answering probes */
    SH_SWIM_SUSPECT = 1, /* missed a probe; refutable until the timeout */
    SH_SWIM_DEAD = 2,    /* suspicion confirmed */
    SH_SWIM_LEFT = 3     /* said goodbye */
} sh_swim_status_t;

const char *sh_swim_status_name(int status);

/* A member as seen by this node. Valid until the next sh_swim_* call. */
typedef struct {
    const char *name;
    const char *addr; /* "host:port" gossip address */
    uint64_t incarnation;
    int status;          /* sh_swim_status_t */
    uint64_t changed_ms; /* when status last changed, on the owner's clock */
    const uint8_t *meta; /* encoded sh.gossip.NodeMeta (opaque here) */
    size_t meta_len;
} sh_swim_member_t;

typedef struct {
    const char *name; /* unique node name */
    const char *addr; /* advertised "host:port" */
    uint64_t probe_interval_ms;
    uint64_t probe_timeout_ms;
    uint64_t gossip_interval_ms;
    uint64_t pushpull_interval_ms; /* 0: never (join still does one) */
    uint64_t gossip_to_dead_ms;    /* keep gossiping to / listing the dead this long */
    unsigned indirect_checks;      /* k */
    unsigned retransmit_mult;      /* lambda */
    unsigned suspicion_mult;
    unsigned suspicion_max_mult;
    unsigned awareness_max;
    unsigned gossip_nodes;
    size_t mtu;                     /* largest plaintext packet we emit */
    int lifeguard;                  /* 1: the three Lifeguard extensions */
    uint64_t reconnect_interval_ms; /* try a dead member this often (heals partitions) */
    uint64_t reconnect_timeout_ms;  /* forget dead (not left) members after this */
    uint64_t seed;                  /* for the shuffles and random picks */
    const uint8_t *meta;            /* copied */
    size_t meta_len;
} sh_swim_conf_t;

/* Timing profiles close to memberlist's (name and addr left alone). */
void sh_swim_conf_lan(sh_swim_conf_t *c);
void sh_swim_conf_wan(sh_swim_conf_t *c);
void sh_swim_conf_local(sh_swim_conf_t *c);

/* Push-pull frame kinds (the join argument of encode and t->pushpull). */
#define SH_SWIM_PP_FULL 0 /* every member with its meta */
#define SH_SWIM_PP_JOIN 1 /* full, and we are joining */
#define SH_SWIM_PP_SLIM 2 /* periodic: meta only for ourselves */

typedef struct {
    /* Send a plaintext packet to addr (the binding seals it). */
    void (*send)(void *ud, const char *addr, const uint8_t *buf, size_t len);
    /* Start a push-pull with addr; the owner calls sh_swim_pushpull_encode
     * and _merge on both sides. join: SH_SWIM_PP_JOIN for our join,
     * SH_SWIM_PP_SLIM for a periodic exchange with a peer that speaks the
     * slim frame, 0 for a full one; pass it to sh_swim_pushpull_encode. */
    void (*pushpull)(void *ud, const char *addr, int join);
    /* A member appeared (old_status -1) or changed status. May be NULL. */
    void (*notify)(void *ud, const sh_swim_member_t *m, int old_status);
    /*
     * How far a member is, from its metadata (issue 13, multi-region):
     * 0 same zone, 1 same region, 2 another region. Gossip then goes to
     * near members first (a region's own members learn first) with one
     * target per round in another region, so news still crosses; the
     * probe order puts near members first. May be NULL: all near.
     */
    int (*distance)(void *ud, const uint8_t *meta, size_t meta_len);
} sh_swim_transport_t;

typedef struct {
    uint64_t packets_sent, bytes_sent, packets_recv, bytes_recv;
    uint64_t probes, probe_acks, probe_failures, indirect_sent, indirect_relayed;
    uint64_t nacks_recv, relay_table_full, wrong_target, stale_acks;
    uint64_t suspects_raised, refutes, deaths_declared, undecodable;
    uint64_t pushpulls, reconnects, unknown_channel, bcast_overflows;
} sh_swim_stats_t;

/*
 * Create the state machine with ourselves alive (incarnation 1). conf and
 * its strings are copied; t and ud are kept. now: the owner's clock.
 */
sh_swim_t *sh_swim_create(const sh_swim_conf_t *conf, const sh_swim_transport_t *t, void *ud,
                          uint64_t now);
void sh_swim_destroy(sh_swim_t *s);

/* Ask for a join push-pull with addr (through t->pushpull). */
void sh_swim_join(sh_swim_t *s, const char *addr);

/* Run what is due at now. Call again at sh_swim_next_deadline(). */
void sh_swim_tick(sh_swim_t *s, uint64_t now);
uint64_t sh_swim_next_deadline(const sh_swim_t *s);

/*
 * A plaintext packet (after the keyring) from from_addr: steps 3-5 of the
 * wire checks, then its meaning. 0 or the decode error (counted).
 */
int sh_swim_recv_bytes(sh_swim_t *s, const char *from_addr, const uint8_t *pt, size_t len,
                       uint64_t now);

/*
 * Our full state as a plaintext push-pull frame in *out (sh_malloc'd).
 * Returns the length.
 */
size_t sh_swim_pushpull_encode(sh_swim_t *s, int join, uint8_t **out);
/* Merge a peer's plaintext push-pull frame. 0 or a decode error. *reply (if
 * not NULL) is the kind to answer with: SH_SWIM_PP_SLIM if the peer sent a
 * slim frame, else SH_SWIM_PP_FULL (a joiner or an older peer gets it all). */
int sh_swim_pushpull_merge(sh_swim_t *s, const uint8_t *pt, size_t len, uint64_t now, int *reply);

/* Broadcast that we leave; we stop refuting. */
void sh_swim_leave(sh_swim_t *s, uint64_t now);
/*
 * Mark a failed (suspect or dead) member as left and gossip it, as if it
 * had said goodbye itself (issue 6, `nodectl force-leave`): 0 (also when it
 * already left), SH_ENOENT for an unknown name, SH_ESTATE for ourselves or
 * an alive member (an alive member would refute it at once).
 */
int sh_swim_force_leave(sh_swim_t *s, const char *name, uint64_t now);
/* 1 once the leave update went out at least once (or there is nobody). */
int sh_swim_leave_sent(const sh_swim_t *s);
/* Undo sh_swim_leave (Serf's -rejoin, `nodectl join` after `nodectl
 * leave`): alive again under a higher incarnation, which outbids our own
 * goodbye everywhere; a join push-pull spreads it. No-op unless leaving. */
void sh_swim_rejoin(sh_swim_t *s, uint64_t now);

/* Replace our metadata and announce it with a new incarnation. */
void sh_swim_set_meta(sh_swim_t *s, const uint8_t *meta, size_t len);

/* Register channel id (1..SH_CHANNEL_MAX-1); ops and ud are kept. 0,
 * SH_EINVAL or SH_EEXIST. */
int sh_swim_channel_register(sh_swim_t *s, uint32_t id, const sh_channel_ops_t *ops, void *ud);
/* Gossip an update of channel id; a later update under the same key
 * replaces it in the queue. 0 or SH_ENOENT/SH_ELIMIT. */
int sh_swim_channel_broadcast(sh_swim_t *s, uint32_t id, const char *key, const uint8_t *data,
                              size_t len);

/* Members known (self included); alive_only counts alive + suspect. */
size_t sh_swim_num_members(const sh_swim_t *s, int alive_only);
/* Call cb for every member, self included, in table order. */
void sh_swim_foreach(const sh_swim_t *s, void (*cb)(void *arg, const sh_swim_member_t *m),
                     void *arg);
const sh_swim_member_t *sh_swim_member(const sh_swim_t *s, const char *name);
/* The plaintext wire version of the last message from the member whose
 * address is addr; 0 if none is known (no such member, or not heard yet). */
unsigned sh_swim_peer_version(const sh_swim_t *s, const char *addr);
/* Lifeguard local health score, 0 = healthy. */
int sh_swim_health_score(const sh_swim_t *s);
const sh_swim_stats_t *sh_swim_stats(const sh_swim_t *s);
size_t sh_swim_queue_len(const sh_swim_t *s);
/* Drop every queued update. Only for starting a simulation from an already
 * converged cluster; the protocol never needs it. */
void sh_swim_forget_broadcasts(sh_swim_t *s);

#endif
