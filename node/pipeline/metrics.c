/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node's request metrics: see metrics.h for what and why so. Layout:
 *
 * - Labels (server names, location patterns, upstream names and servers)
 *   are interned into one process-wide table at configuration time (under
 *   a mutex: the loading thread only), so a series key is a few integers.
 * - A block per worker thread holds three open-addressing tables (a key
 *   word and a row of counters per slot) and some scalars. Its worker is
 *   the only writer: a slot is claimed by storing its key with release
 *   order after the (zero) counters, and counters move by relaxed load and
 *   store, so the scraping thread reads whole keys and never-torn words.
 *   A table that is full (a probe longer than PROBE_MAX) counts the
 *   request in shoal_metrics_series_dropped_total instead.
 * - The scrape sums the blocks into tables of its own and prints them.
 *
 * Latency is measured in the worker's loop milliseconds (the request's
 * start_ms), so the histograms' first buckets gather everything under a
 * millisecond.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "core/alloc.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/metrics.h"
#include "node/pipeline/node.h"
#include "node/pipeline/pipeline.h"

/* --------------------------------------------------------------- labels -- */

#define LABEL_MAX ((1u << 20) - 1) /* ids fit 20 bits of a key */

static pthread_mutex_t lab_mu = PTHREAD_MUTEX_INITIALIZER;
static char **labels; /* labels[0] = "" */
static unsigned nlabels, caplabels;

/* The id of s (config time only; 0 for "" or when the table is full). */
static unsigned intern(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    pthread_mutex_lock(&lab_mu);
    unsigned id = 0;
    for (unsigned i = 1; i < nlabels; i++)
        if (strcmp(labels[i], s) == 0) {
            id = i;
            break;
        }
    if (id == 0 && nlabels < LABEL_MAX) {
        if (nlabels == 0)
            nlabels = 1; /* slot 0 is "" */
        if (nlabels >= caplabels) {
            caplabels = caplabels ? caplabels * 2 : 64;
            labels = sh_realloc(labels, caplabels * sizeof(*labels));
            labels[0] = NULL;
        }
        labels[nlabels] = sh_strdup(s);
        id = nlabels++;
    }
    pthread_mutex_unlock(&lab_mu);
    return id;
}

/* Caller holds lab_mu. */
static const char *label(unsigned id)
{
    return id > 0 && id < nlabels ? labels[id] : "";
}

/* --------------------------------------------------------------- blocks -- */

/* Buckets in microseconds: fit for an API gateway (1 ms to a minute). */
static const uint64_t bucket_us[] = {1000,    2500,    5000,     10000,    25000,
                                     50000,   100000,  250000,   500000,   1000000,
                                     2500000, 5000000, 10000000, 30000000, 60000000};
static const char *const bucket_le[] = {"0.001", "0.0025", "0.005", "0.01", "0.025",
                                        "0.05",  "0.1",    "0.25",  "0.5",  "1",
                                        "2.5",   "5",      "10",    "30",   "60"};
#define NB ((unsigned)(sizeof(bucket_us) / sizeof(bucket_us[0])))

enum { P_HTTP10, P_HTTP11, P_HTTP2, P_N };
static const char *const proto_names[P_N] = {"HTTP/1.0", "HTTP/1.1", "HTTP/2"};

/* request table: one counter per (server, location, protocol, code) */
#define REQ_CAP 2048u
/* latency table, per (server, location, protocol): NB+1 buckets (the last
 * is +Inf), the sum in microseconds, bytes received and sent */
#define LAT_CAP 512u
enum { L_SUM = NB + 1, L_IN, L_OUT, L_NV };
/* upstream table, per (upstream, server) */
#define UPS_CAP 512u
enum { U_SUM = NB + 1, U_TRIES, U_ERRORS, U_TIMEOUTS, U_RETRIES, U_CLASS, U_NV = U_CLASS + 5 };

#define PROBE_MAX 32u
#define KEY_BIT   (1ull << 63)

enum { TLS_V10, TLS_V11, TLS_V12, TLS_V13, TLS_VN };
static const char *const tls_names[TLS_VN] = {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"};

typedef struct {
    unsigned cap, nv;
    _Atomic uint64_t *keys;
    _Atomic uint64_t *vals; /* cap rows of nv */
} tab_t;

typedef struct block_s {
    struct block_s *next;
    int in_use;
    tab_t req, lat, ups;
    _Atomic uint64_t tls[TLS_VN][2]; /* [version][resumed] */
    _Atomic uint64_t tls_failed;
    _Atomic uint64_t h2_streams, h2_resets, h2_floods;
    _Atomic uint64_t gz_in, gz_out, gz_n;
    _Atomic uint64_t dropped;
} block_t;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static block_t *blocks;
static _Thread_local block_t *me;

static void tab_init(tab_t *t, unsigned cap, unsigned nv)
{
    t->cap = cap;
    t->nv = nv;
    t->keys = sh_calloc(cap, sizeof(*t->keys));
    t->vals = sh_calloc((size_t)cap * nv, sizeof(*t->vals));
}

void sh_metrics_worker_attach(void)
{
    pthread_mutex_lock(&reg_mu);
    block_t *b = blocks;
    while (b != NULL && b->in_use)
        b = b->next;
    if (b == NULL) {
        b = sh_new(block_t);
        tab_init(&b->req, REQ_CAP, 1);
        tab_init(&b->lat, LAT_CAP, L_NV);
        tab_init(&b->ups, UPS_CAP, U_NV);
        b->next = blocks;
        blocks = b;
    }
    b->in_use = 1;
    pthread_mutex_unlock(&reg_mu);
    me = b;
}

void sh_metrics_worker_detach(void)
{
    if (me == NULL)
        return;
    pthread_mutex_lock(&reg_mu);
    me->in_use = 0;
    pthread_mutex_unlock(&reg_mu);
    me = NULL;
}

/* Add d to a counter only this thread writes: no read-modify-write. */
static inline void add(_Atomic uint64_t *p, uint64_t d)
{
    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static inline uint64_t rd(_Atomic uint64_t *p)
{
    return atomic_load_explicit(p, memory_order_relaxed);
}

static inline uint64_t mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

/* The counter row of key in b's table t, claimed if new; NULL when full. */
static _Atomic uint64_t *row(block_t *b, tab_t *t, uint64_t key)
{
    uint64_t h = mix(key);
    for (unsigned i = 0; i < PROBE_MAX; i++) {
        unsigned s = (unsigned)(h + i) & (t->cap - 1);
        uint64_t k = atomic_load_explicit(&t->keys[s], memory_order_relaxed);
        if (k == key)
            return &t->vals[(size_t)s * t->nv];
        if (k == 0) {
            atomic_store_explicit(&t->keys[s], key, memory_order_release);
            return &t->vals[(size_t)s * t->nv];
        }
    }
    add(&b->dropped, 1);
    return NULL;
}

static unsigned bucket_of(uint64_t us)
{
    unsigned i = 0;
    while (i < NB && us > bucket_us[i])
        i++;
    return i; /* NB: +Inf */
}

/* --------------------------------------------------------- the counters -- */

unsigned sh_metrics_label(const char *s)
{
    return intern(s);
}

void sh_metrics_upstream_try(unsigned gid, unsigned sid, int status, int fail, uint64_t ms,
                             int retry)
{
    block_t *b = me;
    if (b == NULL)
        return;
    _Atomic uint64_t *v = row(
        b, &b->ups, KEY_BIT | (uint64_t)(gid & 0xffffffu) << 32 | (uint64_t)(sid & 0xffffffu) << 8);
    if (v == NULL)
        return;
    uint64_t us = ms * 1000;
    add(&v[bucket_of(us)], 1);
    add(&v[U_SUM], us);
    add(&v[U_TRIES], 1);
    if (retry)
        add(&v[U_RETRIES], 1);
    if (fail)
        add(&v[fail == 2 ? U_TIMEOUTS : U_ERRORS], 1);
    else if (status >= 100 && status < 600)
        add(&v[U_CLASS + status / 100 - 1], 1);
}

void sh_metrics_tls_handshake(int version, int resumed)
{
    block_t *b = me;
    if (b == NULL)
        return;
    int i = version == TLS1_3_VERSION   ? TLS_V13
            : version == TLS1_2_VERSION ? TLS_V12
            : version == TLS1_1_VERSION ? TLS_V11
                                        : TLS_V10;
    add(&b->tls[i][resumed != 0], 1);
}

void sh_metrics_tls_failure(void)
{
    if (me != NULL)
        add(&me->tls_failed, 1);
}

void sh_metrics_h2_stream(void)
{
    if (me != NULL)
        add(&me->h2_streams, 1);
}

void sh_metrics_h2_reset(void)
{
    if (me != NULL)
        add(&me->h2_resets, 1);
}

void sh_metrics_h2_flood(void)
{
    if (me != NULL)
        add(&me->h2_floods, 1);
}

void sh_metrics_gzip(uint64_t in, uint64_t out)
{
    block_t *b = me;
    if (b == NULL)
        return;
    add(&b->gz_in, in);
    add(&b->gz_out, out);
    add(&b->gz_n, 1);
}

/* ------------------------------------------------------- configuration -- */

typedef struct {
    int location_label; /* metrics_location_label; -1 unset */
    unsigned srv_id, loc_id;
} metrics_loc_t;

static void *ml_create(void)
{
    metrics_loc_t *c = sh_new(metrics_loc_t);
    c->location_label = SH_CONF_UNSET;
    return c;
}

static int ml_merge(sh_conf_t *cf, void *parent, void *conf)
{
    (void)cf;
    metrics_loc_t *c = conf;
    const metrics_loc_t *p = parent;
    SH_CONF_MERGE(c->location_label, p ? p->location_label : SH_CONF_UNSET, 0);
    return 0;
}

static void ml_destroy(void *conf)
{
    sh_free(conf);
}

/* The server label: its first server_name, else "_" (nginx's catch-all). */
static const char *srv_label(const sh_http_srv_t *s)
{
    return s->nnames > 0 && s->names[0][0] != '\0' ? s->names[0] : "_";
}

static void label_tree(sh_http_loc_t *loc, unsigned srv_id)
{
    metrics_loc_t *c = sh_http_loc_conf(loc, &sh_metrics_module);
    if (c != NULL) {
        c->srv_id = srv_id;
        c->loc_id = c->location_label == 1 && loc->name && loc->name[0] ? intern(loc->name) : 0;
    }
    for (size_t i = 0; i < loc->nchildren; i++)
        label_tree(loc->children[i], srv_id);
}

static int proto_of(const sh_request_t *r)
{
    return r->h.version == 20 ? P_HTTP2 : r->h.version == 10 ? P_HTTP10 : P_HTTP11;
}

/* The log phase: count the request that ended. */
static int metrics_log(sh_request_t *r)
{
    block_t *b = me;
    if (b == NULL)
        return SH_PH_DECLINED;
    const sh_http_loc_t *loc = r->loc ? r->loc : r->srv ? r->srv->loc : NULL;
    const metrics_loc_t *c = loc ? sh_http_loc_conf(loc, &sh_metrics_module) : NULL;
    uint64_t srv = c ? c->srv_id : 0, lid = c ? c->loc_id : 0;
    if (srv == 0 && r->srv != NULL) { /* a location outside the server's tree */
        const metrics_loc_t *sc = sh_http_loc_conf(r->srv->loc, &sh_metrics_module);
        srv = sc ? sc->srv_id : 0;
    }
    uint64_t code = r->status >= 100 && r->status <= 999 ? (uint64_t)r->status : 0;
    uint64_t base = KEY_BIT | srv << 36 | lid << 16 | (uint64_t)proto_of(r) << 10;
    _Atomic uint64_t *v = row(b, &b->req, base | code);
    if (v != NULL)
        add(v, 1);
    v = row(b, &b->lat, base);
    if (v == NULL)
        return SH_PH_DECLINED;
    uint64_t now = sh_worker_now(r->w);
    uint64_t us = (now > r->start_ms ? now - r->start_ms : 0) * 1000;
    add(&v[bucket_of(us)], 1);
    add(&v[L_SUM], us);
    add(&v[L_IN], r->head_len + r->body_received);
    add(&v[L_OUT], r->bytes_sent);
    return SH_PH_DECLINED;
}

static int ml_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    for (size_t i = 0; i < m->nservers; i++)
        label_tree(m->servers[i]->loc, intern(srv_label(m->servers[i])));
    return sh_phase_add(cf, m, SH_PHASE_LOG, metrics_log);
}

static const sh_conf_cmd_t ml_cmds[] = {
    {"metrics_location_label", SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_FLAG,
     sh_conf_set_flag, offsetof(metrics_loc_t, location_label), NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t ml_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = ml_create,
    .merge_loc = ml_merge,
    .destroy_loc = ml_destroy,
    .postconfiguration = ml_postconf,
};

sh_conf_module_t sh_metrics_module = {
    .name = "metrics",
    .cmds = ml_cmds,
    .ctx = &ml_ctx,
};

/* -------------------------------------------------------------- scrape -- */

typedef struct {
    unsigned cap, nv, n;
    uint64_t *keys;
    uint64_t *vals;
} sum_t;

/* The scrape's tables are kept from one scrape to the next (under reg_mu):
 * fresh zeroed memory each time cost page faults, the scrape's main cost.
 * Only the keys are cleared; a row is zeroed when its key is claimed. */
static void sum_reset(sum_t *s, unsigned cap, unsigned nv)
{
    if (cap > s->cap) {
        sh_free(s->keys);
        sh_free(s->vals);
        s->keys = sh_calloc(cap, sizeof(*s->keys));
        s->vals = sh_calloc((size_t)cap * nv, sizeof(*s->vals));
        s->cap = cap;
    } else {
        memset(s->keys, 0, (size_t)s->cap * sizeof(*s->keys));
    }
    s->nv = nv;
    s->n = 0;
}

/* Add every row of t into s (s's capacity: every block's rows fit). */
static void sum_add(sum_t *s, tab_t *t)
{
    for (unsigned i = 0; i < t->cap; i++) {
        uint64_t k = atomic_load_explicit(&t->keys[i], memory_order_acquire);
        if (k == 0)
            continue;
        uint64_t h = mix(k);
        for (unsigned j = 0; j < s->cap; j++) {
            unsigned q = (unsigned)(h + j) & (s->cap - 1);
            if (s->keys[q] != 0 && s->keys[q] != k)
                continue;
            if (s->keys[q] == 0) {
                if (s->n + 1 >= s->cap)
                    return; /* cannot happen: sized for every row */
                s->keys[q] = k;
                s->n++;
                memset(&s->vals[(size_t)q * s->nv], 0, s->nv * sizeof(*s->vals));
            }
            for (unsigned v = 0; v < t->nv; v++)
                s->vals[(size_t)q * s->nv + v] += rd(&t->vals[(size_t)i * t->nv + v]);
            break;
        }
    }
}

/* A label value in the text format: \ " and newline escaped. */
static void put_label(FILE *f, const char *name, const char *v)
{
    fprintf(f, "%s=\"", name);
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fputc('\\', f), fputc(*v, f);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
    fputc('"', f);
}

/* server="..",location="..",protocol=".." of a request key. */
static void req_labels(FILE *f, uint64_t k)
{
    unsigned srv = (unsigned)(k >> 36) & LABEL_MAX, loc = (unsigned)(k >> 16) & LABEL_MAX;
    unsigned p = (unsigned)(k >> 10) & 3;
    put_label(f, "server", label(srv));
    if (loc != 0) {
        fputc(',', f);
        put_label(f, "location", label(loc));
    }
    fputc(',', f);
    put_label(f, "protocol", p < P_N ? proto_names[p] : "");
}

static void ups_labels(FILE *f, uint64_t k)
{
    put_label(f, "upstream", label((unsigned)(k >> 32) & 0xffffffu));
    fputc(',', f);
    put_label(f, "server", label((unsigned)(k >> 8) & 0xffffffu));
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(FILE *f, const char *name, void (*labels_of)(FILE *, uint64_t), uint64_t k,
                      const uint64_t *v, uint64_t sum_us)
{
    uint64_t cum = 0;
    for (unsigned i = 0; i <= NB; i++) {
        cum += v[i];
        fprintf(f, "%s_bucket{", name);
        labels_of(f, k);
        fprintf(f, ",le=\"%s\"} %llu\n", i < NB ? bucket_le[i] : "+Inf", (unsigned long long)cum);
    }
    fprintf(f, "%s_sum{", name);
    labels_of(f, k);
    fprintf(f, "} %llu.%06llu\n", (unsigned long long)(sum_us / 1000000),
            (unsigned long long)(sum_us % 1000000));
    fprintf(f, "%s_count{", name);
    labels_of(f, k);
    fprintf(f, "} %llu\n", (unsigned long long)cum);
}

/* One counter family, one sample per row of s: column col of the row, under
 * the row's labels and an optional extra label (name=value). */
static void column(FILE *f, const char *name, const char *help, const sum_t *s,
                   void (*labels_of)(FILE *, uint64_t), unsigned col, const char *xname,
                   const char *xval)
{
    family(f, name, "counter", help);
    for (unsigned i = 0; i < s->cap; i++)
        if (s->keys[i]) {
            fprintf(f, "%s{", name);
            labels_of(f, s->keys[i]);
            if (xname != NULL) {
                fputc(',', f);
                put_label(f, xname, xval);
            }
            fprintf(f, "} %llu\n", (unsigned long long)s->vals[(size_t)i * s->nv + col]);
        }
}

static void scalar(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
    family(f, name, type, help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

void sh_metrics_write(FILE *f)
{
    static sum_t req, lat, ups; /* reg_mu */
    uint64_t tls[TLS_VN][2] = {{0}}, tls_failed = 0, h2s = 0, h2r = 0, h2f = 0;
    uint64_t gzi = 0, gzo = 0, gzn = 0, dropped = 0;
    unsigned nb = 0;
    pthread_mutex_lock(&reg_mu);
    for (block_t *b = blocks; b; b = b->next)
        nb++;
    sum_reset(&req, REQ_CAP * 2 * (nb ? nb : 1), 1);
    sum_reset(&lat, LAT_CAP * 2 * (nb ? nb : 1), L_NV);
    sum_reset(&ups, UPS_CAP * 2 * (nb ? nb : 1), U_NV);
    for (block_t *b = blocks; b; b = b->next) {
        sum_add(&req, &b->req);
        sum_add(&lat, &b->lat);
        sum_add(&ups, &b->ups);
        for (int i = 0; i < TLS_VN; i++)
            for (int j = 0; j < 2; j++)
                tls[i][j] += rd(&b->tls[i][j]);
        tls_failed += rd(&b->tls_failed);
        h2s += rd(&b->h2_streams);
        h2r += rd(&b->h2_resets);
        h2f += rd(&b->h2_floods);
        gzi += rd(&b->gz_in);
        gzo += rd(&b->gz_out);
        gzn += rd(&b->gz_n);
        dropped += rd(&b->dropped);
    }

    pthread_mutex_lock(&lab_mu);
    family(f, "shoal_http_requests_total", "counter",
           "Client requests ended, by server, location (metrics_location_label), protocol, "
           "status code and its class.");
    for (unsigned i = 0; i < req.cap; i++) {
        uint64_t k = req.keys[i];
        if (k == 0)
            continue;
        unsigned code = (unsigned)(k & 0x3ff);
        char cls[4] = {code ? (char)('0' + code / 100) : '0', 'x', 'x', 0};
        char cs[8];
        snprintf(cs, sizeof(cs), "%u", code);
        fputs("shoal_http_requests_total{", f);
        req_labels(f, k);
        fputc(',', f);
        put_label(f, "code", cs);
        fputc(',', f);
        put_label(f, "class", cls);
        fprintf(f, "} %llu\n", (unsigned long long)req.vals[i]);
    }
    family(f, "shoal_http_request_duration_seconds", "histogram",
           "Time from the request's first byte to its end (millisecond resolution).");
    for (unsigned i = 0; i < lat.cap; i++)
        if (lat.keys[i])
            histogram(f, "shoal_http_request_duration_seconds", req_labels, lat.keys[i],
                      &lat.vals[(size_t)i * L_NV], lat.vals[(size_t)i * L_NV + L_SUM]);
    column(f, "shoal_http_received_bytes_total",
           "Bytes of client requests (head and body) received.", &lat, req_labels, L_IN, NULL,
           NULL);
    column(f, "shoal_http_sent_bytes_total", "Bytes of responses (head and body) sent to clients.",
           &lat, req_labels, L_OUT, NULL, NULL);

    column(f, "shoal_upstream_requests_total", "Tries sent to upstream servers (a retry is a try).",
           &ups, ups_labels, U_TRIES, NULL, NULL);
    column(f, "shoal_upstream_retries_total",
           "Tries that were retries of a failed one (proxy_next_upstream).", &ups, ups_labels,
           U_RETRIES, NULL, NULL);
    family(f, "shoal_upstream_failures_total", "counter",
           "Tries that got no response, by reason (error or timeout).");
    for (unsigned i = 0; i < ups.cap; i++)
        if (ups.keys[i])
            for (int r = 0; r < 2; r++) {
                fputs("shoal_upstream_failures_total{", f);
                ups_labels(f, ups.keys[i]);
                fprintf(f, ",reason=\"%s\"} %llu\n", r ? "timeout" : "error",
                        (unsigned long long)ups.vals[(size_t)i * U_NV + U_ERRORS + r]);
            }
    family(f, "shoal_upstream_responses_total", "counter", "Upstream responses by status class.");
    for (unsigned i = 0; i < ups.cap; i++)
        if (ups.keys[i])
            for (int cl = 0; cl < 5; cl++) {
                uint64_t n = ups.vals[(size_t)i * U_NV + U_CLASS + cl];
                if (n == 0)
                    continue;
                fputs("shoal_upstream_responses_total{", f);
                ups_labels(f, ups.keys[i]);
                fprintf(f, ",class=\"%dxx\"} %llu\n", cl + 1, (unsigned long long)n);
            }
    family(f, "shoal_upstream_response_duration_seconds", "histogram",
           "Time of a try, from its start to the end of the upstream's response.");
    for (unsigned i = 0; i < ups.cap; i++)
        if (ups.keys[i])
            histogram(f, "shoal_upstream_response_duration_seconds", ups_labels, ups.keys[i],
                      &ups.vals[(size_t)i * U_NV], ups.vals[(size_t)i * U_NV + U_SUM]);
    pthread_mutex_unlock(&lab_mu);
    pthread_mutex_unlock(&reg_mu);

    family(f, "shoal_tls_handshakes_total", "counter",
           "TLS handshakes completed, by protocol version (resumptions included).");
    for (int i = 0; i < TLS_VN; i++)
        fprintf(f, "shoal_tls_handshakes_total{protocol=\"%s\"} %llu\n", tls_names[i],
                (unsigned long long)(tls[i][0] + tls[i][1]));
    family(f, "shoal_tls_resumptions_total", "counter",
           "TLS handshakes that resumed a session, by protocol version.");
    for (int i = 0; i < TLS_VN; i++)
        fprintf(f, "shoal_tls_resumptions_total{protocol=\"%s\"} %llu\n", tls_names[i],
                (unsigned long long)tls[i][1]);
    scalar(f, "shoal_tls_handshake_failures_total", "counter", "TLS handshakes that failed.",
           tls_failed);
    scalar(f, "shoal_http2_streams_total", "counter", "HTTP/2 request streams opened.", h2s);
    scalar(f, "shoal_http2_stream_resets_total", "counter",
           "HTTP/2 streams the client closed before their response ended.", h2r);
    scalar(f, "shoal_http2_floods_total", "counter",
           "HTTP/2 connections closed for a flood (ENHANCE_YOUR_CALM).", h2f);
    scalar(f, "shoal_http_gzip_responses_total", "counter", "Responses gzip compressed.", gzn);
    scalar(f, "shoal_http_gzip_input_bytes_total", "counter",
           "Bytes gzip took in (ratio: input over output).", gzi);
    scalar(f, "shoal_http_gzip_output_bytes_total", "counter", "Bytes gzip gave out.", gzo);
    scalar(f, "shoal_metrics_series_dropped_total", "counter",
           "Counts lost because a worker's series table was full.", dropped);
}
