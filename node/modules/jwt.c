/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Signed JSON Web Tokens and their keys: see jwt.h. base64url through
 * libsodium (strict: no padding, no stray characters), JSON through
 * jansson, keys and signatures through OpenSSL 3 EVP.
 */
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "node/modules/jwt.h"

enum { KTY_RSA = 1, KTY_EC, KTY_OKP, KTY_OCT };

struct sh_jwk_s {
    int kty;
    char kid[128]; /* "" when the key has none */
    int has_kid;
    char alg[16]; /* "" when the key does not restrict it */
    char crv[16]; /* EC: P-256, P-384, P-521 */
    EVP_PKEY *pkey;
    unsigned char *secret; /* oct */
    size_t slen;
};

/* ------------------------------------------------------ base64url -- */

/* Decode base64url (no padding; '=' at the end tolerated for keys). */
static unsigned char *b64url(const char *in, size_t inl, size_t *outl)
{
    while (inl > 0 && in[inl - 1] == '=')
        inl--;
    size_t cap = inl / 4 * 3 + 3;
    unsigned char *out = sh_malloc(cap + 1);
    if (sodium_base642bin(out, cap, in, inl, NULL, outl, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
        sh_free(out);
        return NULL;
    }
    out[*outl] = '\0';
    return out;
}

static unsigned char *json_b64(const json_t *o, const char *name, size_t *outl)
{
    const char *s = json_string_value(json_object_get(o, name));
    if (s == NULL)
        return NULL;
    return b64url(s, strlen(s), outl);
}

/* ------------------------------------------------------ keys -- */

static void key_free(sh_jwk_t *k)
{
    EVP_PKEY_free(k->pkey);
    if (k->secret != NULL) {
        OPENSSL_cleanse(k->secret, k->slen);
        sh_free(k->secret);
    }
}

void sh_jwks_clear(sh_jwks_t *set)
{
    for (size_t i = 0; i < set->n; i++)
        key_free(&set->keys[i]);
    sh_free(set->keys);
    set->keys = NULL;
    set->n = 0;
}

static void set_push(sh_jwks_t *set, const sh_jwk_t *k)
{
    set->keys = sh_realloc(set->keys, (set->n + 1) * sizeof(*set->keys));
    set->keys[set->n++] = *k;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pk = NULL;
    if (params != NULL && pc != NULL && EVP_PKEY_fromdata_init(pc) == 1)
        if (EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
            pk = NULL;
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(params);
    return pk;
}

static EVP_PKEY *rsa_key(const json_t *o)
{
    size_t nl, el;
    unsigned char *n = json_b64(o, "n", &nl), *e = json_b64(o, "e", &el);
    EVP_PKEY *pk = NULL;
    if (n != NULL && e != NULL && nl > 0 && el > 0) {
        BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1)
            pk = pkey_fromdata("RSA", bld);
        OSSL_PARAM_BLD_free(bld);
        BN_free(bn);
        BN_free(be);
    }
    sh_free(n);
    sh_free(e);
    return pk;
}

static const struct {
    const char *crv, *group;
    size_t len; /* bytes of a coordinate */
} curves[] = {{"P-256", "prime256v1", 32}, {"P-384", "secp384r1", 48}, {"P-521", "secp521r1", 66}};

static EVP_PKEY *ec_key(const json_t *o, char crv[16])
{
    const char *c = json_string_value(json_object_get(o, "crv"));
    int ci = -1;
    for (int i = 0; c != NULL && i < 3; i++)
        if (strcmp(c, curves[i].crv) == 0)
            ci = i;
    if (ci < 0)
        return NULL;
    snprintf(crv, 16, "%s", curves[ci].crv);
    size_t xl, yl;
    unsigned char *x = json_b64(o, "x", &xl), *y = json_b64(o, "y", &yl);
    EVP_PKEY *pk = NULL;
    size_t L = curves[ci].len;
    if (x != NULL && y != NULL && xl == L && yl == L) {
        unsigned char pt[1 + 2 * 66];
        pt[0] = 0x04;
        memcpy(pt + 1, x, L);
        memcpy(pt + 1 + L, y, L);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bld &&
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curves[ci].group, 0) ==
                1 &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * L) == 1)
            pk = pkey_fromdata("EC", bld);
        OSSL_PARAM_BLD_free(bld);
    }
    sh_free(x);
    sh_free(y);
    return pk;
}

static EVP_PKEY *okp_key(const json_t *o)
{
    const char *c = json_string_value(json_object_get(o, "crv"));
    int type = c == NULL                   ? 0
               : strcmp(c, "Ed25519") == 0 ? EVP_PKEY_ED25519
               : strcmp(c, "Ed448") == 0   ? EVP_PKEY_ED448
                                           : 0;
    if (type == 0)
        return NULL;
    size_t xl;
    unsigned char *x = json_b64(o, "x", &xl);
    EVP_PKEY *pk = x != NULL ? EVP_PKEY_new_raw_public_key(type, NULL, x, xl) : NULL;
    sh_free(x);
    return pk;
}

/* One JWK into k: 1 made, 0 a key of another use or type (skipped), -1
 * a malformed key. */
static int jwk_parse(const json_t *o, sh_jwk_t *k, char *err, size_t errlen)
{
    memset(k, 0, sizeof(*k));
    if (!json_is_object(o)) {
        snprintf(err, errlen, "a key is not a JSON object");
        return -1;
    }
    const char *kty = json_string_value(json_object_get(o, "kty"));
    const char *use = json_string_value(json_object_get(o, "use"));
    const char *kid = json_string_value(json_object_get(o, "kid"));
    const char *alg = json_string_value(json_object_get(o, "alg"));
    if (kty == NULL) {
        snprintf(err, errlen, "a key has no \"kty\"");
        return -1;
    }
    if (use != NULL && strcmp(use, "sig") != 0)
        return 0;
    if (kid != NULL) {
        if (strlen(kid) >= sizeof(k->kid)) {
            snprintf(err, errlen, "a key's \"kid\" is too long");
            return -1;
        }
        strcpy(k->kid, kid);
        k->has_kid = 1;
    }
    if (alg != NULL && strlen(alg) < sizeof(k->alg))
        strcpy(k->alg, alg);
    if (strcmp(kty, "RSA") == 0) {
        k->kty = KTY_RSA;
        k->pkey = rsa_key(o);
    } else if (strcmp(kty, "EC") == 0) {
        k->kty = KTY_EC;
        k->pkey = ec_key(o, k->crv);
    } else if (strcmp(kty, "OKP") == 0) {
        k->kty = KTY_OKP;
        k->pkey = okp_key(o);
    } else if (strcmp(kty, "oct") == 0) {
        k->kty = KTY_OCT;
        k->secret = json_b64(o, "k", &k->slen);
        if (k->secret == NULL || k->slen == 0) {
            sh_free(k->secret);
            k->secret = NULL;
            snprintf(err, errlen, "an \"oct\" key has no valid \"k\"");
            return -1;
        }
        return 1;
    } else {
        return 0;
    }
    if (k->pkey == NULL) {
        snprintf(err, errlen, "a \"%s\" key%s%s is not valid", kty, kid ? " " : "", kid ? kid : "");
        return -1;
    }
    return 1;
}

static int pem_add(sh_jwks_t *set, const char *text, size_t len, char *err, size_t errlen)
{
    BIO *b = BIO_new_mem_buf(text, (int)len);
    size_t before = set->n;
    EVP_PKEY *pk;
    while (b != NULL && (pk = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL)) != NULL) {
        sh_jwk_t k = {0};
        k.pkey = pk;
        int id = EVP_PKEY_get_base_id(pk);
        if (id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS) {
            k.kty = KTY_RSA;
        } else if (id == EVP_PKEY_EC) {
            k.kty = KTY_EC;
            char g[64] = "";
            size_t gl;
            EVP_PKEY_get_group_name(pk, g, sizeof(g), &gl);
            for (int i = 0; i < 3; i++)
                if (strcmp(g, curves[i].group) == 0)
                    snprintf(k.crv, sizeof(k.crv), "%s", curves[i].crv);
        } else if (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) {
            k.kty = KTY_OKP;
        } else {
            EVP_PKEY_free(pk);
            continue;
        }
        set_push(set, &k);
    }
    BIO_free(b);
    if (set->n == before) {
        snprintf(err, errlen, "no usable PEM public key");
        return -1;
    }
    return 0;
}

static _Atomic uint64_t set_ids;

int sh_jwks_add(sh_jwks_t *set, const char *text, size_t len, char *err, size_t errlen)
{
    set->id = atomic_fetch_add(&set_ids, 1) + 1; /* new keys: new cache entries */
    if (memmem(text, len, "-----BEGIN", 10) != NULL)
        return pem_add(set, text, len, err, errlen);
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL) {
        snprintf(err, errlen, "invalid JSON: %s (line %d)", je.text, je.line);
        return -1;
    }
    json_t *keys = json_object_get(j, "keys");
    size_t before = set->n;
    int rc = 0;
    if (keys != NULL) {
        if (!json_is_array(keys)) {
            snprintf(err, errlen, "\"keys\" is not an array");
            rc = -1;
        }
        size_t i;
        json_t *o;
        json_array_foreach(keys, i, o)
        {
            if (rc != 0)
                break;
            sh_jwk_t k;
            int r = jwk_parse(o, &k, err, errlen);
            if (r < 0)
                rc = -1;
            else if (r > 0)
                set_push(set, &k);
        }
    } else {
        sh_jwk_t k;
        int r = jwk_parse(j, &k, err, errlen);
        if (r < 0)
            rc = -1;
        else if (r > 0)
            set_push(set, &k);
    }
    json_decref(j);
    if (rc == 0 && set->n == before) {
        snprintf(err, errlen, "no usable signing key");
        rc = -1;
    }
    return rc;
}

/* ------------------------------------------------------ verifying -- */

enum { FAM_HS = 1, FAM_RS, FAM_PS, FAM_ES, FAM_ED };

typedef struct {
    const char *name;
    int fam;
    const char *md; /* digest name, NULL for EdDSA */
    const char *crv;
} alg_t;

static const alg_t algs[] = {
    {"HS256", FAM_HS, "SHA256", NULL},    {"HS384", FAM_HS, "SHA384", NULL},
    {"HS512", FAM_HS, "SHA512", NULL},    {"RS256", FAM_RS, "SHA256", NULL},
    {"RS384", FAM_RS, "SHA384", NULL},    {"RS512", FAM_RS, "SHA512", NULL},
    {"PS256", FAM_PS, "SHA256", NULL},    {"PS384", FAM_PS, "SHA384", NULL},
    {"PS512", FAM_PS, "SHA512", NULL},    {"ES256", FAM_ES, "SHA256", "P-256"},
    {"ES384", FAM_ES, "SHA384", "P-384"}, {"ES512", FAM_ES, "SHA512", "P-521"},
    {"EdDSA", FAM_ED, NULL, NULL},
};

static int key_fits(const sh_jwk_t *k, const alg_t *a)
{
    if (k->alg[0] != '\0' && strcmp(k->alg, a->name) != 0)
        return 0;
    switch (a->fam) {
    case FAM_HS:
        return k->kty == KTY_OCT;
    case FAM_RS:
    case FAM_PS:
        return k->kty == KTY_RSA;
    case FAM_ES:
        return k->kty == KTY_EC && strcmp(k->crv, a->crv) == 0;
    default:
        return k->kty == KTY_OKP;
    }
}

/* The digests, fetched once (a fetch by name per verification costs more
 * than the digest itself). */
static EVP_MD *md_sha[3];
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_fetch(void)
{
    md_sha[0] = EVP_MD_fetch(NULL, "SHA256", NULL);
    md_sha[1] = EVP_MD_fetch(NULL, "SHA384", NULL);
    md_sha[2] = EVP_MD_fetch(NULL, "SHA512", NULL);
}

static const EVP_MD *md_of(const alg_t *a)
{
    if (a->md == NULL)
        return NULL;
    pthread_once(&md_once, md_fetch);
    return md_sha[strcmp(a->md, "SHA256") == 0 ? 0 : strcmp(a->md, "SHA384") == 0 ? 1 : 2];
}

static int verify_with(const sh_jwk_t *k, const alg_t *a, const unsigned char *data, size_t dl,
                       const unsigned char *sig, size_t sl)
{
    if (a->fam == FAM_HS) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        size_t ml = 0;
        unsigned int hl = 0;
        if (HMAC(md_of(a), k->secret, (int)k->slen, data, dl, mac, &hl) == NULL)
            return 0;
        ml = hl;
        return ml == sl && CRYPTO_memcmp(mac, sig, sl) == 0;
    }
    unsigned char *der = NULL;
    size_t derl = 0;
    if (a->fam == FAM_ES) {
        /* JWS: r || s, each the curve's size; OpenSSL: DER */
        size_t L = strcmp(a->crv, "P-256") == 0 ? 32 : strcmp(a->crv, "P-384") == 0 ? 48 : 66;
        if (sl != 2 * L)
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)L, NULL), *s = BN_bin2bn(sig + L, (int)L, NULL);
        if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return 0;
        }
        int n = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (n <= 0)
            return 0;
        derl = (size_t)n;
        sig = der;
        sl = derl;
    }
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int ok = 0;
    if (m != NULL && EVP_DigestVerifyInit(m, &pc, md_of(a), NULL, k->pkey) == 1) {
        int set = 1;
        if (a->fam == FAM_PS)
            set = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
                  EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1;
        else if (a->fam == FAM_RS)
            set = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1;
        ok = set && EVP_DigestVerify(m, sig, sl, data, dl) == 1;
    }
    EVP_MD_CTX_free(m);
    OPENSSL_free(der);
    return ok;
}

/* A NumericDate claim: 1 present (in *v), 0 absent, -1 not a number. */
static int numeric_date(const json_t *p, const char *name, int64_t *v)
{
    const json_t *o = json_object_get(p, name);
    if (o == NULL)
        return 0;
    if (json_is_integer(o)) {
        *v = (int64_t)json_integer_value(o);
        return 1;
    }
    if (json_is_real(o)) {
        double d = json_real_value(o);
        if (!(d > -9.2e18 && d < 9.2e18))
            return -1;
        *v = (int64_t)d;
        return 1;
    }
    return -1;
}

void sh_jwt_clear(sh_jwt_t *t)
{
    json_decref(t->header);
    json_decref(t->payload);
    t->header = t->payload = NULL;
}

static json_t *json_part(const char *s, size_t n)
{
    size_t rl;
    unsigned char *raw = b64url(s, n, &rl);
    if (raw == NULL)
        return NULL;
    json_t *j = json_loadb((const char *)raw, rl, JSON_REJECT_DUPLICATES, NULL);
    sh_free(raw);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ------------------------------------------------------ verified cache -- */

#define VCACHE 1024

static _Thread_local struct {
    unsigned char d[32];
    int used;
} vcache[VCACHE];

static void vcache_key(const char *token, size_t len, const sh_jwks_t *const *sets, size_t nsets,
                       unsigned char d[32])
{
    crypto_hash_sha256_state s;
    crypto_hash_sha256_init(&s);
    for (size_t i = 0; i < nsets; i++) {
        unsigned char id[8];
        for (int k = 0; k < 8; k++)
            id[k] = (unsigned char)(sets[i]->id >> (8 * k));
        crypto_hash_sha256_update(&s, id, 8);
    }
    crypto_hash_sha256_update(&s, (const unsigned char *)token, len);
    crypto_hash_sha256_final(&s, d);
}

static unsigned vcache_slot(const unsigned char d[32])
{
    return ((unsigned)d[0] | (unsigned)d[1] << 8) % VCACHE;
}

int sh_jwt_verify(const char *token, size_t len, const sh_jwks_t *const *sets, size_t nsets,
                  int64_t now, int64_t leeway, sh_jwt_t *out, const char **reason)
{
    out->header = out->payload = NULL;
    if (len == 0) {
        *reason = "empty token";
        return -1;
    }
    if (len > SH_JWT_MAX) {
        *reason = "token too long";
        return -1;
    }
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d1 == NULL || d2 == NULL) {
        *reason = "malformed token: not three parts";
        return -1;
    }
    if (memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL) {
        *reason = "encrypted tokens (JWE) are not supported";
        return -1;
    }
    json_t *h = json_part(token, (size_t)(d1 - token));
    if (h == NULL) {
        *reason = "malformed token: invalid header";
        return -1;
    }
    const char *an = json_string_value(json_object_get(h, "alg"));
    const alg_t *a = NULL;
    for (size_t i = 0; an != NULL && i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strcmp(an, algs[i].name) == 0)
            a = &algs[i];
    if (a == NULL) {
        *reason = an != NULL && strcasecmp(an, "none") == 0
                      ? "unsigned tokens (alg none) are refused"
                      : "unsupported algorithm";
        json_decref(h);
        return -1;
    }
    if (json_object_get(h, "crit") != NULL) {
        *reason = "critical header parameters are not supported";
        json_decref(h);
        return -1;
    }
    const json_t *kidj = json_object_get(h, "kid");
    const char *kid = json_string_value(kidj);
    if (kidj != NULL && kid == NULL) {
        *reason = "malformed token: kid is not a string";
        json_decref(h);
        return -1;
    }
    size_t sl;
    unsigned char *sig = b64url(d2 + 1, len - (size_t)(d2 + 1 - token), &sl);
    if (sig == NULL || sl == 0) {
        sh_free(sig);
        *reason = "malformed token: invalid signature encoding";
        json_decref(h);
        return -1;
    }
    int tried = 0, ok = 0;
    unsigned char vk[32];
    vcache_key(token, len, sets, nsets, vk);
    unsigned slot = vcache_slot(vk);
    if (vcache[slot].used && sodium_memcmp(vcache[slot].d, vk, 32) == 0)
        ok = 1; /* this very token verified with these very keys */
    for (size_t s = 0; s < nsets && !ok; s++)
        for (size_t i = 0; i < sets[s]->n && !ok; i++) {
            const sh_jwk_t *k = &sets[s]->keys[i];
            if (kid != NULL && (!k->has_kid || strcmp(k->kid, kid) != 0))
                continue;
            if (!key_fits(k, a))
                continue;
            tried = 1;
            ok = verify_with(k, a, (const unsigned char *)token, (size_t)(d2 - token), sig, sl);
        }
    sh_free(sig);
    if (ok && !vcache[slot].used) {
        memcpy(vcache[slot].d, vk, 32);
        vcache[slot].used = 1;
    } else if (ok && sodium_memcmp(vcache[slot].d, vk, 32) != 0) {
        memcpy(vcache[slot].d, vk, 32); /* direct mapped: the newest wins */
    }
    if (!ok) {
        *reason = tried         ? "signature verification failed"
                  : kid != NULL ? "no key with the token's kid for its algorithm"
                                : "no key for the token's algorithm";
        json_decref(h);
        return -1;
    }
    json_t *p = json_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (p == NULL) {
        *reason = "malformed token: invalid payload";
        json_decref(h);
        return -1;
    }
    int64_t v;
    int rc;
    const char *why = NULL;
    if ((rc = numeric_date(p, "exp", &v)) < 0)
        why = "invalid exp claim";
    else if (rc > 0 && now > v + leeway)
        why = "token expired";
    else if ((rc = numeric_date(p, "nbf", &v)) < 0)
        why = "invalid nbf claim";
    else if (rc > 0 && now + leeway < v)
        why = "token not yet valid (nbf)";
    else if ((rc = numeric_date(p, "iat", &v)) < 0)
        why = "invalid iat claim";
    else if (rc > 0 && now + leeway < v)
        why = "token issued in the future (iat)";
    if (why != NULL) {
        *reason = why;
        json_decref(h);
        json_decref(p);
        return -1;
    }
    out->header = h;
    out->payload = p;
    return 0;
}

/* ------------------------------------------------------ values -- */

void sh_jwt_value_text(const json_t *v, sh_buf_t *out)
{
    char num[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        sh_buf_append(out, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        sh_buf_appends(out, num);
        break;
    case JSON_REAL:
        snprintf(num, sizeof(num), "%.17g", json_real_value(v));
        sh_buf_appends(out, num);
        break;
    case JSON_TRUE:
        sh_buf_appends(out, "true");
        break;
    case JSON_FALSE:
        sh_buf_appends(out, "false");
        break;
    case JSON_NULL:
        break;
    case JSON_ARRAY: {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (i > 0)
                sh_buf_append(out, ",", 1);
            sh_jwt_value_text(e, out);
        }
        break;
    }
    default: {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s != NULL) {
            sh_buf_appends(out, s);
            free(s);
        }
    }
    }
}
