/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request, once for both protocols (its API is in node.h): the
 * response head as data through the header filters to the protocol's
 * writer, body and end through the body filters, the generic answers
 * (sh_request_respond, nginx's error pages and client-certificate
 * answers), the life-cycle calls that go to the protocol, and the
 * dispatch of a request whose head is read: target split, host rules,
 * server lookup, URI normalization, body framing, then the phases.
 * The protocols (node/conn/conn.c for HTTP/1.1, http2.c) implement
 * sh_http_proto_t; nothing here asks which one a request speaks.
 */
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "http/status.h"
#include "node/pipeline/node.h"

/* ------------------------------------------------------ response -- */
/* Once for both protocols: the head as data, the header filters, then the
 * protocol's writer (node/pipeline.h). */

int sh_response_start(sh_request_t *r, int status, const char *reason, size_t reason_len,
                      const sh_http1_header_t *hs, size_t n, int64_t length, unsigned flags)
{
    sh_http1_header_t f[SH_RESP_FIELDS_MAX];
    sh_resp_head_t h = {.status = status,
                        .reason = reason,
                        .reason_len = reason_len,
                        .f = f,
                        .cap = SH_RESP_FIELDS_MAX,
                        .length = length,
                        .flags = flags};
    const sh_http_proto_t *pr = SH_PROTO(r);
    if (r->err_status > 0) /* error_page: the page goes with the error's status */
        h.status = status = r->err_status;
    r->status = status;
    r->hscratch.len = 0;
    r->nbf = 0;
    if (!(flags & SH_RESP_NO_SERVER))
        sh_resp_head_add(&h, "Server", 6, "shoal", 5);
    if (!(flags & SH_RESP_NO_DATE)) {
        size_t dl;
        const char *d = sh_worker_date(r->c->w, &dl);
        sh_resp_head_add(&h, "Date", 4, d, dl);
    }
    if (n > SH_RESP_FIELDS_MAX - 72)
        n = SH_RESP_FIELDS_MAX - 72; /* room for the framing and the filters' fields */
    memcpy(f + h.n, hs, n * sizeof(*hs));
    h.n += n;
    int rc = sh_filter_headers_early(r, &h); /* body transforms: before the framing */
    if (rc == 0) {
        pr->frame(r, &h);
        rc = sh_filter_headers(r, &h);
    }
    if (rc != 0) {
        sh_log_err("client %llu: response head filter failed: %s", (unsigned long long)r->c->id,
                   sh_strerror(rc));
        pr->abort(r);
        return -1;
    }
    return pr->send_head(r, &h);
}

int sh_response_flush(sh_request_t *r)
{
    return SH_PROTO(r)->flush(r);
}

int sh_response_body(sh_request_t *r, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    r->body_bytes_sent += len;
    if (r->nbf > 0)
        return sh_body_next(r, 0, data, len, 0);
    return SH_PROTO(r)->send_body(r, data, len);
}

int sh_response_end(sh_request_t *r, const sh_http1_header_t *trailers, size_t n)
{
    if (r->nbf > 0) {
        r->trailers = trailers;
        r->ntrailers = n;
        int rc = sh_body_next(r, 0, NULL, 0, 1);
        r->trailers = NULL;
        r->ntrailers = 0;
        return rc;
    }
    return SH_PROTO(r)->end(r, trailers, n);
}

void sh_request_drained(sh_request_t *r)
{
    if (r->sink != NULL && r->sink->drained(r))
        return;
    if (r->on_drain != NULL)
        r->on_drain(r);
}

int sh_response_sendfile(sh_request_t *r, int fd, int64_t *off, size_t len)
{
    if (r->nbf > 0 || SH_PROTO(r)->sendfile == NULL)
        return SH_EUNSUPP;
    return SH_PROTO(r)->sendfile(r, fd, off, len);
}

void sh_request_send_timer(sh_request_t *r)
{
    SH_PROTO(r)->send_timer(r);
}

size_t sh_request_out_queued(const sh_request_t *r)
{
    return SH_PROTO(r)->queued(r);
}

size_t sh_request_trailers(const sh_request_t *r, sh_http1_header_t *out, size_t max)
{
    /* HTTP/2 only: HTTP/1.1 chunked trailers are not kept */
    const sh_http_proto_t *pr = SH_PROTO(r);
    return pr->trailers != NULL ? pr->trailers(r, out, max) : 0;
}

void sh_request_respond(sh_request_t *r, int status, const char *ctype, const char *body,
                        size_t body_len, const char *location)
{
    if (r->resp_started) {
        sh_request_abort(r);
        return;
    }
    char page[512];
    const sh_error_pages_t *ep =
        body == NULL && location == NULL && status >= 300 ? sh_request_error_pages(r) : NULL;
    if (ep != NULL && ep->send(r, status))
        return; /* error_page took it (an internal redirect, @name, a URL) */
    if (body == NULL && status >= 300) {
        const char *t = sh_http_status_text(status);
        int n = snprintf(page, sizeof(page),
                         "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n"
                         "<center><h1>%d %s</h1></center>\r\n<hr><center>shoal</center>\r\n"
                         "</body>\r\n</html>\r\n",
                         status, t, status, t);
        body = page;
        body_len = (size_t)n;
        ctype = "text/html";
    }
    if (status >= 400 && !r->body.done && !r->discard_body)
        r->keepalive = 0;
    sh_http1_header_t hs[2];
    size_t n = 0;
    if (ctype != NULL)
        hs[n++] = (sh_http1_header_t){"Content-Type", 12, ctype, strlen(ctype)};
    if (location != NULL)
        hs[n++] = (sh_http1_header_t){"Location", 8, location, strlen(location)};
    if (body == NULL)
        body_len = 0;
    if (sh_response_start(r, status, NULL, 0, hs, n, (int64_t)body_len,
                          r->head_only ? SH_RESP_NO_BODY : 0) != 0)
        return;
    if (body_len > 0 && !r->head_only && sh_response_body(r, body, body_len) != 0)
        return;
    if (sh_response_end(r, NULL, 0) == 0)
        sh_request_finish(r);
}

/* ------------------------------------------------------ life cycle -- */

void sh_request_abort(sh_request_t *r)
{
    SH_PROTO(r)->abort(r);
}

void sh_request_finish(sh_request_t *r)
{
    SH_PROTO(r)->finish(r);
}

void sh_request_body_resume(sh_request_t *r)
{
    SH_PROTO(r)->body_resume(r);
}

/* ------------------------------------------------------ requests -- */

static void split_target(sh_request_t *r)
{
    const char *t = r->h.target;
    size_t n = r->h.target_len;
    /* absolute-form: drop scheme and authority (RFC 9112 3.2.2) */
    const char *a;
    size_t al;
    if (r->c->proto->absolute_form && sh_http1_target_authority(t, n, &a, &al)) {
        n -= (size_t)(a + al - t);
        t = a + al;
    }
    const char *q = memchr(t, '?', n);
    if (n == 0 || t[0] == '?') { /* "http://a" and "http://a?x": the path is "/" */
        r->path = (sh_str_t){"/", 1};
        r->args = q != NULL ? (sh_str_t){q + 1, n - 1} : (sh_str_t){NULL, 0};
    } else if (q != NULL) {
        r->path = (sh_str_t){t, (size_t)(q - t)};
        r->args = (sh_str_t){q + 1, n - (size_t)(q - t) - 1};
    } else {
        r->path = (sh_str_t){t, n};
        r->args = (sh_str_t){NULL, 0};
    }
}

/* The request's host, as nginx has it: the authority of an absolute-form
 * target wins over the Host field (RFC 9112 3.2.2), and each must pass
 * the host rules (sh_http1_host), else 400. r->h.host becomes that host
 * without port or trailing dot: routing and $host use it, while
 * $http_host stays the field as sent. Returns 0 or -1 (400). */
static int host_check(sh_request_t *r)
{
    if (r->bad_host)
        return -1;
    const char *h = r->h.host;
    size_t hl = r->h.host_len;
    if (h != NULL) {
        ssize_t n = sh_http1_host(h, hl);
        if (n < 0)
            return -1;
        hl = (size_t)n;
    }
    const char *a;
    size_t al;
    if (r->c->proto->absolute_form &&
        sh_http1_target_authority(r->h.target, r->h.target_len, &a, &al)) {
        ssize_t n = sh_http1_host(a, al);
        if (n < 0)
            return -1;
        h = a;
        hl = (size_t)n;
    }
    r->h.host = h;
    r->h.host_len = hl;
    return 0;
}

/* nginx (ignore_invalid_headers on, underscores_in_headers off, both
 * its defaults): a field whose name holds '_' is dropped, neither seen
 * nor forwarded. A backend that maps '_' and '-' to one name (CGI, WSGI)
 * would otherwise see Transfer_Encoding as Transfer-Encoding: a
 * smuggling path. */
static void drop_underscored(sh_request_t *r, const sh_http_core_loc_t *core)
{
    if (!core->ignore_invalid_headers)
        return;
    size_t k = 0;
    for (size_t i = 0; i < r->h.nheaders; i++) {
        const sh_http1_header_t *h = &r->h.headers[i];
        if (memchr(h->name, '_', h->name_len) != NULL) {
            sh_log_info("client %llu sent invalid header line: \"%.*s\"",
                        (unsigned long long)r->c->id, (int)h->name_len, h->name);
            continue;
        }
        r->h.headers[k++] = *h;
    }
    r->h.nheaders = k;
}

/* nginx's answers to client certificate failures: 400 with the reason
 * (its internal 495/496), and 421 for a Host that is not the server the
 * handshake verified for. */
void sh_request_client_cert_error(sh_request_t *r, int e)
{
    r->discard_body = 1;
    if (e == 421) {
        sh_request_respond(r, 421, NULL, NULL, 0, NULL);
        return;
    }
    const char *why =
        e == 496 ? "No required SSL certificate was sent" : "The SSL certificate error";
    char page[384];
    int n = snprintf(page, sizeof(page),
                     "<html>\r\n<head><title>400 %s</title></head>\r\n<body>\r\n"
                     "<center><h1>400 Bad Request</h1></center>\r\n<center>%s</center>\r\n"
                     "<hr><center>shoal</center>\r\n</body>\r\n</html>\r\n",
                     why, why);
    sh_request_respond(r, 400, "text/html", page, (size_t)n, NULL);
}

void sh_request_dispatch(sh_request_t *r)
{
    sh_conn_t *c = r->c;
    c->nrequests++;
    r->start_ms = sh_worker_now(c->w);
    split_target(r);
    drop_underscored(r, sh_http_loc_conf(c->addr->default_srv->loc, &sh_http_core_module));
    if (host_check(r) != 0) {
        r->bad_host = 1;  /* 400 at find-config */
        r->h.host = NULL; /* the default server answers */
        r->h.host_len = 0;
    }
    r->srv = sh_http_find_server(c->addr, r->h.host, r->h.host_len);
    /* nginx: a path that cannot be normalized (no leading '/', an encoded
     * NUL, ".." above the root) is a 400 (at find-config) */
    char *ub = sh_buf_reserve(&r->uri_buf, r->path.len ? r->path.len : 1);
    size_t ul = 0;
    r->bad_uri = r->h.method_id != SH_HTTP_OPTIONS || r->path.len != 1 || r->path.p[0] != '*'
                     ? sh_http_normalize_uri(r->path.p, r->path.len, ub, &ul) != 0
                     : 0;
    r->uri = r->bad_uri ? r->path : (sh_str_t){ub, ul};
    r->head_only = r->h.method_id == SH_HTTP_HEAD;
    r->body.left = -1;
    if (r->h.chunked) {
        r->body.chunked = 1;
        sh_http1_chunked_init(&r->body.chunk);
    } else if (r->h.content_length > 0) {
        r->body.left = r->h.content_length;
    } else {
        r->body.done = 1;
    }
    c->proto->head_done(r);
    sh_phase_start(r);
}
