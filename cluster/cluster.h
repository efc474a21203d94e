/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cluster thread (issue 5): one uv_loop that binds the pure SWIM state
 * machine (swim.h) to UDP (probes and gossip) and TCP (push-pull), seals
 * everything with the keyring, runs the join providers (static host:port,
 * dns:NAME[:PORT] via uv_getaddrinfo, file:PATH and exec:COMMAND on the
 * libuv thread pool) with capped exponential backoff until it has joined,
 * and serves the admin API (GET /v1/members) on admin_listen.
 *
 * Configuration: the main-context `cluster { ... }` block of
 * sh_cluster_module (cluster_conf.c). Threads: sh_cluster_start and
 * sh_cluster_stop are called from the main thread; everything else runs on
 * the cluster thread.
 */
#ifndef SH_CLUSTER_H
#define SH_CLUSTER_H

#include <stdint.h>

#include "core/conf.h"

typedef struct sh_cluster_s sh_cluster_t;

extern sh_conf_module_t sh_cluster_module;

/*
 * Start the cluster thread for the parsed main conf of sh_cluster_module
 * (NULL or a conf without a cluster block: returns 0 and *out = NULL).
 * Binds the sockets before returning, so a port in use fails here:
 * a negative SH_E* with the reason logged.
 */
int sh_cluster_start(void *cluster_main_conf, sh_cluster_t **out);

/*
 * Broadcast leave, wait up to timeout_ms for it to go out, stop the
 * thread, free. NULL is a no-op. Called from the main thread on
 * SIGTERM/SIGINT.
 */
void sh_cluster_stop(sh_cluster_t *c, uint64_t timeout_ms);

#endif
