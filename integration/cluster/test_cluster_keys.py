# SPDX-License-Identifier: Apache-2.0
"""Issue 5: gossip is authenticated. On a 3-node cluster the key is rotated
at run time through `nodectl keyring` (install K2 everywhere, use it
everywhere, remove K1 everywhere) without losing a member. Then datagrams
are sent to a node's gossip port and each refusal is counted in /v1/stats:
too short, of an unknown envelope version, forged (a valid key id, a bad
tag), and correctly sealed but under the removed key K1. A packet sealed
under the primary key with a garbage payload is opened (so the Python
envelope matches libsodium's) and refused later, at decode. Finally a shoal
started with only K1 cannot join."""

import os

import cluster_util as cu

N = 3


def main(t, ctl):
    k1, k2 = cu.new_key(), cu.new_key()
    c = cu.Cluster(t, ctl)
    key = cu.write_keys(t, [k1])
    seed = c.start("k0", key)
    for i in range(1, N):
        c.start("k%d" % i, key, joins=[seed.gossip])
    alive = {n.name: "alive" for n in c.nodes}
    c.wait_all_see(c.nodes, alive, 30, "3 alive everywhere")

    for step, k in (("install", k2), ("use", k2), ("remove", k1)):
        for n in c.nodes:
            r = ctl.run("keyring", step, k.hex(), addr=n.admin)
            t.require(r.returncode == 0, "nodectl keyring %s on %s" % (step, n.name), r.stderr)
    kr = ctl.json(seed.admin, "keyring")
    t.check(kr == {"keys": [cu.key_id(k2).hex()], "primary": cu.key_id(k2).hex()},
            "after rotation only K2 is installed, and primary", kr)
    r = ctl.run("keyring", "remove", k2.hex(), addr=seed.admin)
    t.check(r.returncode == 1 and "primary" in r.stderr and r.stderr.count("\n") == 1,
            "removing the primary key is refused by the node: exit 1, one line", r)
    # The cluster keeps gossiping under K2: a later change still spreads.
    c.wait_all_see(c.nodes, alive, 10, "3 alive everywhere after the rotation")
    before = ctl.stats(seed.admin)
    opened0 = before["opened"]
    cu.sh.wait_for(lambda: ctl.stats(seed.admin)["opened"] > opened0 + 5, 10,
                   "gossip under K2 to be opened")

    def refused(field, data, what):
        b = ctl.stats(seed.admin)[field]
        cu.send_udp(seed.gossip, data)
        try:
            cu.sh.wait_for(lambda: ctl.stats(seed.admin)[field] > b, 5, what)
            t.check(True, "%s: refused and counted in /v1/stats %s" % (what, field))
        except cu.sh.HarnessError as e:
            t.check(False, what, e)

    refused("dropped_short", b"\x01abc", "a datagram shorter than the envelope")
    refused("dropped_bad_version", b"\x07" + os.urandom(80), "an unknown envelope version")
    refused("dropped_bad_tag", b"\x01" + cu.key_id(k2) + os.urandom(80),
            "a forged datagram naming K2 with a made-up tag")
    refused("dropped_unknown_key", cu.seal(k1, b"\x01\x01\x01" + os.urandom(40)),
            "a datagram correctly sealed under the removed key K1")
    refused("undecodable", cu.seal(k2, b"\xff\xff\xff" + os.urandom(40)),
            "a datagram sealed under K2 whose plaintext is garbage (opened, then refused)")

    # A node that still has only the removed key cannot join.
    rogue_key = cu.write_keys(t, [k1])
    b = ctl.stats(seed.admin)["dropped_unknown_key"]
    rogue = c.start("rogue", rogue_key, joins=[seed.gossip])
    cu.sh.wait_for(lambda: ctl.stats(seed.admin)["dropped_unknown_key"] > b, 10,
                   "the rogue node's join under K1 to be refused")
    views = [c.view(n) for n in c.nodes[:N]]
    t.check(all("rogue" not in v for v in views), "no member lists the node keyed with K1", views)
    t.check(len(c.view(rogue)) == 1, "the node keyed with K1 is alone", c.view(rogue))


if __name__ == "__main__":
    cu.run(main)
