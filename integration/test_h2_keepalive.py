#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 4: HTTP/2 connection limits as nginx (1.19.7+) has them.

- keepalive_requests applies to HTTP/2 connections: after the Nth stream
  the node sends GOAWAY naming it; the client finishes that stream and opens
  a new connection. 12 requests over h2 (TLS) from one curl with
  keepalive_requests 5: all 200, in 3 connections.
- The directives nginx made obsolete in 1.19.7 (http2_idle_timeout,
  http2_max_requests, http2_recv_timeout, http2_max_field_size,
  http2_max_header_size) load with nginx's warning naming the directive to
  use; http2_push is warned as not supported."""

import subprocess

import shoal_harness as sh


def main(t):
    b1 = t.backend("b1")
    cert, key = t.make_cert("k", "k.test", ["DNS:k.test", "IP:127.0.0.1"])
    node = t.shoal(f"""
        events {{ }}
        http {{
            keepalive_requests 5;
            http2_idle_timeout 3m;
            http2_max_requests 1000;
            http2_recv_timeout 30s;
            http2_max_field_size 8k;
            http2_max_header_size 16k;
            server {{
                listen 127.0.0.1:{{port}} ssl http2;
                ssl_certificate {cert};
                ssl_certificate_key {key};
                http2_push_preload on;
                location / {{ proxy_pass http://127.0.0.1:{b1.port}; }}
            }}
        }}""")
    # over TLS: curl 7.88 fails to reuse a prior-knowledge h2c connection
    # (with nginx too)
    urls = [node.url("/k%d/echo" % i).replace("http:", "https:") for i in range(12)]
    argv = ["curl", "-sS", "--http2", "--cacert", cert, "--max-time", "30",
            "-w", "%{http_code} %{num_connects} %{http_version}\\n"]
    for u in urls:  # each URL its own -o: the bodies stay off stdout
        argv += [u, "-o", "/dev/null"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    rows = [line.split() for line in p.stdout.splitlines() if line.strip()]
    codes = [r[0] for r in rows]
    conns = sum(int(r[1]) for r in rows)
    t.check(p.returncode == 0 and codes == ["200"] * 12 and all(r[2] == "2" for r in rows),
            "12 requests over h2 (TLS) from one curl: all 200 over HTTP/2 (got %s)" % codes, p.stderr)
    t.check(conns == 3,
            "keepalive_requests 5: GOAWAY after every 5th stream, so 12 requests take 3 connections "
            "(got %d)" % conns, p.stdout)
    paths = b1.stats()["paths"]
    t.check(all(paths.get("/k%d/echo" % i) == 1 for i in range(12)),
            "the backend saw each request once (%s)" % {k: v for k, v in paths.items() if k.startswith("/k")})

    r = t.run_shoal(["-t", "-c", node.conf_path])
    for name, instead in (("http2_idle_timeout", "keepalive_timeout"),
                          ("http2_max_requests", "keepalive_requests"),
                          ("http2_recv_timeout", "client_header_timeout"),
                          ("http2_max_field_size", "large_client_header_buffers"),
                          ("http2_max_header_size", "large_client_header_buffers")):
        t.check('the "%s" directive is obsolete, use the "%s" directive instead' % (name, instead) in r.stderr,
                "-t warns %s is obsolete (use %s)" % (name, instead), r.stderr)
    t.check(r.returncode == 0 and "http2_push_preload" in r.stderr,
            "-t accepts the file and warns that http2_push_preload is not supported", r.stderr)


sh.run(main)
