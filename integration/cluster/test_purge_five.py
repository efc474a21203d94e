# SPDX-License-Identifier: Apache-2.0
"""Issue 13, cluster-wide purge: five nodes with proxy_cache in front of one
origin. A purge given to any node's admin API (POST /v1/cache/purge, or
`nodectl cache purge`) reaches every node's cache and the call returns when
every live member has applied it, saying which did; --async returns at
once; "local": true purges one node. SSE `purge` events, the
shoal_cache_purges_* metrics and `nodectl cache stats`. Then 200 purges,
one after the other from each node in turn: p50 and p99 from the call to
applied on all five nodes (the call's own time, as a client sees it, and
the node's elapsed_ms) are printed (target p99 < 100 ms on loopback; the
machine is shared, so the check is generous)."""

import http.client
import json
import threading
import time

import cluster_util as cu
import purge_util as pu

sh = cu.sh
N_LAT = 200


class Events:
    """GET /v1/events in a thread; the events' JSON, by type."""

    def __init__(self, admin):
        host, port = admin.rsplit(":", 1)
        self.c = http.client.HTTPConnection(host, int(port), timeout=60)
        self.c.request("GET", "/v1/events")
        self.r = self.c.getresponse()
        self.got = []
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        typ = None
        try:
            for line in self.r:
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    typ = line[7:]
                elif line.startswith("data: "):
                    self.got.append((typ, json.loads(line[6:])))
        except (OSError, ValueError):
            pass

    def close(self):
        try:
            self.r.close()
            self.c.close()
        except (OSError, AttributeError, ValueError):
            pass


def main(t, ctl):
    oport = pu.start_origin(t)
    nodes, _ = pu.start_cluster(t, ctl, 5, oport)
    names = sorted(n.name for n in nodes)
    ev = Events(nodes[4].admin)

    paths = {"a": "/t/a?tag=red%20blue", "b": "/t/b?tag=red", "c": "/t/c?tag=green"}
    for n in nodes:
        for p in paths.values():
            n.get(p)
    t.check(all(n.get(p)[0] == "HIT" for n in nodes for p in paths.values()),
            "three entries cached on all five nodes")

    # a tag purge through nodectl on p2, --json: who applied it
    r = ctl.run("cache", "purge", "--tag", "red", "--json", addr=nodes[2].admin)
    res = json.loads(r.stdout or "{}")
    t.check(r.returncode == 0 and sorted(res.get("applied", [])) == names and
            res.get("complete") is True and res.get("purged") == 2 and res.get("origin") == "p2",
            "nodectl cache purge --tag red --json: applied by all five, 2 entries here", res)
    got = {n.name: (n.get(paths["a"])[0], n.get(paths["b"])[0], n.get(paths["c"])[0])
           for n in nodes}
    t.check(all(v == ("MISS", "MISS", "HIT") for v in got.values()),
            "after it returned, every node misses the red entries and keeps green", got)

    # text output, a key purge from p4
    k = pu.key_of(oport, paths["c"])
    r = ctl.run("cache", "purge", "--key", k, addr=nodes[4].admin)
    t.check(r.returncode == 0 and "applied by 5 of 5 members" in r.stdout,
            "nodectl cache purge --key: 'applied by 5 of 5 members'", r.stdout + r.stderr)
    t.check(all(n.get(paths["c"])[0] == "MISS" for n in nodes), "the key is gone everywhere")

    # --async returns at once; every node applies it soon after
    before = {n.name: n.purges()["applied"] for n in nodes}
    r = ctl.run("cache", "purge", "--prefix", pu.key_of(oport, "/t/"), "--async", "--json",
                addr=nodes[1].admin)
    res = json.loads(r.stdout or "{}")
    t.check(r.returncode == 0 and res.get("async") is True and res.get("seq", 0) > 0,
            "nodectl cache purge --async: answered at once with its sequence", res)
    sh.wait_for(lambda: all(n.purges()["applied"] > before[n.name] for n in nodes),
                10 * t.slow, "every node to apply the async purge")
    t.check(all(n.get(paths["a"])[0] == "MISS" for n in nodes),
            "the async prefix purge reached every node")

    # "local": true stays on one node
    for n in nodes:
        n.get("/t/d")
    code, res, _ = pu.purge(nodes[0].admin, key=pu.key_of(oport, "/t/d"), local=True)
    t.check(code == 200 and "applied" not in res and res["purged"] == 1,
            "\"local\": true purges this node only (the old answer)", res)
    t.check(nodes[0].get("/t/d")[0] == "MISS" and nodes[1].get("/t/d")[0] == "HIT",
            "after a local purge, the others still hit")

    # errors stay 400
    for bad in ({"key": "x", "async": "yes"}, {"key": "x", "timeout_ms": -1}):
        code, _, _ = pu.purge(nodes[0].admin, **bad)
        t.check(code == 400, "purge %s: 400" % bad, code)

    # p50 / p99 from the call to applied on all five
    for i in range(20):
        for n in nodes:
            n.get("/lat/%d" % i)
    calls, server = [], []
    incomplete = 0
    for i in range(N_LAT):
        n = nodes[i % 5]
        code, res, secs = pu.purge(n.admin, key=pu.key_of(oport, "/lat/%d" % (i % 20)))
        if code != 200 or sorted(res.get("applied", [])) != names:
            incomplete += 1
        calls.append(secs * 1000)
        server.append(res.get("elapsed_ms", 0))
    t.check(incomplete == 0, "all %d purges applied by all five before the call returned" % N_LAT,
            incomplete)
    p50, p99 = pu.pct(calls, 50), pu.pct(calls, 99)
    s50, s99 = pu.pct(server, 50), pu.pct(server, 99)
    print("purge latency, 5 nodes on loopback, %d purges (call -> applied on all 5): "
          "p50 %.1f ms, p99 %.1f ms (client side); node's elapsed_ms p50 %d, p99 %d, max %d"
          % (N_LAT, p50, p99, s50, s99, max(server)), flush=True)
    t.check(p99 < 1000 * t.slow, "p99 %.1f ms (target < 100 ms; bound 1 s on a loaded machine)"
            % p99)
    if p99 >= 100:
        t.log("note: p99 over the 100 ms target on this (shared) machine")

    # events, metrics, stats
    sh.wait_for(lambda: sum(1 for typ, d in ev.got if typ == "purge") >= N_LAT, 10 * t.slow,
                "purge events on p4's stream")
    pe = [d for typ, d in ev.got if typ == "purge"]
    t.check(any(d.get("origin") == "p2" and d.get("kind") == "tag" and d.get("value") == "red"
                for d in pe), "SSE: a purge event for the tag purge (origin p2)", pe[:3])
    ev.close()
    m = cu.metrics(nodes[4].admin)
    t.check(m.get("shoal_cache_purges_applied_total", 0) >= N_LAT + 3 and
            m.get("shoal_cache_purges_received_total", 0) >= N_LAT * 4 // 5 and
            m.get('shoal_cache_purges_applied_by_origin_total{origin="p2"}', 0) >= 1 and
            "shoal_cache_purges_lag_seconds_count" in m,
            "/metrics: shoal_cache_purges_* (applied, received, by origin, lag)",
            {k: v for k, v in m.items() if "purges" in k})
    r = ctl.run("cache", "stats", addr=nodes[4].admin)
    t.check(r.returncode == 0 and "purge channel" in r.stdout and "origin p2" in r.stdout,
            "nodectl cache stats shows the purge channel", r.stdout)


if __name__ == "__main__":
    cu.run(main)
