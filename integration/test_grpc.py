#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 14: grpc_pass with a real gRPC server and client (python3-grpcio).

Over h2c through the node: unary (with metadata both ways and trailers),
server streaming, client streaming, bidirectional streaming of 10,000
messages, a backend status passed through (NOT_FOUND), client
cancellation (the backend sees its call cancelled), a deadline exceeded
(grpc-timeout; the backend call is cancelled), grpc_read_timeout answered
as DEADLINE_EXCEEDED by the node, a dead backend answered UNAVAILABLE
(grpc-status 14 from the node), a backend killed mid-stream (the client
sees UNAVAILABLE, the node keeps answering), grpc_next_upstream to a
live server when the first one refuses. TLS (grpcs://, grpc_ssl_*):
test_grpc_ssl.py; grpc_next_upstream by status and grpc_intercept_errors:
test_grpc_next_upstream.py; request trailers: test_grpc_trailers.py."""

import os

import shoal_harness as sh
import grpc_env  # first: may re-run under /usr/bin/python3
from grpc_env import ident


def main(t):
    grpc = grpc_env.require_grpc()

    a, pa = grpc_env.backend(t, "ga")
    k, pk = grpc_env.backend(t, "gk")  # killed mid-stream
    dead = t.port()                 # nothing listens here
    p2, p3 = t.port(), t.port()
    node = t.shoal(f"""
        events {{ }}
        http {{
            client_max_body_size 0;
            upstream retry {{ server 127.0.0.1:{dead}; server 127.0.0.1:{pa}; }}
            server {{
                listen 127.0.0.1:{{port}} http2;
                location / {{
                    grpc_pass grpc://127.0.0.1:{pa};
                    grpc_set_header x-from-node yes;
                    grpc_hide_header x-secret;
                }}
                location /t.S/Slow {{ grpc_pass 127.0.0.1:{pa}; grpc_read_timeout 1s; }}
            }}
            server {{ listen 127.0.0.1:{p2} http2; location / {{ grpc_pass grpc://127.0.0.1:{pk}; }} }}
            server {{
                listen 127.0.0.1:{p3} http2;
                location / {{ grpc_pass grpc://127.0.0.1:{dead}; grpc_connect_timeout 2s; }}
                location /t.S/Unary {{ grpc_pass grpc://retry; }}
            }}
        }}""")
    ch = grpc.insecure_channel("127.0.0.1:%d" % node.port)
    grpc.channel_ready_future(ch).result(timeout=20 * t.slow)

    def m(kind, name, c=ch):
        return getattr(c, kind)("/t.S/" + name, request_serializer=ident, response_deserializer=ident)

    # unary, metadata both ways
    resp, call = m("unary_unary", "Unary").with_call(b"hi", metadata=(("x-echo-md", "v1"),), timeout=20 * t.slow)
    t.check(resp == b"echo:hi", "unary: echo:hi (got %r)" % resp)
    t.check(("x-echo-md", "v1") in call.trailing_metadata(),
            "unary: the backend's trailers reach the client (%s)" % (call.trailing_metadata(),))
    t.check(call.code() == grpc.StatusCode.OK, "unary: status OK")

    # server streaming
    got = list(m("unary_stream", "Stream")(b"1000", timeout=30 * t.slow))
    t.check(len(got) == 1000 and got[0] == b"m0" and got[-1] == b"m999",
            "server streaming: 1000 messages in order (got %d)" % len(got))

    # client streaming, 10,000 messages of 100 bytes
    r = m("stream_unary", "Collect")(iter([b"x" * 100] * 10000), timeout=60 * t.slow)
    t.check(r == b"10000:1000000", "client streaming: 10,000 messages, 1,000,000 bytes counted (got %r)" % r)

    # bidirectional streaming of 10,000 messages
    msgs = [b"b%05d" % i for i in range(10000)]
    got = list(m("stream_stream", "Bidi")(iter(msgs), timeout=120 * t.slow))
    t.check(got == msgs, "bidirectional streaming: 10,000 messages echoed in order (got %d)" % len(got))

    # flow control toward a slow client: 3000 x 64 KiB (192 MiB) from the
    # backend while the client reads one message and waits; the node must
    # not buffer it (HTTP/2 windows both ways)
    base = node.proc.memory_kb()[0]
    it = m("unary_stream", "Big")(b"3000", timeout=120 * t.slow)
    next(it)
    import time
    time.sleep(2)
    grown = node.proc.memory_kb()[0] - base
    t.check(grown < 48 * 1024, "a slow client: the node holds back the backend (RSS grew %d KiB, < 48 MiB)" % grown)
    n = 1 + sum(1 for _ in it)
    t.check(n == 3000, "then all 3000 messages of 64 KiB arrive (%d)" % n)

    # a backend status passes through
    try:
        m("unary_unary", "Fail")(b"", timeout=20 * t.slow)
        t.check(False, "Fail: NOT_FOUND passed through")
    except grpc.RpcError as e:
        t.check(e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "no such thing",
                "a backend's NOT_FOUND and message pass through (%s %s)" % (e.code(), e.details()))

    # cancellation: the backend sees its call cancelled
    it = m("unary_stream", "Forever")(b"", timeout=60 * t.slow)
    first = [next(it) for _ in range(3)]
    it.cancel()
    t.check(first == [b"f0", b"f1", b"f2"], "Forever streams (%s)" % first)
    sh.wait_for(lambda: "cancelled Forever" in a.stdout(), 10 * t.slow,
                "the backend sees the client's cancellation (RST_STREAM passed on)")
    t.check(True, "client cancellation resets the backend stream")

    # deadline (grpc-timeout)
    try:
        m("unary_unary", "Slow")(b"", timeout=1.0)
        t.check(False, "deadline exceeded")
    except grpc.RpcError as e:
        t.check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, "grpc-timeout 1s: DEADLINE_EXCEEDED (%s)" % e.code())
    sh.wait_for(lambda: a.stdout().count("cancelled Slow") >= 1, 10 * t.slow,
                "the backend's call is cancelled after the deadline")
    t.check(True, "the backend's call is cancelled after the deadline")

    # grpc_read_timeout: the node answers DEADLINE_EXCEEDED itself
    try:
        m("unary_unary", "Slow")(b"", timeout=30 * t.slow)
        t.check(False, "grpc_read_timeout")
    except grpc.RpcError as e:
        t.check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "timed out" in (e.details() or ""),
                "grpc_read_timeout 1s: the node answers DEADLINE_EXCEEDED (%s %r)" % (e.code(), e.details()))

    # a dead backend: UNAVAILABLE from the node (trailers-only, grpc-status 14)
    ch3 = grpc.insecure_channel("127.0.0.1:%d" % p3)
    try:
        list(m("unary_stream", "Stream", ch3)(b"1", timeout=20 * t.slow))
        t.check(False, "dead backend: UNAVAILABLE")
    except grpc.RpcError as e:
        t.check(e.code() == grpc.StatusCode.UNAVAILABLE,
                "a dead backend: UNAVAILABLE (%s %r)" % (e.code(), e.details()))
    # grpc_next_upstream: the refused server is skipped
    r = m("unary_unary", "Unary", ch3)(b"again", timeout=20 * t.slow)
    t.check(r == b"echo:again", "grpc_next_upstream error: the call goes to the live server (%r)" % r)

    # a backend killed mid-stream
    ch2 = grpc.insecure_channel("127.0.0.1:%d" % p2)
    it = m("unary_stream", "Forever", ch2)(b"", timeout=60 * t.slow)
    next(it)
    k.kill()
    try:
        for _ in it:
            pass
        t.check(False, "killed mid-stream: UNAVAILABLE")
    except grpc.RpcError as e:
        t.check(e.code() == grpc.StatusCode.UNAVAILABLE,
                "a backend killed mid-stream: the client sees UNAVAILABLE (%s %r)" % (e.code(), e.details()))
    resp = m("unary_unary", "Unary")(b"after", timeout=20 * t.slow)
    t.check(resp == b"echo:after" and node.proc.alive(), "the node stays healthy and answers the next call")

    # an HTTP/1.1 client on a grpc_pass location: carried to the backend
    # as HTTP/2 too (the backend answers; the node does not fall over)
    body = os.path.join(t.tmp, "frame.bin")
    with open(body, "wb") as f:
        f.write(b"\x00\x00\x00\x00\x02hi")
    r1 = t.curl(node.url("/t.S/Unary"), "--http1.1", "-H", "content-type: application/grpc",
                "-H", "te: trailers", "--data-binary", "@" + body)
    t.check(b"echo:hi" in r1.body and node.proc.alive(),
            "an HTTP/1.1 client gets the backend's answer (%s %r)" % (r1.status, r1.body[:40]))

    # many concurrent calls multiplexed
    futs = [m("unary_unary", "Unary").future(b"c%d" % i, timeout=60 * t.slow) for i in range(200)]
    res = [f.result() for f in futs]
    t.check(res == [b"echo:c%d" % i for i in range(200)], "200 concurrent unary calls")
    for c in (ch, ch2, ch3):
        c.close()


sh.run(main)
