#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: passive health (max_fails / fail_timeout) with real backends.

Two backends, max_fails=1 fail_timeout=8s (long enough that a loaded
machine restarting b2 is still well inside it). One is killed: the request that
meets it is retried on the other (the client sees a 200), and for
fail_timeout nobody tries it again (one "connect() failed" in the log, not
one per request), even after it is restarted on its port; after
fail_timeout it gets a probe, and then its share again. The same with
max_fails=3 on another upstream: three failures are needed."""

import re
import time

import shoal_harness as sh


def main(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    node = t.shoal(f"""
        worker_processes 1;
        events {{ }}
        http {{
            upstream g {{
                server 127.0.0.1:{b1.port} max_fails=1 fail_timeout=8s;
                server 127.0.0.1:{b2.port} max_fails=1 fail_timeout=8s;
            }}
            upstream g3 {{
                server 127.0.0.1:{b1.port} max_fails=3 fail_timeout=30s;
                server 127.0.0.1:{b2.port} max_fails=3 fail_timeout=30s;
            }}
            server {{
                listen 127.0.0.1:{{port}};
                location / {{ proxy_pass http://g; }}
                location /three/ {{ proxy_pass http://g3/; }}
            }}
        }}""")

    def connect_failures():
        return len(re.findall(r"connect\(\) failed.*127\.0\.0\.1:%d" % b2.port, node.proc.stderr()))

    seq = [t.curl(node.url("/")).header("X-Backend") for _ in range(4)]
    t.check(sorted(seq) == ["b1", "b1", "b2", "b2"], "both serve while healthy", seq)

    b2.proc.kill()
    t_kill = time.monotonic()
    results = [t.curl(node.url("/")) for _ in range(10)]
    t.check(all(r.status == 200 and r.header("X-Backend") == "b1" for r in results),
            "b2 killed: every request is answered by b1 (the one meeting b2 retried)",
            [(r.status, r.header("X-Backend")) for r in results])
    t.check(connect_failures() == 1, "b2 was tried once, then left out (%d connect failures)"
            % connect_failures(), node.proc.tail())

    b2 = t.backend("b2", port=b2.port)
    # still inside fail_timeout: b2 is up again but left out
    early = []
    while not early or time.monotonic() - t_kill < 5.0:
        early.append(t.curl(node.url("/")).header("X-Backend"))
    t.check(early and all(n == "b1" for n in early) and b2.stats()["received"] == 0,
            "within fail_timeout the restarted b2 gets nothing (%d requests)" % len(early), early)

    def b2_back():
        return t.curl(node.url("/")).header("X-Backend") == "b2"
    sh.wait_for(b2_back, 20, "b2 to be taken back after fail_timeout")
    t.check(time.monotonic() - t_kill >= 8.0 - 0.1, "b2 not taken back before fail_timeout")
    t.log("b2 back after %.1fs (fail_timeout 8s)" % (time.monotonic() - t_kill))
    seq = [t.curl(node.url("/")).header("X-Backend") for _ in range(10)]
    t.check(seq.count("b2") == 5, "b2 has its share again", seq)

    # max_fails=3: the first two failures leave it in
    b2.proc.kill()
    before = connect_failures()
    seq = [t.curl(node.url("/three/")) for _ in range(12)]
    t.check(all(r.status == 200 and r.header("X-Backend") == "b1" for r in seq),
            "max_fails=3: every request answered by b1", [(r.status, r.header("X-Backend")) for r in seq])
    t.check(connect_failures() - before == 3,
            "b2 tried exactly 3 times before being left out (%d)" % (connect_failures() - before))

    b1.proc.kill()
    r = t.curl(node.url("/"))
    t.check(r.status == 502 and r.elapsed < 1.0 * t.slow, "all down: fast 502 (%.3fs)" % r.elapsed, r)


if __name__ == "__main__":
    sh.run(main)
