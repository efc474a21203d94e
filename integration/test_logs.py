#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Access and error logs, beside nginx 1.22 where it sends the same thing:
- access_log if=: "" and "0" skip the line (nginx's rule);
- buffer= with flush=: a batch is written by its flush time, not only
  when full; gzip: the file is gzip members that decompress to the lines;
- access_log syslog:server=UDP with tag=, severity=, nohostname and an
  escape=json format: a real UDP listener gets "<PRI>Mmm dd hh:mm:ss TAG:
  MSG" exactly as nginx sends it (PRI, tag, body compared; the time by
  shape); syslog:server=unix:PATH (a unix datagram socket) gets
  "<190>... HOST nginx: MSG";
- error_log syslog:server=...,facility=daemon: an error goes as <27>;
- refused with a clear message: bad syslog parameters, buffer= on syslog.
"""
import gzip
import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nginx_ref  # noqa: E402
import shoal_harness as sh  # noqa: E402

SYSLOG = re.compile(r"^<(\d+)>([A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d) (?:(\S+) )?(\w+): (.*)$",
                    re.S)


def udp_listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s, s.getsockname()[1]


def recv_all(s, n, timeout=5):
    s.settimeout(timeout)
    out = []
    try:
        while len(out) < n:
            out.append(s.recv(65536).decode("latin-1"))
    except socket.timeout:
        pass
    return out


def main(t):
    nginx_ref.skip_unless_available()
    u_acc, p_acc = udp_listener()
    u_ngx, p_ngx = udp_listener()
    u_err, p_err = udp_listener()
    sock_path = os.path.join(t.tmp, "syslog.sock")
    u_unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    u_unix.bind(sock_path)
    u_unix.settimeout(5)

    http = """
        log_format j escape=json '{"a":"$arg_a","s":$status}';
        log_format plain '$request_uri $status';
        server {
            listen 127.0.0.1:{port};
            access_log {logs}/cond.log plain if=$arg_log;
            access_log {logs}/buf.log plain buffer=1m flush=300ms;
            access_log {logs}/gz.log plain gzip flush=200ms;
            access_log syslog:server=127.0.0.1:{udp},tag=gw,severity=notice,nohostname j;
            location / { return 200 "ok\\n"; }
            location /u { access_log syslog:server=unix:{sock} plain; return 200 "u\\n"; }
            location /missing { root /nonexistent-shoal-test; }
        }
    """
    node = t.shoal(("error_log syslog:server=127.0.0.1:%d,facility=daemon,tag=shoalerr error;\n"
                    "http {\n%s\n}\n") % (p_err, http.replace("{logs}", "logs")
                                          .replace("{udp}", str(p_acc))
                                          .replace("{sock}", sock_path)))
    nlogs = os.path.join(t.tmp, "nginx-logs")
    os.makedirs(nlogs)
    nport = t.port()
    nginx_ref.start(t, http.replace("{logs}", nlogs).replace("{udp}", str(p_ngx))
                    .replace("{sock}", sock_path + ".nginx").replace("{port}", str(nport)),
                    port=nport)
    s = node.url("")
    logs = os.path.join(node.prefix, "logs")

    # ---- if=
    for q in ("?log=1&a=1", "?log=0&a=2", "?log=&a=3", "?a=4", "?log=yes&a=5"):
        t.curl(s + "/" + q)
    cond = os.path.join(logs, "cond.log")
    sh.wait_for(lambda: len(sh.file_lines(cond)) >= 2, 5, "cond.log lines")
    got = sh.file_lines(cond)
    t.check(got == ["/?log=1&a=1 200", "/?log=yes&a=5 200"],
            "if=: lines only where the condition is neither empty nor 0: %r" % got)

    # ---- buffer= + flush=, gzip
    buf = os.path.join(logs, "buf.log")
    t.check(sh.wait_for(lambda: len(sh.file_lines(buf)) == 5, 5, "buf.log flushed") is not False,
            "buffer=1m flush=300ms: the 5 lines written by the flush time")
    gz = os.path.join(logs, "gz.log")

    def gz_lines():
        try:
            with open(gz, "rb") as f:
                return gzip.decompress(f.read()).decode().splitlines()
        except (OSError, EOFError):
            return []
    sh.wait_for(lambda: len(gz_lines()) == 5, 5, "gz.log flushed")
    t.check(gz_lines()[0] == "/?log=1&a=1 200" and len(gz_lines()) == 5,
            "gzip: the file is gzip members holding the lines: %r" % gz_lines())

    # ---- access_log syslog over UDP, beside nginx
    t.curl(s + '/?a=x"y')
    t.curl("http://127.0.0.1:%d/?a=x\"y" % nport)
    a = recv_all(u_acc, 6)
    b = recv_all(u_ngx, 6)
    ma = [SYSLOG.match(x) for x in a]
    mb = [SYSLOG.match(x) for x in b]
    t.check(len(a) == 6 and all(ma), "6 datagrams in nginx's syslog form", a)
    t.check(all(m.group(1) == "189" and m.group(3) is None and m.group(4) == "gw" for m in ma),
            "<189> (local7.notice), no hostname, tag gw", a)
    last = ma[-1].group(5) if ma and ma[-1] else None
    t.check(last == '{"a":"x\\"y","s":200}', "escape=json body: %r" % last)
    nlast = mb[-1].group(5) if mb and mb[-1] else None
    t.check(mb and all(mb) and mb[-1].group(1) == "189" and mb[-1].group(4) == "gw" and
            nlast == last, "nginx sends the same: %r" % (b[-1] if b else None))

    # ---- syslog over a unix datagram socket (with the hostname)
    t.curl(s + "/u")
    d = recv_all(u_unix, 1)
    m = SYSLOG.match(d[0]) if d else None
    t.check(m is not None and m.group(1) == "190" and m.group(3) == socket.gethostname() and
            m.group(4) == "nginx" and m.group(5) == "/u 200",
            "unix:PATH: <190>... HOST nginx: /u 200", d)
    recv_all(u_acc, 1, timeout=2)  # /u does not inherit the server's entries; drain anyway

    # ---- error_log syslog
    t.curl(s + "/missing/x")
    e = recv_all(u_err, 1)
    m = SYSLOG.match(e[0]) if e else None
    t.check(m is not None and m.group(1) == "27" and m.group(4) == "shoalerr" and
            "[error]" in m.group(5) and "nonexistent-shoal-test" in m.group(5),
            "error_log syslog: <27> (daemon.err), tag shoalerr, the error", e)

    # ---- refused configurations
    for what, line in (("an unknown syslog parameter",
                        "access_log syslog:server=127.0.0.1,bogus=1;"),
                       ("buffer= on syslog", "access_log syslog:server=127.0.0.1 combined buffer=8k;"),
                       ("a bad facility", "access_log syslog:server=127.0.0.1,facility=nope;")):
        path = t.write_conf("http { server { listen 127.0.0.1:1; %s } }" % line)
        r = t.run_shoal(["-t", "-c", path, "-p", t.tmp + "/"])
        t.check(r.returncode != 0 and "syslog" in (r.stderr + r.stdout),
                "refused: %s: %s" % (what, (r.stderr + r.stdout).strip().splitlines()[-1:]))


if __name__ == "__main__":
    sh.run(main)
