/* SPDX-License-Identifier: Apache-2.0 */
/* Keyring: seal/open, several keys, primary, rotation, refusals counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/keyring.h"
#include "core/err.h"

static void key_of(uint8_t *k, uint8_t v)
{
    memset(k, v, SH_KEYRING_KEYLEN);
}

static void test_roundtrip(void **state)
{
    sh_keyring_t *kr = sh_keyring_create();
    uint8_t k[32], in[] = "hello gossip", sealed[128], out[128];
    assert_int_equal(sh_keyring_seal(kr, in, sizeof(in), sealed, sizeof(sealed)), SH_ESTATE);
    key_of(k, 1);
    assert_int_equal(sh_keyring_install(kr, k), 0);
    assert_int_equal(sh_keyring_install(kr, k), SH_EEXIST);
    long n = sh_keyring_seal(kr, in, sizeof(in), sealed, sizeof(sealed));
    assert_int_equal(n, (long)(sizeof(in) + SH_KEYRING_OVERHEAD));
    assert_int_equal(sh_keyring_open(kr, sealed, (size_t)n, out, sizeof(out)), (long)sizeof(in));
    assert_memory_equal(in, out, sizeof(in));
    assert_int_equal(sh_keyring_stats(kr)->opened, 1);
    sh_keyring_destroy(kr);
}

static void test_refusals(void **state)
{
    sh_keyring_t *kr = sh_keyring_create();
    uint8_t k[32], in[40] = {0}, sealed[128], out[128];
    key_of(k, 2);
    sh_keyring_install(kr, k);
    long n = sh_keyring_seal(kr, in, sizeof(in), sealed, sizeof(sealed));
    assert_int_equal(sh_keyring_open(kr, sealed, 10, out, sizeof(out)), SH_EPARSE);
    sealed[n - 1] ^= 1; /* tag */
    assert_int_equal(sh_keyring_open(kr, sealed, (size_t)n, out, sizeof(out)), SH_EAUTH);
    sealed[n - 1] ^= 1;
    sealed[4] ^= 1; /* key id: unknown key */
    assert_int_equal(sh_keyring_open(kr, sealed, (size_t)n, out, sizeof(out)), SH_ENOENT);
    sealed[4] ^= 1;
    sealed[0] = 9;
    assert_int_equal(sh_keyring_open(kr, sealed, (size_t)n, out, sizeof(out)), SH_EVERSION);
    sealed[0] = 1;
    sealed[30] ^= 0x80; /* ciphertext */
    assert_int_equal(sh_keyring_open(kr, sealed, (size_t)n, out, sizeof(out)), SH_EAUTH);
    const sh_keyring_stats_t *st = sh_keyring_stats(kr);
    assert_int_equal(st->short_packet, 1);
    assert_int_equal(st->bad_tag, 2);
    assert_int_equal(st->unknown_key, 1);
    assert_int_equal(st->bad_version, 1);
    assert_int_equal(st->opened, 0);
    sh_keyring_destroy(kr);
}

/* Rotation without downtime: A and B share old key; B installs the new one
 * and makes it primary; A still opens; after A installs it and the old key
 * is removed everywhere, a packet under the old key is refused. */
static void test_rotation(void **state)
{
    sh_keyring_t *a = sh_keyring_create(), *b = sh_keyring_create();
    uint8_t k1[32], k2[32], in[16] = {7}, s[128], out[128];
    key_of(k1, 1);
    key_of(k2, 2);
    sh_keyring_install(a, k1);
    sh_keyring_install(b, k1);
    long old = sh_keyring_seal(a, in, sizeof(in), s, sizeof(s));
    uint8_t old_pkt[128];
    memcpy(old_pkt, s, (size_t)old);
    sh_keyring_install(a, k2);
    sh_keyring_install(b, k2);
    assert_int_equal(sh_keyring_use(b, k2), 0);
    assert_int_equal(sh_keyring_primary_id(b), sh_keyring_key_id(k2));
    long n = sh_keyring_seal(b, in, sizeof(in), s, sizeof(s));
    assert_int_equal(sh_keyring_open(a, s, (size_t)n, out, sizeof(out)), 16);
    assert_int_equal(sh_keyring_remove(b, k2), SH_ESTATE);
    assert_int_equal(sh_keyring_use(a, k2), 0);
    assert_int_equal(sh_keyring_remove(a, k1), 0);
    assert_int_equal(sh_keyring_remove(a, k1), SH_ENOENT);
    assert_int_equal(sh_keyring_count(a), 1);
    assert_int_equal(sh_keyring_open(a, old_pkt, (size_t)old, out, sizeof(out)), SH_ENOENT);
    assert_int_equal(sh_keyring_stats(a)->unknown_key, 1);
    sh_keyring_destroy(a);
    sh_keyring_destroy(b);
}

static void test_limits_and_parse(void **state)
{
    sh_keyring_t *kr = sh_keyring_create();
    uint8_t k[32];
    for (unsigned i = 0; i < SH_KEYRING_MAX_KEYS; i++) {
        key_of(k, (uint8_t)(10 + i));
        assert_int_equal(sh_keyring_install(kr, k), 0);
    }
    key_of(k, 99);
    assert_int_equal(sh_keyring_install(kr, k), SH_ELIMIT);
    uint8_t p[32];
    assert_int_equal(sh_keyring_parse_key(
                         "  000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", p),
                     0);
    assert_int_equal(p[31], 0x1f);
    assert_int_equal(sh_keyring_parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", p), 0);
    assert_int_equal(p[31], 0x1f);
    assert_int_equal(sh_keyring_parse_key("short", p), SH_EINVAL);
    uint8_t in[4] = {0}, small[8];
    assert_int_equal(sh_keyring_seal(kr, in, 4, small, sizeof(small)), SH_ELIMIT);
    sh_keyring_destroy(kr);
    sh_keyring_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_limits_and_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
