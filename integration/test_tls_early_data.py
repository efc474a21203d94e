#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 4: TLS 1.3 early data (0-RTT), `ssl_early_data`, with openssl s_client.

A client resumes a session (s_client -sess_out, then -sess_in) and sends
its request as early data (-early_data FILE):

- `ssl_early_data on` (with `ssl_session_cache shared:...`): the early data
  is accepted and a GET in it is proxied before the handshake completes:
  the backend sees `Early-Data: 1` from `proxy_set_header Early-Data
  $ssl_early_data` (the RFC 8470 header nginx's docs suggest); the same
  over HTTP/2 (ALPN h2, the connection preface and a HEADERS frame as early
  data).
- A POST in early data waits for the client's Finished (RFC 8470 5.1): it
  is answered, and the backend sees it without Early-Data (dispatched after
  the handshake).
- A flight that never completes the handshake (a relay drops the client's
  Finished, as a replayed flight would lack it): a GET in it is proxied, a
  POST never reaches the backend and the connection closes after
  client_header_timeout.
- Replay: the same session used again is refused (OpenSSL's single-use
  sessions, in the cache shared by the node's 2 workers): "Early data was
  rejected", a full handshake, and the backend saw the request once.
- Off (nginx's default): sessions carry no early data ("Early data was not
  sent"). A server without it on an address where another server has it
  (SNI picks it): the session resumes, the early data is rejected and never
  reaches a backend.
- `ssl_early_data on` without a session cache: warned about at -t, early
  data stays off and sessions still resume by ticket."""

import os
import socket
import struct
import subprocess
import threading
import time

import shoal_harness as sh

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def h2_get(path, authority):
    """Preface, SETTINGS, and a GET as one HEADERS frame (END_STREAM|END_HEADERS)."""
    block = bytearray([0x82, 0x87])  # :method GET, :scheme https
    block += bytes([0x04, len(path)]) + path
    block += bytes([0x01, len(authority)]) + authority
    return PREFACE + frame(4, 0, 0) + frame(1, 0x5, 1, bytes(block))


def h2_post(path, authority, body):
    """Preface, SETTINGS, a POST's HEADERS (END_HEADERS) and its body as DATA (END_STREAM)."""
    block = bytearray([0x83, 0x87])  # :method POST, :scheme https
    block += bytes([0x04, len(path)]) + path
    block += bytes([0x01, len(authority)]) + authority
    block += bytes([0x0f, 0x0d, len(str(len(body)))]) + str(len(body)).encode()  # content-length
    return PREFACE + frame(4, 0, 0) + frame(1, 0x4, 1, bytes(block)) + frame(0, 0x1, 1, body)


def s_client_until(port, args, marker, timeout=15):
    """openssl s_client with stdin held open (so it does not end before the
    answer) until it exits (the server closed) or marker shows in its output.
    Returns the output (bytes)."""
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port] + list(args)
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = bytearray()
    done = threading.Event()

    def reader():
        while True:
            d = p.stdout.read1(65536)
            if not d:
                break
            out.extend(d)
            if marker is not None and marker in out:
                done.set()
        done.set()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    done.wait(timeout)
    if p.poll() is None:
        p.kill()
    p.wait()
    th.join(5)
    p.stdin.close()
    return bytes(out)


class FirstFlightRelay:
    """A TCP relay that delivers only the client's first flight: it holds the
    server's answer until a client application-data record (the early data)
    has gone through, then drops everything else the client sends, so the
    server never gets the client's Finished: what a replayed flight looks
    like to the server. upstream_closed is set when the server closes."""

    def __init__(self, target_port):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.target = target_port
        self.early_seen = threading.Event()
        self.upstream_closed = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            c, _ = self.lsock.accept()
        except OSError:
            return
        u = socket.create_connection(("127.0.0.1", self.target))
        threading.Thread(target=self._up, args=(c, u), daemon=True).start()
        try:
            while True:
                d = u.recv(65536)
                if not d:
                    break
                self.early_seen.wait(10)
                c.sendall(d)
        except OSError:
            pass
        self.upstream_closed.set()
        c.close()

    def _up(self, c, u):
        buf = b""
        forwarding = True
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                if not forwarding:
                    continue  # the client's Finished never arrives
                buf += d
                while len(buf) >= 5:
                    n = struct.unpack(">H", buf[3:5])[0]
                    if len(buf) < 5 + n:
                        break
                    rec, buf = buf[:5 + n], buf[5 + n:]
                    u.sendall(rec)
                    if rec[0] == 23:  # the first application-data record: early data
                        forwarding = False
                        self.early_seen.set()
                        break
        except OSError:
            pass

    def close(self):
        self.lsock.close()


def early_status(out):
    for s, what in ((b"Early data was accepted", "accepted"), (b"Early data was rejected", "rejected"),
                    (b"Early data was not sent", "not sent")):
        if s in out:
            return what
    return None


def main(t):
    b1 = t.backend("b1")
    ca = t.make_cert("ed", "a.test", ["DNS:a.test", "DNS:b.test", "IP:127.0.0.1"])
    port_off = t.port()
    port_nc = t.port()
    node = t.shoal(f"""
        worker_processes 2;
        error_log logs/error.log info;
        events {{ }}
        http {{
            ssl_certificate {ca[0]};
            ssl_certificate_key {ca[1]};
            ssl_session_cache shared:SSL:1m;
            proxy_set_header Early-Data $ssl_early_data;
            client_header_timeout 2s;
            server {{
                listen 127.0.0.1:{{port}} ssl http2;
                server_name a.test;
                ssl_early_data on;
                location / {{ proxy_pass http://127.0.0.1:{b1.port}; }}
            }}
            server {{
                listen 127.0.0.1:{{port}} ssl http2;
                server_name b.test;
                location / {{ proxy_pass http://127.0.0.1:{b1.port}; }}
            }}
            server {{
                listen 127.0.0.1:{port_nc} ssl;
                server_name a.test;
                ssl_session_cache none;
                ssl_early_data on;
                location / {{ proxy_pass http://127.0.0.1:{b1.port}; }}
            }}
            server {{
                listen 127.0.0.1:{port_off} ssl;
                server_name a.test;
                location / {{ proxy_pass http://127.0.0.1:{b1.port}; }}
            }}
        }}""")
    port = node.port
    tmp = t.tmp

    def write(name, data):
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def new_session(name, p=port, sni="a.test", alpn=None):
        sess = os.path.join(tmp, name)
        extra = ["-alpn", alpn] if alpn else []
        t.s_client(p, "-servername", sni, "-sess_out", sess, "-ign_eof", *extra,
                   stdin=b"GET /health HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        return sess

    def count(path):
        return b1.stats()["paths"].get(path, 0)

    # -- GET in early data, HTTP/1.1 --
    get = write("get.txt", b"GET /e1/echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    sess = new_session("s1")
    out = s_client_until(port, ["-servername", "a.test", "-sess_in", sess, "-early_data", get], None)
    body = out[out.find(b"HTTP/1.1 "):]
    t.check(early_status(out) == "accepted" and body.startswith(b"HTTP/1.1 200")
            and b'"Early-Data",\n   "1"' in body.replace(b" \n", b"\n"),
            "HTTP/1.1 GET in 0-RTT data: accepted, proxied before the handshake completed "
            "(the backend saw Early-Data: 1)", out[-1500:].decode("latin-1"))
    t.check(count("/e1/echo") == 1, "the backend saw that GET once (got %d)" % count("/e1/echo"))

    # -- replay: the same session again, on either worker --
    rejected = 0
    for i in range(4):
        out = s_client_until(port, ["-servername", "a.test", "-sess_in", sess, "-early_data", get],
                             b"Verify return code")
        rejected += early_status(out) == "rejected"
    t.check(rejected == 4 and count("/e1/echo") == 1,
            "the session used again 4 times (2 workers, one cache): early data rejected each time, "
            "the backend still saw the request once (rejected %d, backend %d)" % (rejected, count("/e1/echo")))

    # -- POST in early data: waits for the handshake --
    post = write("post.txt", b"POST /p1/echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n"
                             b"Connection: close\r\n\r\nhello")
    sess = new_session("s2")
    out = s_client_until(port, ["-servername", "a.test", "-sess_in", sess, "-early_data", post], None)
    body = out[out.find(b"HTTP/1.1 "):]
    t.check(early_status(out) == "accepted" and body.startswith(b"HTTP/1.1 200")
            and b'"body_len": 5' in body and b"Early-Data" not in body,
            "POST in 0-RTT data: accepted, held until the client's Finished, then proxied "
            "(body intact, no Early-Data header)", out[-1500:].decode("latin-1"))

    # -- HTTP/2 in early data --
    h2 = write("h2.bin", h2_get(b"/h2e/echo", b"a.test"))
    sess = new_session("s3", alpn="h2")
    out = s_client_until(port, ["-servername", "a.test", "-alpn", "h2", "-sess_in", sess,
                                "-early_data", h2], b"body_sha256")
    t.check(early_status(out) == "accepted" and b'"Early-Data",\n   "1"' in out
            and b'"path": "/h2e/echo"' in out,
            "HTTP/2 (ALPN h2) preface + GET in 0-RTT data: accepted, proxied with Early-Data: 1",
            out[-1500:].decode("latin-1"))

    # -- HTTP/2 POST in early data: the stream waits for the handshake --
    h2p = write("h2p.bin", h2_post(b"/h2p/echo", b"a.test", b"hello h2"))
    sess = new_session("s7", alpn="h2")
    out = s_client_until(port, ["-servername", "a.test", "-alpn", "h2", "-sess_in", sess,
                                "-early_data", h2p], b"body_sha256")
    t.check(early_status(out) == "accepted" and b'"path": "/h2p/echo"' in out
            and b'"body_len": 8' in out and b"Early-Data" not in out,
            "HTTP/2 POST in 0-RTT data: accepted, the stream held until the handshake completed, then "
            "proxied with its body (no Early-Data header)", out[-1500:].decode("latin-1"))

    # -- a flight that never completes the handshake (a replay, to the server): the GET in it
    # is proxied (safe), a POST never reaches a server and the connection is closed after
    # client_header_timeout --
    for method, path, data in (
            ("GET", "/nf-get/echo", b"GET /nf-get/echo HTTP/1.1\r\nHost: a.test\r\n\r\n"),
            ("POST", "/nf-post/echo", b"POST /nf-post/echo HTTP/1.1\r\nHost: a.test\r\n"
                                      b"Content-Length: 5\r\n\r\nhello")):
        f = write("nf-%s.txt" % method, data)
        sess = new_session("nf-" + method)
        relay = FirstFlightRelay(port)
        argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % relay.port, "-servername", "a.test",
                "-sess_in", sess, "-early_data", f]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            t0 = time.monotonic()
            early = relay.early_seen.wait(10)
            if method == "GET":
                sh.wait_for(lambda: count(path) == 1, 10, "the GET from early data at the backend")
            closed = relay.upstream_closed.wait(10)
            took = time.monotonic() - t0
        finally:
            p.kill()
            p.wait()
            relay.close()
        if method == "GET":
            t.check(early and count(path) == 1 and closed and took <= 8,
                    "flight without Finished, GET in early data: proxied (a safe method), then the "
                    "connection closed after client_header_timeout 2s, not kept alive (%.1f s)" % took)
        else:
            t.check(early and count(path) == 0 and closed and 1.5 <= took <= 8,
                    "flight without Finished, POST in early data: never proxied (backend %d); the node "
                    "closed the connection after client_header_timeout 2s (%.1f s)" % (count(path), took))

    # -- off: the default, and per server by SNI --
    sess = new_session("s4", p=port_off)
    out = s_client_until(port_off, ["-servername", "a.test", "-sess_in", sess, "-early_data", get],
                         b"Verify return code")
    t.check(early_status(out) == "not sent" and b"Reused" in out,
            "ssl_early_data off (default): the session resumes but carries no early data (\"not sent\")",
            out[-800:].decode("latin-1"))
    get_b = write("getb.txt", b"GET /b1/echo HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
    sess = new_session("s5", sni="b.test")
    out = s_client_until(port, ["-servername", "b.test", "-sess_in", sess, "-early_data", get_b],
                         b"Verify return code")
    t.check(early_status(out) == "rejected" and b"Reused" in out and count("/b1/echo") == 0,
            "same address, SNI b.test (no ssl_early_data): the session resumes, its early data is "
            "rejected and never proxied (%s, backend %d)" % (early_status(out), count("/b1/echo")),
            out[-800:].decode("latin-1"))

    # -- without a session cache: early data stays off, sessions still resume (tickets) --
    sess = new_session("s6", p=port_nc)
    out = s_client_until(port_nc, ["-servername", "a.test", "-sess_in", sess, "-early_data", get],
                         b"Verify return code")
    t.check(early_status(out) == "not sent" and b"Reused" in out,
            "ssl_early_data on with ssl_session_cache none: 0-RTT stays off (warned), tickets still "
            "resume (%s)" % early_status(out), out[-800:].decode("latin-1"))

    # -- a warning without a session cache --
    conf = write("nocache.conf", f"""
        events {{ }}
        http {{
            server {{
                listen 127.0.0.1:{t.port()} ssl;
                ssl_certificate {ca[0]};
                ssl_certificate_key {ca[1]};
                ssl_early_data on;
            }}
        }}""".encode())
    r = t.run_shoal(["-t", "-c", conf])
    t.check(r.returncode == 0 and "ssl_early_data on" in r.stderr and "ssl_session_cache" in r.stderr,
            "-t: ssl_early_data on without ssl_session_cache is warned about", r.stderr)


sh.run(main)
