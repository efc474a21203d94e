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
 */
#ifndef SH_WORKER_H
#define SH_WORKER_H

#include "node/node.h"

/* Create n workers for rt, with their listening sockets bound. On failure
 * writes a message to err (256 bytes) and returns a negative code with
 * nothing left behind. Main thread. */
int sh_workers_create(const sh_runtime_t *rt, int n, sh_worker_t ***out, char *err);
/* Start the threads. */
int sh_workers_start(sh_worker_t **ws, int n);
/* Ask every worker to drain and stop within timeout_ms; returns at once. */
void sh_workers_stop(sh_worker_t **ws, int n, uint64_t timeout_ms);
/* Wait for the threads and free everything. */
void sh_workers_join(sh_worker_t **ws, int n);

#endif
