#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 14: a client's request trailers reach the gRPC backend on
grpc_pass (RFC 9113 8.1: a HEADERS frame after the DATA ends the request),
and the backend's response trailers reach the client.

The client is nghttp (--trailer, over h2c and over TLS with ALPN h2); the
backend is h2_trailer_backend (built beside shoal: nghttp2, it echoes the
request's trailers and body length in its response trailers). Also: a
request without trailers still ends with END_STREAM on DATA (the backend
sees none), and a large body with trailers arrives whole. nginx is not
compared: it drops request trailers (HTTP/2 and gRPC both)."""

import os
import shutil
import subprocess

import shoal_harness as sh


def main(t):
    nghttp = shutil.which("nghttp")
    backend = os.path.join(os.path.dirname(os.path.abspath(t.shoal_bin)), "h2_trailer_backend")
    if nghttp is None or not os.path.exists(backend):
        print("SKIP - nghttp or h2_trailer_backend (built beside shoal) is missing")
        raise SystemExit(77)
    bport = t.port()
    d = t._subdir("h2be")
    be = t._spawn("h2be", [backend, str(bport)], d)
    sh.wait_for(lambda: "ready" in be.stdout().split() and sh.port_accepts(bport), 10 * t.slow,
                "h2_trailer_backend")
    crt, key = os.path.join(t.tmp, "n.crt"), os.path.join(t.tmp, "n.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=60)
    tls = t.port()
    node = t.shoal("""
        events { }
        http { access_log off; client_max_body_size 0;
            server {
                listen 127.0.0.1:{port} http2;
                listen 127.0.0.1:%d ssl http2;
                ssl_certificate %s; ssl_certificate_key %s;
                location / { grpc_pass grpc://127.0.0.1:%d; }
            }
        }""" % (tls, crt, key, bport))

    small = os.path.join(t.tmp, "small.bin")
    with open(small, "wb") as f:
        f.write(b"\x00\x00\x00\x00\x02hi")
    big = os.path.join(t.tmp, "big.bin")
    with open(big, "wb") as f:
        f.write(b"\x00\x00\x30\x00\x00" + b"z" * (3 << 20))  # 3 MiB, more than the windows

    def run(url, *args):
        p = subprocess.run([nghttp, "-nv", "-H", "content-type: application/grpc", "-H", "te: trailers",
                            url] + list(args), capture_output=True, text=True, timeout=60 * t.slow)
        return p.returncode, p.stdout

    for name, base in (("h2c", "http://127.0.0.1:%d" % node.port), ("TLS", "https://127.0.0.1:%d" % tls)):
        rc, out = run(base + "/t.S/Unary", "-d", small, "--trailer", "x-client-sum: 42",
                      "--trailer", "x-other: a b")
        t.check(rc == 0 and "x-req-trailers: x-client-sum=42;x-other=a b;" in out
                and "x-body-bytes: 7" in out and "grpc-status: 0" in out,
                "%s: the client's trailers reach the backend, after the body (7 bytes), and the "
                "backend's trailers come back" % name, out[-1500:])
        rc, out = run(base + "/t.S/Unary", "-d", small)
        t.check(rc == 0 and "x-req-trailers: -" in out and "x-body-bytes: 7" in out,
                "%s: no trailers: the body ends with END_STREAM on DATA" % name, out[-1500:])
        rc, out = run(base + "/t.S/Collect", "-d", big, "--trailer", "x-big: yes")
        t.check(rc == 0 and "x-req-trailers: x-big=yes;" in out
                and "x-body-bytes: %d" % (5 + (3 << 20)) in out,
                "%s: 3 MiB of body then the trailers (flow control both ways)" % name, out[-1500:])
    t.check(be.stdout().count("trailer x-client-sum: 42") == 2, "the backend printed the trailers")


sh.run(main)
