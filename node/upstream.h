/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upstream groups: the `upstream NAME { server ...; keepalive N; }` block,
 * implicit groups made by `proxy_pass http://host:port`, the balancer
 * (smooth weighted round robin, as nginx) with nginx's passive health
 * (max_fails within fail_timeout takes a server out for fail_timeout;
 * backups only when every primary is out), and the per-worker pool of idle
 * keep-alive connections.
 *
 * The group definitions are immutable configuration; the balancer state
 * and the pool are per worker (sh_ups_rt_t), touched by that worker only.
 */
#ifndef SH_UPSTREAM_H
#define SH_UPSTREAM_H

#include <stdint.h>
#include <sys/socket.h>

#include "core/conf.h"
#include "node/node.h"

typedef struct {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[80]; /* as written: "127.0.0.1:9001" */
    int weight;
    int max_fails;
    uint64_t fail_timeout;
    int max_conns;
    unsigned backup : 1;
    unsigned down : 1;
} sh_ups_server_t;

typedef struct sh_upstream_s {
    char *name;
    size_t index; /* in the upstream main conf, = index of the worker's sh_ups_rt_t */
    sh_ups_server_t *servers;
    size_t nservers;
    int keepalive;              /* idle connections kept per worker; 0: none */
    uint64_t keepalive_timeout; /* ms an idle connection is kept */
    int keepalive_requests;     /* requests per connection before closing */
    unsigned implicit : 1;      /* made by proxy_pass host:port */
    const char *file;
    unsigned line;
} sh_upstream_t;

typedef struct {
    sh_upstream_t **ups;
    size_t n;
} sh_upstream_main_t;

extern sh_conf_module_t sh_upstream_module;

/* Find a group by name, or make an implicit one for "host:port" (the name
 * is resolved now, at load time). NULL with cf->err set on failure. */
sh_upstream_t *sh_upstream_get(sh_conf_t *cf, sh_upstream_main_t *m, const char *name,
                               int default_port);

/* ---- per worker */
typedef struct {
    int current_weight;
    int effective_weight;
    int fails;
    uint64_t checked;  /* ms of the first failure in this fail window */
    uint64_t down_until;
    int conns;
} sh_peer_rt_t;

struct sh_ups_rt_s {
    const sh_upstream_t *conf;
    sh_peer_rt_t *peers;
    sh_link_t idle; /* idle keep-alive sh_uconn_t, most recent first */
    int nidle;
};

void sh_upstream_rt_init(sh_ups_rt_t *rt, const sh_upstream_t *conf);
void sh_upstream_rt_dispose(sh_ups_rt_t *rt);

/* Pick a server not in `tried` (bit i = server i tried; groups of more
 * than 64 servers reuse bits, which only weakens retry avoidance).
 * Returns the server index, or -1 when none is usable. */
int sh_upstream_pick(sh_ups_rt_t *rt, uint64_t tried, uint64_t now);
/* Report the outcome of using server i (failed: a connect error, a
 * timeout or a broken response, per proxy_next_upstream). */
void sh_upstream_done(sh_ups_rt_t *rt, int i, int failed, uint64_t now);

#endif
