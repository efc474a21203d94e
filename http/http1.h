/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP/1.1 codec: pure functions over bytes (style.md, rule 12). No
 * sockets, no clock, no allocation. Strict per RFC 9110/9112, because a
 * proxy that is lenient where its backend is strict (or the reverse) is how
 * request smuggling happens:
 *
 *  - request-line: method is a token; target has no CTL, SP or non-ASCII
 *    bytes (origin-form, absolute-form, authority-form for CONNECT, "*" for
 *    OPTIONS); version is HTTP/1.0 or HTTP/1.1 (other HTTP/x.y: 505).
 *  - lines end in CRLF or a bare LF (RFC 9112 2.2 allows it); a bare CR
 *    anywhere is an error.
 *  - field names are tokens with no whitespace before the colon (RFC 9112
 *    5.1); values have no CTL except HTAB; obs-fold is rejected (5.2).
 *  - framing (RFC 9112 6): Transfer-Encoding and Content-Length together,
 *    differing or malformed Content-Length, Transfer-Encoding whose final
 *    coding is not chunked (requests), Transfer-Encoding in HTTP/1.0, and
 *    codings other than chunked are rejected; "Content-Length: 5, 5"
 *    style repeats of one value are accepted.
 *  - HTTP/1.1 requests need exactly one Host; more than one is an error.
 *  - absolute-form targets follow nginx's grammar: "//", a name of letters,
 *    digits, '.' and '-' or a bracketed literal, an optional port, then
 *    '/', '?' or the end (sh_http1_target_authority).
 *
 * Parsing is re-entrant and stateless: call again with more bytes after
 * SH_EAGAIN (the head is re-scanned; heads are small and bounded).
 */
#ifndef SH_HTTP1_H
#define SH_HTTP1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing OWS removed */
    size_t value_len;
} sh_http1_header_t;

enum sh_http_method {
    SH_HTTP_OTHER = 0,
    SH_HTTP_GET,
    SH_HTTP_HEAD,
    SH_HTTP_POST,
    SH_HTTP_PUT,
    SH_HTTP_DELETE,
    SH_HTTP_CONNECT,
    SH_HTTP_OPTIONS,
    SH_HTTP_TRACE,
    SH_HTTP_PATCH
};

/* Which limit or rule a failed parse broke; the connection maps it to a
 * status (the parser also suggests one in *status). */
enum sh_http1_fail {
    SH_HTTP1_FAIL_NONE = 0,
    SH_HTTP1_FAIL_SYNTAX,           /* 400 */
    SH_HTTP1_FAIL_URI_TOO_LONG,     /* 414: request line over its limit */
    SH_HTTP1_FAIL_HEADER_TOO_LARGE, /* 431 (nginx: 400 "Request Header Or Cookie Too Large") */
    SH_HTTP1_FAIL_TOO_MANY_HEADERS, /* 431 */
    SH_HTTP1_FAIL_VERSION,          /* 505 */
    SH_HTTP1_FAIL_NOT_IMPLEMENTED   /* 501: unknown transfer coding */
};

typedef struct {
    size_t max_request_line; /* bytes, incl. CRLF; 0 = 8192 */
    size_t max_header_line;  /* bytes of one field line; 0 = 8192 */
    size_t max_head;         /* bytes of the whole head; 0 = 65536 */
} sh_http1_limits_t;

typedef struct {
    /* set by the caller before parsing */
    sh_http1_header_t *headers; /* array of max_headers entries */
    size_t max_headers;

    /* results */
    const char *method;
    size_t method_len;
    int method_id; /* enum sh_http_method */
    const char *target;
    size_t target_len;
    int version; /* 10 or 11 */
    size_t nheaders;

    /* framing and connection semantics derived from the fields */
    int64_t content_length;       /* -1 when absent */
    unsigned chunked : 1;         /* Transfer-Encoding: chunked */
    unsigned keep_alive : 1;      /* 1.1 without "close", or 1.0 with "keep-alive" */
    unsigned expect_continue : 1; /* Expect: 100-continue */
    unsigned upgrade : 1;         /* Connection has "upgrade" and Upgrade is present */
    const char *host;             /* Host field value, NULL when absent */
    size_t host_len;

    /* on failure */
    int fail;           /* enum sh_http1_fail */
    int status;         /* suggested response status */
    const char *reason; /* static, human-readable */
} sh_http1_request_t;

typedef struct {
    sh_http1_header_t *headers;
    size_t max_headers;

    int version; /* 10 or 11 */
    int status;  /* 100..999 */
    const char *reason_phrase;
    size_t reason_len;
    size_t nheaders;

    int64_t content_length; /* -1 when absent */
    unsigned chunked : 1;
    unsigned keep_alive : 1; /* the server will keep the connection */
    unsigned has_connection_upgrade : 1;

    int fail;
    const char *reason;
} sh_http1_response_t;

/*
 * Parse a request head from buf[0..len).
 * Returns the head's length in bytes (through the empty line) when it is
 * complete; SH_EAGAIN when more bytes are needed and no limit is exceeded
 * yet; SH_EPARSE or SH_ELIMIT with req->fail, req->status and req->reason
 * set. limits may be NULL (defaults).
 */
ssize_t sh_http1_parse_request(const char *buf, size_t len, sh_http1_request_t *req,
                               const sh_http1_limits_t *limits);

/* Parse a response head (status-line and fields); same returns. The caller
 * decides that HEAD responses, 1xx, 204 and 304 have no body. */
ssize_t sh_http1_parse_response(const char *buf, size_t len, sh_http1_response_t *resp,
                                const sh_http1_limits_t *limits);

/* Incremental chunked body decoder (RFC 9112 7.1). */
typedef struct {
    int state;
    uint64_t remaining;   /* bytes left in the current chunk */
    size_t line_bytes;    /* bytes of the current size/trailer line so far */
    size_t trailer_bytes; /* total trailer bytes so far (bounded) */
    int digits;           /* hex digits of the current size line */
} sh_http1_chunked_t;

void sh_http1_chunked_init(sh_http1_chunked_t *d);

/*
 * Decode from buf[0..len). Returns bytes consumed (0..len) or SH_EPARSE
 * (bad size, size over 2^62, missing CRLF, size/extension/trailer lines
 * over 4096 bytes, trailers over 64 KiB). When chunk data is available,
 * *data and *data_len describe it (a span inside buf) and decoding stops
 * right after it so the caller can pass it on; call again with the rest.
 * *done becomes 1 once the last chunk and the trailer section are consumed;
 * bytes after that are not consumed. Chunk extensions and trailers are
 * validated and dropped.
 */
ssize_t sh_http1_chunked_decode(sh_http1_chunked_t *d, const char *buf, size_t len,
                                const char **data, size_t *data_len, int *done);

/* 1 if the comma-separated field value has `token` as an element
 * (case-insensitive, OWS ignored), else 0. */
int sh_http1_has_token(const char *value, size_t len, const char *token);

/* The next word of a field value split at commas, spaces and tabs
 * (Connection's options, Vary's names, cache tags): skips separators from
 * *p, returns the word's start with its length (> 0) in *len and moves *p
 * past it; NULL when only separators are left before e. */
const char *sh_http1_next_word(const char **p, const char *e, size_t *len);

/* Case-insensitive compare of a field name with a NUL-terminated name. */
int sh_http1_name_is(const sh_http1_header_t *h, const char *name);

/* Method id from its name (SH_HTTP_OTHER if not one of the known ones). */
int sh_http1_method_id(const char *m, size_t len);

/* The host of a Host field value or a target's authority, by nginx's
 * rules (ngx_http_validate_host): no NUL, whitespace, control byte or '/',
 * no "..", not empty once the port and a trailing dot are dropped.
 * Returns the length of the host part to use (the port and the trailing
 * dot cut off; the caller lowercases), or SH_EPARSE. */
ssize_t sh_http1_host(const char *host, size_t len);
/* The authority of an absolute-form target (RFC 9112 3.2.2), which wins
 * over the Host field: 1 with *auth set (host and port), 0 for any other
 * form. The parser has checked its grammar. */
int sh_http1_target_authority(const char *target, size_t len, const char **auth, size_t *auth_len);

#endif
