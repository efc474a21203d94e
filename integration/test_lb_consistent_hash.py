#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: `hash KEY consistent` with real backends.

Five backends under `hash $arg_k consistent`, 1000 keys: each key's
backend is the one nginx's Ketama ring names (computed here with
zlib.crc32: 160 points per server from crc32(HOST \\0 PORT PREV)), and a
key asked twice lands twice on the same backend. A second node with one
server removed from the config moves only that server's keys: about 1/5
of them. A third location hashes $request_uri the same way."""

import bisect
import collections
import struct
import zlib

import shoal_harness as sh


def ring(names):
    points = []
    for name in names:
        host, _, port = name.rpartition(":")
        base = host.encode() + b"\0" + port.encode()
        prev = 0
        for _ in range(160):
            h = zlib.crc32(base + struct.pack("<I", prev)) & 0xffffffff
            points.append((h, name))
            prev = h
    points.sort(key=lambda p: p[0])
    return [p[0] for p in points], [p[1] for p in points]


def ring_pick(r, key):
    hashes, names = r
    i = bisect.bisect_left(hashes, zlib.crc32(key.encode()) & 0xffffffff)
    return names[i % len(names)]


def run_keys(t, node, prefix, keys):
    out = {}
    for i in range(0, len(keys), 200):
        part = keys[i:i + 200]
        r = t.curl(*[node.url(prefix % k) for k in part], timeout=60)
        names = [line.split()[-1] for line in r.text().splitlines() if line.startswith("hello")]
        t.require(len(names) == len(part), "a batch of %d keyed requests is answered" % len(part),
                  r)
        out.update(zip(part, names))
    return out


def conf(bs):
    servers = "\n".join("server 127.0.0.1:%d;" % b.port for b in bs)
    return f"""
        worker_processes 1;
        events {{ }}
        http {{
            upstream byarg {{
                hash $arg_k consistent;
                {servers}
            }}
            upstream byuri {{
                hash $request_uri consistent;
                {servers}
            }}
            server {{
                listen 127.0.0.1:{{port}};
                location / {{ proxy_pass http://byarg; }}
                location /u/ {{ proxy_pass http://byuri/; }}
            }}
        }}"""


def main(t):
    bs = [t.backend("b%d" % i) for i in range(1, 6)]
    by_addr = {"127.0.0.1:%d" % b.port: b.name for b in bs}
    keys = ["key-%d" % i for i in range(1000)]

    node = t.shoal(conf(bs))
    before = run_keys(t, node, "/?k=%s", keys)
    again = run_keys(t, node, "/?k=%s", keys[:200])
    t.check(all(again[k] == before[k] for k in again), "a key asked again lands on the same backend")
    r5 = ring(list(by_addr))
    want = {k: by_addr[ring_pick(r5, k)] for k in keys}
    same = sum(want[k] == before[k] for k in keys)
    t.check(same == len(keys), "every key lands where nginx's Ketama ring puts it (%d/%d)"
            % (same, len(keys)))
    spread = collections.Counter(before.values())
    t.log("spread over 5 backends: %s" % dict(sorted(spread.items())))
    t.check(min(spread.values()) >= 100, "every backend gets a share", spread)
    uri = run_keys(t, node, "/u/?k=%s", keys[:200])
    r_uri = {k: by_addr[ring_pick(r5, "/u/?k=" + k)] for k in keys[:200]}
    t.check(uri == r_uri, "hash $request_uri consistent follows the ring too")
    t.stop(node)

    # the same config without b4
    removed = "b4"
    node2 = t.shoal(conf([b for b in bs if b.name != removed]))
    after = run_keys(t, node2, "/?k=%s", keys)
    moved = [k for k in keys if after[k] != before[k]]
    frac = len(moved) / len(keys)
    t.log("removing 1 of 5 servers moved %d of %d keys (%.1f%%; ideal 20%%, b4 had %d)"
          % (len(moved), len(keys), 100 * frac, spread[removed]))
    t.check(all(before[k] == removed for k in moved), "only keys of the removed server move")
    t.check(len(moved) == spread[removed], "and all of them do")
    t.check(0.12 <= frac <= 0.28, "about 1/N of the keys move (%.1f%%)" % (100 * frac))


if __name__ == "__main__":
    sh.run(main)
