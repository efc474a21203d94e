#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 2: basic proxying and `return`.

A node with an upstream of one backend, a direct `proxy_pass http://HOST:PORT`,
and `return` locations. Checks: GET through the proxy (body, status and
X-Backend passed through, path and query unchanged), HEAD, backend statuses
passed through, longest-prefix location match (config order must not
matter), `return CODE`, `return CODE TEXT`, `return 302 URL`, client
keep-alive, and that SIGTERM stops the node promptly."""

import time

import shoal_harness as sh


def main(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    node = t.shoal(f"""
        events {{ }}
        http {{
            upstream be {{
                server 127.0.0.1:{b1.port};
                keepalive 4;
            }}
            server {{
                listen 127.0.0.1:{{port}};
                location /ret/special {{ return 200 "special"; }}
                location /ret/b2/ {{ proxy_pass http://127.0.0.1:{b2.port}; }}
                location /ret/empty {{ return 204; }}
                location /ret/gone {{ return 410; }}
                location /ret/redir {{ return 302 http://example.com/target; }}
                location / {{ proxy_pass http://be; }}
                location /ret/ {{ return 200 "ret"; }}
            }}
        }}""")

    # Proxied GET: the backend's answer, untouched.
    r = t.curl(node.url("/"))
    t.check(r.status == 200 and r.body == b"hello from b1\n", "GET / through the upstream: 200 \"hello from b1\"", r)
    t.check(r.header("X-Backend") == "b1", "response carries X-Backend: b1", r)

    r = t.curl(node.url("/echo?a=1&b=two"))
    t.check(r.status == 200, "GET /echo?a=1&b=two through the upstream is 200", r)
    if r.status == 200:
        e = r.json()
        t.check(e["method"] == "GET", "backend saw method GET", e)
        t.check(e["target"] == "/echo?a=1&b=two",
                "backend saw the target unchanged (/echo?a=1&b=two)", e["target"])
        t.check(e["body_len"] == 0, "backend saw no request body", e)

    # Backend statuses pass through, with their bodies.
    for code in (201, 404, 500, 503):
        r = t.curl(node.url("/status/%d" % code))
        t.check(r.status == code and r.body == b"status %d\n" % code and r.header("X-Backend") == "b1",
                "backend status %d and its body passed through" % code, r)

    # HEAD through the proxy: headers, no body.
    with sh.RawConn(node.port) as c:
        c.send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        head = c.read_response(head_request=True)
        c.send("GET /ret/x HTTP/1.1\r\nHost: t\r\n\r\n")
        after = c.read_response()
    t.check(head.status == 200 and head.header("Content-Length") == "14" and head.header("X-Backend") == "b1",
            "HEAD / is 200 with b1's Content-Length: 14", head)
    t.check(after.status == 200 and after.body == b"ret",
            "HEAD sent no body: the next response on the connection parses cleanly", after)

    # Direct proxy_pass http://HOST:PORT (no upstream block); URI unchanged.
    r = t.curl(node.url("/ret/b2/x"))
    t.check(r.status == 404 and r.header("X-Backend") == "b2" and b"/ret/b2/x" in r.body,
            "proxy_pass http://127.0.0.1:PORT reaches b2 with the path unchanged (b2: 404 /ret/b2/x)", r)

    # Longest prefix wins, whatever the order in the file.
    r = t.curl(node.url("/ret/special/deeper"))
    t.check(r.status == 200 and r.body == b"special",
            "/ret/special/deeper matches `location /ret/special` (return 200 \"special\")", r)
    r = t.curl(node.url("/ret/specia"))
    t.check(r.status == 200 and r.body == b"ret",
            "/ret/specia matches `location /ret/` (listed after `location /`)", r)
    r = t.curl(node.url("/retx"))
    t.check(r.status == 404 and r.header("X-Backend") == "b1", "/retx matches `location /` (proxied)", r)

    # return forms.
    r = t.curl(node.url("/ret/empty"))
    t.check(r.status == 204 and r.body == b"", "return 204 gives 204 and no body", r)
    r = t.curl(node.url("/ret/gone"))
    t.check(r.status == 410, "return 410 gives 410", r)
    r = t.curl(node.url("/ret/redir"))
    t.check(r.status == 302 and r.header("Location") == "http://example.com/target",
            "return 302 URL gives 302 with Location: http://example.com/target", r)

    # Several requests on one client connection (curl reuses it).
    r = t.curl(node.url("/"), node.url("/ret/empty"), node.url("/ret/x"))
    t.check(r.rc == 0 and r.status == 200 and r.body == b"hello from b1\nret",
            "three requests on one client connection all answered", r)
    t.check(r.info.get("num_connects") == "0",
            "curl reused the client connection for the last request (num_connects=0)", r.info)

    # SIGTERM stops the node promptly.
    t0 = time.monotonic()
    rc = t.stop(node, timeout=10)
    dt = time.monotonic() - t0
    t.check(not node.proc.killed, "shoal stopped on SIGTERM within 10 s (took %.2fs, rc=%s)" % (dt, rc),
            node.proc.tail())
    t.check(not sh.port_accepts(node.port), "its port no longer accepts after stop")


if __name__ == "__main__":
    sh.run(main)
