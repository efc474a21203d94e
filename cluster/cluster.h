/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cluster thread (issue 5): one uv_loop that binds the pure SWIM state
 * machine (swim.h) to UDP (probes and gossip) and TCP (push-pull), seals
 * everything with the keyring, runs the join providers (static host:port,
 * dns:NAME[:PORT] via uv_getaddrinfo, file:PATH and exec:COMMAND on the
 * libuv thread pool) with capped exponential backoff until it has joined,
 * and serves the admin API (admin.c, issue 6: members, info, join, leave,
 * force-leave, keyring, reload, upstreams, /metrics, /nginx_status and an
 * event stream) on admin_listen.
 *
 * Configuration: the main-context `cluster { ... }` block of
 * sh_cluster_module (cluster_conf.c). Threads: sh_cluster_start and
 * sh_cluster_stop are called from the main thread; everything else runs on
 * the cluster thread.
 */
#ifndef SH_CLUSTER_H
#define SH_CLUSTER_H

#include <stdint.h>
#include <stdio.h>

#include "core/conf.h"

typedef struct sh_cluster_s sh_cluster_t;

extern sh_conf_module_t sh_cluster_module;

/* The gateway's counters for /nginx_status and /metrics (stub_status). */
typedef struct {
    uint64_t accepted, handled, requests;
    uint64_t active, reading, writing, waiting;
    uint64_t reloads, reload_failures;
    uint64_t proxy_protocol_bad; /* connections closed for a malformed PROXY header */
    uint64_t h2_early_responses; /* HTTP/2 responses sent whole before the request body */
    unsigned workers, generations;
} sh_cluster_node_status_t;

/*
 * What the node (cmd/shoal) lends the admin API; any member may be NULL.
 * - status: fill *out. Called on the cluster thread; must not block long.
 * - upstreams: the upstreams and their passive health as this node sees
 *   them, as a malloc'd JSON array text. Cluster thread.
 * - metrics: see below.
 * - reload: build a new configuration and apply it; blocks until done.
 *   Returns 0 with what was applied in msg, or a negative SH_E* with the
 *   reason ("file:line: message") in msg. Called on a libuv pool thread.
 */
typedef struct {
    void *ud;
    void (*status)(void *ud, sh_cluster_node_status_t *out);
    char *(*upstreams)(void *ud);
    int (*reload)(void *ud, char *msg, size_t msglen);
    /* metrics: append the node's own Prometheus lines to f (limit zones,
     * ...). Cluster thread; must not block long. */
    void (*metrics)(void *ud, FILE *f);
    /* cache_stats: the proxy caches' counters as a malloc'd JSON array
     * text (GET /v1/cache/stats). Cluster thread; must not block long. */
    char *(*cache_stats)(void *ud);
} sh_cluster_hooks_t;

/*
 * Start the cluster thread for the parsed main conf of sh_cluster_module
 * (NULL or a conf without a cluster block: returns 0 and *out = NULL).
 * Binds the sockets before returning, so a port in use fails here:
 * a negative SH_E* with the reason logged.
 */
int sh_cluster_start(void *cluster_main_conf, const sh_cluster_hooks_t *hooks, sh_cluster_t **out);
/* 1 when the conf has a cluster block (gossip runs), else 0. */
int sh_cluster_conf_gossips(const void *cluster_main_conf);

/*
 * Broadcast leave, wait up to timeout_ms for it to go out, stop the
 * thread, free. NULL is a no-op. Called from the main thread on
 * SIGTERM/SIGINT.
 */
void sh_cluster_stop(sh_cluster_t *c, uint64_t timeout_ms);

#endif
