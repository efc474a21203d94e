/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shoal: one gateway node. Flags as nginx's (-c FILE, -p PREFIX, -t, -T,
 * -q, -v, -V, -g DIRECTIVES, -e FILE, -s SIGNAL, -h), always in the
 * foreground. The main thread loads the configuration, starts the workers
 * (and the cluster thread when configured), then waits for signals:
 * SIGTERM, SIGINT and SIGQUIT drain and exit 0; a second one stops at once.
 * SIGUSR1 reopens every log file (logrotate); SIGUSR2 is logged and ignored
 * (no binary upgrade); SIGWINCH is ignored. With `user`, the main thread
 * keeps root, as nginx's master (to reopen logs and bind on reload), and
 * every other thread switches to the user (core/privs.h).
 * SIGHUP, or POST /v1/reload on the admin API, reloads
 * (issue 6): the configuration is loaded again and, if it loads, a new
 * generation of workers serves new connections with it while the previous
 * generation drains its open connections on the old one (worker.h); if it
 * does not load, the error (file:line) is reported and nothing changes.
 * The cluster block, error_log and pid are not reloaded.
 *
 * The generations are a list owned by the main thread; the cluster thread
 * reads their counters through the hooks, under gens_mu.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>

#include "cmd/shoal/modules.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/privs.h"
#include "core/syslog.h"
#include "node/conn/tls.h"
#include "node/conn/worker.h"
#include "node/modules/accesslog.h"
#include "node/modules/limit_zone.h"
#include "node/modules/proxy_cache.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/metrics.h"
#include "node/pipeline/runtime.h"
#include "node/proxy/health.h"
#ifdef SHOAL_WITH_CLUSTER
#include "node/conn/tls_tickets_sync.h"
#include "node/proxy/health_gossip.h"
#endif
#ifdef SHOAL_WITH_CLUSTER
#include "cluster/cluster.h"
#include "cluster/purge.h"
#endif

#define DEFAULT_CONF  "/etc/shoal/shoal.conf"
#define RELOAD_MSGLEN (SH_CONF_ERRLEN + 4096 + 256)
#define NSIGS         7

/* One configuration and the workers serving it. */
typedef struct gen_s {
    sh_runtime_t *rt;
    sh_worker_t **ws;
    int n;
    uv_thread_t joiner;
    _Atomic int done; /* the workers ended (set by the joiner thread) */
    int stopped;      /* asked to drain */
    struct gen_s *next;
    struct node_main_s *m;
} gen_t;

typedef struct node_main_s {
    uv_loop_t loop;
    uv_signal_t sigs[NSIGS];
    uv_async_t gen_done; /* a generation's workers ended */
    uv_async_t reload_async;
    gen_t *gens;        /* newest (current) first */
    uv_mutex_t gens_mu; /* the list and retired, against the cluster thread */
    sh_worker_totals_t retired;
    uint64_t reloads, reload_failures;
    sh_runtime_t *rt0; /* the first configuration: the cluster block lives in it */
    const char *conf_path, *prefix, *globals;
    char errlog_path[PATH_MAX]; /* "" when the error log is stderr */
    int logfd;                  /* the error log's descriptor, or -1 */
    long log_uid;               /* owner of reopened logs (the user), or -1 */
    int stops;
    /* a reload asked by the admin API (a pool thread waits on reload_cv) */
    uv_mutex_t reload_mu;
    uv_cond_t reload_cv;
    int reload_busy, reload_done, reload_rc;
    char *reload_msg;
    size_t reload_msglen;
#ifdef SHOAL_WITH_CLUSTER
    sh_cluster_t *cluster;
#endif
} node_main_t;

static void usage(FILE *f)
{
    fprintf(f, "Usage: shoal [-?hvVtTq] [-s signal] [-p prefix] [-e filename] [-c filename]\n"
               "             [-g directives]\n"
               "\n"
               "Options:\n"
               "  -?,-h,--help   this help\n"
               "  -v,--version   print the version and exit\n"
               "  -V             print the version and the libraries built in, and exit\n"
               "  -t             test the configuration and exit\n"
               "  -T             test the configuration, dump it (with includes) and exit\n"
               "  -q             suppress non-error messages while testing the configuration\n"
               "  -s signal      send a signal to the running node (its pid file):\n"
               "                 stop, quit, reopen, reload\n"
               "  -p prefix      prefix for relative paths (default: current directory)\n"
               "  -e filename    error log when the configuration sets none (default: stderr;\n"
               "                 \"stderr\" selects it)\n"
               "  -c filename    configuration file (default: PREFIX/conf/shoal.conf, then\n"
               "                 " DEFAULT_CONF ", then the built-in default)\n"
               "  -g directives  main-context directives, e.g. -g \"worker_processes 2;\"\n");
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

/* The node's counters over every generation of workers: for stub_status
 * (from a worker thread) and the admin API (the cluster thread). */
static void node_totals(void *ud, sh_worker_totals_t *t)
{
    node_main_t *m = ud;
    uv_mutex_lock(&m->gens_mu);
    *t = m->retired;
    for (gen_t *g = m->gens; g != NULL; g = g->next)
        sh_workers_totals(g->ws, g->n, t);
    uv_mutex_unlock(&m->gens_mu);
}

static void stop_all(node_main_t *m, uint64_t timeout)
{
    for (gen_t *g = m->gens; g != NULL; g = g->next) {
        g->stopped = 1;
        sh_workers_stop(g->ws, g->n, timeout);
    }
}

static void cancel_pending_reload(node_main_t *m)
{
    uv_mutex_lock(&m->reload_mu);
    if (m->reload_busy && !m->reload_done) {
        snprintf(m->reload_msg, m->reload_msglen, "reload: not done, the node is stopping");
        m->reload_rc = -1;
        m->reload_done = 1;
        uv_cond_broadcast(&m->reload_cv);
    }
    uv_mutex_unlock(&m->reload_mu);
}

static void on_signal(uv_signal_t *s, int signum)
{
    node_main_t *m = s->data;
    m->stops++;
    uint64_t t = m->stops == 1 ? m->gens ? m->gens->rt->shutdown_timeout : 0 : 0;
    sh_log_notice("signal %d received, %s", signum,
                  m->stops == 1 ? "draining and exiting" : "exiting now");
    if (m->stops == 1) {
        sd_notify(0, "STOPPING=1"); /* Type=notify unit: the drain has begun */
        cancel_pending_reload(m);
#ifdef SHOAL_WITH_CLUSTER
        sh_cluster_stop(m->cluster, 2000);
        m->cluster = NULL;
#endif
    }
    stop_all(m, t);
    if (m->stops > 1)
        uv_stop(&m->loop);
}

/* The workers end by themselves after a stop; a thread per generation
 * joins them and wakes the main loop. */
static void joiner(void *arg)
{
    gen_t *g = arg;
    (void)sh_privs_drop_thread(); /* it only waits; no thread but main keeps root */
    sh_workers_wait(g->ws, g->n);
    atomic_store(&g->done, 1);
    uv_async_send(&g->m->gen_done);
}

static int gen_start(node_main_t *m, sh_runtime_t *rt, sh_worker_t **ws, int n)
{
    gen_t *g = sh_new(gen_t);
    g->rt = rt;
    g->ws = ws;
    g->n = n;
    g->m = m;
    if (sh_workers_start(ws, n) != 0) {
        sh_free(g);
        return -1;
    }
    uv_mutex_lock(&m->gens_mu);
    g->next = m->gens;
    m->gens = g;
    uv_mutex_unlock(&m->gens_mu);
    uv_thread_create(&g->joiner, joiner, g);
    return 0;
}

/* Free the generations whose workers ended; stop the loop when none is left. */
static void gen_done_cb(uv_async_t *a)
{
    node_main_t *m = container_of(a, node_main_t, gen_done);
    for (;;) {
        gen_t **pp = &m->gens, *g = NULL;
        for (; *pp != NULL; pp = &(*pp)->next)
            if (atomic_load(&(*pp)->done)) {
                g = *pp;
                break;
            }
        if (g == NULL)
            break;
        uv_thread_join(&g->joiner);
        uv_mutex_lock(&m->gens_mu);
        *pp = g->next;
        sh_worker_totals_t t = {0};
        sh_workers_totals(g->ws, g->n, &t);
        m->retired.accepted += t.accepted;
        m->retired.handled += t.handled;
        m->retired.requests += t.requests;
        m->retired.h2_early_responses += t.h2_early_responses;
        uv_mutex_unlock(&m->gens_mu);
        sh_workers_free(g->ws, g->n);
        if (g->rt != m->rt0)
            sh_runtime_destroy(g->rt);
        else
            g->rt = NULL;
        sh_free(g);
    }
    if (m->gens == NULL)
        uv_stop(&m->loop);
}

static int nworkers_of(const sh_runtime_t *rt)
{
    if (rt->worker_processes > 0)
        return rt->worker_processes;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void log_warnings(const char *w);

/*
 * Reload on the main thread: 0 with what was applied in msg, or -1 with
 * why nothing changed.
 */
static int do_reload(node_main_t *m, char *msg, size_t len)
{
    if (m->stops > 0 || m->gens == NULL || m->gens->stopped) {
        snprintf(msg, len, "reload: not done, the node is stopping");
        return -1;
    }
    char err[SH_CONF_ERRLEN];
    sh_runtime_t *rt = NULL;
    /* warnings (directives not honoured yet) go to the error log and into
     * the answer (below) */
    int rc = sh_runtime_load_ex(m->conf_path, "<built-in default>", sh_default_conf, m->globals,
                                m->prefix, sh_modules, sh_nmodules, -1, &rt, err);
    if (rc != 0) {
        snprintf(msg, len, "reload: configuration refused, the running one stays: %s", err);
        m->reload_failures++;
        sh_log_err("%s", msg);
        return -1;
    }
    rt->totals = node_totals;
    rt->totals_ud = m;
    const char *warnings = sh_runtime_warnings(rt);
    log_warnings(warnings);
    gen_t *cur = m->gens;
    int n = nworkers_of(rt);
    sh_worker_t **ws = NULL;
    char werr[256];
    if (sh_workers_create_from(rt, n, cur->ws, cur->n, &ws, werr) != 0) {
        snprintf(msg, len, "reload: configuration refused, the running one stays: %s", werr);
        sh_runtime_destroy(rt);
        m->reload_failures++;
        sh_log_err("%s", msg);
        return -1;
    }
    if (gen_start(m, rt, ws, n) != 0) {
        /* threads that did not start: the old generation keeps serving */
        snprintf(msg, len,
                 "reload: the new workers could not start; the running "
                 "configuration stays");
        m->reload_failures++;
        sh_log_err("%s", msg);
        return -1;
    }
    cur->stopped = 1;
    sh_workers_stop(cur->ws, cur->n, cur->rt->shutdown_timeout);
    m->reloads++;
    int k = snprintf(msg, len,
                     "reload: configuration ok, applied to new connections (%d worker%s); "
                     "connections already open finish on the previous configuration; not "
                     "reloaded: the cluster block and the admin listener, error_log, pid, user",
                     n, n == 1 ? "" : "s");
    sh_log_notice("%s", msg);
    if (warnings[0] != '\0' && k > 0 && (size_t)k < len)
        snprintf(msg + k, len - (size_t)k, "\nwarnings (not honoured):\n%s", warnings);
    return 0;
}

/* Reopen the error log (when it is a file) and every access log of every
 * generation in place (SIGUSR1, nginx's "reopen"). Main thread, which keeps
 * the rights to create the files; a file it creates goes to the user. */
static void reopen_logs(node_main_t *m)
{
    if (m->errlog_path[0] != '\0') {
        int fd = open(m->errlog_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            sh_log_err("reopen: open() \"%s\" failed (%s); still writing to the old file",
                       m->errlog_path, strerror(errno));
        } else {
            if (m->log_uid >= 0 && fchown(fd, (uid_t)m->log_uid, (gid_t)-1) != 0)
                sh_log_warn("reopen: chown(\"%s\") failed (%s)", m->errlog_path, strerror(errno));
            if (dup2(fd, m->logfd) < 0)
                sh_log_err("reopen: dup2() failed (%s)", strerror(errno));
            close(fd);
        }
    }
    unsigned n = 0;
    for (gen_t *g = m->gens; g != NULL; g = g->next, n++)
        if (g->rt->http != NULL)
            sh_access_log_reopen(sh_http_main_conf(g->rt->http, &sh_accesslog_module), m->log_uid);
    sh_log_notice("reopened the log files (error log and the access logs of %u generation%s)", n,
                  n == 1 ? "" : "s");
}

static void on_sigother(uv_signal_t *s, int signum)
{
    node_main_t *m = s->data;
    if (signum == SIGUSR1) {
        sh_log_notice("signal %d (SIGUSR1) received, reopening logs", signum);
        reopen_logs(m);
    } else if (signum == SIGUSR2) {
        sh_log_notice("signal %d (SIGUSR2) received, ignored: shoal has no binary upgrade "
                      "(start a new node beside it, or use SIGHUP to reload)",
                      signum);
    } else {
        sh_log_info("signal %d (SIGWINCH) received, ignored", signum);
    }
}

/* Each line of a load's warnings, to the error log. */
static void log_warnings(const char *w)
{
    while (*w != '\0') {
        const char *nl = strchr(w, '\n');
        int len = nl ? (int)(nl - w) : (int)strlen(w);
        sh_log_warn("%.*s", len, w);
        w += len + (nl != NULL);
    }
}

static void on_sighup(uv_signal_t *s, int signum)
{
    node_main_t *m = s->data;
    char msg[RELOAD_MSGLEN];
    sh_log_notice("signal %d (SIGHUP) received, reloading", signum);
    sd_notify(0, "RELOADING=1"); /* ExecReload of the unit; READY=1 when done */
    do_reload(m, msg, sizeof(msg));
    sd_notify(0, "READY=1");
}

static void reload_async_cb(uv_async_t *a)
{
    node_main_t *m = container_of(a, node_main_t, reload_async);
    uv_mutex_lock(&m->reload_mu);
    int todo = m->reload_busy && !m->reload_done;
    uv_mutex_unlock(&m->reload_mu);
    if (!todo)
        return;
    char msg[RELOAD_MSGLEN];
    int rc = do_reload(m, msg, sizeof(msg));
    uv_mutex_lock(&m->reload_mu);
    if (!m->reload_done) {
        snprintf(m->reload_msg, m->reload_msglen, "%s", msg);
        m->reload_rc = rc;
        m->reload_done = 1;
        uv_cond_broadcast(&m->reload_cv);
    }
    uv_mutex_unlock(&m->reload_mu);
}

#ifdef SHOAL_WITH_CLUSTER
/* ---- the hooks the admin API uses (cluster.h) */

/* A libuv pool thread: hand the reload to the main loop and wait. */
static int hook_reload(void *ud, char *msg, size_t len)
{
    node_main_t *m = ud;
    uv_mutex_lock(&m->reload_mu);
    while (m->reload_busy)
        uv_cond_wait(&m->reload_cv, &m->reload_mu);
    if (m->stops > 0) {
        uv_mutex_unlock(&m->reload_mu);
        snprintf(msg, len, "reload: not done, the node is stopping");
        return -1;
    }
    m->reload_busy = 1;
    m->reload_done = 0;
    m->reload_msg = msg;
    m->reload_msglen = len;
    uv_async_send(&m->reload_async);
    while (!m->reload_done)
        uv_cond_wait(&m->reload_cv, &m->reload_mu);
    int rc = m->reload_rc;
    m->reload_busy = 0;
    m->reload_msg = NULL;
    uv_cond_broadcast(&m->reload_cv);
    uv_mutex_unlock(&m->reload_mu);
    return rc;
}

/* The limit zones' counters (node/modules/limit_zone.h) on /metrics. */
static void hook_metrics(void *ud, FILE *f)
{
    node_main_t *m = ud;
    sh_metrics_write(f); /* requests, latency, upstream tries, TLS, HTTP/2 */
    uv_mutex_lock(&m->gens_mu);
    if (m->gens != NULL)
        sh_workers_upstreams_metrics(m->gens->ws, m->gens->n, f);
    uv_mutex_unlock(&m->gens_mu);
    sh_limit_zone_metrics(f);
    sh_proxy_cache_metrics(f);
    sh_health_metrics(f);
}

static char *hook_cache_stats(void *ud)
{
    (void)ud;
    return sh_proxy_cache_stats_json();
}

static void hook_status(void *ud, sh_cluster_node_status_t *out)
{
    node_main_t *m = ud;
    sh_worker_totals_t t;
    uv_mutex_lock(&m->gens_mu);
    t = m->retired;
    unsigned workers = 0, gens = 0;
    for (gen_t *g = m->gens; g != NULL; g = g->next) {
        sh_workers_totals(g->ws, g->n, &t);
        workers += (unsigned)g->n;
        gens++;
    }
    out->reloads = m->reloads;
    out->reload_failures = m->reload_failures;
    uv_mutex_unlock(&m->gens_mu);
    out->accepted = t.accepted;
    out->handled = t.handled;
    out->requests = t.requests;
    out->active = t.active;
    out->reading = t.reading;
    out->writing = t.writing;
    out->waiting = t.waiting;
    out->proxy_protocol_bad = t.proxy_protocol_bad;
    out->h2_early_responses = t.h2_early_responses;
    out->workers = workers;
    out->generations = gens;
}

static char *hook_upstreams(void *ud)
{
    node_main_t *m = ud;
    uv_mutex_lock(&m->gens_mu);
    char *s = m->gens ? sh_workers_upstreams_json(m->gens->ws, m->gens->n) : NULL;
    uv_mutex_unlock(&m->gens_mu);
    return s;
}
#endif

/* -t checks the files the start opens (issue 15: what -t accepts must
 * start), as nginx -t opens its logs: error_log is opened (created if
 * need be, as the start would), and the pid file must be writable or
 * creatable (not written: a running node's pid file is left as it is). */
static int test_start_files(const sh_core_conf_t *core, const char *prefix)
{
    char p[PATH_MAX];
    if (core->error_log != NULL) {
        path_join(p, core->error_log[0] == '/' ? "" : prefix, core->error_log);
        int fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            fprintf(stderr, "shoal: [emerg] open() \"%s\" failed (%s)\n", p, strerror(errno));
            return -1;
        }
        close(fd);
    }
    if (core->pid != NULL) {
        path_join(p, core->pid[0] == '/' ? "" : prefix, core->pid);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            close(fd);
            unlink(p);
        } else if (errno != EEXIST || access(p, W_OK) != 0) {
            fprintf(stderr, "shoal: [emerg] open() \"%s\" failed (%s)\n", p, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* nginx -s: find the running node by its pid file and signal it. */
static int send_signal(const sh_core_conf_t *core, const char *prefix, const char *name)
{
    static const struct {
        const char *name;
        int sig;
    } sigs[] = {{"stop", SIGTERM}, {"quit", SIGQUIT}, {"reopen", SIGUSR1}, {"reload", SIGHUP}};
    int sig = 0;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (strcmp(name, sigs[i].name) == 0)
            sig = sigs[i].sig;
    if (sig == 0) {
        fprintf(stderr, "shoal: invalid option: \"-s %s\" (stop, quit, reopen or reload)\n", name);
        return 2;
    }
    if (core->pid == NULL) {
        fprintf(stderr, "shoal: [error] -s needs the node's pid file: the configuration sets no "
                        "\"pid\"\n");
        return 1;
    }
    char path[PATH_MAX];
    path_join(path, core->pid[0] == '/' ? "" : prefix, core->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "shoal: [error] open() \"%s\" failed (%s)\n", path, strerror(errno));
        return 1;
    }
    char buf[32] = "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    char *end;
    long pid = strtol(buf, &end, 10);
    if (n == 0 || *end != '\0' || pid <= 0 || pid > INT_MAX) {
        fprintf(stderr, "shoal: [error] invalid PID number \"%s\" in \"%s\"\n", buf, path);
        return 1;
    }
    if (kill((pid_t)pid, sig) != 0) {
        fprintf(stderr, "shoal: [error] kill(%ld, %d) failed (%s)\n", pid, sig, strerror(errno));
        return 1;
    }
    return 0;
}

static void print_version(int verbose)
{
    printf("shoal version %s\n", SHOAL_VERSION);
    if (!verbose)
        return;
    printf("built with %s, libuv %s\n", OpenSSL_version(OPENSSL_VERSION), uv_version_string());
    printf("built by %s\n",
#ifdef __clang__
           "clang " __clang_version__
#elif defined(__GNUC__)
           "gcc " __VERSION__
#else
           "an unknown compiler"
#endif
    );
#ifdef SHOAL_WITH_CLUSTER
    printf("cluster: on (SWIM gossip, admin API)\n");
#else
    printf("cluster: off\n");
#endif
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *prefix_arg = NULL, *globals = NULL, *errlog_arg = NULL;
    const char *signame = NULL;
    int test = 0, dump = 0, quiet = 0, opt;
    /* until the handlers are in place, a logrotate signal must not kill */
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    signal(SIGWINCH, SIG_IGN);
    sh_alloc_tune();      /* before the worker threads' arenas exist */
    sh_tls_global_init(); /* before anything allocates through OpenSSL */
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'v'}, {NULL, 0, NULL, 0}};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-?") == 0) { /* nginx's spelling of -h */
            usage(stdout);
            return 0;
        }
    while ((opt = getopt_long(argc, argv, "c:p:tTqvVhs:g:e:", longopts, NULL)) != -1) {
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
        case 'T':
            test = dump = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'v':
        case 'V':
            print_version(opt == 'V');
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case 's':
            signame = optarg;
            break;
        case 'g':
            globals = optarg;
            break;
        case 'e':
            errlog_arg = optarg;
            break;
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
    int rc = sh_runtime_load_ex(use, "<built-in default>", sh_default_conf, globals, prefix,
                                sh_modules, sh_nmodules, quiet || signame ? -1 : 2, &rt, err);
    const char *shown = use ? use : "<built-in default>";
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        fprintf(stderr, "shoal: configuration file %s test failed\n", shown);
        return 1;
    }
    if (test && test_start_files(sh_runtime_core(rt), prefix) != 0) {
        fprintf(stderr, "shoal: configuration file %s test failed\n", shown);
        sh_runtime_destroy(rt);
        return 1;
    }
    if (signame != NULL) {
        rc = send_signal(sh_runtime_core(rt), prefix, signame);
        sh_runtime_destroy(rt);
        return rc;
    }
    if (test) {
        if (!quiet) {
            fprintf(stderr, "shoal: the configuration file %s syntax is ok\n", shown);
            fprintf(stderr, "shoal: configuration file %s test is successful\n", shown);
        }
        rc = dump ? sh_runtime_dump(rt, stdout) : 0;
        sh_runtime_destroy(rt);
        return rc == 0 ? 0 : 1;
    }

    signal(SIGPIPE, SIG_IGN);
    static node_main_t m; /* lives as long as the process: threads point at it */
    m.logfd = -1;
    m.log_uid = -1;
    const sh_core_conf_t *core = sh_runtime_core(rt);
    sh_log_set_level(core->error_level > SH_LOG_NOTICE ? core->error_level : SH_LOG_NOTICE);
    /* the configuration's error_log, else -e (nginx's -e replaces the
     * built-in default path), else stderr */
    const char *elog = core->error_log;
    if (elog == NULL && errlog_arg != NULL && strcmp(errlog_arg, "stderr") != 0 &&
        core->error_syslog == NULL)
        elog = errlog_arg;
    if (core->error_syslog != NULL) { /* open for the process's life, like the error fd */
        static sh_syslog_t *elog_syslog;
        char serr[160];
        if (sh_syslog_open(core->error_syslog, &elog_syslog, serr, sizeof(serr)) == 0) {
            sh_log_set_level(core->error_level);
            sh_log_set_syslog(elog_syslog);
        }
    }
    if (elog != NULL) {
        path_join(m.errlog_path, elog[0] == '/' ? "" : prefix, elog);
        m.logfd = open(m.errlog_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (m.logfd < 0) {
            fprintf(stderr, "shoal: [emerg] open() \"%s\" failed (%s)\n", m.errlog_path,
                    strerror(errno));
            sh_runtime_destroy(rt);
            return 1;
        }
        sh_log_set_level(core->error_level);
        sh_log_set_fd(m.logfd);
        log_warnings(sh_runtime_warnings(rt)); /* stderr had them too */
    }
    char pidpath[PATH_MAX] = "";
    if (core->pid != NULL) {
        path_join(pidpath, core->pid[0] == '/' ? "" : prefix, core->pid);
        FILE *pf = fopen(pidpath, "w");
        if (pf == NULL) {
            fprintf(stderr, "shoal: [emerg] open() \"%s\" failed (%s)\n", pidpath, strerror(errno));
            sh_runtime_destroy(rt);
            return 1;
        }
        fprintf(pf, "%d\n", (int)getpid());
        fclose(pf);
    }
    if (core->drop_privs) {
        /* every thread started from here on switches to the user */
        sh_privs_set((uid_t)core->uid, (gid_t)core->gid, core->user);
        m.log_uid = (long)core->uid;
        sh_log_notice("workers and the cluster thread run as user \"%s\" (uid %u, gid %u); the "
                      "main thread keeps root to reopen logs and reload",
                      core->user, core->uid, core->gid);
    }

    m.rt0 = rt;
    rt->totals = node_totals;
    rt->totals_ud = &m;
    m.conf_path = use;
    m.prefix = prefix;
    m.globals = globals;
    uv_mutex_init(&m.gens_mu);
    uv_mutex_init(&m.reload_mu);
    uv_cond_init(&m.reload_cv);
    int nworkers = nworkers_of(rt);
    sh_worker_t **workers = NULL;
    char werr[256];
    rc = sh_workers_create(rt, nworkers, &workers, werr);
    if (rc != 0) {
        fprintf(stderr, "shoal: [emerg] %s\n", werr);
        sh_runtime_destroy(rt);
        return 1;
    }
    uv_loop_init(&m.loop);
    uv_async_init(&m.loop, &m.gen_done, gen_done_cb);
    uv_async_init(&m.loop, &m.reload_async, reload_async_cb);
#ifdef SHOAL_WITH_CLUSTER
    if (sh_health_gossip_register() != 0)
        sh_log_warn("health: the health channel could not be registered; health stays local");
    if (sh_tls_tickets_sync_register() != 0)
        sh_log_warn("tls: the ticket-key channel could not be registered; ticket keys stay local");
    if (sh_cluster_conf_gossips(rt->main_confs[sh_cluster_module.index]) &&
        sh_purge_register() != 0)
        sh_log_warn("cache: the purge channel could not be registered; purges stay local");
    sh_cluster_hooks_t hooks = {&m,          hook_status,  hook_upstreams,
                                hook_reload, hook_metrics, hook_cache_stats};
    rc = sh_cluster_start(rt->main_confs[sh_cluster_module.index], &hooks, &m.cluster);
    if (rc != 0) {
        fprintf(stderr, "shoal: [emerg] the cluster could not start\n");
        return 1;
    }
#endif
    int signums[NSIGS] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH};
    for (int i = 0; i < NSIGS; i++) {
        uv_signal_init(&m.loop, &m.sigs[i]);
        m.sigs[i].data = &m;
        uv_signal_start(&m.sigs[i],
                        signums[i] == SIGHUP ? on_sighup
                        : i < 3              ? on_signal
                                             : on_sigother,
                        signums[i]);
    }
    if (gen_start(&m, rt, workers, nworkers) != 0) {
        fprintf(stderr, "shoal: [emerg] could not start the workers\n");
        return 1;
    }
    if (sh_health_start() != 0) {
        fprintf(stderr, "shoal: [emerg] could not start the health checks\n");
        return 1;
    }
    sh_log_notice("shoal %s started: %d worker%s, configuration %s", SHOAL_VERSION, nworkers,
                  nworkers == 1 ? "" : "s", shown);
    sd_notify(0, "READY=1"); /* listeners, workers and the cluster thread are up */

    uv_run(&m.loop, UV_RUN_DEFAULT);
    if (m.stops > 1) {
        /* forced: do not wait for the drain */
        fflush(NULL);
        _exit(0);
    }
    cancel_pending_reload(&m);
#ifdef SHOAL_WITH_CLUSTER
    sh_cluster_stop(m.cluster, 2000);
#endif
    sh_health_stop();
    for (int i = 0; i < NSIGS; i++)
        uv_close((uv_handle_t *)&m.sigs[i], NULL);
    uv_close((uv_handle_t *)&m.gen_done, NULL);
    uv_close((uv_handle_t *)&m.reload_async, NULL);
    uv_run(&m.loop, UV_RUN_DEFAULT);
    uv_loop_close(&m.loop);
    sh_log_notice("exiting");
    if (pidpath[0])
        unlink(pidpath);
    sh_runtime_destroy(rt);
    if (m.logfd >= 0)
        close(m.logfd);
    return 0;
}
