# SPDX-License-Identifier: Apache-2.0
"""Issue 13: shared backend health over the health channel, on loopback.

Three backends (counting: backend.py counts the checks, GET /hdr), three
nodes, then nine; `health_check interval=500ms probers=2` on one group.

- Probing is spread: each backend is probed by 2 nodes (the same 2 as
  every node computes them by rendezvous hashing), not by all of them;
  the checks a backend receives per second stay flat (~2/interval) when
  the cluster grows from 3 to 9 nodes, and the probers move.
- A killed backend is out on every node within two check intervals,
  including the node that does not probe it and never sent it a request
  (no "connect() failed" for it in that node's log); it is back on every
  node after it returns.
- Passive failures are shared: on a group without health_check, two nodes
  that met a dead server (max_fails) take it out for the third, which sent
  it nothing.
- 300 dead servers: each node's word is split in datagram-sized parts, and
  all 300 are down cluster-wide on every node.
- nodectl upstreams shows each server's cluster state, who probes it and
  what each observer said (--json and text); the admin event stream has
  "health" events; /metrics has the health lines.
"""

import json
import re
import socket
import time

import cluster_util as cu

sh = cu.sh
IV = 0.5


MANY = []  # ports where nothing listens: a group of 300 dead servers


def conf(name, gossip, admin, keyfile, joins, backends):
    servers = "".join("server 127.0.0.1:%d;" % b.port for b in backends)
    many = "".join("server 127.0.0.1:%d;" % p for p in MANY)
    passive = "server 127.0.0.1:%d max_fails=1 fail_timeout=60s; server 127.0.0.1:%d;" % (
        MANY[0], backends[0].port)
    join = ("join %s;" % " ".join(joins)) if joins else ""
    return """
        worker_processes 1;
        events { }
        http {
            upstream g { %s }
            upstream many { %s }
            upstream p { %s }
            server {
                listen 127.0.0.1:{port};
                location /p/ { proxy_pass http://p/; }
                location /many/ {
                    proxy_pass http://many/;
                    health_check interval=1s uri=/ probers=2;
                }
                location / {
                    proxy_pass http://g;
                    health_check interval=%dms uri=/hdr?hc=1 probers=2;
                }
            }
        }
        cluster {
            name itest; node_name %s; bind %s; admin_listen %s;
            encrypt_key_file %s; profile local; %s
        }
        """ % (servers, many, passive, int(IV * 1000), name, gossip, admin, keyfile, join)


def health(cn):
    """{server: health object} from the node's /v1/health (None if down)."""
    try:
        code, body = cu.http_get(cn.admin, "/v1/health")
    except OSError:
        return None
    if code != 200:
        return None
    return {x["server"]: x["health"] for x in json.loads(body)}


def hc_count(b):
    return b.stats().get("paths", {}).get("/hdr", 0)


def check_rate(bs, secs=4.0):
    c0 = [hc_count(b) for b in bs]
    t0 = time.monotonic()
    sh.wait_for(lambda: time.monotonic() - t0 >= secs, secs + 5, "%.0f s" % secs)
    dt = time.monotonic() - t0
    return [(hc_count(b) - c) / dt for b, c in zip(bs, c0)]


def start_node(t, c, i, key, joins, backends):
    gp, ap = t.port(), t.port()
    gossip, admin = "127.0.0.1:%d" % gp, "127.0.0.1:%d" % ap
    node = t.shoal(conf("n%d" % i, gossip, admin, key, joins, backends))
    cn = cu.CNode("n%d" % i, node, gossip, admin)
    sh.wait_for(lambda: c._admin_up(cn), 15 * t.slow, "admin API of n%d" % i)
    c.nodes.append(cn)
    return cn


class Events:
    """A reader of the admin event stream (raw socket, non-blocking polls)."""

    def __init__(self, admin):
        host, port = admin.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=5)
        self.s.sendall(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        self.s.setblocking(False)
        self.buf = b""

    def poll(self):
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    break
                self.buf += d
        except BlockingIOError:
            pass
        return self.buf.decode("utf-8", "replace")

    def close(self):
        self.s.close()


def main(t, ctl):
    bs = [t.backend("b%d" % i) for i in range(3)]
    # 300 dead servers: each node's word on them (~200 probed each) needs
    # more than one datagram, so it is split in parts
    # (ports bound here but never listening: connect is refused, and
    # nothing else can take them during the test)
    holders = []
    for _ in range(300):
        so = socket.socket()
        so.bind(("127.0.0.1", 0))
        holders.append(so)
        MANY.append(so.getsockname()[1])
    key = cu.write_keys(t, [cu.new_key()])
    c = cu.Cluster(t, ctl)
    first = start_node(t, c, 0, key, (), bs)
    for i in (1, 2):
        start_node(t, c, i, key, [first.gossip], bs)
    c.wait_all_see(c.nodes, {n.name: "alive" for n in c.nodes}, 30 * t.slow, "3 alive everywhere")

    def settled(nodes):
        """Every node agrees on who probes each server, and every server is up."""
        views = [health(n) for n in nodes]
        if any(v is None for v in views):
            return False
        for b in bs:
            srv = "127.0.0.1:%d" % b.port
            pb = [tuple(sorted(v[srv]["probed_by"])) for v in views]
            if len(set(pb)) != 1 or len(pb[0]) != 2:
                return False
            if any(v[srv]["out"] or v[srv]["cluster"] != "up" for v in views):
                return False
        return True
    sh.wait_for(lambda: settled(c.nodes), 20 * t.slow, "3 nodes to agree on probers, all up")
    v0 = health(c.nodes[0])
    probers3 = {s: sorted(h["probed_by"]) for s, h in v0.items()
                if s in ["127.0.0.1:%d" % b.port for b in bs]}
    t.log("probers with 3 nodes: %s" % probers3)
    t.check(all(len(p) == 2 for p in probers3.values()), "each backend is probed by 2 of 3 nodes")

    rates3 = check_rate(bs)
    t.log("checks per backend per second, 3 nodes: %s" % ["%.2f" % r for r in rates3])
    want = 2 / IV
    t.check(all(0.5 * want <= r <= 1.5 * want for r in rates3),
            "3 nodes: each backend gets ~%.1f checks/s (2 probers x 1/interval)" % want, rates3)

    # the events stream and the cluster view, before the kill
    ev = Events(c.nodes[0].admin)
    victim = bs[2]
    vsrv = "127.0.0.1:%d" % victim.port
    bystander = [n for n in c.nodes if n.name not in probers3[vsrv]][0]
    t.log("victim %s probed by %s; %s does not probe it" % (vsrv, probers3[vsrv], bystander.name))

    victim.proc.kill()
    t_kill = time.monotonic()
    pending = {n.name: n for n in c.nodes}
    out_at = {}

    def all_out():
        for name, n in list(pending.items()):
            h = health(n)
            if h and h[vsrv]["out"]:
                out_at[name] = time.monotonic() - t_kill
                del pending[name]
        return not pending
    sh.wait_for(all_out, 10 * t.slow, "the killed backend to be out on every node", interval=0.02)
    worst = max(out_at.values())
    t.log("killed backend out after: %s" % {k: "%.2fs" % v for k, v in sorted(out_at.items())})
    t.check(worst <= 2 * IV + 0.5 * t.slow,
            "killed backend out on every node within two check intervals (worst %.2fs, "
            "interval %.1fs)" % (worst, IV))
    hb = health(bystander)[vsrv]
    t.check(hb["cluster"] == "down" and not hb["prober"],
            "the node that does not probe it has it down cluster-wide", hb)
    # requests through every node: none meets the dead backend
    res = [t.curl(n.node.url("/")) for n in c.nodes for _ in range(6)]
    t.check(all(r.status == 200 and r.header("X-Backend") in ("b0", "b1") for r in res),
            "every node answers from the live backends only",
            [(r.status, r.header("X-Backend")) for r in res])
    fails = len(re.findall(r"connect\(\) failed.*127\.0\.0\.1:%d" % victim.port,
                           bystander.proc.stderr()))
    t.check(fails == 0, "%s (not a prober, sent it nothing) never tried the dead backend (%d)"
            % (bystander.name, fails))
    sh.wait_for(lambda: '"server":"%s"' % vsrv in ev.poll() and "event: health" in ev.poll(),
                5 * t.slow, "a health event on the admin event stream")
    t.check(True, "the admin event stream has a health event for the killed backend")

    # the many dead servers: down cluster-wide on every node (words in parts)
    def many_down():
        for n in c.nodes:
            h = health(n)
            if not h or sum(1 for p in MANY if h["127.0.0.1:%d" % p]["cluster"] == "down") < 300:
                return False
        return True
    try:
        sh.wait_for(many_down, 20 * t.slow, "300 dead servers down cluster-wide on every node")
    except sh.HarnessError:
        for n in c.nodes:
            h = health(n) or {}
            st = {}
            for p in MANY:
                x = h.get("127.0.0.1:%d" % p, {})
                k = (x.get("cluster"), x.get("local"), len(x.get("observers", [])))
                st[k] = st.get(k, 0) + 1
            t.log("%s: %s" % (n.name, st))
        for n in c.nodes:
            h = health(n) or {}
            seen = set()
            for p in MANY:
                x = h.get("127.0.0.1:%d" % p, {})
                k = (x.get("cluster"), x.get("local"))
                if k not in seen and k[0] != "down":
                    seen.add(k)
                    t.log("%s %d: %s" % (n.name, p, json.dumps(x)))
        code, body = cu.http_get(c.nodes[1].admin, "/metrics")
        t.log("\n".join(l for l in body.decode().splitlines() if "service" in l and "health" in l))
        raise
    t.check(all("exceeds a datagram" not in n.proc.stderr() for n in c.nodes),
            "300 servers: every node's word fits (split in parts), all 300 down everywhere")

    # passive failures are shared too: group p has no health_check; n0 and
    # n1 meet its dead server (nginx's max_fails), n2 sends it nothing and
    # takes it out on their word (2 of its 3 observers)
    dead = "127.0.0.1:%d" % MANY[0]
    senders, quiet = c.nodes[:2], c.nodes[2]

    def disabled(n):
        return ("temporarily disabled: %s" % dead) in n.proc.stderr()
    for n in senders:
        sh.wait_for(lambda n=n: t.curl(n.node.url("/p/")).status == 200 and disabled(n),
                    10 * t.slow, "%s to meet the dead server of p" % n.name)

    def quiet_out():
        for u in ctl.json(quiet.admin, "upstreams") or []:
            if u["name"] == "p":
                for sv in u["servers"]:
                    if sv["addr"] == dead:
                        return sv["health"]["out"] and sv["health"]["cluster"] == "down"
        return False
    sh.wait_for(quiet_out, 10 * t.slow, "n2 to take p's dead server out on the others' word")
    res = [t.curl(quiet.node.url("/p/")) for _ in range(6)]
    fails = len(re.findall(r"connect\(\) failed.*%s" % re.escape(dead), quiet.proc.stderr()))
    t.check(all(r.status == 200 for r in res) and fails == 0,
            "passive failures gossiped: %s never tries the server n0 and n1 saw failing (%d)"
            % (quiet.name, fails), [(r.status, r.header("X-Backend")) for r in res])

    # nodectl upstreams: the cluster view, --json and text
    js = ctl.json(bystander.admin, "upstreams")
    srv = [s for u in js for s in u["servers"] if s["addr"] == vsrv][0] if js else {}
    h = srv.get("health", {})
    t.check(srv.get("state") == "down (health check)" and h.get("cluster") == "down"
            and sorted(h.get("probed_by", [])) == probers3[vsrv]
            and any(o["node"] in probers3[vsrv] and o["active"] == "down"
                    for o in h.get("observers", [])),
            "nodectl upstreams --json: state, cluster view, probers and their words", srv)
    txt = ctl.run("upstreams", addr=bystander.admin)
    t.check(txt.returncode == 0 and "CLUSTER" in txt.stdout and "PROBED BY" in txt.stdout
            and re.search(re.escape(vsrv) + r".*down", txt.stdout) is not None,
            "nodectl upstreams (text) shows the cluster view", txt.stdout + txt.stderr)
    code, body = cu.http_get(bystander.admin, "/metrics")
    body = body.decode()
    t.check('shoal_upstream_health_cluster_down{upstream="g",server="%s"} 1' % vsrv in body,
            "/metrics: shoal_upstream_health_cluster_down is 1 for it", body[-2000:])

    # back
    victim = bs[2] = t.backend("b2", port=victim.port)
    sh.wait_for(lambda: all(not (health(n) or {}).get(vsrv, {"out": True})["out"] for n in c.nodes),
                10 * t.slow, "the restarted backend to be back on every node")
    t.check(True, "the restarted backend is back on every node")
    sh.wait_for(lambda: "event: health" in ev.poll() and '"state":"up"' in ev.poll(),
                5 * t.slow, "an up event")
    ev.close()

    # grow to 9: checks per backend stay flat
    for i in range(3, 9):
        start_node(t, c, i, key, [first.gossip], bs)
    c.wait_all_see(c.nodes, {n.name: "alive" for n in c.nodes}, 60 * t.slow, "9 alive everywhere")
    sh.wait_for(lambda: settled(c.nodes), 30 * t.slow, "9 nodes to agree on probers, all up")
    v9 = health(c.nodes[0])
    probers9 = {s: sorted(h["probed_by"]) for s, h in v9.items()
                if s in ["127.0.0.1:%d" % b.port for b in bs]}
    t.log("probers with 9 nodes: %s" % probers9)
    rates9 = check_rate(bs)
    t.log("checks per backend per second, 9 nodes: %s" % ["%.2f" % r for r in rates9])
    t.check(all(0.5 * want <= r <= 1.5 * want for r in rates9),
            "9 nodes: each backend still gets ~%.1f checks/s" % want, rates9)
    t.check(sum(rates9) <= 1.3 * sum(rates3) + 1,
            "checks flat from 3 to 9 nodes (%.2f/s -> %.2f/s in all)" % (sum(rates3), sum(rates9)))
    spread = {n for p in probers9.values() for n in p}
    t.check(len(spread) >= 3 and all(len(p) == 2 for p in probers9.values()),
            "9 nodes: still 2 probers a backend, spread over %d nodes" % len(spread), probers9)


if __name__ == "__main__":
    cu.run(main)
