#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 4: proxy_request_buffering for HTTP/2 requests, as for HTTP/1.1.

With `proxy_request_buffering on` (nginx's default) a request body of up to
client_body_buffer_size is read whole before a server is chosen, so it goes
upstream with a Content-Length (even when the HTTP/2 request had none) and
an idempotent request whose server closed without answering is sent again,
body included, to the next server. A larger body is streamed from the
point the buffer fills (no temp files), and with `proxy_request_buffering
off` every body is streamed: chunked when the client gave no length, never
resent once part of it reached a server.

Clients: curl --http2-prior-knowledge (h2c) and curl --http2 over TLS with
bodies of known length; a raw-frame h2c client for a body without
content-length (HEADERS, then DATA frames, END_STREAM on the last)."""

import hashlib
import json
import os
import socket
import struct
import time

import shoal_harness as sh

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, GOAWAY, RST_STREAM = 0, 1, 4, 7, 3
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def hpack_put(path, authority=b"x"):
    """:method PUT (literal), :scheme http, :path, :authority, no length."""
    out = bytearray([0x02, 3]) + b"PUT"  # literal without indexing, name :method
    out.append(0x86)  # :scheme http
    out += bytes([0x04, len(path)]) + path
    out += bytes([0x01, len(authority)]) + authority
    return bytes(out)


# HPACK's Huffman codes of the digits (RFC 7541 appendix B), for :status
HUFF_DIGITS = {(0x0, 5): "0", (0x1, 5): "1", (0x2, 5): "2", (0x19, 6): "3", (0x1a, 6): "4",
               (0x1b, 6): "5", (0x1c, 6): "6", (0x1d, 6): "7", (0x1e, 6): "8", (0x1f, 6): "9"}


def huff_digits(data):
    bits = "".join("{:08b}".format(b) for b in data)
    out, code, n = "", 0, 0
    for bit in bits:
        code, n = (code << 1) | (bit == "1"), n + 1
        if (code, n) in HUFF_DIGITS:
            out += HUFF_DIGITS[(code, n)]
            code, n = 0, 0
    return out  # the padding (all ones, < 8 bits) matches no digit


def parse_status(block):
    """:status from the first field of a response header block."""
    static = {0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404, 0x8e: 500}
    if not block:
        return -1
    if block[0] in static:
        return static[block[0]]
    # literal with indexed name 8 (:status): 0x48 (incremental), 0x08, 0x18
    if block[0] in (0x48, 0x08, 0x18) and len(block) >= 2:
        n = block[1] & 0x7F
        value = block[2:2 + n]
        text = huff_digits(value) if block[1] & 0x80 else value.decode("latin-1")
        return int(text) if text.isdigit() else -1
    return -1


def read_frames_until(s, buf, want, timeout):
    """Read frames until want(frames so far) is true; returns (frames, rest)."""
    frames = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while len(buf) >= 9:
            n = struct.unpack(">I", b"\0" + buf[:3])[0]
            if len(buf) < 9 + n:
                break
            sid = struct.unpack(">I", buf[5:9])[0] & 0x7FFFFFFF
            frames.append((buf[3], buf[4], sid, buf[9:9 + n]))
            buf = buf[9 + n:]
        if want(frames):
            return frames, buf
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return frames, buf


def raw_put_no_length(port, path, body, pieces=4, timeout=15):
    """PUT over h2c with no content-length: DATA frames, END_STREAM on the last.
    The body is sent once the server's SETTINGS (stream window) and its
    connection WINDOW_UPDATE are in, so up to 256 KiB fits the windows.
    Returns (status, response body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(PREFACE + frame(SETTINGS, 0, 0))
        WINDOW_UPDATE = 8
        _, rest = read_frames_until(
            s, b"", lambda fs: any(f[0] == SETTINGS and not f[1] & 1 for f in fs)
            and any(f[0] == WINDOW_UPDATE and f[2] == 0 for f in fs), timeout)
        s.sendall(frame(SETTINGS, 1, 0) + frame(HEADERS, END_HEADERS, 1, hpack_put(path)))
        step = (len(body) + pieces - 1) // pieces
        for i in range(0, len(body), step):
            last = i + step >= len(body)
            s.sendall(frame(DATA, END_STREAM if last else 0, 1, body[i:i + step]))
        frames, _ = read_frames_until(
            s, rest, lambda fs: any(f[2] == 1 and (f[1] & END_STREAM or f[0] == RST_STREAM) for f in fs),
            timeout)
        status, resp = None, b""
        for ft, fl, sid, payload in frames:
            if sid != 1:
                continue
            if ft == HEADERS and status is None:
                status = parse_status(payload)
            elif ft == DATA:
                resp += payload
        return status, resp
    finally:
        s.close()


def main(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    cert = t.make_cert("h2b", "h2b.test", ["DNS:h2b.test", "IP:127.0.0.1"])
    p_h2c = t.port()
    A = "127.0.0.1:%d"
    node = t.shoal(f"""
        error_log logs/error.log info;
        events {{ }}
        http {{
            upstream one {{ server {A % b1.port}; keepalive 8; }}
            upstream two {{ server {A % b1.port}; server {A % b2.port}; }}
            upstream two_off {{ server {A % b1.port}; server {A % b2.port}; }}
            client_body_buffer_size 16k;
            client_max_body_size 10m;
            server {{
                listen 127.0.0.1:{{port}} ssl http2;
                listen 127.0.0.1:{p_h2c} http2;
                ssl_certificate {cert[0]};
                ssl_certificate_key {cert[1]};
                location / {{ proxy_pass http://one; }}
                location /off/ {{ proxy_request_buffering off; proxy_pass http://one/; }}
                location /small/ {{ client_max_body_size 100k; client_body_buffer_size 512k;
                                    proxy_pass http://one/; }}
                location /retry/ {{ proxy_pass http://two/; }}
                location /retry_off/ {{ proxy_request_buffering off; proxy_pass http://two_off/; }}
            }}
        }}""")
    h2c = "http://127.0.0.1:%d" % p_h2c
    body8k = os.urandom(8 * 1024)
    big = os.urandom(200 * 1024)
    f8k = os.path.join(t.tmp, "b8k")
    fbig = os.path.join(t.tmp, "big")
    with open(f8k, "wb") as f:
        f.write(body8k)
    with open(fbig, "wb") as f:
        f.write(big)

    # -- a small body with a length: whole, Content-Length upstream --
    for label, url, extra in (("h2c", h2c + "/echo", ["--http2-prior-knowledge"]),
                              ("h2 over TLS", node.url("/echo").replace("http:", "https:"),
                               ["--http2", "-k"])):
        r = t.curl(url, *extra, "-X", "PUT", data_file=f8k)
        ok = r.status == 200 and r.info.get("http_version") == "2"
        j = r.json() if ok else {}
        t.check(ok and j.get("framing") == "content-length" and j.get("body_len") == len(body8k)
                and j.get("body_sha256") == hashlib.sha256(body8k).hexdigest(),
                "%s PUT 8 KiB: the backend gets it whole with Content-Length (got %s %s)"
                % (label, r.status, {k: j.get(k) for k in ("framing", "body_len")}), r)

    # -- no content-length from the client: buffered on -> Content-Length; off -> chunked --
    st, resp = raw_put_no_length(p_h2c, b"/echo", body8k)
    j = json.loads(resp) if st == 200 else {}
    t.check(st == 200 and j.get("framing") == "content-length" and j.get("body_len") == len(body8k)
            and j.get("body_sha256") == hashlib.sha256(body8k).hexdigest(),
            "h2c PUT 8 KiB without content-length, buffering on: sent upstream with Content-Length "
            "(got %s %s)" % (st, {k: j.get(k) for k in ("framing", "body_len")}))
    st, resp = raw_put_no_length(p_h2c, b"/off/echo", body8k)
    j = json.loads(resp) if st == 200 else {}
    t.check(st == 200 and j.get("framing") == "chunked" and j.get("body_len") == len(body8k)
            and j.get("body_sha256") == hashlib.sha256(body8k).hexdigest(),
            "h2c PUT 8 KiB without content-length, proxy_request_buffering off: streamed chunked "
            "(got %s %s)" % (st, {k: j.get(k) for k in ("framing", "body_len")}))
    # larger than the buffer and no length: the first 16k+ buffered, then streamed
    st, resp = raw_put_no_length(p_h2c, b"/echo", big, pieces=13)
    j = json.loads(resp) if st == 200 else {}
    t.check(st == 200 and j.get("framing") == "chunked" and j.get("body_len") == len(big)
            and j.get("body_sha256") == hashlib.sha256(big).hexdigest(),
            "h2c PUT 200 KiB without content-length (over client_body_buffer_size): streamed on, "
            "chunked, intact (got %s %s)" % (st, {k: j.get(k) for k in ("framing", "body_len")}))
    r = t.curl(h2c + "/echo", "--http2-prior-knowledge", "-X", "PUT", data_file=fbig)
    j = r.json() if r.status == 200 else {}
    t.check(r.status == 200 and j.get("framing") == "content-length" and j.get("body_len") == len(big)
            and j.get("body_sha256") == hashlib.sha256(big).hexdigest(),
            "h2c PUT 200 KiB with content-length: intact (got %s %s)"
            % (r.status, {k: j.get(k) for k in ("framing", "body_len")}), r)

    # -- retry: the server closes without answering (/raw/empty). A buffered
    # PUT goes to the next server, body and all; a streamed one cannot. --
    def empty_counts():
        return [b.stats()["paths"].get("/raw/empty", 0) for b in (b1, b2)]

    before = empty_counts()
    r = t.curl(h2c + "/retry/raw/empty", "--http2-prior-knowledge", "-X", "PUT", data_file=f8k)
    after = empty_counts()
    t.check(r.status == 502 and [a - b for a, b in zip(after, before)] == [1, 1],
            "h2c PUT 8 KiB, buffering on, first server closes without answering: resent to the other "
            "(both saw it, then 502; got %s, per-backend %s)"
            % (r.status, [a - b for a, b in zip(after, before)]), r)
    before = empty_counts()
    st, _ = raw_put_no_length(p_h2c, b"/retry_off/raw/empty", body8k)
    after = empty_counts()
    d = [a - b for a, b in zip(after, before)]
    t.check(st == 502 and sorted(d) == [0, 1],
            "h2c PUT 8 KiB streamed (buffering off): not resent once it reached a server "
            "(502, one server saw it; got %s, per-backend %s)" % (st, d))

    # -- client_max_body_size holds while buffering: 413, the backend never asked --
    before = b1.stats()["paths"].get("/small/echo", 0) + b1.stats()["paths"].get("/echo", 0)
    st, _ = raw_put_no_length(p_h2c, b"/small/echo", big, pieces=13)
    after = b1.stats()["paths"].get("/small/echo", 0) + b1.stats()["paths"].get("/echo", 0)
    t.check(st == 413 and after == before,
            "h2c PUT 200 KiB without length to client_max_body_size 100k (buffered whole): 413, "
            "backend not asked (got %s, backend requests %d)" % (st, after - before))


sh.run(main)
