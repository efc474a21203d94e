/* SPDX-License-Identifier: Apache-2.0 */
/* The headers filter: add_header (see headers.h). */
#include "node/modules/headers.h"

#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/pipeline/node.h"
#include "node/pipeline/vars.h"

#define MAX_ADD_HEADERS 64

typedef struct {
    char *name;
    size_t name_len;
    sh_cv_t *value;
    int always;
} add_header_t;

typedef struct {
    add_header_t *h;
    size_t n;
    int set; /* this level has add_header: it owns h */
} headers_loc_t;

static void *headers_create_loc(void)
{
    return sh_new(headers_loc_t);
}

static void headers_destroy_loc(void *conf)
{
    headers_loc_t *c = conf;
    if (c->set) {
        for (size_t i = 0; i < c->n; i++) {
            sh_free(c->h[i].name);
            sh_cv_destroy(c->h[i].value);
        }
        sh_free(c->h);
    }
    sh_free(c);
}

static int headers_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    headers_loc_t *p = parent, *c = conf;
    (void)cf;
    if (!c->set) { /* nginx: inherited only when this level has none */
        c->h = p->h;
        c->n = p->n;
    }
    return 0;
}

static int add_header_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    headers_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (!c->set) {
        c->h = NULL;
        c->n = 0;
        c->set = 1;
    }
    if (c->n >= MAX_ADD_HEADERS)
        return sh_conf_error(cf, "too many \"add_header\" directives");
    int always = 0;
    if (n->nargs == 4) {
        if (strcmp(n->args[3], "always") != 0)
            return sh_conf_error(cf, "invalid parameter \"%s\"", n->args[3]);
        always = 1;
    }
    const char *name = n->args[1];
    if (name[0] == '\0')
        return sh_conf_error(cf, "empty header name in \"add_header\"");
    for (const char *q = name; *q; q++)
        if (*q <= ' ' || *q == ':' || *q == 0x7f)
            return sh_conf_error(cf, "invalid header name \"%s\"", name);
    add_header_t h = {.name = sh_strdup(name), .name_len = strlen(name), .always = always};
    int rc = sh_cv_compile(cf, n->args[2], &h.value);
    if (rc != 0) {
        sh_free(h.name);
        return rc;
    }
    c->h = sh_realloc(c->h, (c->n + 1) * sizeof(*c->h));
    c->h[c->n++] = h;
    return 0;
}

static const sh_conf_cmd_t headers_cmds[] = {
    {"add_header", SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CTX_IF | SH_CONF_TAKE23,
     add_header_set, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

static int headers_postconf(sh_conf_t *cf, sh_http_main_t *m);

static const sh_http_module_t headers_http_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = headers_create_loc,
    .merge_loc = headers_merge_loc,
    .destroy_loc = headers_destroy_loc,
    .postconfiguration = headers_postconf,
};

sh_conf_module_t sh_headers_module = {
    .name = "headers",
    .cmds = headers_cmds,
    .ctx = &headers_http_ctx,
};

/* The statuses nginx adds the fields to without `always`. */
static int default_status(int status)
{
    switch (status) {
    case 200:
    case 201:
    case 204:
    case 206:
    case 301:
    case 302:
    case 303:
    case 304:
    case 307:
    case 308:
        return 1;
    default:
        return 0;
    }
}

static const headers_loc_t *conf_of(const sh_request_t *r)
{
    const sh_http_loc_t *loc = r->loc;
    if (loc == NULL && r->c != NULL && r->c->addr != NULL && r->c->addr->default_srv != NULL)
        loc = r->c->addr->default_srv->loc;
    return loc ? sh_http_loc_conf(loc, &sh_headers_module) : NULL;
}

/* add_header: the fields of r's location, values evaluated into
 * r->hscratch. */
static int add_header_filter(sh_request_t *r, sh_resp_head_t *h)
{
    const headers_loc_t *c = conf_of(r);
    int dflt = default_status(h->status);
    for (size_t i = 0; i < c->n; i++) {
        const add_header_t *ah = &c->h[i];
        if (!ah->always && !dflt)
            continue;
        size_t start = r->hscratch.len;
        sh_cv_eval(ah->value, r, &r->hscratch);
        if (r->hscratch.len == start)
            continue; /* an empty value adds nothing */
        if (sh_resp_head_add(h, ah->name, ah->name_len, NULL, 0) != 0)
            return SH_ELIMIT;
        int rc = sh_resp_head_set_scratch(r, h, h->n - 1, start, r->hscratch.len - start);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int add_header_applies(const sh_http_main_t *m, const sh_http_loc_t *loc)
{
    (void)m;
    const headers_loc_t *c = sh_http_loc_conf(loc, &sh_headers_module);
    return c != NULL && c->n > 0;
}

/* $sent_http_NAME: the head as sent, "Name: value\r\n" lines without the
 * status line, kept only when the configuration reads them. Runs after
 * every other filter. */
static int sent_fields_filter(sh_request_t *r, sh_resp_head_t *h)
{
    sh_buf_t *b = &r->sent_fields;
    b->len = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (h->f[i].name_len == 0)
            continue;
        sh_buf_append(b, h->f[i].name, h->f[i].name_len);
        sh_buf_append(b, ": ", 2);
        sh_buf_append(b, h->f[i].value, h->f[i].value_len);
        sh_buf_append(b, "\r\n", 2);
    }
    return 0;
}

static int sent_fields_applies(const sh_http_main_t *m, const sh_http_loc_t *loc)
{
    (void)loc;
    return m->want_fields;
}

static const sh_filter_t add_header_f = {
    .name = "add_header", .applies = add_header_applies, .header = add_header_filter};
static const sh_filter_t sent_fields_f = {
    .name = "sent_http", .applies = sent_fields_applies, .header = sent_fields_filter, .late = 1};

static int headers_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    int rc = sh_filter_add(cf, m, &add_header_f);
    return rc != 0 ? rc : sh_filter_add(cf, m, &sent_fields_f);
}
