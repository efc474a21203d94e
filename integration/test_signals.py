#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 16: nginx's signals and flags.

- logrotate under load: while h2load keeps 4 HTTP/1.1 connections busy for
  3 s, access.log and error.log are renamed and `shoal -s reopen` (SIGUSR1
  through the pid file) is sent, then SIGUSR1 twice more; every request
  h2load saw answered has exactly one line, in the old file or the new one
  (none lost, none split), the new access.log has lines, the new error.log
  has the reopen notice, and the node never stopped;
- SIGUSR2 is logged and ignored, SIGWINCH ignored: the node keeps serving;
- `shoal -s reload` reloads (the error log says so), `-s quit` drains and
  exits 0 and removes the pid file, `-s reopen` with no node running fails
  with the pid file's path;
- flags: --help and -h print the usage with every flag, -v/--version and
  -V the version (-V also the libraries), -T dumps the main file and its
  includes, -q quiets -t, -g adds main directives (and one also in the file
  is "duplicate", as nginx), -e names the error log when the configuration
  sets none, an unknown flag exits 2."""

import os
import re
import signal
import subprocess
import time

import shoal_harness as sh

CONF = """
error_log logs/error.log notice;
pid logs/shoal.pid;
worker_processes 2;
events { }
http {
    access_log logs/access.log;
    server {
        listen 127.0.0.1:{port};
        location / { return 200 "ok\\n"; }
    }
}
"""


def lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("latin-1").splitlines()
    except FileNotFoundError:
        return []


def flags(t):
    for f in ("--help", "-h", "-?"):
        r = t.run_shoal([f])
        t.check(r.returncode == 0 and all(x in r.stdout for x in ("-s signal", "-T", "-g directives",
                                                                   "-e filename", "-p prefix")),
                "shoal %s prints the usage with every flag" % f, r.stdout + r.stderr)
    for f in ("-v", "--version"):
        r = t.run_shoal([f])
        t.check(r.returncode == 0 and r.stdout.startswith("shoal version "), "shoal %s" % f, r.stdout)
    r = t.run_shoal(["-V"])
    t.check(r.returncode == 0 and "OpenSSL" in r.stdout and "libuv" in r.stdout,
            "shoal -V names the libraries built in", r.stdout)
    r = t.run_shoal(["--bogus"])
    t.check(r.returncode == 2, "an unknown flag exits 2", r.stderr)

    d = t._subdir("flags")
    with open(os.path.join(d, "extra.conf"), "w") as f:
        f.write("# the included file\nkeepalive_timeout 5s;\n")
    conf = t.write_conf("""
        events { }
        http {
            include extra.conf;
            server { listen 127.0.0.1:1; location / { return 200; } }
        }
        """, d=d)
    r = t.run_shoal(["-p", d + "/", "-c", conf, "-T"])
    t.check(r.returncode == 0 and "# configuration file %s:" % conf in r.stdout
            and "# configuration file %s/extra.conf:" % d in r.stdout
            and "# the included file" in r.stdout and "include extra.conf;" in r.stdout,
            "-T dumps the main file and its include, each under its name", r.stdout + r.stderr)
    r = t.run_shoal(["-p", d + "/", "-c", conf, "-t", "-q"])
    t.check(r.returncode == 0 and r.stderr == "", "-t -q: nothing printed when it is fine", r.stderr)
    r = t.run_shoal(["-p", d + "/", "-c", conf, "-t", "-g", "worker_processes 3; pid g.pid;"])
    t.check(r.returncode == 0, "-g adds main-context directives", r.stderr)
    r = t.run_shoal(["-p", d + "/", "-c", conf, "-t", "-g", "worker_processes 3"])
    t.check(r.returncode == 1 and "command line" in r.stderr, "-g without ';': an error naming the command line",
            r.stderr)
    with open(conf, "a") as f:
        f.write("worker_processes 1;\n")
    r = t.run_shoal(["-p", d + "/", "-c", conf, "-t", "-g", "worker_processes 3;"])
    t.check(r.returncode == 1 and "\"worker_processes\" directive is duplicate" in r.stderr,
            "-g with a directive the file also sets: duplicate, as nginx", r.stderr)
    # -e: the error log when the configuration sets none
    port = t.port()
    dead = t.port()  # held by the harness's lock, never listened on
    node = t.shoal("events { }\nhttp { server { listen 127.0.0.1:{port}; "
                   "location / { proxy_pass http://127.0.0.1:%d; } } }\n" % dead,
                   port=port, extra_args=("-e", "logs/e.log"))
    elog = os.path.join(node.prefix, "logs", "e.log")
    t.curl(node.url("/x"))
    sh.wait_for(lambda: any("connect() failed" in l for l in lines(elog)), 10,
                "-e logs/e.log to get the connect() error")
    t.check(True, "-e FILE: the error log goes there when the configuration sets none")
    t.stop(node)


def main(t):
    flags(t)

    port = t.port()
    node = t.shoal(CONF, port=port)
    logs = os.path.join(node.prefix, "logs")
    acc, err, pidf = (os.path.join(logs, n) for n in ("access.log", "error.log", "shoal.pid"))
    sh.wait_for(lambda: os.path.exists(pidf), 5, "the pid file")
    ctl = ["-p", node.prefix, "-c", node.conf_path]

    # ---- logrotate under load
    # a fixed count: every request h2load counts is one the node logged
    load = subprocess.Popen(["h2load", "--h1", "-c", "4", "-n", "60000", "-T", "10",
                             "http://127.0.0.1:%d/" % port],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        sh.wait_for(lambda: len(lines(acc)) > 0, 10, "the first access log lines (1 s flush)")
        t.require(load.poll() is None, "the load still runs when the logs are rotated")
        os.rename(acc, acc + ".1")
        os.rename(err, err + ".1")
        r = t.run_shoal(ctl + ["-s", "reopen"])
        t.check(r.returncode == 0, "shoal -s reopen: exit 0", r.stderr)
        sh.wait_for(lambda: os.path.exists(acc) and os.path.exists(err), 5, "the new access.log and error.log")
        for _ in range(2):
            node.proc.signal(signal.SIGUSR1)
        out, _ = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    m = re.search(r"status codes: (\d+) 2xx", out)
    done = int(m.group(1)) if m else -1
    t.check(done == 60000 and load.returncode == 0, "h2load: %d answered with 2xx during the rotation" % done, out)
    t.check(node.proc.alive(), "the node survived SIGUSR1 under load (three times)")
    want = done

    def all_logged():
        return len(lines(acc + ".1")) + len(lines(acc)) >= want
    try:
        sh.wait_for(all_logged, 10, "every answered request in the access logs")
    except sh.HarnessError:
        pass
    old, new = lines(acc + ".1"), lines(acc)
    t.check(len(old) + len(new) == want,
            "no access log line lost or doubled: %d old + %d new = %d answered"
            % (len(old), len(new), want))
    bad = [l for l in old + new if not re.match(r'^127\.0\.0\.1 - - \[[^\]]+\] "GET / HTTP/1\.1" 200 3 ', l)]
    t.check(not bad, "every line whole (none split by the swap)", bad[:5])
    t.check(len(new) > 0, "the new access.log receives the lines written after the reopen (%d)" % len(new))
    t.check(any("reopening logs" in l for l in lines(err + ".1")),
            "the old error.log has the SIGUSR1 notice")
    sh.wait_for(lambda: any("reopened the log files" in l for l in lines(err)), 5, "the new error.log's notice")
    t.check(True, "the new error.log is written after the reopen")

    # ---- SIGUSR2, SIGWINCH: logged, ignored
    node.proc.signal(signal.SIGUSR2)
    node.proc.signal(signal.SIGWINCH)
    sh.wait_for(lambda: any("SIGUSR2" in l and "ignored" in l for l in lines(err)), 5, "the SIGUSR2 notice")
    r = t.curl(node.url("/"))
    t.check(r.status == 200 and node.proc.alive(), "after SIGUSR2 and SIGWINCH the node still serves", r)

    # ---- -s reload, -s quit
    r = t.run_shoal(ctl + ["-s", "reload"])
    t.check(r.returncode == 0, "shoal -s reload: exit 0", r.stderr)
    sh.wait_for(lambda: any("reload: configuration ok" in l for l in lines(err)), 10, "the reload in the error log")
    t.check(True, "-s reload reloaded the node")
    node.proc.injected = True  # the exit below is ours
    r = t.run_shoal(ctl + ["-s", "quit"])
    t.check(r.returncode == 0, "shoal -s quit: exit 0", r.stderr)
    rc = node.proc.wait_exit(20)
    t.check(rc == 0 and not os.path.exists(pidf), "-s quit: the node drained and exited 0, pid file removed (rc=%s)"
            % rc)
    r = t.run_shoal(ctl + ["-s", "reopen"])
    t.check(r.returncode == 1 and pidf in r.stderr, "-s with no node running: exit 1 naming the pid file",
            r.stderr)


if __name__ == "__main__":
    sh.run(main)
