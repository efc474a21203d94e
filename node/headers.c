/* SPDX-License-Identifier: Apache-2.0 */
/* The headers filter: add_header (see headers.h). */
#include "node/headers.h"

#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/node.h"
#include "node/vars.h"

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

static const sh_http_module_t headers_http_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = headers_create_loc,
    .merge_loc = headers_merge_loc,
    .destroy_loc = headers_destroy_loc,
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

size_t sh_headers_add(sh_request_t *r, int status, sh_buf_t *buf, sh_http1_header_t *out,
                      size_t max)
{
    const headers_loc_t *c = conf_of(r);
    if (c == NULL || c->n == 0)
        return 0;
    int dflt = default_status(status);
    size_t k = 0;
    size_t offs[MAX_ADD_HEADERS];
    for (size_t i = 0; i < c->n && k < max; i++) {
        const add_header_t *h = &c->h[i];
        if (!h->always && !dflt)
            continue;
        size_t start = buf->len;
        sh_cv_eval(h->value, r, buf);
        if (buf->len == start)
            continue; /* an empty value adds nothing */
        offs[k] = start;
        out[k] = (sh_http1_header_t){
            .name = h->name, .name_len = h->name_len, .value_len = buf->len - start};
        k++;
    }
    for (size_t i = 0; i < k; i++) /* buf is final now */
        out[i].value = buf->data + offs[i];
    return k;
}

void sh_headers_add_h1(sh_request_t *r, int status, sh_buf_t *b)
{
    const headers_loc_t *c = conf_of(r);
    if (c == NULL || c->n == 0)
        return;
    int dflt = default_status(status);
    for (size_t i = 0; i < c->n; i++) {
        const add_header_t *h = &c->h[i];
        if (!h->always && !dflt)
            continue;
        size_t mark = b->len;
        sh_buf_append(b, h->name, h->name_len);
        sh_buf_append(b, ": ", 2);
        size_t vstart = b->len;
        sh_cv_eval(h->value, r, b);
        if (b->len == vstart)
            b->len = mark;
        else
            sh_buf_append(b, "\r\n", 2);
    }
}
