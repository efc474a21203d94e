# SPDX-License-Identifier: Apache-2.0
"""Issue 13, multi-region: two regions far apart, the `wan` profile.

Two bridges, one per region ("east" and "west"), each with its nodes in
network namespaces of their own (skipped, exit 77, where `ip netns add` is
not permitted). Between the bridges there is no link but wan_relay.py: two
TAP devices and a process that holds every frame DELAY ms (default 80) in
each direction, in order; nftables on the bridge's forward path drops LOSS
percent (default 1) of what crosses (`numgen random mod 100 < N drop`).
Every node has `profile wan`, its region and a zone.

- the relay really delays: ping across regions takes at least 2 x DELAY,
  within a region well under it;
- the six nodes form one cluster across the WAN;
- for SECONDS (default 30; bench/multiregion.sh runs 1,200) every node is
  polled every second and no node ever sees another as anything but alive
  (no false failure across the lossy, slow link);
- a node of "west" is killed (SIGKILL): the time until every node of
  "east" sees it failed is reported (the cross-region detection time), and
  the other nodes of west stay alive everywhere.

Environment: SHOAL_MR_SECONDS, SHOAL_MR_DELAY_MS, SHOAL_MR_LOSS."""

import json
import os
import signal
import subprocess
import sys
import time

import cluster_util as cu
import netns_util as nu

sh = cu.sh
PER_REGION = 3
SECONDS = float(os.environ.get("SHOAL_MR_SECONDS", "30"))
DELAY_MS = float(os.environ.get("SHOAL_MR_DELAY_MS", "80"))
LOSS = int(os.environ.get("SHOAL_MR_LOSS", "1"))
HERE = os.path.dirname(os.path.abspath(__file__))


def main(t, ctl):
    nu.run_in_netns(t, nu.WanNet(DELAY_MS, LOSS), lambda net: run(t, ctl, net), need_tun=True)


def conf(name, gossip, key, joins, region, zone):
    return """
        worker_processes 1;
        events { }
        http { server { listen 127.0.0.1:{port}; location / { return 200; } } }
        cluster {
            name itest; node_name %s; bind %s; admin_listen 127.0.0.1:9901;
            encrypt_key_file %s; profile wan; region %s; zone %s;
            %s
        }
        """ % (name, gossip, key, region, zone, ("join %s;" % " ".join(joins)) if joins else "")


RTT = """
import socket, sys, time
best = None
for _ in range(3):
    s = socket.socket()
    s.settimeout(5)
    t0 = time.monotonic()
    try:
        s.connect((sys.argv[1], 7946))  # the gossip TCP port: one round trip (SYN, SYN-ACK)
    except OSError:
        continue
    ms = (time.monotonic() - t0) * 1000
    s.close()
    best = ms if best is None else min(best, ms)
print(best if best is not None else -1)
"""


def rtt_ms(ns, addr):
    """The best of three TCP connects from namespace ns to addr: one round trip."""
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", RTT, addr],
                       capture_output=True, text=True, timeout=60)
    try:
        v = float(r.stdout.strip())
    except ValueError:
        return None
    return v if v >= 0 else None


def run(t, ctl, net):
    net.setup()
    c = cu.Cluster(t, ctl)
    key = cu.write_keys(t, [cu.new_key()])
    seeds = []
    regions = {}
    for i in range(2 * PER_REGION):
        side = "a" if i < PER_REGION else "b"
        region = "east" if side == "a" else "west"
        ns, addr = net.add_node(i, side)
        gossip = "%s:7946" % addr
        d = t._subdir("shoal-n%d" % i)
        # every node lists one seed of each region (the first of each)
        conf_path = t.write_conf(conf("n%d" % i, gossip, key, seeds, region, "%s-%d" % (region, i % 2)),
                                 port=8080, d=d)
        p = t._spawn("shoal", ["ip", "netns", "exec", ns, t.shoal_bin, "-p", d + "/", "-c", conf_path], d)
        n = cu.CNode("n%d" % i, None, gossip, "127.0.0.1:9901", netns=ns, proc=p)
        n.addr = addr
        sh.wait_for(lambda n=n: c._admin_up(n), 30, "admin of n%d in %s" % (i, ns))
        c.nodes.append(n)
        regions[n.name] = region
        if i == 0 or i == PER_REGION:
            seeds.append(gossip)
    east, west = c.nodes[:PER_REGION], c.nodes[PER_REGION:]

    across = rtt_ms(east[0].netns, west[0].addr)
    within = rtt_ms(east[0].netns, east[1].addr)
    t.check(across is not None and across >= 2 * DELAY_MS * 0.95,
            "the relay delays: round trip east->west %.1f ms (>= 2 x %.0f ms)" % (across or -1, DELAY_MS))
    t.check(within is not None and within < DELAY_MS,
            "within a region no delay: round trip %.1f ms" % (within or -1))

    alive = {n.name: "alive" for n in c.nodes}
    secs = c.wait_all_see(c.nodes, alive, 120, "6 alive everywhere")
    t.check(True, "6 nodes in two regions (%d ms apart, %d%% loss) form one cluster in %.2fs"
            % (DELAY_MS, LOSS, secs))

    # steady state: nobody ever sees anybody as not alive
    bad = []
    polls = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < SECONDS:
        for o in c.nodes:
            v = c.view(o)
            polls += 1
            for name, st in v.items():
                if st != "alive":
                    bad.append((round(time.monotonic() - t0, 1), o.name, name, st))
        time.sleep(1)  # the poll period of an observation, not a wait for a condition
    t.check(not bad, "%.0fs across the WAN with %d%% loss: %d polls, no node ever seen as "
            "anything but alive%s" % (SECONDS, LOSS, polls, (" (seen: %s)" % bad[:5]) if bad else ""))

    # cross-region detection: kill a west node; every east node sees it failed
    victim = west[-1]
    t0 = time.monotonic()
    victim.proc.kill()  # SIGKILL: no goodbye
    seen = {}

    def east_sees():
        for o in east:
            if o.name not in seen:
                st = c.view(o).get(victim.name)
                if st in ("dead", "failed", "left"):
                    seen[o.name] = time.monotonic() - t0
        return len(seen) == len(east)
    sh.wait_for(east_sees, 180, "every east node to see %s failed" % victim.name)
    t.check(True, "cross-region detection of a killed node: east saw it failed after %s s"
            % ", ".join("%.1f" % seen[o.name] for o in east))
    others = {n.name: "alive" for n in c.nodes if n is not victim}
    t.check(all(all(c.view(o).get(k) == v for k, v in others.items()) for o in c.nodes
                if o is not victim),
            "the other nodes stay alive in every view")
    print("MULTIREGION delay_ms=%d loss_pct=%d steady_s=%.0f false_failures=%d detection_s=%s"
          % (DELAY_MS, LOSS, SECONDS, len(bad), json.dumps({k: round(v, 2) for k, v in seen.items()})),
          flush=True)
    net.relay.send_signal(signal.SIGUSR1)
    for n in c.nodes:
        if n is not victim:
            t.stop(n.proc)


if __name__ == "__main__":
    cu.run(main)
