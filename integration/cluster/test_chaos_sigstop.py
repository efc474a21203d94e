# SPDX-License-Identifier: Apache-2.0
"""Issue 15, cluster chaos: SIGSTOP of a member for 10 s, then SIGCONT.

Three shoal nodes, profile local: probe every 700 ms, 200 ms probe timeout,
suspicion_mult 3 and suspicion_max_mult 6, so with three members a suspect
is declared dead after 2.1 s once the other member confirms the suspicion,
and after 12.6 s at most without a confirmation. One member is stopped for
CHAOS_STOP_S (default 10) seconds while the two others are polled
(`nodectl members --json`, every ~50 ms):
- both see it suspect first, then suspect or dead, never alive again while
  it is stopped (no flapping);
- after SIGCONT it refutes (a higher incarnation, its refute counter goes
  up) and all three see all three alive;
- then, over CHAOS_STABLE_S (default 10) seconds, every sample of every
  view is all alive (no flapping afterwards)."""

import signal
import time

import chaos_util as ch
import cluster_util as cu

sh = cu.sh


def main(t, ctl):
    stop_s = ch.param("stop_s", 10.0)
    stable_s = ch.param("stable_s", 10.0)
    key = cu.write_keys(t, [cu.new_key()])
    nodes = []
    for i in range(3):
        nodes.append(ch.ChaosNode(t, ctl, "s%d" % i, key, None,
                                  joins=[nodes[0].advertise] if nodes else []).start())
    everyone = {n.name: "alive" for n in nodes}
    ch.wait_views(t, ctl, nodes, everyone, 30, "3 alive everywhere")
    victim, others = nodes[2], nodes[:2]
    inc0 = {m["name"]: m.get("incarnation") for m in ctl.members(others[0].admin)}[victim.name]
    refutes0 = (ctl.stats(victim.admin) or {}).get("refutes", 0)

    # ---- stopped: suspect, then suspect or dead, never alive again
    hist = {o.name: [] for o in others}  # [(seconds since SIGSTOP, status)] on change
    samples = {o.name: [] for o in others}  # every (seconds since SIGSTOP, status)
    t0 = time.monotonic()
    victim.proc.signal(signal.SIGSTOP)
    try:
        while True:
            now = time.monotonic() - t0
            if now >= stop_s:
                break
            for o in others:
                s = ch.view(ctl, o).get(victim.name, "?")
                samples[o.name].append((time.monotonic() - t0, s))
                if not hist[o.name] or hist[o.name][-1][1] != s:
                    hist[o.name].append((round(now, 2), s))
            time.sleep(0.05)  # the sampling period of the window, not a wait
    finally:
        victim.proc.signal(signal.SIGCONT)
    t.log("while %s was stopped (seconds since SIGSTOP, status): %s" % (victim.name, hist))
    for o in others:
        seq = [s for _, s in hist[o.name]]
        after_alive = seq[1:] if seq and seq[0] == "alive" else seq
        t.check(after_alive[:1] == ["suspect"], "%s suspects %s first" % (o.name, victim.name), seq)
        t.check(after_alive and all(s in ("suspect", "dead") for s in after_alive)
                and after_alive in (["suspect"], ["suspect", "dead"]),
                "%s then sees it suspect or dead, never alive again while stopped (ends %s)"
                % (o.name, after_alive[-1] if after_alive else None), seq)
        # The suspicion timeout is 2.1 s at least: the samples must not show
        # less. The death came before its first dead sample and the
        # suspicion after its last alive one (samples are slow under ASan).
        smp = samples[o.name]
        last_alive = max([x for x, s in smp if s == "alive"], default=None)
        first_dead = min([x for x, s in smp if s == "dead"], default=None)
        if last_alive is not None and first_dead is not None:
            t.check(first_dead - last_alive >= 2.1,
                    "%s waited the suspicion timeout: dead at most %.2fs after the suspicion "
                    "began (2.1 s at least)" % (o.name, first_dead - last_alive))

    # ---- resumed: it refutes, everybody alive again
    t1 = time.monotonic()
    ch.wait_views(t, ctl, nodes, everyone, 30, "all alive again after SIGCONT")
    t.check(True, "after SIGCONT all three see all three alive (%.2fs)" % (time.monotonic() - t1))
    inc1 = {m["name"]: m.get("incarnation") for m in ctl.members(others[0].admin)}[victim.name]
    refutes1 = (ctl.stats(victim.admin) or {}).get("refutes", 0)
    t.check(inc1 is not None and inc0 is not None and inc1 > inc0 and refutes1 > refutes0,
            "%s refuted: incarnation %s -> %s, refutes %s -> %s"
            % (victim.name, inc0, inc1, refutes0, refutes1))

    # ---- no flapping afterwards
    seen = ch.watch_views(ctl, nodes, list(everyone), stable_s, interval=0.1)
    flaps = {k: v for k, v in seen.items() if v != ["alive"]}
    t.check(not flaps, "no flapping: over %.0fs every view of every member stayed alive"
            % stable_s, flaps)


if __name__ == "__main__":
    cu.run(main)
