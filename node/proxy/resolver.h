/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The resolver (nginx's `resolver ADDRESS[:PORT]... [valid=TIME]
 * [ipv6=on|off]` and `resolver_timeout TIME`): names resolved at request
 * time, for proxy_pass with variables, asynchronously with c-ares on the
 * worker's loop (the worker never blocks), against the configured servers
 * only (no /etc/hosts, no search domains, as nginx). Answers are cached
 * per worker for their TTL (or valid=).
 *
 * It also keeps, per worker, the runtime state of the upstreams such
 * requests reach by address (one server each, no keep-alive: nginx's
 * implicit upstream of a proxy_pass with variables).
 *
 * Worker thread only, except the directives (loading thread).
 */
#ifndef SH_RESOLVER_H
#define SH_RESOLVER_H

#include <sys/socket.h>

#include "core/conf.h"
#include "node/pipeline/node.h"
#include "node/proxy/upstream.h"

extern sh_conf_module_t sh_resolver_module;

typedef struct sh_resolve_job_s sh_resolve_job_t;
/* status 0 and the first address (port 0), or SH_ENOENT (no such name,
 * no address) / SH_ETIMEDOUT / SH_EIO. */
typedef void (*sh_resolve_cb)(void *data, int status, const struct sockaddr_storage *addr,
                              socklen_t len);

/* Resolve name with r's location's resolver. Returns 1 with *addr filled
 * (from the cache, or an answer at once), 0 when a job started (cb(data,
 * ...) comes later from the loop; sh_resolve_cancel(job) before data goes
 * away), SH_EUNSUPP when the location has no resolver, or the failure. */
int sh_resolve(sh_request_t *r, const char *name, struct sockaddr_storage *addr, socklen_t *len,
               sh_resolve_cb cb, void *data, sh_resolve_job_t **job);
void sh_resolve_cancel(sh_resolve_job_t *job);

/* The worker's runtime upstream for one address (port included), made on
 * first use; NULL when the worker keeps too many. */
sh_ups_rt_t *sh_resolver_ups(sh_worker_t *w, const struct sockaddr_storage *addr, socklen_t len);

/* Close the worker's resolver channels and free its state (worker stop). */
void sh_resolver_worker_close(sh_worker_t *w);

#endif
