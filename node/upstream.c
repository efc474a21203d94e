/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upstream groups and the round-robin balancer (see upstream.h).
 *
 * Smooth weighted round robin, as nginx's ngx_http_upstream_round_robin.c
 * does it: every pick adds each usable server's effective weight to its
 * current weight, takes the server with the largest current weight and
 * subtracts the total from it. Weights 5/1/1 give a a b a c a a, not
 * a a a a a b c. A failure lowers the effective weight, which then
 * recovers by one per pick, so a flapping server gets traffic back
 * gradually.
 */
#include "node/upstream.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/http_conf.h"

static void *ups_create_main(void)
{
    return sh_new(sh_upstream_main_t);
}

static void ups_destroy_main(void *conf)
{
    sh_upstream_main_t *m = conf;
    for (size_t i = 0; i < m->n; i++) {
        sh_free(m->ups[i]->name);
        sh_free(m->ups[i]->servers);
        sh_free(m->ups[i]);
    }
    sh_free(m->ups);
    sh_free(m);
}

static sh_upstream_t *ups_add(sh_upstream_main_t *m, const char *name)
{
    sh_upstream_t *u = sh_new(sh_upstream_t);
    u->name = sh_strdup(name);
    u->index = m->n;
    u->keepalive = 0;
    u->keepalive_timeout = 60000;
    u->keepalive_requests = 1000;
    m->ups = sh_realloc(m->ups, (m->n + 1) * sizeof(*m->ups));
    m->ups[m->n++] = u;
    return u;
}

static sh_upstream_t *ups_find(sh_upstream_main_t *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->ups[i]->name, name) == 0)
            return m->ups[i];
    return NULL;
}

sh_upstream_t *sh_upstream_get(sh_conf_t *cf, sh_upstream_main_t *m, const char *name,
                               int default_port)
{
    sh_upstream_t *u = ups_find(m, name);
    if (u != NULL)
        return u;
    sh_ups_server_t s = {.weight = 1, .max_fails = 1, .fail_timeout = 10000};
    int rc = sh_parse_addr(name, default_port, &s.addr, &s.addrlen);
    if (rc != 0) {
        sh_conf_error(cf, "host not found in upstream \"%s\"", name);
        return NULL;
    }
    snprintf(s.name, sizeof(s.name), "%s", name);
    u = ups_add(m, name);
    u->implicit = 1;
    u->file = cf->node ? cf->node->file : "";
    u->line = cf->node ? cf->node->line : 0;
    u->servers = sh_memdup(&s, sizeof(s));
    u->nservers = 1;
    return u;
}

static int upstream_block(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_http_block_t *b = cf->user;
    sh_upstream_main_t *m = sh_http_main_conf(b->main, &sh_upstream_module);
    const char *name = cf->node->args[1];
    sh_upstream_t *u = ups_find(m, name);
    if (u != NULL && !u->implicit)
        return sh_conf_error(cf, "duplicate upstream \"%s\"", name);
    if (u == NULL)
        u = ups_add(m, name);
    u->implicit = 0;
    u->file = cf->node->file;
    u->line = cf->node->line;
    void *saved = cf->user;
    cf->user = u;
    /* the block's directives get the group as their conf */
    void **confs = sh_calloc(cf->nmodules, sizeof(void *));
    confs[sh_upstream_module.index] = u;
    int rc = sh_conf_walk(cf, cf->node->child, SH_CTX_UPSTREAM, confs);
    sh_free(confs);
    cf->user = saved;
    if (rc == 0 && u->nservers == 0)
        return sh_conf_error(cf, "no servers are inside upstream");
    return rc;
}

static int server_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_upstream_t *u = conf;
    const sh_conf_node_t *n = cf->node;
    sh_ups_server_t s = {.weight = 1, .max_fails = 1, .fail_timeout = 10000};
    snprintf(s.name, sizeof(s.name), "%s", n->args[1]);
    if (strncmp(n->args[1], "unix:", 5) == 0)
        return sh_conf_error(cf, "unix sockets are not supported yet in upstream \"%s\"",
                             u->name);
    if (sh_parse_addr(n->args[1], 80, &s.addr, &s.addrlen) != 0)
        return sh_conf_error(cf, "host not found in upstream \"%s\"", n->args[1]);
    for (unsigned i = 2; i < n->nargs; i++) {
        const char *a = n->args[i];
        if (strncmp(a, "weight=", 7) == 0) {
            if (sh_conf_parse_int(a + 7, &s.weight) != 0 || s.weight < 1)
                return sh_conf_error(cf, "invalid parameter \"%s\"", a);
        } else if (strncmp(a, "max_fails=", 10) == 0) {
            if (sh_conf_parse_int(a + 10, &s.max_fails) != 0)
                return sh_conf_error(cf, "invalid parameter \"%s\"", a);
        } else if (strncmp(a, "fail_timeout=", 13) == 0) {
            if (sh_conf_parse_msec(a + 13, &s.fail_timeout) != 0)
                return sh_conf_error(cf, "invalid parameter \"%s\"", a);
        } else if (strncmp(a, "max_conns=", 10) == 0) {
            if (sh_conf_parse_int(a + 10, &s.max_conns) != 0)
                return sh_conf_error(cf, "invalid parameter \"%s\"", a);
        } else if (strcmp(a, "backup") == 0) {
            s.backup = 1;
        } else if (strcmp(a, "down") == 0) {
            s.down = 1;
        } else {
            return sh_conf_error(cf, "invalid parameter \"%s\"", a);
        }
    }
    if (u->nservers >= 4096)
        return sh_conf_error(cf, "too many servers in upstream \"%s\"", u->name);
    u->servers = sh_realloc(u->servers, (u->nservers + 1) * sizeof(*u->servers));
    u->servers[u->nservers++] = s;
    return 0;
}

static int keepalive_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_upstream_t *u = conf;
    if (sh_conf_parse_int(cf->node->args[1], &u->keepalive) != 0 || u->keepalive < 1)
        return sh_conf_error(cf, "invalid value \"%s\" in \"keepalive\" directive",
                             cf->node->args[1]);
    return 0;
}

static int ka_timeout_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_upstream_t *u = conf;
    if (sh_conf_parse_msec(cf->node->args[1], &u->keepalive_timeout) != 0)
        return sh_conf_error(cf, "invalid value \"%s\"", cf->node->args[1]);
    return 0;
}

static int ka_requests_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_upstream_t *u = conf;
    if (sh_conf_parse_int(cf->node->args[1], &u->keepalive_requests) != 0)
        return sh_conf_error(cf, "invalid value \"%s\"", cf->node->args[1]);
    return 0;
}

static const sh_conf_cmd_t ups_cmds[] = {
    {"upstream", SH_CTX_HTTP | SH_CONF_BLOCK | SH_CONF_TAKE1, upstream_block, 0, NULL},
    {"server", SH_CTX_UPSTREAM | SH_CONF_1MORE, server_set, 0, NULL},
    {"keepalive", SH_CTX_UPSTREAM | SH_CONF_TAKE1, keepalive_set, 0, NULL},
    {"keepalive_timeout", SH_CTX_UPSTREAM | SH_CONF_TAKE1, ka_timeout_set, 0, NULL},
    {"keepalive_requests", SH_CTX_UPSTREAM | SH_CONF_TAKE1, ka_requests_set, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t ups_http_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_main = ups_create_main,
    .destroy_main = ups_destroy_main,
};

sh_conf_module_t sh_upstream_module = {
    .name = "upstream",
    .cmds = ups_cmds,
    .ctx = &ups_http_ctx,
};

/* ------------------------------------------------------ runtime -- */

void sh_upstream_rt_init(sh_ups_rt_t *rt, const sh_upstream_t *conf)
{
    rt->conf = conf;
    rt->peers = sh_calloc(conf->nservers, sizeof(*rt->peers));
    for (size_t i = 0; i < conf->nservers; i++)
        rt->peers[i].effective_weight = conf->servers[i].weight;
    sh_list_init(&rt->idle);
    rt->nidle = 0;
}

void sh_upstream_rt_dispose(sh_ups_rt_t *rt)
{
    sh_free(rt->peers);
    rt->peers = NULL;
}

static int usable(const sh_ups_rt_t *rt, size_t i, uint64_t now)
{
    const sh_ups_server_t *s = &rt->conf->servers[i];
    const sh_peer_rt_t *p = &rt->peers[i];
    if (s->down)
        return 0;
    /* nginx: a group of one server never takes it out (max_fails and
     * fail_timeout are ignored): there is nothing better to send to. */
    if (rt->conf->nservers == 1)
        return 1;
    if (s->max_fails > 0 && p->fails >= s->max_fails && now < p->down_until)
        return 0;
    if (s->max_conns > 0 && p->conns >= s->max_conns)
        return 0;
    return 1;
}

static int pick_among(sh_ups_rt_t *rt, uint64_t tried, uint64_t now, int backup)
{
    int best = -1, total = 0;
    for (size_t i = 0; i < rt->conf->nservers; i++) {
        if ((int)rt->conf->servers[i].backup != backup)
            continue;
        if (tried & (1ull << (i % 64)))
            continue;
        if (!usable(rt, i, now))
            continue;
        sh_peer_rt_t *p = &rt->peers[i];
        p->current_weight += p->effective_weight;
        total += p->effective_weight;
        if (p->effective_weight < rt->conf->servers[i].weight)
            p->effective_weight++;
        if (best < 0 || p->current_weight > rt->peers[best].current_weight)
            best = (int)i;
    }
    if (best >= 0)
        rt->peers[best].current_weight -= total;
    return best;
}

int sh_upstream_pick(sh_ups_rt_t *rt, uint64_t tried, uint64_t now)
{
    int i = pick_among(rt, tried, now, 0);
    if (i < 0)
        i = pick_among(rt, tried, now, 1);
    if (i >= 0)
        rt->peers[i].conns++;
    return i;
}

void sh_upstream_done(sh_ups_rt_t *rt, int i, int failed, uint64_t now)
{
    const sh_ups_server_t *s = &rt->conf->servers[i];
    sh_peer_rt_t *p = &rt->peers[i];
    if (p->conns > 0)
        p->conns--;
    if (failed) {
        if (now - p->checked > s->fail_timeout || p->fails == 0) {
            p->checked = now;
            p->fails = 0;
        }
        p->fails++;
        if (s->max_fails > 0 && p->fails >= s->max_fails)
            p->down_until = now + s->fail_timeout;
        p->effective_weight -= s->weight / (s->max_fails > 0 ? s->max_fails : 1);
        if (p->effective_weight < 0)
            p->effective_weight = 0;
    } else if (p->fails > 0 && now >= p->down_until) {
        /* nginx: a success after the window closes forgets the failures */
        p->fails = 0;
    }
}
