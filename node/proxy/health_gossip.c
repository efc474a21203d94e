/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The health channel (issue 13): this node's observations of the upstream
 * servers (health.h) travel to the other members over a cluster service
 * (cluster/service.h, channel SH_HEALTH_CHANNEL), and theirs come back
 * into the registry, where the quorum rule decides.
 *
 * - Every tick (100 ms) the live member list goes to the registry (the
 *   rendezvous choice of probers moves when it changes), and when this
 *   node's observations changed they are sent at once to every live
 *   member in one sealed datagram each (a change is rare; the latency of
 *   piggybacked gossip would add rounds) and broadcast as well; they are
 *   broadcast again every second (refresh: an observation not repeated
 *   for several check intervals ages out), and are in every push-pull.
 * - A member that dies or leaves is forgotten at once.
 * - Health changes go to the admin event stream as "health" events,
 *   handed from the probe thread by sh_service_post.
 */
#include "node/proxy/health_gossip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/service.h"
#include "cluster/swim.h"
#include "core/alloc.h"
#include "core/log.h"
#include "node/proxy/health.h"

#define REFRESH_MS 1000u

static struct {
    sh_service_t *svc;
    uint64_t sent_version;
    uint64_t last_bcast;
    uint64_t members_hash;
    char self[64];
} H;

typedef struct {
    const char **names;
    size_t n, cap;
    uint64_t hash;
} mlist_t;

static void collect(void *arg, const sh_service_member_t *m)
{
    mlist_t *l = arg;
    if (m->status != SH_SWIM_ALIVE && m->status != SH_SWIM_SUSPECT)
        return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->names = sh_realloc(l->names, l->cap * sizeof(*l->names));
    }
    l->names[l->n++] = sh_strdup(m->name);
    l->hash += sh_hc_hash(m->name, strlen(m->name)); /* order-free */
}

static void refresh_members(sh_service_t *svc, int force)
{
    mlist_t l = {0};
    sh_service_members(svc, collect, &l);
    l.hash ^= l.n;
    if (force || l.hash != H.members_hash) {
        H.members_hash = l.hash;
        sh_health_set_members(l.names, l.n);
    }
    for (size_t i = 0; i < l.n; i++)
        sh_free((void *)l.names[i]);
    sh_free(l.names);
}

static void send_to(void *arg, const sh_service_member_t *m)
{
    const uint8_t **msg = arg;
    if (m->self || (m->status != SH_SWIM_ALIVE && m->status != SH_SWIM_SUSPECT))
        return;
    size_t len = (size_t)(uintptr_t)msg[1];
    sh_service_send(H.svc, m->name, msg[0], len);
}

static void publish(sh_service_t *svc, uint64_t now, int direct)
{
    size_t len;
    uint64_t version;
    uint8_t *data = sh_health_encode_local(&len, &version);
    if (len <= sh_service_max_payload(svc)) {
        if (direct) {
            const uint8_t *msg[2] = {data, (const uint8_t *)(uintptr_t)len};
            sh_service_members(svc, send_to, msg);
        }
        sh_service_broadcast(svc, "health", data, len);
    } else {
        sh_log_warn("health: this node's observations (%zu bytes) exceed a datagram; not sent",
                    len);
    }
    H.sent_version = version;
    H.last_bcast = now;
    sh_free(data);
}

static void g_start(void *ud, sh_service_t *svc, uint64_t now)
{
    (void)ud;
    H.svc = svc;
    snprintf(H.self, sizeof(H.self), "%s", sh_service_self(svc));
    sh_health_set_self(H.self);
    refresh_members(svc, 1);
    publish(svc, now, 1);
}

static void g_tick(void *ud, sh_service_t *svc, uint64_t now)
{
    (void)ud;
    refresh_members(svc, 0);
    if (sh_health_version() != H.sent_version)
        publish(svc, now, 1);
    else if (now - H.last_bcast >= REFRESH_MS)
        publish(svc, now, 0);
}

static int g_recv(void *ud, sh_service_t *svc, const char *from, const uint8_t *data, size_t len,
                  int direct, uint64_t now)
{
    (void)ud;
    (void)svc;
    (void)direct;
    (void)now;
    int rc = sh_health_merge_remote(data, len);
    if (rc < 0) {
        sh_log_warn("health: malformed health message from %s dropped", from);
        return 0;
    }
    return rc;
}

static int g_local_state(void *ud, int join, uint8_t **out, size_t *len)
{
    (void)ud;
    (void)join;
    uint64_t version;
    *out = sh_health_encode_local(len, &version);
    return 0;
}

static void g_merge_state(void *ud, const uint8_t *data, size_t len, int join)
{
    (void)ud;
    (void)join;
    if (len > 0 && sh_health_merge_remote(data, len) < 0)
        sh_log_warn("health: malformed health state in a push-pull dropped");
}

static void g_member(void *ud, sh_service_t *svc, const sh_service_member_t *m, int old)
{
    (void)ud;
    (void)old;
    if (m->status == SH_SWIM_DEAD || m->status == SH_SWIM_LEFT)
        sh_health_forget(m->name);
    refresh_members(svc, 0);
}

static void g_post(void *ud, sh_service_t *svc, const void *data, size_t len)
{
    (void)ud;
    char text[SH_SERVICE_POST_SIZE + 1];
    memcpy(text, data, len);
    text[len] = '\0';
    sh_service_event(svc, "health", text);
}

static char *g_admin(void *ud, sh_service_t *svc, const char *query)
{
    (void)ud;
    (void)svc;
    (void)query;
    return sh_health_json_all();
}

static void json_short(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

/* Probe thread or cluster thread: hand the change to the cluster thread. */
static void on_change(void *ud, const char *ups, const char *server, const char *state,
                      const char *why)
{
    (void)ud;
    if (H.svc == NULL)
        return;
    char u[72], sv[72], st[40], w[72], text[SH_SERVICE_POST_SIZE];
    json_short(u, sizeof(u), ups);
    json_short(sv, sizeof(sv), server);
    json_short(st, sizeof(st), state);
    json_short(w, sizeof(w), why);
    int n = snprintf(text, sizeof(text),
                     "{\"upstream\":\"%s\",\"server\":\"%s\",\"state\":\"%s\",\"why\":\"%s\"}", u,
                     sv, st, w);
    if (n > 0 && (size_t)n < sizeof(text))
        sh_service_post(H.svc, text, (size_t)n);
}

static const sh_service_ops_t ops = {
    .name = "health",
    .channel = SH_HEALTH_CHANNEL,
    .tick_ms = 100,
    .admin = "/v1/health",
    .start = g_start,
    .tick = g_tick,
    .recv = g_recv,
    .local_state = g_local_state,
    .merge_state = g_merge_state,
    .member = g_member,
    .post = g_post,
    .admin_json = g_admin,
};

int sh_health_gossip_register(void)
{
    sh_service_t *svc = sh_service_register(&ops, NULL);
    if (svc == NULL)
        return -1;
    H.svc = svc;
    sh_health_set_notify(on_change, NULL);
    return 0;
}
