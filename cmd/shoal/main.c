/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shoal: one gateway node. Flags as nginx's (-c FILE, -p PREFIX, -t, -v),
 * always in the foreground. The main thread loads the configuration,
 * starts the workers (and the cluster thread when configured), then waits
 * for signals: SIGTERM, SIGINT and SIGQUIT drain and exit 0; a second one
 * stops at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "cmd/shoal/modules.h"
#include "core/alloc.h"
#include "core/log.h"
#include "node/runtime.h"
#include "node/tls.h"
#include "node/worker.h"
#ifdef SHOAL_WITH_CLUSTER
#include "cluster/cluster.h"
#endif

#define DEFAULT_CONF "/etc/shoal/shoal.conf"

typedef struct {
    uv_loop_t loop;
    uv_signal_t sigs[4];
    sh_worker_t **workers;
    int nworkers;
    const sh_runtime_t *rt;
    uint64_t drain_ms;
    int stops;
#ifdef SHOAL_WITH_CLUSTER
    sh_cluster_t *cluster;
#endif
} node_main_t;

static void usage(FILE *f)
{
    fprintf(f, "Usage: shoal [-c FILE] [-p PREFIX] [-t] [-v] [-h]\n"
               "  -c FILE    configuration file (default: PREFIX/conf/shoal.conf, then\n"
               "             " DEFAULT_CONF ", then the built-in default)\n"
               "  -p PREFIX  prefix for relative paths (default: current directory)\n"
               "  -t         test the configuration and exit\n"
               "  -v         print the version and exit\n"
               "  -h         this help\n");
}

/* Join a and b into out (PATH_MAX); exits with a message if too long. */
static void path_join(char *out, const char *a, const char *b)
{
    int n = snprintf(out, PATH_MAX, "%s%s", a, b);
    if (n < 0 || n >= PATH_MAX) {
        fprintf(stderr, "shoal: [emerg] path too long: %s%s\n", a, b);
        exit(1);
    }
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static void on_signal(uv_signal_t *s, int signum)
{
    node_main_t *m = s->data;
    m->stops++;
    uint64_t t = m->stops == 1 ? m->drain_ms : 0;
    sh_log_notice("signal %d received, %s", signum,
                  m->stops == 1 ? "draining and exiting" : "exiting now");
    if (m->stops == 1) {
#ifdef SHOAL_WITH_CLUSTER
        sh_cluster_stop(m->cluster, 2000);
        m->cluster = NULL;
#endif
    }
    sh_workers_stop(m->workers, m->nworkers, t);
    if (m->stops == 1)
        for (int i = 0; i < 4; i++)
            ; /* keep the handlers: a second signal forces the stop */
    else
        uv_stop(&m->loop);
}

/* SIGHUP: certificates and keys are read again (open connections keep
 * theirs). A whole-configuration reload is not there yet. */
static void on_hup(uv_signal_t *s, int signum)
{
    node_main_t *m = s->data;
    sh_log_notice("signal %d received, reloading TLS certificates and keys", signum);
    sh_tls_reload(m->rt->http);
}

static void join_thread(void *arg)
{
    node_main_t *m = arg;
    sh_workers_join(m->workers, m->nworkers);
    m->workers = NULL;
}

static void joined_cb(uv_async_t *a)
{
    uv_stop(a->loop);
}

typedef struct {
    node_main_t *m;
    uv_async_t *done;
} joiner_t;

static void joiner(void *arg)
{
    joiner_t *j = arg;
    join_thread(j->m);
    uv_async_send(j->done);
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *prefix_arg = NULL;
    int test = 0, opt;
    sh_tls_global_init(); /* before anything allocates through OpenSSL */
    while ((opt = getopt(argc, argv, "c:p:tvh")) != -1) {
        switch (opt) {
        case 'c':
            conf = optarg;
            break;
        case 'p':
            prefix_arg = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'v':
            printf("shoal version %s\n", SHOAL_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "shoal: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    char prefix[PATH_MAX];
    if (prefix_arg != NULL) {
        path_join(prefix, prefix_arg,
                  prefix_arg[0] && prefix_arg[strlen(prefix_arg) - 1] == '/' ? "" : "/");
    } else if (getcwd(prefix, sizeof(prefix) - 1) != NULL) {
        strcat(prefix, "/");
    } else {
        strcpy(prefix, "./");
    }

    char path[PATH_MAX];
    const char *use = NULL;
    if (conf != NULL) {
        /* nginx: a relative -c is relative to the prefix when one is given */
        if (conf[0] != '/' && prefix_arg != NULL)
            path_join(path, prefix, conf);
        else
            path_join(path, "", conf);
        use = path;
    } else {
        path_join(path, prefix, "conf/shoal.conf");
        if (prefix_arg != NULL && file_exists(path))
            use = path;
        else if (file_exists(DEFAULT_CONF))
            use = DEFAULT_CONF;
    }

    char err[SH_CONF_ERRLEN];
    sh_runtime_t *rt = NULL;
    int rc = sh_runtime_load(use, "<built-in default>", sh_default_conf, prefix, sh_modules,
                             sh_nmodules, 2, &rt, err);
    const char *shown = use ? use : "<built-in default>";
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        fprintf(stderr, "shoal: configuration file %s test failed\n", shown);
        return 1;
    }
    if (test) {
        fprintf(stderr, "shoal: the configuration file %s syntax is ok\n", shown);
        fprintf(stderr, "shoal: configuration file %s test is successful\n", shown);
        sh_runtime_destroy(rt);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    const sh_core_conf_t *core = sh_runtime_core(rt);
    sh_log_set_level(core->error_level > SH_LOG_NOTICE ? core->error_level : SH_LOG_NOTICE);
    int logfd = -1;
    if (core->error_log != NULL) {
        char lp[PATH_MAX];
        path_join(lp, core->error_log[0] == '/' ? "" : prefix, core->error_log);
        logfd = open(lp, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (logfd < 0) {
            fprintf(stderr, "shoal: [emerg] open() \"%s\" failed (%s)\n", lp, strerror(errno));
            sh_runtime_destroy(rt);
            return 1;
        }
        sh_log_set_level(core->error_level);
        sh_log_set_fd(logfd);
    }
    char pidpath[PATH_MAX] = "";
    if (core->pid != NULL) {
        path_join(pidpath, core->pid[0] == '/' ? "" : prefix, core->pid);
        FILE *pf = fopen(pidpath, "w");
        if (pf == NULL) {
            fprintf(stderr, "shoal: [emerg] open() \"%s\" failed (%s)\n", pidpath,
                    strerror(errno));
            sh_runtime_destroy(rt);
            return 1;
        }
        fprintf(pf, "%d\n", (int)getpid());
        fclose(pf);
    }

    node_main_t m = {0};
    m.rt = rt;
    m.drain_ms = rt->shutdown_timeout;
    m.nworkers = rt->worker_processes;
    if (m.nworkers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        m.nworkers = n > 0 ? (int)n : 1;
    }
    char werr[256];
    rc = sh_workers_create(rt, m.nworkers, &m.workers, werr);
    if (rc != 0) {
        fprintf(stderr, "shoal: [emerg] %s\n", werr);
        sh_runtime_destroy(rt);
        return 1;
    }
#ifdef SHOAL_WITH_CLUSTER
    rc = sh_cluster_start(rt->main_confs[sh_cluster_module.index], &m.cluster);
    if (rc != 0) {
        fprintf(stderr, "shoal: [emerg] the cluster could not start\n");
        return 1;
    }
#endif
    uv_loop_init(&m.loop);
    int signums[4] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP};
    for (int i = 0; i < 4; i++) {
        uv_signal_init(&m.loop, &m.sigs[i]);
        m.sigs[i].data = &m;
        uv_signal_start(&m.sigs[i], signums[i] == SIGHUP ? on_hup : on_signal, signums[i]);
    }
    if (sh_workers_start(m.workers, m.nworkers) != 0) {
        fprintf(stderr, "shoal: [emerg] could not start the workers\n");
        return 1;
    }
    sh_log_notice("shoal %s started: %d worker%s, configuration %s", SHOAL_VERSION, m.nworkers,
                  m.nworkers == 1 ? "" : "s", shown);

    /* The workers end by themselves after a stop; a helper thread joins
     * them and wakes this loop. */
    uv_async_t done;
    uv_async_init(&m.loop, &done, joined_cb);
    joiner_t j = {.m = &m, .done = &done};
    uv_thread_t jt;
    uv_thread_create(&jt, joiner, &j);
    uv_run(&m.loop, UV_RUN_DEFAULT);
    if (m.stops > 1) {
        /* forced: do not wait for the drain */
        fflush(NULL);
        _exit(0);
    }
    uv_thread_join(&jt);
#ifdef SHOAL_WITH_CLUSTER
    sh_cluster_stop(m.cluster, 2000);
#endif
    for (int i = 0; i < 4; i++)
        uv_close((uv_handle_t *)&m.sigs[i], NULL);
    uv_close((uv_handle_t *)&done, NULL);
    uv_run(&m.loop, UV_RUN_DEFAULT);
    uv_loop_close(&m.loop);
    sh_log_notice("exiting");
    if (pidpath[0])
        unlink(pidpath);
    sh_runtime_destroy(rt);
    if (logfd >= 0)
        close(logfd);
    return 0;
}
