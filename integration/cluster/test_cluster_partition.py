# SPDX-License-Identifier: Apache-2.0
"""Issue 5: a network partition made with network namespaces heals.

Four shoal nodes, each in a namespace of its own with a veth pair whose host
end is on one of two bridges, A (n0, n1) and B (n2, n3); the bridges are
joined by a third veth pair. Taking that pair down cuts A from B: each side
declares the other dead. Bringing it up heals: every node sees all four
alive again (push-pull and the dead nodes' refutation bring them back).
Admin listeners are on each namespace's own loopback, read with
`ip netns exec NS nodectl members --json`. Every namespace and link created
here is deleted on every exit path (normal, failure, SIGTERM/SIGINT). Skips
(exit 77) only if `ip netns add` is not permitted."""

import os
import signal
import subprocess
import sys

import cluster_util as cu

sh = cu.sh
N = 4


class Net:
    """The namespaces, bridges and veths of one run, named after our PID."""

    def __init__(self):
        p = os.getpid() % 100000
        self.pfx = "sh%d" % p           # interface names stay under 15 chars
        self.subnet = "10.%d.%d" % (200 + (p >> 16) % 50, (p >> 8) % 250)
        self.ns = []
        self.links = []

    def ip(self, *args, ns=None, check=True):
        argv = (["ip", "netns", "exec", ns, "ip"] if ns else ["ip"]) + list(args)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=15)
        if check and r.returncode != 0:
            raise sh.HarnessError("%s: %s" % (" ".join(argv), r.stderr.strip()))
        return r

    def setup(self):
        for side in "ab":
            self.ip("link", "add", self.pfx + side, "type", "bridge")
            self.links.append(self.pfx + side)
            self.ip("link", "set", self.pfx + side, "up")
        self.ip("link", "add", self.pfx + "la", "type", "veth", "peer", "name", self.pfx + "lb")
        self.links.append(self.pfx + "la")
        for side in "ab":
            self.ip("link", "set", self.pfx + "l" + side, "master", self.pfx + side)
            self.ip("link", "set", self.pfx + "l" + side, "up")

    def add_node(self, i, side):
        ns = "%sn%d" % (self.pfx, i)
        self.ip("netns", "add", ns)
        self.ns.append(ns)
        host, inner = "%sh%d" % (self.pfx, i), "%sc%d" % (self.pfx, i)
        self.ip("link", "add", host, "type", "veth", "peer", "name", inner)
        self.links.append(host)
        self.ip("link", "set", inner, "netns", ns)
        self.ip("link", "set", host, "master", self.pfx + side)
        self.ip("link", "set", host, "up")
        addr = "%s.%d" % (self.subnet, 10 + i)
        self.ip("addr", "add", addr + "/24", "dev", inner, ns=ns)
        self.ip("link", "set", inner, "up", ns=ns)
        self.ip("link", "set", "lo", "up", ns=ns)
        return ns, addr

    def cut(self, down):
        for side in "ab":
            self.ip("link", "set", self.pfx + "l" + side, "down" if down else "up")

    def teardown(self):
        for ns in reversed(self.ns):
            self.ip("netns", "del", ns, check=False)
        for link in reversed(self.links):
            # Deleting one end of a veth deletes its peer; a bridge goes last.
            if os.path.exists("/sys/class/net/" + link):
                self.ip("link", "del", link, check=False)
        self.ns, self.links = [], []


def netns_permitted():
    probe = "shprobe%d" % (os.getpid() % 100000)
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return r.stderr.strip() or "exit %d" % r.returncode
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def main(t, ctl):
    why = netns_permitted()
    if why is not None:
        print("SKIP - network namespaces are not permitted here (ip netns add: %s)" % why,
              flush=True)
        sys.exit(77)
    net = Net()
    # On SIGTERM/SIGINT/SIGHUP: stop the nodes (the harness's handler), then
    # delete what we created, then die of the signal as the harness does.
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
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        t.check(net.pfx + "n" not in left, "every namespace created is deleted", left)


def run(t, ctl, net):
    net.setup()
    c = cu.Cluster(t, ctl)
    key = cu.write_keys(t, [cu.new_key()])
    seed_addr = None
    for i in range(N):
        ns, addr = net.add_node(i, "a" if i < N // 2 else "b")
        gossip = "%s:7946" % addr
        d = t._subdir("shoal-n%d" % i)
        conf = t.write_conf(cu.cluster_conf("n%d" % i, gossip, "127.0.0.1:9901", key,
                                            [seed_addr] if seed_addr else ()),
                            port=8080, d=d)
        p = t._spawn("shoal", ["ip", "netns", "exec", ns, t.shoal_bin, "-p", d + "/", "-c", conf], d)
        n = cu.CNode("n%d" % i, None, gossip, "127.0.0.1:9901", netns=ns, proc=p)
        sh.wait_for(lambda n=n: c._admin_up(n), 15, "admin of n%d in %s" % (i, ns))
        t.log("n%d pid %d in %s at %s" % (i, p.pid, ns, gossip))
        c.nodes.append(n)
        seed_addr = seed_addr or gossip
    alive = {n.name: "alive" for n in c.nodes}
    secs = c.wait_all_see(c.nodes, alive, 30, "4 alive everywhere")
    t.check(True, "4 nodes in 4 namespaces on two bridges form a cluster (%.2fs)" % secs)

    A, B = c.nodes[:N // 2], c.nodes[N // 2:]
    net.cut(True)
    secs = max(c.wait_all_see(A, {n.name: "dead" for n in B}, 60, "side A to see B dead"),
               c.wait_all_see(B, {n.name: "dead" for n in A}, 60, "side B to see A dead"))
    t.check(True, "partition: each side sees the other dead (%.2fs)" % secs)
    t.check(all(c.view(x).get(y.name) == "alive" for side in (A, B) for x in side for y in side),
            "within each side the nodes still see each other alive")

    net.cut(False)
    secs = c.wait_all_see(c.nodes, alive, 90, "all 4 alive everywhere after the heal")
    t.check(True, "heal: all 4 nodes see all 4 alive again (%.2fs)" % secs)
    for n in c.nodes:
        t.stop(n.proc)


if __name__ == "__main__":
    cu.run(main)
