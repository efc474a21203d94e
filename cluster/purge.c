/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The purge channel (purge.h): the engine (pure), then the cluster service
 * that binds it to the caches, the admin API, /metrics and events.
 */
#include "cluster/purge.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "cluster/admin_cache.h"
#include "cluster/service.h"
#include "cluster/swim.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"

#define VERSION     1u
#define RETRY_MS    200
#define RETRY_FOR   60000 /* an unacknowledged member is retried this long */
#define STATE_MAX   (4u << 20)
#define ORIGINS_MAX 4096u

enum { T_PURGE = 'P', T_ACK = 'A', T_STATE = 'S' };

/* ------------------------------------------------------------ codec -- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} wbuf;

static void w_need(wbuf *b, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = sh_realloc(b->p, b->cap);
    }
}
static void w_u8(wbuf *b, unsigned v)
{
    w_need(b, 1);
    b->p[b->len++] = (uint8_t)v;
}
static void w_u16(wbuf *b, unsigned v)
{
    w_u8(b, v >> 8 & 0xff);
    w_u8(b, v & 0xff);
}
static void w_u64(wbuf *b, uint64_t v)
{
    w_need(b, 8);
    for (int i = 7; i >= 0; i--)
        b->p[b->len++] = (uint8_t)(v >> (i * 8));
}
static void w_bytes(wbuf *b, const void *d, size_t n)
{
    w_need(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void w_name(wbuf *b, const char *s)
{
    size_t n = strlen(s);
    w_u8(b, (unsigned)n);
    w_bytes(b, s, n);
}

typedef struct {
    const uint8_t *p;
    size_t len, off;
    int bad;
} rbuf;

static unsigned r_u8(rbuf *r)
{
    if (r->off + 1 > r->len) {
        r->bad = 1;
        return 0;
    }
    return r->p[r->off++];
}
static unsigned r_u16(rbuf *r)
{
    unsigned a = r_u8(r);
    return a << 8 | r_u8(r);
}
static uint64_t r_u64(rbuf *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | r_u8(r);
    return v;
}
static void r_name(rbuf *r, char *out, size_t cap)
{
    unsigned n = r_u8(r);
    if (n >= cap || r->off + n > r->len) {
        r->bad = 1;
        out[0] = 0;
        return;
    }
    memcpy(out, r->p + r->off, n);
    out[n] = 0;
    r->off += n;
    if (memchr(out, 0, n) != NULL)
        r->bad = 1;
}

static void enc_rec(wbuf *b, const sh_purge_rec_t *x)
{
    w_u8(b, T_PURGE);
    w_u8(b, VERSION);
    w_u8(b, (unsigned)x->kind);
    w_u8(b, (unsigned)x->soft);
    w_u64(b, x->seq);
    w_u64(b, x->prev);
    w_u64(b, (uint64_t)x->time_ms);
    w_name(b, x->origin);
    w_name(b, x->zone);
    w_u16(b, (unsigned)x->len);
    w_bytes(b, x->str, x->len);
}

/* Decode a T_PURGE body (type byte included); x->str malloc'd. */
static int dec_rec(rbuf *r, sh_purge_rec_t *x)
{
    memset(x, 0, sizeof(*x));
    if (r_u8(r) != T_PURGE || r_u8(r) != VERSION)
        return -1;
    x->kind = (int)r_u8(r);
    x->soft = (int)r_u8(r);
    x->seq = r_u64(r);
    x->prev = r_u64(r);
    x->time_ms = (int64_t)r_u64(r);
    r_name(r, x->origin, sizeof(x->origin));
    r_name(r, x->zone, sizeof(x->zone));
    size_t n = r_u16(r);
    if (r->bad || x->kind < SH_CACHE_PURGE_KEY || x->kind > SH_CACHE_PURGE_TAG || x->soft > 1 ||
        x->seq == 0 || x->origin[0] == 0 || n > SH_PURGE_STR_MAX || r->off + n > r->len)
        return -1;
    if (memchr(r->p + r->off, 0, n) != NULL)
        return -1;
    x->str = sh_malloc(n + 1);
    memcpy(x->str, r->p + r->off, n);
    x->str[n] = 0;
    x->len = n;
    r->off += n;
    return 0;
}

/* ----------------------------------------------------------- engine -- */

typedef struct {
    char name[SH_PURGE_NAME_MAX + 1];
    uint64_t last;    /* highest contiguous sequence applied */
    uint64_t head;    /* highest sequence seen */
    uint64_t applied; /* purges applied from it */
} origin_t;

typedef struct {
    char name[SH_PURGE_NAME_MAX + 1];
    int acked;
    int64_t ack_ms;
} target_t;

typedef struct {
    uint64_t seq;
    int64_t issued, last_send, deadline;
    void *waiter;
    target_t *t;
    size_t nt;
    uint8_t *msg;
    size_t msglen;
} pending_t;

struct sh_pe_s {
    char self[SH_PURGE_NAME_MAX + 1];
    sh_pe_io_t io;
    size_t log_max;
    uint64_t log_ms;
    uint64_t next_seq;
    origin_t *o;
    size_t no;
    sh_purge_rec_t *log; /* ring */
    size_t lhead, llen, lcap;
    pending_t *p;
    size_t np;
    char **live;
    size_t nlive;
    int dirty;
    sh_pe_stats_t st;
};

sh_pe_t *sh_pe_create(const char *self, const sh_pe_io_t *io, size_t log_max, uint64_t log_ms)
{
    sh_pe_t *e = sh_new(sh_pe_t);
    snprintf(e->self, sizeof(e->self), "%s", self);
    e->io = *io;
    e->log_max = log_max ? log_max : 10000;
    e->log_ms = log_ms ? log_ms : 3600000;
    e->lcap = e->log_max;
    e->log = sh_calloc(e->lcap, sizeof(*e->log));
    return e;
}

static void pend_free(pending_t *p)
{
    sh_free(p->t);
    sh_free(p->msg);
}

void sh_pe_destroy(sh_pe_t *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->llen; i++)
        sh_free(e->log[(e->lhead + i) % e->lcap].str);
    for (size_t i = 0; i < e->np; i++)
        pend_free(&e->p[i]);
    for (size_t i = 0; i < e->nlive; i++)
        sh_free(e->live[i]);
    sh_free(e->live);
    sh_free(e->p);
    sh_free(e->log);
    sh_free(e->o);
    sh_free(e);
}

static origin_t *origin_get(sh_pe_t *e, const char *name, int create)
{
    for (size_t i = 0; i < e->no; i++)
        if (strcmp(e->o[i].name, name) == 0)
            return &e->o[i];
    if (!create || e->no >= ORIGINS_MAX)
        return NULL;
    e->o = sh_realloc(e->o, (e->no + 1) * sizeof(*e->o));
    origin_t *o = &e->o[e->no++];
    memset(o, 0, sizeof(*o));
    snprintf(o->name, sizeof(o->name), "%s", name);
    return o;
}

static sh_purge_rec_t *log_at(sh_pe_t *e, size_t i)
{
    return &e->log[(e->lhead + i) % e->lcap];
}

static int in_log(sh_pe_t *e, const char *origin, uint64_t seq)
{
    for (size_t i = e->llen; i-- > 0;) {
        sh_purge_rec_t *r = log_at(e, i);
        if (r->seq == seq && strcmp(r->origin, origin) == 0)
            return 1;
    }
    return 0;
}

int sh_pe_has(const sh_pe_t *e, const char *origin, uint64_t seq)
{
    for (size_t i = 0; i < e->no; i++)
        if (strcmp(e->o[i].name, origin) == 0 && seq <= e->o[i].last)
            return 1;
    return in_log((sh_pe_t *)e, origin, seq);
}

static void log_trim(sh_pe_t *e, int64_t now)
{
    while (e->llen > 0) {
        sh_purge_rec_t *r = log_at(e, 0);
        if (e->llen < e->log_max && (now - r->time_ms) < (int64_t)e->log_ms)
            break;
        sh_free(r->str);
        r->str = NULL;
        e->lhead = (e->lhead + 1) % e->lcap;
        e->llen--;
    }
}

static void log_add(sh_pe_t *e, const sh_purge_rec_t *x, int64_t now)
{
    if (e->llen == e->log_max) {
        sh_free(log_at(e, 0)->str);
        e->lhead = (e->lhead + 1) % e->lcap;
        e->llen--;
    }
    sh_purge_rec_t *r = log_at(e, e->llen++);
    *r = *x;
    r->str = sh_malloc(x->len + 1);
    memcpy(r->str, x->str, x->len);
    r->str[x->len] = 0;
    log_trim(e, now);
}

/* Move o->last along the chain of logged records. */
static void advance(sh_pe_t *e, origin_t *o)
{
    for (int moved = 1; moved;) {
        moved = 0;
        for (size_t i = 0; i < e->llen; i++) {
            sh_purge_rec_t *r = log_at(e, i);
            if (r->seq > o->last && (r->prev == 0 || r->prev <= o->last) &&
                strcmp(r->origin, o->name) == 0) {
                o->last = r->seq;
                moved = 1;
                e->dirty = 1;
            }
        }
    }
}

static void send_ack(sh_pe_t *e, const sh_purge_rec_t *x)
{
    if (strcmp(x->origin, e->self) == 0)
        return;
    wbuf b = {0};
    w_u8(&b, T_ACK);
    w_u8(&b, VERSION);
    w_u64(&b, x->seq);
    w_name(&b, x->origin);
    e->io.send(e->io.ud, x->origin, b.p, b.len);
    sh_free(b.p);
}

/* Apply x unless known; returns 1 when new (applied), 0 known, -1 failed. */
static int take(sh_pe_t *e, const sh_purge_rec_t *x, int64_t now)
{
    origin_t *o = origin_get(e, x->origin, 1);
    if (o == NULL)
        return -1;
    if (x->seq <= o->last || in_log(e, x->origin, x->seq)) {
        e->st.duplicates++;
        return 0;
    }
    uint64_t count = 0;
    if (e->io.apply(e->io.ud, x, &count) != 0) {
        e->st.apply_failed++;
        return -1;
    }
    e->st.applied++;
    o->applied++;
    int64_t lag = now - x->time_ms;
    if (lag < 0)
        lag = 0;
    e->st.lag_ms_sum += (uint64_t)lag;
    e->st.lag_count++;
    if ((uint64_t)lag > e->st.lag_ms_max)
        e->st.lag_ms_max = (uint64_t)lag;
    if (x->seq > o->head)
        o->head = x->seq;
    log_add(e, x, now);
    advance(e, o);
    if (strcmp(x->origin, e->self) == 0 && x->seq >= e->next_seq)
        e->next_seq = x->seq + 1;
    return 1;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void sh_pe_set_live(sh_pe_t *e, const char *const *names, size_t n)
{
    for (size_t i = 0; i < e->nlive; i++)
        sh_free(e->live[i]);
    e->live = sh_realloc(e->live, (n ? n : 1) * sizeof(char *));
    e->nlive = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], e->self) != 0)
            e->live[e->nlive++] = sh_strdup(names[i]);
    qsort(e->live, e->nlive, sizeof(char *), cmp_name); /* is_live: a binary search */
}

static int is_live(sh_pe_t *e, const char *name)
{
    return e->nlive > 0 && bsearch(&name, e->live, e->nlive, sizeof(char *), cmp_name) != NULL;
}

uint64_t sh_pe_issue(sh_pe_t *e, int kind, int soft, const char *zone, const char *str, size_t len,
                     int64_t now_ms, void *waiter, int64_t deadline_ms)
{
    if (len > SH_PURGE_STR_MAX)
        return 0;
    origin_t *o = origin_get(e, e->self, 1);
    uint64_t seq = (uint64_t)now_ms * 1000;
    if (seq < e->next_seq)
        seq = e->next_seq;
    if (o != NULL && seq <= o->head)
        seq = o->head + 1;
    e->next_seq = seq + 1;
    sh_purge_rec_t x = {.seq = seq,
                        .prev = o ? o->head : 0,
                        .time_ms = now_ms,
                        .kind = kind,
                        .soft = soft,
                        .str = (char *)str,
                        .len = len};
    snprintf(x.origin, sizeof(x.origin), "%s", e->self);
    snprintf(x.zone, sizeof(x.zone), "%s", zone ? zone : "");
    e->st.issued++;
    wbuf b = {0};
    enc_rec(&b, &x);
    e->p = sh_realloc(e->p, (e->np + 1) * sizeof(*e->p));
    pending_t *p = &e->p[e->np++];
    memset(p, 0, sizeof(*p));
    p->seq = seq;
    p->issued = p->last_send = now_ms;
    p->deadline = deadline_ms;
    p->waiter = waiter;
    p->msg = b.p;
    p->msglen = b.len;
    p->nt = e->nlive;
    p->t = sh_calloc(e->nlive ? e->nlive : 1, sizeof(*p->t));
    for (size_t i = 0; i < e->nlive; i++) {
        snprintf(p->t[i].name, sizeof(p->t[i].name), "%s", e->live[i]);
        e->io.send(e->io.ud, e->live[i], b.p, b.len);
    }
    char key[96];
    snprintf(key, sizeof(key), "purge:%.63s:%llu", e->self, (unsigned long long)seq);
    if (e->io.broadcast)
        e->io.broadcast(e->io.ud, key, b.p, b.len);
    take(e, &x, now_ms); /* here, while the datagrams fly */
    sh_pe_tick(e, now_ms);
    return seq;
}

static void pend_remove(sh_pe_t *e, size_t i)
{
    pend_free(&e->p[i]);
    e->p[i] = e->p[--e->np];
}

/* Done or timed out: tell the waiter (once). The record stays while some
 * live member has not acknowledged (retries), at most RETRY_FOR. */
static void pend_check(sh_pe_t *e, size_t i, int64_t now)
{
    pending_t *p = &e->p[i];
    int open = 0;
    for (size_t k = 0; k < p->nt; k++)
        if (!p->t[k].acked && is_live(e, p->t[k].name))
            open = 1;
    if (p->waiter != NULL && (!open || (p->deadline && now >= p->deadline))) {
        void *w = p->waiter;
        p->waiter = NULL;
        e->io.done(e->io.ud, w, p->seq, open);
        p = &e->p[i];
    }
    if ((!open || now - p->issued >= RETRY_FOR) && p->waiter == NULL)
        pend_remove(e, i);
}

void sh_pe_tick(sh_pe_t *e, int64_t now)
{
    for (size_t i = e->np; i-- > 0;) {
        pending_t *p = &e->p[i];
        if (now - p->last_send >= RETRY_MS) {
            p->last_send = now;
            for (size_t k = 0; k < p->nt; k++)
                if (!p->t[k].acked && is_live(e, p->t[k].name)) {
                    e->st.retries++;
                    e->io.send(e->io.ud, p->t[k].name, p->msg, p->msglen);
                }
        }
        pend_check(e, i, now);
    }
    log_trim(e, now);
}

int sh_pe_recv(sh_pe_t *e, const char *from, const uint8_t *data, size_t len, int64_t now)
{
    rbuf r = {data, len, 0, 0};
    if (len < 2) {
        e->st.malformed++;
        return -1;
    }
    if (data[0] == T_ACK) {
        r_u8(&r);
        if (r_u8(&r) != VERSION)
            return 0;
        uint64_t seq = r_u64(&r);
        char origin[SH_PURGE_NAME_MAX + 1];
        r_name(&r, origin, sizeof(origin));
        if (r.bad) {
            e->st.malformed++;
            return -1;
        }
        e->st.acks++;
        for (size_t i = 0; i < e->np; i++) {
            if (e->p[i].seq != seq)
                continue;
            for (size_t k = 0; k < e->p[i].nt; k++)
                if (!e->p[i].t[k].acked && strcmp(e->p[i].t[k].name, from) == 0) {
                    e->p[i].t[k].acked = 1;
                    e->p[i].t[k].ack_ms = now;
                }
            pend_check(e, i, now);
            break;
        }
        return 0;
    }
    if (data[0] != T_PURGE)
        return 0; /* a newer type */
    if (data[1] != VERSION)
        return 0;
    sh_purge_rec_t x;
    if (dec_rec(&r, &x) != 0) {
        sh_free(x.str);
        e->st.malformed++;
        return -1;
    }
    int rc = take(e, &x, now);
    if (rc == 1)
        e->st.received++;
    if (rc >= 0)
        send_ack(e, &x); /* again for a duplicate: the first ack may be lost */
    sh_free(x.str);
    return rc == 1;
}

int sh_pe_state(sh_pe_t *e, uint8_t **out, size_t *len)
{
    wbuf b = {0};
    w_u8(&b, T_STATE);
    w_u8(&b, VERSION);
    w_u16(&b, (unsigned)e->no);
    for (size_t i = 0; i < e->no; i++) {
        w_name(&b, e->o[i].name);
        w_u64(&b, e->o[i].last); /* contiguous: what this log can vouch for */
    }
    /* the newest records that fit */
    size_t first = e->llen, total = 0;
    while (first > 0) {
        const sh_purge_rec_t *r = log_at(e, first - 1);
        size_t n = 2 + 30 + strlen(r->origin) + strlen(r->zone) + r->len + 2;
        if (total + n > STATE_MAX)
            break;
        total += n;
        first--;
    }
    w_need(&b, 4);
    size_t nrec = e->llen - first;
    w_u64(&b, nrec);
    for (size_t i = first; i < e->llen; i++) {
        wbuf one = {0};
        enc_rec(&one, log_at(e, i));
        w_u16(&b, (unsigned)one.len);
        w_bytes(&b, one.p, one.len);
        sh_free(one.p);
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

int sh_pe_merge(sh_pe_t *e, const uint8_t *data, size_t len, int64_t now)
{
    rbuf r = {data, len, 0, 0};
    if (r_u8(&r) != T_STATE || r_u8(&r) != VERSION) {
        e->st.malformed++;
        return -1;
    }
    unsigned no = r_u16(&r);
    typedef struct {
        char name[SH_PURGE_NAME_MAX + 1];
        uint64_t head;
    } head_t;
    head_t *h = sh_calloc(no ? no : 1, sizeof(*h));
    for (unsigned i = 0; i < no && !r.bad; i++) {
        r_name(&r, h[i].name, sizeof(h[i].name));
        h[i].head = r_u64(&r);
    }
    uint64_t nrec = r_u64(&r);
    for (uint64_t i = 0; i < nrec && !r.bad; i++) {
        size_t n = r_u16(&r);
        if (r.bad || r.off + n > r.len) {
            r.bad = 1;
            break;
        }
        rbuf one = {r.p + r.off, n, 0, 0};
        sh_purge_rec_t x;
        if (dec_rec(&one, &x) != 0) {
            sh_free(x.str);
            r.bad = 1;
            break;
        }
        if (take(e, &x, now) == 1) {
            e->st.caught_up++;
            send_ack(e, &x);
        }
        sh_free(x.str);
        r.off += n;
    }
    if (r.bad) {
        sh_free(h);
        e->st.malformed++;
        return -1;
    }
    /* the peer's chain of an origin goes further than ours even with its
     * log merged: what would fill the gap was trimmed */
    int hole = 0;
    for (unsigned i = 0; i < no; i++) {
        origin_t *o = origin_get(e, h[i].name, 1);
        if (o == NULL)
            continue;
        if (strcmp(o->name, e->self) == 0) {
            if (h[i].head >= e->next_seq)
                e->next_seq = h[i].head + 1;
            if (h[i].head > o->head)
                o->head = h[i].head;
            if (o->last < o->head) {
                o->last = o->head; /* our own: applied when issued */
                e->dirty = 1;
            }
            continue;
        }
        if (h[i].head > o->last) {
            hole = 1;
            o->last = h[i].head;
            if (o->head < h[i].head)
                o->head = h[i].head;
            advance(e, o);
            e->dirty = 1;
        }
    }
    sh_free(h);
    if (hole) {
        e->st.flushes++;
        if (e->io.flush)
            e->io.flush(e->io.ud);
    }
    return 0;
}

char *sh_pe_save(const sh_pe_t *e)
{
    wbuf b = {0};
    for (size_t i = 0; i < e->no; i++) {
        char line[128];
        int n = snprintf(line, sizeof(line), "%s %llu\n", e->o[i].name,
                         (unsigned long long)e->o[i].last);
        w_bytes(&b, line, (size_t)n);
    }
    w_u8(&b, 0);
    ((sh_pe_t *)e)->dirty = 0;
    return (char *)b.p;
}

void sh_pe_load(sh_pe_t *e, const char *text)
{
    const char *p = text;
    while (p && *p) {
        char name[SH_PURGE_NAME_MAX + 1];
        unsigned long long seq;
        if (sscanf(p, "%63s %llu", name, &seq) == 2) {
            origin_t *o = origin_get(e, name, 1);
            if (o != NULL && (o->last == 0 || seq < o->last)) {
                o->last = o->head = seq;
            }
            if (strcmp(name, e->self) == 0 && seq >= e->next_seq)
                e->next_seq = seq + 1;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
}

int sh_pe_dirty(const sh_pe_t *e)
{
    return e->dirty;
}

int sh_pe_targets(sh_pe_t *e, uint64_t seq,
                  void (*cb)(void *arg, const char *name, int acked, int64_t ack_ms), void *arg)
{
    for (size_t i = 0; i < e->np; i++)
        if (e->p[i].seq == seq) {
            for (size_t k = 0; k < e->p[i].nt; k++)
                cb(arg, e->p[i].t[k].name, e->p[i].t[k].acked, e->p[i].t[k].ack_ms);
            return 0;
        }
    return -1;
}

void sh_pe_forget_waiter(sh_pe_t *e, void *waiter)
{
    for (size_t i = 0; i < e->np; i++)
        if (e->p[i].waiter == waiter)
            e->p[i].waiter = NULL;
}

const sh_pe_stats_t *sh_pe_stats(const sh_pe_t *e)
{
    return &e->st;
}

size_t sh_pe_log_len(const sh_pe_t *e)
{
    return e->llen;
}

void sh_pe_origins(const sh_pe_t *e,
                   void (*cb)(void *arg, const char *name, uint64_t last, uint64_t head,
                              uint64_t applied),
                   void *arg)
{
    for (size_t i = 0; i < e->no; i++)
        cb(arg, e->o[i].name, e->o[i].last, e->o[i].head, e->o[i].applied);
}

/* ----------------------------------------------------------- service -- */

#define HOLD_MS     5000
#define STATE_FILE  "shoal-purge.state"
#define WAIT_MS_DEF 5000
#define WAIT_MS_MAX 60000
#define ZONES_MAX   64

static struct {
    sh_service_t *svc;
    sh_pe_t *e;
    size_t log_max;
    uint64_t log_ms;
    int64_t hold_until;
    int merged;
    int persisted; /* a state file was found at start */
    json_t *zones; /* the last local apply's per-zone counts (origin side) */
    uint64_t local_count;
    int local_failed;
    char self[SH_PURGE_NAME_MAX + 1];
} P;

static atomic_int holding;
static _Atomic int64_t hold_limit; /* a bound even if the service never starts */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sh_purge_holding(void)
{
    if (!atomic_load_explicit(&holding, memory_order_relaxed))
        return 0;
    if (wall_ms() < atomic_load_explicit(&hold_limit, memory_order_relaxed))
        return 1;
    atomic_store(&holding, 0);
    return 0;
}

int sh_purge_log_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    (void)conf;
    size_t count = 0;
    uint64_t ms = 0;
    for (unsigned i = 1; i < cf->node->nargs; i++) {
        const char *a = cf->node->args[i];
        size_t n = strspn(a, "0123456789");
        int v;
        if (a[n] == 0 && sh_conf_parse_int(a, &v) == 0 && v > 0 && count == 0)
            count = (size_t)v;
        else if (a[n] != 0 && sh_conf_parse_msec(a, &ms) == 0 && ms > 0)
            ;
        else
            return sh_conf_error(cf,
                                 "invalid value \"%s\" in \"cache_purge_log\": a record "
                                 "count (e.g. 10000) and/or a time (e.g. 1h)",
                                 a);
    }
    if (count > 10000000)
        return sh_conf_error(cf, "\"cache_purge_log\" keeps at most 10000000 records");
    P.log_max = count;
    P.log_ms = ms;
    return 0;
}

/* --- the caches */

typedef struct {
    sh_cache_t *list[ZONES_MAX];
    char names[ZONES_MAX][64];
    size_t n;
} caches_t;

/* sh_cache_each holds the store's registry lock: names only there */
static void grab(sh_cache_t *c, void *arg)
{
    caches_t *x = arg;
    if (x->n < ZONES_MAX)
        snprintf(x->names[x->n++], sizeof(x->names[0]), "%s", sh_cache_zone(c));
}

static void caches_get(caches_t *x)
{
    x->n = 0;
    sh_cache_each(grab, x);
    size_t k = 0;
    for (size_t i = 0; i < x->n; i++) {
        sh_cache_t *c = sh_cache_find(x->names[i]);
        if (c != NULL)
            x->list[k++] = c;
    }
    x->n = k;
}

static void caches_put(caches_t *x)
{
    for (size_t i = 0; i < x->n; i++)
        sh_cache_release(x->list[i]);
    x->n = 0;
}

static const char *kind_name(int kind)
{
    return kind == SH_CACHE_PURGE_KEY ? "key" : kind == SH_CACHE_PURGE_PREFIX ? "prefix" : "tag";
}

static void event(const char *type, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s != NULL && P.svc != NULL)
        sh_service_event(P.svc, type, s);
    free(s);
}

static int io_apply(void *ud, const sh_purge_rec_t *r, uint64_t *count)
{
    (void)ud;
    caches_t cs;
    caches_get(&cs);
    int mine = strcmp(r->origin, P.self) == 0, rc = 0;
    json_t *zones = json_array();
    uint64_t total = 0;
    for (size_t i = 0; i < cs.n; i++) {
        if (r->zone[0] && strcmp(r->zone, sh_cache_zone(cs.list[i])) != 0)
            continue;
        uint64_t n = 0;
        int prc = sh_cache_purge(cs.list[i], (enum sh_cache_purge_kind)r->kind, r->str, r->len,
                                 r->soft, &n);
        if (prc != 0) {
            sh_log_err("cache: purge %llu from %s in zone \"%s\" failed: %s",
                       (unsigned long long)r->seq, r->origin, sh_cache_zone(cs.list[i]),
                       sh_strerror(prc));
            rc = -1;
            continue;
        }
        total += n;
        json_array_append_new(zones, json_pack("{s:s,s:I}", "zone", sh_cache_zone(cs.list[i]),
                                               "purged", (json_int_t)n));
    }
    caches_put(&cs);
    *count = total;
    if (mine) {
        json_decref(P.zones);
        P.zones = json_incref(zones);
        P.local_count = total;
        P.local_failed = rc != 0;
    }
    if (rc == 0)
        event("purge",
              json_pack("{s:s,s:I,s:s,s:s%,s:b,s:s,s:I,s:I}", "origin", r->origin, "seq",
                        (json_int_t)r->seq, "kind", kind_name(r->kind), "value", r->str, r->len,
                        "soft", r->soft, "zone", r->zone, "purged", (json_int_t)total, "lag_ms",
                        (json_int_t)(wall_ms() - r->time_ms)));
    json_decref(zones);
    return rc;
}

static void io_flush(void *ud)
{
    (void)ud;
    caches_t cs;
    caches_get(&cs);
    uint64_t total = 0;
    for (size_t i = 0; i < cs.n; i++) {
        uint64_t n = 0;
        if (sh_cache_purge(cs.list[i], SH_CACHE_PURGE_PREFIX, "", 0, 0, &n) == 0)
            total += n;
    }
    caches_put(&cs);
    if (total > 0)
        sh_log_warn("cache: this node missed purges no member's log still holds (away longer "
                    "than cache_purge_log keeps); dropped all %llu cached entries",
                    (unsigned long long)total);
    event("purge",
          json_pack("{s:s,s:b,s:I}", "kind", "flush", "catch_up", 1, "purged", (json_int_t)total));
}

static int io_send(void *ud, const char *to, const uint8_t *d, size_t n)
{
    (void)ud;
    return sh_service_send(P.svc, to, d, n);
}

static int io_broadcast(void *ud, const char *key, const uint8_t *d, size_t n)
{
    (void)ud;
    return sh_service_broadcast(P.svc, key, d, n);
}

/* --- the admin side: a waiting request */

typedef struct {
    json_t *applied, *not_applied, *gone;
} tally_t;

static int live_name(const char *name);

static void tally_cb(void *arg, const char *name, int acked, int64_t ack_ms)
{
    (void)ack_ms;
    tally_t *t = arg;
    json_array_append_new(acked             ? t->applied
                          : live_name(name) ? t->not_applied
                                            : t->gone,
                          json_string(name));
}

typedef struct {
    sh_admin_wait_t *w;
    int64_t started;
    int soft;
} waiter_t;

static json_t *answer(uint64_t seq, int64_t started, int soft, int *complete)
{
    tally_t t = {json_array(), json_array(), json_array()};
    json_array_append_new(t.applied, json_string(P.self));
    sh_pe_targets(P.e, seq, tally_cb, &t);
    *complete = json_array_size(t.not_applied) == 0;
    return json_pack("{s:I,s:b,s:O,s:s,s:I,s:o,s:o,s:o,s:b,s:I}", "purged",
                     (json_int_t)P.local_count, "soft", soft, "zones",
                     P.zones ? P.zones : json_array(), "origin", P.self, "seq", (json_int_t)seq,
                     "applied", t.applied, "not_applied", t.not_applied, "gone", t.gone, "complete",
                     *complete, "elapsed_ms", (json_int_t)(wall_ms() - started));
}

static void io_done(void *ud, void *waiter, uint64_t seq, int timed_out)
{
    (void)ud;
    waiter_t *w = waiter;
    int complete;
    json_t *o = answer(seq, w->started, w->soft, &complete);
    if (!timed_out)
        event("purge",
              json_pack("{s:s,s:I,s:b,s:O,s:I}", "origin", P.self, "seq", (json_int_t)seq,
                        "complete", 1, "applied", json_object_get(o, "applied"), "elapsed_ms",
                        json_integer_value(json_object_get(o, "elapsed_ms"))));
    sh_admin_wait_reply(w->w, timed_out ? 504 : 200, o, NULL);
    sh_free(w);
}

int sh_purge_cluster(int kind, const char *str, size_t len, int soft, const char *zone, int async,
                     uint64_t timeout_ms, sh_admin_wait_t *aw, json_t **out, const char **err)
{
    if (P.svc == NULL || P.e == NULL || !sh_service_attached(P.svc))
        return -1;
    if (len > SH_PURGE_STR_MAX) {
        *err = "the key, prefix or tag is too long (4096 bytes at most)";
        return 400;
    }
    if (zone != NULL && strlen(zone) > SH_PURGE_NAME_MAX) {
        *err = "no such cache zone";
        return 404;
    }
    int64_t now = wall_ms();
    if (timeout_ms == 0)
        timeout_ms = WAIT_MS_DEF;
    if (timeout_ms > WAIT_MS_MAX)
        timeout_ms = WAIT_MS_MAX;
    waiter_t *w = NULL;
    if (!async) {
        w = sh_new(waiter_t);
        w->w = aw;
        w->started = now;
        w->soft = soft;
    }
    P.local_failed = 0;
    uint64_t seq = sh_pe_issue(P.e, kind, soft, zone, str, len, now, w, now + (int64_t)timeout_ms);
    if (seq == 0) {
        sh_free(w);
        *err = "the purge could not be issued";
        return 500;
    }
    sh_service_wake(P.svc);
    sh_log_notice("cache: cluster purge %llu by %s \"%.*s\"%s: %llu entries here",
                  (unsigned long long)seq, kind_name(kind), (int)(len > 200 ? 200 : len), str,
                  soft ? " (soft)" : "", (unsigned long long)P.local_count);
    if (w != NULL)
        return 0; /* io_done answers (maybe already did, inside sh_pe_issue) */
    int complete;
    json_t *o = answer(seq, now, soft, &complete);
    json_object_set_new(o, "async", json_true());
    *out = o;
    return 200;
}

/* --- the service */

typedef struct {
    const char **names;
    size_t n, cap;
} names_t;

static void live_cb(void *arg, const sh_service_member_t *m)
{
    names_t *l = arg;
    if (m->self || (m->status != SH_SWIM_ALIVE && m->status != SH_SWIM_SUSPECT))
        return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->names = sh_realloc(l->names, l->cap * sizeof(*l->names));
    }
    l->names[l->n++] = sh_strdup(m->name);
}

static void refresh_live(sh_service_t *svc)
{
    names_t l = {0};
    sh_service_members(svc, live_cb, &l);
    sh_pe_set_live(P.e, l.names, l.n);
    for (size_t i = 0; i < l.n; i++)
        sh_free((void *)l.names[i]);
    sh_free(l.names);
}

typedef struct {
    const char *name;
    int live;
} find_t;

static void find_cb(void *arg, const sh_service_member_t *m)
{
    find_t *f = arg;
    if (strcmp(m->name, f->name) == 0)
        f->live = m->status == SH_SWIM_ALIVE || m->status == SH_SWIM_SUSPECT;
}

static int live_name(const char *name)
{
    find_t f = {name, 0};
    sh_service_members(P.svc, find_cb, &f);
    return f.live;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *buf = sh_malloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void save_state(void)
{
    char *text = sh_pe_save(P.e);
    caches_t cs;
    caches_get(&cs);
    for (size_t i = 0; i < cs.n; i++) {
        char path[4200], tmp[4220];
        snprintf(path, sizeof(path), "%s/%s", sh_cache_path(cs.list[i]), STATE_FILE);
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        if (f == NULL)
            continue;
        int ok = fputs(text, f) >= 0;
        ok &= fclose(f) == 0;
        if (!ok || rename(tmp, path) != 0) {
            remove(tmp);
            sh_log_warn("cache: cannot write %s", path);
        }
    }
    caches_put(&cs);
    sh_free(text);
}

static void load_state(void)
{
    caches_t cs;
    caches_get(&cs);
    char *texts[ZONES_MAX] = {0};
    size_t have = 0;
    for (size_t i = 0; i < cs.n; i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", sh_cache_path(cs.list[i]), STATE_FILE);
        texts[i] = read_file(path);
        have += texts[i] != NULL;
    }
    /* a cache without the file knows nothing: load nothing (a peer's
     * sequences then show a hole, and the caches are dropped) */
    if (have > 0 && have == cs.n)
        for (size_t i = 0; i < cs.n; i++)
            sh_pe_load(P.e, texts[i]);
    P.persisted = have > 0;
    for (size_t i = 0; i < cs.n; i++)
        sh_free(texts[i]);
    caches_put(&cs);
}

static void hold_end(const char *why)
{
    if (atomic_exchange(&holding, 0))
        sh_log_notice("cache: lookups resume (%s)", why);
}

static void s_start(void *ud, sh_service_t *svc, uint64_t now)
{
    (void)ud;
    (void)now;
    P.svc = svc;
    snprintf(P.self, sizeof(P.self), "%s", sh_service_self(svc));
    if (P.e == NULL) {
        sh_pe_io_t io = {NULL, io_send, io_broadcast, io_apply, io_flush, io_done};
        P.e = sh_pe_create(P.self, &io, P.log_max, P.log_ms);
        load_state();
    }
    refresh_live(svc);
    P.hold_until = wall_ms() + HOLD_MS;
    int has_join = !sh_service_joined(svc);
    if (!has_join && !P.persisted)
        hold_end("no join list and no purge state: nothing to catch up");
    else if (sh_purge_holding())
        sh_log_notice("cache: lookups go upstream until this node has caught up with the "
                      "cluster's purges (at most %d ms)",
                      HOLD_MS);
}

static void s_tick(void *ud, sh_service_t *svc, uint64_t now)
{
    (void)ud;
    (void)svc;
    (void)now;
    int64_t w = wall_ms();
    sh_pe_tick(P.e, w);
    if (sh_purge_holding() && w >= P.hold_until)
        hold_end("no push-pull within the hold time");
    if (sh_pe_dirty(P.e))
        save_state();
}

static int s_recv(void *ud, sh_service_t *svc, const char *from, const uint8_t *data, size_t len,
                  int direct, uint64_t now)
{
    (void)ud;
    (void)svc;
    (void)direct;
    (void)now;
    int rc = sh_pe_recv(P.e, from, data, len, wall_ms());
    if (rc < 0)
        sh_log_warn("cache: a malformed purge message from %s dropped", from);
    if (rc == 1 && sh_pe_dirty(P.e))
        save_state(); /* before a restart could forget it */
    return rc == 1;
}

static int s_local_state(void *ud, int join, uint8_t **out, size_t *len)
{
    (void)ud;
    (void)join;
    if (P.e == NULL)
        return -1;
    return sh_pe_state(P.e, out, len);
}

static void s_merge_state(void *ud, const uint8_t *data, size_t len, int join)
{
    (void)ud;
    (void)join;
    if (P.e == NULL)
        return;
    if (sh_pe_merge(P.e, data, len, wall_ms()) != 0) {
        sh_log_warn("cache: a malformed purge state in a push-pull dropped");
        return;
    }
    if (sh_pe_dirty(P.e))
        save_state();
    P.merged = 1;
    hold_end("caught up through a push-pull");
}

static void s_member(void *ud, sh_service_t *svc, const sh_service_member_t *m, int old)
{
    (void)ud;
    (void)m;
    (void)old;
    refresh_live(svc);
}

static void origin_json(void *arg, const char *name, uint64_t last, uint64_t head, uint64_t applied)
{
    json_array_append_new(arg, json_pack("{s:s,s:I,s:I,s:I}", "origin", name, "last_seq",
                                         (json_int_t)last, "head_seq", (json_int_t)head, "applied",
                                         (json_int_t)applied));
}

static char *s_admin(void *ud, sh_service_t *svc, const char *query)
{
    (void)ud;
    (void)query;
    const sh_pe_stats_t *s = sh_pe_stats(P.e);
    const sh_service_stats_t *c = sh_service_stats(svc);
    json_t *origins = json_array();
    sh_pe_origins(P.e, origin_json, origins);
    json_t *o = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:I,s:I,s:I,s:b,s:o,s:{s:I,s:I,s:I,s:I}}",
        "issued", (json_int_t)s->issued, "received", (json_int_t)s->received, "applied",
        (json_int_t)s->applied, "duplicates", (json_int_t)s->duplicates, "acks",
        (json_int_t)s->acks, "retries", (json_int_t)s->retries, "caught_up",
        (json_int_t)s->caught_up, "flushes", (json_int_t)s->flushes, "apply_failed",
        (json_int_t)s->apply_failed, "malformed", (json_int_t)s->malformed, "lag_ms_avg",
        s->lag_count ? (double)s->lag_ms_sum / (double)s->lag_count : 0.0, "lag_ms_max",
        (json_int_t)s->lag_ms_max, "log_entries", (json_int_t)sh_pe_log_len(P.e), "log_max",
        (json_int_t)(P.log_max ? P.log_max : 10000), "holding", sh_purge_holding(), "origins",
        origins, "channel", "messages_sent", (json_int_t)c->sent_msgs, "bytes_sent",
        (json_int_t)c->sent_bytes, "messages_received", (json_int_t)c->recv_msgs, "send_failed",
        (json_int_t)c->send_failed);
    char *txt = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return txt;
}

static void origin_metric(void *arg, const char *name, uint64_t last, uint64_t head,
                          uint64_t applied)
{
    (void)last;
    (void)head;
    fprintf(arg, "shoal_cache_purges_applied_by_origin_total{origin=\"%s\"} %llu\n", name,
            (unsigned long long)applied);
}

static void s_metrics(void *ud, sh_service_t *svc, FILE *f)
{
    (void)ud;
    (void)svc;
    const sh_pe_stats_t *s = sh_pe_stats(P.e);
    static const struct {
        const char *name, *help;
        size_t off;
    } m[] = {
        {"shoal_cache_purges_issued_total", "Cluster purges taken by this node's admin API.",
         offsetof(sh_pe_stats_t, issued)},
        {"shoal_cache_purges_received_total", "New purges received from other members.",
         offsetof(sh_pe_stats_t, received)},
        {"shoal_cache_purges_applied_total", "Purges applied to this node's caches.",
         offsetof(sh_pe_stats_t, applied)},
        {"shoal_cache_purges_duplicates_total", "Purges received again (already applied).",
         offsetof(sh_pe_stats_t, duplicates)},
        {"shoal_cache_purges_caught_up_total", "Purges applied from a push-pull's log.",
         offsetof(sh_pe_stats_t, caught_up)},
        {"shoal_cache_purges_retries_total", "Purges sent again to a member without an ack.",
         offsetof(sh_pe_stats_t, retries)},
        {"shoal_cache_purges_flushes_total",
         "Caches dropped whole: purges missed that no log still holds.",
         offsetof(sh_pe_stats_t, flushes)},
        {"shoal_cache_purges_failed_total", "Purges the store failed to apply.",
         offsetof(sh_pe_stats_t, apply_failed)},
    };
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++)
        fprintf(f, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", m[k].name, m[k].help, m[k].name,
                m[k].name, (unsigned long long)*(const uint64_t *)((const char *)s + m[k].off));
    fputs("# HELP shoal_cache_purges_applied_by_origin_total Purges applied here, by origin.\n"
          "# TYPE shoal_cache_purges_applied_by_origin_total counter\n",
          f);
    sh_pe_origins(P.e, origin_metric, f);
    fprintf(f,
            "# HELP shoal_cache_purges_lag_seconds From a purge's issue at its origin to "
            "applied here.\n# TYPE shoal_cache_purges_lag_seconds summary\n"
            "shoal_cache_purges_lag_seconds_sum %.3f\nshoal_cache_purges_lag_seconds_count %llu\n"
            "# HELP shoal_cache_purges_lag_max_seconds The largest lag seen.\n"
            "# TYPE shoal_cache_purges_lag_max_seconds gauge\n"
            "shoal_cache_purges_lag_max_seconds %.3f\n"
            "# HELP shoal_cache_purges_log_entries Records in the purge log.\n"
            "# TYPE shoal_cache_purges_log_entries gauge\nshoal_cache_purges_log_entries %zu\n"
            "# HELP shoal_cache_purges_holding 1 while cache lookups wait for the first sync.\n"
            "# TYPE shoal_cache_purges_holding gauge\nshoal_cache_purges_holding %d\n",
            (double)s->lag_ms_sum / 1000.0, (unsigned long long)s->lag_count,
            (double)s->lag_ms_max / 1000.0, sh_pe_log_len(P.e), sh_purge_holding());
}

static const sh_service_ops_t ops = {
    .name = "purge",
    .channel = SH_PURGE_CHANNEL,
    .tick_ms = 50,
    .admin = "/v1/cache/purges",
    .start = s_start,
    .tick = s_tick,
    .recv = s_recv,
    .local_state = s_local_state,
    .merge_state = s_merge_state,
    .member = s_member,
    .admin_json = s_admin,
    .metrics = s_metrics,
};

typedef struct {
    int any;
} any_t;

static void any_cb(sh_cache_t *c, void *arg)
{
    (void)c;
    ((any_t *)arg)->any = 1;
}

int sh_purge_register(void)
{
    any_t a = {0};
    sh_cache_each(any_cb, &a);
    if (a.any && P.e == NULL) {
        atomic_store(&hold_limit, wall_ms() + 2 * HOLD_MS);
        atomic_store(&holding, 1); /* until the service says otherwise */
    }
    sh_service_t *svc = sh_service_register(&ops, NULL);
    if (svc == NULL) {
        atomic_store(&holding, 0);
        return -1;
    }
    P.svc = svc;
    return 0;
}
