#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 18: Debian's stock nginx configuration loads as it is.

/etc/nginx (nginx.conf, its modules-enabled/ with load_module lines,
conf.d/, sites-enabled/default, mime.types, snippets) is copied to a
scratch prefix and tested with `shoal -t` (nginx -t on the original beside it): both accept
it; Shoal's only complaints are warnings (load_module: its modules are
built in). Skipped (exit 77) where /etc/nginx/nginx.conf is absent."""

import os
import shutil
import sys

import shoal_harness as sh


def main(t):
    if not os.path.exists("/etc/nginx/nginx.conf"):
        print("SKIP - /etc/nginx/nginx.conf is not installed", flush=True)
        sys.exit(77)
    prefix = os.path.join(t.tmp, "nginx")
    shutil.copytree("/etc/nginx", prefix, symlinks=False)
    conf = os.path.join(prefix, "nginx.conf")
    # the copy's includes must name the copy, not /etc/nginx
    text = open(conf).read().replace("/etc/nginx/", prefix + "/")
    with open(conf, "w") as f:
        f.write(text)
    for d in ("sites-enabled", "conf.d", "modules-enabled"):
        p = os.path.join(prefix, d)
        for name in os.listdir(p) if os.path.isdir(p) else ():
            fp = os.path.join(p, name)
            s = open(fp).read().replace("/etc/nginx/", prefix + "/")
            with open(fp, "w") as f:
                f.write(s)
    r = t.run_shoal(["-t", "-p", prefix + "/", "-c", conf])
    errors = [l for l in r.stderr.splitlines() if "[emerg]" in l or "error" in l.lower()]
    t.check(r.returncode == 0 and "test is successful" in r.stderr,
            "shoal -t accepts Debian's nginx.conf with sites-enabled/default (rc=%d)" % r.returncode,
            r.stderr)
    t.check(not errors, "no error, only warnings", "\n".join(errors))
    if shutil.which("nginx"):
        # nginx on the original (its load_module paths are relative to its own prefix)
        ng = sh.subprocess.run(["nginx", "-t", "-c", "/etc/nginx/nginx.conf"], capture_output=True,
                               text=True, timeout=30)
        t.check(ng.returncode == 0 or "Permission denied" in ng.stderr,
                "nginx -t accepts the same configuration", ng.stderr)


if __name__ == "__main__":
    sh.run(main)
