#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 2: upstream connections are pooled and reused; clients keep alive.

N requests through the node, each on its own client connection (GETs and
POSTs with bodies mixed): the backend's /stats must show fewer connections
than requests (with a pool of 16 and one request at a time, ideally one).
Then a burst of concurrent slow requests (each needs its own upstream
connection), followed by sequential requests that must reuse what the burst
left in the pool. On the client side, curl's num_connects shows reuse of the
client connection. Pool hygiene: after a client abandons a 50 MiB download
half way, after a HEAD (a Content-Length but no body), and after 204 and 304
responses, the next requests get their own, correct answers (no leftover
bytes of an earlier response on a reused connection), promptly."""

import os
import socket
import struct
import subprocess
import time

import shoal_harness as sh

N = 30


def main(t):
    b1 = t.backend("b1")
    node = t.proxy_shoal(b1, 16)

    body = os.path.join(t.tmp, "body")
    with open(body, "wb") as f:
        f.write(os.urandom(100000))

    s0 = b1.stats()
    ok = 0
    for i in range(N):
        if i % 3 == 2:
            r = t.curl(node.url("/echo?i=%d" % i), data_file=body)
        elif i % 3 == 1:
            r = t.curl(node.url("/stream?bytes=200000&chunked=1"))
        else:
            r = t.curl(node.url("/?i=%d" % i))
        ok += r.status == 200
    t.check(ok == N, "%d sequential requests on separate client connections all 200 (%d ok)" % (N, ok))
    s1 = b1.stats()
    conns = s1["connections"] - s0["connections"]
    reqs = s1["requests"] - s0["requests"]
    t.log("backend saw %d requests on %d connections" % (reqs, conns))
    t.check(reqs == N, "backend served %d requests (got %d)" % (N, reqs))
    t.check(conns < reqs, "backend saw fewer connections (%d) than requests (%d)" % (conns, reqs))
    t.check(conns <= 2, "one at a time, the pool needs at most 2 upstream connections (used %d)" % conns)

    # The Connection header the backend sees must not ask it to close.
    r = t.curl(node.url("/echo"))
    hdrs = sh.json_headers(r.json()) if r.status == 200 else {}
    conn_hdr = [v.lower() for v in hdrs.get("connection", [])]
    t.check("close" not in conn_hdr, "upstream request does not carry Connection: close", hdrs)

    # A burst of 8 concurrent slow requests needs 8 upstream connections...
    s0 = b1.stats()
    procs = [subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
                               node.url("/slow?ms=400")], stdout=subprocess.PIPE) for _ in range(8)]
    codes = [p.communicate()[0].decode() for p in procs]
    t.check(codes == ["200"] * 8, "8 concurrent slow requests all 200", codes)
    # the backend counts a request once its handler returns, which can be
    # just after the client has the response: wait for it to settle
    sh.wait_for(lambda: b1.stats()["in_flight"] == 0, 10, "backend idle after the burst")
    s1 = b1.stats()
    burst_conns = s1["connections"] - s0["connections"]
    t.log("the burst opened %d upstream connections" % burst_conns)
    # ...and then sequential requests reuse the pool: no new connection at all.
    for i in range(10):
        t.curl(node.url("/"))
    s2 = b1.stats()
    t.check(s2["connections"] == s1["connections"] and s2["requests"] - s1["requests"] == 10,
            "10 sequential requests after the burst reuse pooled connections (new: %d)"
            % (s2["connections"] - s1["connections"]))

    # Pool hygiene after bodiless responses.
    for first, args in (("HEAD /stream?bytes=1000", ("-I",)), ("204", ()), ("304", ())):
        if first.startswith("HEAD"):
            r0 = t.curl(node.url("/stream?bytes=1000"), "-I", timeout=10)
        else:
            r0 = t.curl(node.url("/status/%s" % first), timeout=10)
        r = t.curl(node.url("/echo?after-%s" % first.split()[0]), timeout=10)
        t.check(r0.status in (200, 204, 304) and r.status == 200
                and r.json()["query"] == "after-%s" % first.split()[0] and r.elapsed < 3 * t.slow,
                "after a %s response, the next request gets its own answer in %.3f s" % (first, r.elapsed), (r0, r))

    # Client keep-alive: five requests on one curl connection.
    urls = [node.url("/?k=%d" % i) for i in range(5)]
    r = t.curl(*urls)
    t.check(r.rc == 0 and r.text().count("hello from b1") == 5 and r.info.get("num_connects") == "0",
            "5 requests on one client connection (last one num_connects=0)", r)

    # HTTP/1.0 client without keep-alive: answered, then closed by the node.
    with sh.RawConn(node.port) as c:
        c.send("GET / HTTP/1.0\r\n\r\n")
        resp = c.read_response()
        closed = c.closed_by_peer(timeout=5)
    t.check(resp.status == 200 and resp.body == b"hello from b1\n", "HTTP/1.0 request answered", resp)
    t.check(closed, "and the node closes that connection after the response")

    # Connection: close from an HTTP/1.1 client is honoured.
    with sh.RawConn(node.port) as c:
        c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        resp = c.read_response()
        closed = c.closed_by_peer(timeout=5)
    t.check(resp.status == 200 and closed, "Connection: close is answered, then the node closes", resp)

    # Pool hygiene (last: a node that mishandles it may not survive). Five
    # clients abandon a 50 MiB download after a varying amount, two by
    # reset (RST), three by a plain close.
    for k in range(5):
        want = 100000 * (k + 1)
        with sh.RawConn(node.port) as c:
            c.send("GET /stream?bytes=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (50 << 20))
            got = 0
            while got < want and c._fill(time.monotonic() + 10):
                got = len(c.buf)
            if k < 2:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.check(got >= want, "client %d read %d bytes of a 50 MiB download, then hung up%s"
                % (k, got, " (RST)" if k < 2 else ""))
        r = t.curl(node.url("/alive-%d" % k), timeout=10)
        t.check(r.status == 404 and r.header("X-Backend") == "b1", "node answers after client %d hung up" % k, r)
    for i in range(5):
        r = t.curl(node.url("/echo?after-abort-%d" % i), timeout=10)
        t.check(r.status == 200 and r.json()["query"] == "after-abort-%d" % i,
                "request %d after the abandoned download gets its own answer" % i, r)

    # A client that abandons an upload half way.
    with sh.RawConn(node.port) as c:
        c.send("POST /echo?abandoned HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (50 << 20))
        for piece in sh.pattern_pieces(1 << 20):
            c.send(piece)
    for i in range(3):
        r = t.curl(node.url("/echo?after-upload-abort-%d" % i), timeout=10)
        t.check(r.status == 200 and r.json()["query"] == "after-upload-abort-%d" % i,
                "request %d after the abandoned upload gets its own answer" % i, r)


if __name__ == "__main__":
    sh.run(main)
