/* SPDX-License-Identifier: Apache-2.0 */
/* `expires` (see expires.h). */
#include "node/modules/expires.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/alloc.h"
#include "core/err.h"
#include "http/httpdate.h"
#include "node/pipeline/node.h"

enum {
    EXP_UNSET = -1,
    EXP_OFF = 0,
    EXP_EPOCH,
    EXP_MAX,
    EXP_ACCESS,   /* from the request's time */
    EXP_MODIFIED, /* from the response's Last-Modified */
    EXP_DAILY     /* @time-of-day */
};

typedef struct {
    int type;
    int64_t time; /* seconds; negative for "-1h" */
} expires_loc_t;

static void *expires_create_loc(void)
{
    expires_loc_t *c = sh_new(expires_loc_t);
    c->type = EXP_UNSET;
    return c;
}

static void expires_destroy_loc(void *conf)
{
    sh_free(conf);
}

static int expires_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    expires_loc_t *p = parent, *c = conf;
    (void)cf;
    if (c->type == EXP_UNSET) {
        c->type = p->type == EXP_UNSET ? EXP_OFF : p->type;
        c->time = p->time;
    }
    return 0;
}

/* nginx's ngx_http_parse_expires() for one value. */
static int parse_value(sh_conf_t *cf, const char *v, expires_loc_t *c)
{
    if (c->type != EXP_MODIFIED) {
        if (strcmp(v, "epoch") == 0) {
            c->type = EXP_EPOCH;
            return 0;
        }
        if (strcmp(v, "max") == 0) {
            c->type = EXP_MAX;
            return 0;
        }
        if (strcmp(v, "off") == 0) {
            c->type = EXP_OFF;
            return 0;
        }
    }
    if (strchr(v, '$') != NULL) /* nginx 1.7.9+ takes variables: not yet here */
        return sh_conf_error(cf, "variables in \"expires\" are not supported");
    int minus = 0;
    if (v[0] == '@') {
        if (c->type == EXP_MODIFIED)
            return sh_conf_error(cf, "daily time cannot be used with \"modified\" parameter");
        c->type = EXP_DAILY;
        v++;
    } else if (v[0] == '+') {
        v++;
    } else if (v[0] == '-') {
        minus = 1;
        v++;
    }
    uint64_t ms;
    /* nginx parses seconds here: "ms" is not a unit of `expires` */
    if (strstr(v, "ms") != NULL || sh_conf_parse_msec(v, &ms) != 0)
        return sh_conf_error(cf, "invalid value \"%s\" in \"expires\" directive",
                             cf->node->args[cf->node->nargs - 1]);
    c->time = (int64_t)(ms / 1000);
    if (c->type == EXP_DAILY && c->time > 24 * 60 * 60)
        return sh_conf_error(cf, "daily time value must be less than 24 hours");
    if (minus)
        c->time = -c->time;
    return 0;
}

static int expires_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    expires_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (c->type != EXP_UNSET)
        return sh_conf_error(cf, "\"expires\" directive is duplicate");
    if (n->nargs == 2) {
        c->type = EXP_ACCESS;
        return parse_value(cf, n->args[1], c);
    }
    if (strcmp(n->args[1], "modified") != 0)
        return sh_conf_error(cf, "invalid value \"%s\" in \"expires\" directive", n->args[1]);
    c->type = EXP_MODIFIED;
    return parse_value(cf, n->args[2], c);
}

/* The statuses nginx sets the fields on. */
static int safe_status(int s)
{
    return s == 200 || s == 201 || s == 204 || s == 206 || s == 301 || s == 302 || s == 303 ||
           s == 304 || s == 307 || s == 308;
}

/* nginx's ngx_next_time(): the next local time of day `when` (seconds
 * after midnight) after now; -1 when mktime cannot say. */
static int64_t next_time(time_t now, int64_t when)
{
    struct tm tm;
    localtime_r(&now, &tm);
    tm.tm_hour = (int)(when / 3600);
    tm.tm_min = (int)(when / 60 % 60);
    tm.tm_sec = (int)(when % 60);
    tm.tm_isdst = -1;
    time_t next = mktime(&tm);
    if (next == (time_t)-1)
        return -1;
    if (next > now)
        return next;
    tm.tm_mday++; /* mktime normalizes Jan 32 and the like */
    tm.tm_isdst = -1;
    next = mktime(&tm);
    return next == (time_t)-1 ? -1 : next;
}

/* Field i's value: a literal. */
static void set_lit(sh_resp_head_t *h, size_t i, const char *v)
{
    h->f[i].value = v;
    h->f[i].value_len = strlen(v);
}

static int expires_filter(sh_request_t *r, sh_resp_head_t *h)
{
    const expires_loc_t *c = sh_http_loc_conf(sh_request_loc(r), &sh_expires_module);
    if (c->type == EXP_OFF || !safe_status(h->status))
        return 0;
    /* one Expires and one Cache-Control, replacing the upstream's */
    const size_t none = (size_t)-1;
    size_t ex = none, cc = none;
    for (size_t i = 0; i < h->n; i++) {
        const sh_http1_header_t *f = &h->f[i];
        if (f->name_len == 7 && strncasecmp(f->name, "Expires", 7) == 0 && ex == none) {
            ex = i;
        } else if (f->name_len == 13 && strncasecmp(f->name, "Cache-Control", 13) == 0) {
            if (cc == none)
                cc = i;
            else
                h->f[i].name_len = 0; /* nginx keeps only the first */
        }
    }
    if (ex == none) {
        ex = h->n;
        if (sh_resp_head_add(h, "Expires", 7, "", 0) != 0)
            return SH_ELIMIT;
    }
    if (cc == none) {
        cc = h->n;
        if (sh_resp_head_add(h, "Cache-Control", 13, "", 0) != 0)
            return SH_ELIMIT;
    }
    if (c->type == EXP_EPOCH) {
        set_lit(h, ex, "Thu, 01 Jan 1970 00:00:01 GMT");
        set_lit(h, cc, "no-cache");
        return 0;
    }
    if (c->type == EXP_MAX) {
        set_lit(h, ex, "Thu, 31 Dec 2037 23:55:55 GMT");
        set_lit(h, cc, "max-age=315360000"); /* ten years */
        return 0;
    }
    size_t dl;
    const char *date = sh_worker_date(r->c->w, &dl);
    if (c->time == 0 && c->type != EXP_DAILY) {
        h->f[ex].value = date;
        h->f[ex].value_len = dl;
        set_lit(h, cc, "max-age=0");
        return 0;
    }
    int64_t now = (int64_t)r->c->w->date_sec, when, max_age;
    int64_t lm = -1;
    if (c->type == EXP_MODIFIED) {
        const sh_http1_header_t *f = sh_resp_head_find(h, "Last-Modified", 13);
        if (f == NULL || sh_http_date_parse(f->value, f->value_len, &lm) != 0)
            lm = -1;
    }
    if (c->type == EXP_DAILY) {
        when = next_time((time_t)now, c->time);
        max_age = when - now;
    } else if (c->type == EXP_ACCESS || lm == -1) {
        when = now + c->time;
        max_age = c->time;
    } else {
        when = lm + c->time;
        max_age = when - now;
    }
    size_t off = r->hscratch.len;
    char *d = sh_buf_reserve(&r->hscratch, SH_HTTP_DATE_LEN + 1);
    sh_http_date_format(d, when);
    r->hscratch.len += SH_HTTP_DATE_LEN;
    int rc = sh_resp_head_set_scratch(r, h, ex, off, SH_HTTP_DATE_LEN);
    if (rc != 0)
        return rc;
    if (c->time < 0 || max_age < 0) {
        set_lit(h, cc, "no-cache");
        return 0;
    }
    off = r->hscratch.len;
    sh_buf_appends(&r->hscratch, "max-age=");
    sh_buf_append_u64(&r->hscratch, (uint64_t)max_age);
    return sh_resp_head_set_scratch(r, h, cc, off, r->hscratch.len - off);
}

static int expires_applies(const sh_http_main_t *m, const sh_http_loc_t *loc)
{
    (void)m;
    const expires_loc_t *c = sh_http_loc_conf(loc, &sh_expires_module);
    return c != NULL && c->type != EXP_OFF && c->type != EXP_UNSET;
}

static const sh_filter_t expires_f = {
    .name = "expires", .applies = expires_applies, .header = expires_filter};

static int expires_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_filter_add(cf, m, &expires_f);
}

static const sh_conf_cmd_t expires_cmds[] = {
    {"expires", SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CTX_IF | SH_CONF_TAKE12,
     expires_set, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t expires_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = expires_create_loc,
    .merge_loc = expires_merge_loc,
    .destroy_loc = expires_destroy_loc,
    .postconfiguration = expires_postconf,
};

sh_conf_module_t sh_expires_module = {
    .name = "expires",
    .cmds = expires_cmds,
    .ctx = &expires_ctx,
};
