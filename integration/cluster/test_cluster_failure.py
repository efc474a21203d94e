# SPDX-License-Identifier: Apache-2.0
"""Issue 5: in a 5-node cluster of real shoal processes, a node killed with
SIGKILL is seen as dead by all four others, and a node stopped with SIGTERM
(graceful leave) is seen as left by the three that remain."""

import signal

import cluster_util as cu

N = 5


def main(t, ctl):
    c = cu.Cluster(t, ctl)
    key = cu.write_keys(t, [cu.new_key()])
    seed = c.start("n0", key)
    for i in range(1, N):
        c.start("n%d" % i, key, joins=[seed.gossip])
    c.wait_all_see(c.nodes, {n.name: "alive" for n in c.nodes}, 30, "5 alive everywhere")

    victim, leaver = c.nodes[2], c.nodes[1]
    others = [n for n in c.nodes if n is not victim]
    victim.proc.kill()  # SIGKILL: no leave message goes out
    secs = c.wait_all_see(others, {victim.name: "dead"}, 60, "%s dead everywhere" % victim.name)
    t.check(True, "kill -9 of %s: all %d others see it dead after %.2fs" % (victim.name, len(others), secs))

    rest = [n for n in others if n is not leaver]
    leaver.proc.injected = True  # stopped on purpose: not an early death
    leaver.proc.signal(signal.SIGTERM)
    secs = c.wait_all_see(rest, {leaver.name: "left"}, 30, "%s left everywhere" % leaver.name)
    t.check(True, "SIGTERM of %s: all %d others see it left after %.2fs" % (leaver.name, len(rest), secs))
    rc = leaver.proc.wait_exit(10)
    t.check(rc == 0, "the node stopped with SIGTERM exits 0", rc)
    t.check(all(c.view(n).get(m.name) == "alive" for n in rest for m in rest),
            "the remaining nodes still see each other alive")


if __name__ == "__main__":
    cu.run(main)
