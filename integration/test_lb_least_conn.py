#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: least_conn with real backends.

Two backends under `least_conn`. While one of them holds a slow request
(/slow?ms=), every fast request goes to the idle one; under plain round
robin the same traffic alternates and half of it queues on the busy one
(the contrast shows the method, not the backends, makes the choice). Once
the slow request ends, both share the load again."""

import collections
import threading

import shoal_harness as sh


def slow_then_fast(t, node, prefix, b1, b2):
    """Start a slow request on `prefix`, wait until a backend holds it, then
    send 10 fast requests. Returns (busy backend name, fast names, slow result)."""
    box = {}
    th = threading.Thread(target=lambda: box.setdefault(
        "r", t.curl(node.url(prefix + "slow?ms=4000"), timeout=30)), daemon=True)
    th.start()

    def holder():
        for b in (b1, b2):
            if b.stats()["in_flight"] == 1:
                return b.name
        return None
    busy = sh.wait_for(holder, 10, "a backend to hold the slow request")
    fast = []
    for _ in range(10):
        r = t.curl(node.url(prefix))
        # only what was answered while the slow one was still held counts
        # (a loaded sanitizer run can outlast the 4 s hold)
        if not th.is_alive():
            t.log("%s: the slow request ended after %d fast ones" % (prefix, len(fast)))
            break
        fast.append(r.header("X-Backend"))
    th.join(40)
    return busy, fast, box.get("r")


def main(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    node = t.shoal(f"""
        worker_processes 1;
        events {{ }}
        http {{
            upstream lc {{
                least_conn;
                server 127.0.0.1:{b1.port};
                server 127.0.0.1:{b2.port};
                keepalive 8;
            }}
            upstream rr {{
                server 127.0.0.1:{b1.port};
                server 127.0.0.1:{b2.port};
                keepalive 8;
            }}
            server {{
                listen 127.0.0.1:{{port}};
                location /lc/ {{ proxy_pass http://lc/; }}
                location /rr/ {{ proxy_pass http://rr/; }}
            }}
        }}""")

    # idle: least_conn ties are broken by round robin, so both serve
    seq = [t.curl(node.url("/lc/")).header("X-Backend") for _ in range(6)]
    t.check(collections.Counter(seq) == {"b1": 3, "b2": 3},
            "idle backends: least_conn ties alternate", seq)

    busy, fast, slow = slow_then_fast(t, node, "/lc/", b1, b2)
    idle = "b2" if busy == "b1" else "b1"
    t.log("least_conn: slow request on %s; fast requests went to %s" % (busy, fast))
    t.check(len(fast) >= 4 and fast == [idle] * len(fast),
            "least_conn: every fast request (of %d) goes to the idle %s" % (len(fast), idle), fast)
    t.check(slow is not None and slow.status == 200 and slow.header("X-Backend") == busy,
            "the slow request completes on %s" % busy, slow)

    busy, fast, slow = slow_then_fast(t, node, "/rr/", b1, b2)
    t.log("round robin: slow request on %s; fast requests went to %s" % (busy, fast))
    t.check(len(fast) >= 4 and abs(fast.count(busy) - len(fast) / 2) <= 0.5,
            "contrast: round robin sends half of them to the busy one", fast)

    seq = [t.curl(node.url("/lc/")).header("X-Backend") for _ in range(6)]
    t.check(collections.Counter(seq) == {"b1": 3, "b2": 3},
            "after the slow request: both share again", seq)


if __name__ == "__main__":
    sh.run(main)
