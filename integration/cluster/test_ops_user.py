# SPDX-License-Identifier: Apache-2.0
"""Issue 16: `user USER [GROUP]` drops privileges as nginx does.

Run as root (skipped, exit 77, otherwise). A node with `user nobody
nogroup;`, two workers and a cluster block:
- every thread but the main one (nginx's master) has uid nobody and gid
  nogroup in all four fields of /proc/PID/task/TID/status (workers, the
  cluster thread, the generation joiner), and no supplementary group of
  root's; the main thread keeps root to reopen logs and reload;
- the join providers run as nobody too (libuv's pool threads started by the
  cluster thread): an `exec:` printing 127.0.0.1:$(id -u) gives
  127.0.0.1:65534, and a `file:` in the
  test's root-only temp dir cannot be read ("Permission denied" logged);
- it serves, the access log (opened as root before the drop) gets the line;
- after a logrotate (rename + SIGUSR1) the new error.log and access.log
  exist and belong to nobody, as nginx's reopen does;
- a reload (SIGHUP) starts a new generation whose workers are nobody too;
- `-t` with an unknown user fails with getpwnam and file:line; `user nobody;`
  alone fails with getgrnam("nobody") as nginx 1.22 does on Debian (no group
  of that name)."""

import grp
import os
import pwd
import signal
import sys

import cluster_util as cu

sh = cu.sh

CONF = """
user nobody nogroup;
worker_processes 2;
error_log logs/error.log notice;
events { }
http {
    access_log logs/access.log;
    server { listen 127.0.0.1:{port}; location / { return 200 "ok\\n"; } }
}
cluster {
    node_name u1; bind 127.0.0.1:%d; admin_listen 127.0.0.1:%d;
    encrypt_key_file %s; profile local;
    join file:%s "exec:sh -c 'echo 127.0.0.1:$(id -u)'";
}
"""


def tasks(pid):
    """{tid: (uids, gids, groups)} from /proc/PID/task/*/status."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                st = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
        except FileNotFoundError:
            continue
        out[int(tid)] = (st["Uid"].split(), st["Gid"].split(), st.get("Groups", "").split())
    return out


def main(t, ctl):
    if os.geteuid() != 0:
        print("SKIP - dropping privileges needs root", flush=True)
        sys.exit(77)
    nobody = pwd.getpwnam("nobody").pw_uid
    nogroup = grp.getgrnam("nogroup").gr_gid
    key = cu.write_keys(t, [cu.new_key()])
    # the test's temp dir must be reachable by nobody for nothing here;
    # the files are opened by the main thread (root)
    peers = os.path.join(t.tmp, "peers")  # t.tmp is 0700 root: nobody cannot read it
    with open(peers, "w") as f:
        f.write("127.0.0.1:1\n")
    node = t.shoal(CONF % (t.port(), t.port(), key, peers))

    def check_threads(what):
        ts = tasks(node.pid)
        others = {tid: v for tid, v in ts.items() if tid != node.pid}
        bad = {tid: v for tid, v in others.items()
               if v[0] != [str(nobody)] * 4 or v[1] != [str(nogroup)] * 4 or "0" in v[2]}
        t.check(len(others) >= 3 and not bad,
                "%s: all %d threads but the main one run as nobody:nogroup (uid/gid x4, no root group)"
                % (what, len(others)), bad or ts)
        t.check(ts[node.pid][0][1] == "0", "%s: the main thread keeps root (as nginx's master)" % what,
                ts.get(node.pid))

    errlog = os.path.join(node.prefix, "logs", "error.log")
    sh.wait_for(lambda: any("join provider file:%s: fopen() failed (Permission denied)" % peers in l
                            for l in sh.file_lines(errlog)), 15, "the file: provider's failure")
    t.check(True, "the file: provider runs as nobody (Permission denied in a root-only folder)")
    sh.wait_for(lambda: any("join 127.0.0.1:" in l and "failed" in l for l in sh.file_lines(errlog)), 15,
                "the exec: provider's address")
    t.check(any("join 127.0.0.1:%d failed" % nobody in l for l in sh.file_lines(errlog)),
            "the exec: provider printed uid %d: it ran as nobody" % nobody,
            [l for l in sh.file_lines(errlog) if "join" in l][:6])
    sh.wait_for(lambda: len(tasks(node.pid)) >= 4, 10, "the worker and cluster threads")
    check_threads("started")
    r = t.curl(node.url("/"))
    t.check(r.status == 200, "a worker running as nobody serves", r)
    logs = os.path.join(node.prefix, "logs")
    acc, err = os.path.join(logs, "access.log"), os.path.join(logs, "error.log")
    sh.wait_for(lambda: len(sh.file_lines(acc)) >= 1, 10, "the access log line")
    t.check(True, "the access log (opened before the drop) gets the line")

    os.rename(acc, acc + ".1")
    os.rename(err, err + ".1")
    node.proc.signal(signal.SIGUSR1)
    sh.wait_for(lambda: os.path.exists(acc) and os.path.exists(err), 10, "the reopened logs")
    t.check(os.stat(acc).st_uid == nobody and os.stat(err).st_uid == nobody,
            "the files a reopen creates belong to nobody (as nginx's reopen)")
    t.curl(node.url("/"))
    sh.wait_for(lambda: len(sh.file_lines(acc)) >= 1, 10, "a line in the new access log")
    t.check(True, "the workers write the new access log")

    node.proc.signal(signal.SIGHUP)
    sh.wait_for(lambda: any("reload: configuration ok" in l for l in sh.file_lines(err)), 10, "the reload")
    sh.wait_for(lambda: t.curl(node.url("/")).status == 200, 10, "the new generation serving")
    check_threads("after a reload")

    d = t._subdir("bad-user")
    for text, want in (("user no-such-user-%d;\n" % os.getpid(), 'getpwnam("no-such-user-'),
                       ("user nobody;\n", 'getgrnam("nobody") failed')):
        conf = t.write_conf(text + "events { }\n", d=d)
        r = t.run_shoal(["-p", d + "/", "-c", conf, "-t"])
        t.check(r.returncode == 1 and ("%s:1: %s" % (conf, want)) in r.stderr,
                "-t with %s: exit 1, %s... with file:line" % (text.strip(), want), r.stderr)


if __name__ == "__main__":
    cu.run(main)
