/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error pages (see errpage.h): `error_page`, `recursive_error_pages` and
 * `internal`, with nginx's semantics:
 *
 *  - error_page CODE ... [=[RESPONSE]] URI|@name|URL: the codes 300..599;
 *    a level's list replaces the outer one as soon as it has one;
 *  - a URI is an internal redirect (re-entering at find-config, so an
 *    `internal` location may serve it); the method becomes GET (HEAD
 *    stays), the body is discarded; the page goes with the error's status,
 *    RESPONSE instead, or with "=" alone the status of the page's own
 *    response;
 *  - @name continues in the named location, from its rewrite phase;
 *  - anything else is a URL: 302 with Location (or RESPONSE when it is
 *    301, 302, 303, 307 or 308);
 *  - an error inside an error page uses the standard page, unless
 *    recursive_error_pages is on (then the 10-redirect limit stops loops).
 *
 * The pipeline calls it for every response answered with a status and no
 * body of its own (sh_request_respond), and the proxy for upstream errors
 * under proxy_intercept_errors. Configuration at load; the worker of the
 * request runs it.
 */
#include "node/modules/errpage.h"

#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/pipeline/node.h"
#include "node/pipeline/vars.h"

#define PAGES_MAX 64

typedef struct {
    int codes[16];
    unsigned ncodes;
    int overwrite; /* -1: the error's status; 0 ("="): the page's own; else this one */
    sh_cv_t *uri;
} page_t;

typedef struct {
    page_t *pages;
    size_t n;
    int set;       /* this level owns pages */
    int recursive; /* recursive_error_pages */
} errpage_loc_t;

extern sh_conf_module_t sh_errpage_module;

static void *errpage_create_loc(void)
{
    errpage_loc_t *c = sh_new(errpage_loc_t);
    c->recursive = SH_CONF_UNSET;
    return c;
}

static void errpage_destroy_loc(void *conf)
{
    errpage_loc_t *c = conf;
    if (c->set) {
        for (size_t i = 0; i < c->n; i++)
            sh_cv_destroy(c->pages[i].uri);
        sh_free(c->pages);
    }
    sh_free(c);
}

static int errpage_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    errpage_loc_t *p = parent, *c = conf;
    (void)cf;
    if (!c->set) {
        c->pages = p->pages;
        c->n = p->n;
    }
    SH_CONF_MERGE(c->recursive, p->recursive, 0);
    return 0;
}

static int error_page_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    errpage_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (!c->set) {
        c->pages = NULL;
        c->n = 0;
        c->set = 1;
    }
    if (c->n >= PAGES_MAX)
        return sh_conf_error(cf, "too many \"error_page\" directives");
    page_t pg = {.overwrite = -1};
    unsigned last = n->nargs - 1;
    const char *ow = n->args[last - 1];
    unsigned ncodes = last - 1;
    if (ow[0] == '=') {
        ncodes--;
        if (ow[1] == '\0') {
            pg.overwrite = 0;
        } else if (sh_conf_parse_int(ow + 1, &pg.overwrite) != 0 || pg.overwrite < 200 ||
                   pg.overwrite > 599) {
            return sh_conf_error(cf, "invalid value \"%s\"", ow);
        }
    }
    if (ncodes == 0)
        return sh_conf_error(cf, "invalid number of arguments in \"error_page\" directive");
    if (ncodes > sizeof(pg.codes) / sizeof(pg.codes[0]))
        return sh_conf_error(cf, "too many codes in \"error_page\"");
    for (unsigned i = 1; i <= ncodes; i++) {
        int code;
        if (sh_conf_parse_int(n->args[i], &code) != 0)
            return sh_conf_error(cf, "invalid value \"%s\"", n->args[i]);
        if (code == 499 || code < 300 || code > 599)
            return sh_conf_error(cf, "value \"%s\" must be between 300 and 599", n->args[i]);
        pg.codes[pg.ncodes++] = code;
    }
    int rc = sh_cv_compile(cf, n->args[last], &pg.uri);
    if (rc != 0)
        return rc;
    c->pages = sh_realloc(c->pages, (c->n + 1) * sizeof(*c->pages));
    c->pages[c->n++] = pg;
    return 0;
}

static int internal_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    (void)conf;
    sh_http_block_t *b = cf->user;
    if (b->loc->internal)
        return sh_conf_error(cf, "\"internal\" directive is duplicate");
    b->loc->internal = 1;
    return 0;
}

/* ------------------------------------------------------ requests -- */

static const page_t *find_page(const sh_request_t *r, int status)
{
    const errpage_loc_t *c = sh_http_loc_conf(sh_request_loc(r), &sh_errpage_module);
    if (c == NULL)
        return NULL;
    for (size_t i = 0; i < c->n; i++)
        for (unsigned k = 0; k < c->pages[i].ncodes; k++)
            if (c->pages[i].codes[k] == status)
                return &c->pages[i];
    return NULL;
}

static int has(sh_request_t *r, int status)
{
    const errpage_loc_t *c = sh_http_loc_conf(sh_request_loc(r), &sh_errpage_module);
    if ((r->error_page && !(c != NULL && c->recursive == 1)) || r->nredirects > 10)
        return 0; /* an error of an error page, or nginx's redirect limit reached */
    return find_page(r, status) != NULL;
}

static int send_page(sh_request_t *r, int status)
{
    if (r->loc == NULL || r->srv == NULL || !has(r, status))
        return 0; /* no location yet (a head the parser refused): the standard page */
    const errpage_loc_t *c = sh_http_loc_conf(r->loc, &sh_errpage_module);
    const page_t *pg = find_page(r, status);
    if (c->recursive != 1)
        r->error_page = 1;
    r->err_status = pg->overwrite >= 0 ? pg->overwrite : status;
    r->discard_body = 1;
    sh_buf_t u = {0};
    sh_cv_eval(pg->uri, r, &u);
    int done = 1;
    if (u.len > 0 && u.data[0] == '@') {
        const sh_http_loc_t *named = sh_http_find_named(r->srv, u.data, u.len);
        if (named == NULL) {
            sh_log_err("named location \"%.*s\" not found", (int)u.len, u.data);
            r->err_status = 0;
            done = 0;
        } else {
            sh_phase_named(r, named);
        }
    } else if (u.len > 0 && u.data[0] == '/') {
        if (r->h.method_id != SH_HTTP_HEAD)
            r->h.method_id = SH_HTTP_GET; /* nginx: the page is fetched with GET */
        if (sh_phase_redirect(r, u.data, u.len) != 0) {
            r->err_status = 0; /* the redirect limit: nginx's 500 */
            sh_request_respond(r, 500, NULL, NULL, 0, NULL);
        }
    } else {
        int code = pg->overwrite == 301 || pg->overwrite == 302 || pg->overwrite == 303 ||
                           pg->overwrite == 307 || pg->overwrite == 308
                       ? pg->overwrite
                       : 302;
        r->err_status = 0;
        sh_buf_append(&u, "", 1);
        r->scratch.len = 0;
        sh_buf_append(&r->scratch, u.data, u.len);
        sh_request_respond(r, code, NULL, NULL, 0, r->scratch.data);
    }
    sh_buf_dispose(&u);
    return done;
}

static const sh_error_pages_t error_pages = {.has = has, .send = send_page};

static int errpage_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_pipeline_set_error_pages(cf, m, &error_pages);
}

#define LOCIF (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CTX_IF)

static const sh_conf_cmd_t errpage_cmds[] = {
    {"error_page", LOCIF | SH_CONF_2MORE, error_page_set, 0, NULL},
    {"recursive_error_pages", SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_FLAG,
     sh_conf_set_flag, offsetof(errpage_loc_t, recursive), NULL},
    {"internal", SH_CTX_LOCATION | SH_CONF_NOARGS, internal_set, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t errpage_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = errpage_create_loc,
    .merge_loc = errpage_merge_loc,
    .destroy_loc = errpage_destroy_loc,
    .postconfiguration = errpage_postconf,
};

sh_conf_module_t sh_errpage_module = {
    .name = "error_page",
    .cmds = errpage_cmds,
    .ctx = &errpage_ctx,
};
