# SPDX-License-Identifier: Apache-2.0
"""Issue 15, defect 4: the admin API of a real node under unauthenticated load.

The node has an admin token. Without it:
- 200 idle connections (128 locked the API out with 503 for as long as they
  stayed): an operator with the token still gets 200 at once, the excess is
  evicted, and every idler is closed at the 3 s request deadline;
- a request trickled one byte every 0.5 s is closed at 3 s from its first
  byte, not re-armed by each byte;
- a churn of new idle connections while the operator works: every one of
  the operator's requests is answered;
- 300 whole requests without a token (401), an oversized head (413),
  garbage (400);
and throughout the node answers HTTP, RSS grows less than 64 MiB, and each
refusal moves shoal_admin_rejected_total{reason=...}."""

import os
import socket
import threading
import time

import cluster_util as cu

sh = cu.sh
RSS_BOUND_MB = 64
TOKEN = "flood-test-token-0123456789abcdef"


def main(t, ctl):
    # Under ASan the quarantine keeps freed buffers mapped (256 MiB by
    # default) and looks like growth: the nodes run with a small one, as
    # test_large_body does; the RSS bound is the node's, not the sanitizer's.
    asan = os.environ.get("ASAN_OPTIONS", "")
    os.environ["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "quarantine_size_mb=4"
    keyfile = cu.write_keys(t, [cu.new_key()])
    tokfile = os.path.join(t.tmp, "admin.token")
    with open(tokfile, "w") as f:
        f.write(TOKEN + "\n")
    os.chmod(tokfile, 0o600)
    c = cu.Cluster(t, ctl)
    a = c.start("a", keyfile, extra="admin_token_file %s;" % tokfile, wait_admin=False)
    sh.wait_for(lambda: cu.http_get(a.admin, "/v1/info", TOKEN)[0] == 200, 15, "admin API")
    base = cu.rss_mb(a)
    peak = {"rss": base}

    def sample():
        if a.proc.alive():
            peak["rss"] = max(peak["rss"], cu.rss_mb(a))

    def operator(what):
        t0 = time.monotonic()
        st, body = cu.http_get(a.admin, "/v1/info", TOKEN, timeout=5)
        took = time.monotonic() - t0
        t.check(st == 200, "%s: the operator's request is answered 200 (%.3f s)" % (what, took),
                (st, body[:200]))
        return took

    def serving(what):
        sample()
        t.require(a.proc.alive(), "%s: the node is still running" % what, a.proc.tail())
        r = t.curl(a.node.url("/"), timeout=5)
        t.check(r.status == 200, "%s: the node answers HTTP" % what, r)

    def rejected():
        return cu.rejected(a.admin, "shoal_admin_rejected_total", TOKEN)

    r0 = rejected()
    t.check("header_timeout" in r0, "/metrics has shoal_admin_rejected_total by reason", r0)

    # ---- 200 idle connections ----------------------------------------------
    idle = cu.connect_many(a.admin, 200)
    t.log("200 idle connections open (%d connected)" % len(idle))
    operator("with 200 idle connections")
    serving("with 200 idle connections")
    open_now = cu.metrics(a.admin, TOKEN).get("shoal_admin_connections", -1)
    t.check(0 < open_now <= 129, "the node holds at most 128 of them (%d)" % open_now)
    shed = cu.all_closed_by_peer(idle, 10)
    cu.close_all(idle)
    t.check(shed is not None and shed < 5,
            "every idle connection is closed by the 3 s request deadline (%s s)"
            % ("%.2f" % shed if shed is not None else "not all"))
    r1 = rejected()
    d = cu.delta(r0, r1)
    t.log("rejections: %s" % d)
    t.check(d.get("evicted", 0) >= 200 - 128 and d.get("header_timeout", 0) >= 1,
            "counted: evicted for the excess, header_timeout for the rest", d)
    t.log("200 idle admin connections: peak RSS %.1f MiB (+%.1f), shed in %.2f s"
          % (peak["rss"], peak["rss"] - base, shed or -1))

    # ---- a trickled request: the deadline runs from the accept ------------
    s = socket.create_connection(cu.hostport(a.admin), timeout=5)
    req = b"GET /v1/info HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
    t0 = time.monotonic()
    closed = None
    for i in range(len(req)):
        try:
            s.sendall(req[i:i + 1])
        except OSError:
            closed = time.monotonic() - t0
            break
        got, eof = cu.read_until_closed(s, 0.5)
        if eof:
            closed = time.monotonic() - t0
            break
    s.close()
    t.check(closed is not None and 2.5 < closed < 4.5,
            "a request trickled a byte every 0.5 s is closed at the 3 s deadline (%s)"
            % ("%.2f s" % closed if closed is not None else "still open"))

    # ---- churn: idle connections keep coming while the operator works -----
    stop = threading.Event()
    churned = [0]

    def churn():
        held = []
        while not stop.is_set():
            held += cu.connect_many(a.admin, 20)
            churned[0] += 20
            if len(held) > 400:
                cu.close_all(held[:200])
                held = held[200:]
            time.sleep(0.01)
        cu.close_all(held)

    before = rejected()
    th = threading.Thread(target=churn, daemon=True)
    th.start()
    sh.wait_for(lambda: churned[0] >= 200, 10, "the churn to fill the table")
    worst = 0
    for i in range(10):
        worst = max(worst, operator("churn of idle connections, request %d" % (i + 1)))
        sample()
    stop.set()
    th.join(10)
    d = cu.delta(before, rejected())
    t.log("churn: %d idle connections opened, %s; the operator's slowest answer %.3f s"
          % (churned[0], d, worst))
    t.check(d.get("evicted", 0) >= 1, "the table was full during the churn (idlers evicted)", d)
    serving("after the churn")

    # ---- whole requests without the token, oversized, garbage -------------
    before = rejected()
    for _ in range(300):
        st, _ = cu.http_get(a.admin, "/v1/info")
        if st != 401:
            break
    t.check(st == 401, "300 requests without the token: 401 each")
    s = socket.create_connection(cu.hostport(a.admin), timeout=5)
    s.sendall(b"GET /v1/info HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
    got, _ = cu.read_until_closed(s, 5)
    s.close()
    t.check(got.startswith(b"HTTP/1.1 413"), "an oversized request head: 413", got[:80])
    s = socket.create_connection(cu.hostport(a.admin), timeout=5)
    s.sendall(b"\x00\x01\x02garbage\r\n\r\n")
    got, _ = cu.read_until_closed(s, 5)
    s.close()
    t.check(got.startswith(b"HTTP/1.1 400"), "garbage: 400", got[:80])
    after = rejected()
    d = cu.delta(before, after)
    t.log("rejections: %s" % d)
    t.check(d.get("unauthorized", 0) >= 300 and d.get("too_large", 0) >= 1
            and d.get("bad_request", 0) >= 1,
            "counted: unauthorized, too_large, bad_request", d)
    operator("after the bad requests")
    serving("after the bad requests")
    sample()
    grew = peak["rss"] - base
    t.log("peak RSS %.1f MiB (start %.1f MiB, +%.1f)" % (peak["rss"], base, grew))
    t.check(grew < RSS_BOUND_MB, "RSS grew less than %d MiB (+%.1f)" % (RSS_BOUND_MB, grew))


if __name__ == "__main__":
    cu.run(main)
