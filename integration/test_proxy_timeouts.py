#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: upstream timeouts and the limits on retries, as nginx.

- proxy_read_timeout 1s: /slow?ms=4000 gets 504 after about 1 s; a
  request faster than the timeout gets 200.
- proxy_connect_timeout 1s to a blackhole (a loopback listener with
  backlog 0 whose accept queue is already full, so the kernel drops
  further SYNs and connect() hangs): 504 after about 1 s (nginx: "upstream
  timed out ... while connecting to upstream", 504); with a live second
  server in the group the request is retried there and gets 200.
- Three slow servers with proxy_read_timeout 1s: every one is tried once
  (504 after ~3 s, each backend saw the request once);
  proxy_next_upstream_tries 2 stops after two (~2 s, two backends saw it);
  proxy_next_upstream_timeout 1500ms stops after the try that crosses it
  (~2 s, two backends); with connect timeouts to two blackholes and
  tries 2, the live third server is never reached.
Every case has its own upstream block so that failure accounting
(max_fails) in one cannot change another."""

import socket
import time

import shoal_harness as sh


def blackhole():
    """A loopback listener whose accept queue is full: connects hang."""
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l.bind(("127.0.0.1", 0))
    l.listen(0)
    port = l.getsockname()[1]
    fillers = []
    for _ in range(8):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    # Check: a further connect must not complete within 0.5 s.
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(("127.0.0.1", port))
        hangs = False
    except socket.timeout:
        hangs = True
    except OSError:
        hangs = False
    finally:
        probe.close()
    return port, [l] + fillers, hangs


def main(t):
    bh1, keep1, ok1 = blackhole()
    bh2, keep2, ok2 = blackhole()
    if not (ok1 and ok2):
        print("# SKIP: this kernel completes connects to a listener with a full backlog; "
              "no loopback blackhole for proxy_connect_timeout")
        raise SystemExit(77)  # ctest SKIP_RETURN_CODE: reported skipped, not passed
    bs = [t.backend("b%d" % i) for i in (1, 2, 3)]
    servers = " ".join("server 127.0.0.1:%d;" % b.port for b in bs)
    node = t.shoal(f"""
        events {{ }}
        http {{
            upstream one {{ server 127.0.0.1:{bs[0].port}; }}
            upstream all3 {{ {servers} }}
            upstream tries2 {{ {servers} }}
            upstream nut {{ {servers} }}
            upstream bh_then_live {{ server 127.0.0.1:{bh1}; server 127.0.0.1:{bs[0].port}; }}
            upstream bh2_live {{ server 127.0.0.1:{bh1}; server 127.0.0.1:{bh2}; server 127.0.0.1:{bs[1].port}; }}
            server {{
                listen 127.0.0.1:{{port}};
                proxy_read_timeout 1s;
                proxy_connect_timeout 1s;
                location /read/ {{ proxy_pass http://one/; }}
                location /bh/ {{ proxy_pass http://127.0.0.1:{bh1}/; }}
                location /bhlive/ {{ proxy_pass http://bh_then_live/; }}
                location /all3/ {{ proxy_pass http://all3/; }}
                location /tries2/ {{ proxy_next_upstream_tries 2; proxy_pass http://tries2/; }}
                location /nut/ {{ proxy_next_upstream_timeout 1500ms; proxy_pass http://nut/; }}
                location /bh2live/ {{ proxy_next_upstream_tries 2; proxy_pass http://bh2_live/; }}
            }}
        }}""")

    def slow_counts():
        return [b.stats()["paths"].get("/slow", 0) for b in bs]

    def root_counts():
        return [b.stats()["paths"].get("/", 0) for b in bs]

    # -- proxy_read_timeout --
    r = t.curl(node.url("/read/slow?ms=200"), timeout=30)
    t.check(r.status == 200, "GET /read/slow?ms=200 under proxy_read_timeout 1s: 200", r)
    r = t.curl(node.url("/read/slow?ms=4000"), timeout=30)
    t.check(r.status == 504 and 0.9 <= r.elapsed < 3.0,
            "GET /read/slow?ms=4000 with proxy_read_timeout 1s: 504 after %.2f s (want 504 in 0.9-3 s, got %s)"
            % (r.elapsed, r.status), r)

    # -- proxy_connect_timeout --
    r = t.curl(node.url("/bh/"), timeout=30)
    t.check(r.status == 504 and 0.9 <= r.elapsed < 3.0,
            "GET /bh/ to a blackhole with proxy_connect_timeout 1s: 504 after %.2f s (want 504 in 0.9-3 s, got %s)"
            % (r.elapsed, r.status), r)
    c0 = root_counts()
    r = t.curl(node.url("/bhlive/"), timeout=30)
    c1 = root_counts()
    t.check(r.status == 200 and r.header("X-Backend") == "b1" and 0.9 <= r.elapsed < 3.0 and c1[0] - c0[0] == 1,
            "GET /bhlive/ (blackhole first, live b1 second): connect timeout, retried on b1: 200 after %.2f s"
            % r.elapsed, r)

    # -- retries bounded --
    for path, want_tries, lo, hi, what in (
            ("/all3/slow?ms=5000", 3, 2.8, 4.8, "no limit: all three servers tried"),
            ("/tries2/slow?ms=5000", 2, 1.8, 3.3, "proxy_next_upstream_tries 2: two tries"),
            ("/nut/slow?ms=5000", 2, 1.8, 3.3, "proxy_next_upstream_timeout 1500ms: two tries (the second starts at ~1 s)")):
        c0 = slow_counts()
        r = t.curl(node.url(path), timeout=30)
        c1 = slow_counts()
        d = [b - a for a, b in zip(c0, c1)]
        t.check(r.status == 504 and lo <= r.elapsed < hi and sum(d) == want_tries and max(d) <= 1,
                "GET %s, three servers each slower than proxy_read_timeout 1s, %s: 504 after %.2f s "
                "(want %.1f-%.1f s), per-backend tries %s (want %d in all, at most one each; got status %s)"
                % (path, what, r.elapsed, lo, hi, d, want_tries, r.status), r)

    c0 = root_counts()
    r = t.curl(node.url("/bh2live/"), timeout=30)
    c1 = root_counts()
    t.check(r.status == 504 and 1.8 <= r.elapsed < 3.3 and c1[1] == c0[1],
            "GET /bh2live/ (two blackholes then live b2, proxy_next_upstream_tries 2): 504 after %.2f s "
            "(want 1.8-3.3 s), b2 never reached (got status %s, b2 / count %d -> %d)"
            % (r.elapsed, r.status, c0[1], c1[1]), r)

    for s in keep1 + keep2:
        s.close()
    r = t.curl(node.url("/read/"), timeout=30)
    t.check(node.proc.alive() and r.status == 200, "node still up and serving", r)


if __name__ == "__main__":
    sh.run(main)
