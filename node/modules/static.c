/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Static files (see static.h): nginx's static, index and try_files
 * handlers with root / alias, types / default_type, Last-Modified and
 * ETag (`etag`), conditional requests (`if_modified_since`; If-Match and
 * If-Unmodified-Since: 412), ranges (one: 206; several: multipart/byteranges
 * in nginx's layout; `max_ranges`), `log_not_found` and HEAD, the rules
 * being http/cond.h's (shared with the response cache).
 *
 * Disk work never runs on the worker's loop: open + fstat (and the index
 * and try_files probes) run as one job in libuv's thread pool, and file
 * reads (HTTP/2, TLS, or when sendfile would block) are uv_fs_read calls
 * there too. On HTTP/1.1 cleartext the body goes with sendfile(2) while
 * the socket takes it (nginx's `sendfile on`; as in nginx without aio, a
 * cold page cache can make that call wait for the disk). The body is sent
 * one READ_CHUNK at a time and only while the client's queue is under
 * SH_WBUF_HIGH, so a large file costs one chunk of memory per request.
 *
 * A job outlives its request when the client leaves first: the request's
 * cleanup hook detaches it (x->r = NULL) and the job's callback frees it.
 * Worker thread, except the job functions (pool threads, no shared state).
 */
#include "node/modules/static.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "http/cond.h"
#include "http/httpdate.h"
#include "node/modules/gzip.h"
#include "node/pipeline/node.h"
#include "node/pipeline/reqlog.h"
#include "node/pipeline/vars.h"

#define READ_CHUNK    (64 * 1024)
#define SENDFILE_MAX  (1024 * 1024) /* per call: other connections get their turn */
#define INDEX_MAX     16
#define TRY_FILES_MAX 16

typedef struct {
    char *ext;
    char *type;
} mime_t;

typedef struct {
    char *root; /* absolute, without a trailing '/' for root; alias as written */
    int alias;  /* root is an alias: the location's prefix is replaced */
    char **index;
    size_t nindex;
    char *default_type;
    mime_t *types;
    size_t ntypes;
    int types_set;       /* this level owns types */
    sh_cv_t **try_files; /* all but the last: paths to probe */
    size_t ntry;
    char *try_last; /* "=404" or a URI or @name */
    int etag;       /* etag on|off */
    int ims;        /* if_modified_since off|exact|before */
    int max_ranges; /* -1: no limit */
    int log_not_found;
} static_loc_t;

extern sh_conf_module_t sh_static_module;

/* ------------------------------------------------------ configuration -- */

static void *static_create_loc(void)
{
    static_loc_t *c = sh_new(static_loc_t);
    c->etag = c->ims = c->log_not_found = SH_CONF_UNSET;
    c->max_ranges = -2; /* unset: -1 means no limit */
    return c;
}

static void static_destroy_loc(void *conf)
{
    static_loc_t *c = conf;
    sh_free(c->root);
    for (size_t i = 0; i < c->nindex; i++)
        sh_free(c->index[i]);
    sh_free(c->index);
    sh_free(c->default_type);
    if (c->types_set) {
        for (size_t i = 0; i < c->ntypes; i++) {
            sh_free(c->types[i].ext);
            sh_free(c->types[i].type);
        }
        sh_free(c->types);
    }
    for (size_t i = 0; i < c->ntry; i++)
        sh_cv_destroy(c->try_files[i]);
    sh_free(c->try_files);
    sh_free(c->try_last);
    sh_free(c);
}

/* Unset values come from the parent, or nginx's defaults where the
 * parent has none (root html, index index.html, default_type text/plain). */
static int static_merge_loc(sh_conf_t *cf, void *parent, void *conf)
{
    static_loc_t *p = parent, *c = conf;
    if (c->root == NULL && p->root != NULL) {
        c->root = sh_strdup(p->root);
        c->alias = p->alias;
    } else if (c->root == NULL) {
        size_t n = strlen(cf->prefix) + 4;
        c->root = sh_malloc(n + 1);
        snprintf(c->root, n + 1, "%shtml", cf->prefix);
    }
    const char *dflt_index = "index.html";
    size_t ni = c->nindex == 0 ? (p->nindex > 0 ? p->nindex : 1) : 0;
    if (ni > 0) {
        c->index = sh_calloc(ni, sizeof(char *));
        for (size_t i = 0; i < ni; i++)
            c->index[i] = sh_strdup(p->nindex > 0 ? p->index[i] : dflt_index);
        c->nindex = ni;
    }
    if (c->default_type == NULL)
        c->default_type = sh_strdup(p->default_type ? p->default_type : "text/plain");
    SH_CONF_MERGE(c->etag, p->etag, 1);
    SH_CONF_MERGE(c->ims, p->ims, SH_IMS_EXACT);
    SH_CONF_MERGE(c->log_not_found, p->log_not_found, 1);
    if (c->max_ranges == -2)
        c->max_ranges = p->max_ranges;
    if (!c->types_set) { /* borrowed: the owner frees them */
        c->types = p->types;
        c->ntypes = p->ntypes;
    }
    return 0;
}

static int root_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    static_loc_t *c = conf;
    const char *v = cf->node->args[1];
    if (c->root != NULL)
        return sh_conf_error(
            cf, "\"%s\" directive is duplicate%s", cf->node->args[0],
            c->alias != (int)cmd->offset ? ", \"root\"/\"alias\" directive is duplicate" : "");
    if (strchr(v, '$') != NULL)
        return sh_conf_error(cf, "variables in \"%s\" are not supported", cf->node->args[0]);
    if (cmd->offset == 1) {
        sh_http_block_t *b = cf->user;
        if (b->loc != NULL &&
            (b->loc->match == SH_LOC_REGEX || b->loc->match == SH_LOC_REGEX_CASELESS))
            return sh_conf_error(cf, "\"alias\" in a regex location is not supported");
    }
    size_t n = strlen(v);
    while (cmd->offset == 0 && n > 1 && v[n - 1] == '/')
        n--; /* root: the URI brings its own '/' */
    const char *pre = v[0] == '/' ? "" : cf->prefix;
    size_t pl = strlen(pre);
    c->root = sh_malloc(pl + n + 1);
    memcpy(c->root, pre, pl);
    memcpy(c->root + pl, v, n);
    c->root[pl + n] = '\0';
    c->alias = (int)cmd->offset;
    return 0;
}

static int index_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    static_loc_t *c = conf;
    if (c->nindex > 0)
        return sh_conf_error(cf, "\"index\" directive is duplicate");
    if (cf->node->nargs - 1 > INDEX_MAX)
        return sh_conf_error(cf, "too many \"index\" values");
    c->index = sh_calloc(cf->node->nargs - 1, sizeof(char *));
    for (unsigned i = 1; i < cf->node->nargs; i++) {
        const char *v = cf->node->args[i];
        if (v[0] == '\0' || strchr(v, '$') != NULL || strchr(v, '/') != NULL)
            return sh_conf_error(cf, "index \"%s\" is not supported (empty, variable or path)", v);
        c->index[c->nindex++] = sh_strdup(v);
    }
    return 0;
}

static int default_type_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    static_loc_t *c = conf;
    if (c->default_type != NULL)
        return sh_conf_error(cf, "\"default_type\" directive is duplicate");
    c->default_type = sh_strdup(cf->node->args[1]);
    return 0;
}

/* types { type ext ...; ... }: the block's entries are read here, not
 * walked (their names are MIME types, not directives). */
static int types_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    static_loc_t *c = conf;
    if (c->types_set)
        return sh_conf_error(cf, "\"types\" directive is duplicate");
    c->types_set = 1;
    c->types = NULL;
    c->ntypes = 0;
    for (const sh_conf_node_t *n = cf->node->child; n != NULL; n = n->next) {
        if (n->block || n->nargs < 2) {
            sh_conf_node_t fake = *n;
            const sh_conf_node_t *saved = cf->node;
            cf->node = &fake;
            int rc = sh_conf_error(cf, "invalid entry \"%s\" in \"types\"", n->args[0]);
            cf->node = saved;
            return rc;
        }
        for (unsigned i = 1; i < n->nargs; i++) {
            size_t k = 0;
            while (k < c->ntypes && strcasecmp(c->types[k].ext, n->args[i]) != 0)
                k++;
            if (k < c->ntypes) { /* nginx: a duplicate extension, the last wins */
                sh_free(c->types[k].type);
                c->types[k].type = sh_strdup(n->args[0]);
                continue;
            }
            c->types = sh_realloc(c->types, (c->ntypes + 1) * sizeof(*c->types));
            c->types[c->ntypes].ext = sh_strdup(n->args[i]);
            c->types[c->ntypes].type = sh_strdup(n->args[0]);
            c->ntypes++;
        }
    }
    return 0;
}

static int try_files_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    static_loc_t *c = conf;
    const sh_conf_node_t *n = cf->node;
    if (c->try_last != NULL)
        return sh_conf_error(cf, "\"try_files\" directive is duplicate");
    if (n->nargs - 2 > TRY_FILES_MAX)
        return sh_conf_error(cf, "too many \"try_files\" values");
    c->try_files = sh_calloc(n->nargs - 2, sizeof(sh_cv_t *));
    for (unsigned i = 1; i + 1 < n->nargs; i++) {
        int rc = sh_cv_compile(cf, n->args[i], &c->try_files[c->ntry]);
        if (rc != 0)
            return rc;
        c->ntry++;
    }
    const char *last = n->args[n->nargs - 1];
    if (last[0] == '=') {
        int code;
        if (sh_conf_parse_int(last + 1, &code) != 0 || code < 200 || code > 999)
            return sh_conf_error(cf, "invalid code \"%s\"", last);
    } else if (last[0] != '/' && last[0] != '@') {
        return sh_conf_error(cf, "invalid last value \"%s\" in \"try_files\"", last);
    }
    c->try_last = sh_strdup(last);
    return 0;
}

/* ------------------------------------------------------ requests -- */

enum { JOB_OPEN, JOB_INDEX, JOB_TRY };

typedef struct {
    sh_request_t *r; /* NULL once the request ended (the job frees itself) */
    uv_work_t work;
    uv_fs_t fs;
    int job;
    int busy;   /* work or fs request in flight */
    char *path; /* file (JOB_OPEN) or directory (JOB_INDEX) */
    const static_loc_t *conf;
    char **cands; /* JOB_INDEX / JOB_TRY: candidates, NULL-ended */
    char **curis; /* JOB_TRY: the URI of each candidate */
    int found;    /* the candidate that exists, or -1 */
    int fd;
    int err; /* errno of open/stat */
    int is_dir;
    struct stat st;
    int64_t off, end; /* the body still to send: [off, end) */
    char *buf;
    int gz; /* JOB_OPEN: try path.gz first (gzip_static); 2: it is open */
    const char *type;
    sh_http_range_t *ranges; /* multipart: nranges parts, part is the next */
    size_t nranges, part;
    char boundary[24];
} static_ctx_t;

static void free_list(char ***l)
{
    if (*l != NULL)
        for (char **p = *l; *p != NULL; p++)
            sh_free(*p);
    sh_free(*l);
    *l = NULL;
}

static void ctx_free(static_ctx_t *x)
{
    if (x->fd >= 0)
        close(x->fd);
    sh_free(x->path);
    free_list(&x->cands);
    free_list(&x->curis);
    sh_free(x->buf);
    sh_free(x->ranges);
    sh_free(x);
}

static void ctx_cleanup(sh_request_t *r, void *data)
{
    static_ctx_t *x = data;
    r->on_drain = NULL;
    sh_request_ctx(r, &sh_static_module) = NULL;
    if (x->busy)
        x->r = NULL; /* the job's callback frees it */
    else
        ctx_free(x);
}

static static_ctx_t *ctx_get(sh_request_t *r)
{
    static_ctx_t *x = sh_request_ctx(r, &sh_static_module);
    if (x != NULL) {
        sh_free(x->path);
        x->path = NULL;
        if (x->fd >= 0)
            close(x->fd);
        x->fd = -1;
        x->gz = 0;
        return x;
    }
    x = sh_new(static_ctx_t);
    x->fd = -1;
    x->r = r;
    if (sh_request_cleanup_add(r, ctx_cleanup, x) != 0) {
        sh_free(x);
        return NULL;
    }
    sh_request_ctx(r, &sh_static_module) = x;
    return x;
}

/* root + uri, or alias + the uri after the location's prefix. NULL when
 * the alias join would leave the alias directory ("/img" + "../x"). */
static char *map_path(const sh_request_t *r, const static_loc_t *c, const char *uri, size_t len)
{
    const char *rest = uri;
    size_t rl = len;
    const sh_http_loc_t *loc = sh_http_loc_real(r->loc); /* an `if` block's: its location's */
    if (c->alias && loc->match != SH_LOC_REGEX && loc->match != SH_LOC_REGEX_CASELESS) {
        size_t pl = loc->name_len;
        if (pl > rl)
            pl = rl;
        rest += pl;
        rl -= pl;
        /* `location /img { alias /data/; }` and "/img../x": nginx's
         * well-known traversal; refused here */
        if (rl >= 2 && rest[0] == '.' && rest[1] == '.')
            return NULL;
    }
    size_t rootl = strlen(c->root);
    char *p = sh_malloc(rootl + rl + 1);
    memcpy(p, c->root, rootl);
    memcpy(p + rootl, rest, rl);
    p[rootl + rl] = '\0';
    if (memchr(p, 0, rootl + rl) != NULL || strstr(p, "/../") != NULL ||
        (rootl + rl >= 3 && strcmp(p + rootl + rl - 3, "/..") == 0)) {
        sh_free(p);
        return NULL;
    }
    return p;
}

/* nginx's types when no `types` is configured anywhere */
static const mime_t default_types[] = {
    {"html", "text/html"}, {"gif", "image/gif"}, {"jpg", "image/jpeg"}};

static const char *mime_of(const static_loc_t *c, const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    const mime_t *t = c->types != NULL ? c->types : default_types;
    size_t n = c->types != NULL ? c->ntypes : sizeof(default_types) / sizeof(default_types[0]);
    if (dot != NULL && dot[1] != '\0')
        for (size_t i = 0; i < n; i++)
            if (strcasecmp(t[i].ext, dot + 1) == 0)
                return t[i].type;
    return c->default_type;
}

/* ---- pool jobs (no loop, no request: only x's own fields) */

static void job_run(uv_work_t *w)
{
    static_ctx_t *x = container_of(w, static_ctx_t, work);
    struct stat st;
    if (x->job == JOB_OPEN && x->gz == 1) {
        /* gzip_static: FILE.gz when it is a regular file */
        size_t pl = strlen(x->path);
        char *gp = sh_malloc(pl + 4);
        memcpy(gp, x->path, pl);
        memcpy(gp + pl, ".gz", 4);
        int fd = open(gp, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        sh_free(gp);
        if (fd >= 0) {
            if (fstat(fd, &x->st) == 0 && S_ISREG(x->st.st_mode)) {
                x->fd = fd;
                x->gz = 2;
                return;
            }
            close(fd);
        }
    }
    if (x->job == JOB_OPEN) {
        /* O_NONBLOCK: a FIFO or a device must not hold the thread (nginx
         * opens with it too); they are refused below */
        x->fd = open(x->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (x->fd < 0) {
            x->err = errno;
            return;
        }
        if (fstat(x->fd, &x->st) != 0) {
            x->err = errno;
            close(x->fd);
            x->fd = -1;
            return;
        }
        x->is_dir = S_ISDIR(x->st.st_mode);
        if (!S_ISREG(x->st.st_mode)) {
            close(x->fd);
            x->fd = -1;
            x->err = x->is_dir ? EISDIR : ENOENT;
        }
        return;
    }
    /* JOB_INDEX: the first candidate that is a regular file; JOB_TRY: the
     * first that exists (a directory when it ends with '/') */
    x->found = -1;
    for (int i = 0; x->cands[i] != NULL; i++) {
        size_t n = strlen(x->cands[i]);
        if (stat(x->cands[i], &st) != 0)
            continue;
        int want_dir = x->job == JOB_TRY && n > 0 && x->cands[i][n - 1] == '/';
        if (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode)) {
            x->found = i;
            return;
        }
    }
    if (x->job == JOB_INDEX && stat(x->path, &st) == 0 && S_ISDIR(st.st_mode))
        x->is_dir = 1;
}

static void job_done(uv_work_t *w, int status);

static int job_start(static_ctx_t *x, int job)
{
    sh_request_t *r = x->r;
    x->job = job;
    x->err = 0;
    x->is_dir = 0;
    x->busy = 1;
    if (uv_queue_work(&r->c->w->loop, &x->work, job_run, job_done) != 0) {
        x->busy = 0;
        return 500;
    }
    return SH_PH_PAUSE;
}

/* ---- the response */

static void pump(static_ctx_t *x);
static void part_head(static_ctx_t *x, size_t i, sh_buf_t *b);

static void drained(sh_request_t *r)
{
    static_ctx_t *x = sh_request_ctx(r, &sh_static_module);
    r->on_drain = NULL;
    if (x != NULL && !x->busy)
        pump(x);
}

static void read_done(uv_fs_t *fs)
{
    static_ctx_t *x = container_of(fs, static_ctx_t, fs);
    ssize_t n = fs->result;
    uv_fs_req_cleanup(fs);
    x->busy = 0;
    sh_request_t *r = x->r;
    if (r == NULL) {
        ctx_free(x);
        return;
    }
    if (n <= 0) {
        sh_log_err("read() of \"%s\" failed: %s", x->path,
                   n < 0 ? uv_strerror((int)n) : "end of file");
        sh_request_abort(r);
        return;
    }
    x->off += n;
    if (sh_response_body(r, x->buf, (size_t)n) != 0 || r->freed)
        return;
    pump(x);
}

/* Send [off, end) while the client takes it: sendfile where the protocol
 * has it, else (or when the socket is full) one chunk read in the pool. */
static void pump(static_ctx_t *x)
{
    sh_request_t *r = x->r;
    for (;;) {
        if (x->off >= x->end) {
            if (x->part >= x->nranges)
                break;
            /* multipart: the next part's head, then its bytes; the
             * closing boundary after the last */
            sh_buf_t b = {0};
            part_head(x, x->part, &b);
            x->off = x->ranges[x->part].start;
            x->end = x->ranges[x->part].end;
            x->part++;
            int rc = sh_response_body(r, b.data, b.len);
            sh_buf_dispose(&b);
            if (rc != 0 || r->freed)
                return;
            continue;
        }
        if (sh_request_out_queued(r) > SH_WBUF_HIGH) {
            r->on_drain = drained;
            sh_request_send_timer(r);
            return;
        }
        int64_t left = x->end - x->off;
        int n = sh_response_sendfile(r, x->fd, &x->off,
                                     (size_t)(left < SENDFILE_MAX ? left : SENDFILE_MAX));
        if (n > 0)
            continue;
        if (n != SH_EAGAIN && n != SH_EUNSUPP) {
            if (!r->freed)
                sh_request_abort(r);
            return;
        }
        if (n == SH_EAGAIN && sh_request_out_queued(r) > 0) {
            r->on_drain = drained; /* a queued write ends: sendfile again */
            sh_request_send_timer(r);
            return;
        }
        if (x->buf == NULL)
            x->buf = sh_malloc(READ_CHUNK);
        size_t want = (size_t)(left < READ_CHUNK ? left : READ_CHUNK);
        uv_buf_t b = uv_buf_init(x->buf, (unsigned)want);
        x->busy = 1;
        if (uv_fs_read(&r->c->w->loop, &x->fs, x->fd, &b, 1, x->off, read_done) != 0) {
            x->busy = 0;
            sh_request_abort(r);
        }
        return;
    }
    if (x->nranges > 0) {
        sh_buf_t b = {0};
        sh_buf_appends(&b, "\r\n--");
        sh_buf_appends(&b, x->boundary);
        sh_buf_appends(&b, "--\r\n");
        x->nranges = 0;
        int rc = sh_response_body(r, b.data, b.len);
        sh_buf_dispose(&b);
        if (rc == 0 && !r->freed)
            rc = sh_response_end(r, NULL, 0);
        if (rc == 0 && !r->freed)
            sh_request_finish(r);
        return;
    }
    if (sh_response_end(r, NULL, 0) == 0 && !r->freed)
        sh_request_finish(r);
}

static const sh_http1_header_t *req_header(const sh_request_t *r, const char *name)
{
    for (size_t i = 0; i < r->h.nheaders; i++)
        if (sh_http1_name_is(&r->headers[i], name))
            return &r->headers[i];
    return NULL;
}

#define FIELD(f, name)                                                                             \
    do {                                                                                           \
        const sh_http1_header_t *h_ = req_header(r, name);                                         \
        if (h_ != NULL) {                                                                          \
            cd.f = h_->value;                                                                      \
            cd.f##_len = h_->value_len;                                                            \
        }                                                                                          \
    } while (0)

/* The part head of multipart range i (nginx's layout), into b. */
static void part_head(static_ctx_t *x, size_t i, sh_buf_t *b)
{
    char n[80];
    sh_buf_appends(b, "\r\n--");
    sh_buf_appends(b, x->boundary);
    sh_buf_appends(b, "\r\nContent-Type: ");
    sh_buf_appends(b, x->type);
    int l = snprintf(n, sizeof(n), "\r\nContent-Range: bytes %lld-%lld/%lld\r\n\r\n",
                     (long long)x->ranges[i].start, (long long)x->ranges[i].end - 1,
                     (long long)x->st.st_size);
    sh_buf_append(b, n, (size_t)l);
}

static void send_416(sh_request_t *r, int64_t size)
{
    char crange[48];
    int cl = snprintf(crange, sizeof(crange), "bytes */%lld", (long long)size);
    r->discard_body = 1;
    static const char page[] =
        "<html>\r\n<head><title>416 Requested Range Not Satisfiable</title></head>\r\n"
        "<body>\r\n<center><h1>416 Requested Range Not Satisfiable</h1></center>\r\n"
        "<hr><center>shoal</center>\r\n</body>\r\n</html>\r\n";
    sh_http1_header_t h2[2] = {{"Content-Type", 12, "text/html", 9},
                               {"Content-Range", 13, crange, (size_t)cl}};
    if (sh_response_start(r, 416, NULL, 0, h2, 2, (int64_t)sizeof(page) - 1,
                          r->head_only ? SH_RESP_NO_BODY : 0) != 0)
        return;
    if (!r->head_only && sh_response_body(r, page, sizeof(page) - 1) != 0)
        return;
    if (sh_response_end(r, NULL, 0) == 0 && !r->freed)
        sh_request_finish(r);
}

static _Atomic uint64_t boundary_seq;

static void send_file(static_ctx_t *x)
{
    sh_request_t *r = x->r;
    const static_loc_t *c = x->conf;
    int64_t size = (int64_t)x->st.st_size;
    int64_t mtime = (int64_t)x->st.st_mtime;
    char lm[SH_HTTP_DATE_LEN + 1], etag[48], crange[80], ctype[96];
    sh_http_date_format(lm, mtime);
    /* nginx's ETag: "hex(mtime)-hex(size)" */
    int el = snprintf(etag, sizeof(etag), "\"%llx-%llx\"", (unsigned long long)mtime,
                      (unsigned long long)size);
    const char *etv = c->etag ? etag : NULL;
    size_t etl = c->etag ? (size_t)el : 0;
    x->type = mime_of(c, x->path);
    sh_http1_header_t hs[7];
    size_t n = 0;
    hs[n++] = (sh_http1_header_t){"Content-Type", 12, x->type, strlen(x->type)};
    if (x->gz == 2) { /* gzip_static served FILE.gz */
        hs[n++] = (sh_http1_header_t){"Content-Encoding", 16, "gzip", 4};
        sh_gzip_static_served(r);
    }
    size_t nval = n; /* the validators follow */
    hs[n++] = (sh_http1_header_t){"Last-Modified", 13, lm, SH_HTTP_DATE_LEN};
    if (etv != NULL)
        hs[n++] = (sh_http1_header_t){"ETag", 4, etag, (size_t)el};
    int status = r->err_status ? r->err_status : 200;
    x->nranges = 0;
    x->part = 0;
    int64_t from = 0, to = size; /* [from, to) */
    int64_t length = size;
    if (status == 200) {
        sh_http_cond_t cd = {0};
        FIELD(if_none_match, "if-none-match");
        FIELD(if_match, "if-match");
        FIELD(if_modified_since, "if-modified-since");
        FIELD(if_unmodified_since, "if-unmodified-since");
        int cs = sh_http_cond_eval(&cd, etv, etl, mtime, c->ims);
        if (cs == 412) {
            sh_phase_answer(r, 412);
            return;
        }
        if (cs == 304) {
            r->discard_body = 1;
            if (sh_response_start(r, 304, NULL, 0, hs + nval, n - nval, -1, SH_RESP_NO_BODY) == 0 &&
                sh_response_end(r, NULL, 0) == 0 && !r->freed)
                sh_request_finish(r);
            return;
        }
        const sh_http1_header_t *rg = req_header(r, "range");
        const sh_http1_header_t *ir = req_header(r, "if-range");
        int use = rg != NULL && c->max_ranges != 0;
        if (use && ir != NULL) /* the range only if the file is that one */
            use = sh_http_if_range(ir->value, ir->value_len, etv, etl, mtime);
        int pr = SH_RANGE_IGNORE;
        if (use) {
            if (x->ranges == NULL)
                x->ranges = sh_calloc(SH_RANGES_MAX, sizeof(sh_http_range_t));
            pr = sh_http_range_parse(rg->value, rg->value_len, size,
                                     c->max_ranges < 0 ? -1 : c->max_ranges, x->ranges);
        }
        if (pr == SH_RANGE_UNSATISFIABLE) {
            send_416(r, size);
            return;
        }
        if (pr == 1) {
            status = 206;
            from = x->ranges[0].start;
            to = x->ranges[0].end;
            length = to - from;
            int cl = snprintf(crange, sizeof(crange), "bytes %lld-%lld/%lld", (long long)from,
                              (long long)to - 1, (long long)size);
            hs[n++] = (sh_http1_header_t){"Content-Range", 13, crange, (size_t)cl};
        } else if (pr > 1) { /* multipart/byteranges, nginx's layout */
            status = 206;
            x->nranges = (size_t)pr;
            snprintf(x->boundary, sizeof(x->boundary), "%020llu",
                     (unsigned long long)atomic_fetch_add(&boundary_seq, 1) + 1);
            int tl =
                snprintf(ctype, sizeof(ctype), "multipart/byteranges; boundary=%s", x->boundary);
            hs[0] = (sh_http1_header_t){"Content-Type", 12, ctype, (size_t)tl};
            sh_buf_t b = {0};
            length = 0;
            for (size_t i = 0; i < x->nranges; i++) {
                b.len = 0;
                part_head(x, i, &b);
                length += (int64_t)b.len + x->ranges[i].end - x->ranges[i].start;
            }
            sh_buf_dispose(&b);
            length += 4 + (int64_t)strlen(x->boundary) + 4; /* "\r\n--B--\r\n" */
            from = to = 0;                                  /* the pump sends the parts */
        } else {
            hs[n++] = (sh_http1_header_t){"Accept-Ranges", 13, "bytes", 5};
        }
    } else {
        n = nval; /* an error page: no validators, no ranges (nginx) */
    }
    x->off = from;
    x->end = to;
    r->discard_body = 1;
    if (sh_response_start(r, status, NULL, 0, hs, n, length, r->head_only ? SH_RESP_NO_BODY : 0) !=
            0 ||
        r->freed)
        return;
    if (r->head_only) {
        x->end = x->off;
        x->nranges = 0;
    }
    pump(x);
}

/* nginx's 301 for a directory asked without its trailing slash. */
static void redirect_dir(sh_request_t *r)
{
    sh_buf_t *b = &r->scratch;
    b->len = 0;
    sh_buf_appends(b, r->c->tls ? "https://" : "http://");
    /* nginx (absolute_redirect, port_in_redirect on): the host without its
     * port, then the port of the listening address unless the default */
    const struct sockaddr_storage *ss = &r->c->addr->opt.addr;
    unsigned port = ss->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
                                              : ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (r->h.host != NULL && r->h.host_len > 0) {
        sh_buf_append(b, r->h.host, r->h.host_len);
    } else {
        const char *t = r->c->addr->opt.text, *colon = strrchr(t, ':');
        sh_buf_append(b, t, colon ? (size_t)(colon - t) : strlen(t));
    }
    if (port != (r->c->tls ? 443u : 80u))
        sh_buf_appendf(b, ":%u", port);
    sh_buf_append(b, r->uri.p, r->uri.len);
    sh_buf_append(b, "/", 1);
    if (r->args.len > 0) {
        sh_buf_append(b, "?", 1);
        sh_buf_append(b, r->args.p, r->args.len);
    }
    sh_buf_append(b, "", 1);
    r->discard_body = 1;
    sh_request_respond(r, 301, NULL, NULL, 0, b->data);
}

static void job_done(uv_work_t *w, int status)
{
    static_ctx_t *x = container_of(w, static_ctx_t, work);
    x->busy = 0;
    sh_request_t *r = x->r;
    if (r == NULL) { /* the request ended meanwhile */
        ctx_free(x);
        return;
    }
    if (status != 0) {
        sh_phase_answer(r, 500);
        return;
    }
    if (x->job == JOB_OPEN) {
        if (x->fd >= 0) {
            send_file(x);
            return;
        }
        if (x->err == EISDIR) {
            redirect_dir(r);
            return;
        }
        int code = x->err == EACCES ? 403 : x->err == ENAMETOOLONG ? 414 : 404;
        if ((code == 404 && x->conf->log_not_found) ||
            code == 403) /* nginx's shape: fail2ban filters match it */
            sh_req_log(SH_LOG_ERR, r->c, r, NULL, "open() \"%s\" failed (%d: %s)", x->path, x->err,
                       strerror(x->err));
        sh_phase_answer(r, code);
        return;
    }
    if (x->job == JOB_INDEX) {
        if (x->found < 0) {
            if (x->is_dir)
                sh_req_log(SH_LOG_ERR, r->c, r, NULL, "directory index of \"%s\" is forbidden",
                           x->path);
            sh_phase_answer(r, x->is_dir ? 403 : 404);
            return;
        }
        /* nginx: an internal redirect to the index file's URI */
        const char *name = strrchr(x->cands[x->found], '/') + 1;
        sh_buf_t u = {0};
        sh_buf_append(&u, r->uri.p, r->uri.len);
        sh_buf_appends(&u, name);
        if (r->args.len > 0) {
            sh_buf_append(&u, "?", 1);
            sh_buf_append(&u, r->args.p, r->args.len);
        }
        if (sh_phase_redirect(r, u.data, u.len) != 0)
            sh_phase_answer(r, 500);
        sh_buf_dispose(&u);
        return;
    }
    /* JOB_TRY: the first existing candidate becomes $uri (no redirect);
     * else the last value */
    const static_loc_t *c = x->conf;
    if (x->found >= 0) {
        r->uri_buf.len = 0;
        sh_buf_appends(&r->uri_buf, x->curis[x->found]);
        r->uri = (sh_str_t){r->uri_buf.data, r->uri_buf.len};
        r->try_done = 1;
        sh_phase_resume(r);
        return;
    }
    const char *last = c->try_last;
    if (last[0] == '=') {
        int code = 404;
        sh_conf_parse_int(last + 1, &code);
        sh_phase_answer(r, code);
        return;
    }
    if (last[0] == '@') { /* a named location: continue there (nginx) */
        const sh_http_loc_t *named = sh_http_find_named(r->srv, last, strlen(last));
        if (named == NULL)
            sh_phase_answer(r, 500);
        else
            sh_phase_named(r, named);
        return;
    }
    if (sh_phase_redirect(r, last, strlen(last)) != 0)
        sh_phase_answer(r, 500);
}

/* precontent: try_files */
static int try_files_handler(sh_request_t *r)
{
    const static_loc_t *c = sh_http_loc_conf(r->loc, &sh_static_module);
    if (c->try_last == NULL || r->try_done)
        return SH_PH_DECLINED;
    static_ctx_t *x = ctx_get(r);
    if (x == NULL)
        return 500;
    x->conf = c;
    free_list(&x->cands);
    free_list(&x->curis);
    x->cands = sh_calloc(c->ntry + 1, sizeof(char *));
    x->curis = sh_calloc(c->ntry + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < c->ntry; i++) {
        r->scratch.len = 0;
        sh_cv_eval(c->try_files[i], r, &r->scratch);
        char *p = r->scratch.len > 0 && r->scratch.data[0] == '/'
                      ? map_path(r, c, r->scratch.data, r->scratch.len)
                      : NULL;
        if (p != NULL) {
            x->curis[k] = sh_strndup(r->scratch.data, r->scratch.len);
            x->cands[k++] = p;
        }
    }
    return job_start(x, JOB_TRY);
}

/* content: static files and index */
static int static_handler(sh_request_t *r)
{
    if (r->uri.len == 0 || r->uri.p[0] != '/')
        return 404; /* "OPTIONS *": no file is named so */
    int m = r->h.method_id;
    if (m != SH_HTTP_GET && m != SH_HTTP_HEAD && m != SH_HTTP_POST)
        return 405;
    const static_loc_t *c = sh_http_loc_conf(r->loc, &sh_static_module);
    static_ctx_t *x = ctx_get(r);
    if (x == NULL)
        return 500;
    x->conf = c;
    x->r = r;
    x->path = map_path(r, c, r->uri.p, r->uri.len);
    if (x->path == NULL)
        return 404;
    if (r->uri.len > 0 && r->uri.p[r->uri.len - 1] == '/') {
        free_list(&x->cands);
        x->cands = sh_calloc(c->nindex + 1, sizeof(char *));
        size_t pl = strlen(x->path);
        for (size_t i = 0; i < c->nindex; i++) {
            size_t nl = strlen(c->index[i]);
            char *p = sh_malloc(pl + nl + 1);
            memcpy(p, x->path, pl);
            memcpy(p + pl, c->index[i], nl + 1);
            x->cands[i] = p;
        }
        return job_start(x, JOB_INDEX);
    }
    if (m == SH_HTTP_POST)
        return 405; /* nginx: POST to a static file */
    x->gz = sh_gzip_static_wanted(r);
    return job_start(x, JOB_OPEN);
}

/* $request_filename (root or alias + $uri) and $document_root, the
 * module's variables. */
static int var_request_filename(sh_request_t *r, const void *data, sh_buf_t *out)
{
    if (r->loc == NULL || r->uri.p == NULL)
        return 0;
    const static_loc_t *c = sh_http_loc_conf(r->loc, &sh_static_module);
    if (data != NULL) {
        sh_buf_appends(out, c->root);
        return 1;
    }
    char *p = map_path(r, c, r->uri.p, r->uri.len);
    if (p == NULL)
        return 0;
    sh_buf_appends(out, p);
    sh_free(p);
    return 1;
}

static int static_preconf(sh_conf_t *cf, sh_http_main_t *m)
{
    (void)m;
    int rc = sh_vars_define(cf, "request_filename", var_request_filename, NULL);
    if (rc == 0)
        rc = sh_vars_define(cf, "document_root", var_request_filename, (const void *)1);
    return rc;
}

static int static_postconf(sh_conf_t *cf, sh_http_main_t *m)
{
    int rc = sh_phase_add(cf, m, SH_PHASE_PRECONTENT, try_files_handler);
    if (rc == 0) /* last: the content handler of every location without another */
        rc = sh_phase_add(cf, m, SH_PHASE_CONTENT, static_handler);
    return rc;
}

#define LOC   (SH_CTX_HTTP | SH_CTX_SERVER | SH_CTX_LOCATION)
#define LOCIF (LOC | SH_CTX_IF)

static const sh_conf_enum_t ims_modes[] = {
    {"off", SH_IMS_OFF}, {"exact", SH_IMS_EXACT}, {"before", SH_IMS_BEFORE}, {NULL, 0}};

static int max_ranges_set(sh_conf_t *cf, const sh_conf_cmd_t *cmd, void *conf)
{
    (void)cmd;
    static_loc_t *c = conf;
    if (c->max_ranges != -2)
        return sh_conf_error(cf, "\"max_ranges\" directive is duplicate");
    int n;
    if (sh_conf_parse_int(cf->node->args[1], &n) != 0 || n < 0)
        return sh_conf_error(cf, "invalid value \"%s\" in \"max_ranges\"", cf->node->args[1]);
    c->max_ranges = n;
    return 0;
}

static const sh_conf_cmd_t static_cmds[] = {
    {"root", LOCIF | SH_CONF_TAKE1, root_set, 0, NULL},
    {"alias", SH_CTX_LOCATION | SH_CONF_TAKE1, root_set, 1, NULL},
    {"index", LOC | SH_CONF_1MORE, index_set, 0, NULL},
    {"default_type", LOC | SH_CONF_TAKE1, default_type_set, 0, NULL},
    {"types", LOC | SH_CONF_BLOCK | SH_CONF_NOARGS, types_set, 0, NULL},
    {"try_files", SH_CTX_SERVER | SH_CTX_LOCATION | SH_CONF_2MORE, try_files_set, 0, NULL},
    {"etag", LOC | SH_CONF_FLAG, sh_conf_set_flag, offsetof(static_loc_t, etag), NULL},
    {"if_modified_since", LOC | SH_CONF_TAKE1, sh_conf_set_enum, offsetof(static_loc_t, ims),
     ims_modes},
    {"max_ranges", LOC | SH_CONF_TAKE1, max_ranges_set, 0, NULL},
    {"log_not_found", LOC | SH_CONF_FLAG, sh_conf_set_flag, offsetof(static_loc_t, log_not_found),
     NULL},
    {NULL, 0, NULL, 0, NULL}};

static const sh_http_module_t static_ctx = {
    .magic = SH_HTTP_MODULE_MAGIC,
    .create_loc = static_create_loc,
    .merge_loc = static_merge_loc,
    .destroy_loc = static_destroy_loc,
    .preconfiguration = static_preconf,
    .postconfiguration = static_postconf,
};

sh_conf_module_t sh_static_module = {
    .name = "static",
    .cmds = static_cmds,
    .ctx = &static_ctx,
};
