#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: client-side limits and HTTP/1.1 connection handling, as nginx.

- client_max_body_size 1k: a 2000-byte body with Content-Length gets 413
  (nginx answers from the head, before reading the body) and so does a
  chunked body that grows past the limit; the backend sees nothing of
  either (nginx buffers request bodies by default, so the upstream is
  never contacted) and the connection is closed after the 413.
- large_client_header_buffers 2 1k: a request line longer than a buffer
  gets 414; one header field longer than a buffer gets a 4xx (nginx: 400
  "Request Header Or Cookie Too Large"; Shoal: 431), the connection closes
  and the backend sees nothing.
- Expect: 100-continue: curl with a 2 MB body and the header gets
  "100 Continue" then 200 at once, not after curl's wait (raised to 10 s
  here so that a missing 100 cannot hide in the timing).
- HEAD through the proxy: no body, the upstream's Content-Length kept,
  and the connection stays usable (a stray body would corrupt the next
  response).
- Hop-by-hop request headers (Connection and the names it lists,
  Keep-Alive, TE, Proxy-Connection) do not reach the backend (/echo)
  while end-to-end ones do. (nginx itself drops Connection, Keep-Alive
  and TE; RFC 9110 7.6.1 also requires dropping the Connection-listed
  names, which Shoal does.)
- keepalive_requests 3: seven URLs on one curl command line need three
  connections (curl's %{num_connects}), and the third response on a
  connection says "Connection: close".
- keepalive_timeout 1s: an idle keep-alive connection is closed by the
  node within a deadline (not before ~1 s).
- client_header_timeout 1s: a connection that sent half a head is closed
  within a deadline (nginx closes without a response; a 408 is accepted
  too), and the backend sees nothing."""

import os
import re
import subprocess
import time

import shoal_harness as sh

H = "Host: t\r\n"


def main(t):
    b1 = t.backend("b1")
    node = t.shoal(f"""
        events {{ }}
        http {{
            upstream be {{ server 127.0.0.1:{b1.port}; keepalive 8; }}
            server {{
                listen 127.0.0.1:{{port}};
                client_max_body_size 1k;
                large_client_header_buffers 2 1k;
                client_header_timeout 1s;
                keepalive_timeout 1s;
                location / {{ proxy_pass http://be; }}
                location /big/ {{ client_max_body_size 10m; proxy_pass http://be/; }}
                location /kr/ {{ keepalive_requests 3; keepalive_timeout 30s; proxy_pass http://be/; }}
            }}
        }}""")

    r = t.curl(node.url("/warm"))
    t.require(r.status == 404 and r.header("X-Backend") == "b1", "node proxies to b1 (warm-up)", r)

    def received():
        return b1.stats()["received"]

    # -- client_max_body_size --------------------------------------------------
    body = os.path.join(t.tmp, "body2000")
    with open(body, "wb") as f:
        f.write(b"x" * 2000)
    def too_big_raw(name, data):
        try:
            with sh.RawConn(node.port, timeout=5) as c:
                c.send(data)
                resp = c.read_response()
                closed = c.closed_by_peer(timeout=5)
            t.check(resp.status == 413 and closed,
                    "raw POST with a too large %s body: 413 and the connection closes (got %s, closed=%s)"
                    % (name, resp.status, closed), resp)
        except (sh.HarnessError, OSError) as e:
            t.check(False, "raw POST with a too large %s body: 413 (got no response: %s)" % (name, e))

    n0 = received()
    r = t.curl(node.url("/echo"), data_file=body)
    t.check(r.status == 413, "curl POST /echo, 2000 bytes with Content-Length over client_max_body_size 1k: 413 "
            "(got %s)" % r.status, r)
    too_big_raw("Content-Length", "POST /echo HTTP/1.1\r\n" + H + "Content-Length: 2000\r\n\r\n" + "y" * 2000)
    n1 = received()
    t.check(n1 == n0, "the backend saw neither Content-Length request (received %d -> %d)" % (n0, n1), b1.stats())

    n0 = received()
    r = t.curl(node.url("/echo"), "-H", "Transfer-Encoding: chunked", data_file=body)
    t.check(r.status == 413, "curl POST /echo, 2000 bytes chunked over client_max_body_size 1k: 413 (got %s)"
            % r.status, r)
    too_big_raw("chunked", "POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
                "400\r\n" + "y" * 1024 + "\r\n400\r\n" + "y" * 1024 + "\r\n0\r\n\r\n")
    n1 = received()
    # nginx (proxy_request_buffering on, its default) reads the whole body
    # before choosing an upstream: the backend is never contacted.
    t.check(n1 == n0, "the backend saw neither too-large chunked request, as with nginx "
            "(received %d -> %d)" % (n0, n1), b1.stats())
    r = t.curl(node.url("/echo"), "--data-binary", "z" * 1000)
    t.check(r.status == 200 and r.json().get("body_len") == 1000,
            "a 1000-byte body under the limit is proxied (200, body_len 1000)", r)

    # -- large_client_header_buffers ---------------------------------------------
    n0 = received()
    try:
        with sh.RawConn(node.port, timeout=5) as c:
            c.send("GET /" + "a" * 1500 + " HTTP/1.1\r\n" + H + "\r\n")
            resp = c.read_response()
            closed = c.closed_by_peer(timeout=5)
        t.check(resp.status == 414 and closed,
                "request line of 1.5 KB over large_client_header_buffers 2 1k: 414 and close (got %s, closed=%s)"
                % (resp.status, closed), resp)
    except (sh.HarnessError, OSError) as e:
        t.check(False, "request line of 1.5 KB: 414 (got no response: %s)" % e)
    try:
        with sh.RawConn(node.port, timeout=5) as c:
            c.send("GET /hdr HTTP/1.1\r\n" + H + "X-Huge: " + "b" * 1500 + "\r\n\r\n")
            resp = c.read_response()
            closed = c.closed_by_peer(timeout=5)
        t.check(resp.status in (400, 431, 494) and closed,
                "one 1.5 KB header field over large_client_header_buffers 2 1k: 4xx (nginx 400, got %s) "
                "and close (closed=%s)" % (resp.status, closed), resp)
        t.log("huge header answered: %s %s" % (resp.status, resp.reason))
    except (sh.HarnessError, OSError) as e:
        t.check(False, "one 1.5 KB header: 4xx (got no response: %s)" % e)
    n1 = received()
    t.check(n1 == n0, "the backend saw neither oversized head (received %d -> %d)" % (n0, n1))
    r = t.curl(node.url("/echo"), "-H", "X-Fits: " + "c" * 900)
    t.check(r.status == 200, "a 900-byte header (fits one 1k buffer) is proxied", r)

    # -- Expect: 100-continue ------------------------------------------------------
    big = os.path.join(t.tmp, "body2m")
    with open(big, "wb") as f:
        for p in sh.pattern_pieces(2 * 1000 * 1000):
            f.write(p)
    hdr = os.path.join(t.tmp, "expect-hdr")
    t0 = time.monotonic()
    p = subprocess.run(["curl", "-sS", "--max-time", "30", "-D", hdr, "-o", "-", "-w", "\n%{http_code}",
                        "--expect100-timeout", "10", "-H", "Expect: 100-continue",
                        "--data-binary", "@" + big, node.url("/big/echo")],
                       capture_output=True, timeout=60)
    dt = time.monotonic() - t0
    with open(hdr, "rb") as f:
        dump = f.read().decode("latin-1")
    statuses = re.findall(r"^HTTP/\S+ (\d{3})", dump, re.M)
    out = p.stdout.decode("latin-1")
    echo_len = None
    m = re.search(r'"body_len": (\d+)', out)
    if m:
        echo_len = int(m.group(1))
    t.check(statuses == ["100", "200"] and echo_len == 2000000 and dt < 5.0,
            "2 MB POST with Expect: 100-continue: 100 then 200 in %.3f s (curl waits up to 10 s for the 100), "
            "backend got all 2000000 bytes (statuses %s, body_len %s)" % (dt, statuses, echo_len),
            dump + p.stderr.decode("latin-1"))
    ex = re.search(r'"Expect"', out, re.I)
    t.check(ex is None, "Expect is not passed to the backend (nginx drops it)", out[:2000])

    # -- HEAD ----------------------------------------------------------------------------
    try:
        with sh.RawConn(node.port, timeout=5) as c:
            c.send("HEAD /stream?bytes=1000 HTTP/1.1\r\n" + H + "\r\n")
            resp = c.read_response(head_request=True)
            t.check(resp.status == 200 and resp.header("Content-Length") == "1000",
                    "HEAD /stream?bytes=1000 through the proxy: 200 with Content-Length: 1000 kept", resp)
            c.send("GET /stream?bytes=10 HTTP/1.1\r\n" + H + "\r\n")
            resp2 = c.read_response()
            t.check(resp2.status == 200 and resp2.body == b"".join(sh.pattern_pieces(10)) and c.buf == b"",
                    "HEAD had no body: the next response on the connection is intact", resp2)
    except (sh.HarnessError, OSError) as e:
        t.check(False, "HEAD through the proxy: %s" % e)
    r = t.curl(node.url("/"), "-I")
    t.check(r.status == 200 and r.header("Content-Length") == str(len("hello from b1\n"))
            and r.body.endswith(b"\r\n\r\n") and b"hello" not in r.body,
            "curl -I /: 200, Content-Length %d, no body after the head" % len("hello from b1\n"), r)

    # -- hop-by-hop ---------------------------------------------------------------------
    r = t.curl(node.url("/echo"), "-H", "Connection: keep-alive, X-Hop", "-H", "X-Hop: secret",
               "-H", "Keep-Alive: timeout=5", "-H", "TE: trailers", "-H", "Proxy-Connection: keep-alive",
               "-H", "X-End: kept")
    if r.status == 200:
        hs = sh.json_headers(r.json())
        for name in ("x-hop", "keep-alive", "te", "proxy-connection"):
            t.check(name not in hs, "hop-by-hop %s not passed to the backend" % name, hs)
        conn = hs.get("connection", [])
        t.check(all("x-hop" not in v.lower() for v in conn),
                "the client's Connection value is not passed on (backend saw %r)" % conn)
        t.check(hs.get("x-end") == ["kept"], "end-to-end X-End passed to the backend", hs)
    else:
        t.check(False, "GET /echo with hop-by-hop headers: 200", r)

    # -- keepalive_requests ----------------------------------------------------------
    urls = [node.url("/kr/?n=%d" % i) for i in range(7)]
    p = subprocess.run(["curl", "-sS", "--max-time", "30", "-D", "-", "-w", "%{stderr}@@ %{http_code} %{num_connects}\n"]
                       + ["-o", "/dev/null"] * len(urls) + urls, capture_output=True, timeout=60)
    out = p.stdout.decode("latin-1")
    per = [(int(a), int(b)) for a, b in re.findall(r"@@ (\d{3}) (\d+)", p.stderr.decode("latin-1"))]
    codes = [a for a, _ in per]
    connects = sum(b for _, b in per)
    t.check(len(per) == 7 and all(c == 200 for c in codes) and connects == 3,
            "keepalive_requests 3: seven requests on one curl need 3 connections (got %d, statuses %s, "
            "per-request connects %s)" % (connects, codes, [b for _, b in per]), out)
    blocks = [b for b in re.split(r"\r?\n\r?\n", out) if b.startswith("HTTP/")]
    closes = [i for i, b in enumerate(blocks) if re.search(r"^connection:\s*close", b, re.I | re.M)]
    t.check(closes[:2] == [2, 5], "responses 3 and 6 say Connection: close (the 3rd on each connection; got %s)"
            % closes, out[:3000])

    # -- keepalive_timeout ----------------------------------------------------------------
    try:
        with sh.RawConn(node.port, timeout=10) as c:
            c.send("GET / HTTP/1.1\r\n" + H + "\r\n")
            resp = c.read_response()
            t0 = time.monotonic()
            closed = c.closed_by_peer(timeout=6)
            dt = time.monotonic() - t0
        t.check(resp.status == 200 and closed and 0.8 <= dt < 4.0,
                "keepalive_timeout 1s: idle connection closed by the node after %.2f s (closed=%s)" % (dt, closed),
                resp)
    except (sh.HarnessError, OSError) as e:
        t.check(False, "keepalive_timeout: %s" % e)

    # -- client_header_timeout ----------------------------------------------------------
    n0 = received()
    try:
        with sh.RawConn(node.port, timeout=10) as c:
            c.send("GET /half HTTP/1.1\r\n" + H + "X-Partial: yes\r\n")
            t0 = time.monotonic()
            closed = c.closed_by_peer(timeout=6)
            dt = time.monotonic() - t0
            got = c.buf
        ok_bytes = got == b"" or got.startswith(b"HTTP/1.1 408")
        t.check(closed and 0.8 <= dt < 4.0 and ok_bytes,
                "client_header_timeout 1s: half a head, closed after %.2f s (closed=%s) with %r"
                % (dt, closed, got[:60]))
    except (sh.HarnessError, OSError) as e:
        t.check(False, "client_header_timeout: %s" % e)
    n1 = received()
    t.check(n1 == n0, "the half head never reached the backend (received %d -> %d)" % (n0, n1))

    r = t.curl(node.url("/"))
    t.check(node.proc.alive() and r.status == 200, "node still up and serving", r)


if __name__ == "__main__":
    sh.run(main)
