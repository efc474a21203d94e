/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The http core module: the `http`, `server` and `location` blocks, the
 * directives of the HTTP core (listen, server_name, return, timeouts and
 * client limits), the merge of every HTTP module's location confs after
 * the http block is read, and the routing the workers do with the result
 * (server by listen address and Host, location in nginx's order).
 *
 * Runs at configuration load (main thread); routing runs on workers and
 * only reads.
 */
#include "node/pipeline/http_conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/pipeline/corevars.h"
#include "node/pipeline/pipeline.h"
#include "node/pipeline/regex.h"
#include "node/pipeline/vars.h"

static const sh_http_module_t *http_ctx(const sh_conf_module_t *m)
{
    const sh_http_module_t *h = m->ctx;
    return (h != NULL && h->magic == SH_HTTP_MODULE_MAGIC) ? h : NULL;
}

/* ------------------------------------------------------ addresses -- */

int sh_parse_addr(const char *s, int default_port, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *port = NULL;
    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (e == NULL || (size_t)(e - s - 1) >= sizeof(host))
            return SH_EINVAL;
        memcpy(host, s + 1, (size_t)(e - s - 1));
        host[e - s - 1] = '\0';
        if (e[1] == ':')
            port = e + 2;
        else if (e[1] != '\0')
            return SH_EINVAL;
    } else {
        const char *colon = strrchr(s, ':');
        int all_digits = 1;
        for (const char *q = s; *q; q++)
            if (!isdigit((unsigned char)*q))
                all_digits = 0;
        if (all_digits) {
            strcpy(host, "0.0.0.0");
            port = s;
        } else if (colon != NULL) {
            if ((size_t)(colon - s) >= sizeof(host))
                return SH_EINVAL;
            memcpy(host, s, (size_t)(colon - s));
            host[colon - s] = '\0';
            port = colon + 1;
        } else {
            if (strlen(s) >= sizeof(host))
                return SH_EINVAL;
            strcpy(host, s);
        }
    }
    int p = default_port;
    if (port != NULL) {
        char *end;
        long v = strtol(port, &end, 10);
        if (*port == '\0' || *end != '\0' || v < 1 || v > 65535)
            return SH_EINVAL;
        p = (int)v;
    }
    if (p <= 0)
        return SH_EINVAL;
    if (strcmp(host, "*") == 0)
        strcpy(host, "0.0.0.0");
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)p);
        *len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)p);
        *len = sizeof(*in6);
        return 0;
    }
    /* A name: resolved once, at load time, like nginx (never on a worker). */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
        return SH_ENOENT;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    if (ss->ss_family == AF_INET)
        in4->sin_port = htons((uint16_t)p);
    else
        in6->sin6_port = htons((uint16_t)p);
    freeaddrinfo(res);
    return 0;
}

void sh_addr_text(const struct sockaddr *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, ntohs(in4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, outlen, "unix:");
    }
}

/* ------------------------------------------------------ levels -- */

static sh_http_loc_t *loc_create(sh_conf_t *cf, sh_http_srv_t *srv, sh_http_loc_t *parent)
{
    sh_http_loc_t *loc = sh_new(sh_http_loc_t);
    loc->srv = srv;
    loc->parent = parent;
    loc->name = sh_strdup("");
    loc->file = cf->node ? cf->node->file : "";
    loc->line = cf->node ? cf->node->line : 0;
    loc->confs = sh_calloc(cf->nmodules, sizeof(void *));
    for (unsigned i = 0; i < cf->nmodules; i++) {
        const sh_http_module_t *h = http_ctx(cf->modules[i]);
        if (h != NULL && h->create_loc != NULL)
            loc->confs[i] = h->create_loc();
    }
    return loc;
}

static void loc_destroy(sh_http_loc_t *loc, sh_conf_module_t *const *modules, unsigned n)
{
    if (loc == NULL)
        return;
    for (size_t i = 0; i < loc->nchildren; i++)
        loc_destroy(loc->children[i], modules, n);
    sh_free(loc->children);
    for (unsigned i = 0; i < n; i++) {
        const sh_http_module_t *h = http_ctx(modules[i]);
        if (h != NULL && h->destroy_loc != NULL && loc->confs[i] != NULL)
            h->destroy_loc(loc->confs[i]);
    }
    sh_free(loc->confs);
    sh_free(loc->filters);
    sh_free(loc->name);
    sh_regex_destroy(loc->regex);
    sh_free(loc);
}

/* Merge loc's confs from its parent (already merged), then its children. */
static int loc_merge(sh_conf_t *cf, sh_http_loc_t *parent, sh_http_loc_t *loc)
{
    sh_http_block_t *b = cf->user;
    b->srv = loc->srv;
    b->loc = loc;
    if (parent != NULL) {
        for (unsigned i = 0; i < cf->nmodules; i++) {
            const sh_http_module_t *h = http_ctx(cf->modules[i]);
            if (h == NULL || h->merge_loc == NULL || loc->confs[i] == NULL)
                continue;
            /* errors during merge refer to the location's own line */
            sh_conf_node_t fake = {.file = loc->file, .line = loc->line};
            const sh_conf_node_t *saved = cf->node;
            cf->node = &fake;
            int rc = h->merge_loc(cf, parent->confs[i], loc->confs[i]);
            cf->node = saved;
            if (rc != 0)
                return rc;
        }
    }
    for (size_t i = 0; i < loc->nchildren; i++) {
        int rc = loc_merge(cf, loc, loc->children[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------ main conf -- */

typedef struct {
    sh_http_main_t *main; /* NULL until `http {}` is read */
} core_main_t;

static void *core_create_main(void)
{
    return sh_new(core_main_t);
}

static void srv_destroy(sh_http_srv_t *s, sh_conf_module_t *const *modules, unsigned n)
{
    for (size_t i = 0; i < s->nnames; i++) {
        sh_free(s->names[i]);
        sh_regex_destroy(s->name_re[i]);
    }
    sh_free(s->names);
    sh_free(s->name_re);
    sh_free(s->listens);
    loc_destroy(s->loc, modules, n);
    sh_free(s);
}

static void core_destroy_main(void *conf)
{
    core_main_t *cm = conf;
    sh_http_main_t *m = cm->main;
    if (m != NULL) {
        sh_conf_module_t *const *mods = m->modules;
        unsigned n = m->nmodules;
        for (size_t i = 0; i < m->nservers; i++)
            srv_destroy(m->servers[i], mods, n);
        sh_free(m->servers);
        for (size_t i = 0; i < m->naddrs; i++)
            sh_free(m->addrs[i].servers);
        sh_free(m->addrs);
        for (unsigned i = 0; i < n; i++) {
            const sh_http_module_t *h = http_ctx(mods[i]);
            if (h != NULL && h->destroy_main != NULL && m->main_confs[i] != NULL)
                h->destroy_main(m->main_confs[i]);
        }
        sh_free(m->main_confs);
        loc_destroy(m->loc, mods, n);
        sh_vars_reg_destroy(m->vars);
        sh_pipeline_destroy(m->pipeline);
        sh_free(m);
    }
    sh_free(cm);
}

sh_http_main_t *sh_http_main(void **main_confs)
{
    core_main_t *cm = main_confs[sh_http_core_module.index];
    return cm ? cm->main : NULL;
}

/* ------------------------------------------------------ blocks -- */

static int same_addr(const sh_listen_opt_t *a, const sh_listen_opt_t *b)
{
    return a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

static int build_addrs(sh_conf_t *cf, sh_http_main_t *m)
{
    for (size_t i = 0; i < m->nservers; i++) {
        sh_http_srv_t *s = m->servers[i];
        if (s->nlistens == 0) {
            /* nginx: a server without listen is on *:80 (root) or *:8000 */
            s->listens = sh_new(sh_listen_opt_t);
            s->nlistens = 1;
            sh_parse_addr("0.0.0.0:80", 80, &s->listens[0].addr, &s->listens[0].addrlen);
            snprintf(s->listens[0].text, sizeof(s->listens[0].text), "0.0.0.0:80");
            s->listens[0].backlog = 511;
        }
        for (size_t j = 0; j < s->nlistens; j++) {
            sh_listen_opt_t *l = &s->listens[j];
            sh_http_addr_t *a = NULL;
            for (size_t k = 0; k < m->naddrs; k++)
                if (same_addr(&m->addrs[k].opt, l))
                    a = &m->addrs[k];
            if (a == NULL) {
                m->addrs = sh_realloc(m->addrs, (m->naddrs + 1) * sizeof(*m->addrs));
                a = &m->addrs[m->naddrs++];
                memset(a, 0, sizeof(*a));
                a->opt = *l;
            } else {
                if (l->default_server && a->default_srv != NULL && a->opt.default_server) {
                    sh_conf_node_t fake = {.file = s->file, .line = s->line};
                    cf->node = &fake;
                    return sh_conf_error(cf, "a duplicate default server for %s", l->text);
                }
                a->opt.ssl |= l->ssl;
                a->opt.http2 |= l->http2;
                a->opt.proxy_protocol |= l->proxy_protocol;
                if (l->default_server)
                    a->opt.default_server = 1;
            }
            a->servers = sh_realloc(a->servers, (a->nservers + 1) * sizeof(*a->servers));
            a->servers[a->nservers++] = s;
            if (a->default_srv == NULL || l->default_server)
                a->default_srv = s;
        }
    }
    return 0;
}

static int http_block(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    core_main_t *cm = conf;
    if (cm->main != NULL)
        return sh_conf_error(cf, "\"http\" directive is duplicate");
    sh_http_main_t *m = sh_new(sh_http_main_t);
    cm->main = m;
    m->nmodules = cf->nmodules;
    m->modules = cf->modules;
    m->main_confs = sh_calloc(cf->nmodules, sizeof(void *));
    for (unsigned i = 0; i < cf->nmodules; i++) {
        const sh_http_module_t *h = http_ctx(cf->modules[i]);
        if (h != NULL && h->create_main != NULL)
            m->main_confs[i] = h->create_main();
    }
    m->loc = loc_create(cf, NULL, NULL);
    m->pipeline = sh_pipeline_create();

    sh_http_block_t b = {.main = m, .srv = NULL, .loc = m->loc};
    void *saved_user = cf->user;
    cf->user = &b;
    const sh_conf_node_t *node = cf->node;
    int rc = 0;
    uint32_t saved_ctx = cf->ctx;
    cf->ctx = SH_CTX_HTTP; /* the variables are the http block's */
    for (unsigned i = 0; i < cf->nmodules && rc == 0; i++) {
        const sh_http_module_t *h = http_ctx(cf->modules[i]);
        if (h != NULL && h->preconfiguration != NULL)
            rc = h->preconfiguration(cf, m);
    }
    sh_vars_preconf_done(m);
    cf->ctx = saved_ctx;
    if (rc == 0)
        rc = sh_conf_walk(cf, node->child, SH_CTX_HTTP, m->loc->confs);
    if (rc == 0) /* every $name used is defined somewhere (map, named capture) */
        rc = sh_vars_check(cf, m);
    if (rc == 0) {
        /* merge: http level -> each server level -> its locations */
        for (size_t i = 0; i < m->nservers && rc == 0; i++)
            rc = loc_merge(cf, m->loc, m->servers[i]->loc);
    }
    if (rc == 0)
        rc = build_addrs(cf, m);
    for (unsigned i = 0; i < cf->nmodules && rc == 0; i++) {
        const sh_http_module_t *h = http_ctx(cf->modules[i]);
        if (h != NULL && h->init_main != NULL) {
            cf->node = node;
            rc = h->init_main(cf, m, m->main_confs[i]);
        }
    }
    for (unsigned i = 0; i < cf->nmodules && rc == 0; i++) {
        const sh_http_module_t *h = http_ctx(cf->modules[i]);
        if (h != NULL && h->postconfiguration != NULL) {
            cf->node = node;
            rc = h->postconfiguration(cf, m);
        }
    }
    if (rc == 0)
        rc = sh_pipeline_build(cf, m);
    cf->user = saved_user;
    return rc;
}

static int server_block(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_http_block_t *b = cf->user;
    sh_http_main_t *m = b->main;
    sh_http_srv_t *s = sh_new(sh_http_srv_t);
    s->file = cf->node->file;
    s->line = cf->node->line;
    m->servers = sh_realloc(m->servers, (m->nservers + 1) * sizeof(*m->servers));
    m->servers[m->nservers++] = s;
    s->loc = loc_create(cf, s, NULL);

    sh_http_block_t inner = {.main = m, .srv = s, .loc = s->loc};
    cf->user = &inner;
    int rc = sh_conf_walk(cf, cf->node->child, SH_CTX_SERVER, s->loc->confs);
    cf->user = b;
    return rc;
}

static int location_block(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_http_block_t *b = cf->user;
    const sh_conf_node_t *n = cf->node;
    int match = SH_LOC_PREFIX;
    const char *name;
    if (n->nargs == 3) {
        const char *mod = n->args[1];
        if (strcmp(mod, "=") == 0)
            match = SH_LOC_EXACT;
        else if (strcmp(mod, "^~") == 0)
            match = SH_LOC_PREFERRED;
        else if (strcmp(mod, "~") == 0)
            match = SH_LOC_REGEX;
        else if (strcmp(mod, "~*") == 0)
            match = SH_LOC_REGEX_CASELESS;
        else
            return sh_conf_error(cf, "invalid location modifier \"%s\"", mod);
        name = n->args[2];
    } else {
        name = n->args[1];
        if (name[0] == '=' && name[1] != '\0') {
            match = SH_LOC_EXACT;
            name++;
        } else if (name[0] == '~' && name[1] == '*' && name[2] != '\0') {
            match = SH_LOC_REGEX_CASELESS;
            name += 2;
        } else if (name[0] == '~' && name[1] != '\0') {
            match = SH_LOC_REGEX;
            name++;
        } else if (name[0] == '^' && name[1] == '~' && name[2] != '\0') {
            match = SH_LOC_PREFERRED;
            name += 2;
        } else if (name[0] == '@') {
            match = SH_LOC_NAMED;
        }
    }
    sh_http_loc_t *parent = b->loc;
    if (match == SH_LOC_NAMED && parent != b->srv->loc)
        return sh_conf_error(cf, "named location \"%s\" can be on the server level only", name);
    if (parent->match == SH_LOC_NAMED)
        return sh_conf_error(cf, "location \"%s\" could not be inside the named location \"%s\"",
                             name, parent->name);
    if (parent->match == SH_LOC_EXACT && parent != b->srv->loc)
        return sh_conf_error(cf, "location \"%s\" cannot be inside the exact location \"%s\"", name,
                             parent->name);
    if (parent != b->srv->loc &&
        (match == SH_LOC_PREFIX || match == SH_LOC_PREFERRED || match == SH_LOC_EXACT) &&
        (parent->match == SH_LOC_PREFIX || parent->match == SH_LOC_PREFERRED) &&
        strncmp(name, parent->name, parent->name_len) != 0)
        return sh_conf_error(cf, "location \"%s\" is outside location \"%s\"", name, parent->name);
    for (size_t i = 0; i < parent->nchildren; i++) {
        sh_http_loc_t *o = parent->children[i];
        if (o->match != SH_LOC_REGEX && o->match != SH_LOC_REGEX_CASELESS &&
            o->match != SH_LOC_IF && (o->match == SH_LOC_EXACT) == (match == SH_LOC_EXACT) &&
            match != SH_LOC_REGEX && match != SH_LOC_REGEX_CASELESS && strcmp(o->name, name) == 0)
            return sh_conf_error(cf, "duplicate location \"%s\"", name);
    }
    sh_regex_t *re = NULL;
    if (match == SH_LOC_REGEX || match == SH_LOC_REGEX_CASELESS) {
        char err[256];
        if (sh_regex_compile(name, match == SH_LOC_REGEX_CASELESS, &re, err, sizeof(err)) != 0)
            return sh_conf_error(cf, "pcre2_compile() failed: %s in \"%s\"", err, name);
        int rc = sh_vars_define_captures(cf, re);
        if (rc != 0) {
            sh_regex_destroy(re);
            return rc;
        }
    }
    sh_http_loc_t *loc = loc_create(cf, b->srv, parent);
    sh_free(loc->name);
    loc->name = sh_strdup(name);
    loc->name_len = strlen(name);
    loc->match = match;
    loc->regex = re;
    parent->children =
        sh_realloc(parent->children, (parent->nchildren + 1) * sizeof(*parent->children));
    parent->children[parent->nchildren++] = loc;

    sh_http_block_t inner = *b;
    inner.loc = loc;
    cf->user = &inner;
    int rc = sh_conf_walk(cf, n->child, SH_CTX_LOCATION, loc->confs);
    cf->user = b;
    return rc;
}

sh_http_loc_t *sh_http_loc_create_if(sh_conf_t *cf)
{
    sh_http_block_t *b = cf->user;
    sh_http_loc_t *parent = b->loc;
    sh_http_loc_t *loc = loc_create(cf, b->srv, parent);
    sh_free(loc->name);
    loc->name = sh_strndup(parent->name, parent->name_len);
    loc->name_len = parent->name_len;
    loc->match = SH_LOC_IF;
    parent->children =
        sh_realloc(parent->children, (parent->nchildren + 1) * sizeof(*parent->children));
    parent->children[parent->nchildren++] = loc;
    return loc;
}

const sh_http_loc_t *sh_http_loc_real(const sh_http_loc_t *loc)
{
    while (loc->match == SH_LOC_IF && loc->parent != NULL)
        loc = loc->parent;
    return loc;
}

static int listen_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_http_block_t *b = cf->user;
    sh_http_srv_t *s = b->srv;
    const sh_conf_node_t *n = cf->node;
    sh_listen_opt_t l = {.backlog = 511};
    int rc = sh_parse_addr(n->args[1], 80, &l.addr, &l.addrlen);
    if (rc != 0)
        return sh_conf_error(cf, "invalid address \"%s\" in \"listen\" directive", n->args[1]);
    sh_addr_text((struct sockaddr *)&l.addr, l.text, sizeof(l.text));
    for (unsigned i = 2; i < n->nargs; i++) {
        const char *a = n->args[i];
        if (strcmp(a, "default_server") == 0 || strcmp(a, "default") == 0)
            l.default_server = 1;
        else if (strcmp(a, "ssl") == 0)
            l.ssl = 1;
        else if (strcmp(a, "http2") == 0)
            l.http2 = 1;
        else if (strcmp(a, "reuseport") == 0)
            l.reuseport = 1;
        else if (strcmp(a, "proxy_protocol") == 0)
            l.proxy_protocol = 1;
        else if (strncmp(a, "backlog=", 8) == 0) {
            if (sh_conf_parse_int(a + 8, &l.backlog) != 0)
                return sh_conf_error(cf, "invalid backlog \"%s\"", a + 8);
        } else if (strncmp(a, "so_keepalive=", 13) == 0 || strcmp(a, "deferred") == 0 ||
                   strcmp(a, "bind") == 0 || strncmp(a, "rcvbuf=", 7) == 0 ||
                   strncmp(a, "sndbuf=", 7) == 0 || strncmp(a, "fastopen=", 9) == 0 ||
                   strncmp(a, "ipv6only=", 9) == 0) {
            /* accepted for nginx configurations; the kernel defaults serve */
        } else {
            return sh_conf_error(cf, "invalid parameter \"%s\"", a);
        }
    }
    for (size_t i = 0; i < s->nlistens; i++)
        if (same_addr(&s->listens[i], &l))
            return sh_conf_error(cf, "duplicate listen %s", l.text);
    s->listens = sh_realloc(s->listens, (s->nlistens + 1) * sizeof(*s->listens));
    s->listens[s->nlistens++] = l;
    return 0;
}

static int server_name_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_http_block_t *b = cf->user;
    sh_http_srv_t *s = b->srv;
    const sh_conf_node_t *n = cf->node;
    for (unsigned i = 1; i < n->nargs; i++) {
        const char *arg = n->args[i];
        sh_regex_t *re = NULL;
        if (arg[0] == '~') {
            /* a regex name; nginx matches it against the lower-cased
             * Host, so it is compiled as written (case-sensitive) */
            char err[256];
            if (arg[1] == '\0')
                return sh_conf_error(cf, "empty regex in server name \"%s\"", arg);
            if (sh_regex_compile(arg + 1, 0, &re, err, sizeof(err)) != 0)
                return sh_conf_error(cf, "pcre2_compile() failed: %s in \"%s\"", err, arg + 1);
            int rc = sh_vars_define_captures(cf, re);
            if (rc != 0) {
                sh_regex_destroy(re);
                return rc;
            }
        } else {
            const char *star = strchr(arg, '*');
            size_t al = strlen(arg);
            /* nginx's wildcard forms: "*.name", "name.*", ".name" only */
            if (star != NULL && !(star == arg && arg[1] == '.' && strchr(arg + 1, '*') == NULL) &&
                !(star == arg + al - 1 && al >= 2 && arg[al - 2] == '.' &&
                  star == strchr(arg, '*')))
                return sh_conf_error(cf, "invalid server name or wildcard \"%s\"", arg);
        }
        char *name = sh_strdup(arg);
        if (name[0] != '~')
            for (char *p = name; *p; p++)
                *p = (char)tolower((unsigned char)*p);
        s->names = sh_realloc(s->names, (s->nnames + 1) * sizeof(*s->names));
        s->name_re = sh_realloc(s->name_re, (s->nnames + 1) * sizeof(*s->name_re));
        s->name_re[s->nnames] = re;
        s->names[s->nnames++] = name;
    }
    return 0;
}

/* ------------------------------------------------------ loc conf -- */

static void *core_create_loc(void)
{
    sh_http_core_loc_t *c = sh_new(sh_http_core_loc_t);
    c->keepalive_timeout = SH_CONF_UNSET_MSEC;
    c->keepalive_requests = SH_CONF_UNSET;
    c->client_header_timeout = SH_CONF_UNSET_MSEC;
    c->client_body_timeout = SH_CONF_UNSET_MSEC;
    c->send_timeout = SH_CONF_UNSET_MSEC;
    c->client_max_body_size = SH_CONF_UNSET_SIZE;
    c->client_header_buffer_size = SH_CONF_UNSET_SIZE;
    c->large_header_buffer_size = SH_CONF_UNSET_SIZE;
    c->large_header_buffers = SH_CONF_UNSET;
    c->client_body_buffer_size = SH_CONF_UNSET_SIZE;
    c->server_tokens = SH_CONF_UNSET;
    c->ignore_invalid_headers = SH_CONF_UNSET;
    return c;
}

static int core_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    sh_http_core_loc_t *p = parent, *c = conf;
    SH_CONF_MERGE_MSEC(c->keepalive_timeout, p->keepalive_timeout, 75000);
    SH_CONF_MERGE(c->keepalive_requests, p->keepalive_requests, 1000);
    SH_CONF_MERGE_MSEC(c->client_header_timeout, p->client_header_timeout, 60000);
    SH_CONF_MERGE_MSEC(c->client_body_timeout, p->client_body_timeout, 60000);
    SH_CONF_MERGE_MSEC(c->send_timeout, p->send_timeout, 60000);
    SH_CONF_MERGE_SIZE(c->client_max_body_size, p->client_max_body_size, 1024 * 1024);
    SH_CONF_MERGE_SIZE(c->client_header_buffer_size, p->client_header_buffer_size, 1024);
    SH_CONF_MERGE_SIZE(c->large_header_buffer_size, p->large_header_buffer_size, 8192);
    SH_CONF_MERGE(c->large_header_buffers, p->large_header_buffers, 4);
    SH_CONF_MERGE_SIZE(c->client_body_buffer_size, p->client_body_buffer_size, 16384);
    SH_CONF_MERGE(c->server_tokens, p->server_tokens, 1);
    SH_CONF_MERGE(c->ignore_invalid_headers, p->ignore_invalid_headers, 1);
    return 0;
}

static void core_destroy_loc(void *conf)
{
    sh_free(conf);
}

static int large_buffers_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_http_core_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (c->large_header_buffers != SH_CONF_UNSET)
        return sh_conf_error(cf, "\"%s\" directive is duplicate", n->args[0]);
    if (sh_conf_parse_int(n->args[1], &c->large_header_buffers) != 0 || c->large_header_buffers < 1)
        return sh_conf_error(cf, "invalid value \"%s\"", n->args[1]);
    if (sh_conf_parse_size(n->args[2], &c->large_header_buffer_size) != 0 ||
        c->large_header_buffer_size < 64)
        return sh_conf_error(cf, "invalid value \"%s\"", n->args[2]);
    return 0;
}

#define LOC_CTX (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)
#define OFF(f)  offsetof(sh_http_core_loc_t, f)

static const sh_conf_cmd_t core_cmds[] = {
    {"http", SH_CTX_MAIN | SH_CONF_BLOCK | SH_CONF_NOARGS, http_block, 0, NULL},
    {"server", SH_CTX_HTTP | SH_CONF_BLOCK | SH_CONF_NOARGS, server_block, 0, NULL},
    {"location", SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_BLOCK | SH_CONF_TAKE12, location_block,
     0, NULL},
    {"listen", SH_CTX_SERVER | SH_CONF_1MORE, listen_set, 0, NULL},
    {"server_name", SH_CTX_SERVER | SH_CONF_1MORE, server_name_set, 0, NULL},
    {"keepalive_timeout", LOC_CTX | SH_CONF_TAKE12, sh_conf_set_msec, OFF(keepalive_timeout), NULL},
    {"keepalive_requests", LOC_CTX | SH_CONF_TAKE1, sh_conf_set_num, OFF(keepalive_requests), NULL},
    {"client_header_timeout", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE1, sh_conf_set_msec,
     OFF(client_header_timeout), NULL},
    {"client_body_timeout", LOC_CTX | SH_CONF_TAKE1, sh_conf_set_msec, OFF(client_body_timeout),
     NULL},
    {"send_timeout", LOC_CTX | SH_CONF_TAKE1, sh_conf_set_msec, OFF(send_timeout), NULL},
    {"client_max_body_size", LOC_CTX | SH_CONF_TAKE1, sh_conf_set_size, OFF(client_max_body_size),
     NULL},
    {"client_header_buffer_size", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE1, sh_conf_set_size,
     OFF(client_header_buffer_size), NULL},
    {"large_client_header_buffers", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_TAKE2, large_buffers_set,
     0, NULL},
    {"server_tokens", LOC_CTX | SH_CONF_FLAG, sh_conf_set_flag, OFF(server_tokens), NULL},
    {"ignore_invalid_headers", SH_CTX_HTTP | SH_CTX_SERVER | SH_CONF_FLAG, sh_conf_set_flag,
     OFF(ignore_invalid_headers), NULL},
    /* Accepted with nginx's meaning where the kernel or our design already
     * does the right thing (zero-copy paths, hash sizing). */
    {"sendfile", LOC_CTX | SH_CONF_FLAG, sh_conf_set_ignore, 0, NULL},
    {"tcp_nopush", LOC_CTX | SH_CONF_FLAG, sh_conf_set_ignore, 0, NULL},
    {"tcp_nodelay", LOC_CTX | SH_CONF_FLAG, sh_conf_set_ignore, 0, NULL},
    {"types_hash_max_size", SH_CTX_HTTP | SH_CONF_TAKE1, sh_conf_set_ignore, 0, NULL},
    {"types_hash_bucket_size", SH_CTX_HTTP | SH_CONF_TAKE1, sh_conf_set_ignore, 0, NULL},
    {"server_names_hash_bucket_size", SH_CTX_HTTP | SH_CONF_TAKE1, sh_conf_set_ignore, 0, NULL},
    {"server_names_hash_max_size", SH_CTX_HTTP | SH_CONF_TAKE1, sh_conf_set_ignore, 0, NULL},
    {"client_body_buffer_size", LOC_CTX | SH_CONF_TAKE1, sh_conf_set_size,
     OFF(client_body_buffer_size), NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t core_http_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .preconfiguration = sh_core_vars_define,
    .create_loc = core_create_loc,
    .merge_loc = core_merge_loc,
    .destroy_loc = core_destroy_loc,
};

sh_conf_module_t sh_http_core_module = {
    .name = "http_core",
    .cmds = core_cmds,
    .create_main = core_create_main,
    .destroy_main = core_destroy_main,
    .ctx = &core_http_ctx,
};

/* ------------------------------------------------------ routing -- */

#define HOST_MAX  1024 /* longer Host values never match a regex name */
#define URI_STACK 4096 /* normalized URIs up to this size need no allocation */

/* A leading wildcard ("*.example.com" or ".example.com"): the length of
 * the part that matched, or 0. */
static size_t head_wild(const char *pat, size_t pl, const char *host, size_t len)
{
    if (pat[0] == '*') {
        size_t sl = pl - 1; /* ".example.com": at least one more label */
        return len > sl && strncasecmp(host + len - sl, pat + 1, sl) == 0 ? sl : 0;
    }
    /* ".example.com": "example.com" itself and any name under it */
    if (len == pl - 1 && strncasecmp(host, pat + 1, len) == 0)
        return pl;
    return len > pl && strncasecmp(host + len - pl, pat, pl) == 0 ? pl : 0;
}

sh_http_srv_t *sh_http_find_server_ex(const sh_http_addr_t *addr, const char *host, size_t len,
                                      const sh_regex_t **name_re)
{
    if (name_re != NULL)
        *name_re = NULL;
    if (host == NULL)
        len = 0;
    if (len > 0) {
        /* strip the port and a trailing dot */
        if (host[0] != '[') {
            const char *colon = memchr(host, ':', len);
            if (colon != NULL)
                len = (size_t)(colon - host);
        }
        if (len > 0 && host[len - 1] == '.')
            len--;
    }
    /* 1. exact names ("" matches a request without Host) */
    for (size_t i = 0; i < addr->nservers; i++) {
        sh_http_srv_t *s = addr->servers[i];
        for (size_t j = 0; j < s->nnames; j++) {
            const char *n = s->names[j];
            if (s->name_re[j] == NULL && n[0] != '.' && strchr(n, '*') == NULL &&
                strlen(n) == len && (len == 0 || strncasecmp(n, host, len) == 0))
                return s;
        }
    }
    if (len == 0)
        return addr->default_srv;
    /* 2. the longest wildcard starting with '*' (or '.'); 3. then the
     * longest ending with '*' */
    sh_http_srv_t *best = NULL;
    size_t best_len = 0;
    for (int pass = 0; pass < 2 && best == NULL; pass++) {
        for (size_t i = 0; i < addr->nservers; i++) {
            sh_http_srv_t *s = addr->servers[i];
            for (size_t j = 0; j < s->nnames; j++) {
                const char *n = s->names[j];
                size_t pl = strlen(n), m = 0;
                if (s->name_re[j] != NULL || pl < 2)
                    continue;
                if (pass == 0 && (n[0] == '.' || (n[0] == '*' && n[1] == '.')))
                    m = head_wild(n, pl, host, len);
                else if (pass == 1 && n[pl - 1] == '*' && n[pl - 2] == '.' && len > pl - 1 &&
                         strncasecmp(host, n, pl - 1) == 0)
                    m = pl - 1;
                if (m > best_len) {
                    best = s;
                    best_len = m;
                }
            }
        }
    }
    if (best != NULL)
        return best;
    /* 4. regexes, in config order, on the lower-cased name */
    if (len <= HOST_MAX) {
        char lower[HOST_MAX];
        for (size_t k = 0; k < len; k++)
            lower[k] = (char)tolower((unsigned char)host[k]);
        for (size_t i = 0; i < addr->nservers; i++) {
            sh_http_srv_t *s = addr->servers[i];
            for (size_t j = 0; j < s->nnames; j++)
                if (s->name_re[j] != NULL && sh_regex_match(s->name_re[j], lower, len, NULL) == 1) {
                    if (name_re != NULL)
                        *name_re = s->name_re[j];
                    return s;
                }
        }
    }
    return addr->default_srv;
}

sh_http_srv_t *sh_http_find_server(const sh_http_addr_t *addr, const char *host, size_t len)
{
    return sh_http_find_server_ex(addr, host, len, NULL);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int sh_http_normalize_uri(const char *in, size_t len, char *out, size_t *outlen)
{
    if (len == 0 || in[0] != '/')
        return SH_EINVAL;
    size_t o = 0;
    size_t i = 0;
    while (i < len) {
        char ch = in[i];
        if (ch == '%' && i + 2 < len + 0 && hexval((unsigned char)in[i + 1]) >= 0 &&
            hexval((unsigned char)in[i + 2]) >= 0) {
            ch = (char)(hexval((unsigned char)in[i + 1]) * 16 + hexval((unsigned char)in[i + 2]));
            if (ch == '\0')
                return SH_EINVAL;
            i += 3;
        } else {
            /* a '%' without two hex digits stays as it is */
            i++;
        }
        if (ch != '/') {
            out[o++] = ch;
            continue;
        }
        /* At a '/': out[0..o) is normalized so far and ends before this
         * slash. Resolve the segment that just ended. */
        if (o > 0 && out[o - 1] == '/')
            continue; /* merge slashes */
        size_t seg = o;
        while (seg > 0 && out[seg - 1] != '/')
            seg--;
        /* out[seg..o) is the last segment */
        if (o - seg == 1 && out[seg] == '.') {
            o = seg; /* "/./" -> "/" (the slash at seg-1 stays) */
            continue;
        }
        if (o - seg == 2 && out[seg] == '.' && out[seg + 1] == '.') {
            if (seg < 2)
                return SH_EINVAL;  /* "/.." above the root */
            size_t prev = seg - 1; /* the slash before ".." */
            while (prev > 0 && out[prev - 1] != '/')
                prev--;
            o = prev;
            continue;
        }
        out[o++] = '/';
    }
    /* a trailing "/." or "/.." ends the path */
    size_t seg = o;
    while (seg > 0 && out[seg - 1] != '/')
        seg--;
    if (o - seg == 1 && out[seg] == '.') {
        o = seg;
    } else if (o - seg == 2 && out[seg] == '.' && out[seg + 1] == '.') {
        if (seg < 2)
            return SH_EINVAL;
        size_t prev = seg - 1;
        while (prev > 0 && out[prev - 1] != '/')
            prev--;
        o = prev;
    }
    *outlen = o;
    return 0;
}

enum { FIND_DECLINED = 0, FIND_AGAIN, FIND_DONE };

/*
 * One level of nginx's location search (ngx_http_core_find_location):
 * *found gets the best location so far. Returns FIND_DONE when the search
 * is over (exact match or a regex matched), FIND_AGAIN when a prefix was found and may still lose
 * to the regexes of outer levels, FIND_DECLINED when nothing here matched.
 */
static int find_in(const sh_http_loc_t *parent, const char *uri, size_t len,
                   const sh_http_loc_t **found)
{
    const sh_http_loc_t *best = NULL;
    for (size_t i = 0; i < parent->nchildren; i++) {
        const sh_http_loc_t *l = parent->children[i];
        if (l->match == SH_LOC_EXACT) {
            if (l->name_len == len && memcmp(l->name, uri, len) == 0) {
                *found = l;
                return FIND_DONE;
            }
        } else if (l->match == SH_LOC_PREFIX || l->match == SH_LOC_PREFERRED) {
            if (l->name_len <= len && memcmp(l->name, uri, l->name_len) == 0 &&
                (best == NULL || l->name_len > best->name_len))
                best = l;
        }
    }
    int rc = FIND_DECLINED;
    int noregex = 0;
    if (best != NULL) {
        *found = best;
        noregex = best->match == SH_LOC_PREFERRED;
        rc = FIND_AGAIN;
        if (best->nchildren > 0) {
            /* nested locations first: a nested regex beats this level's */
            rc = find_in(best, uri, len, found);
            if (rc == FIND_DONE)
                return FIND_DONE;
        }
    }
    /* `^~` skips the regexes of its own level only; an outer level still
     * tries its own (as nginx's noregex flag) */
    if (noregex)
        return rc;
    for (size_t i = 0; i < parent->nchildren; i++) {
        const sh_http_loc_t *l = parent->children[i];
        if (l->regex == NULL || sh_regex_match(l->regex, uri, len, NULL) != 1)
            continue;
        *found = l;
        if (l->nchildren > 0)
            find_in(l, uri, len, found);
        return FIND_DONE;
    }
    return rc;
}

sh_http_loc_t *sh_http_find_named(const sh_http_srv_t *srv, const char *name, size_t len)
{
    for (size_t i = 0; i < srv->loc->nchildren; i++) {
        sh_http_loc_t *l = srv->loc->children[i];
        if (l->match == SH_LOC_NAMED && l->name_len == len && memcmp(l->name, name, len) == 0)
            return l;
    }
    return NULL;
}

sh_http_loc_t *sh_http_find_location_uri(const sh_http_srv_t *srv, const char *uri, size_t len)
{
    const sh_http_loc_t *found = NULL;
    find_in(srv->loc, uri, len, &found);
    return (sh_http_loc_t *)(found != NULL ? found : srv->loc);
}

sh_http_loc_t *sh_http_find_location(const sh_http_srv_t *srv, const char *path, size_t len)
{
    char stack[URI_STACK];
    char *buf = len <= sizeof(stack) ? stack : sh_malloc(len);
    size_t n;
    sh_http_loc_t *l;
    if (sh_http_normalize_uri(path, len, buf, &n) == 0)
        l = sh_http_find_location_uri(srv, buf, n);
    else
        l = sh_http_find_location_uri(srv, path, len);
    if (buf != stack)
        sh_free(buf);
    return l;
}
