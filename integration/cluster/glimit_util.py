# SPDX-License-Identifier: Apache-2.0
"""What the global rate limit tests (issue 13) share: nodes with a global
limit_req zone and a paced load generator that counts 200 and 429 per
second, cluster-wide.

- `GNode`: a shoal node with a `cluster {}` block and `limit_req_zone
  $http_x_key zone=g:1m rate=R global`, serving a small static file at /x
  (limit_req is preaccess: it runs before the content handler).
- `Load`: paced open-loop clients (the C generator gload.c: Python threads
  fell behind on a loaded machine) with a weight per node; a request to a
  node that is down goes to the next live one, as a load balancer does.
  Answers counted by (second since start, status); requests sent and how
  late they left, per second, say whether the clients kept pace.
- `judge()`: a row's verdict: admitted over the seconds at pace against
  min(offered, limit) within 5%; an overshoot fails at any pace; too few
  seconds at pace is inconclusive (the test exits 77), never passed.
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


def gload_bin():
    """The C load generator (integration/cluster/gload.c): SHOAL_GLOAD (set
    by ctest), else beside nodectl's build tree."""
    p = os.environ.get("SHOAL_GLOAD")
    if p and os.access(p, os.X_OK):
        return p
    if cu.NODECTL:
        build = os.path.dirname(os.path.dirname(os.path.dirname(cu.NODECTL)))
        for c in (os.path.join(build, "integration", "cluster", "gload"),
                  os.path.join(os.path.dirname(cu.NODECTL), "gload")):
            if os.access(c, os.X_OK):
                return c
    raise sh.HarnessError("gload (integration/cluster/gload.c) not found: set SHOAL_GLOAD")


# A second says something about the limit only if the clients kept pace in
# it: they sent 90% of their rate at least, and no request left more than
# LATE_MS after its due time. nginx's bucket at twice its rate sits at
# `excess` = burst; a gap of L in the arrivals drains rate*L of it, which
# the burst of late requests after the gap takes back: nothing is lost while
# L <= burst/rate (100 ms for zone hot, 200 ms for each key of zone many),
# and rate*(L - burst/rate) is lost beyond, for the client's sake, not the
# limit's. 80 ms leaves a margin.
PACE = 0.9
LATE_MS = 80.0
NICE = -10   # gload's nice value when root: it waits less for a CPU on a loaded box


class Load:
    """Paced open-loop clients (the C generator gload: Python threads fell
    behind on a loaded machine); rate: requests/s offered in all; weights:
    {port: weight}; keys: hot_key or many_keys(n). A request to a node that
    is down goes to the next live one, as a load balancer does. Per second
    of the load's clock: counts {status: n} (answers by completion time),
    by_port {port: 200s}, sent and late (ms) by send time."""

    def __init__(self, weights, rate, keys, path="/h/x", threads=None, host="127.0.0.1",
                 argv_prefix=()):
        self.weights = dict(weights)
        self.rate = rate
        self.keys = keys
        self.path = path
        self.host = host
        self.argv_prefix = list(argv_prefix)   # e.g. ip netns exec NS
        self.counts = {}
        self.by_port = {}
        self.sent = {}
        self.late = {}
        self.mu = threading.Lock()
        self.proc = None
        self.reader = None
        self.t0 = None
        self.last = -1
        self.ended = threading.Event()

    def start(self):
        argv = self.argv_prefix + [gload_bin(), "--rate", "%g" % self.rate, "--path", self.path,
                                   "--host", self.host] + list(getattr(self.keys, "gload", []))
        for p, w in self.weights.items():   # port, or "ADDR:PORT"
            argv += ["--port", "%s:%g" % (p, w)]
        def prio():
            try:
                os.setpriority(os.PRIO_PROCESS, 0, NICE)
            except OSError:
                pass
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1, preexec_fn=prio)
        line = self.proc.stdout.readline()
        if not line.startswith("t0 "):
            raise sh.HarnessError("gload did not start: %r" % line)
        self.t0 = float(line.split()[1])
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            f = line.split()
            if not f or f[0] != "s":
                if f and f[0] == "end":
                    break
                continue
            kv = dict(zip(f[2:f.index("p"):2], f[3:f.index("p"):2]))
            sec = int(f[1])
            c = {}
            for k, st in (("c200", 200), ("c429", 429), ("other", "other"), ("err", "error")):
                if int(kv[k]):
                    c[st] = int(kv[k])
            bp = {}
            for x in f[f.index("p") + 1:]:
                port, n = x.rsplit(":", 1)
                if int(n):
                    bp[int(port) if port.isdigit() else port] = int(n)
            with self.mu:
                self.counts[sec] = c
                self.by_port[sec] = bp
                self.sent[sec] = int(kv["sent"])
                self.late[sec] = float(kv["late"])
                self.last = sec
        self.ended.set()

    def set_weights(self, weights):
        self.weights = dict(weights)
        self.proc.stdin.write("w " + " ".join("%d:%g" % (p, w) for p, w in weights.items())
                              + "\n")
        self.proc.stdin.flush()

    def stop(self):
        if self.proc is None:
            return
        try:
            self.proc.stdin.write("q\n")
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.ended.wait(5)

    def now(self):
        return time.monotonic() - self.t0

    def _have(self, t1):
        """Wait (bounded) until every second before t1 has been reported."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self.ended.is_set():
            with self.mu:
                if self.last >= int(t1) - 1:
                    return
            time.sleep(0.02)

    def kept(self, t0, t1):
        """The whole seconds of [t0, t1) in which the clients kept pace."""
        self._have(t1)
        with self.mu:
            return [s for s in range(int(t0), int(t1))
                    if self.sent.get(s, 0) >= PACE * self.rate
                    and self.late.get(s, 1e9) <= LATE_MS]

    def admitted_by(self, ports, t0, t1, secs=None):
        """Mean 200s per second from the given ports over [t0, t1) (or the
        given seconds)."""
        self._have(t1)
        with self.mu:
            xs = [sum(self.by_port.get(s, {}).get(p, 0) for p in ports)
                  for s in (secs if secs is not None else range(int(t0), int(t1)))]
        return (sum(xs) / float(len(xs)) if xs else 0.0), xs

    def admitted(self, t0, t1):
        """Mean 200s per second over the whole seconds of [t0, t1) in which
        the clients kept pace (all of them if none did; judge() says such
        a window is inconclusive)."""
        kept = self.kept(t0, t1)
        with self.mu:
            secs = kept if kept else list(range(int(t0), int(t1)))
            xs = [self.counts.get(s, {}).get(200, 0) for s in secs]
        return (sum(xs) / float(len(xs)) if xs else 0.0), xs

    def admitted_all(self, t0, t1):
        self._have(t1)
        with self.mu:
            xs = [self.counts.get(s, {}).get(200, 0) for s in range(int(t0), int(t1))]
        return (sum(xs) / float(len(xs)) if xs else 0.0), xs

    def offered(self, t0, t1, secs=None):
        """Mean requests sent per second (of the kept seconds if given)."""
        self._have(t1)
        with self.mu:
            xs = [self.sent.get(s, 0) for s in (secs if secs is not None
                                                 else range(int(t0), int(t1)))]
        return sum(xs) / float(len(xs)) if xs else 0.0

    def pace(self, t0, t1):
        self._have(t1)
        with self.mu:
            return [(self.sent.get(s, 0), self.late.get(s, 0.0)) for s in range(int(t0), int(t1))]


def judge(t, r, what, bound=0.05, need=2):
    """A row's verdict: admitted over the seconds the clients kept pace
    against min(offered, allowed) within `bound`. An overshoot fails
    whatever the pace (a client that falls behind only lowers the admitted
    rate); fewer than `need` seconds at pace is inconclusive, not passed."""
    allowed = r["allowed"]
    over_all = r.get("admitted_all", r["admitted"])
    if over_all > allowed * (1 + bound):
        return t.check(False, what + " (over the limit with the clients at any pace)", row(r))
    if r.get("kept", need) < need:
        t.inconclusive(what + ": the load generator kept pace for %d of %d seconds (sent, late ms:"
                       " %s)" % (r.get("kept", 0), len(r["seconds"]), r.get("pace")), row(r))
        return None
    expected = min(r["offered"], allowed)
    return t.check(abs(r["admitted"] - expected) <= bound * allowed, what, row(r))


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


hot_key.gload = ["--key", "hot"]


def many_keys(n=MANY_KEYS):
    names = ["k%03d" % i for i in range(n)]   # gload's names too

    def f(rnd):
        return rnd.choice(names)
    f.gload = ["--keys", str(n)]
    return f


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
    return row_of(load, len(nodes), kind, "80% one node" if uneven else "even", allowed,
                  warm, warm + secs)


def row_of(load, n, kind, traffic, allowed, t0, t1):
    """The row of [t0, t1): admitted over the seconds at pace, all seconds,
    offered (sent) over those at pace."""
    kept = load.kept(t0, t1)
    mean, xs = load.admitted(t0, t1)
    all_mean, _ = load.admitted_all(t0, t1)
    off = load.offered(t0, t1, kept if kept else None)
    return {"nodes": n, "kind": kind, "traffic": traffic, "allowed": allowed, "offered": off,
            "admitted": mean, "admitted_all": all_mean, "err": (mean - allowed) / float(allowed),
            "seconds": xs, "kept": len(kept), "pace": load.pace(t0, t1)}


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
    r = row_of(load, len(nodes), "hot", what, allowed, t0, t0 + 3)
    before, xb = load.admitted(1, int(at))
    t.log("%s at %.2f s of the load (done at %.2f s); per second before %s, all %s" % (
        what, at, done, xb, [load.counts.get(s, {}).get(200, 0) for s in range(0, t0 + 3)]))
    return r


def row(r):
    return "%-5d %-5s %-13s %7d %8.0f %9.1f %+7.1f%%  %s" % (
        r["nodes"], r["kind"], r["traffic"], r["allowed"], r["offered"], r["admitted"],
        r["err"] * 100, r["seconds"])


HEADER = "%-5s %-5s %-13s %7s %8s %9s %8s  %s" % ("nodes", "keys", "traffic", "allowed",
                                                  "offered", "admitted", "error", "per second")
