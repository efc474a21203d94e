/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Upstream groups and their balancers (see upstream.h).
 *
 * Every balancer follows the nginx module of the same name, so a group
 * spreads requests the way it would behind nginx:
 *
 * - round robin (ngx_http_upstream_round_robin.c): smooth weighted. Every
 *   pick adds each usable server's effective weight to its current
 *   weight, takes the server with the largest current weight and
 *   subtracts the total from it. Weights 5/1/1 give a a b a c a a, not
 *   a a a a a b c. A failure lowers the effective weight, which then
 *   recovers by one per pick, so a flapping server gets traffic back
 *   gradually. Backups are tried only when no primary is usable.
 * - least_conn: the usable server with the fewest active connections
 *   per unit of weight (conns_a * weight_b < conns_b * weight_a); ties
 *   are broken by smooth weighted round robin among the tied; backups as
 *   above.
 * - ip_hash: hash = 89, then hash = (hash * 113 + byte) % 6271 over the
 *   first three octets of an IPv4 client (a /24 sticks together) or the
 *   sixteen of an IPv6 one; hash % total weight selects a server by
 *   weight. A server that is down, out or tried makes it hash again from
 *   the previous value; after 20 such rehashes, round robin.
 * - hash KEY: Cache::Memcached compatible: ((crc32([N] KEY) >> 16) &
 *   0x7fff) accumulated, N the rehash number (omitted the first time);
 *   20 rehashes, then round robin.
 * - hash KEY consistent: Ketama. Each server puts 160 points per weight
 *   unit on a 32-bit ring (crc32 of HOST \0 PORT and the previous point,
 *   little-endian), the key goes to the first point at or after
 *   crc32(KEY), walking on while that server is unusable. Removing one of
 *   N servers moves only the keys it had, about 1/N. The ring is built
 *   per worker at init; pick is a binary search.
 * - random [two [least_conn]]: a server drawn by weight (20 draws, then
 *   round robin); `two` draws two distinct usable servers and takes the
 *   one with fewer connections per unit of weight.
 *
 * hash, ip_hash and random refuse `backup` servers, as nginx does ("load
 * balancing method redefined" is a warning there and here: the last
 * method wins). Passive health is nginx's for every method: see
 * upstream.h and peer_failed_now().
 *
 * Worker thread for everything at runtime; no allocation in pick (the hash
 * key buffer grows to the largest key once and is reused).
 */
#include "node/proxy/upstream.h"
#include "node/proxy/proxy_ssl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/vars.h"
#include "node/proxy/health.h"

static const sh_balancer_ops_t rr_ops, least_conn_ops, ip_hash_ops, hash_ops, chash_ops, random_ops;

/* Whether a method can have backup servers (nginx's
 * NGX_HTTP_UPSTREAM_BACKUP flag: round robin and least_conn only). */
static int allows_backup(const sh_balancer_ops_t *ops)
{
    return ops == &rr_ops || ops == &least_conn_ops;
}

static void *ups_create_main(void)
{
    return sh_new(sh_upstream_main_t);
}

/* An upstream's state shared by the workers (`zone`). A reload whose
 * group has the same zone name and the same servers takes the same zone
 * (nginx keeps a shared zone across reloads): zones of live
 * configurations are in a process-wide list, counted by reference. */
struct sh_ups_zone_s {
    char *name;
    char *sig; /* the servers and their parameters, as the key of a reload */
    pthread_mutex_t lock;
    sh_peer_rt_t *peers; /* made by the first worker's sh_upstream_rt_init */
    int refs;
    struct sh_ups_zone_s *next; /* in `zones` once the block is read */
};

static pthread_mutex_t zones_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sh_ups_zone_s *zones;

static void zone_free(struct sh_ups_zone_s *z)
{
    if (z == NULL)
        return;
    pthread_mutex_lock(&zones_mu);
    int last = --z->refs <= 0;
    if (last)
        for (struct sh_ups_zone_s **pp = &zones; *pp != NULL; pp = &(*pp)->next)
            if (*pp == z) {
                *pp = z->next;
                break;
            }
    pthread_mutex_unlock(&zones_mu);
    if (!last)
        return;
    pthread_mutex_destroy(&z->lock);
    sh_free(z->peers);
    sh_free(z->sig);
    sh_free(z->name);
    sh_free(z);
}

/* At the end of an upstream block with `zone`: the zone of the running
 * configuration with the same name and servers replaces the new one. */
static void zone_adopt(sh_upstream_t *u)
{
    sh_buf_t b = {0};
    sh_buf_appendf(&b, "%s|%zu", u->balancer ? u->balancer->name : "", u->nservers);
    for (size_t i = 0; i < u->nservers; i++) {
        const sh_ups_server_t *s = &u->servers[i];
        sh_buf_appendf(&b, "|%s %d %d %llu %d %u%u%u%u", s->name, s->weight, s->max_fails,
                       (unsigned long long)s->fail_timeout, s->max_conns, s->backup, s->down,
                       s->resolve, s->rslot);
    }
    sh_buf_append(&b, "", 1);
    struct sh_ups_zone_s *z = u->zone, *old = NULL;
    z->sig = sh_strdup(b.data);
    sh_buf_dispose(&b);
    pthread_mutex_lock(&zones_mu);
    for (old = zones; old != NULL; old = old->next)
        if (strcmp(old->name, z->name) == 0 && strcmp(old->sig, z->sig) == 0)
            break;
    if (old != NULL) {
        old->refs++;
    } else {
        z->next = zones;
        zones = z;
    }
    pthread_mutex_unlock(&zones_mu);
    if (old != NULL) {
        zone_free(z);
        u->zone = old;
    }
}

static void ups_destroy_main(void *conf)
{
    sh_upstream_main_t *m = conf;
    for (size_t i = 0; i < m->n; i++) {
        sh_cv_destroy(m->ups[i]->hash_key);
        zone_free(m->ups[i]->zone);
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
    u->balancer = &rr_ops;
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

sh_upstream_t *sh_upstream_get_at(sh_conf_t *cf, const char *name, int default_port,
                                  const char *file, unsigned line)
{
    sh_http_block_t *b = cf->user;
    sh_upstream_main_t *um = sh_http_main_conf(b->main, &sh_upstream_module);
    sh_conf_node_t at = {.file = file, .line = line};
    const sh_conf_node_t *saved = cf->node;
    cf->node = &at;
    sh_upstream_t *u = sh_upstream_get(cf, um, name, default_port);
    cf->node = saved;
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
    /* the block's directives get the group as their conf; cf->user stays
     * the http block, so a `hash` key can name the block's variables */
    void **confs = sh_calloc(cf->nmodules, sizeof(void *));
    confs[sh_upstream_module.index] = u;
    int rc = sh_conf_walk(cf, cf->node->child, SH_CTX_UPSTREAM, confs);
    sh_free(confs);
    if (rc == 0 && u->nservers == 0)
        return sh_conf_error(cf, "no servers are inside upstream");
    if (rc == 0 && u->zone != NULL)
        zone_adopt(u);
    return rc;
}

static int server_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_upstream_t *u = conf;
    const sh_conf_node_t *n = cf->node;
    sh_ups_server_t s = {.weight = 1, .max_fails = 1, .fail_timeout = 10000, .line = n->line};
    if (strlen(n->args[1]) >= sizeof(s.name))
        return sh_conf_error(cf, "invalid server address \"%s\" (too long)", n->args[1]);
    snprintf(s.name, sizeof(s.name), "%s", n->args[1]);
    if (strncmp(n->args[1], "unix:", 5) == 0)
        return sh_conf_error(cf, "unix sockets are not supported yet in upstream \"%s\"", u->name);
    for (unsigned i = 2; i < n->nargs; i++)
        if (strcmp(n->args[i], "resolve") == 0)
            s.resolve = 1;
    if (sh_parse_addr(n->args[1], 80, &s.addr, &s.addrlen) != 0) {
        if (!s.resolve)
            return sh_conf_error(cf, "host not found in upstream \"%s\"", n->args[1]);
        /* resolved while running; not known yet */
        memset(&s.addr, 0, sizeof(s.addr));
        s.addrlen = 0;
    }
    {
        const char *colon = strrchr(n->args[1], ':');
        const char *rb = strrchr(n->args[1], ']');
        int port = 80;
        if (colon != NULL && (rb == NULL || colon > rb) && sh_conf_parse_int(colon + 1, &port) != 0)
            port = 0;
        if (port < 1 || port > 65535)
            return sh_conf_error(cf, "invalid port in upstream \"%s\"", n->args[1]);
        s.port = (uint16_t)port;
    }
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
            if (!allows_backup(u->balancer))
                return sh_conf_error(cf, "balancing method does not support parameter \"%s\"", a);
            s.backup = 1;
        } else if (strcmp(a, "down") == 0) {
            s.down = 1;
        } else if (strcmp(a, "resolve") == 0) {
            /* above */
        } else {
            return sh_conf_error(cf, "invalid parameter \"%s\"", a);
        }
    }
    /* a `resolve` server: one slot per address it may resolve to */
    size_t nslots = s.resolve ? SH_UPS_RADDR_MAX : 1;
    if (u->nservers + nslots > 4096)
        return sh_conf_error(cf, "too many servers in upstream \"%s\"", u->name);
    u->servers = sh_realloc(u->servers, (u->nservers + nslots) * sizeof(*u->servers));
    for (size_t k = 0; k < nslots; k++) {
        u->servers[u->nservers] = s;
        u->servers[u->nservers].rslot = (unsigned)k;
        if (k > 0) {
            memset(&u->servers[u->nservers].addr, 0, sizeof(s.addr));
            u->servers[u->nservers].addrlen = 0;
        }
        u->nservers++;
    }
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

static int zone_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    sh_upstream_t *u = conf;
    if (u->zone != NULL)
        return sh_conf_error(cf, "\"zone\" directive is duplicate");
    if (cf->node->args[1][0] == '\0')
        return sh_conf_error(cf, "invalid zone name \"\"");
    if (cf->node->nargs == 3) {
        /* the size is accepted: the state is allocated to fit, not in a
         * fixed shared-memory zone (one process, threads) */
        size_t size;
        if (sh_conf_parse_size(cf->node->args[2], &size) != 0 || size == 0)
            return sh_conf_error(cf, "invalid zone size \"%s\"", cf->node->args[2]);
    }
    struct sh_ups_zone_s *z = sh_new(struct sh_ups_zone_s);
    z->name = sh_strdup(cf->node->args[1]);
    z->refs = 1;
    pthread_mutex_init(&z->lock, NULL);
    u->zone = z;
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

/* The method directives. As nginx: a second method warns "load balancing
 * method redefined" and wins. Methods without backups refuse a group that
 * already has one, at the backup server's line, with nginx's words for a
 * backup written after the method. */
static int set_method(sh_conf_t *cf, sh_upstream_t *u, const sh_balancer_ops_t *ops)
{
    if (u->balancer != &rr_ops)
        sh_conf_warn(cf, "load balancing method redefined");
    if (!allows_backup(ops)) {
        for (size_t i = 0; i < u->nservers; i++) {
            if (!u->servers[i].backup)
                continue;
            sh_conf_node_t at = *cf->node;
            const sh_conf_node_t *saved = cf->node;
            at.line = u->servers[i].line;
            cf->node = &at;
            int rc = sh_conf_error(cf, "balancing method does not support parameter \"backup\"");
            cf->node = saved;
            return rc;
        }
    }
    sh_cv_destroy(u->hash_key);
    u->hash_key = NULL;
    u->random_two = 0;
    u->balancer = ops;
    return 0;
}

static int least_conn_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    return set_method(cf, conf, &least_conn_ops);
}

static int ip_hash_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    return set_method(cf, conf, &ip_hash_ops);
}

static int hash_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_upstream_t *u = conf;
    const sh_conf_node_t *n = cf->node;
    const sh_balancer_ops_t *ops = &hash_ops;
    if (n->nargs == 3) {
        if (strcmp(n->args[2], "consistent") != 0)
            return sh_conf_error(cf, "invalid parameter \"%s\"", n->args[2]);
        ops = &chash_ops;
    }
    /* The key is evaluated like any http-level value (nginx compiles it in
     * the http module's context): variables of the whole http block, maps
     * included, resolve. */
    sh_cv_t *key = NULL;
    uint32_t ctx = cf->ctx;
    cf->ctx = SH_CTX_HTTP;
    int rc = sh_cv_compile(cf, n->args[1], &key);
    cf->ctx = ctx;
    if (rc != 0)
        return rc;
    rc = set_method(cf, u, ops);
    if (rc != 0) {
        sh_cv_destroy(key);
        return rc;
    }
    u->hash_key = key;
    return 0;
}

static int random_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_upstream_t *u = conf;
    const sh_conf_node_t *n = cf->node;
    if (n->nargs >= 2 && strcmp(n->args[1], "two") != 0)
        return sh_conf_error(cf, "invalid parameter \"%s\"", n->args[1]);
    if (n->nargs == 3 && strcmp(n->args[2], "least_conn") != 0)
        return sh_conf_error(cf, "invalid parameter \"%s\"", n->args[2]);
    int rc = set_method(cf, u, &random_ops);
    if (rc == 0)
        u->random_two = n->nargs >= 2;
    return rc;
}

static const sh_conf_cmd_t ups_cmds[] = {
    {"upstream", SH_CTX_HTTP | SH_CONF_BLOCK | SH_CONF_TAKE1, upstream_block, 0, NULL},
    {"server", SH_CTX_UPSTREAM | SH_CONF_1MORE, server_set, 0, NULL},
    {"keepalive", SH_CTX_UPSTREAM | SH_CONF_TAKE1, keepalive_set, 0, NULL},
    {"zone", SH_CTX_UPSTREAM | SH_CONF_TAKE12, zone_set, 0, NULL},
    {"keepalive_timeout", SH_CTX_UPSTREAM | SH_CONF_TAKE1, ka_timeout_set, 0, NULL},
    {"keepalive_requests", SH_CTX_UPSTREAM | SH_CONF_TAKE1, ka_requests_set, 0, NULL},
    {"least_conn", SH_CTX_UPSTREAM | SH_CONF_NOARGS, least_conn_set, 0, NULL},
    {"ip_hash", SH_CTX_UPSTREAM | SH_CONF_NOARGS, ip_hash_set, 0, NULL},
    {"hash", SH_CTX_UPSTREAM | SH_CONF_TAKE12, hash_set, 0, NULL},
    {"random", SH_CTX_UPSTREAM | SH_CONF_NOARGS | SH_CONF_TAKE12, random_set, 0, NULL},
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

/* Standard CRC-32 (IEEE 802.3, reflected, as zlib and nginx's ngx_crc32). */
static const uint32_t crc32_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu, 0xe963a535u,
    0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u, 0x09b64c2bu, 0x7eb17cbdu,
    0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u, 0xf3b97148u, 0x84be41deu, 0x1adad47du,
    0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u, 0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu,
    0x14015c4fu, 0x63066cd9u, 0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u,
    0xa2677172u, 0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u, 0x26d930acu,
    0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u, 0xcfba9599u, 0xb8bda50fu,
    0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u, 0x2f6f7c87u, 0x58684c11u, 0xc1611dabu,
    0xb6662d3du, 0x76dc4190u, 0x01db7106u, 0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu,
    0x9fbfe4a5u, 0xe8b8d433u, 0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu,
    0x086d3d2du, 0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u, 0x8bbeb8eau,
    0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u, 0x4db26158u, 0x3ab551ceu,
    0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u, 0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au,
    0x346ed9fcu, 0xad678846u, 0xda60b8d0u, 0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u,
    0x5005713cu, 0x270241aau, 0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u,
    0xce61e49fu, 0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au, 0xead54739u,
    0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u, 0x0d6d6a3eu, 0x7a6a5aa8u,
    0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u, 0xf00f9344u, 0x8708a3d2u, 0x1e01f268u,
    0x6906c2feu, 0xf762575du, 0x806567cbu, 0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u,
    0x10da7a5au, 0x67dd4accu, 0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u,
    0xa1d1937eu, 0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u, 0x316e8eefu,
    0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u, 0xcc0c7795u, 0xbb0b4703u,
    0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u, 0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u,
    0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du, 0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au,
    0x9c0906a9u, 0xeb0e363fu, 0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu,
    0x0cb61b38u, 0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u, 0x88085ae6u,
    0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u, 0x616bffd3u, 0x166ccf45u,
    0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u, 0xa7672661u, 0xd06016f7u, 0x4969474du,
    0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu, 0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u,
    0x47b2cf7fu, 0x30b5ffe9u, 0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u,
    0xcdd70693u, 0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

static uint32_t crc32_update(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        crc = crc32_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

#define CRC32_INIT     0xffffffffu
#define CRC32_FINAL(c) ((c) ^ 0xffffffffu)

/* A point of the consistent-hash ring: its hash and the server it names
 * (by name id: servers written with the same name share their points). */
typedef struct {
    uint32_t hash;
    uint32_t name_id;
} ring_point_t;

struct sh_bal_data_s {
    sh_buf_t key;         /* the evaluated hash key, reused by every pick */
    ring_point_t *points; /* consistent hash: sorted, distinct hashes */
    size_t npoints;
    uint32_t *name_id;   /* consistent hash: per server, first server of its name */
    uint32_t *ranges;    /* random: cumulative weight of the primaries */
    uint32_t *range_srv; /* random: server index of each range */
};

static uint64_t rng_next(sh_ups_rt_t *rt)
{
    /* xorshift64*: enough to spread draws; nothing here is secret */
    uint64_t x = rt->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rt->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

void sh_upstream_rt_init(sh_ups_rt_t *rt, const sh_upstream_t *conf)
{
    rt->conf = conf;
    rt->ops = conf->balancer != NULL ? conf->balancer : &rr_ops;
    size_t np = conf->nservers ? conf->nservers : 1;
    rt->own = sh_calloc(np, sizeof(*rt->own));
    rt->peers = rt->own;
    for (size_t i = 0; i < conf->nservers; i++)
        rt->own[i].effective_weight = conf->servers[i].weight;
    if (conf->zone != NULL) {
        /* the first worker makes the shared state, the others use it */
        pthread_mutex_lock(&conf->zone->lock);
        if (conf->zone->peers == NULL)
            conf->zone->peers = sh_memdup(rt->own, np * sizeof(*rt->own));
        rt->peers = conf->zone->peers;
        pthread_mutex_unlock(&conf->zone->lock);
    }
    rt->total_weight = 0;
    rt->nprimary = 0;
    for (size_t i = 0; i < conf->nservers; i++) {
        if (!conf->servers[i].backup) {
            rt->total_weight += conf->servers[i].weight;
            rt->nprimary++;
        }
    }
    /* nginx's peers->single: one primary and no backup */
    rt->single = conf->nservers == 1;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    rt->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)rt;
    if (rt->rng == 0)
        rt->rng = 0x9E3779B97F4A7C15ull;
    rt->bal = NULL;
    if (rt->ops->init != NULL)
        rt->ops->init(rt);
    sh_list_init(&rt->idle);
    rt->nidle = 0;
    rt->raddr = NULL;
    for (size_t i = 0; i < conf->nservers; i++)
        if (conf->servers[i].resolve) {
            rt->raddr = sh_calloc(conf->nservers, sizeof(*rt->raddr));
            break;
        }
    for (size_t i = 0; rt->raddr != NULL && i < conf->nservers; i++) {
        rt->raddr[i].addr = conf->servers[i].addr;
        rt->raddr[i].len = conf->servers[i].addrlen;
    }
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return 0;
}

void sh_upstream_readdr(sh_ups_rt_t *rt, size_t first, const struct sockaddr_storage *a,
                        const socklen_t *len, size_t n, void (*drop)(void *data, size_t slot),
                        void *data)
{
    sh_ups_raddr_t *ra = rt->raddr + first;
    const sh_ups_server_t *sv = rt->conf->servers + first;
    if (n > SH_UPS_RADDR_MAX)
        n = SH_UPS_RADDR_MAX;
    /* gone addresses leave their slot */
    for (size_t k = 0; k < SH_UPS_RADDR_MAX; k++) {
        if (ra[k].len == 0)
            continue;
        size_t j = 0;
        while (j < n && !same_addr(&ra[k].addr, &a[j]))
            j++;
        if (j == n) {
            ra[k].len = 0;
            drop(data, first + k);
        }
    }
    /* new ones take a free slot, with fresh state */
    struct sh_ups_zone_s *z = rt->conf->zone;
    for (size_t j = 0; j < n; j++) {
        size_t k = 0, free_k = SH_UPS_RADDR_MAX;
        for (; k < SH_UPS_RADDR_MAX; k++) {
            if (ra[k].len > 0 && same_addr(&ra[k].addr, &a[j]))
                break;
            if (ra[k].len == 0 && free_k == SH_UPS_RADDR_MAX)
                free_k = k;
        }
        if (k < SH_UPS_RADDR_MAX || free_k == SH_UPS_RADDR_MAX)
            continue; /* kept, or no room */
        ra[free_k].addr = a[j];
        ra[free_k].len = len[j];
        drop(data, first + free_k);
        sh_peer_rt_t *own = &rt->own[first + free_k];
        if (own->ssl_sess != NULL)
            sh_upssl_session_free(own->ssl_sess);
        own->ssl_sess = NULL;
        own->ssl_sess_owner = NULL;
        if (z != NULL)
            pthread_mutex_lock(&z->lock);
        sh_peer_rt_t *p = &rt->peers[first + free_k];
        p->current_weight = 0;
        p->effective_weight = sv[free_k].weight;
        p->fails = 0;
        p->accessed = 0;
        p->checked = 0;
        if (z != NULL)
            pthread_mutex_unlock(&z->lock);
    }
}

void sh_upstream_rt_dispose(sh_ups_rt_t *rt)
{
    if (rt->ops != NULL && rt->ops->dispose != NULL)
        rt->ops->dispose(rt);
    rt->bal = NULL;
    for (size_t i = 0; rt->own != NULL && i < rt->conf->nservers; i++)
        if (rt->own[i].ssl_sess != NULL)
            sh_upssl_session_free(rt->own[i].ssl_sess);
    sh_free(rt->own); /* a zone's peers go with the configuration */
    rt->own = NULL;
    rt->peers = NULL;
    sh_free(rt->raddr);
    rt->raddr = NULL;
}

int sh_upstream_pick(sh_ups_rt_t *rt, uint64_t tried, uint64_t now, sh_request_t *r)
{
    struct sh_ups_zone_s *z = rt->conf->zone;
    if (z == NULL)
        return rt->ops->pick(rt, tried, now, r);
    /* a zone: the balancer runs on the shared state, one worker at a time
     * (a pick is a short loop over the servers; no I/O, no allocation) */
    pthread_mutex_lock(&z->lock);
    int i = rt->ops->pick(rt, tried, now, r);
    pthread_mutex_unlock(&z->lock);
    return i;
}

void sh_upstream_done(sh_ups_rt_t *rt, int i, int failed, uint64_t now)
{
    struct sh_ups_zone_s *z = rt->conf->zone;
    if (z == NULL) {
        rt->ops->done(rt, i, failed, now);
        return;
    }
    pthread_mutex_lock(&z->lock);
    rt->ops->done(rt, i, failed, now);
    pthread_mutex_unlock(&z->lock);
}

/* ---- shared per-server rules */

static int is_tried(uint64_t tried, size_t i)
{
    return (tried & (1ull << (i % 64))) != 0;
}

/* nginx: out while fails >= max_fails and the last failure (or the last
 * probe) is no older than fail_timeout. */
static int peer_failed_now(const sh_ups_rt_t *rt, size_t i, uint64_t now)
{
    const sh_ups_server_t *s = &rt->conf->servers[i];
    const sh_peer_rt_t *p = &rt->peers[i];
    return s->max_fails > 0 && p->fails >= s->max_fails && now - p->checked <= s->fail_timeout;
}

static int peer_full(const sh_ups_rt_t *rt, size_t i)
{
    int mc = rt->conf->servers[i].max_conns;
    return mc > 0 && rt->peers[i].conns >= mc;
}

static int usable(const sh_ups_rt_t *rt, size_t i, uint64_t tried, uint64_t now)
{
    if (rt->raddr != NULL && rt->conf->servers[i].resolve && rt->raddr[i].len == 0)
        return 0; /* an empty slot of a `resolve` server */
    return !is_tried(tried, i) && !rt->conf->servers[i].down && !peer_failed_now(rt, i, now) &&
           !peer_full(rt, i) && !sh_hc_out(rt->conf->servers[i].hc);
}

/* Count the pick; a pick more than fail_timeout after the window opened
 * starts a new one, so that its success forgets old failures (done()). */
static int take(sh_ups_rt_t *rt, int i, uint64_t now)
{
    sh_peer_rt_t *p = &rt->peers[i];
    p->conns++;
    if (now - p->checked > rt->conf->servers[i].fail_timeout)
        p->checked = now;
    return i;
}

/* nginx's ngx_http_upstream_free_round_robin_peer, for every method. */
static void peer_done(sh_ups_rt_t *rt, int i, int failed, uint64_t now)
{
    if (i < 0 || (size_t)i >= rt->conf->nservers)
        return;
    const sh_ups_server_t *s = &rt->conf->servers[i];
    sh_peer_rt_t *p = &rt->peers[i];
    if (p->conns > 0)
        p->conns--;
    if (rt->single)
        return; /* nothing better to send to: never taken out */
    if (failed) {
        p->fails++;
        p->accessed = now;
        p->checked = now;
        if (s->max_fails > 0) {
            p->effective_weight -= s->weight / s->max_fails;
            /* told to the cluster; not for one address of a `resolve`
             * server (the health entry is the name's, every address's) */
            if (p->fails >= s->max_fails && !s->resolve)
                sh_hc_passive_down(s->hc, s->fail_timeout);
            if (p->fails == s->max_fails)
                sh_log_warn("upstream server temporarily disabled: %s in upstream \"%s\"", s->name,
                            rt->conf->name);
        }
        if (p->effective_weight < 0)
            p->effective_weight = 0;
    } else if (p->accessed < p->checked) {
        /* a success in a window opened after the last failure */
        p->fails = 0;
    }
}

/* ---- round robin */

/* Smooth weighted round robin among the usable primaries (backup = 0) or
 * backups (1). Does not count the pick. */
static int rr_among(sh_ups_rt_t *rt, uint64_t tried, uint64_t now, int backup)
{
    int best = -1, total = 0;
    for (size_t i = 0; i < rt->conf->nservers; i++) {
        if ((int)rt->conf->servers[i].backup != backup || !usable(rt, i, tried, now))
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

static int rr_pick(sh_ups_rt_t *rt, uint64_t tried, uint64_t now, sh_request_t *r)
{
    (void)r;
    if (rt->single) {
        /* max_fails does not apply to a lone server; down, max_conns and
         * health checks do (NGINX Plus answers 502 then too) */
        if (rt->conf->servers[0].down || peer_full(rt, 0) || sh_hc_out(rt->conf->servers[0].hc))
            return -1;
        return take(rt, 0, now);
    }
    int i = rr_among(rt, tried, now, 0);
    if (i < 0)
        i = rr_among(rt, tried, now, 1);
    return i < 0 ? -1 : take(rt, i, now);
}

static const sh_balancer_ops_t rr_ops = {.name = "round_robin", .pick = rr_pick, .done = peer_done};

/* ---- least_conn */

static int lc_among(sh_ups_rt_t *rt, uint64_t tried, uint64_t now, int backup)
{
    const sh_ups_server_t *sv = rt->conf->servers;
    int best = -1, many = 0;
    for (size_t i = 0; i < rt->conf->nservers; i++) {
        if ((int)sv[i].backup != backup || !usable(rt, i, tried, now))
            continue;
        if (best < 0) {
            best = (int)i;
            many = 0;
            continue;
        }
        long a = (long)rt->peers[i].conns * sv[best].weight;
        long b = (long)rt->peers[best].conns * sv[i].weight;
        if (a < b) {
            best = (int)i;
            many = 0;
        } else if (a == b) {
            many = 1;
        }
    }
    if (best < 0 || !many)
        return best;
    /* ties: smooth weighted round robin among the tied, from the first */
    int first = best, total = 0;
    for (size_t i = (size_t)first; i < rt->conf->nservers; i++) {
        if ((int)sv[i].backup != backup || !usable(rt, i, tried, now))
            continue;
        if ((long)rt->peers[i].conns * sv[first].weight !=
            (long)rt->peers[first].conns * sv[i].weight)
            continue;
        sh_peer_rt_t *p = &rt->peers[i];
        p->current_weight += p->effective_weight;
        total += p->effective_weight;
        if (p->effective_weight < sv[i].weight)
            p->effective_weight++;
        if (p->current_weight > rt->peers[best].current_weight)
            best = (int)i;
    }
    rt->peers[best].current_weight -= total;
    return best;
}

static int lc_pick(sh_ups_rt_t *rt, uint64_t tried, uint64_t now, sh_request_t *r)
{
    if (rt->single)
        return rr_pick(rt, tried, now, r);
    int i = lc_among(rt, tried, now, 0);
    if (i < 0)
        i = lc_among(rt, tried, now, 1);
    return i < 0 ? -1 : take(rt, i, now);
}

static const sh_balancer_ops_t least_conn_ops = {
    .name = "least_conn", .pick = lc_pick, .done = peer_done};

/* ---- shared by the hash methods and random */

/* The primary selected by w in [0, total weight): servers in order, each
 * covering `weight` values. */
static int by_weight(const sh_ups_rt_t *rt, uint32_t w)
{
    size_t i = 0, last = 0;
    for (; i < rt->conf->nservers; i++) {
        const sh_ups_server_t *s = &rt->conf->servers[i];
        if (s->backup)
            continue;
        last = i;
        if (w < (uint32_t)s->weight)
            return (int)i;
        w -= (uint32_t)s->weight;
    }
    return (int)last;
}

enum { MAX_REHASH = 20 }; /* nginx: 20 tries, then round robin */

/* ---- ip_hash */

static int ip_hash_pick(sh_ups_rt_t *rt, uint64_t tried, uint64_t now, sh_request_t *r)
{
    static const unsigned char pseudo[3] = {0, 0, 0}; /* not an IP client */
    if (rt->single || rt->total_weight <= 0)
        return rr_pick(rt, tried, now, r);
    const unsigned char *addr = pseudo;
    size_t alen = 3;
    if (r != NULL && r->c != NULL) {
        const struct sockaddr_in6 *peer = sh_request_peer(r); /* realip's, as nginx */
        if (peer->sin6_family == AF_INET) {
            addr = (const unsigned char *)&((const struct sockaddr_in *)peer)->sin_addr;
            alen = 3; /* the /24: clients behind one NAT range stick together */
        } else if (peer->sin6_family == AF_INET6) {
            addr = peer->sin6_addr.s6_addr;
            alen = 16;
        }
    }
    uint32_t hash = 89;
    for (int tries = 0;;) {
        for (size_t k = 0; k < alen; k++)
            hash = (hash * 113 + addr[k]) % 6271;
        int i = by_weight(rt, hash % (uint32_t)rt->total_weight);
        if (usable(rt, (size_t)i, tried, now))
            return take(rt, i, now);
        if (++tries > MAX_REHASH)
            return rr_pick(rt, tried, now, r);
    }
}

static const sh_balancer_ops_t ip_hash_ops = {
    .name = "ip_hash", .pick = ip_hash_pick, .done = peer_done};

/* ---- hash KEY */

static void hash_init(sh_ups_rt_t *rt)
{
    rt->bal = sh_new(sh_bal_data_t);
}

static void bal_dispose(sh_ups_rt_t *rt)
{
    sh_bal_data_t *d = rt->bal;
    if (d == NULL)
        return;
    sh_buf_dispose(&d->key);
    sh_free(d->points);
    sh_free(d->name_id);
    sh_free(d->ranges);
    sh_free(d->range_srv);
    sh_free(d);
    rt->bal = NULL;
}

/* Evaluate the key for r into the reused buffer. */
static sh_str_t eval_key(sh_ups_rt_t *rt, sh_request_t *r)
{
    sh_bal_data_t *d = rt->bal;
    d->key.len = 0;
    if (r != NULL && rt->conf->hash_key != NULL)
        sh_cv_eval(rt->conf->hash_key, r, &d->key);
    return (sh_str_t){d->key.data ? d->key.data : "", d->key.len};
}

static int hash_pick(sh_ups_rt_t *rt, uint64_t tried, uint64_t now, sh_request_t *r)
{
    if (rt->single || rt->total_weight <= 0)
        return rr_pick(rt, tried, now, r);
    sh_str_t key = eval_key(rt, r);
    uint32_t acc = 0;
    for (unsigned rehash = 0;; rehash++) {
        uint32_t crc = CRC32_INIT;
        if (rehash > 0) {
            char num[16];
            int n = snprintf(num, sizeof(num), "%u", rehash);
            crc = crc32_update(crc, num, (size_t)n);
        }
        crc = CRC32_FINAL(crc32_update(crc, key.p, key.len));
        acc += (crc >> 16) & 0x7fff;
        int i = by_weight(rt, acc % (uint32_t)rt->total_weight);
        if (usable(rt, (size_t)i, tried, now))
            return take(rt, i, now);
        if (rehash + 1 > MAX_REHASH)
            return rr_pick(rt, tried, now, r);
    }
}

static const sh_balancer_ops_t hash_ops = {.name = "hash",
                                           .init = hash_init,
                                           .dispose = bal_dispose,
                                           .pick = hash_pick,
                                           .done = peer_done};

/* ---- hash KEY consistent */

static int point_cmp(const void *a, const void *b)
{
    const ring_point_t *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return 0;
}

static void chash_init(sh_ups_rt_t *rt)
{
    const sh_upstream_t *u = rt->conf;
    sh_bal_data_t *d = sh_new(sh_bal_data_t);
    rt->bal = d;
    d->name_id = sh_calloc(u->nservers ? u->nservers : 1, sizeof(*d->name_id));
    size_t total = 0;
    for (size_t i = 0; i < u->nservers; i++) {
        d->name_id[i] = (uint32_t)i;
        for (size_t j = 0; j < i; j++)
            if (strcmp(u->servers[i].name, u->servers[j].name) == 0) {
                d->name_id[i] = d->name_id[j];
                break;
            }
        if (!u->servers[i].backup && u->servers[i].rslot == 0)
            total += (size_t)u->servers[i].weight * 160;
    }
    d->points = sh_calloc(total ? total : 1, sizeof(*d->points));
    size_t n = 0;
    for (size_t i = 0; i < u->nservers; i++) {
        const sh_ups_server_t *s = &u->servers[i];
        if (s->backup || s->rslot > 0) /* a `resolve` server's slots share its points */
            continue;
        /* Ketama as Cache::Memcached::Fast: crc32(HOST \0 PORT PREV), the
         * port being the digits after the last ':' of the name as written */
        const char *name = s->name;
        size_t len = strlen(name), hlen = len;
        const char *port = "";
        size_t plen = 0;
        for (size_t j = 0; j < len; j++) {
            char c = name[len - j - 1];
            if (c == ':') {
                hlen = len - j - 1;
                port = name + len - j;
                plen = j;
                break;
            }
            if (c < '0' || c > '9')
                break;
        }
        uint32_t base = crc32_update(CRC32_INIT, name, hlen);
        base = crc32_update(base, "", 1);
        base = crc32_update(base, port, plen);
        uint32_t prev = 0;
        for (size_t k = 0; k < (size_t)s->weight * 160; k++) {
            unsigned char le[4] = {(unsigned char)prev, (unsigned char)(prev >> 8),
                                   (unsigned char)(prev >> 16), (unsigned char)(prev >> 24)};
            uint32_t h = CRC32_FINAL(crc32_update(base, le, 4));
            d->points[n].hash = h;
            d->points[n].name_id = d->name_id[i];
            n++;
            prev = h;
        }
    }
    qsort(d->points, n, sizeof(*d->points), point_cmp);
    size_t k = 0; /* keep the first point of equal hashes */
    for (size_t j = 1; j < n; j++)
        if (d->points[j].hash != d->points[k].hash)
            d->points[++k] = d->points[j];
    d->npoints = n ? k + 1 : 0;
}

/* First point with hash >= h (npoints when past the last: wraps). */
static size_t ring_find(const sh_bal_data_t *d, uint32_t h)
{
    size_t i = 0, j = d->npoints;
    while (i < j) {
        size_t m = i + (j - i) / 2;
        if (d->points[m].hash < h)
            i = m + 1;
        else
            j = m;
    }
    return i;
}

static int chash_pick(sh_ups_rt_t *rt, uint64_t tried, uint64_t now, sh_request_t *r)
{
    sh_bal_data_t *d = rt->bal;
    if (d->npoints == 0)
        return -1;
    /* Nothing usable at all: answer now rather than walk the whole ring
     * (the walk would end the same way). */
    int any = 0;
    for (size_t i = 0; i < rt->conf->nservers && !any; i++)
        any = !rt->conf->servers[i].backup && usable(rt, i, tried, now);
    if (!any)
        return -1;
    sh_str_t key = eval_key(rt, r);
    uint32_t h = CRC32_FINAL(crc32_update(CRC32_INIT, key.p, key.len));
    size_t at = ring_find(d, h);
    const sh_ups_server_t *sv = rt->conf->servers;
    for (size_t tries = 0; tries < d->npoints; tries++, at++) {
        uint32_t want = d->points[at % d->npoints].name_id;
        /* the servers written with that name, by smooth weighted round robin */
        int best = -1, total = 0;
        for (size_t i = 0; i < rt->conf->nservers; i++) {
            if (d->name_id[i] != want || sv[i].backup || !usable(rt, i, tried, now))
                continue;
            sh_peer_rt_t *p = &rt->peers[i];
            p->current_weight += p->effective_weight;
            total += p->effective_weight;
            if (p->effective_weight < sv[i].weight)
                p->effective_weight++;
            if (best < 0 || p->current_weight > rt->peers[best].current_weight)
                best = (int)i;
        }
        if (best >= 0) {
            rt->peers[best].current_weight -= total;
            return take(rt, best, now);
        }
    }
    return -1;
}

static const sh_balancer_ops_t chash_ops = {.name = "hash_consistent",
                                            .init = chash_init,
                                            .dispose = bal_dispose,
                                            .pick = chash_pick,
                                            .done = peer_done};

/* ---- random [two [least_conn]] */

static void random_init(sh_ups_rt_t *rt)
{
    const sh_upstream_t *u = rt->conf;
    sh_bal_data_t *d = sh_new(sh_bal_data_t);
    rt->bal = d;
    size_t n = u->nservers ? u->nservers : 1;
    d->ranges = sh_calloc(n, sizeof(*d->ranges));
    d->range_srv = sh_calloc(n, sizeof(*d->range_srv));
    uint32_t acc = 0;
    size_t k = 0;
    for (size_t i = 0; i < u->nservers; i++) {
        if (u->servers[i].backup)
            continue;
        d->ranges[k] = acc; /* range k covers [acc, acc + weight) */
        d->range_srv[k] = (uint32_t)i;
        acc += (uint32_t)u->servers[i].weight;
        k++;
    }
}

static int random_draw(sh_ups_rt_t *rt)
{
    const sh_bal_data_t *d = rt->bal;
    uint32_t x = (uint32_t)(rng_next(rt) % (uint64_t)rt->total_weight);
    size_t i = 0, j = (size_t)rt->nprimary;
    while (j - i > 1) { /* last range starting at or before x */
        size_t m = (i + j) / 2;
        if (x < d->ranges[m])
            j = m;
        else
            i = m;
    }
    return (int)d->range_srv[i];
}

static int random_pick(sh_ups_rt_t *rt, uint64_t tried, uint64_t now, sh_request_t *r)
{
    if (rt->nprimary < 2 || rt->total_weight <= 0)
        return rr_pick(rt, tried, now, r);
    const sh_ups_server_t *sv = rt->conf->servers;
    int prev = -1;
    for (int tries = 0;;) {
        int i = random_draw(rt);
        if (i != prev && usable(rt, (size_t)i, tried, now)) {
            if (!rt->conf->random_two)
                return take(rt, i, now);
            if (prev >= 0) {
                /* the one with fewer connections per unit of weight */
                if ((long)rt->peers[i].conns * sv[prev].weight >
                    (long)rt->peers[prev].conns * sv[i].weight)
                    i = prev;
                return take(rt, i, now);
            }
            prev = i;
        }
        if (++tries > MAX_REHASH)
            return rr_pick(rt, tried, now, r);
    }
}

static const sh_balancer_ops_t random_ops = {.name = "random",
                                             .init = random_init,
                                             .dispose = bal_dispose,
                                             .pick = random_pick,
                                             .done = peer_done};
