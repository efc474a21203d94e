/* SPDX-License-Identifier: Apache-2.0 */
/*
 * geo (see geo.h). A block is compiled at load into a list of networks
 * (IPv4 and IPv6, as 16-byte addresses with IPv4 mapped) with their
 * values; a lookup takes the longest prefix that holds the address. The
 * lists are immutable after load; the getter runs on workers.
 */
#include "node/modules/geo.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/vars.h"

typedef struct {
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    uint8_t end[16];  /* ranges: the last address */
    int bits;         /* prefix length over the 128 bits */
    char *value;
} net_t;

typedef struct {
    char *name;
    sh_cv_t *source; /* NULL: the client's address */
    net_t *nets;
    size_t nnets;
    net_t *proxies;
    size_t nproxies;
    int proxy_recursive;
    int ranges;
    char *dflt;
} geo_t;

typedef struct {
    geo_t **v;
    size_t n;
} geo_main_t;

static void v4mapped(uint8_t out[16], const void *in4)
{
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, in4, 4);
}

/* "a.b.c.d" or an IPv6 address into 16 bytes; 4 or 6, 0 when invalid. */
static int parse_ip(const char *s, size_t len, uint8_t out[16])
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        v4mapped(out, &a4);
        return 4;
    }
    if (inet_pton(AF_INET6, buf, &a6) == 1) {
        memcpy(out, &a6, 16);
        return 6;
    }
    return 0;
}

static int in_net(const uint8_t a[16], const uint8_t n[16], int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, n, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (n[full] & mask);
}

/* "CIDR", "ADDR" or "all": 0, or -1 when invalid. */
static int parse_net(const char *s, net_t *n)
{
    if (strcmp(s, "all") == 0) {
        memset(n->addr, 0, 16);
        n->bits = 0;
        return 0;
    }
    const char *slash = strchr(s, '/');
    size_t al = slash ? (size_t)(slash - s) : strlen(s);
    int fam = parse_ip(s, al, n->addr);
    if (fam == 0)
        return -1;
    int max = fam == 4 ? 32 : 128, bits = max;
    if (slash != NULL) {
        char *end;
        long v = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || v < 0 || v > max)
            return -1;
        bits = (int)v;
    }
    n->bits = fam == 4 ? 96 + bits : bits;
    /* the host part is cleared (nginx warns; the network is what counts) */
    for (int i = n->bits; i < 128; i++)
        n->addr[i / 8] &= (uint8_t) ~(0x80 >> (i % 8));
    return 0;
}

static const char *lookup(const geo_t *g, const uint8_t a[16])
{
    const net_t *best = NULL;
    for (size_t i = 0; i < g->nnets; i++) {
        const net_t *n = &g->nets[i];
        if (g->ranges) {
            if (memcmp(a, n->addr, 16) >= 0 && memcmp(a, n->end, 16) <= 0)
                best = n; /* the last range defined wins */
        } else if (in_net(a, n->addr, n->bits) && (best == NULL || n->bits >= best->bits)) {
            best = n;
        }
    }
    return best != NULL ? best->value : g->dflt;
}

static int is_proxy(const geo_t *g, const uint8_t a[16])
{
    for (size_t i = 0; i < g->nproxies; i++)
        if (in_net(a, g->proxies[i].addr, g->proxies[i].bits))
            return 1;
    return 0;
}

static int geo_get(sh_request_t *r, const void *data, sh_buf_t *out)
{
    const geo_t *g = data;
    uint8_t a[16];
    int have = 0;
    if (g->source != NULL) {
        size_t mark = out->len;
        sh_cv_eval(g->source, r, out);
        have = parse_ip(out->data + mark, out->len - mark, a) != 0;
        out->len = mark;
        if (!have) { /* nginx: INADDR_NONE */
            static const uint8_t none[4] = {255, 255, 255, 255};
            v4mapped(a, none);
            have = 1;
        }
    } else {
        const struct sockaddr_in6 *p = sh_request_peer(r);
        if (p->sin6_family == AF_INET)
            v4mapped(a, &((const struct sockaddr_in *)p)->sin_addr);
        else
            memcpy(a, &p->sin6_addr, 16);
        have = 1;
    }
    if (have && g->nproxies > 0 && is_proxy(g, a)) {
        /* the client is the address X-Forwarded-For names last (or, with
         * proxy_recursive, the last one not a trusted proxy) */
        for (size_t i = 0; i < r->h.nheaders; i++) {
            const sh_http1_header_t *h = &r->h.headers[i];
            if (h->name_len != 15 || strncasecmp(h->name, "x-forwarded-for", 15) != 0)
                continue;
            const char *e = h->value + h->value_len;
            while (e > h->value) {
                const char *s = e;
                while (s > h->value && s[-1] != ',')
                    s--;
                const char *ts = s, *te = e;
                while (ts < te && (*ts == ' ' || *ts == '\t'))
                    ts++;
                while (te > ts && (te[-1] == ' ' || te[-1] == '\t'))
                    te--;
                uint8_t x[16];
                if (parse_ip(ts, (size_t)(te - ts), x) == 0)
                    break;
                memcpy(a, x, 16);
                if (!g->proxy_recursive || !is_proxy(g, x))
                    break;
                e = s > h->value ? s - 1 : s;
            }
            break;
        }
    }
    const char *v = lookup(g, a);
    if (v != NULL)
        sh_buf_appends(out, v);
    return 1;
}

static void geo_destroy(geo_t *g)
{
    for (size_t i = 0; i < g->nnets; i++)
        sh_free(g->nets[i].value);
    sh_free(g->nets);
    sh_free(g->proxies);
    sh_cv_destroy(g->source);
    sh_free(g->dflt);
    sh_free(g->name);
    sh_free(g);
}

static int geo_line(sh_conf_t *cf, geo_t *g, const sh_conf_node_t *c);

static int geo_lines(sh_conf_t *cf, geo_t *g, const sh_conf_node_t *first)
{
    int rc = 0;
    for (const sh_conf_node_t *c = first; c != NULL && rc == 0; c = c->next) {
        cf->node = c;
        rc = geo_line(cf, g, c);
    }
    return rc;
}

static int geo_line(sh_conf_t *cf, geo_t *g, const sh_conf_node_t *c)
{
    const char *k = c->args[0];
    if (c->block)
        return sh_conf_error(cf, "invalid geo line");
    if (c->nargs == 1 && strcmp(k, "ranges") == 0) {
        if (g->nnets > 0)
            return sh_conf_error(cf, "\"ranges\" must come before the networks");
        g->ranges = 1;
        return 0;
    }
    if (c->nargs == 1 && strcmp(k, "proxy_recursive") == 0) {
        g->proxy_recursive = 1;
        return 0;
    }
    if (c->nargs != 2)
        return sh_conf_error(cf, "invalid number of arguments in geo");
    const char *v = c->args[1];
    if (strcmp(k, "default") == 0) {
        sh_free(g->dflt);
        g->dflt = sh_strdup(v);
        return 0;
    }
    if (strcmp(k, "include") == 0) {
        /* the parser already expands `include` in place; nothing here */
        return sh_conf_error(cf, "include in geo is expanded by the parser");
    }
    if (strcmp(k, "proxy") == 0) {
        net_t n = {0};
        if (parse_net(v, &n) != 0)
            return sh_conf_error(cf, "invalid network \"%s\"", v);
        g->proxies = sh_realloc(g->proxies, (g->nproxies + 1) * sizeof(*g->proxies));
        g->proxies[g->nproxies++] = n;
        return 0;
    }
    if (strcmp(k, "delete") == 0) {
        net_t n = {0};
        if (parse_net(v, &n) != 0)
            return sh_conf_error(cf, "invalid network \"%s\"", v);
        for (size_t i = 0; i < g->nnets;) {
            if (g->nets[i].bits == n.bits && memcmp(g->nets[i].addr, n.addr, 16) == 0) {
                sh_free(g->nets[i].value);
                memmove(&g->nets[i], &g->nets[i + 1], (g->nnets - i - 1) * sizeof(net_t));
                g->nnets--;
            } else {
                i++;
            }
        }
        return 0;
    }
    net_t n = {0};
    if (g->ranges) {
        const char *dash = strchr(k, '-');
        if (dash == NULL || parse_ip(k, (size_t)(dash - k), n.addr) != 4 ||
            parse_ip(dash + 1, strlen(dash + 1), n.end) != 4 || memcmp(n.addr, n.end, 16) > 0)
            return sh_conf_error(cf, "invalid range \"%s\"", k);
        for (size_t i = 0; i < g->nnets; i++) {
            const net_t *o = &g->nets[i];
            int inside = memcmp(n.addr, o->addr, 16) >= 0 && memcmp(n.end, o->end, 16) <= 0;
            int around = memcmp(n.addr, o->addr, 16) <= 0 && memcmp(n.end, o->end, 16) >= 0;
            int apart = memcmp(n.end, o->addr, 16) < 0 || memcmp(n.addr, o->end, 16) > 0;
            if (!inside && !around && !apart)
                return sh_conf_error(cf, "range \"%s\" overlaps an earlier one", k);
        }
    } else if (parse_net(k, &n) != 0) {
        return sh_conf_error(cf, "invalid network \"%s\"", k);
    }
    n.value = sh_strdup(v);
    /* a network given twice: the later value (nginx warns "duplicate") */
    for (size_t i = 0; i < g->nnets && !g->ranges; i++)
        if (g->nets[i].bits == n.bits && memcmp(g->nets[i].addr, n.addr, 16) == 0) {
            sh_free(g->nets[i].value);
            g->nets[i].value = n.value;
            return 0;
        }
    g->nets = sh_realloc(g->nets, (g->nnets + 1) * sizeof(*g->nets));
    g->nets[g->nnets++] = n;
    return 0;
}

static int geo_block(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    (void)conf;
    sh_http_block_t *b = cf->user;
    geo_main_t *gm = sh_http_main_conf(b->main, &sh_geo_module);
    const sh_conf_node_t *n = cf->node;
    const char *dst = n->args[n->nargs - 1];
    if (dst[0] != '$' || dst[1] == '\0')
        return sh_conf_error(cf, "invalid variable name \"%s\"", dst);
    geo_t *g = sh_new(geo_t);
    g->name = sh_strdup(dst + 1);
    int rc = 0;
    if (n->nargs == 3)
        rc = sh_cv_compile(cf, n->args[1], &g->source);
    if (rc == 0)
        rc = geo_lines(cf, g, n->child);
    cf->node = n;
    if (rc == 0)
        rc = sh_vars_define_changeable(cf, g->name, geo_get, g);
    if (rc != 0) {
        geo_destroy(g);
        return rc;
    }
    gm->v = sh_realloc(gm->v, (gm->n + 1) * sizeof(*gm->v));
    gm->v[gm->n++] = g;
    return 0;
}

static void *geo_create_main(void)
{
    return sh_new(geo_main_t);
}

static void geo_destroy_main(void *conf)
{
    geo_main_t *gm = conf;
    for (size_t i = 0; i < gm->n; i++)
        geo_destroy(gm->v[i]);
    sh_free(gm->v);
    sh_free(gm);
}

static const sh_conf_cmd_t geo_cmds[] = {
    {"geo", SH_CTX_HTTP | SH_CONF_BLOCK | SH_CONF_TAKE12, geo_block, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t geo_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_main = geo_create_main,
    .destroy_main = geo_destroy_main,
};

sh_conf_module_t sh_geo_module = {
    .name = "geo",
    .cmds = geo_cmds,
    .ctx = &geo_ctx,
};
