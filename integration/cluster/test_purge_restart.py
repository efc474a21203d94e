# SPDX-License-Identifier: Apache-2.0
"""Issue 13, cluster-wide purge: a node stopped (kill -9) during a purge and
restarted from its persistent cache obeys the purges it missed before it
serves a cached byte.

Three nodes with proxy_cache; p2 caches /x and /y, and a first purge makes
it persist the purge sequences beside its cache (shoal-purge.state). p2 is
killed; a purge of /x is given to p0 (p2 is still a member for a while:
the call may say it did not apply, 504, or that it failed). p2 restarts
with the same cache directory: its first answer for /x, as soon as its
port accepts, is not the old cached copy (BYPASS while it holds its
lookups, or MISS after it caught up), and once it has caught up (the log
had the purge: no flush) /y is still a HIT from the cache it kept."""

import json
import os
import time

import cluster_util as cu
import purge_util as pu

sh = cu.sh


def main(t, ctl):
    oport = pu.start_origin(t)
    nodes, _ = pu.start_cluster(t, ctl, 3, oport)
    p0, p2 = nodes[0], nodes[2]
    for p in ("/x", "/y", "/w"):
        p2.get(p)
    t.check(p2.get("/x") == ("HIT", 1) and p2.get("/y") == ("HIT", 1), "p2 caches /x and /y")
    code, res, _ = pu.purge(p0.admin, key=pu.key_of(oport, "/w"))
    t.check(code == 200 and "p2" in res.get("applied", []), "a first purge reached p2", res)
    state = os.path.join(p2.cdir, "shoal-purge.state")
    sh.wait_for(lambda: os.path.exists(state) and "p0 " in open(state).read(), 10 * t.slow,
                "p2 to persist the purge sequences")

    p2.proc.kill()
    code, res, _ = pu.purge(p0.admin, key=pu.key_of(oport, "/x"), timeout_ms=1500)
    t.check(code in (200, 504) and "p2" not in res.get("applied", []) and
            "p1" in res.get("applied", []),
            "the purge during p2's absence: applied by p0 and p1, not by p2 (%d)" % code, res)
    seq = res["seq"]

    p2.restart(wait_admin=False)
    first = p2.get("/x")
    t.log("p2's first answer for /x after the restart: %s" % (first,))
    t.check(first[0] in ("BYPASS", "MISS") and first[1] == 2,
            "p2's first answer for /x after the restart is not the purged copy", first)

    def caught_up():
        try:
            st = p2.purges()
        except (OSError, ValueError, TypeError):
            return False
        o = [x for x in st.get("origins", []) if x["origin"] == "p0"]
        return not st.get("holding") and o and o[0]["last_seq"] >= seq
    sh.wait_for(caught_up, 30 * t.slow, "p2 to catch up with the purge it missed")
    st = p2.purges()
    t.check(st["flushes"] == 0 and st["caught_up"] + st["received"] >= 1,
            "p2 applied the missed purge (a push-pull log or the origin's retry; no flush)", st)
    x = p2.get("/x")
    t.check(x[1] >= 2 and x[1] != 1, "/x on p2 is never the old copy again", x)
    t.check(p2.get("/y") == ("HIT", 1), "/y (not purged) is still served from p2's kept cache")
    print("p2 restart: first /x answer %s; caught up (holding %s)" % (first, st["holding"]),
          flush=True)


if __name__ == "__main__":
    cu.run(main)
