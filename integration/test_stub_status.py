#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""stub_status beside nginx 1.22 (one worker each), counters live:
with 3 idle keep-alive connections (waiting), 2 connections that sent half
a request head (reading) and the status request itself (writing), both
answer exactly "Active connections: 6", "Reading: 2 Writing: 1 Waiting: 3",
byte for byte the same shape; with nothing else open, "Active 1, Writing
1"; accepts/handled/requests grow by what was done; and over HTTP/2 (h2c)
the status stream is writing too."""
import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nginx_ref  # noqa: E402
import shoal_harness as sh  # noqa: E402

STUB = re.compile(r"^Active connections: (\d+) \nserver accepts handled requests\n"
                  r" (\d+) (\d+) (\d+) \nReading: (\d+) Writing: (\d+) Waiting: (\d+) \n$")
HTTP = """
    server {
        listen 127.0.0.1:{port}{h2};
        location = /status { stub_status; }
        location / { return 200 "ok\\n"; }
    }
"""


def status(t, port, *args):
    r = t.curl("http://127.0.0.1:%d/status" % port, *args)
    m = STUB.match(r.text())
    t.require(r.status == 200 and m is not None, "stub_status answers nginx's format on %d" % port,
              r)
    return [int(x) for x in m.groups()]


def idle_conn(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"ok\n" not in got:
        d = s.recv(4096)
        if not d:
            break
        got += d
    return s


def main(t):
    nginx_ref.skip_unless_available()
    sport, nport = t.port(), t.port()
    t.shoal("worker_processes 1;\nhttp {\n%s\n}\n" % HTTP.replace("{h2}", " http2"),
            port=sport)
    nginx_ref.start(t, HTTP.replace("{h2}", ""), port=nport)
    for port, who in ((sport, "shoal"), (nport, "nginx")):
        a = status(t, port)
        t.check(a[0] == 1 and a[4:] == [0, 1, 0],
                "%s alone: Active 1, Reading 0 Writing 1 Waiting 0: %s" % (who, a))
        conns = [idle_conn(port) for _ in range(3)]
        halves = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHo")
            halves.append(s)

        def counted():
            v = status(t, port)
            return v if v[0] == 6 and v[4:] == [2, 1, 3] else None
        v = sh.wait_for(counted, 10, "%s to count 3 waiting, 2 reading" % who)
        t.check(v is not None, "%s: Active 6, Reading 2 Writing 1 Waiting 3" % who)
        b = status(t, port)
        c = status(t, port)
        t.check(b[1] == b[2] and c[1] - b[1] == 1 and c[3] - b[3] == 1,
                "%s: accepts = handled; one more connection and request per status: %s -> %s"
                % (who, b, c))
        t.check(b[3] - b[1] == a[3] - a[1],
                "%s: requests grew as accepts, the half-read heads counted (as nginx): %s -> %s"
                % (who, a, b))
        for s in conns + halves:
            s.close()
        sh.wait_for(lambda: status(t, port)[0] == 1, 10, "%s back to one connection" % who)
    v = None
    r = t.curl("http://127.0.0.1:%d/status" % sport, "--http2-prior-knowledge")
    m = STUB.match(r.text())
    t.check(r.info.get("http_version") == "2" and m is not None and
            [int(x) for x in m.groups()][4:] == [0, 1, 0],
            "over HTTP/2 the status stream is writing: %r" % r.text())


if __name__ == "__main__":
    sh.run(main)
