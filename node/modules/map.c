/* SPDX-License-Identifier: Apache-2.0 */
/*
 * map (see map.h). Each map is compiled at load into: the source complex
 * value, an open-addressing hash of the exact keys (lower-cased), the
 * wildcard lists (hostnames), the compiled regexes in order, and one
 * complex value per distinct line. The maps are immutable afterwards.
 *
 * Per-request cache: in the request's context slot of this module (made
 * on the first map a request evaluates, freed by its cleanup hook), so a
 * value is computed once per request and never seen by another one (the
 * old thread-local cache keyed by the request pointer could hand a request
 * that failed before routing the previous request's values). A result
 * past MAP_CACHE_BYTES, or of a map past MAP_CACHE_SLOTS, is evaluated
 * again.
 */
#include "node/modules/map.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/regex.h"
#include "node/pipeline/vars.h"

#define MAP_CACHE_SLOTS  64
#define MAP_CACHE_BYTES  4096
#define MAP_SOURCE_STACK 1024

typedef struct {
    char *key; /* lower-cased; for wildcards without the '*' */
    size_t len;
    int value; /* index into map_t.values */
} map_key_t;

typedef struct {
    sh_regex_t *re;
    int value;
} map_regex_t;

typedef struct {
    unsigned index; /* position among the configuration's maps */
    char *name;
    sh_cv_t *source;
    sh_cv_t **values;
    size_t nvalues;
    int default_value; /* -1: empty */
    map_key_t *keys;   /* exact keys, in order */
    size_t nkeys;
    uint32_t *hash;       /* open addressing: 1 + key index, 0 empty */
    size_t hash_size;     /* power of two */
    map_key_t *head_wild; /* "*.example.com" -> ".example.com"; ".example.com" too */
    size_t nhead;
    map_key_t *tail_wild; /* "www.example.*" -> "www.example." */
    size_t ntail;
    map_regex_t *regexes;
    size_t nregexes;
    unsigned hostnames : 1;
    unsigned is_volatile : 1;
} map_t;

typedef struct {
    map_t **maps;
    size_t nmaps;
} map_main_t;

/* ------------------------------------------------------ lookup -- */

static uint32_t hash_ci(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint32_t)tolower((unsigned char)s[i]);
        h *= 16777619u;
    }
    return h;
}

static int find_exact(const map_t *m, const char *s, size_t n)
{
    if (m->hash_size == 0)
        return -2;
    size_t mask = m->hash_size - 1;
    for (size_t i = hash_ci(s, n) & mask;; i = (i + 1) & mask) {
        uint32_t k = m->hash[i];
        if (k == 0)
            return -2;
        const map_key_t *key = &m->keys[k - 1];
        if (key->len == n && strncasecmp(key->key, s, n) == 0)
            return key->value;
    }
}

/* The value index for source s, -1 for default; caps filled on a regex. */
static int lookup(const map_t *m, const char *s, size_t n, size_t *ovec, const sh_regex_t **re)
{
    size_t hn = n;
    if (m->hostnames && hn > 0 && s[hn - 1] == '.')
        hn--;
    int v = find_exact(m, s, hn);
    if (v != -2)
        return v;
    if (m->hostnames) {
        const map_key_t *best = NULL;
        for (size_t i = 0; i < m->nhead; i++) {
            const map_key_t *k = &m->head_wild[i];
            /* k->key is ".example.com": under it, or (from ".name") itself */
            int hit = hn > k->len && strncasecmp(s + hn - k->len, k->key, k->len) == 0;
            if (best == NULL || k->len > best->len)
                if (hit)
                    best = k;
        }
        if (best == NULL)
            for (size_t i = 0; i < m->ntail; i++) {
                const map_key_t *k = &m->tail_wild[i];
                if (hn > k->len && strncasecmp(s, k->key, k->len) == 0 &&
                    (best == NULL || k->len > best->len))
                    best = k;
            }
        if (best != NULL)
            return best->value;
    }
    for (size_t i = 0; i < m->nregexes; i++)
        if (sh_regex_match(m->regexes[i].re, s, n, ovec) == 1) {
            *re = m->regexes[i].re;
            return m->regexes[i].value;
        }
    return m->default_value;
}

/* ------------------------------------------------------ request cache -- */

/* A request's cached results (its module context slot, freed by its
 * cleanup hook): made on the first map evaluated, so requests that use no
 * map pay nothing. */
typedef struct {
    uint64_t have; /* bit i: slot i cached */
    struct {
        uint16_t off, len;
    } slot[MAP_CACHE_SLOTS];
    sh_buf_t bytes;
} map_cache_t;

static void cache_free(sh_request_t *r, void *data)
{
    map_cache_t *c = data;
    sh_request_ctx(r, &sh_map_module) = NULL;
    sh_buf_dispose(&c->bytes);
    sh_free(c);
}

static int cache_get(sh_request_t *r, unsigned idx, sh_buf_t *out)
{
    const map_cache_t *c = sh_request_ctx(r, &sh_map_module);
    if (idx >= MAP_CACHE_SLOTS || c == NULL || !(c->have & (1ull << idx)))
        return 0;
    sh_buf_append(out, c->bytes.data + c->slot[idx].off, c->slot[idx].len);
    return 1;
}

static void cache_put(sh_request_t *r, unsigned idx, const char *v, size_t len)
{
    if (idx >= MAP_CACHE_SLOTS || r->c == NULL)
        return;
    map_cache_t *c = sh_request_ctx(r, &sh_map_module);
    if (c == NULL) {
        c = sh_new(map_cache_t);
        if (sh_request_cleanup_add(r, cache_free, c) != 0) {
            sh_free(c);
            return;
        }
        sh_request_ctx(r, &sh_map_module) = c;
    }
    if (len > MAP_CACHE_BYTES - c->bytes.len)
        return;
    c->slot[idx].off = (uint16_t)c->bytes.len;
    c->slot[idx].len = (uint16_t)len;
    sh_buf_append(&c->bytes, v, len);
    c->have |= 1ull << idx;
}

static int map_get(sh_request_t *r, const void *data, sh_buf_t *out)
{
    const map_t *m = data;
    if (!m->is_volatile && cache_get(r, m->index, out))
        return 1;
    /* the source, copied out of `out` (evaluating the value may move it) */
    size_t start = out->len;
    sh_cv_eval(m->source, r, out);
    size_t n = out->len - start;
    char stack[MAP_SOURCE_STACK];
    char *src = n <= sizeof(stack) ? stack : sh_malloc(n);
    if (n > 0) /* an empty source may leave out without a buffer */
        memcpy(src, out->data + start, n);
    out->len = start;
    size_t ovec[SH_REGEX_OVEC];
    const sh_regex_t *re = NULL;
    int v = lookup(m, src, n, ovec, &re);
    if (v >= 0) {
        if (re != NULL) {
            sh_captures_t caps = {.re = re, .subject = src, .ovec = ovec};
            sh_cv_eval_captures(m->values[v], r, &caps, out);
        } else {
            sh_cv_eval(m->values[v], r, out);
        }
    }
    if (src != stack)
        sh_free(src);
    if (!m->is_volatile)
        cache_put(r, m->index, out->data + start, out->len - start);
    return 1;
}

/* ------------------------------------------------------ configuration -- */

static void map_destroy(map_t *m)
{
    if (m == NULL)
        return;
    sh_free(m->name);
    sh_cv_destroy(m->source);
    for (size_t i = 0; i < m->nvalues; i++)
        sh_cv_destroy(m->values[i]);
    sh_free(m->values);
    for (size_t i = 0; i < m->nkeys; i++)
        sh_free(m->keys[i].key);
    sh_free(m->keys);
    sh_free(m->hash);
    for (size_t i = 0; i < m->nhead; i++)
        sh_free(m->head_wild[i].key);
    sh_free(m->head_wild);
    for (size_t i = 0; i < m->ntail; i++)
        sh_free(m->tail_wild[i].key);
    sh_free(m->tail_wild);
    for (size_t i = 0; i < m->nregexes; i++)
        sh_regex_destroy(m->regexes[i].re);
    sh_free(m->regexes);
    sh_free(m);
}

static void *map_create_main(void)
{
    return sh_new(map_main_t);
}

static void map_destroy_main(void *conf)
{
    map_main_t *mm = conf;
    for (size_t i = 0; i < mm->nmaps; i++)
        map_destroy(mm->maps[i]);
    sh_free(mm->maps);
    sh_free(mm);
}

static int add_value(sh_conf_t *cf, map_t *m, const char *text)
{
    /* identical value texts share one compiled value */
    for (size_t i = 0; i < m->nvalues; i++)
        if (strcmp(sh_cv_source(m->values[i]), text) == 0)
            return (int)i;
    sh_cv_t *cv;
    int rc = sh_cv_compile(cf, text, &cv);
    if (rc != 0)
        return rc;
    m->values = sh_realloc(m->values, (m->nvalues + 1) * sizeof(*m->values));
    m->values[m->nvalues++] = cv;
    return (int)m->nvalues - 1;
}

static void add_key(map_key_t **arr, size_t *n, const char *k, size_t len, int value)
{
    *arr = sh_realloc(*arr, (*n + 1) * sizeof(**arr));
    map_key_t *e = &(*arr)[(*n)++];
    e->key = sh_strndup(k, len);
    for (size_t i = 0; i < len; i++)
        e->key[i] = (char)tolower((unsigned char)e->key[i]);
    e->len = len;
    e->value = value;
}

static int dup_key(const map_key_t *arr, size_t n, const char *k, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (arr[i].len == len && strncasecmp(arr[i].key, k, len) == 0)
            return 1;
    return 0;
}

/* One line of the block: "key value;", "default value;", "hostnames;", ... */
static int map_line(sh_conf_t *cf, map_t *m, const sh_conf_node_t *n)
{
    const char *key = n->args[0];
    if (n->block)
        return sh_conf_error(cf, "unexpected \"{\" in map");
    if (n->nargs == 1 && !n->quoted[0]) {
        if (strcmp(key, "hostnames") == 0) {
            m->hostnames = 1;
            return 0;
        }
        if (strcmp(key, "volatile") == 0) {
            m->is_volatile = 1;
            return 0;
        }
    }
    if (n->nargs != 2)
        return sh_conf_error(cf, "invalid number of the map parameters");
    int v = add_value(cf, m, n->args[1]);
    if (v < 0)
        return v;
    size_t kl = strlen(key);
    if (!n->quoted[0] && strcmp(key, "default") == 0) {
        if (m->default_value != -1)
            return sh_conf_error(cf, "duplicate default map parameter");
        m->default_value = v;
        return 0;
    }
    if (key[0] == '~' && kl > 1) {
        int caseless = key[1] == '*';
        const char *pat = key + 1 + caseless;
        sh_regex_t *re;
        char err[256];
        if (sh_regex_compile(pat, caseless, &re, err, sizeof(err)) != 0)
            return sh_conf_error(cf, "pcre2_compile() failed: %s in \"%s\"", err, pat);
        int rc = sh_vars_define_captures(cf, re);
        if (rc != 0) {
            sh_regex_destroy(re);
            return rc;
        }
        m->regexes = sh_realloc(m->regexes, (m->nregexes + 1) * sizeof(*m->regexes));
        m->regexes[m->nregexes++] = (map_regex_t){re, v};
        return 0;
    }
    if (key[0] == '\\' && kl > 1) { /* "\~" or "\default": the literal key */
        key++;
        kl--;
    }
    if (m->hostnames && kl > 1) {
        if (key[0] == '.' || (key[0] == '*' && key[1] == '.')) {
            const char *suffix = key[0] == '*' ? key + 1 : key;
            size_t sl = strlen(suffix);
            if (dup_key(m->head_wild, m->nhead, suffix, sl) && key[0] == '*')
                return sh_conf_error(cf, "conflicting parameter \"%s\"", key);
            add_key(&m->head_wild, &m->nhead, suffix, sl, v);
            if (key[0] == '.') /* ".example.com" also matches "example.com" */
                if (!dup_key(m->keys, m->nkeys, key + 1, kl - 1))
                    add_key(&m->keys, &m->nkeys, key + 1, kl - 1, v);
            return 0;
        }
        if (key[kl - 1] == '*' && key[kl - 2] == '.') {
            if (dup_key(m->tail_wild, m->ntail, key, kl - 1))
                return sh_conf_error(cf, "conflicting parameter \"%s\"", key);
            add_key(&m->tail_wild, &m->ntail, key, kl - 1, v);
            return 0;
        }
    }
    if (m->hostnames && kl > 0 && key[kl - 1] == '.')
        kl--;
    if (dup_key(m->keys, m->nkeys, key, kl))
        return sh_conf_error(cf, "conflicting parameter \"%s\"", n->args[0]);
    add_key(&m->keys, &m->nkeys, key, kl, v);
    return 0;
}

static void build_hash(map_t *m)
{
    if (m->nkeys == 0)
        return;
    size_t size = 8;
    while (size < m->nkeys * 2)
        size *= 2;
    m->hash = sh_calloc(size, sizeof(*m->hash));
    m->hash_size = size;
    for (size_t i = 0; i < m->nkeys; i++) {
        size_t j = hash_ci(m->keys[i].key, m->keys[i].len) & (size - 1);
        while (m->hash[j] != 0)
            j = (j + 1) & (size - 1);
        m->hash[j] = (uint32_t)(i + 1);
    }
}

static int map_block(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    (void)conf;
    sh_http_block_t *b = cf->user;
    map_main_t *mm = sh_http_main_conf(b->main, &sh_map_module);
    const sh_conf_node_t *n = cf->node;
    const char *dst = n->args[2];
    if (dst[0] != '$' || dst[1] == '\0')
        return sh_conf_error(cf, "invalid variable name \"%s\"", dst);
    map_t *m = sh_new(map_t);
    m->default_value = -1;
    m->index = (unsigned)mm->nmaps;
    m->name = sh_strdup(dst + 1);
    int rc = sh_cv_compile(cf, n->args[1], &m->source);
    for (const sh_conf_node_t *c = n->child; c != NULL && rc == 0; c = c->next) {
        cf->node = c;
        rc = map_line(cf, m, c);
        if (rc > 0)
            rc = 0; /* a value index, not an error */
    }
    cf->node = n;
    if (rc == 0)
        rc = sh_vars_define_changeable(cf, m->name, map_get, m);
    if (rc != 0) {
        map_destroy(m);
        return rc;
    }
    build_hash(m);
    mm->maps = sh_realloc(mm->maps, (mm->nmaps + 1) * sizeof(*mm->maps));
    mm->maps[mm->nmaps++] = m;
    return 0;
}

static const sh_conf_cmd_t map_cmds[] = {
    {"map", SH_CTX_HTTP | SH_CONF_BLOCK | SH_CONF_TAKE2, map_block, 0, NULL},
    {"map_hash_max_size", SH_CTX_HTTP | SH_CONF_TAKE1, sh_conf_set_ignore, 0, NULL},
    {"map_hash_bucket_size", SH_CTX_HTTP | SH_CONF_TAKE1, sh_conf_set_ignore, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t map_http_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_main = map_create_main,
    .destroy_main = map_destroy_main,
};

sh_conf_module_t sh_map_module = {
    .name = "map",
    .cmds = map_cmds,
    .ctx = &map_http_ctx,
};
