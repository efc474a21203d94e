/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ticket-key channel (issue 13): the shared TLS session-ticket keys
 * (tls_tickets.h) travel between the members over a cluster service
 * (cluster/service.h, channel SH_TLS_TICKETS_CHANNEL). The keys are
 * secrets: they ride only inside the sealed gossip packets (the cluster
 * keyring's XChaCha20-Poly1305, as the keyring channel's keys do), in
 * direct datagrams, broadcasts and push-pull, never in clear.
 *
 * Every tick (250 ms): the maker is the live member with the smallest
 * name; it makes the next key when the newest is a period old; any
 * change is sent at once to every live member and broadcast; the keys
 * are broadcast again every 2 s and are in every push-pull, so a joiner
 * gets them with its first exchange.
 */
#include "node/conn/tls_tickets_sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/service.h"
#include "cluster/swim.h"
#include "core/alloc.h"
#include "core/log.h"
#include "node/conn/tls_tickets.h"

#define REFRESH_MS 2000u

static struct {
    sh_service_t *svc;
    uint64_t sent_version;
    uint64_t last_bcast;
} T;

/* The key that encrypts among ks (newest first): the newest whose time
 * has come (tls_tickets.c makes the next one ahead of its turn). */
static size_t enc_of(const sh_tls_shared_key_t *ks, size_t n, uint64_t now)
{
    for (size_t i = 0; i < n; i++)
        if (ks[i].created <= now)
            return i;
    return n ? n - 1 : 0;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

typedef struct {
    const char *self;
    int smallest; /* self is the smallest live name so far */
} maker_t;

static void is_smallest(void *arg, const sh_service_member_t *m)
{
    maker_t *mk = arg;
    if (m->self || (m->status != SH_SWIM_ALIVE && m->status != SH_SWIM_SUSPECT))
        return;
    if (strcmp(m->name, mk->self) < 0)
        mk->smallest = 0;
}

static void send_one(void *arg, const sh_service_member_t *m)
{
    const uint8_t **msg = arg;
    if (m->self || (m->status != SH_SWIM_ALIVE && m->status != SH_SWIM_SUSPECT))
        return;
    sh_service_send(T.svc, m->name, msg[0], (size_t)(uintptr_t)msg[1]);
}

static void publish(sh_service_t *svc, uint64_t now, int direct)
{
    size_t len;
    uint64_t version;
    uint8_t *data = sh_tls_tickets_encode(&len, &version);
    if (len <= sh_service_max_payload(svc)) {
        if (direct) {
            const uint8_t *msg[2] = {data, (const uint8_t *)(uintptr_t)len};
            sh_service_members(svc, send_one, msg);
        }
        sh_service_broadcast(svc, "tickets", data, len);
    }
    memset(data, 0, len); /* secrets */
    sh_free(data);
    T.sent_version = version;
    T.last_bcast = now;
}

static void elect(sh_service_t *svc)
{
    maker_t mk = {sh_service_self(svc), 1};
    sh_service_members(svc, is_smallest, &mk);
    sh_tls_tickets_set_maker(mk.smallest, mk.self);
}

static void t_start(void *ud, sh_service_t *svc, uint64_t now)
{
    (void)ud;
    T.svc = svc;
    elect(svc);
    sh_tls_tickets_rotate(wall_ms());
    publish(svc, now, 1);
}

static void t_tick(void *ud, sh_service_t *svc, uint64_t now)
{
    (void)ud;
    elect(svc);
    if (sh_tls_tickets_rotate(wall_ms()))
        sh_log_info("tls: made a new session-ticket key (rotation every %llu ms)",
                    (unsigned long long)sh_tls_tickets_period());
    if (sh_tls_tickets_version() != T.sent_version)
        publish(svc, now, 1);
    else if (now - T.last_bcast >= REFRESH_MS)
        publish(svc, now, 0);
}

static int t_recv(void *ud, sh_service_t *svc, const char *from, const uint8_t *data, size_t len,
                  int direct, uint64_t now)
{
    (void)ud;
    (void)svc;
    (void)direct;
    (void)now;
    int rc = sh_tls_tickets_merge(data, len);
    if (rc < 0) {
        sh_log_warn("tls: malformed ticket-key message from %s dropped", from);
        return 0;
    }
    return rc;
}

static int t_local_state(void *ud, int join, uint8_t **out, size_t *len)
{
    (void)ud;
    (void)join;
    uint64_t version;
    *out = sh_tls_tickets_encode(len, &version);
    return 0;
}

static void t_merge_state(void *ud, const uint8_t *data, size_t len, int join)
{
    (void)ud;
    (void)join;
    if (len > 0 && sh_tls_tickets_merge(data, len) < 0)
        sh_log_warn("tls: malformed ticket-key state in a push-pull dropped");
}

static void t_member(void *ud, sh_service_t *svc, const sh_service_member_t *m, int old)
{
    (void)ud;
    (void)m;
    (void)old;
    elect(svc);
}

static char *t_admin(void *ud, sh_service_t *svc, const char *query)
{
    (void)ud;
    (void)svc;
    (void)query;
    sh_tls_shared_key_t ks[SH_TLS_TICKET_KEYS];
    uint64_t now = wall_ms();
    size_t n = sh_tls_tickets_list(ks, SH_TLS_TICKET_KEYS, now);
    size_t enc = enc_of(ks, n, now);
    char *out = malloc(160 + n * 200);
    if (out == NULL)
        abort();
    size_t o = (size_t)sprintf(out, "{\"rotation_ms\":%llu,\"keys\":[",
                               (unsigned long long)sh_tls_tickets_period());
    for (size_t i = 0; i < n; i++) {
        char id[9];
        for (int b = 0; b < 4; b++)
            sprintf(id + 2 * b, "%02x", ks[i].name[b]);
        /* the key name's first bytes only: never the secrets */
        /* a key made ahead of its turn has a negative age until then */
        o += (size_t)sprintf(out + o, "%s{\"id\":\"%s\",\"age_ms\":%lld,\"origin\":\"",
                             i ? "," : "", id, (long long)now - (long long)ks[i].created);
        for (const char *p = ks[i].origin; *p; p++)
            if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
                out[o++] = *p;
        o += (size_t)sprintf(out + o, "\",\"encrypts\":%s}", i == enc ? "true" : "false");
    }
    memset(ks, 0, sizeof(ks));
    sprintf(out + o, "]}");
    return out;
}

static void t_metrics(void *ud, sh_service_t *svc, FILE *f)
{
    (void)ud;
    (void)svc;
    sh_tls_shared_key_t ks[SH_TLS_TICKET_KEYS];
    uint64_t now = wall_ms();
    size_t n = sh_tls_tickets_list(ks, SH_TLS_TICKET_KEYS, now);
    fprintf(f,
            "# HELP shoal_tls_ticket_keys Shared session-ticket keys this node holds (one "
            "encrypts).\n"
            "# TYPE shoal_tls_ticket_keys gauge\n"
            "shoal_tls_ticket_keys %zu\n"
            "# HELP shoal_tls_ticket_key_age_seconds Age of the key that encrypts new tickets.\n"
            "# TYPE shoal_tls_ticket_key_age_seconds gauge\n"
            "shoal_tls_ticket_key_age_seconds %.3f\n"
            "# HELP shoal_tls_ticket_key_rotation_seconds The rotation period.\n"
            "# TYPE shoal_tls_ticket_key_rotation_seconds gauge\n"
            "shoal_tls_ticket_key_rotation_seconds %.3f\n",
            n, n ? ((double)now - (double)ks[enc_of(ks, n, now)].created) / 1000.0 : 0.0,
            (double)sh_tls_tickets_period() / 1000.0);
    memset(ks, 0, sizeof(ks));
}

static const sh_service_ops_t ops = {
    .name = "tls_tickets",
    .channel = SH_TLS_TICKETS_CHANNEL,
    .tick_ms = 250,
    .admin = "/v1/tls/tickets",
    .start = t_start,
    .tick = t_tick,
    .recv = t_recv,
    .local_state = t_local_state,
    .merge_state = t_merge_state,
    .member = t_member,
    .admin_json = t_admin,
    .metrics = t_metrics,
};

int sh_tls_tickets_sync_register(void)
{
    T.svc = sh_service_register(&ops, NULL);
    return T.svc != NULL ? 0 : -1;
}
