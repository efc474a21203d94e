#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A small auth service for auth_request tests and bench/auth.sh, stdlib only.

Every request is judged by its Authorization field (the method, URI and
other fields are echoed back as X-Auth-* fields):
  Bearer good       200, X-User: alice, X-Scope: read write
  Bearer admin      204, X-User: root
  Bearer forbidden  403
  Bearer boom       500
  Bearer redirect   302 (Location: /login)
  Bearer slow       200 after 300 ms, X-User: slowpoke
  Bearer ey*.*.*    200 (a JWT-shaped token: the bench's stand-in validator)
  anything else     401, WWW-Authenticate: Bearer realm="auth-svc"
It counts requests at /count (GET, no auth). Keep-alive, HTTP/1.1.

CLI: auth_backend.py --port P [--host 127.0.0.1]; prints "ready" when
listening.
"""
import argparse
import http.server
import socketserver
import threading
import time

COUNT = [0]
LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, fields=()):
        body = b"" if status in (204, 304) else ("auth %d\n" % status).encode()
        self.send_response(status)
        for n, v in fields:
            self.send_header(n, v)
        self.send_header("X-Auth-Method", self.command)
        self.send_header("X-Auth-Uri", self.path)
        self.send_header("X-Auth-Body-Length", self.headers.get("Content-Length", "none"))
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def judge(self):
        if self.path == "/count":
            with LOCK:
                n = COUNT[0]
            body = ("%d\n" % n).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with LOCK:
            COUNT[0] += 1
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        a = self.headers.get("Authorization", "")
        tok = a[7:] if a.startswith("Bearer ") else None
        if tok == "good":
            self.answer(200, [("X-User", "alice"), ("X-Scope", "read write")])
        elif tok == "admin":
            self.answer(204, [("X-User", "root")])
        elif tok == "forbidden":
            self.answer(403)
        elif tok == "boom":
            self.answer(500)
        elif tok == "redirect":
            self.answer(302, [("Location", "/login")])
        elif tok == "slow":
            time.sleep(0.3)
            self.answer(200, [("X-User", "slowpoke")])
        elif tok is not None and tok.startswith("ey") and tok.count(".") == 2:
            self.answer(200, [("X-User", "jwt")])  # the bench's stand-in validator
        else:
            self.answer(401, [("WWW-Authenticate", 'Bearer realm="auth-svc"')])

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = judge


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client (shoal's or nginx's cancelled subrequest) that left


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()
    s = Server((a.host, a.port), Handler)
    print("ready", flush=True)
    s.serve_forever()


if __name__ == "__main__":
    main()
