#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 15, adversarial suite: a full connection table and idle floods.

One worker, worker_connections 64, client_header_timeout 2s,
keepalive_timeout 60s; a normal client sends GET / on a new connection
every 20 ms during each phase:

1. idle flood: 1,500 connections that connect and send nothing (opened as
   fast as possible): the oldest idle ones are closed to make room, the
   normal client gets 200 every time, and at most 64 of the flood remain;
   (a normal request goes after every 50 of them, the table being full);
2. keep-alive flood: 500 HTTP/1.1 connections that make one request and
   stay idle: likewise;
3. h2c idle flood: 500 h2c connections (preface and SETTINGS, no stream):
   likewise;
4. a table full of busy connections (64 slowloris heads, which are never
   reclaimed): new clients are refused only until client_header_timeout
   ends them (the refused window is measured and must end by 2 s + 1.5 s),
   then served.

RSS must stay under start + 32 MiB.
"""

import os
import socket
import time

import adversarial as adv
import shoal_harness as sh

WC = 64
RSS_BOUND_KB = 32 * 1024


def main(t):
    be = t.backend("b")
    p_h2c = sh.free_port()
    # RSS is the measure: ASan's quarantine of freed memory is off (as in
    # test_large_body), so an ASan build is measured like a Release one.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=0"}
    node = t.shoal(f"""
        worker_processes 1;
        events {{ worker_connections {WC}; }}
        http {{
            client_header_timeout 2s;
            keepalive_timeout 60s;
            upstream be {{ server 127.0.0.1:{be.port}; }}
            server {{
                listen 127.0.0.1:{{port}};
                listen 127.0.0.1:{p_h2c} http2;
                location / {{ proxy_pass http://be; }}
                location = / {{ return 200 "ok"; }}
            }}
        }}""", env=env)
    base_kb = node.proc.memory_kb()[0]
    peaks = {}

    def flood(label, opener, n):
        # The normal requests go between batches of the flood, from this
        # thread: a client thread would share the GIL with the flood and
        # could sit connected but silent for many accepts, which no server
        # can tell from the flood itself.
        normal = adv.Normal(node.port)
        socks = []
        t0 = time.monotonic()
        for i in range(n):
            try:
                socks.append(opener())
            except OSError:
                pass
            if i % 50 == 49:
                normal.samples.append(normal.one())
        dt = time.monotonic() - t0
        kb = node.proc.memory_kb()[0]
        peaks[label] = kb
        alive = 0
        for s in socks:
            s.setblocking(False)
            try:
                alive += s.recv(1) != b""  # data would be a surprise; count it as open
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
            s.close()
        st = adv.latency_summary(normal.samples)
        t.log(f"{label}: {n} opened in {dt:.1f}s, {alive} still open at the end; normal client "
              f"n={st[0]} failed={st[1]} p50={st[2]}ms p99={st[3]}ms max={st[4]}ms; "
              f"RSS {kb} kB (+{kb - base_kb} kB)")
        t.check(st[0] > 0 and st[1] == 0, f"{label}: the normal client is served throughout", st)
        t.check(alive <= WC, f"{label}: at most worker_connections ({WC}) of the flood remain",
                alive)

    def silent():
        return socket.create_connection(("127.0.0.1", node.port), timeout=5)

    def keepalive():
        s = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while not buf.endswith(b"ok"):
            got = s.recv(4096)
            if not got:
                break
            buf += got
        return s

    def h2_idle():
        s = socket.create_connection(("127.0.0.1", p_h2c), timeout=5)
        s.sendall(adv.PREFACE + adv.h2frame(4, 0, 0))
        s.recv(4096)
        return s

    flood("idle flood (1500 silent)", silent, 1500)
    flood("keep-alive flood (500)", keepalive, 500)
    flood("h2c idle flood (500)", h2_idle, 500)

    # 4. busy table: 64 trickled heads are never reclaimed; refused until
    # the header timeout ends them.
    endless = b"Host: x\r\n" + b"X-Slow: a\r\n" * 500
    sw = adv.Swarm(node.port, WC, endless, 0.3, prefix=b"GET / HTTP/1.1\r\n").open().start()
    t0 = time.monotonic()
    normal = adv.Normal(node.port, interval=0.05)
    normal.start()
    sh.wait_for(lambda: sw.open_count() == 0, 10, "slowloris ended by the header timeout")
    sh.wait_for(lambda: any(s[2] == 200 and s[0] > t0 for s in normal.samples), 10,
                "served again")
    sh.wait_for(lambda: len(normal.samples) >= 60, 10, "normal samples")
    normal.stop()
    sw.stop()
    refused = [s for s in normal.samples if s[2] != 200]
    served_at = min(s[0] for s in normal.samples if s[2] == 200) - t0
    last_refused = max((s[0] - t0 for s in refused), default=0.0)
    peaks["busy table"] = node.proc.memory_kb()[0]
    t.log(f"busy table ({WC} slowloris): {len(refused)} normal requests refused, the last "
          f"{last_refused:.2f}s after the flood began; first 200 at {served_at:.2f}s")
    t.check(len(refused) > 0, "busy table: new clients are refused while every slot is "
            "mid-request (nothing may be reclaimed)", len(refused))
    t.check(last_refused <= 2.0 + 1.5, "busy table: refused only until "
            "client_header_timeout (2 s) ends the slowloris", last_refused)
    t.check(all(s[2] == 200 for s in normal.samples if s[0] - t0 > 3.5),
            "busy table: served after that", [s for s in normal.samples if s[0] - t0 > 3.5][:3])
    t.log(f"RSS at start {base_kb} kB, peaks {peaks}")
    t.check(max(peaks.values()) - base_kb < RSS_BOUND_KB,
            f"RSS stayed under start + {RSS_BOUND_KB // 1024} MiB", peaks)


if __name__ == "__main__":
    sh.run(main)
