# SPDX-License-Identifier: Apache-2.0
"""Issue 5: a network partition made with network namespaces heals.

Four shoal nodes, each in a namespace of its own with a veth pair whose host
end is on one of two bridges, A (n0, n1) and B (n2, n3); the bridges are
joined by a third veth pair. Taking that pair down cuts A from B: each side
declares the other dead. Bringing it up heals: every node sees all four
alive again (push-pull and the dead nodes' refutation bring them back).
Admin listeners are on each namespace's own loopback, read with
`ip netns exec NS nodectl members --json`. Every namespace and link created
here is deleted on every exit path (normal, failure, SIGTERM/SIGINT). Skips
(exit 77) only if `ip netns add` is not permitted."""

import cluster_util as cu
import netns_util as nu
from netns_util import Net, netns_permitted  # noqa: F401 (test_ops_netns, test_health_netns)

sh = cu.sh
N = 4


def main(t, ctl):
    nu.run_in_netns(t, Net(), lambda net: run(t, ctl, net))


def run(t, ctl, net):
    net.setup()
    c = cu.Cluster(t, ctl)
    key = cu.write_keys(t, [cu.new_key()])
    seed_addr = None
    for i in range(N):
        ns, addr = net.add_node(i, "a" if i < N // 2 else "b")
        gossip = "%s:7946" % addr
        d = t._subdir("shoal-n%d" % i)
        conf = t.write_conf(cu.cluster_conf("n%d" % i, gossip, "127.0.0.1:9901", key,
                                            [seed_addr] if seed_addr else ()),
                            port=8080, d=d)
        p = t._spawn("shoal", ["ip", "netns", "exec", ns, t.shoal_bin, "-p", d + "/", "-c", conf], d)
        n = cu.CNode("n%d" % i, None, gossip, "127.0.0.1:9901", netns=ns, proc=p)
        sh.wait_for(lambda n=n: c._admin_up(n), 15, "admin of n%d in %s" % (i, ns))
        t.log("n%d pid %d in %s at %s" % (i, p.pid, ns, gossip))
        c.nodes.append(n)
        seed_addr = seed_addr or gossip
    alive = {n.name: "alive" for n in c.nodes}
    secs = c.wait_all_see(c.nodes, alive, 30, "4 alive everywhere")
    t.check(True, "4 nodes in 4 namespaces on two bridges form a cluster (%.2fs)" % secs)

    A, B = c.nodes[:N // 2], c.nodes[N // 2:]
    net.cut(True)
    secs = max(c.wait_all_see(A, {n.name: "dead" for n in B}, 60, "side A to see B dead"),
               c.wait_all_see(B, {n.name: "dead" for n in A}, 60, "side B to see A dead"))
    t.check(True, "partition: each side sees the other dead (%.2fs)" % secs)
    t.check(all(c.view(x).get(y.name) == "alive" for side in (A, B) for x in side for y in side),
            "within each side the nodes still see each other alive")

    net.cut(False)
    secs = c.wait_all_see(c.nodes, alive, 90, "all 4 alive everywhere after the heal")
    t.check(True, "heal: all 4 nodes see all 4 alive again (%.2fs)" % secs)
    for n in c.nodes:
        t.stop(n.proc)


if __name__ == "__main__":
    cu.run(main)
