# SPDX-License-Identifier: Apache-2.0
"""What the global rate limit tests (issue 13) share: nodes with a global
limit_req zone and a paced load generator that counts 200 and 429 per
second, cluster-wide.

- `GNode`: a shoal node with a `cluster {}` block and `limit_req_zone
  $http_x_key zone=g:1m rate=R global`, serving a small static file at /x
  (limit_req is preaccess: it runs before the content handler).
- `Load`: client threads, each sending paced requests (open loop, one
  keep-alive connection per node) with a weight per node; a request to a
  node that is down goes to the next live one, as a load balancer does.
  Every answer is counted by (second since start, status).
- `table()`: the rows printed at the end of each scenario.
"""

import http.client
import math
import os
import random
import socket
import subprocess
import threading
import time

import cluster_util as cu

sh = cu.sh


HOT_RATE = 200    # r/s of the one hot key (zone "hot", path /h/x)
MANY_RATE = 20    # r/s of each key of zone "many" (path /m/x)
MANY_KEYS = 10
BURST_HOT = 20    # 100 ms of the rate: nginx's bucket admits the rate from
BURST_MANY = 4    # random arrivals only with some burst (see sim_limit.c)


def gnode_conf(name, gossip, admin, keyfile, root, joins=()):
    join = ("join %s;" % " ".join(joins)) if joins else ""
    return """
        worker_processes 1;
        events { }
        http {
            limit_req_zone $http_x_key zone=hot:1m rate=%dr/s global;
            limit_req_zone $http_x_key zone=many:1m rate=%dr/s sync;
            limit_req_status 429;
            server {
                listen 127.0.0.1:{port};
                root %s;
                location /h/ { limit_req zone=hot burst=%d nodelay; }
                location /m/ { limit_req zone=many burst=%d nodelay; }
            }
        }
        cluster {
            name glim; node_name %s; bind %s; admin_listen %s;
            encrypt_key_file %s; profile local; %s
        }
        """ % (HOT_RATE, MANY_RATE, root, BURST_HOT, BURST_MANY, name, gossip, admin, keyfile,
               join)


class GNode:
    def __init__(self, t, ctl, name, keyfile, root, joins=()):
        self.t, self.ctl, self.name = t, ctl, name
        self.http_port, self.gossip_port, self.admin_port = t.port(), t.port(), t.port()
        self.gossip = "127.0.0.1:%d" % self.gossip_port
        self.admin = "127.0.0.1:%d" % self.admin_port
        self.keyfile, self.root = keyfile, root
        self.joins = list(joins)
        self.node = None

    def start(self):
        conf = gnode_conf(self.name, self.gossip, self.admin, self.keyfile, self.root, self.joins)
        self.node = self.t.shoal(conf, port=self.http_port)

        def admin_up():
            if not self.node.proc.alive():
                raise sh.HarnessError("%s exited: %s" % (self.name, self.node.proc.tail()))
            return self.ctl.members(self.admin) is not None
        sh.wait_for(admin_up, 15 * self.t.slow, "admin API of %s" % self.name)
        return self

    @property
    def proc(self):
        return self.node.proc

    def limits(self):
        return self.ctl.json(self.admin, "limits")


def make_root(t):
    d = os.path.join(t.tmp, "www")
    for sub in ("h", "m"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        with open(os.path.join(d, sub, "x"), "w") as f:
            f.write("x\n")
    return d


def start_cluster(t, ctl, n, prefix="g"):
    key = cu.write_keys(t, [cu.new_key()])
    root = make_root(t)
    nodes = []
    for i in range(n):
        joins = [nodes[0].gossip] if nodes else []
        nodes.append(GNode(t, ctl, "%s%d" % (prefix, i), key, root, joins).start())
    wait_members(t, ctl, nodes, n)
    return nodes, key, root


def add_node(t, ctl, nodes, key, root, name):
    n = GNode(t, ctl, name, key, root, [nodes[0].gossip]).start()
    nodes.append(n)
    return n


def wait_members(t, ctl, nodes, n, timeout=40):
    # 40 s: a join that gossip misses is healed by the next push-pull (15 s
    # in the local profile); seen with five nodes started 0.3 s apart
    def all_see():
        for x in nodes:
            m = ctl.members(x.admin) or []
            if sum(1 for y in m if y["status"] == "alive") < n:
                return False
        return True
    sh.wait_for(all_see, timeout * t.slow, "%d nodes to see %d alive members" % (len(nodes), n))


class Load:
    """threads clients; rate: requests/s offered in all; weights: {port:
    weight}; keys: a function of a random.Random giving the X-Key."""

    def __init__(self, weights, rate, keys, path="/h/x", threads=8):
        self.weights = dict(weights)
        self.rate = rate
        self.keys = keys
        self.path = path
        self.threads = threads
        self.down = {}          # port -> monotonic time until which it is skipped
        self.counts = {}        # second -> {status: n}
        self.by_port = {}       # second -> {port: 200s}
        self.mu = threading.Lock()
        self.stop_ev = threading.Event()
        self.ths = []
        self.t0 = None

    def set_weights(self, weights):
        with self.mu:
            self.weights = dict(weights)

    def start(self):
        self.t0 = time.monotonic()
        for i in range(self.threads):
            th = threading.Thread(target=self._run, args=(i,), daemon=True)
            th.start()
            self.ths.append(th)
        return self

    def stop(self):
        self.stop_ev.set()
        for th in self.ths:
            th.join(10)

    def now(self):
        return time.monotonic() - self.t0

    def _pick(self, rnd):
        with self.mu:
            w = [(p, x) for p, x in self.weights.items()
                 if x > 0 and self.down.get(p, 0) <= time.monotonic()]
        if not w:
            return None
        total = sum(x for _, x in w)
        r = rnd.random() * total
        for p, x in w:
            r -= x
            if r <= 0:
                return p
        return w[-1][0]

    def _count(self, status, port=None):
        sec = int(time.monotonic() - self.t0)
        with self.mu:
            c = self.counts.setdefault(sec, {})
            c[status] = c.get(status, 0) + 1
            if status == 200 and port is not None:
                p = self.by_port.setdefault(sec, {})
                p[port] = p.get(port, 0) + 1

    def admitted_by(self, ports, t0, t1):
        """Mean 200s per second from the given ports over [t0, t1)."""
        with self.mu:
            xs = [sum(self.by_port.get(s, {}).get(p, 0) for p in ports)
                  for s in range(int(t0), int(t1))]
        return (sum(xs) / float(len(xs)) if xs else 0.0), xs

    def _run(self, i):
        rnd = random.Random(i * 7919 + 1)
        conns = {}
        period = self.threads / float(self.rate)
        nxt = time.monotonic() + rnd.random() * period
        while not self.stop_ev.is_set():
            now = time.monotonic()
            if nxt > now:
                time.sleep(min(nxt - now, 0.05))
                continue
            nxt += period
            if nxt < now - 1.0:
                nxt = now  # far behind (a stall): do not burst to catch up
            port = self._pick(rnd)
            if port is None:
                time.sleep(0.01)
                continue
            key = self.keys(rnd)
            for _attempt in range(2):
                c = conns.get(port)
                try:
                    if c is None:
                        c = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
                        conns[port] = c
                    c.request("GET", self.path, headers={"X-Key": key})
                    r = c.getresponse()
                    r.read()
                    self._count(r.status, port)
                    break
                except (OSError, http.client.HTTPException):
                    try:
                        c.close()
                    except Exception:
                        pass
                    conns.pop(port, None)
                    if _attempt == 1:
                        with self.mu:
                            self.down[port] = time.monotonic() + 0.5
                        self._count("error")

    def admitted(self, t0, t1):
        """Mean 200s per second over the whole seconds of [t0, t1) in which
        the clients kept pace (offered 90% of their rate at least: a loaded
        machine can stall the Python clients, and such a second says
        nothing about the limit); all of them if fewer than two did."""
        with self.mu:
            secs = list(range(int(t0), int(t1)))
            kept = [s for s in secs
                    if sum(self.counts.get(s, {}).values()) >= 0.9 * self.rate]
            xs = [self.counts.get(s, {}).get(200, 0) for s in (kept if len(kept) >= 2 else secs)]
        return (sum(xs) / float(len(xs)) if xs else 0.0), xs

    def offered(self, t0, t1):
        with self.mu:
            xs = [sum(v for k, v in self.counts.get(s, {}).items()) for s in range(int(t0), int(t1))]
        return sum(xs) / float(len(xs)) if xs else 0.0


class Nft:
    """Drop gossip between two groups of loopback ports (UDP both ways, and
    all gossip TCP: push-pull), in table inet shoal_glimit_PID."""

    def __init__(self, a_ports, b_ports, all_ports):
        self.a, self.b, self.all = sorted(a_ports), sorted(b_ports), sorted(all_ports)
        self.table = "shoal_glimit_%d" % os.getpid()
        self.added = False

    def add(self):
        j = lambda ps: ", ".join(str(p) for p in ps)  # noqa: E731
        rules = """
table inet %s {
  chain out {
    type filter hook output priority 0; policy accept;
    udp sport { %s } udp dport { %s } drop
    udp sport { %s } udp dport { %s } drop
    tcp dport { %s } drop
  }
}
""" % (self.table, j(self.a), j(self.b), j(self.b), j(self.a), j(self.all))
        r = subprocess.run(["nft", "-f", "-"], input=rules, capture_output=True, text=True,
                           timeout=15)
        if r.returncode != 0:
            raise sh.HarnessError("nft: %s" % r.stderr.strip())
        self.added = True

    def remove(self):
        if self.added:
            subprocess.run(["nft", "delete", "table", "inet", self.table], capture_output=True,
                           timeout=15)
            self.added = False


def nft_permitted():
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    return r.returncode == 0


def hot_key(rnd):
    return "hot"


def many_keys(n=MANY_KEYS):
    names = ["k%03d" % i for i in range(n)]
    return lambda rnd: rnd.choice(names)


def weights_of(nodes, uneven):
    """Even, or 80% to the first node and the rest spread."""
    if not uneven or len(nodes) == 1:
        return {n.http_port: 1.0 for n in nodes}
    w = {n.http_port: 0.2 / (len(nodes) - 1) for n in nodes[1:]}
    w[nodes[0].http_port] = 0.8
    return w


CASES = (("hot", False), ("hot", True), ("many", False), ("many", True))


def allowed_of(kind):
    return HOT_RATE if kind == "hot" else MANY_RATE * MANY_KEYS


def measure(t, nodes, kind, uneven, warm=2, secs=4, over=2.0):
    """Offer `over` times the allowed rate for warm+secs seconds; the
    admitted per second over the whole seconds [warm, warm+secs) of the
    load's clock, their mean and its error."""
    allowed = allowed_of(kind)
    load = Load(weights_of(nodes, uneven), allowed * over,
                hot_key if kind == "hot" else many_keys(),
                path="/h/x" if kind == "hot" else "/m/x").start()
    try:
        time.sleep(warm + secs + 0.1)
    finally:
        load.stop()
    mean, xs = load.admitted(warm, warm + secs)
    off = load.offered(warm, warm + secs)
    err = (mean - allowed) / float(allowed)
    return {"nodes": len(nodes), "kind": kind, "traffic": "80% one node" if uneven else "even",
            "allowed": allowed, "offered": off, "admitted": mean, "err": err, "seconds": xs}


def transient(t, nodes, event, what):
    """Hot-key load on nodes; at 3 s of the load's clock event(load) runs
    (it returns when the clients use the new set of nodes); returns the row
    for the 3 whole seconds from 1 s after it returned."""
    allowed = HOT_RATE
    load = Load(weights_of(nodes, False), allowed * 2, hot_key, path="/h/x").start()
    try:
        time.sleep(3.0)
        at = load.now()
        event(load)
        done = load.now()
        t0 = int(math.ceil(done + 1.0))  # the first whole second >= 1 s after the event
        time.sleep(max(0.0, t0 + 3.1 - load.now()))
    finally:
        load.stop()
    mean, xs = load.admitted(t0, t0 + 3)
    before, xb = load.admitted(1, int(at))
    r = {"nodes": len(nodes), "kind": "hot", "traffic": what, "allowed": allowed,
         "offered": load.offered(t0, t0 + 3), "admitted": mean,
         "err": (mean - allowed) / float(allowed), "seconds": xs}
    t.log("%s at %.2f s of the load (done at %.2f s); per second before %s, all %s" % (
        what, at, done, xb, [load.counts.get(s, {}).get(200, 0) for s in range(0, t0 + 3)]))
    return r


def row(r):
    return "%-5d %-5s %-13s %7d %8.0f %9.1f %+7.1f%%  %s" % (
        r["nodes"], r["kind"], r["traffic"], r["allowed"], r["offered"], r["admitted"],
        r["err"] * 100, r["seconds"])


HEADER = "%-5s %-5s %-13s %7s %8s %9s %8s  %s" % ("nodes", "keys", "traffic", "allowed",
                                                  "offered", "admitted", "error", "per second")
