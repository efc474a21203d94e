/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request pipeline: what happens to a request between "its head is
 * read" and "it is freed", whatever protocol carried it.
 *
 *   phases (nginx's order)  post-read -> server-rewrite -> find-config ->
 *                           rewrite -> preaccess -> access -> precontent
 *                           -> content
 *   response                head as data (sh_resp_head_t) -> header filters
 *                           -> body filters -> protocol writer (sh_http_proto_t)
 *   end                     log phase, cleanup hooks, deferred free
 *
 * Handlers and filters are registered by modules at configuration time
 * (sh_http_module_t.postconfiguration) into the configuration generation
 * (sh_http_main_t.pipeline): nothing global, a reload swaps them with the
 * rest. A location's header filter list is built once, after the merge,
 * from the filters whose applies() says yes for that location (h2o's way:
 * an unused feature costs nothing per request). A header filter may attach
 * a body filter to one response.
 *
 * Handler results: SH_PH_DECLINED (the next handler of the phase runs),
 * SH_PH_NEXT (this phase is done: the next phase runs), SH_PH_DONE (the
 * handler took the request over: it answers or ended it), SH_PH_PAUSE (the
 * handler will call sh_phase_resume() from a timer or another event; the
 * same handler runs again then, and finds its state in its context slot),
 * or an HTTP status 100..599 (answered with that status's page).
 *
 * Each request has one context slot per module (sh_request_ctx) and up to
 * SH_REQUEST_CLEANUPS cleanup hooks, run when the request is freed. A freed
 * request goes back to the worker's free list only at the end of the loop
 * iteration (deferred free), so code that ended a request may still read
 * it (r->freed says so).
 *
 * Worker thread only, except the registration functions (loading thread).
 */
#ifndef SH_PIPELINE_H
#define SH_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/conf.h"
#include "http/http1.h"
#include "node/pipeline/http_conf.h"

typedef struct sh_request_s sh_request_t;

/* ------------------------------------------------------ phases -- */

typedef enum {
    SH_PHASE_POST_READ = 0,
    SH_PHASE_SERVER_REWRITE, /* the server level's rewrite directives (r->loc: the server's) */
    SH_PHASE_FIND_CONFIG,    /* the engine's own: server and location lookup */
    SH_PHASE_REWRITE,
    SH_PHASE_PREACCESS,
    SH_PHASE_ACCESS,
    SH_PHASE_PRECONTENT,
    SH_PHASE_CONTENT,
    SH_PHASE_LOG, /* run once at the request's end, see sh_phase_log() */
    SH_PHASE_COUNT
} sh_phase_t;

#define SH_PH_DECLINED 0
#define SH_PH_NEXT     1
#define SH_PH_DONE     2
#define SH_PH_PAUSE    3
/* The URI changed (rewrite without a flag or with `last`): find the
 * location again from find-config; counts as one of nginx's 10 URI
 * changes (500 past them). Rewrite phase only. */
#define SH_PH_RELOCATE 4

/* A phase handler: one of the results above, or a status to answer. */
typedef int (*sh_phase_handler_pt)(sh_request_t *r);

typedef struct sh_pipeline_s sh_pipeline_t;

/* Register h in phase (not FIND_CONFIG) of the generation being loaded;
 * handlers of one phase run in registration order (module list order).
 * Returns 0, or SH_EINVAL (logged in cf) for FIND_CONFIG or a full phase. */
int sh_phase_add(sh_conf_t *cf, sh_http_main_t *m, sh_phase_t phase, sh_phase_handler_pt h);

/* Answer r with status's page (error_page applies; 444 and 499 close). */
void sh_phase_answer(sh_request_t *r, int status);
/* Run the phases of r from post-read (after its head was read). */
void sh_phase_start(sh_request_t *r);
/* A paused handler's event came: run the phases again from that handler. */
void sh_phase_resume(sh_request_t *r);
/* Internal redirect: r continues at server-rewrite with uri (copied), as
 * error_page and try_files do (nginx's ngx_http_internal_redirect). Returns 0, or SH_ELIMIT after
 * nginx's 10 redirects (the caller answers 500). */
int sh_phase_redirect(sh_request_t *r, const char *uri, size_t len);
/* Continue r in the named location loc (error_page @name, try_files
 * @name): from its rewrite phase, as nginx. */
void sh_phase_named(sh_request_t *r, const sh_http_loc_t *loc);

/* error_page (node/errpage.c registers them): whether r's location has a
 * page for status, and sending it (an internal redirect, a named location
 * or a redirect to a URL). send returns 1 when it took the request, 0 to
 * answer with the standard page. */
typedef struct {
    int (*has)(sh_request_t *r, int status);
    int (*send)(sh_request_t *r, int status);
} sh_error_pages_t;
int sh_pipeline_set_error_pages(sh_conf_t *cf, sh_http_main_t *m, const sh_error_pages_t *ep);
/* The generation's error pages, or NULL. */
const sh_error_pages_t *sh_request_error_pages(const sh_request_t *r);

/* The log phase: run once per request that produced a request line (or a
 * parser error), from sh_request_free(); twice is a no-op. */
void sh_phase_log(sh_request_t *r);

/* ------------------------------------------------------ response -- */

#define SH_RESP_NO_BODY   0x1 /* HEAD, 204, 304: nothing follows the head */
#define SH_RESP_TUNNEL    0x2 /* 101: fields as given, then bytes both ways */
#define SH_RESP_NO_SERVER 0x4 /* the upstream's Server is passed (proxy_pass_header) */
#define SH_RESP_NO_DATE   0x8 /* the upstream's Date likewise */
/* With SH_RESP_NO_BODY: the response still ends only at sh_response_end()
 * (a HEAD sent upstream as GET, whose body is read for the cache): the
 * protocol does not end it with its head (HTTP/2: no END_STREAM on the
 * HEADERS), so a client sees the end once the body was stored. */
#define SH_RESP_HELD 0x10

#define SH_RESP_FIELDS_MAX 200 /* fields of one response head, filters' included */

/* The response head as data: what header filters see and change. A field
 * with name_len 0 is deleted (writers skip it). Values a filter makes go
 * into r->hscratch and are given by offset (sh_resp_head_set_scratch), so
 * the buffer may grow under them: the pointers are fixed after each
 * filter. */
#define SH_RESP_SCRATCH_MAX 80
typedef struct {
    int status;
    const char *reason; /* NULL: the standard one (HTTP/1.1 only) */
    size_t reason_len;
    sh_http1_header_t *f;
    size_t n, cap;
    int64_t length; /* body length, -1: unknown */
    unsigned flags; /* SH_RESP_* */
    char clen[24];  /* the Content-Length value a protocol's framing wrote */
    struct {
        uint16_t i;   /* field index */
        uint32_t off; /* value offset in r->hscratch */
    } scr[SH_RESP_SCRATCH_MAX];
    unsigned nscr;
} sh_resp_head_t;

/* Append a field (name and value must outlive the head); SH_ELIMIT when
 * full. Find the first field named name (case-insensitive), or NULL. */
int sh_resp_head_add(sh_resp_head_t *h, const char *name, size_t nl, const char *value, size_t vl);
sh_http1_header_t *sh_resp_head_find(sh_resp_head_t *h, const char *name, size_t nl);
/* Whether h's Content-Type, its media type up to ';' or a space, is one
 * of types[0 .. n) (case-insensitive; "*" is any type); 0 without one.
 * For the *_types directives of body filters (gzip, sub_filter). */
int sh_resp_type_in(sh_resp_head_t *h, char *const *types, size_t n);
/* Field i's value is r->hscratch[off, off+len). 0 or SH_ELIMIT. */
int sh_resp_head_set_scratch(sh_request_t *r, sh_resp_head_t *h, size_t i, size_t off, size_t len);

/* A header filter: may change h; returns 0, or a negative SH_E* that
 * aborts the response. */
typedef int (*sh_header_filter_pt)(sh_request_t *r, sh_resp_head_t *h);

/* A body filter attached to one response (by its header filter): gets the
 * body in pieces (last: the body ends after data) and passes what it makes
 * on with sh_body_next(r, next, ...). Returns 0 or -1 (r ended). */
typedef int (*sh_body_filter_pt)(sh_request_t *r, unsigned next, const char *data, size_t len,
                                 int last);
#define SH_BODY_FILTERS_MAX 4
int sh_body_filter_attach(sh_request_t *r, sh_body_filter_pt f);
int sh_body_next(sh_request_t *r, unsigned next, const char *data, size_t len, int last);

typedef struct sh_filter_s {
    const char *name;
    /* Whether the filter has anything to do in loc (its merged conf);
     * asked once per location after the merge. */
    int (*applies)(const sh_http_main_t *m, const sh_http_loc_t *loc);
    sh_header_filter_pt header;
    int late; /* runs after every other filter (sees the final head) */
    /* Runs before the protocol's framing (sh_filter_headers_early): a
     * filter that transforms the body (gzip) sets h->length to -1 there,
     * so HTTP/1.1 chunks it and HTTP/2 sends no content-length. */
    int early;
} sh_filter_t;

/* Register a header filter (loading thread). Filters run in registration
 * order. f must outlive the generation (a static). 0 or SH_EINVAL. */
int sh_filter_add(sh_conf_t *cf, sh_http_main_t *m, const sh_filter_t *f);

/* The location whose configuration applies to r: r->loc, or its
 * address's default server's when the request never got one (a head the
 * parser refused). Never NULL. */
const sh_http_loc_t *sh_request_loc(const sh_request_t *r);

/* Run r's location's header filters on h (the early ones before the
 * protocol's framing, the others after it). 0 or a negative SH_E*. */
int sh_filter_headers_early(sh_request_t *r, sh_resp_head_t *h);
int sh_filter_headers(sh_request_t *r, sh_resp_head_t *h);

/* ------------------------------------------------------ protocol -- */

/* What HTTP/1.1 and HTTP/2 each implement for a request; request code
 * only calls these (through sh_response_* and sh_request_* in node.h).
 * The int ones return 0, or -1 when the client connection or stream is
 * gone (r is ended then: r->freed). */
typedef struct {
    const char *name;
    /* Before the header filters: add the protocol's framing fields
     * (Content-Length, Transfer-Encoding, Connection) and decide r's
     * framing and keep-alive. */
    void (*frame)(sh_request_t *r, sh_resp_head_t *h);
    /* Serialize the filtered head (held back to go out with the first
     * body bytes, or on flush). */
    int (*send_head)(sh_request_t *r, const sh_resp_head_t *h);
    int (*flush)(sh_request_t *r);
    int (*send_body)(sh_request_t *r, const char *data, size_t len);
    int (*end)(sh_request_t *r, const sh_http1_header_t *trailers, size_t n);
    void (*finish)(sh_request_t *r); /* the response is complete */
    void (*abort)(sh_request_t *r);  /* it cannot be completed */
    void (*body_resume)(sh_request_t *r);
    size_t (*queued)(const sh_request_t *r);
    void (*send_timer)(sh_request_t *r);
    /* Optional: len bytes of fd from *off straight to the client; bytes
     * sent (moving *off), SH_EAGAIN (wait for the drain), SH_EUNSUPP (send
     * it as body bytes instead) or SH_ECLOSED / SH_EIO (r ended). */
    int (*sendfile)(sh_request_t *r, int fd, int64_t *off, size_t len);
    /* r's head is read: the protocol sets up reading its body. */
    void (*head_done)(sh_request_t *r);
    /* Optional: the request's trailers, up to max (sh_request_trailers). */
    size_t (*trailers)(const sh_request_t *r, sh_http1_header_t *out, size_t max);
    /* What the protocol is, as data for the request code (which never
     * asks which protocol it speaks): a target may be in absolute-form,
     * whose authority is the host (HTTP/1.1, RFC 9112 3.2.2; HTTP/2 has
     * :authority); the response to HEAD ends with its head, so no body
     * read after it reaches anyone (HTTP/2: END_STREAM on HEADERS), unless
     * the head is SH_RESP_HELD (proxy_cache's HEAD sent as GET). */
    uint8_t absolute_form;
    uint8_t head_ends_response;
} sh_http_proto_t;

/* ------------------------------------------------------ per request -- */

#define SH_REQUEST_SLOTS    48 /* module context slots (module index): at least sh_nmodules */
#define SH_REQUEST_CLEANUPS 4

typedef void (*sh_cleanup_pt)(sh_request_t *r, void *data);
/* Run fn(r, data) when r is freed (after the log phase), last added
 * first. 0 or SH_ELIMIT. */
int sh_request_cleanup_add(sh_request_t *r, sh_cleanup_pt fn, void *data);

/* ------------------------------------------------------ generation -- */

sh_pipeline_t *sh_pipeline_create(void);
void sh_pipeline_destroy(sh_pipeline_t *p);
/* After every postconfiguration: build the per-location filter lists.
 * 0 or SH_EINVAL (cf). */
int sh_pipeline_build(sh_conf_t *cf, sh_http_main_t *m);

#endif
