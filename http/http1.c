/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP/1.1 codec (RFC 9110, RFC 9112): request and response heads, the
 * chunked body decoder and small field helpers. Pure functions over caller
 * bytes: no sockets, no clock, no allocation, no mutable state outside the
 * caller's structs, so any thread may call it on its own buffers.
 *
 * How a head is parsed. One left-to-right pass over the bytes; every check
 * depends only on bytes already seen, so a prefix of a message either needs
 * more bytes (SH_EAGAIN) or fails exactly as the whole message does, and a
 * complete head gives the same result however it was fed. Each line is
 * scanned up to an effective end, min(bytes given, line limit, head limit):
 * reaching it because the bytes ran out is SH_EAGAIN, reaching it because a
 * limit did is SH_ELIMIT. That also rejects garbage at its first bad byte
 * instead of waiting for a line end that a slow client may never send.
 *
 * Speed. A 256-entry class table answers "is this a tchar / field byte /
 * target byte" with one load; field values and request targets, the long
 * parts of a head, are skipped eight bytes at a time with SWAR tests that
 * fall back to the table only for words holding an unusual byte (HTAB).
 * Framing fields (Host, Content-Length, Transfer-Encoding, Connection,
 * Expect, Upgrade) are recognised by length then a case-insensitive compare,
 * and interpreted as they are stored, so a head is walked once. Results are
 * spans into the caller's buffer; nothing is copied.
 *
 * Strictness. Anything that could let this proxy and a backend disagree on
 * where a message ends is an error (see http1.h). The chunked decoder is
 * stricter than the head parser about line ends: chunk lines must end in
 * CRLF (the RFC 9112 7.1 grammar), not a bare LF, because chunk-line
 * terminator leniency is a known request smuggling vector between proxies
 * and origins.
 */
#include "http/http1.h"

#include <string.h>

#include "core/err.h"

#define DEFAULT_MAX_REQUEST_LINE 8192
#define DEFAULT_MAX_HEADER_LINE  8192
#define DEFAULT_MAX_HEAD         65536

#define CHUNK_MAX_LINE     4096
#define CHUNK_MAX_TRAILERS 65536
#define CHUNK_MAX_SIZE     (UINT64_C(1) << 62)

/* Character classes (RFC 9110 5.6.2, 5.5, 5.6.4; RFC 9112 3.2). */
enum {
    C_TCHAR = 1,  /* token character */
    C_FIELD = 2,  /* field-value byte: HTAB, SP, VCHAR, obs-text */
    C_TARGET = 4, /* request-target byte: VCHAR only (0x21..0x7e) */
    C_HEX = 8,    /* HEXDIG */
    C_QDTEXT = 16 /* qdtext: HTAB, SP, VCHAR except '"' and '\\', obs-text */
};

#define __ 0
#define WS (C_FIELD | C_QDTEXT)                      /* HTAB, SP, obs-text */
#define TK (C_TCHAR | C_FIELD | C_TARGET | C_QDTEXT) /* token char */
#define HX (TK | C_HEX)                              /* hex digit */
#define SE (C_FIELD | C_TARGET | C_QDTEXT)           /* delimiter */
#define DQ (C_FIELD | C_TARGET)                      /* '"' and '\\' */

static const unsigned char cls[256] = {
    /* 0x00 */ __, __, __, __, __, __, __, __, __, WS, __, __, __, __, __, __,
    /* 0x10 */ __, __, __, __, __, __, __, __, __, __, __, __, __, __, __, __,
    /* 0x20 */ WS, TK, DQ, TK, TK, TK, TK, TK, SE, SE, TK, TK, SE, TK, TK, SE,
    /* 0x30 */ HX, HX, HX, HX, HX, HX, HX, HX, HX, HX, SE, SE, SE, SE, SE, SE,
    /* 0x40 */ SE, HX, HX, HX, HX, HX, HX, TK, TK, TK, TK, TK, TK, TK, TK, TK,
    /* 0x50 */ TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, SE, DQ, SE, TK, TK,
    /* 0x60 */ TK, HX, HX, HX, HX, HX, HX, TK, TK, TK, TK, TK, TK, TK, TK, TK,
    /* 0x70 */ TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, SE, TK, SE, TK, __,
    /* 0x80 */ WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS,
    /* 0x90 */ WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS,
    /* 0xa0 */ WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS,
    /* 0xb0 */ WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS,
    /* 0xc0 */ WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS,
    /* 0xd0 */ WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS,
    /* 0xe0 */ WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS,
    /* 0xf0 */ WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS, WS,
};

#undef __
#undef WS
#undef TK
#undef HX
#undef SE
#undef DQ

_Static_assert(sizeof(cls) == 256, "one class per byte value");

#define IS(c, k) (cls[(unsigned char)(c)] & (k))

static int is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* Case-insensitive compare of n bytes against a lowercase literal. */
static int ieq_lc(const unsigned char *s, const char *lc, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (lower(s[k]) != (unsigned char)lc[k])
            return 0;
    }
    return 1;
}

/* --- SWAR scanning ------------------------------------------------------ */

#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Nonzero iff some byte of x is below n (n <= 128); exact as a boolean. */
#define HAS_LESS(x, n) (((x)-ONES * (n)) & ~(x)&HIGHS)
/* Nonzero iff some byte of x is above n (n <= 127); exact as a boolean. */
#define HAS_MORE(x, n) ((((x) + ONES * (127 - (n))) | (x)) & HIGHS)
/* Nonzero iff some byte of x equals n. */
#define HAS_BYTE(x, n) HAS_LESS((x) ^ (ONES * (n)), 1)

static uint64_t load64(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof(x));
    return x;
}

/* First index in [i, end) that is not a field-value byte, or end. Words of
 * plain VCHAR/SP/obs-text are skipped whole; a word with a control byte or
 * DEL (HTAB, the line end, an error) is finished byte by byte. */
static size_t scan_field(const unsigned char *b, size_t i, size_t end)
{
    for (;;) {
        while (end - i >= 8) {
            uint64_t x = load64(b + i);
            if (HAS_LESS(x, 0x20) | HAS_BYTE(x, 0x7f))
                break;
            i += 8;
        }
        size_t stop = end - i >= 8 ? i + 8 : end;
        while (i < stop && IS(b[i], C_FIELD))
            i++;
        if (i < stop || i == end)
            return i;
    }
}

/* First index in [i, end) that is not a request-target byte, or end. */
static size_t scan_target(const unsigned char *b, size_t i, size_t end)
{
    while (end - i >= 8) {
        uint64_t x = load64(b + i);
        if (HAS_LESS(x, 0x21) | HAS_MORE(x, 0x7e))
            break;
        i += 8;
    }
    while (i < end && IS(b[i], C_TARGET))
        i++;
    return i;
}

static size_t scan_token(const unsigned char *b, size_t i, size_t end)
{
    while (i < end && IS(b[i], C_TCHAR))
        i++;
    return i;
}

/* --- list elements (RFC 9110 5.6.1) ------------------------------------- */

/* Next comma-separated element of v[*i..len) with OWS trimmed; empty
 * elements are skipped, as recipients must. Returns 0 at the end. */
static int next_elem(const unsigned char *v, size_t len, size_t *i, size_t *s, size_t *n)
{
    size_t k = *i;
    for (;;) {
        while (k < len && (is_ows(v[k]) || v[k] == ','))
            k++;
        if (k == len) {
            *i = k;
            return 0;
        }
        size_t start = k;
        while (k < len && v[k] != ',')
            k++;
        size_t e = k;
        while (e > start && is_ows(v[e - 1]))
            e--;
        *i = k;
        *s = start;
        *n = e - start;
        return 1;
    }
}

/* --- the parse context -------------------------------------------------- */

typedef struct {
    const unsigned char *b;
    size_t len;
    size_t head_lim; /* index where the head limit ends */
    int is_request;
    int fail;
    const char *reason;

    /* framing, gathered field by field */
    int64_t cl;
    unsigned cl_seen : 1;
    unsigned te_seen : 1;
    unsigned te_last_chunked : 1;
    unsigned te_unknown : 1;
    unsigned te_bad : 1;
    unsigned conn_close : 1;
    unsigned conn_keep_alive : 1;
    unsigned conn_upgrade : 1;
    unsigned upgrade_seen : 1;
    unsigned expect_continue : 1;
    unsigned te_chunked_n;
    unsigned te_n;
    unsigned host_n;
    const unsigned char *host;
    size_t host_len;
} parse_t;

static ssize_t fail(parse_t *p, int why, const char *reason)
{
    p->fail = why;
    p->reason = reason;
    switch (why) {
    case SH_HTTP1_FAIL_URI_TOO_LONG:
    case SH_HTTP1_FAIL_HEADER_TOO_LARGE:
    case SH_HTTP1_FAIL_TOO_MANY_HEADERS:
        return SH_ELIMIT;
    default:
        return SH_EPARSE;
    }
}

static size_t sat_add(size_t a, size_t b)
{
    return b > SIZE_MAX - a ? SIZE_MAX : a + b;
}

static size_t min3(size_t a, size_t b, size_t c)
{
    size_t m = a < b ? a : b;
    return m < c ? m : c;
}

/* The scan of a line reached its effective end: either the bytes ran out
 * (more may come) or a limit did. */
static ssize_t need(parse_t *p, size_t line_lim, int line_fail, const char *line_reason)
{
    if (p->len < line_lim && p->len < p->head_lim)
        return SH_EAGAIN;
    if (line_lim <= p->head_lim)
        return fail(p, line_fail, line_reason);
    return fail(p, SH_HTTP1_FAIL_HEADER_TOO_LARGE, "header section too large");
}

/* Consume a line end at b[i]: CRLF or bare LF (RFC 9112 2.2). Returns the
 * index after it, or a negative code (SH_EAGAIN handled by caller via eff). */
#define LINE_END_NEED ((size_t)-1)
#define LINE_END_BAD  ((size_t)-2)
static size_t line_end(const parse_t *p, size_t i, size_t eff)
{
    if (p->b[i] == '\n')
        return i + 1;
    if (p->b[i] != '\r')
        return LINE_END_BAD;
    if (i + 1 >= eff)
        return LINE_END_NEED;
    return p->b[i + 1] == '\n' ? i + 2 : LINE_END_BAD;
}

/* --- framing fields ----------------------------------------------------- */

/* Content-Length = 1*DIGIT; a list of one repeated value ("5, 5") is what
 * some senders produce when they merge fields, and is accepted (RFC 9110
 * 8.6); anything else, including an empty element, is rejected. */
static ssize_t note_content_length(parse_t *p, const unsigned char *v, size_t n)
{
    size_t i = 0;
    int any = 0;
    for (;;) {
        while (i < n && is_ows(v[i]))
            i++;
        size_t s = i;
        int64_t x = 0;
        while (i < n && v[i] >= '0' && v[i] <= '9') {
            int d = v[i] - '0';
            if (x > (INT64_MAX - d) / 10)
                return fail(p, SH_HTTP1_FAIL_SYNTAX, "Content-Length too large");
            x = x * 10 + d;
            i++;
        }
        if (i == s)
            return fail(p, SH_HTTP1_FAIL_SYNTAX, "invalid Content-Length");
        while (i < n && is_ows(v[i]))
            i++;
        if (i < n && v[i] != ',')
            return fail(p, SH_HTTP1_FAIL_SYNTAX, "invalid Content-Length");
        if ((p->cl_seen || any) && x != p->cl)
            return fail(p, SH_HTTP1_FAIL_SYNTAX, "conflicting Content-Length values");
        p->cl = x;
        any = 1;
        if (i == n)
            break;
        i++; /* the comma */
    }
    p->cl_seen = 1;
    return 0;
}

/* transfer-coding = token *( OWS ";" OWS transfer-parameter ). Only chunked
 * is implemented; the verdict waits for the whole head (finish_framing). */
static void note_transfer_encoding(parse_t *p, const unsigned char *v, size_t n)
{
    size_t i = 0, s, len;
    p->te_seen = 1;
    while (next_elem(v, n, &i, &s, &len)) {
        size_t t = scan_token(v, s, s + len);
        if (t == s) {
            p->te_bad = 1;
            continue;
        }
        p->te_n++;
        size_t after = t;
        while (after < s + len && is_ows(v[after]))
            after++;
        if (after < s + len && v[after] != ';')
            p->te_bad = 1; /* not token *( OWS ";" ... ) */
        if (t - s == 7 && ieq_lc(v + s, "chunked", 7)) {
            /* chunked takes no parameters (RFC 9112 7) */
            if (t != s + len)
                p->te_bad = 1;
            p->te_chunked_n++;
            p->te_last_chunked = 1;
        } else {
            p->te_unknown = 1;
            p->te_last_chunked = 0;
        }
    }
}

static void note_connection(parse_t *p, const unsigned char *v, size_t n)
{
    size_t i = 0, s, len;
    while (next_elem(v, n, &i, &s, &len)) {
        if (len == 5 && ieq_lc(v + s, "close", 5))
            p->conn_close = 1;
        else if (len == 10 && ieq_lc(v + s, "keep-alive", 10))
            p->conn_keep_alive = 1;
        else if (len == 7 && ieq_lc(v + s, "upgrade", 7))
            p->conn_upgrade = 1;
    }
}

/* Interpret one field line if it is a framing field. */
static ssize_t note_field(parse_t *p, const unsigned char *name, size_t nlen,
                          const unsigned char *v, size_t vlen)
{
    switch (nlen) {
    case 4:
        if (p->is_request && ieq_lc(name, "host", 4)) {
            /* RFC 9110 7.2: more than one Host is a 400 */
            if (++p->host_n > 1)
                return fail(p, SH_HTTP1_FAIL_SYNTAX, "duplicate Host");
            p->host = v;
            p->host_len = vlen;
        }
        break;
    case 6:
        if (ieq_lc(name, "expect", 6) && sh_http1_has_token((const char *)v, vlen, "100-continue"))
            p->expect_continue = 1;
        break;
    case 7:
        if (ieq_lc(name, "upgrade", 7))
            p->upgrade_seen = 1;
        break;
    case 10:
        if (ieq_lc(name, "connection", 10))
            note_connection(p, v, vlen);
        break;
    case 14:
        if (ieq_lc(name, "content-length", 14))
            return note_content_length(p, v, vlen);
        break;
    case 17:
        if (ieq_lc(name, "transfer-encoding", 17))
            note_transfer_encoding(p, v, vlen);
        break;
    default:
        break;
    }
    return 0;
}

/* RFC 9112 6.1 and 6.3: the framing verdict once all fields are known. */
static ssize_t finish_framing(parse_t *p, int version)
{
    if (!p->te_seen)
        return 0;
    if (version == 10)
        return fail(p, SH_HTTP1_FAIL_SYNTAX, "Transfer-Encoding in HTTP/1.0");
    if (p->cl_seen)
        return fail(p, SH_HTTP1_FAIL_SYNTAX, "both Transfer-Encoding and Content-Length");
    if (p->te_bad || p->te_n == 0)
        return fail(p, SH_HTTP1_FAIL_SYNTAX, "invalid Transfer-Encoding");
    if (p->is_request && !p->te_last_chunked)
        return fail(p, SH_HTTP1_FAIL_SYNTAX, "final transfer coding is not chunked");
    if (p->te_unknown)
        return fail(p, SH_HTTP1_FAIL_NOT_IMPLEMENTED, "unsupported transfer coding");
    if (p->te_chunked_n > 1)
        return fail(p, SH_HTTP1_FAIL_SYNTAX, "chunked applied more than once");
    return 0;
}

/* --- field section (RFC 9112 5) ----------------------------------------- */

/* Parse field lines from b[i] through the empty line. Returns the index
 * after the head, SH_EAGAIN, or an error. */
static ssize_t parse_fields(parse_t *p, size_t i, size_t max_line, sh_http1_header_t *hdrs,
                            size_t max_headers, size_t *nheaders)
{
    const unsigned char *b = p->b;
    size_t n = 0;

    for (;;) {
        size_t line_lim = sat_add(i, max_line);
        size_t eff = min3(p->len, line_lim, p->head_lim);
        if (i >= eff)
            return need(p, line_lim, SH_HTTP1_FAIL_HEADER_TOO_LARGE, "header line too long");

        unsigned char c = b[i];
        if (c == '\r' || c == '\n') {
            size_t e = line_end(p, i, eff);
            if (e == LINE_END_NEED)
                return need(p, line_lim, SH_HTTP1_FAIL_HEADER_TOO_LARGE, "header line too long");
            if (e == LINE_END_BAD)
                return fail(p, SH_HTTP1_FAIL_SYNTAX, "bare CR");
            *nheaders = n;
            return (ssize_t)e;
        }
        if (is_ows(c)) {
            /* obs-fold (RFC 9112 5.2), or whitespace before the first
             * field line (2.2): both rejected. */
            return fail(p, SH_HTTP1_FAIL_SYNTAX,
                        n ? "obs-fold in field value" : "whitespace before first field");
        }

        size_t ns = i;
        i = scan_token(b, i, eff);
        if (i == eff)
            return need(p, line_lim, SH_HTTP1_FAIL_HEADER_TOO_LARGE, "header line too long");
        if (b[i] != ':') {
            if (is_ows(b[i]) && i > ns)
                return fail(p, SH_HTTP1_FAIL_SYNTAX, "whitespace before colon");
            if (b[i] == '\r')
                return fail(p, SH_HTTP1_FAIL_SYNTAX, "bare CR");
            return fail(p, SH_HTTP1_FAIL_SYNTAX, "invalid character in field name");
        }
        if (i == ns)
            return fail(p, SH_HTTP1_FAIL_SYNTAX, "empty field name");
        size_t ne = i++;

        while (i < eff && is_ows(b[i]))
            i++;
        size_t vs = i;
        i = scan_field(b, i, eff);
        if (i == eff)
            return need(p, line_lim, SH_HTTP1_FAIL_HEADER_TOO_LARGE, "header line too long");
        size_t ve = i;
        size_t e = line_end(p, i, eff);
        if (e == LINE_END_NEED)
            return need(p, line_lim, SH_HTTP1_FAIL_HEADER_TOO_LARGE, "header line too long");
        if (e == LINE_END_BAD)
            return fail(p, SH_HTTP1_FAIL_SYNTAX,
                        b[i] == '\r' ? "bare CR" : "invalid character in field value");
        i = e;
        while (ve > vs && is_ows(b[ve - 1]))
            ve--;

        if (n >= max_headers)
            return fail(p, SH_HTTP1_FAIL_TOO_MANY_HEADERS, "too many header fields");
        hdrs[n].name = (const char *)b + ns;
        hdrs[n].name_len = ne - ns;
        hdrs[n].value = (const char *)b + vs;
        hdrs[n].value_len = ve - vs;
        n++;

        ssize_t rc = note_field(p, b + ns, ne - ns, b + vs, ve - vs);
        if (rc < 0)
            return rc;
    }
}

/* "HTTP/" DIGIT "." DIGIT at b[i], byte by byte so that a bad byte fails at
 * once (the name is case-sensitive, RFC 9112 2.3). Returns the index after
 * it and sets *major and *minor; SH_EAGAIN when eff comes first (the caller
 * tells a limit from a short buffer); or fails. */
static ssize_t parse_version(parse_t *p, size_t i, size_t eff, int *major, int *minor)
{
    static const char pat[] = "HTTP/0.0";
    for (size_t k = 0; k < 8; k++) {
        if (i + k >= eff)
            return SH_EAGAIN; /* caller maps to need() */
        unsigned char c = p->b[i + k];
        if (k == 5 || k == 7) {
            if (c < '0' || c > '9')
                return fail(p, SH_HTTP1_FAIL_SYNTAX, "invalid HTTP version");
        } else if (c != (unsigned char)pat[k]) {
            return fail(p, SH_HTTP1_FAIL_SYNTAX, "invalid HTTP version");
        }
    }
    *major = p->b[i + 5] - '0';
    *minor = p->b[i + 7] - '0';
    return (ssize_t)(i + 8);
}

static int version_of(int major, int minor)
{
    if (major == 1 && minor == 0)
        return 10;
    if (major == 1 && minor == 1)
        return 11;
    return 0;
}

static void parse_init(parse_t *p, const char *buf, size_t len, size_t max_head)
{
    memset(p, 0, sizeof(*p));
    p->b = (const unsigned char *)buf;
    p->len = len;
    p->head_lim = max_head;
    p->cl = -1;
}

static int authority_ok(const unsigned char *a, size_t n);

/* The request-target forms of RFC 9112 3.2, by method. */
static int target_ok(int method_id, const unsigned char *t, size_t n)
{
    if (method_id == SH_HTTP_CONNECT) {
        /* authority-form: uri-host ":" port; no userinfo, path or query */
        size_t colon = n;
        for (size_t k = 0; k < n; k++) {
            if (t[k] == '/' || t[k] == '?' || t[k] == '#' || t[k] == '@')
                return 0;
            if (t[k] == ':')
                colon = k;
        }
        if (colon == 0 || colon >= n - 1)
            return 0;
        for (size_t k = colon + 1; k < n; k++) {
            if (t[k] < '0' || t[k] > '9')
                return 0;
        }
        return 1;
    }
    if (t[0] == '/')
        return 1; /* origin-form */
    if (n == 1 && t[0] == '*')
        return method_id == SH_HTTP_OPTIONS; /* asterisk-form */
    /* absolute-form: scheme ":" ... (RFC 3986 3.1) */
    if (!((t[0] | 0x20) >= 'a' && (t[0] | 0x20) <= 'z'))
        return 0;
    for (size_t k = 1; k < n; k++) {
        unsigned char c = t[k];
        if (c == ':')
            return authority_ok(t + k + 1, n - k - 1);
        if (!(((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
              c == '-' || c == '.'))
            return 0;
    }
    return 0;
}

/* The end of the authority of an absolute-form target: the first '/' or
 * '?' or the end. */
static size_t authority_end(const unsigned char *a, size_t n)
{
    size_t k = 0;
    while (k < n && a[k] != '/' && a[k] != '?')
        k++;
    return k;
}

/* After "scheme:" of an absolute-form target, nginx's request-line grammar
 * (a stricter one than RFC 3986's, which lets the Host rules below see a
 * plain name): "//", then a name of letters, digits, '.' and '-' or an
 * IP literal in brackets, then an optional ':' and digits, then '/', '?'
 * or the end. No userinfo ('@'), no fragment, no percent-encoding. */
static int authority_ok(const unsigned char *a, size_t n)
{
    if (n < 2 || a[0] != '/' || a[1] != '/')
        return 0;
    a += 2;
    n = authority_end(a, n - 2);
    size_t k = 0;
    if (n > 0 && a[0] == '[') {
        while (k < n && a[k] != ']') {
            unsigned char c = a[k];
            if (c == '@' || c == '#' || (k > 0 && c == '['))
                return 0;
            k++;
        }
        if (k == n)
            return 0;
        k++;
    } else {
        while (k < n && (((a[k] | 0x20) >= 'a' && (a[k] | 0x20) <= 'z') ||
                         (a[k] >= '0' && a[k] <= '9') || a[k] == '.' || a[k] == '-'))
            k++;
        if (k == 0)
            return 0;
    }
    if (k < n && a[k] == ':') {
        for (k++; k < n; k++)
            if (a[k] < '0' || a[k] > '9')
                return 0;
    }
    return k == n;
}

int sh_http1_target_authority(const char *target, size_t len, const char **auth, size_t *auth_len)
{
    const unsigned char *t = (const unsigned char *)target;
    if (len == 0 || t[0] == '/' || t[0] == '*')
        return 0;
    const unsigned char *colon = memchr(t, ':', len);
    if (colon == NULL || (size_t)(t + len - colon) < 3 || colon[1] != '/' || colon[2] != '/')
        return 0; /* authority-form (CONNECT) */
    const unsigned char *a = colon + 3;
    *auth = (const char *)a;
    *auth_len = authority_end(a, (size_t)(t + len - a));
    return 1;
}

ssize_t sh_http1_host(const char *host, size_t len)
{
    const unsigned char *h = (const unsigned char *)host;
    size_t dot = SIZE_MAX, host_len = len;
    enum { USUAL, LITERAL, REST } st = USUAL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = h[i];
        switch (c) {
        case '.':
            if (i > 0 && dot == i - 1)
                return SH_EPARSE; /* ".." */
            dot = i;
            break;
        case ':':
            if (st == USUAL) {
                host_len = i;
                st = REST;
            }
            break;
        case '[':
            if (i == 0)
                st = LITERAL;
            break;
        case ']':
            if (st == LITERAL) {
                host_len = i + 1;
                st = REST;
            }
            break;
        default:
            if (c == '/' || c <= 0x20 || c == 0x7f) /* NUL, SP, HTAB, CTL */
                return SH_EPARSE;
            break;
        }
    }
    if (host_len > 0 && dot == host_len - 1)
        host_len--; /* "example.com." is "example.com" */
    if (host_len == 0)
        return SH_EPARSE;
    return (ssize_t)host_len;
}

static ssize_t finish_request(parse_t *p, ssize_t rc, sh_http1_request_t *req)
{
    if (rc >= 0 || rc == SH_EAGAIN)
        return rc;
    req->fail = p->fail;
    req->reason = p->reason;
    switch (p->fail) {
    case SH_HTTP1_FAIL_URI_TOO_LONG:
        req->status = 414;
        break;
    case SH_HTTP1_FAIL_HEADER_TOO_LARGE:
    case SH_HTTP1_FAIL_TOO_MANY_HEADERS:
        req->status = 431;
        break;
    case SH_HTTP1_FAIL_VERSION:
        req->status = 505;
        break;
    case SH_HTTP1_FAIL_NOT_IMPLEMENTED:
        req->status = 501;
        break;
    default:
        req->status = 400;
        break;
    }
    return rc;
}

static ssize_t parse_request(parse_t *p, sh_http1_request_t *req, const sh_http1_limits_t *lim)
{
    const unsigned char *b = p->b;
    size_t max_rl = lim && lim->max_request_line ? lim->max_request_line : DEFAULT_MAX_REQUEST_LINE;
    size_t max_hl = lim && lim->max_header_line ? lim->max_header_line : DEFAULT_MAX_HEADER_LINE;
    size_t i = 0;

    /* RFC 9112 2.2: a server SHOULD ignore empty lines before the
     * request-line (left by clients that end a body with an extra CRLF).
     * They count against the head limit. */
    for (;;) {
        size_t eff = p->len < p->head_lim ? p->len : p->head_lim;
        if (i >= eff)
            return need(p, SIZE_MAX, 0, NULL);
        if (b[i] != '\r' && b[i] != '\n')
            break;
        size_t e = line_end(p, i, eff);
        if (e == LINE_END_NEED)
            return need(p, SIZE_MAX, 0, NULL);
        if (e == LINE_END_BAD)
            return fail(p, SH_HTTP1_FAIL_SYNTAX, "bare CR");
        i = e;
    }

    size_t line_lim = sat_add(i, max_rl);
    size_t eff = min3(p->len, line_lim, p->head_lim);
#define NEED_RL() need(p, line_lim, SH_HTTP1_FAIL_URI_TOO_LONG, "request line too long")

    /* method SP */
    size_t ms = i;
    i = scan_token(b, i, eff);
    if (i == eff)
        return NEED_RL();
    if (b[i] != ' ' || i == ms)
        return fail(p, SH_HTTP1_FAIL_SYNTAX, "invalid method");
    size_t me = i++;

    /* request-target SP */
    size_t ts = i;
    i = scan_target(b, i, eff);
    if (i == eff)
        return NEED_RL();
    if (b[i] != ' ' || i == ts)
        return fail(p, SH_HTTP1_FAIL_SYNTAX, "invalid request target");
    size_t te = i++;

    /* HTTP-version line-end */
    int major, minor;
    ssize_t rc = parse_version(p, i, eff, &major, &minor);
    if (rc == SH_EAGAIN)
        return NEED_RL();
    if (rc < 0)
        return rc;
    i = (size_t)rc;
    if (i == eff)
        return NEED_RL();
    size_t e = line_end(p, i, eff);
    if (e == LINE_END_NEED)
        return NEED_RL();
    if (e == LINE_END_BAD)
        return fail(p, SH_HTTP1_FAIL_SYNTAX, b[i] == '\r' ? "bare CR" : "invalid HTTP version");
#undef NEED_RL
    i = e;

    int version = version_of(major, minor);
    if (!version)
        return fail(p, SH_HTTP1_FAIL_VERSION, "unsupported HTTP version");

    req->method = (const char *)b + ms;
    req->method_len = me - ms;
    req->method_id = sh_http1_method_id(req->method, req->method_len);
    req->target = (const char *)b + ts;
    req->target_len = te - ts;
    req->version = version;
    if (!target_ok(req->method_id, b + ts, te - ts))
        return fail(p, SH_HTTP1_FAIL_SYNTAX, "invalid request target form");

    rc = parse_fields(p, i, max_hl, req->headers, req->max_headers, &req->nheaders);
    if (rc < 0)
        return rc;

    if (version == 11 && p->host_n == 0)
        return fail(p, SH_HTTP1_FAIL_SYNTAX, "missing Host");
    ssize_t frc = finish_framing(p, version);
    if (frc < 0)
        return frc;

    req->content_length = p->te_seen ? -1 : p->cl;
    req->chunked = p->te_seen;
    req->keep_alive = version == 11 ? !p->conn_close : (p->conn_keep_alive && !p->conn_close);
    /* RFC 9110 10.1.1 and 7.8: HTTP/1.0 requests cannot expect 100 or
     * upgrade; those fields are ignored there. */
    req->expect_continue = version == 11 && p->expect_continue;
    req->upgrade = version == 11 && p->conn_upgrade && p->upgrade_seen;
    req->host = (const char *)p->host;
    req->host_len = p->host_len;
    return rc;
}

ssize_t sh_http1_parse_request(const char *buf, size_t len, sh_http1_request_t *req,
                               const sh_http1_limits_t *limits)
{
    parse_t p;
    parse_init(&p, buf, len, limits && limits->max_head ? limits->max_head : DEFAULT_MAX_HEAD);
    p.is_request = 1;

    req->method = NULL;
    req->method_len = 0;
    req->method_id = SH_HTTP_OTHER;
    req->target = NULL;
    req->target_len = 0;
    req->version = 0;
    req->nheaders = 0;
    req->content_length = -1;
    req->chunked = 0;
    req->keep_alive = 0;
    req->expect_continue = 0;
    req->upgrade = 0;
    req->host = NULL;
    req->host_len = 0;
    req->fail = SH_HTTP1_FAIL_NONE;
    req->status = 0;
    req->reason = NULL;

    return finish_request(&p, parse_request(&p, req, limits), req);
}

/* --- responses ---------------------------------------------------------- */

static ssize_t parse_response(parse_t *p, sh_http1_response_t *resp, const sh_http1_limits_t *lim)
{
    const unsigned char *b = p->b;
    size_t max_sl = lim && lim->max_request_line ? lim->max_request_line : DEFAULT_MAX_REQUEST_LINE;
    size_t max_hl = lim && lim->max_header_line ? lim->max_header_line : DEFAULT_MAX_HEADER_LINE;
    size_t i = 0;

    /* status-line = HTTP-version SP status-code SP [ reason-phrase ]
     * (RFC 9112 4); the status line shares the request-line limit. */
    size_t line_lim = sat_add(i, max_sl);
    size_t eff = min3(p->len, line_lim, p->head_lim);
#define NEED_SL() need(p, line_lim, SH_HTTP1_FAIL_HEADER_TOO_LARGE, "status line too long")

    int major, minor;
    ssize_t rc = parse_version(p, i, eff, &major, &minor);
    if (rc == SH_EAGAIN)
        return NEED_SL();
    if (rc < 0)
        return rc;
    i = (size_t)rc;
    if (i == eff)
        return NEED_SL();
    if (b[i] != ' ')
        return fail(p, SH_HTTP1_FAIL_SYNTAX, "invalid status line");
    int version = version_of(major, minor);
    if (!version)
        return fail(p, SH_HTTP1_FAIL_VERSION, "unsupported HTTP version");
    i++;

    int status = 0;
    for (int k = 0; k < 3; k++, i++) {
        if (i == eff)
            return NEED_SL();
        if (b[i] < '0' || b[i] > '9' || (k == 0 && b[i] == '0'))
            return fail(p, SH_HTTP1_FAIL_SYNTAX, "invalid status code");
        status = status * 10 + (b[i] - '0');
    }
    if (i == eff)
        return NEED_SL();

    /* The SP before an empty reason-phrase is required by the grammar but
     * widely omitted; both forms are accepted. */
    size_t rs = i, re = i;
    if (b[i] == ' ') {
        rs = ++i;
        i = scan_field(b, i, eff);
        if (i == eff)
            return NEED_SL();
        re = i;
    }
    size_t e = line_end(p, i, eff);
    if (e == LINE_END_NEED)
        return NEED_SL();
    if (e == LINE_END_BAD)
        return fail(p, SH_HTTP1_FAIL_SYNTAX,
                    b[i] == '\r' ? "bare CR" : "invalid character in status line");
#undef NEED_SL
    i = e;

    resp->version = version;
    resp->status = status;
    resp->reason_phrase = (const char *)b + rs;
    resp->reason_len = re - rs;

    rc = parse_fields(p, i, max_hl, resp->headers, resp->max_headers, &resp->nheaders);
    if (rc < 0)
        return rc;
    ssize_t frc = finish_framing(p, version);
    if (frc < 0)
        return frc;

    resp->content_length = p->te_seen ? -1 : p->cl;
    resp->chunked = p->te_seen;
    resp->keep_alive = version == 11 ? !p->conn_close : (p->conn_keep_alive && !p->conn_close);
    resp->has_connection_upgrade = p->conn_upgrade;
    return rc;
}

ssize_t sh_http1_parse_response(const char *buf, size_t len, sh_http1_response_t *resp,
                                const sh_http1_limits_t *limits)
{
    parse_t p;
    parse_init(&p, buf, len, limits && limits->max_head ? limits->max_head : DEFAULT_MAX_HEAD);

    resp->version = 0;
    resp->status = 0;
    resp->reason_phrase = NULL;
    resp->reason_len = 0;
    resp->nheaders = 0;
    resp->content_length = -1;
    resp->chunked = 0;
    resp->keep_alive = 0;
    resp->has_connection_upgrade = 0;
    resp->fail = SH_HTTP1_FAIL_NONE;
    resp->reason = NULL;

    ssize_t rc = parse_response(&p, resp, limits);
    if (rc < 0 && rc != SH_EAGAIN) {
        resp->fail = p.fail;
        resp->reason = p.reason;
    }
    return rc;
}

/* --- chunked body (RFC 9112 7.1) ---------------------------------------- */

/* Decoder states. Those from CK_SIZE to CK_SIZE_LF are on a chunk-size
 * line, those from CK_TR_START to CK_END_LF in the trailer section; both
 * ranges count line bytes against CHUNK_MAX_LINE. */
enum {
    CK_SIZE = 0,     /* chunk-size hex digits (d->digits so far) */
    CK_EXT_WS,       /* BWS that must be followed by ";" */
    CK_EXT_NAME_PRE, /* after ";", BWS then chunk-ext-name */
    CK_EXT_NAME,     /* in chunk-ext-name */
    CK_EXT_NAME_WS,  /* BWS after the name: "=" or ";" next */
    CK_EXT_VAL_PRE,  /* after "=", BWS then token or quoted-string */
    CK_EXT_VAL_TOK,  /* in a token value */
    CK_EXT_VAL_QS,   /* in a quoted-string value */
    CK_EXT_VAL_ESC,  /* after a backslash in a quoted-string */
    CK_EXT_VAL_END,  /* after a closing quote: ";" , BWS or CR next */
    CK_SIZE_LF,      /* CR seen at the end of the size line */
    CK_DATA,         /* in chunk data, d->remaining bytes left */
    CK_DATA_CR,      /* CRLF after chunk data */
    CK_DATA_LF,
    CK_TR_START, /* start of a trailer line or the final CRLF */
    CK_TR_NAME,  /* in a trailer field name */
    CK_TR_VALUE, /* in a trailer field value */
    CK_TR_LF,    /* CR seen at the end of a trailer line */
    CK_END_LF,   /* CR seen on the final empty line */
    CK_DONE,     /* the whole body is consumed */
    CK_ERROR     /* a previous call failed; sticky */
};

void sh_http1_chunked_init(sh_http1_chunked_t *d)
{
    memset(d, 0, sizeof(*d));
    d->state = CK_SIZE;
}

static ssize_t ck_fail(sh_http1_chunked_t *d, int *done)
{
    d->state = CK_ERROR;
    *done = 0;
    return SH_EPARSE;
}

/* One byte of a size line, trailer or delimiter; returns 0 or -1. */
static int ck_step(sh_http1_chunked_t *d, unsigned char c)
{
    switch (d->state) {
    case CK_SIZE:
        if (IS(c, C_HEX)) {
            unsigned v = c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
            if (d->remaining > (CHUNK_MAX_SIZE - v) / 16)
                return -1;
            d->remaining = d->remaining * 16 + v;
            d->digits++;
            return 0;
        }
        if (d->digits == 0)
            return -1;
        if (c == '\r')
            d->state = CK_SIZE_LF;
        else if (c == ';')
            d->state = CK_EXT_NAME_PRE;
        else if (is_ows(c))
            d->state = CK_EXT_WS;
        else
            return -1;
        return 0;
    case CK_EXT_WS:
    case CK_EXT_VAL_END:
        if (c == ';')
            d->state = CK_EXT_NAME_PRE;
        else if (is_ows(c))
            d->state = CK_EXT_WS;
        else if (c == '\r' && d->state == CK_EXT_VAL_END)
            d->state = CK_SIZE_LF;
        else
            return -1;
        return 0;
    case CK_EXT_NAME_PRE:
        if (IS(c, C_TCHAR))
            d->state = CK_EXT_NAME;
        else if (!is_ows(c))
            return -1;
        return 0;
    case CK_EXT_NAME:
    case CK_EXT_VAL_TOK:
        if (IS(c, C_TCHAR))
            return 0;
        if (c == ';')
            d->state = CK_EXT_NAME_PRE;
        else if (c == '\r')
            d->state = CK_SIZE_LF;
        else if (c == '=' && d->state == CK_EXT_NAME)
            d->state = CK_EXT_VAL_PRE;
        else if (is_ows(c))
            d->state = d->state == CK_EXT_NAME ? CK_EXT_NAME_WS : CK_EXT_WS;
        else
            return -1;
        return 0;
    case CK_EXT_NAME_WS:
        if (c == '=')
            d->state = CK_EXT_VAL_PRE;
        else if (c == ';')
            d->state = CK_EXT_NAME_PRE;
        else if (!is_ows(c))
            return -1;
        return 0;
    case CK_EXT_VAL_PRE:
        if (IS(c, C_TCHAR))
            d->state = CK_EXT_VAL_TOK;
        else if (c == '"')
            d->state = CK_EXT_VAL_QS;
        else if (!is_ows(c))
            return -1;
        return 0;
    case CK_EXT_VAL_QS:
        if (c == '"')
            d->state = CK_EXT_VAL_END;
        else if (c == '\\')
            d->state = CK_EXT_VAL_ESC;
        else if (!IS(c, C_QDTEXT))
            return -1;
        return 0;
    case CK_EXT_VAL_ESC:
        if (!IS(c, C_FIELD)) /* HTAB / SP / VCHAR / obs-text */
            return -1;
        d->state = CK_EXT_VAL_QS;
        return 0;
    case CK_SIZE_LF:
        if (c != '\n')
            return -1;
        d->line_bytes = 0;
        if (d->remaining == 0) {
            d->state = CK_TR_START;
        } else {
            d->state = CK_DATA;
        }
        return 0;
    case CK_DATA_CR:
        if (c != '\r')
            return -1;
        d->state = CK_DATA_LF;
        return 0;
    case CK_DATA_LF:
        if (c != '\n')
            return -1;
        d->state = CK_SIZE;
        d->digits = 0;
        d->remaining = 0;
        d->line_bytes = 0;
        return 0;
    case CK_TR_START:
        if (c == '\r')
            d->state = CK_END_LF;
        else if (IS(c, C_TCHAR))
            d->state = CK_TR_NAME;
        else
            return -1; /* includes obs-fold and bare LF */
        return 0;
    case CK_TR_NAME:
        if (c == ':')
            d->state = CK_TR_VALUE;
        else if (!IS(c, C_TCHAR))
            return -1;
        return 0;
    case CK_TR_VALUE:
        if (c == '\r')
            d->state = CK_TR_LF;
        else if (!IS(c, C_FIELD))
            return -1;
        return 0;
    case CK_TR_LF:
        if (c != '\n')
            return -1;
        d->state = CK_TR_START;
        d->line_bytes = 0;
        return 0;
    case CK_END_LF:
        if (c != '\n')
            return -1;
        d->state = CK_DONE;
        return 0;
    default:
        return -1;
    }
}

ssize_t sh_http1_chunked_decode(sh_http1_chunked_t *d, const char *buf, size_t len,
                                const char **data, size_t *data_len, int *done)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t i = 0;

    *data = NULL;
    *data_len = 0;
    if (d->state == CK_ERROR || d->state < 0 || d->state > CK_ERROR)
        return ck_fail(d, done);

    while (i < len && d->state != CK_DONE) {
        if (d->state == CK_DATA) {
            size_t avail = len - i;
            size_t n = d->remaining < avail ? (size_t)d->remaining : avail;
            *data = buf + i;
            *data_len = n;
            i += n;
            d->remaining -= n;
            if (d->remaining == 0)
                d->state = CK_DATA_CR;
            break; /* hand the span over before decoding further */
        }
        if (d->state <= CK_SIZE_LF || d->state >= CK_TR_START) {
            if (++d->line_bytes > CHUNK_MAX_LINE)
                return ck_fail(d, done);
        }
        if (d->state >= CK_TR_START) {
            if (++d->trailer_bytes > CHUNK_MAX_TRAILERS)
                return ck_fail(d, done);
        }
        if (ck_step(d, b[i]) < 0)
            return ck_fail(d, done);
        i++;
    }
    *done = d->state == CK_DONE;
    return (ssize_t)i;
}

/* --- helpers ------------------------------------------------------------ */

int sh_http1_has_token(const char *value, size_t len, const char *token)
{
    const unsigned char *v = (const unsigned char *)value;
    size_t tlen = strlen(token);
    size_t i = 0, s, n;
    while (next_elem(v, len, &i, &s, &n)) {
        if (n != tlen)
            continue;
        size_t k = 0;
        while (k < n && lower(v[s + k]) == lower((unsigned char)token[k]))
            k++;
        if (k == n)
            return 1;
    }
    return 0;
}

const char *sh_http1_next_word(const char **p, const char *e, size_t *len)
{
    const char *v = *p;
    while (v < e && (*v == ' ' || *v == '\t' || *v == ','))
        v++;
    const char *t = v;
    while (v < e && *v != ',' && *v != ' ' && *v != '\t')
        v++;
    *p = v;
    *len = (size_t)(v - t);
    return v > t ? t : NULL;
}

int sh_http1_name_is(const sh_http1_header_t *h, const char *name)
{
    size_t n = strlen(name);
    if (h->name_len != n)
        return 0;
    const unsigned char *a = (const unsigned char *)h->name;
    const unsigned char *b = (const unsigned char *)name;
    for (size_t k = 0; k < n; k++) {
        if (lower(a[k]) != lower(b[k]))
            return 0;
    }
    return 1;
}

int sh_http1_method_id(const char *m, size_t len)
{
    /* Methods are case-sensitive (RFC 9110 9.1). */
#define M(s, id)                                                                                   \
    if (len == sizeof(s) - 1 && memcmp(m, s, sizeof(s) - 1) == 0)                                  \
        return id;
    switch (len) {
    case 3:
        M("GET", SH_HTTP_GET)
        M("PUT", SH_HTTP_PUT)
        break;
    case 4:
        M("HEAD", SH_HTTP_HEAD)
        M("POST", SH_HTTP_POST)
        break;
    case 5:
        M("TRACE", SH_HTTP_TRACE)
        M("PATCH", SH_HTTP_PATCH)
        break;
    case 6:
        M("DELETE", SH_HTTP_DELETE)
        break;
    case 7:
        M("CONNECT", SH_HTTP_CONNECT)
        M("OPTIONS", SH_HTTP_OPTIONS)
        break;
    default:
        break;
    }
#undef M
    return SH_HTTP_OTHER;
}
