/* SPDX-License-Identifier: Apache-2.0 */
/*
 * limit_conn (nginx's ngx_http_limit_conn_module): `limit_conn_zone KEY
 * zone=NAME:SIZE`, `limit_conn ZONE N`, `limit_conn_status`,
 * `limit_conn_log_level`, `limit_conn_dry_run` and `$limit_conn_status`
 * (PASSED, REJECTED, REJECTED_DRY_RUN), as a preaccess phase handler.
 *
 * What is counted is what nginx counts: requests being processed, per
 * key. A request takes one unit in each zone of its location when it
 * reaches preaccess and gives it back in its cleanup hook (when it is
 * freed, whatever ended it: a response, a client gone, a timeout), so an
 * idle keep-alive connection counts nothing, and each HTTP/2 stream counts
 * as one ("In HTTP/2 and SPDY, each concurrent request is considered a
 * separate connection"). A key at its limit rejects (limit_conn_status,
 * 503), and so does a zone with no room for a new key (nginx never evicts
 * a counted key); a rejected request gives back what it took in earlier
 * zones at once. An empty key is not counted, nor one over 255 bytes.
 *
 * Cluster merge (later `global` zones): an entry's v0 is this node's
 * count, v1 the sum of the counts the other nodes last reported for the
 * key (state-based: each report replaces that node's previous one, kept by
 * the cluster layer); the check is v0 + v1 >= N.
 */
#ifndef SH_LIMIT_CONN_H
#define SH_LIMIT_CONN_H

#include "core/conf.h"

extern sh_conf_module_t sh_limit_conn_module;

#endif
