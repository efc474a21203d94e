# SPDX-License-Identifier: Apache-2.0
"""Issue 15, cluster chaos: 50 reloads under load, memory and fds flat.

One shoal node (with a cluster block, for `nodectl reload`) proxies to a
backend under client threads (chaos_util.Load: half keep-alive, half a new
connection per request; half the requests wait 20 ms at the backend so some
are in flight at each reload). CHAOS_RELOADS (default 50) times, the
configuration is rewritten with `add_header X-Gen N` and reloaded, by SIGHUP
and by `nodectl reload` in turn; each reload is done when a new connection
gets X-Gen N. Checks: a connection opened before reload 1 that sends its
request only after it is answered (by the old configuration); no request
failed and no connection was refused (the new workers take over the
listening sockets); the node counts every reload; between reload 10 and the
last, the node's RSS grows by at most CHAOS_RSS_GROWTH_KB (default 6144; not
checked in a sanitizer build, whose quarantine holds freed memory) and its
open fds by at most the number
of client threads + 4 (connections open at the moment of the sample)."""

import signal
import time

import chaos_util as ch
import cluster_util as cu

sh = cu.sh


def main(t, ctl):
    reloads = ch.param("reloads", 50)
    rss_bound = ch.param("rss_growth_kb", 6144)
    threads = 6
    be = t.backend("be")
    key = cu.write_keys(t, [cu.new_key()])
    n = ch.ChaosNode(t, ctl, "h0", key, be, http_extra="add_header X-Gen 0;").start()

    def gen_is(g):
        r = sh.curl(n.node.url("/"), workdir=t.tmp, timeout=10)
        return r.status == 200 and r.header("X-Gen") == str(g)
    sh.wait_for(lambda: gen_is(0), 10, "generation 0 to answer")

    load = ch.Load([n.http_port], threads=threads, paths=("/", "/slow?ms=20")).start()
    samples = {}
    took = []
    try:
        load.wait_requests(200, 30, "requests before the reloads")
        for g in range(1, reloads + 1):
            n.http_extra = "add_header X-Gen %d;" % g
            n.rewrite_conf()
            # A client that has connected but not sent its request yet when
            # the reload comes must still be answered (by the old
            # configuration), as nginx does; never closed unanswered.
            fresh = sh.RawConn(n.http_port) if g == 1 else None
            t0 = time.monotonic()
            if g % 2:
                n.proc.signal(signal.SIGHUP)
            else:
                r = ctl.run("reload", addr=n.admin, timeout=30)
                if r.returncode != 0:
                    t.check(False, "nodectl reload %d exits 0" % g, r.stderr)
            sh.wait_for(lambda: gen_is(g), 20, "reload %d to take effect" % g)
            took.append(time.monotonic() - t0)
            if fresh is not None:
                r, err = ch.fresh_request(fresh)
                t.check(r is not None and r.status == 200 and r.header("X-Gen") == "0",
                        "a connection opened before reload 1 that sends its request after it is "
                        "answered by the old configuration, not closed", err or r)
            if g in (10, reloads):
                samples[g] = (ch.rss_kb(n.pid), ch.fd_count(n.pid))
                t.log("after reload %d: RSS %d kB, %d fds; %s"
                      % (g, samples[g][0], samples[g][1], load.summary()))
        load.wait_requests(100, 30, "requests after the last reload")
    finally:
        load.stop()
    s = load.snapshot()
    t.check(s["failed"] == 0, "no request failed during %d reloads (%d requests, %d retried)"
            % (reloads, s["requests"], s["retried_requests"]), load.failures)
    t.check(s["retries"]["refused"] == 0, "no connection was refused during the reloads", s)
    t.log("first retries: %s" % load.retry_log)
    m = sh.curl("http://%s/metrics" % n.admin, workdir=t.tmp).text()
    st = {k: v for k, v in (ln.split()[:2] for ln in m.splitlines()
                            if ln.startswith("shoal_reload"))}
    t.log("reload took (signal to the new generation answering): max %.2fs, mean %.2fs"
          % (max(took), sum(took) / len(took)))
    t.check(st.get("shoal_reloads_total") == str(reloads)
            and st.get("shoal_reload_failures_total") == "0",
            "the node counts %d reloads applied, none refused" % reloads, st)
    if 10 in samples and reloads in samples and reloads > 10:
        (r10, f10), (rn, fn) = samples[10], samples[reloads]
        what = ("RSS flat: %d kB after reload 10, %d kB after reload %d (growth %+d kB, bound %d)"
                % (r10, rn, reloads, rn - r10, rss_bound))
        if t.slow > 1:
            # ASan holds freed memory in its quarantine: RSS says nothing
            # there (LeakSanitizer checks leaks when the node stops).
            t.log("sanitizer build, not checked: " + what)
        else:
            t.check(rn - r10 <= rss_bound, what)
        t.check(fn - f10 <= threads + 4, "open fds flat: %d after reload 10, %d after reload %d"
                % (f10, fn, reloads))


if __name__ == "__main__":
    cu.run(main)
