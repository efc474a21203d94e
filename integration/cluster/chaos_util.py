# SPDX-License-Identifier: Apache-2.0
"""What the cluster chaos tests (issue 15, test_chaos_*.py) share, on top of
cluster_util.py and ../shoal_harness.py.

- `ChaosNode`: a shoal node with a `cluster {}` block (proxying to a backend,
  or answering 200 itself without one) whose HTTP, gossip and
  admin ports are fixed when it is created (all taken through the harness's
  locks), so it can be stopped and started again on the same addresses, as a
  rolling restart does. Its gossip may be advertised at a `Relay`.
- `Load`: HTTP/1.1 client threads spread over the nodes' HTTP ports, some on
  keep-alive connections and some on a new connection per request. An
  idempotent GET whose connection is refused, reset or closed before a whole
  response is retried on the next node, as a load balancer does; a request
  fails only when every attempt did, or when it got a status other than 200.
  Every outcome is counted, and each success is stamped with its time and
  node so a test can ask whether a node served throughout a window.
- `Relay`: a delaying UDP + TCP relay (this kernel has no netem): each
  datagram and each TCP chunk is held a uniform random 0..jitter seconds in
  each direction (TCP chunks keep their order; datagrams may be reordered).
  UDP replies go back through the relay, so a node sees the relay's address
  as the source, as behind a NAT.
- `NftLoss`: random loss with nftables (`numgen random mod 100 < N drop`) on
  the given loopback ports only, in a table of its own named after our PID,
  deleted on every exit path (`cleanup_on_exit`).
- `rss_kb(pid)`, `fd_count(pid)`; `param(name, default)` reads the
  environment variable CHAOS_<NAME> so a longer run needs no edit.
"""

import heapq
import http.client
import itertools
import json
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

import cluster_util as cu

sh = cu.sh


def param(name, default):
    """CHAOS_<NAME> from the environment as the type of default."""
    v = os.environ.get("CHAOS_" + name.upper())
    return type(default)(v) if v not in (None, "") else default


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


_cleanups = []


def cleanup_on_exit(fn):
    """Run fn (idempotent) on SIGTERM/SIGINT/SIGHUP after the harness has
    stopped every child; the caller also runs it in a finally."""
    sh._install_handlers()
    if not _cleanups:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            def on_signal(signum, frame):
                sh.stop_all()
                for f in reversed(_cleanups):
                    try:
                        f()
                    except Exception:
                        pass
                sys.exit(128 + signum)
            signal.signal(s, on_signal)
    _cleanups.append(fn)


# ------------------------------------------------------------------ nodes --

class ChaosNode:
    """A cluster node on fixed ports; start() may be called again after the
    previous process has exited (same name, same addresses)."""

    def __init__(self, t, ctl, name, keyfile, backend, profile="local", joins=(),
                 advertise_port=None, http_extra=""):
        self.t, self.ctl, self.name = t, ctl, name
        self.keyfile, self.backend, self.profile = keyfile, backend, profile
        self.joins = list(joins)
        self.http_port, self.gossip_port, self.admin_port = t.port(), t.port(), t.port()
        self.gossip = "127.0.0.1:%d" % self.gossip_port
        self.advertise = "127.0.0.1:%d" % (advertise_port or self.gossip_port)
        self.admin = "127.0.0.1:%d" % self.admin_port
        self.http_extra = http_extra
        self.node = None
        self.cn = None
        self.starts = 0

    def conf(self):
        join = ("join %s;" % " ".join(self.joins)) if self.joins else ""
        ups, loc = "", "return 200 ok;"
        if self.backend is not None:
            ups = "upstream be { server 127.0.0.1:%d; keepalive 16; }" % self.backend.port
            loc = "proxy_pass http://be;"
        return """
            events { }
            http {
                %s
                server { listen 127.0.0.1:{port}; %s
                         location / { %s } }
            }
            cluster {
                name chaos; node_name %s; bind %s; advertise %s; admin_listen %s;
                encrypt_key_file %s; profile %s; %s
            }
            """ % (ups, self.http_extra, loc, self.name, self.gossip, self.advertise,
                   self.admin, self.keyfile, self.profile, join)

    def start(self):
        self.node = self.t.shoal(self.conf(), port=self.http_port)
        self.cn = cu.CNode(self.name, self.node, self.advertise, self.admin)
        self.starts += 1

        def admin_up():
            if not self.proc.alive():
                raise sh.HarnessError("%s exited: %s" % (self.name, self.proc.tail()))
            return self.ctl.members(self.admin) is not None
        sh.wait_for(admin_up, 15, "admin API of %s" % self.name)
        return self

    def rewrite_conf(self):
        """Write conf() (with the current http_extra) over the running
        node's file, atomically, for a reload."""
        import textwrap
        text = textwrap.dedent(self.conf()).lstrip("\n").replace("{port}", str(self.http_port))
        tmp = self.node.conf_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.node.conf_path)

    @property
    def proc(self):
        return self.node.proc

    @property
    def pid(self):
        return self.node.proc.pid


def fresh_request(conn):
    """Send a GET on conn (a shoal_harness.RawConn opened earlier, which has
    sent nothing yet) and read the answer: (RawResponse or None, error)."""
    try:
        conn.send("GET / HTTP/1.1\r\nHost: chaos\r\n\r\n")
        return conn.read_response(timeout=10), None
    except (OSError, sh.HarnessError) as e:
        return None, str(e)
    finally:
        conn.close()


def view(ctl, observer):
    """{name: status} as observer (a ChaosNode) sees it; {} if it cannot say."""
    m = ctl.members(observer.admin) or []
    return {x["name"]: x["status"] for x in m}


def wait_views(t, ctl, observers, want, timeout, what):
    """Wait until every observer's view includes want ({name: status});
    returns the seconds it took."""
    c = cu.Cluster(t, ctl)
    return c.wait_all_see([o.cn for o in observers], want, timeout, what)


# ------------------------------------------------------------------- load --

class Load:
    """Client threads sending GETs to ports (a list the test may not change
    while running). keepalive_share of the threads reuse connections, the
    others open one per request. attempts: tries per request, moving to the
    next node after each failed try, with a 50 ms pause after each round of
    all nodes. timeout: seconds one try may take."""

    REASONS = ("refused", "reset_fresh", "reset_reused", "truncated", "timeout", "other")

    def __init__(self, ports, threads=6, paths=("/",), keepalive_share=0.5, timeout=5.0,
                 attempts=None):
        self.ports = list(ports)
        self.threads = threads
        self.paths = list(paths)
        self.keepalive_share = keepalive_share
        self.timeout = timeout
        self.attempts = attempts or 3 * len(self.ports)
        self._stop = threading.Event()
        self._mu = threading.Lock()
        self._ths = []
        self.requests = 0         # requests finished (ok or failed)
        self.ok = 0
        self.failed = 0           # after every retry, or a status other than 200
        self.failures = []        # (time, what) of the first failures
        self.retry_log = []       # (time, port, reason, error) of the first retries
        self.retries = dict.fromkeys(self.REASONS, 0)
        self.retried_requests = 0
        self.connections = 0
        self.max_latency = 0.0
        self.served = {p: [] for p in self.ports}  # port -> monotonic times of successes

    def start(self):
        for i in range(self.threads):
            keep = i < round(self.threads * self.keepalive_share)
            th = threading.Thread(target=self._run, args=(i, keep), daemon=True)
            th.start()
            self._ths.append(th)
        return self

    def stop(self):
        self._stop.set()
        for th in self._ths:
            th.join(self.timeout * 2 + 5)
        return self

    def snapshot(self):
        with self._mu:
            return {"requests": self.requests, "ok": self.ok, "failed": self.failed,
                    "retried_requests": self.retried_requests, "connections": self.connections,
                    "retries": dict(self.retries), "max_latency_s": round(self.max_latency, 3)}

    def wait_requests(self, n, timeout, what="requests"):
        """Wait until n more requests have finished (the load is flowing)."""
        base = self.requests
        sh.wait_for(lambda: self.requests - base >= n, timeout, "%d %s" % (n, what))

    def gaps(self, port, t0, t1, window):
        """How many windows of `window` seconds between t0 and t1 saw no
        success on port."""
        with self._mu:
            times = [x for x in self.served[port] if t0 <= x < t1]
        n = max(1, int((t1 - t0) // window))
        hit = set(int((x - t0) // window) for x in times)
        return sum(1 for k in range(n) if k not in hit)

    def summary(self):
        s = self.snapshot()
        per = {p: len(v) for p, v in self.served.items()}
        return "%s; served per port %s" % (json.dumps(s, sort_keys=True), per)

    def _classify(self, e, fresh):
        if isinstance(e, ConnectionRefusedError):
            return "refused"
        if isinstance(e, http.client.IncompleteRead):
            return "truncated"
        if isinstance(e, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                          ConnectionAbortedError)):
            return "reset_fresh" if fresh else "reset_reused"
        if isinstance(e, socket.timeout):
            return "timeout"
        return "other"

    def _run(self, i, keep):
        rnd = random.Random(i)
        n = len(self.ports)
        idx = i % n
        conn = None
        reused = 0
        paths = itertools.cycle(self.paths[i % len(self.paths):] + self.paths[:i % len(self.paths)])
        while not self._stop.is_set():
            path = next(paths)
            t0 = time.monotonic()
            status, tries, last = None, 0, None
            while tries < self.attempts and not self._stop.is_set():
                port = self.ports[idx]
                fresh = conn is None
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
                        conn.connect()
                        with self._mu:
                            self.connections += 1
                    conn.request("GET", path, headers={} if keep else {"Connection": "close"})
                    r = conn.getresponse()
                    r.read()
                    status = r.status
                    reused += 1
                    if not keep or r.will_close or reused % 50 == 0:
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException) as e:
                    last = self._classify(e, fresh)
                    if conn is not None:
                        conn.close()
                        conn = None
                    with self._mu:
                        self.retries[last] += 1
                        if len(self.retry_log) < 20:
                            self.retry_log.append((round(time.monotonic(), 3), port, last,
                                                   repr(e)[:120]))
                    tries += 1
                    idx = (idx + 1) % n
                    if tries % n == 0:
                        time.sleep(0.05)  # a client's backoff between rounds, not a wait
            if status is None and self._stop.is_set() and tries < self.attempts:
                break  # stopped mid-request: neither ok nor failed
            now = time.monotonic()
            with self._mu:
                self.requests += 1
                if tries:
                    self.retried_requests += 1
                self.max_latency = max(self.max_latency, now - t0)
                if status == 200:
                    self.ok += 1
                    self.served[self.ports[idx]].append(now)
                else:
                    self.failed += 1
                    if len(self.failures) < 10:
                        self.failures.append((round(now, 3), path, status, last, tries))
            if conn is None:
                idx = (idx + 1 + rnd.randrange(n)) % n  # spread new connections


# ------------------------------------------------------------------ relay --

class Relay:
    """listen_port (UDP and TCP on 127.0.0.1) -> 127.0.0.1:target_port, each
    datagram and TCP chunk delayed by uniform(0, jitter) seconds in each
    direction. set_jitter() changes it while running."""

    def __init__(self, listen_port, target_port, jitter=0.0, seed=None):
        self.addr = ("127.0.0.1", listen_port)
        self.target = ("127.0.0.1", target_port)
        self.jitter = jitter
        self.rnd = random.Random(seed if seed is not None else listen_port)
        self.udp_relayed = 0
        self.tcp_conns = 0
        self.tcp_bytes = 0
        self.reset_delays()
        self._sel = selectors.DefaultSelector()
        self._heap = []
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(self.addr)
        self._udp.setblocking(False)
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._tcp.bind(self.addr)
        self._tcp.listen(64)
        self._tcp.setblocking(False)
        self._up = {}      # client addr -> upstream UDP socket
        self._tcp_last = {}  # socket -> release time of its last chunk (order)
        self._peer = {}    # tcp socket -> its pair
        self._eof = set()  # tcp sockets whose read side has ended
        self._sel.register(self._udp, selectors.EVENT_READ, ("udp-in", None))
        self._sel.register(self._tcp, selectors.EVENT_READ, ("accept", None))
        self._th = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self._th.start()
        return self

    def set_jitter(self, j):
        self.jitter = j

    def _delay(self):
        d = self.rnd.uniform(0, self.jitter) if self.jitter > 0 else 0.0
        self.delays_n += 1
        self.delays_sum += d
        self.delays_max = max(self.delays_max, d)
        return d

    def reset_delays(self):
        """Start counting the delays applied afresh (delays_n, _sum, _max)."""
        self.delays_n, self.delays_sum, self.delays_max = 0, 0.0, 0.0

    def _at(self, when, fn):
        heapq.heappush(self._heap, (when, next(self._seq), fn))

    def _loop(self):
        while not self._stop.is_set():
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                _, _, fn = heapq.heappop(self._heap)
                try:
                    fn()
                except OSError:
                    pass
            wait = 0.05
            if self._heap:
                wait = max(0.0, min(wait, self._heap[0][0] - now))
            for key, _ in self._sel.select(wait):
                kind, arg = key.data
                try:
                    getattr(self, "_on_" + kind.replace("-", "_"))(key.fileobj, arg)
                except OSError:
                    pass

    def _on_udp_in(self, s, _):
        while True:
            try:
                data, src = s.recvfrom(65536)
            except BlockingIOError:
                return
            up = self._up.get(src)
            if up is None:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.bind(("127.0.0.1", 0))
                up.connect(self.target)
                up.setblocking(False)
                self._up[src] = up
                self._sel.register(up, selectors.EVENT_READ, ("udp-back", src))
            self.udp_relayed += 1
            self._at(time.monotonic() + self._delay(), lambda up=up, d=data: up.send(d))

    def _on_udp_back(self, up, src):
        while True:
            try:
                data = up.recv(65536)
            except (BlockingIOError, ConnectionRefusedError):
                return
            self.udp_relayed += 1
            self._at(time.monotonic() + self._delay(),
                     lambda d=data, src=src: self._udp.sendto(d, src))

    def _on_accept(self, s, _):
        try:
            c, _ = s.accept()
        except BlockingIOError:
            return
        try:
            u = socket.create_connection(self.target, timeout=2)
        except OSError:
            c.close()
            return
        self.tcp_conns += 1
        for a, b in ((c, u), (u, c)):
            a.settimeout(5)
            self._peer[a] = b
            self._tcp_last[a] = 0.0
            self._sel.register(a, selectors.EVENT_READ, ("tcp", None))

    def _on_tcp(self, a, _):
        b = self._peer[a]
        try:
            data = a.recv(65536)
        except OSError:
            data = b""  # a reset ends this direction like an EOF
        # Order: a chunk is released no sooner than the one before it.
        when = max(self._tcp_last.get(a, 0.0), time.monotonic() + self._delay())
        self._tcp_last[a] = when
        if data:
            self.tcp_bytes += len(data)
            self._at(when, lambda b=b, d=data: b.sendall(d))
            return
        self._sel.unregister(a)

        def eof(a=a, b=b):
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._eof.add(a)
            if b in self._eof:
                for x in (a, b):
                    self._eof.discard(x)
                    self._peer.pop(x, None)
                    self._tcp_last.pop(x, None)
                    x.close()
        self._at(when, eof)

    def close(self):
        self._stop.set()
        if self._th.is_alive():
            self._th.join(5)
        for s in list(self._peer) + list(self._up.values()) + [self._udp, self._tcp]:
            try:
                s.close()
            except OSError:
                pass
        self._sel.close()


# ------------------------------------------------------------------- loss --

def nft_usable():
    """None if nftables can be used here, else why not."""
    try:
        r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if r.returncode == 0 else (r.stderr.strip() or "exit %d" % r.returncode)


class NftLoss:
    """percent% random loss on loopback traffic to the given UDP ports and to
    and from the given TCP ports, in table `inet shoal_chaos_PID`. Use as a
    context manager or call add()/remove(); remove() is safe twice and runs
    on SIGTERM/SIGINT/SIGHUP too."""

    def __init__(self, ports, percent):
        self.ports = sorted(set(ports))
        self.percent = int(percent)
        self.table = "shoal_chaos_%d" % os.getpid()
        self.added = False
        cleanup_on_exit(self.remove)
        self._reap_stale()

    @staticmethod
    def _reap_stale():
        """Delete the tables of earlier runs whose process is gone (a
        SIGKILLed test cannot clean up after itself)."""
        r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=15)
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "inet" and parts[2].startswith("shoal_chaos_"):
                pid = parts[2][len("shoal_chaos_"):]
                if pid.isdigit() and not os.path.exists("/proc/%s" % pid):
                    subprocess.run(["nft", "delete", "table", "inet", parts[2]],
                                   capture_output=True, timeout=15)

    def _nft(self, *args, stdin=None):
        r = subprocess.run(["nft"] + list(args), input=stdin, capture_output=True, text=True,
                           timeout=15)
        if r.returncode != 0:
            raise sh.HarnessError("nft %s: %s" % (" ".join(args), r.stderr.strip()))
        return r.stdout

    def add(self):
        ports = ", ".join(str(p) for p in self.ports)
        rule = "numgen random mod 100 < %d counter drop" % self.percent
        self._nft("-f", "-", stdin="""
table inet %s {
  chain out {
    type filter hook output priority 0; policy accept;
    udp dport { %s } %s
    tcp dport { %s } %s
    tcp sport { %s } %s
  }
}
""" % (self.table, ports, rule, ports, rule, ports, rule))
        self.added = True
        return self

    def dropped(self):
        """Packets dropped so far (the rules' counters)."""
        out = json.loads(self._nft("-j", "list", "table", "inet", self.table))
        n = 0
        for item in out.get("nftables", []):
            for e in item.get("rule", {}).get("expr", []):
                if "counter" in e:
                    n += e["counter"]["packets"]
        return n

    def remove(self):
        if self.added:
            subprocess.run(["nft", "delete", "table", "inet", self.table], capture_output=True,
                           timeout=15)
            self.added = False

    def exists(self):
        r = subprocess.run(["nft", "list", "table", "inet", self.table], capture_output=True,
                           timeout=15)
        return r.returncode == 0

    def __enter__(self):
        return self.add()

    def __exit__(self, *exc):
        self.remove()


def watch_views(ctl, observers, names, seconds, interval=0.1):
    """Poll every observer's view of names for `seconds`; returns
    {(observer, name): [statuses seen, in order, repeats collapsed]}."""
    seen = {(o.name, n): [] for o in observers for n in names}
    deadline = time.monotonic() + seconds
    while True:
        for o in observers:
            v = view(ctl, o)
            for n in names:
                s = v.get(n, "?")
                hist = seen[(o.name, n)]
                if not hist or hist[-1] != s:
                    hist.append(s)
        if time.monotonic() >= deadline:
            return seen
        time.sleep(interval)  # the sampling period of a window we watch, not a wait
