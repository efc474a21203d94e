/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `match` block of active health checks (see health_match.h).
 */
#include "node/proxy/health_match.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "http/http1.h"
#include "node/pipeline/regex.h"

enum { C_STATUS, C_HEADER, C_BODY };
enum { OP_EXISTS, OP_EQ, OP_RE };

typedef struct {
    int lo, hi;
} range_t;

typedef struct {
    int kind;
    int neg; /* `!`, `!=`, `!~` */
    int op;  /* header: exists, = or ~ */
    range_t *ranges;
    size_t nranges;
    char *name; /* header name */
    char *value;
    sh_regex_t *re;
} cond_t;

struct sh_hc_match_s {
    _Atomic int refs;
    char *name;
    cond_t *conds;
    size_t nconds;
};

const char *sh_hc_match_name(const sh_hc_match_t *m)
{
    return m->name;
}

sh_hc_match_t *sh_hc_match_ref(sh_hc_match_t *m)
{
    if (m != NULL)
        atomic_fetch_add(&m->refs, 1);
    return m;
}

void sh_hc_match_destroy(sh_hc_match_t *m)
{
    if (m == NULL || atomic_fetch_sub(&m->refs, 1) > 1)
        return;
    for (size_t i = 0; i < m->nconds; i++) {
        sh_free(m->conds[i].ranges);
        sh_free(m->conds[i].name);
        sh_free(m->conds[i].value);
        sh_regex_destroy(m->conds[i].re);
    }
    sh_free(m->conds);
    sh_free(m->name);
    sh_free(m);
}

static int parse_status(const char *s, int *out)
{
    if (strlen(s) != 3 || s[0] < '1' || s[0] > '9')
        return -1;
    for (int i = 0; i < 3; i++)
        if (s[i] < '0' || s[i] > '9')
            return -1;
    *out = atoi(s);
    return 0;
}

static int build_status(cond_t *c, const sh_conf_node_t *n, char *err, size_t errlen)
{
    unsigned i = 1;
    if (i < n->nargs && strcmp(n->args[i], "!") == 0) {
        c->neg = 1;
        i++;
    }
    if (i >= n->nargs) {
        snprintf(err, errlen, "%s:%u: \"status\" needs a code or a range", n->file, n->line);
        return -1;
    }
    c->ranges = sh_calloc(n->nargs, sizeof(*c->ranges));
    for (; i < n->nargs; i++) {
        const char *a = n->args[i];
        const char *dash = strchr(a, '-');
        range_t r;
        char lo[8] = "", hi[8] = "";
        if (dash != NULL && (size_t)(dash - a) < sizeof(lo) && strlen(dash + 1) < sizeof(hi)) {
            memcpy(lo, a, (size_t)(dash - a));
            strcpy(hi, dash + 1);
        } else if (dash == NULL && strlen(a) < sizeof(lo)) {
            strcpy(lo, a);
            strcpy(hi, a);
        }
        if (parse_status(lo, &r.lo) != 0 || parse_status(hi, &r.hi) != 0 || r.lo > r.hi) {
            snprintf(err, errlen, "%s:%u: invalid status \"%s\" in match", n->file, n->line, a);
            return -1;
        }
        c->ranges[c->nranges++] = r;
    }
    return 0;
}

static int build_re(cond_t *c, const char *pat, const sh_conf_node_t *n, char *err, size_t errlen)
{
    char rerr[160];
    if (sh_regex_compile(pat, 0, &c->re, rerr, sizeof(rerr)) != 0) {
        snprintf(err, errlen, "%s:%u: invalid regex \"%s\" in match: %s", n->file, n->line, pat,
                 rerr);
        return -1;
    }
    return 0;
}

static int build_header(cond_t *c, const sh_conf_node_t *n, char *err, size_t errlen)
{
    /* header NAME; header ! NAME; header NAME (=|!=|~|!~) VALUE; */
    if (n->nargs == 2) {
        c->op = OP_EXISTS;
        c->name = sh_strdup(n->args[1]);
        return 0;
    }
    if (n->nargs == 3 && strcmp(n->args[1], "!") == 0) {
        c->op = OP_EXISTS;
        c->neg = 1;
        c->name = sh_strdup(n->args[2]);
        return 0;
    }
    if (n->nargs == 4) {
        const char *op = n->args[2];
        c->name = sh_strdup(n->args[1]);
        c->value = sh_strdup(n->args[3]);
        if (strcmp(op, "=") == 0 || strcmp(op, "!=") == 0) {
            c->op = OP_EQ;
            c->neg = op[0] == '!';
            return 0;
        }
        if (strcmp(op, "~") == 0 || strcmp(op, "!~") == 0) {
            c->op = OP_RE;
            c->neg = op[0] == '!';
            return build_re(c, n->args[3], n, err, errlen);
        }
    }
    snprintf(err, errlen,
             "%s:%u: invalid \"header\" condition in match (header NAME [=|!=|~|!~ VALUE], or "
             "header ! NAME)",
             n->file, n->line);
    return -1;
}

static int build_body(cond_t *c, const sh_conf_node_t *n, char *err, size_t errlen)
{
    if (n->nargs == 3 && (strcmp(n->args[1], "~") == 0 || strcmp(n->args[1], "!~") == 0)) {
        c->neg = n->args[1][0] == '!';
        c->op = OP_RE;
        return build_re(c, n->args[2], n, err, errlen);
    }
    snprintf(err, errlen, "%s:%u: invalid \"body\" condition in match (body ~|!~ REGEX)", n->file,
             n->line);
    return -1;
}

sh_hc_match_t *sh_hc_match_build(const char *name, const sh_conf_node_t *first, char *err,
                                 size_t errlen)
{
    sh_hc_match_t *m = sh_new(sh_hc_match_t);
    atomic_init(&m->refs, 1);
    m->name = sh_strdup(name);
    for (const sh_conf_node_t *n = first; n != NULL; n = n->next) {
        m->conds = sh_realloc(m->conds, (m->nconds + 1) * sizeof(*m->conds));
        cond_t *c = &m->conds[m->nconds++];
        memset(c, 0, sizeof(*c));
        int rc;
        if (n->block) {
            snprintf(err, errlen, "%s:%u: \"%s\" takes no block in match", n->file, n->line,
                     n->args[0]);
            rc = -1;
        } else if (strcmp(n->args[0], "status") == 0) {
            c->kind = C_STATUS;
            rc = build_status(c, n, err, errlen);
        } else if (strcmp(n->args[0], "header") == 0) {
            c->kind = C_HEADER;
            rc = build_header(c, n, err, errlen);
        } else if (strcmp(n->args[0], "body") == 0) {
            c->kind = C_BODY;
            rc = build_body(c, n, err, errlen);
        } else if (strcmp(n->args[0], "require") == 0) {
            snprintf(err, errlen, "%s:%u: \"require\" in match is not supported (NGINX Plus)",
                     n->file, n->line);
            rc = -1;
        } else {
            snprintf(err, errlen, "%s:%u: unknown directive \"%s\" in match", n->file, n->line,
                     n->args[0]);
            rc = -1;
        }
        if (rc != 0) {
            sh_hc_match_destroy(m);
            return NULL;
        }
    }
    return m;
}

static int status_in(const cond_t *c, int status)
{
    for (size_t i = 0; i < c->nranges; i++)
        if (status >= c->ranges[i].lo && status <= c->ranges[i].hi)
            return 1;
    return 0;
}

static const sh_http1_header_t *find_header(const sh_http1_response_t *r, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < r->nheaders; i++)
        if (r->headers[i].name_len == nl && strncasecmp(r->headers[i].name, name, nl) == 0)
            return &r->headers[i];
    return NULL;
}

static int cond_holds(const cond_t *c, const sh_http1_response_t *r, const char *body, size_t blen)
{
    int ok = 0;
    switch (c->kind) {
    case C_STATUS:
        ok = status_in(c, r->status);
        break;
    case C_HEADER: {
        const sh_http1_header_t *h = find_header(r, c->name);
        if (c->op == OP_EXISTS)
            ok = h != NULL;
        else if (h == NULL)
            return 0; /* a value condition on an absent field fails either way */
        else if (c->op == OP_EQ)
            ok = h->value_len == strlen(c->value) && memcmp(h->value, c->value, h->value_len) == 0;
        else
            ok = sh_regex_match(c->re, h->value, h->value_len, NULL) == 1;
        break;
    }
    case C_BODY:
        ok = sh_regex_match(c->re, body, blen, NULL) == 1;
        break;
    }
    return c->neg ? !ok : ok;
}

int sh_hc_match_test(const sh_hc_match_t *m, const char *resp, size_t len, char *why, size_t whylen)
{
    sh_http1_header_t hdrs[100];
    sh_http1_response_t r = {.headers = hdrs, .max_headers = sizeof(hdrs) / sizeof(hdrs[0])};
    ssize_t head = sh_http1_parse_response(resp, len, &r, NULL);
    if (head < 0) {
        snprintf(why, whylen, "%s", len == 0 ? "no response" : "invalid response head");
        return 0;
    }
    const char *body = resp + head;
    size_t blen = len - (size_t)head;
    if (r.content_length >= 0 && (uint64_t)r.content_length < blen)
        blen = (size_t)r.content_length;
    if (m == NULL) {
        if (r.status >= 200 && r.status < 400)
            return 1;
        snprintf(why, whylen, "status %d", r.status);
        return 0;
    }
    for (size_t i = 0; i < m->nconds; i++) {
        const cond_t *c = &m->conds[i];
        if (!cond_holds(c, &r, body, blen)) {
            if (c->kind == C_STATUS)
                snprintf(why, whylen, "status %d does not match \"%s\"", r.status, m->name);
            else if (c->kind == C_HEADER)
                snprintf(why, whylen, "header \"%s\" does not match \"%s\"", c->name, m->name);
            else
                snprintf(why, whylen, "body does not match \"%s\"", m->name);
            return 0;
        }
    }
    return 1;
}
