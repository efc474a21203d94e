/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Access logs (see accesslog.h).
 *
 * Load time (main thread): formats are compiled complex values; each
 * distinct path is one log_file_t with its fd, shared by every
 * access_log naming it and reference counted (the configuration holds
 * one reference, each worker buffer one more).
 *
 * Run time (worker thread): a thread-local log_thread_t, created on the
 * thread's first log line, holds a buffer per file it wrote to and a
 * one-second flush timer on the worker's loop (unreferenced, so it never
 * keeps the loop alive; the worker's stop closes it with every other
 * handle). A pthread key destructor writes what is left and frees the
 * state when the thread ends, after its loop is closed.
 */
#include "node/modules/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "core/syslog.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/node.h"
#include "node/pipeline/vars.h"

#define LOG_FLUSH_BYTES          (64 * 1024)
#define LOG_FLUSH_MS             1000
#define LOG_TICK_MS              100
#define LOG_NEVER                UINT64_MAX
#define LOG_MAX_FILES_PER_THREAD 256
#define LOG_QUEUE_MAX            (64u * 1024 * 1024) /* bytes waiting for the writer */

#define COMBINED                                                                                   \
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent "             \
    "\"$http_referer\" \"$http_user_agent\""

typedef struct {
    char *name;
    int escape; /* enum sh_cv_escape */
    sh_cv_t *cv;
} log_format_t;

typedef struct {
    _Atomic int refs;
    int fd;
    char *path;
    _Atomic uint64_t write_errors; /* failed or short writes (lines lost) */
    _Atomic uint64_t dropped;      /* batches dropped: the writer was too far behind */
    size_t buffer;                 /* buffer=: a worker's batch is written at this size */
    uint64_t flush_ms;             /* flush=: ... or this long after its first line */
    int gzip;                      /* gzip[=level]: each batch is one gzip member (0: plain) */
    int params_set;                /* an access_log gave buffer=/flush=/gzip */
} log_file_t;

typedef struct {
    log_file_t *file;    /* NULL for syslog */
    sh_syslog_t *syslog; /* access_log syslog:..., owned by the entry */
    const log_format_t *fmt;
    sh_cv_t *cond; /* if=: skip when "" or "0" */
} log_entry_t;

typedef struct {
    log_format_t **formats;
    size_t nformats;
    log_file_t **files;
    size_t nfiles;
} log_main_t;

typedef struct {
    log_entry_t *entries;
    size_t nentries;
    int set; /* this level had access_log (entries may be empty: off) */
    int off;
    int inherited; /* entries belong to the parent */
} log_loc_t;

/* ------------------------------------------------------ files -- */

static void file_unref(log_file_t *f)
{
    if (f == NULL || atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    if (f->fd >= 0)
        close(f->fd);
    sh_free(f->path);
    sh_free(f);
}

static void write_plain(log_file_t *f, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (atomic_fetch_add(&f->write_errors, 1) == 0)
                sh_log_err("write() to \"%s\" failed (%s)", f->path, strerror(errno));
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* A batch as one gzip member (nginx's access_log gzip). */
static void write_gzip(log_file_t *f, const char *p, size_t n)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, f->gzip, Z_DEFLATED, MAX_WBITS + 16, MAX_MEM_LEVEL - 1,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        atomic_fetch_add(&f->write_errors, 1);
        return;
    }
    size_t cap = deflateBound(&z, (uLong)n) + 32;
    char *out = sh_malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)p;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) == Z_STREAM_END)
        write_plain(f, out, cap - z.avail_out);
    else
        atomic_fetch_add(&f->write_errors, 1);
    deflateEnd(&z);
    sh_free(out);
}

/* ------------------------------------------------------ the writer -- */
/*
 * One writer thread per process does every write(2) of the access logs,
 * so a slow or stalled disk never holds a worker's loop: a worker hands
 * a full (or due) batch over and goes on. Batches of one file are written
 * in the order they were handed over (one thread, one FIFO). When more
 * than LOG_QUEUE_MAX bytes wait, a new batch is dropped and counted
 * instead of growing memory without bound.
 */

typedef struct job_s {
    struct job_s *next;
    log_file_t *file; /* one reference held */
    sh_buf_t buf;
} job_t;

static pthread_mutex_t wq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wq_cv = PTHREAD_COND_INITIALIZER;   /* work came */
static pthread_cond_t wq_idle = PTHREAD_COND_INITIALIZER; /* all written */
static job_t *wq_head, **wq_tail = &wq_head;
static size_t wq_bytes;
static int wq_busy;
static pthread_once_t wq_once = PTHREAD_ONCE_INIT;

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wq_mu);
    for (;;) {
        while (wq_head == NULL)
            pthread_cond_wait(&wq_cv, &wq_mu);
        job_t *j = wq_head;
        wq_head = j->next;
        if (wq_head == NULL)
            wq_tail = &wq_head;
        wq_busy = 1;
        pthread_mutex_unlock(&wq_mu);
        if (j->file->gzip > 0)
            write_gzip(j->file, j->buf.data, j->buf.len);
        else
            write_plain(j->file, j->buf.data, j->buf.len);
        size_t n = j->buf.len;
        file_unref(j->file);
        sh_buf_dispose(&j->buf);
        sh_free(j);
        pthread_mutex_lock(&wq_mu);
        wq_bytes -= n;
        wq_busy = 0;
        if (wq_head == NULL)
            pthread_cond_broadcast(&wq_idle);
    }
    return NULL;
}

static void writer_start(void)
{
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, writer_main, NULL) != 0)
        sh_log_err("access log writer thread: pthread_create failed");
    pthread_attr_destroy(&a);
}

/* Hand b's bytes to the writer (b is left empty). Never blocks on I/O. */
static void write_all(log_file_t *f, sh_buf_t *b)
{
    if (b->len == 0)
        return;
    pthread_once(&wq_once, writer_start);
    pthread_mutex_lock(&wq_mu);
    if (wq_bytes + b->len > LOG_QUEUE_MAX) {
        pthread_mutex_unlock(&wq_mu);
        if (atomic_fetch_add(&f->dropped, 1) == 0)
            sh_log_err("access log \"%s\": the disk is too slow, lines dropped", f->path);
        b->len = 0;
        return;
    }
    job_t *j = sh_new(job_t);
    j->file = f;
    atomic_fetch_add(&f->refs, 1);
    j->buf = *b;
    memset(b, 0, sizeof(*b));
    wq_bytes += j->buf.len;
    *wq_tail = j;
    wq_tail = &j->next;
    pthread_cond_signal(&wq_cv);
    pthread_mutex_unlock(&wq_mu);
}

/* Wait until the writer wrote everything handed over so far. */
static void writer_sync(void)
{
    pthread_mutex_lock(&wq_mu);
    while (wq_head != NULL || wq_busy)
        pthread_cond_wait(&wq_idle, &wq_mu);
    pthread_mutex_unlock(&wq_mu);
}

/* ------------------------------------------------------ per thread -- */

typedef struct {
    log_file_t *file; /* one reference held */
    sh_buf_t buf;
    uint64_t first_ms; /* when the batch's first line came */
} thread_buf_t;

typedef struct {
    thread_buf_t *bufs;
    size_t nbufs;
    uv_loop_t *loop;
    uv_timer_t timer;
    int timer_on;
    sh_buf_t tmp; /* an if= value, a syslog line */
} log_thread_t;

static pthread_key_t lt_key;
static pthread_once_t lt_once = PTHREAD_ONCE_INIT;
static _Thread_local log_thread_t *lt_self;

/* Hand over the batches that are due (now == LOG_NEVER: all of them). */
static void lt_flush(log_thread_t *lt, uint64_t now)
{
    for (size_t i = 0; i < lt->nbufs; i++) {
        thread_buf_t *b = &lt->bufs[i];
        if (b->buf.len > 0 && (now == LOG_NEVER || (b->file->flush_ms != LOG_NEVER &&
                                                    now - b->first_ms >= b->file->flush_ms)))
            write_all(b->file, &b->buf);
    }
}

/* Hand everything over and let the files go; sync: wait until it is
 * written (the thread's end, tests), never on a worker's loop otherwise. */
static void lt_release(log_thread_t *lt, int sync)
{
    lt_flush(lt, LOG_NEVER);
    if (sync)
        writer_sync();
    for (size_t i = 0; i < lt->nbufs; i++) {
        sh_buf_dispose(&lt->bufs[i].buf);
        file_unref(lt->bufs[i].file);
    }
    sh_free(lt->bufs);
    lt->bufs = NULL;
    lt->nbufs = 0;
}

/* The thread ends: its loop is closed already (the worker closes it
 * before returning), so only memory and the last lines are left. */
static void lt_destroy(void *p)
{
    log_thread_t *lt = p;
    lt_release(lt, 1);
    sh_buf_dispose(&lt->tmp);
    sh_free(lt);
    lt_self = NULL;
}

static void lt_key_init(void)
{
    pthread_key_create(&lt_key, lt_destroy);
}

static void timer_cb(uv_timer_t *t)
{
    log_thread_t *lt = container_of(t, log_thread_t, timer);
    lt_flush(lt, uv_now(lt->loop));
}

static log_thread_t *lt_get(sh_request_t *r)
{
    log_thread_t *lt = lt_self;
    if (lt == NULL) {
        pthread_once(&lt_once, lt_key_init);
        lt = sh_new(log_thread_t);
        lt_self = lt;
        pthread_setspecific(lt_key, lt);
    }
    if (!lt->timer_on && r->c != NULL && r->c->w != NULL) {
        lt->loop = &r->c->w->loop;
        uv_timer_init(lt->loop, &lt->timer);
        uv_timer_start(&lt->timer, timer_cb, LOG_TICK_MS, LOG_TICK_MS);
        uv_unref((uv_handle_t *)&lt->timer);
        lt->timer_on = 1;
    }
    return lt;
}

static thread_buf_t *lt_buf(log_thread_t *lt, log_file_t *f)
{
    for (size_t i = 0; i < lt->nbufs; i++)
        if (lt->bufs[i].file == f)
            return &lt->bufs[i];
    if (lt->nbufs >= LOG_MAX_FILES_PER_THREAD) {
        /* files of configurations long gone: write and let them go */
        lt_release(lt, 0);
    }
    lt->bufs = sh_realloc(lt->bufs, (lt->nbufs + 1) * sizeof(*lt->bufs));
    thread_buf_t *b = &lt->bufs[lt->nbufs++];
    memset(b, 0, sizeof(*b));
    atomic_fetch_add(&f->refs, 1);
    b->file = f;
    return b;
}

void sh_access_log_flush(void)
{
    if (lt_self != NULL)
        lt_release(lt_self, 1);
}

void sh_access_log(sh_request_t *r)
{
    const sh_http_loc_t *loc = r->loc;
    if (loc == NULL && r->c != NULL && r->c->addr != NULL && r->c->addr->default_srv != NULL)
        loc = r->c->addr->default_srv->loc;
    if (loc == NULL)
        return;
    const log_loc_t *ll = sh_http_loc_conf(loc, &sh_accesslog_module);
    if (ll == NULL || ll->off || ll->nentries == 0)
        return;
    log_thread_t *lt = lt_get(r);
    for (size_t i = 0; i < ll->nentries; i++) {
        const log_entry_t *e = &ll->entries[i];
        if (e->cond != NULL) { /* nginx: "" and "0" skip the line */
            sh_buf_t *c = &lt->tmp;
            c->len = 0;
            sh_cv_eval(e->cond, r, c);
            if (c->len == 0 || (c->len == 1 && c->data[0] == '0'))
                continue;
        }
        if (e->syslog != NULL) { /* one datagram per line, never blocking */
            sh_buf_t *m = &lt->tmp;
            m->len = 0;
            sh_cv_eval_log(e->fmt->cv, r, e->fmt->escape, m);
            sh_syslog_send(e->syslog, -1, m->data, m->len);
            continue;
        }
        thread_buf_t *b = lt_buf(lt, e->file);
        if (b->buf.len == 0)
            b->first_ms = lt->loop != NULL ? uv_now(lt->loop) : 0;
        sh_cv_eval_log(e->fmt->cv, r, e->fmt->escape, &b->buf);
        sh_buf_append(&b->buf, "\n", 1);
        if (b->buf.len >= e->file->buffer)
            write_all(b->file, &b->buf);
    }
}

/* ------------------------------------------------------ configuration -- */

static void format_destroy(log_format_t *f)
{
    sh_free(f->name);
    sh_cv_destroy(f->cv);
    sh_free(f);
}

static void *log_create_main(void)
{
    return sh_new(log_main_t);
}

static void log_destroy_main(void *conf)
{
    log_main_t *lm = conf;
    for (size_t i = 0; i < lm->nformats; i++)
        format_destroy(lm->formats[i]);
    sh_free(lm->formats);
    for (size_t i = 0; i < lm->nfiles; i++)
        file_unref(lm->files[i]);
    sh_free(lm->files);
    sh_free(lm);
}

static log_main_t *main_of(sh_conf_t *cf)
{
    sh_http_block_t *b = cf->user;
    return sh_http_main_conf(b->main, &sh_accesslog_module);
}

static int add_format(sh_conf_t *cf, log_main_t *lm, const char *name, int escape, const char *text)
{
    log_format_t *f = sh_new(log_format_t);
    f->name = sh_strdup(name);
    f->escape = escape;
    int rc = sh_cv_compile(cf, text, &f->cv);
    if (rc != 0) {
        sh_free(f->name);
        sh_free(f);
        return rc;
    }
    lm->formats = sh_realloc(lm->formats, (lm->nformats + 1) * sizeof(*lm->formats));
    lm->formats[lm->nformats++] = f;
    return 0;
}

static const log_format_t *find_format(sh_conf_t *cf, log_main_t *lm, const char *name)
{
    for (size_t i = 0; i < lm->nformats; i++)
        if (strcmp(lm->formats[i]->name, name) == 0)
            return lm->formats[i];
    if (strcmp(name, "combined") == 0) {
        /* predefined, compiled on first use (it needs the http block) */
        if (add_format(cf, lm, "combined", SH_ESCAPE_DEFAULT, COMBINED) != 0)
            return NULL;
        return lm->formats[lm->nformats - 1];
    }
    return NULL;
}

static int log_format_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    (void)conf;
    log_main_t *lm = main_of(cf);
    const sh_conf_node_t *n = cf->node;
    const char *name = n->args[1];
    for (size_t i = 0; i < lm->nformats; i++)
        if (strcmp(lm->formats[i]->name, name) == 0)
            return sh_conf_error(cf, "duplicate \"log_format\" name \"%s\"", name);
    if (strcmp(name, "combined") == 0)
        return sh_conf_error(cf, "duplicate \"log_format\" name \"%s\"", name);
    unsigned i = 2;
    int escape = SH_ESCAPE_DEFAULT;
    if (i < n->nargs && strncmp(n->args[i], "escape=", 7) == 0) {
        const char *e = n->args[i] + 7;
        if (strcmp(e, "default") == 0)
            escape = SH_ESCAPE_DEFAULT;
        else if (strcmp(e, "json") == 0)
            escape = SH_ESCAPE_JSON;
        else if (strcmp(e, "none") == 0)
            escape = SH_ESCAPE_NONE;
        else
            return sh_conf_error(cf, "unknown log format escaping \"%s\"", e);
        i++;
    }
    if (i >= n->nargs)
        return sh_conf_error(cf, "invalid number of arguments in \"log_format\" directive");
    sh_buf_t text = {0};
    for (; i < n->nargs; i++)
        sh_buf_appends(&text, n->args[i]);
    sh_buf_append(&text, "", 1);
    int rc = add_format(cf, lm, name, escape, text.data);
    sh_buf_dispose(&text);
    return rc;
}

static log_file_t *open_file(sh_conf_t *cf, log_main_t *lm, const char *path, int quiet)
{
    sh_buf_t full = {0};
    if (path[0] != '/')
        sh_buf_appends(&full, cf->prefix);
    sh_buf_appends(&full, path);
    sh_buf_append(&full, "", 1);
    for (size_t i = 0; i < lm->nfiles; i++)
        if (strcmp(lm->files[i]->path, full.data) == 0) {
            sh_buf_dispose(&full);
            return lm->files[i];
        }
    int fd = open(full.data, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        if (!quiet)
            sh_conf_error(cf, "open() \"%s\" failed (%s)", full.data, strerror(errno));
        sh_buf_dispose(&full);
        return NULL;
    }
    log_file_t *f = sh_new(log_file_t);
    atomic_init(&f->refs, 1);
    f->fd = fd;
    /* without buffer=: batches of 64k written at least every second (nginx
     * writes each line at once; the writer thread keeps that off the loop) */
    f->buffer = LOG_FLUSH_BYTES;
    f->flush_ms = LOG_FLUSH_MS;
    f->path = sh_strdup(full.data);
    sh_buf_dispose(&full);
    lm->files = sh_realloc(lm->files, (lm->nfiles + 1) * sizeof(*lm->files));
    lm->files[lm->nfiles++] = f;
    return f;
}

static int access_log_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    log_loc_t *ll = conf;
    log_main_t *lm = main_of(cf);
    const sh_conf_node_t *n = cf->node;
    if (strcmp(n->args[1], "off") == 0) {
        if (n->nargs != 2)
            return sh_conf_error(cf, "invalid parameter \"%s\"", n->args[2]);
        ll->set = 1;
        ll->off = 1;
        return 0;
    }
    if (ll->off)
        return sh_conf_error(cf, "\"access_log\" after \"access_log off\" at the same level");
    const char *fname = n->nargs >= 3 ? n->args[2] : "combined";
    const log_format_t *fmt = find_format(cf, lm, fname);
    if (fmt == NULL)
        return sh_conf_error(cf, "unknown log format \"%s\"", fname);
    sh_cv_t *cond = NULL;
    size_t buffer = 0;
    uint64_t flush = LOG_NEVER;
    int gzip = 0, rc = 0;
    for (unsigned i = 3; i < n->nargs && rc == 0; i++) {
        const char *a = n->args[i];
        if (strncmp(a, "if=", 3) == 0) {
            sh_cv_destroy(cond);
            cond = NULL;
            rc = sh_cv_compile(cf, a + 3, &cond);
        } else if (strncmp(a, "buffer=", 7) == 0) {
            if (sh_conf_parse_size(a + 7, &buffer) != 0 || buffer == 0)
                rc = sh_conf_error(cf, "invalid buffer size \"%s\"", a + 7);
        } else if (strncmp(a, "flush=", 6) == 0) {
            if (sh_conf_parse_msec(a + 6, &flush) != 0 || flush == 0)
                rc = sh_conf_error(cf, "invalid flush time \"%s\"", a + 6);
        } else if (strcmp(a, "gzip") == 0) {
            gzip = 1;
        } else if (strncmp(a, "gzip=", 5) == 0) {
            if (sh_conf_parse_int(a + 5, &gzip) != 0 || gzip < 1 || gzip > 9)
                rc = sh_conf_error(cf, "invalid compression level \"%s\"", a + 5);
        } else {
            rc = sh_conf_error(cf, "invalid parameter \"%s\"", a);
        }
    }
    if (rc != 0) {
        sh_cv_destroy(cond);
        return rc;
    }
    if (strncmp(n->args[1], "syslog:", 7) == 0) {
        /* nginx: syslog takes no buffer= / flush= / gzip */
        if (buffer != 0 || flush != LOG_NEVER || gzip != 0) {
            sh_cv_destroy(cond);
            return sh_conf_error(cf, "logs to syslog cannot be buffered");
        }
        char err[160];
        sh_syslog_t *s;
        if (sh_syslog_open(n->args[1] + 7, &s, err, sizeof(err)) != 0) {
            sh_cv_destroy(cond);
            return sh_conf_error(cf, "%s", err);
        }
        ll->set = 1;
        ll->entries = sh_realloc(ll->entries, (ll->nentries + 1) * sizeof(*ll->entries));
        ll->entries[ll->nentries++] = (log_entry_t){.syslog = s, .fmt = fmt, .cond = cond};
        return 0;
    }
    log_file_t *f = open_file(cf, lm, n->args[1], 0);
    if (f == NULL) {
        sh_cv_destroy(cond);
        return SH_EINVAL;
    }
    if (buffer != 0 || flush != LOG_NEVER || gzip != 0) {
        /* nginx: one file, one set of parameters */
        if (gzip && buffer == 0)
            buffer = LOG_FLUSH_BYTES; /* nginx: gzip implies a 64k buffer */
        if (f->params_set && (f->buffer != buffer || f->flush_ms != flush || f->gzip != gzip)) {
            sh_cv_destroy(cond);
            return sh_conf_error(cf,
                                 "access_log \"%s\" already defined with conflicting "
                                 "parameters",
                                 n->args[1]);
        }
        f->params_set = 1;
        f->buffer = buffer != 0 ? buffer : LOG_FLUSH_BYTES;
        f->flush_ms = flush;
        f->gzip = gzip;
    }
    ll->set = 1;
    ll->entries = sh_realloc(ll->entries, (ll->nentries + 1) * sizeof(*ll->entries));
    ll->entries[ll->nentries++] = (log_entry_t){.file = f, .fmt = fmt, .cond = cond};
    return 0;
}

static void *log_create_loc(void)
{
    return sh_new(log_loc_t);
}

static void log_destroy_loc(void *conf)
{
    log_loc_t *ll = conf;
    if (!ll->inherited) {
        for (size_t i = 0; i < ll->nentries; i++) {
            sh_cv_destroy(ll->entries[i].cond);
            sh_syslog_close(ll->entries[i].syslog);
        }
        sh_free(ll->entries);
    }
    sh_free(ll);
}

static int log_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    (void)cf;
    log_loc_t *p = parent, *c = conf;
    if (c->set)
        return 0;
    c->entries = p->entries;
    c->nentries = p->nentries;
    c->off = p->off;
    c->inherited = 1;
    return 0;
}

/* After the http block: the http level without access_log logs to
 * logs/access.log in combined, as nginx (when the file can be opened;
 * nginx would refuse to start, we warn). Servers were merged from the
 * http level before this runs, so the default is pushed down to every
 * level that inherited "nothing". */
static void push_default(sh_http_loc_t *loc, const log_loc_t *def, const log_loc_t *empty)
{
    log_loc_t *ll = sh_http_loc_conf(loc, &sh_accesslog_module);
    if (ll != NULL && ll->inherited && ll->entries == empty->entries && ll->nentries == 0 &&
        !ll->off) {
        ll->entries = def->entries;
        ll->nentries = def->nentries;
    }
    for (size_t i = 0; i < loc->nchildren; i++)
        push_default(loc->children[i], def, empty);
}

static int log_init_main(sh_conf_t *cf, sh_http_main_t *m, void *conf)
{
    log_main_t *lm = conf;
    log_loc_t *top = sh_http_loc_conf(m->loc, &sh_accesslog_module);
    if (top->set)
        return 0;
    sh_http_block_t b = {.main = m, .srv = NULL, .loc = m->loc};
    void *saved = cf->user;
    uint32_t saved_ctx = cf->ctx;
    cf->user = &b;
    cf->ctx = SH_CTX_HTTP;
    const log_format_t *fmt = find_format(cf, lm, "combined");
    log_file_t *f = fmt != NULL ? open_file(cf, lm, "logs/access.log", 1) : NULL;
    cf->user = saved;
    cf->ctx = saved_ctx;
    if (f == NULL) {
        cf->err[0] = '\0';
        return 0; /* no logs/ under the prefix: no default log */
    }
    log_loc_t empty = *top;
    top->entries = sh_new(log_entry_t);
    top->entries[0] = (log_entry_t){.file = f, .fmt = fmt};
    top->nentries = 1;
    top->set = 1;
    for (size_t i = 0; i < m->nservers; i++)
        push_default(m->servers[i]->loc, top, &empty);
    return 0;
}

#define LOG_CTX (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CTX_IF | SH_CTX_LIMIT_EXCEPT)

static const sh_conf_cmd_t log_cmds[] = {
    {"log_format", SH_CTX_HTTP | SH_CONF_2MORE, log_format_set, 0, NULL},
    {"access_log", LOG_CTX | SH_CONF_1MORE, access_log_set, 0, NULL},
    {"open_log_file_cache", SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_1MORE,
     sh_conf_set_ignore, 0, NULL},
    {NULL, 0, NULL, 0, NULL}};

static int log_handler(sh_request_t *r)
{
    sh_access_log(r);
    return SH_PH_DECLINED;
}

static int log_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    return sh_phase_add(cf, m, SH_PHASE_LOG, log_handler);
}

static const sh_http_module_t log_http_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .postconfiguration = log_postconf,
    .create_main = log_create_main,
    .destroy_main = log_destroy_main,
    .init_main = log_init_main,
    .create_loc = log_create_loc,
    .merge_loc = log_merge_loc,
    .destroy_loc = log_destroy_loc,
};

sh_conf_module_t sh_accesslog_module = {
    .name = "access_log",
    .cmds = log_cmds,
    .ctx = &log_http_ctx,
};

int sh_access_log_reopen(void *main_conf, long uid)
{
    log_main_t *lm = main_conf;
    int failed = 0;
    for (size_t i = 0; lm != NULL && i < lm->nfiles; i++) {
        log_file_t *f = lm->files[i];
        int fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            sh_log_err("reopen: open() \"%s\" failed (%s); still writing to the old file", f->path,
                       strerror(errno));
            failed++;
            continue;
        }
        /* nginx: a file the master (re)created belongs to the workers' user */
        if (uid >= 0 && fchown(fd, (uid_t)uid, (gid_t)-1) != 0)
            sh_log_warn("reopen: chown(\"%s\", %ld) failed (%s)", f->path, uid, strerror(errno));
        /* dup2 swaps the file under the same descriptor at once: a worker's
         * write goes whole to the old file or whole to the new one, and
         * what the workers still buffer lands in the new one. */
        if (dup2(fd, f->fd) < 0) {
            sh_log_err("reopen: dup2() for \"%s\" failed (%s)", f->path, strerror(errno));
            failed++;
        }
        close(fd);
    }
    return failed ? SH_EIO : 0;
}
