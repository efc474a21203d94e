# SPDX-License-Identifier: Apache-2.0
"""Issue 13, cluster-wide purge: a node partitioned during purges serves no
stale entry after it heals.

Five nodes with proxy_cache (`cache_purge_log 5;`: a short log). Every node
caches /x and /y. The gossip of p4 is cut with nftables (UDP both ways and
gossip TCP; HTTP still reaches it) until p0 declares it failed; a purge of
/x is given to p0 (it answers without p4), then eight more purges of other
keys, so no member's log (5 records) still holds the purge of /x. The cut
is removed: p4 rejoins, its push-pull finds a hole in p0's sequence that no
log fills, and it drops its whole cache (the away-longer-than-the-log
rule); /x on p4 is fetched again (not the old copy), and so is /y (dropped
with the rest), while the other nodes still hit /y. Skipped (77) where nft
cannot be used."""

import sys

import cluster_util as cu
import glimit_util as gu
import purge_util as pu

sh = cu.sh


def main(t, ctl):
    if not gu.nft_permitted():
        print("SKIP - nft is not usable here", flush=True)
        sys.exit(77)
    oport = pu.start_origin(t)
    nodes, _ = pu.start_cluster(t, ctl, 5, oport, extra="cache_purge_log 5;")
    p0, p4 = nodes[0], nodes[4]
    for n in nodes:
        n.get("/x")
        n.get("/y")
    t.check(all(n.get("/x")[0] == "HIT" and n.get("/y")[0] == "HIT" for n in nodes),
            "/x and /y cached on all five")
    # the origin counts per target over all nodes: 5 fetches each so far
    base = max(n.get("/x")[1] for n in nodes)
    nft = gu.Nft([n.gossip_port for n in nodes[:4]], [p4.gossip_port],
                 [n.gossip_port for n in nodes])
    sh._install_handlers()
    try:
        nft.add()

        def p4_failed():
            m = ctl.members(p0.admin) or []
            return any(x["name"] == "p4" and x["status"] in ("dead", "left") for x in m)
        sh.wait_for(p4_failed, 60 * t.slow, "p0 to declare p4 failed", interval=0.2)
        code, res, _ = pu.purge(p0.admin, key=pu.key_of(oport, "/x"), timeout_ms=2000)
        t.check(code == 200 and "p4" not in res.get("applied", []) and
                len(res.get("applied", [])) == 4,
                "the purge of /x during the partition: applied by the four others", res)
        for i in range(8):
            pu.purge(p0.admin, key=pu.key_of(oport, "/z/%d" % i), timeout_ms=2000)
        t.log("while cut off, p4 answers /x with %s" % (p4.get("/x"),))
    finally:
        nft.remove()

    def healed():
        st = p4.purges()
        return st["flushes"] >= 1 or st["received"] + st["caught_up"] >= 9
    sh.wait_for(healed, 60 * t.slow, "p4 to rejoin and catch up", interval=0.2)
    st = p4.purges()
    x = p4.get("/x")
    t.check(x[1] is not None and x[1] > base,
            "after the heal, p4 does not serve the old /x (fetched again)", (x, base))
    t.check(st["flushes"] >= 1, "p4 was away longer than the log: it dropped its cache", st)
    y = p4.get("/y")
    t.check(y[1] is not None and y[1] > base, "p4's /y was dropped with the rest (fetched again)",
            (y, base))
    t.check(p0.get("/y")[0] == "HIT", "the others still hit /y")
    print("partition: p4 after the heal: /x %s, /y %s, flushes %d" % (x, y, st["flushes"]),
          flush=True)


if __name__ == "__main__":
    cu.run(main)
