#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: weighted round robin with real backends.

Three backends with weights 3/2/2 behind one node (one worker): 700
requests split 300/200/200 (smooth weighted round robin is exact over a
whole number of cycles; the check allows a few percent), and every window
of seven consecutive requests already holds the 3/2/2 share. The backends'
own counters agree."""

import collections

import shoal_harness as sh


def main(t):
    bs = [t.backend("b%d" % i) for i in (1, 2, 3)]
    node = t.shoal(f"""
        worker_processes 1;
        events {{ }}
        http {{
            upstream weighted {{
                server 127.0.0.1:{bs[0].port} weight=3;
                server 127.0.0.1:{bs[1].port} weight=2;
                server 127.0.0.1:{bs[2].port} weight=2;
                keepalive 16;
            }}
            server {{
                listen 127.0.0.1:{{port}};
                location / {{ proxy_pass http://weighted; }}
            }}
        }}""")

    names = []
    for _ in range(7):  # 7 client connections of 100 requests each
        r = t.curl(*[node.url("/") for _ in range(100)], timeout=60)
        t.require(r.rc == 0, "a batch of 100 requests completes", r)
        names += [line.split()[-1] for line in r.text().splitlines() if line.startswith("hello")]
    c = collections.Counter(names)
    total = len(names)
    t.log("split over %d requests: b1 %d, b2 %d, b3 %d (expected 300/200/200)"
          % (total, c["b1"], c["b2"], c["b3"]))
    t.require(total == 700, "700 answers", total)
    for name, want in (("b1", 300), ("b2", 200), ("b3", 200)):
        t.check(abs(c[name] - want) <= 0.03 * total,
                "%s got %d, within 3%% of %d" % (name, c[name], want), c)
    windows_ok = all(collections.Counter(names[i:i + 7]) == {"b1": 3, "b2": 2, "b3": 2}
                     for i in range(0, 700, 7))
    t.check(windows_ok, "every run of seven holds 3 b1, 2 b2, 2 b3 (smooth, not bursts)",
            " ".join(names[:28]))
    stats = [b.stats()["requests"] for b in bs]
    t.check(stats == [c["b1"], c["b2"], c["b3"]],
            "backend counters agree with the responses (%s)" % stats)


if __name__ == "__main__":
    sh.run(main)
