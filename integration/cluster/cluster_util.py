# SPDX-License-Identifier: Apache-2.0
"""What the cluster integration tests share, on top of ../shoal_harness.py.

- `run(main)`: takes --nodectl PATH off the command line (the harness knows
  --shoal/--keep/-v only), then runs main(t, ctl) under shoal_harness.run.
- `Ctl`: nodectl as a subprocess (optionally inside a network namespace);
  membership is read through `nodectl members --json`, as an operator's
  script would.
- `Cluster`: starts shoal nodes with a `cluster {}` block on free loopback
  ports (gossip and admin), each with its own key file written by the test.
- `seal()`: the gossip envelope (cluster/keyring.h) rebuilt in Python, so a
  test can forge datagrams under any key: XChaCha20-Poly1305 is HChaCha20
  for the subkey, then the IETF ChaCha20-Poly1305 of `cryptography`.

Every wait is a condition polled until a deadline (shoal_harness.wait_for).
"""

import hashlib
import json
import os
import socket
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import shoal_harness as sh  # noqa: E402

NODECTL = None


def run(main):
    global NODECTL
    argv = sys.argv[1:]
    rest = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--nodectl" and i + 1 < len(argv):
            NODECTL = argv[i + 1]
            i += 2
            continue
        if a.startswith("--nodectl="):
            NODECTL = a.split("=", 1)[1]
        else:
            rest.append(a)
        i += 1
    if NODECTL is None:
        NODECTL = os.environ.get("NODECTL_BIN") or os.path.join(
            os.path.dirname(sh.default_shoal_bin()), "nodectl")
    if not os.access(NODECTL, os.X_OK):
        print("FAIL - nodectl binary not found or not executable: %s" % NODECTL)
        sys.exit(2)
    NODECTL = os.path.abspath(NODECTL)
    sys.argv = [sys.argv[0]] + rest
    sh.run(lambda t: main(t, Ctl(NODECTL)))


class Ctl:
    def __init__(self, path):
        self.path = path

    def run(self, *args, addr=None, netns=None, env=None, timeout=10):
        """nodectl ARGS -> CompletedProcess (text)."""
        argv = [self.path] + (["--addr", addr] if addr else []) + list(args)
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        e = dict(os.environ)
        e.pop("SHOAL_ADDR", None)
        e.update(env or {})
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=e,
                              stdin=subprocess.DEVNULL)

    def json(self, addr, *args, netns=None):
        """The API's JSON through nodectl --json; None if nodectl failed."""
        r = self.run(*args, "--json", addr=addr, netns=netns)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def members(self, addr, netns=None):
        return self.json(addr, "members", netns=netns)

    def stats(self, addr, netns=None):
        return self.json(addr, "stats", netns=netns)


def new_key():
    return os.urandom(32)


def write_keys(t, keys, name="gossip.key"):
    """A key file (one hex key a line, first is primary) in the test's dir."""
    d = os.path.join(t.tmp, "keys")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "%d-%s" % (len(os.listdir(d)), name))
    with open(path, "w") as f:
        f.write("# written by %s\n" % os.path.basename(sys.argv[0]))
        for k in keys:
            f.write(k.hex() + "\n")
    os.chmod(path, 0o600)
    return path


class CNode:
    def __init__(self, name, node, gossip, admin, netns=None, proc=None):
        self.name = name
        self.node = node          # shoal_harness.Node (None inside a namespace)
        self.proc = proc or node.proc
        self.gossip = gossip      # "host:port"
        self.admin = admin        # "host:port"
        self.netns = netns

    @property
    def pid(self):
        return self.proc.pid


def cluster_conf(name, gossip, admin, keyfile, joins=(), extra=""):
    join = ("join %s;" % " ".join(joins)) if joins else ""
    return """
        events { }
        http { server { listen 127.0.0.1:{port}; location / { return 200; } } }
        cluster {
            name itest; node_name %s; bind %s; admin_listen %s;
            encrypt_key_file %s; profile local; %s
            %s
        }
        """ % (name, gossip, admin, keyfile, join, extra)


class Cluster:
    def __init__(self, t, ctl):
        self.t = t
        self.ctl = ctl
        self.nodes = []

    def start(self, name, keyfile, joins=(), extra="", wait_admin=True):
        gp, ap = self.t.port(), self.t.port()
        gossip, admin = "127.0.0.1:%d" % gp, "127.0.0.1:%d" % ap
        node = self.t.shoal(cluster_conf(name, gossip, admin, keyfile, joins, extra))
        cn = CNode(name, node, gossip, admin)
        if wait_admin:
            sh.wait_for(lambda: self._admin_up(cn), 15, "admin API of %s" % name)
        self.nodes.append(cn)
        return cn

    def _admin_up(self, cn):
        if not cn.proc.alive():
            raise sh.HarnessError("%s exited: %s" % (cn.name, cn.proc.tail()))
        return self.ctl.members(cn.admin, netns=cn.netns) is not None

    def view(self, observer):
        """{name: status} as observer sees it ({} if it cannot answer)."""
        m = self.ctl.members(observer.admin, netns=observer.netns) or []
        return {x["name"]: x["status"] for x in m}

    def wait_all_see(self, observers, want, timeout, what):
        """Wait until every observer's view includes want ({name: status}).
        Returns the seconds it took."""
        t0 = __import__("time").monotonic()
        pending = list(observers)

        def cond():
            for o in list(pending):
                v = self.view(o)
                if all(v.get(n) == s for n, s in want.items()):
                    pending.remove(o)
            return not pending
        try:
            sh.wait_for(cond, timeout, what, interval=0.05)
        except sh.HarnessError:
            for o in pending:
                self.t.log("%s sees %s" % (o.name, self.view(o)))
            raise
        return __import__("time").monotonic() - t0


# ------------------------------------------------------------ the envelope --

def _rotl(v, c):
    return ((v << c) & 0xffffffff) | (v >> (32 - c))


def _qr(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & 0xffffffff; s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xffffffff; s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xffffffff; s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xffffffff; s[b] = _rotl(s[b] ^ s[c], 7)


def hchacha20(key, nonce16):
    s = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))
    for _ in range(10):
        _qr(s, 0, 4, 8, 12); _qr(s, 1, 5, 9, 13); _qr(s, 2, 6, 10, 14); _qr(s, 3, 7, 11, 15)
        _qr(s, 0, 5, 10, 15); _qr(s, 1, 6, 11, 12); _qr(s, 2, 7, 8, 13); _qr(s, 3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def key_id(key):
    return hashlib.blake2b(key, digest_size=32).digest()[:4]


def seal(key, plaintext, version=1):
    """The envelope of cluster/keyring.h: [version][key id][24-byte nonce]
    [XChaCha20-Poly1305(plaintext), AD = bytes 0..4]."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    nonce = os.urandom(24)
    head = bytes([version]) + key_id(key)
    sub = hchacha20(key, nonce[:16])
    ct = ChaCha20Poly1305(sub).encrypt(b"\0\0\0\0" + nonce[16:], plaintext, head)
    return head + nonce + ct


def send_udp(addr, data):
    host, port = addr.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, (host, int(port)))


# ------------------------------------------------- adversarial helpers --
# (issue 15: the gossip and admin ports under unauthenticated load)

def http_get(addr, path, token=None, timeout=5):
    """(status, body bytes) of GET path on the admin API; (None, b"") if the
    connection failed."""
    import http.client
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request("GET", path, headers={"Authorization": "Bearer " + token} if token else {})
        r = c.getresponse()
        return r.status, r.read()
    except OSError:
        return None, b""
    finally:
        c.close()


def metrics(addr, token=None):
    """/metrics as {"name{labels}": value}; {} if it could not be read."""
    st, body = http_get(addr, "/metrics", token)
    out = {}
    if st != 200:
        return out
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def rejected(addr, metric, token=None):
    """{reason: count} of a counter by reason in /metrics, e.g.
    shoal_gossip_rejected_total{reason="..."}."""
    return {k.split('"')[1]: v for k, v in metrics(addr, token).items()
            if k.startswith(metric + "{")}


def delta(before, after):
    """The counters of after that differ from before, as differences."""
    return {k: after.get(k, 0) - before.get(k, 0) for k in after
            if after.get(k, 0) != before.get(k, 0)}


def hostport(addr):
    """"host:port" -> (host, port) for socket calls."""
    h, p = addr.rsplit(":", 1)
    return h, int(p)


def rss_mb(cn):
    return cn.proc.memory_kb()[0] / 1024.0


class RssSampler:
    """Samples a node's RSS every 20 ms on a thread, from start() to stop():
    the peak (MiB) covers everything the node did in between."""

    def __init__(self, cn):
        import threading
        self.cn = cn
        self.peak = rss_mb(cn)
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.cn))
            except (OSError, TypeError):
                return
            self._stop.wait(0.02)

    def start(self):
        self._th.start()
        return self

    def stop(self):
        self._stop.set()
        self._th.join(5)
        return self.peak


def pb_varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_field(num, value):
    """A protobuf field: int -> varint, bytes/str -> length-delimited."""
    if isinstance(value, int):
        return pb_varint(num << 3) + pb_varint(value)
    if isinstance(value, str):
        value = value.encode()
    return pb_varint((num << 3) | 2) + pb_varint(len(value)) + value


def ping_packet(key, sender, seq, target):
    """A sealed gossip Packet{from, ping{seq, target}} (wire header 3 1 1)."""
    ping = pb_field(1, seq) + pb_field(2, target)
    return seal(key, bytes([3, 1, 1]) + pb_field(1, sender) + pb_field(2, ping))


def legacy_frame(key, plaintext):
    """A push-pull frame in the legacy format: [u32 length][envelope]."""
    env = seal(key, plaintext)
    return struct.pack(">I", len(env)) + env


def read_until_closed(sock, timeout, limit=1 << 24):
    """Read until EOF/reset or timeout: (bytes, closed?)."""
    import time
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return data, False
        except OSError:
            return data, True
        if not d:
            return data, True
        data += d
    return data, False


def connect_many(addr, n, payload=b""):
    """n TCP connections to addr, each sent payload; those that connected."""
    host, port = addr.rsplit(":", 1)
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.settimeout(5)
        try:
            s.connect((host, int(port)))
            if payload:
                s.sendall(payload)
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


def all_closed_by_peer(socks, timeout):
    """Wait until the peer closed every socket (EOF or reset): the seconds it
    took, or None if some stayed open past timeout."""
    import select
    import time
    t0 = time.monotonic()
    open_ = list(socks)
    while open_:
        left = t0 + timeout - time.monotonic()
        if left <= 0:
            return None
        r, _, _ = select.select(open_, [], [], min(left, 0.2))
        for s in r:
            try:
                s.setblocking(False)
                d = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if not d:
                open_.remove(s)
    return time.monotonic() - t0


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass
