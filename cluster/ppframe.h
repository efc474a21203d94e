/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Push-pull frames (issue 15): the codec of one sealed push-pull message on
 * a TCP connection, pure (bytes in, plaintext out; no socket, no clock).
 * Two formats (proto/README.md):
 *
 *   stream (wire version 3, what we send):
 *     [0xB3][key id: 4][secretstream header: 24]
 *     [head chunk: 8 bytes sealed (+17), AD = the first 5 bytes]
 *     [body chunks: the plaintext in pieces of SH_PPFRAME_CHUNK bytes, the
 *      last shorter and tagged final, each sealed (+17)]
 *     The head chunk holds [plaintext length: u32 BE][0: u32]. A receiver
 *     reads the first SH_PPFRAME_HEADLEN bytes into a fixed buffer and opens
 *     them before it allocates anything: a peer proves it holds a key with
 *     54 bytes, and then never has more than one unopened chunk buffered.
 *   legacy (wire versions 1 and 2): [length: u32 BE][sealed envelope], the
 *     envelope opened only once whole. Accepted from older nodes (its first
 *     byte, the length's high byte, is 0 or 1: at most 16 MiB), buffered as
 *     it arrives: the buffer starts at SH_PPFRAME_STEP and doubles (never
 *     past the frame), each growth announced by sh_ppframe_next_grow so the
 *     caller charges it to a budget before it is allocated. A stream's
 *     plaintext buffer grows the same way as chunks open.
 *
 * The reader is driven the libuv way: sh_ppframe_buf gives where the next
 * bytes go (never more than the frame still needs, so nothing past the
 * frame is read), sh_ppframe_fill says how many came. Every refusal has a
 * stable reason (a metric label): bad_magic, bad_length, bad_header,
 * bad_chunk, bad_envelope. One reader reads one frame; any thread, not
 * locked; the keyring is the caller's (its stats count what fails to open).
 */
#ifndef SH_PPFRAME_H
#define SH_PPFRAME_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/keyring.h"

#define SH_PPFRAME_MAGIC   0xB3u
#define SH_PPFRAME_CHUNK   65536u /* plaintext bytes per body chunk */
#define SH_PPFRAME_HEADLEN (1u + SH_KEYRING_STREAM_HDRLEN + 8u + SH_KEYRING_STREAM_ABYTES)
#define SH_PPFRAME_STEP    65536u      /* a legacy frame's first buffer */
#define SH_PPFRAME_MAX     (16u << 20) /* largest plaintext / legacy frame */

typedef struct sh_ppframe_reader_s sh_ppframe_reader_t;

/*
 * Seal plaintext pt[0..len) (1..SH_PPFRAME_MAX bytes) as one whole frame,
 * stream format (legacy 0) or legacy, in *out (sh_malloc'd). Returns the
 * frame's length, SH_ESTATE with no key or SH_ELIMIT for a bad length.
 */
long sh_ppframe_seal(sh_keyring_t *kr, const uint8_t *pt, size_t len, int legacy, uint8_t **out);

/* A reader of one frame opened with kr (kept, not owned). Never NULL. */
sh_ppframe_reader_t *sh_ppframe_reader_create(sh_keyring_t *kr);
/* Free the reader and everything it holds. NULL is a no-op. */
void sh_ppframe_reader_destroy(sh_ppframe_reader_t *r);

/*
 * Heap bytes sh_ppframe_buf would allocate if called now (0 when its
 * current buffer has room): what the caller charges to its budgets first.
 */
size_t sh_ppframe_next_grow(const sh_ppframe_reader_t *r);
/*
 * Where the next bytes go: *len (>= 1) bytes at the returned pointer, owned
 * by the reader, valid until the next call. NULL once the frame is complete
 * or refused.
 */
uint8_t *sh_ppframe_buf(sh_ppframe_reader_t *r, size_t *len);
/*
 * n bytes (<= the *len of the last sh_ppframe_buf) were written there.
 * Returns SH_EAGAIN for more, 0 once the frame is complete and opened
 * (sh_ppframe_plaintext), or a refusal: SH_EPARSE, SH_ELIMIT, SH_ENOENT,
 * SH_EAUTH, SH_EVERSION, with *reason (a static metric label).
 */
int sh_ppframe_fill(sh_ppframe_reader_t *r, size_t n, const char **reason);
/*
 * sh_ppframe_buf + copy + sh_ppframe_fill over in[0..len) (tests, fuzzing):
 * returns the bytes taken (the rest belongs after the frame) with *rc the
 * last sh_ppframe_fill result.
 */
size_t sh_ppframe_feed(sh_ppframe_reader_t *r, const uint8_t *in, size_t len, int *rc,
                       const char **reason);

/* 1 once the sender proved it holds a key: a stream's head chunk opened,
 * or a whole legacy frame opened. */
int sh_ppframe_authenticated(const sh_ppframe_reader_t *r);
/* 1 if the frame is in the legacy format (known after 4 bytes). */
int sh_ppframe_legacy(const sh_ppframe_reader_t *r);
/* Heap bytes the reader holds now. */
size_t sh_ppframe_held(const sh_ppframe_reader_t *r);
/* Bytes taken so far. */
size_t sh_ppframe_taken(const sh_ppframe_reader_t *r);
/* The opened plaintext once sh_ppframe_fill returned 0, else NULL. */
const uint8_t *sh_ppframe_plaintext(const sh_ppframe_reader_t *r, size_t *len);

#endif
