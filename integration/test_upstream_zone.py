#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Upstream `zone NAME [SIZE]`: the group's runtime state (passive health:
fails and the failure window; smooth round-robin weights; active
connections) is shared by the worker threads of the process, not kept per
worker. With worker_processes 2 and requests on fresh connections (spread
over both workers by SO_REUSEPORT), one at a time:
- max_fails=2 fail_timeout=60s, a dead server (connection refused) and a
  live one: with `zone` the failures seen by both workers add up: the dead
  server is tried exactly twice in the whole process, then out for both
  (without `zone`, a control group in the same run, each worker counts its
  own: logged, more than two as a rule; the process-wide health registry
  only hears of it once one worker reaches max_fails);
- round-robin over two live servers with `zone` alternates strictly across
  the process (b1, b2, b1, ...), whichever worker takes each connection;
  without `zone` each worker has its own position (logged);
- every request is answered 200 (the retry goes to the live server);
- a reload that keeps the group's zone name and servers keeps its state
  (nginx keeps shared zones across reloads): a dead server that failed
  once of max_fails=3 before SIGHUP fails twice more after it, not three
  times (the process-wide health registry keeps a server that reached
  max_fails out across reloads anyway, so the count below it is what
  shows the zone's state);
- `zone` without a size; a bad size is refused.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shoal_harness as sh  # noqa: E402


def main(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    dz, dn, dk = t.port(), t.port(), t.port()  # nothing listens there
    node = t.shoal("""
        worker_processes 2;
        events { }
        http {
            upstream zoned {
                zone zoned 64k;
                server 127.0.0.1:%d max_fails=2 fail_timeout=60s;
                server 127.0.0.1:%d max_fails=2 fail_timeout=60s;
            }
            upstream plain {
                server 127.0.0.1:%d max_fails=2 fail_timeout=60s;
                server 127.0.0.1:%d max_fails=2 fail_timeout=60s;
            }
            upstream kept {
                zone kept;
                server 127.0.0.1:%d max_fails=3 fail_timeout=60s;
                server 127.0.0.1:%d max_fails=3 fail_timeout=60s;
            }
            upstream rrz { zone rrz; server 127.0.0.1:%d; server 127.0.0.1:%d; }
            upstream rrp { server 127.0.0.1:%d; server 127.0.0.1:%d; }
            server {
                listen 127.0.0.1:{port};
                location /z/ { proxy_pass http://zoned/; }
                location /p/ { proxy_pass http://plain/; }
                location /k/ { proxy_pass http://kept/; }
                location /rrz/ { proxy_pass http://rrz/; }
                location /rrp/ { proxy_pass http://rrp/; }
            }
        }""" % (dz, b1.port, dn, b1.port, dk, b1.port, b1.port, b2.port, b1.port, b2.port))
    st = []
    for _ in range(40):
        st.append(t.curl(node.url("/z/echo"), "-H", "Connection: close").status)
        st.append(t.curl(node.url("/p/echo"), "-H", "Connection: close").status)
    t.check(st == [200] * 80, "every request answered 200: %s" % sorted(set(st)))
    log = os.path.join(node.prefix, "logs", "error.log")

    def failures(port):
        text = node.proc.stderr()
        if os.path.exists(log):
            text += open(log, errors="replace").read()
        return sum(1 for line in text.splitlines()
                   if "connect() failed" in line and ":%d" % port in line)
    fz, fp = failures(dz), failures(dn)
    t.log("without zone: the dead server was tried %d times" % fp)
    t.check(fz == 2, "with zone the failures of both workers add up to max_fails=2: tried %d "
            "time(s) (2 expected)" % fz)

    def order(path):
        out = []
        for _ in range(20):
            r = t.curl(node.url(path), "-H", "Connection: close")
            out.append(r.json()["backend"] if r.status == 200 else r.status)
        return out
    z = order("/rrz/echo")
    t.check(all(z[i] != z[i + 1] for i in range(len(z) - 1)) and set(z) == {"b1", "b2"},
            "with zone round-robin alternates across the process: %s" % z)
    t.log("without zone (each worker its own position): %s" % order("/rrp/echo"))

    def reload(n):
        node.proc.signal(signal.SIGHUP)
        sh.wait_for(lambda: node.proc.stderr().count("reload: configuration ok") >= n,
                    15 * t.slow, "reload %d" % n)

    def kept(n):
        return [t.curl(node.url("/k/echo"), "-H", "Connection: close").status
                for _ in range(n)]
    st = kept(1)
    t.check(st == [200] and failures(dk) == 1, "kept: the dead server failed once of max_fails=3 "
            "(%d)" % failures(dk))
    reload(1)
    st = kept(10)
    t.check(st == [200] * 10 and failures(dk) == 3,
            "a reload with the same zone and servers keeps the state: the dead server failed "
            "%d time(s) in all (3 expected: 1 before the reload, 2 after; a fresh state makes "
            "it 4)" % failures(dk))
    t.check(node.proc.alive(), "shoal is up after the reload")

    conf = t.write_conf("events { }\nhttp { upstream u { zone u bad; server 127.0.0.1:1; } }\n",
                        name="bad.conf")
    r = t.run_shoal(["-t", "-c", conf])
    t.check(r.returncode != 0 and "invalid zone size" in r.stderr, "a bad size is refused: %s" %
            r.stderr.strip()[-160:])


if __name__ == "__main__":
    sh.run(main)
