#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 15, defect 3: when worker_connections is full, idle connections are
closed to make room, oldest first (nginx's ngx_drain_connections), and new
clients are served; a connection with a request in progress never is.

One worker, worker_connections 12, keepalive_timeout 60s:
- 12 idle HTTP/1.1 keep-alive connections (one request each): a new client
  gets 200 at once (old code: reset until keepalive_timeout), and the
  connection closed for it is the oldest one;
- 12 idle h2c connections (preface and SETTINGS, no stream): likewise;
- 12 silent connections (connected, nothing sent): likewise;
- 12 requests in progress (a backend that answers after 2 s): the new client
  is refused (nothing to reclaim), and every one of the 12 gets its 200.
"""

import socket
import threading
import time

import shoal_harness as sh
from adversarial import PREFACE, h2frame

WC = 12


def is_closed(s):
    s.setblocking(False)
    try:
        got = s.recv(65536)
        closed = got == b""
    except BlockingIOError:
        closed = False
    except OSError:
        closed = True
    s.setblocking(True)
    return closed


def fill_and_probe(t, node, what, opener):
    """Open WC connections with opener (oldest first), then a new client."""
    conns = []
    for _ in range(WC):
        conns.append(opener())
        time.sleep(0.01)  # distinct accept order, oldest first
    r = t.curl(node.url("/"), timeout=10)
    t.check(r.status == 200, f"{what}: table full of {WC} idle connections, a new client gets 200",
            r)
    closed = [i for i, s in enumerate(conns) if is_closed(s)]
    t.check(closed[:1] == [0], f"{what}: the connection closed to make room is the oldest", closed)
    for s in conns:
        s.close()
    sh.wait_for(lambda: t.curl(node.url("/")).status == 200, 10, "room again")


def main(t):
    be = t.backend("b")
    p_h2c = sh.free_port()
    node = t.shoal(f"""
        worker_processes 1;
        events {{ worker_connections {WC}; }}
        http {{
            keepalive_timeout 60s;
            client_header_timeout 60s;
            upstream be {{ server 127.0.0.1:{be.port}; }}
            server {{
                listen 127.0.0.1:{{port}};
                listen 127.0.0.1:{p_h2c} http2;
                location / {{ proxy_pass http://be; }}
            }}
        }}""")

    def h1_idle():
        s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sh.read_head(s)
        assert head.startswith(b"HTTP/1.1 200"), head
        return s

    def h2_idle():
        s = socket.create_connection(("127.0.0.1", p_h2c), timeout=10)
        s.sendall(PREFACE + h2frame(4, 0, 0))
        got = s.recv(65536)  # the server's SETTINGS
        assert got, "h2c SETTINGS"
        return s

    def silent():
        return socket.create_connection(("127.0.0.1", node.port), timeout=10)

    fill_and_probe(t, node, "HTTP/1.1 keep-alive", h1_idle)
    fill_and_probe(t, node, "h2c without streams", h2_idle)
    fill_and_probe(t, node, "silent connections", silent)

    # Requests in progress are never closed to make room.
    results = []

    def slow():
        s = socket.create_connection(("127.0.0.1", node.port), timeout=15)
        s.sendall(b"GET /slow?ms=2500 HTTP/1.1\r\nHost: x\r\n\r\n")
        results.append(sh.read_head(s))
        s.close()

    threads = [threading.Thread(target=slow) for _ in range(WC)]
    for th in threads:
        th.start()
    sh.wait_for(lambda: be.stats().get("in_flight", 0) >= WC, 10, f"{WC} requests in flight")
    r = t.curl(node.url("/"), timeout=5)
    t.check(r.status != 200, "busy table (every connection mid-request): the new client is refused",
            r)
    for th in threads:
        th.join(15)
    t.check(len(results) == WC and all(h.startswith(b"HTTP/1.1 200") for h in results),
            f"the {WC} requests in progress all completed with 200", [h[:20] for h in results])
    r = t.curl(node.url("/"))
    t.check(r.status == 200, "served again afterwards", r)


if __name__ == "__main__":
    sh.run(main)
