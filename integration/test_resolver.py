#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 18: proxy_pass with variables through `resolver`, beside nginx 1.22,
with a small DNS server of the test's own on loopback (UDP, A records; one
name never answered):
- a name from `set $backend` is resolved by the configured server and
  proxied to (status and the backend's target as nginx's);
- `proxy_pass http://$arg_g` naming an upstream group uses the group, an
  address needs no resolver, a URI in the URL is sent as it is;
- a name the server does not know is a 502, as nginx; a location without a
  resolver is a 502 ("no resolver defined");
- answers are cached for valid= (one query for many requests);
- a name whose server never answers is a 502 after resolver_timeout, and
  while it waits the worker serves other requests at once (never blocks);
- `server NAME resolve` in an upstream (shoal only: nginx 1.22 has no
  `resolve`): unknown at load, resolved by the first request, and resolved
  again while running: when the DNS answer changes (127.0.0.1 -> 127.0.0.2,
  the same port) requests reach the other backend once valid= is over."""
import os
import socket
import struct
import sys
import threading
import time

import nginx_ref
import shoal_harness as sh


class Dns:
    """A minimal DNS responder: A records from `names` (NAME -> (IP, TTL) or
    ([IP, ...], TTL)), NXDOMAIN otherwise, silence for `mute` names. Counts
    the queries per name."""

    def __init__(self, names, mute=()):
        self.names = names
        self.mute = set(mute)
        self.count = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.stopping = False
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.answer(data, peer)
            except (IndexError, struct.error):
                pass

    def answer(self, data, peer):
        qid, flags, qd = struct.unpack(">HHH", data[:6])
        i, labels = 12, []
        while data[i] != 0:
            n = data[i]
            labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace"))
            i += 1 + n
        qtype, _ = struct.unpack(">HH", data[i + 1:i + 5])
        question = data[12:i + 5]
        name = ".".join(labels).lower()
        self.count[name] = self.count.get(name, 0) + 1
        if name in self.mute:
            return
        rd = flags & 0x0100
        if name not in self.names:
            hdr = struct.pack(">HHHHHH", qid, 0x8183 | rd, 1, 0, 0, 0)
            self.sock.sendto(hdr + question, peer)
            return
        ips, ttl = self.names[name]
        if isinstance(ips, str):
            ips = [ips]
        answers = b""
        n = 0
        if qtype == 1:
            for ip in ips:
                answers += struct.pack(">HHHIH", 0xC00C, 1, 1, ttl, 4) + socket.inet_aton(ip)
            n = len(ips)
        hdr = struct.pack(">HHHHHH", qid, 0x8180 | rd, 1, n, 0, 0)
        self.sock.sendto(hdr + question + answers, peer)

    def stop(self):
        self.stopping = True
        self.sock.close()


HTTP = """
    upstream named_group {{ server 127.0.0.1:{b2}; }}
    server {{
        listen 127.0.0.1:{{port}};
        resolver 127.0.0.1:{dns} valid=30s ipv6=off;
        resolver_timeout 2s;
        location /dyn/ {{ set $backend "app.test:{b1}"; proxy_pass http://$backend; }}
        location /grp/ {{ proxy_pass http://$arg_g; }}
        location /ip/ {{ proxy_pass http://127.0.0.1:$arg_p; }}
        location /uri/ {{ proxy_pass http://$arg_h:{b1}/fixed/echo; }}
        location /nx/ {{ set $h nx.test; proxy_pass http://$h:{b1}; }}
        location /mute/ {{ set $h mute.test; proxy_pass http://$h:{b1}; }}
    }}
    server {{
        listen 127.0.0.1:{other};
        location / {{ proxy_pass http://$arg_h:{b1}; }}
    }}
"""


def view(r):
    if r.status != 200:
        return (r.status,)
    j = r.json()
    return (r.status, j["backend"], j["target"], dict((k.lower(), v) for k, v in j["headers"]).get("host"))


def main(t):
    nginx_ref.skip_unless_available()
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    dns = Dns({"app.test": ("127.0.0.1", 300), "other.test": ("127.0.0.1", 300)},
              mute=["mute.test"])
    try:
        run(t, b1, b2, dns)
    finally:
        dns.stop()


def run(t, b1, b2, dns):
    other_s, other_n = t.port(), t.port()
    fmt = dict(b1=b1.port, b2=b2.port, dns=dns.port)
    node = t.shoal("events { }\nhttp {\n" + HTTP.format(other=other_s, **fmt) + "\n}\n")
    _, nport, _ = nginx_ref.start(t, HTTP.format(other=other_n, **fmt)
                                  .replace("{{", "{").replace("}}", "}"))
    cases = ["/dyn/echo?x=1", "/grp/echo?g=named_group", "/ip/echo?p=%d" % b2.port,
             "/uri/any/thing?h=other.test", "/nx/echo"]
    for u in cases:
        want = view(t.curl("http://127.0.0.1:%d%s" % (nport, u)))
        got = view(t.curl(node.url(u)))
        t.check(got == want, "%s: as nginx %s" % (u, want), "shoal %r\nnginx %r" % (got, want))
    r = t.curl("http://127.0.0.1:%d/echo?h=app.test" % other_s)
    t.check(r.status == 502, "no resolver in the location: 502", r)

    before = dns.count.get("app.test", 0)
    for _ in range(5):
        t.curl(node.url("/dyn/echo"))
    t.check(dns.count.get("app.test", 0) == before,
            "valid=30s: 5 more requests, no more queries (%d)" % before, dns.count)

    # a server that never answers: 502 after resolver_timeout; meanwhile
    # the worker answers others at once
    res = {}

    def slow():
        res["r"] = t.curl(node.url("/mute/echo"), timeout=20)
    th = threading.Thread(target=slow)
    t0 = time.monotonic()
    th.start()
    sh.wait_for(lambda: dns.count.get("mute.test", 0) > 0, 10 * t.slow, "the query for mute.test")
    r = t.curl(node.url("/ip/echo?p=%d" % b1.port))
    fast = time.monotonic() - t0
    th.join(30)
    took = time.monotonic() - t0
    t.check(r.status == 200 and fast < 1.5 * t.slow,
            "a request is served while a name waits for its server (%.2fs)" % fast, r)
    t.check(res.get("r") is not None and res["r"].status == 502 and 1.0 < took < 10 * t.slow,
            "the unanswered name: 502 after resolver_timeout (%.1fs)" % took, res.get("r"))

    # upstream `server NAME resolve`, re-resolved while running
    d = t._subdir("backend-b3")
    b3p = t._spawn("b3", [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "backend.py"),
                          "--port", str(b1.port), "--name", "b3", "--host", "127.0.0.2"], d)
    sh.wait_for(lambda: "ready" in b3p.stdout().split(), 15, "backend b3 on 127.0.0.2")
    dns.names["moving.test"] = ("127.0.0.1", 1)
    node2 = t.shoal("""
        events { }
        http {
            resolver 127.0.0.1:%d valid=1s ipv6=off;
            upstream moving { zone moving 64k; server moving.test:%d resolve; }
            server { listen 127.0.0.1:{port}; location / { proxy_pass http://moving; } }
        }""" % (dns.port, b1.port))

    def who():
        r = t.curl(node2.url("/echo"))
        return r.json()["backend"] if r.status == 200 else r.status
    t.check(who() == "b1", "resolve: the first request resolves moving.test -> 127.0.0.1 (b1)")
    dns.names["moving.test"] = ("127.0.0.2", 1)
    sh.wait_for(lambda: who() == "b3", 15 * t.slow, "requests reaching b3 after the DNS change")
    t.check(who() == "b3", "resolve: re-resolved while running -> 127.0.0.2 (b3)")


if __name__ == "__main__":
    sh.run(main)
