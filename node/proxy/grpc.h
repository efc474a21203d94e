/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC proxying (`grpc_pass grpc[s]://HOST:PORT|UPSTREAM` and its grpc_*
 * directives): a content handler that carries each request as a stream of
 * an HTTP/2 connection to a server of the upstream group (nghttp2 client
 * sessions, one or more per worker and server, multiplexed), streams the
 * request body and the response (HEADERS, DATA, trailers) both ways with
 * HTTP/2 flow control, and answers local failures as gRPC does
 * (trailers-only, grpc-status 14 UNAVAILABLE or 4 DEADLINE_EXCEEDED).
 * Worker thread only, except the configuration.
 */
#ifndef SH_GRPC_H
#define SH_GRPC_H

#include "core/conf.h"
#include "node/pipeline/node.h"

extern sh_conf_module_t sh_grpc_module;

/* Whether loc's grpc_pass is grpcs:// (it gets a grpc_ssl_* context). */
int sh_grpc_loc_grpcs(const sh_http_loc_t *loc);

/* Close every backend HTTP/2 connection of the calling worker (at stop). */
void sh_grpc_close_all(sh_worker_t *w);

/* Parse a grpc-timeout value ("100m", "5S", RFC-less gRPC spec: 1..8
 * digits and one of H M S m u n) into ms (rounded up). 0 or -1 when
 * invalid. */
int sh_grpc_parse_timeout(const char *v, size_t len, uint64_t *ms);

#endif
