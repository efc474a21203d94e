/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cluster keyring: every gossip UDP packet and push-pull TCP frame is
 * sealed with XChaCha20-Poly1305 (libsodium AEAD) under the primary key and
 * opened under whichever installed key the envelope names (issue 5), so keys
 * rotate without downtime: install the new key everywhere, make it primary
 * everywhere, then remove the old one.
 *
 * Envelope (proto/README.md):
 *   byte 0      envelope version (SH_KEYRING_ENVELOPE_V1)
 *   bytes 1..4  key id: first 4 bytes of BLAKE2b-256(key), big endian
 *   bytes 5..28 random 192-bit nonce
 *   bytes 29..  ciphertext, then the 16-byte tag
 * Bytes 0..4 are the associated data, so the key id cannot be altered.
 *
 * Pure: no sockets, no clock; the only impurity is the random nonce. A packet
 * that is short, of another envelope version, under an unknown key or with a
 * bad tag is refused and counted, never handed on. One keyring belongs to the
 * cluster thread; it is not locked.
 */
#ifndef SH_KEYRING_H
#define SH_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#define SH_KEYRING_KEYLEN      32u
#define SH_KEYRING_MAX_KEYS    8u
#define SH_KEYRING_ENVELOPE_V1 1u
#define SH_KEYRING_HDRLEN      (1u + 4u + 24u)
#define SH_KEYRING_TAGLEN      16u
#define SH_KEYRING_OVERHEAD    (SH_KEYRING_HDRLEN + SH_KEYRING_TAGLEN)

typedef struct sh_keyring_s sh_keyring_t;

/* Refusals and successes, one counter per way a packet can fail. */
typedef struct {
    uint64_t sealed;
    uint64_t opened;
    uint64_t short_packet; /* shorter than the envelope overhead */
    uint64_t bad_version;  /* unknown envelope version */
    uint64_t unknown_key;  /* key id of no installed key */
    uint64_t bad_tag;      /* authentication failed */
} sh_keyring_stats_t;

/* A keyring with no key. Initialises libsodium. Never NULL (aborts on OOM). */
sh_keyring_t *sh_keyring_create(void);
/* Wipe the keys and free. NULL is a no-op. */
void sh_keyring_destroy(sh_keyring_t *kr);

/*
 * Install key (SH_KEYRING_KEYLEN bytes, copied). The first key installed
 * becomes primary. SH_EEXIST if installed (or its id collides with an
 * installed key), SH_ELIMIT past SH_KEYRING_MAX_KEYS.
 */
int sh_keyring_install(sh_keyring_t *kr, const uint8_t *key);
/* Make an installed key primary: 0 or SH_ENOENT. */
int sh_keyring_use(sh_keyring_t *kr, const uint8_t *key);
/* Remove a key: 0, SH_ENOENT, or SH_ESTATE for the primary key. */
int sh_keyring_remove(sh_keyring_t *kr, const uint8_t *key);
/* Number of installed keys. */
unsigned sh_keyring_count(const sh_keyring_t *kr);
/* The id a key travels under. */
uint32_t sh_keyring_key_id(const uint8_t *key);
/* Id of the primary key, 0 with no key. */
uint32_t sh_keyring_primary_id(const sh_keyring_t *kr);
/* The ids of the installed keys into ids[0..max); returns how many are installed. */
unsigned sh_keyring_ids(const sh_keyring_t *kr, uint32_t *ids, unsigned max);

/*
 * Decode a key written as 64 hex digits or standard base64 (44 chars),
 * surrounding whitespace ignored. 0 or SH_EINVAL.
 */
int sh_keyring_parse_key(const char *text, uint8_t *key);

/*
 * Seal in[0..len) under the primary key into out (cap bytes, needs
 * len + SH_KEYRING_OVERHEAD). Returns the sealed length, SH_ESTATE with no
 * key, SH_ELIMIT if cap is too small. in and out must not overlap.
 */
long sh_keyring_seal(sh_keyring_t *kr, const uint8_t *in, size_t len, uint8_t *out, size_t cap);

/*
 * Open a sealed envelope into out (cap bytes; len - SH_KEYRING_OVERHEAD
 * suffice; out may be in + SH_KEYRING_HDRLEN, to open in place). Returns the plaintext length, or
 * SH_EPARSE (short), SH_EVERSION, SH_ENOENT (unknown key), SH_EAUTH (bad tag), SH_ELIMIT (cap);
 * every refusal is counted. Nothing is written to out on refusal beyond scratch.
 */
long sh_keyring_open(sh_keyring_t *kr, const uint8_t *in, size_t len, uint8_t *out, size_t cap);

const sh_keyring_stats_t *sh_keyring_stats(const sh_keyring_t *kr);

/*
 * Sealed streams (push-pull stream frames, wire version 3, proto/README.md;
 * issue 15): libsodium's crypto_secretstream_xchacha20poly1305 under a
 * subkey of a keyring key (BLAKE2b-256 keyed by the key, of the label
 * "shoal push-pull stream v3"), so a long message is opened chunk by chunk
 * and a receiver never buffers more than one chunk it has not
 * authenticated. The stream header is [key id: 4 bytes, big endian]
 * [secretstream header: 24 bytes]; each chunk costs SH_KEYRING_STREAM_ABYTES
 * and carries a tag: message, or final for the last one. Chunks cannot be
 * reordered, dropped or spliced from another stream (secretstream), and a
 * stream that ends before its final chunk is truncated. A whole stream can
 * be replayed: there is no replay protection at this layer.
 */
#define SH_KEYRING_STREAM_HDRLEN 28u /* key id + secretstream header */
#define SH_KEYRING_STREAM_ABYTES 17u /* per chunk: tag byte + MAC */

typedef struct {
    _Alignas(16) uint8_t opaque[64]; /* crypto_secretstream_xchacha20poly1305_state */
} sh_keyring_stream_t;

/* Start a stream under the primary key: the stream header in hdr. 0 or
 * SH_ESTATE (no key). */
int sh_keyring_stream_seal_start(sh_keyring_t *kr, sh_keyring_stream_t *st,
                                 uint8_t hdr[SH_KEYRING_STREAM_HDRLEN]);
/* Seal one chunk in[0..len) into out (len + SH_KEYRING_STREAM_ABYTES
 * bytes), ad[0..adlen) authenticated with it (ad may be NULL); final: the
 * last chunk of the stream. */
void sh_keyring_stream_seal(sh_keyring_stream_t *st, const uint8_t *in, size_t len,
                            const uint8_t *ad, size_t adlen, int final, uint8_t *out);
/* Start opening the stream whose header is hdr: 0, or SH_ENOENT for a key
 * id no installed key has (counted unknown_key). */
int sh_keyring_stream_open_start(sh_keyring_t *kr, sh_keyring_stream_t *st,
                                 const uint8_t hdr[SH_KEYRING_STREAM_HDRLEN]);
/* Open one sealed chunk in[0..len) into out (len - ABYTES bytes): returns
 * the plaintext length and *final, or SH_EPARSE (shorter than ABYTES,
 * counted short_packet) / SH_EAUTH (counted bad_tag); then the stream is
 * unusable. */
long sh_keyring_stream_open(sh_keyring_t *kr, sh_keyring_stream_t *st, const uint8_t *in,
                            size_t len, const uint8_t *ad, size_t adlen, uint8_t *out, int *final);

#endif
