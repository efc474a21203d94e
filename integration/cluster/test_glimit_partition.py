# SPDX-License-Identifier: Apache-2.0
"""Issue 13: a partition splits a global rate limit's budget by membership,
and heals.

Five real nodes, one hot key at 200 r/s (global), clients on every node
offering twice the rate. The gossip between {g0, g1, g2} and {g3, g4} is
cut with nftables (UDP both ways, gossip TCP; the clients' HTTP still
reaches every node). The minority (2 of 5) cannot hear a majority: its
nodes say so (`nodectl limits`: degraded, "hears 2 of 5"; /metrics:
shoal_limit_global_degraded 1, shoal_limit_global_share 0.4; the log) and
together admit their share, 2/5 of the rate (within 5% of the rate). The
majority (3 of 5) cannot tell the others from failed nodes and keeps the
whole rate (within 5%). The cut is removed: every node hears 5 of 5 again,
none is degraded, and the cluster admits the rate again (within 5%).
Skipped (77) where nft cannot be used. Prints the table."""

import math
import sys
import time

import cluster_util as cu
import glimit_util as gu

sh = cu.sh


def zone(ctl, n):
    lim = ctl.json(n.admin, "limits") or {}
    for z in lim.get("zones", []):
        if z["zone"] == "hot":
            return z
    return None


def window(load, secs=4, start=0):
    t0 = max(start, int(math.ceil(load.now())))
    time.sleep(max(0.0, t0 + secs + 0.1 - load.now()))
    return t0, t0 + secs


def kept_pace(load, t1, t2):
    """The seconds of [t1, t2) in which the clients kept pace (gu.Load.kept:
    a second in which they fell behind says nothing about the limit)."""
    return load.kept(t1, t2)


def mean_of(load, ports, secs):
    return load.admitted_by(ports, 0, max(secs) + 1 if secs else 0, secs=secs)


def judge(t, load, t1, t2, ports, expected, what, rows, phase, side):
    """Admitted from `ports` over the seconds at pace within 5% of the rate
    R of `expected`; an overshoot fails whatever the pace; fewer than 2
    seconds at pace is inconclusive (gu.judge)."""
    R = gu.HOT_RATE
    secs = kept_pace(load, t1, t2)
    all_mean, xall = load.admitted_by(ports, t1, t2)
    mean, xs = mean_of(load, ports, secs)
    rows.append((phase, side, mean if secs else all_mean, expected, xs if secs else xall))
    if all_mean > expected + 0.05 * R:
        return t.check(False, what % all_mean + " (over, with the clients at any pace)", xall)
    if len(secs) < 2:
        t.inconclusive(what % all_mean + ": the load generator kept pace for %d of %d seconds "
                       "(sent, late ms: %s)" % (len(secs), t2 - t1, load.pace(t1, t2)), xall)
        return None
    return t.check(abs(mean - expected) <= 0.05 * R, what % mean, xs)


def main(t, ctl):
    if not gu.nft_permitted():
        print("SKIP - nft is not usable here", flush=True)
        sys.exit(77)
    nodes, key, root = gu.start_cluster(t, ctl, 5)
    a, b = nodes[:3], nodes[3:]
    nft = gu.Nft([n.gossip_port for n in a], [n.gossip_port for n in b],
                 [n.gossip_port for n in nodes])
    sh._install_handlers()
    R = gu.HOT_RATE
    load = gu.Load(gu.weights_of(nodes, False), R * 2, gu.hot_key, path="/h/x").start()
    rows = []
    try:
        allp = [n.http_port for n in nodes]
        t1, t2 = window(load, start=2)   # after 2 s of warm-up, as in glimit_util.measure
        judge(t, load, t1, t2, allp, R, "whole: the cluster admits %%.1f/s for %d/s" % R, rows,
              "whole", "all 5")
        nft.add()
        tp = time.monotonic()

        def minority_degraded():
            return all((zone(ctl, n) or {}).get("degraded") and
                       (zone(ctl, n) or {}).get("heard") == 2 for n in b)
        sh.wait_for(minority_degraded, 20 * t.slow, "the minority to say it is degraded",
                    interval=0.1)
        t.log("the minority says it hears 2 of 5 after %.1f s" % (time.monotonic() - tp))
        z = zone(ctl, b[0])
        t.check(z["degraded"] and abs(z["share"] - 0.4) < 1e-6 and z["members"] == 5,
                "nodectl limits on the minority: degraded, share 0.4, hears 2 of 5", z)
        out = ctl.run("limits", addr=b[0].admin)
        t.check("degraded" in out.stdout and "hears 2 of 5" in out.stdout,
                "nodectl limits prints degraded", out.stdout)
        m = cu.metrics(b[0].admin)
        t.check(m.get('shoal_limit_global_degraded{zone="hot"}') == 1 and
                abs(m.get('shoal_limit_global_share{zone="hot"}', 0) - 0.4) < 1e-3,
                "/metrics on the minority: degraded 1, share 0.4",
                {k: v for k, v in m.items() if "global" in k})
        t.check("hears 2 of 5 members" in b[0].proc.stderr(),
                "the minority's log says it admits its share", b[0].proc.tail())
        za = zone(ctl, a[0])
        t.check(za and not za["degraded"], "the majority is not degraded", za)
        t1, t2 = window(load)
        judge(t, load, t1, t2, [n.http_port for n in b], R * 2 / 5.0,
              "the minority admits its share, 2/5 of the rate: %%.1f/s for %.0f/s" % (R * 0.4),
              rows, "split", "minority 2")
        judge(t, load, t1, t2, [n.http_port for n in a], R,
              "the majority keeps the whole rate: %%.1f/s for %d/s" % R, rows, "split",
              "majority 3")
        nft.remove()
        th = time.monotonic()

        def healed():
            for n in nodes:
                z = zone(ctl, n)
                if z is None or z["degraded"] or z["heard"] != 5:
                    return False
            return True
        sh.wait_for(healed, 40 * t.slow, "every node to hear 5 of 5 again", interval=0.2)
        t.log("healed: every node hears 5 of 5 %.1f s after the cut was removed"
              % (time.monotonic() - th))
        t.check(True, "after the heal no node is degraded")
        t1, t2 = window(load)
        judge(t, load, t1, t2, allp, R, "healed: the cluster admits %%.1f/s for %d/s" % R, rows,
              "healed", "all 5")
    finally:
        load.stop()
        nft.remove()
    print("\n# global rate limit, partition 3/2 (loopback + nftables, %s)" % t.shoal_bin)
    print("%-7s %-11s %9s %9s  %s" % ("phase", "side", "admitted", "expected", "per second"))
    for ph, side, mean, exp, xs in rows:
        print("%-7s %-11s %9.1f %9.0f  %s" % (ph, side, mean, exp, xs))


cu.run(main)
