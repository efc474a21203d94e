/* SPDX-License-Identifier: Apache-2.0 */
/* The gossip wire codec: see wire.h. */
#include "cluster/wire.h"

#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

static void *pa_alloc(void *ud, size_t n)
{
    return sh_malloc(n);
}
static void pa_free(void *ud, void *p)
{
    sh_free(p);
}
ProtobufCAllocator sh_wire_allocator = {pa_alloc, pa_free, NULL};

/* ------------------------------------------------------------- arena -- */

#define ARENA_KEEP  8192u  /* the block kept between uses: a whole packet */
#define ARENA_CHUNK 65536u /* later blocks (push-pull frames) */

struct sh_wire_arena_blk {
    sh_wire_arena_blk *next;
    size_t cap;
    _Alignas(16) unsigned char data[];
};

static sh_wire_arena_blk *arena_blk(size_t cap, sh_wire_arena_blk *next)
{
    sh_wire_arena_blk *b = sh_malloc(sizeof(*b) + cap);
    b->next = next;
    b->cap = cap;
    return b;
}

static void *arena_alloc(void *ud, size_t n)
{
    sh_wire_arena_t *a = ud;
    n = (n + 15u) & ~(size_t)15u;
    if (a->blk == NULL || a->blk->cap - a->used < n) {
        a->blk = arena_blk(n > ARENA_CHUNK ? n : ARENA_CHUNK, a->blk);
        a->used = 0;
    }
    void *p = a->blk->data + a->used;
    a->used += n;
    return p;
}

static void arena_free(void *ud, void *p)
{
    (void)ud;
    (void)p; /* dropped with the arena */
}

void sh_wire_arena_init(sh_wire_arena_t *a)
{
    memset(a, 0, sizeof(*a));
    a->pa.alloc = arena_alloc;
    a->pa.free = arena_free;
    a->pa.allocator_data = a;
}

static void arena_drop(sh_wire_arena_t *a, sh_wire_arena_blk *keep)
{
    while (a->blk && a->blk != keep) {
        sh_wire_arena_blk *nx = a->blk->next;
        sh_free(a->blk);
        a->blk = nx;
    }
}

void sh_wire_arena_dispose(sh_wire_arena_t *a)
{
    arena_drop(a, NULL);
    a->used = 0;
}

ProtobufCAllocator *sh_wire_arena_begin(sh_wire_arena_t *a)
{
    if (a->busy)
        return &sh_wire_allocator;
    a->busy = 1;
    if (a->blk == NULL)
        a->blk = arena_blk(ARENA_KEEP, NULL);
    a->used = 0;
    return &a->pa;
}

void sh_wire_arena_end(sh_wire_arena_t *a, ProtobufCAllocator *pa)
{
    if (pa != &a->pa)
        return;
    /* keep the first (small) block only */
    sh_wire_arena_blk *first = a->blk;
    while (first && first->next)
        first = first->next;
    if (first && first->cap != ARENA_KEEP)
        first = NULL;
    arena_drop(a, first);
    a->used = 0;
    a->busy = 0;
}

void sh_wire_put_header(uint8_t *out, unsigned kind)
{
    out[0] = SH_WIRE_VERSION;
    out[1] = SH_WIRE_MIN_VERSION;
    out[2] = (uint8_t)kind;
}

int sh_wire_valid_name(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (n >= max)
            return 0;
        unsigned char c = (unsigned char)s[n];
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return n > 0;
}

static int fail(sh_wire_stats_t *st, uint64_t *ctr, const char **reason, const char *why, int rc)
{
    (*ctr)++;
    if (reason)
        *reason = why;
    (void)st;
    return rc;
}

/* Step 3: the plaintext header. */
static int check_header(const uint8_t *pt, size_t len, unsigned kind, sh_wire_stats_t *st,
                        const char **reason)
{
    if (len < SH_WIRE_HDRLEN)
        return fail(st, &st->undecodable, reason, "short plaintext", SH_EPARSE);
    /* pt[0] is the sender's version; only min_version binds us, so a newer
     * node that stays compatible (min <= ours) is understood. */
    if (pt[1] > SH_WIRE_VERSION || pt[1] == 0 || pt[0] < pt[1])
        return fail(st, &st->bad_version, reason, "unsupported protocol version", SH_EVERSION);
    if (pt[2] != kind)
        return fail(st, &st->wrong_kind, reason, "unexpected message kind", SH_EPARSE);
    return 0;
}

static int valid_update(const Sh__Gossip__Update *u)
{
    switch (u->kind_case) {
    case SH__GOSSIP__UPDATE__KIND_ALIVE:
        return u->alive && sh_wire_valid_name(u->alive->node, SH_WIRE_MAX_NAME) &&
               sh_wire_valid_name(u->alive->addr, SH_WIRE_MAX_ADDR) &&
               u->alive->meta.len <= SH_WIRE_MAX_META;
    case SH__GOSSIP__UPDATE__KIND_SUSPECT:
        return u->suspect && sh_wire_valid_name(u->suspect->node, SH_WIRE_MAX_NAME) &&
               sh_wire_valid_name(u->suspect->from, SH_WIRE_MAX_NAME);
    case SH__GOSSIP__UPDATE__KIND_DEAD:
        return u->dead && sh_wire_valid_name(u->dead->node, SH_WIRE_MAX_NAME) &&
               sh_wire_valid_name(u->dead->from, SH_WIRE_MAX_NAME);
    case SH__GOSSIP__UPDATE__KIND_CHANNEL:
        return u->channel != NULL && u->channel->channel != 0;
    default:
        /* An update kind from a newer version: not an error, skipped by
         * the state machine. Field numbers unknown to us never reach here:
         * protobuf-c keeps them as unknown fields. */
        return 1;
    }
}

/* Step 5 for a Packet. */
static const char *packet_meaning(const Sh__Gossip__Packet *p)
{
    if (!sh_wire_valid_name(p->from, SH_WIRE_MAX_NAME))
        return "bad sender name";
    int probes = (p->ping != NULL) + (p->indirect != NULL) + (p->ack != NULL) + (p->nack != NULL);
    if (probes > 1)
        return "more than one probe message";
    if (p->ping && !sh_wire_valid_name(p->ping->target, SH_WIRE_MAX_NAME))
        return "bad ping target";
    if (p->indirect && (!sh_wire_valid_name(p->indirect->target, SH_WIRE_MAX_NAME) ||
                        !sh_wire_valid_name(p->indirect->target_addr, SH_WIRE_MAX_ADDR)))
        return "bad indirect target";
    if (p->n_updates > SH_WIRE_MAX_UPDATES)
        return "too many updates";
    for (size_t i = 0; i < p->n_updates; i++)
        if (!valid_update(p->updates[i]))
            return "bad update";
    return NULL;
}

int sh_wire_decode_packet(const uint8_t *pt, size_t len, Sh__Gossip__Packet **out,
                          sh_wire_stats_t *st, const char **reason)
{
    return sh_wire_decode_packet_pa(pt, len, out, st, reason, &sh_wire_allocator);
}

int sh_wire_decode_packet_pa(const uint8_t *pt, size_t len, Sh__Gossip__Packet **out,
                             sh_wire_stats_t *st, const char **reason, ProtobufCAllocator *pa)
{
    *out = NULL;
    int rc = check_header(pt, len, SH_WIRE_KIND_PACKET, st, reason);
    if (rc < 0)
        return rc;
    Sh__Gossip__Packet *p =
        sh__gossip__packet__unpack(pa, len - SH_WIRE_HDRLEN, pt + SH_WIRE_HDRLEN);
    if (p == NULL)
        return fail(st, &st->undecodable, reason, "protobuf decode failed", SH_EPARSE);
    const char *why = packet_meaning(p);
    if (why != NULL) {
        sh__gossip__packet__free_unpacked(p, pa);
        return fail(st, &st->invalid, reason, why, SH_EINVAL);
    }
    st->ok++;
    *out = p;
    return 0;
}

static const char *pushpull_meaning(const Sh__Gossip__PushPull *p)
{
    if (!sh_wire_valid_name(p->from, SH_WIRE_MAX_NAME))
        return "bad sender name";
    if (p->n_channels > SH_WIRE_MAX_CHANNELS)
        return "too many channels";
    for (size_t i = 0; i < p->n_channels; i++)
        if (p->channels[i] == NULL)
            return "bad channel state";
    return NULL;
}

int sh_wire_decode_pushpull(const uint8_t *pt, size_t len, Sh__Gossip__PushPull **out,
                            sh_wire_stats_t *st, const char **reason)
{
    return sh_wire_decode_pushpull_pa(pt, len, out, st, reason, &sh_wire_allocator);
}

int sh_wire_decode_pushpull_pa(const uint8_t *pt, size_t len, Sh__Gossip__PushPull **out,
                               sh_wire_stats_t *st, const char **reason, ProtobufCAllocator *pa)
{
    *out = NULL;
    int rc = check_header(pt, len, SH_WIRE_KIND_PUSHPULL, st, reason);
    if (rc < 0)
        return rc;
    Sh__Gossip__PushPull *p =
        sh__gossip__push_pull__unpack(pa, len - SH_WIRE_HDRLEN, pt + SH_WIRE_HDRLEN);
    if (p == NULL)
        return fail(st, &st->undecodable, reason, "protobuf decode failed", SH_EPARSE);
    const char *why = pushpull_meaning(p);
    if (why != NULL) {
        sh__gossip__push_pull__free_unpacked(p, pa);
        return fail(st, &st->invalid, reason, why, SH_EINVAL);
    }
    st->ok++;
    *out = p;
    return 0;
}

static long open_common(sh_keyring_t *kr, const uint8_t *in, size_t len, size_t max,
                        uint8_t *scratch, sh_wire_stats_t *st, const char **reason)
{
    if (len > max)
        return fail(st, &st->too_big, reason, "too big", SH_ELIMIT);
    long n = sh_keyring_open(kr, in, len, scratch, len);
    if (n < 0) {
        static const char *const why[] = {"", "short envelope", "bad envelope version",
                                          "unknown key", "bad tag"};
        int w = n == SH_EPARSE ? 1 : n == SH_EVERSION ? 2 : n == SH_ENOENT ? 3 : 4;
        return fail(st, &st->not_opened, reason, why[w], (int)n);
    }
    return n;
}

int sh_wire_open_packet(sh_keyring_t *kr, const uint8_t *in, size_t len, uint8_t *scratch,
                        Sh__Gossip__Packet **out, sh_wire_stats_t *st, const char **reason)
{
    *out = NULL;
    long n = open_common(kr, in, len, SH_WIRE_MAX_UDP, scratch, st, reason);
    if (n < 0)
        return (int)n;
    return sh_wire_decode_packet(scratch, (size_t)n, out, st, reason);
}

int sh_wire_open_pushpull(sh_keyring_t *kr, const uint8_t *in, size_t len, uint8_t *scratch,
                          Sh__Gossip__PushPull **out, sh_wire_stats_t *st, const char **reason)
{
    *out = NULL;
    long n = open_common(kr, in, len, SH_WIRE_MAX_FRAME, scratch, st, reason);
    if (n < 0)
        return (int)n;
    return sh_wire_decode_pushpull(scratch, (size_t)n, out, st, reason);
}

void sh_wire_packet_free(Sh__Gossip__Packet *p)
{
    if (p)
        sh__gossip__packet__free_unpacked(p, &sh_wire_allocator);
}

void sh_wire_pushpull_free(Sh__Gossip__PushPull *p)
{
    if (p)
        sh__gossip__push_pull__free_unpacked(p, &sh_wire_allocator);
}

static size_t varint_len(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t sh_wire_update_cost(size_t ulen)
{
    return 1 + varint_len(ulen) + ulen;
}

size_t sh_wire_append_update(uint8_t *out, const uint8_t *u, size_t ulen)
{
    size_t o = 0;
    out[o++] = (6u << 3) | 2u; /* Packet.updates: field 6, length-delimited */
    size_t v = ulen;
    while (v >= 0x80) {
        out[o++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[o++] = (uint8_t)v;
    memcpy(out + o, u, ulen);
    return o + ulen;
}
