#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 18: the variables nginx configurations use that were missing:
$request_id $connection_time $pipe $request_body $request_completion
$request_body_file $limit_rate $upstream_response_length, beside nginx 1.22
where the value is deterministic:
- $request_id is 32 lower-case hex digits, the same within a request, new
  for each request;
- $connection_time is seconds with milliseconds;
- $pipe is "p" for the second of two requests sent in one write, "." else;
- $request_body reaches the backend (proxy_set_header) as nginx sends it;
- an access log line with $upstream_response_length $request_completion
  $pipe $request_body is nginx's, for a proxied GET, a POST, and a 404."""
import json
import os
import re

import nginx_ref
import shoal_harness as sh

HTTP = """
    log_format v '$request_method $uri|$upstream_response_length|$request_completion|$pipe|$request_body|$request_body_file|$limit_rate';
    server {{
        listen 127.0.0.1:{{port}};
        access_log {log} v;
        location = /id {{ return 200 "$request_id $request_id\\n"; }}
        location = /ct {{ return 200 "$connection_time\\n"; }}
        location = /pipe {{ return 200 "pipe=$pipe\\n"; }}
        location / {{ proxy_pass http://127.0.0.1:{b}; proxy_set_header X-Body $request_body; }}
    }}
"""


def main(t):
    nginx_ref.skip_unless_available()
    b = t.backend("b1")
    root = t._subdir("logs")
    slog = os.path.join(root, "shoal.log")
    nlog = os.path.join(root, "nginx.log")
    node = t.shoal("events { }\nhttp {\n" + HTTP.format(b=b.port, log=slog) + "\n}\n")
    _, nport, _ = nginx_ref.start(t, HTTP.format(b=b.port, log=nlog)
                                  .replace("{{", "{").replace("}}", "}"))

    ids = set()
    for _ in range(3):
        r = t.curl(node.url("/id"))
        parts = r.body.decode().split()
        t.check(r.status == 200 and len(parts) == 2 and parts[0] == parts[1]
                and re.fullmatch(r"[0-9a-f]{32}", parts[0]) is not None,
                "$request_id: 32 hex digits, the same twice in one request", r.body)
        ids.add(parts[0] if parts else None)
    t.check(len(ids) == 3, "$request_id differs between requests", ids)

    r = t.curl(node.url("/ct"))
    t.check(r.status == 200 and re.fullmatch(rb"\d+\.\d{3}\n", r.body) is not None,
            "$connection_time: seconds.milliseconds", r.body)

    for port, who in ((node.port, "shoal"), (nport, "nginx")):
        req = b"GET /pipe HTTP/1.1\r\nHost: x\r\n\r\nGET /pipe HTTP/1.1\r\nHost: x\r\n\r\n"
        resps, c = sh.raw_exchange(port, req, responses=2)
        c.close()
        t.check([x.body for x in resps] == [b"pipe=.\n", b"pipe=p\n"],
                "%s: $pipe is . then p for two requests in one write" % who,
                [x.body for x in resps])

    def backend_body(port, *args):
        r = t.curl("http://127.0.0.1:%d/echo" % port, *args)
        hd = sh.json_headers(r.json()) if r.status == 200 else {}
        return hd.get("x-body")

    for args in ((), ("--data-binary", "hello=world"), ("--data-binary", "")):
        want = backend_body(nport, *args)
        got = backend_body(node.port, *args)
        t.check(got == want, "$request_body to the backend %r: as nginx (%r)" % (args, want),
                "shoal %r nginx %r" % (got, want))

    for args in (("/echo",), ("/echo", "--data-binary", "abc"), ("/status/404",)):
        t.curl("http://127.0.0.1:%d%s" % (nport, args[0]), *args[1:])
        t.curl(node.url(args[0]), *args[1:])

    def lines(path, n):
        def ready():
            return os.path.exists(path) and len(sh.file_lines(path)) >= n
        sh.wait_for(ready, 10 * t.slow, "%d lines in %s" % (n, path))
        return [l for l in sh.file_lines(path) if not l.startswith("GET /id") and
                not l.startswith("GET /ct") and not l.startswith("GET /pipe")]

    # shoal: 3 /id + /ct + 2 /pipe + 3 + 3; nginx: 2 /pipe + 3 + 3
    got = lines(slog, 12)
    want = lines(nlog, 8)
    t.check(got == want, "access log lines with the new variables: as nginx",
            "shoal %r\nnginx %r" % (got, want))


if __name__ == "__main__":
    sh.run(main)
