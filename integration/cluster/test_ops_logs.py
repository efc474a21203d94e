# SPDX-License-Identifier: Apache-2.0
"""Issue 16: logs an operator can use.

- request errors in nginx's shape, which fail2ban filters match: a dead
  upstream gives `[error] ... *N connect() failed (...) while connecting to
  upstream, client: 127.0.0.1, server: api.example.com, request: "GET
  /x?y=1 HTTP/1.1", upstream: "http://127.0.0.1:P/x?y=1", host:
  "api.example.com"`; the parser's 400 is logged at info with client and
  server; a request denied by `deny` logs "access forbidden by rule" with the
  same context;
- the cluster's join providers log each failure with its cause: `dns:` a
  name that does not resolve, `file:` a missing file, `exec:` the exit
  status; a join address where nobody listens: "connection refused"; and
  the node, alone, logs that it keeps retrying;
- `-t` warns about join entries that can never work (a wildcard address, a
  port out of range, an unreadable file, a command that is not executable)."""

import os
import re
import socket

import cluster_util as cu

sh = cu.sh


def main(t, ctl):
    key = cu.write_keys(t, [cu.new_key()])
    dead = t.port()      # locked by the harness, never listened on
    refused = t.port()   # likewise: a join address where nobody answers
    admin = "127.0.0.1:%d" % t.port()
    script = os.path.join(t.tmp, "peers.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\necho 'no peers today' >&2\nexit 3\n")
    os.chmod(script, 0o755)
    node = t.shoal("""
        error_log logs/error.log info;
        events { }
        http {
            upstream u { server 127.0.0.1:%d; }
            server {
                listen 127.0.0.1:{port};
                server_name api.example.com;
                location / { proxy_pass http://u; }
                location /private { deny all; proxy_pass http://u; }
            }
        }
        cluster {
            node_name logs; bind 127.0.0.1:%d; admin_listen %s;
            encrypt_key_file %s; profile local;
            join 127.0.0.1:%d dns:no-such-host.invalid:7946 file:%s/missing-peers exec:%s;
        }
        """ % (dead, t.port(), admin, key, refused, t.tmp, script))
    err = os.path.join(node.prefix, "logs", "error.log")

    def logged(pred, what, timeout=15):
        sh.wait_for(lambda: any(pred(l) for l in sh.file_lines(err)), timeout, what)
        return True

    # ---- request errors
    r = t.curl(node.url("/x?y=1"), "-H", "Host: api.example.com")
    t.check(r.status == 502, "a dead upstream: 502", r)
    shape = re.compile(r'^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[error\] \d+: \*\d+ connect\(\) failed \([^)]+\) '
                       r'while connecting to upstream, client: 127\.0\.0\.1, server: api\.example\.com, '
                       r'request: "GET /x\?y=1 HTTP/1\.1", upstream: "http://127\.0\.0\.1:%d/x\?y=1", '
                       r'host: "api\.example\.com"$' % dead)
    logged(lambda l: shape.match(l), "the connect() error in nginx's shape")
    t.check(True, "upstream failure logged in nginx's shape (client, server, request, upstream, host)")
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        s.sendall(b"GET /a b HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        s.recv(4096)
    logged(lambda l: "[info]" in l and "client sent invalid request" in l and "client: 127.0.0.1, server: "
           in l, "the 400 at info with its context")
    t.check(True, "a request the parser refuses: logged at info with client and server")
    r = t.curl(node.url("/private"), "-H", "Host: api.example.com")
    logged(lambda l: "access forbidden by rule, client: 127.0.0.1, server: api.example.com, request: "
           '"GET /private HTTP/1.1", host: "api.example.com"' in l, "the 403's log line")
    t.check(r.status == 403, "deny all: 403, logged with its context")

    # ---- join providers and failed joins
    logged(lambda l: "join 127.0.0.1:%d failed: connection refused" % refused in l, "the refused join")
    t.check(True, "a join address where nobody listens: \"connection refused\" in the log")
    logged(lambda l: "join provider no-such-host.invalid:7946" in l or
           "join provider dns:no-such-host.invalid" in l, "the dns: provider's failure")
    t.check(True, "dns: a name that does not resolve is logged with the resolver's error")
    logged(lambda l: "join provider file:%s/missing-peers: fopen() failed (No such file or directory)" % t.tmp
           in l, "the file: provider's failure")
    t.check(True, "file: a missing file is logged")
    logged(lambda l: "join provider exec:%s: exited with status 3" % script in l, "the exec: provider's status")
    t.check(True, "exec: the command's exit status is logged")
    logged(lambda l: "[error]" in l and "could not join any member of the join list" in l and "retrying in" in l,
           "the retry notice")
    t.check(True, "alone, the node logs at error level that it keeps retrying")

    # ---- -t warns about join entries that can never work
    d = t._subdir("t-joins")
    conf = t.write_conf("""
        events { }
        cluster {
            node_name j; bind 127.0.0.1:1; admin_listen 127.0.0.1:1; encrypt_key_file %s;
            join 0.0.0.0:7946 127.0.0.1:0 file:/nonexistent/peers exec:/nonexistent/list-peers;
        }
        """ % key, d=d)
    r = t.run_shoal(["-p", d + "/", "-c", conf, "-t"])
    for want in ("join 0.0.0.0:7946 can never work: a wildcard address",
                 "join 127.0.0.1:0 can never work: the port",
                 "join file:/nonexistent/peers: the file cannot be read",
                 "join exec:/nonexistent/list-peers: /nonexistent/list-peers is not an executable"):
        t.check(r.returncode == 0 and ("%s:2: cluster: %s" % (conf, want)) in r.stderr,
                "-t warns: %s" % want, r.stderr)


if __name__ == "__main__":
    cu.run(main)
