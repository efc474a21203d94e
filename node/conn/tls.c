/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS termination (see tls.h): the ssl module's directives, one SSL_CTX
 * per TLS server built at load, and the per-connection layer over our own
 * BIO.
 *
 * The BIO: reads come from the ciphertext the connection just received
 * (t->in, a span of the worker's read buffer: no copy before OpenSSL's);
 * writes append to t->out, which is handed to sh_stream_send after each
 * OpenSSL call (written at once where the socket takes it, the rest
 * queued; the stream's write queue is the backpressure signal, exactly as
 * for plain connections). OpenSSL buffers partial records itself, so every
 * byte of t->in is consumed before sh_tls_input returns.
 *
 * Threads: SSL_CTXs are built and swapped on the main thread and used by
 * every worker (OpenSSL's SSL_CTX is thread-safe for SSL_new, the session
 * cache and ticket callbacks); an SSL object belongs to one connection on
 * one worker.
 */
#include "node/conn/tls.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/http.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/conn/http2.h"
#include "node/conn/tls_tickets.h"
#include "node/pipeline/metrics.h"
#include "node/pipeline/node.h"
#include "node/pipeline/vars.h"

#define TLS_RECORD_MAX 16384
#define COALESCE_MAX   16384       /* small writes are joined into one record */
#define EARLY_DATA_MAX 16384       /* ssl_early_data: bytes of 0-RTT data taken (nginx's) */
#define STAPLE_MAX     (64 * 1024) /* an OCSP response file larger than this is refused */

enum { CACHE_UNSET = -1, CACHE_OFF = 0, CACHE_NONE, CACHE_BUILTIN };
/* ssl_verify_client (nginx's values) */
enum { VERIFY_OFF = 0, VERIFY_ON, VERIFY_OPTIONAL, VERIFY_OPTIONAL_NO_CA };

/* The module's conf, at every level (only http and server levels set
 * anything). Lists set at a level replace the parent's (nginx). */
typedef struct {
    char **certs;
    size_t ncerts;
    char **keys;
    size_t nkeys;
    int certs_set, keys_set;
    int protocols; /* SH_TLS_PROTO_* bits; -1 unset */
    char *ciphers;
    int prefer_server_ciphers;
    int cache;         /* CACHE_* */
    size_t cache_size; /* sessions */
    char *cache_name;  /* shared:NAME */
    uint64_t session_timeout;
    int tickets;
    char **ticket_keys;
    size_t nticket_keys;
    int ticket_keys_set;
    int stapling;
    int stapling_verify;
    char *stapling_file;
    char *trusted;
    char *dhparam;
    char *ecdh_curve;
    int early_data;
    int addr_early; /* default server of an address where some server has early data on */
    int early_warned;
    int verify_client; /* VERIFY_* */
    int verify_depth;
    char *client_cert; /* ssl_client_certificate */
    char *crl;
    char *password_file;
    char *stapling_responder;
    int reject_handshake;
    size_t buffer_size;
    char **conf_cmds; /* name, value pairs */
    size_t nconf_cmds;
    int conf_cmds_set;
    int owns_strings; /* this level set the scalar strings (bits below) */
    unsigned own_ciphers : 1, own_stapling_file : 1, own_trusted : 1, own_dhparam : 1, own_ecdh : 1,
        own_cache_name : 1, own_client_cert : 1, own_crl : 1, own_password_file : 1,
        own_responder : 1;
    /* server level, TLS servers only: its SSL_CTX (built at load) */
    _Atomic(SSL_CTX *) ctx;
    const sh_http_srv_t *srv;
} ssl_conf_t;

typedef struct stapler_s stapler_t;
static void stapler_stop(stapler_t *s);

/* Data hung on each SSL_CTX (freed with it, whenever its last SSL goes). */
typedef struct {
    sh_tls_ticket_key_t *keys;
    size_t nkeys;
    unsigned char *staple; /* DER OCSP response from ssl_stapling_file, or NULL */
    size_t staple_len;
    stapler_t **staplers; /* per certificate (NULL: none), fetched from the responder */
    size_t nstaplers;
} ctx_data_t;

struct sh_tls_s {
    SSL *ssl;
    uv_stream_t *stream;
    void (*sent_cb)(uv_stream_t *, int);
    const sh_http_addr_t *addr;
    const sh_http_srv_t *srv; /* the server SNI named, or NULL */
    const char *in;           /* ciphertext not yet given to OpenSSL */
    size_t in_len;
    sh_buf_t out; /* ciphertext not yet handed to the stream */
    uint64_t id;
    uint8_t done : 1;
    uint8_t shut : 1;
    uint8_t failed : 1;
    uint8_t early : 1;    /* reading early data (SSL_read_early_data) */
    uint8_t early_in : 1; /* early data was accepted and handed on */
    sh_link_t held;       /* requests held until the handshake completes (early_hold) */
};

extern sh_conf_module_t sh_ssl_module;

/* ------------------------------------------------ library set-up -- */

static void *ossl_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return sh_malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return sh_realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    sh_free(p);
}

int sh_tls_global_init(void)
{
    /* OpenSSL refuses once it has allocated anything: then it keeps its
     * own allocator, which is correct, only not counted. */
    if (CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) != 1)
        return SH_ESTATE;
    return 0;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static BIO_METHOD *bio_method;  /* written once under pthread_once, then read-only */
static int ctx_data_index = -1; /* likewise */

static int bio_write(BIO *b, const char *data, int len)
{
    sh_tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    sh_buf_append(&t->out, data, (size_t)len);
    return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
    sh_tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (t->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < t->in_len ? (size_t)len : t->in_len;
    memcpy(buf, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int bio_destroy(BIO *b)
{
    (void)b;
    return 1;
}

static void ctx_data_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    ctx_data_t *d = ptr;
    if (d == NULL)
        return;
    if (d->keys != NULL) {
        OPENSSL_cleanse(d->keys, d->nkeys * sizeof(*d->keys));
        sh_free(d->keys);
    }
    sh_free(d->staple);
    for (size_t i = 0; i < d->nstaplers; i++)
        if (d->staplers[i] != NULL)
            stapler_stop(d->staplers[i]);
    sh_free(d->staplers);
    sh_free(d);
}

static void init_once(void)
{
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "shoal");
    BIO_meth_set_write(bio_method, bio_write);
    BIO_meth_set_read(bio_method, bio_read);
    BIO_meth_set_ctrl(bio_method, bio_ctrl);
    BIO_meth_set_create(bio_method, bio_create);
    BIO_meth_set_destroy(bio_method, bio_destroy);
    ctx_data_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_data_free);
}

void sh_tls_errors(char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    unsigned long e;
    const char *data;
    int flags;
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof(one));
        int n = snprintf(out + o, cap - o, "%s%s%s%s", o ? " " : "(SSL: ", one,
                         (flags & ERR_TXT_STRING) && data && *data ? ":" : "",
                         (flags & ERR_TXT_STRING) && data ? data : "");
        if (n < 0 || (size_t)n >= cap - o) {
            o = cap - 1;
            break;
        }
        o += (size_t)n;
    }
    if (o > 0 && o + 2 < cap) {
        out[o++] = ')';
        out[o] = '\0';
    }
}

/* ------------------------------------------------ pure helpers -- */

int sh_tls_parse_ticket_key(const unsigned char *data, size_t len, sh_tls_ticket_key_t *key,
                            const char **why)
{
    memset(key, 0, sizeof(*key));
    if (len == 48) {
        memcpy(key->name, data, 16);
        memcpy(key->hmac, data + 16, 16);
        memcpy(key->aes, data + 32, 16);
        key->key_len = 16;
        return 0;
    }
    if (len == 80) {
        memcpy(key->name, data, 16);
        memcpy(key->hmac, data + 16, 32);
        memcpy(key->aes, data + 48, 32);
        key->key_len = 32;
        return 0;
    }
    *why = "the key file must be 48 or 80 bytes";
    return SH_EINVAL;
}

int sh_tls_alpn_select(const unsigned char *in, unsigned inlen, int h2, const unsigned char **out,
                       unsigned char *outlen)
{
    /* First validate the whole list (RFC 7301 3.1: non-empty names). */
    for (unsigned i = 0; i < inlen;) {
        unsigned l = in[i];
        if (l == 0 || i + 1 + l > inlen)
            return SH_EPARSE;
        i += 1 + l;
    }
    /* Our preference, not the client's order: h2 first when allowed. */
    static const char *const prefs[] = {"h2", "http/1.1", "http/1.0"};
    for (size_t k = h2 ? 0 : 1; k < sizeof(prefs) / sizeof(prefs[0]); k++) {
        size_t pl = strlen(prefs[k]);
        for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
            if (in[i] == pl && memcmp(in + i + 1, prefs[k], pl) == 0) {
                *out = in + i + 1;
                *outlen = (unsigned char)pl;
                return 1;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------ conf -- */

static void *ssl_create_loc(void)
{
    ssl_conf_t *c = sh_new(ssl_conf_t);
    c->protocols = SH_CONF_UNSET;
    c->prefer_server_ciphers = SH_CONF_UNSET;
    c->cache = CACHE_UNSET;
    c->session_timeout = SH_CONF_UNSET_MSEC;
    c->tickets = SH_CONF_UNSET;
    c->stapling = SH_CONF_UNSET;
    c->stapling_verify = SH_CONF_UNSET;
    c->early_data = SH_CONF_UNSET;
    c->verify_client = SH_CONF_UNSET;
    c->verify_depth = SH_CONF_UNSET;
    c->reject_handshake = SH_CONF_UNSET;
    c->buffer_size = SH_CONF_UNSET_SIZE;
    return c;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sh_free(v[i]);
    sh_free(v);
}

static void ssl_destroy_loc(void *conf)
{
    ssl_conf_t *c = conf;
    if (c->certs_set)
        strv_free(c->certs, c->ncerts);
    if (c->keys_set)
        strv_free(c->keys, c->nkeys);
    if (c->ticket_keys_set)
        strv_free(c->ticket_keys, c->nticket_keys);
    if (c->conf_cmds_set)
        strv_free(c->conf_cmds, c->nconf_cmds * 2);
    if (c->own_ciphers)
        sh_free(c->ciphers);
    if (c->own_stapling_file)
        sh_free(c->stapling_file);
    if (c->own_trusted)
        sh_free(c->trusted);
    if (c->own_dhparam)
        sh_free(c->dhparam);
    if (c->own_ecdh)
        sh_free(c->ecdh_curve);
    if (c->own_cache_name)
        sh_free(c->cache_name);
    if (c->own_client_cert)
        sh_free(c->client_cert);
    if (c->own_crl)
        sh_free(c->crl);
    if (c->own_password_file)
        sh_free(c->password_file);
    if (c->own_responder)
        sh_free(c->stapling_responder);
    SSL_CTX *ctx = atomic_load(&c->ctx);
    if (ctx != NULL)
        SSL_CTX_free(ctx);
    sh_free(c);
}

#define MERGE_STR(f, own)                                                                          \
    do {                                                                                           \
        if (c->f == NULL)                                                                          \
            c->f = p->f;                                                                           \
        (void)0;                                                                                   \
    } while (0)

static int ssl_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    ssl_conf_t *p = parent, *c = conf;
    if (!c->certs_set) {
        c->certs = p->certs;
        c->ncerts = p->ncerts;
    }
    if (!c->keys_set) {
        c->keys = p->keys;
        c->nkeys = p->nkeys;
    }
    if (!c->ticket_keys_set) {
        c->ticket_keys = p->ticket_keys;
        c->nticket_keys = p->nticket_keys;
    }
    if (!c->conf_cmds_set) {
        c->conf_cmds = p->conf_cmds;
        c->nconf_cmds = p->nconf_cmds;
    }
    SH_CONF_MERGE(c->protocols, p->protocols, SH_TLS_PROTO_TLSv1_2 | SH_TLS_PROTO_TLSv1_3);
    MERGE_STR(ciphers, own_ciphers);
    SH_CONF_MERGE(c->prefer_server_ciphers, p->prefer_server_ciphers, 0);
    if (c->cache == CACHE_UNSET) {
        c->cache = p->cache == CACHE_UNSET ? CACHE_NONE : p->cache;
        c->cache_size = p->cache_size;
        c->cache_name = p->cache_name;
    }
    SH_CONF_MERGE_MSEC(c->session_timeout, p->session_timeout, 300000);
    SH_CONF_MERGE(c->tickets, p->tickets, 1);
    SH_CONF_MERGE(c->stapling, p->stapling, 0);
    SH_CONF_MERGE(c->stapling_verify, p->stapling_verify, 0);
    MERGE_STR(stapling_file, own_stapling_file);
    MERGE_STR(trusted, own_trusted);
    MERGE_STR(dhparam, own_dhparam);
    MERGE_STR(ecdh_curve, own_ecdh);
    SH_CONF_MERGE(c->early_data, p->early_data, 0);
    SH_CONF_MERGE(c->verify_client, p->verify_client, VERIFY_OFF);
    SH_CONF_MERGE(c->verify_depth, p->verify_depth, 1);
    MERGE_STR(client_cert, own_client_cert);
    MERGE_STR(crl, own_crl);
    MERGE_STR(password_file, own_password_file);
    MERGE_STR(stapling_responder, own_responder);
    SH_CONF_MERGE(c->reject_handshake, p->reject_handshake, 0);
    SH_CONF_MERGE_SIZE(c->buffer_size, p->buffer_size, 16384);
    (void)cf;
    return 0;
}

/* ssl_certificate, ssl_certificate_key, ssl_session_ticket_key: lists. */
static int path_list_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    ssl_conf_t *c = conf;
    char ***v;
    size_t *n;
    int *set;
    switch (cmd->offset) {
    case 0:
        v = &c->certs;
        n = &c->ncerts;
        set = &c->certs_set;
        break;
    case 1:
        v = &c->keys;
        n = &c->nkeys;
        set = &c->keys_set;
        break;
    default:
        v = &c->ticket_keys;
        n = &c->nticket_keys;
        set = &c->ticket_keys_set;
        break;
    }
    if (!*set) {
        *v = NULL;
        *n = 0;
        *set = 1;
    }
    if (*n >= 16)
        return sh_conf_error(cf, "too many \"%s\" directives", cf->node->args[0]);
    const char *arg = cf->node->args[1];
    if (strchr(arg, '$') != NULL)
        return sh_conf_error(cf, "variables in \"%s\" are not supported", cf->node->args[0]);
    *v = sh_realloc(*v, (*n + 1) * sizeof(char *));
    (*v)[(*n)++] = sh_conf_full_path(cf, arg);
    return 0;
}

static int path_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    ssl_conf_t *c = conf;
    char **f;
    switch (cmd->offset) {
    case 0:
        f = &c->stapling_file;
        c->own_stapling_file = 1;
        break;
    case 1:
        f = &c->trusted;
        c->own_trusted = 1;
        break;
    case 2:
        f = &c->dhparam;
        c->own_dhparam = 1;
        break;
    case 3:
        f = &c->client_cert;
        c->own_client_cert = 1;
        break;
    case 4:
        f = &c->crl;
        c->own_crl = 1;
        break;
    default:
        f = &c->password_file;
        c->own_password_file = 1;
        break;
    }
    if (*f != NULL)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", cf->node->args[0]);
    *f = sh_conf_full_path(cf, cf->node->args[1]);
    return 0;
}

static int str_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    ssl_conf_t *c = conf;
    char **f;
    if (cmd->offset == 0) {
        f = &c->ciphers;
        c->own_ciphers = 1;
    } else if (cmd->offset == 1) {
        f = &c->ecdh_curve;
        c->own_ecdh = 1;
    } else {
        f = &c->stapling_responder;
        c->own_responder = 1;
    }
    if (*f != NULL)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", cf->node->args[0]);
    *f = sh_strdup(cf->node->args[1]);
    return 0;
}

int sh_tls_set_protocols(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    int *f = (int *)((char *)conf + cmd->offset);
    const sh_conf_node_t *n = cf->node;
    if (*f != SH_CONF_UNSET)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", n->args[0]);
    int bits = 0;
    for (unsigned i = 1; i < n->nargs; i++) {
        const char *a = n->args[i];
        if (strcmp(a, "TLSv1") == 0)
            bits |= SH_TLS_PROTO_TLSv1;
        else if (strcmp(a, "TLSv1.1") == 0)
            bits |= SH_TLS_PROTO_TLSv1_1;
        else if (strcmp(a, "TLSv1.2") == 0)
            bits |= SH_TLS_PROTO_TLSv1_2;
        else if (strcmp(a, "TLSv1.3") == 0)
            bits |= SH_TLS_PROTO_TLSv1_3;
        else if (strcmp(a, "SSLv2") == 0 || strcmp(a, "SSLv3") == 0)
            sh_conf_warn(cf, "\"%s\" is not supported by OpenSSL 3, ignored", a);
        else
            return sh_conf_error(cf, "invalid value \"%s\" in \"%s\" directive", a, n->args[0]);
    }
    *f = bits;
    return 0;
}

static int session_cache_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    ssl_conf_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (c->cache != CACHE_UNSET)
        return sh_conf_error(cf, "\"ssl_session_cache\" directive is duplicate");
    c->cache = CACHE_NONE;
    c->cache_size = 0;
    for (unsigned i = 1; i < n->nargs; i++) {
        const char *a = n->args[i];
        if (strcmp(a, "off") == 0 || strcmp(a, "none") == 0) {
            if (n->nargs != 2)
                return sh_conf_error(cf, "invalid session cache \"%s\"", a);
            c->cache = a[0] == 'o' ? CACHE_OFF : CACHE_NONE;
        } else if (strcmp(a, "builtin") == 0) {
            c->cache = CACHE_BUILTIN;
            if (c->cache_size == 0)
                c->cache_size = 20480; /* OpenSSL's default */
        } else if (strncmp(a, "builtin:", 8) == 0) {
            int v;
            if (sh_conf_parse_int(a + 8, &v) != 0 || v < 1)
                return sh_conf_error(cf, "invalid session cache size \"%s\"", a + 8);
            c->cache = CACHE_BUILTIN;
            c->cache_size += (size_t)v;
        } else if (strncmp(a, "shared:", 7) == 0) {
            /* shared:NAME:SIZE. Every SSL_CTX is shared by all the workers
             * of the node, so OpenSSL's internal store already is what
             * nginx's shared memory zone gives: one cache per node. nginx
             * stores about 4000 sessions per megabyte. */
            const char *name = a + 7, *colon = strrchr(name, ':');
            size_t sz;
            if (colon == NULL || colon == name || sh_conf_parse_size(colon + 1, &sz) != 0)
                return sh_conf_error(cf, "invalid session cache \"%s\"", a);
            if (sz < 8192)
                return sh_conf_error(cf, "session cache \"%s\" is too small", a);
            c->cache = CACHE_BUILTIN;
            c->cache_size += sz / 256;
            if (c->own_cache_name)
                sh_free(c->cache_name);
            c->cache_name = sh_strndup(name, (size_t)(colon - name));
            c->own_cache_name = 1;
        } else {
            return sh_conf_error(cf, "invalid session cache \"%s\"", a);
        }
    }
    return 0;
}

static int conf_command_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    ssl_conf_t *c = conf;
    if (!c->conf_cmds_set) {
        c->conf_cmds = NULL;
        c->nconf_cmds = 0;
        c->conf_cmds_set = 1;
    }
    if (c->nconf_cmds >= 64)
        return sh_conf_error(cf, "too many \"ssl_conf_command\" directives");
    c->conf_cmds = sh_realloc(c->conf_cmds, (c->nconf_cmds + 1) * 2 * sizeof(char *));
    c->conf_cmds[c->nconf_cmds * 2] = sh_strdup(cf->node->args[1]);
    c->conf_cmds[c->nconf_cmds * 2 + 1] = sh_strdup(cf->node->args[2]);
    c->nconf_cmds++;
    return 0;
}

static int ssl_directive_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    return sh_conf_error(cf, "the \"ssl\" directive is obsolete, use the \"listen ... ssl\" "
                             "directive instead");
}

#define SSLCTX (SH_CTX_HTTP | SH_CTX_SERVER)

static const sh_conf_enum_t verify_values[] = {{"off", VERIFY_OFF},
                                               {"on", VERIFY_ON},
                                               {"optional", VERIFY_OPTIONAL},
                                               {"optional_no_ca", VERIFY_OPTIONAL_NO_CA},
                                               {NULL, 0}};
#define SOFF(f) offsetof(ssl_conf_t, f)

static const sh_conf_cmd_t ssl_cmds[] = {
    {"ssl", SSLCTX | SH_CONF_FLAG, ssl_directive_set, 0, NULL},
    {"ssl_certificate", SSLCTX | SH_CONF_TAKE1, path_list_set, 0, NULL},
    {"ssl_certificate_key", SSLCTX | SH_CONF_TAKE1, path_list_set, 1, NULL},
    {"ssl_session_ticket_key", SSLCTX | SH_CONF_TAKE1, path_list_set, 2, NULL},
    {"ssl_protocols", SSLCTX | SH_CONF_1MORE, sh_tls_set_protocols, offsetof(ssl_conf_t, protocols),
     NULL},
    {"ssl_ciphers", SSLCTX | SH_CONF_TAKE1, str_set, 0, NULL},
    {"ssl_ecdh_curve", SSLCTX | SH_CONF_TAKE1, str_set, 1, NULL},
    {"ssl_prefer_server_ciphers", SSLCTX | SH_CONF_FLAG, sh_conf_set_flag,
     SOFF(prefer_server_ciphers), NULL},
    {"ssl_session_cache", SSLCTX | SH_CONF_TAKE12, session_cache_set, 0, NULL},
    {"ssl_session_timeout", SSLCTX | SH_CONF_TAKE1, sh_conf_set_msec, SOFF(session_timeout), NULL},
    {"ssl_session_tickets", SSLCTX | SH_CONF_FLAG, sh_conf_set_flag, SOFF(tickets), NULL},
    {"ssl_stapling", SSLCTX | SH_CONF_FLAG, sh_conf_set_flag, SOFF(stapling), NULL},
    {"ssl_stapling_verify", SSLCTX | SH_CONF_FLAG, sh_conf_set_flag, SOFF(stapling_verify), NULL},
    {"ssl_stapling_file", SSLCTX | SH_CONF_TAKE1, path_set, 0, NULL},
    {"ssl_trusted_certificate", SSLCTX | SH_CONF_TAKE1, path_set, 1, NULL},
    {"ssl_dhparam", SSLCTX | SH_CONF_TAKE1, path_set, 2, NULL},
    {"ssl_early_data", SSLCTX | SH_CONF_FLAG, sh_conf_set_flag, SOFF(early_data), NULL},
    {"ssl_conf_command", SSLCTX | SH_CONF_TAKE2, conf_command_set, 0, NULL},
    {"ssl_verify_client", SSLCTX | SH_CONF_TAKE1, sh_conf_set_enum, SOFF(verify_client),
     verify_values},
    {"ssl_verify_depth", SSLCTX | SH_CONF_TAKE1, sh_conf_set_num, SOFF(verify_depth), NULL},
    {"ssl_client_certificate", SSLCTX | SH_CONF_TAKE1, path_set, 3, NULL},
    {"ssl_crl", SSLCTX | SH_CONF_TAKE1, path_set, 4, NULL},
    {"ssl_password_file", SSLCTX | SH_CONF_TAKE1, path_set, 5, NULL},
    {"ssl_stapling_responder", SSLCTX | SH_CONF_TAKE1, str_set, 2, NULL},
    {"ssl_reject_handshake", SSLCTX | SH_CONF_FLAG, sh_conf_set_flag, SOFF(reject_handshake), NULL},
    {"ssl_buffer_size", SSLCTX | SH_CONF_TAKE1, sh_conf_set_size, SOFF(buffer_size), NULL},
    {NULL, 0, NULL, 0, NULL}};

/* ------------------------------------------------ callbacks -- */

static ssl_conf_t *srv_conf(const sh_http_srv_t *srv)
{
    return sh_http_loc_conf(srv->loc, &sh_ssl_module);
}

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    (void)arg;
    sh_tls_t *t = SSL_get_app_data(ssl);
    if (t == NULL)
        return SSL_TLSEXT_ERR_OK;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == NULL) {
        /* OpenSSL calls this without SNI too: the default server's */
        if (srv_conf(t->addr->default_srv)->reject_handshake == 1) {
            *alert = SSL_AD_UNRECOGNIZED_NAME;
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        }
        return SSL_TLSEXT_ERR_OK;
    }
    const sh_http_srv_t *srv = sh_http_find_server(t->addr, name, strlen(name));
    t->srv = srv;
    if (srv != NULL && srv_conf(srv)->reject_handshake == 1) {
        /* ssl_reject_handshake on: nginx's answer to names it does not
         * serve, without showing a certificate */
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    SSL_CTX *ctx = srv ? atomic_load(&srv_conf(srv)->ctx) : NULL;
    if (ctx != NULL && ctx != SSL_get_SSL_CTX(ssl)) {
        SSL_set_SSL_CTX(ssl, ctx);
        /* the options of the server's context apply (as nginx) */
        SSL_clear_options(ssl, SSL_get_options(ssl) & ~SSL_CTX_get_options(ctx));
        SSL_set_options(ssl, SSL_CTX_get_options(ctx));
        /* and its client certificate request (the CA names and the store
         * follow the SSL_CTX) */
        SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
        SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
    }
    return SSL_TLSEXT_ERR_OK;
}

/* Early data is taken only when the server SNI chose (else the default)
 * has ssl_early_data on. The SSL's max_early_data stays the address's
 * (sh_tls_create): it also decides how sessions are looked up (single-use,
 * in the cache) before SNI is known, so it must be the same for every
 * server of the address, or sessions of one would not resume. */
static int allow_early_cb(SSL *ssl, void *arg)
{
    (void)arg;
    sh_tls_t *t = SSL_get_app_data(ssl);
    if (t == NULL)
        return 0;
    const ssl_conf_t *c = srv_conf(t->srv ? t->srv : t->addr->default_srv);
    /* a client certificate comes after early data (TLS 1.3): requests
     * that need one are not taken before it */
    return c->early_data == 1 && c->verify_client == VERIFY_OFF;
}

/* Client certificates are checked per request (sh_tls_client_check), as
 * nginx does: the handshake goes on whatever the verification says, so a
 * client gets an HTTP answer that tells it what is wrong. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1;
}

int sh_tls_conf_commands(SSL_CTX *ctx, int server, char *const *pairs, size_t n, char *err,
                         size_t errlen)
{
    if (n == 0)
        return 0;
    SSL_CONF_CTX *cc = SSL_CONF_CTX_new();
    SSL_CONF_CTX_set_flags(cc, SSL_CONF_FLAG_FILE |
                                   (server ? SSL_CONF_FLAG_SERVER : SSL_CONF_FLAG_CLIENT) |
                                   SSL_CONF_FLAG_CERTIFICATE | SSL_CONF_FLAG_SHOW_ERRORS);
    SSL_CONF_CTX_set_ssl_ctx(cc, ctx);
    for (size_t i = 0; i < n; i++) {
        const char *name = pairs[2 * i], *value = pairs[2 * i + 1];
        if (SSL_CONF_cmd(cc, name, value) <= 0) {
            char ossl[512];
            sh_tls_errors(ossl, sizeof(ossl));
            snprintf(err, errlen, "SSL_CONF_cmd(\"%s\", \"%s\") failed %s", name, value, ossl);
            SSL_CONF_CTX_free(cc);
            return -1;
        }
    }
    SSL_CONF_CTX_finish(cc);
    SSL_CONF_CTX_free(cc);
    return 0;
}

SSL *sh_tls_ssl_new(SSL_CTX *ctx)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        char ossl[512];
        sh_tls_errors(ossl, sizeof(ossl));
        sh_log_err("SSL_new() failed %s", ossl);
    }
    return ssl;
}

int sh_tls_passwd_cb(char *buf, int size, int rwflag, void *ud)
{
    (void)rwflag;
    const char *pw = ud;
    if (pw == NULL) /* none configured: never ask a terminal */
        return 0;
    size_t n = strlen(pw);
    if (n > (size_t)size)
        n = (size_t)size;
    memcpy(buf, pw, n);
    return (int)n;
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)arg;
    sh_tls_t *t = SSL_get_app_data(ssl);
    /* h2 when the listen address or the server (SNI's, else the
     * default) has HTTP/2 on */
    int h2 = t != NULL && sh_http2_enabled(t->addr, t->srv ? t->srv : t->addr->default_srv);
    int rc = sh_tls_alpn_select(in, inlen, h2, out, outlen);
    if (rc == 1)
        return SSL_TLSEXT_ERR_OK;
    /* RFC 7301 3.2: no protocol in common is a fatal alert */
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Session tickets with our keys: the first key encrypts, every key
 * decrypts, and a ticket under an older key is renewed (return 2). */
static int ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *ectx,
                     EVP_MAC_CTX *hctx, int enc)
{
    /* The keys of the session context: the connection's first SSL_CTX.
     * SSL_get_SSL_CTX gives the SNI-selected one, so look it up by the
     * app data. */
    sh_tls_t *t = SSL_get_app_data(ssl);
    if (t == NULL)
        return -1;
    SSL_CTX *sctx = atomic_load(&srv_conf(t->addr->default_srv)->ctx);
    const ctx_data_t *d = sctx ? SSL_CTX_get_ex_data(sctx, ctx_data_index) : NULL;
    if (d == NULL || d->nkeys == 0)
        return -1;
    const sh_tls_ticket_key_t *k = NULL;
    size_t i = 0;
    if (enc) {
        k = &d->keys[0];
        memcpy(name, k->name, 16);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1)
            return -1;
    } else {
        for (i = 0; i < d->nkeys; i++)
            if (memcmp(d->keys[i].name, name, 16) == 0)
                break;
        if (i == d->nkeys)
            return 0; /* unknown key: a full handshake, and a new ticket */
        k = &d->keys[i];
    }
    const EVP_CIPHER *cipher = k->key_len == 32 ? EVP_aes_256_cbc() : EVP_aes_128_cbc();
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, k->key_len);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    if (enc) {
        if (EVP_EncryptInit_ex(ectx, cipher, NULL, k->aes, iv) != 1)
            return -1;
        return 1;
    }
    if (EVP_DecryptInit_ex(ectx, cipher, NULL, k->aes, iv) != 1)
        return -1;
    return i == 0 ? 1 : 2;
}

/* ------------------------------------------------ OCSP from the responder -- */

/*
 * One stapler per certificate whose AIA names an OCSP responder (when
 * `ssl_stapling on` and no `ssl_stapling_file`). Its thread is a small
 * dedicated one with blocking sockets and timeouts, never a worker loop:
 * started by the first status request (as nginx, the first connections go
 * unstapled), it POSTs the request to the responder, verifies the answer
 * and publishes the DER under mu (held only for the copy), then sleeps
 * until the refresh (half the remaining validity, at most an hour; retries
 * back off from 5 s to 5 min, the last good response stays). The stapler
 * is shared by the SSL_CTX's data and the thread (refs): the SSL_CTX going
 * stops the thread, whichever lets go last frees it.
 */
#define OCSP_TIMEOUT_S  10
#define OCSP_REFRESH_S  3600
#define OCSP_RETRY_MIN  5
#define OCSP_RETRY_MAX  300
#define OCSP_HEADER_MAX (16 * 1024)

typedef struct stapler_s {
    atomic_int refs;
    atomic_int started;
    pthread_t thread; /* valid once started (joinable) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;               /* under mu */
    unsigned char *der;     /* under mu: the last good response, or NULL */
    size_t der_len;         /* under mu */
    time_t der_until;       /* under mu: its nextUpdate (0: none) */
    X509 *leaf, *issuer;    /* read-only after build */
    STACK_OF(X509) * chain; /* the certificate's chain (untrusted), read-only */
    X509_STORE *store;      /* ssl_trusted_certificate, read-only */
    int verify;
    char *cert_name;
    char host[256], port[8];
    char *path;
} stapler_t;

static void stapler_unref(stapler_t *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    sh_free(s->der);
    X509_free(s->leaf);
    X509_free(s->issuer);
    sk_X509_pop_free(s->chain, X509_free);
    X509_STORE_free(s->store);
    sh_free(s->cert_name);
    sh_free(s->path);
    sh_free(s);
}

static void stapler_stop(stapler_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (atomic_load(&s->started)) {
        /* The thread is almost always asleep between fetches and ends at
         * once: wait for it (its OpenSSL thread state is freed on the way
         * out). One in the middle of a fetch (10 s timeouts) is not waited
         * for; it is detached and ends by itself. The SSL_CTX goes only
         * after the workers stopped, so no worker starts it meanwhile. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        if (pthread_timedjoin_np(s->thread, NULL, &until) != 0)
            pthread_detach(s->thread);
    }
    stapler_unref(s);
}

/* Does data hold a whole response (its header and a Content-Length body)? */
static int http_complete(const char *data, size_t len)
{
    const char *end = NULL;
    for (size_t i = 0; i + 4 <= len; i++)
        if (memcmp(data + i, "\r\n\r\n", 4) == 0) {
            end = data + i + 4;
            break;
        }
    if (end == NULL)
        return 0;
    for (const char *p = data; p + 16 < end; p++) {
        if ((p == data || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            unsigned long long cl = strtoull(p + 15, NULL, 10);
            return (size_t)(data + len - end) >= cl;
        }
    }
    return 0; /* no length: until the responder closes */
}

/* POST req to the responder; the response body in *out (sh_malloc). */
static int ocsp_http_post(stapler_t *s, const unsigned char *req, size_t req_len,
                          unsigned char **out, size_t *out_len, char *err, size_t errcap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(s->host, s->port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errcap, "cannot resolve \"%s\" (%s)", s->host, gai_strerror(rc));
        return SH_EIO;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {.tv_sec = OCSP_TIMEOUT_S};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)); /* connect() too */
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(err, errcap, "connect() to %s:%s failed (%s)", s->host, s->port, strerror(errno));
        return SH_EIO;
    }
    sh_buf_t b = {0};
    char head[1024];
    int hl = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/ocsp-request\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      s->path, s->host, req_len);
    sh_buf_append(&b, head, (size_t)hl);
    sh_buf_append(&b, req, req_len);
    size_t sent = 0;
    while (sent < b.len) {
        ssize_t n = send(fd, b.data + sent, b.len - sent, MSG_NOSIGNAL);
        if (n <= 0) {
            snprintf(err, errcap, "send() to %s:%s failed (%s)", s->host, s->port,
                     n < 0 ? strerror(errno) : "closed");
            goto fail;
        }
        sent += (size_t)n;
    }
    b.len = 0;
    for (;;) {
        char chunk[4096];
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errcap, "recv() from %s:%s failed (%s)", s->host, s->port,
                     strerror(errno));
            goto fail;
        }
        if (b.len + (size_t)n > STAPLE_MAX + OCSP_HEADER_MAX) {
            snprintf(err, errcap, "the responder's answer is too large");
            goto fail;
        }
        sh_buf_append(&b, chunk, (size_t)n);
        if (http_complete(b.data, b.len))
            break; /* a responder may keep the connection open */
    }
    close(fd);
    fd = -1;
    sh_buf_append(&b, "", 1); /* a NUL for the header search; not counted below */
    b.len--;
    int code = 0;
    if (b.len < 12 || sscanf(b.data, "HTTP/%*d.%*d %d", &code) != 1 || code != 200) {
        snprintf(err, errcap, "the responder answered HTTP %d", code);
        goto fail;
    }
    char *body = strstr(b.data, "\r\n\r\n");
    if (body == NULL) {
        snprintf(err, errcap, "the responder's answer has no end of header");
        goto fail;
    }
    body += 4;
    size_t blen = b.len - (size_t)(body - b.data);
    *out = sh_malloc(blen ? blen : 1);
    memcpy(*out, body, blen);
    *out_len = blen;
    sh_buf_dispose(&b);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    sh_buf_dispose(&b);
    return SH_EIO;
}

static time_t asn1_time_t(const ASN1_GENERALIZEDTIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

/* One fetch. Returns 0 with *refresh_at set, or an error (logged). */
static int stapler_fetch(stapler_t *s, time_t *refresh_at)
{
    char err[1024], ossl[512];
    err[0] = '\0';
    ERR_clear_error();
    int rc = SH_EIO;
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, s->leaf, s->issuer);
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *basic = NULL;
    unsigned char *rder = NULL, *body = NULL;
    size_t body_len = 0;
    if (req == NULL || id == NULL || OCSP_request_add0_id(req, OCSP_CERTID_dup(id)) == NULL) {
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(err, sizeof(err), "cannot make the OCSP request %s", ossl);
        goto done;
    }
    int rlen = i2d_OCSP_REQUEST(req, &rder);
    if (rlen <= 0) {
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(err, sizeof(err), "cannot encode the OCSP request %s", ossl);
        goto done;
    }
    if (ocsp_http_post(s, rder, (size_t)rlen, &body, &body_len, err, sizeof(err)) != 0)
        goto done;
    const unsigned char *p = body;
    resp = body_len <= STAPLE_MAX ? d2i_OCSP_RESPONSE(NULL, &p, (long)body_len) : NULL;
    if (resp == NULL) {
        ERR_clear_error();
        snprintf(err, sizeof(err), "the responder's answer is not a DER OCSP response");
        goto done;
    }
    int st = OCSP_response_status(resp);
    if (st != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        snprintf(err, sizeof(err), "the OCSP response status is \"%s\" (%d)",
                 OCSP_response_status_str(st), st);
        goto done;
    }
    basic = OCSP_response_get1_basic(resp);
    if (basic == NULL) {
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(err, sizeof(err), "no basic OCSP response %s", ossl);
        goto done;
    }
    /* as nginx: the chain's certificates may sign; with verify off the
     * signer is not checked against a trust anchor */
    if (OCSP_basic_verify(basic, s->chain, s->store, s->verify ? OCSP_TRUSTOTHER : OCSP_NOVERIFY) !=
        1) {
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(err, sizeof(err), "the OCSP response does not verify %s", ossl);
        goto done;
    }
    int status, reason;
    ASN1_GENERALIZEDTIME *rev, *thisupd, *nextupd;
    if (OCSP_resp_find_status(basic, id, &status, &reason, &rev, &thisupd, &nextupd) != 1) {
        snprintf(err, sizeof(err), "the certificate is not in the OCSP response");
        goto done;
    }
    if (OCSP_check_validity(thisupd, nextupd, 300, -1) != 1) {
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(err, sizeof(err), "the OCSP response is not valid now %s", ossl);
        goto done;
    }
    time_t now = time(NULL), until = nextupd ? asn1_time_t(nextupd) : 0;
    if (status != V_OCSP_CERTSTATUS_GOOD) {
        snprintf(err, sizeof(err), "the certificate status is \"%s\" in the OCSP response",
                 OCSP_cert_status_str(status));
        if (status == V_OCSP_CERTSTATUS_REVOKED) {
            /* a revoked certificate keeps no earlier "good" staple */
            pthread_mutex_lock(&s->mu);
            sh_free(s->der);
            s->der = NULL;
            s->der_len = 0;
            pthread_mutex_unlock(&s->mu);
        }
        goto done;
    }
    unsigned char *copy = sh_malloc(body_len);
    memcpy(copy, body, body_len);
    pthread_mutex_lock(&s->mu);
    unsigned char *old = s->der;
    s->der = copy;
    s->der_len = body_len;
    s->der_until = until;
    pthread_mutex_unlock(&s->mu);
    sh_free(old);
    time_t wait = until > now ? (until - now) / 2 : OCSP_REFRESH_S;
    if (wait > OCSP_REFRESH_S)
        wait = OCSP_REFRESH_S;
    if (wait < OCSP_RETRY_MIN)
        wait = OCSP_RETRY_MIN;
    *refresh_at = now + wait;
    sh_log_info("OCSP response for the certificate \"%s\" fetched from %s:%s, status good",
                s->cert_name, s->host, s->port);
    rc = 0;
done:
    if (rc != 0)
        sh_log_err("OCSP stapling of the certificate \"%s\" from %s:%s: %s", s->cert_name, s->host,
                   s->port, err);
    ERR_clear_error();
    OCSP_REQUEST_free(req);
    OCSP_CERTID_free(id);
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(basic);
    OPENSSL_free(rder);
    sh_free(body);
    return rc;
}

static void *stapler_main(void *arg)
{
    stapler_t *s = arg;
    time_t backoff = OCSP_RETRY_MIN;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        pthread_mutex_unlock(&s->mu);
        time_t at;
        if (stapler_fetch(s, &at) == 0) {
            backoff = OCSP_RETRY_MIN;
        } else {
            at = time(NULL) + backoff;
            backoff = backoff * 2 > OCSP_RETRY_MAX ? OCSP_RETRY_MAX : backoff * 2;
        }
        struct timespec ts = {.tv_sec = at};
        pthread_mutex_lock(&s->mu);
        while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&s->mu);
    ERR_clear_error();
    OPENSSL_thread_stop();
    stapler_unref(s);
    return NULL;
}

/* The first status request starts the fetching thread (worker thread:
 * only pthread_create here, no I/O). */
static void stapler_start(stapler_t *s)
{
    if (atomic_exchange(&s->started, 1))
        return;
    atomic_fetch_add(&s->refs, 1);
    int rc = pthread_create(&s->thread, NULL, stapler_main, s);
    if (rc != 0) {
        sh_log_err("OCSP stapling: pthread_create() failed (%s)", strerror(rc));
        atomic_fetch_sub(&s->refs, 1);
        atomic_store(&s->started, 0);
    }
}

/* The stapler of the certificate just loaded into ctx in *out, or NULL
 * (warned) when its responder cannot be used. */
static void stapler_new(SSL_CTX *ctx, const ssl_conf_t *c, const char *cert_name, X509_STORE *store,
                        STACK_OF(X509) * trusted, sh_conf_t *warn, stapler_t **out)
{
    *out = NULL;
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(leaf);
    const char *url =
        urls && sk_OPENSSL_STRING_num(urls) > 0 ? sk_OPENSSL_STRING_value(urls, 0) : NULL;
    if (c->stapling_responder != NULL) /* overrides the certificate's */
        url = c->stapling_responder;
    char *host = NULL, *port = NULL, *path = NULL;
    int ssl = 0;
    if (url == NULL)
        goto none; /* warned by the caller */
    if (OSSL_HTTP_parse_url(url, &ssl, NULL, &host, &port, NULL, &path, NULL, NULL) != 1 || ssl ||
        strlen(host) >= sizeof(((stapler_t *)0)->host) ||
        strlen(port) >= sizeof(((stapler_t *)0)->port)) {
        ERR_clear_error();
        if (warn != NULL)
            sh_conf_warn(warn,
                         "\"ssl_stapling\" ignored, OCSP responder \"%s\" of the certificate "
                         "\"%s\" is not a plain http:// URL",
                         url, cert_name);
        goto none;
    }
    STACK_OF(X509) *chain = NULL;
    SSL_CTX_get0_chain_certs(ctx, &chain);
    X509 *issuer = NULL;
    for (int i = 0; issuer == NULL && i < sk_X509_num(chain); i++)
        if (X509_check_issued(sk_X509_value(chain, i), leaf) == X509_V_OK)
            issuer = sk_X509_value(chain, i);
    for (int i = 0; issuer == NULL && i < sk_X509_num(trusted); i++)
        if (X509_check_issued(sk_X509_value(trusted, i), leaf) == X509_V_OK)
            issuer = sk_X509_value(trusted, i);
    if (issuer == NULL) {
        if (warn != NULL)
            sh_conf_warn(warn,
                         "\"ssl_stapling\" ignored, issuer certificate of \"%s\" not found "
                         "(in its chain or \"ssl_trusted_certificate\")",
                         cert_name);
        goto none;
    }
    stapler_t *s = sh_new(stapler_t);
    atomic_init(&s->refs, 1);
    atomic_init(&s->started, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    X509_up_ref(leaf);
    s->leaf = leaf;
    X509_up_ref(issuer);
    s->issuer = issuer;
    s->chain = chain ? X509_chain_up_ref(chain) : sk_X509_new_null();
    X509_STORE_up_ref(store);
    s->store = store;
    s->verify = c->stapling_verify;
    s->cert_name = sh_strdup(cert_name);
    snprintf(s->host, sizeof(s->host), "%s", host);
    snprintf(s->port, sizeof(s->port), "%s", port);
    s->path = sh_strdup(path && *path ? path : "/");
    *out = s;
none:
    OPENSSL_free(host);
    OPENSSL_free(port);
    OPENSSL_free(path);
    X509_email_free(urls);
}

static int status_cb(SSL *ssl, void *arg)
{
    (void)arg;
    if (SSL_get_tlsext_status_type(ssl) != TLSEXT_STATUSTYPE_ocsp)
        return SSL_TLSEXT_ERR_NOACK;
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    const ctx_data_t *d = SSL_CTX_get_ex_data(ctx, ctx_data_index);
    if (d == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *copy = NULL;
    size_t len = 0;
    if (d->staple != NULL) {
        /* OpenSSL frees what it is given */
        copy = OPENSSL_malloc(d->staple_len);
        if (copy == NULL)
            return SSL_TLSEXT_ERR_NOACK;
        memcpy(copy, d->staple, d->staple_len);
        len = d->staple_len;
    } else {
        /* the stapler of the certificate chosen for this connection */
        X509 *x = SSL_get_certificate(ssl);
        stapler_t *s = NULL;
        for (size_t i = 0; s == NULL && i < d->nstaplers; i++)
            if (d->staplers[i] != NULL && d->staplers[i]->leaf == x)
                s = d->staplers[i];
        if (s == NULL)
            return SSL_TLSEXT_ERR_NOACK;
        stapler_start(s);
        time_t now = time(NULL);
        pthread_mutex_lock(&s->mu);
        if (s->der != NULL && (s->der_until == 0 || now < s->der_until)) {
            copy = OPENSSL_malloc(s->der_len);
            if (copy != NULL) {
                memcpy(copy, s->der, s->der_len);
                len = s->der_len;
            }
        }
        pthread_mutex_unlock(&s->mu);
        if (copy == NULL)
            return SSL_TLSEXT_ERR_NOACK;
    }
    SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)len);
    return SSL_TLSEXT_ERR_OK;
}

/* ------------------------------------------------ building an SSL_CTX -- */

static int read_file(const char *path, size_t max, unsigned char **out, size_t *len, char *err,
                     size_t errcap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errcap, "open() \"%s\" failed (%s)", path, strerror(errno));
        return SH_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        snprintf(err, errcap, "\"%s\" is not a regular file of at most %zu bytes", path, max);
        close(fd);
        return SH_ELIMIT;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *b = sh_malloc(n ? n : 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r <= 0) {
            snprintf(err, errcap, "read() \"%s\" failed (%s)", path,
                     r < 0 ? strerror(errno) : "short file");
            close(fd);
            sh_free(b);
            return SH_EIO;
        }
        got += (size_t)r;
    }
    close(fd);
    *out = b;
    *len = n;
    return 0;
}

/* Does the leaf certificate of the context's current slot name an OCSP
 * responder? */
static int has_ocsp_url(X509 *x)
{
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(x);
    int n = urls ? sk_OPENSSL_STRING_num(urls) : 0;
    X509_email_free(urls);
    return n > 0;
}

static int version_of(int bit)
{
    switch (bit) {
    case SH_TLS_PROTO_TLSv1:
        return TLS1_VERSION;
    case SH_TLS_PROTO_TLSv1_1:
        return TLS1_1_VERSION;
    case SH_TLS_PROTO_TLSv1_2:
        return TLS1_2_VERSION;
    default:
        return TLS1_3_VERSION;
    }
}

/*
 * Build the SSL_CTX of one server from its merged conf. On failure
 * returns NULL with the reason in err. warn receives warnings.
 */
static SSL_CTX *build_ctx(const ssl_conf_t *c, const sh_http_srv_t *srv, sh_conf_t *warn, char *err,
                          size_t errcap)
{
    pthread_once(&once, init_once);
    char ossl[512];
    X509_STORE *store = NULL;       /* ssl_trusted_certificate, for the staplers */
    STACK_OF(X509) *trusted = NULL; /* its certificates, to find issuers */
    char *pw = NULL;                /* ssl_password_file's contents */
    size_t pw_len = 0;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    ctx_data_t *d = sh_new(ctx_data_t);
    if (ctx == NULL) {
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(err, errcap, "SSL_CTX_new() failed %s", ossl);
        sh_free(d);
        return NULL;
    }
    SSL_CTX_set_ex_data(ctx, ctx_data_index, d);
    uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF;
    if (c->prefer_server_ciphers)
        opts |= SSL_OP_CIPHER_SERVER_PREFERENCE;
    if (!c->tickets)
        opts |= SSL_OP_NO_TICKET;
    SSL_CTX_set_options(ctx, opts);
    /* idle keep-alive connections give their record buffers back */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

    /* protocols: the range from the lowest to the highest named (OpenSSL
     * 3 has no holes in practice; nginx's SSL_OP_NO_* give the same) */
    int lo = 0, hi = 0;
    for (int b = SH_TLS_PROTO_TLSv1; b <= SH_TLS_PROTO_TLSv1_3; b <<= 1)
        if (c->protocols & b) {
            if (lo == 0)
                lo = version_of(b);
            hi = version_of(b);
        }
    if (lo == 0) {
        snprintf(err, errcap, "no TLS protocol version enabled in \"ssl_protocols\"");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, lo);
    SSL_CTX_set_max_proto_version(ctx, hi);
    if (lo < TLS1_2_VERSION)
        SSL_CTX_set_security_level(ctx, 0); /* TLS 1.0/1.1 need SHA-1 */
    const char *ciphers = c->ciphers ? c->ciphers : "HIGH:!aNULL:!MD5";
    if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(err, errcap, "SSL_CTX_set_cipher_list(\"%s\") failed %s", ciphers, ossl);
        goto fail;
    }

    /* certificates: one pair per key type (e.g. ECDSA and RSA); none on
     * a server that only rejects handshakes (ssl_reject_handshake on) */
    if (c->ncerts == 0 && c->reject_handshake != 1) {
        snprintf(err, errcap,
                 "no \"ssl_certificate\" is defined for the \"listen ... ssl\" "
                 "directive of the server in %s:%u",
                 srv->file, srv->line);
        goto fail;
    }
    if (c->nkeys != c->ncerts) {
        snprintf(err, errcap,
                 "%zu \"ssl_certificate\" but %zu \"ssl_certificate_key\" for the "
                 "server in %s:%u",
                 c->ncerts, c->nkeys, srv->file, srv->line);
        goto fail;
    }
    if (c->stapling && c->stapling_file == NULL) {
        store = X509_STORE_new();
        if (c->trusted != NULL && X509_STORE_load_file(store, c->trusted) != 1) {
            sh_tls_errors(ossl, sizeof(ossl));
            snprintf(err, errcap, "cannot load \"ssl_trusted_certificate\" \"%s\" %s", c->trusted,
                     ossl);
            goto fail;
        }
        trusted = X509_STORE_get1_all_certs(store);
        d->staplers = sh_calloc(c->ncerts, sizeof(*d->staplers));
        d->nstaplers = c->ncerts;
    }
    /* ssl_password_file: every line is tried on every encrypted key (nginx) */
    if (c->password_file != NULL) {
        unsigned char *pf;
        size_t pf_len;
        if (read_file(c->password_file, 64 * 1024, &pf, &pf_len, err, errcap) != 0)
            goto fail;
        pw = sh_malloc(pf_len + 1);
        memcpy(pw, pf, pf_len);
        pw[pf_len] = '\0';
        OPENSSL_cleanse(pf, pf_len);
        sh_free(pf);
        pw_len = pf_len;
    }
    SSL_CTX_set_default_passwd_cb(ctx, sh_tls_passwd_cb);
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    unsigned sid_len = 0;
    for (size_t i = 0; i < c->ncerts; i++) {
        if (SSL_CTX_use_certificate_chain_file(ctx, c->certs[i]) != 1) {
            sh_tls_errors(ossl, sizeof(ossl));
            snprintf(err, errcap, "cannot load certificate \"%s\": %s", c->certs[i], ossl);
            goto fail;
        }
        int loaded = 0;
        if (pw != NULL) {
            /* lines of the file, in order, until one opens the key */
            for (char *line = pw; !loaded && line < pw + pw_len;) {
                char *end = memchr(line, '\n', (size_t)(pw + pw_len - line));
                char *next = end ? end + 1 : pw + pw_len;
                char save = end ? *end : '\0';
                if (end) {
                    if (end > line && end[-1] == '\r')
                        end--;
                    save = *end;
                    *end = '\0';
                }
                ERR_clear_error();
                SSL_CTX_set_default_passwd_cb_userdata(ctx, line);
                loaded = SSL_CTX_use_PrivateKey_file(ctx, c->keys[i], SSL_FILETYPE_PEM) == 1;
                if (end)
                    *end = save;
                line = next;
            }
            SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
        } else {
            loaded = SSL_CTX_use_PrivateKey_file(ctx, c->keys[i], SSL_FILETYPE_PEM) == 1;
        }
        if (!loaded) {
            sh_tls_errors(ossl, sizeof(ossl));
            snprintf(err, errcap, "cannot load certificate key \"%s\"%s: %s", c->keys[i],
                     pw != NULL ? " with any password of \"ssl_password_file\"" : "", ossl);
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            sh_tls_errors(ossl, sizeof(ossl));
            snprintf(err, errcap, "certificate \"%s\" and key \"%s\" do not match %s", c->certs[i],
                     c->keys[i], ossl);
            goto fail;
        }
        X509 *x = SSL_CTX_get0_certificate(ctx);
        if (i == 0) {
            /* the session id context: sessions resume only on a server
             * with the same first certificate */
            X509_digest(x, EVP_sha256(), sid, &sid_len);
        }
        if (c->stapling && c->stapling_file == NULL && c->stapling_responder == NULL &&
            !has_ocsp_url(x)) {
            if (warn != NULL)
                sh_conf_warn(warn,
                             "\"ssl_stapling\" ignored, no OCSP responder URL in the "
                             "certificate \"%s\"",
                             c->certs[i]);
        } else if (c->stapling && c->stapling_file == NULL) {
            stapler_new(ctx, c, c->certs[i], store, trusted, warn, &d->staplers[i]);
        }
    }
    if (pw != NULL) {
        OPENSSL_cleanse(pw, pw_len);
        sh_free(pw);
        pw = NULL;
    }

    /* client certificates (ssl_verify_client): checked per request */
    if (c->verify_client != VERIFY_OFF) {
        if (c->client_cert == NULL && c->trusted == NULL &&
            c->verify_client != VERIFY_OPTIONAL_NO_CA) {
            snprintf(err, errcap,
                     "no \"ssl_client_certificate\" or \"ssl_trusted_certificate\" for "
                     "\"ssl_verify_client\" in the server in %s:%u",
                     srv->file, srv->line);
            goto fail;
        }
        const char *files[2] = {c->client_cert, c->trusted};
        for (int i = 0; i < 2; i++)
            if (files[i] != NULL && SSL_CTX_load_verify_locations(ctx, files[i], NULL) != 1) {
                sh_tls_errors(ossl, sizeof(ossl));
                snprintf(err, errcap, "cannot load \"%s\" \"%s\" %s",
                         i == 0 ? "ssl_client_certificate" : "ssl_trusted_certificate", files[i],
                         ossl);
                goto fail;
            }
        if (c->client_cert != NULL) {
            /* the CA names the CertificateRequest offers */
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->client_cert);
            if (names == NULL) {
                sh_tls_errors(ossl, sizeof(ossl));
                snprintf(err, errcap, "no certificate in \"ssl_client_certificate\" \"%s\" %s",
                         c->client_cert, ossl);
                goto fail;
            }
            SSL_CTX_set_client_CA_list(ctx, names);
        }
        if (c->crl != NULL) {
            X509_STORE *vs = SSL_CTX_get_cert_store(ctx);
            if (X509_STORE_load_file(vs, c->crl) != 1) {
                sh_tls_errors(ossl, sizeof(ossl));
                snprintf(err, errcap, "cannot load \"ssl_crl\" \"%s\" %s", c->crl, ossl);
                goto fail;
            }
            X509_STORE_set_flags(vs, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
        SSL_CTX_set_verify_depth(ctx, c->verify_depth);
    }
    /* the session id context: sessions resume only on a server with the
     * same first certificate and the same client verification, so a
     * session made without a client certificate cannot skip it */
    {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned char v = (unsigned char)c->verify_client;
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
        EVP_DigestUpdate(md, sid, sid_len);
        EVP_DigestUpdate(md, &v, 1);
        const char *files[3] = {c->client_cert, c->trusted, c->crl};
        for (int i = 0; i < 3 && v != VERIFY_OFF; i++)
            if (files[i] != NULL)
                EVP_DigestUpdate(md, files[i], strlen(files[i]) + 1);
        sid_len = 0;
        EVP_DigestFinal_ex(md, sid, &sid_len);
        EVP_MD_CTX_free(md);
    }
    SSL_CTX_set_session_id_context(ctx, sid, sid_len);
    if (c->buffer_size != 16384) /* nginx's record size knob: smaller for a faster first byte */
        SSL_CTX_set_max_send_fragment(ctx, c->buffer_size < 512     ? 512
                                           : c->buffer_size > 16384 ? 16384
                                                                    : c->buffer_size);
    sk_X509_pop_free(trusted, X509_free);
    trusted = NULL;
    X509_STORE_free(store);
    store = NULL;

    if (c->dhparam != NULL) {
        BIO *bio = BIO_new_file(c->dhparam, "r");
        EVP_PKEY *dh = bio ? PEM_read_bio_Parameters(bio, NULL) : NULL;
        BIO_free(bio);
        if (dh == NULL || SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) {
            EVP_PKEY_free(dh);
            sh_tls_errors(ossl, sizeof(ossl));
            snprintf(err, errcap, "cannot load DH parameters \"%s\" %s", c->dhparam, ossl);
            goto fail;
        }
    }
    if (c->ecdh_curve != NULL && strcmp(c->ecdh_curve, "auto") != 0 &&
        SSL_CTX_set1_groups_list(ctx, c->ecdh_curve) != 1) {
        sh_tls_errors(ossl, sizeof(ossl));
        snprintf(err, errcap, "invalid \"ssl_ecdh_curve\" \"%s\" %s", c->ecdh_curve, ossl);
        goto fail;
    }

    /* sessions */
    if (c->cache == CACHE_OFF) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    } else if (c->cache == CACHE_NONE) {
        /* nginx's "none": no store, but clients are not told so */
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, (long)(c->cache_size ? c->cache_size : 1));
    }
    SSL_CTX_set_timeout(ctx, (long)(c->session_timeout / 1000));
    if (!c->tickets && c->cache != CACHE_BUILTIN)
        SSL_CTX_set_num_tickets(ctx, 0); /* TLS 1.3: nothing could resume */
    if (c->tickets && c->nticket_keys > 0) {
        d->keys = sh_calloc(c->nticket_keys, sizeof(*d->keys));
        d->nkeys = c->nticket_keys;
        for (size_t i = 0; i < c->nticket_keys; i++) {
            unsigned char *buf;
            size_t len;
            const char *why = NULL;
            if (read_file(c->ticket_keys[i], 1024, &buf, &len, err, errcap) != 0)
                goto fail;
            int rc = sh_tls_parse_ticket_key(buf, len, &d->keys[i], &why);
            OPENSSL_cleanse(buf, len);
            sh_free(buf);
            if (rc != 0) {
                snprintf(err, errcap, "\"%s\": %s", c->ticket_keys[i], why);
                goto fail;
            }
        }
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    } else if (c->tickets) {
        /* no key file: the shared, rotated keys of the cluster */
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, sh_tls_tickets_cb);
        sh_tls_tickets_note_timeout(c->session_timeout);
    }

    /* OCSP stapling from a file (the response as `openssl ocsp -respout`
     * writes it, DER) */
    if (c->stapling && c->stapling_file != NULL) {
        if (read_file(c->stapling_file, STAPLE_MAX, &d->staple, &d->staple_len, err, errcap) != 0)
            goto fail;
        const unsigned char *p = d->staple;
        OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)d->staple_len);
        if (resp == NULL) {
            ERR_clear_error();
            snprintf(err, errcap, "\"%s\" is not a DER OCSP response", c->stapling_file);
            goto fail;
        }
        OCSP_RESPONSE_free(resp);
    }
    if (c->stapling)
        SSL_CTX_set_tlsext_status_cb(ctx, status_cb);

    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);

    if (sh_tls_conf_commands(ctx, 1, c->conf_cmds, c->nconf_cmds, err, errcap) != 0)
        goto fail;
    /* 0-RTT (ssl_early_data on): up to one record of early data, set per
     * connection for the whole address (sh_tls_create, allow_early_cb).
     * OpenSSL's replay protection is on with it: TLS 1.3 sessions become
     * single-use and live in the session cache (tickets only name them),
     * so a replayed ClientHello finds its session gone and falls back to a
     * full handshake, its early data skipped. That needs the builtin
     * cache. */
    SSL_CTX_set_max_early_data(ctx, 0); /* per connection, sh_tls_create */
    SSL_CTX_set_recv_max_early_data(ctx, EARLY_DATA_MAX);
    return ctx;
fail:
    if (pw != NULL) {
        OPENSSL_cleanse(pw, pw_len);
        sh_free(pw);
    }
    sk_X509_pop_free(trusted, X509_free);
    X509_STORE_free(store);
    SSL_CTX_free(ctx); /* frees d through the ex_data free callback */
    return NULL;
}

/* After the http block: every server on a TLS address gets its SSL_CTX. */
static int ssl_init_main(sh_conf_t *cf, sh_http_main_t *m, void *conf)
{
    (void)conf;
    for (size_t i = 0; i < m->naddrs; i++) {
        const sh_http_addr_t *a = &m->addrs[i];
        if (!a->opt.ssl)
            continue;
        for (size_t j = 0; j < a->nservers; j++) {
            const sh_http_srv_t *srv = a->servers[j];
            ssl_conf_t *c = srv_conf(srv);
            /* connections of the address start by reading early data when
             * any of its servers (SNI may pick one) takes it; sessions are
             * then single-use, kept in the session cache of the address
             * (its default server's), so without one 0-RTT stays off
             * (rather than no session resuming at all) */
            if (c->early_data == 1) {
                ssl_conf_t *d = srv_conf(a->default_srv);
                if (d->cache == CACHE_BUILTIN) {
                    d->addr_early = 1;
                } else if (!c->early_warned) {
                    c->early_warned = 1;
                    sh_conf_node_t at = {.file = srv->file, .line = srv->line};
                    cf->node = &at;
                    sh_conf_warn(
                        cf,
                        "\"ssl_early_data on\" needs \"ssl_session_cache shared:NAME:SIZE\" "
                        "(in the default server of %s): 0-RTT sessions are single-use and "
                        "kept there; early data stays off",
                        a->opt.text);
                    cf->node = NULL;
                }
            }
            if (atomic_load(&c->ctx) != NULL)
                continue;
            char err[1024];
            SSL_CTX *ctx = build_ctx(c, srv, cf, err, sizeof(err));
            if (ctx == NULL) {
                sh_conf_node_t at = {.file = srv->file, .line = srv->line};
                cf->node = &at;
                int rc = sh_conf_error(cf, "%s", err);
                cf->node = NULL;
                return rc;
            }
            c->srv = srv;
            atomic_store(&c->ctx, ctx);
        }
    }
    return 0;
}

/* $ssl_*: the module that owns TLS defines its variables (issue 10). */
static const struct {
    const char *name;
    int id;
} ssl_vars[] = {
    {"ssl_protocol", SH_TLS_VAR_PROTOCOL},
    {"ssl_cipher", SH_TLS_VAR_CIPHER},
    {"ssl_server_name", SH_TLS_VAR_SERVER_NAME},
    {"ssl_session_reused", SH_TLS_VAR_SESSION_REUSED},
    {"ssl_alpn_protocol", SH_TLS_VAR_ALPN},
    {"ssl_early_data", SH_TLS_VAR_EARLY_DATA},
    {"ssl_session_id", SH_TLS_VAR_SESSION_ID},
    {"ssl_curve", SH_TLS_VAR_CURVE},
    {"ssl_client_verify", SH_TLS_VAR_CLIENT_VERIFY},
    {"ssl_client_s_dn", SH_TLS_VAR_CLIENT_S_DN},
    {"ssl_client_i_dn", SH_TLS_VAR_CLIENT_I_DN},
    {"ssl_client_serial", SH_TLS_VAR_CLIENT_SERIAL},
    {"ssl_client_fingerprint", SH_TLS_VAR_CLIENT_FINGERPRINT},
    {"ssl_client_raw_cert", SH_TLS_VAR_CLIENT_RAW_CERT},
    {"ssl_client_cert", SH_TLS_VAR_CLIENT_CERT},
    {"ssl_client_escaped_cert", SH_TLS_VAR_CLIENT_ESCAPED_CERT},
    {"ssl_client_v_start", SH_TLS_VAR_CLIENT_V_START},
    {"ssl_client_v_end", SH_TLS_VAR_CLIENT_V_END},
    {"ssl_client_v_remain", SH_TLS_VAR_CLIENT_V_REMAIN},
};

static int ssl_var_get(sh_request_t *r, const void *data, sh_buf_t *out)
{
    int id = *(const int *)data;
    if (r->c->tls == NULL)
        return 0; /* nginx: not found on a cleartext connection */
    return sh_tls_var(r->c->tls, id, out);
}

static int ssl_preconf(sh_conf_t *cf, sh_http_main_t *m)
{
    (void)m;
    for (size_t i = 0; i < sizeof(ssl_vars) / sizeof(ssl_vars[0]); i++) {
        int rc = sh_vars_define(cf, ssl_vars[i].name, ssl_var_get, &ssl_vars[i].id);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------ the early data hold -- */

/* A request that came in TLS 1.3 early data (0-RTT) may be a replay
 * (RFC 8446 8). The safe methods (RFC 9110 9.2.1) go on at once
 * ($ssl_early_data tells the server, which may answer 425, RFC 8470); any
 * other is held, paused at post-read, until the client's Finished (RFC
 * 8470 5.1), which a replayed flight never brings, so a replayed POST
 * never reaches a server. sh_tls_resume_held() resumes them. */
typedef struct {
    sh_link_t link; /* in the connection's sh_tls_t.held; alone once resumed */
    sh_request_t *r;
} held_t;

static int early_safe(int method_id)
{
    return method_id == SH_HTTP_GET || method_id == SH_HTTP_HEAD || method_id == SH_HTTP_OPTIONS;
}

static void held_cleanup(sh_request_t *r, void *data)
{
    held_t *h = data;
    sh_list_remove(&h->link);
    sh_request_ctx(r, &sh_ssl_module) = NULL;
    sh_free(h);
}

static int early_hold(sh_request_t *r)
{
    if (sh_request_ctx(r, &sh_ssl_module) != NULL)
        return SH_PH_DECLINED; /* resumed: the handshake completed */
    sh_tls_t *t = r->c->tls;
    if (!sh_tls_in_early_data(t) || early_safe(r->h.method_id))
        return SH_PH_DECLINED;
    held_t *h = sh_new(held_t);
    h->r = r;
    sh_list_init(&h->link);
    if (sh_request_cleanup_add(r, held_cleanup, h) != 0) {
        sh_free(h);
        return 500;
    }
    sh_request_ctx(r, &sh_ssl_module) = h;
    sh_list_insert_head(&t->held, &h->link);
    /* HTTP/1.1: what follows (its body, pipelined requests) stays in the
     * connection's buffer; reading goes on for the handshake */
    return SH_PH_PAUSE;
}

void sh_tls_resume_held(sh_tls_t *t)
{
    if (t == NULL || !t->done)
        return;
    /* oldest first; a resumed request may end others (the connection
     * closes): their cleanup takes them off the list */
    while (!sh_list_empty(&t->held)) {
        held_t *h = container_of(t->held.prev, held_t, link);
        sh_list_remove(&h->link);
        sh_phase_resume(h->r);
    }
}

/* The hold is in the pipeline only when some address takes early data. */
static int ssl_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    for (size_t i = 0; i < m->naddrs; i++) {
        const sh_http_addr_t *a = &m->addrs[i];
        if (a->opt.ssl && srv_conf(a->default_srv)->addr_early)
            return sh_phase_add(cf, m, SH_PHASE_POST_READ, early_hold);
    }
    return 0;
}

static const sh_http_module_t ssl_http_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .preconfiguration = ssl_preconf,
    .postconfiguration = ssl_postconf,
    .init_main = ssl_init_main,
    .create_loc = ssl_create_loc,
    .merge_loc = ssl_merge_loc,
    .destroy_loc = ssl_destroy_loc,
};

sh_conf_module_t sh_ssl_module = {
    .name = "ssl",
    .cmds = ssl_cmds,
    .ctx = &ssl_http_ctx,
};

/* ------------------------------------------------ connections -- */

sh_tls_t *sh_tls_create(const sh_http_addr_t *addr, uv_stream_t *stream,
                        void (*sent_cb)(uv_stream_t *, int), uint64_t conn_id)
{
    pthread_once(&once, init_once);
    SSL_CTX *ctx = atomic_load(&srv_conf(addr->default_srv)->ctx);
    if (ctx == NULL)
        return NULL;
    SSL *ssl = sh_tls_ssl_new(ctx);
    if (ssl == NULL)
        return NULL;
    sh_tls_t *t = sh_new(sh_tls_t);
    sh_list_init(&t->held);
    t->ssl = ssl;
    t->stream = stream;
    t->sent_cb = sent_cb;
    t->addr = addr;
    t->id = conn_id;
    BIO *bio = BIO_new(bio_method);
    BIO_set_data(bio, t);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_app_data(ssl, t);
    SSL_set_accept_state(ssl);
    t->early = srv_conf(addr->default_srv)->addr_early != 0;
    SSL_set_max_early_data(ssl, t->early ? EARLY_DATA_MAX : 0);
    if (t->early)
        SSL_set_allow_early_data_cb(ssl, allow_early_cb, NULL);
    return t;
}

void sh_tls_destroy(sh_tls_t *t)
{
    if (t == NULL)
        return;
    while (!sh_list_empty(&t->held)) /* normally ended with their connection */
        sh_list_remove(t->held.next);
    /* OpenSSL removes the session from the cache when an SSL is freed
     * without a shutdown: keep it unless the connection failed in TLS
     * itself (nginx does the same). */
    if (t->done && !t->failed)
        SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(t->ssl);
    sh_buf_dispose(&t->out);
    sh_free(t);
}

/* Hand what OpenSSL wrote to the stream. */
static int flush_out(sh_tls_t *t)
{
    if (t->out.len == 0)
        return 0;
    uv_buf_t b = uv_buf_init(t->out.data, (unsigned)t->out.len);
    int rc = sh_stream_send(t->stream, &b, 1, t->sent_cb);
    t->out.len = 0;
    if (t->out.cap > 4 * (TLS_RECORD_MAX + 1024)) /* do not keep a large buffer */
        sh_buf_dispose(&t->out);
    return rc;
}

static void log_ssl_failure(sh_tls_t *t, const char *what, int err)
{
    char ossl[512];
    sh_tls_errors(ossl, sizeof(ossl));
    /* Client-caused failures (bad handshakes, alerts) are info, as nginx
     * logs them: a scanner must not fill the error log. */
    sh_log_info("%s failed (%d: %s) %s while %s, client %llu", what, err,
                err == SSL_ERROR_SYSCALL ? "SSL_ERROR_SYSCALL" : "SSL_ERROR_SSL", ossl,
                t->done ? "reading" : "SSL handshaking", (unsigned long long)t->id);
}

/* The start of a handshake where early data may come (RFC 8446 2.3):
 * SSL_read_early_data until OpenSSL says it is finished, handing the
 * plaintext on at once, so a request in 0-RTT data is proxied before the
 * client's Finished arrives; what is written meanwhile goes out as 0.5-RTT
 * data (sh_tls_send). Returns 1 when the early part is over (go on with
 * the handshake), 0 when more input is needed, or an error. */
static int read_early(sh_tls_t *t, char *buf, size_t cap, sh_tls_plain_cb cb, void *arg)
{
    size_t have = 0;
    for (;;) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_early_data(t->ssl, buf + have, cap - have, &n);
        if (r == SSL_READ_EARLY_DATA_SUCCESS) {
            have += n;
            t->early_in = 1;
            if (cap - have >= TLS_RECORD_MAX / 4)
                continue;
        }
        /* the server's flight goes before anything the plaintext causes */
        if (flush_out(t) != 0)
            return SH_EIO;
        if (have > 0) {
            int rc = cb(arg, buf, have);
            have = 0;
            if (rc != 0)
                return rc;
        }
        if (r == SSL_READ_EARLY_DATA_SUCCESS)
            continue;
        if (r == SSL_READ_EARLY_DATA_FINISH) {
            t->early = 0;
            return 1;
        }
        int e = SSL_get_error(t->ssl, 0);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        log_ssl_failure(t, "SSL_read_early_data()", e);
        t->failed = 1;
        flush_out(t); /* the alert, if any */
        return SH_EIO;
    }
}

int sh_tls_input(sh_tls_t *t, const char *data, size_t len, char *buf, size_t cap,
                 sh_tls_plain_cb cb, void *arg)
{
    t->in = data;
    t->in_len = len;
    int rc = 0;
    if (t->failed)
        return SH_EIO;
    if (t->early) {
        rc = read_early(t, buf, cap, cb, arg);
        if (rc != 1) {
            t->in_len = 0;
            return rc;
        }
        rc = 0;
    }
    if (!t->done) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                t->in_len = 0;
                return flush_out(t) != 0 ? SH_EIO : 0;
            }
            log_ssl_failure(t, "SSL_do_handshake()", e);
            t->failed = 1;
            sh_metrics_tls_failure();
            flush_out(t); /* the alert, if any */
            t->in_len = 0;
            return SH_EIO;
        }
        t->done = 1;
        sh_metrics_tls_handshake(SSL_version(t->ssl), SSL_session_reused(t->ssl));
    }
    if (flush_out(t) != 0) /* the handshake's last flight */
        return SH_EIO;
    /* Decrypt until OpenSSL needs more bytes, filling buf before handing
     * it on so small records make one call. */
    size_t have = 0;
    for (;;) {
        ERR_clear_error();
        int r = SSL_read(t->ssl, buf + have, (int)(cap - have));
        if (r > 0) {
            have += (size_t)r;
            if (cap - have >= TLS_RECORD_MAX / 4)
                continue;
            rc = cb(arg, buf, have);
            have = 0;
            if (rc != 0)
                break;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (have > 0) {
            rc = cb(arg, buf, have);
            have = 0;
            if (rc != 0)
                break;
        }
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            rc = SH_ECLOSED;
            break;
        }
        log_ssl_failure(t, "SSL_read()", e);
        t->failed = 1;
        rc = SH_EIO;
        break;
    }
    t->in_len = 0;
    /* post-handshake messages (TLS 1.3 tickets, key updates, alerts) */
    if (t->out.len > 0 && flush_out(t) != 0 && rc == 0)
        rc = SH_EIO;
    return rc;
}

/* Before the client's Finished (a response to a request in early data),
 * records go out as 0.5-RTT data: OpenSSL allows only
 * SSL_write_early_data then. */
static int tls_write(sh_tls_t *t, const void *p, size_t n)
{
    size_t w = 0;
    if (t->done)
        return SSL_write_ex(t->ssl, p, n, &w);
    return SSL_write_early_data(t->ssl, p, n, &w);
}

int sh_tls_send(sh_tls_t *t, const uv_buf_t *bufs, unsigned n)
{
    if (t->failed || t->shut)
        return SH_EIO;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (total == 0)
        return 0;
    ERR_clear_error();
    if (n > 1 && total <= COALESCE_MAX) {
        /* one record for a head and a small body, not one per piece */
        char joined[COALESCE_MAX];
        size_t o = 0;
        for (unsigned i = 0; i < n; i++) {
            memcpy(joined + o, bufs[i].base, bufs[i].len);
            o += bufs[i].len;
        }
        if (tls_write(t, joined, o) != 1)
            goto fail;
    } else {
        for (unsigned i = 0; i < n; i++) {
            if (bufs[i].len == 0)
                continue;
            if (tls_write(t, bufs[i].base, bufs[i].len) != 1)
                goto fail;
        }
    }
    return flush_out(t) != 0 ? SH_EIO : 0;
fail:
    log_ssl_failure(t, "SSL_write()", SSL_get_error(t->ssl, 0));
    t->failed = 1;
    t->out.len = 0;
    return SH_EIO;
}

void sh_tls_shutdown(sh_tls_t *t)
{
    if (t->shut || t->failed || !t->done)
        return;
    t->shut = 1;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    flush_out(t);
}

int sh_tls_handshake_done(const sh_tls_t *t)
{
    return t->done;
}

int sh_tls_in_early_data(const sh_tls_t *t)
{
    return t != NULL && t->early_in && !t->done;
}

const char *sh_tls_alpn(const sh_tls_t *t)
{
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &len);
    if (len == 2 && memcmp(p, "h2", 2) == 0)
        return "h2";
    if (len == 8 && memcmp(p, "http/1.1", 8) == 0)
        return "http/1.1";
    return NULL;
}

/* nginx's ngx_ssl_verify_error_optional(): the errors optional_no_ca
 * lets through (the CA is not known; the signature may be fine). */
static int verify_error_optional(long rc)
{
    return rc == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
           rc == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
           rc == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
           rc == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           rc == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
}

int sh_tls_client_check(const sh_tls_t *t, const sh_http_srv_t *srv)
{
    const ssl_conf_t *c = srv_conf(srv);
    if (c->verify_client == VERIFY_OFF)
        return 0;
    const sh_http_srv_t *hs = t->srv ? t->srv : t->addr->default_srv;
    if (hs != srv && srv_conf(hs) != c) {
        sh_log_info("client attempted to request the server name different from the one that "
                    "was negotiated, client %llu",
                    (unsigned long long)t->id);
        return 421;
    }
    long rc = SSL_get_verify_result(t->ssl);
    if (rc != X509_V_OK &&
        (c->verify_client != VERIFY_OPTIONAL_NO_CA || !verify_error_optional(rc))) {
        sh_log_info("client SSL certificate verify error: (%ld:%s), client %llu", rc,
                    X509_verify_cert_error_string(rc), (unsigned long long)t->id);
        return 495;
    }
    if (c->verify_client == VERIFY_ON && SSL_get0_peer_certificate(t->ssl) == NULL) {
        sh_log_info("client sent no required SSL certificate, client %llu",
                    (unsigned long long)t->id);
        return 496;
    }
    return 0;
}

/* The client certificate variables, through a memory BIO (only when a
 * value uses them). */
static int client_cert_var(const sh_tls_t *t, int which, sh_buf_t *out)
{
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    if (which == SH_TLS_VAR_CLIENT_VERIFY) {
        long rc = SSL_get_verify_result(t->ssl);
        if (rc != X509_V_OK) {
            sh_buf_appends(out, "FAILED:");
            sh_buf_appends(out, X509_verify_cert_error_string(rc));
        } else {
            sh_buf_appends(out, x != NULL ? "SUCCESS" : "NONE");
        }
        return 1;
    }
    if (x == NULL)
        return 0;
    if (which == SH_TLS_VAR_CLIENT_FINGERPRINT) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        if (X509_digest(x, EVP_sha1(), md, &n) != 1)
            return 0;
        static const char hex[] = "0123456789abcdef";
        for (unsigned i = 0; i < n; i++) {
            char h[2] = {hex[md[i] >> 4], hex[md[i] & 15]};
            sh_buf_append(out, h, 2);
        }
        return 1;
    }
    if (which == SH_TLS_VAR_CLIENT_V_REMAIN) {
        int days = 0, secs = 0;
        if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) != 1)
            return 0;
        sh_buf_append_u64(out, days > 0 ? (uint64_t)days : 0);
        return 1;
    }
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return 0;
    int ok = 0;
    switch (which) {
    case SH_TLS_VAR_CLIENT_S_DN:
        ok = X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0;
        break;
    case SH_TLS_VAR_CLIENT_I_DN:
        ok = X509_NAME_print_ex(b, X509_get_issuer_name(x), 0, XN_FLAG_RFC2253) >= 0;
        break;
    case SH_TLS_VAR_CLIENT_SERIAL:
        ok = i2a_ASN1_INTEGER(b, X509_get0_serialNumber(x)) > 0;
        break;
    case SH_TLS_VAR_CLIENT_V_START:
        ok = ASN1_TIME_print(b, X509_get0_notBefore(x)) == 1;
        break;
    case SH_TLS_VAR_CLIENT_V_END:
        ok = ASN1_TIME_print(b, X509_get0_notAfter(x)) == 1;
        break;
    default: /* the PEM forms */
        ok = PEM_write_bio_X509(b, x) == 1;
        break;
    }
    char *p = NULL;
    long n = ok ? BIO_get_mem_data(b, &p) : 0;
    if (n > 0) {
        if (which == SH_TLS_VAR_CLIENT_CERT) {
            /* nginx's $ssl_client_cert: a tab after each inner newline */
            for (long i = 0; i < n; i++) {
                sh_buf_append(out, p + i, 1);
                if (p[i] == '\n' && i + 1 < n)
                    sh_buf_append(out, "\t", 1);
            }
        } else if (which == SH_TLS_VAR_CLIENT_ESCAPED_CERT) {
            static const char hex[] = "0123456789ABCDEF";
            for (long i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)p[i];
                if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
                    sh_buf_append(out, p + i, 1);
                } else {
                    char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
                    sh_buf_append(out, e, 3);
                }
            }
        } else {
            sh_buf_append(out, p, (size_t)n);
        }
    }
    BIO_free(b);
    return n > 0;
}

int sh_tls_var(const sh_tls_t *t, int which, sh_buf_t *out)
{
    if (t == NULL || (!t->done && !t->early_in))
        return 0;
    const char *s = NULL;
    if (which >= SH_TLS_VAR_CLIENT_VERIFY)
        return t->done ? client_cert_var(t, which, out) : 0;
    switch (which) {
    case SH_TLS_VAR_EARLY_DATA:
        /* nginx (OpenSSL): "1" while the handshake is not finished */
        s = t->done ? NULL : "1";
        break;
    case SH_TLS_VAR_PROTOCOL:
        s = SSL_get_version(t->ssl);
        break;
    case SH_TLS_VAR_CIPHER:
        s = SSL_get_cipher_name(t->ssl);
        break;
    case SH_TLS_VAR_SERVER_NAME:
        s = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
        break;
    case SH_TLS_VAR_SESSION_REUSED:
        s = SSL_session_reused(t->ssl) ? "r" : ".";
        break;
    case SH_TLS_VAR_SESSION_ID: {
        SSL_SESSION *sess = SSL_get_session(t->ssl);
        unsigned n = 0;
        const unsigned char *id = sess ? SSL_SESSION_get_id(sess, &n) : NULL;
        static const char hex[] = "0123456789ABCDEF";
        for (unsigned i = 0; i < n; i++) {
            char h[2] = {hex[id[i] >> 4], hex[id[i] & 15]};
            sh_buf_append(out, h, 2);
        }
        return n > 0;
    }
    case SH_TLS_VAR_CURVE: {
        /* nginx's names: the NID's short name (X25519, prime256v1), or
         * 0x%04x for a group OpenSSL has no NID for */
        int nid = SSL_get_negotiated_group(t->ssl);
        if (nid == NID_undef)
            return 0;
        if ((nid & TLSEXT_nid_unknown) == 0) {
            s = OBJ_nid2sn(nid);
            break;
        }
        char g[8];
        snprintf(g, sizeof(g), "0x%04x", nid & 0xffff);
        sh_buf_appends(out, g);
        return 1;
    }
    case SH_TLS_VAR_ALPN: {
        const unsigned char *p = NULL;
        unsigned len = 0;
        SSL_get0_alpn_selected(t->ssl, &p, &len);
        if (len == 0)
            return 0;
        sh_buf_append(out, p, len);
        return 1;
    }
    default:
        return 0;
    }
    if (s == NULL)
        return 0;
    sh_buf_appends(out, s);
    return 1;
}
