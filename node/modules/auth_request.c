/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `auth_request URI|off` and `auth_request_set $variable value` (nginx's
 * auth request module): an access check that asks a subrequest
 * (node/pipeline/subrequest.h) to URI, usually a location that proxies
 * to an auth service. A 2xx answer allows, 401 and 403 are the client's
 * answer (a 401 with the auth response's WWW-Authenticate), anything else
 * is 500. auth_request_set values are evaluated with the subrequest (its
 * $upstream_http_NAME, $upstream_status) once it completed, whatever it
 * answered, and are the parent's variables from then on. The subrequest
 * has no body (nginx's advice of proxy_pass_request_body off and an empty
 * Content-Length is what it does by itself).
 */
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/modules/access.h"
#include "node/modules/auth_request.h"
#include "node/pipeline/node.h"
#include "node/pipeline/reqlog.h"
#include "node/pipeline/subrequest.h"
#include "node/pipeline/vars.h"

typedef struct {
    size_t idx; /* the variable's index in the main conf's names */
    sh_cv_t *value;
} ar_set_t;

typedef struct {
    char *uri; /* NULL unset, "" off */
    ar_set_t *sets;
    size_t nsets;
    int sets_own;
} ar_loc_t;

typedef struct {
    char **names; /* every auth_request_set variable, once */
    size_t n;
} ar_main_t;

extern sh_conf_module_t sh_auth_request_module;

static void *ar_create_main(void)
{
    return sh_new(ar_main_t);
}

static void ar_destroy_main(void *conf)
{
    ar_main_t *m = conf;
    for (size_t i = 0; i < m->n; i++)
        sh_free(m->names[i]);
    sh_free(m->names);
    sh_free(m);
}

static void *ar_create(void)
{
    return sh_new(ar_loc_t);
}

static int ar_merge(sh_conf_t *cf, void *parent, void *conf)
{
    (void)cf;
    ar_loc_t *p = parent, *c = conf;
    if (c->uri == NULL && p->uri != NULL)
        c->uri = sh_strdup(p->uri);
    if (c->sets == NULL) {
        c->sets = p->sets;
        c->nsets = p->nsets;
    }
    return 0;
}

static void ar_destroy(void *conf)
{
    ar_loc_t *c = conf;
    sh_free(c->uri);
    if (c->sets_own) {
        for (size_t i = 0; i < c->nsets; i++)
            sh_cv_destroy(c->sets[i].value);
        sh_free(c->sets);
    }
    sh_free(c);
}

static int set_uri(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    ar_loc_t *c = conf;
    const char *v = cf->node->args[1];
    if (c->uri != NULL)
        return sh_conf_error(cf, "\"auth_request\" directive is duplicate");
    if (strcmp(v, "off") == 0) {
        c->uri = sh_strdup("");
        return 0;
    }
    if (v[0] != '/')
        return sh_conf_error(cf, "invalid URI \"%s\" in \"auth_request\" directive", v);
    c->uri = sh_strdup(v);
    return 0;
}

static int get_var(sh_request_t *r, const void *data, sh_buf_t *out);

static int set_var(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    ar_loc_t *c = conf;
    const char *name = cf->node->args[1];
    if (name[0] != '$' || name[1] == '\0')
        return sh_conf_error(cf, "invalid variable name \"%s\"", name);
    name++;
    sh_http_block_t *b = cf->user;
    ar_main_t *m = sh_http_main_conf(b->main, &sh_auth_request_module);
    size_t idx = 0;
    while (idx < m->n && strcmp(m->names[idx], name) != 0)
        idx++;
    if (idx == m->n) {
        /* one variable for every auth_request_set of that name (nginx's
         * are changeable); its getter reads the request's value */
        int rc = sh_vars_define_changeable(cf, name, get_var, (const void *)(uintptr_t)idx);
        if (rc != 0)
            return rc;
        m->names = sh_realloc(m->names, (m->n + 1) * sizeof(*m->names));
        m->names[m->n++] = sh_strdup(name);
    }
    sh_cv_t *cv;
    int rc = sh_cv_compile(cf, cf->node->args[2], &cv);
    if (rc != 0)
        return rc;
    c->sets = sh_realloc(c->sets, (c->nsets + 1) * sizeof(*c->sets));
    c->sets[c->nsets++] = (ar_set_t){idx, cv};
    c->sets_own = 1;
    return 0;
}

#define ARCTX (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)

static const sh_conf_cmd_t ar_cmds[] = {
    {"auth_request", ARCTX | SH_CONF_TAKE1, set_uri, 0, NULL},
    {"auth_request_set", ARCTX | SH_CONF_TAKE2, set_var, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

/* ------------------------------------------------------ per request -- */

enum { AR_IDLE = 0, AR_RUNNING, AR_DONE };

typedef struct {
    sh_request_t *r;
    sh_request_t *sub; /* while AR_RUNNING */
    int state;
    int status;
    sh_buf_t www;   /* the auth response's WWW-Authenticate */
    sh_buf_t *vals; /* by variable index */
    unsigned char *has;
    size_t nvals;
} ar_ctx_t;

static void ctx_cleanup(sh_request_t *r, void *data)
{
    (void)r;
    ar_ctx_t *x = data;
    if (x->state == AR_RUNNING && x->sub != NULL)
        sh_subrequest_cancel(x->sub);
    for (size_t i = 0; i < x->nvals; i++)
        sh_buf_dispose(&x->vals[i]);
    sh_free(x->vals);
    sh_free(x->has);
    sh_buf_dispose(&x->www);
    sh_free(x);
}

static int get_var(sh_request_t *r, const void *data, sh_buf_t *out)
{
    size_t idx = (size_t)(uintptr_t)data;
    const ar_ctx_t *x = sh_request_ctx(r, &sh_auth_request_module);
    if (x == NULL && r->parent != NULL) /* evaluated in the subrequest: the parent's */
        x = sh_request_ctx(r->parent, &sh_auth_request_module);
    if (x == NULL || idx >= x->nvals || !x->has[idx])
        return 0;
    sh_buf_append(out, x->vals[idx].data, x->vals[idx].len);
    return 1;
}

static void sub_done(sh_request_t *sub, void *ud)
{
    ar_ctx_t *x = ud;
    sh_request_t *r = x->r;
    const ar_loc_t *c = sh_http_loc_conf(r->loc, &sh_auth_request_module);
    x->status = sh_subrequest_status(sub);
    x->www.len = 0;
    if (x->status == 401)
        sh_subrequest_field(sub, "WWW-Authenticate", 16, &x->www);
    for (size_t i = 0; c != NULL && i < c->nsets; i++) {
        size_t k = c->sets[i].idx;
        if (k >= x->nvals)
            continue;
        x->vals[k].len = 0;
        sh_cv_eval(c->sets[i].value, sub, &x->vals[k]);
        x->has[k] = 1;
    }
    x->sub = NULL;
    x->state = AR_DONE;
    sh_phase_resume(r); /* a no-op when it completed inside sh_subrequest */
}

static int conclude(sh_request_t *r, ar_ctx_t *x)
{
    x->state = AR_IDLE; /* an internal redirect asks again, as nginx */
    int st = x->status;
    if (st >= 200 && st < 300)
        return sh_access_decide(r, 0);
    if (st == 401 || st == 403) {
        if (st == 403)
            x->www.len = 0;
        return sh_access_decide(r, st);
    }
    x->www.len = 0;
    sh_req_log(SH_LOG_ERR, r->c, r, NULL, "auth request unexpected status: %d", st);
    return 500;
}

static int ar_handler(sh_request_t *r)
{
    const ar_loc_t *c = sh_http_loc_conf(r->loc, &sh_auth_request_module);
    if (c == NULL || c->uri == NULL || c->uri[0] == '\0' || r->sub != NULL)
        return SH_PH_DECLINED;
    ar_ctx_t *x = sh_request_ctx(r, &sh_auth_request_module);
    if (x == NULL) {
        const ar_main_t *m = sh_http_main_conf(r->c->w->rt->http, &sh_auth_request_module);
        x = sh_new(ar_ctx_t);
        x->r = r;
        x->nvals = m->n;
        x->vals = sh_calloc(m->n ? m->n : 1, sizeof(*x->vals));
        x->has = sh_calloc(m->n ? m->n : 1, 1);
        if (sh_request_cleanup_add(r, ctx_cleanup, x) != 0) {
            ctx_cleanup(r, x);
            return 500;
        }
        sh_request_ctx(r, &sh_auth_request_module) = x;
    }
    if (x->state == AR_DONE)
        return conclude(r, x);
    if (x->state == AR_RUNNING)
        return SH_PH_PAUSE;
    x->state = AR_RUNNING;
    x->www.len = 0;
    if (sh_subrequest(r, c->uri, strlen(c->uri), 0, sub_done, x, &x->sub) != 0) {
        x->state = AR_IDLE;
        return 500;
    }
    if (r->freed)
        return SH_PH_DONE;
    if (x->state == AR_DONE) /* it answered at once (`return` in its location) */
        return conclude(r, x);
    return SH_PH_PAUSE;
}

/* ------------------------------------------------------ the 401 header -- */

static int www_filter(sh_request_t *r, sh_resp_head_t *h)
{
    const ar_ctx_t *x = sh_request_ctx(r, &sh_auth_request_module);
    return sh_access_www_authenticate(r, h, x != NULL ? &x->www : NULL);
}

static int www_applies(const sh_http_main_t *m, const sh_http_loc_t *loc)
{
    (void)m;
    const ar_loc_t *c = sh_http_loc_conf(loc, &sh_auth_request_module);
    return c != NULL && c->uri != NULL && c->uri[0] != '\0';
}

static const sh_filter_t www = {
    .name = "auth_request", .applies = www_applies, .header = www_filter};

static int ar_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_access_check_add(cf, m, ar_handler, &www);
}

static const sh_http_module_t ar_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_main = ar_create_main,
    .destroy_main = ar_destroy_main,
    .create_loc = ar_create,
    .merge_loc = ar_merge,
    .destroy_loc = ar_destroy,
    .postconfiguration = ar_postconf,
};

sh_conf_module_t sh_auth_request_module = {
    .name = "auth_request",
    .cmds = ar_cmds,
    .ctx = &ar_ctx,
};
