# SPDX-License-Identifier: Apache-2.0
"""Issue 15, cluster chaos: a rolling restart of a 3-node cluster under load.

Three shoal nodes (profile local) proxy to one backend (half the requests
wait 20 ms there, so some are in flight at each signal). Client threads
(chaos_util.Load: half keep-alive, half a new connection per request) spread
idempotent GETs over the three HTTP ports and retry a refused or reset
connection on the next node, as a load balancer does. Each node in turn gets
SIGTERM: it must leave (the others see it `left`), drain and exit 0 (a
client connected before the signal that sends its request during the drain
is answered, with Connection: close); it is
started again on the same ports and must rejoin (all three see it alive)
and serve. Through CHAOS_ROUNDS (default 2) rounds of the three: zero failed
requests after retries, and every node answers again after its restart."""

import signal
import time

import chaos_util as ch
import cluster_util as cu

sh = cu.sh


def main(t, ctl):
    rounds = ch.param("rounds", 2)
    be = t.backend("be")
    key = cu.write_keys(t, [cu.new_key()])
    nodes = []
    for i in range(3):
        # Every node lists the two others: whichever restarts finds a member.
        nodes.append(ch.ChaosNode(t, ctl, "r%d" % i, key, be))
    for n in nodes:
        n.joins = [m.advertise for m in nodes if m is not n]
    for n in nodes:
        n.start()
    everyone = {n.name: "alive" for n in nodes}
    ch.wait_views(t, ctl, nodes, everyone, 30, "3 alive everywhere")

    load = ch.Load([n.http_port for n in nodes], threads=6, paths=("/", "/slow?ms=20")).start()
    drains, rejoins = [], []
    try:
        load.wait_requests(200, 30, "requests before the restarts")
        t.log("before: " + load.summary())
        for rnd in range(rounds):
            for n in nodes:
                others = [m for m in nodes if m is not n]
                old = n.proc
                old.injected = True  # stopped on purpose, not an early death
                # A client that connected but has not sent its request when
                # the drain starts is still answered (nginx does so).
                fresh = sh.RawConn(n.http_port) if rnd == 0 and n is nodes[0] else None
                t0 = time.monotonic()
                old.signal(signal.SIGTERM)
                if fresh is not None:
                    sh.wait_for(lambda: not sh.port_accepts(n.http_port), 20,
                                "%s to stop accepting" % n.name)
                    r, err = ch.fresh_request(fresh)
                    t.check(r is not None and r.status == 200 and
                            (r.header("Connection") or "").lower() == "close",
                            "a connection opened before SIGTERM that sends its request during "
                            "the drain gets its answer with Connection: close", err or r)
                rc = old.wait_exit(40)
                drains.append(time.monotonic() - t0)
                t.check(rc == 0, "round %d: %s drains and exits 0 after SIGTERM (%.2fs)"
                        % (rnd + 1, n.name, drains[-1]), old.tail())
                t.stop(old)
                ch.wait_views(t, ctl, others, {n.name: "left"}, 20,
                              "the others to see %s left" % n.name)
                t0 = time.monotonic()
                n.start()
                # Usually well under a second. Now and then one member keeps
                # the node `left` until its next push-pull (15 s apart in
                # profile local): the refutation is piggybacked only
                # retransmit_mult * ceil(log10(n + 1)) = 2 times, as in
                # memberlist, and both may go to the same peer.
                ch.wait_views(t, ctl, nodes, everyone, 60, "%s to rejoin: 3 alive everywhere"
                              % n.name)
                rejoins.append(time.monotonic() - t0)
                served = len(load.served[n.http_port])
                load.wait_requests(100, 30, "requests after %s rejoined" % n.name)
                sh.wait_for(lambda: len(load.served[n.http_port]) > served, 30,
                            "%s to serve clients again" % n.name)
        t.log("after: " + load.summary())
    finally:
        load.stop()
    s = load.snapshot()
    t.check(s["failed"] == 0, "no idempotent request failed during %d restarts (%d requests, "
            "%d retried on another node)" % (3 * rounds, s["requests"], s["retried_requests"]),
            load.failures)
    t.check(s["retries"]["refused"] > 0, "the restarts were felt: refused connections were "
            "retried elsewhere", s)
    t.log("drain (SIGTERM to exit) per node: %s s; restart to all-alive: %s s"
          % ([round(x, 2) for x in drains], [round(x, 2) for x in rejoins]))
    for n in nodes:
        t.check(ch.view(ctl, n) == everyone, "%s sees the 3 alive at the end" % n.name,
                ch.view(ctl, n))


if __name__ == "__main__":
    cu.run(main)
