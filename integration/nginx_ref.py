# SPDX-License-Identifier: Apache-2.0
"""nginx 1.22 beside shoal, for differential tests: the same http {} text
served by both. nginx runs in the foreground as one process (no master), its
files in the test's temp dir, and is stopped by PID with the test's other
processes. Tests that need it report SKIPPED (exit 77) when it is missing."""
import os
import subprocess
import sys

import shoal_harness as sh

NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")


def available():
    return os.access(NGINX, os.X_OK)


def skip_unless_available():
    if not available():
        print("SKIP - nginx not found at %s" % NGINX, flush=True)
        sys.exit(77)


def skip_unless_module(name):
    """nginx is there and was built with module `name` (as `nginx -V` says),
    else SKIPPED (exit 77)."""
    skip_unless_available()
    v = subprocess.run([NGINX, "-V"], capture_output=True, text=True).stderr
    if name not in v:
        print("SKIP - this nginx has no %s" % name, flush=True)
        sys.exit(77)


def start(t, http_body, port=None, timeout=15.0):
    """Start nginx with `http { <http_body> }`; "{port}" in it is replaced by
    its listen port. Returns (proc, port, prefix dir)."""
    port = port or t.port()
    d = t._subdir("nginx")
    for sub in ("logs", "tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    body = http_body.replace("{port}", str(port))
    conf = """daemon off;
master_process off;
pid %(d)s/nginx.pid;
error_log %(d)s/logs/error.log info;
events { }
http {
    client_body_temp_path %(d)s/tmp/body;
    proxy_temp_path %(d)s/tmp/proxy;
    fastcgi_temp_path %(d)s/tmp/fastcgi;
    uwsgi_temp_path %(d)s/tmp/uwsgi;
    scgi_temp_path %(d)s/tmp/scgi;
%(body)s
}
""" % {"d": d, "body": body}
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    p = t._spawn("nginx", [NGINX, "-p", d + "/", "-c", path], d)

    def ready():
        if not p.alive():
            raise sh.HarnessError("nginx exited (rc=%s): %s" % (p.popen.returncode, p.tail()))
        return sh.port_accepts(port)
    sh.wait_for(ready, timeout, "nginx on 127.0.0.1:%d" % port)
    t.log("nginx pid %d on 127.0.0.1:%d (%s)" % (p.pid, port, d))
    return p, port, d
