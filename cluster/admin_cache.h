/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The admin API's cache operations (issue 12): `POST /v1/cache/purge` on
 * the caches (cache/cache.h) open in this process. Kept apart from admin.c
 * so the routes there stay one line each. Cluster thread (the purge blocks
 * it until the store's writer is done: a purge is one LMDB write txn).
 */
#ifndef SH_ADMIN_CACHE_H
#define SH_ADMIN_CACHE_H

#include <jansson.h>

/* Purge from the JSON object j: exactly one of "key", "prefix", "tag"
 * (strings), optional "soft" (bool) and "zone" (a keys_zone name; every
 * zone without it). Returns the HTTP status and *out: the answer
 * {"purged":N,"soft":B,"zones":[{"zone":Z,"purged":N}...]} on 200, or an
 * error text (static) in *err for 400/404/500. */
int sh_admin_cache_purge(const json_t *j, json_t **out, const char **err);

#endif
