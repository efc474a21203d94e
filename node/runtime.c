/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration loading and the main-context directives (see runtime.h). */
#include "node/runtime.h"

#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"

struct sh_runtime_private {
    sh_runtime_t rt;
    sh_conf_doc_t *doc;
    char *conf_dir;
};

static void *core_create(void)
{
    sh_core_conf_t *c = sh_new(sh_core_conf_t);
    c->worker_processes = SH_CONF_UNSET;
    c->worker_connections = SH_CONF_UNSET;
    c->error_level = SH_LOG_ERR;
    c->shutdown_timeout = SH_CONF_UNSET_MSEC;
    return c;
}

static void core_destroy(void *conf)
{
    sh_core_conf_t *c = conf;
    sh_free(c->error_log);
    sh_free(c->pid);
    sh_free(c);
}

static int core_init(sh_conf_t *cf, void *conf)
{
    sh_core_conf_t *c = conf;
    if (c->worker_processes == SH_CONF_UNSET)
        c->worker_processes = 1;
    if (c->worker_connections == SH_CONF_UNSET)
        c->worker_connections = 512;
    if (c->shutdown_timeout == SH_CONF_UNSET_MSEC)
        c->shutdown_timeout = 30000;
    return 0;
}

static int worker_processes_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_core_conf_t *c = conf;
    const char *v = cf->node->args[1];
    if (c->worker_processes != SH_CONF_UNSET)
        return sh_conf_error(cf, "\"worker_processes\" directive is duplicate");
    if (strcmp(v, "auto") == 0) {
        c->worker_processes = 0;
        return 0;
    }
    if (sh_conf_parse_int(v, &c->worker_processes) != 0 || c->worker_processes < 1 ||
        c->worker_processes > 1024)
        return sh_conf_error(cf, "invalid value \"%s\" in \"worker_processes\" directive", v);
    return 0;
}

static int error_log_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_core_conf_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (cf->ctx != SH_CTX_MAIN)
        return 0; /* per-server error logs: accepted, the main one is used */
    sh_free(c->error_log);
    c->error_log = strcmp(n->args[1], "stderr") == 0 ? NULL : sh_strdup(n->args[1]);
    if (n->nargs == 3) {
        int lvl = sh_log_level_parse(n->args[2]);
        if (lvl < 0)
            return sh_conf_error(cf, "invalid log level \"%s\"", n->args[2]);
        c->error_level = lvl;
    }
    return 0;
}

static int events_block(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    return sh_conf_walk(cf, cf->node->child, SH_CTX_EVENTS, cf->confs);
}

#define COFF(f) offsetof(sh_core_conf_t, f)
#define ANYCTX  (SH_CTX_MAIN | SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)

static const sh_conf_cmd_t core_cmds[] = {
    {"worker_processes", SH_CTX_MAIN | SH_CONF_TAKE1, worker_processes_set, 0, NULL},
    {"error_log", ANYCTX | SH_CONF_TAKE12, error_log_set, 0, NULL},
    {"pid", SH_CTX_MAIN | SH_CONF_TAKE1, sh_conf_set_str, COFF(pid), NULL},
    {"worker_shutdown_timeout", SH_CTX_MAIN | SH_CONF_TAKE1, sh_conf_set_msec,
     COFF(shutdown_timeout), NULL},
    /* nginx process-model directives: Shoal always runs in the foreground
     * as one process with worker threads, which is what systemd and
     * containers want, so these are accepted and have nothing to change. */
    {"daemon", SH_CTX_MAIN | SH_CONF_FLAG, sh_conf_set_ignore, 0, NULL},
    {"master_process", SH_CTX_MAIN | SH_CONF_FLAG, sh_conf_set_ignore, 0, NULL},
    {"user", SH_CTX_MAIN | SH_CONF_TAKE12, sh_conf_set_ignore, 0, NULL},
    {"worker_rlimit_nofile", SH_CTX_MAIN | SH_CONF_TAKE1, sh_conf_set_ignore, 0, NULL},
    {"pcre_jit", SH_CTX_MAIN | SH_CONF_FLAG, sh_conf_set_ignore, 0, NULL},
    {"events", SH_CTX_MAIN | SH_CONF_BLOCK | SH_CONF_NOARGS, events_block, 0, NULL},
    {"worker_connections", SH_CTX_EVENTS | SH_CONF_TAKE1, sh_conf_set_num, COFF(worker_connections),
     NULL},
    /* epoll is what libuv uses; accepting is spread by SO_REUSEPORT and
     * libuv accepts in a loop, which is multi_accept's effect. */
    {"use", SH_CTX_EVENTS | SH_CONF_TAKE1, sh_conf_set_ignore, 0, NULL},
    {"multi_accept", SH_CTX_EVENTS | SH_CONF_FLAG, sh_conf_set_ignore, 0, NULL},
    {"accept_mutex", SH_CTX_EVENTS | SH_CONF_FLAG, sh_conf_set_ignore, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

sh_conf_module_t sh_core_module = {
    .name = "core",
    .cmds = core_cmds,
    .create_main = core_create,
    .init_main = core_init,
    .destroy_main = core_destroy,
};

const sh_core_conf_t *sh_runtime_core(const sh_runtime_t *rt)
{
    return rt->main_confs[sh_core_module.index];
}

int sh_runtime_load(const char *path, const char *name, const char *text, const char *prefix,
                    sh_conf_module_t *const *modules, unsigned nmodules, int warn_fd,
                    sh_runtime_t **out, char *err)
{
    struct sh_runtime_private *p = sh_new(struct sh_runtime_private);
    int rc;
    if (path != NULL) {
        char *tmp = sh_strdup(path);
        size_t dl = strlen(dirname(tmp));
        p->conf_dir = sh_malloc(dl + 2);
        memcpy(p->conf_dir, tmp, dl);
        p->conf_dir[dl] = '/';
        p->conf_dir[dl + 1] = '\0';
        sh_free(tmp);
        rc = sh_conf_parse_file(path, &p->doc, err);
    } else {
        p->conf_dir = sh_strdup(prefix);
        rc =
            sh_conf_parse_buffer(name, text, strlen(text), prefix[0] ? prefix : NULL, &p->doc, err);
    }
    if (rc != 0) {
        sh_free(p->conf_dir);
        sh_free(p);
        return rc;
    }
    sh_runtime_t *rt = &p->rt;
    rt->modules = modules;
    rt->nmodules = nmodules;
    rt->main_confs = sh_calloc(nmodules, sizeof(void *));

    sh_conf_t cf;
    sh_conf_init(&cf, modules, nmodules, prefix, p->conf_dir, NULL);
    cf.warn_fd = warn_fd;
    for (unsigned i = 0; i < nmodules; i++)
        if (modules[i]->create_main != NULL)
            rt->main_confs[i] = modules[i]->create_main();
    rc = sh_conf_walk(&cf, sh_conf_doc_root(p->doc), SH_CTX_MAIN, rt->main_confs);
    for (unsigned i = 0; i < nmodules && rc == 0; i++)
        if (modules[i]->init_main != NULL)
            rc = modules[i]->init_main(&cf, rt->main_confs[i]);
    if (rc != 0) {
        snprintf(err, SH_CONF_ERRLEN, "%s", cf.err);
        sh_runtime_destroy(rt);
        return rc;
    }
    const sh_core_conf_t *core = rt->main_confs[sh_core_module.index];
    rt->http = sh_http_main(rt->main_confs);
    rt->worker_processes = core->worker_processes;
    rt->worker_connections = core->worker_connections;
    rt->shutdown_timeout = core->shutdown_timeout;
    *out = rt;
    return 0;
}

void sh_runtime_destroy(sh_runtime_t *rt)
{
    if (rt == NULL)
        return;
    struct sh_runtime_private *p = (struct sh_runtime_private *)rt;
    for (unsigned i = rt->nmodules; i-- > 0;)
        if (rt->modules[i]->destroy_main != NULL && rt->main_confs[i] != NULL)
            rt->modules[i]->destroy_main(rt->main_confs[i]);
    sh_free(rt->main_confs);
    sh_conf_doc_destroy(p->doc);
    sh_free(p->conf_dir);
    sh_free(p);
}
