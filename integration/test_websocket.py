#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""WebSocket through the proxy: the Upgrade handshake reaches the backend with
the seed's `proxy_set_header Upgrade/Connection` pattern, 101 turns the
connection into a two-way tunnel, frames echo both ways (a large one too, so
backpressure is crossed), a plain request on the same location keeps upstream
keep-alive (the map-free form: Connection "" when not upgrading), and the
tunnel closes on both sides when the backend closes.

The echo server is a minimal RFC 6455 server in a thread of this test."""
import base64
import hashlib
import os
import socket
import struct
import threading

import shoal_harness as sh

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("closed")
        buf += chunk
    return buf


def read_frame(s):
    b0, b1 = recv_exact(s, 2)
    op = b0 & 0x0F
    masked = b1 & 0x80
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", recv_exact(s, 8))[0]
    mask = recv_exact(s, 4) if masked else None
    data = bytearray(recv_exact(s, n))
    if mask:
        for i in range(n):
            data[i] ^= mask[i % 4]
    return op, bytes(data)


def make_frame(op, data, mask):
    head = bytes([0x80 | op])
    n = len(data)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + data
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return head + key + body


class EchoServer:
    def __init__(self):
        self.port = sh.free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.upgrades = 0
        self.plain = 0
        self.connections = 0
        self.seen_headers = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def handle(self, c):
        f = c.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                headers = {}
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, v = h.decode().split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                self.seen_headers.append(headers)
                if headers.get("upgrade", "").lower() == "websocket":
                    self.upgrades += 1
                    acc = base64.b64encode(hashlib.sha1(
                        (headers["sec-websocket-key"] + GUID).encode()).digest()).decode()
                    c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % acc).encode())
                    self.ws_loop(c, f)
                    return
                self.plain += 1
                body = b"plain ok\n"
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except (EOFError, OSError, ValueError):
            pass
        finally:
            c.close()

    def ws_loop(self, c, f):
        class R:  # read through the buffered file so no byte is lost
            def recv(self_, n):
                return f.read1(n)
        r = R()
        while True:
            op, data = read_frame(r)
            if op == 8:  # close: echo it and end
                c.sendall(make_frame(8, data, False))
                return
            if data == b"bye":
                c.close()
                return
            c.sendall(make_frame(op, data, False))


def main(t):
    echo = EchoServer()
    node = t.shoal(f"""
        events {{ }}
        http {{
            upstream ws {{ server 127.0.0.1:{echo.port}; keepalive 4; }}
            server {{
                listen 127.0.0.1:{{port}};
                location / {{
                    proxy_pass http://ws;
                    proxy_http_version 1.1;
                    proxy_set_header Upgrade $http_upgrade;
                    proxy_set_header Connection $http_connection;
                    proxy_read_timeout 5s;
                }}
            }}
        }}""")

    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    s.sendall(("GET /chat HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    text = head.decode(errors="replace")
    t.check(text.startswith("HTTP/1.1 101"), "101 Switching Protocols through the proxy", text)
    want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    t.check(("Sec-WebSocket-Accept: %s" % want) in text, "accept key passed back", text)
    t.check("upgrade" in text.lower().split("connection:")[1].split("\r\n")[0].lower()
            if "connection:" in text.lower() else False,
            "Connection: upgrade passed back to the client", text)

    for msg in (b"hello", b"x" * 200, os.urandom(300000)):
        s.sendall(make_frame(2, msg, True))
        op, data = read_frame(s)
        t.check(op == 2 and data == msg, "frame of %d bytes echoed" % len(msg))

    # plain request on another connection: no Upgrade/Connection sent upstream
    r = t.curl(node.url("/plain"))
    t.check(r.status == 200 and r.body == b"plain ok\n", "plain request on the same location", r)
    plain_headers = echo.seen_headers[-1]
    t.check("upgrade" not in plain_headers and "connection" not in plain_headers,
            "empty $http_upgrade/$http_connection remove the headers", plain_headers)

    # the backend closes the tunnel: the client sees the close
    s.sendall(make_frame(1, b"bye", True))
    s.settimeout(5)
    try:
        rest = s.recv(100)
    except OSError:
        rest = b""
    t.check(rest == b"", "backend close ends the client side of the tunnel", rest)
    s.close()

    r = t.curl(node.url("/plain"))
    t.check(r.status == 200, "node still serving after the tunnel closed", r)


sh.run(main)
