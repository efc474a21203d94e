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
 * requests reach by address (one server per address of the answer, as
 * nginx's implicit upstream of a proxy_pass with variables, plus a small
 * keep-alive pool nginx does not have there).
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

/* Every address of an answer (A, and AAAA with ipv6=on), in its order,
 * port 0; at most SH_RESOLVE_MAX. */
#define SH_RESOLVE_MAX 8
typedef struct {
    struct sockaddr_storage a[SH_RESOLVE_MAX];
    socklen_t len[SH_RESOLVE_MAX];
    size_t n;
} sh_resolved_t;

/* status 0 and the addresses (n >= 1), or SH_ENOENT (no such name, no
 * address) / SH_ETIMEDOUT / SH_EIO (res NULL). */
typedef void (*sh_resolve_cb)(void *data, int status, const sh_resolved_t *res);

/* Resolve name with r's location's resolver. Returns 1 with *out filled
 * (from the cache, kept for valid= or the answer's TTL, or an answer at
 * once), 0 when a job started (cb(data, ...) comes later from the loop;
 * sh_resolve_cancel(job) before data goes away), SH_EUNSUPP when the
 * location has no resolver, or the failure. */
int sh_resolve(sh_request_t *r, const char *name, sh_resolved_t *out, sh_resolve_cb cb, void *data,
               sh_resolve_job_t **job);
void sh_resolve_cancel(sh_resolve_job_t *job);

/* The worker's runtime upstream for a set of addresses (a proxy_pass with
 * variables: one peer per address, round-robin, max_fails=1
 * fail_timeout=10s, as nginx's implicit upstream; port given), made on
 * first use; its idle keep-alive connections are kept (keepalive 8 per
 * worker, 60 s), keyed by peer and TLS name like an upstream block's.
 * NULL when the worker keeps too many. */
sh_ups_rt_t *sh_resolver_ups(sh_worker_t *w, const sh_resolved_t *res, int port);

/* The worker's upstreams of address sets, by index (i < n): their idle
 * connections close with the others' at stop. */
size_t sh_resolver_nups(sh_worker_t *w);
sh_ups_rt_t *sh_resolver_ups_at(sh_worker_t *w, size_t i);

/* Close the worker's resolver channels and free its state (worker stop). */
void sh_resolver_worker_close(sh_worker_t *w);

#endif
