#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Response trailers from a chunked upstream response are passed on: after the
last chunk to an HTTP/1.1 client (RFC 9112 7.1.2), and as a trailing HEADERS
frame to an HTTP/2 client (nghttp -nv shows them); the body arrives whole, and
an upstream without trailers still ends with a bare last chunk. The upstream
is a tiny raw server in this test so the exact bytes are known."""
import shutil
import socket
import subprocess
import threading

import shoal_harness as sh

BODY = b"hello, trailers"


def serve(sock):
    while True:
        try:
            c, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def handle(c):
    f = c.makefile("rb")
    try:
        while True:
            line = f.readline()
            if not line:
                return
            path = line.split()[1]
            while f.readline() not in (b"\r\n", b"\n", b""):
                pass
            out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
            out += b"%x\r\n%s\r\n" % (len(BODY[:5]), BODY[:5])
            out += b"%x\r\n%s\r\n" % (len(BODY[5:]), BODY[5:])
            if path == b"/with":
                out += b"0\r\nX-Checksum: abc123\r\nX-Count:  2 \r\n\r\n"
            else:
                out += b"0\r\n\r\n"
            c.sendall(out)
    except OSError:
        pass
    finally:
        c.close()


def fetch(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    return data


def main(t):
    port = sh.free_port()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    threading.Thread(target=serve, args=(ls,), daemon=True).start()
    node = t.shoal(f"""
        events {{ }}
        http {{
            upstream up {{ server 127.0.0.1:{port}; keepalive 4; }}
            server {{
                listen 127.0.0.1:{{port}} http2;
                location / {{ proxy_pass http://up; }}
            }}
        }}""")

    # HTTP/1.1: the exact chunked tail
    data = fetch(node.port, b"/with")
    head, _, body = data.partition(b"\r\n\r\n")
    t.check(head.startswith(b"HTTP/1.1 200"), "HTTP/1.1: 200", head)
    t.check(b"transfer-encoding: chunked" in head.lower(), "HTTP/1.1: chunked to the client", head)
    t.check(body.endswith(b"0\r\nX-Checksum: abc123\r\nX-Count: 2\r\n\r\n"),
            "HTTP/1.1: the trailer fields follow the last chunk", body[-80:])
    chunks, rest = b"", body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        n = int(size_line.split(b";")[0], 16)
        if n == 0:
            break
        chunks += rest[:n]
        rest = rest[n + 2:]
    t.check(chunks == BODY, "HTTP/1.1: the body arrives whole", chunks)

    data = fetch(node.port, b"/without")
    t.check(data.endswith(b"\r\n0\r\n\r\n"), "no trailers upstream: a bare last chunk", data[-40:])

    # HTTP/2 (h2c prior knowledge): a trailing HEADERS frame
    if shutil.which("nghttp") is None:
        t.log("SKIP h2 part: nghttp not installed")
        return
    out = subprocess.run(["nghttp", "-nv", node.url("/with")], capture_output=True, timeout=20)
    text = out.stdout.decode(errors="replace")
    t.check(out.returncode == 0, "nghttp -nv over h2c succeeds", out.stderr[-300:])
    t.check("x-checksum: abc123" in text and "x-count: 2" in text,
            "HTTP/2: trailers in a trailing HEADERS frame", text[-800:])
    t.check(text.count("recv HEADERS frame") >= 2, "HTTP/2: two HEADERS frames (response, trailers)",
            text[-800:])


sh.run(main)
