/* SPDX-License-Identifier: Apache-2.0 */
/*
 * POST /v1/cache/purge: a purge by key, prefix or tag on this node's
 * caches, through the store's library call (sh_cache_purge), which another
 * module (the cluster-wide invalidation of a later issue) calls the same
 * way. Cluster thread.
 */
#include "cluster/admin_cache.h"

#include <string.h>

#include "cluster/purge.h"

#include "cache/cache.h"
#include "core/err.h"
#include "core/log.h"

#define MAX_ZONES 64

typedef struct {
    char names[MAX_ZONES][64];
    size_t n;
} zones_t;

static void collect(sh_cache_t *c, void *arg)
{
    zones_t *z = arg;
    if (z->n < MAX_ZONES)
        snprintf(z->names[z->n++], sizeof(z->names[0]), "%s", sh_cache_zone(c));
}

int sh_admin_cache_purge(const json_t *j, json_t **out, const char **err, sh_admin_wait_t *w)
{
    static const struct {
        const char *field;
        enum sh_cache_purge_kind kind;
    } kinds[] = {{"key", SH_CACHE_PURGE_KEY},
                 {"prefix", SH_CACHE_PURGE_PREFIX},
                 {"tag", SH_CACHE_PURGE_TAG}};
    const char *str = NULL;
    enum sh_cache_purge_kind kind = SH_CACHE_PURGE_KEY;
    int given = 0;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        const json_t *v = json_object_get(j, kinds[i].field);
        if (v == NULL)
            continue;
        if (!json_is_string(v)) {
            *err = "\"key\", \"prefix\" and \"tag\" are strings";
            return 400;
        }
        str = json_string_value(v);
        kind = kinds[i].kind;
        given++;
    }
    if (given != 1) {
        *err = "give exactly one of \"key\", \"prefix\" or \"tag\"";
        return 400;
    }
    size_t len = strlen(str);
    if (len == 0 && kind != SH_CACHE_PURGE_PREFIX) {
        *err = "an empty key or tag";
        return 400;
    }
    const json_t *s = json_object_get(j, "soft");
    if (s != NULL && !json_is_boolean(s)) {
        *err = "\"soft\" is a boolean";
        return 400;
    }
    int soft = s != NULL && json_is_true(s);
    const json_t *zj = json_object_get(j, "zone");
    if (zj != NULL && !json_is_string(zj)) {
        *err = "\"zone\" is a string";
        return 400;
    }
    static const char *const bools[] = {"local", "async"};
    int flag[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        const json_t *v = json_object_get(j, bools[i]);
        if (v != NULL && !json_is_boolean(v)) {
            *err = "\"local\" and \"async\" are booleans";
            return 400;
        }
        flag[i] = v != NULL && json_is_true(v);
    }
    const json_t *tj = json_object_get(j, "timeout_ms");
    if (tj != NULL && (!json_is_integer(tj) || json_integer_value(tj) <= 0)) {
        *err = "\"timeout_ms\" is a positive integer";
        return 400;
    }
    if (!flag[0]) {
        int code =
            sh_purge_cluster((int)kind, str, len, soft, zj ? json_string_value(zj) : NULL, flag[1],
                             tj ? (uint64_t)json_integer_value(tj) : 0, w, out, err);
        if (code >= 0)
            return code;
        /* no purge channel here (no cluster): this node only */
    }
    zones_t z = {.n = 0};
    sh_cache_each(collect, &z);
    json_t *arr = json_array();
    uint64_t total = 0;
    int found = 0;
    for (size_t i = 0; i < z.n; i++) {
        if (zj != NULL && strcmp(json_string_value(zj), z.names[i]) != 0)
            continue;
        sh_cache_t *c = sh_cache_find(z.names[i]);
        if (c == NULL)
            continue;
        found = 1;
        uint64_t n = 0;
        int rc = sh_cache_purge(c, kind, str, len, soft, &n);
        sh_cache_release(c);
        if (rc != 0) {
            json_decref(arr);
            sh_log_err("cache: purge in zone \"%s\" failed: %s", z.names[i], sh_strerror(rc));
            *err = "the purge failed (see the node's error log)";
            return 500;
        }
        total += n;
        json_array_append_new(arr,
                              json_pack("{s:s,s:I}", "zone", z.names[i], "purged", (json_int_t)n));
    }
    if (zj != NULL && !found) {
        json_decref(arr);
        *err = "no such cache zone";
        return 404;
    }
    sh_log_notice("cache: purged %llu entries by %s \"%s\"%s", (unsigned long long)total,
                  kind == SH_CACHE_PURGE_KEY      ? "key"
                  : kind == SH_CACHE_PURGE_PREFIX ? "prefix"
                                                  : "tag",
                  str, soft ? " (soft)" : "");
    *out = json_pack("{s:I,s:b,s:o}", "purged", (json_int_t)total, "soft", soft, "zones", arr);
    return 200;
}
