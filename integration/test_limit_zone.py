#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A limit_req zone of 1m (1r/m: no state drains during the test) under
100,000 distinct keys (pipelined on four
connections): every key's first request passes (a full zone evicts its
least recently used states, as nginx does, rather than refusing), the
process does not grow while the full zone evicts (the last 70,000 keys:
less than 2 MB of allocator noise, where keeping them would take 3.3 MB), and the zone keeps
limiting: a key among the last used still has its state (its next
requests are counted from it), a key of the first thousand was evicted
(it starts afresh), and a new key gets exactly 1 + burst."""
import os
import socket
import threading

import shoal_harness as sh

KEYS = 100000
CONNS = 4


def pipelined(port, keys, out, i):
    """keys on connections of 1000 requests each (keepalive_requests)."""
    total = {}
    for j in range(0, len(keys), 1000):
        one_conn(port, keys[j:j + 1000], total)
    out[i] = total


def one_conn(port, keys, statuses):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(60)
    want, got, buf = len(keys), 0, b""
    batch = 500
    sent = 0
    while got < want:
        if sent < want and sent - got < 2000:
            reqs = "".join("GET /f HTTP/1.1\r\nHost: x\r\nX-Key: %s\r\n\r\n" % k
                           for k in keys[sent:sent + batch])
            s.sendall(reqs.encode())
            sent += min(batch, want - sent)
            continue
        d = s.recv(1 << 20)
        if not d:
            break
        buf += d
        # responses are small and fixed: count status lines as they come
        while True:
            j = buf.find(b"HTTP/1.1 ")
            if j < 0 or len(buf) < j + 12:
                break
            st = int(buf[j + 9:j + 12])
            statuses[st] = statuses.get(st, 0) + 1
            got += 1
            buf = buf[j + 12:]
    s.close()


def main(t):
    html = t._subdir("html")
    with open(html + "/f", "w") as f:
        f.write("ok\n")
    # ASan keeps freed memory in quarantine: not what this test measures
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=0"}
    node = t.shoal("""
        events { }
        http {
            limit_req_zone $http_x_key zone=big:1m rate=1r/m;
            access_log off;
            server {
                listen 127.0.0.1:{port};
                location / { root %s; limit_req zone=big burst=2 nodelay; }
            }
        }""" % html, env=env)
    rss0 = node.proc.memory_kb()[0]
    keys = ["key-%06d" % n for n in range(KEYS)]
    total = {}

    def flood(part):
        out = [None] * CONNS
        th = [threading.Thread(target=pipelined, args=(node.port, part[i::CONNS], out, i))
              for i in range(CONNS)]
        for x in th:
            x.start()
        for x in th:
            x.join(120)
        for o in out:
            for k, v in (o or {}).items():
                total[k] = total.get(k, 0) + v
    # the first thousand keys first, on one connection: the oldest states
    one = [None]
    pipelined(node.port, keys[:1000], one, 0)
    for k, v in one[0].items():
        total[k] = total.get(k, 0) + v
    flood(keys[1000:30000])  # the zone (19,968 keys) is full before
    rss_mid = node.proc.memory_kb()[0]
    flood(keys[30000:])
    rss1 = node.proc.memory_kb()[0]
    t.check(total == {200: KEYS}, "100,000 distinct keys: every first request passes", total)
    t.log("shoal RSS %d kB at start, %d kB after 30,000 keys, %d kB after 100,000"
          % (rss0, rss_mid, rss1))
    # 70,000 more states kept anywhere would take at least 3.3 MB (48 bytes each)
    t.check(rss1 - rss_mid < 2048, "the last 70,000 keys (a full zone evicting) grow the "
            "process by less than 2 MB", (rss0, rss_mid, rss1))

    def burst(key, n):
        return [t.curl(node.url("/f"), "-H", "X-Key: " + key).status for _ in range(n)]
    got = burst(keys[-1], 3)
    t.check(got == [200, 200, 503], "the last key used kept its state: 2 more pass, then 503", got)
    got = burst(keys[5], 4)
    t.check(got == [200, 200, 200, 503], "an early key was evicted: it starts afresh (1 + burst)",
            got)
    got = {}
    one_conn(node.port, ["fresh"] * 30, got)  # pipelined: within a few ms
    t.check(got == {200: 3, 503: 27}, "a new key after the flood: 1 + burst of 30 pass", got)


sh.run(main)
