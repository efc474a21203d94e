/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The resolver (see resolver.h). One c-ares channel per worker and
 * `resolver` directive, made on first use: its sockets are watched with
 * uv_poll handles (c-ares' socket state callback) and its timeouts with a
 * uv_timer, so queries run on the worker's loop without blocking it.
 * c-ares is used rather than getaddrinfo in the thread pool because nginx's
 * resolver asks the servers it is given, nothing else.
 */
#include "node/proxy/resolver.h"

#include <ares.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/pipeline/http_conf.h"

#define CACHE_MAX 256 /* names per worker */
#define DYN_MAX   256 /* addresses per worker */

typedef struct {
    char *servers;  /* "ip:port,ip:port" for ares_set_servers_ports_csv */
    uint64_t valid; /* ms; UINT64_MAX: the answer's TTL */
    int ipv6;
    uint64_t timeout; /* resolver_timeout, ms */
    int own;          /* this level's `resolver` */
    int timeout_set;
} res_loc_t;

typedef struct chan_s chan_t;

typedef struct poll_s {
    uv_poll_t h;
    int fd;
    chan_t *c;
    struct poll_s *next;
} poll_t;

struct chan_s {
    const res_loc_t *conf;
    ares_channel ch;
    uv_timer_t timer;
    poll_t *polls;
    sh_worker_t *w;
    chan_t *next;
    int closing;
};

typedef struct {
    char *name;
    const res_loc_t *conf;
    sh_resolved_t res;
    uint64_t expires;
} cache_t;

typedef struct {
    sh_resolved_t key; /* the addresses, port included */
    sh_upstream_t conf;
    sh_ups_server_t server[SH_RESOLVE_MAX];
    sh_ups_rt_t rt;
} dyn_t;

typedef struct {
    chan_t *chans;
    cache_t cache[CACHE_MAX];
    size_t ncache;
    dyn_t *dyn[DYN_MAX];
    size_t ndyn;
} wstate_t;

struct sh_resolve_job_s {
    chan_t *c;
    char *name;
    sh_resolve_cb cb;
    void *data; /* NULL: cancelled */
    int sync;   /* inside ares_getaddrinfo: the answer is kept, not called back */
    int done, status;
    sh_resolved_t res;
};

/* ------------------------------------------------------ loop glue -- */

static void process_timer(chan_t *c);

static void poll_cb(uv_poll_t *h, int status, int events)
{
    poll_t *p = h->data;
    chan_t *c = p->c;
    ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;
    if (status < 0 || (events & UV_READABLE))
        rfd = p->fd;
    if (status < 0 || (events & UV_WRITABLE))
        wfd = p->fd;
    ares_process_fd(c->ch, rfd, wfd);
    process_timer(c);
}

static void timer_cb(uv_timer_t *t)
{
    chan_t *c = t->data;
    ares_process_fd(c->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    process_timer(c);
}

/* The next c-ares timeout, or none when no query is under way. */
static void process_timer(chan_t *c)
{
    if (c->closing)
        return;
    struct timeval tv, *tvp = ares_timeout(c->ch, NULL, &tv);
    if (tvp == NULL) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t ms = (uint64_t)tvp->tv_sec * 1000 + (uint64_t)tvp->tv_usec / 1000;
    uv_timer_start(&c->timer, timer_cb, ms > 0 ? ms : 1, 0);
}

static void poll_closed(uv_handle_t *h)
{
    sh_free(h->data);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    chan_t *c = data;
    poll_t **pp = &c->polls, *p;
    while ((p = *pp) != NULL && p->fd != fd)
        pp = &p->next;
    if (!readable && !writable) {
        if (p != NULL) {
            *pp = p->next;
            uv_poll_stop(&p->h);
            uv_close((uv_handle_t *)&p->h, poll_closed);
        }
        return;
    }
    if (c->closing)
        return;
    if (p == NULL) {
        p = sh_new(poll_t);
        p->fd = fd;
        p->c = c;
        if (uv_poll_init_socket(&c->w->loop, &p->h, fd) != 0) {
            sh_free(p);
            return;
        }
        p->h.data = p;
        p->next = c->polls;
        c->polls = p;
    }
    uv_poll_start(&p->h, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), poll_cb);
}

static wstate_t *wstate(sh_worker_t *w)
{
    if (w->resolver == NULL)
        w->resolver = sh_new(wstate_t);
    return w->resolver;
}

static chan_t *chan_get(sh_worker_t *w, const res_loc_t *conf)
{
    wstate_t *ws = wstate(w);
    for (chan_t *c = ws->chans; c != NULL; c = c->next)
        if (c->conf == conf)
            return c;
    chan_t *c = sh_new(chan_t);
    c->conf = conf;
    c->w = w;
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = sock_state_cb;
    o.sock_state_cb_data = c;
    o.timeout = (int)(conf->timeout / 2 > 0 ? conf->timeout / 2 : 1);
    o.tries = 2;
    o.lookups = (char *)"b"; /* the servers only, never /etc/hosts */
    o.flags = ARES_FLAG_NOSEARCH;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS |
               ARES_OPT_FLAGS;
    if (ares_init_options(&c->ch, &o, mask) != ARES_SUCCESS) {
        sh_free(c);
        return NULL;
    }
    if (ares_set_servers_ports_csv(c->ch, conf->servers) != ARES_SUCCESS) {
        ares_destroy(c->ch);
        sh_free(c);
        return NULL;
    }
    uv_timer_init(&w->loop, &c->timer);
    c->timer.data = c;
    c->next = ws->chans;
    ws->chans = c;
    return c;
}

/* ------------------------------------------------------ queries -- */

static const res_loc_t *conf_of(const sh_request_t *r)
{
    const res_loc_t *c = r->loc != NULL ? sh_http_loc_conf(r->loc, &sh_resolver_module) : NULL;
    return c != NULL && c->servers != NULL ? c : NULL;
}

static cache_t *cache_find(wstate_t *ws, const res_loc_t *conf, const char *name, uint64_t now)
{
    for (size_t i = 0; i < ws->ncache; i++) {
        cache_t *e = &ws->cache[i];
        if (e->conf == conf && strcmp(e->name, name) == 0)
            return e->expires > now ? e : NULL;
    }
    return NULL;
}

static void cache_put(wstate_t *ws, const res_loc_t *conf, const char *name,
                      const sh_resolved_t *res, uint64_t expires)
{
    cache_t *e = NULL;
    for (size_t i = 0; i < ws->ncache && e == NULL; i++)
        if (ws->cache[i].conf == conf && strcmp(ws->cache[i].name, name) == 0)
            e = &ws->cache[i];
    if (e == NULL) {
        if (ws->ncache == CACHE_MAX) { /* full: the first to expire goes */
            size_t k = 0;
            for (size_t i = 1; i < ws->ncache; i++)
                if (ws->cache[i].expires < ws->cache[k].expires)
                    k = i;
            e = &ws->cache[k];
            sh_free(e->name);
        } else {
            e = &ws->cache[ws->ncache++];
        }
        e->name = sh_strdup(name);
        e->conf = conf;
    }
    e->res = *res;
    e->expires = expires;
}

static void gai_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    sh_resolve_job_t *j = arg;
    chan_t *c = j->c;
    sh_resolved_t *out = &j->res;
    int rc = SH_ENOENT;
    int ttl = -1;
    out->n = 0;
    if (status == ARES_SUCCESS && res != NULL) {
        /* every address (nginx: each one a peer of the implicit upstream) */
        for (const struct ares_addrinfo_node *n = res->nodes; n != NULL && out->n < SH_RESOLVE_MAX;
             n = n->ai_next) {
            if (n->ai_addrlen > sizeof(out->a[0]) || (n->ai_family == AF_INET6 && !c->conf->ipv6))
                continue;
            memset(&out->a[out->n], 0, sizeof(out->a[0]));
            memcpy(&out->a[out->n], n->ai_addr, n->ai_addrlen);
            out->len[out->n++] = n->ai_addrlen;
            if (ttl < 0 || n->ai_ttl < ttl) /* the answer lives as long as its shortest TTL */
                ttl = n->ai_ttl;
            rc = 0;
        }
    } else if (status == ARES_ETIMEOUT) {
        rc = SH_ETIMEDOUT;
    } else if (status != ARES_ENOTFOUND && status != ARES_ENODATA) {
        rc = SH_EIO;
    }
    if (res != NULL)
        ares_freeaddrinfo(res);
    if (rc == 0 && !c->closing) {
        uint64_t now = sh_worker_now(c->w);
        uint64_t valid =
            c->conf->valid != UINT64_MAX ? c->conf->valid : (uint64_t)(ttl > 0 ? ttl : 0) * 1000;
        if (valid > 0)
            cache_put(wstate(c->w), c->conf, j->name, out, now + valid);
    }
    if (j->sync) {
        j->done = 1;
        j->status = rc;
        return;
    }
    if (j->data != NULL && !c->closing)
        j->cb(j->data, rc, rc == 0 ? out : NULL);
    sh_free(j->name);
    sh_free(j);
}

int sh_resolve(sh_request_t *r, const char *name, sh_resolved_t *out, sh_resolve_cb cb, void *data,
               sh_resolve_job_t **job)
{
    const res_loc_t *conf = conf_of(r);
    *job = NULL;
    if (conf == NULL)
        return SH_EUNSUPP;
    sh_worker_t *w = r->c->w;
    cache_t *e = cache_find(wstate(w), conf, name, sh_worker_now(w));
    if (e != NULL) {
        *out = e->res;
        return 1;
    }
    chan_t *c = chan_get(w, conf);
    if (c == NULL)
        return SH_EIO;
    sh_resolve_job_t *j = sh_new(sh_resolve_job_t);
    j->c = c;
    j->name = sh_strdup(name);
    j->cb = cb;
    j->data = data;
    struct ares_addrinfo_hints hints = {.ai_family = conf->ipv6 ? AF_UNSPEC : AF_INET,
                                        .ai_socktype = SOCK_STREAM};
    /* the callback may run at once (a numeric name, a bad one): then the
     * answer is returned here */
    j->sync = 1;
    ares_getaddrinfo(c->ch, name, NULL, &hints, gai_cb, j);
    j->sync = 0;
    if (j->done) {
        int rc = j->status;
        if (rc == 0)
            *out = j->res;
        sh_free(j->name);
        sh_free(j);
        return rc == 0 ? 1 : rc;
    }
    *job = j;
    process_timer(c);
    return 0;
}

void sh_resolve_cancel(sh_resolve_job_t *job)
{
    if (job != NULL)
        job->data = NULL;
}

/* ------------------------------------------------------ upstreams -- */

static int same_key(const sh_resolved_t *a, const sh_resolved_t *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->len[i] != b->len[i] || memcmp(&a->a[i], &b->a[i], a->len[i]) != 0)
            return 0;
    return 1;
}

static int addr_cmp(const sh_resolved_t *r, size_t i, size_t k)
{
    if (r->len[i] != r->len[k])
        return r->len[i] < r->len[k] ? -1 : 1;
    return memcmp(&r->a[i], &r->a[k], r->len[i]);
}

sh_ups_rt_t *sh_resolver_ups(sh_worker_t *w, const sh_resolved_t *res, int port)
{
    wstate_t *ws = wstate(w);
    sh_resolved_t key = *res;
    for (size_t i = 0; i < key.n; i++) {
        if (key.a[i].ss_family == AF_INET)
            ((struct sockaddr_in *)&key.a[i])->sin_port = htons((uint16_t)port);
        else
            ((struct sockaddr_in6 *)&key.a[i])->sin6_port = htons((uint16_t)port);
    }
    /* one upstream per set, whatever order the answer came in */
    for (size_t i = 1; i < key.n; i++)
        for (size_t k = i; k > 0 && addr_cmp(&key, k - 1, k) > 0; k--) {
            struct sockaddr_storage a = key.a[k];
            socklen_t l = key.len[k];
            key.a[k] = key.a[k - 1];
            key.len[k] = key.len[k - 1];
            key.a[k - 1] = a;
            key.len[k - 1] = l;
        }
    for (size_t i = 0; i < ws->ndyn; i++)
        if (same_key(&ws->dyn[i]->key, &key))
            return &ws->dyn[i]->rt;
    if (ws->ndyn == DYN_MAX || key.n == 0)
        return NULL;
    dyn_t *d = sh_new(dyn_t);
    d->key = key;
    for (size_t i = 0; i < key.n; i++) {
        sh_ups_server_t *s = &d->server[i];
        *s = (sh_ups_server_t){.weight = 1, .max_fails = 1, .fail_timeout = 10000};
        s->addr = key.a[i];
        s->addrlen = key.len[i];
        s->port = (uint16_t)port;
        sh_addr_text((const struct sockaddr *)&key.a[i], s->name, sizeof(s->name));
    }
    d->conf.name = d->server[0].name;
    d->conf.index = SIZE_MAX;
    d->conf.servers = d->server;
    d->conf.nservers = key.n;
    /* nginx keeps no connection to the implicit upstream of a proxy_pass
     * with variables; a small pool per address set here (used only with
     * proxy_http_version 1.1 and an empty Connection, as any keepalive) */
    d->conf.keepalive = 8;
    d->conf.keepalive_timeout = 60000;
    d->conf.keepalive_requests = 1000;
    d->conf.implicit = 1;
    sh_upstream_rt_init(&d->rt, &d->conf);
    ws->dyn[ws->ndyn++] = d;
    return &d->rt;
}

size_t sh_resolver_nups(sh_worker_t *w)
{
    const wstate_t *ws = w->resolver;
    return ws != NULL ? ws->ndyn : 0;
}

sh_ups_rt_t *sh_resolver_ups_at(sh_worker_t *w, size_t i)
{
    wstate_t *ws = w->resolver;
    return &ws->dyn[i]->rt;
}

/* ------------------------------------------------------ closing -- */

static void chan_timer_closed(uv_handle_t *h)
{
    chan_t *c = h->data;
    sh_free(c);
}

void sh_resolver_worker_close(sh_worker_t *w)
{
    wstate_t *ws = w->resolver;
    if (ws == NULL)
        return;
    chan_t *c = ws->chans;
    while (c != NULL) {
        chan_t *next = c->next;
        c->closing = 1;
        ares_destroy(c->ch); /* pending queries call back (their data is cancelled) */
        while (c->polls != NULL) {
            poll_t *p = c->polls;
            c->polls = p->next;
            if (!uv_is_closing((uv_handle_t *)&p->h)) {
                uv_poll_stop(&p->h);
                uv_close((uv_handle_t *)&p->h, poll_closed);
            }
        }
        if (!uv_is_closing((uv_handle_t *)&c->timer))
            uv_close((uv_handle_t *)&c->timer, chan_timer_closed);
        c = next;
    }
    for (size_t i = 0; i < ws->ncache; i++)
        sh_free(ws->cache[i].name);
    for (size_t i = 0; i < ws->ndyn; i++) {
        sh_upstream_rt_dispose(&ws->dyn[i]->rt);
        sh_free(ws->dyn[i]);
    }
    sh_free(ws);
    w->resolver = NULL;
}

/* ------------------------------------------------------ directives -- */

static void *res_create_loc(void)
{
    res_loc_t *c = sh_new(res_loc_t);
    c->valid = UINT64_MAX;
    c->ipv6 = 1;
    c->timeout = SH_CONF_UNSET_MSEC;
    return c;
}

static int res_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    (void)cf;
    res_loc_t *p = parent, *c = conf;
    if (c->servers == NULL) {
        c->servers = p->servers;
        c->valid = p->valid;
        c->ipv6 = p->ipv6;
    }
    SH_CONF_MERGE_MSEC(c->timeout, p->timeout, 30000);
    return 0;
}

static void res_destroy_loc(void *conf)
{
    res_loc_t *c = conf;
    if (c->own)
        sh_free(c->servers);
    sh_free(c);
}

static int resolver_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    res_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (c->own)
        return sh_conf_error(cf, "\"resolver\" directive is duplicate");
    sh_buf_t csv = {0};
    for (unsigned i = 1; i < n->nargs; i++) {
        const char *a = n->args[i];
        if (strncmp(a, "valid=", 6) == 0) {
            if (sh_conf_parse_msec(a + 6, &c->valid) != 0) {
                sh_buf_dispose(&csv);
                return sh_conf_error(cf, "invalid parameter \"%s\"", a);
            }
            continue;
        }
        if (strncmp(a, "ipv6=", 5) == 0) {
            if (strcmp(a + 5, "on") != 0 && strcmp(a + 5, "off") != 0) {
                sh_buf_dispose(&csv);
                return sh_conf_error(cf, "invalid parameter \"%s\"", a);
            }
            c->ipv6 = strcmp(a + 5, "on") == 0;
            continue;
        }
        if (strncmp(a, "ipv4=", 5) == 0 || strncmp(a, "status_zone=", 12) == 0)
            continue;
        struct sockaddr_storage ss;
        socklen_t sl;
        char host[128];
        if (sh_parse_addr(a, 53, &ss, &sl) != 0) {
            sh_buf_dispose(&csv);
            return sh_conf_error(cf, "invalid resolver address \"%s\"", a);
        }
        sh_addr_text((const struct sockaddr *)&ss, host, sizeof(host));
        if (csv.len > 0)
            sh_buf_append(&csv, ",", 1);
        sh_buf_appends(&csv, host);
    }
    if (csv.len == 0)
        return sh_conf_error(cf, "no resolver address in \"resolver\"");
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
        sh_buf_dispose(&csv);
        return sh_conf_error(cf, "c-ares cannot initialize");
    }
    sh_buf_append(&csv, "", 1);
    c->servers = sh_strdup(csv.data);
    c->own = 1;
    sh_buf_dispose(&csv);
    return 0;
}

#define RLOC (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)

static const sh_conf_cmd_t res_cmds[] = {{"resolver", RLOC | SH_CONF_1MORE, resolver_set, 0, NULL},
                                         {"resolver_timeout", RLOC | SH_CONF_TAKE1,
                                          sh_conf_set_msec, offsetof(res_loc_t, timeout), NULL},
                                         {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t res_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = res_create_loc,
    .merge_loc = res_merge_loc,
    .destroy_loc = res_destroy_loc,
};

sh_conf_module_t sh_resolver_module = {
    .name = "resolver",
    .cmds = res_cmds,
    .ctx = &res_ctx,
};
