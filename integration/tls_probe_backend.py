#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A TLS test backend that says how each connection ended (Python's ssl,
that is OpenSSL): "close_notify N" when the client closed TLS cleanly,
"abrupt N" when the TCP connection ended without close_notify.

--mode http: HTTP/1.1 keep-alive, every request answered 200 with
"conn=N client=<certificate CN or -> sni=<name or ->".
--mode h2: ALPN h2, sends an empty SETTINGS frame and reads until the end
(enough for an HTTP/2 client to consider the connection up).
With --client-ca a client certificate signed by that CA is required.
Prints "ready" when listening and "conn N" for each handshake."""

import argparse
import socket
import ssl
import sys
import threading


def say(s):
    print(s, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca")
    ap.add_argument("--mode", choices=("http", "h2"), default="http")
    a = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    if a.client_ca:
        ctx.load_verify_locations(a.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"] if a.mode == "h2" else ["http/1.1"])
    snis = {}

    def on_sni(sock, name, c):
        snis[id(sock)] = name

    ctx.sni_callback = on_sni
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(64)
    n = [0]
    lock = threading.Lock()

    def serve(raw):
        with lock:
            n[0] += 1
            k = n[0]
        try:
            s = ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
        except (ssl.SSLError, OSError) as e:
            say("handshake failed %d %s" % (k, e))
            raw.close()
            return
        cert = s.getpeercert() or {}
        cn = "-"
        for rdn in cert.get("subject", ()):
            for key, val in rdn:
                if key == "commonName":
                    cn = val
        sni = snis.get(id(s)) or snis.get(id(raw)) or "-"
        say("conn %d alpn=%s" % (k, s.selected_alpn_protocol()))
        buf = b""
        try:
            if a.mode == "h2":
                s.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            while True:
                d = s.recv(65536)
                if not d:
                    say("close_notify %d" % k)
                    break
                if a.mode == "h2":
                    continue
                buf += d
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    body = b"conn=%d client=%s sni=%s\n" % (k, cn.encode(), sni.encode())
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
            say("abrupt %d" % k)
        except (ssl.SSLError, OSError) as e:
            say("error %d %s" % (k, e))
        finally:
            try:
                s.close()
            except OSError:
                pass

    say("ready")
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
