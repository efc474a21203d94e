/* SPDX-License-Identifier: Apache-2.0 */
/*
 * limit_req (nginx's ngx_http_limit_req_module): `limit_req_zone KEY
 * zone=NAME:SIZE rate=Nr/s|Nr/m`, `limit_req zone=NAME [burst=N]
 * [nodelay|delay=N]`, `limit_req_status`, `limit_req_log_level`,
 * `limit_req_dry_run` and `$limit_req_status`, as a preaccess phase
 * handler. Zones are sh_limit_zone_t tables shared by every worker.
 *
 * The algorithm is nginx's leaky bucket to the millisecond, on integers:
 * a key's state is its excess in thousandths of a request and the time
 * (ms) it was last updated; a request at `now` makes
 *     excess = max(0, excess - rate * (now - last) / 1000 + 1000)
 * where rate is in thousandths of a request per second (5r/s: 5000,
 * 30r/m: 500). Above burst*1000 the request is rejected (the state stays);
 * otherwise it is stored, and the request waits
 * (excess - delay*1000) * 1000 / rate ms when that is positive (nodelay:
 * never). A key's first request is free (excess 0). With several
 * limit_req at one level every zone is looked at in order; the first that
 * rejects stops (what earlier zones looked at is left as it was); if none
 * rejects, earlier zones are accounted too and the request waits for the
 * longest of their delays. The functions below are that arithmetic,
 * pure: state + now in, decision out (tests drive them on virtual time).
 *
 * Cluster merge (the later `global` zones): a node sends, per key, the
 * thousandths it added to excess since its last report (its accepted
 * requests * 1000) with the time; the receiver drains its entry to that
 * time and adds the delta (sh_limit_req_merge), which is exactly what
 * the requests would have done had they come to it. Deltas commute, so
 * nodes converge whatever the order of reports.
 */
#ifndef SH_LIMIT_REQ_H
#define SH_LIMIT_REQ_H

#include <stdint.h>

#include "core/conf.h"

extern sh_conf_module_t sh_limit_req_module;

/* A key's state (the v0, v1 of its zone entry). last is
 * SH_LIMIT_REQ_NEVER for an entry made by a lookup that was not
 * accounted yet (nginx's last = 0 on a clock of ms since boot: it drains
 * to nothing). */
#define SH_LIMIT_REQ_NEVER INT64_MIN
typedef struct {
    int64_t excess; /* thousandths of a request */
    int64_t last;   /* ms */
} sh_limit_req_state_t;

/* The excess a request at now makes (before the burst check). */
int64_t sh_limit_req_excess(const sh_limit_req_state_t *st, int64_t now, uint64_t rate);

/* Results of one zone's lookup (nginx's NGX_OK, NGX_AGAIN, NGX_BUSY). */
enum { SH_LIMIT_REQ_OK = 0, SH_LIMIT_REQ_AGAIN, SH_LIMIT_REQ_BUSY };

/* nginx's lookup on an existing entry: *excess gets the new excess;
 * BUSY above burst (thousandths; the state is unchanged), else the state
 * is stored when account is set (OK), or left for the account step
 * (AGAIN). */
int sh_limit_req_lookup(sh_limit_req_state_t *st, int64_t now, uint64_t rate, uint64_t burst,
                        int account, int64_t *excess);
/* The account step of a zone looked at with AGAIN: store the excess of
 * now and return it. */
int64_t sh_limit_req_account(sh_limit_req_state_t *st, int64_t now, uint64_t rate);
/* The delay (ms) of an accepted request: 0 when excess <= delay
 * (thousandths). */
uint64_t sh_limit_req_delay(int64_t excess, uint64_t delay, uint64_t rate);
/* Merge a remote node's delta (thousandths added at time at). */
void sh_limit_req_merge(sh_limit_req_state_t *st, int64_t at, int64_t delta, uint64_t rate);

#endif
