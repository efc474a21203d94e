/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Subrequests (see subrequest.h): a request object like any other, whose
 * protocol (r->proto) is the capture below instead of the client
 * connection's, so every response path (proxy, return, error pages,
 * static files) works unchanged.
 */
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/err.h"
#include "node/pipeline/node.h"
#include "node/pipeline/subrequest.h"

typedef struct {
    sh_subreq_done_pt done;
    void *ud;
    size_t body_max;
    int status;
    sh_buf_t fields;
    sh_buf_t body;
    char *uri;     /* the subrequest's path points here */
    int finishing; /* done() ran or the parent cancelled */
    int background;
    struct sockaddr_in6 client; /* background: realip's address, copied */
    sh_link_t link;             /* background: in the worker's list */
    sh_request_t *r;
} sub_t;

static sub_t *sub_of(const sh_request_t *r)
{
    return r->sub;
}

/* ------------------------------------------------------ capture -- */

static void cap_frame(sh_request_t *r, sh_resp_head_t *h)
{
    (void)r;
    (void)h;
}

static int cap_send_head(sh_request_t *r, const sh_resp_head_t *h)
{
    sub_t *s = sub_of(r);
    r->resp_started = 1;
    s->status = h->status;
    s->fields.len = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (h->f[i].name_len == 0)
            continue;
        sh_buf_append(&s->fields, h->f[i].name, h->f[i].name_len);
        sh_buf_append(&s->fields, ": ", 2);
        sh_buf_append(&s->fields, h->f[i].value, h->f[i].value_len);
        sh_buf_append(&s->fields, "\r\n", 2);
    }
    return 0;
}

static int cap_flush(sh_request_t *r)
{
    (void)r;
    return 0;
}

static int cap_send_body(sh_request_t *r, const char *data, size_t len)
{
    sub_t *s = sub_of(r);
    if (s->body.len < s->body_max)
        sh_buf_append(&s->body, data,
                      len < s->body_max - s->body.len ? len : s->body_max - s->body.len);
    return 0;
}

static int cap_end(sh_request_t *r, const sh_http1_header_t *trailers, size_t n)
{
    (void)r;
    (void)trailers;
    (void)n;
    return 0;
}

static void complete(sh_request_t *r)
{
    sub_t *s = sub_of(r);
    if (s == NULL || s->finishing)
        return;
    s->finishing = 1;
    r->resp_done = 1;
    s->done(r, s->ud);
    sh_request_free(r); /* its cleanup frees s */
}

static void cap_finish(sh_request_t *r)
{
    complete(r);
}

static void cap_abort(sh_request_t *r)
{
    sub_t *s = sub_of(r);
    if (s != NULL && !s->finishing)
        s->status = 0; /* no complete response */
    complete(r);
}

static void cap_nothing(sh_request_t *r)
{
    (void)r;
}

static size_t cap_queued(const sh_request_t *r)
{
    (void)r;
    return 0;
}

static const sh_http_proto_t capture = {
    .name = "subrequest",
    .frame = cap_frame,
    .send_head = cap_send_head,
    .flush = cap_flush,
    .send_body = cap_send_body,
    .end = cap_end,
    .finish = cap_finish,
    .abort = cap_abort,
    .body_resume = cap_nothing,
    .queued = cap_queued,
    .send_timer = cap_nothing,
    .sendfile = NULL,
    .head_done = cap_nothing,
};

/* ------------------------------------------------------ life cycle -- */

static void sub_cleanup(sh_request_t *r, void *data)
{
    sub_t *s = data;
    r->sub = NULL;
    if (s->background) {
        sh_list_remove(&s->link);
        r->w->nbg--;
        sh_conn_unhold(r->c);
    }
    sh_buf_dispose(&s->fields);
    sh_buf_dispose(&s->body);
    sh_free(s->uri);
    sh_free(s);
}

static int is_body_field(const sh_http1_header_t *h)
{
    return (h->name_len == 14 && strncasecmp(h->name, "content-length", 14) == 0) ||
           (h->name_len == 17 && strncasecmp(h->name, "transfer-encoding", 17) == 0);
}

/* A pointer of the parent's head moved into the copy at d, when it points
 * into the parent's head (the others are static strings). */
static const char *moved(const char *p, const sh_request_t *parent, ptrdiff_t d)
{
    if (p != NULL && parent->head != NULL && p >= parent->head &&
        p < parent->head + parent->head_len)
        return p + d;
    return p;
}

static void bg_done(sh_request_t *sub, void *ud)
{
    (void)sub;
    (void)ud;
}

/* The subrequest r (of parent) outlives its parent from now on: its own copy
 * of the head and client address, r->parent NULL, its answer dropped, in the
 * worker's list (a stop ends it), and the connection's memory held until it
 * ends. Call it while parent is still readable. */
static void go_background(sub_t *s, sh_request_t *r, const sh_request_t *parent)
{
    s->background = 1;
    s->r = r;
    s->done = bg_done;
    s->ud = NULL;
    sh_list_insert_head(&r->c->w->bg, &s->link);
    r->c->w->nbg++;
    sh_conn_hold(r->c);
    r->parent = NULL;
    if (r->client != NULL) {
        s->client = *r->client;
        r->client = &s->client;
    }
    if (parent->head != NULL) {
        r->head = sh_memdup(parent->head, parent->head_len);
        r->head_len = parent->head_len;
        ptrdiff_t d = r->head - parent->head;
        r->h.method = moved(r->h.method, parent, d);
        r->h.target = moved(r->h.target, parent, d);
        r->h.host = moved(r->h.host, parent, d);
        for (size_t i = 0; i < r->h.nheaders; i++) {
            r->headers[i].name = moved(r->headers[i].name, parent, d);
            r->headers[i].value = moved(r->headers[i].value, parent, d);
        }
    }
}

static int make(sh_request_t *parent, const char *uri, size_t len, size_t body_max,
                sh_subreq_done_pt done, void *ud, const sh_buf_t *body, int background,
                sh_request_t **out)
{
    if (len == 0 || uri[0] != '/')
        return SH_EINVAL;
    sh_conn_t *c = parent->c;
    sh_request_t *r = sh_request_new(c);
    /* stub_status counts client requests only, as nginx */
    atomic_fetch_sub_explicit(&c->w->ctr.requests, 1, memory_order_relaxed);
    sub_t *s = sh_new(sub_t);
    s->done = done;
    s->ud = ud;
    s->body_max = body_max;
    s->uri = sh_strndup(uri, len);
    if (sh_request_cleanup_add(r, sub_cleanup, s) != 0) { /* never: a new request */
        sub_cleanup(r, s);
        r->logged = 1;
        sh_request_free(r);
        return SH_ENOMEM;
    }
    r->parent = parent;
    r->proto = &capture;
    r->sub = s;
    r->logged = 1; /* nginx: log_subrequest off */
    r->h = parent->h;
    size_t n = 0;
    for (size_t i = 0; i < parent->h.nheaders && n < SH_MAX_REQUEST_HEADERS; i++)
        if (!is_body_field(&parent->h.headers[i]))
            r->headers[n++] = parent->h.headers[i]; /* values stay in the parent's head */
    r->h.headers = r->headers;
    r->h.max_headers = SH_MAX_REQUEST_HEADERS;
    r->h.nheaders = n;
    r->h.content_length = -1;
    r->h.chunked = 0;
    r->h.expect_continue = 0;
    r->h.upgrade = 0;
    r->srv = parent->srv;
    r->client = parent->client;
    if (background)
        go_background(s, r, parent);
    r->start_ms = sh_worker_now(c->w);
    r->head_only = parent->head_only;
    r->body.left = -1;
    r->body.done = 1;
    if (body != NULL) {
        /* read whole already: sent with a Content-Length (mirror_request_body) */
        sh_buf_append(&r->rb, body->data, body->len);
        r->rb_complete = 1;
        r->h.content_length = (int64_t)body->len;
        r->body_received = body->len;
    }
    const char *q = memchr(s->uri, '?', len);
    r->path = (sh_str_t){s->uri, q != NULL ? (size_t)(q - s->uri) : len};
    if (out != NULL)
        *out = r;
    /* find-config on: an internal request (it may reach `internal` locations) */
    if (sh_phase_redirect(r, s->uri, len) != 0 && !r->freed)
        sh_phase_answer(r, 500);
    return 0;
}

int sh_subrequest(sh_request_t *parent, const char *uri, size_t len, size_t body_max,
                  sh_subreq_done_pt done, void *ud, sh_request_t **out)
{
    return make(parent, uri, len, body_max, done, ud, NULL, 0, out);
}

int sh_subrequest_background(sh_request_t *parent, const char *uri, size_t len,
                             const sh_buf_t *body)
{
    return make(parent, uri, len, 0, bg_done, NULL, body, 1, NULL);
}

void sh_subrequest_cancel_background(sh_worker_t *w)
{
    while (!sh_list_empty(&w->bg)) {
        sub_t *s = (sub_t *)((char *)w->bg.next - offsetof(sub_t, link));
        if (s->finishing)
            break;                  /* ending already (never here: not inside its done()) */
        sh_subrequest_cancel(s->r); /* its cleanup takes it off the list */
    }
}

int sh_subrequest_status(const sh_request_t *sub)
{
    const sub_t *s = sub_of(sub);
    return s != NULL ? s->status : 0;
}

const sh_buf_t *sh_subrequest_fields(const sh_request_t *sub)
{
    return &sub_of(sub)->fields;
}

const sh_buf_t *sh_subrequest_body(const sh_request_t *sub)
{
    return &sub_of(sub)->body;
}

int sh_subrequest_field(const sh_request_t *sub, const char *name, size_t nl, sh_buf_t *out)
{
    const sh_buf_t *f = sh_subrequest_fields(sub);
    const char *p = f->data, *end = f->data + f->len;
    while (p != NULL && p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (eol == NULL)
            break;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon != NULL && (size_t)(colon - p) == nl && strncasecmp(p, name, nl) == 0) {
            const char *v = colon + 1;
            while (v < eol && *v == ' ')
                v++;
            sh_buf_append(out, v, (size_t)(eol - v));
            return 1;
        }
        p = eol + 2;
    }
    return 0;
}

void sh_subrequest_detach(sh_request_t *r)
{
    sub_t *s = sub_of(r);
    if (s == NULL || s->finishing || s->background || r->parent == NULL)
        return;
    go_background(s, r, r->parent);
}

void sh_subrequest_cancel(sh_request_t *sub)
{
    sub_t *s = sub_of(sub);
    if (s == NULL || s->finishing)
        return;
    s->finishing = 1;
    sh_request_free(sub);
}
