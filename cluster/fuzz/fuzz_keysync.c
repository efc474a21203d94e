/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the keyring channel's decoders (keysync.h: ring and holder-report
 * messages, and the push-pull state, a sequence of [len:u16][message]),
 * through the paths the network reaches them by: the input is the data of
 * a channel-1 update in a gossip packet (ch_merge) and the channel-1 state
 * of a push-pull frame (ch_merge_state), both already opened (the keyring
 * channel only ever sees authenticated bytes, but from any key holder).
 * Each input runs on a fresh keyring and SWIM instance.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cluster/keysync.h"
#include "cluster/swim.h"
#include "cluster/wire.h"
#include "core/alloc.h"

static void t_send(void *ud, const char *addr, const uint8_t *buf, size_t len)
{
}
static void t_pushpull(void *ud, const char *addr, int join)
{
}

static const sh_swim_transport_t transport = {t_send, t_pushpull, NULL};

static size_t packed_update(const uint8_t *data, size_t size, uint8_t **out)
{
    Sh__Gossip__ChannelMsg cm = SH__GOSSIP__CHANNEL_MSG__INIT;
    cm.channel = SH_CHANNEL_KEYRING;
    cm.data.data = (uint8_t *)data;
    cm.data.len = size;
    Sh__Gossip__Update u = SH__GOSSIP__UPDATE__INIT;
    u.kind_case = SH__GOSSIP__UPDATE__KIND_CHANNEL;
    u.channel = &cm;
    Sh__Gossip__Update *up = &u;
    Sh__Gossip__Packet p = SH__GOSSIP__PACKET__INIT;
    p.from = "fuzzer";
    p.n_updates = 1;
    p.updates = &up;
    size_t n = SH_WIRE_HDRLEN + sh__gossip__packet__get_packed_size(&p);
    *out = sh_malloc(n);
    sh_wire_put_header(*out, SH_WIRE_KIND_PACKET);
    sh__gossip__packet__pack(&p, *out + SH_WIRE_HDRLEN);
    return n;
}

static size_t packed_state(const uint8_t *data, size_t size, int join, uint8_t **out)
{
    Sh__Gossip__ChannelState cs = SH__GOSSIP__CHANNEL_STATE__INIT;
    cs.channel = SH_CHANNEL_KEYRING;
    cs.state.data = (uint8_t *)data;
    cs.state.len = size;
    Sh__Gossip__ChannelState *csp = &cs;
    Sh__Gossip__PushPull pp = SH__GOSSIP__PUSH_PULL__INIT;
    pp.from = "fuzzer";
    pp.join = join;
    pp.n_channels = 1;
    pp.channels = &csp;
    size_t n = SH_WIRE_HDRLEN + sh__gossip__push_pull__get_packed_size(&pp);
    *out = sh_malloc(n);
    sh_wire_put_header(*out, SH_WIRE_KIND_PUSHPULL);
    sh__gossip__push_pull__pack(&pp, *out + SH_WIRE_HDRLEN);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    uint8_t k[SH_KEYRING_KEYLEN];
    memset(k, 0x5a, sizeof(k));
    sh_keyring_t *kr = sh_keyring_create();
    sh_keysync_t *ks = sh_keysync_create(kr, "self", NULL, NULL, NULL);
    const uint8_t *keys = k;
    sh_keysync_load(ks, (const uint8_t(*)[SH_KEYRING_KEYLEN])keys, 1, NULL, 1000, NULL, 0);
    sh_swim_conf_t sc;
    memset(&sc, 0, sizeof(sc));
    sh_swim_conf_local(&sc);
    sc.name = "self";
    sc.addr = "127.0.0.1:7946";
    sh_swim_t *s = sh_swim_create(&sc, &transport, NULL, 0);
    sh_keysync_attach(ks, s);
    /* bit 0 of the first byte: joining (the ring is taken whatever its gen) */
    sh_keysync_set_joining(ks, data[0] & 1);
    uint8_t *b = NULL;
    size_t n = packed_update(data + 1, size - 1, &b);
    sh_swim_recv_bytes(s, "127.0.0.1:7947", b, n, 1);
    sh_free(b);
    n = packed_state(data + 1, size - 1, data[0] & 2, &b);
    sh_swim_pushpull_merge(s, b, n, 2, NULL);
    sh_free(b);
    sh_swim_destroy(s);
    sh_keysync_destroy(ks);
    sh_keyring_destroy(kr);
    return 0;
}
