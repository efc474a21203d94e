#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 13: active health checks on one node (health_check and match, as
NGINX Plus has them), with real backends.

- Checks go out on their own (no client traffic): the counting backend sees
  /hdr requests at about one per interval.
- A killed backend is taken out by the checks: once it is seen failing no
  request meets it (no "connect() failed" for client requests), and it is
  taken back after `passes` passes when it returns.
- match: a status, a header and a body condition; a backend whose answer
  does not match is out (a group of one answers 502, as NGINX Plus).
- mandatory: a server waits for its first pass; a server that never passes
  never gets a request.
- Configuration errors: unknown match, health_check without an upstream.
"""

import re
import signal
import time

import shoal_harness as sh


def main(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    b3 = t.backend("b3")
    dead = t.port()  # nothing listens here
    iv = 0.4
    node = t.shoal(f"""
        worker_processes 2;
        events {{ }}
        http {{
            match ok_hdr {{
                status 200-299;
                header Content-Type ~ "text/";
                header X-Ready = yes;
                body ~ "^hdr";
            }}
            match want_teapot {{
                status 418;
            }}
            upstream g {{
                server 127.0.0.1:{b1.port};
                server 127.0.0.1:{b2.port};
            }}
            upstream m {{
                server 127.0.0.1:{b3.port};
            }}
            upstream t {{
                server 127.0.0.1:{b3.port};
            }}
            upstream mand {{
                server 127.0.0.1:{b1.port};
                server 127.0.0.1:{dead};
            }}
            server {{
                listen 127.0.0.1:{{port}};
                location / {{
                    proxy_pass http://g;
                    health_check interval={int(iv * 1000)}ms fails=1 passes=2 uri=/hdr?hc=1;
                }}
                location /m/ {{
                    proxy_pass http://m/;
                    health_check interval={int(iv * 1000)}ms match=ok_hdr uri=/hdr?X-Ready=yes;
                }}
                location /t/ {{
                    proxy_pass http://t/;
                    health_check interval={int(iv * 1000)}ms match=want_teapot uri=/hdr?status=200;
                }}
                location /mand/ {{
                    proxy_pass http://mand/;
                    health_check interval={int(iv * 1000)}ms uri=/hdr mandatory;
                }}
            }}
        }}""")

    def connect_failures(port):
        return len(re.findall(r"connect\(\) failed.*127\.0\.0\.1:%d" % port, node.proc.stderr()))

    def hc_count(b):
        return b.stats().get("paths", {}).get("/hdr", 0)

    # checks go out without any client traffic
    sh.wait_for(lambda: hc_count(b1) >= 3 and hc_count(b2) >= 3, 10 * t.slow,
                "health checks to reach b1 and b2")
    c0, t0 = hc_count(b2), time.monotonic()
    sh.wait_for(lambda: time.monotonic() - t0 >= 2.0, 5, "two seconds")
    rate = (hc_count(b2) - c0) / (time.monotonic() - t0)
    t.check(0.5 / iv <= rate <= 1.5 / iv + 1, "about one check per interval (%.2f/s, interval %.1fs)"
            % (rate, iv))

    seq = [t.curl(node.url("/")).header("X-Backend") for _ in range(12)]
    t.check(set(seq) == {"b1", "b2"}, "both serve while healthy", seq)

    # kill b2: the checks take it out; no client request meets it after that
    b2.proc.kill()
    t_kill = time.monotonic()

    def b2_out():
        return ("check of 127.0.0.1:%d in upstream \"g\" failed" % b2.port) in node.proc.stderr()
    sh.wait_for(b2_out, 3 * iv * t.slow + 3, "the checks to see b2 failing")
    detect = time.monotonic() - t_kill
    t.log("b2 seen failing %.2fs after the kill (interval %.1fs)" % (detect, iv))
    t.check(detect <= 2 * iv + 1.0 * t.slow, "b2 taken out within two intervals (%.2fs)" % detect)
    before = connect_failures(b2.port)
    res = [t.curl(node.url("/")) for _ in range(12)]
    t.check(all(r.status == 200 and r.header("X-Backend") == "b1" for r in res),
            "b2 out: every request answered by b1",
            [(r.status, r.header("X-Backend")) for r in res])
    t.check(connect_failures(b2.port) == before,
            "no client request met the dead b2 (%d connect failures)" % (connect_failures(b2.port) - before))

    # b2 back: taken back after passes=2 passes
    b2 = t.backend("b2", port=b2.port)
    t_up = time.monotonic()
    sh.wait_for(lambda: t.curl(node.url("/")).header("X-Backend") == "b2", 10 * t.slow,
                "b2 to be taken back")
    back = time.monotonic() - t_up
    t.log("b2 back after %.2fs (passes=2, interval %.1fs)" % (back, iv))
    t.check(back >= iv * 0.9, "b2 needs two passes before it is back (%.2fs)" % back)

    # match: b3 answers /hdr?X-Ready=yes with a text/plain 200 "hdr": matches
    sh.wait_for(lambda: t.curl(node.url("/m/")).status == 200, 10 * t.slow, "/m/ served by b3")
    r = t.curl(node.url("/m/"))
    t.check(r.status == 200 and r.header("X-Backend") == "b3", "match ok_hdr passes: b3 serves", r)
    # want_teapot never matches a 200: the group of one answers 502
    sh.wait_for(lambda: t.curl(node.url("/t/")).status == 502, 10 * t.slow,
                "/t/ to answer 502 (its only server fails the match)")
    t.check(True, "match want_teapot fails on a 200: a group of one answers 502")

    # mandatory: the dead server never gets a request, b1 serves everything
    res = [t.curl(node.url("/mand/")) for _ in range(8)]
    t.check(all(r.status == 200 and r.header("X-Backend") == "b1" for r in res)
            and connect_failures(dead) == 0,
            "mandatory: a server that never passed gets no request",
            [(r.status, r.header("X-Backend")) for r in res])

    # a reload keeps each server's health: b2 killed and out, then SIGHUP;
    # the new generation never tries it either, and the checks go on
    b2.proc.kill()
    sh.wait_for(lambda: node.proc.stderr().count("check of 127.0.0.1:%d in upstream \"g\" failed"
                                                 % b2.port) >= 2, 10 * t.slow, "b2 out again")
    before = connect_failures(b2.port)
    node.proc.signal(signal.SIGHUP)
    sh.wait_for(lambda: "reload: configuration ok" in node.proc.stderr(), 10 * t.slow,
                "the reload")
    res = [t.curl(node.url("/")) for _ in range(10)]
    t.check(all(r.status == 200 and r.header("X-Backend") == "b1" for r in res)
            and connect_failures(b2.port) == before,
            "after a reload b2 is still out: no request meets it",
            [(r.status, r.header("X-Backend")) for r in res])
    c1 = hc_count(b1)
    sh.wait_for(lambda: hc_count(b1) >= c1 + 2, 10 * t.slow, "checks to go on after the reload")
    t.check(True, "checks go on after the reload")

    # configuration errors
    for conf, want in [
        ("location / { proxy_pass http://g; health_check match=nope; }", "match \"nope\" not found"),
        ("location / { root /tmp; health_check; }", "needs \"proxy_pass\""),
        ("location / { proxy_pass http://g; health_check interval=x; }", "invalid parameter"),
    ]:
        path = t.write_conf("""
            events { }
            http {
                upstream g { server 127.0.0.1:1; }
                server { listen 127.0.0.1:1; %s }
            }""" % conf)
        rc = t.run_shoal(["-t", "-c", path])
        t.check(rc.returncode != 0 and want in rc.stderr, "-t refuses: %s" % want, rc.stderr)


if __name__ == "__main__":
    sh.run(main)
