#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A gRPC test backend (python3-grpcio, generic handlers: no protoc).

Methods of service t.S, bytes in and out:
  Unary    echo:<request>; metadata "x-echo-md" is echoed in trailers
  Stream   request b"N": N messages b"m<i>" (server streaming)
  Collect  client streaming: b"<count>:<total bytes>"
  Bidi     each message echoed back
  Slow     sleeps up to 30 s (or until cancelled), prints "cancelled Slow"
  Forever  server streaming, one message every 20 ms until cancelled
  Fail     answers NOT_FOUND "no such thing"
  Big      request b"N": N messages of 64 KiB
  Peer     the client certificate's CN seen by a TLS server ("-" when none)
With --tls-cert/--tls-key it serves TLS (ssl_server_credentials), and with
--client-ca it requires a client certificate signed by that CA.
Prints "ready" when serving and "cancelled NAME" when a call is cancelled."""

import argparse
import sys
import threading
import time
from concurrent import futures

import grpc


def say(s):
    print(s, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    a = ap.parse_args()

    def on_cancel(ctx, name):
        ctx.add_callback(lambda: None if ctx.is_active() else say("cancelled " + name))

    def unary(req, ctx):
        md = dict(ctx.invocation_metadata())
        if "x-echo-md" in md:
            ctx.set_trailing_metadata((("x-echo-md", md["x-echo-md"]),))
        return b"echo:" + req

    def stream(req, ctx):
        for i in range(int(req)):
            yield b"m%d" % i

    def collect(it, ctx):
        n = total = 0
        for m in it:
            n += 1
            total += len(m)
        return b"%d:%d" % (n, total)

    def bidi(it, ctx):
        for m in it:
            yield m

    def slow(req, ctx):
        on_cancel(ctx, "Slow")
        end = time.time() + 30
        while time.time() < end and ctx.is_active():
            time.sleep(0.02)
        return b"late"

    def forever(req, ctx):
        on_cancel(ctx, "Forever")
        i = 0
        while ctx.is_active():
            yield b"f%d" % i
            i += 1
            time.sleep(0.02)

    def big(req, ctx):
        chunk = b"z" * 65536
        for i in range(int(req)):
            yield chunk

    def peer(req, ctx):
        cn = ctx.auth_context().get("x509_common_name") or [b"-"]
        return cn[0]

    def fail(req, ctx):
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    h = grpc.method_handlers_generic_handler("t.S", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Collect": grpc.stream_unary_rpc_method_handler(collect),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Forever": grpc.unary_stream_rpc_method_handler(forever),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Big": grpc.unary_stream_rpc_method_handler(big),
        "Peer": grpc.unary_unary_rpc_method_handler(peer),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((h,))
    if a.tls_cert:
        rd = lambda p: open(p, "rb").read()  # noqa: E731
        creds = grpc.ssl_server_credentials(
            [(rd(a.tls_key), rd(a.tls_cert))],
            root_certificates=rd(a.client_ca) if a.client_ca else None,
            require_client_auth=bool(a.client_ca))
        server.add_secure_port("127.0.0.1:%d" % a.port, creds)
    else:
        server.add_insecure_port("127.0.0.1:%d" % a.port)
    server.start()
    say("ready")
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
