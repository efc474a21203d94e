/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Global rate limits (see limit_global.h): the wire codec, the engine
 * (shard owners, reports, replies, degraded share) and the cluster
 * service that runs it. Everything but sh_limit_global_register runs on
 * the cluster thread (or a simulator's thread).
 */
#include "node/modules/limit_global.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/service.h"
#include "cluster/strmap.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/modules/limit_req.h"

#define VERSION    1u
#define HOT_KEYS   8u
#define RATE_EVERY 1000u /* ms between hot-key windows and rate reports */
#define RATE_PER   16u   /* members a node sends its rates to each second */

/* ------------------------------------------------------------ codec -- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

size_t sh_lg_encode(const sh_lg_msg_t *m, uint8_t *out, size_t cap)
{
    if (cap < SH_LG_HDR || m->n > SH_LG_MAX_ITEMS)
        return 0;
    out[0] = (uint8_t)m->type;
    out[1] = VERSION;
    put_u64(out + 2, m->zone);
    out[10] = (uint8_t)(m->seq >> 24);
    out[11] = (uint8_t)(m->seq >> 16);
    out[12] = (uint8_t)(m->seq >> 8);
    out[13] = (uint8_t)m->seq;
    out[14] = (uint8_t)(m->n >> 8);
    out[15] = (uint8_t)m->n;
    size_t len = SH_LG_HDR;
    for (size_t i = 0; i < m->n; i++) {
        if (cap - len < SH_LG_MAX_ITEM_SIZE)
            return 0;
        put_u64(out + len, m->items[i].id);
        len += 8;
        len += put_varint(out + len, m->items[i].v);
    }
    return len;
}

int sh_lg_decode(const uint8_t *in, size_t len, sh_lg_msg_t *m, const char **reason)
{
    const char *why = NULL;
    if (len < SH_LG_HDR) {
        why = "short";
    } else if (in[1] != VERSION) {
        *reason = "unknown version";
        return SH_EVERSION;
    } else if (in[0] < SH_LG_REPORT || in[0] > SH_LG_RATE) {
        why = "unknown type";
    }
    if (why == NULL) {
        m->type = in[0];
        m->zone = get_u64(in + 2);
        m->seq = (uint32_t)in[10] << 24 | (uint32_t)in[11] << 16 | (uint32_t)in[12] << 8 | in[13];
        m->n = (size_t)in[14] << 8 | in[15];
        if (m->n > SH_LG_MAX_ITEMS)
            why = "too many items";
    }
    size_t off = SH_LG_HDR;
    for (size_t i = 0; why == NULL && i < m->n; i++) {
        if (len - off < 9) {
            why = "truncated item";
            break;
        }
        m->items[i].id = get_u64(in + off);
        off += 8;
        uint64_t v = 0;
        unsigned shift = 0;
        for (;;) {
            if (off >= len || shift > 63) {
                why = off >= len ? "truncated varint" : "varint too long";
                break;
            }
            uint8_t b = in[off++];
            v |= (uint64_t)(b & 0x7f) << shift;
            shift += 7;
            if (!(b & 0x80))
                break;
        }
        m->items[i].v = v;
    }
    if (why == NULL && off != len)
        why = "trailing bytes";
    if (why != NULL) {
        *reason = why;
        return SH_EPARSE;
    }
    return 0;
}

/* ------------------------------------------------------------ engine -- */

typedef struct {
    char *name;
    uint64_t nh; /* hash of the name (rendezvous, rate reports) */
    int status;
    int self;
    int excluded;        /* passed over as an owner until it answers a probe */
    uint64_t probe_at;   /* when to probe it next (excluded) */
    uint64_t wait_since; /* a report to it is unanswered since (0: none) */
    uint64_t changed;    /* when its status last changed (engine clock) */
} member_t;

typedef struct {
    uint64_t id, n;
} hot_t;

typedef struct {
    uint64_t rate, at, seq;
} rrate_t;

typedef struct {
    sh_limit_zone_t *z;
    uint64_t gid;
    uint32_t owner[SH_LG_SHARDS]; /* member index, UINT32_MAX: none */
    uint32_t share;               /* millionths */
    int degraded;
    unsigned heard, known;
    /* rates: local (admitted per second), and the members' reports */
    uint64_t counted_prev, local_rate;
    rrate_t *rr; /* by member index */
    size_t nrr;
    hot_t hot[HOT_KEYS], hot_shown[HOT_KEYS];
} zone_t;

/* what one tick sends: (owner, id, n) */
typedef struct {
    uint32_t owner;
    uint64_t id, n;
} out_t;

struct sh_lg_s {
    char *self;
    sh_lg_io_t io;
    member_t *m;
    size_t nm, capm;
    sh_strmap_t by_name; /* name -> index + 1 */
    zone_t *zones;
    size_t nz;
    int owners_stale, alone;
    uint32_t seq, rate_seq;
    uint64_t next_window, rate_period;
    size_t rate_next; /* the member the next rate report goes to, round robin */
    out_t *out;
    size_t nout, capout;
    uint64_t now;           /* of the last tick or message */
    sh_lg_msg_t msg, reply; /* scratch (large) */
    uint8_t *buf;
    sh_lg_stats_t st;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint32_t shard_of(uint64_t id)
{
    return (uint32_t)(id >> 58); /* SH_LG_SHARDS == 64 */
}

_Static_assert(SH_LG_SHARDS == 64, "shard_of takes 6 bits");

sh_lg_t *sh_lg_create(const char *self, const sh_lg_io_t *io)
{
    sh_lg_t *g = sh_new(sh_lg_t);
    g->self = sh_strdup(self);
    g->io = *io;
    sh_strmap_init(&g->by_name);
    g->buf = sh_malloc(io->max_payload + 64);
    sh_lg_member(g, self, 0, 0);
    g->m[0].self = 1;
    return g;
}

void sh_lg_destroy(sh_lg_t *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->nm; i++)
        sh_free(g->m[i].name);
    sh_free(g->m);
    for (size_t i = 0; i < g->nz; i++)
        sh_free(g->zones[i].rr);
    sh_free(g->zones);
    sh_strmap_dispose(&g->by_name);
    sh_free(g->out);
    sh_free(g->buf);
    sh_free(g->self);
    sh_free(g);
}

static zone_t *zone_by_gid(sh_lg_t *g, uint64_t gid)
{
    for (size_t i = 0; i < g->nz; i++)
        if (g->zones[i].gid == gid)
            return &g->zones[i];
    return NULL;
}

void sh_lg_zone_add(sh_lg_t *g, sh_limit_zone_t *z)
{
    if (sh_lg_has_zone(g, z))
        return;
    g->zones = sh_realloc(g->zones, (g->nz + 1) * sizeof(zone_t));
    zone_t *x = &g->zones[g->nz++];
    memset(x, 0, sizeof(*x));
    x->z = z;
    x->gid = sh_limit_zone_global_id(z);
    x->share = 1000000u;
    x->counted_prev =
        sh_limit_zone_counter(z, SH_LIMIT_PASSED) + sh_limit_zone_counter(z, SH_LIMIT_DELAYED);
    g->owners_stale = 1;
}

void sh_lg_zone_remove(sh_lg_t *g, sh_limit_zone_t *z)
{
    for (size_t i = 0; i < g->nz; i++)
        if (g->zones[i].z == z) {
            sh_free(g->zones[i].rr);
            g->zones[i] = g->zones[--g->nz];
            return;
        }
}

int sh_lg_has_zone(const sh_lg_t *g, const sh_limit_zone_t *z)
{
    for (size_t i = 0; i < g->nz; i++)
        if (g->zones[i].z == z)
            return 1;
    return 0;
}

static member_t *member_get(sh_lg_t *g, const char *name)
{
    uintptr_t v = (uintptr_t)sh_strmap_get(&g->by_name, name);
    return v ? &g->m[v - 1] : NULL;
}

void sh_lg_member(sh_lg_t *g, const char *name, int status, uint64_t now)
{
    member_t *m = member_get(g, name);
    if (m == NULL) {
        if (g->nm == g->capm) {
            g->capm = g->capm ? g->capm * 2 : 16;
            g->m = sh_realloc(g->m, g->capm * sizeof(member_t));
        }
        m = &g->m[g->nm++];
        memset(m, 0, sizeof(*m));
        m->name = sh_strdup(name);
        m->nh = mix64(sh_strmap_hash(name));
        m->status = -1;
        sh_strmap_put(&g->by_name, m->name, (void *)(uintptr_t)g->nm);
    }
    if (m->self)
        status = 0; /* we are alive to ourselves, whatever a peer said */
    if (m->status != status) {
        m->status = status;
        m->changed = now;
        m->wait_since = 0;
        g->owners_stale = 1;
    }
}

void sh_lg_set_alone(sh_lg_t *g, int alone)
{
    g->alone = alone;
}

static int eligible(const member_t *m, uint64_t now)
{
    (void)now;
    return m->status == 0 && !m->excluded;
}

static void owners_compute(sh_lg_t *g, uint64_t now)
{
    for (size_t zi = 0; zi < g->nz; zi++) {
        zone_t *x = &g->zones[zi];
        for (uint32_t sh = 0; sh < SH_LG_SHARDS; sh++) {
            uint64_t best = 0, k = mix64(x->gid ^ (0x9e3779b97f4a7c15ull * (sh + 1)));
            uint32_t who = UINT32_MAX;
            for (size_t i = 0; i < g->nm; i++) {
                if (!eligible(&g->m[i], now))
                    continue;
                uint64_t score = mix64(k ^ g->m[i].nh);
                if (who == UINT32_MAX || score > best) {
                    best = score;
                    who = (uint32_t)i;
                }
            }
            x->owner[sh] = who;
        }
    }
    g->owners_stale = 0;
}

const char *sh_lg_owner(sh_lg_t *g, const sh_limit_zone_t *z, uint64_t h0)
{
    for (size_t i = 0; i < g->nz; i++)
        if (g->zones[i].z == z) {
            uint32_t o = g->zones[i].owner[shard_of(h0)];
            return o == UINT32_MAX ? "" : g->m[o].name;
        }
    return "";
}

static void hot_add(zone_t *x, uint64_t id, uint64_t n)
{
    unsigned lo = 0;
    for (unsigned i = 0; i < HOT_KEYS; i++) {
        if (x->hot[i].n != 0 && x->hot[i].id == id) {
            x->hot[i].n += n;
            return;
        }
        if (x->hot[i].n < x->hot[lo].n)
            lo = i;
    }
    if (x->hot[lo].n < n) {
        x->hot[lo].id = id;
        x->hot[lo].n = n;
    }
}

typedef struct {
    sh_lg_t *g;
    zone_t *x;
    uint32_t self;
} drain_ctx;

static void drain_cb(void *ud, uint64_t id, uint32_t n)
{
    drain_ctx *d = ud;
    hot_add(d->x, id, n);
    uint32_t o = d->x->owner[shard_of(id)];
    if (o == UINT32_MAX || o == d->self)
        return; /* our own bucket is the shard's */
    sh_lg_t *g = d->g;
    if (g->nout == g->capout) {
        g->capout = g->capout ? g->capout * 2 : 256;
        g->out = sh_realloc(g->out, g->capout * sizeof(out_t));
    }
    g->out[g->nout++] = (out_t){o, id, n};
}

static int out_cmp(const void *a, const void *b)
{
    const out_t *x = a, *y = b;
    return x->owner < y->owner ? -1 : x->owner > y->owner;
}

static int send_msg(sh_lg_t *g, const char *to, const sh_lg_msg_t *m)
{
    size_t len = sh_lg_encode(m, g->buf, g->io.max_payload);
    if (len == 0) {
        g->st.send_failed++;
        return SH_ELIMIT;
    }
    int rc = g->io.send(g->io.ud, to, g->buf, len);
    if (rc != 0) {
        g->st.send_failed++;
        return rc;
    }
    g->st.msgs_sent++;
    g->st.bytes_sent += len;
    g->st.items_sent += m->n;
    return 0;
}

/* Keys per message that surely fit the payload. */
static size_t per_msg(const sh_lg_t *g)
{
    size_t k =
        g->io.max_payload > SH_LG_HDR ? (g->io.max_payload - SH_LG_HDR) / SH_LG_MAX_ITEM_SIZE : 0;
    return k > SH_LG_MAX_ITEMS ? SH_LG_MAX_ITEMS : k;
}

static void send_reports(sh_lg_t *g, zone_t *x, uint64_t now)
{
    if (g->nout == 0)
        return;
    qsort(g->out, g->nout, sizeof(out_t), out_cmp);
    size_t k = per_msg(g);
    for (size_t i = 0; i < g->nout;) {
        uint32_t o = g->out[i].owner;
        sh_lg_msg_t *m = &g->msg;
        m->type = SH_LG_REPORT;
        m->zone = x->gid;
        m->seq = ++g->seq;
        m->n = 0;
        while (i < g->nout && g->out[i].owner == o && m->n < k) {
            m->items[m->n].id = g->out[i].id;
            m->items[m->n].v = g->out[i].n;
            m->n++;
            i++;
        }
        if (send_msg(g, g->m[o].name, m) == 0) {
            g->st.reports_sent++;
            if (g->m[o].wait_since == 0)
                g->m[o].wait_since = now;
        }
    }
    g->nout = 0;
}

/* The share of the rate this node may admit, from what it hears. */
static void share_compute(sh_lg_t *g, uint64_t now)
{
    unsigned heard = 0, known = 0;
    for (size_t i = 0; i < g->nm; i++) {
        const member_t *m = &g->m[i];
        if (m->status == 3 || m->status < 0)
            continue; /* left: not ours to share with */
        if (m->status == 2 && (m->changed == 0 || now - m->changed >= SH_LG_DEAD_HOLD_MS))
            continue; /* failed long ago: the cluster is what is left */
        known++;
        heard += m->status == 0 && (m->self || !m->excluded);
    }
    uint32_t share = 2 * heard >= known ? 1000000u : (uint32_t)(1000000ull * heard / known);
    for (size_t zi = 0; zi < g->nz; zi++) {
        zone_t *x = &g->zones[zi];
        int degraded = share < 1000000u || g->alone;
        if (degraded != x->degraded || (degraded && share != x->share))
            sh_log(degraded ? SH_LOG_WARN : SH_LOG_NOTICE,
                   degraded ? "limit_req zone \"%s\" (global): this node hears %u of %u "
                              "members%s: admitting %.1f%% of the rate"
                            : "limit_req zone \"%s\" (global): hears %u of %u members%s: the "
                              "whole rate again (%.1f%%)",
                   sh_limit_zone_name(x->z), heard, known,
                   g->alone ? " and has not joined its cluster" : "", share / 10000.0);
        x->degraded = degraded;
        x->share = share;
        x->heard = heard;
        x->known = known;
        sh_limit_zone_set_share(x->z, share);
    }
}

static void window(sh_lg_t *g, uint64_t now)
{
    sh_lg_msg_t *m = &g->msg;
    m->type = SH_LG_RATE;
    m->zone = 0;
    m->seq = ++g->rate_seq;
    m->n = 0;
    for (size_t zi = 0; zi < g->nz; zi++) {
        zone_t *x = &g->zones[zi];
        uint64_t c = sh_limit_zone_counter(x->z, SH_LIMIT_PASSED) +
                     sh_limit_zone_counter(x->z, SH_LIMIT_DELAYED);
        x->local_rate = c - x->counted_prev;
        x->counted_prev = c;
        memcpy(x->hot_shown, x->hot, sizeof(x->hot));
        memset(x->hot, 0, sizeof(x->hot));
        if (m->n < per_msg(g)) {
            m->items[m->n].id = x->gid;
            m->items[m->n].v = x->local_rate;
            m->n++;
        }
    }
    /* our rates, sent directly to the next RATE_PER live members in turn:
     * each member hears from each other every N/RATE_PER seconds, and the
     * cost per node stays flat; gossip would crowd membership updates */
    unsigned live = 0;
    for (size_t i = 0; i < g->nm; i++)
        live += g->m[i].status == 0 || g->m[i].status == 1;
    g->rate_period = RATE_EVERY * (live > RATE_PER ? (live + RATE_PER - 1) / RATE_PER : 1);
    if (m->n == 0 || g->nm < 2)
        return;
    for (unsigned sent = 0, tries = 0; sent < RATE_PER && tries < g->nm; tries++) {
        g->rate_next = (g->rate_next + 1) % g->nm;
        member_t *to = &g->m[g->rate_next];
        if (to->self || (to->status != 0 && to->status != 1))
            continue;
        (void)send_msg(g, to->name, m);
        sent++;
    }
    (void)now;
}

void sh_lg_tick(sh_lg_t *g, uint64_t now)
{
    g->now = now;
    /* owners that stop answering are passed over until they answer a
     * probe (an empty report, every SH_LG_EXCLUDE_MS while SWIM still
     * lists them as alive or suspect) */
    for (size_t i = 0; i < g->nm; i++) {
        member_t *m = &g->m[i];
        if (!m->excluded && m->wait_since != 0 && now - m->wait_since >= SH_LG_NOREPLY_MS) {
            m->excluded = 1;
            m->probe_at = now + SH_LG_EXCLUDE_MS;
            m->wait_since = 0;
            g->st.exclusions++;
            g->owners_stale = 1;
            sh_log_warn("limits: member %s did not answer a report in %u ms: its shards move "
                        "until it answers again",
                        m->name, SH_LG_NOREPLY_MS);
        } else if (m->excluded && now >= m->probe_at && g->nz > 0 &&
                   (m->status == 0 || m->status == 1)) {
            m->probe_at = now + SH_LG_EXCLUDE_MS;
            sh_lg_msg_t *p = &g->msg;
            p->type = SH_LG_REPORT;
            p->zone = g->zones[0].gid;
            p->seq = ++g->seq;
            p->n = 0;
            (void)send_msg(g, m->name, p);
        }
    }
    if (g->owners_stale)
        owners_compute(g, now);
    share_compute(g, now);
    for (size_t zi = 0; zi < g->nz; zi++) {
        zone_t *x = &g->zones[zi];
        drain_ctx d = {g, x, 0};
        unsigned ns = sh_limit_zone_nstripes(x->z);
        for (unsigned i = 0; i < ns; i++) {
            sh_limit_stripe_t *s = sh_limit_zone_stripe(x->z, i);
            sh_limit_zone_drain(s, drain_cb, &d);
            sh_limit_zone_unlock(s);
        }
        send_reports(g, x, now);
    }
    if (now >= g->next_window) {
        g->next_window = now + RATE_EVERY;
        window(g, now);
    }
}

/* excess drained by ms at rate, not below 0 */
static int64_t drained(int64_t excess, int64_t last, int64_t now, uint64_t rate)
{
    if (last == SH_LIMIT_REQ_NEVER)
        return 0;
    int64_t ms = now - last;
    if (ms <= 0)
        return excess < 0 ? 0 : excess;
    if ((uint64_t)ms > (uint64_t)INT64_MAX / 2 / rate)
        return 0;
    int64_t e = excess - (int64_t)(rate * (uint64_t)ms / 1000);
    return e < 0 ? 0 : e;
}

/* The entry of id in z, made if absent (evicting the oldest unpinned one
 * when the stripe is full), or NULL; s is locked on return either way. */
static sh_limit_zone_entry_t *entry_of(sh_lg_t *g, sh_limit_zone_t *z, const sh_limit_id_t *id,
                                       sh_limit_stripe_t **sp)
{
    sh_limit_stripe_t *s = sh_limit_zone_lock(z, id);
    *sp = s;
    sh_limit_zone_entry_t *e = sh_limit_zone_find(s, id, 1);
    if (e != NULL)
        return e;
    e = sh_limit_zone_insert(s, id);
    if (e == NULL) {
        sh_limit_zone_entry_t *old = sh_limit_zone_oldest(s);
        if (old != NULL && old->pin == 0) {
            sh_limit_zone_remove(s, old, 1);
            g->st.evicted_for_merge++;
            e = sh_limit_zone_insert(s, id);
        }
    }
    if (e != NULL) {
        e->v0 = 0;
        e->v1 = SH_LIMIT_REQ_NEVER;
    }
    return e;
}

static void on_report(sh_lg_t *g, const char *from, zone_t *x, const sh_lg_msg_t *m, uint64_t now)
{
    g->st.reports_recv++;
    uint64_t rate = sh_limit_zone_rate_now(x->z);
    sh_lg_msg_t *r = &g->reply;
    r->type = SH_LG_REPLY;
    r->zone = x->gid;
    r->seq = m->seq;
    r->n = 0;
    for (size_t i = 0; i < m->n; i++) {
        sh_limit_id_t id;
        sh_limit_zone_id_of(x->z, m->items[i].id, &id);
        sh_limit_stripe_t *s;
        sh_limit_zone_entry_t *e = entry_of(g, x->z, &id, &s);
        int64_t ex = 0;
        if (e != NULL) {
            uint64_t add =
                m->items[i].v > (uint64_t)INT32_MAX ? (uint64_t)INT32_MAX : m->items[i].v;
            sh_limit_req_state_t st = {e->v0, e->v1};
            sh_limit_req_merge(&st, (int64_t)now, (int64_t)add * 1000, rate);
            e->v0 = st.excess;
            e->v1 = st.last;
            ex = st.excess < 0 ? 0 : st.excess;
        }
        sh_limit_zone_unlock(s);
        r->items[r->n].id = m->items[i].id;
        r->items[r->n].v = (uint64_t)ex;
        r->n++;
    }
    if (send_msg(g, from, r) == 0)
        g->st.replies_sent++;
}

static void on_reply(sh_lg_t *g, const char *from, zone_t *x, const sh_lg_msg_t *m, uint64_t now)
{
    g->st.replies_recv++;
    member_t *mb = member_get(g, from);
    if (mb != NULL) {
        mb->wait_since = 0;
        if (mb->excluded) {
            mb->excluded = 0;
            g->owners_stale = 1;
            sh_log_notice("limits: member %s answers again: its shards come back", mb->name);
        }
    }
    uint64_t rate = sh_limit_zone_rate_now(x->z);
    for (size_t i = 0; i < m->n; i++) {
        sh_limit_id_t id;
        sh_limit_zone_id_of(x->z, m->items[i].id, &id);
        sh_limit_stripe_t *s;
        sh_limit_zone_entry_t *e = entry_of(g, x->z, &id, &s);
        if (e != NULL) {
            /* the owner's bucket plus what we admitted since we reported,
             * or ours if it is fuller (an owner that just took the shard) */
            int64_t mine = drained(e->v0, e->v1, (int64_t)now, rate);
            uint64_t v =
                m->items[i].v > (uint64_t)INT64_MAX / 4 ? (uint64_t)INT64_MAX / 4 : m->items[i].v;
            int64_t theirs = (int64_t)v + (int64_t)sh_limit_zone_pending(s, e) * 1000;
            e->v0 = theirs > mine ? theirs : mine;
            e->v1 = (int64_t)now;
        }
        sh_limit_zone_unlock(s);
    }
}

static void on_rate(sh_lg_t *g, const char *from, const sh_lg_msg_t *m, uint64_t now)
{
    member_t *mb = member_get(g, from);
    if (mb == NULL || mb->self)
        return;
    size_t i = (size_t)(mb - g->m);
    for (size_t k = 0; k < m->n; k++) {
        zone_t *x = zone_by_gid(g, m->items[k].id);
        if (x == NULL)
            continue;
        if (x->nrr < g->nm) {
            x->rr = sh_realloc(x->rr, g->nm * sizeof(rrate_t));
            memset(x->rr + x->nrr, 0, (g->nm - x->nrr) * sizeof(rrate_t));
            x->nrr = g->nm;
        }
        x->rr[i].seq = m->seq;
        x->rr[i].rate = m->items[k].v;
        x->rr[i].at = now;
    }
}

/* 1 when a gossiped message was new (to be passed on). */
static int lg_recv(sh_lg_t *g, const char *from, const uint8_t *data, size_t len, uint64_t now)
{
    g->now = now;
    g->st.msgs_recv++;
    g->st.bytes_recv += len;
    const char *why = NULL;
    sh_lg_msg_t *m = &g->msg;
    if (sh_lg_decode(data, len, m, &why) != 0) {
        g->st.malformed++;
        return 0;
    }
    if (m->type == SH_LG_RATE) {
        on_rate(g, from, m, now);
        return 0;
    }
    zone_t *x = zone_by_gid(g, m->zone);
    if (x == NULL) {
        g->st.unknown_zone++; /* a zone we do not have (configurations differ) */
        return 0;             /* a report is not answered: the reporter passes us over */
    }
    g->st.items_recv += m->n;
    switch (m->type) {
    case SH_LG_REPORT:
        on_report(g, from, x, m, now);
        return 0;
    case SH_LG_REPLY:
        on_reply(g, from, x, m, now);
        return 0;
    default:
        return 0;
    }
}

void sh_lg_recv(sh_lg_t *g, const char *from, const uint8_t *data, size_t len, uint64_t now)
{
    (void)lg_recv(g, from, data, len, now);
}

const sh_lg_stats_t *sh_lg_stats(const sh_lg_t *g)
{
    return &g->st;
}

static uint64_t cluster_rate(const sh_lg_t *g, const zone_t *x, uint64_t now)
{
    uint64_t sum = x->local_rate;
    for (size_t i = 0; i < x->nrr && i < g->nm; i++)
        if (!g->m[i].self && (g->m[i].status == 0 || g->m[i].status == 1) && x->rr[i].at != 0 &&
            now - x->rr[i].at <= g->rate_period * 7 / 2)
            sum += x->rr[i].rate;
    return sum;
}

char *sh_lg_json(sh_lg_t *g, uint64_t now)
{
    json_t *zones = json_array();
    for (size_t zi = 0; zi < g->nz; zi++) {
        zone_t *x = &g->zones[zi];
        double rate = sh_limit_zone_rate(x->z) / 1000.0;
        uint64_t est = cluster_rate(g, x, now);
        unsigned owned = 0;
        for (unsigned s = 0; s < SH_LG_SHARDS; s++)
            owned += x->owner[s] == 0;
        json_t *hot = json_array();
        hot_t h[HOT_KEYS];
        memcpy(h, x->hot_shown, sizeof(h));
        for (unsigned i = 0; i < HOT_KEYS; i++) { /* by count, the largest first */
            unsigned best = i;
            for (unsigned j = i + 1; j < HOT_KEYS; j++)
                if (h[j].n > h[best].n)
                    best = j;
            hot_t t = h[i];
            h[i] = h[best];
            h[best] = t;
            if (h[i].n == 0)
                break;
            char id[20], text[SH_LIMIT_SAMPLE_TEXT];
            snprintf(id, sizeof(id), "%016llx", (unsigned long long)h[i].id);
            if (!sh_limit_zone_key_text(x->z, h[i].id, text, sizeof(text)))
                text[0] = '\0';
            uint32_t o = x->owner[shard_of(h[i].id)];
            json_array_append_new(hot, json_pack("{s:s,s:s,s:I,s:s}", "id", id, "key", text,
                                                 "admitted_per_s", (json_int_t)h[i].n, "owner",
                                                 o == UINT32_MAX ? "" : g->m[o].name));
        }
        const char *reason = g->alone              ? "not joined: alone"
                             : x->share < 1000000u ? "hears fewer than half of its members"
                                                   : "";
        json_t *o =
            json_pack("{s:s,s:b,s:f,s:f,s:f,s:b,s:s,s:i,s:i,s:I,s:I,s:f,s:I,s:i,s:o,s:I}", "zone",
                      sh_limit_zone_name(x->z), "global", 1, "rate", rate, "share", x->share / 1e6,
                      "rate_now", rate * x->share / 1e6, "degraded", x->degraded, "reason", reason,
                      "heard", (int)x->heard, "members", (int)x->known, "admitted_per_s",
                      (json_int_t)x->local_rate, "cluster_estimate_per_s", (json_int_t)est,
                      "node_share", est ? (double)x->local_rate / (double)est : 0.0, "keys",
                      (json_int_t)sh_limit_zone_used(x->z), "shards_owned", (int)owned, "hot_keys",
                      hot, "dirty_overflows", (json_int_t)sh_limit_zone_dirty_overflows(x->z));
        json_array_append_new(zones, o);
    }
    const sh_lg_stats_t *s = &g->st;
    json_t *ch = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "messages_sent", (json_int_t)s->msgs_sent,
        "bytes_sent", (json_int_t)s->bytes_sent, "messages_received", (json_int_t)s->msgs_recv,
        "bytes_received", (json_int_t)s->bytes_recv, "reports_sent", (json_int_t)s->reports_sent,
        "replies_sent", (json_int_t)s->replies_sent, "malformed", (json_int_t)s->malformed,
        "unknown_zone", (json_int_t)s->unknown_zone, "owner_timeouts", (json_int_t)s->exclusions);
    json_t *root = json_pack("{s:s,s:s,s:i,s:i,s:o,s:o}", "node", g->self, "design",
                             "shard owners (rendezvous)", "tick_ms", (int)SH_LG_TICK_MS, "shards",
                             (int)SH_LG_SHARDS, "channel", ch, "zones", zones);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

void sh_lg_metrics(sh_lg_t *g, FILE *f)
{
    const sh_lg_stats_t *s = &g->st;
    fprintf(f,
            "# HELP shoal_limit_channel_messages_total Global-limit channel messages, by "
            "direction.\n# TYPE shoal_limit_channel_messages_total counter\n"
            "shoal_limit_channel_messages_total{dir=\"sent\"} %llu\n"
            "shoal_limit_channel_messages_total{dir=\"received\"} %llu\n"
            "# HELP shoal_limit_channel_bytes_total Global-limit channel payload bytes, by "
            "direction.\n# TYPE shoal_limit_channel_bytes_total counter\n"
            "shoal_limit_channel_bytes_total{dir=\"sent\"} %llu\n"
            "shoal_limit_channel_bytes_total{dir=\"received\"} %llu\n"
            "# HELP shoal_limit_channel_malformed_total Global-limit messages refused.\n"
            "# TYPE shoal_limit_channel_malformed_total counter\n"
            "shoal_limit_channel_malformed_total %llu\n"
            "# HELP shoal_limit_channel_owner_timeouts_total Shard owners passed over for not "
            "answering.\n# TYPE shoal_limit_channel_owner_timeouts_total counter\n"
            "shoal_limit_channel_owner_timeouts_total %llu\n",
            (unsigned long long)s->msgs_sent, (unsigned long long)s->msgs_recv,
            (unsigned long long)s->bytes_sent, (unsigned long long)s->bytes_recv,
            (unsigned long long)s->malformed, (unsigned long long)s->exclusions);
    if (g->nz == 0)
        return;
    fprintf(f, "# HELP shoal_limit_global_degraded 1 while a global zone admits only this "
               "node's share.\n# TYPE shoal_limit_global_degraded gauge\n");
    for (size_t i = 0; i < g->nz; i++)
        fprintf(f, "shoal_limit_global_degraded{zone=\"%s\"} %d\n",
                sh_limit_zone_name(g->zones[i].z), g->zones[i].degraded);
    fprintf(f, "# HELP shoal_limit_global_share Fraction of a global zone's rate this node's "
               "side admits.\n# TYPE shoal_limit_global_share gauge\n");
    for (size_t i = 0; i < g->nz; i++)
        fprintf(f, "shoal_limit_global_share{zone=\"%s\"} %.4f\n",
                sh_limit_zone_name(g->zones[i].z), g->zones[i].share / 1e6);
    fprintf(f, "# HELP shoal_limit_global_dirty_overflows_total Admitted requests not reported "
               "(the dirty log was full).\n# TYPE shoal_limit_global_dirty_overflows_total "
               "counter\n");
    for (size_t i = 0; i < g->nz; i++)
        fprintf(f, "shoal_limit_global_dirty_overflows_total{zone=\"%s\"} %llu\n",
                sh_limit_zone_name(g->zones[i].z),
                (unsigned long long)sh_limit_zone_dirty_overflows(g->zones[i].z));
}

/* ----------------------------------------------------------- service -- */

/* The engine of this process (one cluster thread per process). Touched
 * only on the cluster thread once created. */
static sh_lg_t *engine;
static sh_service_t *service;

static int io_send(void *ud, const char *to, const uint8_t *data, size_t len)
{
    return sh_service_send(ud, to, data, len);
}

static void member_cb(void *arg, const sh_service_member_t *m)
{
    sh_lg_member(arg, m->name, m->status, 0);
}

static void svc_start(void *ud, sh_service_t *svc, uint64_t now)
{
    (void)ud;
    (void)now;
    if (engine != NULL)
        return;
    sh_lg_io_t io = {svc, io_send, NULL, sh_service_max_payload(svc)};
    engine = sh_lg_create(sh_service_self(svc), &io);
    sh_service_members(svc, member_cb, engine);
}

/* Follow the registry: global zones configured (a reload may add or drop
 * some); we hold a reference on each while we use it. */
static void zones_sync(void)
{
    sh_limit_zone_t *list[64];
    size_t n = sh_limit_zone_globals(list, 64);
    for (size_t i = 0; i < n; i++) {
        if (sh_lg_has_zone(engine, list[i])) {
            sh_limit_zone_release(list[i]);
        } else {
            sh_lg_zone_add(engine, list[i]); /* keeps this reference */
            sh_log_notice("limit_req zone \"%s\" is global: reports every %u ms to shard owners",
                          sh_limit_zone_name(list[i]), SH_LG_TICK_MS);
        }
    }
    for (size_t i = 0; i < engine->nz;) {
        sh_limit_zone_t *z = engine->zones[i].z;
        if (sh_limit_zone_refs(z) == 1) { /* only ours: no configuration uses it */
            sh_lg_zone_remove(engine, z);
            sh_limit_zone_release(z);
        } else {
            i++;
        }
    }
}

static void svc_tick(void *ud, sh_service_t *svc, uint64_t now)
{
    (void)ud;
    if (engine == NULL)
        return;
    zones_sync();
    sh_lg_set_alone(engine, !sh_service_joined(svc));
    sh_lg_tick(engine, now);
}

static int svc_recv(void *ud, sh_service_t *svc, const char *from, const uint8_t *data, size_t len,
                    int direct, uint64_t now)
{
    (void)ud;
    (void)svc;
    (void)direct;
    if (engine == NULL)
        return 0;
    return lg_recv(engine, from, data, len, now);
}

static void svc_member(void *ud, sh_service_t *svc, const sh_service_member_t *m, int old)
{
    (void)ud;
    (void)svc;
    (void)old;
    if (engine != NULL)
        sh_lg_member(engine, m->name, m->status, engine->now);
}

static char *svc_admin(void *ud, sh_service_t *svc, const char *query)
{
    (void)ud;
    (void)query;
    (void)svc;
    if (engine == NULL)
        return strdup("{\"zones\":[]}");
    return sh_lg_json(engine, engine->now);
}

static void svc_metrics(void *ud, sh_service_t *svc, FILE *f)
{
    (void)ud;
    (void)svc;
    if (engine != NULL)
        sh_lg_metrics(engine, f);
}

static const sh_service_ops_t ops = {
    .name = "limits",
    .channel = SH_LIMIT_CHANNEL,
    .tick_ms = SH_LG_TICK_MS,
    .admin = "/v1/limits",
    .start = svc_start,
    .tick = svc_tick,
    .recv = svc_recv,
    .member = svc_member,
    .admin_json = svc_admin,
    .metrics = svc_metrics,
};

void sh_limit_global_register(void)
{
    sh_service_t *s = sh_service_register(&ops, NULL);
    if (s != NULL)
        service = s;
}
