/* SPDX-License-Identifier: Apache-2.0 */
/* gzip, gzip_static's checks, and the streaming deflate filter (see gzip.h). */
#include "node/modules/gzip.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "http/httpdate.h"
#include "node/pipeline/metrics.h"
#include "node/pipeline/node.h"
#include "node/pipeline/regex.h"
#include "node/pipeline/vars.h"

#define OUT_MAX     (64 * 1024) /* one output buffer, at most */
#define ZCACHE_MAX  8           /* idle deflate states kept per worker thread */
#define TYPES_MAX   128
#define DISABLE_MAX 32

/* gzip_proxied, as nginx's NGX_HTTP_GZIP_PROXIED_* */
enum {
    PX_OFF = 0x0002,
    PX_EXPIRED = 0x0004,
    PX_NO_CACHE = 0x0008,
    PX_NO_STORE = 0x0010,
    PX_PRIVATE = 0x0020,
    PX_NO_LM = 0x0040,
    PX_NO_ETAG = 0x0080,
    PX_AUTH = 0x0100,
    PX_ANY = 0x0200
};

enum { ST_OFF = 0, ST_ON, ST_ALWAYS };

typedef struct {
    int enable, vary, level, http_version, static_mode;
    int64_t min_length;
    int proxied; /* -1: unset */
    int bufs_num;
    size_t bufs_size;
    char **types; /* lower-case; "*": any */
    size_t ntypes;
    int types_set; /* this level owns types */
    sh_regex_t **disable;
    size_t ndisable;
    int disable_msie6;
    int disable_set; /* this level owns disable */
} gzip_loc_t;

/* ------------------------------------------------------ configuration -- */

static void *gzip_create_loc(void)
{
    gzip_loc_t *c = sh_new(gzip_loc_t);
    c->enable = c->vary = c->level = c->http_version = c->static_mode = -1;
    c->min_length = -1;
    c->proxied = -1;
    c->bufs_num = -1;
    c->disable_msie6 = -1;
    return c;
}

static void gzip_destroy_loc(void *conf)
{
    gzip_loc_t *c = conf;
    if (c->types_set) {
        for (size_t i = 0; i < c->ntypes; i++)
            sh_free(c->types[i]);
        sh_free(c->types);
    }
    if (c->disable_set) {
        for (size_t i = 0; i < c->ndisable; i++)
            sh_regex_destroy(c->disable[i]);
        sh_free(c->disable);
    }
    sh_free(c);
}

#define MERGE(f, d)                                                                                \
    do {                                                                                           \
        if (c->f == -1)                                                                            \
            c->f = p->f == -1 ? (d) : p->f;                                                        \
    } while (0)

static int gzip_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    gzip_loc_t *p = parent, *c = conf;
    (void)cf;
    MERGE(enable, 0);
    MERGE(vary, 0);
    MERGE(level, 1);
    MERGE(http_version, 11);
    MERGE(static_mode, ST_OFF);
    MERGE(min_length, 20);
    MERGE(proxied, PX_OFF);
    MERGE(disable_msie6, 0);
    if (c->bufs_num == -1) {
        c->bufs_num = p->bufs_num == -1 ? 32 : p->bufs_num;
        c->bufs_size = p->bufs_num == -1 ? 4096 : p->bufs_size;
    }
    if (!c->types_set) {
        c->types = p->types;
        c->ntypes = p->ntypes;
    }
    if (!c->disable_set) {
        c->disable = p->disable;
        c->ndisable = p->ndisable;
        if (c->disable_msie6 == 0)
            c->disable_msie6 = p->disable_msie6;
    }
    return 0;
}

static int types_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    gzip_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (c->types_set)
        return sh_conf_error(cf, "\"gzip_types\" directive is duplicate");
    c->types_set = 1;
    c->types = sh_calloc(n->nargs, sizeof(char *));
    c->types[c->ntypes++] = sh_strdup("text/html"); /* always, as nginx */
    for (size_t i = 1; i < n->nargs && c->ntypes < TYPES_MAX; i++) {
        char *t = sh_strdup(n->args[i]);
        for (char *q = t; *q; q++)
            if (*q >= 'A' && *q <= 'Z')
                *q = (char)(*q + 32);
        c->types[c->ntypes++] = t;
    }
    return 0;
}

static int proxied_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    static const sh_conf_enum_t v[] = {{"off", PX_OFF},           {"expired", PX_EXPIRED},
                                       {"no-cache", PX_NO_CACHE}, {"no-store", PX_NO_STORE},
                                       {"private", PX_PRIVATE},   {"no_last_modified", PX_NO_LM},
                                       {"no_etag", PX_NO_ETAG},   {"auth", PX_AUTH},
                                       {"any", PX_ANY},           {NULL, 0}};
    gzip_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (c->proxied != -1)
        return sh_conf_error(cf, "\"gzip_proxied\" directive is duplicate");
    c->proxied = 0;
    for (size_t i = 1; i < n->nargs; i++) {
        int found = 0;
        for (const sh_conf_enum_t *e = v; e->name != NULL; e++)
            if (strcmp(n->args[i], e->name) == 0) {
                c->proxied |= e->value;
                found = 1;
            }
        if (!found)
            return sh_conf_error(cf, "invalid value \"%s\" in \"gzip_proxied\"", n->args[i]);
    }
    if ((c->proxied & PX_OFF) && n->nargs > 2)
        return sh_conf_error(cf, "\"off\" cannot be combined with other values");
    return 0;
}

static int level_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    gzip_loc_t *c = conf;
    int v;
    if (c->level != -1)
        return sh_conf_error(cf, "\"gzip_comp_level\" directive is duplicate");
    if (sh_conf_parse_int(cf->node->args[1], &v) != 0 || v < 1 || v > 9)
        return sh_conf_error(cf, "the value must be in 1-9 range");
    c->level = v;
    return 0;
}

static int min_length_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    gzip_loc_t *c = conf;
    size_t v;
    if (c->min_length != -1)
        return sh_conf_error(cf, "\"gzip_min_length\" directive is duplicate");
    if (sh_conf_parse_size(cf->node->args[1], &v) != 0)
        return sh_conf_error(cf, "invalid value \"%s\"", cf->node->args[1]);
    c->min_length = (int64_t)v;
    return 0;
}

static int buffers_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    gzip_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    int num;
    size_t size;
    if (c->bufs_num != -1)
        return sh_conf_error(cf, "\"gzip_buffers\" directive is duplicate");
    if (sh_conf_parse_int(n->args[1], &num) != 0 || num == 0 ||
        sh_conf_parse_size(n->args[2], &size) != 0 || size == 0)
        return sh_conf_error(cf, "invalid value \"%s %s\"", n->args[1], n->args[2]);
    c->bufs_num = num;
    c->bufs_size = size;
    return 0;
}

static int http_version_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    gzip_loc_t *c = conf;
    const char *v = cf->node->args[1];
    if (c->http_version != -1)
        return sh_conf_error(cf, "\"gzip_http_version\" directive is duplicate");
    if (strcmp(v, "1.0") == 0)
        c->http_version = 10;
    else if (strcmp(v, "1.1") == 0)
        c->http_version = 11;
    else
        return sh_conf_error(cf, "invalid value \"%s\" in \"gzip_http_version\"", v);
    return 0;
}

static int disable_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    gzip_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (!c->disable_set) {
        c->disable_set = 1;
        c->disable = sh_calloc(DISABLE_MAX, sizeof(*c->disable));
        c->ndisable = 0;
        c->disable_msie6 = 0;
    }
    for (size_t i = 1; i < n->nargs; i++) {
        if (strcmp(n->args[i], "msie6") == 0) {
            c->disable_msie6 = 1;
            continue;
        }
        if (strcmp(n->args[i], "degradation") == 0) /* nginx without degradation module */
            return sh_conf_error(cf, "\"degradation\" in \"gzip_disable\" is not supported");
        if (c->ndisable >= DISABLE_MAX)
            return sh_conf_error(cf, "too many \"gzip_disable\" values");
        char err[128];
        if (sh_regex_compile(n->args[i], 1, &c->disable[c->ndisable], err, sizeof(err)) != 0)
            return sh_conf_error(cf, "%s in \"%s\"", err, n->args[i]);
        c->ndisable++;
    }
    return 0;
}

/* ------------------------------------------------------ per thread -- */

typedef struct zent_s {
    z_stream z;
    int level, wbits, memlevel;
    struct zent_s *next;
    char out[OUT_MAX];
} zent_t;

typedef struct {
    zent_t *idle;
    unsigned nidle;
} zcache_t;

static pthread_key_t zkey;
static pthread_once_t zonce = PTHREAD_ONCE_INIT;

static void zcache_free(void *p)
{
    zcache_t *zc = p;
    while (zc->idle != NULL) {
        zent_t *e = zc->idle;
        zc->idle = e->next;
        deflateEnd(&e->z);
        sh_free(e);
    }
    sh_free(zc);
}

static void zkey_make(void)
{
    pthread_key_create(&zkey, zcache_free);
}

static zcache_t *zcache(void)
{
    pthread_once(&zonce, zkey_make);
    zcache_t *zc = pthread_getspecific(zkey);
    if (zc == NULL) {
        zc = sh_new(zcache_t);
        pthread_setspecific(zkey, zc);
    }
    return zc;
}

/* A deflate state for these parameters: an idle one reset, or a new one. */
static zent_t *zent_get(int level, int wbits, int memlevel)
{
    zcache_t *zc = zcache();
    for (zent_t **pp = &zc->idle; *pp != NULL; pp = &(*pp)->next) {
        zent_t *e = *pp;
        if (e->level == level && e->wbits == wbits && e->memlevel == memlevel) {
            *pp = e->next;
            zc->nidle--;
            if (deflateReset(&e->z) == Z_OK)
                return e;
            deflateEnd(&e->z);
            sh_free(e);
            break;
        }
    }
    zent_t *e = sh_malloc(sizeof(*e));
    memset(&e->z, 0, sizeof(e->z));
    e->level = level;
    e->wbits = wbits;
    e->memlevel = memlevel;
    e->next = NULL;
    /* windowBits + 16: a gzip header and trailer around the deflate data */
    if (deflateInit2(&e->z, level, Z_DEFLATED, wbits + 16, memlevel, Z_DEFAULT_STRATEGY) != Z_OK) {
        sh_free(e);
        return NULL;
    }
    return e;
}

static void zent_put(zent_t *e)
{
    zcache_t *zc = zcache();
    if (zc->nidle >= ZCACHE_MAX) {
        deflateEnd(&e->z);
        sh_free(e);
        return;
    }
    e->next = zc->idle;
    zc->idle = e;
    zc->nidle++;
}

/* ------------------------------------------------------ per request -- */

typedef struct {
    zent_t *ze;       /* while compressing */
    size_t olen, cap; /* output bytes waiting in ze->out, its usable size */
    int64_t length;   /* the uncompressed length when known, else -1 */
    uint64_t in, out; /* totals, for $gzip_ratio */
    int level;
    unsigned static_vary : 1; /* gzip_static found FILE.gz */
    unsigned done : 1;
} gzip_ctx_t;

static void ctx_cleanup(sh_request_t *r, void *data)
{
    gzip_ctx_t *x = data;
    if (x->out > 0) /* a response was compressed: the ratio on /metrics */
        sh_metrics_gzip(x->in, x->out);
    if (x->ze != NULL)
        zent_put(x->ze);
    sh_request_ctx(r, &sh_gzip_module) = NULL;
    sh_free(x);
}

static gzip_ctx_t *ctx_get(sh_request_t *r)
{
    gzip_ctx_t *x = sh_request_ctx(r, &sh_gzip_module);
    if (x != NULL)
        return x;
    x = sh_new(gzip_ctx_t);
    if (sh_request_cleanup_add(r, ctx_cleanup, x) != 0) {
        sh_free(x);
        return NULL;
    }
    sh_request_ctx(r, &sh_gzip_module) = x;
    return x;
}

static const gzip_loc_t *conf_of(const sh_request_t *r)
{
    return sh_http_loc_conf(sh_request_loc(r), &sh_gzip_module);
}

static const sh_http1_header_t *req_header(const sh_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->h.nheaders; i++)
        if (sh_http1_name_is(&r->headers[i], name))
            return &r->headers[i];
    return NULL;
}

/* A q-value ("1", "0.5", "0.000"), in thousandths; -1 when invalid. */
static int parse_q(const char *p, const char *e)
{
    if (p >= e || (*p != '0' && *p != '1'))
        return -1;
    int q = (*p - '0') * 1000;
    p++;
    if (p == e)
        return q;
    if (*p++ != '.')
        return -1;
    int scale = 100;
    for (int k = 0; p < e && k < 3; k++, p++) {
        if (*p < '0' || *p > '9')
            return -1;
        q += (*p - '0') * scale;
        scale /= 10;
    }
    return p == e && q <= 1000 ? q : -1;
}

/* Accept-Encoding (RFC 9110 12.5.3): whether gzip is acceptable. gzip's
 * own q when listed, else `*`'s; q=0 means no. */
static int accepts_gzip(const char *v, size_t len)
{
    const char *p = v, *end = v + len;
    int gzip_q = -1, star_q = -1;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *t = p;
        while (p < end && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        size_t tl = (size_t)(p - t);
        int q = 1000;
        while (p < end && *p != ',') { /* parameters */
            while (p < end && (*p == ' ' || *p == '\t' || *p == ';'))
                p++;
            const char *a = p;
            while (p < end && *p != ',' && *p != ';')
                p++;
            const char *ae = p;
            while (ae > a && (ae[-1] == ' ' || ae[-1] == '\t'))
                ae--;
            if (ae - a >= 2 && (a[0] == 'q' || a[0] == 'Q')) {
                const char *qv = a + 1;
                while (qv < ae && (*qv == ' ' || *qv == '\t'))
                    qv++;
                if (qv < ae && *qv == '=') {
                    qv++;
                    while (qv < ae && (*qv == ' ' || *qv == '\t'))
                        qv++;
                    q = parse_q(qv, ae);
                    if (q < 0)
                        q = 0; /* an invalid weight: not acceptable */
                }
            }
        }
        if (tl == 4 && strncasecmp(t, "gzip", 4) == 0)
            gzip_q = q;
        else if (tl == 1 && *t == '*')
            star_q = q;
    }
    if (gzip_q >= 0)
        return gzip_q > 0;
    return star_q > 0;
}

/* nginx's MSIE 4, 5 and 6 (without SV1) detection of User-Agent. */
static int is_msie6(const char *ua, size_t len)
{
    const char *end = ua + len;
    for (const char *m = ua; m + 5 <= end; m++) {
        if (memcmp(m, "MSIE ", 5) != 0)
            continue;
        if (m + 7 >= end || m[6] != '.')
            return 0;
        if (m[5] == '4' || m[5] == '5')
            return 1;
        if (m[5] == '6') {
            for (const char *s = m + 8; s + 3 <= end; s++)
                if (memcmp(s, "SV1", 3) == 0)
                    return 0;
            return 1;
        }
        return 0;
    }
    return 0;
}

static int has_token(const sh_http1_header_t *f, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= f->value_len; i++)
        if (strncasecmp(f->value + i, tok, tl) == 0)
            return 1;
    return 0;
}

/* gzip_proxied for a request that came through a proxy (Via). */
static int proxied_ok(const sh_request_t *r, const gzip_loc_t *c, sh_resp_head_t *h)
{
    int p = c->proxied;
    if (p & PX_OFF)
        return 0;
    if (p & PX_ANY)
        return 1;
    if ((p & PX_AUTH) && req_header(r, "authorization") != NULL)
        return 1;
    const sh_http1_header_t *e = sh_resp_head_find(h, "Expires", 7);
    if (e != NULL) {
        if (!(p & PX_EXPIRED))
            return 0;
        int64_t expires, date = (int64_t)r->c->w->date_sec;
        if (sh_http_date_parse(e->value, e->value_len, &expires) != 0)
            return 0;
        const sh_http1_header_t *d = sh_resp_head_find(h, "Date", 4);
        int64_t dv;
        if (d != NULL && sh_http_date_parse(d->value, d->value_len, &dv) == 0)
            date = dv;
        return expires < date;
    }
    const sh_http1_header_t *cc = sh_resp_head_find(h, "Cache-Control", 13);
    if (cc != NULL) {
        if (((p & PX_NO_CACHE) && has_token(cc, "no-cache")) ||
            ((p & PX_NO_STORE) && has_token(cc, "no-store")) ||
            ((p & PX_PRIVATE) && has_token(cc, "private")))
            return 1;
        return 0;
    }
    if (p & PX_NO_LM)
        return sh_resp_head_find(h, "Last-Modified", 13) == NULL;
    if (p & PX_NO_ETAG)
        return sh_resp_head_find(h, "ETag", 4) == NULL;
    return 0;
}

/* nginx's ngx_http_gzip_ok(): whether the client of r takes gzip. h is
 * the response head (gzip_proxied looks at it), NULL for gzip_static. */
static int gzip_ok(const sh_request_t *r, const gzip_loc_t *c, sh_resp_head_t *h)
{
    const sh_http1_header_t *ae = req_header(r, "accept-encoding");
    if (ae == NULL || !accepts_gzip(ae->value, ae->value_len))
        return 0;
    const sh_http1_header_t *ua = req_header(r, "user-agent");
    if (c->disable_msie6 && ua != NULL && is_msie6(ua->value, ua->value_len))
        return 0;
    if (r->h.version < c->http_version)
        return 0;
    if (req_header(r, "via") != NULL) {
        if (h == NULL ? (c->proxied & PX_ANY) == 0 : !proxied_ok(r, c, h))
            return 0;
    }
    if (ua != NULL)
        for (size_t i = 0; i < c->ndisable; i++)
            if (sh_regex_match(c->disable[i], ua->value, ua->value_len, NULL) == 1)
                return 0;
    return 1;
}

static int type_listed(const gzip_loc_t *c, sh_resp_head_t *h)
{
    static char *const types_default[] = {"text/html"};
    if (c->types == NULL)
        return sh_resp_type_in(h, types_default, 1);
    return sh_resp_type_in(h, c->types, c->ntypes);
}

/* ------------------------------------------------------ filters -- */

static int gzip_body(sh_request_t *r, unsigned next, const char *data, size_t len, int last);

/* nginx 1.7.3+'s ngx_http_weak_etag(). */
static int weaken_etag(sh_request_t *r, sh_resp_head_t *h)
{
    for (size_t i = 0; i < h->n; i++) {
        sh_http1_header_t *f = &h->f[i];
        if (f->name_len != 4 || strncasecmp(f->name, "ETag", 4) != 0)
            continue;
        if (f->value_len >= 2 && f->value[0] == 'W' && f->value[1] == '/')
            return 0;
        if (f->value_len == 0 || f->value[0] != '"') {
            f->name_len = 0; /* not a valid entity tag: dropped */
            return 0;
        }
        size_t off = r->hscratch.len;
        sh_buf_append(&r->hscratch, "W/", 2);
        sh_buf_append(&r->hscratch, f->value, f->value_len);
        return sh_resp_head_set_scratch(r, h, i, off, r->hscratch.len - off);
    }
    return 0;
}

static int gzip_header(sh_request_t *r, sh_resp_head_t *h)
{
    const gzip_loc_t *c = conf_of(r);
    gzip_ctx_t *x = sh_request_ctx(r, &sh_gzip_module);
    int vary = x != NULL && x->static_vary, compress = 0;
    if (x != NULL && x->ze != NULL) { /* a second head (error_page): start over */
        zent_put(x->ze);
        x->ze = NULL;
    }
    if (c->enable && (h->status == 200 || h->status == 403 || h->status == 404) &&
        !(h->flags & SH_RESP_TUNNEL) && (!(h->flags & SH_RESP_NO_BODY) || r->head_only) &&
        (h->length < 0 || h->length >= c->min_length) && type_listed(c, h)) {
        const sh_http1_header_t *ce = sh_resp_head_find(h, "Content-Encoding", 16);
        if (ce == NULL || ce->value_len == 0) {
            vary = 1;
            compress = gzip_ok(r, c, h);
        }
    }
    if (vary && c->vary && sh_resp_head_add(h, "Vary", 4, "Accept-Encoding", 15) != 0)
        return SH_ELIMIT;
    if (!compress)
        return 0;
    if (x == NULL && (x = ctx_get(r)) == NULL)
        return SH_ENOMEM;
    x->length = h->length;
    x->level = c->level;
    x->olen = 0;
    x->in = x->out = 0;
    x->done = 0;
    size_t cap = (size_t)c->bufs_num * c->bufs_size;
    x->cap = cap > OUT_MAX ? OUT_MAX : cap < 1024 ? 1024 : cap;
    if (sh_resp_head_add(h, "Content-Encoding", 16, "gzip", 4) != 0)
        return SH_ELIMIT;
    h->length = -1;
    for (size_t i = 0; i < h->n; i++)
        if (h->f[i].name_len == 13 && strncasecmp(h->f[i].name, "Accept-Ranges", 13) == 0)
            h->f[i].name_len = 0;
    int rc = weaken_etag(r, h);
    if (rc != 0 || r->head_only) /* HEAD: the head nginx gives, no body */
        return rc;
    return sh_body_filter_attach(r, gzip_body);
}

/* Hand the output buffer of ze on. 0 or -1 (r ended: its cleanup may
 * have freed x, which must not be touched then). */
static int out_flush(sh_request_t *r, gzip_ctx_t *x, zent_t *ze, unsigned next, int last)
{
    size_t n = x->olen;
    x->olen = 0;
    x->out += n;
    r->body_bytes_sent += n; /* $body_bytes_sent counts what the client gets */
    return sh_body_next(r, next, ze->out, n, last);
}

static int gzip_body(sh_request_t *r, unsigned next, const char *data, size_t len, int last)
{
    gzip_ctx_t *x = sh_request_ctx(r, &sh_gzip_module);
    if (x == NULL || x->done)
        return sh_body_next(r, next, data, len, last);
    if (x->ze == NULL) {
        /* nginx: a smaller window and hash for a short known body */
        int wbits = MAX_WBITS, memlevel = MAX_MEM_LEVEL - 1;
        if (x->length > 0) {
            while (x->length < ((int64_t)1 << (wbits - 1)) - 262 && wbits > 9) {
                wbits--;
                memlevel--;
            }
            if (memlevel < 1)
                memlevel = 1;
        }
        x->ze = zent_get(x->level, wbits, memlevel);
        if (x->ze == NULL) {
            sh_log_err("deflateInit2() failed");
            sh_request_abort(r);
            return -1;
        }
    }
    r->body_bytes_sent -= len; /* counted compressed, in out_flush */
    x->in += len;
    z_stream *z = &x->ze->z;
    z->next_in = (Bytef *)(uintptr_t)data;
    z->avail_in = (uInt)len;
    int flush = last ? Z_FINISH : Z_NO_FLUSH;
    for (;;) {
        z->next_out = (Bytef *)x->ze->out + x->olen;
        z->avail_out = (uInt)(x->cap - x->olen);
        int rc = deflate(z, flush);
        x->olen = x->cap - z->avail_out;
        if (rc == Z_STREAM_ERROR) {
            sh_log_err("deflate() failed");
            sh_request_abort(r);
            return -1;
        }
        if (rc == Z_STREAM_END) {
            /* the state is ours again before the end: ending the
             * response may free r and run x's cleanup */
            zent_t *ze = x->ze;
            x->done = 1;
            x->ze = NULL;
            int erc = out_flush(r, x, ze, next, 1);
            zent_put(ze);
            return erc;
        }
        if (z->avail_out == 0) {
            if (out_flush(r, x, x->ze, next, 0) != 0)
                return -1;
            continue;
        }
        if (z->avail_in == 0 && !last)
            return 0; /* all taken; the output waits for more */
    }
}

static int gzip_applies(const sh_http_main_t *m, const sh_http_loc_t *loc)
{
    (void)m;
    const gzip_loc_t *c = sh_http_loc_conf(loc, &sh_gzip_module);
    return c != NULL && (c->enable == 1 || (c->static_mode > ST_OFF && c->vary == 1));
}

static const sh_filter_t gzip_f = {
    .name = "gzip", .applies = gzip_applies, .header = gzip_header, .early = 1};

static int gzip_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_filter_add(cf, m, &gzip_f);
}

/* ------------------------------------------------------ gzip_static -- */

int sh_gzip_static_wanted(sh_request_t *r)
{
    const gzip_loc_t *c = conf_of(r);
    if (c->static_mode == ST_ALWAYS)
        return 1;
    return c->static_mode == ST_ON && gzip_ok(r, c, NULL);
}

void sh_gzip_static_served(sh_request_t *r)
{
    gzip_ctx_t *x = ctx_get(r);
    if (x != NULL)
        x->static_vary = 1;
}

/* ------------------------------------------------------ module -- */

#define LOC   (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)
#define LOCIF (LOC | SH_CTX_IF)

static const sh_conf_enum_t static_modes[] = {
    {"off", ST_OFF}, {"on", ST_ON}, {"always", ST_ALWAYS}, {NULL, 0}};

static const sh_conf_cmd_t gzip_cmds[] = {
    {"gzip", LOCIF | SH_CONF_FLAG, sh_conf_set_flag, offsetof(gzip_loc_t, enable), NULL},
    {"gzip_vary", LOC | SH_CONF_FLAG, sh_conf_set_flag, offsetof(gzip_loc_t, vary), NULL},
    {"gzip_static", LOC | SH_CONF_TAKE1, sh_conf_set_enum, offsetof(gzip_loc_t, static_mode),
     static_modes},
    {"gzip_types", LOC | SH_CONF_1MORE, types_set, 0, NULL},
    {"gzip_proxied", LOC | SH_CONF_1MORE, proxied_set, 0, NULL},
    {"gzip_comp_level", LOC | SH_CONF_TAKE1, level_set, 0, NULL},
    {"gzip_min_length", LOC | SH_CONF_TAKE1, min_length_set, 0, NULL},
    {"gzip_buffers", LOC | SH_CONF_TAKE2, buffers_set, 0, NULL},
    {"gzip_http_version", LOC | SH_CONF_TAKE1, http_version_set, 0, NULL},
    {"gzip_disable", LOC | SH_CONF_1MORE, disable_set, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

/* $gzip_ratio (nginx's): bytes in over bytes out with two decimals, once
 * the response was compressed; not found otherwise. */
static int var_ratio(sh_request_t *r, const void *data, sh_buf_t *out)
{
    (void)data;
    const gzip_ctx_t *x = sh_request_ctx(r, &sh_gzip_module);
    if (x == NULL || !x->done || x->out == 0)
        return 0;
    uint64_t hundredths = (x->in * 100 + x->out / 2) / x->out;
    sh_buf_appendf(out, "%llu.%02llu", (unsigned long long)(hundredths / 100),
                   (unsigned long long)(hundredths % 100));
    return 1;
}

static int gzip_preconf(sh_conf_t *cf, sh_http_main_t *m)
{
    (void)m;
    return sh_vars_define(cf, "gzip_ratio", var_ratio, NULL);
}

static const sh_http_module_t gzip_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .preconfiguration = gzip_preconf,
    .create_loc = gzip_create_loc,
    .merge_loc = gzip_merge_loc,
    .destroy_loc = gzip_destroy_loc,
    .postconfiguration = gzip_postconf,
};

sh_conf_module_t sh_gzip_module = {
    .name = "gzip",
    .cmds = gzip_cmds,
    .ctx = &gzip_ctx,
};
