/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rewrite module, as nginx's ngx_http_rewrite_module: `rewrite`,
 * `return`, `set`, `if`, `break`, `rewrite_log` and
 * `uninitialized_variable_warn`.
 *
 * Each level (server, location) compiles its directives, in order, into
 * one script (an array of codes); nested locations do not inherit it. The
 * server level's script runs in the server-rewrite phase (before the
 * location is found), a location's in the rewrite phase. An `if` block is
 * an implicit nested location (sh_http_loc_create_if): its rewrite
 * directives are compiled inline into the enclosing script, and when its
 * condition holds (inside a location) the request switches to that
 * location's configuration and goes on with the codes after the block, so
 * the last `if` that matched gives the configuration ("if is evil", kept
 * as nginx has it).
 *
 * A script stops at `break`, `return`, a rewrite with a flag that matched,
 * or its end. A URI changed by a rewrite without `break` makes the request
 * find its location again (SH_PH_RELOCATE, at most 10 times). File
 * conditions (-f -d -e -x) stat in libuv's thread pool while the request
 * is paused; the script goes on from the same code when the answer comes.
 *
 * `set` variables are defined (sh_vars_define) by the first `set` of each
 * name and hold their values per request in the module's context slot.
 * Worker threads run the scripts; they are immutable after load.
 */
#include "node/modules/rewrite.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/pipeline/node.h"
#include "node/pipeline/regex.h"
#include "node/pipeline/reqlog.h"
#include "node/pipeline/vars.h"

enum op { OP_REWRITE, OP_RETURN, OP_SET, OP_IF, OP_BREAK };
enum flag { F_NONE, F_LAST, F_BREAK, F_REDIRECT, F_PERMANENT };
enum cond {
    C_VAR,
    C_EQ,
    C_NE,
    C_RE,
    C_NRE,
    C_FILE, /* -f -d -e -x: test in `ftest`, `negate` for !-f ... */
};

typedef struct {
    int op;
    const char *file;
    unsigned line;
    /* OP_REWRITE */
    sh_regex_t *re;
    sh_cv_t *uri;  /* the replacement up to its first '?' */
    sh_cv_t *args; /* after it, or NULL */
    int flag;
    int redirect;             /* a 301/302 with the value as Location */
    int add_args;             /* the request's arguments are kept (no trailing '?') */
    int status;               /* OP_REWRITE redirect, OP_RETURN */
    sh_cv_t *text;            /* OP_RETURN: text or URL, NULL: none */
    unsigned var;             /* OP_SET: the variable's index */
    sh_cv_t *value;           /* OP_SET; OP_IF: left side */
    int set_args;             /* OP_SET on $args */
    int cond;                 /* OP_IF */
    int negate;               /* !-f ..., !~ ... */
    char ftest;               /* 'f' 'd' 'e' 'x' */
    sh_cv_t *rhs;             /* = and != */
    sh_regex_t *cre;          /* ~ ~* !~ !~* */
    const sh_http_loc_t *loc; /* the if block's location; NULL at server level */
    size_t next;              /* OP_IF: the code after the block */
} code_t;

typedef struct {
    code_t *codes;
    size_t n;
} script_t;

typedef struct {
    script_t *script; /* this level's; an if block's points at its level's while walked */
    int own;          /* script belongs to this conf */
    int log;          /* rewrite_log */
    int uninit_warn;  /* uninitialized_variable_warn */
} rw_loc_t;

/* `set` variables of the http block. */
typedef struct {
    char *name;
    unsigned index;
} set_var_t;

typedef struct {
    set_var_t **vars;
    size_t nvars;
} rw_main_t;

typedef struct stat_job_s stat_job_t;

/* Per request (the module's context slot). */
typedef struct {
    const script_t *run; /* the script paused at a file test, or NULL */
    size_t ip;
    int changed; /* the URI changed without a flag: find the location again */
    int ftest;   /* -1: no answer yet; else 0/1 */
    stat_job_t *job;
    sh_buf_t tmp;
    sh_buf_t capbuf; /* the subject of the captures */
    size_t ovec[SH_REGEX_OVEC];
    sh_captures_t caps;
    sh_buf_t ncapbuf; /* of the last regex with named groups */
    size_t novec[SH_REGEX_OVEC];
    sh_captures_t ncaps;
    size_t nvals;
    sh_buf_t *vals;
    uint8_t *isset;
} rw_ctx_t;

struct stat_job_s {
    uv_fs_t fs;
    sh_request_t *r; /* NULL once the request is gone */
};

/* ------------------------------------------------------ request state -- */

static void ctx_cleanup(sh_request_t *r, void *data)
{
    rw_ctx_t *x = data;
    sh_request_ctx(r, &sh_rewrite_module) = NULL;
    if (r->caps == &x->caps)
        r->caps = NULL;
    if (r->named_caps == &x->ncaps)
        r->named_caps = NULL;
    sh_buf_dispose(&x->ncapbuf);
    if (x->job != NULL)
        x->job->r = NULL; /* the callback frees it */
    sh_buf_dispose(&x->tmp);
    sh_buf_dispose(&x->capbuf);
    for (size_t i = 0; i < x->nvals; i++)
        sh_buf_dispose(&x->vals[i]);
    sh_free(x->vals);
    sh_free(x->isset);
    sh_free(x);
}

static rw_ctx_t *ctx_get(sh_request_t *r)
{
    rw_ctx_t *x = sh_request_ctx(r, &sh_rewrite_module);
    if (x != NULL)
        return x;
    x = sh_new(rw_ctx_t);
    if (sh_request_cleanup_add(r, ctx_cleanup, x) != 0) {
        sh_free(x);
        return NULL;
    }
    const sh_http_main_t *m = r->c->w->rt->http;
    const rw_main_t *rm = sh_http_main_conf(m, &sh_rewrite_module);
    x->nvals = rm->nvars;
    if (x->nvals > 0) {
        x->vals = sh_calloc(x->nvals, sizeof(*x->vals));
        x->isset = sh_calloc(x->nvals, 1);
    }
    x->ftest = -1;
    sh_request_ctx(r, &sh_rewrite_module) = x;
    return x;
}

/* The value once `set` ran in this request, else 0 (a map's or geo's
 * value then, when one defines the name: nginx's set overrides it). */
static int var_set_peek(sh_request_t *r, const void *data, sh_buf_t *out)
{
    const set_var_t *v = data;
    rw_ctx_t *x = sh_request_ctx(r, &sh_rewrite_module);
    if (x != NULL && v->index < x->nvals && x->isset[v->index]) {
        sh_buf_append(out, x->vals[v->index].data, x->vals[v->index].len);
        return 1;
    }
    return 0;
}

static int var_set_get(sh_request_t *r, const void *data, sh_buf_t *out)
{
    const set_var_t *v = data;
    rw_ctx_t *x = sh_request_ctx(r, &sh_rewrite_module);
    if (x != NULL && v->index < x->nvals && x->isset[v->index]) {
        sh_buf_append(out, x->vals[v->index].data, x->vals[v->index].len);
        return 1;
    }
    const rw_loc_t *lc = r->loc != NULL ? sh_http_loc_conf(r->loc, &sh_rewrite_module) : NULL;
    if (lc != NULL && lc->uninit_warn)
        sh_req_log(SH_LOG_WARN, r->c, r, NULL, "using uninitialized \"%s\" variable", v->name);
    return 0;
}

/* ------------------------------------------------------ running -- */

/* After a regex of the module ran: $1..$9 are its groups when it matched,
 * none when it did not or has none (nginx); named groups, when it has
 * them and matched, are kept apart (they are variables in nginx, set by
 * each match and never cleared). */
static void keep_captures(sh_request_t *r, rw_ctx_t *x, const sh_regex_t *re, const char *s,
                          size_t len, const size_t *ovec)
{
    int matched = ovec != NULL;
    x->capbuf.len = 0;
    if (matched && sh_regex_ngroups(re) > 0)
        sh_buf_append(&x->capbuf, s, len);
    sh_buf_append(&x->capbuf, "", 1);
    if (matched && sh_regex_ngroups(re) > 0)
        memcpy(x->ovec, ovec, sizeof(x->ovec));
    else
        for (int i = 0; i < SH_REGEX_OVEC; i++)
            x->ovec[i] = SH_REGEX_UNSET;
    x->caps = (sh_captures_t){.re = re, .subject = x->capbuf.data, .ovec = x->ovec};
    r->caps = &x->caps;
    if (matched && sh_regex_nnames(re) > 0) {
        x->ncapbuf.len = 0;
        sh_buf_append(&x->ncapbuf, s, len);
        sh_buf_append(&x->ncapbuf, "", 1);
        memcpy(x->novec, ovec, sizeof(x->novec));
        x->ncaps = (sh_captures_t){.re = re, .subject = x->ncapbuf.data, .ovec = x->novec};
        r->named_caps = &x->ncaps;
    }
}

/* Before the URI changes: the location regex's named captures, which
 * vars.c would otherwise take again from the new URI, are kept as nginx
 * keeps them (variables set when the location matched). */
static void keep_location_names(sh_request_t *r, rw_ctx_t *x)
{
    const sh_http_loc_t *loc = sh_http_loc_real(r->loc);
    if (r->named_caps != NULL || loc->regex == NULL || sh_regex_nnames(loc->regex) == 0)
        return;
    size_t ovec[SH_REGEX_OVEC];
    if (sh_regex_match(loc->regex, r->uri.p, r->uri.len, ovec) != 1)
        return;
    x->ncapbuf.len = 0;
    sh_buf_append(&x->ncapbuf, r->uri.p, r->uri.len);
    sh_buf_append(&x->ncapbuf, "", 1);
    memcpy(x->novec, ovec, sizeof(x->novec));
    x->ncaps = (sh_captures_t){.re = loc->regex, .subject = x->ncapbuf.data, .ovec = x->novec};
    r->named_caps = &x->ncaps;
}

/* nginx's absolute_redirect: a Location starting with '/' gets the
 * scheme, the Host (without its port) and the port when not the default. */
void sh_absolute_location(sh_request_t *r, const char *loc, size_t len, sh_buf_t *out)
{
    if (len == 0 || loc[0] != '/') {
        sh_buf_append(out, loc, len);
        return;
    }
    int tls = r->c->tls != NULL;
    sh_buf_appends(out, tls ? "https://" : "http://");
    size_t hl = r->h.host != NULL ? r->h.host_len : 0;
    const char *host = r->h.host;
    if (hl > 0 && host[0] != '[') {
        const char *colon = memchr(host, ':', hl);
        if (colon != NULL)
            hl = (size_t)(colon - host);
    } else if (hl > 0) {
        const char *rb = memchr(host, ']', hl);
        if (rb != NULL)
            hl = (size_t)(rb - host) + 1;
    }
    if (hl > 0) {
        sh_buf_append(out, host, hl);
    } else if (r->srv != NULL && r->srv->nnames > 0 && r->srv->names[0][0] != '\0') {
        sh_buf_appends(out, r->srv->names[0]);
    } else {
        char a[64];
        sh_addr_text((const struct sockaddr *)&r->c->addr->opt.addr, a, sizeof(a));
        char *colon = strrchr(a, ':');
        if (colon != NULL)
            *colon = '\0';
        sh_buf_appends(out, a);
    }
    const struct sockaddr *sa = (const struct sockaddr *)&r->c->addr->opt.addr;
    unsigned port = sa->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port)
                                             : ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    if (port != (tls ? 443u : 80u))
        sh_buf_appendf(out, ":%u", port);
    sh_buf_append(out, loc, len);
}

static int is_redirect_status(int s)
{
    return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

static int do_return(sh_request_t *r, rw_ctx_t *x, const code_t *c)
{
    r->discard_body = 1;
    if (c->status == 444) {
        r->status = 444;
        sh_request_abort(r);
        return SH_PH_DONE;
    }
    if (c->text == NULL) {
        sh_request_respond(r, c->status, NULL, NULL, 0, NULL);
        return SH_PH_DONE;
    }
    x->tmp.len = 0;
    sh_cv_eval(c->text, r, &x->tmp);
    if (is_redirect_status(c->status)) {
        sh_buf_t *s = &r->scratch;
        s->len = 0;
        sh_absolute_location(r, x->tmp.data, x->tmp.len, s);
        sh_buf_append(s, "", 1);
        sh_request_respond(r, c->status, NULL, NULL, 0, s->data);
    } else {
        sh_request_respond(r, c->status, "text/plain", x->tmp.data ? x->tmp.data : "", x->tmp.len,
                           NULL);
    }
    return SH_PH_DONE;
}

/* A rewrite that matched: 1 to go on with the script, else a result. */
static int do_rewrite(sh_request_t *r, rw_ctx_t *x, const code_t *c, const rw_loc_t *lc, int server)
{
    sh_buf_t *t = &x->tmp;
    t->len = 0;
    sh_cv_eval(c->uri, r, t);
    size_t ul = t->len;
    if (c->redirect) {
        if (c->args != NULL) {
            sh_buf_append(t, "?", 1);
            sh_cv_eval(c->args, r, t);
        }
        if (c->add_args && r->args.len > 0) {
            sh_buf_append(t, c->args != NULL ? "&" : "?", 1);
            sh_buf_append(t, r->args.p, r->args.len);
        }
        if (lc->log)
            sh_req_log(SH_LOG_NOTICE, r->c, r, NULL, "rewritten redirect: \"%.*s\"", (int)t->len,
                       t->data ? t->data : "");
        sh_buf_t *s = &r->scratch;
        s->len = 0;
        sh_absolute_location(r, t->data ? t->data : "", t->len, s);
        sh_buf_append(s, "", 1);
        r->discard_body = 1;
        sh_request_respond(r, c->status, NULL, NULL, 0, s->data);
        return SH_PH_DONE;
    }
    if (ul == 0) {
        sh_req_log(SH_LOG_ERR, r->c, r, NULL, "the rewritten URI has a zero length");
        return 500;
    }
    keep_location_names(r, x);
    /* uri, then the arguments, into uri_buf (what r->uri and r->args may
     * point into is read before it is overwritten: t holds the new ones) */
    size_t al = 0;
    int have_args = 0;
    if (c->args != NULL) {
        sh_cv_eval(c->args, r, t);
        al = t->len - ul;
        have_args = 1;
        if (c->add_args && r->args.len > 0) {
            sh_buf_append(t, "&", 1);
            sh_buf_append(t, r->args.p, r->args.len);
            al += 1 + r->args.len;
        }
    } else if (c->add_args && r->args.p != NULL) {
        sh_buf_append(t, r->args.p, r->args.len);
        al = r->args.len;
        have_args = 1;
    }
    r->uri_buf.len = 0;
    sh_buf_append(&r->uri_buf, t->data, ul);
    sh_buf_append(&r->uri_buf, "?", 1);
    sh_buf_append(&r->uri_buf, t->data + ul, al);
    r->uri = (sh_str_t){r->uri_buf.data, ul};
    r->args = have_args && al > 0 ? (sh_str_t){r->uri_buf.data + ul + 1, al} : (sh_str_t){NULL, 0};
    r->internal = 1;
    r->uri_changed = 1;
    if (lc->log)
        sh_req_log(SH_LOG_NOTICE, r->c, r, NULL, "rewritten data: \"%.*s\", args: \"%.*s\"",
                   (int)r->uri.len, r->uri.p, (int)r->args.len, r->args.p ? r->args.p : "");
    switch (c->flag) {
    case F_LAST:
        x->changed = 0;
        return server ? SH_PH_DECLINED : SH_PH_RELOCATE;
    case F_BREAK:
        x->changed = 0;
        if (!server)
            r->uri_break = 1;
        return SH_PH_DECLINED;
    default:
        x->changed = 1;
        return 1;
    }
}

static void stat_done(uv_fs_t *req)
{
    stat_job_t *j = (stat_job_t *)req;
    sh_request_t *r = j->r;
    int ok = req->result == 0;
    uint64_t mode = ok ? req->statbuf.st_mode : 0;
    uv_fs_req_cleanup(req);
    sh_free(j);
    if (r == NULL)
        return; /* the request ended meanwhile */
    rw_ctx_t *x = sh_request_ctx(r, &sh_rewrite_module);
    if (x == NULL)
        return;
    x->job = NULL;
    const code_t *c = &x->run->codes[x->ip];
    int v = 0;
    if (ok) {
        switch (c->ftest) {
        case 'f':
            v = S_ISREG(mode);
            break;
        case 'd':
            v = S_ISDIR(mode);
            break;
        case 'e':
            v = 1;
            break;
        case 'x':
            v = (mode & S_IXUSR) != 0;
            break;
        default:
            break;
        }
    }
    x->ftest = v;
    sh_phase_resume(r);
}

/* An `if` condition: 1, 0, or SH_PH_PAUSE (a file test under way). */
static int condition(sh_request_t *r, rw_ctx_t *x, const code_t *c)
{
    sh_buf_t *t = &x->tmp;
    t->len = 0;
    switch (c->cond) {
    case C_VAR:
        sh_cv_eval(c->value, r, t);
        return !(t->len == 0 || (t->len == 1 && t->data[0] == '0'));
    case C_EQ:
    case C_NE: {
        sh_cv_eval(c->value, r, t);
        size_t ll = t->len;
        sh_cv_eval(c->rhs, r, t);
        int eq = t->len - ll == ll && (ll == 0 || memcmp(t->data, t->data + ll, ll) == 0);
        return c->cond == C_EQ ? eq : !eq;
    }
    case C_RE:
    case C_NRE: {
        sh_cv_eval(c->value, r, t);
        size_t ovec[SH_REGEX_OVEC];
        int m = sh_regex_match(c->cre, t->data ? t->data : "", t->len, ovec) == 1;
        keep_captures(r, x, c->cre, t->data, t->len, m ? ovec : NULL);
        return c->cond == C_RE ? m : !m;
    }
    case C_FILE:
    default: {
        if (x->ftest >= 0) {
            int v = x->ftest;
            x->ftest = -1;
            return c->negate ? !v : v;
        }
        sh_cv_eval(c->value, r, t);
        sh_buf_append(t, "", 1);
        stat_job_t *j = sh_new(stat_job_t);
        j->r = r;
        if (uv_fs_stat(&r->c->w->loop, &j->fs, t->data, stat_done) != 0) {
            sh_free(j);
            return c->negate; /* as a failed stat */
        }
        x->job = j;
        return SH_PH_PAUSE;
    }
    }
}

static void switch_loc(sh_request_t *r, const sh_http_loc_t *loc)
{
    r->loc = loc;
    r->core = sh_http_loc_conf(loc, &sh_http_core_module);
    if (r->core->keepalive_timeout == 0)
        r->keepalive = 0;
}

static int run_script(sh_request_t *r, rw_ctx_t *x, const script_t *sc, size_t ip, int server)
{
    const rw_loc_t *lc = sh_http_loc_conf(r->loc, &sh_rewrite_module);
    x->run = NULL;
    while (ip < sc->n) {
        const code_t *c = &sc->codes[ip];
        switch (c->op) {
        case OP_REWRITE: {
            size_t ovec[SH_REGEX_OVEC];
            int m = sh_regex_match(c->re, r->uri.p, r->uri.len, ovec) == 1;
            if (lc->log)
                sh_req_log(SH_LOG_NOTICE, r->c, r, NULL, "\"%s\" %s \"%.*s\"",
                           sh_regex_pattern(c->re), m ? "matches" : "does not match",
                           (int)r->uri.len, r->uri.p);
            if (!m) {
                keep_captures(r, x, c->re, NULL, 0, NULL);
                ip++;
                continue;
            }
            keep_captures(r, x, c->re, r->uri.p, r->uri.len, ovec);
            int rc = do_rewrite(r, x, c, lc, server);
            if (rc != 1)
                return rc;
            ip++;
            continue;
        }
        case OP_RETURN:
            return do_return(r, x, c);
        case OP_SET: {
            x->tmp.len = 0;
            sh_cv_eval(c->value, r, &x->tmp);
            if (c->set_args) {
                r->uri_buf.len = 0; /* keep r->uri: rebuild "uri?args" */
                sh_buf_t *t = &r->scratch;
                t->len = 0;
                sh_buf_append(t, r->uri.p, r->uri.len);
                sh_buf_append(&r->uri_buf, t->data, t->len);
                sh_buf_append(&r->uri_buf, "?", 1);
                sh_buf_append(&r->uri_buf, x->tmp.data ? x->tmp.data : "", x->tmp.len);
                r->uri = (sh_str_t){r->uri_buf.data, t->len};
                r->args = x->tmp.len > 0 ? (sh_str_t){r->uri_buf.data + t->len + 1, x->tmp.len}
                                         : (sh_str_t){NULL, 0};
                r->uri_changed = 1;
            } else if (c->var < x->nvals) {
                sh_buf_t *v = &x->vals[c->var];
                v->len = 0;
                sh_buf_append(v, x->tmp.data ? x->tmp.data : "", x->tmp.len);
                x->isset[c->var] = 1;
            }
            ip++;
            continue;
        }
        case OP_IF: {
            int v = condition(r, x, c);
            if (v == SH_PH_PAUSE) {
                x->run = sc;
                x->ip = ip;
                return SH_PH_PAUSE;
            }
            if (v) {
                if (c->loc != NULL) {
                    switch_loc(r, c->loc);
                    lc = sh_http_loc_conf(r->loc, &sh_rewrite_module);
                }
                ip++;
            } else {
                ip = c->next;
            }
            continue;
        }
        case OP_BREAK:
        default:
            if (x->changed && !server)
                r->uri_break = 1;
            x->changed = 0;
            return SH_PH_DECLINED;
        }
    }
    if (x->changed && !server) {
        x->changed = 0;
        return SH_PH_RELOCATE;
    }
    x->changed = 0;
    return SH_PH_DECLINED;
}

static int rewrite_handler_at(sh_request_t *r, int server)
{
    rw_ctx_t *x = sh_request_ctx(r, &sh_rewrite_module);
    if (x != NULL && x->run != NULL) /* resumed after a file test */
        return run_script(r, x, x->run, x->ip, server);
    if (!server && r->loc == r->srv->loc)
        return SH_PH_DECLINED; /* the server level's ran in its phase (nginx) */
    const rw_loc_t *lc = sh_http_loc_conf(r->loc, &sh_rewrite_module);
    if (lc == NULL || lc->script == NULL || lc->script->n == 0)
        return SH_PH_DECLINED;
    x = ctx_get(r);
    if (x == NULL)
        return 500;
    x->changed = 0;
    return run_script(r, x, lc->script, 0, server);
}

static int server_rewrite_handler(sh_request_t *r)
{
    return rewrite_handler_at(r, 1);
}

static int rewrite_handler(sh_request_t *r)
{
    return rewrite_handler_at(r, 0);
}

/* ------------------------------------------------------ configuration -- */

static void *rw_create_loc(void)
{
    rw_loc_t *c = sh_new(rw_loc_t);
    c->log = SH_CONF_UNSET;
    c->uninit_warn = SH_CONF_UNSET;
    return c;
}

static void code_free(code_t *c)
{
    sh_regex_destroy(c->re);
    sh_regex_destroy(c->cre);
    sh_cv_destroy(c->uri);
    sh_cv_destroy(c->args);
    sh_cv_destroy(c->text);
    sh_cv_destroy(c->value);
    sh_cv_destroy(c->rhs);
}

static void rw_destroy_loc(void *conf)
{
    rw_loc_t *c = conf;
    if (c->own && c->script != NULL) {
        for (size_t i = 0; i < c->script->n; i++)
            code_free(&c->script->codes[i]);
        sh_free(c->script->codes);
        sh_free(c->script);
    }
    sh_free(c);
}

static int rw_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    (void)cf;
    rw_loc_t *p = parent, *c = conf;
    SH_CONF_MERGE(c->log, p->log, 0);
    SH_CONF_MERGE(c->uninit_warn, p->uninit_warn, 1);
    return 0;
}

static void *rw_create_main(void)
{
    return sh_new(rw_main_t);
}

static void rw_destroy_main(void *conf)
{
    rw_main_t *m = conf;
    for (size_t i = 0; i < m->nvars; i++) {
        sh_free(m->vars[i]->name);
        sh_free(m->vars[i]);
    }
    sh_free(m->vars);
    sh_free(m);
}

/* A new code at the end of the level's script (an if block's: its
 * level's). */
static code_t *code_add(sh_conf_t *cf, rw_loc_t *c, int op)
{
    if (c->script == NULL) {
        c->script = sh_new(script_t);
        c->own = 1;
    }
    script_t *s = c->script;
    s->codes = sh_realloc(s->codes, (s->n + 1) * sizeof(*s->codes));
    code_t *k = &s->codes[s->n++];
    memset(k, 0, sizeof(*k));
    k->op = op;
    k->file = cf->node->file;
    k->line = cf->node->line;
    return k;
}

static int compile_regex(sh_conf_t *cf, const char *pat, int caseless, sh_regex_t **out)
{
    char err[256];
    if (sh_regex_compile(pat, caseless, out, err, sizeof(err)) != 0)
        return sh_conf_error(cf, "pcre2_compile() failed: %s in \"%s\"", err, pat);
    return sh_vars_define_captures(cf, *out);
}

static int starts_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0 ||
           strncmp(s, "$scheme", 7) == 0;
}

static int rewrite_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    const sh_conf_node_t *n = cf->node;
    int flag = F_NONE;
    if (n->nargs == 4) {
        const char *f = n->args[3];
        if (strcmp(f, "last") == 0)
            flag = F_LAST;
        else if (strcmp(f, "break") == 0)
            flag = F_BREAK;
        else if (strcmp(f, "redirect") == 0)
            flag = F_REDIRECT;
        else if (strcmp(f, "permanent") == 0)
            flag = F_PERMANENT;
        else
            return sh_conf_error(cf, "invalid parameter \"%s\"", f);
    }
    sh_regex_t *re = NULL;
    int rc = compile_regex(cf, n->args[1], 0, &re);
    if (rc != 0) {
        sh_regex_destroy(re);
        return rc;
    }
    code_t *c = code_add(cf, conf, OP_REWRITE);
    c->re = re;
    c->flag = flag;
    const char *repl = n->args[2];
    if (starts_url(repl)) {
        c->redirect = 1;
        c->status = flag == F_PERMANENT ? 301 : 302;
        if (flag == F_NONE)
            c->flag = F_REDIRECT;
    } else if (flag == F_REDIRECT || flag == F_PERMANENT) {
        c->redirect = 1;
        c->status = flag == F_PERMANENT ? 301 : 302;
    }
    size_t len = strlen(repl);
    char *text = sh_strdup(repl);
    c->add_args = 1;
    if (len > 0 && text[len - 1] == '?') { /* a last '?' drops the arguments */
        text[--len] = '\0';
        c->add_args = 0;
    }
    char *q = strchr(text, '?');
    if (q != NULL)
        *q = '\0';
    rc = sh_cv_compile(cf, text, &c->uri);
    if (rc == 0 && q != NULL)
        rc = sh_cv_compile(cf, q + 1, &c->args);
    sh_free(text);
    return rc;
}

static int return_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    const sh_conf_node_t *n = cf->node;
    int code;
    const char *text = NULL;
    if (sh_conf_parse_int(n->args[1], &code) == 0) {
        if (code > 999)
            return sh_conf_error(cf, "invalid return code \"%s\"", n->args[1]);
        if (n->nargs == 3)
            text = n->args[2];
    } else {
        /* `return URL;` is a 302 to that URL (nginx) */
        if (n->nargs != 2 || !starts_url(n->args[1]))
            return sh_conf_error(cf, "invalid return code \"%s\"", n->args[1]);
        code = 302;
        text = n->args[1];
    }
    code_t *c = code_add(cf, conf, OP_RETURN);
    c->status = code;
    if (text != NULL)
        return sh_cv_compile(cf, text, &c->text);
    return 0;
}

static int break_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    code_add(cf, conf, OP_BREAK);
    return 0;
}

static int set_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    const sh_conf_node_t *n = cf->node;
    const char *name = n->args[1];
    if (name[0] != '$')
        return sh_conf_error(cf, "invalid variable name \"%s\"", name);
    name++;
    sh_http_block_t *b = cf->user;
    rw_main_t *m = sh_http_main_conf(b->main, &sh_rewrite_module);
    int set_args = strcmp(name, "args") == 0;
    set_var_t *v = NULL;
    if (!set_args) {
        for (size_t i = 0; i < m->nvars; i++)
            if (strcmp(m->vars[i]->name, name) == 0)
                v = m->vars[i];
        if (v == NULL) {
            v = sh_new(set_var_t);
            v->name = sh_strdup(name);
            v->index = (unsigned)m->nvars;
            int rc = sh_vars_define_set(cf, name, var_set_get, var_set_peek, v);
            if (rc != 0) {
                sh_free(v->name);
                sh_free(v);
                return rc;
            }
            m->vars = sh_realloc(m->vars, (m->nvars + 1) * sizeof(*m->vars));
            m->vars[m->nvars++] = v;
        }
    }
    code_t *c = code_add(cf, conf, OP_SET);
    c->set_args = set_args;
    c->var = v != NULL ? v->index : 0;
    return sh_cv_compile(cf, n->args[2], &c->value);
}

/* The condition of `if (...)`: its tokens without the parentheses. */
static int if_condition(sh_conf_t *cf, code_t *c)
{
    const sh_conf_node_t *n = cf->node;
    const char *tok[4];
    char *first = NULL, *last = NULL;
    unsigned nt = 0;
    const char *a1 = n->args[1];
    if (a1[0] != '(')
        return sh_conf_error(cf, "invalid condition \"%s\"", a1);
    const char *al = n->args[n->nargs - 1];
    size_t all = strlen(al);
    if (all == 0 || al[all - 1] != ')')
        return sh_conf_error(cf, "invalid condition \"%s\"", al);
    for (unsigned i = 1; i < n->nargs; i++) {
        char *t = sh_strdup(n->args[i]);
        if (i == 1)
            memmove(t, t + 1, strlen(t));
        if (i == n->nargs - 1)
            t[strlen(t) - 1] = '\0';
        if (t[0] == '\0' && !n->quoted[i]) {
            sh_free(t);
            continue;
        }
        if (nt == 3) {
            sh_free(t);
            for (unsigned k = 0; k < nt; k++)
                sh_free((char *)tok[k]);
            return sh_conf_error(cf, "invalid condition");
        }
        tok[nt++] = t;
    }
    (void)first;
    (void)last;
    int rc = 0;
    if (nt == 1 && tok[0][0] == '$') {
        c->cond = C_VAR;
        rc = sh_cv_compile(cf, tok[0], &c->value);
    } else if (nt == 2 && (tok[0][0] == '-' || (tok[0][0] == '!' && tok[0][1] == '-'))) {
        const char *op = tok[0][0] == '!' ? tok[0] + 1 : tok[0];
        c->negate = tok[0][0] == '!';
        if (strlen(op) != 2 || strchr("fdex", op[1]) == NULL)
            rc = sh_conf_error(cf, "invalid condition \"%s\"", tok[0]);
        else {
            c->cond = C_FILE;
            c->ftest = op[1];
            rc = sh_cv_compile(cf, tok[1], &c->value);
        }
    } else if (nt == 3 && tok[0][0] == '$') {
        const char *op = tok[1];
        rc = sh_cv_compile(cf, tok[0], &c->value);
        if (rc == 0) {
            if (strcmp(op, "=") == 0 || strcmp(op, "!=") == 0) {
                c->cond = op[0] == '=' ? C_EQ : C_NE;
                rc = sh_cv_compile(cf, tok[2], &c->rhs);
            } else if (strcmp(op, "~") == 0 || strcmp(op, "~*") == 0 || strcmp(op, "!~") == 0 ||
                       strcmp(op, "!~*") == 0) {
                c->cond = op[0] == '!' ? C_NRE : C_RE;
                rc = compile_regex(cf, tok[2], op[strlen(op) - 1] == '*', &c->cre);
            } else {
                rc = sh_conf_error(cf, "unexpected \"%s\" in condition", op);
            }
        }
    } else {
        rc = sh_conf_error(cf, "invalid condition \"%s\"", nt > 0 ? tok[0] : a1);
    }
    for (unsigned k = 0; k < nt; k++)
        sh_free((char *)tok[k]);
    return rc;
}

/* Directives an `if` at the server level may hold (nginx's SIF level). */
static int server_if_allows(const char *name)
{
    static const char *const ok[] = {
        "rewrite", "return", "set", "break", "if", "rewrite_log", "uninitialized_variable_warn",
        NULL};
    for (int i = 0; ok[i] != NULL; i++)
        if (strcmp(ok[i], name) == 0)
            return 1;
    return 0;
}

static int if_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    rw_loc_t *lc = conf;
    sh_http_block_t *b = cf->user;
    int server = cf->ctx == SH_CTX_SERVER;
    if (server)
        for (const sh_conf_node_t *k = cf->node->child; k != NULL; k = k->next)
            if (!server_if_allows(k->args[0])) {
                const sh_conf_node_t *saved = cf->node;
                cf->node = k;
                int rc = sh_conf_error(cf, "\"%s\" directive is not allowed here", k->args[0]);
                cf->node = saved;
                return rc;
            }
    code_t *c = code_add(cf, lc, OP_IF);
    size_t at = lc->script->n - 1;
    int rc = if_condition(cf, c);
    if (rc != 0)
        return rc;
    sh_http_loc_t *loc = sh_http_loc_create_if(cf);
    rw_loc_t *ilc = sh_http_loc_conf(loc, &sh_rewrite_module);
    ilc->script = lc->script; /* the block's codes go inline */
    ilc->own = 0;
    sh_http_block_t inner = *b;
    inner.loc = loc;
    cf->user = &inner;
    rc = sh_conf_walk(cf, cf->node->child, SH_CTX_IF, loc->confs);
    cf->user = b;
    ilc->script = NULL;
    if (rc != 0)
        return rc;
    c = &lc->script->codes[at]; /* the array may have moved */
    c->loc = server ? NULL : loc;
    c->next = lc->script->n;
    return 0;
}

#define RW_SRV    (SH_CTX_SERVER | SH_CTX_LOCATION | SH_CTX_IF)
#define RW_ALL    (SH_CTX_HTTP | RW_SRV)
#define RW_OFF(f) offsetof(rw_loc_t, f)

static const sh_conf_cmd_t rewrite_cmds[] = {
    {"rewrite", RW_SRV | SH_CONF_TAKE23, rewrite_set, 0, NULL},
    {"return", RW_SRV | SH_CONF_TAKE12, return_set, 0, NULL},
    {"break", RW_SRV | SH_CONF_NOARGS, break_set, 0, NULL},
    {"set", RW_SRV | SH_CONF_TAKE2, set_set, 0, NULL},
    {"if", SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_BLOCK | SH_CONF_1MORE, if_set, 0, NULL},
    {"rewrite_log", RW_ALL | SH_CONF_FLAG, sh_conf_set_flag, RW_OFF(log), NULL},
    {"uninitialized_variable_warn", RW_ALL | SH_CONF_FLAG, sh_conf_set_flag, RW_OFF(uninit_warn),
     NULL},
    {NULL, 0, NULL, 0, NULL}};

static int rewrite_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    int rc = sh_phase_add(cf, m, SH_PHASE_SERVER_REWRITE, server_rewrite_handler);
    if (rc == 0)
        rc = sh_phase_add(cf, m, SH_PHASE_REWRITE, rewrite_handler);
    return rc;
}

static const sh_http_module_t rewrite_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_main = rw_create_main,
    .destroy_main = rw_destroy_main,
    .create_loc = rw_create_loc,
    .merge_loc = rw_merge_loc,
    .destroy_loc = rw_destroy_loc,
    .postconfiguration = rewrite_postconf,
};

sh_conf_module_t sh_rewrite_module = {
    .name = "rewrite",
    .cmds = rewrite_cmds,
    .ctx = &rewrite_ctx,
};

const sh_cv_t *sh_rewrite_return_text(const sh_http_loc_t *loc)
{
    const rw_loc_t *c = sh_http_loc_conf(loc, &sh_rewrite_module);
    if (c == NULL || c->script == NULL)
        return NULL;
    for (size_t i = 0; i < c->script->n; i++)
        if (c->script->codes[i].op == OP_RETURN)
            return c->script->codes[i].text;
    return NULL;
}
