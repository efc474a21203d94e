# SPDX-License-Identifier: Apache-2.0
"""The network-namespace scaffolding the cluster tests share: namespaces,
bridges and veths named after the test's PID (Net), two regions joined by
the delay relay (WanNet), whether `ip netns add` is permitted, and
run_in_netns: skip (77) where namespaces (or /dev/net/tun) are not usable,
on SIGTERM/SIGINT/SIGHUP stop the nodes and delete what was created, and
check at the end that every namespace created is deleted."""

import os
import signal
import subprocess
import sys

import cluster_util as cu

sh = cu.sh
HERE = os.path.dirname(os.path.abspath(__file__))


class Net:
    """The namespaces, bridges and veths of one run, named after our PID."""

    def __init__(self, tag="sh", subnet_base=200):
        p = os.getpid() % 100000
        self.pfx = "%s%d" % (tag, p)    # interface names stay under 15 chars
        self.subnet = "10.%d.%d" % (subnet_base + (p >> 16) % 50, (p >> 8) % 250)
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

    def nft(self, ns, script):
        """An nftables script run inside namespace ns."""
        r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script,
                           capture_output=True, text=True, timeout=15)
        if r.returncode != 0:
            raise sh.HarnessError("nft in %s: %s" % (ns, r.stderr.strip()))

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


class WanNet(Net):
    """Net's namespaces and bridges, with the relay instead of the veth link:
    wan_relay.py holds every frame delay_ms between the bridges, nftables
    drops loss percent of what crosses."""

    def __init__(self, delay_ms, loss):
        super().__init__()
        self.delay_ms, self.loss = delay_ms, loss

    def setup(self):
        for side in "ab":
            self.ip("link", "add", self.pfx + side, "type", "bridge")
            self.links.append(self.pfx + side)
            self.ip("link", "set", self.pfx + side, "up")
        self.relay = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "wan_relay.py"), self.pfx + "ta", self.pfx + "tb",
             str(self.delay_ms)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.relay.stdout.readline().strip()
        if line != "ready":
            raise sh.HarnessError("wan_relay did not start: %r %s" % (line, self.relay.stderr.read()))
        for side in "ab":
            self.ip("link", "set", self.pfx + "t" + side, "master", self.pfx + side)
            self.ip("link", "set", self.pfx + "t" + side, "up")
        self.table = self.pfx + "wan"
        rules = "\n".join('        iifname "%st%s" numgen random mod 100 < %d drop' % (self.pfx, s, self.loss)
                          for s in "ab") if self.loss > 0 else ""
        r = subprocess.run(["nft", "-f", "-"], input="""
table bridge %s {
    chain wanloss {
        type filter hook forward priority 0; policy accept;
%s
    }
}
""" % (self.table, rules), capture_output=True, text=True, timeout=15)
        if r.returncode != 0:
            raise sh.HarnessError("nft: %s" % r.stderr.strip())

    def dropped(self):
        r = subprocess.run(["nft", "-j", "list", "table", "bridge", self.table],
                           capture_output=True, text=True, timeout=15)
        return r.stdout

    def teardown(self):
        subprocess.run(["nft", "delete", "table", "bridge", getattr(self, "table", "none")],
                       capture_output=True)
        relay = getattr(self, "relay", None)
        if relay is not None and relay.poll() is None:
            relay.terminate()
            try:
                relay.wait(10)
            except subprocess.TimeoutExpired:
                relay.kill()
        super().teardown()


def netns_permitted():
    probe = "shprobe%d" % (os.getpid() % 100000)
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return r.stderr.strip() or "exit %d" % r.returncode
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def run_in_netns(t, net, body, need_tun=False, cleanup=None):
    """body(net) with net's namespaces deleted on every exit path; cleanup()
    (if given) runs first (stop what body started that the harness does
    not know of, by PID)."""
    why = netns_permitted()
    if why is not None:
        print("SKIP - network namespaces are not permitted here (ip netns add: %s)" % why,
              flush=True)
        sys.exit(77)
    if need_tun and not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        print("SKIP - /dev/net/tun is not usable here", flush=True)
        sys.exit(77)

    def down():
        if cleanup is not None:
            try:
                cleanup()
            except Exception:
                pass
        sh.stop_all()
        net.teardown()
    # On SIGTERM/SIGINT/SIGHUP: stop the nodes (the harness's handler), then
    # delete what we created, then die of the signal as the harness does.
    sh._install_handlers()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        prev = signal.getsignal(s)

        def on_signal(signum, frame, prev=prev):
            down()
            if callable(prev):
                prev(signum, frame)
            sys.exit(128 + signum)
        signal.signal(s, on_signal)
    try:
        body(net)
    finally:
        down()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        t.check(net.pfx + "n" not in left, "every namespace created is deleted", left)
