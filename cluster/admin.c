/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The admin API (issue 6): HTTP/1.1 + JSON on admin_listen (TCP, or a unix
 * socket), served by the cluster thread. One request per connection
 * (Connection: close), head and body together at most ADMIN_MAX_REQ bytes,
 * body framed by Content-Length only. Paths:
 *
 *   GET  /v1/members[?status=S&tag=K=V]  members as this node sees them
 *   GET  /v1/info                        this node
 *   POST /v1/join {"addrs":[...]}         push-pull with each; answers when done
 *   POST /v1/leave                        leave the cluster (HTTP keeps serving)
 *   POST /v1/force-leave {"name":N}       a failed member becomes left everywhere
 *   GET  /v1/keyring                      key ids, primary, holders per key
 *   POST /v1/keyring/{install,use,remove} {"key":K}   gossiped (keysync.h)
 *   POST /v1/reload                       the node's reload hook
 *   GET  /v1/upstreams                    passive health as this node sees it
 *   GET  /v1/stats                        gossip counters
 *   GET  /v1/events                       Server-Sent Events (member-*, keyring, reload)
 *   POST /v1/cache/purge {"key"|"prefix"|"tag":S,"soft":B}  purge this node's caches
 *   GET  /v1/cache/stats                  the caches' counters (the node's hook)
 *   GET  /metrics                         Prometheus text format 0.0.4
 *   GET  /nginx_status                    nginx's stub_status format
 *   GET  /ui/                             the dashboard (admin_ui.h), no token
 *
 * When a token is configured (required off loopback, cluster_conf.c) every
 * request needs "Authorization: Bearer TOKEN"; the token is compared as
 * BLAKE2b-256 digests with sodium_memcmp, so in constant time. Errors are
 * {"error":"..."} with 400 (bad JSON or arguments: nothing changed), 401,
 * 404, 405, 409 (refused in this state), 413, 502 (a join reached nobody).
 *
 * Connections: at most MAX_ADMIN_CONNS at once. The token is known only once
 * a request is whole, so a connection still reading its request is anyone's
 * (issue 15: 128 idle connections locked operators out): its request must
 * be complete within ADMIN_HEADER_MS of the accept (not re-armed by reads),
 * and when the table is full the oldest such connection is closed to make
 * room for the new one; only a table full of connections past their request
 * (operations in flight, event streams, responses being sent) answers 503.
 * A response must be taken within ADMIN_SEND_MS. Each refusal is counted
 * by reason (shoal_admin_rejected_total). An event stream is dropped when
 * more than SUB_MAX_QUEUED bytes wait for it (a client not reading), and
 * counted. A connection with an operation in flight on the thread pool
 * (reload) or in push-pulls (join) is freed only once it has completed.
 *
 * TLS (admin_ssl_certificate and _key, issue 17): each connection runs an
 * OpenSSL server over two memory BIOs: bytes read go into one, and what
 * OpenSSL writes (handshake flights, the encrypted response, event stream
 * records) is taken from the other and written with uv_write. The request
 * deadlines above count the handshake in.
 */
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/admin_cache.h"
#include "cluster/admin_ui.h"
#include "cluster/cluster_internal.h"
#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"

#define ADMIN_MAX_REQ   8192u
#define MAX_ADMIN_CONNS 128u
#define SUB_MAX_QUEUED  (256u * 1024u)
#define MAX_JOIN_ADDRS  64u
#define ADMIN_HEADER_MS 3000u  /* from accept to a whole request */
#define ADMIN_SEND_MS   10000u /* for a response to be taken */

const char *const sh_cluster__admin_reasons[SH_ADMIN_R_N] = {
    [SH_ADMIN_R_CONN_LIMIT] = "conn_limit",         [SH_ADMIN_R_EVICTED] = "evicted",
    [SH_ADMIN_R_HEADER_TIMEOUT] = "header_timeout", [SH_ADMIN_R_SEND_TIMEOUT] = "send_timeout",
    [SH_ADMIN_R_TOO_LARGE] = "too_large",           [SH_ADMIN_R_BAD_REQUEST] = "bad_request",
    [SH_ADMIN_R_UNAUTHORIZED] = "unauthorized",
};

typedef struct joinreq_s joinreq;

typedef struct adconn_s adconn;

struct adconn_s {
    unsigned magic; /* SH_ADMIN_MAGIC: tells close_all whose handle this is */
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    uv_write_t write;
    uv_work_t work;
    sh_cluster_t *c;
    adconn *prev, *next; /* c->admin_head list, oldest first, until closing */
    uint64_t deadline;   /* reading or responding: closed then; 0: none */
    char req[ADMIN_MAX_REQ];
    size_t len;
    size_t body_off; /* where the body starts, once the head is complete */
    size_t body_len; /* Content-Length */
    char *resp;
    int closing, closed, busy, sub;
    joinreq *join;
    sh_admin_wait_t *wait; /* a deferred answer (admin_cache.h) */
    SSL *ssl;              /* admin TLS, else NULL */
    int rc;                /* reload result */
    char msg[8192];        /* reload message (with the load's warnings) */
};

struct sh_admin_wait_s {
    adconn *a; /* NULL once the connection is gone */
};

struct joinreq_s {
    adconn *a; /* NULL once the connection is gone */
    unsigned pending, ok, failed;
};

/* ----------------------------------------------------------- plumbing -- */

static void ad_free(adconn *a)
{
    SSL_free(a->ssl);
    sh_free(a->resp);
    sh_free(a);
}

static void ad_closed(uv_handle_t *h)
{
    adconn *a = h->data;
    a->closed = 1;
    if (a->join != NULL) { /* the join goes on; nobody to tell */
        a->join->a = NULL;
        a->join = NULL;
        a->busy = 0;
    }
    if (a->wait != NULL) { /* the purge goes on; nobody to tell */
        a->wait->a = NULL;
        a->wait = NULL;
        a->busy = 0;
    }
    if (!a->busy)
        ad_free(a);
}

static void unsubscribe(adconn *a)
{
    sh_cluster_t *c = a->c;
    if (!a->sub)
        return;
    a->sub = 0;
    for (unsigned i = 0; i < c->nsubs; i++)
        if (c->subs[i] == a) {
            c->subs[i] = c->subs[--c->nsubs];
            break;
        }
}

static void ad_unlink(adconn *a)
{
    sh_cluster_t *c = a->c;
    if (a->prev)
        a->prev->next = a->next;
    else if (c->admin_head == a)
        c->admin_head = a->next;
    else
        return; /* not linked */
    if (a->next)
        a->next->prev = a->prev;
    else
        c->admin_tail = a->prev;
    a->prev = a->next = NULL;
}

static void ad_close(adconn *a)
{
    if (a->closing)
        return;
    a->closing = 1;
    a->c->nadmin--; /* the slot is free now: an eviction makes room at once */
    ad_unlink(a);
    unsubscribe(a);
    uv_close(&a->h.handle, ad_closed);
}

/* ---------------------------------------------------------- deadlines -- */

static void admin_timer_cb(uv_timer_t *t);

/* Arm the cluster's admin timer for the earliest deadline (at most
 * MAX_ADMIN_CONNS connections: a walk is cheap). */
static void admin_arm(sh_cluster_t *c)
{
    uint64_t first = 0, now = uv_now(&c->loop);
    for (adconn *a = c->admin_head; a; a = a->next)
        if (a->deadline && (first == 0 || a->deadline < first))
            first = a->deadline;
    if (first == 0)
        uv_timer_stop(&c->admin_timer);
    else
        uv_timer_start(&c->admin_timer, admin_timer_cb, first > now ? first - now : 0, 0);
}

static void admin_timer_cb(uv_timer_t *t)
{
    sh_cluster_t *c = container_of(t, sh_cluster_t, admin_timer);
    uint64_t now = uv_now(&c->loop);
    adconn *next;
    for (adconn *a = c->admin_head; a; a = next) {
        next = a->next;
        if (a->deadline == 0 || a->deadline > now)
            continue;
        c->admin_rejected[a->resp ? SH_ADMIN_R_SEND_TIMEOUT : SH_ADMIN_R_HEADER_TIMEOUT]++;
        ad_close(a);
    }
    admin_arm(c);
}

void sh_cluster__admin_close(uv_handle_t *h)
{
    ad_close(h->data);
}

static void ad_written(uv_write_t *w, int status)
{
    ad_close(w->data);
}

/* ---------------------------------------------------------------- TLS -- */

typedef struct {
    uv_write_t w;
    char data[];
} evwrite;

static void ev_written(uv_write_t *w, int status)
{
    sh_free(container_of(w, evwrite, w));
}

/* Write n bytes (copied) on a's stream; 0, or -1 (a is being closed). */
static int raw_send(adconn *a, const char *s, size_t n)
{
    evwrite *e = sh_malloc(sizeof(*e) + n);
    memcpy(e->data, s, n);
    uv_buf_t b = uv_buf_init(e->data, (unsigned)n);
    if (uv_write(&e->w, &a->h.stream, &b, 1, ev_written) != 0) {
        sh_free(e);
        ad_close(a);
        return -1;
    }
    return 0;
}

/* What OpenSSL wrote for the peer, malloc'd (sh_free), its length in *n. */
static char *tls_take(adconn *a, size_t *n)
{
    BIO *wb = SSL_get_wbio(a->ssl);
    size_t p = (size_t)BIO_ctrl_pending(wb);
    char *b = sh_malloc(p ? p : 1);
    int got = p ? BIO_read(wb, b, (int)p) : 0;
    *n = got > 0 ? (size_t)got : 0;
    return b;
}

/* Send what OpenSSL has for the peer (handshake flights). */
static int tls_flush(adconn *a)
{
    size_t n;
    char *b = tls_take(a, &n);
    int rc = n ? raw_send(a, b, n) : 0;
    sh_free(b);
    return rc;
}

/* Replace the plaintext response a->resp (*n bytes) by its TLS records
 * and a close_notify. 0, or -1 (no handshake done: nothing to say). */
static int tls_seal(adconn *a, int *n)
{
    if (!SSL_is_init_finished(a->ssl) || SSL_write(a->ssl, a->resp, *n) != *n)
        return -1;
    SSL_shutdown(a->ssl);
    size_t len;
    char *b = tls_take(a, &len);
    sh_free(a->resp);
    a->resp = b;
    *n = (int)len;
    return 0;
}

static const char *reason_of(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Internal Server Error";
    }
}

/* Send a whole response and close. body is taken (malloc'd: jansson's or
 * ours, both from malloc) or NULL: then {"error": err or the reason}. */
static void respond(adconn *a, int code, const char *ctype, char *body, const char *err)
{
    if (a->closing) {
        free(body);
        return;
    }
    if (body == NULL) {
        json_t *o = json_pack("{s:s}", "error", err ? err : reason_of(code));
        body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        ctype = "application/json";
    }
    if (code >= 400)
        a->c->admin_bad_requests++;
    size_t blen = strlen(body), cap = blen + 512;
    int nl = strcmp(ctype, "application/json") == 0; /* a final newline for people */
    a->resp = sh_malloc(cap);
    int n = snprintf(a->resp, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n%s%s",
                     code, reason_of(code), ctype, blen + (size_t)nl,
                     code == 401 ? "WWW-Authenticate: Bearer realm=\"shoal\"\r\n" : "", body,
                     nl ? "\n" : "");
    free(body);
    if (a->ssl != NULL && tls_seal(a, &n) != 0) {
        ad_close(a);
        return;
    }
    uv_buf_t b = uv_buf_init(a->resp, (unsigned)n);
    a->write.data = a;
    a->deadline = uv_now(&a->c->loop) + ADMIN_SEND_MS;
    admin_arm(a->c);
    if (uv_write(&a->write, &a->h.stream, &b, 1, ad_written) != 0)
        ad_close(a);
}

static void respond_json(adconn *a, int code, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    respond(a, code, "application/json", s, NULL);
}

/* The JSON object body of a POST: NULL after a 400 has been sent. */
static json_t *body_object(adconn *a, const char *body, size_t len)
{
    json_error_t je;
    if (len == 0) {
        respond(a, 400, NULL, NULL, "a JSON object body is required");
        return NULL;
    }
    json_t *j = json_loadb(body, len, 0, &je);
    if (j == NULL) {
        char m[300];
        snprintf(m, sizeof(m), "invalid JSON body: %s (line %d, column %d)", je.text, je.line,
                 je.column);
        respond(a, 400, NULL, NULL, m);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        respond(a, 400, NULL, NULL, "the JSON body must be an object");
        return NULL;
    }
    return j;
}

/* ------------------------------------------------------------ members -- */

typedef struct {
    json_t *arr;
    uint64_t now_mono, now_unix;
    const char *status; /* filter or NULL */
    const char *tag_k, *tag_v;
    size_t tag_klen;
} members_ctx;

static json_t *member_json(const members_ctx *x, const sh_swim_member_t *m)
{
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
    return o;
}

static void member_cb(void *arg, const sh_swim_member_t *m)
{
    members_ctx *x = arg;
    if (x->status && strcmp(x->status, sh_swim_status_name(m->status)) != 0)
        return;
    json_t *o = member_json(x, m);
    if (x->tag_k) {
        char k[128];
        snprintf(k, sizeof(k), "%.*s", (int)x->tag_klen, x->tag_k);
        const char *v = json_string_value(json_object_get(json_object_get(o, "tags"), k));
        if (v == NULL || strcmp(v, x->tag_v) != 0) {
            json_decref(o);
            return;
        }
    }
    json_array_append_new(x->arr, o);
}

static void members_init(sh_cluster_t *c, members_ctx *x)
{
    memset(x, 0, sizeof(*x));
    x->arr = json_array();
    x->now_mono = uv_now(&c->loop);
    x->now_unix = sh_cluster__wall_ms();
}

/* %XX and '+' in a query value, in place. */
static void url_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '%' && s[1] && s[2]) {
            char h[3] = {s[1], s[2], 0};
            *o++ = (char)strtol(h, NULL, 16);
            s += 2;
        } else {
            *o++ = *s == '+' ? ' ' : *s;
        }
    }
    *o = 0;
}

static void get_members(adconn *a, char *query)
{
    members_ctx x;
    members_init(a->c, &x);
    char *save = NULL;
    for (char *kv = query ? strtok_r(query, "&", &save) : NULL; kv;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq == NULL)
            continue;
        *eq = 0;
        url_decode(eq + 1);
        if (strcmp(kv, "status") == 0) {
            const char *v = eq + 1;
            if (strcmp(v, "alive") && strcmp(v, "suspect") && strcmp(v, "dead") &&
                strcmp(v, "left")) {
                json_decref(x.arr);
                respond(a, 400, NULL, NULL, "status must be alive, suspect, dead or left");
                return;
            }
            x.status = v;
        } else if (strcmp(kv, "tag") == 0) {
            const char *v = eq + 1, *e2 = strchr(v, '=');
            if (e2 == NULL || e2 == v) {
                json_decref(x.arr);
                respond(a, 400, NULL, NULL, "tag must be KEY=VALUE");
                return;
            }
            x.tag_k = v;
            x.tag_klen = (size_t)(e2 - v);
            x.tag_v = e2 + 1;
        }
    }
    sh_swim_foreach(a->c->swim, member_cb, &x);
    respond_json(a, 200, x.arr);
}

static json_t *info_json(sh_cluster_t *c)
{
    if (c->swim == NULL) /* admin only: no cluster block */
        return json_pack("{s:s,s:s,s:b,s:I,s:s}", "name", c->conf->node_name, "admin_listen",
                         c->conf->admin_listen, "cluster", 0, "uptime_ms",
                         (json_int_t)(sh_cluster__wall_ms() - c->started_unix_ms), "version",
                         SHOAL_VERSION);
    members_ctx x;
    members_init(c, &x);
    const sh_swim_member_t *self = sh_swim_member(c->swim, c->conf->node_name);
    json_t *o = self ? member_json(&x, self) : json_object();
    json_decref(x.arr);
    char hex[16];
    snprintf(hex, sizeof(hex), "%08x", (unsigned)sh_keyring_primary_id(c->kr));
    json_object_set_new(o, "cluster", json_string(c->conf->name ? c->conf->name : ""));
    json_object_set_new(o, "bind", json_string(c->conf->bind));
    json_object_set_new(o, "admin_listen", json_string(c->conf->admin_listen));
    json_object_set_new(o, "joined", json_boolean(c->joined));
    json_object_set_new(o, "left", json_boolean(c->left));
    json_object_set_new(o, "members", json_integer((json_int_t)sh_swim_num_members(c->swim, 0)));
    json_object_set_new(o, "members_alive",
                        json_integer((json_int_t)sh_swim_num_members(c->swim, 1)));
    json_object_set_new(o, "health_score", json_integer(sh_swim_health_score(c->swim)));
    json_object_set_new(o, "keyring_primary", json_string(hex));
    json_object_set_new(o, "keyring_keys", json_integer((json_int_t)sh_keyring_count(c->kr)));
    json_object_set_new(o, "uptime_ms",
                        json_integer((json_int_t)(sh_cluster__wall_ms() - c->started_unix_ms)));
    json_object_set_new(o, "version", json_string(SHOAL_VERSION));
    return o;
}

/* --------------------------------------------------------------- join -- */

static void join_finish(joinreq *j)
{
    if (j->a != NULL) {
        adconn *a = j->a;
        a->join = NULL;
        a->busy = 0;
        json_t *o =
            json_pack("{s:I,s:I}", "joined", (json_int_t)j->ok, "failed", (json_int_t)j->failed);
        if (j->ok == 0) {
            json_decref(o);
            respond(a, 502, NULL, NULL, "could not join any of the addresses given");
        } else {
            respond_json(a, 200, o);
        }
    }
    sh_free(j);
}

void sh_cluster__admin_join_done(sh_cluster_t *c, void *req, int ok)
{
    joinreq *j = req;
    if (ok)
        j->ok++;
    else
        j->failed++;
    if (--j->pending == 0)
        join_finish(j);
}

/* A host name given to /v1/join: resolved on libuv's pool, off the loop. */
typedef struct {
    uv_getaddrinfo_t gai;
    sh_cluster_t *c;
    joinreq *j;
    char name[300];
} joinname;

static void join_name_done(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    joinname *r = container_of(g, joinname, gai);
    sh_cluster_t *c = r->c;
    joinreq *j = r->j;
    unsigned started = 0;
    if (status != 0)
        sh_log_warn("cluster: join %s (admin API): %s", r->name, uv_strerror(status));
    for (struct addrinfo *ai = res; status == 0 && !c->stopping && ai != NULL; ai = ai->ai_next) {
        char ip[64], addr[80];
        uint16_t port;
        if (ai->ai_family == AF_INET) {
            uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, ip, sizeof(ip));
            port = ntohs(((const struct sockaddr_in *)ai->ai_addr)->sin_port);
            snprintf(addr, sizeof(addr), "%s:%u", ip, port);
        } else if (ai->ai_family == AF_INET6) {
            uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, ip, sizeof(ip));
            port = ntohs(((const struct sockaddr_in6 *)ai->ai_addr)->sin6_port);
            snprintf(addr, sizeof(addr), "[%s]:%u", ip, port);
        } else {
            continue;
        }
        j->pending++;
        c->joins_pending++;
        c->admin_join = j;
        sh_swim_join(c->swim, addr); /* -> push-pull -> admin_join_done */
        c->admin_join = NULL;
        started++;
    }
    if (res != NULL)
        uv_freeaddrinfo(res);
    sh_free(r);
    if (started > 0)
        sh_cluster__reschedule(c);
    else
        j->failed++;
    if (--j->pending == 0)
        join_finish(j);
}

static void post_join(adconn *a, json_t *body)
{
    sh_cluster_t *c = a->c;
    json_t *addrs = json_object_get(body, "addrs");
    size_t n = json_array_size(addrs), i;
    json_t *v;
    if (!json_is_array(addrs) || n == 0 || n > MAX_JOIN_ADDRS) {
        respond(a, 400, NULL, NULL, "the body must be {\"addrs\": [\"host:port\", ...]} (1 to 64)");
        return;
    }
    json_array_foreach(addrs, i, v)
    {
        /* numeric, or HOST:PORT with a name as the configuration takes */
        struct sockaddr_storage ss;
        const char *s = json_string_value(v);
        const char *colon = s ? strrchr(s, ':') : NULL;
        int port = colon ? atoi(colon + 1) : 0;
        if (s == NULL ||
            (sh_cluster__parse_addr(s, &ss) != 0 &&
             (colon == NULL || colon == s || port <= 0 || port > 65535 || strlen(s) >= 300))) {
            char m[400];
            snprintf(m, sizeof(m), "invalid address %.300s: host:port is needed",
                     s ? s : "(not a string)");
            respond(a, 400, NULL, NULL, m);
            return;
        }
    }
    if (c->left) {
        /* Serf's -rejoin: alive again under a new incarnation */
        sh_swim_rejoin(c->swim, uv_now(&c->loop));
        c->left = 0;
        sh_cluster__join_resume(c);
        sh_log_notice("cluster: joining again after a leave (admin API)");
    }
    joinreq *j = sh_new(joinreq);
    j->a = a;
    j->pending = (unsigned)n + 1; /* +1 held until every join is started */
    a->join = j;
    a->busy = 1;
    json_array_foreach(addrs, i, v)
    {
        struct sockaddr_storage ss;
        const char *s = json_string_value(v);
        if (sh_cluster__parse_addr(s, &ss) == 0) {
            c->joins_pending++;
            c->admin_join = j;
            sh_swim_join(c->swim, s); /* -> push-pull -> admin_join_done */
            c->admin_join = NULL;
            continue;
        }
        joinname *r = sh_new(joinname);
        r->c = c;
        r->j = j;
        snprintf(r->name, sizeof(r->name), "%s", s);
        char *colon = strrchr(r->name, ':');
        *colon = '\0';
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        if (uv_getaddrinfo(&c->loop, &r->gai, join_name_done, r->name, colon + 1, &hints) != 0) {
            sh_free(r);
            j->failed++;
            j->pending--; /* never 0 here: the +1 is held */
        } else {
            *colon = ':'; /* the whole "host:port" for the log (getaddrinfo copied it) */
        }
    }
    sh_cluster__reschedule(c);
    if (--j->pending == 0) /* every push-pull failed at once */
        join_finish(j);
}

/* -------------------------------------------------------------- keyring -- */

static int is_live(void *ud, const char *name)
{
    const sh_swim_member_t *m = sh_swim_member(ud, name);
    return m != NULL && (m->status == SH_SWIM_ALIVE || m->status == SH_SWIM_SUSPECT);
}

static json_t *keyring_json(sh_cluster_t *c)
{
    uint32_t ids[SH_KEYRING_MAX_KEYS];
    unsigned n = sh_keyring_ids(c->kr, ids, SH_KEYRING_MAX_KEYS), members = 0;
    json_t *arr = json_array(), *holders = json_object(), *prim = json_object();
    char hex[16];
    for (unsigned i = 0; i < n && i < SH_KEYRING_MAX_KEYS; i++) {
        snprintf(hex, sizeof(hex), "%08x", (unsigned)ids[i]);
        json_array_append_new(arr, json_string(hex));
        unsigned h = sh_keysync_holders(c->ks, ids[i], is_live, c->swim, &members);
        json_object_set_new(holders, hex, json_integer((json_int_t)h));
        json_object_set_new(
            prim, hex,
            json_integer((json_int_t)sh_keysync_primary_users(c->ks, ids[i], is_live, c->swim)));
    }
    if (n == 0)
        sh_keysync_holders(c->ks, 0, is_live, c->swim, &members);
    snprintf(hex, sizeof(hex), "%08x", (unsigned)sh_keyring_primary_id(c->kr));
    /* holders: members holding each key; primary_of: members sealing under it */
    return json_pack("{s:o,s:s,s:o,s:o,s:I,s:I}", "keys", arr, "primary", hex, "holders", holders,
                     "primary_of", prim, "members", (json_int_t)members, "gen",
                     (json_int_t)sh_keysync_gen(c->ks));
}

static void post_keyring(adconn *a, const char *op, json_t *body)
{
    sh_cluster_t *c = a->c;
    const char *text = json_string_value(json_object_get(body, "key"));
    uint8_t key[SH_KEYRING_KEYLEN];
    if (strcmp(op, "install") && strcmp(op, "use") && strcmp(op, "remove")) {
        respond(a, 404, NULL, NULL, "unknown keyring operation: install, use or remove");
        return;
    }
    if (text == NULL || sh_keyring_parse_key(text, key) != 0) {
        respond(a, 400, NULL, NULL,
                "the body must be {\"key\": 32 bytes as 64 hex digits or base64}");
        return;
    }
    uint32_t id = sh_keyring_key_id(key);
    /* The two unsafe steps of a rotation are refused until they are safe,
     * or a member would be cut off: sealing under a key some member lacks,
     * or dropping a key some member still seals under. */
    unsigned members = 0, held = sh_keysync_holders(c->ks, id, is_live, c->swim, &members);
    char m[256];
    if (strcmp(op, "use") == 0 && sh_keyring_primary_id(c->kr) != id && held > 0 &&
        held < members) {
        sodium_memzero(key, sizeof(key));
        snprintf(m, sizeof(m),
                 "key %08x is held by %u of %u members: wait until `nodectl keys list` shows "
                 "it held by all before making it primary",
                 (unsigned)id, held, members);
        respond(a, 409, NULL, NULL, m);
        return;
    }
    unsigned users = sh_keysync_primary_users(c->ks, id, is_live, c->swim);
    if (strcmp(op, "remove") == 0 && sh_keyring_primary_id(c->kr) != id && users > 0) {
        sodium_memzero(key, sizeof(key));
        snprintf(m, sizeof(m),
                 "key %08x is still the primary of %u member(s): wait until the new primary "
                 "has spread before removing it",
                 (unsigned)id, users);
        respond(a, 409, NULL, NULL, m);
        return;
    }
    int rc = sh_keysync_op(c->ks, op, key, sh_cluster__wall_ms());
    sodium_memzero(key, sizeof(key));
    switch (rc) {
    case 0:
        /* the key never appears in a reply or a log line, only its id */
        sh_log_notice("cluster: keyring %s %08x (primary %08x), gossiped", op, (unsigned)id,
                      (unsigned)sh_keyring_primary_id(c->kr));
        sh_cluster__reschedule(c);
        respond_json(a, 200, keyring_json(c));
        return;
    case SH_ENOENT:
        respond(a, 404, NULL, NULL, "no such key in the keyring");
        return;
    case SH_EEXIST:
        respond(a, 409, NULL, NULL, "the key (or one with the same id) is already installed");
        return;
    case SH_ESTATE:
        respond(a, 409, NULL, NULL,
                "the primary key cannot be removed: make another key primary first");
        return;
    case SH_ELIMIT:
        respond(a, 409, NULL, NULL, "the keyring is full");
        return;
    default:
        respond(a, 500, NULL, NULL, sh_strerror(rc));
    }
}

/* ------------------------------------------------------------- reload -- */

static void reload_work(uv_work_t *w)
{
    adconn *a = container_of(w, adconn, work);
    a->rc = a->c->hooks.reload(a->c->hooks.ud, a->msg, sizeof(a->msg));
}

static void reload_done(uv_work_t *w, int status)
{
    adconn *a = container_of(w, adconn, work);
    a->busy = 0;
    sh_cluster__event(a->c, "reload", json_pack("{s:b,s:s}", "ok", a->rc == 0, "message", a->msg));
    if (a->closed) {
        ad_free(a);
        return;
    }
    if (a->rc == 0)
        respond_json(a, 200, json_pack("{s:s}", "result", a->msg));
    else
        respond(a, 400, NULL, NULL, a->msg);
}

static void post_reload(adconn *a)
{
    if (a->c->hooks.reload == NULL) {
        respond(a, 501, NULL, NULL, "this node cannot reload");
        return;
    }
    a->busy = 1;
    snprintf(a->msg, sizeof(a->msg), "reload did not run");
    if (uv_queue_work(&a->c->loop, &a->work, reload_work, reload_done) != 0) {
        a->busy = 0;
        respond(a, 500, NULL, NULL, "cannot queue the reload");
    }
}

/* ------------------------------------------------------------- events -- */

static void ev_send(adconn *a, const char *s, size_t n)
{
    if (uv_stream_get_write_queue_size(&a->h.stream) > SUB_MAX_QUEUED) {
        a->c->events_dropped++;
        ad_close(a); /* a reader this slow would see a hole: it is told by EOF */
        return;
    }
    if (a->ssl == NULL) {
        raw_send(a, s, n);
        return;
    }
    if (SSL_write(a->ssl, s, (int)n) != (int)n) {
        ad_close(a);
        return;
    }
    tls_flush(a);
}

void sh_cluster__event(sh_cluster_t *c, const char *type, json_t *data)
{
    if (c->nsubs == 0) {
        json_decref(data);
        return;
    }
    char *text;
    if (type == NULL) {
        text = strdup(": keep-alive\n\n");
    } else {
        json_object_set_new(data, "type", json_string(type));
        json_object_set_new(data, "time_unix_ms", json_integer((json_int_t)sh_cluster__wall_ms()));
        json_object_set_new(data, "node", json_string(c->conf->node_name));
        char *d = json_dumps(data, JSON_COMPACT);
        size_t cap = strlen(d) + strlen(type) + 64;
        text = malloc(cap);
        if (text == NULL)
            abort();
        snprintf(text, cap, "id: %llu\nevent: %s\ndata: %s\n\n", (unsigned long long)++c->event_seq,
                 type, d);
        free(d);
    }
    json_decref(data);
    size_t n = strlen(text);
    /* ev_send may drop a subscriber from the array: walk a copy */
    void *subs[SH_ADMIN_MAX_EVENT_SUBS];
    unsigned ns = c->nsubs;
    memcpy(subs, c->subs, ns * sizeof(*subs));
    for (unsigned i = 0; i < ns; i++)
        ev_send(subs[i], text, n);
    free(text);
}

static void get_events(adconn *a)
{
    sh_cluster_t *c = a->c;
    if (c->nsubs >= SH_ADMIN_MAX_EVENT_SUBS) {
        respond(a, 503, NULL, NULL, "too many event streams");
        return;
    }
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
                               ": shoal event stream\n\n";
    a->sub = 1;
    c->subs[c->nsubs++] = a;
    ev_send(a, head, sizeof(head) - 1);
    /* keep reading so that the client's close is seen */
}

/* ------------------------------------------------------ text formats -- */

static void node_status(sh_cluster_t *c, sh_cluster_node_status_t *st)
{
    memset(st, 0, sizeof(*st));
    if (c->hooks.status)
        c->hooks.status(c->hooks.ud, st);
}

static void get_nginx_status(adconn *a)
{
    sh_cluster_node_status_t st;
    node_status(a->c, &st);
    char buf[512];
    snprintf(buf, sizeof(buf),
             "Active connections: %llu \nserver accepts handled requests\n %llu %llu %llu \n"
             "Reading: %llu Writing: %llu Waiting: %llu \n",
             (unsigned long long)st.active, (unsigned long long)st.accepted,
             (unsigned long long)st.handled, (unsigned long long)st.requests,
             (unsigned long long)st.reading, (unsigned long long)st.writing,
             (unsigned long long)st.waiting);
    respond(a, 200, "text/plain", strdup(buf), NULL);
}

typedef struct {
    size_t alive, suspect, dead, left;
} counts_t;

static void count_cb(void *arg, const sh_swim_member_t *m)
{
    counts_t *k = arg;
    k->alive += m->status == SH_SWIM_ALIVE;
    k->suspect += m->status == SH_SWIM_SUSPECT;
    k->dead += m->status == SH_SWIM_DEAD;
    k->left += m->status == SH_SWIM_LEFT;
}

static void metric(FILE *f, const char *name, const char *type, const char *help,
                   unsigned long long v)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, v);
}

/* The cluster's part of /metrics: members, gossip, keyring. */
static void gossip_metrics(sh_cluster_t *c, FILE *f)
{
    counts_t k = {0, 0, 0, 0};
    sh_swim_foreach(c->swim, count_cb, &k);
    fprintf(f, "# HELP shoal_cluster_members Members by status, as this node sees them.\n"
               "# TYPE shoal_cluster_members gauge\n");
    fprintf(f, "shoal_cluster_members{status=\"alive\"} %zu\n", k.alive);
    fprintf(f, "shoal_cluster_members{status=\"suspect\"} %zu\n", k.suspect);
    fprintf(f, "shoal_cluster_members{status=\"dead\"} %zu\n", k.dead);
    fprintf(f, "shoal_cluster_members{status=\"left\"} %zu\n", k.left);
    const sh_swim_stats_t *s = sh_swim_stats(c->swim);
    const sh_keyring_stats_t *ks = sh_keyring_stats(c->kr);
    const sh_keysync_stats_t *ys = sh_keysync_stats(c->ks);
    metric(f, "shoal_gossip_packets_sent_total", "counter", "Gossip packets sent.",
           s->packets_sent);
    metric(f, "shoal_gossip_packets_received_total", "counter", "Gossip packets received.",
           s->packets_recv);
    metric(f, "shoal_gossip_sent_bytes_total", "counter", "Gossip bytes sent (UDP).",
           s->bytes_sent);
    metric(f, "shoal_gossip_received_bytes_total", "counter", "Gossip bytes received (UDP).",
           s->bytes_recv);
    metric(f, "shoal_gossip_probes_total", "counter", "Probes sent.", s->probes);
    metric(f, "shoal_gossip_suspicions_total", "counter", "Members this node suspected.",
           s->suspects_raised);
    metric(f, "shoal_gossip_refutes_total", "counter", "Suspicions of this node it refuted.",
           s->refutes);
    metric(f, "shoal_gossip_deaths_total", "counter", "Members this node declared failed.",
           s->deaths_declared);
    metric(f, "shoal_gossip_probe_failures_total", "counter", "Probes without an ack.",
           s->probe_failures);
    metric(f, "shoal_gossip_undecodable_total", "counter", "Opened packets refused at decode.",
           s->undecodable);
    metric(f, "shoal_gossip_broadcast_overflows_total", "counter",
           "Updates dropped, the broadcast queue being full.", s->bcast_overflows);
    fprintf(f, "# HELP shoal_gossip_dropped_total Packets refused before decoding, by reason.\n"
               "# TYPE shoal_gossip_dropped_total counter\n");
    fprintf(f, "shoal_gossip_dropped_total{reason=\"short\"} %llu\n",
            (unsigned long long)ks->short_packet);
    fprintf(f, "shoal_gossip_dropped_total{reason=\"bad_version\"} %llu\n",
            (unsigned long long)ks->bad_version);
    fprintf(f, "shoal_gossip_dropped_total{reason=\"unknown_key\"} %llu\n",
            (unsigned long long)ks->unknown_key);
    fprintf(f, "shoal_gossip_dropped_total{reason=\"bad_tag\"} %llu\n",
            (unsigned long long)ks->bad_tag);
    fprintf(f, "shoal_gossip_dropped_total{reason=\"too_big\"} %llu\n",
            (unsigned long long)c->wst.too_big);
    fprintf(f, "# HELP shoal_gossip_rejected_total Push-pull connections (gossip TCP) refused, "
               "by reason.\n# TYPE shoal_gossip_rejected_total counter\n");
    for (int i = 0; i < SH_PP_R_N; i++)
        fprintf(f, "shoal_gossip_rejected_total{reason=\"%s\"} %llu\n", sh_cluster__pp_reasons[i],
                (unsigned long long)c->pp.rejected[i]);
    fprintf(f, "# HELP shoal_gossip_pushpull_connections Push-pull connections open.\n"
               "# TYPE shoal_gossip_pushpull_connections gauge\n");
    fprintf(f, "shoal_gossip_pushpull_connections{direction=\"in\"} %u\n", c->pp.n_in);
    fprintf(f, "shoal_gossip_pushpull_connections{direction=\"out\"} %u\n", c->pp.n_out);
    metric(f, "shoal_gossip_pushpull_buffered_bytes", "gauge",
           "Bytes buffered for push-pull frames being read.", c->pp.buffered);
    metric(f, "shoal_gossip_pushpull_legacy_total", "counter",
           "Push-pull frames in the legacy format (older peers), received and sent.",
           c->pp.legacy_in + c->pp.legacy_out);
    metric(f, "shoal_gossip_health_score", "gauge", "Lifeguard local health (0 is healthy).",
           (unsigned long long)sh_swim_health_score(c->swim));
    metric(f, "shoal_keyring_keys", "gauge", "Gossip keys installed.", sh_keyring_count(c->kr));
    metric(f, "shoal_keyring_generation", "gauge", "Keyring generation (keysync).",
           sh_keysync_gen(c->ks));
    metric(f, "shoal_keyring_malformed_total", "counter", "Keyring messages refused.",
           ys->malformed);
    metric(f, "shoal_keyring_persist_failures_total", "counter", "Keyring file writes that failed.",
           ys->persist_failed);
}

static void get_metrics(adconn *a)
{
    sh_cluster_t *c = a->c;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL) {
        respond(a, 500, NULL, NULL, "out of memory");
        return;
    }
    sh_cluster_node_status_t st;
    node_status(c, &st);
    fprintf(f,
            "# HELP shoal_build_info The build: version, 1.\n# TYPE shoal_build_info gauge\n"
            "shoal_build_info{version=\"%s\"} 1\n",
            SHOAL_VERSION);
    fprintf(f,
            "# HELP shoal_start_time_seconds When the node started, seconds since the epoch.\n"
            "# TYPE shoal_start_time_seconds gauge\nshoal_start_time_seconds %llu.%03llu\n",
            (unsigned long long)(c->started_unix_ms / 1000),
            (unsigned long long)(c->started_unix_ms % 1000));
    metric(f, "shoal_connections_accepted_total", "counter", "Client connections accepted.",
           st.accepted);
    metric(f, "shoal_connections_handled_total", "counter", "Client connections handled.",
           st.handled);
    /* the states partition the open connections: their sum is nginx's
     * "active" (nothing counted twice) */
    fprintf(f, "# HELP shoal_connections Client connections open, by state (reading a request, "
               "writing a response, waiting idle); they sum to the open connections.\n"
               "# TYPE shoal_connections gauge\n");
    fprintf(f, "shoal_connections{state=\"reading\"} %llu\n", (unsigned long long)st.reading);
    fprintf(f, "shoal_connections{state=\"writing\"} %llu\n", (unsigned long long)st.writing);
    fprintf(f, "shoal_connections{state=\"waiting\"} %llu\n", (unsigned long long)st.waiting);
    metric(f, "shoal_proxy_protocol_bad_total", "counter",
           "Client connections closed for a malformed PROXY protocol header.",
           st.proxy_protocol_bad);
    metric(f, "shoal_http2_early_responses_total", "counter",
           "HTTP/2 responses complete before the request body, followed by RST_STREAM(NO_ERROR).",
           st.h2_early_responses);
    metric(f, "shoal_reloads_total", "counter", "Configuration reloads applied.", st.reloads);
    metric(f, "shoal_reload_failures_total", "counter", "Configuration reloads refused.",
           st.reload_failures);
    metric(f, "shoal_workers", "gauge", "Worker threads running (all generations).", st.workers);
    if (c->swim != NULL)
        gossip_metrics(c, f);
    metric(f, "shoal_admin_requests_total", "counter", "Admin API requests.", c->admin_requests);
    metric(f, "shoal_admin_unauthorized_total", "counter", "Admin requests without a valid token.",
           c->admin_unauthorized);
    metric(f, "shoal_admin_errors_total", "counter", "Admin requests answered 4xx/5xx.",
           c->admin_bad_requests);
    fprintf(f, "# HELP shoal_admin_rejected_total Admin connections and requests refused, "
               "by reason.\n# TYPE shoal_admin_rejected_total counter\n");
    for (int i = 0; i < SH_ADMIN_R_N; i++)
        fprintf(f, "shoal_admin_rejected_total{reason=\"%s\"} %llu\n", sh_cluster__admin_reasons[i],
                (unsigned long long)c->admin_rejected[i]);
    metric(f, "shoal_admin_connections", "gauge", "Admin connections open.", c->nadmin);
    metric(f, "shoal_admin_event_streams", "gauge", "Open admin event streams.", c->nsubs);
    metric(f, "shoal_admin_event_streams_dropped_total", "counter",
           "Event streams closed for not reading.", c->events_dropped);
    if (c->hooks.metrics)
        c->hooks.metrics(c->hooks.ud, f);
    sh_cluster__services_metrics(c, f);
    fclose(f);
    respond(a, 200, "text/plain; version=0.0.4", buf, NULL);
}

static json_t *stats_json(sh_cluster_t *c)
{
    const sh_swim_stats_t *st = sh_swim_stats(c->swim);
    const sh_keyring_stats_t *ks = sh_keyring_stats(c->kr);
    return json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:i}", "packets_sent",
        (json_int_t)st->packets_sent, "packets_recv", (json_int_t)st->packets_recv, "probes",
        (json_int_t)st->probes, "probe_failures", (json_int_t)st->probe_failures, "refutes",
        (json_int_t)st->refutes, "undecodable", (json_int_t)st->undecodable, "dropped_short",
        (json_int_t)ks->short_packet, "dropped_bad_version", (json_int_t)ks->bad_version,
        "dropped_unknown_key", (json_int_t)ks->unknown_key, "dropped_bad_tag",
        (json_int_t)ks->bad_tag, "opened", (json_int_t)ks->opened, "dropped_too_big",
        (json_int_t)c->wst.too_big, "health_score", sh_swim_health_score(c->swim), "keyring_keys",
        (int)sh_keyring_count(c->kr));
}

/* ------------------------------------------------------------- routing -- */

/* The Authorization header's bearer token in the head, or NULL. */
static const char *bearer(adconn *a, size_t *len)
{
    const char *end = a->req + a->body_off;
    for (const char *l = strstr(a->req, "\r\n"); l && l + 2 < end; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, "Authorization:", 14) != 0)
            continue;
        const char *v = l + 16;
        while (*v == ' ' || *v == '\t')
            v++;
        if (strncasecmp(v, "Bearer ", 7) != 0)
            return NULL;
        v += 7;
        while (*v == ' ')
            v++;
        const char *e = strstr(v, "\r\n");
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *len = (size_t)(e - v);
        return v;
    }
    return NULL;
}

/*
 * Whether the request may go on. The admin token opens everything. The
 * read-only monitoring paths (scrape: /metrics, /nginx_status) also take
 * the scrape-only token when one is set, and are open without any token
 * on a loopback or unix-socket listener that has no scrape token.
 */
static int authorized(adconn *a, int scrape)
{
    sh_cluster_conf_t *cc = a->c->conf;
    if (scrape && !cc->has_metrics_token && cc->admin_local)
        return 1;
    if (!cc->has_token && !(scrape && cc->has_metrics_token))
        return 1;
    size_t len = 0;
    const char *tok = bearer(a, &len);
    if (tok == NULL)
        return 0;
    uint8_t h[32];
    crypto_generichash(h, sizeof(h), (const uint8_t *)tok, len, NULL, 0);
    int ok = cc->has_token && sodium_memcmp(h, cc->token_hash, sizeof(h)) == 0;
    if (!ok && scrape && cc->has_metrics_token)
        ok = sodium_memcmp(h, cc->metrics_token_hash, sizeof(h)) == 0;
    return ok;
}

/* The paths that need the cluster (a cluster {} block). */
static int cluster_path(const char *path)
{
    static const char *const paths[] = {"/v1/members", "/v1/keyring",     "/v1/stats", "/v1/join",
                                        "/v1/leave",   "/v1/force-leave", NULL};
    for (int i = 0; paths[i]; i++)
        if (strcmp(path, paths[i]) == 0)
            return 1;
    return strncmp(path, "/v1/keyring/", 12) == 0;
}

/* GET /v1/cache/stats: the node's caches (its hook), [] without one. */
static void get_cache_stats(adconn *a)
{
    sh_cluster_t *c = a->c;
    char *s = c->hooks.cache_stats ? c->hooks.cache_stats(c->hooks.ud) : NULL;
    respond(a, 200, "application/json", s ? s : strdup("[]"), NULL);
}

void sh_admin_wait_reply(sh_admin_wait_t *w, int code, json_t *out, const char *err)
{
    adconn *a = w->a;
    sh_free(w);
    if (a == NULL) {
        json_decref(out);
        return;
    }
    a->wait = NULL;
    a->busy = 0;
    if (out != NULL)
        respond_json(a, code, out);
    else
        respond(a, code, NULL, NULL, err);
}

/* POST /v1/cache/purge (admin_cache.c; cluster-wide: answered later). */
static void post_cache_purge(adconn *a, json_t *j)
{
    json_t *out = NULL;
    const char *err = NULL;
    sh_admin_wait_t *w = sh_new(sh_admin_wait_t);
    w->a = a;
    a->wait = w;
    a->busy = 1;
    int code = sh_admin_cache_purge(j, &out, &err, w);
    if (code == 0)
        return; /* maybe answered already */
    sh_admin_wait_reply(w, code, out, err);
}

static void route(adconn *a, const char *method, char *path)
{
    sh_cluster_t *c = a->c;
    const char *body = a->req + a->body_off;
    size_t blen = a->body_len;
    char *query = strchr(path, '?');
    if (query)
        *query++ = 0;
    c->admin_requests++;
    sh_admin_ui_file_t ui; /* static files, no secret: the page asks for the token */
    if (strcmp(method, "GET") == 0 && sh_admin_ui_find(path, &ui)) {
        respond(a, 200, ui.head, sh_admin_ui_body(&ui), NULL);
        return;
    }
    int scrape = strcmp(path, "/metrics") == 0 || strcmp(path, "/nginx_status") == 0;
    if (!authorized(a, scrape)) {
        c->admin_unauthorized++;
        c->admin_rejected[SH_ADMIN_R_UNAUTHORIZED]++;
        respond(a, 401, NULL, NULL, "a valid bearer token is required (--token or SHOAL_TOKEN)");
        return;
    }
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    static const char *const gets[] = {
        "/v1/members", "/v1/info", "/v1/keyring",   "/v1/upstreams",   "/v1/stats",
        "/v1/events",  "/metrics", "/nginx_status", "/v1/cache/stats", NULL};
    static const char *const posts[] = {"/v1/join",   "/v1/leave",       "/v1/force-leave",
                                        "/v1/reload", "/v1/cache/purge", NULL};
    char *svc_json = NULL; /* a service's own path (service.h) */
    if (get && sh_cluster__services_admin(c, path, query, &svc_json)) {
        if (svc_json != NULL)
            respond(a, 200, "application/json", svc_json, NULL);
        else
            respond(a, 500, NULL, NULL, "the service gave no answer");
        return;
    }
    int is_get = 0, is_post = strncmp(path, "/v1/keyring/", 12) == 0;
    for (int i = 0; gets[i]; i++)
        is_get |= strcmp(path, gets[i]) == 0;
    for (int i = 0; posts[i]; i++)
        is_post |= strcmp(path, posts[i]) == 0;
    if (!is_get && !is_post) {
        respond(a, 404, NULL, NULL, "no such path (the API is under /v1/)");
        return;
    }
    if ((is_get && !get) || (is_post && !post)) {
        respond(a, 405, NULL, NULL, is_get ? "use GET here" : "use POST here");
        return;
    }
    if (c->swim == NULL && cluster_path(path)) {
        respond(a, 404, NULL, NULL,
                "this node runs no cluster (no cluster {} block): only /v1/info, "
                "/v1/upstreams, /v1/reload, /v1/events, /metrics and /nginx_status here");
        return;
    }
    if (get) {
        if (strcmp(path, "/v1/members") == 0) {
            get_members(a, query);
        } else if (strcmp(path, "/v1/info") == 0) {
            respond_json(a, 200, info_json(c));
        } else if (strcmp(path, "/v1/keyring") == 0) {
            respond_json(a, 200, keyring_json(c));
        } else if (strcmp(path, "/v1/stats") == 0) {
            respond_json(a, 200, stats_json(c));
        } else if (strcmp(path, "/v1/upstreams") == 0) {
            char *s = c->hooks.upstreams ? c->hooks.upstreams(c->hooks.ud) : NULL;
            respond(a, 200, "application/json", s ? s : strdup("[]"), NULL);
        } else if (strcmp(path, "/v1/events") == 0) {
            get_events(a);
        } else if (strcmp(path, "/metrics") == 0) {
            get_metrics(a);
        } else if (strcmp(path, "/v1/cache/stats") == 0) {
            get_cache_stats(a);
        } else {
            get_nginx_status(a);
        }
        return;
    }
    if (strcmp(path, "/v1/reload") == 0) {
        post_reload(a);
        return;
    }
    if (strcmp(path, "/v1/leave") == 0) {
        if (c->left) {
            respond(a, 409, NULL, NULL, "this node has already left the cluster");
            return;
        }
        c->left = 1;
        uint64_t now = uv_now(&c->loop);
        sh_swim_leave(c->swim, now);
        sh_swim_tick(c->swim, now); /* push the goodbye out now */
        sh_cluster__reschedule(c);
        sh_log_notice("cluster: left the cluster (admin API); still serving HTTP");
        respond_json(a, 200, json_pack("{s:b}", "left", 1));
        return;
    }
    json_t *j = body_object(a, body, blen);
    if (j == NULL)
        return;
    if (strcmp(path, "/v1/cache/purge") == 0) {
        post_cache_purge(a, j);
    } else if (strcmp(path, "/v1/join") == 0) {
        post_join(a, j);
    } else if (strcmp(path, "/v1/force-leave") == 0) {
        const char *name = json_string_value(json_object_get(j, "name"));
        int rc = name ? sh_swim_force_leave(c->swim, name, uv_now(&c->loop)) : SH_EINVAL;
        if (rc == SH_EINVAL)
            respond(a, 400, NULL, NULL, "the body must be {\"name\": \"NODE\"}");
        else if (rc == SH_ENOENT)
            respond(a, 404, NULL, NULL, "no member of that name");
        else if (rc == SH_ESTATE)
            respond(a, 409, NULL, NULL,
                    strcmp(name, c->conf->node_name) == 0
                        ? "a node cannot force itself out: use leave"
                        : "the member is alive: force-leave is for failed members");
        else {
            sh_log_notice("cluster: force-leave %s (admin API)", name);
            sh_cluster__reschedule(c);
            respond_json(a, 200, json_pack("{s:s,s:s}", "name", name, "status", "left"));
        }
    } else {
        post_keyring(a, path + 12, j);
    }
    json_decref(j);
}

static void ad_respond(adconn *a, int code)
{
    char method[16] = "", path[256] = "";
    a->deadline = 0; /* the request is whole: the operation's own limits apply */
    if (code != 0) {
        a->c->admin_rejected[code == 413 ? SH_ADMIN_R_TOO_LARGE : SH_ADMIN_R_BAD_REQUEST]++;
        respond(a, code, NULL, NULL, NULL);
        return;
    }
    if (sscanf(a->req, "%15s %255s", method, path) != 2 || path[0] != '/') {
        a->c->admin_rejected[SH_ADMIN_R_BAD_REQUEST]++;
        respond(a, 400, NULL, NULL, "not an HTTP request line");
        return;
    }
    route(a, method, path);
}

static char tls_raw[16384]; /* the cluster thread's: read callbacks run one at a time */

static void ad_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    adconn *a = h->data;
    if (a->ssl != NULL) {
        *buf = uv_buf_init(tls_raw, sizeof(tls_raw));
        return;
    }
    if (a->body_off > 0 && a->len >= a->body_off + a->body_len) {
        /* request complete (an event stream): read into the scratch tail */
        a->len = a->body_off + a->body_len;
    }
    *buf = uv_buf_init(a->req + a->len, (unsigned)(sizeof(a->req) - 1 - a->len));
}

static void ad_input(adconn *a, ssize_t nread);

/* TLS: feed the bytes read to OpenSSL, answer its handshake, and hand the
 * plaintext it gives on to ad_input. */
static void tls_read(adconn *a, ssize_t nread, const uv_buf_t *buf)
{
    if (nread <= 0)
        return;
    BIO_write(SSL_get_rbio(a->ssl), buf->base, (int)nread);
    if (!SSL_is_init_finished(a->ssl)) {
        ERR_clear_error();
        int r = SSL_do_handshake(a->ssl);
        if (tls_flush(a) != 0)
            return;
        if (r != 1) {
            int e = SSL_get_error(a->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                a->c->admin_rejected[SH_ADMIN_R_BAD_REQUEST]++;
                ad_close(a); /* not TLS, or a handshake that failed */
            }
            return;
        }
    }
    while (!a->closing && !(a->sub || a->busy || a->resp)) {
        size_t room = sizeof(a->req) - 1 - a->len;
        if (room == 0) {
            ad_input(a, 0);
            return;
        }
        ERR_clear_error();
        int n = SSL_read(a->ssl, a->req + a->len, (int)room);
        if (n <= 0) {
            int e = SSL_get_error(a->ssl, n);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                ad_close(a);
            return;
        }
        ad_input(a, n);
    }
}

static void ad_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    adconn *a = s->data;
    if (nread < 0 || (nread == 0 && a->ssl == NULL && a->len >= sizeof(a->req) - 1)) {
        ad_close(a);
        return;
    }
    if (a->sub || a->busy || a->resp)
        return; /* after the request: only EOF matters */
    if (a->ssl != NULL)
        tls_read(a, nread, buf);
    else
        ad_input(a, nread);
}

/* nread more bytes of the request are at a->req + a->len (0 when full). */
static void ad_input(adconn *a, ssize_t nread)
{
    if (nread == 0 && a->len >= sizeof(a->req) - 1) {
        ad_respond(a, 413);
        return;
    }
    /* the head is parsed as a C string: a NUL in it is a bad request (it
     * would hide the end of the head and wait for the deadline) */
    if (a->body_off == 0 && memchr(a->req + a->len, 0, (size_t)nread) != NULL) {
        a->len += (size_t)nread;
        a->req[a->len] = 0;
        ad_respond(a, 400);
        return;
    }
    a->len += (size_t)nread;
    a->req[a->len] = 0;
    if (a->body_off == 0) {
        char *end = strstr(a->req, "\r\n\r\n");
        if (end == NULL) {
            if (a->len >= sizeof(a->req) - 1)
                ad_respond(a, 413); /* header limit */
            return;
        }
        a->body_off = (size_t)(end - a->req) + 4;
        /* Content-Length, the only body framing the admin API takes. */
        for (char *l = strstr(a->req, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n")) {
            if (strncasecmp(l + 2, "Content-Length:", 15) == 0) {
                char *e;
                long v = strtol(l + 17, &e, 10);
                if (v < 0 || (size_t)v > sizeof(a->req) - 1 - a->body_off) {
                    ad_respond(a, 413);
                    return;
                }
                a->body_len = (size_t)v;
            } else if (strncasecmp(l + 2, "Transfer-Encoding:", 18) == 0) {
                ad_respond(a, 400);
                return;
            }
        }
    }
    if (a->len - a->body_off >= a->body_len)
        ad_respond(a, 0);
}

/* The oldest connection still reading its request: nobody we know yet. */
static adconn *oldest_reading(sh_cluster_t *c)
{
    for (adconn *a = c->admin_head; a; a = a->next)
        if (!a->sub && !a->busy && a->resp == NULL)
            return a;
    return NULL;
}

static void admin_accept(uv_stream_t *server, int status)
{
    sh_cluster_t *c = container_of((void *)server, sh_cluster_t, admin);
    if (status < 0 || c->stopping)
        return;
    if (c->nadmin >= MAX_ADMIN_CONNS) {
        adconn *old = oldest_reading(c);
        if (old != NULL) {
            c->admin_rejected[SH_ADMIN_R_EVICTED]++;
            ad_close(old);
        }
    }
    adconn *a = sh_new(adconn);
    a->magic = SH_ADMIN_MAGIC;
    a->c = c;
    c->nadmin++;
    if (c->admin_unix)
        uv_pipe_init(&c->loop, &a->h.pipe, 0);
    else
        uv_tcp_init(&c->loop, &a->h.tcp);
    a->h.handle.data = a;
    if (uv_accept(server, &a->h.stream) != 0) {
        ad_close(a);
        return;
    }
    if (c->admin_tls != NULL) {
        a->ssl = SSL_new(c->admin_tls);
        if (a->ssl == NULL)
            abort();
        SSL_set_bio(a->ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
        SSL_set_accept_state(a->ssl);
    }
    /* linked before respond, so that its send deadline applies */
    a->prev = c->admin_tail;
    if (a->prev)
        a->prev->next = a;
    else
        c->admin_head = a;
    c->admin_tail = a;
    if (c->nadmin > MAX_ADMIN_CONNS) {
        c->admin_rejected[SH_ADMIN_R_CONN_LIMIT]++;
        respond(a, 503, NULL, NULL, "too many admin connections");
        return;
    }
    a->deadline = uv_now(&c->loop) + ADMIN_HEADER_MS;
    admin_arm(c);
    if (uv_read_start(&a->h.stream, ad_alloc, ad_read) != 0)
        ad_close(a);
}

/* "unix:/path" or "/path": a unix socket path, else NULL. */
static const char *unix_path(const char *listen)
{
    if (strncmp(listen, "unix:", 5) == 0)
        return listen + 5;
    return listen[0] == '/' ? listen : NULL;
}

/* The TLS context of admin_ssl_certificate/_key: 0, or SH_EIO logged. */
static int tls_setup(sh_cluster_t *c)
{
    const sh_cluster_conf_t *cc = c->conf;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        abort();
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cc->admin_ssl_certificate) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, cc->admin_ssl_certificate_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char why[256];
        ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
        sh_log_err("admin: cannot use admin_ssl_certificate \"%s\" with key \"%s\": %s",
                   cc->admin_ssl_certificate, cc->admin_ssl_certificate_key, why);
        SSL_CTX_free(ctx);
        return SH_EIO;
    }
    c->admin_tls = ctx;
    return 0;
}

void sh_cluster__admin_dispose(sh_cluster_t *c)
{
    SSL_CTX_free(c->admin_tls);
    c->admin_tls = NULL;
}

int sh_cluster__admin_bind(sh_cluster_t *c)
{
    const char *l = c->conf->admin_listen, *up = unix_path(l);
    int rc = 0;
    uv_timer_init(&c->loop, &c->admin_timer);
    /* Initialised whatever happens, so close_all can close it. */
    if (strcmp(l, "off") == 0) {
        uv_tcp_init(&c->loop, &c->admin.tcp);
        return 0;
    }
    if (c->conf->admin_ssl_certificate != NULL && tls_setup(c) != 0) {
        uv_tcp_init(&c->loop, &c->admin.tcp);
        return SH_EIO;
    }
    if (up != NULL) {
        c->admin_unix = 1;
        uv_pipe_init(&c->loop, &c->admin.pipe, 0);
        struct stat st;
        /* a socket left by a node that died; never anything else */
        if (lstat(up, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(up);
        mode_t old = umask(0077); /* the socket is the credential: owner only */
        rc = uv_pipe_bind(&c->admin.pipe, up);
        umask(old);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&c->admin.pipe, 64, admin_accept);
    } else {
        struct sockaddr_storage ss;
        uv_tcp_init(&c->loop, &c->admin.tcp);
        if (sh_cluster__parse_addr(l, &ss) != 0) {
            sh_log_err("cluster: admin_listen \"%s\" is not a numeric host:port or unix:PATH", l);
            return SH_EIO;
        }
        if ((rc = uv_tcp_bind(&c->admin.tcp, (const struct sockaddr *)&ss, 0)) == 0)
            rc = uv_listen((uv_stream_t *)&c->admin.tcp, 64, admin_accept);
    }
    if (rc != 0 && c->conf->admin_node == NULL) {
        /* the implicit default (every node has one, issue 17): a node
         * beside another on the same machine still starts, without it */
        sh_log_warn("admin: cannot listen on the default admin address %s (%s): running without "
                    "the admin API; set \"admin_listen\" to another address, or \"admin_listen "
                    "off\"",
                    l, uv_strerror(rc));
        return 0;
    }
    if (rc != 0) {
        sh_log_err("cluster: cannot listen on admin address %s: %s", l, uv_strerror(rc));
        return SH_EIO;
    }
    c->admin_on = 1;
    return 0;
}
