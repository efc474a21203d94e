#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 2: a backend that refuses or dies gives the client a 502 at once.

Refused: an upstream server and a direct proxy_pass on a port where nothing
listens (reserved through the harness, never bound) answer 502, repeatedly,
each within a generous bound (BOUND seconds) that catches a hang; times are
printed. Dies mid-request: the backend is SIGKILLed while it holds a slow
request; the client gets a 502 promptly. Dies mid-response: the backend
resets the connection after 1 MiB of a 50 MiB body (Content-Length and
chunked); the client's transfer must end promptly as an error (it must not
look complete, and must not hang). Recovery: with idle pooled connections
to a backend that is then killed and restarted on the same port, the next
request succeeds (a stale pooled connection is not used, or is retried).
Broken responses: a backend that answers with something that is not HTTP,
with Content-Length and Transfer-Encoding together, with a bad
Content-Length, or closes without a byte, gives the client a 502 at once,
and the backend is used again for the next request."""

import subprocess
import time

import shoal_harness as sh

BOUND = 3.0  # seconds; a hang detector, not a benchmark


def main(t):
    global BOUND
    BOUND *= t.slow  # a sanitizer build on a loaded machine is slower, a hang is not
    dead = t.port()  # reserved, nothing listens
    b_kill = t.backend("victim")
    b_abort = t.backend("aborter")
    b_abort2 = t.backend("aborter2")
    b_re = t.backend("phoenix")
    b_bad = t.backend("liar")
    node = t.shoal(f"""
        events {{ }}
        http {{
            upstream deadpool {{ server 127.0.0.1:{dead}; keepalive 4; }}
            upstream victim {{ server 127.0.0.1:{b_kill.port}; keepalive 4; }}
            upstream aborter {{ server 127.0.0.1:{b_abort.port}; keepalive 4; }}
            upstream aborter2 {{ server 127.0.0.1:{b_abort2.port}; keepalive 4; }}
            upstream phoenix {{ server 127.0.0.1:{b_re.port}; keepalive 4; }}
            upstream liar {{ server 127.0.0.1:{b_bad.port}; keepalive 4; }}
            server {{
                listen 127.0.0.1:{{port}};
                location /dead/ {{ proxy_pass http://deadpool; }}
                location /deaddirect/ {{ proxy_pass http://127.0.0.1:{dead}; }}
                location / {{ proxy_pass http://victim; }}
                location /stream {{ proxy_pass http://aborter; }}
                location /ab2/ {{ proxy_pass http://aborter2; }}
                location /phoenix/ {{ proxy_pass http://phoenix; }}
                location /alive {{ return 200 "alive"; }}
                location /liar/ {{ proxy_pass http://liar; }}
            }}
        }}""")

    # -- refused --
    for i, path in enumerate(["/dead/x", "/dead/y", "/deaddirect/x", "/dead/z"]):
        r = t.curl(node.url(path), timeout=30)
        t.check(r.status == 502 and r.elapsed < BOUND,
                "GET %s with nothing listening upstream: 502 in %.3f s (bound %.0f s)" % (path, r.elapsed, BOUND), r)
    r = t.curl(node.url("/dead/post"), "--data-binary", "abc", timeout=30)
    t.check(r.status == 502 and r.elapsed < BOUND, "POST to a refused upstream: 502 in %.3f s" % r.elapsed, r)
    # Several at once, on one client connection too.
    r = t.curl(node.url("/dead/1"), node.url("/dead/2"), node.url("/dead/3"), timeout=30)
    t.check(r.rc == 0 and r.status == 502 and r.elapsed < BOUND,
            "three 502s on one client connection (%.3f s), connection kept" % r.elapsed, r)

    # -- dies mid-request --
    r = t.curl(node.url("/"))
    t.require(r.status == 200 and r.header("X-Backend") == "victim", "victim answers through the node", r)
    curl = subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30",
                             node.url("/slow?ms=20000")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sh.wait_for(lambda: b_kill.stats()["in_flight"] >= 1, 10, "the victim to hold the slow request")
        b_kill.proc.kill()
        t0 = time.monotonic()
        out, err = curl.communicate(timeout=40)
        dt = time.monotonic() - t0
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait()
    t.check(out == b"502" and dt < BOUND,
            "backend SIGKILLed while holding a request: client got %s in %.3f s after the kill" % (out.decode(), dt),
            err)
    r = t.curl(node.url("/"), timeout=30)
    t.check(r.status == 502 and r.elapsed < BOUND, "then a new request to the dead victim: 502 in %.3f s" % r.elapsed, r)

    # -- dies mid-response -- (one backend per framing, so one case cannot
    # spoil the other)
    total = 50 << 20
    for chunked, prefix in ((False, ""), (True, "/ab2")):
        what = "chunked" if chunked else "Content-Length"
        r = t.curl(node.url("%s/stream?bytes=%d&abort_after=%d%s"
                            % (prefix, total, 1 << 20, "&chunked=1" if chunked else "")),
                   sink="sha256", timeout=30)
        t.check(r.status == 200 and r.rc != 0 and r.body_len < total and r.elapsed < BOUND,
                "backend resets after 1 MiB of a 50 MiB %s response: client transfer fails (curl rc=%s, %d bytes) "
                "in %.3f s" % (what, r.rc, r.body_len or 0, r.elapsed), r)
        # The only server of its upstream: nginx never marks it unavailable.
        r = t.curl(node.url("%s/stream?bytes=1000" % prefix))
        t.check(r.status == 200 and r.body_len == 1000,
                "the backend that reset (%s) is used again for the next request (sole server of its upstream)"
                % what, r)

    # -- recovery after a restart on the same port --
    for i in range(4):
        r = t.curl(node.url("/phoenix/%d" % i))
    t.check(r.status == 404 and r.header("X-Backend") == "phoenix", "phoenix reachable (fills the pool)", r)
    b_re.proc.kill()
    b_re2 = t.backend("phoenix2", port=b_re.port)
    r = t.curl(node.url("/phoenix/again"), timeout=30)
    t.check(r.status == 404 and r.header("X-Backend") == "phoenix2",
            "phoenix SIGKILLed with idle pooled connections and restarted on the same port: "
            "the next request reaches the new one (no stale pooled connection used)", r)
    b_re2.proc.kill()
    r = t.curl(node.url("/phoenix/while-dead"), timeout=30)
    t.check(r.status == 502 and r.elapsed < BOUND,
            "killed again (pool holds its connection): 502 in %.3f s" % r.elapsed, r)
    b_re3 = t.backend("phoenix3", port=b_re.port)
    r = t.curl(node.url("/phoenix/third"), timeout=30)
    t.check(r.status == 404 and r.header("X-Backend") == "phoenix3",
            "restarted again: the next request reaches it at once (a sole server is never marked down)", r)

    # -- broken responses --
    for kind in ("garbage", "cl_te", "bad_cl", "empty"):
        r = t.curl(node.url("/liar/raw/%s" % kind), timeout=30)
        t.check(r.status == 502 and r.elapsed < BOUND,
                "backend answers %s: client gets 502 in %.3f s (got %s)" % (kind, r.elapsed, r.status), r)
        if kind == "cl_te":
            t.check(b"hello" not in (r.body or b""), "the cl_te body is not passed on", r)
        r = t.curl(node.url("/liar/echo"), timeout=30)
        t.check(r.status == 200 and r.header("X-Backend") == "liar",
                "after %s, the next request to that backend is answered normally" % kind, r)

    # The node survived all of it.
    r = t.curl(node.url("/alive"), timeout=30)
    t.check(node.proc.alive() and r.status == 200 and r.body == b"alive", "node still up and serving", r)


if __name__ == "__main__":
    sh.run(main)
