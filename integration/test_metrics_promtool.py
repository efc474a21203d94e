#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`promtool check metrics` on a real /metrics scrape (issue 17): a node with
a cluster block, an upstream (one answering, one refusing) with an active
health check, a limit zone, a proxy cache and traffic, so that every family
(the other modules' too) has series; promtool (Debian's `prometheus`
package) must find nothing to say. Skipped (77) only when promtool is not
installed."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shoal_harness as sh  # noqa: E402


def main(t):
    promtool = shutil.which("promtool")
    if promtool is None:
        print("SKIP - promtool not found (Debian package prometheus)", flush=True)
        sys.exit(77)
    nodectl = os.path.join(os.path.dirname(t.shoal_bin), "nodectl")
    key = subprocess.run([nodectl, "keygen"], capture_output=True, text=True,
                         timeout=30).stdout.strip()
    with open(os.path.join(t.tmp, "gossip.key"), "w") as f:
        f.write(key + "\n")
    be = t.backend("b1")
    dead = t.port()  # nothing listens there: upstream failures
    aport, gport = t.port(), t.port()
    node = t.shoal("""
        worker_processes 2;
        cluster {
            node_name p1; bind 127.0.0.1:%d; profile local;
            encrypt_key_file %s/gossip.key; admin_listen 127.0.0.1:%d;
        }
        http {
            access_log off;
            limit_req_zone $binary_remote_addr zone=z:1m rate=100r/s;
            proxy_cache_path %s/cache levels=1:2 keys_zone=c1:1m max_size=10m inactive=10m;
            upstream b { server 127.0.0.1:%d; server 127.0.0.1:%d; }
            server {
                listen 127.0.0.1:{port} http2;
                server_name "a\\\\b";
                metrics_location_label on;
                location / {
                    limit_req zone=z burst=100; proxy_pass http://b;
                    health_check interval=200ms uri=/health;
                }
                location /c/ { proxy_cache c1; proxy_cache_valid 200 1m; proxy_pass http://b/; }
                location ~ "^/re\\"x" { return 204; }
            }
        }
        """ % (gport, t.tmp, aport, t.tmp, be.port, dead))
    for i in range(6):
        t.curl(node.url("/echo?%d" % i))
    for _ in range(2):
        t.curl(node.url("/c/echo"))
    t.curl(node.url("/re%22x"), "--http2-prior-knowledge")
    r = t.curl("http://127.0.0.1:%d/metrics" % aport)
    t.require(r.status == 200, "/metrics answers", r)
    text = r.text()
    with open(os.path.join(t.tmp, "metrics.txt"), "w") as f:  # kept for a failure's reader
        f.write(text)
    t.check('server="a\\\\b"' in text and 'location="^/re\\"x"' in text and
            'code="204"' in text and 'reason="error"' in text and "shoal_cache" in text and
            "health" in text,
            "labels escaped (\\ and \"), every kind of series present", text[:300])
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    t.check(p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(),
            "promtool check metrics is clean (%d lines)" % len(text.splitlines()),
            p.stdout + p.stderr)


if __name__ == "__main__":
    sh.run(main)
