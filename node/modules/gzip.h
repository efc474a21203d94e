/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nginx's gzip filter (ngx_http_gzip_filter_module) and the core's gzip
 * checks (ngx_http_gzip_ok): `gzip`, `gzip_types`, `gzip_vary`,
 * `gzip_proxied`, `gzip_comp_level`, `gzip_min_length`,
 * `gzip_http_version`, `gzip_disable` (regexes and `msie6`),
 * `gzip_buffers`, and `gzip_static` for the static handler
 * (ngx_http_gzip_static_module: FILE.gz served as it is).
 *
 * An early header filter (before the protocol's framing, see
 * pipeline.h) decides, as nginx does: status 200, 403 or 404, no
 * Content-Encoding yet, a length unknown or at least gzip_min_length, a
 * listed type (text/html always), a body (not HEAD, 204, 304); then the
 * client: Accept-Encoding with gzip at q > 0 (or `*` at q > 0 without a
 * gzip entry, RFC 9110 12.5.3, which nginx ignores), HTTP version, Via
 * with gzip_proxied, User-Agent against gzip_disable. A compressed
 * response gets "Content-Encoding: gzip", no Content-Length (HTTP/1.1
 * chunks it, HTTP/2 ends it with DATA frames), no Accept-Ranges, a weak
 * ETag (nginx 1.7.3+: W/ added, a non-quoted one dropped), and a body
 * filter that streams through zlib with a fixed window (nginx's
 * reduction for short known lengths) and one output buffer of
 * gzip_buffers' total size (at most 64 KB): memory per response is
 * bounded whatever its length. "Vary: Accept-Encoding" with gzip_vary
 * whenever the response was eligible (or a .gz was found), as nginx.
 *
 * Deflate states are reused per worker thread (deflateReset), so a
 * compressed response costs no allocation in the steady state.
 */
#ifndef SH_GZIP_H
#define SH_GZIP_H

#include "core/conf.h"

typedef struct sh_request_s sh_request_t;

extern sh_conf_module_t sh_gzip_module;

/* For the static handler: whether to look for FILE.gz for r (gzip_static
 * on and the client takes gzip, or always). Worker thread. */
int sh_gzip_static_wanted(sh_request_t *r);
/* The static handler serves FILE.gz for r: Vary follows gzip_vary. */
void sh_gzip_static_served(sh_request_t *r);

#endif
