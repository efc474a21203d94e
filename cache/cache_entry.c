/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stored-entry codec (style.md, rule 12: pure, bytes in and out): the
 * fixed record header, the sh.cache.Meta message (proto/cache.proto) and
 * the hit built from a record. Every length is checked against the record
 * before use: a record is untrusted input (a file on disk another version
 * or a crash may have left), so the fuzz target cache/fuzz/fuzz_cache_entry.c
 * drives sh_cache_entry_decode() with arbitrary bytes. Any thread.
 */
#include <string.h>

#include "cache/cache_internal.h"
#include "core/alloc.h"
#include "core/err.h"

static void *pb_alloc(void *data, size_t size)
{
    (void)data;
    return sh_malloc(size);
}

static void pb_free(void *data, void *p)
{
    (void)data;
    sh_free(p);
}

static ProtobufCAllocator pb_allocator = {pb_alloc, pb_free, NULL};

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

int sh_cache__hdr_parse(const void *rec, size_t len, sh_cache__hdr_t *h, const char **why)
{
    const uint8_t *p = rec;
    if (len < SH_CACHE__HDR) {
        *why = "record shorter than its header";
        return SH_EPARSE;
    }
    if (get32(p) != SH_CACHE__MAGIC) {
        *why = "bad magic";
        return SH_EPARSE;
    }
    h->meta_len = get32(p + 4);
    h->body_len = get64(p + 8);
    h->body_id = get64(p + 16);
    h->chunk_size = get32(p + 24);
    if (get32(p + 28) != 0) {
        *why = "reserved header bits set";
        return SH_EPARSE;
    }
    size_t rest = len - SH_CACHE__HDR;
    if (h->meta_len > rest || h->meta_len > SH_CACHE__META_MAX) {
        *why = "metadata length past the record";
        return SH_EPARSE;
    }
    rest -= h->meta_len;
    if (h->body_id == 0) {
        if (h->chunk_size != 0 || h->body_len != rest) {
            *why = "inline body length does not match the record";
            return SH_EPARSE;
        }
    } else if (rest != 0 || h->chunk_size == 0 || h->chunk_size > SH_CACHE__CHUNK_MAX ||
               h->body_len == 0) {
        *why = "chunked body header inconsistent";
        return SH_EPARSE;
    }
    return 0;
}

void sh_cache__hdr_put(void *out, const sh_cache__hdr_t *h)
{
    uint8_t *p = out;
    put32(p, SH_CACHE__MAGIC);
    put32(p + 4, h->meta_len);
    put64(p + 8, h->body_len);
    put64(p + 16, h->body_id);
    put32(p + 24, h->chunk_size);
    put32(p + 28, 0);
}

static ProtobufCBinaryData bin(const void *p, size_t n)
{
    return (ProtobufCBinaryData){.len = n, .data = (uint8_t *)(uintptr_t)p};
}

int sh_cache__meta_pack(const char *key, size_t key_len, const sh_cache_meta_t *m, uint8_t **out,
                        size_t *len)
{
    if (key_len == 0 || m->status < 100 || m->status > 999 || (m->nfields && !m->fields) ||
        (m->nvary && (!m->vary || !m->vary_len)) || (m->ntags && (!m->tags || !m->tag_len)))
        return SH_EINVAL;
    if (key_len > SH_CACHE_KEY_MAX || m->ntags > SH_CACHE_TAGS_MAX || m->nfields > 1024 ||
        m->nvary > 64)
        return SH_ELIMIT;
    Sh__Cache__Meta pb = SH__CACHE__META__INIT;
    pb.key = bin(key, key_len);
    pb.status = (uint32_t)m->status;
    pb.stored_at = m->stored_at;
    pb.valid_until = m->valid_until;
    pb.stale_while_revalidate = m->stale_while_revalidate;
    pb.stale_if_error = m->stale_if_error;
    if (m->etag)
        pb.etag = bin(m->etag, m->etag_len);
    pb.last_modified = m->last_modified;
    pb.flags = m->flags;
    Sh__Cache__Field *fv = sh_calloc(m->nfields + 1, sizeof(*fv));
    Sh__Cache__Field **fp = sh_calloc(m->nfields + 1, sizeof(*fp));
    ProtobufCBinaryData *vv = sh_calloc(m->nvary + 1, sizeof(*vv));
    ProtobufCBinaryData *tv = sh_calloc(m->ntags + 1, sizeof(*tv));
    for (size_t i = 0; i < m->nfields; i++) {
        sh__cache__field__init(&fv[i]);
        fv[i].name = bin(m->fields[i].name, m->fields[i].name_len);
        fv[i].value = bin(m->fields[i].value, m->fields[i].value_len);
        fp[i] = &fv[i];
    }
    pb.n_fields = m->nfields;
    pb.fields = fp;
    for (size_t i = 0; i < m->nvary; i++)
        vv[i] = bin(m->vary[i], m->vary_len[i]);
    pb.n_vary = m->nvary;
    pb.vary = vv;
    /* Tags too long to index are left out (cache.h: SH_CACHE_TAG_MAX). */
    size_t nt = 0;
    for (size_t i = 0; i < m->ntags; i++)
        if (m->tag_len[i] > 0 && m->tag_len[i] <= SH_CACHE_TAG_MAX)
            tv[nt++] = bin(m->tags[i], m->tag_len[i]);
    pb.n_tags = nt;
    pb.tags = tv;
    size_t n = sh__cache__meta__get_packed_size(&pb);
    int rc = 0;
    if (n > SH_CACHE__META_MAX) {
        rc = SH_ELIMIT;
    } else {
        *out = sh_malloc(n);
        *len = sh__cache__meta__pack(&pb, *out);
    }
    sh_free(fv);
    sh_free(fp);
    sh_free(vv);
    sh_free(tv);
    return rc;
}

Sh__Cache__Meta *sh_cache__meta_unpack(const void *p, size_t n)
{
    return sh__cache__meta__unpack(&pb_allocator, n, p);
}

void sh_cache__meta_free(Sh__Cache__Meta *pb)
{
    if (pb)
        sh__cache__meta__free_unpacked(pb, &pb_allocator);
}

/* A hit's memory: the metadata message protobuf-c unpacks (a struct per
 * header field, a copy per string) and the arrays of sh_cache_meta_t come
 * from one arena of a block or two, so a lookup costs one or two mallocs,
 * not a few dozen, and a hit is freed in one pass. */
typedef struct blk {
    struct blk *next;
    size_t cap, used;
} blk;

#define BLK_HDR ((sizeof(blk) + 15) & ~(size_t)15)

static blk *blk_new(size_t cap, blk *next)
{
    blk *b = sh_malloc(BLK_HDR + cap);
    b->next = next;
    b->cap = cap;
    b->used = 0;
    return b;
}

static void *ar_alloc(void *data, size_t n)
{
    blk **head = data;
    n = (n + 15) & ~(size_t)15;
    blk *b = *head;
    if (b->cap - b->used < n) {
        b = blk_new(n > 4096 ? n : 4096, *head);
        *head = b;
    }
    void *p = (char *)b + BLK_HDR + b->used;
    b->used += n;
    return p;
}

static void ar_free(void *data, void *p)
{
    (void)data;
    (void)p; /* freed with the arena */
}

static void ar_destroy(blk *b)
{
    while (b) {
        blk *n = b->next;
        sh_free(b);
        b = n;
    }
}

void sh_cache_hit_free(sh_cache_hit_t *h)
{
    if (!h)
        return;
    if (h->c && h->body_id)
        sh_cache__unpin(h->c, h->body_id);
    if (!h->body_in_arena)
        sh_free(h->body);
    ar_destroy(h->arena); /* h lives in the first block */
}

int sh_cache__hit_make(const void *rec, size_t len, int with_body, sh_cache_hit_t **out,
                       const char **why)
{
    sh_cache__hdr_t hd;
    int rc = sh_cache__hdr_parse(rec, len, &hd, why);
    if (rc < 0)
        return rc;
    const uint8_t *p = rec;
    size_t inl = with_body && hd.body_id == 0 ? (size_t)hd.body_len : 0;
    /* Typical metadata unpacks into about twice its wire size. */
    blk *first = blk_new(sizeof(sh_cache_hit_t) + 2 * (size_t)hd.meta_len + 1024 + inl, NULL);
    blk *arena = first;
    sh_cache_hit_t *h = ar_alloc(&arena, sizeof(*h));
    memset(h, 0, sizeof(*h));
    ProtobufCAllocator al = {ar_alloc, ar_free, &arena};
    Sh__Cache__Meta *pb = sh__cache__meta__unpack(&al, hd.meta_len, p + SH_CACHE__HDR);
    if (!pb) {
        *why = "metadata does not decode";
        ar_destroy(arena);
        return SH_EPARSE;
    }
    if (pb->key.len == 0 || pb->key.len > SH_CACHE_KEY_MAX || pb->status < 100 ||
        pb->status > 999 || pb->n_tags > SH_CACHE_TAGS_MAX) {
        *why = "metadata out of range";
        ar_destroy(arena);
        return SH_EPARSE;
    }
    for (size_t i = 0; i < pb->n_tags; i++) {
        if (pb->tags[i].len == 0 || pb->tags[i].len > SH_CACHE_TAG_MAX) {
            *why = "tag length out of range";
            ar_destroy(arena);
            return SH_EPARSE;
        }
    }
    h->pb = pb;
    h->body_id = hd.body_id;
    h->chunk_size = hd.chunk_size;
    sh_cache_meta_t *m = &h->meta;
    m->status = (int)pb->status;
    h->fields = ar_alloc(&arena, (pb->n_fields + 1) * sizeof(*h->fields));
    for (size_t i = 0; i < pb->n_fields; i++) {
        h->fields[i] =
            (sh_cache_field_t){(const char *)pb->fields[i]->name.data, pb->fields[i]->name.len,
                               (const char *)pb->fields[i]->value.data, pb->fields[i]->value.len};
    }
    m->fields = h->fields;
    m->nfields = pb->n_fields;
    m->stored_at = pb->stored_at;
    m->valid_until = pb->valid_until;
    m->stale_while_revalidate = pb->stale_while_revalidate;
    m->stale_if_error = pb->stale_if_error;
    m->etag = pb->etag.len ? (const char *)pb->etag.data : NULL;
    m->etag_len = pb->etag.len;
    m->last_modified = pb->last_modified;
    h->vary = ar_alloc(&arena, (pb->n_vary + 1) * sizeof(*h->vary));
    h->vary_len = ar_alloc(&arena, (pb->n_vary + 1) * sizeof(*h->vary_len));
    for (size_t i = 0; i < pb->n_vary; i++) {
        h->vary[i] = (const char *)pb->vary[i].data;
        h->vary_len[i] = pb->vary[i].len;
    }
    m->vary = h->vary;
    m->vary_len = h->vary_len;
    m->nvary = pb->n_vary;
    h->tags = ar_alloc(&arena, (pb->n_tags + 1) * sizeof(*h->tags));
    h->tag_len = ar_alloc(&arena, (pb->n_tags + 1) * sizeof(*h->tag_len));
    for (size_t i = 0; i < pb->n_tags; i++) {
        h->tags[i] = (const char *)pb->tags[i].data;
        h->tag_len[i] = pb->tags[i].len;
    }
    m->tags = h->tags;
    m->tag_len = h->tag_len;
    m->ntags = pb->n_tags;
    m->body_len = hd.body_len;
    m->flags = pb->flags;
    if (inl) {
        h->body = ar_alloc(&arena, inl);
        memcpy(h->body, p + SH_CACHE__HDR + hd.meta_len, inl);
        h->body_have = inl;
        h->body_in_arena = 1;
    }
    h->arena = arena;
    *out = h;
    return 0;
}

int sh_cache_entry_decode(const void *rec, size_t len, sh_cache_hit_t **out, const char **why)
{
    *out = NULL;
    *why = NULL;
    return sh_cache__hit_make(rec, len, 1, out, why);
}

const sh_cache_meta_t *sh_cache_hit_meta(const sh_cache_hit_t *h)
{
    return &h->meta;
}

const void *sh_cache_hit_body(const sh_cache_hit_t *h, size_t *len)
{
    *len = h->body_have;
    return h->body;
}
