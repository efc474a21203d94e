#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 18: proxy_pass with variables, every address of a name, https and
keep-alive, with the small DNS server of test_resolver.py (here answering
several A records):
- a name with two A records (127.0.0.1 and 127.0.0.2, one backend on each,
  same port): requests go round-robin across both, as nginx's implicit
  upstream (beside nginx: both reach both backends, evenly);
- a name whose first address refuses connections: every request is still
  answered (the next address is tried, the dead one is marked failed),
  as nginx;
- valid=1s: when the answer changes, requests follow it once valid= ends;
- `proxy_pass https://$name:PORT` (the TLS context of proxy_ssl.c; the name
  is the SNI with proxy_ssl_server_name on) reaches a TLS origin, beside
  nginx;
- keep-alive to such peers (proxy_http_version 1.1, Connection ""): ten
  requests share one upstream connection (shoal only: nginx keeps none
  for a proxy_pass with variables), over TLS too;
- upstream `server NAME resolve` uses every address of the answer in turn
  (shoal only: nginx 1.22 has no `resolve`);
- each address of a `resolve` server is a peer of its own with the
  server's parameters (NGINX Plus, nginx 1.27): weight=2 beside a weight=1
  server gives 2:2:1, not 1:1:1 of a shared weight; an address refusing
  connections is the only one marked failed (after max_fails the other
  serves alone, no request tries the dead one again); an address gone
  from the answer gets no traffic once its TTL (1 s) is over."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nginx_ref  # noqa: E402
import shoal_harness as sh  # noqa: E402
from test_resolver import Dns  # noqa: E402


HTTP = """
    server {
        listen 127.0.0.1:{port};
        resolver 127.0.0.1:{dns} valid=1s ipv6=off;
        resolver_timeout 3s;
        location /multi/ { set $h multi.test; proxy_pass http://$h:{bp}; }
        location /half/ { set $h half.test; proxy_pass http://$h:{bp}; }
        location /moving/ { set $h moving.test; proxy_pass http://$h:{bp}; }
        location /tls/ {
            set $h origin.test;
            proxy_pass https://$h:{tls};
            proxy_ssl_server_name on;
        }
        location /ka/ {
            set $h one.test;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://$h:{bp};
        }
        location /katls/ {
            set $h origin.test;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_server_name on;
            proxy_pass https://$h:{tls};
        }
    }
"""


def main(t):
    nginx_ref.skip_unless_available()
    b1 = t.backend("b1")
    d = t._subdir("backend-b2")
    b2p = t._spawn("b2", [sys.executable, sh.BACKEND_PY, "--port", str(b1.port), "--name", "b2",
                          "--host", "127.0.0.2"], d)
    sh.wait_for(lambda: "ready" in b2p.stdout().split(), 15, "backend b2 on 127.0.0.2")
    dns = Dns({"multi.test": (["127.0.0.1", "127.0.0.2"], 300),
                    "half.test": (["127.0.0.3", "127.0.0.1"], 300),
                    "moving.test": (["127.0.0.1"], 1),
                    "one.test": (["127.0.0.1"], 300),
                    "origin.test": (["127.0.0.1"], 300)})
    try:
        run(t, b1, dns)
    finally:
        dns.stop()


def run(t, b1, dns):
    # the TLS origin: a shoal answering with its SNI and the connection's
    # request count
    cert, key = t.make_cert("origin", "origin.test")
    tls = t.port()
    t.shoal("""
        events { }
        http { server {
            listen 127.0.0.1:{port} ssl;
            ssl_certificate %s; ssl_certificate_key %s;
            location / { return 200 "tls sni=$ssl_server_name n=$connection_requests\\n"; }
        } }""" % (cert, key), port=tls)
    port, nport = t.port(), t.port()

    def conf(p):
        return (HTTP.replace("{port}", str(p)).replace("{dns}", str(dns.port))
                .replace("{bp}", str(b1.port)).replace("{tls}", str(tls)))
    node = t.shoal("events { }\nhttp {\n%s\n}\n" % conf(port), port=port)
    nginx_ref.start(t, conf(nport), port=nport)

    def backends(p, path, n=10):
        out = []
        for _ in range(n):
            r = t.curl("http://127.0.0.1:%d%s" % (p, path))
            out.append(r.json()["backend"] if r.status == 200 else r.status)
        return out
    a, b = backends(port, "/multi/echo"), backends(nport, "/multi/echo")
    # nginx makes its implicit upstream per request (its resolver rotates
    # the cached answer): both backends are reached, not strictly in turn
    t.check(a.count("b1") == 5 and a.count("b2") == 5 and set(b) == {"b1", "b2"},
            "two A records: round-robin over both (nginx reaches both too): %s (nginx %s)" % (
                a, b))
    a, b = backends(port, "/half/echo"), backends(nport, "/half/echo")
    t.check(a == ["b1"] * 10 and b == ["b1"] * 10,
            "the first address refuses: every request answered by the next, as nginx: %s (%s)"
            % (a, b))
    t.check(backends(port, "/moving/echo", 2) == ["b1", "b1"], "moving.test -> 127.0.0.1")
    dns.names["moving.test"] = (["127.0.0.2"], 1)
    sh.wait_for(lambda: backends(port, "/moving/echo", 1) == ["b2"], 15 * t.slow,
                "requests following the new answer once valid=1s ended")
    t.check(True, "valid=1s: the changed answer is followed")

    a = t.curl("http://127.0.0.1:%d/tls/x" % port)
    b = t.curl("http://127.0.0.1:%d/tls/x" % nport)
    t.check(a.status == b.status == 200 and a.text().startswith("tls sni=origin.test") and
            b.text().startswith("tls sni=origin.test"),
            "proxy_pass https://$h: TLS with the name as SNI, as nginx: %r (nginx %r)" % (
                a.text(), b.text()))

    before = b1.stats()["connections"]
    got = [t.curl("http://127.0.0.1:%d/ka/echo" % port).status for _ in range(10)]
    conns = b1.stats()["connections"] - before
    t.check(got == [200] * 10 and conns <= 1,
            "keep-alive to a resolved peer: 10 requests over %d upstream connection(s)" % conns)
    last = ""
    for _ in range(5):
        last = t.curl("http://127.0.0.1:%d/katls/x" % port).text()
    t.check(last.strip().endswith("n=5"),
            "keep-alive over TLS to a resolved peer: the 5th request is the origin "
            "connection's 5th: %r" % last)
    t.check(node.proc.alive(), "shoal is up")

    # upstream `server NAME resolve` (shoal only: nginx 1.22 has no
    # `resolve`): every address of the answer is used, in turn
    node2 = t.shoal("""
        events { }
        http {
            resolver 127.0.0.1:%d valid=30s ipv6=off;
            upstream both { server multi.test:%d resolve; }
            server { listen 127.0.0.1:{port}; location / { proxy_pass http://both; } }
        }""" % (dns.port, b1.port))
    got = [t.curl(node2.url("/echo")).json().get("backend") for _ in range(6)]
    t.check(sorted(got) == ["b1"] * 3 + ["b2"] * 3,
            "server NAME resolve: both addresses of the answer used in turn: %s" % got)

    peers_per_address(t, b1, dns)


def peers_per_address(t, b1, dns):
    """`server NAME resolve`: one peer per address (shoal only)."""
    b3 = t.backend("b3")
    dns.names["two.test"] = (["127.0.0.1", "127.0.0.2"], 300)
    dns.names["dead.test"] = (["127.0.0.3", "127.0.0.1"], 300)
    dns.names["going.test"] = (["127.0.0.1", "127.0.0.2"], 1)
    node = t.shoal("""
        events { }
        http {
            resolver 127.0.0.1:%d ipv6=off;
            upstream weighted {
                server two.test:%d resolve weight=2;
                server 127.0.0.1:%d weight=1;
            }
            upstream dead {
                server dead.test:%d resolve max_fails=1 fail_timeout=60s;
            }
            upstream going { server going.test:%d resolve; }
            server {
                listen 127.0.0.1:{port};
                add_header X-Up $upstream_addr always;
                location /w/ { proxy_pass http://weighted; }
                location /d/ { proxy_pass http://dead; }
                location /g/ { proxy_pass http://going; }
            }
        }""" % (dns.port, b1.port, b3.port, b1.port, b1.port))

    def get(path, n):
        out = []
        for _ in range(n):
            r = t.curl(node.url(path))
            out.append((r.json().get("backend") if r.status == 200 else r.status,
                        r.header("X-Up", "")))
        return out
    got = [b for b, _ in get("/w/echo", 10)]
    t.check(got.count("b1") == 4 and got.count("b2") == 4 and got.count("b3") == 2,
            "two addresses of a weight=2 server beside a weight=1 one: 4:4:2 (each address "
            "its own peer with the weight): %s" % got)

    got = get("/d/echo", 10)
    tries = [u for _, u in got]
    twice = [u for u in tries if "," in u]
    t.check([b for b, _ in got] == ["b1"] * 10 and len(twice) <= 1 and
            all(u == "127.0.0.1:%d" % b1.port for u in tries if "," not in u),
            "one address refusing: only it is marked failed (max_fails=1), the other serves "
            "alone without a failed try after the first: %s" % tries)

    got = [b for b, _ in get("/g/echo", 6)]
    t.check(sorted(got) == ["b1"] * 3 + ["b2"] * 3, "going.test: both addresses serve: %s" % got)
    dns.names["going.test"] = (["127.0.0.1"], 1)
    sh.wait_for(lambda: [b for b, _ in get("/g/echo", 4)] == ["b1"] * 4, 15 * t.slow,
                "127.0.0.2 left out once going.test's TTL is over")
    got = [b for b, _ in get("/g/echo", 10)]
    t.check(got == ["b1"] * 10,
            "an address removed from DNS gets no traffic after the TTL: %s" % got)
    t.check(node.proc.alive(), "shoal is up")


if __name__ == "__main__":
    sh.run(main)
