#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: worker_processes 2 (worker threads, one SO_REUSEPORT listener
each) and the graceful stop.

- /proc/PID/task lists at least 3 threads (main + 2 workers).
- 200 concurrent client connections, each with 20 pipelined requests,
  all answered 200; both workers did work: at least two threads other
  than the main one gained CPU time (/proc/PID/task/TID/schedstat, or stat's utime +
  stime), the kernel's SO_REUSEPORT hash having spread the connections.
  $connection (a per-worker counter in Shoal; nginx's is shared) is
  logged for information.
- Graceful SIGTERM while a slow proxied request (3 s) is in flight: new
  connections are refused at once, an idle keep-alive connection is
  closed, the slow request completes with 200 and its body, and the node
  exits with code 0 (nginx's graceful shutdown, SIGQUIT; Shoal does it on
  SIGTERM, see README)."""

import os
import re
import socket
import subprocess
import time

import shoal_harness as sh

CONNS = 200
PIPELINE = 20


def thread_cpu_ns(pid):
    """CPU time of each thread of pid, in ns: /proc/PID/task/TID/schedstat
    (exact), else utime + stime from .../stat (clock ticks)."""
    out = {}
    tick_ns = 1e9 / os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/%d/task" % pid):
        base = "/proc/%d/task/%s/" % (pid, tid)
        try:
            with open(base + "schedstat") as f:
                out[int(tid)] = int(f.read().split()[0])
                continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(base + "stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        out[int(tid)] = int((int(fields[11]) + int(fields[12])) * tick_ns)  # utime, stime
    return out


def main(t):
    b1 = t.backend("b1")
    node = t.shoal(f"""
        worker_processes 2;
        events {{ worker_connections 1024; }}
        http {{
            log_format c '$connection $connection_requests';
            access_log logs/conn.log c;
            upstream be {{ server 127.0.0.1:{b1.port}; keepalive 8; }}
            server {{
                listen 127.0.0.1:{{port}} backlog=1024;
                location /c {{ return 200 "ok\\n"; }}
                location / {{ proxy_pass http://be; }}
            }}
        }}""")
    pid = node.pid
    # the port accepts as soon as every worker's socket listens; the
    # threads start right after: wait for them, with a deadline
    try:
        sh.wait_for(lambda: len(os.listdir("/proc/%d/task" % pid)) >= 3, 5, "worker threads")
    except sh.HarnessError:
        pass
    tasks = os.listdir("/proc/%d/task" % pid)
    t.check(len(tasks) >= 3, "worker_processes 2: /proc/%d/task lists %d threads (want >= 3)" % (pid, len(tasks)),
            tasks)

    # -- 200 concurrent connections --
    before = thread_cpu_ns(pid)
    socks = []
    try:
        for _ in range(CONNS):
            s = socket.create_connection(("127.0.0.1", node.port), timeout=20)
            socks.append(s)
        req = b"GET /c HTTP/1.1\r\nHost: t\r\n\r\n" * (PIPELINE - 1) + \
              b"GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        for s in socks:
            s.sendall(req)
        ok = 0
        bad = []
        deadline = time.monotonic() + 30
        for i, s in enumerate(socks):
            buf = b""
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    d = s.recv(65536)
                except (socket.timeout, OSError):
                    break
                if not d:
                    break
                buf += d
            n = len(re.findall(rb"^HTTP/1\.1 200 ", buf, re.M))
            if n == PIPELINE:
                ok += 1
            elif len(bad) < 3:
                bad.append((i, n, buf[:200]))
    finally:
        for s in socks:
            s.close()
    t.check(ok == CONNS, "%d concurrent connections x %d pipelined requests: all answered 200 (%d complete)"
            % (CONNS, PIPELINE, ok), bad)
    after = thread_cpu_ns(pid)
    gained = {tid: after.get(tid, 0) - before.get(tid, 0) for tid in after if tid != pid}
    busy = [tid for tid, g in gained.items() if g >= 1000000]
    t.check(len(busy) >= 2, "both workers got CPU time: threads other than main with >= 1 ms more CPU: %s "
            "(ns gained per thread %s; want >= 2)" % (busy, gained))

    log = os.path.join(node.prefix, "logs", "conn.log")

    def conn_ids():
        try:
            with open(log) as f:
                return [int(l.split()[0]) for l in f if l.strip()]
        except (FileNotFoundError, ValueError):
            return []
    try:
        ids = sh.wait_for(lambda: len(conn_ids()) >= CONNS * PIPELINE and conn_ids(), 10, "the access log")
        t.log("$connection: %d distinct values over %d connections, max %d" % (len(set(ids)), CONNS, max(ids)))
    except sh.HarnessError as e:
        t.log("access log not complete: %s" % e)

    # -- graceful SIGTERM --
    idle = sh.RawConn(node.port, timeout=10)
    idle.send("GET /c HTTP/1.1\r\nHost: t\r\n\r\n")
    resp = idle.read_response()
    t.check(resp.status == 200, "an idle keep-alive connection is open", resp)
    curl = subprocess.Popen(["curl", "-sS", "--max-time", "30", "-w", "\n%{http_code}", node.url("/slow?ms=3000")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sh.wait_for(lambda: b1.stats()["in_flight"] >= 1, 10, "the slow request to reach the backend")
        node.proc.signal(15)
        t_sig = time.monotonic()
        try:
            sh.wait_for(lambda: not sh.port_accepts(node.port, timeout=0.3), 2.0, "new connections to be refused")
            t.check(True, "after SIGTERM new connections are refused within %.2f s" % (time.monotonic() - t_sig))
        except sh.HarnessError as e:
            t.check(False, "after SIGTERM new connections are refused within 2 s: %s" % e)
        closed = idle.closed_by_peer(timeout=2.5)
        t.check(closed, "after SIGTERM the idle keep-alive connection is closed by the node")
        out, err = curl.communicate(timeout=40)
    finally:
        idle.close()
        if curl.poll() is None:
            curl.kill()
            curl.wait()
    body, _, code = out.decode("latin-1").rpartition("\n")
    t.check(code == "200" and body == "slow 3000\n",
            "the slow request in flight at SIGTERM completes: %s %r" % (code, body), err.decode("latin-1"))
    rc = node.proc.wait_exit(15)
    t.check(rc == 0, "the node exits with code 0 after draining (rc=%s, %.2f s after SIGTERM)"
            % (rc, time.monotonic() - t_sig), node.proc.tail())
    if rc is not None:
        node.proc.returncode = rc  # exited on our signal, not on its own
    t.stop(node)


if __name__ == "__main__":
    sh.run(main)
