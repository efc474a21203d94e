/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error log lines about a request or a client connection, in nginx's shape
 * (issue 16), which fail2ban filters and log pipelines match:
 *
 *   *42 upstream timed out while reading the response header from upstream,
 *   client: 203.0.113.7, server: api.example.com, request: "GET /x HTTP/1.1",
 *   upstream: "http://10.0.1.1:8000/x", host: "api.example.com"
 *
 * `*N` is the connection number ($connection). The level is checked before
 * anything is formatted, so a line below the error_log level costs one
 * comparison. Worker threads.
 */
#ifndef SH_REQLOG_H
#define SH_REQLOG_H

#include "node/pipeline/node.h"

/* MESSAGE, then ", client: ADDR, server: NAME" and, when r has a request
 * line, ", request: \"LINE\"", then ", upstream: \"URL\"" when upstream is
 * not NULL, then ", host: \"HOST\"" when the request has one. r may be
 * NULL only if c is given. */
void sh_req_log(int level, const sh_conn_t *c, const sh_request_t *r, const char *upstream,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The client's address as nginx prints it ("203.0.113.7", "::1"). */
void sh_req_log_client(const sh_conn_t *c, char *out, size_t len);

#endif
