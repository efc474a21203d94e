#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: backup servers with real backends.

Two primaries and one `backup`: the backup gets nothing while any primary
lives (one primary down is not enough), serves everything once both are
down (the request that finds them down is retried onto it, no error), and
stops getting traffic once a primary is back (restarted on its port,
taken back after fail_timeout). With the backup down too: a fast 502."""

import shoal_harness as sh


def main(t):
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    b3 = t.backend("b3")
    node = t.shoal(f"""
        worker_processes 1;
        events {{ }}
        http {{
            upstream g {{
                server 127.0.0.1:{b1.port} fail_timeout=2s;
                server 127.0.0.1:{b2.port} fail_timeout=2s;
                server 127.0.0.1:{b3.port} backup;
            }}
            server {{
                listen 127.0.0.1:{{port}};
                location / {{ proxy_pass http://g; }}
            }}
        }}""")

    def ask(n):
        out = []
        for _ in range(n):
            r = t.curl(node.url("/"))
            out.append(r.header("X-Backend") if r.status == 200 else "status %s" % r.status)
        return out

    seq = ask(20)
    t.check(sorted(set(seq)) == ["b1", "b2"], "both primaries serve, the backup does not", seq)
    t.check(b3.stats()["received"] == 0, "the backup received nothing")

    b1.proc.kill()
    seq = ask(10)
    t.check(seq == ["b2"] * 10, "one primary down: the other serves all, still no backup", seq)
    t.check(b3.stats()["received"] == 0, "the backup still received nothing")

    b2.proc.kill()
    seq = ask(10)
    t.check(seq == ["b3"] * 10, "both primaries down: the backup serves every request", seq)

    b1 = t.backend("b1", port=b1.port)
    b2 = t.backend("b2", port=b2.port)
    # within fail_timeout the primaries stay out; then one probe each brings them back
    back = sh.wait_for(lambda: ask(1)[0] in ("b1", "b2"), 15,
                       "a restarted primary to be taken back")
    t.check(back, "a restarted primary is taken back after fail_timeout")
    def both_back():
        ask(1)  # traffic is what brings a primary back (its probe)
        return b1.stats()["received"] > 0 and b2.stats()["received"] > 0
    sh.wait_for(both_back, 15, "both primaries to be taken back")
    n3 = b3.stats()["received"]
    seq = ask(10)
    t.check("b3" not in seq and sorted(set(seq)) == ["b1", "b2"],
            "primaries back: the backup gets nothing again", seq)
    t.check(b3.stats()["received"] == n3, "the backup's counter did not move")

    for b in (b1, b2, b3):
        b.proc.kill()
    r = t.curl(node.url("/"))
    t.check(r.status == 502, "everything down: 502", r)
    r = t.curl(node.url("/"))
    t.check(r.status == 502 and r.elapsed < 1.0 * t.slow,
            "and the next one is a fast 502 (%.3fs)" % r.elapsed, r)
    t.check("no live upstreams" in node.proc.stderr(), "logged: no live upstreams")


if __name__ == "__main__":
    sh.run(main)
