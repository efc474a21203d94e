# SPDX-License-Identifier: Apache-2.0
"""Issue 15: the gossip port of a real node under unauthenticated load.

Two members A and B (B joined A). Against A's gossip TCP port, with no key:
- 64 connections announcing 16 MiB legacy frames and sending 2 MiB of
  garbage each (defect 5: each frame was buffered whole before its tag was
  checked, 64 of them took a node to 1 GiB): RSS grows less than 64 MiB
  (sampled every 20 ms until A has closed them all), the unauthenticated
  budget ends them;
- 300 connections held open (defect 1: the 65th aborted the node in
  uv__finish_close): A stays up, at most 64 are held, the rest are evicted
  or refused, and every idler is shed within the 2 s key deadline;
- one connection per malformed frame (garbage, bad lengths, a stream head
  under an unknown key, truncated heads and frames, a legacy frame under a
  wrong key, a sealed frame that does not decode), each refusal under its
  own reason;
- garbage UDP datagrams, dropped and counted.
Replay (there is no replay protection in the envelope): a genuine sealed UDP
packet (A's ack to our ping) and genuine push-pull frames (A's join frames,
stream then legacy, captured by a fake peer) are replayed to A and B many
times; the members, their status and incarnations stay what they were.
Throughout, A answers HTTP and both members stay alive in each other's
view; every refusal moves shoal_gossip_rejected_total{reason=...}."""

import os
import socket
import struct
import subprocess
import threading
import time

import cluster_util as cu

sh = cu.sh
RSS_BOUND_MB = 64


def main(t, ctl):
    # Under ASan the quarantine keeps freed buffers mapped (256 MiB by
    # default) and looks like growth: the nodes run with a small one, as
    # test_large_body does; the RSS bound is the node's, not the sanitizer's.
    asan = os.environ.get("ASAN_OPTIONS", "")
    os.environ["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "quarantine_size_mb=4"
    key = cu.new_key()
    keyfile = cu.write_keys(t, [key])
    c = cu.Cluster(t, ctl)
    a = c.start("a", keyfile)
    b = c.start("b", keyfile, joins=[a.gossip])
    c.wait_all_see([a, b], {"a": "alive", "b": "alive"}, 30, "a and b see each other")
    http_port = a.node.port
    peak = {"rss": 0.0}
    base_rss = cu.rss_mb(a)
    t.log("A pid %d: RSS %.1f MiB at start" % (a.pid, base_rss))

    def sample():
        if a.proc.alive():
            peak["rss"] = max(peak["rss"], cu.rss_mb(a))

    def serving(what):
        """A up, HTTP answered, A and B alive in each other's view."""
        sample()
        t.require(a.proc.alive(), "%s: node A is still running" % what, a.proc.tail())
        t.log("%s: RSS %.1f MiB" % (what, cu.rss_mb(a)))
        r = t.curl(a.node.url("/"), timeout=5)
        t.check(r.status == 200, "%s: A answers HTTP" % what, r)
        va, vb = c.view(a), c.view(b)
        t.check(va.get("b") == "alive" and vb.get("a") == "alive",
                "%s: A and B still see each other alive" % what, (va, vb))

    def rejected():
        return cu.rejected(a.admin, "shoal_gossip_rejected_total")

    r0 = rejected()
    t.check("conn_limit" in r0, "/metrics has shoal_gossip_rejected_total by reason", r0)

    # ---- 1. memory before authentication (defect 5) -----------------------
    rss_before = cu.rss_mb(a)
    sampler = cu.RssSampler(a).start()
    frames = cu.connect_many(a.gossip, 64, struct.pack(">I", 16 << 20))
    junk = os.urandom(64 * 1024)
    stop = threading.Event()
    sent = [0]

    def pump(s):
        s.settimeout(3)
        try:
            for _ in range(32):  # 2 MiB each
                if stop.is_set():
                    return
                s.sendall(junk)
                sent[0] += len(junk)
        except OSError:
            pass

    th = [threading.Thread(target=pump, args=(s,), daemon=True) for s in frames]
    for x in th:
        x.start()
    for x in th:
        x.join(20)
    stop.set()
    # the node may still be reading what the kernel buffered: the window
    # ends once it has closed every connection
    shed = cu.all_closed_by_peer(frames, 10)
    cu.close_all(frames)
    t.check(shed is not None, "every one of them is closed by A")
    top = sampler.stop()
    peak["rss"] = max(peak["rss"], top)
    grew = top - rss_before
    t.log("64 x 16 MiB legacy frames, %.1f MiB of garbage sent: peak RSS %.1f MiB (+%.1f MiB)"
          % (sent[0] / 1048576.0, top, grew))
    t.check(grew < RSS_BOUND_MB, "RSS grows less than %d MiB under 64 unauthenticated 16 MiB "
            "frames (+%.1f MiB)" % (RSS_BOUND_MB, grew))
    r1 = rejected()
    d = cu.delta(r0, r1)
    t.log("rejections: %s" % d)
    t.check(d.get("budget", 0) >= 1, "the unauthenticated budget ended some of them", d)
    t.check(sum(d.values()) >= 64, "all 64 are counted", d)
    serving("after the oversized frames")

    # ---- 2. a connection flood (defect 1) ---------------------------------
    t0 = time.monotonic()
    socks = cu.connect_many(a.gossip, 300)
    t.log("opened %d connections to A's gossip port in %.2fs"
          % (len(socks), time.monotonic() - t0))
    serving("300 idle connections to the gossip port")
    m = cu.metrics(a.admin)
    held = m.get('shoal_gossip_pushpull_connections{direction="in"}', -1)
    t.check(0 <= held <= 64, "A holds at most 64 of them (held %d)" % held)
    shed = cu.all_closed_by_peer(socks, 10)
    cu.close_all(socks)
    t.check(shed is not None and shed < 6,
            "A sheds every idle connection within the 2 s key deadline (%s s)"
            % ("%.2f" % shed if shed is not None else "not all"))
    r2 = rejected()
    d = cu.delta(r1, r2)
    t.log("rejections: %s" % d)
    t.check(d.get("evicted", 0) + d.get("conn_limit", 0) >= 300 - 64
            and d.get("auth_timeout", 0) >= 1,
            "the flood is counted: evicted/conn_limit for the excess, auth_timeout for the rest",
            d)
    t.log("flood of 300: RSS %.1f MiB (start %.1f), shed in %.2f s"
          % (cu.rss_mb(a), base_rss, shed or -1))
    serving("after the connection flood")

    # ---- 3. malformed frames, one reason each -----------------------------
    wrong = cu.new_key()
    stream_head_unknown = bytes([0xB3]) + os.urandom(53)
    stream_head_ourkey = bytes([0xB3]) + cu.key_id(key) + os.urandom(49)
    cases = [
        ("garbage (an HTTP request)", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad_magic"),
        ("a legacy length over 16 MiB", struct.pack(">I", (16 << 20) + 1), "bad_length"),
        ("a legacy length under the envelope", struct.pack(">I", 10), "bad_length"),
        ("a stream head under an unknown key", stream_head_unknown, "bad_header"),
        ("a stream head under our key id, forged", stream_head_ourkey, "bad_header"),
        ("half a stream head, then EOF", stream_head_ourkey[:20], "truncated"),
        ("half a legacy frame, then EOF", cu.legacy_frame(key, b"\x03\x01\x02x" * 50)[:60],
         "truncated"),
        ("a legacy frame under another key", cu.legacy_frame(wrong, b"\x03\x01\x02"),
         "bad_envelope"),
        ("a sealed legacy frame that does not decode",
         cu.legacy_frame(key, b"\x03\x01\x02\xff\xff\xff"), "undecodable"),
    ]
    for what, data, reason in cases:
        before = rejected()
        s = socket.create_connection(cu.hostport(a.gossip), timeout=5)
        s.sendall(data)
        if reason == "truncated":
            s.shutdown(socket.SHUT_WR)
        got, closed = cu.read_until_closed(s, 5)
        s.close()
        after = sh.wait_for(lambda: (lambda r: r if r.get(reason, 0) > before.get(reason, 0)
                                     else None)(rejected()), 5,
                            "%s counted as %s" % (what, reason))
        t.check(closed and not got and after.get(reason, 0) == before.get(reason, 0) + 1,
                "%s: closed without an answer, counted once as %s" % (what, reason),
                (closed, got[:50], cu.delta(before, after)))
    # a stream head that stays silent: the 2 s key deadline
    before = rejected()
    s = socket.create_connection(cu.hostport(a.gossip), timeout=5)
    s.sendall(stream_head_ourkey[:30])
    t0 = time.monotonic()
    got, closed = cu.read_until_closed(s, 6)
    took = time.monotonic() - t0
    s.close()
    t.check(closed and 1.5 < took < 4.0,
            "half a stream head left idle is closed at the 2 s key deadline (%.2f s)" % took)
    t.check(rejected().get("auth_timeout", 0) > before.get("auth_timeout", 0),
            "counted as auth_timeout")

    # UDP garbage: dropped before parsing, by reason
    m0 = cu.metrics(a.admin)
    for data in (b"\x01\x02", b"\x09" + os.urandom(80), b"\x01" + os.urandom(80),
                 b"\x01" + cu.key_id(key) + os.urandom(80)):
        cu.send_udp(a.gossip, data)

    def udp_counted():
        m = cu.metrics(a.admin)
        return all(m.get('shoal_gossip_dropped_total{reason="%s"}' % r, 0) >
                   m0.get('shoal_gossip_dropped_total{reason="%s"}' % r, 0)
                   for r in ("short", "bad_version", "unknown_key", "bad_tag"))
    t.check(sh.wait_for(udp_counted, 5, "UDP drops counted") is True,
            "garbage datagrams are dropped and counted (short, bad_version, unknown_key, bad_tag)")
    serving("after the malformed frames")

    # ---- 4. replay --------------------------------------------------------
    def state(cn):
        return {x["name"]: (x["status"], x["incarnation"]) for x in ctl.members(cn.admin) or []}
    sa0, sb0 = state(a), state(b)
    # A genuine sealed UDP packet: A's ack to our ping.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.settimeout(5)
    ping = cu.ping_packet(key, "replayer", 4242, "a")
    u.sendto(ping, cu.hostport(a.gossip))
    ack, _ = u.recvfrom(65536)
    t.check(len(ack) > 45, "A acks a sealed ping (%d bytes captured)" % len(ack))
    recv0 = cu.metrics(a.admin).get("shoal_gossip_packets_received_total", 0)
    for _ in range(300):
        u.sendto(ack, cu.hostport(a.gossip))
        u.sendto(ack, cu.hostport(b.gossip))
        u.sendto(ping, cu.hostport(a.gossip))
    acks = 0
    u.settimeout(0.5)
    try:
        while True:
            u.recvfrom(65536)
            acks += 1
    except socket.timeout:
        pass
    u.close()
    recv1 = cu.metrics(a.admin).get("shoal_gossip_packets_received_total", 0)
    t.log("UDP replay: A received %d more packets and acked %d replayed pings"
          % (recv1 - recv0, acks))
    t.check(recv1 - recv0 >= 300, "replayed datagrams open (no replay window): processed as "
            "SWIM messages")

    # Genuine push-pull frames: A joins a fake peer, which captures A's frames.
    fake = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fake.bind(("127.0.0.1", 0))
    fake.listen(4)
    fake.settimeout(10)
    fake_addr = "127.0.0.1:%d" % fake.getsockname()[1]
    j = subprocess.Popen([ctl.path, "--addr", a.admin, "join", fake_addr],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    captured = []
    try:
        for _ in range(2):  # the stream frame, then (we closed) the legacy retry
            conn, _ = fake.accept()
            data, _ = cu.read_until_closed(conn, 0.5)
            conn.close()
            captured.append(data)
    except socket.timeout:
        pass
    fake.close()
    j.wait(15)
    t.check(len(captured) == 2 and captured[0][:1] == b"\xb3" and captured[1][:1] in (b"\0", b"\1"),
            "A's join sends a stream frame, then (closed without an answer) a legacy frame",
            [x[:8] for x in captured])
    replies = 0
    for frame in captured:
        for target in (a, b) * 10:
            s = socket.create_connection(cu.hostport(target.gossip), timeout=5)
            s.sendall(frame)
            got, _ = cu.read_until_closed(s, 5)
            s.close()
            replies += bool(got)
    t.log("TCP replay: %d of %d replayed frames answered" % (replies, 2 * 20))
    # Unchanged, and still unchanged a second later (a rumour a replay
    # started would have reached the other member by then).
    t0 = time.monotonic()
    sa1, sb1 = state(a), state(b)
    while sa1 == sa0 and sb1 == sb0 and time.monotonic() - t0 < 1.0:
        sa1, sb1 = state(a), state(b)
    t.check(sa1 == sa0 and sb1 == sb0,
            "after the replays the members, statuses and incarnations stay unchanged for 1 s",
            (sa0, sa1, sb0, sb1))
    t.check("replayer" not in sa1 and "replayer" not in sb1, "a ping never adds a member")
    serving("after the replays")
    t.log("peak RSS over the run %.1f MiB (start %.1f MiB)" % (peak["rss"], base_rss))


if __name__ == "__main__":
    cu.run(main)
