/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sub_filter (see sub_filter.h). The header filter (early: before the
 * protocol's framing, so the changed length is chunked) decides, evaluates
 * the replacements once per response and attaches the body filter. The
 * body filter keeps at most the longest string less one byte between
 * pieces (a match that may continue in the next piece), so memory per
 * response is bounded by the strings, not the body. Worker threads; the
 * configuration is immutable.
 */
#include "node/modules/sub_filter.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/pipeline/node.h"
#include "node/pipeline/vars.h"

#define SUB_MAX 64 /* strings per level */

typedef struct {
    char *match; /* lower-cased */
    size_t len;
    sh_cv_t *value;
} sub_t;

typedef struct {
    sub_t *s;
    size_t n;
    int set; /* this level had sub_filter */
    int once;
    int last_modified;
    char **types;
    size_t ntypes;
    int types_set;
} sub_loc_t;

typedef struct {
    sh_buf_t hold; /* bytes that may begin a match */
    sh_buf_t out;
    sh_buf_t values; /* the replacements of this response, back to back */
    size_t off[SUB_MAX + 1];
    uint8_t used[SUB_MAX];
    const sub_loc_t *conf;
} sub_ctx_t;

static void *sub_create_loc(void)
{
    sub_loc_t *c = sh_new(sub_loc_t);
    c->once = SH_CONF_UNSET;
    c->last_modified = SH_CONF_UNSET;
    return c;
}

static void sub_destroy_loc(void *conf)
{
    sub_loc_t *c = conf;
    if (c->set) {
        for (size_t i = 0; i < c->n; i++) {
            sh_free(c->s[i].match);
            sh_cv_destroy(c->s[i].value);
        }
        sh_free(c->s);
    }
    if (c->types_set) {
        for (size_t i = 0; i < c->ntypes; i++)
            sh_free(c->types[i]);
        sh_free(c->types);
    }
    sh_free(c);
}

static int sub_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    (void)cf;
    sub_loc_t *p = parent, *c = conf;
    if (!c->set) {
        c->s = p->s;
        c->n = p->n;
    }
    if (!c->types_set) {
        c->types = p->types;
        c->ntypes = p->ntypes;
    }
    SH_CONF_MERGE(c->once, p->once, 1);
    SH_CONF_MERGE(c->last_modified, p->last_modified, 0);
    return 0;
}

static int sub_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    sub_loc_t *c = conf;
    const char *m = cf->node->args[1];
    if (m[0] == '\0')
        return sh_conf_error(cf, "empty search pattern");
    if (!c->set) {
        c->set = 1;
        c->s = NULL;
        c->n = 0;
    }
    if (c->n >= SUB_MAX)
        return sh_conf_error(cf, "too many \"sub_filter\" directives");
    sub_t s = {.match = sh_strdup(m), .len = strlen(m)};
    for (size_t i = 0; i < s.len; i++)
        s.match[i] = (char)tolower((unsigned char)s.match[i]);
    int rc = sh_cv_compile(cf, cf->node->args[2], &s.value);
    if (rc != 0) {
        sh_free(s.match);
        return rc;
    }
    c->s = sh_realloc(c->s, (c->n + 1) * sizeof(*c->s));
    c->s[c->n++] = s;
    return 0;
}

static int types_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    sub_loc_t *c = conf;
    if (c->types_set)
        return sh_conf_error(cf, "\"sub_filter_types\" directive is duplicate");
    c->types_set = 1;
    c->ntypes = cf->node->nargs - 1;
    c->types = sh_calloc(c->ntypes, sizeof(char *));
    for (size_t i = 0; i < c->ntypes; i++)
        c->types[i] = sh_strdup(cf->node->args[i + 1]);
    return 0;
}

/* ------------------------------------------------------ filters -- */

static int type_listed(const sub_loc_t *c, sh_resp_head_t *h)
{
    static char *const html[] = {"text/html"}; /* always, as nginx */
    return sh_resp_type_in(h, html, 1) || sh_resp_type_in(h, c->types, c->ntypes);
}

static void ctx_cleanup(sh_request_t *r, void *data)
{
    sub_ctx_t *x = data;
    sh_request_ctx(r, &sh_sub_filter_module) = NULL;
    sh_buf_dispose(&x->hold);
    sh_buf_dispose(&x->out);
    sh_buf_dispose(&x->values);
    sh_free(x);
}

static int sub_body(sh_request_t *r, unsigned next, const char *data, size_t len, int last);

static int sub_header(sh_request_t *r, sh_resp_head_t *h)
{
    const sub_loc_t *c = sh_http_loc_conf(sh_request_loc(r), &sh_sub_filter_module);
    if (c->n == 0 || h->length == 0 || (h->flags & (SH_RESP_TUNNEL | SH_RESP_NO_BODY)) ||
        !type_listed(c, h))
        return 0;
    sub_ctx_t *x = sh_request_ctx(r, &sh_sub_filter_module);
    if (x == NULL) {
        x = sh_new(sub_ctx_t);
        if (sh_request_cleanup_add(r, ctx_cleanup, x) != 0) {
            sh_free(x);
            return 0; /* no room: the body goes as it is */
        }
        sh_request_ctx(r, &sh_sub_filter_module) = x;
    }
    x->conf = c;
    x->hold.len = x->values.len = 0;
    memset(x->used, 0, sizeof(x->used));
    for (size_t i = 0; i < c->n; i++) {
        x->off[i] = x->values.len;
        sh_cv_eval(c->s[i].value, r, &x->values);
    }
    x->off[c->n] = x->values.len;
    h->length = -1;
    for (size_t i = 0; i < h->n; i++) {
        sh_http1_header_t *f = &h->f[i];
        if (!c->last_modified &&
            ((f->name_len == 13 && strncasecmp(f->name, "Last-Modified", 13) == 0) ||
             (f->name_len == 4 && strncasecmp(f->name, "ETag", 4) == 0)))
            f->name_len = 0;
    }
    return sh_body_filter_attach(r, sub_body);
}

/* Where string i matches s[at..] (1), may match with more bytes (2), or
 * not (0). */
static int match_at(const sub_t *m, const char *s, size_t n, size_t at)
{
    size_t k = 0;
    while (k < m->len && at + k < n) {
        if ((char)tolower((unsigned char)s[at + k]) != m->match[k])
            return 0;
        k++;
    }
    return k == m->len ? 1 : 2;
}

static int sub_body(sh_request_t *r, unsigned next, const char *data, size_t len, int last)
{
    sub_ctx_t *x = sh_request_ctx(r, &sh_sub_filter_module);
    if (x == NULL)
        return sh_body_next(r, next, data, len, last);
    const sub_loc_t *c = x->conf;
    /* the work: what was held, then this piece */
    sh_buf_t *w = &x->hold;
    sh_buf_append(w, data, len);
    sh_buf_t *o = &x->out;
    o->len = 0;
    size_t i = 0, n = w->len, keep = n;
    r->body_bytes_sent -= len; /* counted as sent, below */
    while (i < n) {
        int partial = 0, hit = -1;
        for (size_t k = 0; k < c->n && hit < 0; k++) {
            if (c->once && x->used[k])
                continue;
            int m = match_at(&c->s[k], w->data, n, i);
            if (m == 1)
                hit = (int)k;
            else if (m == 2)
                partial = 1;
        }
        if (hit >= 0) {
            sh_buf_append(o, x->values.data + x->off[hit], x->off[hit + 1] - x->off[hit]);
            x->used[hit] = 1;
            i += c->s[hit].len;
            continue;
        }
        if (partial && !last) {
            keep = i; /* may continue in the next piece */
            break;
        }
        sh_buf_append(o, w->data + i, 1);
        i++;
    }
    if (keep < n) {
        memmove(w->data, w->data + keep, n - keep);
        w->len = n - keep;
    } else {
        w->len = 0;
    }
    r->body_bytes_sent += o->len;
    if (o->len == 0 && !last)
        return 0;
    return sh_body_next(r, next, o->data ? o->data : "", o->len, last);
}

static int sub_applies(const sh_http_main_t *m, const sh_http_loc_t *loc)
{
    (void)m;
    const sub_loc_t *c = sh_http_loc_conf(loc, &sh_sub_filter_module);
    return c != NULL && c->n > 0;
}

static const sh_filter_t sub_f = {
    .name = "sub_filter", .applies = sub_applies, .header = sub_header, .early = 1};

static int sub_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_filter_add(cf, m, &sub_f);
}

#define SLOC    (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)
#define SOFF(f) offsetof(sub_loc_t, f)

static const sh_conf_cmd_t sub_cmds[] = {
    {"sub_filter", SLOC | SH_CONF_TAKE2, sub_set, 0, NULL},
    {"sub_filter_once", SLOC | SH_CONF_FLAG, sh_conf_set_flag, SOFF(once), NULL},
    {"sub_filter_last_modified", SLOC | SH_CONF_FLAG, sh_conf_set_flag, SOFF(last_modified), NULL},
    {"sub_filter_types", SLOC | SH_CONF_1MORE, types_set, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t sub_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = sub_create_loc,
    .merge_loc = sub_merge_loc,
    .destroy_loc = sub_destroy_loc,
    .postconfiguration = sub_postconf,
};

sh_conf_module_t sh_sub_filter_module = {
    .name = "sub_filter",
    .cmds = sub_cmds,
    .ctx = &sub_ctx,
};
