/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_redirect, proxy_cookie_domain and proxy_cookie_path (nginx's): a
 * header filter on proxied responses that rewrites the Location and
 * Refresh fields and the domain= and path= attributes of Set-Cookie.
 *
 *   proxy_redirect default | off | REDIRECT REPLACEMENT | ~[*]REGEX REPLACEMENT
 *
 * A string rule replaces the matching prefix, a regex rule (`~`, `~*`)
 * the whole value (REPLACEMENT may use its captures and any variable);
 * the first rule that matches wins. `default` (nginx's default) is the
 * proxy_pass URL replaced by the location's name (by "/" when proxy_pass
 * has no URI). A Location a rule made relative is then made absolute, as
 * nginx's absolute_redirect does (one the upstream sent relative stays). A level with any of these
 * directives replaces the outer level's list, as nginx.
 *
 * Loaded on the configuration thread; the filter runs on workers.
 */
#include "node/proxy/proxy_redirect.h"

#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/modules/rewrite.h"
#include "node/pipeline/node.h"
#include "node/pipeline/regex.h"
#include "node/pipeline/vars.h"
#include "node/proxy/proxy.h"

typedef struct {
    int is_default;
    sh_regex_t *re;   /* ~ / ~*: the whole value */
    char *match;      /* else: a prefix (redirect, path) or the value (domain) */
    sh_cv_t *replace; /* NULL for default */
} rule_t;

typedef struct {
    rule_t *r;
    size_t n;
    int set; /* this level had the directive (off included) */
} rules_t;

typedef struct {
    rules_t redirect, domain, path;
} prw_loc_t;

static void rules_free(rules_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        sh_regex_destroy(l->r[i].re);
        sh_free(l->r[i].match);
        sh_cv_destroy(l->r[i].replace);
    }
    sh_free(l->r);
}

static void *prw_create_loc(void)
{
    return sh_new(prw_loc_t);
}

static void prw_destroy_loc(void *conf)
{
    prw_loc_t *c = conf;
    if (c->redirect.set)
        rules_free(&c->redirect);
    if (c->domain.set)
        rules_free(&c->domain);
    if (c->path.set)
        rules_free(&c->path);
    sh_free(c);
}

static void merge_rules(rules_t *c, const rules_t *p)
{
    if (!c->set) {
        c->r = p->r;
        c->n = p->n;
    }
}

static int prw_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    (void)cf;
    prw_loc_t *p = parent, *c = conf;
    /* proxy_redirect default is nginx's default */
    if (!p->redirect.set && p->redirect.n == 0 && !c->redirect.set) {
        static rule_t dflt = {.is_default = 1};
        c->redirect.r = &dflt;
        c->redirect.n = 1;
    } else {
        merge_rules(&c->redirect, &p->redirect);
    }
    merge_rules(&c->domain, &p->domain);
    merge_rules(&c->path, &p->path);
    return 0;
}

static int rule_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    prw_loc_t *c = conf;
    rules_t *l = cmd->offset == 0 ? &c->redirect : cmd->offset == 1 ? &c->domain : &c->path;
    const sh_conf_node_t *n = cf->node;
    const char *a = n->args[1];
    if (!l->set) {
        l->set = 1;
        l->r = NULL;
        l->n = 0;
    }
    if (n->nargs == 2) {
        if (strcmp(a, "off") == 0) {
            if (l->n > 0)
                return sh_conf_error(cf, "invalid parameter \"off\"");
            return 0;
        }
        if (cmd->offset == 0 && strcmp(a, "default") == 0) {
            l->r = sh_realloc(l->r, (l->n + 1) * sizeof(*l->r));
            l->r[l->n++] = (rule_t){.is_default = 1};
            return 0;
        }
        return sh_conf_error(cf, "invalid parameter \"%s\"", a);
    }
    if (n->nargs != 3)
        return sh_conf_error(cf, "invalid number of arguments in \"%s\" directive", n->args[0]);
    rule_t r = {0};
    if (a[0] == '~') {
        int caseless = a[1] == '*';
        const char *pat = a + 1 + caseless;
        char err[256];
        if (sh_regex_compile(pat, caseless, &r.re, err, sizeof(err)) != 0)
            return sh_conf_error(cf, "pcre2_compile() failed: %s in \"%s\"", err, pat);
        int rc = sh_vars_define_captures(cf, r.re);
        if (rc != 0) {
            sh_regex_destroy(r.re);
            return rc;
        }
    } else {
        /* a domain rule's leading dot is not compared (nginx) */
        r.match = sh_strdup(cmd->offset == 1 && a[0] == '.' ? a + 1 : a);
    }
    int rc = sh_cv_compile(cf, n->args[2], &r.replace);
    if (rc != 0) {
        sh_regex_destroy(r.re);
        sh_free(r.match);
        return rc;
    }
    l->r = sh_realloc(l->r, (l->n + 1) * sizeof(*l->r));
    l->r[l->n++] = r;
    return 0;
}

/* ------------------------------------------------------ the filter -- */

enum { K_REDIRECT, K_DOMAIN, K_PATH };

/* Rewrite value[0..len) by the rules into out (the whole new value): 1 if
 * a rule matched. For K_REDIRECT and K_PATH a string rule is a prefix; for
 * K_DOMAIN the whole value, case-insensitively. */
static int apply(sh_request_t *r, const rules_t *l, int kind, const char *v, size_t len,
                 sh_buf_t *out)
{
    for (size_t i = 0; i < l->n; i++) {
        const rule_t *ru = &l->r[i];
        if (ru->is_default) {
            size_t ul = 0;
            const char *url = sh_proxy_pass_of(r->loc, &ul);
            if (url == NULL)
                continue;
            size_t pl = strlen(url);
            const sh_http_loc_t *loc = sh_http_loc_real(r->loc);
            /* without a URI: "URL/" -> "/" */
            size_t ml = ul > 0 ? pl : pl + 1;
            if (len < ml || memcmp(v, url, pl) != 0 || (ul == 0 && v[pl] != '/'))
                continue;
            if (ul > 0)
                sh_buf_append(out, loc->name, loc->name_len);
            else
                sh_buf_append(out, "/", 1);
            sh_buf_append(out, v + ml, len - ml);
            return 1;
        }
        if (ru->re != NULL) {
            size_t ovec[SH_REGEX_OVEC];
            if (sh_regex_match(ru->re, v, len, ovec) != 1)
                continue;
            sh_captures_t caps = {.re = ru->re, .subject = v, .ovec = ovec};
            sh_cv_eval_captures(ru->replace, r, &caps, out);
            return 1;
        }
        size_t ml = strlen(ru->match);
        if (kind == K_DOMAIN) {
            size_t off = len > 0 && v[0] == '.' ? 1 : 0;
            if (len - off != ml || strncasecmp(v + off, ru->match, ml) != 0)
                continue;
            if (off)
                sh_buf_append(out, ".", 1); /* the value's own leading dot stays */
            sh_cv_eval(ru->replace, r, out);
            return 1;
        }
        if (len < ml || memcmp(v, ru->match, ml) != 0)
            continue;
        sh_cv_eval(ru->replace, r, out);
        sh_buf_append(out, v + ml, len - ml);
        return 1;
    }
    return 0;
}

/* Set-Cookie: the domain= and path= attributes through their rules. */
static int cookie(sh_request_t *r, const prw_loc_t *c, const char *v, size_t len, sh_buf_t *out)
{
    int changed = 0;
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && v[e] != ';')
            e++;
        /* the attribute is v[i..e); its name after spaces */
        size_t a = i;
        while (a < e && (v[a] == ' ' || v[a] == '\t'))
            a++;
        int kind = -1;
        size_t nl = 0;
        if (i > 0 && e - a > 7 && strncasecmp(v + a, "domain=", 7) == 0 && c->domain.n > 0) {
            kind = K_DOMAIN;
            nl = 7;
        } else if (i > 0 && e - a > 5 && strncasecmp(v + a, "path=", 5) == 0 && c->path.n > 0) {
            kind = K_PATH;
            nl = 5;
        }
        sh_buf_append(out, v + i, a + nl - i);
        if (kind >= 0 &&
            apply(r, kind == K_DOMAIN ? &c->domain : &c->path, kind, v + a + nl, e - a - nl, out))
            changed = 1;
        else if (kind >= 0)
            sh_buf_append(out, v + a + nl, e - a - nl);
        else
            sh_buf_append(out, v + a + nl, e - a - nl);
        if (e < len)
            sh_buf_append(out, ";", 1);
        i = e + 1;
    }
    return changed;
}

static int prw_filter(sh_request_t *r, sh_resp_head_t *h)
{
    if (r->proxy == NULL || r->loc == NULL)
        return 0;
    const prw_loc_t *c = sh_http_loc_conf(r->loc, &sh_proxy_redirect_module);
    for (size_t i = 0; i < h->n; i++) {
        sh_http1_header_t *f = &h->f[i];
        size_t start = r->hscratch.len;
        int changed = 0;
        if (f->name_len == 8 && strncasecmp(f->name, "Location", 8) == 0) {
            sh_buf_t tmp = {0};
            const char *v = f->value;
            size_t vl = f->value_len;
            if (c->redirect.n > 0 && apply(r, &c->redirect, K_REDIRECT, v, vl, &tmp)) {
                v = tmp.data ? tmp.data : "";
                vl = tmp.len;
                changed = 1;
            }
            if (changed && vl > 0 && v[0] == '/') {
                sh_absolute_location(r, v, vl, &r->hscratch);
            } else if (changed) {
                sh_buf_append(&r->hscratch, v, vl);
            }
            sh_buf_dispose(&tmp);
        } else if (f->name_len == 7 && strncasecmp(f->name, "Refresh", 7) == 0 &&
                   c->redirect.n > 0) {
            /* "5; url=http://..." */
            const char *u = NULL;
            for (size_t k = 0; k + 4 <= f->value_len; k++)
                if (strncasecmp(f->value + k, "url=", 4) == 0) {
                    u = f->value + k + 4;
                    break;
                }
            if (u != NULL) {
                size_t pre = (size_t)(u - f->value);
                sh_buf_append(&r->hscratch, f->value, pre);
                changed = apply(r, &c->redirect, K_REDIRECT, u, f->value_len - pre, &r->hscratch);
            }
        } else if (f->name_len == 10 && strncasecmp(f->name, "Set-Cookie", 10) == 0 &&
                   (c->domain.n > 0 || c->path.n > 0)) {
            changed = cookie(r, c, f->value, f->value_len, &r->hscratch);
        }
        if (!changed) {
            r->hscratch.len = start;
            continue;
        }
        int rc = sh_resp_head_set_scratch(r, h, i, start, r->hscratch.len - start);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int prw_applies(const sh_http_main_t *m, const sh_http_loc_t *loc)
{
    (void)m;
    size_t ul;
    return sh_proxy_pass_of(loc, &ul) != NULL;
}

static const sh_filter_t prw_f = {
    .name = "proxy_redirect", .applies = prw_applies, .header = prw_filter};

static int prw_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_filter_add(cf, m, &prw_f);
}

#define PLOC (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)

static const sh_conf_cmd_t prw_cmds[] = {
    {"proxy_redirect", PLOC | SH_CONF_TAKE12, rule_set, 0, NULL},
    {"proxy_cookie_domain", PLOC | SH_CONF_TAKE12, rule_set, 1, NULL},
    {"proxy_cookie_path", PLOC | SH_CONF_TAKE12, rule_set, 2, NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t prw_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = prw_create_loc,
    .merge_loc = prw_merge_loc,
    .destroy_loc = prw_destroy_loc,
    .postconfiguration = prw_postconf,
};

sh_conf_module_t sh_proxy_redirect_module = {
    .name = "proxy_redirect",
    .cmds = prw_cmds,
    .ctx = &prw_ctx,
};
