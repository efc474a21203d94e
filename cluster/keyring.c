/* SPDX-License-Identifier: Apache-2.0 */
/* The cluster keyring: see keyring.h. Cluster thread only. */
#include "cluster/keyring.h"

#include <ctype.h>
#include <sodium.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == SH_KEYRING_KEYLEN, "key length");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == 24, "nonce length");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == SH_KEYRING_TAGLEN, "tag length");
_Static_assert(sizeof(crypto_secretstream_xchacha20poly1305_state) <=
                   sizeof(((sh_keyring_stream_t *)0)->opaque),
               "stream state");
_Static_assert(4 + crypto_secretstream_xchacha20poly1305_HEADERBYTES == SH_KEYRING_STREAM_HDRLEN,
               "stream header");
_Static_assert(crypto_secretstream_xchacha20poly1305_ABYTES == SH_KEYRING_STREAM_ABYTES,
               "stream overhead");

typedef struct {
    uint8_t key[SH_KEYRING_KEYLEN];
    uint32_t id;
} slot;

struct sh_keyring_s {
    slot keys[SH_KEYRING_MAX_KEYS];
    unsigned n;
    int primary; /* index in keys, -1 with no key */
    sh_keyring_stats_t stats;
};

sh_keyring_t *sh_keyring_create(void)
{
    /* sodium_init() is idempotent and thread-safe; < 0 means no entropy. */
    if (sodium_init() < 0)
        return NULL;
    sh_keyring_t *kr = sh_new(sh_keyring_t);
    kr->primary = -1;
    return kr;
}

void sh_keyring_destroy(sh_keyring_t *kr)
{
    if (kr == NULL)
        return;
    sodium_memzero(kr, sizeof(*kr));
    sh_free(kr);
}

uint32_t sh_keyring_key_id(const uint8_t *key)
{
    uint8_t h[32];
    crypto_generichash(h, sizeof(h), key, SH_KEYRING_KEYLEN, NULL, 0);
    return ((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) | ((uint32_t)h[2] << 8) | h[3];
}

static int find_id(const sh_keyring_t *kr, uint32_t id)
{
    for (unsigned i = 0; i < kr->n; i++)
        if (kr->keys[i].id == id)
            return (int)i;
    return -1;
}

static int find_key(const sh_keyring_t *kr, const uint8_t *key)
{
    int i = find_id(kr, sh_keyring_key_id(key));
    if (i >= 0 && sodium_memcmp(kr->keys[i].key, key, SH_KEYRING_KEYLEN) == 0)
        return i;
    return -1;
}

int sh_keyring_install(sh_keyring_t *kr, const uint8_t *key)
{
    uint32_t id = sh_keyring_key_id(key);
    if (find_id(kr, id) >= 0)
        return SH_EEXIST;
    if (kr->n >= SH_KEYRING_MAX_KEYS)
        return SH_ELIMIT;
    memcpy(kr->keys[kr->n].key, key, SH_KEYRING_KEYLEN);
    kr->keys[kr->n].id = id;
    if (kr->primary < 0)
        kr->primary = (int)kr->n;
    kr->n++;
    return 0;
}

int sh_keyring_use(sh_keyring_t *kr, const uint8_t *key)
{
    int i = find_key(kr, key);
    if (i < 0)
        return SH_ENOENT;
    kr->primary = i;
    return 0;
}

int sh_keyring_remove(sh_keyring_t *kr, const uint8_t *key)
{
    int i = find_key(kr, key);
    if (i < 0)
        return SH_ENOENT;
    if (i == kr->primary)
        return SH_ESTATE;
    kr->keys[i] = kr->keys[kr->n - 1];
    sodium_memzero(&kr->keys[kr->n - 1], sizeof(slot));
    if (kr->primary == (int)kr->n - 1)
        kr->primary = i;
    kr->n--;
    return 0;
}

unsigned sh_keyring_count(const sh_keyring_t *kr)
{
    return kr->n;
}

uint32_t sh_keyring_primary_id(const sh_keyring_t *kr)
{
    return kr->primary < 0 ? 0 : kr->keys[kr->primary].id;
}

unsigned sh_keyring_ids(const sh_keyring_t *kr, uint32_t *ids, unsigned max)
{
    for (unsigned i = 0; i < kr->n && i < max; i++)
        ids[i] = kr->keys[i].id;
    return kr->n;
}

int sh_keyring_parse_key(const char *text, uint8_t *key)
{
    while (isspace((unsigned char)*text))
        text++;
    size_t len = strlen(text);
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    size_t bin = 0;
    if (len == 2 * SH_KEYRING_KEYLEN) {
        if (sodium_hex2bin(key, SH_KEYRING_KEYLEN, text, len, NULL, &bin, NULL) == 0 &&
            bin == SH_KEYRING_KEYLEN)
            return 0;
    } else if (sodium_base642bin(key, SH_KEYRING_KEYLEN, text, len, NULL, &bin, NULL,
                                 sodium_base64_VARIANT_ORIGINAL) == 0 &&
               bin == SH_KEYRING_KEYLEN) {
        return 0;
    }
    return SH_EINVAL;
}

static void put_hdr(uint8_t *out, uint32_t id)
{
    out[0] = SH_KEYRING_ENVELOPE_V1;
    out[1] = (uint8_t)(id >> 24);
    out[2] = (uint8_t)(id >> 16);
    out[3] = (uint8_t)(id >> 8);
    out[4] = (uint8_t)id;
}

long sh_keyring_seal(sh_keyring_t *kr, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    if (kr->primary < 0)
        return SH_ESTATE;
    if (cap < len + SH_KEYRING_OVERHEAD)
        return SH_ELIMIT;
    const slot *k = &kr->keys[kr->primary];
    put_hdr(out, k->id);
    uint8_t *nonce = out + 5;
    randombytes_buf(nonce, 24);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + SH_KEYRING_HDRLEN, &clen, in, len, out, 5,
                                               NULL, nonce, k->key);
    kr->stats.sealed++;
    return (long)(SH_KEYRING_HDRLEN + clen);
}

long sh_keyring_open(sh_keyring_t *kr, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    if (len < SH_KEYRING_OVERHEAD) {
        kr->stats.short_packet++;
        return SH_EPARSE;
    }
    if (in[0] != SH_KEYRING_ENVELOPE_V1) {
        kr->stats.bad_version++;
        return SH_EVERSION;
    }
    uint32_t id =
        ((uint32_t)in[1] << 24) | ((uint32_t)in[2] << 16) | ((uint32_t)in[3] << 8) | in[4];
    int i = find_id(kr, id);
    if (i < 0) {
        kr->stats.unknown_key++;
        return SH_ENOENT;
    }
    size_t plen = len - SH_KEYRING_OVERHEAD;
    if (cap < plen)
        return SH_ELIMIT;
    unsigned long long mlen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, in + SH_KEYRING_HDRLEN,
                                                   len - SH_KEYRING_HDRLEN, in, 5, in + 5,
                                                   kr->keys[i].key) != 0) {
        kr->stats.bad_tag++;
        return SH_EAUTH;
    }
    kr->stats.opened++;
    return (long)mlen;
}

const sh_keyring_stats_t *sh_keyring_stats(const sh_keyring_t *kr)
{
    return &kr->stats;
}

/* ------------------------------------------------------------ streams -- */

#define STREAM_LABEL "shoal push-pull stream v3"

/* The stream subkey of a keyring key: a stream never runs under the key the
 * datagram envelope uses itself. */
static void stream_key(const uint8_t *key, uint8_t out[SH_KEYRING_KEYLEN])
{
    crypto_generichash(out, SH_KEYRING_KEYLEN, (const uint8_t *)STREAM_LABEL,
                       sizeof(STREAM_LABEL) - 1, key, SH_KEYRING_KEYLEN);
}

static crypto_secretstream_xchacha20poly1305_state *state_of(sh_keyring_stream_t *st)
{
    return (crypto_secretstream_xchacha20poly1305_state *)(void *)st->opaque;
}

int sh_keyring_stream_seal_start(sh_keyring_t *kr, sh_keyring_stream_t *st,
                                 uint8_t hdr[SH_KEYRING_STREAM_HDRLEN])
{
    if (kr->primary < 0)
        return SH_ESTATE;
    const slot *k = &kr->keys[kr->primary];
    uint8_t sk[SH_KEYRING_KEYLEN];
    stream_key(k->key, sk);
    hdr[0] = (uint8_t)(k->id >> 24);
    hdr[1] = (uint8_t)(k->id >> 16);
    hdr[2] = (uint8_t)(k->id >> 8);
    hdr[3] = (uint8_t)k->id;
    crypto_secretstream_xchacha20poly1305_init_push(state_of(st), hdr + 4, sk);
    sodium_memzero(sk, sizeof(sk));
    kr->stats.sealed++;
    return 0;
}

void sh_keyring_stream_seal(sh_keyring_stream_t *st, const uint8_t *in, size_t len,
                            const uint8_t *ad, size_t adlen, int final, uint8_t *out)
{
    crypto_secretstream_xchacha20poly1305_push(
        state_of(st), out, NULL, in, len, ad, adlen,
        final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
              : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
}

int sh_keyring_stream_open_start(sh_keyring_t *kr, sh_keyring_stream_t *st,
                                 const uint8_t hdr[SH_KEYRING_STREAM_HDRLEN])
{
    uint32_t id =
        ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | ((uint32_t)hdr[2] << 8) | hdr[3];
    int i = find_id(kr, id);
    if (i < 0) {
        kr->stats.unknown_key++;
        return SH_ENOENT;
    }
    uint8_t sk[SH_KEYRING_KEYLEN];
    stream_key(kr->keys[i].key, sk);
    int rc = crypto_secretstream_xchacha20poly1305_init_pull(state_of(st), hdr + 4, sk);
    sodium_memzero(sk, sizeof(sk));
    return rc == 0 ? 0 : SH_EAUTH;
}

long sh_keyring_stream_open(sh_keyring_t *kr, sh_keyring_stream_t *st, const uint8_t *in,
                            size_t len, const uint8_t *ad, size_t adlen, uint8_t *out, int *final)
{
    if (len < SH_KEYRING_STREAM_ABYTES) {
        kr->stats.short_packet++;
        return SH_EPARSE;
    }
    unsigned long long mlen = 0;
    unsigned char tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(state_of(st), out, &mlen, &tag, in, len, ad,
                                                   adlen) != 0) {
        kr->stats.bad_tag++;
        return SH_EAUTH;
    }
    kr->stats.opened++;
    *final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    if (tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL &&
        tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
        return SH_EAUTH; /* a tag we never send (push, rekey) */
    return (long)mlen;
}
