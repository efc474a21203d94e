/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Active health checks and the node's (and the cluster's) view of each
 * upstream server's health (issue 13).
 *
 * Configuration, as NGINX Plus's ngx_http_upstream_hc_module:
 *   health_check [interval=5s] [jitter=0] [fails=1] [passes=1] [uri=/]
 *                [match=NAME] [port=N] [mandatory [persistent]] [type=http];
 * in a location whose proxy_pass names an upstream group, and
 *   match NAME { status ...; header ...; body ~ ...; }   (health_match.h)
 * at the http level.
 *
 * The registry. Every server of every upstream group has one entry
 * (sh_hc_peer_t), found by group name and server address, process-wide:
 * a reload that keeps a server keeps its entry and its health, as NGINX
 * Plus keeps a server's state across a reload. sh_ups_server_t.hc points
 * at it; the balancers skip a server while sh_hc_out() says so (atomics,
 * read by every worker without a lock).
 *
 * The probes run on one loop thread of their own (sh_health_start): a
 * non-blocking HTTP/1.0 GET with Connection: close per due check, timed
 * out after the interval; `fails` failures in a row mark the server
 * failing, `passes` passes in a row healthy again. With `mandatory` a
 * server (new, not kept over a reload) is out until its first pass.
 *
 * The cluster (health_gossip.c). Each node publishes its observations
 * (active results of the servers it probes, and its passive failures:
 * nginx's max_fails rule) on a health channel; a server is out
 * cluster-wide when a quorum of its observers see it failing. Probing is
 * spread: each server is probed by `probers` nodes chosen by rendezvous
 * hashing over the live members, so the checks per backend do not grow
 * with the cluster. A node whose own probes fail takes the server out for
 * itself only (a bad link of its own), as its passive health does.
 */
#ifndef SH_HEALTH_H
#define SH_HEALTH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/buf.h"
#include "core/conf.h"

typedef struct sh_hc_peer_s sh_hc_peer_t;

extern sh_conf_module_t sh_health_module;

/* Whether health checks (local or cluster-wide) take the server out. Any
 * thread. NULL: never. */
int sh_hc_out(const sh_hc_peer_t *p);

/* A worker's passive health took the server out until now + fail_timeout
 * (nginx's max_fails rule, upstream.c). Any thread; no lock. */
void sh_hc_passive_down(sh_hc_peer_t *p, uint64_t fail_timeout_ms);

/* The `health_check` parameters beyond NGINX Plus's: probers=N (nodes
 * probing each server, default SH_HC_PROBERS) and quorum=N (failing
 * observers that take a server out cluster-wide; default a majority of
 * the probers). */

/* Start (and stop) the probe thread. Main thread of the node; start after
 * the first configuration is loaded, stop before exit. */
int sh_health_start(void);
void sh_health_stop(void);

/* The server's health as a JSON object (the "health" member of a server
 * in /v1/upstreams): local and cluster state, probers, observations. */
void sh_hc_json(const sh_hc_peer_t *p, sh_buf_t *b);

/* Every server's health as a JSON array (GET /v1/health): malloc'd text,
 * freed with free(). */
char *sh_health_json_all(void);

/* Prometheus lines of every checked server (/metrics). Any thread. */
void sh_health_metrics(FILE *f);

/* ---- for the cluster side (health_gossip.c); all under the registry lock */

#define SH_HC_MAX_OBS 16 /* observers remembered per server */

enum { SH_HC_UNKNOWN = 0, SH_HC_UP = 1, SH_HC_DOWN = 2 };

/* One node's word on one server. */
typedef struct {
    char node[64];
    uint8_t active;  /* result of its probes: SH_HC_* */
    uint8_t passive; /* 1: its passive health has the server out */
    uint8_t prober;  /* it says it probes the server */
    uint64_t seen;   /* local monotonic ms of the last word */
} sh_hc_obs_t;

#define SH_HC_PROBERS 3 /* default probers= of health_check */

/* This node's name in the cluster (set when the cluster side starts). */
void sh_health_set_self(const char *self);

/* The live members (names; self included), for the rendezvous choice of
 * probers. Called by the cluster side when membership changes. */
void sh_health_set_members(const char *const *names, size_t n);

/* Encode this node's observations of the servers of `part` of `parts`
 * (key hash mod parts; 0 of 1: all), with its name (sh_malloc'd, *len);
 * *version is bumped by each change to publish. */
uint8_t *sh_health_encode_local(unsigned part, unsigned parts, size_t *len, uint64_t *version);
/* Merge a node's observations (as encoded; the origin is in the
 * message); 1 if it was new, 0 if known or older, SH_EPARSE when
 * malformed. */
int sh_health_merge_remote(const uint8_t *data, size_t len);
/* The version of this node's observations (bumped by each change). */
uint64_t sh_health_version(void);
/* Forget what a node said (it left or died). */
void sh_health_forget(const char *node);

/* A health change callback (the SSE stream): server, new state text. Set
 * by the cluster side; called on the probe thread or the cluster thread. */
void sh_health_set_notify(void (*fn)(void *ud, const char *ups, const char *server,
                                     const char *state, const char *why),
                          void *ud);

/* Pure helpers (unit tests). */
uint64_t sh_hc_rendezvous(uint64_t key_hash, const char *node);
uint64_t sh_hc_hash(const char *s, size_t len);

#endif
