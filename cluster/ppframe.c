/* SPDX-License-Identifier: Apache-2.0 */
/* Push-pull frames: see ppframe.h. Pure; any thread, one reader per frame. */
#include "cluster/ppframe.h"

#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

_Static_assert(SH_PPFRAME_HEADLEN == 54, "the stream frame head is 54 bytes");
_Static_assert(SH_PPFRAME_MAX < (1u << 25), "a legacy length's high byte is 0 or 1");

enum {
    S_HEAD,   /* the first 4 bytes, then (stream) the rest of the 54-byte head */
    S_LEGACY, /* a legacy envelope, buffered whole before it can be opened */
    S_BODY,   /* stream body chunks, each opened as it completes */
    S_DONE,
    S_FAILED,
};

struct sh_ppframe_reader_s {
    sh_keyring_t *kr;
    int state, legacy, authenticated;
    uint8_t head[SH_PPFRAME_HEADLEN];
    size_t have;  /* S_HEAD: bytes in head; S_LEGACY: bytes in buf */
    size_t total; /* legacy: envelope length; stream: plaintext length */
    size_t taken;
    uint8_t *buf; /* legacy: the envelope (opened in place) */
    size_t cap;
    sh_keyring_stream_t st;
    uint8_t *chunk; /* one sealed body chunk */
    size_t chunk_cap, chunk_have, chunk_len;
    uint8_t *pt; /* stream: the plaintext opened so far */
    size_t pt_len, pt_cap;
};

static uint32_t get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* ------------------------------------------------------------ sealing -- */

long sh_ppframe_seal(sh_keyring_t *kr, const uint8_t *pt, size_t len, int legacy, uint8_t **out)
{
    *out = NULL;
    if (len == 0 || len > SH_PPFRAME_MAX)
        return SH_ELIMIT;
    if (legacy) {
        size_t cap = 4 + len + SH_KEYRING_OVERHEAD;
        uint8_t *b = sh_malloc(cap);
        long n = sh_keyring_seal(kr, pt, len, b + 4, cap - 4);
        if (n < 0) {
            sh_free(b);
            return n;
        }
        put_u32(b, (uint32_t)n);
        *out = b;
        return 4 + n;
    }
    size_t nchunks = (len + SH_PPFRAME_CHUNK - 1) / SH_PPFRAME_CHUNK;
    size_t flen = SH_PPFRAME_HEADLEN + len + nchunks * SH_KEYRING_STREAM_ABYTES;
    uint8_t *b = sh_malloc(flen);
    sh_keyring_stream_t st;
    b[0] = SH_PPFRAME_MAGIC;
    int rc = sh_keyring_stream_seal_start(kr, &st, b + 1);
    if (rc < 0) {
        sh_free(b);
        return rc;
    }
    uint8_t hp[8] = {0};
    put_u32(hp, (uint32_t)len);
    /* The head chunk binds the marker and key id (AD) to the stream. */
    sh_keyring_stream_seal(&st, hp, sizeof(hp), b, 5, 0, b + 1 + SH_KEYRING_STREAM_HDRLEN);
    size_t off = SH_PPFRAME_HEADLEN;
    for (size_t done = 0; done < len;) {
        size_t n = min_sz(SH_PPFRAME_CHUNK, len - done);
        sh_keyring_stream_seal(&st, pt + done, n, NULL, 0, done + n == len, b + off);
        done += n;
        off += n + SH_KEYRING_STREAM_ABYTES;
    }
    memset(&st, 0, sizeof(st)); /* the stream's key state */
    *out = b;
    return (long)flen;
}

/* ------------------------------------------------------------ reading -- */

sh_ppframe_reader_t *sh_ppframe_reader_create(sh_keyring_t *kr)
{
    sh_ppframe_reader_t *r = sh_new(sh_ppframe_reader_t);
    r->kr = kr;
    return r;
}

static void release(sh_ppframe_reader_t *r)
{
    sh_free(r->chunk);
    r->chunk = NULL;
    r->chunk_cap = 0;
    memset(&r->st, 0, sizeof(r->st));
}

void sh_ppframe_reader_destroy(sh_ppframe_reader_t *r)
{
    if (r == NULL)
        return;
    release(r);
    sh_free(r->buf);
    sh_free(r->pt);
    sh_free(r);
}

/* Sealed size of the body chunk that starts at plaintext offset pt_len. */
static size_t chunk_plain(const sh_ppframe_reader_t *r)
{
    return min_sz(SH_PPFRAME_CHUNK, r->total - r->pt_len);
}

/* A buffer of cap bytes holding have, that needs need: its next capacity.
 * Doubling (never past total) keeps the copies of realloc linear in the
 * frame; every growth is announced by sh_ppframe_next_grow first. */
static size_t next_cap(size_t cap, size_t need, size_t total)
{
    size_t c = cap * 2 > need ? cap * 2 : need;
    return c < total ? c : total;
}

static size_t legacy_grow(const sh_ppframe_reader_t *r)
{
    if (r->have < r->cap)
        return 0;
    return next_cap(r->cap, r->cap + min_sz(SH_PPFRAME_STEP, r->total - r->cap), r->total) - r->cap;
}

static size_t pt_grow(const sh_ppframe_reader_t *r)
{
    size_t need = r->pt_len + chunk_plain(r);
    if (r->chunk_have != 0 || need <= r->pt_cap)
        return 0;
    return next_cap(r->pt_cap, need, r->total) - r->pt_cap;
}

size_t sh_ppframe_next_grow(const sh_ppframe_reader_t *r)
{
    switch (r->state) {
    case S_LEGACY:
        return legacy_grow(r);
    case S_BODY:
        return (r->chunk == NULL ? min_sz(SH_PPFRAME_CHUNK, r->total) + SH_KEYRING_STREAM_ABYTES
                                 : 0) +
               pt_grow(r);
    default:
        return 0;
    }
}

uint8_t *sh_ppframe_buf(sh_ppframe_reader_t *r, size_t *len)
{
    switch (r->state) {
    case S_HEAD:
        /* 4 bytes tell the format; a stream head is read whole next. */
        *len = (r->have < 4 ? 4 : SH_PPFRAME_HEADLEN) - r->have;
        return r->head + r->have;
    case S_LEGACY:
        if (r->have == r->cap) {
            r->cap += legacy_grow(r);
            r->buf = sh_realloc(r->buf, r->cap);
        }
        *len = r->cap - r->have;
        return r->buf + r->have;
    case S_BODY:
        if (r->chunk == NULL) {
            r->chunk_cap = min_sz(SH_PPFRAME_CHUNK, r->total) + SH_KEYRING_STREAM_ABYTES;
            r->chunk = sh_malloc(r->chunk_cap);
        }
        if (pt_grow(r) > 0) {
            r->pt_cap += pt_grow(r);
            r->pt = sh_realloc(r->pt, r->pt_cap);
        }
        *len = r->chunk_len - r->chunk_have;
        return r->chunk + r->chunk_have;
    default:
        *len = 0;
        return NULL;
    }
}

static int refuse(sh_ppframe_reader_t *r, int rc, const char *why, const char **reason)
{
    r->state = S_FAILED;
    release(r);
    if (reason)
        *reason = why;
    return rc;
}

static int head_done(sh_ppframe_reader_t *r, const char **reason)
{
    if (sh_keyring_stream_open_start(r->kr, &r->st, r->head + 1) != 0)
        return refuse(r, SH_ENOENT, "bad_header", reason);
    uint8_t hp[8];
    int final = 0;
    long n = sh_keyring_stream_open(r->kr, &r->st, r->head + 1 + SH_KEYRING_STREAM_HDRLEN,
                                    8 + SH_KEYRING_STREAM_ABYTES, r->head, 5, hp, &final);
    if (n != 8 || final)
        return refuse(r, SH_EAUTH, "bad_header", reason);
    r->authenticated = 1;
    r->total = get_u32(hp);
    /* Sealed by a key holder, so only a newer (or broken) sender gets here. */
    if (r->total == 0 || r->total > SH_PPFRAME_MAX || get_u32(hp + 4) != 0)
        return refuse(r, SH_ELIMIT, "bad_length", reason);
    r->state = S_BODY;
    r->chunk_len = chunk_plain(r) + SH_KEYRING_STREAM_ABYTES;
    return SH_EAGAIN;
}

int sh_ppframe_fill(sh_ppframe_reader_t *r, size_t n, const char **reason)
{
    r->taken += n;
    switch (r->state) {
    case S_HEAD:
        r->have += n;
        if (r->have == 4 && r->head[0] != SH_PPFRAME_MAGIC) {
            if (r->head[0] > 1)
                return refuse(r, SH_EPARSE, "bad_magic", reason);
            r->total = get_u32(r->head);
            if (r->total > SH_PPFRAME_MAX || r->total < SH_KEYRING_OVERHEAD)
                return refuse(r, SH_ELIMIT, "bad_length", reason);
            r->legacy = 1;
            r->state = S_LEGACY;
            r->have = 0;
            return SH_EAGAIN;
        }
        if (r->have < SH_PPFRAME_HEADLEN)
            return SH_EAGAIN;
        return head_done(r, reason);
    case S_LEGACY: {
        r->have += n;
        if (r->have < r->total)
            return SH_EAGAIN;
        /* opened in place: the plaintext is where the ciphertext was */
        long m = sh_keyring_open(r->kr, r->buf, r->total, r->buf + SH_KEYRING_HDRLEN,
                                 r->total - SH_KEYRING_HDRLEN);
        if (m < 0)
            return refuse(r, (int)m, "bad_envelope", reason);
        r->authenticated = 1;
        r->pt_len = (size_t)m;
        r->state = S_DONE;
        return 0;
    }
    case S_BODY: {
        r->chunk_have += n;
        if (r->chunk_have < r->chunk_len)
            return SH_EAGAIN;
        int final = 0;
        size_t want = r->chunk_len - SH_KEYRING_STREAM_ABYTES;
        long m = sh_keyring_stream_open(r->kr, &r->st, r->chunk, r->chunk_len, NULL, 0,
                                        r->pt + r->pt_len, &final);
        /* the final tag on the last chunk and only there: no truncation */
        if (m < 0 || (size_t)m != want || final != (r->pt_len + want == r->total))
            return refuse(r, SH_EAUTH, "bad_chunk", reason);
        r->pt_len += want;
        r->chunk_have = 0;
        if (r->pt_len < r->total) {
            r->chunk_len = chunk_plain(r) + SH_KEYRING_STREAM_ABYTES;
            return SH_EAGAIN;
        }
        release(r);
        r->state = S_DONE;
        return 0;
    }
    default:
        return refuse(r, SH_ESTATE, "bad_frame", reason);
    }
}

size_t sh_ppframe_feed(sh_ppframe_reader_t *r, const uint8_t *in, size_t len, int *rc,
                       const char **reason)
{
    size_t off = 0;
    *rc = r->state == S_DONE ? 0 : SH_EAGAIN;
    while (off < len) {
        size_t room = 0;
        uint8_t *b = sh_ppframe_buf(r, &room);
        if (b == NULL)
            break;
        size_t k = min_sz(room, len - off);
        memcpy(b, in + off, k);
        off += k;
        *rc = sh_ppframe_fill(r, k, reason);
        if (*rc != SH_EAGAIN)
            break;
    }
    return off;
}

int sh_ppframe_authenticated(const sh_ppframe_reader_t *r)
{
    return r->authenticated;
}

int sh_ppframe_legacy(const sh_ppframe_reader_t *r)
{
    return r->legacy;
}

size_t sh_ppframe_held(const sh_ppframe_reader_t *r)
{
    return r->cap + r->chunk_cap + r->pt_cap;
}

size_t sh_ppframe_taken(const sh_ppframe_reader_t *r)
{
    return r->taken;
}

const uint8_t *sh_ppframe_plaintext(const sh_ppframe_reader_t *r, size_t *len)
{
    if (r->state != S_DONE) {
        *len = 0;
        return NULL;
    }
    *len = r->pt_len;
    return r->legacy ? r->buf + SH_KEYRING_HDRLEN : r->pt;
}
