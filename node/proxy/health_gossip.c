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
 *   broadcast again every second and sent directly again every 10 s
 *   (refresh: a word not repeated for a minute, or ten check intervals,
 *   ages out), and are in every push-pull. A word larger than a datagram
 *   is split by server into parts (health.h).
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

#define REFRESH_MS 1000u  /* broadcast again */
#define DIRECT_MS  10000u /* and sent to every member directly */

static struct {
    sh_service_t *svc;
    uint64_t sent_version;
    uint64_t last_bcast;
    uint64_t last_direct;
    uint64_t members_hash;
    uint64_t last_warn;
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

/* This node's word in as many messages as it takes to fit a datagram
 * (servers split by key hash); *n of them, each sh_malloc'd. */
static uint8_t **encode_all(size_t max, size_t *n, size_t **lens, uint64_t *version)
{
    size_t len;
    uint8_t *one = sh_health_encode_local(0, 1, &len, version);
    unsigned parts = 1;
    if (len > max && max > 96) {
        parts = (unsigned)(len / (max - 96) + 1);
        if (parts > 255)
            parts = 255;
    }
    uint8_t **out = sh_calloc(parts, sizeof(*out));
    *lens = sh_calloc(parts, sizeof(**lens));
    if (parts == 1) {
        out[0] = one;
        (*lens)[0] = len;
    } else {
        sh_free(one);
        for (unsigned p = 0; p < parts; p++)
            out[p] = sh_health_encode_local(p, parts, &(*lens)[p], version);
    }
    *n = parts;
    return out;
}

static void publish(sh_service_t *svc, uint64_t now, int direct)
{
    size_t n, *lens;
    uint64_t version;
    size_t max = sh_service_max_payload(svc);
    uint8_t **msgs = encode_all(max, &n, &lens, &version);
    for (size_t i = 0; i < n; i++) {
        if (lens[i] <= max) {
            if (direct) {
                const uint8_t *msg[2] = {msgs[i], (const uint8_t *)(uintptr_t)lens[i]};
                sh_service_members(svc, send_to, msg);
            }
            char key[32];
            snprintf(key, sizeof(key), "health:%u", (unsigned)(i & 0xff));
            sh_service_broadcast(svc, key, msgs[i], lens[i]);
        } else if (now - H.last_warn > 60000) {
            H.last_warn = now;
            sh_log_warn("health: a part of this node's observations (%zu bytes) exceeds a "
                        "datagram; not sent",
                        lens[i]);
        }
        sh_free(msgs[i]);
    }
    sh_free(msgs);
    sh_free(lens);
    H.sent_version = version;
    H.last_bcast = now;
    if (direct)
        H.last_direct = now;
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
    if (sh_health_version() != H.sent_version || now - H.last_direct >= DIRECT_MS)
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

/* Push-pull: the messages of this node's word, each as [len:u16][message]. */
static int g_local_state(void *ud, int join, uint8_t **out, size_t *len)
{
    (void)ud;
    (void)join;
    size_t n, *lens;
    uint64_t version;
    uint8_t **msgs = encode_all(60000, &n, &lens, &version);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += 2 + lens[i];
    uint8_t *b = sh_malloc(total ? total : 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        b[o] = (uint8_t)(lens[i] >> 8);
        b[o + 1] = (uint8_t)lens[i];
        memcpy(b + o + 2, msgs[i], lens[i]);
        o += 2 + lens[i];
        sh_free(msgs[i]);
    }
    sh_free(msgs);
    sh_free(lens);
    *out = b;
    *len = o;
    return 0;
}

static void g_merge_state(void *ud, const uint8_t *data, size_t len, int join)
{
    (void)ud;
    (void)join;
    size_t o = 0;
    while (o + 2 <= len) {
        size_t l = (size_t)data[o] << 8 | data[o + 1];
        if (l > len - o - 2 || sh_health_merge_remote(data + o + 2, l) < 0) {
            sh_log_warn("health: malformed health state in a push-pull dropped");
            return;
        }
        o += 2 + l;
    }
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
