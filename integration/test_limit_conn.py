#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""limit_conn beside nginx 1.22 (same configuration, same recording
backend): with `limit_conn lc 100`, 100 requests held by a slow upstream
pass and the 101st concurrent one gets 503 with $limit_conn_status
REJECTED, over HTTP/1.1 connections and over HTTP/2 streams of one
connection (h2load: each stream counts, as nginx counts them); an idle
keep-alive connection holds nothing (a new request passes while the 100
connections stay open); dry run passes with REJECTED_DRY_RUN; a
limit_conn_status of 429."""
import http.client
import re
import subprocess
import threading

import nginx_ref
import shoal_harness as sh

HTTP = """
    limit_conn_zone $http_x_key zone=lc:1m;
    limit_conn_zone $http_x_key zone=ld:1m;
    server {
        listen 127.0.0.1:{port};
        listen 127.0.0.1:H2PORT http2;
        add_header X-LC "$limit_conn_status" always;
        location /slow { limit_conn lc 100; proxy_pass http://127.0.0.1:BPORT; }
        location /dry { limit_conn ld 1; limit_conn_dry_run on; proxy_pass http://127.0.0.1:BPORT/slow; }
        location /st { limit_conn ld 1; limit_conn_status 429; proxy_pass http://127.0.0.1:BPORT/slow; }
    }
"""


def one(port, path, key, out, i, conns):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conns.append(c)
    c.request("GET", path, headers={"X-Key": key})
    r = c.getresponse()
    r.read()
    out[i] = (r.status, r.getheader("X-LC", ""))


def hundred_and_one(t, b, port, key):
    """100 held requests, then the 101st; returns (the 101st, the 100, a
    request made after they ended with their connections still open)."""
    base = b.stats().get("in_flight", 0)
    out, conns = [None] * 100, []
    th = [threading.Thread(target=one, args=(port, "/slow?ms=2500", key, out, i, conns))
          for i in range(100)]
    for x in th:
        x.start()
    sh.wait_for(lambda: b.stats().get("in_flight", 0) >= base + 100, 20,
                "100 requests held at the backend")
    last = [None]
    one(port, "/slow?ms=0", key, last, 0, [])
    for x in th:
        x.join(30)
    after = [None]
    one(port, "/slow?ms=0", key, after, 0, [])
    for c in conns:
        c.close()
    return last[0], out, after[0]


def h2load(port, key):
    r = subprocess.run(["h2load", "-n", "101", "-c", "1", "-m", "101", "-H", "X-Key: " + key,
                        "http://127.0.0.1:%d/slow?ms=1500" % port],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", r.stdout)
    return (int(m.group(1)), int(m.group(4))) if m else r.stdout + r.stderr


def main(t):
    nginx_ref.skip_unless_available()
    b = t.backend("rec")
    sh2, nh2 = t.port(), t.port()
    body = HTTP.replace("BPORT", str(b.port))
    node = t.shoal("events { }\nhttp {\n" + body.replace("H2PORT", str(sh2)) + "\n}\n")
    _, nport, _ = nginx_ref.start(t, body.replace("H2PORT", str(nh2)))

    for name, port in (("nginx", nport), ("shoal", node.port)):
        last, held, after = hundred_and_one(t, b, port, name + "-k")
        t.check(last == (503, "REJECTED"), "%s: the 101st concurrent request is 503 REJECTED" % name,
                last)
        t.check(all(x == (200, "PASSED") for x in held), "%s: the 100 held requests pass" % name,
                [x for x in held if x != (200, "PASSED")][:5])
        t.check(after == (200, "PASSED"),
                "%s: with the 100 connections idle (keep-alive) a new request passes" % name, after)

    for name, port in (("nginx", nh2), ("shoal", sh2)):
        got = h2load(port, name + "-h2")
        t.check(got == (100, 1), "%s: 101 HTTP/2 streams on one connection: 100 pass, 1 is 503"
                % name, got)

    # dry run and limit_conn_status, two at once against a limit of 1
    # The first is held at the backend (800 ms, longer under sanitizers) while
    # the second is sent; "held" is judged by the backend having received it
    # (`received` only grows: an in_flight baseline could still be falling
    # from the requests before).
    ms = int(800 * t.slow)
    for name, port in (("nginx", nport), ("shoal", node.port)):
        for path, want in (("/dry?ms=%d" % ms, [(200, "PASSED"), (200, "REJECTED_DRY_RUN")]),
                           ("/st?ms=%d" % ms, [(200, "PASSED"), (429, "REJECTED")])):
            out, conns = [None, None], []
            first = threading.Thread(target=one, args=(port, path, name + path, out, 0, conns))
            base = b.stats().get("received", 0)
            first.start()
            sh.wait_for(lambda: b.stats().get("received", 0) > base, 10 * t.slow,
                        "the first one held")
            one(port, path, name + path, out, 1, conns)
            first.join(30)
            for c in conns:
                c.close()
            t.check(out == want, "%s %s: %r" % (name, path.split("?")[0], want), out)


sh.run(main)
