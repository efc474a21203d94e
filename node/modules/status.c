/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `stub_status` (nginx's stub_status module): the location answers with
 * the node's connection counters in nginx's format, summed over every
 * worker (and every configuration generation after reloads) through the
 * runtime's totals hook that cmd/shoal sets.
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "node/conn/worker.h"
#include "node/modules/status.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/node.h"

typedef struct {
    int on; /* -1 unset */
} status_loc_t;

extern sh_conf_module_t sh_status_module;

static void *status_create(void)
{
    status_loc_t *c = sh_new(status_loc_t);
    c->on = SH_CONF_UNSET;
    return c;
}

static int status_merge(sh_conf_t *cf, void *parent, void *conf)
{
    status_loc_t *c = conf;
    (void)parent; /* a handler of its own location, not inherited */
    if (c->on == SH_CONF_UNSET)
        c->on = 0;
    return 0;
}

static void status_destroy(void *conf)
{
    sh_free(conf);
}

static int stub_status_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    status_loc_t *c = conf;
    /* nginx accepts "stub_status;" and the older "stub_status on;" */
    if (cf->node->nargs == 2 && strcmp(cf->node->args[1], "on") != 0 &&
        strcmp(cf->node->args[1], "off") != 0)
        return sh_conf_error(cf, "invalid value \"%s\" in \"stub_status\" directive",
                             cf->node->args[1]);
    c->on = !(cf->node->nargs == 2 && strcmp(cf->node->args[1], "off") == 0);
    return 0;
}

/* The content handler of locations with stub_status. */
static int status_handler(sh_request_t *r)
{
    const status_loc_t *c = sh_http_loc_conf(r->loc, &sh_status_module);
    if (c == NULL || c->on != 1)
        return SH_PH_DECLINED;
    sh_worker_totals_t t = {0};
    const sh_runtime_t *rt = r->c->w->rt;
    if (rt->totals != NULL)
        rt->totals(rt->totals_ud, &t);
    else
        sh_workers_totals(&r->c->w, 1, &t);
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "Active connections: %llu \nserver accepts handled requests\n"
                     " %llu %llu %llu \nReading: %llu Writing: %llu Waiting: %llu \n",
                     (unsigned long long)t.active, (unsigned long long)t.accepted,
                     (unsigned long long)t.handled, (unsigned long long)t.requests,
                     (unsigned long long)t.reading, (unsigned long long)t.writing,
                     (unsigned long long)t.waiting);
    r->discard_body = 1;
    sh_request_respond(r, 200, "text/plain", body, (size_t)n, NULL);
    return SH_PH_DONE;
}

static int status_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_phase_add(cf, m, SH_PHASE_CONTENT, status_handler);
}

static const sh_conf_cmd_t status_cmds[] = {
    {"stub_status", SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_NOARGS | SH_CONF_TAKE1,
     stub_status_set, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t status_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = status_create,
    .merge_loc = status_merge,
    .destroy_loc = status_destroy,
    .postconfiguration = status_postconf,
};

sh_conf_module_t sh_status_module = {
    .name = "stub_status",
    .cmds = status_cmds,
    .ctx = &status_ctx,
};
