/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared TLS session-ticket keys (see tls_tickets.h).
 */
#include "node/conn/tls_tickets.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/pipeline/http_conf.h"

#define DEFAULT_PERIOD 300000u /* nginx's ssl_session_timeout default */

static struct {
    pthread_mutex_t mu;
    sh_tls_shared_key_t keys[SH_TLS_TICKET_KEYS]; /* newest first */
    size_t n;
    uint64_t version;
    uint64_t period_set;     /* ssl_session_ticket_key_rotation; 0: unset */
    uint64_t period_timeout; /* the TLS servers' ssl_session_timeout */
    int maker;               /* 1: alone, or the cluster's maker */
    char self[64];
} K = {.mu = PTHREAD_MUTEX_INITIALIZER, .maker = 1};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t period_locked(void)
{
    return K.period_set ? K.period_set : K.period_timeout ? K.period_timeout : DEFAULT_PERIOD;
}

uint64_t sh_tls_tickets_period(void)
{
    pthread_mutex_lock(&K.mu);
    uint64_t p = period_locked();
    pthread_mutex_unlock(&K.mu);
    return p;
}

void sh_tls_tickets_note_timeout(uint64_t ms)
{
    pthread_mutex_lock(&K.mu);
    K.period_timeout = ms > 0 ? ms : DEFAULT_PERIOD;
    pthread_mutex_unlock(&K.mu);
}

void sh_tls_tickets_set_maker(int maker, const char *self)
{
    pthread_mutex_lock(&K.mu);
    K.maker = maker;
    snprintf(K.self, sizeof(K.self), "%s", self ? self : "");
    pthread_mutex_unlock(&K.mu);
}

/* newer: (created, origin, name) greater */
static int newer(const sh_tls_shared_key_t *a, const sh_tls_shared_key_t *b)
{
    if (a->created != b->created)
        return a->created > b->created;
    int c = strcmp(a->origin, b->origin);
    if (c != 0)
        return c > 0;
    return memcmp(a->name, b->name, 16) > 0;
}

/* Drop the keys older than 3 periods; keep the newest three, sorted. */
static void prune_locked(uint64_t now)
{
    uint64_t life = SH_TLS_TICKET_KEYS * period_locked();
    size_t o = 0;
    for (size_t i = 0; i < K.n; i++) {
        if (K.keys[i].created + life > now) {
            K.keys[o++] = K.keys[i];
        } else {
            OPENSSL_cleanse(&K.keys[i], sizeof(K.keys[i]));
            K.version++;
        }
    }
    for (size_t i = o; i < K.n; i++)
        OPENSSL_cleanse(&K.keys[i], sizeof(K.keys[i]));
    K.n = o;
}

/* Insert k (lock held): 1 when it is new and kept. */
static int insert_locked(const sh_tls_shared_key_t *k, uint64_t now)
{
    for (size_t i = 0; i < K.n; i++)
        if (memcmp(K.keys[i].name, k->name, 16) == 0)
            return 0;
    if (k->created + SH_TLS_TICKET_KEYS * period_locked() <= now)
        return 0; /* aged out already */
    size_t pos = 0;
    while (pos < K.n && newer(&K.keys[pos], k))
        pos++;
    if (pos >= SH_TLS_TICKET_KEYS)
        return 0; /* older than the three we keep */
    size_t last = K.n < SH_TLS_TICKET_KEYS ? K.n : SH_TLS_TICKET_KEYS - 1;
    if (K.n == SH_TLS_TICKET_KEYS)
        OPENSSL_cleanse(&K.keys[SH_TLS_TICKET_KEYS - 1], sizeof(K.keys[0]));
    memmove(&K.keys[pos + 1], &K.keys[pos], (last - pos) * sizeof(K.keys[0]));
    K.keys[pos] = *k;
    if (K.n < SH_TLS_TICKET_KEYS)
        K.n++;
    K.version++;
    return 1;
}

/* How long before its turn the maker makes the next key: the key travels
 * to every member (a tick of the channel and a network delay) while it
 * only decrypts, and every member starts encrypting with it at once, when
 * its `created` time comes. Without it a ticket the maker issued in the
 * first moments of a key did not resume on a node that had not heard of
 * the key yet. A quarter of the period, at most 2 s. */
static uint64_t lead_locked(void)
{
    uint64_t p = period_locked();
    return p / 4 < 2000 ? p / 4 : 2000;
}

/* The index of the key that encrypts: the newest one whose time has come
 * (a key made ahead waits for it), else the oldest. K.n > 0. */
static size_t enc_locked(uint64_t now)
{
    for (size_t i = 0; i < K.n; i++)
        if (K.keys[i].created <= now)
            return i;
    return K.n - 1;
}

static int make_locked(uint64_t now)
{
    sh_tls_shared_key_t k;
    memset(&k, 0, sizeof(k));
    if (RAND_bytes(k.name, sizeof(k.name)) != 1 || RAND_bytes(k.hmac, sizeof(k.hmac)) != 1 ||
        RAND_bytes(k.aes, sizeof(k.aes)) != 1)
        return 0;
    /* its turn: a period after the newest key, or now if that is past */
    k.created = K.n > 0 && K.keys[0].created + period_locked() > now
                    ? K.keys[0].created + period_locked()
                    : now;
    snprintf(k.origin, sizeof(k.origin), "%s", K.self);
    int rc = insert_locked(&k, now);
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* A key is due when there is none, or the newest is a period old but the
 * lead (the maker: made ahead, see lead_locked), or a period and a grace
 * (anyone: the maker is gone). */
static int rotate_locked(uint64_t now)
{
    prune_locked(now);
    uint64_t p = period_locked();
    uint64_t grace = p / 10 > 2000 ? p / 10 : 2000;
    if (K.n > 0 &&
        (K.maker ? K.keys[0].created + p - lead_locked() : K.keys[0].created + p + grace) > now)
        return 0;
    return make_locked(now);
}

int sh_tls_tickets_rotate(uint64_t now)
{
    pthread_mutex_lock(&K.mu);
    int rc = rotate_locked(now);
    pthread_mutex_unlock(&K.mu);
    return rc;
}

uint64_t sh_tls_tickets_version(void)
{
    pthread_mutex_lock(&K.mu);
    uint64_t v = K.version;
    pthread_mutex_unlock(&K.mu);
    return v;
}

size_t sh_tls_tickets_list(sh_tls_shared_key_t *out, size_t max, uint64_t now)
{
    pthread_mutex_lock(&K.mu);
    prune_locked(now);
    size_t n = K.n < max ? K.n : max;
    memcpy(out, K.keys, n * sizeof(*out));
    pthread_mutex_unlock(&K.mu);
    return n;
}

/*
 * Wire form (inside the sealed gossip): u8 'K', u8 format 1, u8 count,
 * count x { name[16] hmac[32] aes[32] created:u64 (little-endian)
 * olen:u8 origin[olen] }.
 */
#define KEY_FIXED (16 + 32 + 32 + 8 + 1)

uint8_t *sh_tls_tickets_encode(size_t *len, uint64_t *version)
{
    pthread_mutex_lock(&K.mu);
    prune_locked(wall_ms());
    uint8_t *out = sh_malloc(3 + K.n * (KEY_FIXED + 64));
    size_t o = 3;
    for (size_t i = 0; i < K.n; i++) {
        const sh_tls_shared_key_t *k = &K.keys[i];
        memcpy(out + o, k->name, 16);
        memcpy(out + o + 16, k->hmac, 32);
        memcpy(out + o + 48, k->aes, 32);
        for (int b = 0; b < 8; b++)
            out[o + 80 + b] = (uint8_t)(k->created >> (8 * b));
        size_t ol = strlen(k->origin);
        out[o + 88] = (uint8_t)ol;
        memcpy(out + o + KEY_FIXED, k->origin, ol);
        o += KEY_FIXED + ol;
    }
    out[0] = 'K';
    out[1] = 1;
    out[2] = (uint8_t)K.n;
    *version = K.version;
    pthread_mutex_unlock(&K.mu);
    *len = o;
    return out;
}

int sh_tls_tickets_merge(const uint8_t *data, size_t len)
{
    if (len < 3 || data[0] != 'K' || data[1] != 1 || data[2] > 16)
        return SH_EPARSE;
    sh_tls_shared_key_t ks[16];
    size_t n = data[2], o = 3;
    for (size_t i = 0; i < n; i++) {
        if (len - o < KEY_FIXED)
            return SH_EPARSE;
        sh_tls_shared_key_t *k = &ks[i];
        memset(k, 0, sizeof(*k));
        memcpy(k->name, data + o, 16);
        memcpy(k->hmac, data + o + 16, 32);
        memcpy(k->aes, data + o + 48, 32);
        for (int b = 0; b < 8; b++)
            k->created |= (uint64_t)data[o + 80 + b] << (8 * b);
        size_t ol = data[o + 88];
        if (ol >= sizeof(k->origin) || len - o - KEY_FIXED < ol)
            return SH_EPARSE;
        memcpy(k->origin, data + o + KEY_FIXED, ol);
        if (memchr(k->origin, '\0', ol) != NULL)
            return SH_EPARSE;
        o += KEY_FIXED + ol;
    }
    if (o != len)
        return SH_EPARSE;
    uint64_t now = wall_ms();
    int any = 0;
    pthread_mutex_lock(&K.mu);
    prune_locked(now);
    for (size_t i = 0; i < n; i++)
        any |= insert_locked(&ks[i], now);
    pthread_mutex_unlock(&K.mu);
    OPENSSL_cleanse(ks, sizeof(ks));
    return any;
}

/* ------------------------------------------------------------ OpenSSL -- */

int sh_tls_tickets_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *ectx,
                      EVP_MAC_CTX *hctx, int enc)
{
    (void)ssl;
    sh_tls_shared_key_t k;
    int renew = 0;
    uint64_t now = wall_ms();
    pthread_mutex_lock(&K.mu);
    if (enc) {
        rotate_locked(now); /* alone, or the maker's key is late */
        if (K.n == 0) {
            pthread_mutex_unlock(&K.mu);
            return -1;
        }
        k = K.keys[enc_locked(now)];
    } else {
        prune_locked(now);
        size_t i;
        for (i = 0; i < K.n; i++)
            if (memcmp(K.keys[i].name, name, 16) == 0)
                break;
        if (i == K.n) {
            pthread_mutex_unlock(&K.mu);
            return 0; /* unknown or aged out: a full handshake */
        }
        k = K.keys[i];
        renew = i > enc_locked(now); /* older than the encrypting key */
    }
    pthread_mutex_unlock(&K.mu);
    int rc = -1;
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (enc) {
        memcpy(name, k.name, 16);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) == 1 && EVP_MAC_CTX_set_params(hctx, params) == 1 &&
            EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1)
            rc = 1;
    } else if (EVP_MAC_CTX_set_params(hctx, params) == 1 &&
               EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1) {
        rc = renew ? 2 : 1;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* ------------------------------------------------------ configuration -- */

typedef struct {
    uint64_t rotation; /* SH_CONF_UNSET_MSEC: unset */
} tk_main_t;

static void *tk_create_main(void)
{
    tk_main_t *m = sh_new(tk_main_t);
    m->rotation = SH_CONF_UNSET_MSEC;
    return m;
}

static void tk_destroy_main(void *conf)
{
    sh_free(conf);
}

static int rotation_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    (void)conf;
    sh_http_block_t *b = cf->user;
    tk_main_t *m = sh_http_main_conf(b->main, &sh_tls_tickets_module);
    if (m->rotation != SH_CONF_UNSET_MSEC)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", cf->node->args[0]);
    if (sh_conf_parse_msec(cf->node->args[1], &m->rotation) != 0 || m->rotation < 1000)
        return sh_conf_error(cf, "invalid value \"%s\" (1s at least)", cf->node->args[1]);
    return 0;
}

static int tk_postconf(sh_conf_t *cf, sh_http_main_t *hm)
{
    (void)cf;
    tk_main_t *m = sh_http_main_conf(hm, &sh_tls_tickets_module);
    pthread_mutex_lock(&K.mu);
    K.period_set = m->rotation == SH_CONF_UNSET_MSEC ? 0 : m->rotation;
    pthread_mutex_unlock(&K.mu);
    return 0;
}

static const sh_conf_cmd_t tk_cmds[] = {
    {"ssl_session_ticket_key_rotation", SH_CTX_HTTP | SH_CONF_TAKE1, rotation_set, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t tk_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_main = tk_create_main,
    .destroy_main = tk_destroy_main,
    .postconfiguration = tk_postconf,
};

sh_conf_module_t sh_tls_tickets_module = {
    .name = "ssl_tickets",
    .cmds = tk_cmds,
    .ctx = &tk_ctx,
};
