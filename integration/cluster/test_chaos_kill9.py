# SPDX-License-Identifier: Apache-2.0
"""Issue 15, cluster chaos: kill -9 of a node under load.

Three shoal nodes (profile local) proxy to one backend; client threads
(chaos_util.Load: half keep-alive, half a new connection per request) spread
GETs over the three HTTP ports and retry a refused or reset connection on
the next node, as a load balancer does. One node gets SIGKILL: the two others
must see it dead, no request may fail after its retries, and each survivor
must answer in every second (5 s under a sanitizer build) from the kill
until the death is seen and CHAOS_AFTER_S (default 5) seconds beyond it."""

import time

import chaos_util as ch
import cluster_util as cu

sh = cu.sh


def main(t, ctl):
    after = ch.param("after_s", 5.0)
    be = t.backend("be")
    key = cu.write_keys(t, [cu.new_key()])
    nodes = []
    for i in range(3):
        joins = [nodes[0].advertise] if nodes else []
        nodes.append(ch.ChaosNode(t, ctl, "k%d" % i, key, be, joins=joins).start())
    ch.wait_views(t, ctl, nodes, {n.name: "alive" for n in nodes}, 30, "3 alive everywhere")

    load = ch.Load([n.http_port for n in nodes], threads=6, paths=("/", "/slow?ms=20")).start()
    try:
        load.wait_requests(200, 30, "requests before the kill")
        victim, survivors = nodes[1], [nodes[0], nodes[2]]
        t.log("before the kill: " + load.summary())
        t0 = time.monotonic()
        victim.proc.kill()  # SIGKILL: no goodbye, in-flight requests cut
        secs = ch.wait_views(t, ctl, survivors, {victim.name: "dead"}, 60,
                             "both survivors to see %s dead" % victim.name)
        t.check(True, "kill -9 of %s: both survivors see it dead after %.2fs" % (victim.name, secs))
        load.wait_requests(100, 30, "requests after the death was seen")
        sh.wait_for(lambda: time.monotonic() - t0 >= secs + after, after + 30,
                    "%.0fs more of load" % after)
        t1 = time.monotonic()
    finally:
        load.stop()
    s = load.snapshot()
    t.log("after: " + load.summary())
    t.check(s["failed"] == 0, "no request failed after its retries (%d requests, %d retried)"
            % (s["requests"], s["retried_requests"]), load.failures)
    t.check(s["retried_requests"] > 0,
            "the kill was felt: some requests were retried on another node", s)
    win = 1.0 * t.slow  # a sanitizer build on a loaded machine: 5 s windows
    for n in survivors:
        gaps = load.gaps(n.http_port, t0, t1, win)
        t.check(gaps == 0, "%s served in every %.0f s window from the kill to %.0fs after the "
                "death was seen" % (n.name, win, after), "%d empty windows" % gaps)
    t.check(all(n.proc.alive() for n in survivors), "both survivors are still running")
    t.check(all(ch.view(ctl, n).get(m.name) == "alive" for n in survivors for m in survivors),
            "the survivors still see each other alive")


if __name__ == "__main__":
    cu.run(main)
