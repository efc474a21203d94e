/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `allow` / `deny` (nginx's access module): ADDRESS, ADDRESS/PREFIX or
 * `all`, checked in order, first match wins; a level with any rule
 * replaces the outer rules; no rule matching allows. A denied request gets
 * 403 after `return` (nginx's rewrite phase runs before its access phase).
 * Rules are compiled at load; the check is a few masked compares.
 *
 * `satisfy all|any` lives here too (sh_access_decide): the verdicts of the
 * access checks are combined as nginx's access phase does; under `any`, a
 * refusal is kept in the request's slot (no allocation) and answered by
 * the first precontent handler when no check allowed.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
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
    int set;     /* this level has rules (owns them) */
    int satisfy; /* SATISFY_* */
} access_loc_t;

enum { SATISFY_ALL = 0, SATISFY_ANY = 1 };

extern sh_conf_module_t sh_access_module;

static void *access_create(void)
{
    access_loc_t *c = sh_new(access_loc_t);
    c->satisfy = SH_CONF_UNSET;
    return c;
}

static int access_merge(sh_conf_t *cf, void *parent, void *conf)
{
    access_loc_t *p = parent, *c = conf;
    if (!c->set) {
        c->rules = p->rules;
        c->n = p->n;
    }
    SH_CONF_MERGE(c->satisfy, p->satisfy, SATISFY_ALL);
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

/* 1 denied, 0 allowed by a rule, -1 no rule matched (or none). */
static int access_denied(const sh_request_t *r)
{
    const access_loc_t *c = sh_http_loc_conf(r->loc, &sh_access_module);
    if (c == NULL || c->n == 0)
        return -1;
    const struct sockaddr_in6 *peer = sh_request_peer(r);
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
    return -1;
}

static const sh_conf_enum_t satisfy_values[] = {
    {"all", SATISFY_ALL}, {"any", SATISFY_ANY}, {NULL, 0}};

#define ACTX (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CTX_LIMIT_EXCEPT)

static const sh_conf_cmd_t access_cmds[] = {
    {"allow", ACTX | SH_CONF_TAKE1, rule_set, 0, NULL},
    {"deny", ACTX | SH_CONF_TAKE1, rule_set, 1, NULL},
    {"satisfy", SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_TAKE1, sh_conf_set_enum,
     offsetof(access_loc_t, satisfy), satisfy_values},
    {NULL, 0, NULL, 0, NULL}};

/* The request's slot holds a satisfy-any refusal as a number: the status
 * (401 or 403), or ALLOWED once a check allowed. */
#define ALLOWED 1

int sh_access_decide(sh_request_t *r, int status)
{
    const access_loc_t *c = sh_http_loc_conf(r->loc, &sh_access_module);
    if (c == NULL || c->satisfy != SATISFY_ANY)
        return status == 0 ? SH_PH_DECLINED : status;
    uintptr_t v = (uintptr_t)sh_request_ctx(r, &sh_access_module);
    if (status == 0) {
        /* any: one check that allows is enough; the others do not run */
        sh_request_ctx(r, &sh_access_module) = (void *)(uintptr_t)ALLOWED;
        return SH_PH_NEXT;
    }
    if (status != 401 && status != 403)
        return status;
    if (v != 401) /* nginx: 401 wins, the client may still authenticate */
        sh_request_ctx(r, &sh_access_module) = (void *)(uintptr_t)status;
    return SH_PH_DECLINED;
}

/* The access phase handler: 403 for a denied client. */
static int access_handler(sh_request_t *r)
{
    int d = access_denied(r);
    if (d < 0)
        return SH_PH_DECLINED;
    if (d == 0)
        return sh_access_decide(r, 0);
    sh_req_log(SH_LOG_ERR, r->c, r, NULL, "access forbidden by rule");
    return sh_access_decide(r, 403);
}

/* First in precontent (nginx's post-access phase): under `satisfy any`,
 * the refusal kept when no check allowed. */
static int post_access(sh_request_t *r)
{
    uintptr_t v = (uintptr_t)sh_request_ctx(r, &sh_access_module);
    if (v == 0)
        return SH_PH_DECLINED;
    sh_request_ctx(r, &sh_access_module) = NULL; /* an internal redirect checks again */
    return v == ALLOWED ? SH_PH_DECLINED : (int)v;
}

/* The auth checks' registration and challenge (access.h). */

int sh_access_check_add(sh_conf_t *cf, sh_http_main_t *m, sh_phase_handler_pt h,
                        const sh_filter_t *www)
{
    int rc = sh_phase_add(cf, m, SH_PHASE_ACCESS, h);
    if (rc == 0)
        rc = sh_filter_add(cf, m, www);
    return rc;
}

int sh_access_www_authenticate(sh_request_t *r, sh_resp_head_t *h, const sh_buf_t *www)
{
    if (h->status != 401 || www == NULL || www->len == 0)
        return 0;
    size_t start = r->hscratch.len;
    sh_buf_append(&r->hscratch, www->data, www->len);
    if (sh_resp_head_add(h, "WWW-Authenticate", 16, NULL, 0) != 0)
        return 0;
    return sh_resp_head_set_scratch(r, h, h->n - 1, start, www->len);
}

static int access_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    int rc = sh_phase_add(cf, m, SH_PHASE_ACCESS, access_handler);
    if (rc == 0)
        rc = sh_phase_add(cf, m, SH_PHASE_PRECONTENT, post_access);
    return rc;
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
