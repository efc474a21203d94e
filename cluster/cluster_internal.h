/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What cluster.c, cluster_conf.c and admin.c share: the parsed `cluster {}`
 * block and the cluster thread's state. Everything in sh_cluster_t belongs
 * to the cluster thread, except what sh_cluster_start/stop touch before the
 * thread runs and after it ended.
 */
#ifndef SH_CLUSTER_INTERNAL_H
#define SH_CLUSTER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "cluster/cluster.h"
#include "cluster/keyring.h"
#include "cluster/keysync.h"
#include "cluster/swim.h"
#include "cluster/wire.h"

#define SH_CLUSTER_MAX_JOIN 32u
#define SH_CLUSTER_MAX_TAGS 32u

enum { SH_CLUSTER_LAN, SH_CLUSTER_WAN, SH_CLUSTER_LOCAL };

typedef struct {
    int present;            /* a cluster block was seen */
    char *name;             /* cluster name (part of the log lines) */
    char *node_name;        /* default: hostname */
    char *bind;             /* default 0.0.0.0:7946 */
    char *advertise;        /* default: bind's host; for a wildcard, memberlist's choice */
    char *advertise_auto;   /* the interface it was chosen from, or NULL (given) */
    char *admin_listen;     /* default 127.0.0.1:9901; "unix:PATH" or "/PATH"; "off" disables */
    char *admin_token_file; /* bearer token; required off loopback */
    char *admin_metrics_token_file; /* scrape-only token: /metrics and /nginx_status */
    char *admin_ssl_certificate, *admin_ssl_certificate_key; /* admin API over TLS */
    char *encrypt_key_file;
    char *key_path;         /* encrypt_key_file resolved against the conf dir */
    char *ring_path;        /* the persisted keyring: key_path + ".keyring" */
    uint8_t token_hash[32]; /* BLAKE2b-256 of the token (constant-time compare) */
    int has_token;
    uint8_t metrics_token_hash[32]; /* of the scrape-only token */
    int has_metrics_token;
    int admin_local;        /* admin_listen is loopback or a unix socket */
    const void *block_node; /* sh_conf_node_t of `cluster` (errors found at init) */
    const void *admin_node; /* of `admin_listen`, if given */
    const void *token_node, *mtoken_node, *cert_node; /* of those directives (errors) */
    char *region, *zone;
    char *join[SH_CLUSTER_MAX_JOIN];
    unsigned njoin;
    char *tag_k[SH_CLUSTER_MAX_TAGS], *tag_v[SH_CLUSTER_MAX_TAGS];
    unsigned ntags;
    int profile;
    /* knobs: unset sentinels until init_main fills them from the profile */
    uint64_t probe_interval, probe_timeout, gossip_interval, pushpull_interval;
    uint64_t gossip_to_dead, reconnect_interval, join_retry_max;
    int indirect_checks, retransmit_mult, suspicion_mult, suspicion_max_mult, gossip_nodes;
    int awareness_max, lifeguard;
    size_t mtu;
    /* filled by init_main */
    sh_swim_conf_t swim;
    uint8_t keys[SH_KEYRING_MAX_KEYS][SH_KEYRING_KEYLEN];
    unsigned nkeys;
} sh_cluster_conf_t;

#define SH_ADMIN_MAX_EVENT_SUBS 32u
#define SH_CLUSTER_REJECT_SLOTS 8u

/* Why a push-pull connection was refused (pushpull.c), a metric label each. */
enum {
    SH_PP_R_CONN_LIMIT,   /* inbound table full of authenticated exchanges */
    SH_PP_R_EVICTED,      /* closed to make room: no key proven yet */
    SH_PP_R_AUTH_TIMEOUT, /* no key proven in time */
    SH_PP_R_TIMEOUT,      /* the exchange took too long */
    SH_PP_R_BUDGET,       /* a per-peer or global buffer budget */
    SH_PP_R_TRUNCATED,    /* closed before the frame was whole */
    SH_PP_R_BAD_MAGIC,    /* the reader's reasons (ppframe.h) */
    SH_PP_R_BAD_LENGTH,
    SH_PP_R_BAD_HEADER,
    SH_PP_R_BAD_CHUNK,
    SH_PP_R_BAD_ENVELOPE,
    SH_PP_R_UNDECODABLE, /* opened, refused by the wire decoder */
    SH_PP_R_N
};
extern const char *const sh_cluster__pp_reasons[SH_PP_R_N];

/* Why an admin connection was refused (admin.c), a metric label each. */
enum {
    SH_ADMIN_R_CONN_LIMIT,     /* table full of connections past their request */
    SH_ADMIN_R_EVICTED,        /* closed to make room while reading its request */
    SH_ADMIN_R_HEADER_TIMEOUT, /* request not complete in time */
    SH_ADMIN_R_SEND_TIMEOUT,   /* response not taken in time */
    SH_ADMIN_R_TOO_LARGE,      /* 413 */
    SH_ADMIN_R_BAD_REQUEST,    /* 400 before routing */
    SH_ADMIN_R_UNAUTHORIZED,   /* 401 */
    SH_ADMIN_R_N
};
extern const char *const sh_cluster__admin_reasons[SH_ADMIN_R_N];

/* Push-pull connections (pushpull.c). */
typedef struct {
    void *head, *tail;      /* open connections, oldest first */
    unsigned n_in, n_out;   /* inbound (theirs), outbound (ours) */
    size_t buffered;        /* bytes of frames being read, all connections */
    size_t buffered_unauth; /* of which legacy frames not yet opened */
    uint64_t rejected[SH_PP_R_N];
    uint64_t legacy_in, legacy_out, fallbacks;
} sh_cluster_pp_t;

struct sh_cluster_s {
    sh_cluster_conf_t *conf;
    sh_cluster_hooks_t hooks;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_udp_t udp;
    uv_tcp_t tcp;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } admin;
    int admin_on, admin_unix;
    uv_timer_t tick;
    uv_timer_t join_timer;
    uv_timer_t stop_timer;
    uv_timer_t heartbeat; /* keeps event streams (and proxies) awake */
    uv_timer_t svc_timer; /* the services' ticks (service.c) */
    uv_async_t svc_async; /* posts and late registrations (service.c) */
    uv_async_t stop_async;
    sh_keyring_t *kr;
    sh_keysync_t *ks;
    sh_swim_t *swim;
    sh_wire_stats_t wst;
    uint64_t stop_deadline, stop_timeout;
    int stopping, joined, joins_pending, left;
    uint64_t join_backoff;
    sh_cluster_pp_t pp;
    unsigned nadmin;               /* admin connections open */
    void *admin_head, *admin_tail; /* admin connections, oldest first */
    uv_timer_t admin_timer;        /* the oldest admin deadline */
    void *admin_tls;               /* SSL_CTX of admin_ssl_certificate, or NULL */
    uint64_t admin_rejected[SH_ADMIN_R_N];
    void *admin_join;                    /* the admin join request the next push-pulls report to */
    void *subs[SH_ADMIN_MAX_EVENT_SUBS]; /* event stream connections */
    unsigned nsubs;
    uint64_t event_seq;
    uint64_t admin_requests, admin_unauthorized, admin_bad_requests, events_dropped;
    uint64_t started_unix_ms;
    /* log of rejected packets, rate limited per host (cluster.c) */
    char reject_host[SH_CLUSTER_REJECT_SLOTS][80];
    uint64_t reject_at[SH_CLUSTER_REJECT_SLOTS];
    /* the join targets: the addresses the last join round found, to tell
     * when every one of them is gone (cluster.c) */
    char **join_targets;
    unsigned njoin_targets;
    int join_round_ok, join_round_failed; /* of the current join round */
    uint8_t rbuf[SH_WIRE_MAX_UDP + 64];
    uint8_t scratch[SH_WIRE_MAX_UDP + 64];
    uint8_t sbuf[SH_WIRE_MAX_UDP + 64];
};

/* ---- cluster.c, for admin.c */
int sh_cluster__parse_addr(const char *s, struct sockaddr_storage *ss);
void sh_cluster__reschedule(sh_cluster_t *c);
/* After a leave undone by an admin join: watch the join list again. */
void sh_cluster__join_resume(sh_cluster_t *c);
uint64_t sh_cluster__wall_ms(void);

/* ---- cluster.c, for pushpull.c */
/* A join push-pull ended (ok or not): the join retry logic. */
void sh_cluster__join_done(sh_cluster_t *c, int ok);
/* "WHAT FROM rejected: no key in our keyring opens them", at most once a
 * minute per host (cluster.c). */
void sh_cluster__rejected_log(sh_cluster_t *c, const char *what, const char *from);
/* A sockaddr as "host:port" ("[v6]:port"). */
void sh_cluster__format_addr(const struct sockaddr *sa, char *out, size_t n);

/* ---- pushpull.c */
#define SH_PP_MAGIC 0x70707070u
/* The swim transport's pushpull: start a push-pull with addr. */
void sh_cluster__pushpull(void *ud, const char *addr, int kind);
/* The gossip TCP listener's connection callback. */
void sh_cluster__pp_accept(uv_stream_t *server, int status);
/* Close a push-pull connection handle (close_all). */
void sh_cluster__pp_close_handle(uv_handle_t *h);

/* ---- service.c (service.h): the services attached to this cluster */
/* Init the timer and async and become the running cluster (before the thread). */
void sh_cluster__services_start(sh_cluster_t *c);
/* Attach the registered services (cluster thread, first thing). */
void sh_cluster__services_run(sh_cluster_t *c);
/* Detach every service (main thread, after the thread ended). */
void sh_cluster__services_stop(sh_cluster_t *c);
/* A membership change, for the services' member callbacks. */
void sh_cluster__services_member(sh_cluster_t *c, const sh_swim_member_t *m, int old);
/* A service's admin GET path: 1 and *json (malloc'd, may be NULL) or 0. */
int sh_cluster__services_admin(sh_cluster_t *c, const char *path, const char *query, char **json);
/* The services' /metrics lines. */
void sh_cluster__services_metrics(sh_cluster_t *c, FILE *f);

/* ---- admin.c */
#define SH_ADMIN_MAGIC 0x61646d6eu
/* Bind the admin listener (conf->admin_listen); 0 or SH_EIO, logged. */
int sh_cluster__admin_bind(sh_cluster_t *c);
/* Close an admin connection handle (close_all). */
void sh_cluster__admin_close(uv_handle_t *h);
/* Free what admin_bind made beside the handles (the TLS context). */
void sh_cluster__admin_dispose(sh_cluster_t *c);
/* Send an event to every event stream: type, and data (reference stolen). */
void sh_cluster__event(sh_cluster_t *c, const char *type, json_t *data);
/* A push-pull of an admin join finished (req: c->admin_join at its start). */
void sh_cluster__admin_join_done(sh_cluster_t *c, void *req, int ok);

#endif
