# SPDX-License-Identifier: Apache-2.0
"""Issue 16: a cluster that forms across machines and heals after restarts.

Three "machines": network namespaces with their own addresses on a bridge
(named after our PID, deleted at the end; skipped, exit 77, where `ip netns
add` is not permitted). Every node has the recommended configuration:
default `bind` (0.0.0.0:7946), no `advertise`, and a `join` list naming
every seed, itself included.

- the three form a cluster, each advertising the address of its veth (the
  default chosen as memberlist does, and logged), never 127.0.0.1;
- the seed n0 is killed (SIGKILL): the others log it failed; it is
  restarted while its link is down, logs why its joins fail and that it
  keeps trying; once the link is back it rejoins on its own (no nodectl);
- n2 restarted with a stale key (one the others do not hold) logs why it
  cannot join ("... without an answer (does its keyring hold our primary
  key?)"), and the others log "rejected: no key in our keyring opens them";
- a "machine" with an interface up but no IPv4 address: `shoal -t` with a
  wildcard bind and no advertise is refused (no 127.0.0.1 advertised to
  others); one with only loopback passes (loopback is all there is)."""

import os
import signal
import sys

import cluster_util as cu
from test_cluster_partition import Net, netns_permitted

sh = cu.sh
N = 3


def conf(name, keyfile, joins):
    return """
        events { }
        http { server { listen 127.0.0.1:8080; location / { return 200; } } }
        cluster {
            name itest; node_name %s; admin_listen 127.0.0.1:9901;
            encrypt_key_file %s; profile local;
            join %s;
        }
        """ % (name, keyfile, " ".join(joins))


def main(t, ctl):
    why = netns_permitted()
    if why is not None:
        print("SKIP - network namespaces are not permitted here (ip netns add: %s)" % why, flush=True)
        sys.exit(77)
    net = Net()
    sh._install_handlers()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        prev = signal.getsignal(s)

        def on_signal(signum, frame, prev=prev):
            sh.stop_all()
            net.teardown()
            if callable(prev):
                prev(signum, frame)
            sys.exit(128 + signum)
        signal.signal(s, on_signal)
    try:
        run(t, ctl, net)
    finally:
        sh.stop_all()
        net.teardown()
        left = sh.subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        t.check(net.pfx + "n" not in left, "every namespace created is deleted", left)


def run(t, ctl, net):
    net.setup()
    c = cu.Cluster(t, ctl)
    key = cu.write_keys(t, [cu.new_key()])
    addrs, nss = [], []
    for i in range(N):
        ns, addr = net.add_node(i, "a")
        nss.append(ns)
        addrs.append(addr)
    seeds = ["%s:7946" % a for a in addrs]

    def start(i, keyfile, wait_admin=True):
        d = t._subdir("shoal-n%d" % i)
        path = t.write_conf(conf("n%d" % i, keyfile, seeds), d=d)
        p = t._spawn("shoal", ["ip", "netns", "exec", nss[i], t.shoal_bin, "-p", d + "/", "-c", path], d)
        n = cu.CNode("n%d" % i, None, seeds[i], "127.0.0.1:9901", netns=nss[i], proc=p)
        if wait_admin:
            sh.wait_for(lambda: c._admin_up(n), 15, "admin of n%d in %s" % (i, nss[i]))
        t.log("n%d pid %d in %s (%s)" % (i, p.pid, nss[i], seeds[i]))
        return n

    c.nodes = [start(i, key) for i in range(N)]
    secs = c.wait_all_see(c.nodes, {"n%d" % i: "alive" for i in range(N)}, 30, "3 alive everywhere")
    t.check(True, "3 namespaces on a bridge form a cluster with the default advertise (%.2fs)" % secs)
    m = {x["name"]: x for x in ctl.members(c.nodes[1].admin, netns=nss[1])}
    t.check(all(m["n%d" % i]["addr"] == seeds[i] for i in range(N)),
            "each member advertises its own veth address, not 127.0.0.1",
            {k: v["addr"] for k, v in m.items()})
    t.check(all("advertising %s, the address of interface %sc%d" % (seeds[i], net.pfx, i)
                in c.nodes[i].proc.stderr() for i in range(N)),
            "each node logs the address it chose and the interface", c.nodes[0].proc.stderr()[-800:])

    # ---- the seed dies, comes back while cut off, then rejoins alone
    n0 = c.nodes[0]
    n0.proc.kill()
    c.wait_all_see(c.nodes[1:], {"n0": "dead"}, 30, "n0 seen failed")
    sh.wait_for(lambda: "member n0 (%s) failed" % seeds[0] in c.nodes[1].proc.stderr(), 5,
                "n1's log line about n0's failure")
    t.check(True, "n0 killed: the others see and log it failed")
    host_veth = "%sh0" % net.pfx
    net.ip("link", "set", host_veth, "down")
    n0 = c.nodes[0] = start(0, key)
    sh.wait_for(lambda: "could not join any member of the join list" in n0.proc.stderr(), 30,
                "n0 to log that its joins fail and it retries")
    t.check("join %s failed: " % seeds[1] in n0.proc.stderr(),
            "n0 logs each failed join with its reason", n0.proc.stderr()[-1200:])
    net.ip("link", "set", host_veth, "up")
    secs = c.wait_all_see(c.nodes, {"n0": "alive", "n1": "alive", "n2": "alive"}, 60,
                          "n0 alive everywhere again")
    t.check(True, "the restarted seed rejoined on its own once reachable (%.2fs after the link came up)"
            % secs)
    sh.wait_for(lambda: "member n0 (%s) rejoined" % seeds[0] in c.nodes[1].proc.stderr(), 10,
                "n1's log line about n0 rejoining")
    t.check(True, "the others log that n0 rejoined")

    # ---- a stale key
    t.stop(c.nodes[2])
    c.wait_all_see(c.nodes[:2], {"n2": "left"}, 20, "n2 left")
    stale = cu.write_keys(t, [cu.new_key()], name="stale.key")
    n2 = c.nodes[2] = start(2, stale)
    sh.wait_for(lambda: "does its keyring hold our primary key?" in n2.proc.stderr(), 30,
                "n2's log about why it cannot join")
    t.check(True, "a node with a stale key logs why it cannot join")
    sh.wait_for(lambda: any("%s:" % addrs[2] in l and "rejected: no key in our keyring opens them" in l
                            for n in c.nodes[:2] for l in n.proc.stderr().splitlines()), 20,
                "a member's log line about n2's rejected packets")
    t.check(True, "the members log that no key in their keyring opens n2's packets")
    t.check(c.view(c.nodes[0]).get("n2") == "left", "n2 did not get in", c.view(c.nodes[0]))

    # ---- advertise: nothing that fits / loopback only
    for kind in ("noaddr", "loonly"):
        ns = "%sx%s" % (net.pfx, kind[0])
        net.ip("netns", "add", ns)
        net.ns.append(ns)
        net.ip("link", "set", "lo", "up", ns=ns)
        if kind == "noaddr":
            net.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1", ns=ns)
            net.ip("link", "set", "v0", "up", ns=ns)
        d = t._subdir("t-" + kind)
        path = t.write_conf(conf("x", key, seeds), d=d)
        r = sh.subprocess.run(["ip", "netns", "exec", ns, t.shoal_bin, "-p", d + "/", "-c", path, "-t"],
                              capture_output=True, text=True, timeout=30)
        if kind == "noaddr":
            t.check(r.returncode == 1 and "no up interface has an IPv4 address" in r.stderr,
                    "an interface up without IPv4: -t refuses the wildcard bind without advertise",
                    r.stderr)
        else:
            t.check(r.returncode == 0, "only loopback (one machine): -t passes", r.stderr)


if __name__ == "__main__":
    cu.run(main)
