/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The proxy (`proxy_pass` and its directives): a content handler that
 * sends the request to an upstream group (node/upstream.h) and relays the
 * response through the pipeline's response functions (node.h), with
 * retries (proxy_next_upstream), keep-alive to upstreams, request body
 * streaming or buffering, and 101 tunnels. Worker thread only.
 */
#ifndef SH_PROXY_H
#define SH_PROXY_H

#include <stddef.h>

#include "core/buf.h"
#include "core/conf.h"
#include "node/pipeline/node.h"

extern sh_conf_module_t sh_proxy_module;

/* Start proxying r (its location has proxy_pass). */
void sh_proxy_start(sh_request_t *r);
/* Request body bytes for the upstream (all taken; what the socket does not
 * take at once is queued). last: the body ends here. Returns 1 when the
 * client should stop reading (the upstream pushes back; a later
 * sh_request_body_resume() follows), else 0. */
int sh_proxy_body(sh_request_t *r, const char *p, size_t len, int last);
/* The client went away or the request is being freed: release upstream. */
void sh_proxy_detach(sh_request_t *r);
/* Client drained its queue below the low mark: resume upstream reads. */
void sh_proxy_client_drained(sh_request_t *r);
/* After 101: client bytes for the upstream; returns 1 when the client
 * should stop reading (resumed by sh_request_body_resume()). */
int sh_proxy_tunnel_up(sh_request_t *r, const char *p, size_t len);
/* Timeout of an upstream connection (the worker's up_timers' expire). */
void sh_uconn_timeout(sh_timeq_entry_t *e);
/* Free the worker's cached proxy state objects (at stop). */
void sh_proxy_cache_clear(sh_worker_t *w);
/* Close every pooled idle upstream connection of the worker. */
void sh_proxy_close_pools(sh_worker_t *w);

/* Whether loc proxies (has proxy_pass): the cache applies only there. */
int sh_proxy_enabled(const sh_http_loc_t *loc);
/* The upstream group a location's proxy_pass names (its own, not
 * inherited), NULL when none or when the name has variables. Load time
 * (health_check, health.c). */
struct sh_upstream_s;
const struct sh_upstream_s *sh_proxy_loc_upstream(const sh_http_loc_t *loc);
/* Whether loc's proxy_pass is https (its upstream connections use TLS). */
int sh_proxy_loc_https(const sh_http_loc_t *loc);

/* proxy_next_upstream / grpc_next_upstream: nginx's kinds, as bits */
#define SH_NU_ERROR          0x0001
#define SH_NU_TIMEOUT        0x0002
#define SH_NU_INVALID_HEADER 0x0004
#define SH_NU_HTTP_500       0x0008
#define SH_NU_HTTP_502       0x0010
#define SH_NU_HTTP_503       0x0020
#define SH_NU_HTTP_504       0x0040
#define SH_NU_HTTP_403       0x0080
#define SH_NU_HTTP_404       0x0100
#define SH_NU_HTTP_429       0x0200
#define SH_NU_NON_IDEMPOTENT 0x0400
#define SH_NU_OFF            0x8000
/* The directive's arguments (cf->node) as SH_NU_* bits into *out (0 for
 * off); 0, or an error logged in cf. */
int sh_next_upstream_parse(sh_conf_t *cf, int *out);
/* proxy_next_upstream / grpc_next_upstream: a setter (sh_conf_cmd_t) of
 * the int at cmd->offset (SH_CONF_UNSET until set; "is duplicate" after),
 * parsed by sh_next_upstream_parse. */
int sh_next_upstream_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf);
/* proxy_hide_header, proxy_pass_header, grpc_hide_header: name added, in
 * lower case, to the level's list *v of *nv names; a level's first one
 * starts its own list (*set: the parent's is no longer inherited, nginx). */
void sh_proxy_names_add(char ***v, size_t *nv, int *set, const char *name);
/* Free a list of names made by sh_proxy_names_add. */
void sh_proxy_names_free(char **v, size_t n);
/* One proxy_set_header / grpc_set_header of a level: the name and its
 * value, compiled. */
typedef struct {
    char *name; /* grpc: lower case */
    size_t name_len;
    sh_cv_t *value;
} sh_proxy_header_t;
/* proxy_set_header NAME VALUE, grpc_set_header NAME VALUE (cf->node) added
 * to the level's list *v of *nv; a level's first one starts its own list
 * (*set: the parent's is no longer inherited, nginx). At most max ("too
 * many"); lower: the name in lower case (HTTP/2 field names). 0 or an
 * error written into cf. */
int sh_proxy_headers_add(sh_conf_t *cf, sh_proxy_header_t **v, size_t *nv, int *set, size_t max,
                         int lower);
/* Free a list made by sh_proxy_headers_add. */
void sh_proxy_headers_free(sh_proxy_header_t *v, size_t n);
/* The SH_NU_HTTP_* bit of an upstream status, 0 for the others. */
int sh_next_upstream_status(int status);

/* $proxy_host of the request's location. */
void sh_proxy_host(sh_request_t *r, sh_buf_t *out);

/* loc's proxy_pass URL as written ("http://host:port/uri"), and in
 * *uri_len the length of its URI part (0: none); NULL without proxy_pass.
 * For proxy_redirect default. */
const char *sh_proxy_pass_of(const sh_http_loc_t *loc, size_t *uri_len);

#endif
