#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 14: grpc_next_upstream with HTTP statuses (http_503, http_404),
non_idempotent, grpc_next_upstream_tries, and grpc_intercept_errors with
error_page, the node beside nginx with the same configuration.

Backends: a real gRPC server (python3-grpcio) and nginx HTTP/2 servers
that answer every call 503 or 404 (as a gRPC server behind a broken
proxy would). gRPC calls are POSTs: nginx sends one again to the next
server after an HTTP status only with non_idempotent, and so does the
node. Checks per row: http_503 non_idempotent -> every call answered by
the live server; http_503 without non_idempotent -> calls that met the
503 server fail (UNAVAILABLE, from the 503); http_404 non_idempotent ->
every call answered; grpc_next_upstream_tries 2 over two 503 servers
and the live one -> some calls fail, with tries 3 none; grpc_intercept_errors
on with error_page 503 -> the node's page instead of the backend's, off
-> the backend's 503 passes.

A difference: the node keeps the first 64 KiB of a call's body, so a call
that met an HTTP error status is sent to the next server (with
non_idempotent); nginx streams a gRPC body without keeping it and never
sends a call again once its body went (checked as such in nginx's row)."""

import os

import nginx_ref
import shoal_harness as sh
import grpc_env  # first: may re-run under /usr/bin/python3


def main(t):
    grpc = grpc_env.require_grpc()
    nginx_ref.skip_unless_available()
    gp, good = grpc_env.backend(t, "good")
    b503a, b503b, b404 = t.port(), t.port(), t.port()
    blog = os.path.join(t.tmp, "bad.log")
    nginx_ref.start(t, """
        log_format b '$server_port $status';
        access_log %(log)s b;
        server { listen 127.0.0.1:%(a)d http2; location / { return 503; } }
        server { listen 127.0.0.1:%(b)d http2; location / { return 503; } }
        server { listen 127.0.0.1:%(c)d http2; location / { return 404; } }
        server { listen 127.0.0.1:{port}; location / { return 200; } }
    """ % {"log": blog, "a": b503a, "b": b503b, "c": b404})

    names = ("retry503", "noidem", "retry404", "tries2", "tries3", "intercept", "nointercept")

    def body(ports):
        v = dict(ports)
        v.update(good=good, a=b503a, b=b503b, c=b404)
        return """
            upstream u503 { server 127.0.0.1:%(a)d; server 127.0.0.1:%(good)d; }
            upstream u503n { server 127.0.0.1:%(a)d; server 127.0.0.1:%(good)d; }
            upstream u404 { server 127.0.0.1:%(c)d; server 127.0.0.1:%(good)d; }
            upstream two503 { server 127.0.0.1:%(a)d; server 127.0.0.1:%(b)d;
                              server 127.0.0.1:%(good)d; }
            upstream two503b { server 127.0.0.1:%(a)d; server 127.0.0.1:%(b)d;
                               server 127.0.0.1:%(good)d; }
            upstream only503 { server 127.0.0.1:%(a)d; }
            server { listen 127.0.0.1:%(retry503)d http2; location / { grpc_pass grpc://u503;
                     grpc_next_upstream error timeout http_503 non_idempotent; } }
            server { listen 127.0.0.1:%(noidem)d http2; location / { grpc_pass grpc://u503n;
                     grpc_next_upstream error timeout http_503; } }
            server { listen 127.0.0.1:%(retry404)d http2; location / { grpc_pass grpc://u404;
                     grpc_next_upstream http_404 non_idempotent; } }
            server { listen 127.0.0.1:%(tries2)d http2; location / { grpc_pass grpc://two503;
                     grpc_next_upstream http_503 non_idempotent; grpc_next_upstream_tries 2; } }
            server { listen 127.0.0.1:%(tries3)d http2; location / { grpc_pass grpc://two503b;
                     grpc_next_upstream http_503 non_idempotent; grpc_next_upstream_tries 3; } }
            server { listen 127.0.0.1:%(intercept)d http2;
                     error_page 503 /oops;
                     location = /oops { return 200 "intercepted\\n"; }
                     location / { grpc_pass grpc://only503; grpc_intercept_errors on; } }
            server { listen 127.0.0.1:%(nointercept)d http2;
                     error_page 503 /oops;
                     location = /oops { return 200 "intercepted\\n"; }
                     location / { grpc_pass grpc://only503; } }
            server { listen 127.0.0.1:{port}; location / { return 200; } }
        """ % v

    sports = {n: t.port() for n in names}
    nports = {n: t.port() for n in names}
    t.shoal("events { }\nhttp { access_log off; %s }" % body(sports))
    nginx_ref.start(t, body(nports))

    chans = []

    def calls(port, n=6):
        ch = grpc.insecure_channel("127.0.0.1:%d" % port)
        chans.append(ch)
        f = ch.unary_unary("/t.S/Unary", request_serializer=lambda b: b, response_deserializer=lambda b: b)
        out = []
        for i in range(n):
            try:
                out.append(f(b"c%d" % i, timeout=20 * t.slow) == b"echo:c%d" % i)
            except grpc.RpcError as e:
                out.append(e.code())
        return out

    U = grpc.StatusCode.UNAVAILABLE
    for who, P in (("shoal", sports), ("nginx", nports)):
        if who == "shoal":
            r = calls(P["retry503"])
            t.check(all(x is True for x in r), "shoal: http_503 non_idempotent: every call answered "
                    "by the live server (%s)" % r)
            r = calls(P["retry404"])
            t.check(all(x is True for x in r), "shoal: http_404 non_idempotent: every call answered "
                    "(%s)" % r)
            r = calls(P["tries2"])
            t.check(U in r, "shoal: grpc_next_upstream_tries 2 over 503, 503, live: a call that met "
                    "both 503 servers fails (%s)" % r)
            r = calls(P["tries3"])
            t.check(all(x is True for x in r), "shoal: grpc_next_upstream_tries 3: every call "
                    "answered (%s)" % r)
        else:
            # nginx streams a gRPC call's body without keeping it: once sent,
            # a call is never sent again, whatever grpc_next_upstream says
            for k in ("retry503", "retry404", "tries3"):
                r = calls(P[k])
                t.check(any(x is not True for x in r), "nginx: %s: calls that met the failing "
                        "server are not sent again (nginx keeps no gRPC body) (%s)" % (k, r))
        r = calls(P["noidem"])
        t.check(U in r and True in r,
                "%s: http_503 without non_idempotent: a call (a POST) that met the 503 is not sent "
                "again (%s)" % (who, r))
        frame = os.path.join(t.tmp, "frame.bin")
        with open(frame, "wb") as f:
            f.write(b"\x00\x00\x00\x00\x02hi")
        args = ("--http2-prior-knowledge", "-H", "content-type: application/grpc",
                "--data-binary", "@" + frame)
        def post(port):
            r = t.curl("http://127.0.0.1:%d/t.S/Unary" % port, *args)
            for _ in range(3):
                if r.status is not None or who != "nginx":
                    break
                # nginx answers before it read the body and sometimes resets
                # the stream under curl (issue 14's early-response defect)
                t.log("nginx: curl got no answer (%s), again" % r)
                r = t.curl("http://127.0.0.1:%d/t.S/Unary" % port, *args)
            return r

        def reset_by_nginx(r):
            # curl 7.88 reports nginx's early answer + RST_STREAM(NO_ERROR)
            # as error 92 now and then even after retries: nginx's row is a
            # reference, not what this test judges, so it is logged instead
            if who == "nginx" and r.status is None and r.rc == 92:
                t.log("nginx: still reset under curl after retries: its row not judged")
                return True
            return False

        r = post(P["intercept"])
        if not reset_by_nginx(r):
            t.check(r.status == 503 and r.text() == "intercepted\n",
                    "%s: grpc_intercept_errors on: the error_page 503 answers, with the status "
                    "503 (%s %r)" % (who, r.status, r.text()))
        r = post(P["nointercept"])
        if not reset_by_nginx(r):
            t.check(r.status == 503 and "intercepted" not in r.text(),
                    "%s: grpc_intercept_errors off (the default): the backend's 503 passes (%s)"
                    % (who, r.status))
    for ch in chans:
        ch.close()


sh.run(main)
