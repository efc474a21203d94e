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

/* A request whose answer comes later (admin.c owns it): the cluster-wide
 * purge answers when every live member has applied it. */
typedef struct sh_admin_wait_s sh_admin_wait_t;
/* Answer it (out taken, or NULL and err) and free it; when the client is
 * gone, only free it. Cluster thread. */
void sh_admin_wait_reply(sh_admin_wait_t *w, int code, json_t *out, const char *err);

/* Purge from the JSON object j: exactly one of "key", "prefix", "tag"
 * (strings), optional "soft" (bool) and "zone" (a keys_zone name; every
 * zone without it). Cluster-wide through the purge channel (purge.h) when
 * it runs, unless "local": true; "async": true answers at once;
 * "timeout_ms" bounds the wait (default 5000). Returns the HTTP status and
 * *out: the answer {"purged":N,"soft":B,"zones":[{"zone":Z,"purged":N}...]}
 * (plus, cluster-wide: origin, seq, applied, not_applied, gone, complete,
 * elapsed_ms) on 200, or an error text (static) in *err for 400/404/500;
 * or 0: w answers later (sh_admin_wait_reply). */
int sh_admin_cache_purge(const json_t *j, json_t **out, const char **err, sh_admin_wait_t *w);

#endif
