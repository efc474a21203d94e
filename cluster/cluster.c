/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cluster thread: see cluster.h. One uv_loop owns a UDP socket and a
 * TCP listener on `bind` (gossip and push-pull), the admin listener, one
 * timer that drives sh_swim_tick at sh_swim_next_deadline, the join retry
 * timer, and a uv_async for stop. Every datagram is size-checked and opened
 * with the keyring before the SWIM code sees it; every push-pull frame is
 * [4-byte big-endian length][sealed frame], one each way per connection.
 * All handles are embedded in sh_cluster_t or in per-connection structs
 * freed in their close callbacks.
 */
#include "cluster/cluster.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <uv.h>

#include "cluster/cluster_internal.h"
#include "cluster/wire.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"

#define MAX_CONNS 64u
#define CONN_TIMEOUT_MS 10000u
#define ADMIN_MAX_REQ 8192u

struct sh_cluster_s {
    sh_cluster_conf_t *conf;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_udp_t udp;
    uv_tcp_t tcp;
    uv_tcp_t admin;
    int admin_on;
    uv_timer_t tick;
    uv_timer_t join_timer;
    uv_timer_t stop_timer;
    uv_async_t stop_async;
    sh_keyring_t *kr;
    sh_swim_t *swim;
    sh_wire_stats_t wst;
    uint64_t stop_deadline, stop_timeout;
    int stopping, joined, joins_pending;
    uint64_t join_backoff;
    unsigned nconns;
    uint8_t rbuf[SH_WIRE_MAX_UDP + 64];
    uint8_t scratch[SH_WIRE_MAX_UDP + 64];
    uint8_t sbuf[SH_WIRE_MAX_UDP + 64];
};

/* ---------------------------------------------------------- addresses -- */

/* "host:port" or "[v6]:port" to a sockaddr; numeric hosts only. */
static int parse_addr(const char *s, struct sockaddr_storage *ss)
{
    char host[128];
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
            return SH_EINVAL;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
            return SH_EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    int port = atoi(colon + 1);
    if (port <= 0 || port > 65535)
        return SH_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return SH_EINVAL;
}

static void format_addr(const struct sockaddr *sa, char *out, size_t n)
{
    char ip[64] = "?";
    if (sa->sa_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof(ip));
        snprintf(out, n, "[%s]:%u", ip, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    } else {
        uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof(ip));
        snprintf(out, n, "%s:%u", ip, ntohs(((const struct sockaddr_in *)sa)->sin_port));
    }
}

/* --------------------------------------------------------------- tick -- */

static void on_tick(uv_timer_t *t);

static void reschedule(sh_cluster_t *c)
{
    if (c->stopping > 1)
        return;
    uint64_t now = uv_now(&c->loop), d = sh_swim_next_deadline(c->swim);
    uv_timer_start(&c->tick, on_tick, d > now ? d - now : 0, 0);
}

static void on_tick(uv_timer_t *t)
{
    sh_cluster_t *c = container_of(t, sh_cluster_t, tick);
    sh_swim_tick(c->swim, uv_now(&c->loop));
    reschedule(c);
}

/* ---------------------------------------------------------------- UDP -- */

static void t_send(void *ud, const char *addr, const uint8_t *buf, size_t len)
{
    sh_cluster_t *c = ud;
    struct sockaddr_storage ss;
    if (parse_addr(addr, &ss) != 0)
        return;
    long n = sh_keyring_seal(c->kr, buf, len, c->sbuf, sizeof(c->sbuf));
    if (n < 0)
        return;
    uv_buf_t b = uv_buf_init((char *)c->sbuf, (unsigned)n);
    /* Datagrams are fire-and-forget: a full socket buffer is a loss. */
    (void)uv_udp_try_send(&c->udp, &b, 1, (const struct sockaddr *)&ss);
}

static void udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sh_cluster_t *c = container_of((uv_udp_t *)h, sh_cluster_t, udp);
    *buf = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                     unsigned flags)
{
    sh_cluster_t *c = container_of(h, sh_cluster_t, udp);
    if (nread <= 0 || addr == NULL || (flags & UV_UDP_PARTIAL))
        return;
    /* size, then the keyring (version, key id, tag); never parsed before. */
    if ((size_t)nread > SH_WIRE_MAX_UDP) {
        c->wst.too_big++;
        return;
    }
    long n = sh_keyring_open(c->kr, (const uint8_t *)buf->base, (size_t)nread, c->scratch,
                             sizeof(c->scratch));
    if (n < 0) {
        c->wst.not_opened++;
        return;
    }
    char from[80];
    format_addr(addr, from, sizeof(from));
    sh_swim_recv_bytes(c->swim, from, c->scratch, (size_t)n, uv_now(&c->loop));
    reschedule(c);
}

/* ---------------------------------------------------------- push-pull -- */

#define PP_MAGIC 0x70707070u
#define AD_MAGIC 0x61646d6eu

typedef struct {
    unsigned magic; /* PP_MAGIC: tells close_all whose handle this is */
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer;
    sh_cluster_t *c;
    int initiator, join, done, closing, handles;
    uint8_t *in;
    size_t in_len, in_cap, want;
    uint8_t *out;
} ppconn;

static void pp_closed(uv_handle_t *h)
{
    ppconn *p = h->data;
    if (--p->handles > 0)
        return;
    p->c->nconns--;
    sh_free(p->in);
    sh_free(p->out);
    sh_free(p);
}

static void pp_close(ppconn *p)
{
    if (p->closing)
        return;
    p->closing = 1;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, pp_closed);
    uv_close((uv_handle_t *)&p->tcp, pp_closed);
}

static void pp_timeout(uv_timer_t *t) { pp_close(t->data); }

static ppconn *pp_new(sh_cluster_t *c)
{
    if (c->nconns >= MAX_CONNS || c->stopping > 1)
        return NULL;
    ppconn *p = sh_new(ppconn);
    p->magic = PP_MAGIC;
    p->c = c;
    c->nconns++;
    uv_tcp_init(&c->loop, &p->tcp);
    uv_timer_init(&c->loop, &p->timer);
    p->tcp.data = p->timer.data = p;
    p->handles = 2;
    uv_timer_start(&p->timer, pp_timeout, CONN_TIMEOUT_MS, 0);
    return p;
}

static void pp_written(uv_write_t *w, int status)
{
    ppconn *p = w->data;
    if (status < 0 || !p->initiator)
        pp_close(p); /* the responder is done once its answer is out */
}

static int pp_send_state(ppconn *p, int join)
{
    uint8_t *pt = NULL;
    size_t len = sh_swim_pushpull_encode(p->c->swim, join, &pt);
    size_t cap = 4 + len + SH_KEYRING_OVERHEAD;
    p->out = sh_malloc(cap);
    long n = sh_keyring_seal(p->c->kr, pt, len, p->out + 4, cap - 4);
    sh_free(pt);
    if (n < 0)
        return (int)n;
    p->out[0] = (uint8_t)(n >> 24);
    p->out[1] = (uint8_t)(n >> 16);
    p->out[2] = (uint8_t)(n >> 8);
    p->out[3] = (uint8_t)n;
    uv_buf_t b = uv_buf_init((char *)p->out, (unsigned)(4 + n));
    p->write.data = p;
    return uv_write(&p->write, (uv_stream_t *)&p->tcp, &b, 1, pp_written);
}

static void pp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    ppconn *p = h->data;
    size_t need = p->want ? p->want : 4;
    if (p->in_cap < need) {
        p->in_cap = need;
        p->in = sh_realloc(p->in, p->in_cap);
    }
    *buf = uv_buf_init((char *)p->in + p->in_len, (unsigned)(need - p->in_len));
}

static void join_done(sh_cluster_t *c, int ok);

static void pp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ppconn *p = s->data;
    sh_cluster_t *c = p->c;
    if (nread < 0) {
        if (p->initiator && p->join && !p->done)
            join_done(c, 0);
        pp_close(p);
        return;
    }
    p->in_len += (size_t)nread;
    if (p->want == 0 && p->in_len >= 4) {
        size_t n = ((size_t)p->in[0] << 24) | ((size_t)p->in[1] << 16) |
                   ((size_t)p->in[2] << 8) | p->in[3];
        if (n > SH_WIRE_MAX_FRAME || n < SH_KEYRING_OVERHEAD) {
            c->wst.too_big++;
            pp_close(p);
            return;
        }
        p->want = n;
        p->in_len = 0;
        return;
    }
    if (p->want == 0 || p->in_len < p->want)
        return;
    uv_read_stop(s);
    uint8_t *pt = sh_malloc(p->want);
    long n = sh_keyring_open(c->kr, p->in, p->want, pt, p->want);
    int rc = n < 0 ? (int)n
                   : sh_swim_pushpull_merge(c->swim, pt, (size_t)n, uv_now(&c->loop), NULL);
    sh_free(pt);
    if (rc < 0) {
        c->wst.not_opened += n < 0;
        if (p->initiator && p->join)
            join_done(c, 0);
        pp_close(p);
        return;
    }
    p->done = 1;
    if (p->initiator) {
        if (p->join)
            join_done(c, 1);
        pp_close(p);
    } else if (pp_send_state(p, 0) != 0) {
        pp_close(p);
    }
    reschedule(c);
}

static void pp_connected(uv_connect_t *req, int status)
{
    ppconn *p = req->data;
    if (status < 0 || p->closing) {
        if (p->join)
            join_done(p->c, 0);
        pp_close(p);
        return;
    }
    if (pp_send_state(p, p->join) != 0 ||
        uv_read_start((uv_stream_t *)&p->tcp, pp_alloc, pp_read) != 0) {
        if (p->join)
            join_done(p->c, 0);
        pp_close(p);
    }
}

static void t_pushpull(void *ud, const char *addr, int join)
{
    sh_cluster_t *c = ud;
    struct sockaddr_storage ss;
    ppconn *p = NULL;
    if (parse_addr(addr, &ss) != 0 || (p = pp_new(c)) == NULL) {
        if (join)
            join_done(c, 0);
        return;
    }
    p->initiator = 1;
    p->join = join;
    p->connect.data = p;
    if (uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&ss, pp_connected) != 0) {
        if (join)
            join_done(c, 0);
        pp_close(p);
    }
}

static void tcp_accept(uv_stream_t *server, int status)
{
    sh_cluster_t *c = container_of((uv_tcp_t *)server, sh_cluster_t, tcp);
    if (status < 0)
        return;
    ppconn *p = pp_new(c);
    if (p == NULL) {
        uv_tcp_t tmp;
        uv_tcp_init(&c->loop, &tmp);
        if (uv_accept(server, (uv_stream_t *)&tmp) == 0)
            uv_close((uv_handle_t *)&tmp, NULL);
        return;
    }
    if (uv_accept(server, (uv_stream_t *)&p->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&p->tcp, pp_alloc, pp_read) != 0)
        pp_close(p);
}

/* --------------------------------------------------------------- join -- */
/*
 * Each round resolves every `join` entry (static now; dns: through
 * uv_getaddrinfo; file: and exec: on the thread pool) and push-pulls with
 * every address found. Until one join succeeds, rounds repeat with
 * exponential backoff from 1 s to join_retry_max.
 */

static void join_round(sh_cluster_t *c);

static void join_timer_cb(uv_timer_t *t)
{
    join_round(container_of(t, sh_cluster_t, join_timer));
}

static void join_maybe_retry(sh_cluster_t *c)
{
    if (c->joined || c->joins_pending > 0 || c->stopping)
        return;
    uint64_t b = c->join_backoff ? c->join_backoff * 2 : 1000;
    if (b > c->conf->join_retry_max)
        b = c->conf->join_retry_max;
    c->join_backoff = b;
    uv_timer_start(&c->join_timer, join_timer_cb, b, 0);
}

static void join_done(sh_cluster_t *c, int ok)
{
    if (c->joins_pending > 0)
        c->joins_pending--;
    if (ok && !c->joined) {
        c->joined = 1;
        sh_log_notice("cluster: joined (%zu members)", sh_swim_num_members(c->swim, 1));
    }
    join_maybe_retry(c);
}

static void join_addr(sh_cluster_t *c, const char *addr)
{
    if (strcmp(addr, c->conf->advertise) == 0)
        return;
    c->joins_pending++;
    sh_swim_join(c->swim, addr); /* -> t_pushpull(join=1) -> join_done */
}

/* Addresses separated by whitespace, commas or newlines; # comments. */
static void join_list(sh_cluster_t *c, char *text)
{
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *s2 = NULL;
        for (char *tok = strtok_r(line, " \t\r,", &s2); tok; tok = strtok_r(NULL, " \t\r,", &s2))
            join_addr(c, tok);
    }
}

typedef struct {
    uv_work_t work;
    uv_getaddrinfo_t gai;
    sh_cluster_t *c;
    char *spec;
    char *out;
    char port[8];
} jreq;

static void jwork(uv_work_t *w)
{
    jreq *r = container_of(w, jreq, work);
    size_t cap = 65536, len = 0;
    r->out = sh_malloc(cap + 1);
    FILE *f = strncmp(r->spec, "file:", 5) == 0 ? fopen(r->spec + 5, "r")
                                                 : popen(r->spec + 5, "r");
    if (f != NULL) {
        size_t n;
        while (len < cap && (n = fread(r->out + len, 1, cap - len, f)) > 0)
            len += n;
        if (strncmp(r->spec, "file:", 5) == 0)
            fclose(f);
        else
            pclose(f);
    }
    r->out[len] = 0;
}

static void jwork_done(uv_work_t *w, int status)
{
    jreq *r = container_of(w, jreq, work);
    sh_cluster_t *c = r->c;
    c->joins_pending--;
    if (!c->stopping && status == 0)
        join_list(c, r->out);
    sh_free(r->out);
    sh_free(r->spec);
    sh_free(r);
    join_maybe_retry(c);
}

static void jdns_done(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    jreq *r = container_of(g, jreq, gai);
    sh_cluster_t *c = r->c;
    c->joins_pending--;
    if (status == 0 && !c->stopping) {
        for (struct addrinfo *a = res; a; a = a->ai_next) {
            if (a->ai_socktype != SOCK_STREAM && a->ai_socktype != 0)
                continue;
            char addr[80];
            format_addr(a->ai_addr, addr, sizeof(addr));
            join_addr(c, addr);
        }
    }
    uv_freeaddrinfo(res);
    sh_free(r->spec);
    sh_free(r);
    join_maybe_retry(c);
}

static void join_round(sh_cluster_t *c)
{
    if (c->joined || c->stopping)
        return;
    for (unsigned i = 0; i < c->conf->njoin; i++) {
        const char *j = c->conf->join[i];
        if (strncmp(j, "dns:", 4) == 0) {
            jreq *r = sh_new(jreq);
            r->c = c;
            r->spec = sh_strdup(j + 4);
            char *colon = strrchr(r->spec, ':');
            snprintf(r->port, sizeof(r->port), "%s", colon ? colon + 1 : "7946");
            if (colon)
                *colon = 0;
            struct addrinfo hints;
            memset(&hints, 0, sizeof(hints));
            hints.ai_family = AF_UNSPEC;
            hints.ai_socktype = SOCK_STREAM;
            c->joins_pending++;
            if (uv_getaddrinfo(&c->loop, &r->gai, jdns_done, r->spec, r->port, &hints) != 0) {
                c->joins_pending--;
                sh_free(r->spec);
                sh_free(r);
            }
        } else if (strncmp(j, "file:", 5) == 0 || strncmp(j, "exec:", 5) == 0) {
            jreq *r = sh_new(jreq);
            r->c = c;
            r->spec = sh_strdup(j);
            c->joins_pending++;
            if (uv_queue_work(&c->loop, &r->work, jwork, jwork_done) != 0) {
                c->joins_pending--;
                sh_free(r->spec);
                sh_free(r);
            }
        } else {
            join_addr(c, j);
        }
    }
    join_maybe_retry(c);
    reschedule(c);
}

/* -------------------------------------------------------------- admin -- */

typedef struct {
    unsigned magic; /* AD_MAGIC */
    uv_tcp_t tcp;
    uv_write_t write;
    sh_cluster_t *c;
    char req[ADMIN_MAX_REQ];
    size_t len;
    size_t body_off; /* where the body starts, once the head is complete */
    size_t body_len; /* Content-Length */
    char *resp;
} adconn;

static void ad_closed(uv_handle_t *h)
{
    adconn *a = h->data;
    sh_free(a->resp);
    sh_free(a);
}

static void ad_written(uv_write_t *w, int status)
{
    adconn *a = w->data;
    uv_close((uv_handle_t *)&a->tcp, ad_closed);
}

typedef struct {
    json_t *arr;
    uint64_t now_mono, now_unix;
} members_ctx;

static void member_json(void *arg, const sh_swim_member_t *m)
{
    members_ctx *x = arg;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(m->name));
    json_object_set_new(o, "addr", json_string(m->addr));
    json_object_set_new(o, "status", json_string(sh_swim_status_name(m->status)));
    json_object_set_new(o, "incarnation", json_integer((json_int_t)m->incarnation));
    uint64_t ago = x->now_mono > m->changed_ms ? x->now_mono - m->changed_ms : 0;
    json_object_set_new(o, "last_change_unix_ms", json_integer((json_int_t)(x->now_unix - ago)));
    json_t *tags = json_object();
    Sh__Gossip__NodeMeta *meta =
        m->meta_len ? sh__gossip__node_meta__unpack(&sh_wire_allocator, m->meta_len, m->meta)
                    : NULL;
    if (meta) {
        for (size_t i = 0; i < meta->n_tags; i++)
            json_object_set_new(tags, meta->tags[i]->key, json_string(meta->tags[i]->value));
        json_object_set_new(o, "region", json_string(meta->region));
        json_object_set_new(o, "zone", json_string(meta->zone));
        json_object_set_new(o, "version", json_string(meta->version));
        json_object_set_new(o, "admin_addr", json_string(meta->admin_addr));
        sh__gossip__node_meta__free_unpacked(meta, &sh_wire_allocator);
    }
    json_object_set_new(o, "tags", tags);
    json_array_append_new(x->arr, o);
}

static char *keyring_json(sh_cluster_t *c)
{
    uint32_t ids[SH_KEYRING_MAX_KEYS];
    unsigned n = sh_keyring_ids(c->kr, ids, SH_KEYRING_MAX_KEYS);
    json_t *arr = json_array();
    char hex[16];
    for (unsigned i = 0; i < n && i < SH_KEYRING_MAX_KEYS; i++) {
        snprintf(hex, sizeof(hex), "%08x", (unsigned)ids[i]);
        json_array_append_new(arr, json_string(hex));
    }
    snprintf(hex, sizeof(hex), "%08x", (unsigned)sh_keyring_primary_id(c->kr));
    json_t *o = json_pack("{s:o,s:s}", "keys", arr, "primary", hex);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/*
 * POST /v1/keyring/{install,use,remove} with {"key":"<hex or base64>"}:
 * the run-time rotation of issue 5 on this node (install everywhere, use
 * everywhere, then remove the old key). The key never appears in a reply or
 * a log line, only its id.
 */
static char *keyring_op(sh_cluster_t *c, const char *op, const char *body, size_t len, int *code,
                        const char **err)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *text = json_string_value(json_object_get(j, "key"));
    uint8_t key[SH_KEYRING_KEYLEN];
    int rc;
    *code = 400;
    if (text == NULL || sh_keyring_parse_key(text, key) != 0) {
        json_decref(j);
        *err = "the body must be {\"key\": 32 bytes as 64 hex digits or base64}";
        return NULL;
    }
    json_decref(j);
    if (strcmp(op, "install") == 0)
        rc = sh_keyring_install(c->kr, key);
    else if (strcmp(op, "use") == 0)
        rc = sh_keyring_use(c->kr, key);
    else if (strcmp(op, "remove") == 0)
        rc = sh_keyring_remove(c->kr, key);
    else {
        *code = 404;
        *err = "unknown keyring operation: install, use or remove";
        return NULL;
    }
    uint32_t id = sh_keyring_key_id(key);
    sodium_memzero(key, sizeof(key));
    switch (rc) {
    case 0:
        sh_log_notice("cluster: keyring %s %08x (primary %08x)", op, (unsigned)id,
                      (unsigned)sh_keyring_primary_id(c->kr));
        *code = 200;
        return keyring_json(c);
    case SH_ENOENT:
        *code = 404;
        *err = "no such key in the keyring";
        return NULL;
    case SH_EEXIST:
        *code = 409;
        *err = "the key (or one with the same id) is already installed";
        return NULL;
    case SH_ESTATE:
        *code = 409;
        *err = "the primary key cannot be removed: make another key primary first";
        return NULL;
    case SH_ELIMIT:
        *code = 409;
        *err = "the keyring is full";
        return NULL;
    default:
        *code = 500;
        *err = sh_strerror(rc);
        return NULL;
    }
}

static char *admin_body(sh_cluster_t *c, const char *method, const char *path, const char *body,
                        size_t body_len, int *code, const char **err)
{
    if (strcmp(method, "POST") == 0) {
        if (strncmp(path, "/v1/keyring/", 12) == 0)
            return keyring_op(c, path + 12, body, body_len, code, err);
        *code = strcmp(path, "/v1/members") == 0 || strcmp(path, "/v1/stats") == 0 ||
                        strcmp(path, "/v1/keyring") == 0
                    ? 405
                    : 404;
        return NULL;
    }
    if (strcmp(method, "GET") != 0) {
        *code = 405;
        return NULL;
    }
    if (strcmp(path, "/v1/keyring") == 0) {
        *code = 200;
        return keyring_json(c);
    }
    if (strcmp(path, "/v1/members") == 0) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        members_ctx x = {json_array(), uv_now(&c->loop),
                         (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000};
        sh_swim_foreach(c->swim, member_json, &x);
        char *s = json_dumps(x.arr, JSON_COMPACT);
        json_decref(x.arr);
        *code = 200;
        return s;
    }
    if (strcmp(path, "/v1/stats") == 0) {
        const sh_swim_stats_t *st = sh_swim_stats(c->swim);
        const sh_keyring_stats_t *ks = sh_keyring_stats(c->kr);
        json_t *o = json_pack(
            "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:i}", "packets_sent",
            (json_int_t)st->packets_sent, "packets_recv", (json_int_t)st->packets_recv,
            "probes", (json_int_t)st->probes, "probe_failures", (json_int_t)st->probe_failures,
            "refutes", (json_int_t)st->refutes, "undecodable", (json_int_t)st->undecodable,
            "dropped_short", (json_int_t)ks->short_packet, "dropped_bad_version",
            (json_int_t)ks->bad_version, "dropped_unknown_key", (json_int_t)ks->unknown_key,
            "dropped_bad_tag", (json_int_t)ks->bad_tag, "opened", (json_int_t)ks->opened,
            "dropped_too_big", (json_int_t)c->wst.too_big, "health_score",
            sh_swim_health_score(c->swim), "keyring_keys", (int)sh_keyring_count(c->kr));
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        *code = 200;
        return s;
    }
    *code = 404;
    return NULL;
}

static void ad_respond(adconn *a, int code)
{
    char method[16] = "", path[256] = "";
    char *body = NULL;
    const char *err = NULL;
    if (code == 0) {
        code = 400;
        if (sscanf(a->req, "%15s %255s", method, path) == 2)
            body = admin_body(a->c, method, path, a->req + a->body_off, a->body_len, &code, &err);
    }
    const char *reason = code == 200   ? "OK"
                         : code == 404 ? "Not Found"
                         : code == 405 ? "Method Not Allowed"
                         : code == 409 ? "Conflict"
                         : code == 413 ? "Content Too Large"
                         : code == 500 ? "Internal Server Error"
                                       : "Bad Request";
    if (body == NULL) {
        json_t *o = json_pack("{s:s}", "error", err ? err : reason);
        body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
    }
    size_t blen = strlen(body), cap = blen + 256;
    a->resp = sh_malloc(cap);
    int n = snprintf(a->resp, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s\n",
                     code, reason, blen + 1, body);
    free(body); /* jansson's allocations come from malloc */
    uv_buf_t b = uv_buf_init(a->resp, (unsigned)n);
    a->write.data = a;
    if (uv_write(&a->write, (uv_stream_t *)&a->tcp, &b, 1, ad_written) != 0)
        uv_close((uv_handle_t *)&a->tcp, ad_closed);
}

static void ad_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    adconn *a = h->data;
    *buf = uv_buf_init(a->req + a->len, (unsigned)(sizeof(a->req) - 1 - a->len));
}

static void ad_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    adconn *a = s->data;
    if (nread < 0 || (nread == 0 && a->len >= sizeof(a->req) - 1)) {
        uv_close((uv_handle_t *)&a->tcp, ad_closed);
        return;
    }
    a->len += (size_t)nread;
    a->req[a->len] = 0;
    if (a->body_off == 0) {
        char *end = strstr(a->req, "\r\n\r\n");
        if (end == NULL) {
            if (a->len >= sizeof(a->req) - 1)
                uv_close((uv_handle_t *)&a->tcp, ad_closed); /* header limit */
            return;
        }
        a->body_off = (size_t)(end - a->req) + 4;
        /* Content-Length, the only body framing the admin API takes. */
        for (char *l = strstr(a->req, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n")) {
            if (strncasecmp(l + 2, "Content-Length:", 15) == 0) {
                long v = strtol(l + 17, NULL, 10);
                if (v < 0 || (size_t)v > sizeof(a->req) - 1 - a->body_off) {
                    uv_read_stop(s);
                    ad_respond(a, 413);
                    return;
                }
                a->body_len = (size_t)v;
            }
        }
    }
    if (a->len - a->body_off >= a->body_len) {
        uv_read_stop(s);
        ad_respond(a, 0);
    } else if (a->len >= sizeof(a->req) - 1) {
        uv_close((uv_handle_t *)&a->tcp, ad_closed);
    }
}

static void admin_accept(uv_stream_t *server, int status)
{
    sh_cluster_t *c = container_of((uv_tcp_t *)server, sh_cluster_t, admin);
    if (status < 0 || c->stopping)
        return;
    adconn *a = sh_new(adconn);
    a->magic = AD_MAGIC;
    a->c = c;
    uv_tcp_init(&c->loop, &a->tcp);
    a->tcp.data = a;
    if (uv_accept(server, (uv_stream_t *)&a->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&a->tcp, ad_alloc, ad_read) != 0)
        uv_close((uv_handle_t *)&a->tcp, ad_closed);
}

/* ---------------------------------------------------- start and stop -- */

static void stop_check(uv_timer_t *t)
{
    sh_cluster_t *c = container_of(t, sh_cluster_t, stop_timer);
    uint64_t now = uv_now(&c->loop);
    if (!sh_swim_leave_sent(c->swim) && now < c->stop_deadline)
        return;
    /* The leave went out (or time is up): stop accepting and wind down. */
    c->stopping = 2;
    uv_stop(&c->loop);
}

static void stop_async_cb(uv_async_t *a)
{
    sh_cluster_t *c = container_of(a, sh_cluster_t, stop_async);
    if (c->stopping)
        return;
    c->stopping = 1;
    uint64_t now = uv_now(&c->loop);
    sh_swim_leave(c->swim, now);
    /* Push the leave out now rather than at the next gossip tick. */
    sh_swim_tick(c->swim, now);
    reschedule(c);
    c->stop_deadline = now + c->stop_timeout;
    uv_timer_start(&c->stop_timer, stop_check, 0, 20);
}

static void thread_main(void *arg)
{
    sh_cluster_t *c = arg;
    uv_run(&c->loop, UV_RUN_DEFAULT);
}

static const sh_swim_transport_t transport = {t_send, t_pushpull, NULL};

static int bind_all(sh_cluster_t *c)
{
    struct sockaddr_storage ss;
    if (parse_addr(c->conf->bind, &ss) != 0) {
        sh_log_err("cluster: bind \"%s\" is not a numeric host:port", c->conf->bind);
        return SH_EINVAL;
    }
    int rc;
    uv_udp_init(&c->loop, &c->udp);
    uv_tcp_init(&c->loop, &c->tcp);
    if ((rc = uv_udp_bind(&c->udp, (const struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&c->tcp, 128, tcp_accept)) != 0) {
        sh_log_err("cluster: cannot bind %s: %s", c->conf->bind, uv_strerror(rc));
        return SH_EIO;
    }
    uv_udp_recv_start(&c->udp, udp_alloc, udp_recv);
    uv_tcp_init(&c->loop, &c->admin);
    if (strcmp(c->conf->admin_listen, "off") != 0) {
        if (parse_addr(c->conf->admin_listen, &ss) != 0 ||
            (rc = uv_tcp_bind(&c->admin, (const struct sockaddr *)&ss, 0)) != 0 ||
            (rc = uv_listen((uv_stream_t *)&c->admin, 64, admin_accept)) != 0) {
            sh_log_err("cluster: cannot listen on admin address %s: %s", c->conf->admin_listen,
                       rc ? uv_strerror(rc) : "not a numeric host:port");
            return SH_EIO;
        }
        c->admin_on = 1;
    }
    return 0;
}

static void close_all(uv_handle_t *h, void *arg)
{
    if (uv_is_closing(h))
        return;
    /* Connection handles carry their owner in data and are freed by their
     * close callbacks; the handles embedded in sh_cluster_t have no data. */
    if (h->data == NULL) {
        uv_close(h, NULL);
    } else if (*(unsigned *)h->data == PP_MAGIC) {
        pp_close(h->data);
    } else if (*(unsigned *)h->data == AD_MAGIC) {
        uv_close(h, ad_closed);
    } else {
        uv_close(h, NULL);
    }
}

int sh_cluster_start(void *conf, sh_cluster_t **out)
{
    *out = NULL;
    sh_cluster_conf_t *cc = conf;
    if (cc == NULL || !cc->present)
        return 0;
    sh_cluster_t *c = sh_new(sh_cluster_t);
    c->conf = cc;
    int rc = SH_EIO;
    c->kr = sh_keyring_create();
    if (c->kr == NULL)
        goto fail_kr;
    for (unsigned i = 0; i < cc->nkeys; i++)
        sh_keyring_install(c->kr, cc->keys[i]);
    if (uv_loop_init(&c->loop) != 0)
        goto fail_loop;
    uv_timer_init(&c->loop, &c->tick);
    uv_timer_init(&c->loop, &c->join_timer);
    uv_timer_init(&c->loop, &c->stop_timer);
    uv_async_init(&c->loop, &c->stop_async, stop_async_cb);
    sh_swim_conf_t sc = cc->swim;
    sc.seed = (uint64_t)uv_hrtime() ^ ((uint64_t)(uintptr_t)c << 16);
    c->swim = sh_swim_create(&sc, &transport, c, uv_now(&c->loop));
    if ((rc = bind_all(c)) != 0)
        goto fail_bind;
    join_round(c);
    reschedule(c);
    if (uv_thread_create(&c->thread, thread_main, c) != 0) {
        rc = SH_EIO;
        goto fail_bind;
    }
    sh_log_notice("cluster: node \"%s\" gossiping on %s (advertise %s), admin on %s",
                  cc->node_name, cc->bind, cc->advertise, cc->admin_listen);
    *out = c;
    return 0;
fail_bind:
    uv_walk(&c->loop, close_all, c);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
    sh_swim_destroy(c->swim);
fail_loop:
    sh_keyring_destroy(c->kr);
fail_kr:
    sh_free(c);
    return rc;
}

void sh_cluster_stop(sh_cluster_t *c, uint64_t timeout_ms)
{
    if (c == NULL)
        return;
    c->stop_timeout = timeout_ms;
    uv_async_send(&c->stop_async);
    uv_thread_join(&c->thread);
    /* The thread is gone: close what is left from this thread. */
    uv_walk(&c->loop, close_all, c);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&c->loop) != 0)
        sh_log_warn("cluster: loop closed with handles left");
    sh_swim_destroy(c->swim);
    sh_keyring_destroy(c->kr);
    sh_free(c);
}
