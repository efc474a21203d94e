/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gossip wire codec (issue 5, proto/README.md). A received datagram or
 * frame is checked in this order, and the first failure drops it with a
 * counter and a static reason (style.md, rule 12):
 *   1. size     within the limit for its transport
 *   2. open     keyring envelope: version, key id, AEAD tag
 *   3. version  plaintext header: [version][min_version][kind]; refused if
 *               our SH_WIRE_VERSION < min_version (a newer sender says it
 *               needs a newer reader) or kind is not the one expected
 *   4. decode   protobuf-c with our allocator
 *   5. meaning  names, addresses and counts within limits, one probe kind
 * Pure: bytes in, decoded message out. Any thread; the stats belong to the
 * caller.
 */
#ifndef SH_WIRE_H
#define SH_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/keyring.h"
#include "proto/gossip.pb-c.h"

#define SH_WIRE_VERSION     3u /* what we speak (2: PushPull.slim; 3: stream frames) */
#define SH_WIRE_MIN_VERSION 1u /* the oldest reader that understands us */
#define SH_WIRE_HDRLEN      3u

#define SH_WIRE_KIND_PACKET   1u /* UDP: Sh__Gossip__Packet */
#define SH_WIRE_KIND_PUSHPULL 2u /* TCP: Sh__Gossip__PushPull */

#define SH_WIRE_MAX_UDP      65507u      /* largest datagram accepted */
#define SH_WIRE_MAX_FRAME    (16u << 20) /* largest push-pull frame (SH_PPFRAME_MAX) */
#define SH_WIRE_MAX_NAME     128u
#define SH_WIRE_MAX_ADDR     128u
#define SH_WIRE_MAX_META     4096u
#define SH_WIRE_MAX_UPDATES  512u
#define SH_WIRE_MAX_CHANNELS 64u
#define SH_WIRE_MAX_MEMBERS  100000u

typedef struct {
    uint64_t ok;
    uint64_t too_big;     /* 1: size */
    uint64_t not_opened;  /* 2: keyring refused (its own stats say why) */
    uint64_t bad_version; /* 3 */
    uint64_t wrong_kind;  /* 3 */
    uint64_t undecodable; /* 4 */
    uint64_t invalid;     /* 5 */
} sh_wire_stats_t;

/* protobuf-c allocator over sh_malloc/sh_free, for decode and free. */
extern ProtobufCAllocator sh_wire_allocator;

/* Write the plaintext header for kind into out[0..SH_WIRE_HDRLEN). */
void sh_wire_put_header(uint8_t *out, unsigned kind);

/*
 * Steps 3-5 on plaintext. Returns 0 and *out (free with
 * sh_wire_packet_free), or SH_EVERSION / SH_EPARSE / SH_EINVAL with *reason
 * set to a static string; counted in st.
 */
int sh_wire_decode_packet(const uint8_t *pt, size_t len, Sh__Gossip__Packet **out,
                          sh_wire_stats_t *st, const char **reason);
int sh_wire_decode_pushpull(const uint8_t *pt, size_t len, Sh__Gossip__PushPull **out,
                            sh_wire_stats_t *st, const char **reason);

/*
 * Steps 1-5 on a sealed datagram / frame. scratch must hold len bytes.
 * Returns 0 and *out, or a negative code with *reason; counted.
 */
int sh_wire_open_packet(sh_keyring_t *kr, const uint8_t *in, size_t len, uint8_t *scratch,
                        Sh__Gossip__Packet **out, sh_wire_stats_t *st, const char **reason);
int sh_wire_open_pushpull(sh_keyring_t *kr, const uint8_t *in, size_t len, uint8_t *scratch,
                          Sh__Gossip__PushPull **out, sh_wire_stats_t *st, const char **reason);

void sh_wire_packet_free(Sh__Gossip__Packet *p);
void sh_wire_pushpull_free(Sh__Gossip__PushPull *p);

/*
 * A bump allocator for decoding: protobuf-c makes one allocation per
 * message, string and repeated field, which dominated the 1,000-node
 * simulations. sh_wire_arena_begin() hands out the arena's allocator (or
 * sh_wire_allocator when the arena is already in use: a nested decode);
 * everything decoded with it stays valid until sh_wire_arena_end(), which
 * drops it all at once (no free_unpacked needed, though it is harmless).
 * One small block is kept between uses; larger ones are freed at the end.
 */
typedef struct sh_wire_arena_blk sh_wire_arena_blk;
typedef struct {
    ProtobufCAllocator pa;
    sh_wire_arena_blk *blk; /* current block, then older ones */
    size_t used;            /* in the current block */
    int busy;
} sh_wire_arena_t;

void sh_wire_arena_init(sh_wire_arena_t *a);
void sh_wire_arena_dispose(sh_wire_arena_t *a);
ProtobufCAllocator *sh_wire_arena_begin(sh_wire_arena_t *a);
/* pa: what _begin returned. */
void sh_wire_arena_end(sh_wire_arena_t *a, ProtobufCAllocator *pa);

/* sh_wire_decode_packet / _pushpull with the allocator pa (the result is
 * freed with pa, or dropped with the arena). */
int sh_wire_decode_packet_pa(const uint8_t *pt, size_t len, Sh__Gossip__Packet **out,
                             sh_wire_stats_t *st, const char **reason, ProtobufCAllocator *pa);
int sh_wire_decode_pushpull_pa(const uint8_t *pt, size_t len, Sh__Gossip__PushPull **out,
                               sh_wire_stats_t *st, const char **reason, ProtobufCAllocator *pa);

/*
 * Piggybacking appends already-encoded Update messages to an encoded Packet
 * as raw field-6 entries (protobuf fields may come in any order and repeat).
 * Bytes one update of ulen bytes takes, and the append itself (returns the
 * bytes written; out must have sh_wire_update_cost(ulen)).
 */
size_t sh_wire_update_cost(size_t ulen);
size_t sh_wire_append_update(uint8_t *out, const uint8_t *u, size_t ulen);

/* A name or address is 1..max bytes with no control characters. */
int sh_wire_valid_name(const char *s, size_t max);

#endif
