#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""allow/deny and stub_status, as nginx: rules in order, first match wins, a
level with rules replaces the outer ones, `return` runs before access (rewrite
phase before access phase), a denied request gets 403 and never reaches the
backend; stub_status answers nginx's format with counters that grow."""
import re

import shoal_harness as sh

STUB = re.compile(r"Active connections: (\d+) \nserver accepts handled requests\n"
                  r" (\d+) (\d+) (\d+) \nReading: (\d+) Writing: (\d+) Waiting: (\d+) \n$")


def main(t):
    b1 = t.backend("b1")
    node = t.shoal(f"""
        worker_processes 2;
        events {{ }}
        http {{
            upstream be {{ server 127.0.0.1:{b1.port}; }}
            server {{
                listen 127.0.0.1:{{port}};
                allow 127.0.0.2;
                deny all;
                location /status {{ stub_status; allow 127.0.0.1; deny all; }}
                location /open {{ allow all; proxy_pass http://be; }}
                location /first-match {{ deny 127.0.0.1; allow 127.0.0.0/8; proxy_pass http://be; }}
                location /net {{ allow 127.0.0.0/8; deny all; proxy_pass http://be; }}
                location /ret {{ deny all; return 200 "rewrite phase first"; }}
                location / {{ proxy_pass http://be; }}
            }}
        }}""")

    before = b1.stats()["received"]
    r = t.curl(node.url("/"))
    t.check(r.status == 403, "server-level deny all: 403 for 127.0.0.1", r)
    r = t.curl(node.url("/"), "--interface", "127.0.0.2")
    t.check(r.status == 200, "server-level allow 127.0.0.2: 200", r)
    r = t.curl(node.url("/open/echo"))
    t.check(r.status == 200, "a location's own rules replace the server's (allow all)", r)
    r = t.curl(node.url("/first-match/echo"))
    t.check(r.status == 403, "first match wins: deny 127.0.0.1 before allow 127.0.0.0/8", r)
    r = t.curl(node.url("/first-match/echo"), "--interface", "127.0.0.3")
    t.check(r.status == 200, "127.0.0.3 passes deny 127.0.0.1 and matches allow 127.0.0.0/8", r)
    r = t.curl(node.url("/net/echo"), "--interface", "127.9.9.9")
    t.check(r.status == 200, "allow 127.0.0.0/8 covers 127.9.9.9", r)
    r = t.curl(node.url("/ret"))
    t.check(r.status == 200 and r.body == b"rewrite phase first",
            "return answers before access rules (nginx's phase order)", r)
    after = b1.stats()["received"]
    t.check(after - before == 4, "the backend saw only the allowed requests (%d)" % (after - before))

    r = t.curl(node.url("/status"))
    m = STUB.match((r.body or b"").decode("latin-1"))
    t.check(r.status == 200 and m is not None, "stub_status in nginx's format", r)
    r2 = t.curl(node.url("/status"), "--interface", "127.0.0.2")
    t.check(r2.status == 403, "stub_status location denies 127.0.0.2", r2)
    for _ in range(5):
        t.curl(node.url("/open/echo"))
    r = t.curl(node.url("/status"))
    m2 = STUB.match((r.body or b"").decode("latin-1"))
    t.check(m is not None and m2 is not None and int(m2.group(2)) >= int(m.group(2)) + 6
            and int(m2.group(4)) >= int(m.group(4)) + 7,
            "accepts and requests grow with the traffic (%s -> %s)" % (m and m.groups(), m2 and m2.groups()))
    t.check(m2 is not None and int(m2.group(2)) == int(m2.group(3)),
            "accepted == handled (no connection dropped for worker_connections)")


sh.run(main)
