#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: a backend SIGKILLed under load costs no GET request.

Three backends in one upstream (max_fails=1 fail_timeout=3s, keepalive
pool). Eight client threads, each with its own keep-alive http.client
connection, send N GET requests in all. When a quarter of them are
done, one backend is SIGKILLed. Checks, as nginx:
- every one of the N answers is 200 (nothing failed: a GET that met the
  dead server, on a fresh or a pooled connection, is retried on another);
- passive health: after the kill the dead server is tried at most about
  once per fail_timeout (counted from the access log's $upstream_addr),
  not in proportion to the load;
- the backend restarted on the same port gets traffic again once
  fail_timeout has passed (and not much later), and then its share."""

import math
import os
import re
import threading
import time
import http.client

import shoal_harness as sh

N = 2000
THREADS = 8
FAIL_TIMEOUT = 3.0


def main(t):
    bs = [t.backend("b%d" % i) for i in (1, 2, 3)]
    victim = bs[1]
    servers = " ".join("server 127.0.0.1:%d max_fails=1 fail_timeout=%ds;" % (b.port, FAIL_TIMEOUT) for b in bs)
    node = t.shoal(f"""
        events {{ }}
        http {{
            log_format up '$msec ua="$upstream_addr" us="$upstream_status" s=$status';
            access_log logs/up.log up;
            keepalive_requests 100000;
            upstream pool {{ {servers} keepalive 16; }}
            server {{
                listen 127.0.0.1:{{port}};
                location / {{ proxy_pass http://pool; }}
            }}
        }}""")
    log = os.path.join(node.prefix, "logs", "up.log")
    r = t.curl(node.url("/"))
    t.require(r.status == 200, "GET / through the node: 200", r)

    lock = threading.Lock()
    state = {"next": 0, "done": 0}
    results = []  # (status or exception text, backend name or None)
    stop = threading.Event()

    def client():
        conn = None
        while not stop.is_set():
            with lock:
                if state["next"] >= N:
                    return
                state["next"] += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=20)
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
                m = re.match(rb"hello from (\S+)", body)
                res = (resp.status, m.group(1).decode() if m else None)
                if resp.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure counts
                res = ("%s: %s" % (type(e).__name__, e), None)
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
            with lock:
                results.append(res)
                state["done"] += 1
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(THREADS)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    try:
        sh.wait_for(lambda: state["done"] >= N // 4, 60, "a quarter of the load done")
    except sh.HarnessError:
        stop.set()
        raise
    kill_wall = time.time()
    victim.proc.kill()
    done_at_kill = state["done"]
    t.log("SIGKILLed %s (pid %d) after %d of %d requests" % (victim.name, victim.pid, done_at_kill, N))
    for th in threads:
        th.join(90)
    stop.set()
    dt = time.monotonic() - t0
    after_kill_s = time.time() - kill_wall
    failures = [r for r in results if r[0] != 200]
    t.log("%d requests in %.2f s (%.0f/s), %.2f s after the kill" % (len(results), dt, len(results) / dt, after_kill_s))
    t.check(len(results) == N and not failures,
            "%d GETs from %d keep-alive clients, one backend SIGKILLed mid-load: every answer 200 "
            "(%d answers, %d failures: %s)" % (N, THREADS, len(results), len(failures), failures[:5]))
    served = {}
    for st, name in results:
        served[name] = served.get(name, 0) + 1
    t.log("served by: %s" % served)

    # Passive health, from the log: tries of the dead server after the kill.
    dead_addr = victim.addr

    def lines():
        try:
            with open(log, "rb") as f:
                return f.read().decode("latin-1").splitlines()
        except FileNotFoundError:
            return []
    sh.wait_for(lambda: len(lines()) >= N + 1, 10, "the access log to hold every request")
    tries_after = 0
    for line in lines():
        m = re.match(r'^(\d+\.\d+) ua="([^"]*)"', line)
        if m and float(m.group(1)) > kill_wall + 0.2:
            tries_after += m.group(2).split(", ").count(dead_addr)
    allowed = 2 + math.ceil(after_kill_s / FAIL_TIMEOUT)
    t.check(tries_after <= allowed,
            "after the kill, the dead server was tried %d times in %.1f s (allowed %d: about once per "
            "fail_timeout %.0fs), out of ~%d requests" % (tries_after, after_kill_s, allowed, FAIL_TIMEOUT,
                                                          N - done_at_kill))

    # Restart on the same port: traffic comes back after fail_timeout.
    back = t.backend("b2-restarted", port=victim.port)
    t_restart = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=20)

    def reached():
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        return back.stats()["received"] > 0
    try:
        sh.wait_for(reached, FAIL_TIMEOUT + 10, "the restarted backend to get traffic", interval=0.05)
        back_after = time.monotonic() - t_restart
        t.check(back_after <= FAIL_TIMEOUT + 3.0,
                "the restarted backend gets traffic %.2f s after its restart (fail_timeout %.0fs)"
                % (back_after, FAIL_TIMEOUT))
    except sh.HarnessError as e:
        t.check(False, "the restarted backend gets traffic within fail_timeout + 10 s: %s" % e)
    n0 = back.stats()["received"]
    st = []
    for i in range(30):
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        st.append(resp.status)
    conn.close()
    t.check(all(s == 200 for s in st), "after the restart, 30 more GETs: all 200 (got %s)" % st)
    n1 = back.stats()["received"]
    t.check(n1 - n0 >= 5, "after it came back, it takes its share: %d of 30 requests (want >= 5)" % (n1 - n0))
    r = t.curl(node.url("/"))
    t.check(node.proc.alive() and r.status == 200, "node still up and serving", r)


if __name__ == "__main__":
    sh.run(main)
