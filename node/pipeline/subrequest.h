/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Subrequests: an internal request whose response is captured instead of
 * sent (auth_request; later mirror and cache background updates). It runs
 * in its parent's server from find-config, with the parent's method and
 * header fields but no body (Content-Length and Transfer-Encoding are
 * dropped, as nginx's auth_request advice does by hand), through the
 * location's content handler (proxy_pass, return, a static file, ...);
 * its preaccess and access phases are skipped (limits count its parent, the
 * parent was checked) and it is not logged, as nginx's.
 *
 * Its response goes to a capture protocol (sh_http_proto_t): the status
 * and the head's fields are kept, the body up to a bound. When the
 * response is complete, or cannot be, done() is called once with the
 * subrequest still readable (its $upstream_* variables too: evaluate
 * values with it as the request); it is freed right after done() returns.
 * A parent that ends first cancels it (sh_subrequest_cancel, from its
 * cleanup hook); done() is not called then. Worker thread only.
 */
#ifndef SH_SUBREQUEST_H
#define SH_SUBREQUEST_H

#include <stddef.h>

#include "core/buf.h"

typedef struct sh_request_s sh_request_t;
typedef struct sh_worker_s sh_worker_t;

typedef void (*sh_subreq_done_pt)(sh_request_t *sub, void *ud);

/* Start a subrequest of parent for uri ("/path[?args]"), keeping up to
 * body_max bytes of its response body. done may run before this returns
 * (a `return` in the location). 0, or SH_ENOMEM / SH_EINVAL (no request
 * made, done never called). *out (if given) is the subrequest, valid
 * until done returns (or until sh_subrequest_cancel). */
int sh_subrequest(sh_request_t *parent, const char *uri, size_t len, size_t body_max,
                  sh_subreq_done_pt done, void *ud, sh_request_t **out);
/* A background subrequest (nginx's mirror): its response is dropped, and
 * it outlives its parent, which neither waits for it nor cancels it. It
 * has its own copy of the parent's head and client address; r->parent is
 * NULL (r->sub says it is a subrequest); the connection's memory is held
 * until it ends (its socket may close meanwhile). body (NULL: none) is
 * its request body, copied, sent with a Content-Length. 0 or SH_EINVAL. */
int sh_subrequest_background(sh_request_t *parent, const char *uri, size_t len,
                             const sh_buf_t *body);
/* End every background subrequest of w (the worker stops). */
void sh_subrequest_cancel_background(sh_worker_t *w);
/* The response's status; 0 when there was none (the subrequest failed
 * before a head, or was closed: 444). */
int sh_subrequest_status(const sh_request_t *sub);
/* The response head's fields as "Name: value\r\n" lines, and its body
 * (up to body_max bytes). */
const sh_buf_t *sh_subrequest_fields(const sh_request_t *sub);
const sh_buf_t *sh_subrequest_body(const sh_request_t *sub);
/* The first field named name (case-insensitive) appended to out; 1 found,
 * 0 not. */
int sh_subrequest_field(const sh_request_t *sub, const char *name, size_t nl, sh_buf_t *out);
/* End a subrequest that has not completed (its parent is ending). */
void sh_subrequest_cancel(sh_request_t *sub);
/* Or let it go on alone (a background update, nginx's background
 * subrequest): from then on it is a background subrequest as
 * sh_subrequest_background's (its own head and client address, r->parent
 * NULL, done() not called, ended by a worker stop, the connection's memory
 * held until it ends). Call it while the parent is still readable (its
 * cleanup hook). */
void sh_subrequest_detach(sh_request_t *sub);

#endif
