# SPDX-License-Identifier: Apache-2.0
"""Issue 15, cluster chaos: 10% packet loss, then 200 ms jitter, and no
false deaths.

Three shoal nodes (profile local); each advertises the address of a
chaos_util.Relay in front of its gossip port, so every gossip datagram and
push-pull connection between nodes crosses a relay (this kernel has no
netem). Three phases of CHAOS_WINDOW_S (default 15) seconds each:
1. loss: nftables drops 10% of the packets (`numgen random mod 100 < 10`)
   to the three gossip ports (UDP, and TCP both ways), in a table of its own
   deleted on every exit path; the relays add no delay. Each packet between
   two nodes has exactly one 10% chance to be dropped per direction.
2. jitter: no loss; each relay holds every datagram and TCP chunk a uniform
   random 0-200 ms in each direction, so a direct probe's round trip gains
   0-400 ms, past the 200 ms probe timeout about half the time (an ack
   that comes later but within the 700 ms probe interval still counts, as
   in memberlist, so these probes go indirect but do not fail).
3. both at once.
During each phase every node's view is sampled about every 100 ms: no node
may ever see another dead (suspect is allowed: that is what the suspicion
timeout and refutation are for). The nodes' counters show the chaos was
felt (packets dropped, probes failed). Skips (exit 77) if nftables cannot
be used here."""

import sys

import chaos_util as ch
import cluster_util as cu

sh = cu.sh


def main(t, ctl):
    why = ch.nft_usable()
    if why is not None:
        print("SKIP - nftables cannot be used here: %s" % why, flush=True)
        sys.exit(77)
    window = ch.param("window_s", 15.0)
    jitter = ch.param("jitter_ms", 200) / 1000.0
    loss = ch.param("loss_pct", 10)
    profile = ch.param("profile", "local")
    key = cu.write_keys(t, [cu.new_key()])
    nodes, relays = [], []
    try:
        for i in range(3):
            rport = t.port()
            n = ch.ChaosNode(t, ctl, "j%d" % i, key, None, profile=profile,
                             advertise_port=rport,
                             joins=[nodes[0].advertise] if nodes else [])
            relays.append(ch.Relay(rport, n.gossip_port).start())
            nodes.append(n.start())
        everyone = {n.name: "alive" for n in nodes}
        ch.wait_views(t, ctl, nodes, everyone, 30, "3 alive everywhere through the relays")
        through = sum(r.udp_relayed for r in relays)
        t.check(through > 0, "gossip goes through the relays (%d datagrams so far)" % through)

        def phase(what):
            before = {n.name: ctl.stats(n.admin) or {} for n in nodes}
            seen = ch.watch_views(ctl, nodes, list(everyone), window, interval=0.1)
            after = {n.name: ctl.stats(n.admin) or {} for n in nodes}
            dead = {k: v for k, v in seen.items() if "dead" in v or "left" in v or "?" in v}
            suspected = sorted("%s->%s" % k for k, v in seen.items() if "suspect" in v)
            felt = {n: {c: after[n].get(c, 0) - before[n].get(c, 0)
                        for c in ("probes", "probe_failures", "refutes")} for n in after}
            t.log("%s: suspicions seen %s; per node (probes, failed, refutes): %s"
                  % (what, suspected or "none",
                     {n: (f["probes"], f["probe_failures"], f["refutes"]) for n, f in felt.items()}))
            t.check(not dead, "%s: no false death over %.0fs (every view of every member "
                    "sampled each ~100 ms)" % (what, window), dead)
            return felt

        # ---- 1. loss
        with ch.NftLoss([n.gossip_port for n in nodes], loss) as nft:
            felt = phase("%d%% loss" % loss)
            dropped = nft.dropped()
        t.check(dropped > 0, "the loss was real: nftables dropped %d gossip packets" % dropped)
        t.check(not nft.exists(), "the nftables table is deleted after the phase")

        # ---- 2. jitter
        for r in relays:
            r.set_jitter(jitter)
            r.reset_delays()
        phase("%d ms jitter" % (jitter * 1000))
        n_ = sum(r.delays_n for r in relays)
        mean = sum(r.delays_sum for r in relays) / max(1, n_)
        top = max(r.delays_max for r in relays)
        t.check(n_ > 0 and abs(mean - jitter / 2) < jitter / 5 and top > jitter * 0.8,
                "the jitter was real: %d datagrams and chunks held %.0f ms on average, %.0f ms "
                "at most" % (n_, mean * 1000, top * 1000))

        # ---- 3. both
        with ch.NftLoss([n.gossip_port for n in nodes], loss) as nft:
            felt = phase("%d%% loss and %d ms jitter" % (loss, jitter * 1000))
            dropped = nft.dropped()
        t.check(dropped > 0 and sum(f["probe_failures"] for f in felt.values()) > 0,
                "loss and jitter were felt: %d packets dropped, %d probes failed"
                % (dropped, sum(f["probe_failures"] for f in felt.values())))
        for r in relays:
            r.set_jitter(0)
        t.log("relayed: %d datagrams, %d TCP connections, %d TCP bytes"
              % (sum(r.udp_relayed for r in relays), sum(r.tcp_conns for r in relays),
                 sum(r.tcp_bytes for r in relays)))
        for n in nodes:
            t.stop(n.proc)
    finally:
        sh.stop_all()
        for r in relays:
            r.close()


if __name__ == "__main__":
    cu.run(main)
