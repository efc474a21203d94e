#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 15, adversarial suite: slow clients (slowloris and friends).

One node, one worker, client_header_timeout 2s, client_body_timeout 2s,
send_timeout 3s; a normal client sends GET / on a new connection every 50 ms
throughout and must get 200 every time (its latency is logged). Each phase:

1. header slowloris: 300 HTTP/1.1 connections trickle an endless head, a
   byte per 0.5 s: all 300 are held until the timeout and every one is
   closed between 2.0 and 3.5 s after its connect;
2. TLS handshake slowloris: 200 connections trickle a real ClientHello:
   closed likewise;
3. HTTP/2 slowloris: 100 h2c and 50 TLS h2 connections complete the preface
   and SETTINGS and then trickle a HEADERS frame: closed 2 s after the
   frame's first byte;
4. slow body: 100 connections send a head with Content-Length: 1000 and then
   a body byte per second (under client_body_timeout, which nginx measures
   between two reads, so they are kept), then stop: all closed 2 s after
   their last byte;
5. slow readers: 20 HTTP/1.1 clients and 10 h2c streams (with 2 GiB
   windows) ask for 200 MB and never read: RSS stays under the bound (the
   per-connection queue is 256 KiB), and send_timeout closes them.

RSS of the node is sampled at each peak and must stay under BASE + 64 MiB.
"""

import os
import socket
import struct
import time

import adversarial as adv
import shoal_harness as sh

HEADER_TIMEOUT = 2.0
SEND_TIMEOUT = 3.0
RSS_BOUND_KB = 64 * 1024


def main(t):
    be = t.backend("b")
    cert, key = t.make_cert("a", "a.test", ["DNS:a.test", "IP:127.0.0.1"])
    p_tls, p_h2c = sh.free_port(), sh.free_port()
    # RSS is the measure: ASan's quarantine of freed memory is off (as in
    # test_large_body), so an ASan build is measured like a Release one.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=0"}
    node = t.shoal(f"""
        worker_processes 1;
        events {{ worker_connections 2048; }}
        http {{
            client_header_timeout {int(HEADER_TIMEOUT)}s;
            client_body_timeout {int(HEADER_TIMEOUT)}s;
            send_timeout {int(SEND_TIMEOUT)}s;
            keepalive_timeout 30s;
            proxy_request_buffering off;
            upstream be {{ server 127.0.0.1:{be.port}; keepalive 16; }}
            server {{
                listen 127.0.0.1:{{port}};
                listen 127.0.0.1:{p_tls} ssl http2;
                listen 127.0.0.1:{p_h2c} http2;
                ssl_certificate {cert};
                ssl_certificate_key {key};
                location / {{ proxy_pass http://be; }}
                location = / {{ return 200 "ok"; }}
                location = /status {{ stub_status; }}
            }}
        }}""", env=env)
    base_kb = node.proc.memory_kb()[0]
    t.log(f"RSS at start: {base_kb} kB")
    peaks = {}

    def rss(label):
        kb = node.proc.memory_kb()[0]
        peaks[label] = kb
        t.log(f"RSS {label}: {kb} kB (+{kb - base_kb} kB)")
        return kb

    normal = adv.Normal(node.port)
    normal.start()

    def phase_slowloris(label, swarm, expect_n, lo, hi):
        """Run swarm until all closed; check counts and lifetimes."""
        mark = normal.mark()
        swarm.open().start()
        t0 = time.monotonic()
        t.check(swarm.failed_connects == 0 and len(swarm.conns) == expect_n,
                f"{label}: {expect_n} connections opened", swarm.failed_connects)
        # held until just before the timeout
        sh.wait_for(lambda: time.monotonic() - t0 >= lo - 0.4, lo + 1, "just before the timeout")
        held = swarm.open_count()
        rss(label)
        sh.wait_for(lambda: swarm.open_count() == 0, hi + 10, f"{label}: all closed")
        swarm.stop()
        life = swarm.lifetimes()
        t.log(f"{label}: {held} of {expect_n} held at {lo - 0.4:.1f}s; closed after "
              f"{life[0]:.2f}..{life[-1]:.2f}s (connect to close)")
        t.check(held == expect_n, f"{label}: all {expect_n} held until the timeout", held)
        # The upper bound has slack for a sanitizer build on a loaded machine
        # (the server may accept late); a re-armed timer would keep them open
        # for as long as the swarm trickles, far past it.
        hi_b = lo + (hi - lo) * t.slow
        t.check(len(life) == expect_n and lo - 0.1 <= life[0] and life[-1] <= hi_b,
                f"{label}: every one closed {lo}..{hi_b}s after its connect",
                (life[:3], life[-3:]))
        s = adv.latency_summary(normal.since(mark))
        t.log(f"{label}: normal client n={s[0]} failed={s[1]} p50={s[2]}ms p99={s[3]}ms "
              f"max={s[4]}ms")
        t.check(s[0] > 0 and s[1] == 0, f"{label}: the normal client is served throughout", s)

    endless_head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: aaaaaaaaaa\r\n" * 500
    phase_slowloris("header slowloris (300 x HTTP/1.1)",
                    adv.Swarm(node.port, 300, endless_head, 0.5), 300,
                    HEADER_TIMEOUT, HEADER_TIMEOUT + 1.5)
    phase_slowloris("TLS handshake slowloris (200)",
                    adv.Swarm(p_tls, 200, adv.client_hello(), 0.5), 200,
                    HEADER_TIMEOUT, HEADER_TIMEOUT + 1.5)
    headers = adv.h2frame(1, 0x5, 1, bytes([0x82, 0x86, 0x84, 0x01, 0x01]) + b"x")
    h2_prefix = adv.PREFACE + adv.h2frame(4, 0, 0)
    # The h2 lifetimes count from the connect; the frame starts right after.
    phase_slowloris("HTTP/2 slowloris (100 h2c)",
                    adv.Swarm(p_h2c, 100, headers, 0.5, prefix=h2_prefix), 100,
                    HEADER_TIMEOUT, HEADER_TIMEOUT + 1.5)
    phase_slowloris("HTTP/2 slowloris (50 TLS h2)",
                    adv.Swarm(p_tls, 50, headers, 0.5, prefix=h2_prefix,
                              tls=adv.tls_context(["h2"])), 50,
                    HEADER_TIMEOUT, HEADER_TIMEOUT + 1.5)

    # 4. Slow body: kept while a byte comes every second, closed 2 s after
    # the last one.
    mark = normal.mark()
    body_head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    sw = adv.Swarm(node.port, 100, b"y" * 1000, 1.0, prefix=body_head, stop_after=4.0)
    sw.open().start()
    t0 = time.monotonic()
    sh.wait_for(lambda: time.monotonic() - t0 >= 3.8, 6, "slow body running")
    held = sw.open_count()
    rss("slow body")
    t.check(held == 100, "slow body: 100 bodies at a byte per second are kept "
            "(client_body_timeout is between two reads, as nginx)", held)
    sh.wait_for(lambda: sw.open_count() == 0, 15, "slow bodies closed")
    sw.stop()
    life = sw.lifetimes()
    t.log(f"slow body: closed {life[0]:.2f}..{life[-1]:.2f}s after the connect "
          f"(last byte at about 3-4 s)")
    t.check(len(life) == 100 and life[0] >= 3.0 + HEADER_TIMEOUT - 0.2 and
            life[-1] <= 4.0 + HEADER_TIMEOUT + 2.0,
            "slow body: closed client_body_timeout after the last byte", (life[:2], life[-2:]))
    s = adv.latency_summary(normal.since(mark))
    t.log(f"slow body: normal client n={s[0]} failed={s[1]} p50={s[2]}ms max={s[4]}ms")
    t.check(s[1] == 0, "slow body: the normal client is served throughout", s)

    # 5. Slow readers: memory is bounded by the per-connection queue.
    mark = normal.mark()
    readers = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /stream?bytes=200000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        readers.append(s)
    h2readers = []
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", p_h2c), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        settings = adv.h2frame(4, 0, 0, struct.pack(">HI", 4, 0x7FFFFFFF))
        wu = adv.h2frame(8, 0, 0, struct.pack(">I", 0x7FFFFFFF - 65535))
        path = b"/stream?bytes=200000000"
        hb = bytes([0x82, 0x86, 0x04, len(path)]) + path + bytes([0x01, 0x01]) + b"x"
        s.sendall(adv.PREFACE + settings + wu + adv.h2frame(1, 0x5, 1, hb))
        h2readers.append(s)
    t0 = time.monotonic()
    sh.wait_for(lambda: time.monotonic() - t0 > 2.0, 5, "queues filled")
    kb = rss("slow readers (20 h1 + 10 h2)")
    t.check(kb - base_kb < RSS_BOUND_KB, f"slow readers: RSS grew by {kb - base_kb} kB "
            f"(< {RSS_BOUND_KB} kB)", kb)

    def active():
        r = t.curl(node.url("/status"))
        return int(r.text().split("Active connections:")[1].split()[0])
    # send_timeout closes them (checked on the node: reading here would
    # let it write, which re-arms send_timeout, as nginx)
    ok = True
    try:
        sh.wait_for(lambda: active() <= 2, SEND_TIMEOUT + 20, "slow readers closed")
    except sh.HarnessError:
        ok = False
    t.log(f"slow readers: all closed {time.monotonic() - t0:.1f}s after they stalled "
          f"(send_timeout {SEND_TIMEOUT:.0f}s)")
    t.check(ok, "slow readers (HTTP/1.1 and h2): closed by send_timeout", active())
    for s in readers + h2readers:
        s.close()
    s = adv.latency_summary(normal.since(mark))
    t.log(f"slow readers: normal client n={s[0]} failed={s[1]} p50={s[2]}ms max={s[4]}ms")
    t.check(s[1] == 0, "slow readers: the normal client is served throughout", s)

    normal.stop()
    s = adv.latency_summary(normal.samples)
    t.log(f"whole run: normal client n={s[0]} failed={s[1]} p50={s[2]}ms p99={s[3]}ms "
          f"max={s[4]}ms; RSS peaks {peaks}")
    t.check(max(peaks.values()) - base_kb < RSS_BOUND_KB,
            f"RSS stayed under start + {RSS_BOUND_KB // 1024} MiB", peaks)


if __name__ == "__main__":
    sh.run(main)
