# SPDX-License-Identifier: Apache-2.0
"""Issue 5: five real shoal processes form a cluster on loopback, three ways:
through one static seed, through a `file:` list (written only after the
nodes are up, so it is re-read on retry, as an autoscaler would write it) and
through `dns:localhost:PORT`. Membership is read through nodectl --json on
every node, and the table nodectl prints for people is checked too."""

import os

import cluster_util as cu

N = 5


def form(t, ctl, how, joins_for):
    c = cu.Cluster(t, ctl)
    key = cu.write_keys(t, [cu.new_key()])
    seed = c.start("%s-0" % how, key)
    for i in range(1, N):
        c.start("%s-%d" % (how, i), key, joins=joins_for(seed, i), wait_admin=False)
    for n in c.nodes:
        cu.sh.wait_for(lambda n=n: c._admin_up(n), 15, "admin of %s" % n.name)
    want = {n.name: "alive" for n in c.nodes}
    secs = c.wait_all_see(c.nodes, want, 30, "%d nodes joined by %s to see %d alive" % (N, how, N))
    t.check(True, "join by %s: all %d nodes list %d alive members (%.2fs)" % (how, N, N, secs))
    return c


def main(t, ctl):
    # 1. one static seed
    c = form(t, ctl, "seed", lambda seed, i: [seed.gossip])
    # The operator's view: an aligned table, one row per member, no colour
    # when stdout is not a terminal.
    r = ctl.run("members", addr=c.nodes[2].admin)
    t.check(r.returncode == 0, "nodectl members exits 0", r.stderr)
    lines = r.stdout.rstrip("\n").split("\n")
    t.check(len(lines) == N + 1 and lines[0].split()[:3] == ["NAME", "ADDRESS", "STATUS"],
            "nodectl members prints a header and %d rows" % N, r.stdout)
    col = lines[0].index("STATUS")
    t.check(all(ln[col:].startswith("alive") for ln in lines[1:]),
            "the STATUS column is aligned and every member is alive", r.stdout)
    t.check("\033[" not in r.stdout, "no colour codes when stdout is not a terminal")
    t.log("nodectl members:\n" + r.stdout)
    for n in list(c.nodes):
        t.stop(n.proc)

    # 2. a file: list, empty at start and filled once every node is running
    peers = os.path.join(t.tmp, "peers")
    with open(peers, "w") as f:
        f.write("# filled in later\n")
    c2 = cu.Cluster(t, ctl)
    key = cu.write_keys(t, [cu.new_key()])
    nodes = [c2.start("file-%d" % i, key, joins=["file:" + peers]) for i in range(N)]
    lone = [len(c2.view(n)) for n in nodes]
    t.check(all(x == 1 for x in lone), "before the list has addresses, each node is alone", lone)
    with open(peers + ".tmp", "w") as f:
        f.write("# what an autoscaler writes\n%s\n%s, %s\n" % (nodes[0].gossip, nodes[1].gossip,
                                                                 nodes[2].gossip))
    os.rename(peers + ".tmp", peers)
    want = {n.name: "alive" for n in nodes}
    secs = c2.wait_all_see(nodes, want, 45, "nodes joined by file: to see %d alive" % N)
    t.check(True, "join by file: (re-read on retry): all %d nodes see %d alive (%.2fs after "
            "the file was written)" % (N, N, secs))
    for n in list(nodes):
        t.stop(n.proc)

    # 3. dns: a name that resolves to loopback
    form(t, ctl, "dns", lambda seed, i: ["dns:localhost:%s" % seed.gossip.rsplit(":", 1)[1]])


if __name__ == "__main__":
    cu.run(main)
