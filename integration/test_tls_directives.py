#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 4: nginx's smaller TLS directives, with openssl s_client and curl.

- `ssl_reject_handshake on` in a default server without a certificate: a
  name no server serves, or no SNI at all, gets the unrecognized_name alert
  (and no certificate); a served name completes.
- `ssl_password_file`: an encrypted key opens with the second line of the
  file; with no file, or only wrong passwords, `shoal -t` refuses it with
  file:line (no terminal prompt).
- `ssl_buffer_size 4k`: application-data records from the server are at
  most 4 KiB (+ TLS 1.3 overhead), measured by a relay that reads the
  record headers of a 200 KB response; the default gives 16 KiB records.
- Plain HTTP sent to a TLS port gets nginx's 400 "The plain HTTP request was
  sent to HTTPS port" in clear text, then the connection closes.
- $http2 (h2 / h2c / empty), $ssl_curve, $ssl_session_id.
- A client that never finishes its handshake (silent, half a ClientHello)
  is closed after client_header_timeout; binary garbage at once; the node
  serves the next client."""

import os
import socket
import struct
import subprocess
import threading
import time

import shoal_harness as sh


class RecordRelay:
    """A TCP relay to a TLS server that records the length of every TLS
    record (type 23, application data) the server sends."""

    def __init__(self, target_port):
        self.target = target_port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.app_records = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(c, u, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, True), daemon=True).start()

    def _pipe(self, src, dst, parse):
        buf = b""
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
                if parse:
                    buf += d
                    while len(buf) >= 5:
                        n = struct.unpack(">H", buf[3:5])[0]
                        if len(buf) < 5 + n:
                            break
                        if buf[0] == 23:
                            with self.lock:
                                self.app_records.append(n)
                        buf = buf[5 + n:]
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def take(self):
        with self.lock:
            r, self.app_records = self.app_records, []
        return r

    def close(self):
        self.lsock.close()


def main(t):
    b1 = t.backend("b1")
    cert, key = t.make_cert("a", "a.test", ["DNS:a.test", "IP:127.0.0.1"])
    enc_key = os.path.join(t.tmp, "certs", "a.enc.key")
    subprocess.run(["openssl", "pkey", "-in", key, "-aes256", "-passout", "pass:s3cret", "-out", enc_key],
                   check=True, capture_output=True, timeout=30)
    pwfile = os.path.join(t.tmp, "passwords")
    with open(pwfile, "w") as f:
        f.write("wrong-one\ns3cret\n")
    badpw = os.path.join(t.tmp, "badpasswords")
    with open(badpw, "w") as f:
        f.write("nope\n")
    p_buf = t.port()
    p_def = t.port()
    p_h2c = t.port()
    p_slow = t.port()
    node = t.shoal(f"""
        error_log logs/error.log info;
        events {{ }}
        http {{
            server {{
                listen 127.0.0.1:{{port}} ssl default_server;
                ssl_reject_handshake on;
            }}
            server {{
                listen 127.0.0.1:{{port}} ssl;
                server_name a.test;
                ssl_certificate {cert};
                ssl_certificate_key {enc_key};
                ssl_password_file {pwfile};
                location / {{ return 200 "a\\n"; }}
            }}
            server {{
                listen 127.0.0.1:{p_slow} ssl;
                client_header_timeout 1s;
                ssl_certificate {cert};
                ssl_certificate_key {key};
                location / {{ return 200 "slow\\n"; }}
            }}
            server {{
                listen 127.0.0.1:{p_buf} ssl;
                ssl_certificate {cert};
                ssl_certificate_key {key};
                ssl_buffer_size 4k;
                location / {{ proxy_pass http://127.0.0.1:{b1.port}; }}
            }}
            server {{
                listen 127.0.0.1:{p_def} ssl http2;
                listen 127.0.0.1:{p_h2c} http2;
                ssl_certificate {cert};
                ssl_certificate_key {key};
                location / {{ proxy_pass http://127.0.0.1:{b1.port}; }}
                location = /vars {{ return 200 "[$http2|$ssl_curve|$ssl_session_id|$ssl_protocol]"; }}
            }}
        }}""")
    GET = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"

    # -- ssl_reject_handshake --
    rc, out = t.s_client(node.port, "-servername", "a.test", "-ign_eof", stdin=GET)
    t.check("HTTP/1.1 200" in out and "\na\n" in out.replace("\r", ""),
            "SNI a.test (served, its key opened with ssl_password_file): handshake and 200", out[-800:])
    for label, args in (("SNI other.test", ["-servername", "other.test"]), ("no SNI", ["-noservername"])):
        rc, out = t.s_client(node.port, *args, stdin=b"")
        t.check(rc != 0 and "unrecognized name" in out and "BEGIN CERTIFICATE" not in out
                and "Server certificate" not in out,
                "%s on a default server with ssl_reject_handshake on: unrecognized_name alert, "
                "no certificate shown (rc %s)" % (label, rc), out[-800:])
    r = t.curl("https://other.test:%d/" % node.port, "-k", "--resolve", "other.test:%d:127.0.0.1" % node.port)
    t.check(r.rc == 35 and r.status is None,
            "curl to a rejected name: TLS handshake failure (curl rc 35), no response (rc %s)" % r.rc, r)

    # -- ssl_password_file, refused cases at -t --
    for label, extra in (("no ssl_password_file", ""), ("only wrong passwords",
                                                         "ssl_password_file %s;" % badpw)):
        conf = os.path.join(t.tmp, "pw-%d.conf" % len(extra))
        with open(conf, "w") as f:
            f.write(f"""events {{ }}
http {{
    server {{
        listen 127.0.0.1:{t.port()} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {enc_key};
        {extra}
    }}
}}
""")
        res = t.run_shoal(["-t", "-c", conf], timeout=20)
        t.check(res.returncode == 1 and "%s:3:" % conf in res.stderr and "cannot load certificate key" in res.stderr,
                "encrypted key, %s: -t refuses it with file:line (rc %s)" % (label, res.returncode), res.stderr)

    # -- plain HTTP to a TLS port: nginx's 400 in clear text --
    with sh.RawConn(p_def) as rc_:
        rc_.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        resp = rc_.read_response(timeout=10)
        closed = rc_.closed_by_peer(5)
    t.check(resp.status == 400 and b"The plain HTTP request was sent to HTTPS port" in resp.body and closed,
            "plain HTTP on a TLS port: 400 \"The plain HTTP request was sent to HTTPS port\", then close "
            "(got %s)" % resp.status, resp)

    # -- a handshake that never completes, and garbage: closed, others served --
    hello_start = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])
    for label, data in (("silent client", b""), ("half a ClientHello", hello_start),
                        ("binary garbage", bytes(range(1, 200)))):
        t0 = time.monotonic()
        with sh.RawConn(p_slow) as c_:
            if data:
                c_.send(data)
            closed = c_.closed_by_peer(6 * t.slow)
        took = time.monotonic() - t0
        t.check(closed and took < 4 * t.slow,
                "%s on a TLS port with client_header_timeout 1s: closed in %.1f s" % (label, took))
    r = t.curl("https://127.0.0.1:%d/" % p_slow, "-k")
    t.check(r.status == 200 and r.text() == "slow\n", "the node still serves a real client after those", r)

    # -- $http2, $ssl_curve, $ssl_session_id --
    base = "https://127.0.0.1:%d/vars" % p_def
    r2 = t.curl(base, "-k", "--http2")
    r1 = t.curl(base, "-k", "--http1.1", "--curves", "P-256")
    rc = t.curl("http://127.0.0.1:%d/vars" % p_h2c, "--http2-prior-knowledge")
    v2 = r2.text().strip("[]").split("|")
    v1 = r1.text().strip("[]").split("|")
    t.check(r2.status == 200 and v2[0] == "h2" and v2[1] == "X25519" and len(v2[2]) == 64
            and all(ch in "0123456789ABCDEF" for ch in v2[2]) and v2[3] == "TLSv1.3",
            "h2 over TLS: $http2 h2, $ssl_curve X25519, $ssl_session_id 64 hex digits, TLSv1.3 "
            "(got %s)" % v2, r2)
    t.check(r1.status == 200 and v1[0] == "" and v1[1] == "prime256v1",
            "HTTP/1.1 over TLS, curl --curves P-256: $http2 empty, $ssl_curve prime256v1 (got %s)" % v1, r1)
    t.check(rc.status == 200 and rc.text() == "[h2c|||]",
            "h2c: $http2 h2c, no TLS variables (got %r)" % rc.text(), rc)

    # -- ssl_buffer_size --
    sizes = {}
    for label, port in (("ssl_buffer_size 4k", p_buf), ("default", p_def)):
        relay = RecordRelay(port)
        try:
            r = t.curl("https://127.0.0.1:%d/stream?bytes=200000" % relay.port, "-k", "--http1.1",
                       sink="sha256")
            recs = relay.take()
        finally:
            relay.close()
        sizes[label] = max(recs) if recs else 0
        t.check(r.status == 200 and r.body_len == 200000,
                "%s: 200 KB through TLS intact (got %s, %d bytes)" % (label, r.status, r.body_len), r)
    t.check(0 < sizes["ssl_buffer_size 4k"] <= 4096 + 256,
            "ssl_buffer_size 4k: largest application record %d bytes (want <= 4096 + overhead)"
            % sizes["ssl_buffer_size 4k"])
    t.check(sizes["default"] > 16000,
            "default ssl_buffer_size (16k): largest application record %d bytes (want ~16 KiB)"
            % sizes["default"])


sh.run(main)
