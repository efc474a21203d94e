# SPDX-License-Identifier: Apache-2.0
"""Issue 13: global rate limits on 5 real nodes, at steady state and
across a death and a join.

- Steady state: one hot key (200 r/s) and ten keys (20 r/s each), traffic
  even or 80% on one node, twice the allowed rate offered: the admitted
  rate (mean of 4 whole seconds after 2 of warm-up) within 5%.
- A node dies: under hot-key load, the owner of the hot key's shard (the
  node that holds its bucket) is killed with SIGKILL; its clients go to the
  others (as a load balancer does). The admitted rate over the 3 seconds
  that start 1 s after the kill is within 5% of the rate.
- A node joins: a new node joins the running cluster and, once it is a
  member, takes its share of the clients; the admitted rate over the 3
  seconds that start 1 s later is within 5%.
Prints the table."""

import cluster_util as cu
import glimit_util as gu

sh = cu.sh


def main(t, ctl):
    nodes, key, root = gu.start_cluster(t, ctl, 5)
    rows = []
    for kind, uneven in gu.CASES:
        r = gu.measure(t, nodes, kind, uneven)
        rows.append(r)
        t.log(gu.row(r))
        gu.judge(t, r, "5 nodes, %s keys, %s: admitted %.1f/s for %d/s (within 5%%)"
                % (kind, r["traffic"], r["admitted"], r["allowed"]))

    # the owner of the hot key's shard
    lim = ctl.json(nodes[1].admin, "limits") or {}
    hot = [z for z in lim.get("zones", []) if z["zone"] == "hot"]
    owner = hot[0]["hot_keys"][0]["owner"] if hot and hot[0]["hot_keys"] else nodes[-1].name
    victim = [n for n in nodes if n.name == owner][0]
    t.log("the hot key's owner is %s: it dies" % owner)

    def kill(load):
        victim.proc.kill()
        load.set_weights({n.http_port: 1.0 for n in nodes if n is not victim})
    r = gu.transient(t, nodes, kill, "owner killed")
    rows.append(r)
    t.log(gu.row(r))
    gu.judge(t, r, "after the hot key's owner died: admitted %.1f/s for %d/s "
            "(within 5%%, from 1 s after)" % (r["admitted"], r["allowed"]))
    nodes.remove(victim)

    joiner = {}

    def join(load):
        n = gu.add_node(t, ctl, nodes, key, root, "g5")
        gu.wait_members(t, ctl, nodes, 5)
        joiner["n"] = n
        load.set_weights({x.http_port: 1.0 for x in nodes})
    r = gu.transient(t, nodes, join, "node joined")
    r["nodes"] = 5
    rows.append(r)
    t.log(gu.row(r))
    gu.judge(t, r, "after a node joined: admitted %.1f/s for %d/s (within 5%%, "
            "from 1 s after it took traffic)" % (r["admitted"], r["allowed"]))
    print("\n# global rate limit, 5 nodes (loopback, %s)" % t.shoal_bin)
    print(gu.HEADER)
    for x in rows:
        print(gu.row(x))


cu.run(main)
