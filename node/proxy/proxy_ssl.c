/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS to upstream servers (see proxy_ssl.h).
 *
 * Configuration: the proxy_ssl_* settings merge down the levels as
 * nginx's; after the merge (postconfiguration) every location whose
 * proxy_pass is https gets its own client SSL_CTX, so a certificate or key
 * that does not load, a CA file that does not parse or a bad
 * proxy_ssl_conf_command is a load error with file:line.
 *
 * Connections: an SSL object over two memory BIOs per upstream connection.
 * Verification is nginx's: the chain is checked during the handshake but
 * does not stop it (the verify callback accepts), then the result and the
 * name are checked; so the error log says exactly why ("upstream SSL
 * certificate verify error: (20:unable to get local issuer certificate)",
 * "upstream SSL certificate does not match \"name\"").
 *
 * Sessions: the client session cache is ours, not OpenSSL's (no internal
 * store): the new-session callback, which runs when the server's session
 * (TLS 1.2) or ticket (TLS 1.3, after the handshake) arrives, keeps it in
 * the server's slot of the worker's upstream state; the next connection to
 * that server offers it. One slot per server, as nginx; a slot filled under
 * another location's context is replaced, not offered.
 */
#include "node/proxy/proxy_ssl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/conn/tls.h"
#include "node/pipeline/vars.h"
#include "node/proxy/grpc.h"
#include "node/proxy/proxy.h"

#define READ_CHUNK   16384
#define NAME_MAX_LEN 255

typedef struct {
    int server_name; /* proxy_ssl_server_name: send SNI */
    sh_cv_t *name;   /* proxy_ssl_name; NULL: $proxy_host */
    int verify;
    int verify_depth;
    char *trusted; /* proxy_ssl_trusted_certificate */
    char *crl;
    char *cert, *key;
    int protocols; /* SH_TLS_PROTO_* bits */
    char *ciphers;
    int session_reuse;
    char **cmds; /* proxy_ssl_conf_command, in order: name, value pairs */
    size_t ncmds;
    int cmds_set;
    char *password_file; /* proxy_ssl_password_file */
    unsigned name_set : 1;
    unsigned grpc : 1; /* grpc_ssl_*: ALPN h2, for grpc_pass grpcs:// */
    /* this location's context (locations whose proxy_pass is https, or
     * grpc_pass grpcs://) */
    SSL_CTX *ctx;
} pssl_conf_t;

/* "proxy" or "grpc": the directives' prefix, for messages */
#define PFX(c) ((c)->grpc ? "grpc" : "proxy")

struct sh_upssl_s {
    SSL *ssl;
    BIO *rbio, *wbio;
    const pssl_conf_t *conf;
    sh_peer_rt_t *slot; /* where sessions of this server are kept */
    char name[NAME_MAX_LEN + 1];
    char why[512];
    uint8_t done : 1;
    uint8_t failed : 1;
};

/* SSL ex_data index of the sh_upssl_t: written once under pthread_once,
 * then read-only */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int conn_index = -1;

static void init_once(void)
{
    conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ------------------------------------------------ conf -- */

static void *pssl_create_loc(void)
{
    pssl_conf_t *c = sh_new(pssl_conf_t);
    c->server_name = SH_CONF_UNSET;
    c->verify = SH_CONF_UNSET;
    c->verify_depth = SH_CONF_UNSET;
    c->protocols = SH_CONF_UNSET;
    c->session_reuse = SH_CONF_UNSET;
    return c;
}

static void *gssl_create_loc(void)
{
    pssl_conf_t *c = pssl_create_loc();
    c->grpc = 1;
    return c;
}

static void pssl_destroy_loc(void *conf)
{
    pssl_conf_t *c = conf;
    if (c == NULL)
        return;
    if (c->name_set)
        sh_cv_destroy(c->name);
    sh_free(c->trusted);
    sh_free(c->crl);
    sh_free(c->cert);
    sh_free(c->key);
    sh_free(c->ciphers);
    sh_free(c->password_file);
    if (c->cmds_set) {
        for (size_t i = 0; i < 2 * c->ncmds; i++)
            sh_free(c->cmds[i]);
        sh_free(c->cmds);
    }
    SSL_CTX_free(c->ctx);
    sh_free(c);
}

static int pssl_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    pssl_conf_t *p = parent, *c = conf;
    (void)cf;
    SH_CONF_MERGE(c->server_name, p->server_name, 0);
    SH_CONF_MERGE(c->verify, p->verify, 0);
    SH_CONF_MERGE(c->verify_depth, p->verify_depth, 1);
    SH_CONF_MERGE(c->protocols, p->protocols, SH_TLS_PROTO_TLSv1_2 | SH_TLS_PROTO_TLSv1_3);
    SH_CONF_MERGE(c->session_reuse, p->session_reuse, 1);
    if (c->name == NULL && p->name != NULL)
        c->name = p->name; /* not name_set: the parent frees it */
#define INHERIT(f)                                                                                 \
    do {                                                                                           \
        if (c->f == NULL && p->f != NULL)                                                          \
            c->f = sh_strdup(p->f);                                                                \
    } while (0)
    INHERIT(trusted);
    INHERIT(crl);
    INHERIT(cert);
    INHERIT(key);
    INHERIT(ciphers);
    INHERIT(password_file);
#undef INHERIT
    if (!c->cmds_set && p->ncmds > 0) {
        c->cmds = sh_calloc(2 * p->ncmds, sizeof(*c->cmds));
        for (size_t i = 0; i < 2 * p->ncmds; i++)
            c->cmds[i] = sh_strdup(p->cmds[i]);
        c->ncmds = p->ncmds;
        c->cmds_set = 1;
    }
    return 0;
}

static int path_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    char **f = (char **)((char *)conf + cmd->offset);
    if (*f != NULL)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", cf->node->args[0]);
    *f = sh_conf_full_path(cf, cf->node->args[1]);
    return 0;
}

static int name_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    pssl_conf_t *c = conf;
    (void)cmd;
    if (c->name_set)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", cf->node->args[0]);
    int rc = sh_cv_compile(cf, cf->node->args[1], &c->name);
    if (rc == 0)
        c->name_set = 1;
    return rc;
}

static int conf_command_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    pssl_conf_t *c = conf;
    (void)cmd;
    if (c->ncmds >= 64)
        return sh_conf_error(cf, "too many \"%s\" directives", cf->node->args[0]);
    c->cmds = sh_realloc(c->cmds, (c->ncmds + 1) * 2 * sizeof(*c->cmds));
    c->cmds[2 * c->ncmds] = sh_strdup(cf->node->args[1]);
    c->cmds[2 * c->ncmds + 1] = sh_strdup(cf->node->args[2]);
    c->ncmds++;
    c->cmds_set = 1;
    return 0;
}

static int depth_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    pssl_conf_t *c = conf;
    int rc = sh_conf_set_num(cf, cmd, conf);
    if (rc == 0 && c->verify_depth > 100)
        return sh_conf_error(cf, "\"%s\" must be at most 100", cf->node->args[0]);
    return rc;
}

#define LOC (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)

/* the same directives as proxy_ssl_* and grpc_ssl_* (nginx's names) */
// clang-format off
#define SSL_CMDS(P)                                                                                \
    {P "_ssl_server_name", LOC | SH_CONF_FLAG, sh_conf_set_flag, offsetof(pssl_conf_t, server_name), NULL}, \
    {P "_ssl_name", LOC | SH_CONF_TAKE1, name_set, 0, NULL},                                       \
    {P "_ssl_verify", LOC | SH_CONF_FLAG, sh_conf_set_flag, offsetof(pssl_conf_t, verify), NULL},  \
    {P "_ssl_verify_depth", LOC | SH_CONF_TAKE1, depth_set, offsetof(pssl_conf_t, verify_depth), NULL}, \
    {P "_ssl_trusted_certificate", LOC | SH_CONF_TAKE1, path_set, offsetof(pssl_conf_t, trusted), NULL}, \
    {P "_ssl_crl", LOC | SH_CONF_TAKE1, path_set, offsetof(pssl_conf_t, crl), NULL},               \
    {P "_ssl_certificate", LOC | SH_CONF_TAKE1, path_set, offsetof(pssl_conf_t, cert), NULL},      \
    {P "_ssl_certificate_key", LOC | SH_CONF_TAKE1, path_set, offsetof(pssl_conf_t, key), NULL},   \
    {P "_ssl_password_file", LOC | SH_CONF_TAKE1, path_set, offsetof(pssl_conf_t, password_file), NULL}, \
    {P "_ssl_protocols", LOC | SH_CONF_1MORE, sh_tls_set_protocols, offsetof(pssl_conf_t, protocols), NULL},                             \
    {P "_ssl_ciphers", LOC | SH_CONF_TAKE1, sh_conf_set_str, offsetof(pssl_conf_t, ciphers), NULL}, \
    {P "_ssl_session_reuse", LOC | SH_CONF_FLAG, sh_conf_set_flag, offsetof(pssl_conf_t, session_reuse), NULL}, \
    {P "_ssl_conf_command", LOC | SH_CONF_TAKE2, conf_command_set, 0, NULL}
// clang-format on

static const sh_conf_cmd_t pssl_cmds[] = {SSL_CMDS("proxy"), {NULL, 0, NULL, 0, NULL}};
static const sh_conf_cmd_t gssl_cmds[] = {SSL_CMDS("grpc"), {NULL, 0, NULL, 0, NULL}};

/* ------------------------------------------------ contexts -- */

/* The chain is checked in the handshake but never stops it: the result is
 * read after it (sh_upssl_handshake), as nginx does, to log why. */
static int verify_accept(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1;
}

/* A session (TLS 1.2) or ticket (TLS 1.3) from the server: kept in the
 * server's slot. Returns 1: the slot owns it. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    sh_upssl_t *t = SSL_get_ex_data(ssl, conn_index);
    if (t == NULL || t->slot == NULL || !t->conf->session_reuse)
        return 0;
    if (t->slot->ssl_sess != NULL)
        SSL_SESSION_free(t->slot->ssl_sess);
    t->slot->ssl_sess = sess;
    t->slot->ssl_sess_owner = t->conf;
    return 1;
}

/* The client key, with each passphrase of the password file in turn (one
 * a line, as nginx), or none. 0, or -1 with err. */
static int load_key(SSL_CTX *ctx, const pssl_conf_t *c, char *err, size_t errlen)
{
    char ossl[512];
    char *pw = NULL;
    size_t pwlen = 0;
    if (c->password_file != NULL) {
        FILE *f = fopen(c->password_file, "r");
        if (f == NULL) {
            snprintf(err, errlen, "cannot open \"%s\" (%s_ssl_password_file): %s", c->password_file,
                     PFX(c), strerror(errno));
            return -1;
        }
        char chunk[4096];
        size_t n;
        sh_buf_t b = {0};
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < 1 << 20)
            sh_buf_append(&b, chunk, n);
        fclose(f);
        sh_buf_append(&b, "", 1);
        pw = b.data;
        pwlen = b.len - 1;
    }
    /* the passphrases: NUL-separated lines (a trailing CR dropped) */
    size_t npw = 0;
    for (size_t i = 0; pw != NULL && i < pwlen; i++)
        if (pw[i] == '\n' || pw[i] == '\r')
            pw[i] = '\0';
    int ok = 0;
    size_t o = 0;
    do {
        const char *one = NULL;
        if (pw != NULL) {
            while (o < pwlen && pw[o] == '\0')
                o++;
            if (o >= pwlen)
                break;
            one = pw + o;
            o += strlen(one);
            npw++;
        }
        SSL_CTX_set_default_passwd_cb(ctx, sh_tls_passwd_cb);
        SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)one);
        ERR_clear_error();
        if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) == 1 &&
            SSL_CTX_check_private_key(ctx) == 1)
            ok = 1;
    } while (!ok && pw != NULL && o < pwlen);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    if (pw != NULL) {
        OPENSSL_cleanse(pw, pwlen);
        sh_free(pw);
    }
    if (ok)
        return 0;
    sh_tls_errors(ossl, sizeof(ossl));
    if (c->password_file != NULL && npw == 0)
        snprintf(err, errlen, "no passphrase in \"%s\" (%s_ssl_password_file)", c->password_file,
                 PFX(c));
    else
        snprintf(err, errlen, "cannot load certificate key \"%s\" %s", c->key, ossl);
    return -1;
}

static SSL_CTX *build_ctx(pssl_conf_t *c, char *err, size_t errlen)
{
    char ossl[512];
    pthread_once(&once, init_once);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(err, errlen, "SSL_CTX_new() failed %s", ossl);
        return NULL;
    }
    long opts = SSL_OP_NO_SSLv3 | SSL_OP_NO_COMPRESSION;
    if (!(c->protocols & SH_TLS_PROTO_TLSv1))
        opts |= SSL_OP_NO_TLSv1;
    if (!(c->protocols & SH_TLS_PROTO_TLSv1_1))
        opts |= SSL_OP_NO_TLSv1_1;
    if (!(c->protocols & SH_TLS_PROTO_TLSv1_2))
        opts |= SSL_OP_NO_TLSv1_2;
    if (!(c->protocols & SH_TLS_PROTO_TLSv1_3))
        opts |= SSL_OP_NO_TLSv1_3;
    SSL_CTX_set_options(ctx, (uint64_t)opts);
    SSL_CTX_set_min_proto_version(ctx, 0);
    if (c->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, c->ciphers) != 1) {
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(err, errlen, "SSL_CTX_set_cipher_list(\"%s\") failed %s", c->ciphers, ossl);
        goto fail;
    }
    if (c->cert != NULL || c->key != NULL) {
        if (c->cert == NULL || c->key == NULL) {
            snprintf(err, errlen, "no \"%s_ssl_certificate%s\" for \"%s_ssl_certificate%s\"",
                     PFX(c), c->cert == NULL ? "" : "_key", PFX(c), c->cert == NULL ? "_key" : "");
            goto fail;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
            sh_tls_errors(ossl, sizeof(ossl));
            snprintf(err, errlen, "cannot load certificate \"%s\" %s", c->cert, ossl);
            goto fail;
        }
        if (load_key(ctx, c, err, errlen) != 0)
            goto fail;
    }
    if (c->verify) {
        if (c->trusted == NULL) {
            snprintf(err, errlen, "no \"%s_ssl_trusted_certificate\" for \"%s_ssl_verify\" on",
                     PFX(c), PFX(c));
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_accept);
        /* nginx's depth counts the intermediates above the leaf */
        SSL_CTX_set_verify_depth(ctx, c->verify_depth);
    }
    if (c->trusted != NULL && SSL_CTX_load_verify_locations(ctx, c->trusted, NULL) != 1) {
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(err, errlen, "cannot load \"%s\" (%s_ssl_trusted_certificate) %s", c->trusted,
                 PFX(c), ossl);
        goto fail;
    }
    if (c->crl != NULL) {
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        X509_LOOKUP *lk = X509_STORE_add_lookup(st, X509_LOOKUP_file());
        if (lk == NULL || X509_load_crl_file(lk, c->crl, X509_FILETYPE_PEM) <= 0) {
            sh_tls_errors(ossl, sizeof(ossl));
            snprintf(err, errlen, "cannot load CRL \"%s\" %s", c->crl, ossl);
            goto fail;
        }
        X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    if (sh_tls_conf_commands(ctx, 0, c->cmds, c->ncmds, err, errlen) != 0)
        goto fail;
    if (c->grpc && SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3) != 0) {
        snprintf(err, errlen, "SSL_CTX_set_alpn_protos() failed");
        goto fail;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    /* idle pooled connections keep no record buffers */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Every location whose proxy_pass is https (module m is proxy_ssl) or
 * whose grpc_pass is grpcs:// (grpc_ssl): its context. */
static int build_tree(sh_conf_t *cf, sh_http_loc_t *loc, const sh_conf_module_t *m)
{
    int tls = m == &sh_proxy_ssl_module ? sh_proxy_loc_https(loc) : sh_grpc_loc_grpcs(loc);
    if (tls) {
        pssl_conf_t *c = sh_http_loc_conf(loc, m);
        char err[1024];
        c->ctx = build_ctx(c, err, sizeof(err));
        if (c->ctx == NULL) {
            sh_conf_node_t at = {.file = loc->file, .line = loc->line};
            cf->node = &at;
            int rc = sh_conf_error(cf, "%s", err);
            cf->node = NULL;
            return rc;
        }
    }
    for (size_t i = 0; i < loc->nchildren; i++) {
        int rc = build_tree(cf, loc->children[i], m);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int pssl_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    for (size_t i = 0; i < m->nservers; i++) {
        int rc = build_tree(cf, m->servers[i]->loc, &sh_proxy_ssl_module);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int gssl_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    for (size_t i = 0; i < m->nservers; i++) {
        int rc = build_tree(cf, m->servers[i]->loc, &sh_grpc_ssl_module);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static const sh_http_module_t pssl_http_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = pssl_create_loc,
    .merge_loc = pssl_merge_loc,
    .destroy_loc = pssl_destroy_loc,
    .postconfiguration = pssl_postconf,
};

sh_conf_module_t sh_proxy_ssl_module = {
    .name = "proxy_ssl",
    .cmds = pssl_cmds,
    .ctx = &pssl_http_ctx,
};

static const sh_http_module_t gssl_http_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = gssl_create_loc,
    .merge_loc = pssl_merge_loc,
    .destroy_loc = pssl_destroy_loc,
    .postconfiguration = gssl_postconf,
};

sh_conf_module_t sh_grpc_ssl_module = {
    .name = "grpc_ssl",
    .cmds = gssl_cmds,
    .ctx = &gssl_http_ctx,
};

/* ------------------------------------------------ connections -- */

/* The name r's connection verifies and sends (proxy_ssl_name, else
 * $proxy_host), without a port, into out (NUL-terminated, truncated). */
static void eval_name(const pssl_conf_t *c, sh_request_t *r, const char *host, char *out,
                      size_t cap)
{
    sh_buf_t b = {0};
    if (c->name != NULL)
        sh_cv_eval(c->name, r, &b);
    else if (host != NULL)
        sh_buf_appends(&b, host);
    else
        sh_proxy_host(r, &b);
    const char *s = b.data ? b.data : "";
    size_t n = b.len;
    if (n > 0 && s[0] == '[') { /* [v6]:port */
        const char *e = memchr(s, ']', n);
        s++;
        n = e ? (size_t)(e - s) : n - 1;
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon != NULL)
            n = (size_t)(colon - s);
    }
    if (n >= cap)
        n = cap - 1;
    memcpy(out, s, n);
    out[n] = '\0';
    sh_buf_dispose(&b);
}

static void drain(sh_upssl_t *t, sh_buf_t *out);

static uint64_t key_of(const pssl_conf_t *c, sh_request_t *r, const char *host)
{
    char name[NAME_MAX_LEN + 1];
    eval_name(c, r, host, name, sizeof(name));
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the context and the name */
    uintptr_t p = (uintptr_t)c->ctx;
    for (size_t i = 0; i < sizeof(p); i++) {
        h ^= (p >> (8 * i)) & 0xff;
        h *= 1099511628211ull;
    }
    for (const char *s = name; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h | 1; /* never 0, the key of cleartext connections */
}

uint64_t sh_upssl_key(sh_request_t *r)
{
    return key_of(sh_http_loc_conf(r->loc, &sh_proxy_ssl_module), r, NULL);
}

uint64_t sh_upssl_grpc_key(sh_request_t *r, const char *host)
{
    return key_of(sh_http_loc_conf(r->loc, &sh_grpc_ssl_module), r, host);
}

static int is_ip(const char *s)
{
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

static sh_upssl_t *upssl_new(const pssl_conf_t *c, sh_request_t *r, sh_ups_rt_t *rt, int peer,
                             const char *host)
{
    if (c == NULL || c->ctx == NULL) {
        sh_log_err("no upstream TLS context for this location");
        return NULL;
    }
    SSL *ssl = sh_tls_ssl_new(c->ctx);
    if (ssl == NULL)
        return NULL;
    sh_upssl_t *t = sh_new(sh_upssl_t);
    t->ssl = ssl;
    t->conf = c;
    t->slot = &rt->own[peer]; /* this worker's, zone or not */
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(t->rbio, -1); /* empty: "retry", not end of file */
    SSL_set_bio(ssl, t->rbio, t->wbio);
    SSL_set_ex_data(ssl, conn_index, t);
    SSL_set_connect_state(ssl);
    eval_name(c, r, host, t->name, sizeof(t->name));
    if (c->server_name && t->name[0] != '\0' && !is_ip(t->name))
        SSL_set_tlsext_host_name(ssl, t->name);
    if (c->session_reuse && t->slot->ssl_sess != NULL && t->slot->ssl_sess_owner == c)
        SSL_set_session(ssl, t->slot->ssl_sess);
    return t;
}

sh_upssl_t *sh_upssl_create(sh_request_t *r, sh_ups_rt_t *rt, int peer)
{
    return upssl_new(sh_http_loc_conf(r->loc, &sh_proxy_ssl_module), r, rt, peer, NULL);
}

sh_upssl_t *sh_upssl_grpc_create(sh_request_t *r, sh_ups_rt_t *rt, int peer, const char *host)
{
    return upssl_new(sh_http_loc_conf(r->loc, &sh_grpc_ssl_module), r, rt, peer, host);
}

int sh_upssl_shutdown(sh_upssl_t *t, sh_buf_t *out)
{
    if (t == NULL || !t->done || t->failed || (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
        return 0;
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl); /* memory BIOs: never blocks, close_notify into wbio */
    ERR_clear_error();
    size_t before = out->len;
    drain(t, out);
    return out->len > before;
}

int sh_upssl_alpn_h2(const sh_upssl_t *t)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    return n == 2 && memcmp(p, "h2", 2) == 0;
}

void sh_upssl_destroy(sh_upssl_t *t)
{
    if (t == NULL)
        return;
    /* a connection closed without close_notify would mark its session not
     * resumable: only one that failed in TLS loses it */
    if (t->done && !t->failed)
        SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(t->ssl); /* frees the BIOs */
    sh_free(t);
}

void sh_upssl_session_free(void *sess)
{
    SSL_SESSION_free(sess);
}

int sh_upssl_reused(const sh_upssl_t *t)
{
    return SSL_session_reused(t->ssl);
}

/* Ciphertext OpenSSL wrote, appended to out. */
static void drain(sh_upssl_t *t, sh_buf_t *out)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0)
        return;
    char *d = sh_buf_reserve(out, n);
    int got = BIO_read(t->wbio, d, (int)n);
    if (got > 0)
        out->len += (size_t)got;
}

static int feed(sh_upssl_t *t, const char *in, size_t len)
{
    while (len > 0) {
        int k = len > INT32_MAX ? INT32_MAX : (int)len;
        int n = BIO_write(t->rbio, in, k);
        if (n <= 0)
            return SH_EIO;
        in += n;
        len -= (size_t)n;
    }
    return 0;
}

/* After the handshake: the chain's result and the name (nginx's checks and
 * messages). 0 or -1 with t->why. */
static int check_peer(sh_upssl_t *t)
{
    if (!t->conf->verify)
        return 0;
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) {
        snprintf(t->why, sizeof(t->why), "upstream SSL certificate verify error: (%ld:%s)", v,
                 X509_verify_cert_error_string(v));
        return -1;
    }
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    if (cert == NULL) {
        snprintf(t->why, sizeof(t->why), "upstream sent no required SSL certificate");
        return -1;
    }
    int ok = is_ip(t->name) ? X509_check_ip_asc(cert, t->name, 0)
                            : X509_check_host(cert, t->name, strlen(t->name), 0, NULL);
    if (ok != 1) {
        snprintf(t->why, sizeof(t->why), "upstream SSL certificate does not match \"%s\"", t->name);
        return -1;
    }
    return 0;
}

int sh_upssl_handshake(sh_upssl_t *t, const char *in, size_t len, sh_buf_t *out, const char **why)
{
    *why = t->why;
    if (feed(t, in, len) != 0) {
        snprintf(t->why, sizeof(t->why), "BIO_write() failed");
        t->failed = 1;
        return -1;
    }
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    drain(t, out);
    if (rc != 1) {
        int e = SSL_get_error(t->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        char ossl[400];
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(t->why, sizeof(t->why), "SSL_do_handshake() failed %s",
                 ossl[0] ? ossl : "(peer closed connection in SSL handshake)");
        t->failed = 1;
        return -1;
    }
    t->done = 1;
    if (check_peer(t) != 0) {
        t->failed = 1;
        /* a session of a server that failed verification is not offered
         * again (its ticket may already be kept: TLS 1.2 gives it in the
         * handshake) */
        if (t->slot->ssl_sess != NULL && t->slot->ssl_sess == SSL_get0_session(t->ssl)) {
            SSL_SESSION_free(t->slot->ssl_sess);
            t->slot->ssl_sess = NULL;
        }
        return -1;
    }
    return 1;
}

int sh_upssl_read(sh_upssl_t *t, const char *in, size_t len, sh_buf_t *plain, sh_buf_t *out,
                  const char **why)
{
    *why = t->why;
    if (feed(t, in, len) != 0) {
        snprintf(t->why, sizeof(t->why), "BIO_write() failed");
        return SH_EIO;
    }
    ERR_clear_error();
    int rc = 0;
    for (;;) {
        char *d = sh_buf_reserve(plain, READ_CHUNK);
        int n = SSL_read(t->ssl, d, READ_CHUNK);
        if (n > 0) {
            plain->len += (size_t)n;
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            rc = SH_ECLOSED;
            break;
        }
        char ossl[400];
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(t->why, sizeof(t->why), "SSL_read() failed %s", ossl);
        t->failed = 1;
        rc = SH_EIO;
        break;
    }
    drain(t, out);
    return rc;
}

int sh_upssl_write(sh_upssl_t *t, const uv_buf_t *bufs, unsigned n, sh_buf_t *out)
{
    ERR_clear_error();
    for (unsigned i = 0; i < n; i++) {
        const char *d = bufs[i].base;
        size_t len = bufs[i].len;
        while (len > 0) {
            int k = len > 16384 ? 16384 : (int)len;
            int w = SSL_write(t->ssl, d, k);
            if (w <= 0) {
                char ossl[400];
                sh_tls_errors(ossl, sizeof(ossl));
                snprintf(t->why, sizeof(t->why), "SSL_write() failed %s", ossl);
                t->failed = 1;
                drain(t, out);
                return SH_EIO;
            }
            d += w;
            len -= (size_t)w;
        }
    }
    drain(t, out);
    return 0;
}
