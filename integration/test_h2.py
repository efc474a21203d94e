#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 4: HTTP/2 with real clients (curl, nghttp, h2load) and a raw-frame client.

One node: `listen ... ssl http2` (h2 by ALPN, and HTTP/1.1), `listen ... http2`
(h2c with prior knowledge, and HTTP/1.1 on the same port), a backend pool.
Checks: curl --http2 / --http2-prior-knowledge / --http1.1, nghttp -nv
(SETTINGS, the response), h2load with 100 streams per connection over TLS
and h2c with no failed request, large downloads and uploads (with and
without content-length) intact through the HTTP/1.1 upstream pool, add_header
always on a 404 and a 502, the header-list limit (431), and the defences: a
rapid-reset flood (CVE-2023-44487), PING, SETTINGS, empty DATA and
CONTINUATION floods each end in GOAWAY (or a close) while the node keeps
serving others; graceful stop sends GOAWAY and lets the stream in flight
finish."""

import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import shoal_harness as sh

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 3, 4, 6, 7, 9
END_STREAM, END_HEADERS = 0x1, 0x4
ENHANCE_YOUR_CALM = 0xb


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def hpack_request(method=b"GET", path=b"/", authority=b"x"):
    """A header block from HPACK's static table and literals (no Huffman)."""
    out = bytearray([0x82 if method == b"GET" else 0x83, 0x86])  # :method, :scheme http
    if path == b"/":
        out.append(0x84)
    else:
        out += bytes([0x04, len(path)]) + path  # literal, name :path
    out += bytes([0x01, len(authority)]) + authority  # literal, name :authority
    return bytes(out)


class RawH2:
    """A cleartext HTTP/2 client that writes frames as given and reads
    frames (type, flags, stream, payload) with deadlines."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.eof = False
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def frames(self, timeout=10):
        """Every frame until EOF or the deadline."""
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while len(self.buf) >= 9:
                n = struct.unpack(">I", b"\0" + self.buf[:3])[0]
                if len(self.buf) < 9 + n:
                    break
                ft, fl = self.buf[3], self.buf[4]
                sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
                out.append((ft, fl, sid, self.buf[9:9 + n]))
                self.buf = self.buf[9 + n:]
            if self.eof:
                break
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                d = b""
            if not d:
                self.eof = True
            self.buf += d
        return out

    def close(self):
        self.sock.close()


def goaway_code(frames):
    for ft, _, _, p in frames:
        if ft == GOAWAY and len(p) >= 8:
            return struct.unpack(">I", p[4:8])[0], struct.unpack(">I", p[:4])[0] & 0x7FFFFFFF
    return None, None


def main(t):
    b1 = t.backend("b1")
    cert = t.make_cert("h2", "h2.test", ["DNS:h2.test", "IP:127.0.0.1"])
    p_h2c = t.port()
    dead = t.port()  # nothing listens there: 502
    node = t.shoal(f"""
        worker_processes 2;
        error_log logs/error.log info;
        events {{ }}
        http {{
            upstream be {{ server 127.0.0.1:{b1.port}; keepalive 16; }}
            upstream gone {{ server 127.0.0.1:{dead}; }}
            server {{
                listen 127.0.0.1:{{port}} ssl http2;
                listen 127.0.0.1:{p_h2c} http2;
                server_name h2.test;
                ssl_certificate {cert[0]};
                ssl_certificate_key {cert[1]};
                http2_max_concurrent_streams 100;
                client_max_body_size 20m;
                large_client_header_buffers 4 8k;
                add_header X-H2 "yes" always;
                location / {{ proxy_pass http://be; }}
                location /gone {{ proxy_pass http://gone; }}
                location /ret {{ return 200 "ret $server_protocol $scheme\\n"; }}
            }}
        }}""")
    tls = "https://127.0.0.1:%d" % node.port
    h2c = "http://127.0.0.1:%d" % p_h2c

    r = t.curl(tls + "/ret", "--http2", "-k")
    t.check(r.status == 200 and r.info.get("http_version") == "2" and r.body == b"ret HTTP/2.0 https\n",
            "curl --http2 over TLS: HTTP/2 200 \"ret HTTP/2.0 https\"", r)
    r = t.curl(h2c + "/ret", "--http2-prior-knowledge")
    t.check(r.status == 200 and r.info.get("http_version") == "2" and r.body == b"ret HTTP/2.0 http\n",
            "curl --http2-prior-knowledge (h2c): HTTP/2 200", r)
    r = t.curl(tls + "/ret", "--http1.1", "-k")
    t.check(r.status == 200 and r.info.get("http_version") == "1.1",
            "curl --http1.1 on the same TLS port: HTTP/1.1 (ALPN http/1.1)", r)
    r = t.curl(h2c + "/ret")
    t.check(r.status == 200 and r.info.get("http_version") == "1.1" and r.body == b"ret HTTP/1.1 http\n",
            "plain HTTP/1.1 on the h2c port still works (no preface, no HTTP/2)", r)
    r = t.curl(tls + "/echo?q=1", "--http2", "-k")
    t.check(r.status == 200 and r.json()["target"] == "/echo?q=1" and r.header("x-backend") == "b1",
            "a stream proxied to the HTTP/1.1 upstream: /echo?q=1 reaches b1", r)

    # nghttp -nv
    p = subprocess.run(["nghttp", "-nv", tls + "/"], capture_output=True, text=True, timeout=30)
    t.check(p.returncode == 0 and "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100" in p.stdout
            and ":status: 200" in p.stdout and "END_STREAM" in p.stdout,
            "nghttp -nv: our SETTINGS (100 streams), :status 200, END_STREAM", p.stdout[-1500:])

    # h2load, 100 streams per connection
    for name, url in (("h2 over TLS", tls + "/"), ("h2c", h2c + "/")):
        p = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "100", url],
                           capture_output=True, text=True, timeout=120)
        m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                      r"(\d+) errored", p.stdout)
        t.check(m is not None and m.group(3) == "2000" and m.group(4) == "0" and m.group(5) == "0",
                "h2load -n 2000 -c 4 -m 100 (%s): 2000 succeeded, none failed" % name, p.stdout[-800:])

    # bodies both ways
    for q in ("bytes=20000000", "bytes=5000000&chunked=1"):
        n = int(re.search(r"bytes=(\d+)", q).group(1))
        r = t.curl(tls + "/stream?" + q, "--http2", "-k", sink="sha256")
        t.check(r.status == 200 and r.body_len == n and r.sha256 == sh.pattern_sha256(n),
                "download /stream?%s over h2: %d bytes intact" % (q, n), r)
    blob = os.path.join(t.tmp, "upload.bin")
    with open(blob, "wb") as f:
        for piece in sh.pattern_pieces(6_000_000):
            f.write(piece)
    want = sh.pattern_sha256(6_000_000)
    r = t.curl(tls + "/echo", "--http2", "-k", data_file=blob)
    e = r.json() if r.status == 200 else {}
    t.check(e.get("body_len") == 6_000_000 and e.get("body_sha256") == want and e.get("framing") == "content-length",
            "upload of 6 MB with content-length over h2: intact at the backend", e or r)
    r = t.curl(h2c + "/echo", "--http2-prior-knowledge", "-T", blob, "-X", "POST",
               "-H", "Content-Length:")
    e = r.json() if r.status == 200 else {}
    t.check(e.get("body_len") == 6_000_000 and e.get("body_sha256") == want,
            "upload of 6 MB over h2c: intact at the backend (framing %s)" % e.get("framing"), e or r)
    with open(blob, "rb") as f:
        p = subprocess.run(["curl", "-sk", "--http2", "-T", "-", "-X", "POST", tls + "/echo"],
                           stdin=f, capture_output=True, timeout=60)
    import json
    e = json.loads(p.stdout) if p.returncode == 0 and p.stdout.startswith(b"{") else {}
    t.check(e.get("body_len") == 6_000_000 and e.get("framing") == "chunked" and e.get("body_sha256") == want,
            "upload of unknown length over h2: sent chunked to the backend, intact", e or p.stderr)

    # errors carry the `always` fields
    r = t.curl(tls + "/status/404", "--http2", "-k")
    t.check(r.status == 404 and r.header("x-h2") == "yes", "a 404 over h2 has add_header ... always", r)
    r = t.curl(tls + "/gone", "--http2", "-k")
    t.check(r.status == 502 and r.header("x-h2") == "yes", "a 502 over h2 has add_header ... always", r)
    r = t.curl(tls + "/ret", "--http2", "-k", "-H", "X-Big: " + "a" * 40000)
    t.check(r.status == 431, "a header list over large_client_header_buffers: 431", r)

    def still_serving(what):
        r = t.curl(tls + "/ret", "--http2", "-k")
        t.check(r.status == 200, "after %s the node serves another client" % what, r)

    # Rapid reset (CVE-2023-44487): HEADERS + RST_STREAM pairs in bulk, while
    # another client is being served.
    served = []

    def other_client():
        for _ in range(20):
            served.append(t.curl(h2c + "/ret", "--http2-prior-knowledge").status)
    th = threading.Thread(target=other_client)
    th.start()
    c = RawH2(p_h2c)
    burst = bytearray()
    sid = 1
    for _ in range(6000):
        burst += frame(HEADERS, END_HEADERS | END_STREAM, sid, hpack_request())
        burst += frame(RST_STREAM, 0, sid, struct.pack(">I", 8))  # CANCEL
        sid += 2
    for i in range(0, len(burst), 65536):
        if not c.send(bytes(burst[i:i + 65536])):
            break
    fr = c.frames(timeout=10)
    code, _ = goaway_code(fr)
    t.check(code == ENHANCE_YOUR_CALM, "rapid-reset flood: GOAWAY(ENHANCE_YOUR_CALM) (got %r)" % code)
    t.check(c.eof, "rapid-reset flood: the connection is closed")
    c.close()
    th.join(60)
    t.check(len(served) == 20 and all(s == 200 for s in served),
            "another client was served throughout the flood (%d of 20 OK)" % served.count(200))
    still_serving("the rapid-reset flood")

    def flood(name, payload):
        c = RawH2(p_h2c)
        for i in range(0, len(payload), 65536):
            if not c.send(payload[i:i + 65536]):
                break
        fr = c.frames(timeout=10)
        code, _ = goaway_code(fr)
        t.check(code is not None and code != 0 or (code is None and c.eof),
                "%s: GOAWAY with an error (got %r) or a close" % (name, code))
        c.close()
        still_serving(name)

    flood("PING flood", b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(20000)))
    flood("SETTINGS flood", b"".join(frame(SETTINGS, 0, 0) for _ in range(5000)))
    flood("empty DATA flood", frame(HEADERS, END_HEADERS, 1, hpack_request(b"POST", b"/ret")) +
          b"".join(frame(DATA, 0, 1) for _ in range(5000)))
    flood("CONTINUATION flood", frame(HEADERS, 0, 1, hpack_request()) +
          b"".join(frame(CONTINUATION, 0, 1, bytes([0x40, 1, 0x61, 1, 0x62])) for _ in range(2000)))

    # Graceful stop: GOAWAY, and the stream in flight finishes.
    c = RawH2(p_h2c)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack_request(path=b"/slow?ms=1500")))
    sh.wait_for(lambda: b1.stats()["in_flight"] >= 1, 10, "the slow request in flight at b1")
    rcs = []
    stopper = threading.Thread(target=lambda: rcs.append(node.proc.stop(timeout=20)))
    stopper.start()  # SIGTERM, then wait for the exit (by PID)
    fr = c.frames(timeout=15)
    code, last = goaway_code(fr)
    got_end = any(ft == DATA and sid == 1 and fl & END_STREAM for ft, fl, sid, _ in fr)
    got_head = any(ft == HEADERS and sid == 1 for ft, _, sid, _ in fr)
    t.check(code == 0 and last == 1, "graceful stop: GOAWAY(NO_ERROR, last stream 1) (got %r, %r)"
            % (code, last))
    t.check(got_head and got_end, "graceful stop: the stream in flight got its response to the end")
    c.close()
    stopper.join(30)
    t.check(rcs == [0] and not node.proc.killed, "the node exits 0 after the drain (rc=%r)" % rcs)


if __name__ == "__main__":
    sh.run(main)
