/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/2 on the client side (RFC 9113), with nghttp2: `listen ...
 * http2` and `http2 on`, h2 over TLS by ALPN and cleartext h2 with prior
 * knowledge (the connection preface as the first bytes).
 *
 * Each stream becomes an sh_request_t dispatched through the same routing,
 * local responses and proxy as HTTP/1.1; the response functions of node.h
 * (sh_response_start/body/end) turn into HEADERS and DATA frames here.
 *
 * Flow control both ways:
 *  - request bodies: automatic WINDOW_UPDATEs are off; DATA is
 *    acknowledged (nghttp2_session_consume) only once the proxy took the
 *    bytes, so a slow upstream holds at most a stream window per stream.
 *  - responses: body bytes wait in the stream until nghttp2 pulls them
 *    (within the client's windows); above SH_WBUF_HIGH the proxy stops
 *    reading the upstream, below SH_WBUF_LOW it starts again. Frames are
 *    written once per loop iteration (a uv_check handle), and not while the
 *    socket's write queue is above SH_WBUF_HIGH.
 *
 * Defences: SETTINGS_MAX_CONCURRENT_STREAMS (http2_max_concurrent_streams),
 * the header list limit (large_client_header_buffers: 431), nghttp2's
 * reset-rate limiter (CVE-2023-44487), CONTINUATION and outbound-ACK
 * limits, and our own per-connection counters: streams opened in one read
 * (nginx's rule, 2 x max concurrent), and per second SETTINGS, PING, empty
 * DATA and other control frames. Any of them ends the connection with
 * GOAWAY(ENHANCE_YOUR_CALM) and is counted.
 *
 * Graceful stop: GOAWAY with the last stream id; streams in flight finish,
 * then the connection closes. Worker thread only.
 */
#ifndef SH_HTTP2_H
#define SH_HTTP2_H

#include <stddef.h>
#include <stdint.h>

#include "core/conf.h"
#include "http/http1.h"
#include "node/pipeline/http_conf.h"
#include "node/pipeline/pipeline.h"

extern sh_conf_module_t sh_http2_module;

typedef struct sh_h2_s sh_h2_t;
typedef struct sh_conn_s sh_conn_t;
typedef struct sh_request_s sh_request_t;
typedef struct sh_worker_s sh_worker_t;

/* The connection preface a client with prior knowledge sends first. */
#define SH_H2_PREFACE     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define SH_H2_PREFACE_LEN 24

/* Whether HTTP/2 is on for srv (`http2 on`) or its listen address
 * (`listen ... http2`). */
int sh_http2_enabled(const sh_http_addr_t *addr, const sh_http_srv_t *srv);

/* Per worker: the end-of-iteration write pass (uv_check). */
void sh_http2_worker_init(sh_worker_t *w);

/* Turn c into an HTTP/2 connection (after ALPN h2, or on the preface).
 * Returns 0 or SH_EIO (logged). */
int sh_http2_start(sh_conn_t *c);
/* Bytes from the client. Returns 0, or -1 when the connection closed. */
int sh_http2_input(sh_h2_t *h2, const char *data, size_t len);
/* The socket's write queue went below the low mark. */
void sh_http2_written(sh_h2_t *h2);
/* Whether the connection wants to read, and its timeout (ms, 0: none). */
int sh_http2_want_read(const sh_h2_t *h2);
uint64_t sh_http2_timeout(const sh_h2_t *h2);
/* Whether the preface, a frame other than DATA or a header block is
 * partly received: the connection times it by client_header_timeout
 * from its first byte rather than with sh_http2_timeout(). */
int sh_http2_head_pending(const sh_h2_t *h2);
/* Whether the connection has no stream and nothing under way: it may be
 * closed to make room when worker_connections is full. */
int sh_http2_idle(const sh_h2_t *h2);
/* Graceful stop: GOAWAY, then close once the streams are done. */
void sh_http2_shutdown(sh_h2_t *h2);
/* The connection is closing: every stream's request is freed now. */
void sh_http2_close(sh_h2_t *h2);
/* After the handles closed: free the session. */
void sh_http2_destroy(sh_h2_t *h2);
/* Streams of the session with a request under way (stub_status). */
size_t sh_http2_nstreams(const sh_h2_t *h2);

/* HTTP/2's side of the protocol interface (node/pipeline.h). */
extern const sh_http_proto_t sh_http2_proto;

/* The response functions of node.h for a stream's request. */
int sh_http2_response_body(sh_request_t *r, const char *data, size_t len);
int sh_http2_response_end(sh_request_t *r, const sh_http1_header_t *trailers, size_t n);
/* The request functions of node.h for a stream's request. */
void sh_http2_request_finish(sh_request_t *r);
void sh_http2_request_abort(sh_request_t *r);
void sh_http2_body_resume(sh_request_t *r);
size_t sh_http2_out_queued(const sh_request_t *r);
/* The request's trailers (HEADERS after its DATA), into out (pointing into
 * the stream, valid while r is); their number. */
size_t sh_http2_request_trailers(const sh_request_t *r, sh_http1_header_t *out, size_t max);

/* ---- pure: the request head from an HTTP/2 header list (fuzzed) */

typedef struct {
    const char *method, *scheme, *authority, *path;
    size_t method_len, scheme_len, authority_len, path_len;
    int64_t content_length; /* -1: absent */
} sh_h2_pseudo_t;

/*
 * Build the request head from the decoded fields of a HEADERS block
 * (names lower-case as HTTP/2 requires, pseudo-fields first): names and
 * values are copied into *head (allocated), fields[] point there (at most
 * max; "cookie" fields joined with "; " as RFC 9113 8.2.3 says; a "host"
 * field made from :authority when there is none). Returns the number of
 * fields, or SH_EPARSE (missing or repeated pseudo-field, bad
 * content-length, a pseudo-field after a regular one) or SH_ELIMIT (more
 * than max fields) with *why set.
 */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} sh_h2_field_t;
ssize_t sh_http2_build_head(const sh_h2_field_t *in, size_t nin, char **head, size_t *head_len,
                            sh_h2_pseudo_t *ps, sh_http1_header_t *fields, size_t max,
                            const char **why);

#endif
