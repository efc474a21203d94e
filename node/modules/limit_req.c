/* SPDX-License-Identifier: Apache-2.0 */
/*
 * limit_req (see limit_req.h): the directives, the pure arithmetic, and the
 * preaccess handler that applies a location's limits with its zones'
 * stripes locked one at a time. A delayed request is paused with a libuv
 * timer in its context slot; its cleanup hook closes the timer, so a
 * client that leaves while it waits takes nothing with it.
 */
#include "node/modules/limit_req.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/modules/limit_global.h"
#include "node/modules/limit_zone.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/reqlog.h"
#include "node/pipeline/vars.h"

#define KEY_MAX    65535 /* nginx's limit for a key's value */
#define EXPIRE_AGE 60000 /* ms: nginx expires drained states this old */
#define NODELAY    INT64_MAX

/* ------------------------------------------------------ arithmetic -- */

/* nginx's elapsed time: a clock step back of up to a minute counts 0,
 * more counts 1 ms; a state never accounted drains completely. */
static int64_t elapsed(int64_t last, int64_t now)
{
    if (last == SH_LIMIT_REQ_NEVER)
        return INT64_MAX;
    int64_t ms = now - last;
    if (ms < -60000)
        ms = 1;
    else if (ms < 0)
        ms = 0;
    return ms;
}

/* excess - rate * ms / 1000, saturating where the product would overflow
 * (the result is far below zero then). */
static int64_t drain(int64_t excess, int64_t ms, uint64_t rate)
{
    if (ms > 0 && (uint64_t)ms > (uint64_t)INT64_MAX / 2 / rate)
        return INT64_MIN / 2;
    return excess - (int64_t)(rate * (uint64_t)ms / 1000);
}

int64_t sh_limit_req_excess(const sh_limit_req_state_t *st, int64_t now, uint64_t rate)
{
    int64_t e = drain(st->excess, elapsed(st->last, now), rate) + 1000;
    return e < 0 ? 0 : e;
}

int sh_limit_req_lookup(sh_limit_req_state_t *st, int64_t now, uint64_t rate, uint64_t burst,
                        int account, int64_t *excess)
{
    int64_t ms = elapsed(st->last, now);
    int64_t e = sh_limit_req_excess(st, now, rate);
    *excess = e;
    if ((uint64_t)e > burst)
        return SH_LIMIT_REQ_BUSY;
    if (!account)
        return SH_LIMIT_REQ_AGAIN;
    st->excess = e;
    if (ms != 0)
        st->last = now;
    return SH_LIMIT_REQ_OK;
}

int64_t sh_limit_req_account(sh_limit_req_state_t *st, int64_t now, uint64_t rate)
{
    int64_t ms = elapsed(st->last, now);
    int64_t e = sh_limit_req_excess(st, now, rate);
    st->excess = e;
    if (ms != 0)
        st->last = now;
    return e;
}

uint64_t sh_limit_req_delay(int64_t excess, uint64_t delay, uint64_t rate)
{
    if ((uint64_t)excess <= delay)
        return 0;
    return ((uint64_t)excess - delay) * 1000 / rate;
}

void sh_limit_req_merge(sh_limit_req_state_t *st, int64_t at, int64_t delta, uint64_t rate)
{
    if (st->last == SH_LIMIT_REQ_NEVER || at > st->last) {
        int64_t e = st->last == SH_LIMIT_REQ_NEVER ? 0 : drain(st->excess, at - st->last, rate);
        st->excess = (e < 0 ? 0 : e) + delta;
        st->last = at;
    } else {
        st->excess += delta; /* an older report: what it drained is already drained here */
    }
}

/* ------------------------------------------------------ configuration -- */

/* A limit here: sh_limit_t with a = burst, b = delay (thousandths;
 * NODELAY), in an sh_limit_loc_t; zones are sh_limit_def_t. */

/* limit_req_zone KEY zone=NAME:SIZE rate=Nr/s|Nr/m */
static int zone_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    (void)conf;
    const sh_conf_node_t *n = cf->node;
    sh_limit_main_t *m = sh_limit_main_of(cf, &sh_limit_req_module);
    char *name = NULL;
    size_t size = 0;
    uint64_t rate = 0;
    const char *rate_text = NULL;
    int rc = 0, global = 0;
    for (unsigned i = 2; i < n->nargs && rc == 0; i++) {
        const char *a = n->args[i];
        if (strncmp(a, "zone=", 5) == 0) {
            sh_free(name);
            name = NULL;
            rc = sh_limit_zone_parse(cf, a, &name, &size);
        } else if (strncmp(a, "rate=", 5) == 0) {
            size_t len = strlen(a);
            unsigned scale = 1;
            if (len > 8 && strcmp(a + len - 3, "r/s") == 0) {
                len -= 3;
            } else if (len > 8 && strcmp(a + len - 3, "r/m") == 0) {
                scale = 60;
                len -= 3;
            }
            char num[24];
            int r = 0;
            if (len - 5 == 0 || len - 5 >= sizeof(num)) {
                r = -1;
            } else {
                memcpy(num, a + 5, len - 5);
                num[len - 5] = '\0';
                r = sh_conf_parse_int(num, &(int){0});
                if (r == 0)
                    rate = strtoull(num, NULL, 10);
            }
            if (r != 0 || rate == 0)
                rc = sh_conf_error(cf, "invalid rate \"%s\"", a);
            rate = rate * 1000 / scale;
            rate_text = a;
        } else if (strcmp(a, "sync") == 0 || strcmp(a, "global") == 0) {
            /* NGINX Plus's word and ours: the rate holds for the cluster */
            global = 1;
        } else {
            rc = sh_conf_error(cf, "invalid parameter \"%s\"", a);
        }
    }
    if (rc == 0 && name == NULL)
        rc = sh_conf_error(cf, "\"%s\" must have \"zone\" parameter", n->args[0]);
    if (rc == 0 && rate == 0)
        rc = sh_conf_error(cf, "invalid rate \"\"");
    if (rc == 0 && sh_limit_main_find(m, name) != NULL)
        rc = sh_conf_error(cf, "limit_req_zone \"%s\" is already bound to key \"%s\"", name,
                           sh_cv_source(sh_limit_main_find(m, name)->key));
    sh_cv_t *key = NULL;
    if (rc == 0)
        rc = sh_cv_compile(cf, n->args[1], &key);
    if (rc != 0) {
        sh_free(name);
        return rc;
    }
    size_t dl = strlen(n->args[1]) + strlen(rate_text) + 10;
    char *def = sh_malloc(dl);
    /* " global" in the definition: turning it on or off makes a new zone */
    snprintf(def, dl, "%s %s%s", n->args[1], rate_text, global ? " global" : "");
    sh_limit_def_t *d =
        sh_limit_main_add(m, name, key, sh_limit_zone_acquire("limit_req", name, size, def));
    d->rate = rate;
    sh_free(def);
    if (global) {
        sh_limit_zone_set_global(d->zone, rate);
        sh_limit_global_register();
    }
    return 0;
}

/* limit_req zone=NAME [burst=N] [nodelay | delay=N] */
static int limit_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    sh_limit_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    const char *zone = NULL;
    int burst = 0, delay = 0, nodelay = 0;
    for (unsigned i = 1; i < n->nargs; i++) {
        const char *a = n->args[i];
        if (strncmp(a, "zone=", 5) == 0) {
            zone = a + 5;
        } else if (strncmp(a, "burst=", 6) == 0) {
            if (sh_conf_parse_int(a + 6, &burst) != 0 || burst <= 0)
                return sh_conf_error(cf, "invalid burst value \"%s\"", a);
        } else if (strncmp(a, "delay=", 6) == 0) {
            if (sh_conf_parse_int(a + 6, &delay) != 0 || delay <= 0)
                return sh_conf_error(cf, "invalid delay value \"%s\"", a);
            nodelay = 0;
        } else if (strcmp(a, "nodelay") == 0) {
            nodelay = 1;
        } else {
            return sh_conf_error(cf, "invalid parameter \"%s\"", a);
        }
    }
    if (zone == NULL)
        return sh_conf_error(cf, "\"%s\" must have \"zone\" parameter", n->args[0]);
    return sh_limit_loc_add(cf, c, zone, (uint64_t)burst * 1000,
                            nodelay ? NODELAY : (uint64_t)delay * 1000);
}

/* ------------------------------------------------------ per request -- */

/* $limit_req_status values (nginx's order) */
static const char *const status_names[] = {"",         "PASSED",          "DELAYED",
                                           "REJECTED", "DELAYED_DRY_RUN", "REJECTED_DRY_RUN"};
enum { ST_PASSED = 1, ST_DELAYED, ST_REJECTED, ST_DELAYED_DRY_RUN, ST_REJECTED_DRY_RUN };
static const int status_result[] = {0,
                                    SH_LIMIT_PASSED,
                                    SH_LIMIT_DELAYED,
                                    SH_LIMIT_REJECTED,
                                    SH_LIMIT_DELAYED_DRY_RUN,
                                    SH_LIMIT_REJECTED_DRY_RUN};

/* A delayed request's timer (the context slot then points here; else the
 * slot holds the status as a small integer). */
typedef struct {
    uv_timer_t timer;
    sh_request_t *r;
} delay_t;

static int status_of(const sh_request_t *r)
{
    uintptr_t v = (uintptr_t)sh_request_ctx(r, &sh_limit_req_module);
    return v == 0 ? 0 : v < 16 ? (int)v : ST_DELAYED;
}

static void set_status(sh_request_t *r, int st)
{
    sh_request_ctx(r, &sh_limit_req_module) = (void *)(uintptr_t)st;
}

static int var_status(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    return sh_limit_status_var(out, status_names, status_of(r));
}

static void delay_closed(uv_handle_t *h)
{
    sh_free(container_of((uv_timer_t *)h, delay_t, timer));
}

static void delay_cleanup(sh_request_t *r, void *data)
{
    (void)r;
    delay_t *d = data;
    uv_close((uv_handle_t *)&d->timer, delay_closed);
}

static void delay_done(uv_timer_t *t)
{
    delay_t *d = container_of(t, delay_t, timer);
    sh_phase_resume(d->r);
}

/* What one zone's lookup left for the account step. */
typedef struct {
    sh_limit_zone_entry_t *e; /* pinned */
    sh_limit_id_t id;
} looked_t;

/* nginx's expire: n == 1 removes up to two drained states a minute old
 * from the LRU tail; n == 0 first removes the oldest whatever it holds. */
static void expire(sh_limit_stripe_t *s, int64_t now, uint64_t rate, int n)
{
    while (n < 3) {
        sh_limit_zone_entry_t *e = sh_limit_zone_oldest(s);
        if (e == NULL || e->pin != 0)
            return;
        int forced = n == 0;
        if (n++ != 0) {
            if (e->v1 != SH_LIMIT_REQ_NEVER) {
                int64_t ms = llabs(now - e->v1);
                if (ms < EXPIRE_AGE || drain(e->v0, ms, rate) > 0)
                    return;
            }
        }
        sh_limit_zone_remove(s, e, forced);
    }
}

/* One zone: SH_LIMIT_REQ_*, or -1 when no state could be allocated. */
/* The rate a zone admits now: a global zone's share while degraded. */
static uint64_t rate_of(const sh_limit_def_t *d)
{
    return sh_limit_zone_is_global(d->zone) ? sh_limit_zone_rate_now(d->zone) : d->rate;
}

static int lookup(const sh_limit_t *l, looked_t *lk, int64_t now, int account, int64_t *excess,
                  const char *key, size_t klen)
{
    const sh_limit_def_t *d = l->def;
    uint64_t rate = rate_of(d);
    sh_limit_stripe_t *s = sh_limit_zone_lock(d->zone, &lk->id);
    sh_limit_zone_entry_t *e = sh_limit_zone_find(s, &lk->id, 1);
    int rc;
    if (e != NULL) {
        sh_limit_req_state_t st = {e->v0, e->v1};
        rc = sh_limit_req_lookup(&st, now, rate, l->a, account, excess);
        e->v0 = st.excess;
        e->v1 = st.last;
    } else {
        *excess = 0;
        expire(s, now, d->rate, 1);
        e = sh_limit_zone_insert(s, &lk->id);
        if (e == NULL) {
            expire(s, now, d->rate, 0);
            e = sh_limit_zone_insert(s, &lk->id);
        }
        if (e == NULL) {
            sh_limit_zone_unlock(s);
            sh_log(SH_LOG_ALERT, "could not allocate node in limit_req zone \"%s\"", d->name);
            return -1;
        }
        e->v0 = 0;
        e->v1 = account ? now : SH_LIMIT_REQ_NEVER;
        rc = account ? SH_LIMIT_REQ_OK : SH_LIMIT_REQ_AGAIN;
    }
    if (rc == SH_LIMIT_REQ_OK || rc == SH_LIMIT_REQ_AGAIN) {
        /* global zones: a key's text once per tick, for nodectl limits */
        if (sh_limit_zone_is_global(d->zone) && sh_limit_zone_pending(s, e) == 0)
            sh_limit_zone_sample(s, e->h0, key, klen);
        if (rc == SH_LIMIT_REQ_OK)
            sh_limit_zone_mark(s, e, 1); /* for the peers */
    }
    if (rc == SH_LIMIT_REQ_AGAIN) {
        e->pin++;
        lk->e = e;
    }
    sh_limit_zone_unlock(s);
    return rc;
}

/* Unpin what zones 0..n-1 looked at (nginx's ngx_http_limit_req_unlock):
 * their states were not changed. */
static void unlock_looked(const sh_limit_t *limits, looked_t *lk, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lk[i].e != NULL) {
            sh_limit_stripe_t *s = sh_limit_zone_lock(limits[i].def->zone, &lk[i].id);
            lk[i].e->pin--;
            sh_limit_zone_unlock(s);
            lk[i].e = NULL;
        }
}

static int limit_req_handler(sh_request_t *r)
{
    if (sh_request_ctx(r, &sh_limit_req_module) != NULL)
        return SH_PH_DECLINED; /* once per request; and after its delay */
    const sh_limit_loc_t *c = sh_http_loc_conf(r->loc, &sh_limit_req_module);
    if (c == NULL || c->n == 0)
        return SH_PH_DECLINED;
    int64_t now = (int64_t)sh_worker_now(r->w);
    looked_t lk[SH_LIMITS_MAX];
    memset(lk, 0, sizeof(lk[0]) * c->n);
    int rc = -2; /* every key empty: nginx declines without a status */
    int64_t excess = 0;
    size_t n;
    const sh_limit_t *limit = NULL;
    for (n = 0; n < c->n; n++) {
        limit = &c->limits[n];
        size_t mark;
        size_t klen = sh_limit_key_eval(r, limit->def, KEY_MAX, &mark);
        if (klen == 0)
            continue;
        const char *key = r->scratch.data + mark;
        sh_limit_zone_hash(limit->def->zone, key, klen, &lk[n].id);
        rc = lookup(limit, &lk[n], now, n == c->n - 1, &excess, key, klen);
        r->scratch.len = mark;
        if (rc != SH_LIMIT_REQ_AGAIN)
            break;
    }
    if (rc == -2)
        return SH_PH_DECLINED;
    if (rc == SH_LIMIT_REQ_BUSY || rc == -1) {
        if (rc == SH_LIMIT_REQ_BUSY)
            sh_req_log(c->log_level, r->c, r, NULL,
                       "limiting requests%s, excess: %lld.%03lld by zone \"%s\"",
                       c->dry_run ? ", dry run" : "", (long long)(excess / 1000),
                       (long long)(excess % 1000), limit->def->name);
        unlock_looked(c->limits, lk, n);
        int st = c->dry_run ? ST_REJECTED_DRY_RUN : ST_REJECTED;
        set_status(r, st);
        sh_limit_zone_count(limit->def->zone, status_result[st]);
        return c->dry_run ? SH_PH_DECLINED : c->status;
    }
    if (rc == SH_LIMIT_REQ_AGAIN) { /* the last key was empty */
        excess = 0;
        n = c->n;
    }
    /* nginx's ngx_http_limit_req_account: the zones before the one that
     * accounted itself, from the last back; the longest delay wins */
    uint64_t max_delay = sh_limit_req_delay(excess, limit->b, rate_of(limit->def));
    while (n-- > 0) {
        looked_t *x = &lk[n];
        if (x->e == NULL)
            continue;
        const sh_limit_t *l = &c->limits[n];
        sh_limit_stripe_t *s = sh_limit_zone_lock(l->def->zone, &x->id);
        sh_limit_req_state_t st = {x->e->v0, x->e->v1};
        uint64_t rate = rate_of(l->def);
        int64_t e = sh_limit_req_account(&st, now, rate);
        x->e->v0 = st.excess;
        x->e->v1 = st.last;
        x->e->pin--;
        sh_limit_zone_mark(s, x->e, 1);
        sh_limit_zone_unlock(s);
        x->e = NULL;
        uint64_t d = sh_limit_req_delay(e, l->b, rate);
        if (d > max_delay) {
            max_delay = d;
            excess = e;
            limit = l;
        }
    }
    if (max_delay == 0) {
        set_status(r, ST_PASSED);
        sh_limit_zone_count(limit->def->zone, SH_LIMIT_PASSED);
        return SH_PH_DECLINED;
    }
    sh_req_log(c->log_level == SH_LOG_INFO ? SH_LOG_INFO : c->log_level + 1, r->c, r, NULL,
               "delaying request%s, excess: %lld.%03lld, by zone \"%s\"",
               c->dry_run ? ", dry run" : "", (long long)(excess / 1000),
               (long long)(excess % 1000), limit->def->name);
    if (c->dry_run) {
        set_status(r, ST_DELAYED_DRY_RUN);
        sh_limit_zone_count(limit->def->zone, SH_LIMIT_DELAYED_DRY_RUN);
        return SH_PH_DECLINED;
    }
    sh_limit_zone_count(limit->def->zone, SH_LIMIT_DELAYED);
    delay_t *d = sh_new(delay_t);
    d->r = r;
    uv_timer_init(&r->w->loop, &d->timer);
    if (sh_request_cleanup_add(r, delay_cleanup, d) != 0) {
        uv_close((uv_handle_t *)&d->timer, delay_closed);
        return 500;
    }
    sh_request_ctx(r, &sh_limit_req_module) = d;
    uv_timer_start(&d->timer, delay_done, max_delay, 0);
    return SH_PH_PAUSE;
}

/* ------------------------------------------------------ module -- */

static const sh_conf_cmd_t lr_cmds[] = {
    {"limit_req_zone", SH_CTX_HTTP | SH_CONF_TAKE34, zone_set, 0, NULL},
    {"limit_req", SH_LIMIT_LOC_CTX | SH_CONF_TAKE123, limit_set, 0, NULL},
    SH_LIMIT_LOC_CMDS("limit_req"),
    {NULL, 0, NULL, 0, NULL}};

static int lr_preconf(sh_conf_t *cf, sh_http_main_t *m)
{
    (void)m;
    return sh_vars_define(cf, "limit_req_status", var_status, NULL);
}

static int lr_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    /* the cluster side of global zones, and GET /v1/limits even with none */
    sh_limit_global_register();
    return sh_limit_postconf(cf, m, &sh_limit_req_module, limit_req_handler);
}

static const sh_http_module_t lr_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_main = sh_limit_main_create,
    .destroy_main = sh_limit_main_destroy,
    .create_loc = sh_limit_loc_create,
    .merge_loc = sh_limit_loc_merge,
    .destroy_loc = sh_limit_loc_destroy,
    .preconfiguration = lr_preconf,
    .postconfiguration = lr_postconf,
};

sh_conf_module_t sh_limit_req_module = {
    .name = "limit_req",
    .cmds = lr_cmds,
    .ctx = &lr_ctx,
};
