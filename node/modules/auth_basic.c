/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `auth_basic REALM|off` and `auth_basic_user_file FILE` (nginx's auth
 * basic module): the client's "Authorization: Basic" user and password
 * checked against an htpasswd file; 401 with
 * `WWW-Authenticate: Basic realm="REALM"` (variables evaluated) otherwise.
 *
 * The file: nginx rereads it for every request; here it is kept in memory
 * and looked at again (stat, reread when its mtime, size or inode
 * changed) at most once a second, on the libuv thread pool, so a worker
 * never blocks on the disk and an edit shows within a second. A missing
 * file is 403, an unreadable one 500 (nginx's answers).
 *
 * Checking a password: {PLAIN}, {SHA} and {SSHA} are a hash or a compare
 * and run on the worker; $apr1$ (Apache's MD5, written here on OpenSSL's
 * MD5) and every crypt(3) format (bcrypt ~50 ms at cost 10) run on the
 * thread pool with the request paused. A small cache per file of verified
 * (user, password, hash) triples (SHA-256 of them; positive results only,
 * so an edit of the file invalidates by itself) spares repeated clients
 * the pool.
 */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/modules/access.h"
#include "node/modules/auth_basic.h"
#include "node/pipeline/node.h"
#include "node/pipeline/reqlog.h"
#include "node/pipeline/vars.h"

#define USER_MAX   256
#define PASS_MAX   256
#define CACHE_SIZE 64
#define RECHECK_MS 1000
#define FILE_MAX   (16 * 1024 * 1024)

/* ------------------------------------------------------ the checks -- */

static const char itoa64[] = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static void to64(char **p, unsigned long v, int n)
{
    while (n-- > 0) {
        *(*p)++ = itoa64[v & 0x3f];
        v >>= 6;
    }
}

static void md5_of(EVP_MD_CTX *m, const void *a, size_t al, const void *b, size_t bl, const void *c,
                   size_t cl, unsigned char out[16])
{
    EVP_DigestInit_ex(m, EVP_md5(), NULL);
    EVP_DigestUpdate(m, a, al);
    EVP_DigestUpdate(m, b, bl);
    EVP_DigestUpdate(m, c, cl);
    EVP_DigestFinal_ex(m, out, NULL);
}

int sh_apr1(const char *pw, size_t pwlen, const char *setting, char out[64])
{
    static const char magic[] = "$apr1$";
    if (strncmp(setting, magic, 6) != 0)
        return -1;
    const char *salt = setting + 6;
    size_t sl = 0;
    while (sl < 8 && salt[sl] != '\0' && salt[sl] != '$')
        sl++;
    EVP_MD_CTX *m = EVP_MD_CTX_new(), *m1 = EVP_MD_CTX_new();
    if (m == NULL || m1 == NULL) {
        EVP_MD_CTX_free(m);
        EVP_MD_CTX_free(m1);
        return -1;
    }
    unsigned char fin[16];
    /* the alternate sum: pw, salt, pw */
    md5_of(m1, pw, pwlen, salt, sl, pw, pwlen, fin);
    EVP_DigestInit_ex(m, EVP_md5(), NULL);
    EVP_DigestUpdate(m, pw, pwlen);
    EVP_DigestUpdate(m, magic, 6);
    EVP_DigestUpdate(m, salt, sl);
    for (size_t left = pwlen; left > 0; left -= left > 16 ? 16 : left)
        EVP_DigestUpdate(m, fin, left > 16 ? 16 : left);
    for (size_t i = pwlen; i != 0; i >>= 1)
        EVP_DigestUpdate(m, (i & 1) ? (const void *)"" : (const void *)pw, 1);
    EVP_DigestFinal_ex(m, fin, NULL);
    /* 1000 rounds, to slow the guessing down (PHK's md5crypt) */
    for (int i = 0; i < 1000; i++) {
        EVP_DigestInit_ex(m1, EVP_md5(), NULL);
        if (i & 1)
            EVP_DigestUpdate(m1, pw, pwlen);
        else
            EVP_DigestUpdate(m1, fin, 16);
        if (i % 3)
            EVP_DigestUpdate(m1, salt, sl);
        if (i % 7)
            EVP_DigestUpdate(m1, pw, pwlen);
        if (i & 1)
            EVP_DigestUpdate(m1, fin, 16);
        else
            EVP_DigestUpdate(m1, pw, pwlen);
        EVP_DigestFinal_ex(m1, fin, NULL);
    }
    EVP_MD_CTX_free(m);
    EVP_MD_CTX_free(m1);
    char *p = out;
    memcpy(p, magic, 6);
    p += 6;
    memcpy(p, salt, sl);
    p += sl;
    *p++ = '$';
    static const int idx[5][3] = {{0, 6, 12}, {1, 7, 13}, {2, 8, 14}, {3, 9, 15}, {4, 10, 5}};
    for (int k = 0; k < 5; k++)
        to64(&p,
             ((unsigned long)fin[idx[k][0]] << 16) | ((unsigned long)fin[idx[k][1]] << 8) |
                 fin[idx[k][2]],
             4);
    to64(&p, fin[11], 2);
    *p = '\0';
    return 0;
}

static int b64dec(const char *in, size_t inl, unsigned char *out, size_t cap, size_t *outl)
{
    while (inl > 0 && in[inl - 1] == '=')
        inl--;
    return sodium_base642bin(out, cap, in, inl, NULL, outl, NULL,
                             sodium_base64_VARIANT_ORIGINAL_NO_PADDING) == 0
               ? 0
               : -1;
}

int sh_htpasswd_slow(const char *hash)
{
    return strncmp(hash, "{PLAIN}", 7) != 0 && strncmp(hash, "{SHA}", 5) != 0 &&
           strncmp(hash, "{SSHA}", 6) != 0;
}

int sh_htpasswd_check(const char *hash, const char *pw, size_t pwlen)
{
    size_t hl = strlen(hash);
    if (strncmp(hash, "{PLAIN}", 7) == 0)
        return hl - 7 == pwlen && CRYPTO_memcmp(hash + 7, pw, pwlen) == 0;
    if (strncmp(hash, "{SHA}", 5) == 0 || strncmp(hash, "{SSHA}", 6) == 0) {
        int salted = hash[1] == 'S' && hash[2] == 'S';
        const char *b = hash + (salted ? 6 : 5);
        unsigned char raw[128], md[20];
        size_t rl;
        if (b64dec(b, strlen(b), raw, sizeof(raw), &rl) != 0 || rl < 20 || (!salted && rl != 20))
            return -1;
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        if (m == NULL)
            return -1;
        EVP_DigestInit_ex(m, EVP_sha1(), NULL);
        EVP_DigestUpdate(m, pw, pwlen);
        EVP_DigestUpdate(m, raw + 20, rl - 20); /* the salt follows the digest */
        EVP_DigestFinal_ex(m, md, NULL);
        EVP_MD_CTX_free(m);
        return CRYPTO_memcmp(md, raw, 20) == 0;
    }
    if (memchr(pw, '\0', pwlen) != NULL)
        return 0; /* crypt(3) would stop at it */
    char *p = sh_strndup(pw, pwlen);
    int ok;
    if (strncmp(hash, "$apr1$", 6) == 0) {
        char out[64];
        ok = sh_apr1(p, pwlen, hash, out) != 0 ? -1 : strcmp(out, hash) == 0;
    } else {
        struct crypt_data *cd = sh_calloc(1, sizeof(*cd));
        const char *out = crypt_r(p, hash, cd);
        if (out == NULL || out[0] == '*')
            ok = -1;
        else
            ok = strlen(out) == hl && CRYPTO_memcmp(out, hash, hl) == 0;
        explicit_bzero(cd, sizeof(*cd));
        sh_free(cd);
    }
    explicit_bzero(p, pwlen);
    sh_free(p);
    return ok;
}

/* ------------------------------------------------------ the file -- */

/* An htpasswd file, shared by the workers; the table changes under mu
 * (on the thread pool), so lookups copy the hash out under it. */
typedef struct {
    char *path;
    _Atomic int refs; /* the owning location, and each pool job */
    pthread_mutex_t mu;
    char *data; /* the file's text, NUL-terminated */
    int err;    /* errno of the last read, 0 when data is the file */
    struct timespec mtime;
    off_t size;
    ino_t ino;
    _Atomic uint64_t checked; /* monotonic ms of the last stat, 0: never */
    struct {
        unsigned char key[32];
        int used;
    } cache[CACHE_SIZE];
} htfile_t;

static void htfile_unref(htfile_t *f)
{
    if (f == NULL || atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&f->mu);
    sh_free(f->path);
    sh_free(f->data);
    sh_free(f);
}

/* Stat the file and read it again when it changed (thread pool). */
static void htfile_refresh(htfile_t *f, uint64_t now)
{
    struct stat st;
    pthread_mutex_lock(&f->mu);
    if (stat(f->path, &st) != 0) {
        f->err = errno;
        goto out;
    }
    if (f->err == 0 && f->data != NULL && st.st_ino == f->ino && st.st_size == f->size &&
        st.st_mtim.tv_sec == f->mtime.tv_sec && st.st_mtim.tv_nsec == f->mtime.tv_nsec)
        goto out;
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        f->err = errno;
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > FILE_MAX) {
        f->err = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
        close(fd);
        goto out;
    }
    char *d = sh_malloc((size_t)st.st_size + 1);
    size_t n = 0;
    while (n < (size_t)st.st_size) {
        ssize_t k = read(fd, d + n, (size_t)st.st_size - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    close(fd);
    d[n] = '\0';
    sh_free(f->data);
    f->data = d;
    f->err = 0;
    f->ino = st.st_ino;
    f->size = st.st_size;
    f->mtime = st.st_mtim;
out:
    atomic_store(&f->checked, now == 0 ? 1 : now);
    pthread_mutex_unlock(&f->mu);
}

/* The user's hash (nginx's reading: "user:hash[:comment]" lines, '#'
 * comments, the first line of the user wins) copied into out. 1 found, 0
 * not, or -errno when the file could not be read. */
static int htfile_lookup(htfile_t *f, const char *user, size_t ul, char *out, size_t cap)
{
    int rc = 0;
    pthread_mutex_lock(&f->mu);
    if (f->err != 0 || f->data == NULL) {
        rc = -(f->err != 0 ? f->err : ENOENT);
        goto out;
    }
    for (const char *p = f->data; *p != '\0';) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > 0 && p[ll - 1] == '\r')
            ll--;
        if (ll > ul && p[0] != '#' && p[ul] == ':' && memcmp(p, user, ul) == 0) {
            const char *h = p + ul + 1;
            size_t hl = ll - ul - 1;
            const char *colon = memchr(h, ':', hl);
            if (colon != NULL)
                hl = (size_t)(colon - h);
            if (hl < cap) {
                memcpy(out, h, hl);
                out[hl] = '\0';
                rc = 1;
            } else {
                rc = -EINVAL;
            }
            goto out;
        }
        if (eol == NULL)
            break;
        p = eol + 1;
    }
out:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static void cache_key(const char *user, size_t ul, const char *pw, size_t pl, const char *hash,
                      unsigned char key[32])
{
    crypto_hash_sha256_state s;
    crypto_hash_sha256_init(&s);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(ul >> (8 * i));
    crypto_hash_sha256_update(&s, len, 8);
    crypto_hash_sha256_update(&s, (const unsigned char *)user, ul);
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(pl >> (8 * i));
    crypto_hash_sha256_update(&s, len, 8);
    crypto_hash_sha256_update(&s, (const unsigned char *)pw, pl);
    crypto_hash_sha256_update(&s, (const unsigned char *)hash, strlen(hash));
    crypto_hash_sha256_final(&s, key);
}

static int cache_has(htfile_t *f, const unsigned char key[32])
{
    pthread_mutex_lock(&f->mu);
    unsigned i = key[0] % CACHE_SIZE;
    int hit = f->cache[i].used && sodium_memcmp(f->cache[i].key, key, 32) == 0;
    pthread_mutex_unlock(&f->mu);
    return hit;
}

static void cache_put(htfile_t *f, const unsigned char key[32])
{
    pthread_mutex_lock(&f->mu);
    unsigned i = key[0] % CACHE_SIZE;
    memcpy(f->cache[i].key, key, 32);
    f->cache[i].used = 1;
    pthread_mutex_unlock(&f->mu);
}

/* ------------------------------------------------------ configuration -- */

typedef struct {
    sh_cv_t *realm; /* NULL: off */
    int realm_set;  /* this level said auth_basic */
    htfile_t *file;
    int file_own;
} ab_loc_t;

static void *ab_create(void)
{
    return sh_new(ab_loc_t);
}

static int ab_merge(sh_conf_t *cf, void *parent, void *conf)
{
    (void)cf;
    ab_loc_t *p = parent, *c = conf;
    if (!c->realm_set)
        c->realm = p->realm; /* borrowed: only realm_set levels own theirs */
    if (c->file == NULL)
        c->file = p->file;
    return 0;
}

static void ab_destroy(void *conf)
{
    ab_loc_t *c = conf;
    if (c->realm_set)
        sh_cv_destroy(c->realm);
    if (c->file_own)
        htfile_unref(c->file);
    sh_free(c);
}

static int set_realm(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    ab_loc_t *c = conf;
    if (c->realm_set)
        return sh_conf_error(cf, "\"auth_basic\" directive is duplicate");
    c->realm_set = 1;
    if (strcmp(cf->node->args[1], "off") == 0)
        return 0;
    return sh_cv_compile(cf, cf->node->args[1], &c->realm);
}

static int set_file(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    ab_loc_t *c = conf;
    const char *v = cf->node->args[1];
    if (c->file != NULL)
        return sh_conf_error(cf, "\"auth_basic_user_file\" directive is duplicate");
    if (strchr(v, '$') != NULL)
        return sh_conf_error(cf, "variables in \"auth_basic_user_file\" are not supported");
    htfile_t *f = sh_new(htfile_t);
    /* nginx: relative to the configuration's directory */
    if (v[0] == '/') {
        f->path = sh_strdup(v);
    } else {
        const char *d = cf->conf_dir != NULL ? cf->conf_dir : "";
        f->path = sh_malloc(strlen(d) + strlen(v) + 1);
        strcpy(f->path, d);
        strcat(f->path, v);
    }
    pthread_mutex_init(&f->mu, NULL);
    atomic_init(&f->refs, 1);
    c->file = f;
    c->file_own = 1;
    return 0;
}

#define ABCTX (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CTX_LIMIT_EXCEPT)

static const sh_conf_cmd_t ab_cmds[] = {
    {"auth_basic", ABCTX | SH_CONF_TAKE1, set_realm, 0, NULL},
    {"auth_basic_user_file", ABCTX | SH_CONF_TAKE1, set_file, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

/* ------------------------------------------------------ per request -- */

enum { AB_NONE = 0, AB_OK, AB_MISMATCH, AB_NOUSER, AB_NOFILE, AB_ERROR };

typedef struct {
    sh_request_t *r; /* NULL once the request ended under a pool job */
    uv_work_t work;
    htfile_t *file;
    int busy;
    int result; /* R_*, set by the job */
    int ferr;   /* the file's errno for AB_NOFILE / AB_ERROR */
    int stale;  /* the job refreshes the file first */
    char user[USER_MAX + 1];
    size_t ul;
    char pw[PASS_MAX + 1];
    size_t pl;
    char hash[512]; /* "" when the job looks the user up */
    sh_buf_t www;   /* the WWW-Authenticate value of a 401 */
} ab_ctx_t;

static void ctx_free(ab_ctx_t *x)
{
    htfile_unref(x->file);
    sh_buf_dispose(&x->www);
    sodium_memzero(x->pw, sizeof(x->pw));
    sh_free(x);
}

static void ctx_cleanup(sh_request_t *r, void *data)
{
    (void)r;
    ab_ctx_t *x = data;
    if (x->busy)
        x->r = NULL; /* the job's end frees it */
    else
        ctx_free(x);
}

static void verify(ab_ctx_t *x)
{
    int ok = sh_htpasswd_check(x->hash, x->pw, x->pl);
    x->result = ok == 1 ? AB_OK : ok == 0 ? AB_MISMATCH : AB_ERROR;
    if (ok == 1 && sh_htpasswd_slow(x->hash)) {
        unsigned char key[32];
        cache_key(x->user, x->ul, x->pw, x->pl, x->hash, key);
        cache_put(x->file, key);
    }
}

static void lookup(ab_ctx_t *x)
{
    int rc = htfile_lookup(x->file, x->user, x->ul, x->hash, sizeof(x->hash));
    if (rc < 0) {
        x->ferr = -rc;
        x->result = -rc == ENOENT ? AB_NOFILE : AB_ERROR;
    } else if (rc == 0) {
        x->result = AB_NOUSER;
    }
}

static void job_run(uv_work_t *w)
{
    ab_ctx_t *x = container_of(w, ab_ctx_t, work);
    if (x->stale) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        htfile_refresh(x->file, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
        x->hash[0] = '\0';
    }
    if (x->hash[0] == '\0') {
        lookup(x);
        if (x->result != AB_NONE)
            return;
    }
    verify(x);
}

static void job_done(uv_work_t *w, int status)
{
    ab_ctx_t *x = container_of(w, ab_ctx_t, work);
    x->busy = 0;
    if (x->r == NULL) {
        ctx_free(x);
        return;
    }
    if (status != 0)
        x->result = AB_ERROR;
    sh_phase_resume(x->r);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The user and password of "Authorization: Basic ...", or -1 (nginx
 * answers 401 to a missing, foreign or malformed one alike). */
static int basic_credentials(const sh_request_t *r, ab_ctx_t *x)
{
    const sh_http1_header_t *h = NULL;
    for (size_t i = 0; i < r->h.nheaders; i++)
        if (r->h.headers[i].name_len == 13 &&
            strncasecmp(r->h.headers[i].name, "authorization", 13) == 0) {
            h = &r->h.headers[i];
            break;
        }
    if (h == NULL || h->value_len < 6 || strncasecmp(h->value, "Basic ", 6) != 0)
        return -1;
    const char *s = h->value + 6, *e = h->value + h->value_len;
    while (s < e && *s == ' ')
        s++;
    unsigned char raw[USER_MAX + PASS_MAX + 2];
    size_t rl;
    if (b64dec(s, (size_t)(e - s), raw, sizeof(raw), &rl) != 0)
        return -1;
    unsigned char *colon = memchr(raw, ':', rl);
    if (colon == NULL || colon == raw || (size_t)(colon - raw) > USER_MAX ||
        rl - (size_t)(colon - raw) - 1 > PASS_MAX)
        return -1;
    x->ul = (size_t)(colon - raw);
    memcpy(x->user, raw, x->ul);
    x->user[x->ul] = '\0';
    x->pl = rl - x->ul - 1;
    memcpy(x->pw, colon + 1, x->pl);
    x->pw[x->pl] = '\0';
    sodium_memzero(raw, sizeof(raw));
    return 0;
}

static int refuse(sh_request_t *r, ab_ctx_t *x, const ab_loc_t *c)
{
    x->www.len = 0;
    sh_buf_appends(&x->www, "Basic realm=\"");
    sh_cv_eval(c->realm, r, &x->www);
    sh_buf_append(&x->www, "\"", 1);
    return sh_access_decide(r, 401);
}

/* The verdict of a finished check. */
static int conclude(sh_request_t *r, ab_ctx_t *x, const ab_loc_t *c)
{
    int res = x->result;
    x->result = AB_NONE;
    sodium_memzero(x->pw, sizeof(x->pw));
    switch (res) {
    case AB_OK:
        return sh_access_decide(r, 0);
    case AB_MISMATCH:
        sh_req_log(SH_LOG_ERR, r->c, r, NULL, "user \"%s\": password mismatch", x->user);
        return refuse(r, x, c);
    case AB_NOUSER:
        sh_req_log(SH_LOG_ERR, r->c, r, NULL, "user \"%s\" was not found in \"%s\"", x->user,
                   c->file->path);
        return refuse(r, x, c);
    case AB_NOFILE:
        sh_req_log(SH_LOG_ERR, r->c, r, NULL, "open() \"%s\" failed (%d: %s)", c->file->path,
                   x->ferr, strerror(x->ferr));
        return 403;
    default:
        if (x->ferr != 0)
            sh_req_log(SH_LOG_CRIT, r->c, r, NULL, "open() \"%s\" failed (%d: %s)", c->file->path,
                       x->ferr, strerror(x->ferr));
        else
            sh_req_log(SH_LOG_ERR, r->c, r, NULL,
                       "user \"%s\": the password hash in \"%s\" cannot be checked", x->user,
                       c->file->path);
        return 500;
    }
}

static int ab_handler(sh_request_t *r)
{
    const ab_loc_t *c = sh_http_loc_conf(r->loc, &sh_auth_basic_module);
    if (c == NULL || c->realm == NULL || c->file == NULL)
        return SH_PH_DECLINED;
    ab_ctx_t *x = sh_request_ctx(r, &sh_auth_basic_module);
    if (x == NULL) {
        x = sh_new(ab_ctx_t);
        if (sh_request_cleanup_add(r, ctx_cleanup, x) != 0) {
            sh_free(x);
            return 500;
        }
        x->r = r;
        sh_request_ctx(r, &sh_auth_basic_module) = x;
    }
    if (x->result != AB_NONE) /* back from the pool */
        return conclude(r, x, c);
    x->www.len = 0;
    if (basic_credentials(r, x) != 0) {
        sh_req_log(SH_LOG_INFO, r->c, r, NULL,
                   "no user/password was provided for basic authentication");
        return refuse(r, x, c);
    }
    htfile_t *f = c->file;
    if (x->file != f) {
        htfile_unref(x->file);
        atomic_fetch_add(&f->refs, 1);
        x->file = f;
    }
    x->ferr = 0;
    x->hash[0] = '\0';
    uint64_t checked = atomic_load(&f->checked);
    x->stale = checked == 0 || mono_ms() - checked >= RECHECK_MS;
    if (!x->stale) {
        lookup(x);
        if (x->result != AB_NONE)
            return conclude(r, x, c);
        if (!sh_htpasswd_slow(x->hash)) {
            verify(x);
            return conclude(r, x, c);
        }
        unsigned char key[32];
        cache_key(x->user, x->ul, x->pw, x->pl, x->hash, key);
        if (cache_has(f, key)) {
            x->result = AB_OK;
            return conclude(r, x, c);
        }
    }
    x->busy = 1;
    if (uv_queue_work(&r->c->w->loop, &x->work, job_run, job_done) != 0) {
        x->busy = 0;
        return 500;
    }
    return SH_PH_PAUSE;
}

/* ------------------------------------------------------ the 401 header -- */

static int www_filter(sh_request_t *r, sh_resp_head_t *h)
{
    const ab_ctx_t *x = sh_request_ctx(r, &sh_auth_basic_module);
    return sh_access_www_authenticate(r, h, x != NULL ? &x->www : NULL);
}

static int www_applies(const sh_http_main_t *m, const sh_http_loc_t *loc)
{
    (void)m;
    const ab_loc_t *c = sh_http_loc_conf(loc, &sh_auth_basic_module);
    return c != NULL && c->realm != NULL;
}

static const sh_filter_t www = {.name = "auth_basic", .applies = www_applies, .header = www_filter};

static int ab_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_access_check_add(cf, m, ab_handler, &www);
}

static const sh_http_module_t ab_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = ab_create,
    .merge_loc = ab_merge,
    .destroy_loc = ab_destroy,
    .postconfiguration = ab_postconf,
};

sh_conf_module_t sh_auth_basic_module = {
    .name = "auth_basic",
    .cmds = ab_cmds,
    .ctx = &ab_ctx,
};
