/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cluster services (see service.h): the process-wide registry, the
 * attachment of registered services to the running cluster thread (their
 * channel registered on its sh_swim_t, one timer for every tick, one async
 * for posts and late registrations), direct sealed datagrams, and the
 * admin/metrics glue. The registry mutex guards the list, each service's
 * post queue and the pointer to the running cluster (so a post never
 * wakes a cluster that is being torn down).
 */
#include "cluster/service.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_internal.h"
#include "cluster/swim.h"
#include "cluster/wire.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"

#define TAG_BCAST  'B'
#define TAG_DIRECT 'D'

typedef struct {
    uint16_t len;
    uint8_t data[SH_SERVICE_POST_SIZE];
} post_t;

struct sh_service_s {
    const sh_service_ops_t *ops;
    void *ud;
    sh_channel_ops_t chops; /* the trampoline registered on the swim */
    sh_cluster_t *c;        /* attached cluster, or NULL (cluster thread) */
    uint64_t next_tick;
    sh_service_stats_t st;
    /* the post queue, a ring under reg_mu */
    post_t *q;
    unsigned qhead, qlen;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static sh_service_t *reg[SH_SERVICE_MAX];
static unsigned nreg;
static sh_cluster_t *running; /* the cluster whose svc_async may be sent */

/* The registered services, copied under the lock (entries never move). */
static unsigned snapshot(sh_service_t **list)
{
    pthread_mutex_lock(&reg_mu);
    unsigned n = nreg;
    memcpy(list, reg, n * sizeof(list[0]));
    pthread_mutex_unlock(&reg_mu);
    return n;
}

/* ------------------------------------------------------ trampolines -- */

static int ch_merge(void *ud, const char *from, const uint8_t *data, size_t len)
{
    sh_service_t *s = ud;
    if (s->c == NULL || len < 1)
        return 0;
    s->st.recv_msgs++;
    s->st.recv_bytes += len;
    if (data[0] != TAG_BCAST && data[0] != TAG_DIRECT)
        return 0; /* a tag of a newer version */
    int direct = data[0] == TAG_DIRECT;
    int rc = s->ops->recv
                 ? s->ops->recv(s->ud, s, from, data + 1, len - 1, direct, uv_now(&s->c->loop))
                 : 0;
    return direct ? 0 : rc > 0;
}

static int ch_local_state(void *ud, int join, uint8_t **out, size_t *len)
{
    sh_service_t *s = ud;
    *out = NULL;
    *len = 0;
    return s->ops->local_state ? s->ops->local_state(s->ud, join, out, len) : 0;
}

static void ch_merge_state(void *ud, const uint8_t *data, size_t len, int join)
{
    sh_service_t *s = ud;
    if (s->ops->merge_state)
        s->ops->merge_state(s->ud, data, len, join);
}

/* ------------------------------------------------------ registry -- */

sh_service_t *sh_service_register(const sh_service_ops_t *ops, void *ud)
{
    sh_service_t *s = NULL;
    pthread_mutex_lock(&reg_mu);
    for (unsigned i = 0; i < nreg; i++) {
        if (reg[i]->ops == ops) {
            s = reg[i];
            goto out;
        }
        if (reg[i]->ops->channel == ops->channel) {
            sh_log_err("cluster: service \"%s\": channel %u is taken by \"%s\"", ops->name,
                       (unsigned)ops->channel, reg[i]->ops->name);
            goto out;
        }
    }
    if (nreg >= SH_SERVICE_MAX || ops->channel <= SH_CHANNEL_MEMBERSHIP + 1 ||
        ops->channel >= SH_CHANNEL_MAX) {
        sh_log_err("cluster: service \"%s\" refused (channel %u, %u services)", ops->name,
                   (unsigned)ops->channel, nreg);
        goto out;
    }
    s = sh_new(sh_service_t);
    s->ops = ops;
    s->ud = ud;
    s->chops.name = ops->name;
    s->chops.merge = ch_merge;
    s->chops.local_state = ch_local_state;
    s->chops.merge_state = ch_merge_state;
    s->q = sh_calloc(SH_SERVICE_POST_MAX, sizeof(post_t));
    reg[nreg++] = s;
    if (running != NULL)
        uv_async_send(&running->svc_async); /* attach it now */
out:
    pthread_mutex_unlock(&reg_mu);
    return s;
}

int sh_service_post(sh_service_t *s, const void *data, size_t len)
{
    int rc = 0;
    pthread_mutex_lock(&reg_mu);
    if (len > SH_SERVICE_POST_SIZE || s->qlen >= SH_SERVICE_POST_MAX) {
        s->st.posts_dropped++;
        rc = SH_ELIMIT;
    } else {
        post_t *p = &s->q[(s->qhead + s->qlen++) % SH_SERVICE_POST_MAX];
        p->len = (uint16_t)len;
        memcpy(p->data, data, len);
        s->st.posts++;
        if (running != NULL && s->qlen == 1)
            uv_async_send(&running->svc_async);
    }
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

/* ------------------------------------------------------ cluster side -- */

static void svc_timer_cb(uv_timer_t *t);

static void schedule(sh_cluster_t *c)
{
    uint64_t now = uv_now(&c->loop), due = UINT64_MAX;
    pthread_mutex_lock(&reg_mu);
    for (unsigned i = 0; i < nreg; i++)
        if (reg[i]->c == c && reg[i]->ops->tick && reg[i]->ops->tick_ms && reg[i]->next_tick < due)
            due = reg[i]->next_tick;
    pthread_mutex_unlock(&reg_mu);
    if (due == UINT64_MAX || c->stopping > 1)
        return;
    uv_timer_start(&c->svc_timer, svc_timer_cb, due > now ? due - now : 0, 0);
}

/* Attach what is registered but not attached; drain the post queues. */
static void attach_and_drain(sh_cluster_t *c)
{
    sh_service_t *list[SH_SERVICE_MAX];
    unsigned n = snapshot(list);
    uint64_t now = uv_now(&c->loop);
    for (unsigned i = 0; i < n; i++) {
        sh_service_t *s = list[i];
        if (s->c == NULL) {
            int rc = sh_swim_channel_register(c->swim, s->ops->channel, &s->chops, s);
            if (rc != 0) {
                sh_log_err("cluster: service \"%s\": channel %u: %s", s->ops->name,
                           (unsigned)s->ops->channel, sh_strerror(rc));
                continue;
            }
            s->c = c;
            s->next_tick = now + s->ops->tick_ms;
            if (s->ops->start)
                s->ops->start(s->ud, s, now);
        }
        /* posts, a few at a time out of the lock */
        for (;;) {
            post_t batch[16];
            unsigned k = 0;
            pthread_mutex_lock(&reg_mu);
            while (k < 16 && s->qlen > 0) {
                batch[k++] = s->q[s->qhead];
                s->qhead = (s->qhead + 1) % SH_SERVICE_POST_MAX;
                s->qlen--;
            }
            pthread_mutex_unlock(&reg_mu);
            for (unsigned j = 0; j < k; j++)
                if (s->ops->post)
                    s->ops->post(s->ud, s, batch[j].data, batch[j].len);
            if (k < 16)
                break;
        }
    }
    schedule(c);
}

static void svc_async_cb(uv_async_t *a)
{
    sh_cluster_t *c = container_of(a, sh_cluster_t, svc_async);
    if (c->stopping > 1)
        return;
    attach_and_drain(c);
}

static void svc_timer_cb(uv_timer_t *t)
{
    sh_cluster_t *c = container_of(t, sh_cluster_t, svc_timer);
    sh_service_t *list[SH_SERVICE_MAX];
    unsigned n = snapshot(list);
    uint64_t now = uv_now(&c->loop);
    for (unsigned i = 0; i < n; i++) {
        sh_service_t *s = list[i];
        if (s->c != c || s->ops->tick == NULL || s->ops->tick_ms == 0 || s->next_tick > now)
            continue;
        /* a late tick does not pile up: the next is a period from now */
        s->next_tick = now + s->ops->tick_ms;
        s->st.ticks++;
        s->ops->tick(s->ud, s, now);
    }
    sh_cluster__reschedule(c); /* broadcasts queued by the ticks */
    schedule(c);
}

void sh_cluster__services_start(sh_cluster_t *c)
{
    uv_timer_init(&c->loop, &c->svc_timer);
    uv_async_init(&c->loop, &c->svc_async, svc_async_cb);
    pthread_mutex_lock(&reg_mu);
    running = c;
    pthread_mutex_unlock(&reg_mu);
}

void sh_cluster__services_run(sh_cluster_t *c)
{
    attach_and_drain(c);
}

void sh_cluster__services_stop(sh_cluster_t *c)
{
    pthread_mutex_lock(&reg_mu);
    if (running == c)
        running = NULL;
    for (unsigned i = 0; i < nreg; i++)
        if (reg[i]->c == c)
            reg[i]->c = NULL;
    pthread_mutex_unlock(&reg_mu);
}

typedef struct {
    void (*cb)(void *arg, const sh_service_member_t *m);
    void *arg;
    const char *self;
    size_t n;
} foreach_ctx;

static void member_view(const sh_swim_member_t *m, const char *self,
                        void (*cb)(void *arg, const sh_service_member_t *m), void *arg)
{
    sh_service_member_t v = {m->name,      m->addr, "", "", m->status, strcmp(m->name, self) == 0,
                             m->changed_ms};
    Sh__Gossip__NodeMeta *meta =
        m->meta_len ? sh__gossip__node_meta__unpack(&sh_wire_allocator, m->meta_len, m->meta)
                    : NULL;
    if (meta != NULL) {
        v.region = meta->region ? meta->region : "";
        v.zone = meta->zone ? meta->zone : "";
    }
    cb(arg, &v);
    if (meta != NULL)
        sh__gossip__node_meta__free_unpacked(meta, &sh_wire_allocator);
}

static void foreach_cb(void *arg, const sh_swim_member_t *m)
{
    foreach_ctx *x = arg;
    x->n++;
    member_view(m, x->self, x->cb, x->arg);
}

typedef struct {
    sh_service_t *s;
    int old;
} notify_ctx;

static void notify_cb(void *arg, const sh_service_member_t *m)
{
    notify_ctx *x = arg;
    x->s->ops->member(x->s->ud, x->s, m, x->old);
}

void sh_cluster__services_member(sh_cluster_t *c, const sh_swim_member_t *m, int old)
{
    sh_service_t *list[SH_SERVICE_MAX];
    unsigned n = snapshot(list);
    for (unsigned i = 0; i < n; i++) {
        sh_service_t *s = list[i];
        if (s->c != c || s->ops->member == NULL)
            continue;
        notify_ctx x = {s, old};
        member_view(m, c->conf->node_name, notify_cb, &x);
    }
}

int sh_cluster__services_admin(sh_cluster_t *c, const char *path, const char *query, char **json)
{
    sh_service_t *list[SH_SERVICE_MAX];
    unsigned n = snapshot(list);
    for (unsigned i = 0; i < n; i++) {
        sh_service_t *s = list[i];
        if (s->c == c && s->ops->admin && s->ops->admin_json && strcmp(s->ops->admin, path) == 0) {
            *json = s->ops->admin_json(s->ud, s, query);
            return 1;
        }
    }
    return 0;
}

void sh_cluster__services_metrics(sh_cluster_t *c, FILE *f)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } m[] = {
        {"shoal_cluster_service_messages_sent_total", "Direct datagrams sent by a service.",
         offsetof(sh_service_stats_t, sent_msgs)},
        {"shoal_cluster_service_bytes_sent_total", "Sealed bytes of a service's direct datagrams.",
         offsetof(sh_service_stats_t, sent_bytes)},
        {"shoal_cluster_service_broadcasts_total", "Gossip broadcasts queued by a service.",
         offsetof(sh_service_stats_t, bcast_msgs)},
        {"shoal_cluster_service_messages_received_total", "Messages a service received.",
         offsetof(sh_service_stats_t, recv_msgs)},
        {"shoal_cluster_service_bytes_received_total", "Bytes of the messages a service received.",
         offsetof(sh_service_stats_t, recv_bytes)},
        {"shoal_cluster_service_send_failed_total", "Direct datagrams a service could not send.",
         offsetof(sh_service_stats_t, send_failed)},
        {"shoal_cluster_service_posts_dropped_total", "Worker hand-offs dropped (queue full).",
         offsetof(sh_service_stats_t, posts_dropped)},
    };
    sh_service_t *reg_[SH_SERVICE_MAX];
    unsigned n = snapshot(reg_);
    int any = 0;
    for (unsigned i = 0; i < n; i++)
        any |= reg_[i]->c == c;
    if (!any)
        return;
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", m[k].name, m[k].help, m[k].name);
        for (unsigned i = 0; i < n; i++)
            if (reg_[i]->c == c)
                fprintf(
                    f, "%s{service=\"%s\"} %llu\n", m[k].name, reg_[i]->ops->name,
                    (unsigned long long)*(const uint64_t *)((const char *)&reg_[i]->st + m[k].off));
    }
    for (unsigned i = 0; i < n; i++)
        if (reg_[i]->c == c && reg_[i]->ops->metrics)
            reg_[i]->ops->metrics(reg_[i]->ud, reg_[i], f);
}

/* ------------------------------------------------------ service API -- */

int sh_service_attached(const sh_service_t *s)
{
    return s != NULL && s->c != NULL;
}

const char *sh_service_self(const sh_service_t *s)
{
    return s->c ? s->c->conf->node_name : "";
}

size_t sh_service_max_payload(const sh_service_t *s)
{
    if (s->c == NULL)
        return 0;
    /* header, `from`, the update and channel framing, our tag */
    size_t over = SH_WIRE_HDRLEN + strlen(s->c->conf->node_name) + 24;
    return s->c->conf->mtu > over ? s->c->conf->mtu - over : 0;
}

int sh_service_send(sh_service_t *s, const char *name, const uint8_t *data, size_t len)
{
    sh_cluster_t *c = s->c;
    if (c == NULL)
        return SH_ESTATE;
    const sh_swim_member_t *m = sh_swim_member(c->swim, name);
    if (m == NULL) {
        s->st.send_failed++;
        return SH_ENOENT;
    }
    if (len > sh_service_max_payload(s)) {
        s->st.send_failed++;
        return SH_ELIMIT;
    }
    uint8_t *tagged = sh_malloc(len + 1);
    tagged[0] = TAG_DIRECT;
    memcpy(tagged + 1, data, len);
    Sh__Gossip__ChannelMsg cm = SH__GOSSIP__CHANNEL_MSG__INIT;
    cm.channel = s->ops->channel;
    cm.data.data = tagged;
    cm.data.len = len + 1;
    Sh__Gossip__Update u = SH__GOSSIP__UPDATE__INIT, *up = &u;
    u.kind_case = SH__GOSSIP__UPDATE__KIND_CHANNEL;
    u.channel = &cm;
    Sh__Gossip__Packet p = SH__GOSSIP__PACKET__INIT;
    p.from = c->conf->node_name;
    p.n_updates = 1;
    p.updates = &up;
    size_t plen = SH_WIRE_HDRLEN + sh__gossip__packet__get_packed_size(&p);
    uint8_t *pt = sh_malloc(plen);
    sh_wire_put_header(pt, SH_WIRE_KIND_PACKET);
    sh__gossip__packet__pack(&p, pt + SH_WIRE_HDRLEN);
    sh_free(tagged);
    int rc = SH_EIO;
    struct sockaddr_storage ss;
    if (sh_cluster__parse_addr(m->addr, &ss) == 0) {
        long n = sh_keyring_seal(c->kr, pt, plen, c->sbuf, sizeof(c->sbuf));
        if (n > 0) {
            uv_buf_t b = uv_buf_init((char *)c->sbuf, (unsigned)n);
            if (uv_udp_try_send(&c->udp, &b, 1, (const struct sockaddr *)&ss) >= 0) {
                s->st.sent_msgs++;
                s->st.sent_bytes += (uint64_t)n;
                rc = 0;
            }
        }
    }
    sh_free(pt);
    if (rc != 0)
        s->st.send_failed++;
    return rc;
}

int sh_service_broadcast(sh_service_t *s, const char *key, const uint8_t *data, size_t len)
{
    if (s->c == NULL)
        return SH_ESTATE;
    uint8_t *tagged = sh_malloc(len + 1);
    tagged[0] = TAG_BCAST;
    memcpy(tagged + 1, data, len);
    int rc = sh_swim_channel_broadcast(s->c->swim, s->ops->channel, key, tagged, len + 1);
    sh_free(tagged);
    if (rc == 0) {
        s->st.bcast_msgs++;
        s->st.bcast_bytes += len + 1;
    }
    return rc;
}

size_t sh_service_members(sh_service_t *s, void (*cb)(void *arg, const sh_service_member_t *m),
                          void *arg)
{
    if (s->c == NULL)
        return 0;
    foreach_ctx x = {cb, arg, s->c->conf->node_name, 0};
    sh_swim_foreach(s->c->swim, foreach_cb, &x);
    return x.n;
}

size_t sh_service_live(const sh_service_t *s)
{
    return s->c ? sh_swim_num_members(s->c->swim, 1) : 1;
}

int sh_service_joined(const sh_service_t *s)
{
    /* c->joined is cleared by a join round and set only by a join
     * push-pull; SWIM may heal a split without one: another live member
     * is as good */
    return s->c != NULL &&
           (s->c->joined || s->c->conf->njoin == 0 || sh_swim_num_members(s->c->swim, 1) > 1);
}

void sh_service_wake(sh_service_t *s)
{
    if (s->c == NULL)
        return;
    s->next_tick = 0;
    schedule(s->c);
}

const sh_service_stats_t *sh_service_stats(const sh_service_t *s)
{
    return &s->st;
}

/* ------------------------------------------- events (health helper) -- */

int sh_service_event(sh_service_t *s, const char *type, const char *json_text)
{
    if (s == NULL || s->c == NULL)
        return SH_ESTATE;
    json_t *data = json_loads(json_text, 0, NULL);
    if (data == NULL)
        return SH_EPARSE;
    sh_cluster__event(s->c, type, data); /* takes the reference */
    return 0;
}
