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
 * suffice). Returns the plaintext length, or SH_EPARSE (short), SH_EVERSION,
 * SH_ENOENT (unknown key), SH_EAUTH (bad tag), SH_ELIMIT (cap); every refusal
 * is counted. Nothing is written to out on refusal beyond scratch.
 */
long sh_keyring_open(sh_keyring_t *kr, const uint8_t *in, size_t len, uint8_t *out, size_t cap);

const sh_keyring_stats_t *sh_keyring_stats(const sh_keyring_t *kr);

#endif
