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
import os
import random
import socket
import subprocess
import threading
import time

import cluster_util as cu

sh = cu.sh


def gnode_conf(name, gossip, admin, keyfile, root, rate, burst, joins=(), zone_extra="global"):
    join = ("join %s;" % " ".join(joins)) if joins else ""
    return """
        worker_processes 1;
        events { }
        http {
            limit_req_zone $http_x_key zone=g:1m rate=%dr/s %s;
            server {
                listen 127.0.0.1:{port};
                location / { limit_req zone=g burst=%d nodelay; limit_req_status 429; root %s; }
            }
        }
        cluster {
            name glim; node_name %s; bind %s; admin_listen %s;
            encrypt_key_file %s; profile local; %s
        }
        """ % (rate, zone_extra, burst, root, name, gossip, admin, keyfile, join)


class GNode:
    def __init__(self, t, ctl, name, keyfile, root, rate, burst, joins=()):
        self.t, self.ctl, self.name = t, ctl, name
        self.http_port, self.gossip_port, self.admin_port = t.port(), t.port(), t.port()
        self.gossip = "127.0.0.1:%d" % self.gossip_port
        self.admin = "127.0.0.1:%d" % self.admin_port
        self.keyfile, self.root, self.rate, self.burst = keyfile, root, rate, burst
        self.joins = list(joins)
        self.node = None

    def start(self):
        conf = gnode_conf(self.name, self.gossip, self.admin, self.keyfile, self.root, self.rate,
                          self.burst, self.joins)
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
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "x"), "w") as f:
        f.write("x\n")
    return d


def start_cluster(t, ctl, n, rate, burst, prefix="g"):
    key = cu.write_keys(t, [cu.new_key()])
    root = make_root(t)
    nodes = []
    for i in range(n):
        joins = [nodes[0].gossip] if nodes else []
        nodes.append(GNode(t, ctl, "%s%d" % (prefix, i), key, root, rate, burst, joins).start())
    wait_members(t, ctl, nodes, n)
    return nodes, key, root


def wait_members(t, ctl, nodes, n, timeout=20):
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

    def __init__(self, weights, rate, keys, threads=8):
        self.weights = dict(weights)
        self.rate = rate
        self.keys = keys
        self.threads = threads
        self.down = {}          # port -> monotonic time until which it is skipped
        self.counts = {}        # second -> {status: n}
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

    def _count(self, status):
        sec = int(time.monotonic() - self.t0)
        with self.mu:
            c = self.counts.setdefault(sec, {})
            c[status] = c.get(status, 0) + 1

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
                    c.request("GET", "/x", headers={"X-Key": key})
                    r = c.getresponse()
                    r.read()
                    self._count(r.status)
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
        """Mean 200s per second over whole seconds [t0, t1)."""
        with self.mu:
            xs = [self.counts.get(s, {}).get(200, 0) for s in range(int(t0), int(t1))]
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


def many_keys(n):
    names = ["k%03d" % i for i in range(n)]
    return lambda rnd: rnd.choice(names)
