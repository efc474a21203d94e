#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""mirror / mirror_request_body beside nginx 1.22, the same http {} served by
both, each with its own recording mirror backend (a threaded HTTP server in
this process that keeps what it received):
- the mirror backend sees the same requests as under nginx: method, URI with
  the client's arguments ($request_uri), the client's fields, and the body
  (mirror_request_body on, the default: Content-Length and chunked uploads,
  and one larger than client_body_buffer_size); with
  mirror_request_body off and nginx's documented proxy_pass_request_body off
  / Content-Length "" it gets no body;
- two mirror directives: two shadow requests; `mirror off` in a nested
  location: none; a subrequest's location mirrors nothing;
- the main request's answer is untouched: same status and body as without
  the mirror, when the mirror backend is down (connection refused) and when
  it is slow (3 s): the client has its answer well before the mirror ends,
  and the mirror still gets its request after the client left;
- HTTP/2 (shoal only) mirrors too, and 100 concurrent mirrored POSTs all
  arrive;
- a stop (QUIT) waits for a mirror under way, a second signal ends it;
  both exit 0 (and clean under ASan).
"""
import hashlib
import http.server
import os
import signal
import socketserver
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nginx_ref  # noqa: E402
import shoal_harness as sh  # noqa: E402

SERVERS = """
    server {
        listen 127.0.0.1:{port};
        mirror /mirror;
        location / {
            proxy_pass http://127.0.0.1:{bport};
        }
        location /nobody/ {
            mirror /mirror-nobody;
            mirror_request_body off;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /two/ {
            mirror /mirror;
            mirror /mirror2;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /off/ {
            mirror off;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /dead/ {
            mirror /mirror-dead;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /slow/ {
            mirror /mirror-slow;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /ret {
            return 200 "local\\n";
        }
        location = /mirror {
            internal;
            proxy_pass http://127.0.0.1:{mport}$request_uri;
        }
        location = /mirror2 {
            internal;
            proxy_set_header X-Mirror two;
            proxy_pass http://127.0.0.1:{mport}$request_uri;
        }
        location = /mirror-nobody {
            internal;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Mirror nobody;
            proxy_pass http://127.0.0.1:{mport}$request_uri;
        }
        location = /mirror-dead {
            internal;
            proxy_pass http://127.0.0.1:{dead}$request_uri;
        }
        location = /mirror-slow {
            internal;
            proxy_set_header X-Slow 1;
            proxy_pass http://127.0.0.1:{mport}$request_uri;
        }
    }
"""

SKIP_FIELDS = {"host", "connection"}


class Recorder:
    """A mirror backend: keeps (method, target, fields, body) of each request."""

    def __init__(self, port):
        self.got = []
        self.slow = 0  # slow answers under way
        self.lock = threading.Lock()
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        n = int(self.rfile.readline().split(b";")[0], 16)
                        if n == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            return out, "chunked"
                        out += self.rfile.read(n)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length", "0") or 0)
                return (self.rfile.read(n) if n else b""), (
                    "content-length" if "Content-Length" in self.headers else "none")

            def handle_any(self):
                data, framing = self.body()
                fields = sorted((k.lower(), v) for k, v in self.headers.items()
                                if k.lower() not in SKIP_FIELDS)
                with rec.lock:
                    rec.got.append({"method": self.command, "target": self.path,
                                    "fields": fields, "body": data, "framing": framing})
                if self.headers.get("X-Slow"):
                    with rec.lock:
                        rec.slow += 1
                    time.sleep(3)
                    with rec.lock:
                        rec.slow -= 1
                out = b"mirror answer, dropped\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_any

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.srv = S(("127.0.0.1", port), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.got)

    def take(self, n, t, what):
        sh.wait_for(lambda: self.count() >= n, 20 * t.slow, what)
        with self.lock:
            out, self.got = self.got[:n], self.got[n:]
        return out


def digest(e):
    return {"method": e["method"], "target": e["target"], "fields": e["fields"],
            "body_len": len(e["body"]), "sha": hashlib.sha256(e["body"]).hexdigest()[:12]}


def answer(res):
    """What the backend saw of the main request (its echo), or the body."""
    if res.body.startswith(b"{"):
        j = res.json()
        return (j["method"], j["target"], j["body_len"], j["body_sha256"])
    if res.body.startswith(b"HTTP/"):  # curl -I: the head, not comparable
        return None
    return res.body


def main(t):
    nginx_ref.skip_unless_available()
    be = t.backend("b1")
    mport, nmport, dead = t.port(), t.port(), t.port()
    srec, nrec = Recorder(mport), Recorder(nmport)
    port, nport, h2 = t.port(), t.port(), t.port()

    def conf(p, mp):
        return (SERVERS.replace("{port}", str(p)).replace("{mport}", str(mp))
                .replace("{bport}", str(be.port)).replace("{dead}", str(dead)))
    h2conf = conf(h2, mport).replace("listen 127.0.0.1:%d;" % h2,
                                     "listen 127.0.0.1:%d http2;" % h2)
    node = t.shoal("http {\n%s\n%s\n}\n" % (conf(port, mport), h2conf), port=port)
    nginx_ref.start(t, conf(nport, nmport), port=nport)

    def both(what, path, *args, mirrors=1, expect=200):
        a = t.curl("http://127.0.0.1:%d%s" % (port, path), *args)
        b = t.curl("http://127.0.0.1:%d%s" % (nport, path), *args)
        t.check(a.status == b.status == expect and answer(a) == answer(b),
                "%s: the client's answer %s (nginx %s), same: %r %r" % (
                    what, a.status, b.status, answer(a), answer(b)))
        ga = [digest(e) for e in srec.take(mirrors, t, "shoal's mirror: " + what)]
        gb = [digest(e) for e in nrec.take(mirrors, t, "nginx's mirror: " + what)]
        ga.sort(key=lambda e: str(e["fields"]))
        gb.sort(key=lambda e: str(e["fields"]))
        t.check(ga == gb, "%s: the mirror got the same %d request(s) as nginx's" % (
            what, mirrors), "shoal %r\nnginx %r" % (ga, gb))
        return a, ga

    _, g = both("GET with arguments and fields", "/echo?a=1&b=two", "-H", "X-Test: one",
                "-H", "User-Agent: mirror-test")
    t.check(g[0]["target"] == "/echo?a=1&b=two" and g[0]["method"] == "GET",
            "the mirror sees the client's URI: %r" % g[0]["target"])
    both("HEAD", "/echo", "-I")
    _, g = both("POST with a body", "/echo", "--data-binary", "hello mirror", "-H",
                "Content-Type: text/plain")
    t.check(g[0]["body_len"] == 12, "the mirror got the body: %r" % g[0]["body_len"])
    both("chunked PUT", "/echo", "-X", "PUT", "-H", "Transfer-Encoding: chunked",
         "--data-binary", "c" * 3000)
    big = os.path.join(t._subdir("data"), "big")
    with open(big, "wb") as f:
        f.write(os.urandom(200 * 1024))
    a, g = both("a 200 KB body (over client_body_buffer_size)", "/echo",
                "--data-binary", "@" + big)
    t.check(a.json()["body_len"] == 200 * 1024 and g[0]["body_len"] == 200 * 1024,
            "the backend and the mirror both got 200 KB: %s %s" % (
                a.json()["body_len"], g[0]["body_len"]))
    _, g = both("mirror_request_body off", "/nobody/echo?x=1", "--data-binary", "secret")
    t.check(g[0]["body_len"] == 0, "no body to the mirror: %r" % g[0]["body_len"])
    both("two mirrors", "/two/echo?q", mirrors=2)
    # mirror off, and `return` (rewrite phase, before mirror's precontent):
    # nothing arrives (a request that is mirrored follows as a fence)
    for p in (port, nport):
        t.curl("http://127.0.0.1:%d/off/echo" % p)
        t.curl("http://127.0.0.1:%d/ret?z=9" % p)
    both("fence after mirror off and return", "/echo?fence=1")
    t.check(srec.count() == 0 and nrec.count() == 0,
            "nothing else arrived at either mirror (%d, %d)" % (srec.count(), nrec.count()))

    # a dead mirror: the answer is untouched
    a = t.curl("http://127.0.0.1:%d/dead/echo" % port, "--data-binary", "z" * 100)
    b = t.curl("http://127.0.0.1:%d/dead/echo" % nport, "--data-binary", "z" * 100)
    t.check(a.status == b.status == 200 and a.json()["body_len"] == 100,
            "mirror backend down: the client's answer is 200 as nginx's (%s, %s)" % (
                a.status, b.status))

    # a slow mirror (3 s): the client is answered before it ends, and leaves
    t0 = time.monotonic()
    a = t.curl("http://127.0.0.1:%d/slow/echo?s=1" % port)
    el = time.monotonic() - t0
    t.check(a.status == 200 and el < 2.5,
            "a slow mirror does not delay the answer: %.2f s" % el)
    g = srec.take(1, t, "the slow mirror's request")
    t.check(g[0]["target"] == "/slow/echo?s=1", "the slow mirror got its request: %r" % g[0]["target"])
    t0 = time.monotonic()
    b = t.curl("http://127.0.0.1:%d/slow/echo?s=1" % nport)
    t.log("nginx with the slow mirror answered in %.2f s" % (time.monotonic() - t0))
    nrec.take(1, t, "nginx's slow mirror")

    # HTTP/2
    a = t.curl("http://127.0.0.1:%d/echo?h2=1" % h2, "--http2-prior-knowledge",
               "--data-binary", "over h2")
    g = srec.take(1, t, "the HTTP/2 request's mirror")
    t.check(a.status == 200 and g[0]["target"] == "/echo?h2=1" and g[0]["body"] == b"over h2" and
            g[0]["method"] == "POST", "HTTP/2: mirrored with its body: %r" % digest(g[0]))

    a = t.curl("http://127.0.0.1:%d/echo?h2=2" % h2, "--http2-prior-knowledge",
               "--data-binary", "@" + big)
    g = srec.take(1, t, "the HTTP/2 200 KB request's mirror")
    t.check(a.status == 200 and a.json()["body_len"] == 200 * 1024 and
            len(g[0]["body"]) == 200 * 1024,
            "HTTP/2, 200 KB: the backend and the mirror got it all: %s %d" % (
                a.status, len(g[0]["body"])))

    # many at once
    out = [None] * 100

    def one(i):
        out[i] = t.curl("http://127.0.0.1:%d/echo?n=%d" % (port, i), "--data-binary",
                        "n%d" % i).status
    ths = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    g = srec.take(100, t, "100 concurrent mirrors")
    t.check(all(s == 200 for s in out) and
            sorted(e["target"] for e in g) == sorted("/echo?n=%d" % i for i in range(100)) and
            all(e["body"] == ("n" + e["target"].split("=")[1]).encode() for e in g),
            "100 concurrent mirrored POSTs: all answered, all mirrored with their bodies")
    # the slow mirrors end (their answers dropped); shoal still serves
    sh.wait_for(lambda: srec.slow == 0 and nrec.slow == 0, 20 * t.slow, "the slow mirrors' end")
    t.check(t.curl(node.url("/ret")).status == 200 and node.proc.alive(), "shoal is up")

    # stopping while a slow mirror is under way: a stop drains (waits for
    # it), a second signal stops at once (ends it); both exit 0
    for what in ("draining", "immediate"):
        p3 = t.port()
        n3 = t.shoal("http {\n%s\n}\n" % conf(p3, mport), port=p3)
        a = t.curl("http://127.0.0.1:%d/slow/echo?stop=1" % p3)
        srec.take(1, t, "the slow mirror before the %s stop" % what)
        n3.proc.injected = True  # the test stops it
        t0 = time.monotonic()
        n3.proc.signal(signal.SIGQUIT)
        rc = n3.proc.wait_exit(0.5) if what == "immediate" else None
        if rc is None and what == "immediate":
            n3.proc.signal(signal.SIGQUIT)
        rc = n3.proc.wait_exit(20 * t.slow) if rc is None else rc
        took = time.monotonic() - t0
        t.check(a.status == 200 and rc == 0,
                "%s stop with a mirror under way: exit %s after %.1f s" % (what, rc, took))
        if what == "draining":
            t.check(took > 1.5, "the stop waited for the mirror (%.1f s)" % took)
        else:
            t.check(took < 2.5, "the second signal ended it at once (%.1f s)" % took)
        sh.wait_for(lambda: srec.slow == 0, 20 * t.slow, "the slow mirror's end")


if __name__ == "__main__":
    sh.run(main)
