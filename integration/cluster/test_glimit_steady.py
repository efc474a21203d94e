# SPDX-License-Identifier: Apache-2.0
"""Issue 13: global rate limits at steady state on 2 and 3 real nodes.

Two global zones (`limit_req_zone $http_x_key ... global` and NGINX Plus's
`sync`): "hot", one key at 200 r/s, and "many", 10 keys at 20 r/s each
(200 r/s in all). For each cluster size, four cases: one hot key or ten
keys, traffic spread evenly or 80% on one node; each offers twice the
allowed rate (paced clients, glimit_util.Load) and counts 200 and 429 per
second. The cluster-wide admitted rate (mean of 4 whole seconds after 2 of
warm-up) must be within 5% of the configured rate; a node-local limit
would admit N times it. The third node joins the running 2-node cluster
under hot-key load and takes clients as soon as it is a member, and at the
end a node of the three is killed (SIGKILL; its clients go to the other
two): over the 3 seconds that start 1 s after each event the admitted rate
is within 5%. `nodectl limits` reports the zones as global, not degraded,
and names the hot keys. The table is printed at the end."""

import cluster_util as cu
import glimit_util as gu

sh = cu.sh


def main(t, ctl):
    nodes, key, root = gu.start_cluster(t, ctl, 2)
    rows = []
    for size in (2, 3):
        if size == 3:
            def join(load):
                gu.add_node(t, ctl, nodes, key, root, "g2")
                gu.wait_members(t, ctl, nodes, 3)
                load.set_weights({x.http_port: 1.0 for x in nodes})
            r = gu.transient(t, nodes[:2], join, "node joined")
            r["nodes"] = 3
            rows.append(r)
            t.log(gu.row(r))
            gu.judge(t, r, "2 -> 3 nodes: admitted %.1f/s for %d/s (within 5%%, "
                    "from 1 s after the join)" % (r["admitted"], r["allowed"]))
        for kind, uneven in gu.CASES:
            r = gu.measure(t, nodes, kind, uneven)
            rows.append(r)
            t.log(gu.row(r))
            gu.judge(t, r,
                    "%d nodes, %s keys, %s: admitted %.1f/s for %d/s (within 5%%)"
                    % (size, kind, r["traffic"], r["admitted"], r["allowed"]))
    lim = ctl.json(nodes[0].admin, "limits")
    zones = {z["zone"]: z for z in (lim or {}).get("zones", [])}
    t.check(set(zones) == {"hot", "many"} and all(z["global"] and not z["degraded"] and
                                                   z["members"] == 3 for z in zones.values()),
            "nodectl limits --json: both zones global, not degraded, 3 members heard", lim)
    hot = [k for z in zones.values() for k in z["hot_keys"]]
    t.check(any(k["key"].startswith("k0") for k in zones.get("many", {}).get("hot_keys", [])),
            "nodectl limits --json names the hot keys of zone many (k0..)", hot)
    out = ctl.run("limits", addr=nodes[0].admin)
    t.check(out.returncode == 0 and "hot" in out.stdout and "global (hears 3 of 3" in out.stdout,
            "nodectl limits prints the table", out.stdout + out.stderr)
    t.log("nodectl limits:\n" + out.stdout)
    m = cu.metrics(nodes[0].admin)
    t.check(m.get('shoal_limit_global_degraded{zone="hot"}') == 0 and
            m.get('shoal_limit_channel_messages_total{dir="sent"}', 0) > 0 and
            m.get('shoal_cluster_service_bytes_sent_total{service="limits"}', 0) > 0,
            "/metrics: the degraded gauge (0) and the channel's messages and bytes",
            {k: v for k, v in m.items() if "limit" in k})
    victim = nodes[1]

    def kill(load):
        victim.proc.kill()
        load.set_weights({x.http_port: 1.0 for x in nodes if x is not victim})
    r = gu.transient(t, nodes, kill, "node killed")
    r["nodes"] = 2
    rows.append(r)
    t.log(gu.row(r))
    gu.judge(t, r, "3 -> 2 nodes (g1 killed): admitted %.1f/s for %d/s (within "
            "5%%, from 1 s after)" % (r["admitted"], r["allowed"]))
    print("\n# global rate limit, steady state (loopback, %s)" % t.shoal_bin)
    print(gu.HEADER)
    for r in rows:
        print(gu.row(r))


cu.run(main)
