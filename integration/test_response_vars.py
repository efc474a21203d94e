#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""$upstream_http_NAME and $sent_http_NAME, as nginx has them.

A node proxies to a backend (which sends X-Backend and Content-Type) over
HTTP/1.1 and h2c, and answers `return` locally. The access log records
$upstream_http_x_backend, $upstream_http_content_type, $sent_http_content_type,
$sent_http_x_added (an add_header value), $sent_http_content_length and
$sent_http_connection; `add_header X-Up $upstream_http_x_backend` shows an
upstream field to the client. Several fields of one name are joined with
", " (nginx 1.23+). A local `return` has no $upstream_http_*."""

import json
import os

import shoal_harness as sh


lines = sh.file_lines


def main(t):
    b1 = t.backend("b1")
    p_h2c = t.port()
    node = t.shoal(f"""
        events {{ }}
        http {{
            log_format rv '$uri|$upstream_http_x_backend|$upstream_http_content_type|'
                          '$sent_http_content_type|$sent_http_x_added|$sent_http_content_length|'
                          '$sent_http_connection|$sent_http_x_two';
            access_log logs/rv.log rv;
            server {{
                listen 127.0.0.1:{{port}};
                listen 127.0.0.1:{p_h2c} http2;
                add_header X-Added "yes-$status";
                add_header X-Up $upstream_http_x_backend;
                add_header X-Two a;
                add_header X-Two b;
                location / {{ proxy_pass http://127.0.0.1:{b1.port}; }}
                location = /local {{ return 200 "local\\n"; }}
            }}
        }}""")
    log = os.path.join(node.prefix, "logs", "rv.log")
    r = t.curl(node.url("/h1/echo"), "-H", "Connection: close")
    t.check(r.status == 200 and r.header("X-Up") == "b1",
            "add_header X-Up $upstream_http_x_backend: the client sees X-Up: b1 (got %r)" % r.header("X-Up"), r)
    r2 = t.curl("http://127.0.0.1:%d/h2/echo" % p_h2c, "--http2-prior-knowledge")
    t.check(r2.status == 200 and r2.header("x-up") == "b1",
            "over h2c too (got %r)" % r2.header("x-up"), r2)
    r3 = t.curl(node.url("/local"))
    t.check(r3.status == 200 and r3.header("X-Up") is None,
            "a local return has no upstream field: no X-Up (nginx skips an empty add_header)", r3)

    sh.wait_for(lambda: len(lines(log)) >= 3, 10, "three log lines")
    got = {l.split("|")[0]: l.split("|") for l in lines(log)}
    h1 = got.get("/h1/echo", [])
    h1_len = str(len(r.body))
    t.check(h1 == ["/h1/echo", "b1", "application/json", "application/json", "yes-200", h1_len,
                   "close", "a, b"],
            "HTTP/1.1 proxied: upstream_http x_backend/content_type, sent_http content_type, x_added, "
            "content_length, connection, x_two joined (got %s)" % h1)
    h2 = got.get("/h2/echo", [])
    t.check(h2[:6] == ["/h2/echo", "b1", "application/json", "application/json", "yes-200",
                       str(len(r2.body))] and h2[6] == "-" and h2[7] == "a, b",
            "h2c proxied: the same from the HTTP/2 head; no connection field in HTTP/2 (\"-\") (got %s)" % h2)
    loc = got.get("/local", [])
    t.check(loc == ["/local", "-", "-", "text/plain", "yes-200", "6", "-", "a, b"],
            "local return: no upstream fields (logged \"-\" as nginx logs an unset variable); sent "
            "content_type text/plain, length 6 (got %s)" % loc)


sh.run(main)
