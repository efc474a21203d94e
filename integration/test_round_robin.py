#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 2: round robin over an upstream.

Two backends with equal weights: sequential requests alternate strictly
(b1 b2 b1 b2 ... or starting with b2), on new client connections and on one
kept-alive client connection alike. With weight=2 on one of them, every run
of three requests gives it two. With one of the two backends dead, requests
still get an answer (a 502 for those sent to the dead one, or the live
backend's answer if the node retries; never a hang)."""

import collections

import shoal_harness as sh


def main(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    b3 = t.backend("b3")
    b4 = t.backend("b4")
    dead = t.port()
    node = t.shoal(f"""
        events {{ }}
        http {{
            upstream pair {{
                server 127.0.0.1:{b1.port};
                server 127.0.0.1:{b2.port};
                keepalive 16;
            }}
            upstream weighted {{
                server 127.0.0.1:{b3.port} weight=2;
                server 127.0.0.1:{b4.port};
                keepalive 16;
            }}
            upstream halfdead {{
                server 127.0.0.1:{b1.port};
                server 127.0.0.1:{dead};
            }}
            server {{
                listen 127.0.0.1:{{port}};
                location / {{ proxy_pass http://pair; }}
                location /w/ {{ proxy_pass http://weighted; }}
                location /half/ {{ proxy_pass http://halfdead; }}
            }}
        }}""")

    seq = [t.curl(node.url("/")).header("X-Backend") for _ in range(10)]
    t.log("sequence: %s" % " ".join(map(str, seq)))
    t.check(collections.Counter(seq) == {"b1": 5, "b2": 5}, "10 requests: 5 to b1, 5 to b2", seq)
    t.check(all(seq[i] != seq[i + 1] for i in range(len(seq) - 1)), "and they alternate strictly", seq)

    # On one client connection.
    r = t.curl(*[node.url("/") for _ in range(8)])
    names = [line.split()[-1] for line in r.text().splitlines()]
    t.check(collections.Counter(names) == {"b1": 4, "b2": 4}
            and all(names[i] != names[i + 1] for i in range(len(names) - 1)),
            "8 requests on one client connection alternate too", names)

    # Both backends really served (their own counters).
    s1, s2 = b1.stats(), b2.stats()
    t.check(s1["requests"] == 9 and s2["requests"] == 9,
            "backend counters agree: 9 each (b1 %d, b2 %d)" % (s1["requests"], s2["requests"]))

    # weight=2: two of every three.
    seq = [t.curl(node.url("/w/")).header("X-Backend") for _ in range(9)]
    t.log("weighted sequence: %s" % " ".join(map(str, seq)))
    t.check(collections.Counter(seq) == {"b3": 6, "b4": 3}, "weight=2 vs 1 over 9 requests: 6 to b3, 3 to b4", seq)
    t.check(all(collections.Counter(seq[i:i + 3]) == {"b3": 2, "b4": 1} for i in (0, 3, 6)),
            "every run of three has two b3 and one b4", seq)

    # One dead member: answers, never a hang.
    results = []
    for _ in range(6):
        r = t.curl(node.url("/half/"), timeout=30)
        results.append((r.status, r.header("X-Backend"), round(r.elapsed, 3)))
    t.log("half-dead upstream: %s" % results)
    t.check(all(s == 502 or (s == 404 and b == "b1") for s, b, _ in results)
            and all(e < 3.0 for _, _, e in results),
            "half-dead upstream: every request gets b1's answer or a 502, each within 3 s", results)
    t.check(any(b == "b1" for _, b, _ in results), "the live member keeps getting requests", results)


if __name__ == "__main__":
    sh.run(main)
