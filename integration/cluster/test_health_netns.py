# SPDX-License-Identifier: Apache-2.0
"""Issue 13: a backend blackholed from one node only stays in service on
the others (network namespaces and nftables).

Three nodes, each in its own network namespace on one bridge; two
backends in the root namespace on the bridge's address. `health_check
probers=3` (every node probes both; quorum: a majority, 2). In n0's
namespace an nftables rule drops every packet to backend v: n0's probes
time out, so n0 takes v out for itself ("down (this node)"), but one
failing observer of three is no quorum: v stays up cluster-wide, and n1
and n2 keep sending it their share. Once the rule is gone, n0 takes v
back. Skipped (exit 77) where `ip netns add` is not permitted."""

import json
import os
import subprocess
import sys
import time

import cluster_util as cu
import netns_util as nu

sh = cu.sh
N = 3
IV = 0.5


class Net(nu.Net):
    """One bridge with an address in the root namespace (the backends listen
    there), and a namespace a node."""

    def __init__(self):
        super().__init__(tag="hc", subnet_base=150)
        self.host = self.subnet + ".1"

    def setup(self):
        br = self.pfx + "b"
        self.ip("link", "add", br, "type", "bridge")
        self.links.append(br)
        self.ip("addr", "add", self.host + "/24", "dev", br)
        self.ip("link", "set", br, "up")

    def add_node(self, i):
        return super().add_node(i, "b")


TOKEN = __import__("base64").b64encode(os.urandom(32)).decode()


def conf(name, addr, keyfile, joins, backends, tokfile):
    servers = "".join("server %s:%d;" % (b.host, b.port) for b in backends)
    join = ("join %s;" % " ".join(joins)) if joins else ""
    return """
        worker_processes 1;
        events { }
        http {
            upstream g { %s }
            server {
                listen %s:8080;
                location / {
                    proxy_pass http://g;
                    proxy_connect_timeout 1s;
                    health_check interval=%dms uri=/hdr?hc=1 probers=3;
                }
            }
        }
        cluster {
            name itest; node_name %s; bind %s:7946; admin_listen %s:9901;
            encrypt_key_file %s; profile local; admin_token_file %s; %s
        }
        """ % (servers, addr, int(IV * 1000), name, addr, addr, keyfile, tokfile, join)


def start_backend(t, name, host):
    port = t.port()
    d = t._subdir("backend-" + name)
    p = t._spawn(name, [sys.executable, sh.BACKEND_PY, "--port", str(port), "--name", name,
                        "--host", host], d)
    sh.wait_for(lambda: "ready" in p.stdout().split() and sh.port_accepts(port, host), 15,
                "backend %s" % name)
    return sh.Backend(p, name, port, host=host)


def health(admin):
    code, body = cu.http_get(admin, "/v1/health", token=TOKEN)
    if code != 200:
        return None
    return {x["server"]: x["health"] for x in json.loads(body)}


def main(t, ctl):
    net = Net()
    nu.run_in_netns(t, net, lambda n: run(t, ctl, n))


def run(t, ctl, net):
    net.setup()
    v = start_backend(t, "v", net.host)
    w = start_backend(t, "w", net.host)
    key = cu.write_keys(t, [cu.new_key()])
    tokfile = os.path.join(t.tmp, "admin.token")
    with open(tokfile, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(tokfile, 0o600)
    os.environ["SHOAL_TOKEN"] = TOKEN  # nodectl's
    nodes = []
    seed = None
    for i in range(N):
        ns, addr = net.add_node(i)
        d = t._subdir("shoal-n%d" % i)
        os.makedirs(os.path.join(d, "logs"), exist_ok=True)
        path = t.write_conf(conf("n%d" % i, addr, key, [seed] if seed else (), [v, w], tokfile), d=d)
        p = t._spawn("shoal", ["ip", "netns", "exec", ns, t.shoal_bin, "-p", d + "/", "-c", path],
                     d)
        n = cu.CNode("n%d" % i, None, "%s:7946" % addr, "%s:9901" % addr, netns=None, proc=p)
        n.addr = addr
        sh.wait_for(lambda: health(n.admin) is not None, 15 * t.slow, "admin of n%d" % i)
        nodes.append(n)
        seed = seed or n.gossip
    c = cu.Cluster(t, ctl)
    c.nodes = nodes
    c.wait_all_see(nodes, {n.name: "alive" for n in nodes}, 30 * t.slow, "3 alive everywhere")
    vs = "%s:%d" % (v.host, v.port)

    def all_up():
        hs = [health(n.admin) for n in nodes]
        return all(h and not h[vs]["out"] and h[vs]["cluster"] == "up" and
                   len(h[vs]["probed_by"]) == 3 for h in hs)
    sh.wait_for(all_up, 20 * t.slow, "v up on every node, probed by all three")
    t.check(True, "v is up everywhere, probed by the three nodes")

    # blackhole v from n0 only
    net.nft(net.ns[0], """
        table inet hcdrop {
            chain out {
                type filter hook output priority 0; policy accept;
                ip daddr %s tcp dport %d drop
            }
        }
        """ % (v.host, v.port))
    t_cut = time.monotonic()

    def n0_out():
        h = health(nodes[0].admin)
        return h and h[vs]["out"] and h[vs]["local"] == "down"
    sh.wait_for(n0_out, 10 * t.slow, "n0 to take v out for itself")
    t.log("n0 took v out %.2fs after the drop rule" % (time.monotonic() - t_cut))
    # let every observer speak a few times, then look
    deadline = time.monotonic() + 4 * IV
    sh.wait_for(lambda: time.monotonic() >= deadline, 10, "four intervals")
    h0 = health(nodes[0].admin)[vs]
    t.check(h0["out"] and h0["local"] == "down" and h0["cluster"] == "up",
            "n0: v is down for n0 only (its own probes fail), up cluster-wide", h0)
    for n in nodes[1:]:
        h = health(n.admin)[vs]
        t.check(not h["out"] and h["cluster"] == "up"
                and any(o["node"] == "n0" and o["active"] == "down" for o in h["observers"]),
                "%s: v stays in service (n0's word heard: 1 of 3 failing is no quorum)" % n.name, h)
    # traffic: n1 and n2 still send v its share; n0 sends it nothing
    before = v.stats()["received"]
    r1 = [t.curl("http://%s:8080/" % nodes[1].addr) for _ in range(6)]
    r2 = [t.curl("http://%s:8080/" % nodes[2].addr) for _ in range(6)]
    got = v.stats()["received"] - before
    t.check(all(r.status == 200 for r in r1 + r2) and got >= 4,
            "n1 and n2 keep sending v requests (%d of 12)" % got,
            [(r.status, r.header("X-Backend")) for r in r1 + r2])
    r0 = [t.curl("http://%s:8080/" % nodes[0].addr, timeout=10) for _ in range(6)]
    t.check(all(r.status == 200 and r.header("X-Backend") == "w" and r.elapsed < 1.0 * t.slow
                for r in r0),
            "n0 answers every request from w at once (v is out there)",
            [(r.status, r.header("X-Backend"), "%.2f" % r.elapsed) for r in r0])
    txt = ctl.run("upstreams", addr=nodes[1].admin)
    t.log("nodectl upstreams on n1:\n" + txt.stdout)

    # heal
    subprocess.run(["ip", "netns", "exec", net.ns[0], "nft", "delete", "table", "inet", "hcdrop"],
                   capture_output=True, timeout=15)
    sh.wait_for(all_up, 10 * t.slow, "n0 to take v back once the link is healed")
    t.check(True, "healed: v is back on n0")


if __name__ == "__main__":
    cu.run(main)
