#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""An origin for the cache tests (issue 12): every response says how many
times its target was asked, so a test sees whether an answer came from the
cache, and the query decides the response's cache fields. Stdlib only,
threaded, HTTP/1.1 keep-alive.

Query parameters (any target; repeatable ones apply in order):
  cc=V       Cache-Control: V          exp=V   Expires: V ("past", "future" or a date)
  xae=V      X-Accel-Expires: V        cookie=1  Set-Cookie: a=b
  vary=V     Vary: V                   tag=V   Surrogate-Key: V
  etag=V     ETag: "V" (If-None-Match with it answers 304)
  ar=1       Accept-Ranges: bytes (nginx serves ranges of a cached copy then)
  lm=1       Last-Modified: a fixed date (If-Modified-Since equal answers 304)
  status=N   that status               size=N  body of N bytes (default: a line)
  ms=N       wait N ms before answering
Body: "n=COUNT target=TARGET method=M lang=ACCEPT-LANGUAGE\\n", padded to size.

  /__count?t=TARGET   how many requests TARGET got (JSON {"n":..,"304":..})
  /__set?t=TARGET&status=N[&ms=M]   later answers of TARGET get status N (0:
                      clear) and wait M ms
  /__reqs?t=TARGET    the request heads TARGET got (JSON list of header dicts)

CLI: cache_origin.py --port P. Prints "ready" once listening.
"""
import argparse
import email.utils
import http.server
import json
import socketserver
import sys
import threading
import time
import urllib.parse

LM = "Sun, 06 Nov 1994 08:49:37 GMT"
lock = threading.Lock()
counts = {}
c304 = {}
overrides = {}
delays = {}
heads = {}


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.handle_any()

    def do_GET(self):
        self.handle_any()

    def do_HEAD(self):
        self.handle_any()

    def reply(self, code, body, fields=(), ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        for k, v in fields:
            self.send_header(k, v)
        if code != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code != 304:
            self.wfile.write(body)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
        qd = dict(q)
        if u.path == "/__count":
            with lock:
                out = {"n": counts.get(qd.get("t"), 0), "304": c304.get(qd.get("t"), 0)}
            return self.reply(200, json.dumps(out).encode(), ctype="application/json")
        if u.path == "/__set":
            with lock:
                overrides[qd["t"]] = int(qd.get("status", "0"))
                if "ms" in qd:
                    delays[qd["t"]] = int(qd["ms"])
            return self.reply(200, b"ok\n")
        if u.path == "/__reqs":
            with lock:
                out = heads.get(qd.get("t"), [])
            return self.reply(200, json.dumps(out).encode(), ctype="application/json")
        with lock:
            counts[self.path] = counts.get(self.path, 0) + 1
            cnt = counts[self.path]
            heads.setdefault(self.path, []).append(dict((k.lower(), v) for k, v in self.headers.items()))
            status = overrides.get(self.path) or int(qd.get("status", "200"))
            delay = delays.get(self.path, int(qd.get("ms", "0")))
        if delay:
            time.sleep(delay / 1000.0)
        fields = []
        for k, v in q:
            if k == "cc":
                fields.append(("Cache-Control", v))
            elif k == "exp":
                t = time.time() + (-3600 if v == "past" else 3600)
                fields.append(("Expires", email.utils.formatdate(t, usegmt=True)
                               if v in ("past", "future") else v))
            elif k == "xae":
                fields.append(("X-Accel-Expires", v))
            elif k == "cookie":
                fields.append(("Set-Cookie", "a=b"))
            elif k == "vary":
                fields.append(("Vary", v))
            elif k == "tag":
                fields.append(("Surrogate-Key", v))
            elif k == "etag":
                fields.append(("ETag", '"%s"' % v))
            elif k == "ar":
                fields.append(("Accept-Ranges", "bytes"))
            elif k == "lm":
                fields.append(("Last-Modified", LM))
        etag = qd.get("etag")
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        if status == 200 and ((etag and inm == '"%s"' % etag) or (qd.get("lm") and ims == LM)):
            with lock:
                c304[self.path] = c304.get(self.path, 0) + 1
            return self.reply(304, b"", fields)
        body = ("n=%d target=%s method=%s lang=%s\n" % (
            cnt, self.path, self.command, self.headers.get("Accept-Language", "-"))).encode()
        size = int(qd.get("size", "0"))
        if size > len(body):
            body += b"x" * (size - len(body) - 1) + b"\n"
        self.reply(status, body, fields)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    s = Server(("127.0.0.1", a.port), H)
    print("ready", flush=True)
    try:
        s.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
