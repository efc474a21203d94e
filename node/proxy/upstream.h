/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upstream groups: the `upstream NAME { server ...; keepalive N; }` block,
 * implicit groups made by `proxy_pass http://host:port`, the balancers and
 * nginx's passive health, and the per-worker pool of idle keep-alive
 * connections.
 *
 * Balancers are a small ops table (sh_balancer_ops_t) chosen by a
 * directive in the block, with nginx's semantics: round robin (default,
 * smooth weighted), `least_conn`, `ip_hash`, `hash KEY [consistent]` and
 * `random [two [least_conn]]`. All of them share one per-server state
 * (sh_peer_rt_t) and one passive health rule, nginx's: a server that
 * failed max_fails times (failures count until a success comes more than
 * fail_timeout after the window opened) is out for fail_timeout after its
 * last failure, then gets one probe request; backups serve only when no
 * primary can; a group of one server never goes out; max_conns caps this
 * worker's active connections to a server.
 *
 * The group definitions are immutable configuration; the balancer state
 * and the pool are per worker (sh_ups_rt_t), touched by that worker only.
 */
#ifndef SH_UPSTREAM_H
#define SH_UPSTREAM_H

#include <stdint.h>
#include <sys/socket.h>

#include "core/conf.h"
#include "node/pipeline/node.h"

typedef struct sh_balancer_ops_s sh_balancer_ops_t;

typedef struct {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[80]; /* as written: "127.0.0.1:9001" */
    int weight;
    int max_fails;
    uint64_t fail_timeout;
    int max_conns; /* 0: no limit */
    unsigned backup : 1;
    unsigned down : 1;
    /* `resolve`: the name is resolved again while running, by the resolver
     * of the requests' location (the address here is the load-time one,
     * if any: addrlen 0 otherwise) */
    unsigned resolve : 1;
    /* a `resolve` server is SH_UPS_RADDR_MAX servers in a row, one per
     * address of the name's answer (slots, with the server's parameters):
     * this is slot rslot, the first is servers[i - rslot]; an empty slot
     * (no address in this worker's sh_ups_raddr_t) is never picked */
    unsigned rslot : 4;
    uint16_t port;
    unsigned line; /* of the `server` directive (config errors only) */
    /* the server's health entry (health.h), set at load: active checks
     * and the cluster's verdict take it out while sh_hc_out() says so */
    struct sh_hc_peer_s *hc;
    unsigned metrics_id; /* its name's label id (node/pipeline/metrics.h) */
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
    /* the balancer: round robin unless a method directive chose another */
    const sh_balancer_ops_t *balancer;
    sh_cv_t *hash_key;       /* `hash KEY`: the compiled key */
    unsigned random_two : 1; /* `random two [least_conn]` */
    unsigned metrics_id;     /* its name's label id (node/pipeline/metrics.h) */
    /* `zone NAME [SIZE]`: the servers' balancer and health state
     * (sh_peer_rt_t: fails, failure window, effective and current weights,
     * active connections) is one array for every worker of the process,
     * under a mutex taken by pick and done; NULL: per worker */
    struct sh_ups_zone_s *zone;
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
/* sh_upstream_get for a *_pass directive resolved when its location is
 * merged (every upstream block known by then): the http block's groups
 * (cf->user), errors and an implicit group's origin at the directive's
 * file:line. NULL with cf->err set on failure. */
sh_upstream_t *sh_upstream_get_at(sh_conf_t *cf, const char *name, int default_port,
                                  const char *file, unsigned line);

/* ---- per worker */

/* One server's balancer and health state in one worker (nginx's
 * ngx_http_upstream_rr_peer_t, less what is configuration). Times are ms
 * on the caller's clock. */
typedef struct {
    int current_weight;   /* smooth weighted round robin */
    int effective_weight; /* weight, lowered by failures, recovers by one per pick */
    int fails;            /* failures since the last reset */
    int conns;            /* this worker's active connections to the server */
    uint64_t accessed;    /* time of the last failure */
    uint64_t checked;     /* time the failure window was last opened */
    /* proxy_ssl_session_reuse: the last TLS session of the server, under
     * the context (a location's) that made it (node/proxy/proxy_ssl.c) */
    void *ssl_sess;
    const void *ssl_sess_owner;
} sh_peer_rt_t;

typedef struct sh_bal_data_s sh_bal_data_t; /* a balancer's own per-worker data */

/* A `resolve` server slot's address in one worker (one A/AAAA of the last
 * answer, port set; len 0: the slot is empty) and, in the first slot, when
 * the resolver was last asked (ms). An address that stays in the answer
 * keeps its slot, so its balancer and health state; a new one takes a
 * free slot with fresh state (as NGINX Plus's resolved peers). */
#define SH_UPS_RADDR_MAX 8
typedef struct {
    struct sockaddr_storage addr;
    socklen_t len;
    uint64_t checked;
} sh_ups_raddr_t;

struct sh_ups_rt_s {
    const sh_upstream_t *conf;
    const sh_balancer_ops_t *ops;
    sh_peer_rt_t *peers; /* the zone's (shared) or own */
    sh_peer_rt_t *own;   /* this worker's: its TLS session slots (and state without a zone) */
    sh_bal_data_t *bal;  /* made by ops->init, freed by ops->dispose */
    int total_weight;    /* of the primary servers */
    int nprimary;
    uint8_t single; /* one server and no backup: never taken out */
    uint64_t rng;   /* xorshift state for `random` */
    sh_link_t idle; /* idle keep-alive sh_uconn_t, most recent first */
    int nidle;
    sh_ups_raddr_t *raddr; /* per server when the group has `resolve` servers, else NULL */
};

/* Give the `resolve` server whose first slot is `first` the addresses of
 * a new answer (ports set by the caller): addresses that stay keep their
 * slot, gone ones leave theirs empty, new ones take free slots with fresh
 * balancer state (under the zone's lock if any). Calls drop(data, slot)
 * for every slot whose address changed (its idle connections must go). */
void sh_upstream_readdr(sh_ups_rt_t *rt, size_t first, const struct sockaddr_storage *a,
                        const socklen_t *len, size_t n, void (*drop)(void *data, size_t slot),
                        void *data);

/*
 * A load-balancing method (style.md, rule 11). Every function runs on the
 * worker that owns rt.
 * - init: after the shared per-server state of rt is set up, build what
 *   pick needs (a hash ring, weight ranges); pick never allocates.
 * - dispose: free what init made (may be NULL).
 * - pick: a server index not in `tried` and usable at `now` (counted in
 *   its conns), or -1 when none is. r is the request (the hash methods
 *   read the client address or evaluate the key; NULL hashes as empty).
 * - done: the outcome of a pick (exactly once per successful pick).
 */
struct sh_balancer_ops_s {
    const char *name;
    void (*init)(sh_ups_rt_t *rt);
    void (*dispose)(sh_ups_rt_t *rt);
    int (*pick)(sh_ups_rt_t *rt, uint64_t tried, uint64_t now, sh_request_t *r);
    void (*done)(sh_ups_rt_t *rt, int i, int failed, uint64_t now);
};

/* Set up (and free) one worker's state for a group; init allocates (it
 * aborts on out-of-memory), dispose frees and may be called twice. */
void sh_upstream_rt_init(sh_ups_rt_t *rt, const sh_upstream_t *conf);
void sh_upstream_rt_dispose(sh_ups_rt_t *rt);

/* Pick a server for r not in `tried` (bit i = server i tried; groups of
 * more than 64 servers reuse bits, which only weakens retry avoidance),
 * with the group's balancer. Returns the server index (its conns counted
 * until sh_upstream_done), or -1 when none is usable: the caller answers
 * 502 at once ("no live upstreams"). No allocation. */
int sh_upstream_pick(sh_ups_rt_t *rt, uint64_t tried, uint64_t now, sh_request_t *r);
/* Report the outcome of using server i (failed: a connect error, a
 * timeout or a broken response, per proxy_next_upstream). */
void sh_upstream_done(sh_ups_rt_t *rt, int i, int failed, uint64_t now);

#endif
