/* SPDX-License-Identifier: Apache-2.0 */
/* Wire codec: the check order size, open, version, decode, meaning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/wire.h"
#include "core/err.h"

static size_t encode_packet(const Sh__Gossip__Packet *p, uint8_t *out, unsigned kind)
{
    sh_wire_put_header(out, kind);
    return SH_WIRE_HDRLEN + sh__gossip__packet__pack(p, out + SH_WIRE_HDRLEN);
}

static sh_keyring_t *ring(uint8_t v)
{
    uint8_t k[32];
    memset(k, v, sizeof(k));
    sh_keyring_t *kr = sh_keyring_create();
    sh_keyring_install(kr, k);
    return kr;
}

static void test_ping_roundtrip_with_piggyback(void **state)
{
    sh_keyring_t *kr = ring(1);
    Sh__Gossip__Packet p = SH__GOSSIP__PACKET__INIT;
    Sh__Gossip__Ping ping = SH__GOSSIP__PING__INIT;
    ping.seq = 42;
    ping.target = "b";
    p.from = "a";
    p.ping = &ping;
    uint8_t pt[512], sealed[600], scratch[600];
    size_t n = encode_packet(&p, pt, SH_WIRE_KIND_PACKET);
    /* Append two raw updates, as the broadcast queue does. */
    Sh__Gossip__Alive al = SH__GOSSIP__ALIVE__INIT;
    al.node = "c";
    al.addr = "10.0.0.3:7946";
    al.incarnation = 5;
    Sh__Gossip__Update u = SH__GOSSIP__UPDATE__INIT;
    u.kind_case = SH__GOSSIP__UPDATE__KIND_ALIVE;
    u.alive = &al;
    uint8_t ub[128];
    size_t ul = sh__gossip__update__pack(&u, ub);
    n += sh_wire_append_update(pt + n, ub, ul);
    n += sh_wire_append_update(pt + n, ub, ul);
    long s = sh_keyring_seal(kr, pt, n, sealed, sizeof(sealed));
    Sh__Gossip__Packet *d = NULL;
    sh_wire_stats_t st = {0};
    const char *why = NULL;
    assert_int_equal(sh_wire_open_packet(kr, sealed, (size_t)s, scratch, &d, &st, &why), 0);
    assert_non_null(d->ping);
    assert_int_equal(d->ping->seq, 42);
    assert_string_equal(d->from, "a");
    assert_int_equal(d->n_updates, 2);
    assert_int_equal(d->updates[1]->alive->incarnation, 5);
    assert_string_equal(d->updates[1]->alive->addr, "10.0.0.3:7946");
    sh_wire_packet_free(d);
    assert_int_equal(st.ok, 1);
    sh_keyring_destroy(kr);
}

static void test_order(void **state)
{
    sh_keyring_t *kr = ring(1), *other = ring(2);
    sh_wire_stats_t st = {0};
    const char *why = NULL;
    Sh__Gossip__Packet *d = NULL;
    static uint8_t big[SH_WIRE_MAX_UDP + 1], scratch[SH_WIRE_MAX_UDP + 1];
    /* 1: size */
    assert_int_equal(sh_wire_open_packet(kr, big, sizeof(big), scratch, &d, &st, &why), SH_ELIMIT);
    assert_int_equal(st.too_big, 1);
    /* 2: forged (random bytes) and under a key we do not have */
    uint8_t junk[64];
    memset(junk, 0x01, sizeof(junk));
    assert_true(sh_wire_open_packet(kr, junk, sizeof(junk), scratch, &d, &st, &why) < 0);
    Sh__Gossip__Packet p = SH__GOSSIP__PACKET__INIT;
    p.from = "a";
    uint8_t pt[256], sealed[300];
    size_t n = encode_packet(&p, pt, SH_WIRE_KIND_PACKET);
    long s = sh_keyring_seal(other, pt, n, sealed, sizeof(sealed));
    assert_int_equal(sh_wire_open_packet(kr, sealed, (size_t)s, scratch, &d, &st, &why), SH_ENOENT);
    assert_string_equal(why, "unknown key");
    assert_int_equal(st.not_opened, 2);
    /* 3: version: a sender that needs a reader newer than us */
    pt[1] = SH_WIRE_VERSION + 1;
    pt[0] = SH_WIRE_VERSION + 1;
    s = sh_keyring_seal(kr, pt, n, sealed, sizeof(sealed));
    assert_int_equal(sh_wire_open_packet(kr, sealed, (size_t)s, scratch, &d, &st, &why),
                     SH_EVERSION);
    /* ... but a newer sender that stays compatible is understood */
    pt[1] = SH_WIRE_MIN_VERSION;
    s = sh_keyring_seal(kr, pt, n, sealed, sizeof(sealed));
    assert_int_equal(sh_wire_open_packet(kr, sealed, (size_t)s, scratch, &d, &st, &why), 0);
    sh_wire_packet_free(d);
    /* 3: kind */
    pt[0] = SH_WIRE_VERSION;
    pt[2] = SH_WIRE_KIND_PUSHPULL;
    s = sh_keyring_seal(kr, pt, n, sealed, sizeof(sealed));
    assert_int_equal(sh_wire_open_packet(kr, sealed, (size_t)s, scratch, &d, &st, &why), SH_EPARSE);
    assert_int_equal(st.wrong_kind, 1);
    /* 4: decode */
    uint8_t bad[] = {SH_WIRE_VERSION, SH_WIRE_MIN_VERSION, SH_WIRE_KIND_PACKET, 0x0a, 0x7f};
    s = sh_keyring_seal(kr, bad, sizeof(bad), sealed, sizeof(sealed));
    assert_int_equal(sh_wire_open_packet(kr, sealed, (size_t)s, scratch, &d, &st, &why), SH_EPARSE);
    assert_int_equal(st.undecodable, 1);
    /* 5: meaning: empty sender, two probes */
    p.from = "";
    n = encode_packet(&p, pt, SH_WIRE_KIND_PACKET);
    assert_int_equal(sh_wire_decode_packet(pt, n, &d, &st, &why), SH_EINVAL);
    p.from = "a";
    Sh__Gossip__Ping ping = SH__GOSSIP__PING__INIT;
    Sh__Gossip__Ack ack = SH__GOSSIP__ACK__INIT;
    ping.target = "b";
    p.ping = &ping;
    p.ack = &ack;
    n = encode_packet(&p, pt, SH_WIRE_KIND_PACKET);
    assert_int_equal(sh_wire_decode_packet(pt, n, &d, &st, &why), SH_EINVAL);
    assert_string_equal(why, "more than one probe message");
    assert_int_equal(st.invalid, 2);
    assert_null(d);
    sh_keyring_destroy(kr);
    sh_keyring_destroy(other);
}

/* A field from a future version is skipped, not an error. */
static void test_unknown_field(void **state)
{
    Sh__Gossip__Packet p = SH__GOSSIP__PACKET__INIT;
    p.from = "a";
    uint8_t pt[64];
    size_t n = encode_packet(&p, pt, SH_WIRE_KIND_PACKET);
    uint8_t tag[] = {0x98, 0x06, 0x07}; /* field 99, varint 7 */
    memcpy(pt + n, tag, sizeof(tag));
    n += sizeof(tag);
    sh_wire_stats_t st = {0};
    Sh__Gossip__Packet *d = NULL;
    assert_int_equal(sh_wire_decode_packet(pt, n, &d, &st, NULL), 0);
    sh_wire_packet_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ping_roundtrip_with_piggyback),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_unknown_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
