/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `allow` / `deny` (nginx's access module): ADDRESS, ADDRESS/PREFIX or
 * `all`, checked in order, first match wins; a level with any rule
 * replaces the outer rules; no rule matching allows. A denied request gets
 * 403 after `return` (nginx's rewrite phase runs before its access phase).
 * Rules are compiled at load; the check is a few masked compares.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/modules/access.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/reqlog.h"

typedef struct {
    int family; /* AF_INET, AF_INET6, or 0 for all */
    uint8_t addr[16];
    uint8_t mask[16];
    int deny;
} rule_t;

typedef struct {
    rule_t *rules;
    size_t n;
    int set; /* this level has rules (owns them) */
} access_loc_t;

extern sh_conf_module_t sh_access_module;

static void *access_create(void)
{
    return sh_new(access_loc_t);
}

static int access_merge(sh_conf_t *cf, void *parent, void *conf)
{
    access_loc_t *p = parent, *c = conf;
    if (!c->set) {
        c->rules = p->rules;
        c->n = p->n;
    }
    return 0;
}

static void access_destroy(void *conf)
{
    access_loc_t *c = conf;
    if (c->set)
        sh_free(c->rules);
    sh_free(c);
}

static int rule_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    access_loc_t *c = conf;
    const char *v = cf->node->args[1];
    rule_t r = {.deny = cmd->offset == 1};
    if (strcmp(v, "all") == 0) {
        r.family = 0;
    } else {
        char ip[64];
        const char *slash = strchr(v, '/');
        size_t il = slash ? (size_t)(slash - v) : strlen(v);
        if (il >= sizeof(ip))
            return sh_conf_error(cf, "invalid parameter \"%s\"", v);
        memcpy(ip, v, il);
        ip[il] = '\0';
        int bits;
        if (inet_pton(AF_INET, ip, r.addr) == 1) {
            r.family = AF_INET;
            bits = 32;
        } else if (inet_pton(AF_INET6, ip, r.addr) == 1) {
            r.family = AF_INET6;
            bits = 128;
        } else {
            return sh_conf_error(cf, "invalid parameter \"%s\"", v);
        }
        if (slash != NULL) {
            char *end;
            long b = strtol(slash + 1, &end, 10);
            if (slash[1] == '\0' || *end != '\0' || b < 0 || b > bits)
                return sh_conf_error(cf, "invalid parameter \"%s\"", v);
            bits = (int)b;
        }
        for (int i = 0; i < bits; i++)
            r.mask[i / 8] |= (uint8_t)(0x80u >> (i % 8));
        for (int i = 0; i < 16; i++)
            r.addr[i] &= r.mask[i];
    }
    if (!c->set) {
        c->rules = NULL;
        c->n = 0;
        c->set = 1;
    }
    c->rules = sh_realloc(c->rules, (c->n + 1) * sizeof(*c->rules));
    c->rules[c->n++] = r;
    return 0;
}

static int access_denied(const sh_request_t *r)
{
    const access_loc_t *c = sh_http_loc_conf(r->loc, &sh_access_module);
    if (c == NULL || c->n == 0)
        return 0;
    const struct sockaddr_in6 *peer = &r->c->peer;
    int fam = peer->sin6_family;
    const uint8_t *a = fam == AF_INET
                           ? (const uint8_t *)&((const struct sockaddr_in *)peer)->sin_addr
                           : (const uint8_t *)&peer->sin6_addr;
    size_t len = fam == AF_INET ? 4 : 16;
    for (size_t i = 0; i < c->n; i++) {
        const rule_t *rl = &c->rules[i];
        if (rl->family == 0)
            return rl->deny;
        if (rl->family != fam)
            continue;
        size_t k = 0;
        while (k < len && (a[k] & rl->mask[k]) == rl->addr[k])
            k++;
        if (k == len)
            return rl->deny;
    }
    return 0;
}

#define ACTX (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CTX_LIMIT_EXCEPT)

static const sh_conf_cmd_t access_cmds[] = {{"allow", ACTX | SH_CONF_TAKE1, rule_set, 0, NULL},
                                            {"deny", ACTX | SH_CONF_TAKE1, rule_set, 1, NULL},
                                            {NULL, 0, NULL, 0, NULL}};

/* The access phase handler: 403 for a denied client. */
static int access_handler(sh_request_t *r)
{
    if (!access_denied(r))
        return SH_PH_DECLINED;
    sh_req_log(SH_LOG_ERR, r->c, r, NULL, "access forbidden by rule");
    return 403;
}

static int access_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_phase_add(cf, m, SH_PHASE_ACCESS, access_handler);
}

static const sh_http_module_t access_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = access_create,
    .merge_loc = access_merge,
    .destroy_loc = access_destroy,
    .postconfiguration = access_postconf,
};

sh_conf_module_t sh_access_module = {
    .name = "access",
    .cmds = access_cmds,
    .ctx = &access_ctx,
};
