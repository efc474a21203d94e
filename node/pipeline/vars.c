/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Variables and complex values (see vars.h): the registry of named
 * variables and the generic families. Variables are looked up by name at
 * compile time into a part kind and a parameter (the NAME of $http_NAME,
 * $arg_NAME, ..., the group of $1, the registry entry of a registered
 * variable or a named capture), so evaluation is a switch on the kind and
 * one getter call, not a lookup.
 * Getters append to the output buffer directly: no per-variable
 * allocation. Captures of the request's location (or server name) regex
 * are computed at most once per evaluation, and only when a value names
 * one, by matching that regex again on the normalized URI (or Host): the
 * router stores nothing per request.
 */
#include "node/pipeline/vars.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/pipeline/node.h"
#include "node/pipeline/regex.h"

#define NAMED_DEPTH_MAX       16 /* maps naming maps: deeper is a cycle */
#define CAPTURE_SUBJECT_STACK 1024

/* The kinds of a compiled part: literal text, the generic families whose
 * NAME is known only where the value is written, the regex captures, and
 * a registered variable (every module's, the core's included: its getter
 * is called through the registry entry, found once at load time). */
enum part_kind {
    V_LITERAL = 0,
    V_HTTP,
    V_ARG,
    V_COOKIE,
    V_SENT_HTTP,
    V_UPSTREAM_HTTP,
    V_CAPTURE, /* $0..$9: group in part.group */
    V_NAMED,   /* registered variable or named capture: part.entry */
    V_GETTER,  /* a module's built-in variable: part.get(r, part.data) */
};

/* A registry entry: a named variable of the configuration. */
typedef struct var_entry_s {
    char *name;
    sh_var_get_pt get; /* NULL for a named capture */
    const void *data;
    unsigned defined : 1;
    unsigned capture : 1;
    unsigned builtin : 1; /* defined by a module's preconfiguration */
    char *use_file;       /* first use, for "unknown variable" */
    unsigned use_line;
} var_entry_t;

struct sh_var_reg_s {
    var_entry_t **v;
    size_t n;
    struct {
        char *prefix; /* a module's family: $jwt_claim_NAME */
        sh_var_get_pt get;
    } * pfx;
    size_t npfx;
    unsigned walking : 1; /* the preconfigurations are done */
};

typedef struct {
    int id;
    char *text; /* literal text, or the NAME of $http_NAME etc. */
    size_t len;
    int group;          /* V_CAPTURE */
    var_entry_t *entry; /* V_NAMED */
    sh_var_get_pt get;  /* V_GETTER */
    const void *data;
} part_t;

struct sh_cv_s {
    part_t *parts;
    size_t nparts;
    char *source;
};

/* The prefixed families: $http_NAME and friends. */
static const struct {
    const char *prefix;
    size_t len;
    int id;
} prefixed_vars[] = {
    {"http_", 5, V_HTTP},
    {"arg_", 4, V_ARG},
    {"cookie_", 7, V_COOKIE},
    {"sent_http_", 10, V_SENT_HTTP},
    {"upstream_http_", 14, V_UPSTREAM_HTTP},
};

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static int is_var_char(int c)
{
    return isalnum(c) || c == '_';
}

static int prefixed_id(const char *name, size_t nl)
{
    for (size_t i = 0; i < NELEMS(prefixed_vars); i++)
        if (nl > prefixed_vars[i].len &&
            memcmp(name, prefixed_vars[i].prefix, prefixed_vars[i].len) == 0)
            return (int)i;
    return -1;
}

/* ------------------------------------------------------ registry -- */

static sh_http_main_t *cf_http_main(sh_conf_t *cf)
{
    if ((cf->ctx &
         (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CTX_IF | SH_CTX_LIMIT_EXCEPT)) == 0 ||
        cf->user == NULL)
        return NULL;
    return ((sh_http_block_t *)cf->user)->main;
}

static var_entry_t *reg_find(sh_var_reg_t *reg, const char *name, size_t nl)
{
    if (reg == NULL)
        return NULL;
    for (size_t i = 0; i < reg->n; i++)
        if (strlen(reg->v[i]->name) == nl && memcmp(reg->v[i]->name, name, nl) == 0)
            return reg->v[i];
    return NULL;
}

static var_entry_t *reg_add(sh_http_main_t *m, const char *name, size_t nl)
{
    if (m->vars == NULL)
        m->vars = sh_new(sh_var_reg_t);
    sh_var_reg_t *reg = m->vars;
    var_entry_t *e = sh_new(var_entry_t);
    e->name = sh_strndup(name, nl);
    reg->v = sh_realloc(reg->v, (reg->n + 1) * sizeof(*reg->v));
    reg->v[reg->n++] = e;
    return e;
}

int sh_vars_define(sh_conf_t *cf, const char *name, sh_var_get_pt get, const void *data)
{
    sh_http_main_t *m = cf_http_main(cf);
    size_t nl = strlen(name);
    if (m == NULL)
        return sh_conf_error(cf, "variables can only be defined in the http block");
    if (nl == 0)
        return sh_conf_error(cf, "empty variable name");
    for (size_t i = 0; i < nl; i++)
        if (!is_var_char((unsigned char)name[i]))
            return sh_conf_error(cf, "invalid variable name \"%s\"", name);
    if (prefixed_id(name, nl) >= 0 || isdigit((unsigned char)name[0]))
        return sh_conf_error(cf, "the duplicate \"%s\" variable", name);
    var_entry_t *e = reg_find(m->vars, name, nl);
    if (e != NULL && e->defined)
        return sh_conf_error(cf, "the duplicate \"%s\" variable", name);
    if (e == NULL)
        e = reg_add(m, name, nl);
    e->defined = 1;
    e->builtin = !m->vars->walking;
    e->get = get;
    e->data = data;
    return 0;
}

void sh_vars_preconf_done(sh_http_main_t *m)
{
    if (m->vars == NULL)
        m->vars = sh_new(sh_var_reg_t);
    m->vars->walking = 1;
}

int sh_vars_define_captures(sh_conf_t *cf, const sh_regex_t *re)
{
    sh_http_main_t *m = cf_http_main(cf);
    for (int i = 0; i < sh_regex_nnames(re); i++) {
        int g;
        const char *name = sh_regex_name(re, i, &g);
        size_t nl = strlen(name);
        if (prefixed_id(name, nl) >= 0)
            return sh_conf_error(cf, "the duplicate \"%s\" variable", name);
        if (m == NULL)
            continue;
        var_entry_t *e = reg_find(m->vars, name, nl);
        if (e != NULL && e->defined && !e->capture)
            return sh_conf_error(cf, "the duplicate \"%s\" variable", name);
        if (e == NULL)
            e = reg_add(m, name, nl);
        e->defined = 1;
        e->capture = 1;
    }
    return 0;
}

int sh_vars_define_prefix(sh_conf_t *cf, const char *prefix, sh_var_get_pt get)
{
    sh_http_main_t *m = cf_http_main(cf);
    if (m == NULL)
        return sh_conf_error(cf, "variables can only be defined in the http block");
    if (m->vars == NULL)
        m->vars = sh_new(sh_var_reg_t);
    sh_var_reg_t *reg = m->vars;
    reg->pfx = sh_realloc(reg->pfx, (reg->npfx + 1) * sizeof(*reg->pfx));
    reg->pfx[reg->npfx].prefix = sh_strdup(prefix);
    reg->pfx[reg->npfx].get = get;
    reg->npfx++;
    return 0;
}

int sh_vars_check(sh_conf_t *cf, sh_http_main_t *m)
{
    if (m->vars == NULL)
        return 0;
    for (size_t i = 0; i < m->vars->n; i++) {
        var_entry_t *e = m->vars->v[i];
        for (size_t k = 0; !e->defined && k < m->vars->npfx; k++) {
            size_t pl = strlen(m->vars->pfx[k].prefix);
            if (strlen(e->name) > pl && memcmp(e->name, m->vars->pfx[k].prefix, pl) == 0) {
                e->defined = 1;
                e->get = m->vars->pfx[k].get;
                e->data = e->name + pl; /* the NAME, as long as the registry */
            }
        }
        if (!e->defined) {
            sh_conf_node_t fake = {.file = e->use_file, .line = e->use_line};
            const sh_conf_node_t *saved = cf->node;
            cf->node = &fake;
            int rc = sh_conf_error(cf, "unknown \"%s\" variable", e->name);
            cf->node = saved;
            return rc;
        }
    }
    return 0;
}

void sh_vars_reg_destroy(sh_var_reg_t *reg)
{
    if (reg == NULL)
        return;
    for (size_t i = 0; i < reg->n; i++) {
        sh_free(reg->v[i]->name);
        sh_free(reg->v[i]->use_file);
        sh_free(reg->v[i]);
    }
    for (size_t i = 0; i < reg->npfx; i++)
        sh_free(reg->pfx[i].prefix);
    sh_free(reg->pfx);
    sh_free(reg->v);
    sh_free(reg);
}

/* ------------------------------------------------------ compiling -- */

/* The value of field name (lower case, '-') among "Name: value\r\n"
 * lines; several are joined with ", " (nginx 1.23+). Returns 1 if found. */
static int fields_get(const sh_buf_t *f, const char *name, size_t nl, sh_buf_t *out)
{
    int found = 0;
    const char *p = f->data, *end = f->data + f->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon != NULL && (size_t)(colon - p) == nl && strncasecmp(p, name, nl) == 0) {
            const char *v = colon + 1, *ve = le;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (found)
                sh_buf_append(out, ", ", 2);
            sh_buf_append(out, v, (size_t)(ve - v));
            found = 1;
        }
        p = le + 1;
    }
    return found;
}

static part_t *add_part(sh_cv_t *cv, int id, const char *text, size_t len)
{
    cv->parts = sh_realloc(cv->parts, (cv->nparts + 1) * sizeof(*cv->parts));
    part_t *p = &cv->parts[cv->nparts++];
    memset(p, 0, sizeof(*p));
    p->id = id;
    p->text = sh_strndup(text, len);
    p->len = len;
    if (id == V_HTTP || id == V_SENT_HTTP || id == V_UPSTREAM_HTTP)
        /* header names compare as lower-case with '_' for '-' */
        for (size_t i = 0; i < len; i++)
            p->text[i] = p->text[i] == '_' ? '-' : (char)tolower((unsigned char)p->text[i]);
    return p;
}

int sh_cv_compile(sh_conf_t *cf, const char *text, sh_cv_t **out)
{
    sh_cv_t *cv = sh_new(sh_cv_t);
    cv->source = sh_strdup(text);
    const char *p = text, *lit = text;
    while (*p) {
        if (*p != '$') {
            p++;
            continue;
        }
        const char *name, *end;
        if (p[1] == '{') {
            name = p + 2;
            end = strchr(name, '}');
            if (end == NULL) {
                sh_cv_destroy(cv);
                return sh_conf_error(cf, "the closing bracket in \"%s\" variable is missing", name);
            }
        } else {
            name = p + 1;
            end = name;
            if (isdigit((unsigned char)*end)) {
                end++; /* $1 is one digit: "$12" is $1 then "2" */
            } else {
                while (is_var_char((unsigned char)*end))
                    end++;
            }
            if (end == name) { /* a lone '$' is literal */
                p++;
                continue;
            }
        }
        if (p > lit)
            add_part(cv, V_LITERAL, lit, (size_t)(p - lit));
        size_t nl = (size_t)(end - name);
        int pi;
        if (nl == 1 && isdigit((unsigned char)name[0])) {
            add_part(cv, V_CAPTURE, name, nl)->group = name[0] - '0';
        } else if ((pi = prefixed_id(name, nl)) >= 0) {
            size_t pl = prefixed_vars[pi].len;
            add_part(cv, prefixed_vars[pi].id, name + pl, nl - pl);
            int want =
                prefixed_vars[pi].id == V_SENT_HTTP || prefixed_vars[pi].id == V_UPSTREAM_HTTP;
            sh_http_main_t *m = want ? cf_http_main(cf) : NULL;
            if (m != NULL) /* the fields are kept for this generation only */
                m->want_fields = 1;
        } else {
            sh_http_main_t *m = cf_http_main(cf);
            if (m == NULL) {
                sh_cv_destroy(cv);
                return sh_conf_error(cf, "unknown \"%.*s\" variable", (int)nl, name);
            }
            /* possibly defined later in the http block: checked at its end */
            var_entry_t *e = reg_find(m->vars, name, nl);
            if (e != NULL && e->builtin && e->get != NULL) {
                /* a module's own variable reads the request and names no
                 * value of the configuration (no cycle to guard): its
                 * getter is called directly */
                part_t *pt = add_part(cv, V_GETTER, name, nl);
                pt->get = e->get;
                pt->data = e->data;
                p = end + (p[1] == '{' ? 1 : 0);
                lit = p;
                continue;
            }
            if (e == NULL) {
                e = reg_add(m, name, nl);
                e->use_file = sh_strdup(cf->node != NULL ? cf->node->file : "");
                e->use_line = cf->node != NULL ? cf->node->line : 0;
            }
            add_part(cv, V_NAMED, name, nl)->entry = e;
        }
        p = end + (p[1] == '{' ? 1 : 0);
        lit = p;
    }
    if (p > lit)
        add_part(cv, V_LITERAL, lit, (size_t)(p - lit));
    *out = cv;
    return 0;
}

void sh_cv_destroy(sh_cv_t *cv)
{
    if (cv == NULL)
        return;
    for (size_t i = 0; i < cv->nparts; i++)
        sh_free(cv->parts[i].text);
    sh_free(cv->parts);
    sh_free(cv->source);
    sh_free(cv);
}

int sh_cv_is_literal(const sh_cv_t *cv, sh_str_t *lit)
{
    if (cv->nparts == 0) {
        *lit = (sh_str_t){"", 0};
        return 1;
    }
    if (cv->nparts == 1 && cv->parts[0].id == V_LITERAL) {
        *lit = (sh_str_t){cv->parts[0].text, cv->parts[0].len};
        return 1;
    }
    return 0;
}

const char *sh_cv_source(const sh_cv_t *cv)
{
    return cv->source;
}

/* ------------------------------------------------------ evaluation -- */

/* State of one evaluation: the captures, computed on first use. */
typedef struct {
    sh_request_t *r;
    const sh_captures_t *caps; /* a map line's match, or NULL */
    int own_state;             /* 0: not computed, 1: have them, 2: none */
    sh_captures_t own;
    size_t ovec[SH_REGEX_OVEC];
    char *subject; /* normalized URI or lower-cased Host */
    char stack[CAPTURE_SUBJECT_STACK];
} eval_t;

static _Thread_local int named_depth;

const sh_http1_header_t *sh_vars_request_field(const sh_request_t *r, const char *lname, size_t len)
{
    for (size_t i = 0; i < r->h.nheaders; i++) {
        const sh_http1_header_t *h = &r->h.headers[i];
        if (h->name_len == len && strncasecmp(h->name, lname, len) == 0)
            return h;
    }
    return NULL;
}

static int find_param(const char *s, size_t len, char sep, const char *name, size_t nlen,
                      sh_str_t *val)
{
    const char *p = s, *end = s + len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == sep))
            p++;
        const char *e = memchr(p, sep, (size_t)(end - p));
        if (e == NULL)
            e = end;
        if ((size_t)(e - p) > nlen && p[nlen] == '=' && strncasecmp(p, name, nlen) == 0) {
            *val = (sh_str_t){p + nlen + 1, (size_t)(e - p - nlen - 1)};
            return 1;
        }
        p = e + 1;
    }
    return 0;
}

/* The captures of the request's location regex on the normalized URI,
 * else of the regex server name that chose its server, on the Host. */
static const sh_captures_t *loc_captures(eval_t *ev)
{
    if (ev->own_state != 0)
        return ev->own_state == 1 ? &ev->own : NULL;
    ev->own_state = 2;
    sh_request_t *r = ev->r;
    const sh_regex_t *re = NULL;
    const char *subj = NULL;
    size_t len = 0;
    if (r->loc != NULL && r->loc->regex != NULL && r->uri.p != NULL) {
        re = r->loc->regex;
        subj = r->uri.p;
        len = r->uri.len;
    } else if (r->loc != NULL && r->loc->regex != NULL && r->path.p != NULL) {
        re = r->loc->regex;
        ev->subject = r->path.len <= sizeof(ev->stack) ? ev->stack : sh_malloc(r->path.len);
        if (sh_http_normalize_uri(r->path.p, r->path.len, ev->subject, &len) == 0)
            subj = ev->subject;
        else {
            subj = r->path.p;
            len = r->path.len;
        }
    } else if (r->c != NULL && r->c->addr != NULL && r->h.host != NULL) {
        const sh_regex_t *nre = NULL;
        sh_http_find_server_ex(r->c->addr, r->h.host, r->h.host_len, &nre);
        if (nre == NULL)
            return NULL;
        re = nre;
        len = r->h.host_len;
        const char *colon = r->h.host[0] == '[' ? NULL : memchr(r->h.host, ':', len);
        if (colon != NULL)
            len = (size_t)(colon - r->h.host);
        if (len > 0 && r->h.host[len - 1] == '.')
            len--;
        ev->subject = len <= sizeof(ev->stack) ? ev->stack : sh_malloc(len);
        for (size_t i = 0; i < len; i++)
            ev->subject[i] = (char)tolower((unsigned char)r->h.host[i]);
        subj = ev->subject;
    }
    if (re == NULL || sh_regex_match(re, subj, len, ev->ovec) != 1)
        return NULL;
    ev->own = (sh_captures_t){.re = re, .subject = subj, .ovec = ev->ovec};
    ev->own_state = 1;
    return &ev->own;
}

/* $1..$9: the rewrite module's last regex (rewrite, if) when one ran,
 * else the location's (or server name's). */
static const sh_captures_t *own_captures(eval_t *ev)
{
    if (ev->r->caps != NULL)
        return ev->r->caps;
    return loc_captures(ev);
}

static int append_group(const sh_captures_t *c, int g, sh_buf_t *out)
{
    if (c == NULL || g < 0 || g >= SH_REGEX_MAX_CAPTURES || c->ovec[2 * g] == SH_REGEX_UNSET)
        return 0;
    sh_buf_append(out, c->subject + c->ovec[2 * g], c->ovec[2 * g + 1] - c->ovec[2 * g]);
    return 1;
}

/* sh_buf_append that tolerates (NULL, 0): a request that failed to parse
 * has no method or target. */
static void app(sh_buf_t *out, const char *p, size_t n)
{
    if (n > 0)
        sh_buf_append(out, p, n);
}

/* Append one variable part; 1 if the variable is set, 0 if not. */
static int eval_part(eval_t *ev, const part_t *pt, sh_buf_t *out)
{
    sh_request_t *r = ev->r;
    const sh_http1_header_t *h;
    sh_str_t v;
    switch (pt->id) {
    case V_LITERAL:
        sh_buf_append(out, pt->text, pt->len);
        return 1;
    case V_HTTP:
        h = sh_vars_request_field(r, pt->text, pt->len);
        if (h == NULL)
            return 0;
        app(out, h->value, h->value_len);
        return 1;
    case V_ARG:
        if (r->args.p == NULL || !find_param(r->args.p, r->args.len, '&', pt->text, pt->len, &v))
            return 0;
        app(out, v.p, v.len);
        return 1;
    case V_COOKIE:
        h = sh_vars_request_field(r, "cookie", 6);
        if (h == NULL || !find_param(h->value, h->value_len, ';', pt->text, pt->len, &v))
            return 0;
        app(out, v.p, v.len);
        return 1;
    case V_SENT_HTTP:
        return fields_get(&r->sent_fields, pt->text, pt->len, out);
    case V_UPSTREAM_HTTP:
        return fields_get(&r->up_fields, pt->text, pt->len, out);
    case V_CAPTURE:
        if (ev->caps != NULL)
            return append_group(ev->caps, pt->group, out);
        return append_group(own_captures(ev), pt->group, out);
    case V_GETTER:
        return pt->get(r, pt->data, out);
    case V_NAMED: {
        const var_entry_t *e = pt->entry;
        if (e->capture && e->get == NULL) {
            if (ev->caps != NULL) {
                int g = sh_regex_group(ev->caps->re, e->name, pt->len);
                if (g >= 0)
                    return append_group(ev->caps, g, out);
            }
            /* named captures are variables set at each match (nginx):
             * the last rewrite-module regex that had the name, else the
             * location's */
            const sh_captures_t *c = r->named_caps;
            int g = c != NULL ? sh_regex_group(c->re, e->name, pt->len) : -1;
            if (g < 0) {
                c = loc_captures(ev);
                if (c == NULL)
                    return 0;
                g = sh_regex_group(c->re, e->name, pt->len);
            }
            return append_group(c, g, out);
        }
        if (e->get == NULL)
            return 0;
        if (named_depth >= NAMED_DEPTH_MAX) {
            sh_log_err("cycle while evaluating variable \"%s\"", e->name);
            return 0;
        }
        named_depth++;
        int found = e->get(r, e->data, out);
        named_depth--;
        return found;
    }
    }
    return 0;
}

static void eval_done(eval_t *ev)
{
    if (ev->subject != NULL && ev->subject != ev->stack)
        sh_free(ev->subject);
}

void sh_cv_eval_captures(const sh_cv_t *cv, sh_request_t *r, const sh_captures_t *caps,
                         sh_buf_t *out)
{
    eval_t ev;
    ev.r = r;
    ev.caps = caps;
    ev.own_state = 0;
    ev.subject = NULL;
    for (size_t i = 0; i < cv->nparts; i++) {
        const part_t *pt = &cv->parts[i];
        if (pt->id == V_GETTER) /* the common case, without the switch */
            pt->get(r, pt->data, out);
        else
            eval_part(&ev, pt, out);
    }
    eval_done(&ev);
}

void sh_cv_eval(const sh_cv_t *cv, sh_request_t *r, sh_buf_t *out)
{
    sh_cv_eval_captures(cv, r, NULL, out);
}

/* Escape out[from..len) in place, as nginx's log escapes. */
static void escape_tail(sh_buf_t *out, size_t from, int mode)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t extra = 0;
    for (size_t i = from; i < out->len; i++) {
        unsigned char ch = (unsigned char)out->data[i];
        if (mode == SH_ESCAPE_DEFAULT) {
            if (ch == '"' || ch == '\\' || ch < 0x20 || ch > 0x7e)
                extra += 3;
        } else if (ch == '"' || ch == '\\' || ch == '\n' || ch == '\r' || ch == '\t' ||
                   ch == '\b' || ch == '\f') {
            extra += 1;
        } else if (ch < 0x20) {
            extra += 5;
        }
    }
    if (extra == 0)
        return;
    sh_buf_reserve(out, extra);
    size_t src = out->len, dst = out->len + extra;
    char *d = out->data;
    while (src > from) {
        unsigned char ch = (unsigned char)d[--src];
        if (mode == SH_ESCAPE_DEFAULT) {
            if (ch == '"' || ch == '\\' || ch < 0x20 || ch > 0x7e) {
                d[--dst] = hex[ch & 0xf];
                d[--dst] = hex[ch >> 4];
                d[--dst] = 'x';
                d[--dst] = '\\';
            } else {
                d[--dst] = (char)ch;
            }
            continue;
        }
        char esc = 0;
        switch (ch) {
        case '"':
            esc = '"';
            break;
        case '\\':
            esc = '\\';
            break;
        case '\n':
            esc = 'n';
            break;
        case '\r':
            esc = 'r';
            break;
        case '\t':
            esc = 't';
            break;
        case '\b':
            esc = 'b';
            break;
        case '\f':
            esc = 'f';
            break;
        default:
            break;
        }
        if (esc) {
            d[--dst] = esc;
            d[--dst] = '\\';
        } else if (ch < 0x20) {
            d[--dst] = hex[ch & 0xf];
            d[--dst] = hex[ch >> 4];
            d[--dst] = '0';
            d[--dst] = '0';
            d[--dst] = 'u';
            d[--dst] = '\\';
        } else {
            d[--dst] = (char)ch;
        }
    }
    out->len += extra;
}

void sh_cv_eval_log(const sh_cv_t *cv, sh_request_t *r, int escape, sh_buf_t *out)
{
    eval_t ev;
    ev.r = r;
    ev.caps = NULL;
    ev.own_state = 0;
    ev.subject = NULL;
    for (size_t i = 0; i < cv->nparts; i++) {
        const part_t *pt = &cv->parts[i];
        if (pt->id == V_LITERAL) {
            sh_buf_append(out, pt->text, pt->len);
            continue;
        }
        size_t from = out->len;
        int found = pt->id == V_GETTER ? pt->get(r, pt->data, out) : eval_part(&ev, pt, out);
        if (!found) {
            out->len = from;
            if (escape != SH_ESCAPE_JSON)
                sh_buf_append(out, "-", 1);
            continue;
        }
        if (escape != SH_ESCAPE_NONE)
            escape_tail(out, from, escape);
    }
    eval_done(&ev);
}
