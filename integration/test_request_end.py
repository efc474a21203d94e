#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""One request end: the access log gets exactly one line for every request
that produced a request line, whatever ended it, over HTTP/1.1 and HTTP/2,
with nginx's statuses: answered (200), refused by the parser (400; 431 for
an HTTP/2 header list over the limit), the client gone before the response
(499; on HTTP/2 by RST_STREAM and by closing the connection), the client
gone mid-body and the upstream aborting mid-body (the status that was sent,
200, with the bytes that were), the upstream timing out (504) and the
client's body timing out (408)."""
import os
import socket
import time

import h2raw
import shoal_harness as sh


def lines(path):
    return sh.file_lines(path) if os.path.exists(path) else []


def main(t):
    b = t.backend("b1")
    h2p = t.port()
    node = t.shoal(f"""
        events {{ }}
        http {{
            map $uri $m {{ default dflt; /ok OK; }}
            log_format end '$request_method $uri $status $body_bytes_sent $server_protocol $m';
            access_log logs/end.log end;
            large_client_header_buffers 4 2k;
            client_body_timeout 1s;
            server {{
                listen 127.0.0.1:{{port}};
                listen 127.0.0.1:{h2p} http2;
                location / {{ proxy_pass http://127.0.0.1:{b.port}; proxy_read_timeout 5s; }}
                location /t/ {{ proxy_pass http://127.0.0.1:{b.port}/; proxy_read_timeout 300ms; }}
                location = /ok {{ return 200 "ok\\n"; }}
            }}
        }}""")
    log = os.path.join(node.prefix, "logs", "end.log")
    seen = [0]

    def expect(what, pred, timeout=10):
        """The next new log lines include one matching pred(fields)."""
        got = []

        def cond():
            new = lines(log)[seen[0]:]
            got[:] = new
            return any(pred(l.split(" ")) for l in new)
        ok = True
        try:
            sh.wait_for(cond, timeout, what)
        except sh.HarnessError:
            ok = False
        seen[0] += len(got)
        t.check(ok, what + " (new lines: %s)" % got)

    def in_flight(n=1):
        sh.wait_for(lambda: b.stats()["in_flight"] >= n, 10, "the backend to hold the request")

    # answered
    t.curl(node.url("/ok"))
    expect("h1 answered: 200", lambda f: f[1] == "/ok" and f[2] == "200" and f[4] == "HTTP/1.1")
    t.curl("http://127.0.0.1:%d/ok" % h2p, "--http2-prior-knowledge")
    expect("h2 answered: 200", lambda f: f[1] == "/ok" and f[2] == "200" and f[4] == "HTTP/2.0")

    # refused by the parser
    r = sh.raw_exchange(node.port, b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
    expect("h1 parser refusal: 400 logged", lambda f: f[2] == "400")
    c = h2raw.Conn(h2p)
    c.send(h2raw.frame(h2raw.HEADERS, h2raw.END_HEADERS | h2raw.END_STREAM, 1,
                       h2raw.request_block(path=b"/big", extra=[(b"x-big", b"a" * 9000)])))
    c.frames_until(lambda fs: any(f[2] == 1 for f in fs))
    c.close()
    expect("h2 header list over the limit: 431 logged", lambda f: f[2] == "431")

    # a map value is the request's own: a request the parser refuses on a keep-alive
    # connection does not log the previous request's (the old thread-local cache did)
    sh.raw_exchange(node.port, b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", responses=2)
    expect("keep-alive: the refused request logs its own map value, not the previous one",
           lambda f: f[2] == "400" and f[5] == "dflt")

    # the client gone before the response: 499
    s = socket.create_connection(("127.0.0.1", node.port))
    s.sendall(b"GET /slow?ms=3000 HTTP/1.1\r\nHost: a\r\n\r\n")
    in_flight()
    s.close()
    expect("h1 client closed before the response: 499", lambda f: f[1] == "/slow" and f[2] == "499")
    sh.wait_for(lambda: b.stats()["in_flight"] == 0, 10, "the backend to finish")

    c = h2raw.Conn(h2p)
    c.send(h2raw.frame(h2raw.HEADERS, h2raw.END_HEADERS | h2raw.END_STREAM, 1,
                       h2raw.request_block(path=b"/slow?ms=3000")))
    in_flight()
    c.send(h2raw.frame(h2raw.RST_STREAM, 0, 1, (h2raw.CANCEL).to_bytes(4, "big")))
    expect("h2 stream reset by the client (RST_STREAM CANCEL): 499",
           lambda f: f[1] == "/slow" and f[2] == "499" and f[4] == "HTTP/2.0")
    c.send(h2raw.frame(h2raw.HEADERS, h2raw.END_HEADERS | h2raw.END_STREAM, 3,
                       h2raw.request_block(path=b"/slow?ms=3000")))
    sh.wait_for(lambda: b.stats()["in_flight"] >= 1, 10, "the second stream at the backend")
    c.close()
    expect("h2 connection closed by the client: 499", lambda f: f[1] == "/slow" and f[2] == "499")
    sh.wait_for(lambda: b.stats()["in_flight"] == 0, 10, "the backend to finish")

    # the client gone mid-body: the status sent, and the bytes sent
    total = 64 * 1024 * 1024
    s = socket.create_connection(("127.0.0.1", node.port))
    s.sendall(b"GET /stream?bytes=%d HTTP/1.1\r\nHost: a\r\n\r\n" % total)
    got = 0
    while got < 256 * 1024:
        d = s.recv(65536)
        if not d:
            break
        got += len(d)
    s.close()
    expect("h1 client gone mid-body: 200 with fewer bytes than the body",
           lambda f: f[1] == "/stream" and f[2] == "200" and 0 < int(f[3]) < total, timeout=15)

    # the upstream aborted mid-body
    t.curl(node.url("/stream?bytes=1000000&abort_after=100000"))
    expect("h1 upstream aborted mid-body: 200 with the bytes sent",
           lambda f: f[1] == "/stream" and f[2] == "200" and int(f[3]) < 1000000)
    t.curl("http://127.0.0.1:%d/stream?bytes=1000000&abort_after=100000" % h2p,
           "--http2-prior-knowledge")
    expect("h2 upstream aborted mid-body: 200 with the bytes sent",
           lambda f: f[1] == "/stream" and f[2] == "200" and int(f[3]) < 1000000 and
           f[4] == "HTTP/2.0")

    # timed out
    t.curl(node.url("/t/slow?ms=2000"))
    expect("h1 upstream timed out: 504", lambda f: f[1] == "/t/slow" and f[2] == "504")
    t.curl("http://127.0.0.1:%d/t/slow?ms=2000" % h2p, "--http2-prior-knowledge")
    expect("h2 upstream timed out: 504", lambda f: f[1] == "/t/slow" and f[2] == "504")
    sh.wait_for(lambda: b.stats()["in_flight"] == 0, 10, "the backend to finish")
    s = socket.create_connection(("127.0.0.1", node.port))
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
    s.settimeout(10)
    try:
        s.recv(100)  # the connection closes at client_body_timeout
    except OSError:
        pass
    s.close()
    expect("h1 client_body_timeout: 408", lambda f: f[1] == "/echo" and f[2] == "408")

    # every line is one request: nothing logged twice
    all_lines = lines(log)
    t.check(len(all_lines) == seen[0], "no other lines (%d logged, %d expected)"
            % (len(all_lines), seen[0]), all_lines)


sh.run(main)
