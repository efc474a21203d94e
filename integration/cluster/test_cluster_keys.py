# SPDX-License-Identifier: Apache-2.0
"""Issues 5 and 6: gossip is authenticated, and the key rotates through any
one node. On a 3-node cluster `nodectl keys install K2` is run on ONE node
and spreads by gossip (every node's `keys list` shows K2 held by 3/3
members); `keys use K2` on another node, `keys remove K1` on a third: at the
end every node holds only K2, and no member was ever seen other than alive
during the rotation (a watcher polls every view while it runs).

Then datagrams are sent to a node's gossip port and each refusal is counted
in /v1/stats: too short, of an unknown envelope version, forged (a valid key
id, a bad tag), and correctly sealed but under the removed key K1. A packet
sealed under the primary key with a garbage payload is opened (so the Python
envelope matches libsodium's) and refused later, at decode. A shoal started
with only K1 cannot join.

Persistence: a node restarted after the rotation comes back with K2 (its
persisted keyring, not the K1 of its encrypt_key_file) and rejoins. A node
that was down during a second rotation (to K3) cannot rejoin with K2 alone;
given K3 through `nodectl keys install` + `keys use` on it, it joins with
`nodectl join`, takes the cluster's keyring, and every node ends on K3 only."""

import os
import threading
import time

import cluster_util as cu

N = 3


def main(t, ctl):
    k1, k2, k3 = cu.new_key(), cu.new_key(), cu.new_key()
    c = cu.Cluster(t, ctl)
    keyfiles = {}
    seed = None
    for i in range(N):
        name = "k%d" % i
        keyfiles[name] = cu.write_keys(t, [k1], name=name + ".key")
        n = c.start(name, keyfiles[name], joins=[seed.gossip] if seed else [])
        seed = seed or n
    alive = {n.name: "alive" for n in c.nodes}
    c.wait_all_see(c.nodes, alive, 30, "3 alive everywhere")

    # A watcher: every view, all the time, until the rotation is over.
    seen_bad = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for o in list(c.nodes):
                v = c.view(o)
                for name, st in v.items():
                    if st != "alive":
                        seen_bad.append((o.name, name, st))
            time.sleep(0.05)
    w = threading.Thread(target=watch, daemon=True)
    w.start()

    def spread(key, primary, absent=None):
        kid, pid = cu.key_id(key).hex(), cu.key_id(primary).hex()

        def ok():
            for n in c.nodes:
                kr = ctl.json(n.admin, "keys", "list")
                if not kr or kr["primary"] != pid or kr["holders"].get(kid) != N or \
                        kr["members"] != N or kr["primary_of"].get(pid) != N:
                    return False
                if absent is not None and cu.key_id(absent).hex() in kr["keys"]:
                    return False
            return True
        cu.sh.wait_for(ok, 45, "key %s spread (primary %s)" % (kid, pid), interval=0.1)

    nodes = list(c.nodes)
    r = ctl.run("keys", "install", k2.hex(), addr=nodes[0].admin)
    t.require(r.returncode == 0, "nodectl keys install K2 on k0 only", r.stderr)
    r = ctl.run("keys", "remove", k1.hex(), addr=nodes[0].admin)
    t.check(r.returncode == 1 and "409" in r.stderr and r.stderr.count("\n") == 1,
            "removing K1 while members seal under it is refused (409), one line", r)
    spread(k2, k1)
    t.check(True, "K2 spread by gossip: every node lists it, held by 3/3 members")
    r = ctl.run("keys", "use", k2.hex(), addr=nodes[1].admin)
    t.require(r.returncode == 0, "nodectl keys use K2 on k1 only", r.stderr)
    spread(k2, k2)
    t.check(True, "K2 is primary on every node")
    r = ctl.run("keyring", "remove", k1.hex(), addr=nodes[2].admin)  # the old name still works
    t.require(r.returncode == 0, "nodectl keyring remove K1 on k2 only", r.stderr)
    spread(k2, k2, absent=k1)
    for n in nodes:
        kr = ctl.json(n.admin, "keys", "list")
        t.check(kr["keys"] == [cu.key_id(k2).hex()] and kr["primary"] == cu.key_id(k2).hex(),
                "after the rotation %s holds only K2, primary" % n.name, kr)
    c.wait_all_see(c.nodes, alive, 10, "3 alive everywhere after the rotation")
    stop.set()
    w.join()
    t.check(not seen_bad, "no member was seen other than alive during the rotation",
            seen_bad[:5])
    r = ctl.run("keys", "list", addr=seed.admin)
    t.check(r.returncode == 0 and "3/3 members" in r.stdout, "keys list for people", r.stdout)

    r = ctl.run("keys", "remove", k2.hex(), addr=seed.admin)
    t.check(r.returncode == 1 and "primary" in r.stderr and r.stderr.count("\n") == 1,
            "removing the primary key is refused by the node: exit 1, one line", r)
    r = ctl.run("keys", "install", "not-a-key", addr=seed.admin)
    t.check(r.returncode == 1 and "400" in r.stderr and r.stderr.count("\n") == 1,
            "a malformed key: exit 1 (400), one line", r)
    r = ctl.run("keys", "use", k3.hex(), addr=seed.admin)
    t.check(r.returncode == 1 and "404" in r.stderr, "using a key not installed: exit 1 (404)", r)

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
    views = [c.view(n) for n in nodes]
    t.check(all("rogue" not in v for v in views), "no member lists the node keyed with K1", views)
    t.check(len(c.view(rogue)) == 1, "the node keyed with K1 is alone", c.view(rogue))
    t.stop(rogue.node)
    c.nodes.remove(rogue)

    # Persistence: k1 restarted comes back with K2 (its encrypt_key_file says K1).
    old = nodes[1]
    t.stop(old.node)
    c.nodes.remove(old)
    n1 = c.start("k1", keyfiles["k1"], joins=[seed.gossip])
    kr = ctl.json(n1.admin, "keys", "list")
    t.check(kr["keys"] == [cu.key_id(k2).hex()],
            "a restarted node comes back with the persisted keyring (K2), not its key file's K1",
            kr)
    c.wait_all_see(c.nodes, {x.name: "alive" for x in c.nodes}, 30,
                   "the restarted node rejoins under K2")
    t.check(True, "the restarted node rejoined")

    # k2 misses a rotation to K3.
    down = [x for x in c.nodes if x.name == "k2"][0]
    t.stop(down.node)
    c.nodes.remove(down)
    # left, or dead if its goodbye was lost (a loaded machine): either way out
    cu.sh.wait_for(lambda: all(c.view(x).get("k2") in ("left", "dead") for x in c.nodes), 20,
                   "k2 seen gone")
    r = ctl.run("keys", "install", k3.hex(), addr=seed.admin)
    t.require(r.returncode == 0, "keys install K3 while k2 is down", r.stderr)
    # Making K3 primary before every member holds it would cut one off:
    # the node refuses it (409) until the key has spread.
    cu.sh.wait_for(lambda: (ctl.json(seed.admin, "keys", "list") or {}).get("holders", {})
                   .get(cu.key_id(k3).hex()) == 2, 15, "K3 held by the 2 running nodes")
    r = ctl.run("keys", "use", k3.hex(), addr=seed.admin)
    t.require(r.returncode == 0, "keys use K3 while k2 is down", r.stderr)
    cu.sh.wait_for(lambda: (ctl.json(n1.admin, "keys", "list") or {}).get("primary") ==
                   cu.key_id(k3).hex(), 15, "K3 primary on k1 too")
    r = ctl.run("keys", "remove", k2.hex(), addr=n1.admin)
    t.require(r.returncode == 0, "keys remove K2 while k2 is down", r.stderr)
    cu.sh.wait_for(lambda: all((ctl.json(x.admin, "keys", "list") or {}).get("keys") ==
                               [cu.key_id(k3).hex()] for x in c.nodes), 20,
                   "K3 only on the two running nodes")
    refused = (ctl.stats(seed.admin) or {}).get("dropped_unknown_key", 0)
    k2n = c.start("k2", keyfiles["k2"], joins=[seed.gossip])
    # It tries to join under K2, which the seed no longer has: wait until the
    # seed has refused its packets.
    cu.sh.wait_for(lambda: (ctl.stats(seed.admin) or {}).get("dropped_unknown_key", 0) > refused,
                   15, "the seed to refuse k2's packets under K2")
    t.check(ctl.json(seed.admin, "members") and
            {m["name"]: m["status"] for m in ctl.members(seed.admin)}.get("k2") in ("left", "dead"),
            "k2, holding only K2, cannot rejoin", ctl.members(seed.admin))
    for step in ("install", "use"):
        r = ctl.run("keys", step, k3.hex(), addr=k2n.admin)
        t.require(r.returncode == 0, "keys %s K3 on the stale k2" % step, r.stderr)
    r = ctl.run("join", seed.gossip, addr=k2n.admin)
    t.check(r.returncode == 0, "nodectl join on k2 once it has K3", r)
    c.wait_all_see(c.nodes, {x.name: "alive" for x in c.nodes}, 30,
                   "k2 rejoined with the key it was given")
    cu.sh.wait_for(lambda: (ctl.json(k2n.admin, "keys", "list") or {}).get("keys") ==
                   [cu.key_id(k3).hex()], 15, "k2 to take the cluster's keyring (K3 only)")
    t.check(True, "k2 took the cluster's keyring: K3 only")
    kr = ctl.json(seed.admin, "keys", "list")
    t.check(kr["holders"].get(cu.key_id(k3).hex()) == 3 and kr["members"] == 3,
            "K3 held by 3/3 members", kr)


if __name__ == "__main__":
    cu.run(main)
