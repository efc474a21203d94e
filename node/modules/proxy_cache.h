/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nginx's proxy_cache on the request pipeline (issue 12, "Semantics"): the
 * lookup is a precontent phase handler that answers a HIT from the store
 * (cache/cache.h), HEAD, client conditionals (304) and single ranges
 * included; the store is an early response filter that sees the upstream's
 * response before gzip and add_header and streams its body into a fill.
 * Cache lock, use_stale, revalidation and the cache status variable
 * ($upstream_cache_status) live here too. Configuration at load; the
 * handler and the filters run on the request's worker; the counters are
 * read by the cluster thread (metrics, admin API).
 */
#ifndef SH_PROXY_CACHE_H
#define SH_PROXY_CACHE_H

#include <stdio.h>

#include "core/conf.h"

extern sh_conf_module_t sh_proxy_cache_module;

/* Prometheus lines (shoal_cache_*) of every zone: the module's counters
 * (hits, misses, stale, bytes served) and the store's (fills, evictions,
 * size). Any thread. */
void sh_proxy_cache_metrics(FILE *f);

/* Every zone's counters and store figures as a JSON array text
 * (malloc'd), for `GET /v1/cache/stats` and `nodectl cache stats`. */
char *sh_proxy_cache_stats_json(void);

#endif
