/* SPDX-License-Identifier: Apache-2.0 */
/*
 * split_clients (see split_clients.h). Each block is compiled at load into
 * the source complex value and its parts with cumulative bounds on the
 * 32-bit hash (nginx's: percent * 0xffffffff / 10000, summed); `*` takes
 * the rest. Immutable after load; the getter runs on workers.
 */
#include "node/modules/split_clients.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/vars.h"

#define SOURCE_STACK 512

typedef struct {
    uint32_t bound; /* the hash is below it; 0: `*` */
    char *value;
} part_t;

typedef struct {
    char *name;
    sh_cv_t *source;
    part_t *parts;
    size_t nparts;
} split_t;

typedef struct {
    split_t **v;
    size_t n;
} split_main_t;

uint32_t sh_murmur_hash2(const unsigned char *data, size_t len)
{
    uint32_t h = 0 ^ (uint32_t)len, k;
    while (len >= 4) {
        k = data[0];
        k |= (uint32_t)data[1] << 8;
        k |= (uint32_t)data[2] << 16;
        k |= (uint32_t)data[3] << 24;
        k *= 0x5bd1e995;
        k ^= k >> 24;
        k *= 0x5bd1e995;
        h *= 0x5bd1e995;
        h ^= k;
        data += 4;
        len -= 4;
    }
    switch (len) {
    case 3:
        h ^= (uint32_t)data[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)data[1] << 8;
        /* fall through */
    case 1:
        h ^= data[0];
        h *= 0x5bd1e995;
        break;
    default:
        break;
    }
    h ^= h >> 13;
    h *= 0x5bd1e995;
    h ^= h >> 15;
    return h;
}

static int split_get(sh_request_t *r, const void *data, sh_buf_t *out)
{
    const split_t *s = data;
    size_t mark = out->len;
    sh_cv_eval(s->source, r, out);
    uint32_t hash = sh_murmur_hash2((const unsigned char *)out->data + mark, out->len - mark);
    out->len = mark;
    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i].bound == 0 || hash < s->parts[i].bound) {
            sh_buf_appends(out, s->parts[i].value);
            return 1;
        }
    return 1; /* no part: "" */
}

static void split_destroy(split_t *s)
{
    for (size_t i = 0; i < s->nparts; i++)
        sh_free(s->parts[i].value);
    sh_free(s->parts);
    sh_cv_destroy(s->source);
    sh_free(s->name);
    sh_free(s);
}

/* "12.5%" -> 1250 (hundredths of a percent, nginx's ngx_atofp(.., 2)). */
static int parse_percent(const char *s, uint32_t *out)
{
    size_t n = strlen(s);
    if (n < 2 || s[n - 1] != '%')
        return -1;
    uint32_t v = 0;
    int frac = -1;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] == '.' && frac < 0) {
            frac = 0;
            continue;
        }
        if (s[i] < '0' || s[i] > '9' || frac == 2)
            return -1;
        v = v * 10 + (uint32_t)(s[i] - '0');
        if (frac >= 0)
            frac++;
        if (v > 1000000)
            return -1;
    }
    for (int f = frac < 0 ? 0 : frac; f < 2; f++)
        v *= 10;
    *out = v;
    return 0;
}

static int split_block(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    (void)conf;
    sh_http_block_t *b = cf->user;
    split_main_t *sm = sh_http_main_conf(b->main, &sh_split_clients_module);
    const sh_conf_node_t *n = cf->node;
    const char *dst = n->args[2];
    if (dst[0] != '$' || dst[1] == '\0')
        return sh_conf_error(cf, "invalid variable name \"%s\"", dst);
    split_t *s = sh_new(split_t);
    s->name = sh_strdup(dst + 1);
    int rc = sh_cv_compile(cf, n->args[1], &s->source);
    uint32_t sum = 0;
    uint64_t last = 0;
    for (const sh_conf_node_t *c = n->child; c != NULL && rc == 0; c = c->next) {
        cf->node = c;
        if (c->nargs != 2 || c->block) {
            rc = sh_conf_error(cf, "invalid number of arguments in split_clients");
            break;
        }
        part_t p = {0};
        if (strcmp(c->args[0], "*") == 0) {
            sum = 10000;
        } else {
            uint32_t pc;
            if (parse_percent(c->args[0], &pc) != 0 || pc == 0) {
                rc = sh_conf_error(cf, "invalid percent value \"%s\"", c->args[0]);
                break;
            }
            sum += pc;
            if (sum > 10000) {
                rc = sh_conf_error(cf, "percent total is greater than 100%%");
                break;
            }
            last += (uint64_t)pc * 0xffffffffu / 10000;
            p.bound = (uint32_t)last;
        }
        p.value = sh_strdup(c->args[1]);
        s->parts = sh_realloc(s->parts, (s->nparts + 1) * sizeof(*s->parts));
        s->parts[s->nparts++] = p;
    }
    cf->node = n;
    if (rc == 0)
        rc = sh_vars_define_changeable(cf, s->name, split_get, s);
    if (rc != 0) {
        split_destroy(s);
        return rc;
    }
    sm->v = sh_realloc(sm->v, (sm->n + 1) * sizeof(*sm->v));
    sm->v[sm->n++] = s;
    return 0;
}

static void *split_create_main(void)
{
    return sh_new(split_main_t);
}

static void split_destroy_main(void *conf)
{
    split_main_t *sm = conf;
    for (size_t i = 0; i < sm->n; i++)
        split_destroy(sm->v[i]);
    sh_free(sm->v);
    sh_free(sm);
}

static const sh_conf_cmd_t split_cmds[] = {
    {"split_clients", SH_CTX_HTTP | SH_CONF_BLOCK | SH_CONF_TAKE2, split_block, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t split_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_main = split_create_main,
    .destroy_main = split_destroy_main,
};

sh_conf_module_t sh_split_clients_module = {
    .name = "split_clients",
    .cmds = split_cmds,
    .ctx = &split_ctx,
};
