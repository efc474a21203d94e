#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 12: proxy_cache_path's map_size follows the configuration. A 2 MB
map is filled until the node logs "not cached" (every client still gets its
200); a restart with map_size=8m says the map changed, keeps the entries and
stores new ones; a reload with map_size=16m grows the running map."""
import os
import signal
import sys

import shoal_harness as sh

HERE = os.path.dirname(os.path.abspath(__file__))
ORIGIN_PY = os.path.join(HERE, "cache_origin.py")

CONF = """error_log logs/error.log notice;
events { }
http {
    proxy_cache_path %s keys_zone=m1:1m map_size=%s;
    server {
        listen 127.0.0.1:{port};
        add_header X-Cache-Status $upstream_cache_status always;
        proxy_cache m1;
        proxy_cache_valid 200 10m;
        location / { proxy_pass http://127.0.0.1:%d; }
    }
}
"""


def start_origin(t):
    port = t.port()
    p = t._spawn("origin", [sys.executable, ORIGIN_PY, "--port", str(port)], t._subdir("origin"))
    sh.wait_for(lambda: "ready" in p.stdout() and sh.port_accepts(port), 15, "origin")
    return p, port


def log_of(node):
    """The error log and stderr (the store opens with the configuration,
    before the error_log file is)."""
    p = os.path.join(node.prefix, "logs", "error.log")
    return node.proc.stderr() + (open(p).read() if os.path.exists(p) else "")


def main(t):
    origin, oport = start_origin(t)
    cdir = os.path.join(t.tmp, "cache")
    node = t.shoal(CONF % (cdir, "2m", oport))
    n = 0
    bad = []
    while n < 400 and "not cached" not in log_of(node):
        r = t.curl(node.url("/f/%d?size=30000" % n))
        if r.status != 200:
            bad.append((n, r.status))
        n += 1
    t.check("not cached" in log_of(node), "a 2 MB map fills up: \"not cached\" logged after %d"
            % n, log_of(node)[-2000:])
    t.check(not bad, "every client got its 200 while the map was full", bad)
    t.stop(node)

    node = t.shoal(CONF % (cdir, "8m", oport))
    sh.wait_for(lambda: "changed from 2097152 to 8388608 bytes" in log_of(node), 10 * t.slow,
                "the map size change in the log")
    hits = sum(t.curl(node.url("/f/%d?size=30000" % i)).header("X-Cache-Status") == "HIT"
               for i in range(n))
    t.check(hits >= 10, "after a restart with map_size=8m: %d of %d entries survive" % (hits, n))
    for i in range(60):
        t.curl(node.url("/g/%d?size=30000" % i))
    again = [t.curl(node.url("/g/%d?size=30000" % i)).header("X-Cache-Status")
             for i in range(60)]
    t.check(all(s == "HIT" for s in again), "60 new 30 KB entries stored in the larger map",
            again)
    t.check("not cached" not in log_of(node), "no full map after the restart",
            log_of(node)[-2000:])

    # a reload with a larger map_size grows the running map
    with open(node.conf_path) as f:
        text = f.read()
    with open(node.conf_path, "w") as f:
        f.write(text.replace("map_size=8m", "map_size=16m"))
    node.proc.signal(signal.SIGHUP)
    sh.wait_for(lambda: "grown from 8388608 to 16777216 bytes" in log_of(node), 20 * t.slow,
                "the map growing after the reload")
    r = t.curl(node.url("/g/1?size=30000"))
    t.check(r.status == 200 and r.header("X-Cache-Status") == "HIT",
            "after the reload: HIT from the grown map", (r.status, r.headers))
    r = t.curl(node.url("/h/1?size=30000"))
    r = t.curl(node.url("/h/1?size=30000"))
    t.check(r.header("X-Cache-Status") == "HIT", "a new entry stored after the growth",
            r.headers)


sh.run(main)
