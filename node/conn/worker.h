/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Workers: one thread and one uv_loop each, each with its own listening
 * sockets bound with SO_REUSEPORT (libuv 1.44 has no flag for it, so the
 * sockets are made here and handed to uv_tcp_open), so the kernel spreads
 * connections and no lock is taken per request.
 *
 * The main thread creates the workers (sockets first, so a busy port is an
 * error before anything starts), starts them, and on a stop signal asks
 * each to drain: listeners close, idle keep-alive connections close,
 * requests in flight finish (with Connection: close) until the drain
 * timeout, then everything closes and the thread ends.
 *
 * Reload (issue 6, nginx's model): a new configuration gets a new
 * generation of workers (sh_workers_create_from) that take over the
 * listening sockets of the running one where the address is unchanged
 * (dup'd, so no connection is refused in between); the old generation is
 * then stopped like at exit, so its open connections finish on the old
 * configuration while new ones get the new one.
 *
 * Each worker publishes its counters and, each second, its view of its
 * upstream servers' passive health; any thread may read them through
 * sh_workers_totals and sh_workers_upstreams_json.
 */
#ifndef SH_WORKER_H
#define SH_WORKER_H

#include <stdio.h>

#include "node/pipeline/node.h"

/* Create n workers for rt, with their listening sockets bound. On failure
 * writes a message to err (256 bytes) and returns a negative code with
 * nothing left behind. Main thread. */
int sh_workers_create(const sh_runtime_t *rt, int n, sh_worker_t ***out, char *err);
/* The same for a reload: addresses that old (nold workers of old_rt, not
 * stopped yet) listens on are taken over from it, new ones are bound. */
int sh_workers_create_from(const sh_runtime_t *rt, int n, sh_worker_t **old, int nold,
                           sh_worker_t ***out, char *err);
/* Start the threads. */
int sh_workers_start(sh_worker_t **ws, int n);
/* Ask every worker to drain and stop within timeout_ms; returns at once. */
void sh_workers_stop(sh_worker_t **ws, int n, uint64_t timeout_ms);
/* Wait for the threads and free everything. */
void sh_workers_join(sh_worker_t **ws, int n);
/* The two halves of sh_workers_join: wait for the threads (any thread),
 * then free (while nobody reads their counters any more). */
void sh_workers_wait(sh_worker_t **ws, int n);
void sh_workers_free(sh_worker_t **ws, int n);

typedef struct sh_worker_totals_s {
    uint64_t accepted, handled, requests, active, reading, writing, waiting;
    uint64_t proxy_protocol_bad;
    uint64_t h2_early_responses;
} sh_worker_totals_t;
/* Count w's connections as nginx does now and publish the counts (the
 * worker's own thread; a stub_status request does it before it reads the
 * totals, so its own worker's part is live, the others' at most a second
 * old). */
void sh_worker_counters_refresh(sh_worker_t *w);
/* Add the workers' counters to *t. Any thread. */
void sh_workers_totals(sh_worker_t **ws, int n, sh_worker_totals_t *t);
/* The upstream groups of rt with each server's passive health summed over
 * the workers, as a malloc'd JSON array text. Any thread. */
char *sh_workers_upstreams_json(sh_worker_t **ws, int n);
/* The same as Prometheus gauges (shoal_upstream_server_up, _fails,
 * _connections by upstream and server), appended to f. Any thread. */
void sh_workers_upstreams_metrics(sh_worker_t **ws, int n, FILE *f);

#endif
