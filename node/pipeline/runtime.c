/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration loading and the main-context directives (see runtime.h). */
#include "node/pipeline/runtime.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "core/privs.h"
#include "core/syslog.h"

struct sh_runtime_private {
    sh_runtime_t rt;
    sh_conf_doc_t *doc;
    sh_conf_doc_t *globals; /* -g DIRECTIVES, or NULL */
    const char *text;       /* the built-in text when there is no file */
    char *conf_dir;
    char warnings[4096]; /* the load's warnings, "file:line: message\n" each */
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
    sh_free(c->error_syslog);
    sh_free(c->pid);
    sh_free(c->user);
    sh_free(c->group);
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
    if (c->user != NULL) {
        /* nginx: an unknown user or group is an error even without root */
        char err[256];
        uid_t uid;
        gid_t gid;
        cf->node = c->user_node;
        if (sh_privs_lookup(c->user, c->group, &uid, &gid, err, sizeof(err)) != 0)
            return sh_conf_error(cf, "%s", err);
        c->uid = (unsigned)uid;
        c->gid = (unsigned)gid;
        if (geteuid() != 0)
            sh_conf_warn(cf, "the \"user\" directive makes sense only if the node runs with "
                             "super-user privileges, ignored");
        else
            c->drop_privs = 1;
        cf->node = NULL;
    }
    return 0;
}

static int user_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    sh_core_conf_t *c = conf;
    if (c->user != NULL)
        return sh_conf_error(cf, "\"user\" directive is duplicate");
    c->user = sh_strdup(cf->node->args[1]);
    c->group = cf->node->nargs == 3 ? sh_strdup(cf->node->args[2]) : NULL;
    c->user_node = cf->node;
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
    c->error_log = NULL;
    sh_free(c->error_syslog);
    c->error_syslog = NULL;
    if (strncmp(n->args[1], "syslog:", 7) == 0) {
        char err[160];
        sh_syslog_t *s;
        if (sh_syslog_open(n->args[1] + 7, &s, err, sizeof(err)) != 0)
            return sh_conf_error(cf, "%s", err);
        sh_syslog_close(s); /* the start opens its own: error_log is not reloaded */
        c->error_syslog = sh_strdup(n->args[1] + 7);
    } else if (strcmp(n->args[1], "stderr") != 0) {
        c->error_log = sh_strdup(n->args[1]);
    }
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
    {"user", SH_CTX_MAIN | SH_CONF_TAKE12, user_set, 0, NULL},
    {"worker_rlimit_nofile", SH_CTX_MAIN | SH_CONF_TAKE1, sh_conf_set_ignore, 0, NULL},
    {"pcre_jit", SH_CTX_MAIN | SH_CONF_FLAG, sh_conf_set_ignore, 0, NULL},
    /* Debian's nginx.conf includes modules-enabled/ (load_module lines): accept them with a
     * warning; a directive of such a module is still an unknown directive */
    {"load_module", SH_CTX_MAIN | SH_CONF_TAKE1, sh_conf_set_unsupported, 0,
     "no dynamic modules: Shoal's modules are built in, and a directive of this one stays "
     "unknown"},
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

const char *sh_runtime_warnings(const sh_runtime_t *rt)
{
    return ((const struct sh_runtime_private *)rt)->warnings;
}

const sh_core_conf_t *sh_runtime_core(const sh_runtime_t *rt)
{
    return rt->main_confs[sh_core_module.index];
}

int sh_runtime_load(const char *path, const char *name, const char *text, const char *prefix,
                    sh_conf_module_t *const *modules, unsigned nmodules, int warn_fd,
                    sh_runtime_t **out, char *err)
{
    return sh_runtime_load_ex(path, name, text, NULL, prefix, modules, nmodules, warn_fd, out, err);
}

int sh_runtime_load_ex(const char *path, const char *name, const char *text, const char *globals,
                       const char *prefix, sh_conf_module_t *const *modules, unsigned nmodules,
                       int warn_fd, sh_runtime_t **out, char *err)
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
        p->text = text;
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
    cf.warn_buf = p->warnings;
    cf.warn_size = sizeof(p->warnings);
    for (unsigned i = 0; i < nmodules; i++)
        if (modules[i]->create_main != NULL)
            rt->main_confs[i] = modules[i]->create_main();
    /* -g DIRECTIVES: main-context directives walked before the file's, so
     * one also set in the file is "duplicate", as nginx says */
    if (globals != NULL && globals[0] != '\0') {
        rc = sh_conf_parse_buffer("command line", globals, strlen(globals),
                                  prefix[0] ? prefix : NULL, &p->globals, err);
        if (rc != 0) {
            sh_runtime_destroy(rt);
            return rc;
        }
        rc = sh_conf_walk(&cf, sh_conf_doc_root(p->globals), SH_CTX_MAIN, rt->main_confs);
    }
    if (rc == 0)
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
    sh_conf_doc_destroy(p->globals);
    sh_free(p->conf_dir);
    sh_free(p);
}

int sh_runtime_dump(const sh_runtime_t *rt, FILE *out)
{
    const struct sh_runtime_private *p = (const struct sh_runtime_private *)rt;
    const char *names[256];
    unsigned n = sh_conf_doc_files(p->doc, names, 256);
    if (n > 256)
        n = 256;
    for (unsigned i = 0; i < n; i++) {
        fprintf(out, "# configuration file %s:\n", names[i]);
        if (p->text != NULL && i == 0) {
            fputs(p->text, out);
            continue;
        }
        FILE *f = fopen(names[i], "r");
        if (f == NULL) {
            fprintf(stderr, "shoal: [emerg] open() \"%s\" failed (%s)\n", names[i],
                    strerror(errno));
            return SH_EIO;
        }
        char buf[8192];
        size_t k, last = '\n';
        while ((k = fread(buf, 1, sizeof(buf), f)) > 0) {
            fwrite(buf, 1, k, out);
            last = (unsigned char)buf[k - 1];
        }
        fclose(f);
        if (last != '\n')
            fputc('\n', out);
        fputc('\n', out);
    }
    return 0;
}
