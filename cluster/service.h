/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cluster services (issue 13): how a node module gets a replicated feature
 * (global rate limits, shared backend health, TLS ticket keys...) without
 * editing the SWIM core or the cluster thread. A service is a channel
 * (channel.h) plus what a channel alone lacks:
 *   - registration at configuration time, from any thread, before or
 *     after the cluster thread started (it is attached at its next turn);
 *   - a periodic tick every tick_ms on the cluster thread;
 *   - a direct, sealed datagram on the channel to one chosen member
 *     (sh_service_send), besides gossip broadcasts (sh_service_broadcast)
 *     and the push-pull full state;
 *   - the member list with region and zone (sh_service_members) and a
 *     callback on every membership change;
 *   - a bounded hand-off queue from worker threads to the cluster thread
 *     (sh_service_post: a short mutex, a memcpy and a uv_async wake; never
 *     network I/O on the request path);
 *   - its own admin GET path (JSON) and /metrics lines, served by the
 *     admin API without admin.c knowing the module.
 *
 * Wire: a service's messages travel as sh.gossip.ChannelMsg in ordinary
 * sealed gossip packets; the first byte of ChannelMsg.data says how it was
 * sent ('B' gossip broadcast, re-gossiped when the service says it was
 * new; 'D' direct, never re-gossiped). A direct datagram is a Packet with
 * only `from` and one channel update, so nodes without the service count
 * it as an unknown channel and drop it.
 *
 * Threads: sh_service_register and sh_service_post from any thread; every
 * other function and every callback on the cluster thread only. The
 * registry is process-wide (like the limit zones, it outlives
 * configuration generations); a service is never unregistered.
 */
#ifndef SH_SERVICE_H
#define SH_SERVICE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SH_SERVICE_MAX       16u
#define SH_SERVICE_POST_MAX  4096u /* queued posts at most, per service */
#define SH_SERVICE_POST_SIZE 256u  /* bytes per post at most */

typedef struct sh_service_s sh_service_t;

/* A member as a service sees it (valid during the call that gave it). */
typedef struct {
    const char *name;
    const char *addr;   /* gossip "host:port" */
    const char *region; /* "" when none */
    const char *zone;   /* "" when none */
    int status;         /* sh_swim_status_t */
    int self;           /* 1 for this node */
    uint64_t changed_ms;
} sh_service_member_t;

typedef struct {
    const char *name;  /* metric label and log prefix, e.g. "limits" */
    uint32_t channel;  /* 2..SH_CHANNEL_MAX-1, unique (1 is the keyring) */
    uint64_t tick_ms;  /* period of tick (0: no tick) */
    const char *admin; /* an admin GET path ("/v1/limits") or NULL */
    /* Attached to a running cluster (before any other callback). */
    void (*start)(void *ud, sh_service_t *svc, uint64_t now_ms);
    void (*tick)(void *ud, sh_service_t *svc, uint64_t now_ms);
    /* A message from member `from` (a node name); direct: 1 for a
     * sh_service_send datagram. Return 1 when a broadcast was new (it is
     * re-gossiped), else 0 (ignored for direct messages). */
    int (*recv)(void *ud, sh_service_t *svc, const char *from, const uint8_t *data, size_t len,
                int direct, uint64_t now_ms);
    /* Full state for push-pull (as sh_channel_ops_t); may be NULL. */
    int (*local_state)(void *ud, int join, uint8_t **out, size_t *len);
    void (*merge_state)(void *ud, const uint8_t *data, size_t len, int join);
    /* A member appeared (old -1) or changed status; may be NULL. */
    void (*member)(void *ud, sh_service_t *svc, const sh_service_member_t *m, int old);
    /* Drain posts: called on the cluster thread with each queued post. */
    void (*post)(void *ud, sh_service_t *svc, const void *data, size_t len);
    /* The admin path's JSON body (malloc'd text, freed by the caller). */
    char *(*admin_json)(void *ud, sh_service_t *svc, const char *query);
    /* Append Prometheus lines to f (cluster thread, never blocking long). */
    void (*metrics)(void *ud, sh_service_t *svc, FILE *f);
} sh_service_ops_t;

/* Counters of one service (its channel's traffic from this node). */
typedef struct {
    uint64_t sent_msgs, sent_bytes;       /* direct datagrams, sealed bytes */
    uint64_t bcast_msgs, bcast_bytes;     /* broadcasts queued */
    uint64_t recv_msgs, recv_bytes;       /* received (direct + gossip) */
    uint64_t send_failed;                 /* unknown member, too big, socket full */
    uint64_t posts, posts_dropped, ticks; /* hand-off queue; ticks run */
} sh_service_stats_t;

/*
 * Register a service (ops and ud are kept for the life of the process).
 * Registering the same ops twice returns the same handle. Any thread.
 * Returns NULL when SH_SERVICE_MAX services exist or the channel is taken
 * by other ops (logged).
 */
sh_service_t *sh_service_register(const sh_service_ops_t *ops, void *ud);

/*
 * Queue len bytes (<= SH_SERVICE_POST_SIZE) for ops->post on the cluster
 * thread. Any thread, never blocks on I/O. 0, or SH_ELIMIT when the queue
 * is full or len too big (counted in posts_dropped). Posts made while no
 * cluster runs wait (bounded) for one.
 */
int sh_service_post(sh_service_t *svc, const void *data, size_t len);

/* ---- cluster thread only (inside callbacks, or after start) */

/* 1 while attached to a running cluster thread. */
int sh_service_attached(const sh_service_t *svc);
/* This node's name, or "" when not attached. */
const char *sh_service_self(const sh_service_t *svc);
/* The largest data a direct datagram or broadcast may carry. */
size_t sh_service_max_payload(const sh_service_t *svc);
/*
 * Send data to member `name` in one sealed datagram, now. 0, SH_ENOENT
 * (not a known member), SH_ELIMIT (too big), SH_ESTATE (not attached) or
 * SH_EIO (the socket refused it: a datagram loss).
 */
int sh_service_send(sh_service_t *svc, const char *name, const uint8_t *data, size_t len);
/* Gossip data under key (a later broadcast under the same key replaces a
 * queued one). 0 or a negative SH_E*. */
int sh_service_broadcast(sh_service_t *svc, const char *key, const uint8_t *data, size_t len);
/* Call cb for every known member, self included (any status). Returns how
 * many. */
size_t sh_service_members(sh_service_t *svc, void (*cb)(void *arg, const sh_service_member_t *m),
                          void *arg);
/* Members alive or suspect (self included). */
size_t sh_service_live(const sh_service_t *svc);
/* 1 when this node has joined a cluster, knows another live member, or
 * has no join list. */
int sh_service_joined(const sh_service_t *svc);
/* Ask for a tick as soon as possible (e.g. after a post). */
void sh_service_wake(sh_service_t *svc);
const sh_service_stats_t *sh_service_stats(const sh_service_t *svc);
/* Send an event to the admin API's event stream (GET /v1/events): type
 * (e.g. "health") and data as JSON object text. 0, SH_ESTATE (not
 * attached) or SH_EPARSE (not JSON). Cluster thread. */
int sh_service_event(sh_service_t *svc, const char *type, const char *json_text);

#endif
