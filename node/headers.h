/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The headers filter: `add_header NAME VALUE [always]` with nginx's rules.
 * The list of a level replaces the outer one as soon as that level has any
 * add_header (no merging); an empty value adds nothing; without `always`
 * the fields go only on 200, 201, 204, 206, 301, 302, 303, 304, 307 and
 * 308 responses, with it on every response, errors included (local 4xx
 * and 5xx, proxied ones, 502/504 of a failed upstream).
 *
 * Both protocols use it: HTTP/1.1 serializes the fields into the head,
 * HTTP/2 hands them to nghttp2. Configuration at load; evaluation on the
 * worker that owns the request.
 */
#ifndef SH_HEADERS_H
#define SH_HEADERS_H

#include "core/buf.h"
#include "core/conf.h"
#include "node/http1.h"

extern sh_conf_module_t sh_headers_module;

typedef struct sh_request_s sh_request_t;

/* The add_header fields for a response of `status` to r (its location,
 * or its address's default server when it has none): appended to out
 * (at most max entries) with values evaluated into buf, whose pointers
 * stay valid until buf is next written. Returns the number added. */
size_t sh_headers_add(sh_request_t *r, int status, sh_buf_t *buf, sh_http1_header_t *out,
                      size_t max);

/* Append the same fields as HTTP/1.1 lines ("Name: value\r\n") to b. */
void sh_headers_add_h1(sh_request_t *r, int status, sh_buf_t *b);

#endif
