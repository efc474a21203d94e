/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JWT authentication, as NGINX Plus names and means it:
 *
 *   auth_jwt REALM [token=$variable] | off;    the check (Authorization:
 *                                              Bearer TOKEN by default)
 *   auth_jwt_key_file FILE;                    JWK set, one JWK or PEM public
 *                                              keys; repeatable, read at load
 *   auth_jwt_leeway TIME;                      clock skew for exp, nbf, iat
 *   auth_jwt_key_request URI;                  a JWK set fetched by a subrequest
 *                                              (usually a location that proxies
 *                                              to the identity provider's JWKS)
 *   auth_jwt_key_cache TIME;                   how long fetched keys are kept
 *                                              (0, the default: fetched for every
 *                                              request, as NGINX Plus)
 *   auth_jwt_require $value ... [error=401|403]; each must be non-empty
 *                                              and not "0"
 *   auth_jwt_type signed;                      (encrypted and nested: refused)
 *   auth_jwt_claim_set $var NAME ...;          (http) a nested claim
 *   auth_jwt_header_set $var NAME ...;         (http) a nested header field
 *   $jwt_claim_NAME $jwt_header_NAME $jwt_payload
 *
 * A missing token is 401 with `WWW-Authenticate: Bearer realm="REALM"`, an
 * invalid one 401 with `..., error="invalid_token"` and its reason in the
 * error log. The verification (jwt.c) runs on the worker: a signature
 * check costs tens of microseconds, less than a thread-pool round trip.
 * Fetched keys are shared by the workers (refcounted, replaced whole when
 * they are fetched again); a failed fetch is 500 with the reason in the
 * error log, as auth_request's errors.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/modules/access.h"
#include "node/modules/auth_jwt.h"
#include "node/modules/jwt.h"
#include "node/pipeline/node.h"
#include "node/pipeline/reqlog.h"
#include "node/pipeline/subrequest.h"
#include "node/pipeline/vars.h"

#define KEYFILE_MAX (1024 * 1024)

/* Keys fetched by auth_jwt_key_request. */
typedef struct {
    _Atomic int refs;
    sh_jwks_t set;
    uint64_t at; /* worker ms when fetched */
} keyref_t;

typedef struct {
    pthread_mutex_t mu;
    keyref_t *cur;
} keycache_t;

static void keyref_unref(keyref_t *k)
{
    if (k == NULL || atomic_fetch_sub(&k->refs, 1) != 1)
        return;
    sh_jwks_clear(&k->set);
    sh_free(k);
}

typedef struct {
    sh_cv_t *realm; /* NULL: off */
    sh_cv_t *token; /* token=$var, NULL: Authorization: Bearer */
    int set;        /* this level said auth_jwt (owns realm and token) */
    sh_jwks_t **keys;
    size_t nkeys;
    int keys_own;
    sh_cv_t **require;
    size_t nrequire;
    int require_error;
    int require_own;
    uint64_t leeway;
    int type;
    char *key_uri;  /* auth_jwt_key_request */
    keycache_t *kc; /* owned by the level that set key_uri (kc_own) */
    int kc_own;
    uint64_t key_cache; /* auth_jwt_key_cache */
} jwt_loc_t;

/* auth_jwt_claim_set / auth_jwt_header_set: a path into the token. */
typedef struct {
    int header;
    char **names;
    size_t n;
} path_var_t;

typedef struct {
    path_var_t **paths;
    size_t n;
} jwt_main_t;

extern sh_conf_module_t sh_auth_jwt_module;

/* ------------------------------------------------------ configuration -- */

static void *jwt_create_main(void)
{
    return sh_new(jwt_main_t);
}

static void jwt_destroy_main(void *conf)
{
    jwt_main_t *m = conf;
    for (size_t i = 0; i < m->n; i++) {
        for (size_t k = 0; k < m->paths[i]->n; k++)
            sh_free(m->paths[i]->names[k]);
        sh_free(m->paths[i]->names);
        sh_free(m->paths[i]);
    }
    sh_free(m->paths);
    sh_free(m);
}

static void *jwt_create(void)
{
    jwt_loc_t *c = sh_new(jwt_loc_t);
    c->leeway = SH_CONF_UNSET_MSEC;
    c->key_cache = SH_CONF_UNSET_MSEC;
    c->type = SH_CONF_UNSET;
    return c;
}

static int jwt_merge(sh_conf_t *cf, void *parent, void *conf)
{
    (void)cf;
    jwt_loc_t *p = parent, *c = conf;
    if (!c->set) {
        c->realm = p->realm;
        c->token = p->token;
    }
    if (c->keys == NULL) {
        c->keys = p->keys;
        c->nkeys = p->nkeys;
    }
    if (c->require == NULL) {
        c->require = p->require;
        c->nrequire = p->nrequire;
        c->require_error = p->require_error;
    }
    SH_CONF_MERGE_MSEC(c->leeway, p->leeway, 0);
    SH_CONF_MERGE_MSEC(c->key_cache, p->key_cache, 0);
    SH_CONF_MERGE(c->type, p->type, 0);
    if (c->key_uri == NULL && p->key_uri != NULL) {
        c->key_uri = p->key_uri;
        c->kc = p->kc; /* the parent's cache, shared */
    }
    return 0;
}

static void jwt_destroy(void *conf)
{
    jwt_loc_t *c = conf;
    if (c->set) {
        sh_cv_destroy(c->realm);
        sh_cv_destroy(c->token);
    }
    if (c->keys_own) {
        for (size_t i = 0; i < c->nkeys; i++) {
            sh_jwks_clear(c->keys[i]);
            sh_free(c->keys[i]);
        }
        sh_free(c->keys);
    }
    if (c->kc_own) {
        keyref_unref(c->kc->cur);
        pthread_mutex_destroy(&c->kc->mu);
        sh_free(c->kc);
        sh_free(c->key_uri);
    }
    if (c->require_own) {
        for (size_t i = 0; i < c->nrequire; i++)
            sh_cv_destroy(c->require[i]);
        sh_free(c->require);
    }
    sh_free(c);
}

static int set_jwt(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    jwt_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (c->set)
        return sh_conf_error(cf, "\"auth_jwt\" directive is duplicate");
    c->set = 1;
    if (strcmp(n->args[1], "off") == 0) {
        if (n->nargs > 2)
            return sh_conf_error(cf, "invalid parameter \"%s\"", n->args[2]);
        return 0;
    }
    if (n->nargs > 2) {
        if (strncmp(n->args[2], "token=", 6) != 0 || n->args[2][6] != '$')
            return sh_conf_error(cf, "invalid parameter \"%s\"", n->args[2]);
        int rc = sh_cv_compile(cf, n->args[2] + 6, &c->token);
        if (rc != 0)
            return rc;
    }
    return sh_cv_compile(cf, n->args[1], &c->realm);
}

static char *conf_path(sh_conf_t *cf, const char *v)
{
    if (v[0] == '/')
        return sh_strdup(v);
    const char *d = cf->conf_dir != NULL ? cf->conf_dir : "";
    char *p = sh_malloc(strlen(d) + strlen(v) + 1);
    strcpy(p, d);
    strcat(p, v);
    return p;
}

static int set_key_file(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    jwt_loc_t *c = conf;
    char *path = conf_path(cf, cf->node->args[1]);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int rc = sh_conf_error(cf, "cannot open \"%s\": %s", path, strerror(errno));
        sh_free(path);
        return rc;
    }
    char *text = sh_malloc(KEYFILE_MAX + 1);
    size_t len = fread(text, 1, KEYFILE_MAX + 1, f);
    fclose(f);
    if (len > KEYFILE_MAX) {
        sh_free(text);
        int rc = sh_conf_error(cf, "\"%s\" is larger than 1 MB", path);
        sh_free(path);
        return rc;
    }
    sh_jwks_t *set = sh_new(sh_jwks_t);
    char err[256];
    int rc = sh_jwks_add(set, text, len, err, sizeof(err));
    sh_free(text);
    if (rc != 0) {
        sh_free(set);
        rc = sh_conf_error(cf, "invalid keys in \"%s\": %s", path, err);
        sh_free(path);
        return rc;
    }
    sh_free(path);
    c->keys = sh_realloc(c->keys, (c->nkeys + 1) * sizeof(*c->keys));
    c->keys[c->nkeys++] = set;
    c->keys_own = 1;
    return 0;
}

static int set_require(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    jwt_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (c->require_own)
        return sh_conf_error(cf, "\"auth_jwt_require\" directive is duplicate");
    c->require_own = 1;
    c->require_error = 401;
    for (size_t i = 1; i < n->nargs; i++) {
        const char *a = n->args[i];
        if (strncmp(a, "error=", 6) == 0) {
            if (i != n->nargs - 1 || (strcmp(a + 6, "401") != 0 && strcmp(a + 6, "403") != 0))
                return sh_conf_error(cf, "invalid parameter \"%s\"", a);
            c->require_error = atoi(a + 6);
            continue;
        }
        sh_cv_t *cv;
        int rc = sh_cv_compile(cf, a, &cv);
        if (rc != 0)
            return rc;
        c->require = sh_realloc(c->require, (c->nrequire + 1) * sizeof(*c->require));
        c->require[c->nrequire++] = cv;
    }
    if (c->nrequire == 0)
        return sh_conf_error(cf, "invalid number of arguments in \"auth_jwt_require\" directive");
    return 0;
}

static int set_type(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    jwt_loc_t *c = conf;
    const char *v = cf->node->args[1];
    if (c->type != SH_CONF_UNSET)
        return sh_conf_error(cf, "\"auth_jwt_type\" directive is duplicate");
    if (strcmp(v, "signed") == 0) {
        c->type = 0;
        return 0;
    }
    if (strcmp(v, "encrypted") == 0 || strcmp(v, "nested") == 0)
        return sh_conf_error(cf,
                             "\"auth_jwt_type %s\" is not implemented yet: only signed tokens "
                             "(JWS) are verified",
                             v);
    return sh_conf_error(cf, "invalid value \"%s\" in \"auth_jwt_type\" directive", v);
}

static int set_key_request(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    jwt_loc_t *c = conf;
    const char *v = cf->node->args[1];
    if (c->kc_own)
        return sh_conf_error(cf, "\"auth_jwt_key_request\" directive is duplicate");
    if (v[0] != '/')
        return sh_conf_error(cf, "invalid URI \"%s\" in \"auth_jwt_key_request\" directive", v);
    c->key_uri = sh_strdup(v);
    c->kc = sh_new(keycache_t);
    pthread_mutex_init(&c->kc->mu, NULL);
    c->kc_own = 1;
    return 0;
}

static int get_path(sh_request_t *r, const void *data, sh_buf_t *out);

static int set_path_var(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)conf;
    const sh_conf_node_t *n = cf->node;
    const char *v = n->args[1];
    if (v[0] != '$' || v[1] == '\0')
        return sh_conf_error(cf, "invalid variable name \"%s\"", v);
    sh_http_block_t *b = cf->user;
    jwt_main_t *m = sh_http_main_conf(b->main, &sh_auth_jwt_module);
    path_var_t *pv = sh_new(path_var_t);
    pv->header = (int)cmd->offset;
    pv->n = n->nargs - 2;
    pv->names = sh_calloc(pv->n, sizeof(char *));
    for (size_t i = 0; i < pv->n; i++)
        pv->names[i] = sh_strdup(n->args[i + 2]);
    m->paths = sh_realloc(m->paths, (m->n + 1) * sizeof(*m->paths));
    m->paths[m->n++] = pv;
    return sh_vars_define_changeable(cf, v + 1, get_path, pv);
}

#define JCTX (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CTX_LIMIT_EXCEPT)

static const sh_conf_cmd_t jwt_cmds[] = {
    {"auth_jwt", JCTX | SH_CONF_TAKE12, set_jwt, 0, NULL},
    {"auth_jwt_key_file", JCTX | SH_CONF_TAKE1, set_key_file, 0, NULL},
    {"auth_jwt_key_request", JCTX | SH_CONF_TAKE1, set_key_request, 0, NULL},
    {"auth_jwt_key_cache", SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_TAKE1,
     sh_conf_set_msec, offsetof(jwt_loc_t, key_cache), NULL},
    {"auth_jwt_leeway", SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_TAKE1,
     sh_conf_set_msec, offsetof(jwt_loc_t, leeway), NULL},
    {"auth_jwt_require", JCTX | SH_CONF_1MORE, set_require, 0, NULL},
    {"auth_jwt_type", JCTX | SH_CONF_TAKE1, set_type, 0, NULL},
    {"auth_jwt_claim_set", SH_CTX_HTTP | SH_CONF_2MORE, set_path_var, 0, NULL},
    {"auth_jwt_header_set", SH_CTX_HTTP | SH_CONF_2MORE, set_path_var, 1, NULL},
    {NULL, 0, NULL, 0, NULL}};

/* ------------------------------------------------------ per request -- */

enum { K_NONE = 0, K_RUNNING, K_DONE };

typedef struct {
    sh_request_t *r;
    sh_jwt_t tok; /* the verified token, for the variables */
    sh_buf_t www; /* the WWW-Authenticate value of a 401 */
    /* auth_jwt_key_request */
    int kstate;
    sh_request_t *sub;
    keyref_t *keys; /* fetched, NULL when the fetch failed */
    int kstatus;
} jwt_ctx_t;

static void ctx_cleanup(sh_request_t *r, void *data)
{
    (void)r;
    jwt_ctx_t *x = data;
    if (x->kstate == K_RUNNING && x->sub != NULL)
        sh_subrequest_cancel(x->sub);
    keyref_unref(x->keys);
    sh_jwt_clear(&x->tok);
    sh_buf_dispose(&x->www);
    sh_free(x);
}

static const json_t *token_part(sh_request_t *r, int header)
{
    jwt_ctx_t *x = sh_request_ctx(r, &sh_auth_jwt_module);
    if (x == NULL)
        return NULL;
    return header ? x->tok.header : x->tok.payload;
}

static int get_path(sh_request_t *r, const void *data, sh_buf_t *out)
{
    const path_var_t *pv = data;
    const json_t *v = token_part(r, pv->header);
    for (size_t i = 0; v != NULL && i < pv->n; i++)
        v = json_object_get(v, pv->names[i]);
    if (v == NULL)
        return 0;
    sh_jwt_value_text(v, out);
    return 1;
}

static int get_claim(sh_request_t *r, const void *data, sh_buf_t *out)
{
    const json_t *v = json_object_get(token_part(r, 0), data);
    if (v == NULL)
        return 0;
    sh_jwt_value_text(v, out);
    return 1;
}

static int get_header(sh_request_t *r, const void *data, sh_buf_t *out)
{
    const json_t *v = json_object_get(token_part(r, 1), data);
    if (v == NULL)
        return 0;
    sh_jwt_value_text(v, out);
    return 1;
}

static int get_payload(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    const json_t *v = token_part(r, 0);
    if (v == NULL)
        return 0;
    sh_jwt_value_text(v, out);
    return 1;
}

static int refuse(sh_request_t *r, jwt_ctx_t *x, const jwt_loc_t *c, const char *error, int st)
{
    x->www.len = 0;
    sh_buf_appends(&x->www, "Bearer realm=\"");
    sh_cv_eval(c->realm, r, &x->www);
    sh_buf_append(&x->www, "\"", 1);
    if (error != NULL)
        sh_buf_appendf(&x->www, ",error=\"%s\"", error);
    return sh_access_decide(r, st);
}

static void keys_done(sh_request_t *sub, void *ud)
{
    jwt_ctx_t *x = ud;
    sh_request_t *r = x->r;
    const jwt_loc_t *c = sh_http_loc_conf(r->loc, &sh_auth_jwt_module);
    x->kstatus = sh_subrequest_status(sub);
    x->sub = NULL;
    x->kstate = K_DONE;
    if (x->kstatus == 200) {
        const sh_buf_t *b = sh_subrequest_body(sub);
        keyref_t *k = sh_new(keyref_t);
        char err[256];
        if (sh_jwks_add(&k->set, b->data != NULL ? b->data : "", b->len, err, sizeof(err)) != 0) {
            sh_req_log(SH_LOG_ERR, r->c, r, NULL, "JWT: invalid keys from \"%s\": %s", c->key_uri,
                       err);
            sh_jwks_clear(&k->set);
            sh_free(k);
        } else {
            atomic_init(&k->refs, 1);
            k->at = sh_worker_now(r->w);
            x->keys = k;
            if (c->key_cache > 0) { /* shared with the other requests and workers */
                atomic_fetch_add(&k->refs, 1);
                pthread_mutex_lock(&c->kc->mu);
                keyref_t *old = c->kc->cur;
                c->kc->cur = k;
                pthread_mutex_unlock(&c->kc->mu);
                keyref_unref(old);
            }
        }
    } else {
        sh_req_log(SH_LOG_ERR, r->c, r, NULL, "JWT: the key request \"%s\" answered %d", c->key_uri,
                   x->kstatus);
    }
    sh_phase_resume(r);
}

/* The fetched keys for r: SH_PH_DECLINED when x->keys is set (or the
 * fetch failed: x->keys NULL, K_DONE), SH_PH_PAUSE while fetching. */
static int fetch_keys(sh_request_t *r, jwt_ctx_t *x, const jwt_loc_t *c)
{
    if (x->kstate == K_DONE)
        return SH_PH_DECLINED;
    if (x->kstate == K_RUNNING)
        return SH_PH_PAUSE;
    if (c->key_cache > 0) {
        pthread_mutex_lock(&c->kc->mu);
        keyref_t *k = c->kc->cur;
        if (k != NULL && sh_worker_now(r->w) - k->at < c->key_cache) {
            atomic_fetch_add(&k->refs, 1);
            x->keys = k;
        }
        pthread_mutex_unlock(&c->kc->mu);
        if (x->keys != NULL) {
            x->kstate = K_DONE;
            return SH_PH_DECLINED;
        }
    }
    x->kstate = K_RUNNING;
    if (sh_subrequest(r, c->key_uri, strlen(c->key_uri), KEYFILE_MAX, keys_done, x, &x->sub) != 0) {
        x->kstate = K_DONE;
        return SH_PH_DECLINED;
    }
    if (r->freed)
        return SH_PH_DONE;
    return x->kstate == K_DONE ? SH_PH_DECLINED : SH_PH_PAUSE;
}

static int jwt_handler(sh_request_t *r)
{
    const jwt_loc_t *c = sh_http_loc_conf(r->loc, &sh_auth_jwt_module);
    if (c == NULL || c->realm == NULL)
        return SH_PH_DECLINED;
    jwt_ctx_t *x = sh_request_ctx(r, &sh_auth_jwt_module);
    if (x == NULL) {
        x = sh_new(jwt_ctx_t);
        if (sh_request_cleanup_add(r, ctx_cleanup, x) != 0) {
            sh_free(x);
            return 500;
        }
        x->r = r;
        sh_request_ctx(r, &sh_auth_jwt_module) = x;
    }
    x->www.len = 0;
    sh_jwt_clear(&x->tok);
    /* the token */
    sh_buf_t tb = {0};
    const char *tok = NULL;
    size_t tl = 0;
    if (c->token != NULL) {
        sh_cv_eval(c->token, r, &tb);
        tok = tb.data;
        tl = tb.len;
    } else {
        for (size_t i = 0; i < r->h.nheaders; i++) {
            const sh_http1_header_t *h = &r->h.headers[i];
            if (h->name_len == 13 && strncasecmp(h->name, "authorization", 13) == 0 &&
                h->value_len > 7 && strncasecmp(h->value, "Bearer ", 7) == 0) {
                tok = h->value + 7;
                tl = h->value_len - 7;
                while (tl > 0 && *tok == ' ') {
                    tok++;
                    tl--;
                }
                break;
            }
        }
    }
    if (tl == 0) {
        sh_buf_dispose(&tb);
        sh_req_log(SH_LOG_INFO, r->c, r, NULL, "JWT: no token");
        return refuse(r, x, c, NULL, 401);
    }
    const sh_jwks_t *setv[16];
    const sh_jwks_t *const *sets = (const sh_jwks_t *const *)c->keys;
    size_t nsets = c->nkeys;
    if (c->key_uri != NULL) {
        int k = fetch_keys(r, x, c);
        if (k != SH_PH_DECLINED) {
            sh_buf_dispose(&tb);
            return k;
        }
        x->kstate = K_NONE; /* an internal redirect fetches again */
        if (x->keys == NULL) {
            sh_buf_dispose(&tb);
            return 500;
        }
        size_t n = 0;
        for (size_t i = 0; i < c->nkeys && n < 15; i++)
            setv[n++] = c->keys[i];
        setv[n++] = &x->keys->set;
        sets = setv;
        nsets = n;
    }
    const char *reason = NULL;
    int rc = sh_jwt_verify(tok, tl, sets, nsets, (int64_t)time(NULL), (int64_t)(c->leeway / 1000),
                           &x->tok, &reason);
    sh_buf_dispose(&tb);
    if (x->keys != NULL && c->key_uri != NULL) {
        keyref_unref(x->keys); /* the token's JSON holds no key */
        x->keys = NULL;
    }
    if (rc != 0) {
        sh_req_log(SH_LOG_ERR, r->c, r, NULL, "JWT validation failed: %s", reason);
        return refuse(r, x, c, "invalid_token", 401);
    }
    sh_buf_t v = {0};
    for (size_t i = 0; i < c->nrequire; i++) {
        v.len = 0;
        sh_cv_eval(c->require[i], r, &v);
        if (v.len == 0 || (v.len == 1 && v.data[0] == '0')) {
            sh_buf_dispose(&v);
            sh_req_log(SH_LOG_ERR, r->c, r, NULL, "JWT: auth_jwt_require \"%s\" is not met",
                       sh_cv_source(c->require[i]));
            return refuse(r, x, c, "insufficient_scope", c->require_error);
        }
    }
    sh_buf_dispose(&v);
    return sh_access_decide(r, 0);
}

/* ------------------------------------------------------ the 401 header -- */

static int www_filter(sh_request_t *r, sh_resp_head_t *h)
{
    const jwt_ctx_t *x = sh_request_ctx(r, &sh_auth_jwt_module);
    return sh_access_www_authenticate(r, h, x != NULL ? &x->www : NULL);
}

static int www_applies(const sh_http_main_t *m, const sh_http_loc_t *loc)
{
    (void)m;
    const jwt_loc_t *c = sh_http_loc_conf(loc, &sh_auth_jwt_module);
    return c != NULL && c->realm != NULL;
}

static const sh_filter_t www = {.name = "auth_jwt", .applies = www_applies, .header = www_filter};

static int jwt_preconf(sh_conf_t *cf, sh_http_main_t *m)
{
    (void)m;
    int rc = sh_vars_define_prefix(cf, "jwt_claim_", get_claim);
    if (rc == 0)
        rc = sh_vars_define_prefix(cf, "jwt_header_", get_header);
    if (rc == 0)
        rc = sh_vars_define(cf, "jwt_payload", get_payload, NULL);
    return rc;
}

static int jwt_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_access_check_add(cf, m, jwt_handler, &www);
}

static const sh_http_module_t jwt_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_main = jwt_create_main,
    .destroy_main = jwt_destroy_main,
    .create_loc = jwt_create,
    .merge_loc = jwt_merge,
    .destroy_loc = jwt_destroy,
    .preconfiguration = jwt_preconf,
    .postconfiguration = jwt_postconf,
};

sh_conf_module_t sh_auth_jwt_module = {
    .name = "auth_jwt",
    .cmds = jwt_cmds,
    .ctx = &jwt_ctx,
};
