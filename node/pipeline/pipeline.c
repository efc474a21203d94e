/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request pipeline (see pipeline.h): the phase engine, the header
 * filter lists, the response head helpers, the body filter chain, the
 * per-request cleanup hooks, and the engine's own find-config step.
 *
 * The handlers of a generation are flattened into one array in phase
 * order (nginx's phase engine): a request keeps the index of the handler
 * it is at (r->ph), so "next handler", "next phase", "resume here" and
 * "re-enter at find-config" are index moves. Worker thread only, except
 * registration and build (loading thread).
 */
#include "node/pipeline/pipeline.h"

#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "node/conn/tls.h"
#include "node/pipeline/node.h"
#include "node/pipeline/regex.h"
#include "node/pipeline/reqlog.h"

#define PHASE_HANDLERS_MAX 16 /* per phase */
#define FILTERS_MAX        16
#define REDIRECTS_MAX      10 /* nginx's NGX_HTTP_MAX_URI_CHANGES */

typedef struct {
    sh_phase_handler_pt fn;
    uint8_t phase;
} entry_t;

struct sh_pipeline_s {
    sh_phase_handler_pt reg[SH_PHASE_COUNT][PHASE_HANDLERS_MAX];
    unsigned nreg[SH_PHASE_COUNT];
    entry_t *run; /* flattened, post-read .. content, then log */
    unsigned nrun;
    unsigned start[SH_PHASE_COUNT + 1]; /* first entry of each phase */
    const sh_filter_t *filters[FILTERS_MAX];
    unsigned nfilters;
    const sh_error_pages_t *error_pages;
};

static int find_config(sh_request_t *r);
static int server_config(sh_request_t *r);

sh_pipeline_t *sh_pipeline_create(void)
{
    return sh_new(sh_pipeline_t);
}

void sh_pipeline_destroy(sh_pipeline_t *p)
{
    if (p == NULL)
        return;
    sh_free(p->run);
    sh_free(p);
}

int sh_phase_add(sh_conf_t *cf, sh_http_main_t *m, sh_phase_t phase, sh_phase_handler_pt h)
{
    sh_pipeline_t *p = m->pipeline;
    if (phase == SH_PHASE_FIND_CONFIG || (unsigned)phase >= SH_PHASE_COUNT)
        return sh_conf_error(cf, "no handler may be added to phase %d", (int)phase);
    if (p->nreg[phase] >= PHASE_HANDLERS_MAX)
        return sh_conf_error(cf, "too many handlers in phase %d", (int)phase);
    p->reg[phase][p->nreg[phase]++] = h;
    return 0;
}

int sh_pipeline_set_error_pages(sh_conf_t *cf, sh_http_main_t *m, const sh_error_pages_t *ep)
{
    if (m->pipeline->error_pages != NULL)
        return sh_conf_error(cf, "error pages are registered twice");
    m->pipeline->error_pages = ep;
    return 0;
}

const sh_error_pages_t *sh_request_error_pages(const sh_request_t *r)
{
    return r->c->w->rt->http->pipeline->error_pages;
}

int sh_filter_add(sh_conf_t *cf, sh_http_main_t *m, const sh_filter_t *f)
{
    sh_pipeline_t *p = m->pipeline;
    if (p->nfilters >= FILTERS_MAX)
        return sh_conf_error(cf, "too many response filters");
    p->filters[p->nfilters++] = f;
    return 0;
}

/* A location's filter list: the filters that apply there, in order. */
static void loc_filters(const sh_http_main_t *m, sh_http_loc_t *loc)
{
    const sh_pipeline_t *p = m->pipeline;
    sh_free(loc->filters);
    loc->filters = NULL;
    loc->nfilters = 0;
    for (int tier = 0; tier < 3; tier++) /* early, the others, late */
        for (unsigned i = 0; i < p->nfilters; i++) {
            const sh_filter_t *f = p->filters[i];
            int t = f->early ? 0 : f->late ? 2 : 1;
            if (t != tier || (f->applies != NULL && !f->applies(m, loc)))
                continue;
            loc->filters = sh_realloc(loc->filters, (loc->nfilters + 1) * sizeof(*loc->filters));
            loc->filters[loc->nfilters++] = f;
        }
    for (size_t i = 0; i < loc->nchildren; i++)
        loc_filters(m, loc->children[i]);
}

int sh_pipeline_build(sh_conf_t *cf, sh_http_main_t *m)
{
    (void)cf;
    sh_pipeline_t *p = m->pipeline;
    unsigned total = 2; /* server-config, find-config */
    for (int ph = 0; ph < SH_PHASE_COUNT; ph++)
        total += p->nreg[ph];
    p->run = sh_calloc(total, sizeof(*p->run));
    p->nrun = 0;
    for (int ph = 0; ph < SH_PHASE_COUNT; ph++) {
        p->start[ph] = p->nrun;
        if (ph == SH_PHASE_FIND_CONFIG)
            p->run[p->nrun++] = (entry_t){find_config, (uint8_t)ph};
        if (ph == SH_PHASE_SERVER_REWRITE)
            p->run[p->nrun++] = (entry_t){server_config, (uint8_t)ph};
        for (unsigned i = 0; i < p->nreg[ph]; i++)
            p->run[p->nrun++] = (entry_t){p->reg[ph][i], (uint8_t)ph};
    }
    p->start[SH_PHASE_COUNT] = p->nrun;
    loc_filters(m, m->loc);
    for (size_t i = 0; i < m->nservers; i++)
        loc_filters(m, m->servers[i]->loc);
    return 0;
}

/* ------------------------------------------------------ engine -- */

static const sh_pipeline_t *pipeline_of(const sh_request_t *r)
{
    return r->c->w->rt->http->pipeline;
}

/* A status from a handler: the standard page (error_page would go here). */
void sh_phase_answer(sh_request_t *r, int status)
{
    r->discard_body = 1;
    if (status == 444 || status == 499) { /* nginx: close without a response */
        r->status = status;
        sh_request_abort(r);
        return;
    }
    sh_request_respond(r, status, NULL, NULL, 0, NULL);
}

static void run(sh_request_t *r)
{
    const sh_pipeline_t *p = pipeline_of(r);
    unsigned end = p->start[SH_PHASE_LOG];
    r->paused = 0;
    while (r->ph < end) {
        const entry_t *e = &p->run[r->ph];
        if (r->sub != NULL && (e->phase == SH_PHASE_PREACCESS || e->phase == SH_PHASE_ACCESS)) {
            /* nginx: a subrequest is not checked again (access) nor
             * counted again (limit_req, limit_conn count its main request) */
            r->ph = p->start[e->phase + 1];
            continue;
        }
        int rc = e->fn(r);
        if (r->freed)
            return;
        switch (rc) {
        case SH_PH_DECLINED:
            r->ph++;
            continue;
        case SH_PH_NEXT:
            if (e->phase == SH_PHASE_CONTENT)
                return; /* a content handler's NEXT is DONE */
            r->ph = p->start[e->phase + 1];
            continue;
        case SH_PH_DONE:
            return;
        case SH_PH_PAUSE:
            r->paused = 1;
            return;
        case SH_PH_RELOCATE:
            if (++r->nredirects > REDIRECTS_MAX) {
                sh_req_log(SH_LOG_ERR, r->c, r, NULL,
                           "rewrite or internal redirection cycle while processing \"%.*s\"",
                           (int)r->uri.len, r->uri.p);
                sh_phase_answer(r, 500);
                return;
            }
            r->ph = p->start[SH_PHASE_FIND_CONFIG];
            continue;
        default:
            sh_phase_answer(r, rc >= 100 && rc <= 999 ? rc : 500);
            return;
        }
    }
    /* no content handler took the request (nginx's static module would
     * look for a file; without root there is none) */
    sh_phase_answer(r, 404);
}

void sh_phase_start(sh_request_t *r)
{
    r->ph = 0;
    run(r);
}

void sh_phase_resume(sh_request_t *r)
{
    if (r->freed || !r->paused)
        return;
    run(r);
}

int sh_phase_redirect(sh_request_t *r, const char *uri, size_t len)
{
    if (++r->nredirects > REDIRECTS_MAX) {
        sh_log_err("rewrite or internal redirection cycle while internally redirecting to "
                   "\"%.*s\"",
                   (int)len, uri);
        return SH_ELIMIT;
    }
    const char *q = memchr(uri, '?', len);
    size_t ul = q ? (size_t)(q - uri) : len;
    r->uri_buf.len = 0;
    sh_buf_append(&r->uri_buf, uri, len);
    r->uri = (sh_str_t){r->uri_buf.data, ul};
    if (q != NULL)
        r->args = (sh_str_t){r->uri_buf.data + ul + 1, len - ul - 1};
    r->internal = 1;
    r->uri_changed = 1;
    r->ph = pipeline_of(r)->start[SH_PHASE_SERVER_REWRITE];
    run(r);
    return 0;
}

void sh_phase_named(sh_request_t *r, const sh_http_loc_t *loc)
{
    r->internal = 1;
    r->loc = loc;
    r->core = sh_http_loc_conf(loc, &sh_http_core_module);
    r->ph = pipeline_of(r)->start[SH_PHASE_REWRITE];
    run(r);
}

void sh_phase_log(sh_request_t *r)
{
    if (r->logged)
        return;
    r->logged = 1;
    if (r->h.method == NULL && r->status == 0)
        return; /* no request line: nothing to log (nginx) */
    if (!r->resp_done) {
        /* nginx's rule: the request ended before its response: 499 when
         * the client went away before a byte of it was sent (or the
         * status a timeout set, 408), else the status that was sent */
        if (r->end_status != 0 && r->bytes_sent == 0)
            r->status = r->end_status;
        else if (r->status == 0 || r->bytes_sent == 0)
            r->status = 499;
    }
    const sh_http_main_t *m = r->c->w->rt->http;
    if (m == NULL)
        return;
    const sh_pipeline_t *p = m->pipeline;
    for (unsigned i = p->start[SH_PHASE_LOG]; i < p->start[SH_PHASE_COUNT]; i++)
        p->run[i].fn(r);
}

/* r's keep-alive under its current location's settings: decided from the
 * request at the first step, only turned off after (nginx's
 * ngx_http_update_location_config). */
static void set_keepalive(sh_request_t *r)
{
    sh_conn_t *c = r->c;
    r->keepalive =
        r->keepalive && r->core->keepalive_timeout > 0 &&
        (r->core->keepalive_requests <= 0 || c->nrequests < (uint32_t)r->core->keepalive_requests);
}

/* The engine's own first step of the server-rewrite phase: the request
 * is in its server's configuration (nginx's r->loc_conf before the
 * location is found), where the server level's rewrite directives run;
 * entered again by internal redirects. A request nginx refuses before any
 * phase (a bad URI or Host) is refused here. */
static int server_config(sh_request_t *r)
{
    r->loc = r->srv->loc;
    r->core = sh_http_loc_conf(r->loc, &sh_http_core_module);
    if (r->srv_checked) {
        set_keepalive(r);
        return SH_PH_DECLINED;
    }
    r->srv_checked = 1;
    r->keepalive = r->h.keep_alive && !r->c->w->stopping;
    set_keepalive(r);
    if (r->bad_uri || r->bad_host) {
        sh_req_log(SH_LOG_INFO, r->c, r, NULL, "client sent invalid %s",
                   r->bad_host ? "host header" : "request URI");
        r->keepalive = 0;
        return 400;
    }
    if (r->c->tls != NULL) { /* before any directive of the server answers */
        int e = sh_tls_client_check(r->c->tls, r->srv);
        if (e != 0) {
            sh_request_client_cert_error(r, e);
            return SH_PH_DONE;
        }
    }
    return SH_PH_DECLINED;
}

/* The engine's own find-config step (nginx's find-config phase): the
 * location of r->uri and what depends on it; entered again by internal
 * redirects and by URI changes of the rewrite phase. */
static int find_config(sh_request_t *r)
{
    sh_conn_t *c = r->c;
    r->loc = sh_http_find_location_uri(r->srv, r->uri.p, r->uri.len);
    r->core = sh_http_loc_conf(r->loc, &sh_http_core_module);
    r->uri_break = 0;
    if (r->loc->regex != NULL && sh_regex_ngroups(r->loc->regex) > 0)
        r->caps = r->named_caps = NULL; /* the location's captures again (nginx) */
    set_keepalive(r);
    if (r->loc->internal && !r->internal)
        return 404; /* `internal`: reached only by internal redirects */
    if (r->loc_checked)
        return SH_PH_NEXT;
    r->loc_checked = 1;
    if (r->h.content_length > 0 && r->core->client_max_body_size > 0 &&
        (uint64_t)r->h.content_length > r->core->client_max_body_size) {
        sh_req_log(SH_LOG_ERR, c, r, NULL, "client intended to send too large body: %lld bytes",
                   (long long)r->h.content_length);
        r->keepalive = 0;
        return 413;
    }
    return SH_PH_NEXT;
}

/* ------------------------------------------------------ filters -- */

const sh_http_loc_t *sh_request_loc(const sh_request_t *r)
{
    return r->loc != NULL ? r->loc : r->c->addr->default_srv->loc;
}

static int run_filters(sh_request_t *r, sh_resp_head_t *h, int early)
{
    const sh_http_loc_t *loc = sh_request_loc(r);
    for (unsigned i = 0; i < loc->nfilters; i++) {
        if ((loc->filters[i]->early != 0) != early)
            continue;
        int rc = loc->filters[i]->header(r, h);
        if (rc != 0)
            return rc;
        for (unsigned k = 0; k < h->nscr; k++) /* r->hscratch may have moved */
            h->f[h->scr[k].i].value = r->hscratch.data + h->scr[k].off;
    }
    return 0;
}

int sh_filter_headers_early(sh_request_t *r, sh_resp_head_t *h)
{
    return run_filters(r, h, 1);
}

int sh_filter_headers(sh_request_t *r, sh_resp_head_t *h)
{
    return run_filters(r, h, 0);
}

int sh_resp_head_set_scratch(sh_request_t *r, sh_resp_head_t *h, size_t i, size_t off, size_t len)
{
    for (unsigned k = 0; k < h->nscr; k++)
        if (h->scr[k].i == i) {
            h->scr[k].off = (uint32_t)off;
            h->f[i].value = r->hscratch.data + off;
            h->f[i].value_len = len;
            return 0;
        }
    if (h->nscr >= SH_RESP_SCRATCH_MAX || off > UINT32_MAX)
        return SH_ELIMIT;
    h->scr[h->nscr].i = (uint16_t)i;
    h->scr[h->nscr].off = (uint32_t)off;
    h->nscr++;
    h->f[i].value = r->hscratch.data + off;
    h->f[i].value_len = len;
    return 0;
}

int sh_resp_head_add(sh_resp_head_t *h, const char *name, size_t nl, const char *value, size_t vl)
{
    if (h->n >= h->cap)
        return SH_ELIMIT;
    h->f[h->n++] = (sh_http1_header_t){name, nl, value, vl};
    return 0;
}

sh_http1_header_t *sh_resp_head_find(sh_resp_head_t *h, const char *name, size_t nl)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->f[i].name_len == nl && strncasecmp(h->f[i].name, name, nl) == 0)
            return &h->f[i];
    return NULL;
}

int sh_resp_type_in(sh_resp_head_t *h, char *const *types, size_t n)
{
    const sh_http1_header_t *ct = sh_resp_head_find(h, "Content-Type", 12);
    if (ct == NULL)
        return 0;
    size_t len = 0;
    while (len < ct->value_len && ct->value[len] != ';' && ct->value[len] != ' ')
        len++;
    for (size_t i = 0; i < n; i++)
        if ((types[i][0] == '*' && types[i][1] == '\0') ||
            (strlen(types[i]) == len && strncasecmp(types[i], ct->value, len) == 0))
            return 1;
    return 0;
}

int sh_body_filter_attach(sh_request_t *r, sh_body_filter_pt f)
{
    if (r->nbf >= SH_BODY_FILTERS_MAX)
        return SH_ELIMIT;
    r->bf[r->nbf++] = f;
    return 0;
}

int sh_body_next(sh_request_t *r, unsigned next, const char *data, size_t len, int last)
{
    if (next < r->nbf)
        return r->bf[next](r, next + 1, data, len, last);
    const sh_http_proto_t *pr = SH_PROTO(r);
    if (len > 0 && pr->send_body(r, data, len) != 0)
        return -1;
    if (last)
        return pr->end(r, r->trailers, r->ntrailers);
    return 0;
}

/* ------------------------------------------------------ per request -- */

int sh_request_cleanup_add(sh_request_t *r, sh_cleanup_pt fn, void *data)
{
    if (r->ncleanup >= SH_REQUEST_CLEANUPS)
        return SH_ELIMIT;
    r->cleanup[r->ncleanup].fn = fn;
    r->cleanup[r->ncleanup].data = data;
    r->ncleanup++;
    return 0;
}
