/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node's request metrics (issue 17) for the admin API's /metrics:
 * requests by server, location (opt-in: `metrics_location_label on`),
 * status code and protocol; request and upstream latency histograms; bytes
 * in and out; upstream tries, failures and retries per server; TLS
 * handshakes and resumptions by protocol; HTTP/2 streams, resets and
 * floods; gzip input and output bytes.
 *
 * Cost on the request path: each worker thread counts into its own block
 * (a thread-local pointer), written only by that thread with relaxed atomic
 * loads and stores (plain moves on x86: no lock, no read-modify-write
 * instruction). Labelled series live in small per-block open-addressing
 * tables keyed by interned label ids (server and location names are
 * interned once at configuration time, so a request never takes a lock
 * or allocates). The admin thread sums every block at scrape time.
 *
 * Blocks outlive their workers: a worker that ends gives its block back to
 * the registry, where the next worker (a reload's new generation) takes it
 * and keeps adding, so counters never go back and the registry holds at
 * most as many blocks as workers ever ran at once.
 */
#ifndef SH_METRICS_H
#define SH_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "core/conf.h"

typedef struct sh_request_s sh_request_t;

extern sh_conf_module_t sh_metrics_module;

/* A worker thread takes a block at its start and gives it back at its end. */
void sh_metrics_worker_attach(void);
void sh_metrics_worker_detach(void);

/* The log phase counts the request itself (registered by the module). */

/* The id of a label value (an upstream's or a server's name), interned
 * once at configuration time (takes a mutex: never on the request path). */
unsigned sh_metrics_label(const char *s);
/* One upstream try of the group and server of those ids: status, the
 * upstream's status (when fail is 0); fail: 1 an error, 2 a timeout (no
 * response); ms: the try's time; retry: it was not the first try. */
void sh_metrics_upstream_try(unsigned group, unsigned server, int status, int fail, uint64_t ms,
                             int retry);
/* A TLS handshake completed (version: SSL_version()), or failed. */
void sh_metrics_tls_handshake(int version, int resumed);
void sh_metrics_tls_failure(void);
/* HTTP/2: a stream opened, a stream the client reset before its response
 * ended, a connection closed for a flood. */
void sh_metrics_h2_stream(void);
void sh_metrics_h2_reset(void);
void sh_metrics_h2_flood(void);
/* gzip: a response compressed, its bytes in and out. */
void sh_metrics_gzip(uint64_t in, uint64_t out);

/* Write every family in Prometheus text format 0.0.4. Any thread. */
void sh_metrics_write(FILE *f);

#endif
