/* SPDX-License-Identifier: Apache-2.0 */
/*
 * limit_conn (see limit_conn.h). The per-request record of the units a
 * request holds is allocated only when it holds one; its cleanup hook
 * gives them back under each entry's stripe lock and removes a key whose
 * count falls to zero, as nginx does.
 */
#include "node/modules/limit_conn.h"

#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/modules/limit_zone.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/reqlog.h"
#include "node/pipeline/vars.h"

#define KEY_MAX 255 /* nginx's limit for a key's value */

/* A limit here: sh_limit_t with a = the number, in an sh_limit_loc_t;
 * zones are sh_limit_def_t. */

/* limit_conn_zone KEY zone=NAME:SIZE */
static int zone_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    (void)conf;
    const sh_conf_node_t *n = cf->node;
    sh_limit_main_t *m = sh_limit_main_of(cf, &sh_limit_conn_module);
    const char *a = n->args[2];
    char *name = NULL;
    size_t size = 0;
    if (n->nargs == 4 && (strcmp(n->args[3], "global") == 0 || strcmp(n->args[3], "sync") == 0))
        /* issue 13, refused on purpose (fail closed): a connection count
         * is a level that falls as well as rises, and limit_conn bounds
         * bursts of concurrency. Peers' counts arrive 100-200 ms late, so
         * every node could admit the whole remaining allowance at once (N
         * times the limit), and a failed node's connections would stay
         * counted until it is declared dead. Use a global limit_req. */
        return sh_conf_error(cf,
                             "\"%s\" in \"limit_conn_zone\" is not supported: connection counts "
                             "learned 100-200 ms late let every node admit the whole allowance "
                             "at once; use a global limit_req_zone",
                             n->args[3]);
    if (n->nargs == 4)
        return sh_conf_error(cf, "invalid parameter \"%s\"", n->args[3]);
    if (strncmp(a, "zone=", 5) != 0)
        return sh_conf_error(cf, "invalid parameter \"%s\"", a);
    int rc = sh_limit_zone_parse(cf, a, &name, &size);
    if (rc != 0)
        return rc;
    if (sh_limit_main_find(m, name) != NULL) {
        rc = sh_conf_error(cf, "limit_conn_zone \"%s\" is already bound to key \"%s\"", name,
                           sh_cv_source(sh_limit_main_find(m, name)->key));
        sh_free(name);
        return rc;
    }
    sh_cv_t *key = NULL;
    rc = sh_cv_compile(cf, n->args[1], &key);
    if (rc != 0) {
        sh_free(name);
        return rc;
    }
    sh_limit_main_add(m, name, key, sh_limit_zone_acquire("limit_conn", name, size, n->args[1]));
    return 0;
}

/* limit_conn ZONE N */
static int limit_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    sh_limit_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    int v;
    if (sh_conf_parse_int(n->args[2], &v) != 0 || v <= 0)
        return sh_conf_error(cf, "invalid number of connections \"%s\"", n->args[2]);
    if (v > 65535)
        return sh_conf_error(cf, "connection limit must be less 65536");
    return sh_limit_loc_add(cf, c, n->args[1], (uint64_t)v, 0);
}

/* ------------------------------------------------------ per request -- */

static const char *const status_names[] = {"", "PASSED", "REJECTED", "REJECTED_DRY_RUN"};
enum { ST_PASSED = 1, ST_REJECTED, ST_REJECTED_DRY_RUN };

/* The units a request holds (its context slot when it holds any; else the
 * slot holds the status as a small integer). */
typedef struct {
    int status;
    unsigned n;
    struct {
        sh_limit_zone_t *zone;
        sh_limit_id_t id;
    } held[SH_LIMITS_MAX];
} held_t;

static int status_of(const sh_request_t *r)
{
    uintptr_t v = (uintptr_t)sh_request_ctx(r, &sh_limit_conn_module);
    return v < 16 ? (int)v : ((const held_t *)v)->status;
}

static void set_status(sh_request_t *r, int st)
{
    void *v = sh_request_ctx(r, &sh_limit_conn_module);
    if ((uintptr_t)v >= 16)
        ((held_t *)v)->status = st;
    else
        sh_request_ctx(r, &sh_limit_conn_module) = (void *)(uintptr_t)st;
}

static int var_status(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    return sh_limit_status_var(out, status_names, status_of(r));
}

/* Give back every unit h holds (nginx's ngx_http_limit_conn_cleanup). */
static void release_all(held_t *h)
{
    for (unsigned i = 0; i < h->n; i++) {
        sh_limit_stripe_t *s = sh_limit_zone_lock(h->held[i].zone, &h->held[i].id);
        sh_limit_zone_entry_t *e = sh_limit_zone_find(s, &h->held[i].id, 0);
        if (e != NULL && --e->v0 == 0 && e->v1 == 0)
            sh_limit_zone_remove(s, e, 0);
        sh_limit_zone_unlock(s);
    }
    h->n = 0;
}

static void held_cleanup(sh_request_t *r, void *data)
{
    (void)r;
    release_all(data);
    sh_free(data);
}

static int reject(sh_request_t *r, const sh_limit_loc_t *c, held_t *h, const sh_limit_def_t *d)
{
    if (h != NULL)
        release_all(h);
    int st = c->dry_run ? ST_REJECTED_DRY_RUN : ST_REJECTED;
    set_status(r, st);
    sh_limit_zone_count(d->zone, c->dry_run ? SH_LIMIT_REJECTED_DRY_RUN : SH_LIMIT_REJECTED);
    return c->dry_run ? SH_PH_DECLINED : c->status;
}

static int limit_conn_handler(sh_request_t *r)
{
    if (sh_request_ctx(r, &sh_limit_conn_module) != NULL)
        return SH_PH_DECLINED; /* once per request */
    const sh_limit_loc_t *c = sh_http_loc_conf(r->loc, &sh_limit_conn_module);
    if (c == NULL || c->n == 0)
        return SH_PH_DECLINED;
    held_t *h = NULL;
    for (size_t i = 0; i < c->n; i++) {
        const sh_limit_t *l = &c->limits[i];
        size_t mark;
        size_t klen = sh_limit_key_eval(r, l->def, KEY_MAX, &mark);
        if (klen == 0)
            continue;
        const char *key = r->scratch.data + mark;
        set_status(r, ST_PASSED);
        sh_limit_id_t id;
        sh_limit_zone_hash(l->def->zone, key, klen, &id);
        r->scratch.len = mark;
        sh_limit_stripe_t *s = sh_limit_zone_lock(l->def->zone, &id);
        sh_limit_zone_entry_t *e = sh_limit_zone_find(s, &id, 1);
        if (e == NULL) {
            e = sh_limit_zone_insert(s, &id);
            if (e == NULL) {
                sh_limit_zone_unlock(s);
                sh_log(SH_LOG_ALERT, "could not allocate node in limit_conn zone \"%s\"",
                       l->def->name);
                return reject(r, c, h, l->def);
            }
        } else if (e->v0 + e->v1 >= (int64_t)l->a) {
            sh_limit_zone_unlock(s);
            sh_req_log(c->log_level, r->c, r, NULL, "limiting connections%s by zone \"%s\"",
                       c->dry_run ? ", dry run," : "", l->def->name);
            return reject(r, c, h, l->def);
        }
        e->v0++;
        sh_limit_zone_unlock(s);
        if (h == NULL) {
            h = sh_new(held_t);
            h->status = ST_PASSED;
            if (sh_request_cleanup_add(r, held_cleanup, h) != 0) {
                h->held[0].zone = l->def->zone; /* give it back at once */
                h->held[0].id = id;
                h->n = 1;
                release_all(h);
                sh_free(h);
                return 500;
            }
            sh_request_ctx(r, &sh_limit_conn_module) = h;
        }
        h->held[h->n].zone = l->def->zone;
        h->held[h->n].id = id;
        h->n++;
    }
    if (h != NULL)
        sh_limit_zone_count(h->held[h->n - 1].zone, SH_LIMIT_PASSED);
    return SH_PH_DECLINED;
}

/* ------------------------------------------------------ module -- */

static const sh_conf_cmd_t lc_cmds[] = {
    {"limit_conn_zone", SH_CTX_HTTP | SH_CONF_TAKE23, zone_set, 0, NULL},
    {"limit_conn", SH_LIMIT_LOC_CTX | SH_CONF_TAKE2, limit_set, 0, NULL},
    SH_LIMIT_LOC_CMDS("limit_conn"),
    {NULL, 0, NULL, 0, NULL}};

static int lc_preconf(sh_conf_t *cf, sh_http_main_t *m)
{
    (void)m;
    return sh_vars_define(cf, "limit_conn_status", var_status, NULL);
}

static int lc_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_limit_postconf(cf, m, &sh_limit_conn_module, limit_conn_handler);
}

static const sh_http_module_t lc_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_main = sh_limit_main_create,
    .destroy_main = sh_limit_main_destroy,
    .create_loc = sh_limit_loc_create,
    .merge_loc = sh_limit_loc_merge,
    .destroy_loc = sh_limit_loc_destroy,
    .preconfiguration = lc_preconf,
    .postconfiguration = lc_postconf,
};

sh_conf_module_t sh_limit_conn_module = {
    .name = "limit_conn",
    .cmds = lc_cmds,
    .ctx = &lc_ctx,
};
