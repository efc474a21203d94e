#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: access logs through a real node.

The seed's `main` format, the predefined `combined`, and a format with
$upstream_addr, $upstream_status and $request_time, written by a node
serving proxied and `return` requests; lines are checked field by field.
`access_log off` in a location logs nothing; a location with its own
access_log replaces the inherited ones; lines are buffered and reach the
file within the one-second flush (waited for with a deadline), and what
is buffered is written when the node stops."""

import os
import re
import time

import shoal_harness as sh

MAIN_RE = re.compile(
    r'^(?P<addr>\S+) - (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<ua>[^"]*)" "(?P<xff>[^"]*)"$')
COMBINED_RE = re.compile(
    r'^(?P<addr>\S+) - (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<ua>[^"]*)"$')
TIME_RE = re.compile(r'^\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}$')


lines = sh.file_lines


def main(t):
    b1 = t.backend("b1")
    node = t.shoal(f"""
        events {{ }}
        http {{
            log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                            '$status $body_bytes_sent "$http_referer" '
                            '"$http_user_agent" "$http_x_forwarded_for"';
            log_format up 'ua=$upstream_addr us=$upstream_status rt=$request_time '
                          'urt=$upstream_response_time uri=$uri';
            access_log logs/access.log main;
            access_log logs/up.log up;
            upstream be {{ server 127.0.0.1:{b1.port}; keepalive 4; }}
            server {{
                listen 127.0.0.1:{{port}};
                location / {{ proxy_pass http://be; }}
                location /ret {{ return 201 "made"; }}
                location /quiet {{ access_log off; return 200 "shh"; }}
                location /own {{ access_log logs/combined.log combined; return 200 "own"; }}
            }}
        }}""")
    logs = os.path.join(node.prefix, "logs")
    access = os.path.join(logs, "access.log")
    up = os.path.join(logs, "up.log")
    comb = os.path.join(logs, "combined.log")

    r = t.curl(node.url("/echo?q=1"), "-A", "tester/1.0", "-e", "http://ref.example/",
               "-H", "X-Forwarded-For: 9.9.9.9", "-u", "alice:secret")
    t.check(r.status == 200, "proxied GET /echo?q=1 is 200", r)
    proxied_len = len(r.body)
    r = t.curl(node.url("/ret"), "-A", 'quote"agent')
    t.check(r.status == 201, "GET /ret is 201", r)
    r = t.curl(node.url("/quiet"))
    t.check(r.status == 200, "GET /quiet is 200", r)
    r = t.curl(node.url("/own/x"), "-A", "own-agent")
    t.check(r.status == 200, "GET /own/x is 200", r)

    sh.wait_for(lambda: len(lines(access)) >= 2 and len(lines(up)) >= 2 and len(lines(comb)) >= 1,
                10, "log lines flushed within the one-second timer")
    la, lu, lc = lines(access), lines(up), lines(comb)
    t.check(len(la) == 2, "access.log has 2 lines (not /quiet, not /own)", la)
    t.check(len(lu) == 2, "up.log has 2 lines", lu)
    t.check(len(lc) == 1, "combined.log has 1 line (/own only)", lc)

    m = MAIN_RE.match(la[0]) if la else None
    t.check(m is not None, "line 1 parses as `main`", la[:1])
    if m:
        t.check(m["addr"] == "127.0.0.1", "$remote_addr 127.0.0.1", m["addr"])
        t.check(m["user"] == "alice", "$remote_user alice (Basic auth)", m["user"])
        t.check(TIME_RE.match(m["time"]) is not None, "$time_local like 26/Nov/2026:05:00:00 +0000", m["time"])
        t.check(m["request"] == "GET /echo?q=1 HTTP/1.1", "$request", m["request"])
        t.check(m["status"] == "200", "$status 200", m["status"])
        t.check(int(m["bytes"]) == proxied_len, "$body_bytes_sent = body length %d" % proxied_len, m["bytes"])
        t.check(m["referer"] == "http://ref.example/", "$http_referer", m["referer"])
        t.check(m["ua"] == "tester/1.0", "$http_user_agent", m["ua"])
        t.check(m["xff"] == "9.9.9.9", "$http_x_forwarded_for", m["xff"])
    m = MAIN_RE.match(la[1]) if len(la) > 1 else None
    t.check(m is not None, "line 2 parses as `main`", la[1:2])
    if m:
        t.check(m["user"] == "-" and m["referer"] == "-" and m["xff"] == "-",
                "unset variables are logged as -", la[1])
        t.check(m["request"] == "GET /ret HTTP/1.1" and m["status"] == "201" and m["bytes"] == "4",
                "return 201 \"made\": status 201, 4 body bytes", la[1])
        t.check(m["ua"] == "quote\\x22agent", "a quote in a value is escaped as \\x22", m["ua"])

    if len(lu) == 2:
        f = dict(kv.split("=", 1) for kv in lu[0].split(" "))
        t.check(f["ua"] == "127.0.0.1:%d" % b1.port, "$upstream_addr is b1's address", lu[0])
        t.check(f["us"] == "200", "$upstream_status 200", lu[0])
        t.check(re.match(r"^\d+\.\d{3}$", f["rt"]) is not None and float(f["rt"]) < 10,
                "$request_time like 0.003", lu[0])
        t.check(re.match(r"^\d+\.\d{3}$", f["urt"]) is not None, "$upstream_response_time like 0.002", lu[0])
        t.check(f["uri"] == "/echo", "$uri /echo", lu[0])
        g = dict(kv.split("=", 1) for kv in lu[1].split(" "))
        t.check(g["ua"] == "-" and g["us"] == "-" and g["urt"] == "-",
                "no upstream for `return`: $upstream_* are -", lu[1])

    m = COMBINED_RE.match(lc[0]) if lc else None
    t.check(m is not None and m["request"] == "GET /own/x HTTP/1.1" and m["ua"] == "own-agent",
            "combined.log line in the predefined `combined` format", lc)

    # Lines still buffered are written when the node stops.
    for _ in range(3):
        t.curl(node.url("/ret"))
    t.stop(node, timeout=10)
    la = lines(access)
    t.check(len(la) == 5, "the lines buffered at stop reach access.log (5 in all)", la)


if __name__ == "__main__":
    sh.run(main)
