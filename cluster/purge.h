/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The purge channel (issue 13, "Cluster-wide purge"): a purge given to any
 * node's admin API reaches every node's cache (cache/cache.h).
 *
 * - The node that takes the purge (its origin) numbers it (a per-origin
 *   sequence, increasing across restarts: max(last + 1, wall ms * 1000))
 *   with the previous one's sequence (prev) and its wall time, applies it to
 *   its own caches, sends it at once in one sealed datagram to every live
 *   member and gossips it as a backstop; each member applies it and
 *   acknowledges to the origin, which sends again (every 200 ms) to the
 *   members that have not acknowledged until they do, die or leave.
 * - Every node keeps a bounded log of the purges it applied (every origin;
 *   `cache_purge_log COUNT [TIME]`, default 10000 records and 1 hour), and
 *   the log plus, per origin, the highest sequence seen (head) is its
 *   push-pull state. A node that was away merges a peer's log (applies what
 *   it has not); when, after that, an origin's chain of sequences still has
 *   a hole (the log that would fill it was trimmed), the node drops every
 *   entry of its caches (a hard purge of the prefix ""), since what it
 *   missed is unknown.
 * - The highest contiguous sequence applied per origin is persisted in
 *   every proxy_cache_path directory (shoal-purge.state). A node restarted
 *   from its caches that was in a cluster holds its cache lookups (they go
 *   upstream as BYPASS) until its first push-pull merge, or for at most the
 *   hold time (5 s), so it obeys the purges it missed before it serves a
 *   cached byte.
 *
 * The engine (sh_pe_*) is pure: messages in and out through sh_pe_io_t, no
 * clock of its own, so the simulator (cluster/tests/sim_purge.c) runs the
 * same code. The service (sh_purge_register) binds it to a cluster service
 * (service.h, channel SH_PURGE_CHANNEL), the caches and the admin API.
 */
#ifndef SH_PURGE_H
#define SH_PURGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cluster/admin_cache.h"
#include "core/conf.h"

#define SH_PURGE_CHANNEL 6u /* 1 keyring, 3 limits, 4 health, 5 TLS ticket keys */

#define SH_PURGE_STR_MAX  4096u
#define SH_PURGE_NAME_MAX 63u

/* One purge as it travels and is logged. */
typedef struct {
    char origin[SH_PURGE_NAME_MAX + 1];
    uint64_t seq, prev; /* prev: the origin's previous sequence, 0 = none known */
    int64_t time_ms;    /* wall time at the origin */
    int kind;           /* enum sh_cache_purge_kind */
    int soft;
    char zone[SH_PURGE_NAME_MAX + 1]; /* "" = every zone */
    char *str;                        /* the key, prefix or tag (owned) */
    size_t len;
} sh_purge_rec_t;

typedef struct sh_pe_s sh_pe_t;

typedef struct {
    void *ud;
    int (*send)(void *ud, const char *to, const uint8_t *data, size_t len);
    int (*broadcast)(void *ud, const char *key, const uint8_t *data, size_t len);
    /* Apply r to this node's caches: 0, or < 0 (not applied: not acked). */
    int (*apply)(void *ud, const sh_purge_rec_t *r, uint64_t *count);
    /* A hole no log fills: drop every cached entry. */
    void (*flush)(void *ud);
    /* A purge this node issued is done (every target acknowledged, died
     * or left) or timed out (timed_out 1): see sh_pe_targets. */
    void (*done)(void *ud, void *waiter, uint64_t seq, int timed_out);
} sh_pe_io_t;

/* Counters (the engine's; the service adds the channel's). */
typedef struct {
    uint64_t issued, received, applied, duplicates, acks, retries, apply_failed;
    uint64_t flushes, malformed, caught_up; /* caught_up: applied from a push-pull */
    uint64_t lag_ms_sum, lag_count, lag_ms_max;
} sh_pe_stats_t;

sh_pe_t *sh_pe_create(const char *self, const sh_pe_io_t *io, size_t log_max, uint64_t log_ms);
void sh_pe_destroy(sh_pe_t *e);
/* Members: set the live list (names, self may be included). */
void sh_pe_set_live(sh_pe_t *e, const char *const *names, size_t n);
/* Issue a purge from this node at wall time now_ms: applies it here, sends
 * it to every live member, and calls io->done(waiter) when every one has
 * acknowledged (or at deadline_ms, timed out; 0: never times out).
 * Returns its sequence, or 0 (str too long). */
uint64_t sh_pe_issue(sh_pe_t *e, int kind, int soft, const char *zone, const char *str, size_t len,
                     int64_t now_ms, void *waiter, int64_t deadline_ms);
/* A message from member from. Returns 1 when it carried a new purge (a
 * broadcast is then re-gossiped), 0, or -1 (malformed). */
int sh_pe_recv(sh_pe_t *e, const char *from, const uint8_t *data, size_t len, int64_t now_ms);
/* Retries and deadlines; call every 50 ms or so. */
void sh_pe_tick(sh_pe_t *e, int64_t now_ms);
/* Push-pull state (malloc'd) and its merge; merge returns 0, or -1 when
 * malformed. */
int sh_pe_state(sh_pe_t *e, uint8_t **out, size_t *len);
int sh_pe_merge(sh_pe_t *e, const uint8_t *data, size_t len, int64_t now_ms);
/* The persisted sequences: a line "ORIGIN SEQ" per origin. Load before the
 * first message. */
char *sh_pe_save(const sh_pe_t *e);
void sh_pe_load(sh_pe_t *e, const char *text);
/* 1 when the persisted sequences changed since the last sh_pe_save. */
int sh_pe_dirty(const sh_pe_t *e);
/* The members of an issued purge that acknowledged / did not (names valid
 * until the next engine call); 0, or -1 when seq is not pending. */
int sh_pe_targets(sh_pe_t *e, uint64_t seq,
                  void (*cb)(void *arg, const char *name, int acked, int64_t ack_ms), void *arg);
/* Forget an issued purge's waiter (its requester left). */
void sh_pe_forget_waiter(sh_pe_t *e, void *waiter);
const sh_pe_stats_t *sh_pe_stats(const sh_pe_t *e);
size_t sh_pe_log_len(const sh_pe_t *e);
/* Per origin: name, highest contiguous applied, head, applied count. */
void sh_pe_origins(const sh_pe_t *e,
                   void (*cb)(void *arg, const char *name, uint64_t last, uint64_t head,
                              uint64_t applied),
                   void *arg);
/* 1 when a sequence from origin is known applied here. */
int sh_pe_has(const sh_pe_t *e, const char *origin, uint64_t seq);

/* ---- the service ------------------------------------------------------- */

/* Register the purge channel (once; before or after the cluster starts).
 * 0 or -1 (refused: logged). */
int sh_purge_register(void);
/* `cache_purge_log COUNT [TIME]` (http main context). */
int sh_purge_log_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf);
/* A cluster-wide purge from the admin API (admin_cache.c): 0 (w answers
 * later), an HTTP status with *out or *err, or -1 when no purge channel
 * runs (then the caller purges this node only). Cluster thread. */
int sh_purge_cluster(int kind, const char *str, size_t len, int soft, const char *zone, int async,
                     uint64_t timeout_ms, sh_admin_wait_t *w, json_t **out, const char **err);
/* 1 while cache lookups must go upstream (a restarted node before its first
 * sync). Any thread (an atomic load). */
int sh_purge_holding(void);

#endif
