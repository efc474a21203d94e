#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 14: how TLS connections to upstreams end, and encrypted client
keys (proxy_ssl_password_file), with a TLS backend that reports how each
connection ended (tls_probe_backend.py: Python's ssl, OpenSSL).

Checks, for the node and for nginx with the same configuration: a
connection closed after its response (no keepalive) and a pooled one
closed by the upstream keepalive_timeout both end with the node's
close_notify (SSL_shutdown, not a bare TCP close); mTLS to the backend
with an encrypted proxy_ssl_certificate_key and proxy_ssl_password_file
(the second passphrase of the file). nginx closes an idle pooled
connection without close_notify (logged, not checked); for the node only: a grpcs://
connection ends with close_notify when the node stops (nginx does not pool
gRPC connections without keepalive, and sends none after a timeout)."""

import os
import sys

import nginx_ref
import shoal_harness as sh
from grpc_env import ident  # noqa: F401  (first: may re-run under /usr/bin/python3)
from pki import make_pki

HERE = os.path.dirname(os.path.abspath(__file__))



def main(t):
    nginx_ref.skip_unless_available()
    P = make_pki(t)

    def probe(name, *extra):
        port = t.port()
        d = t._subdir(name)
        p = t._spawn(name, [sys.executable, os.path.join(HERE, "tls_probe_backend.py"),
                            "--port", str(port), "--cert", P("be.crt"), "--key", P("be.key")]
                     + list(extra), d)
        sh.wait_for(lambda: "ready" in p.stdout().split() and sh.port_accepts(port), 20 * t.slow,
                    "TLS probe %s" % name)
        return p, port

    def ended(p, k):
        out = p.stdout()
        for how in ("close_notify", "abrupt", "error"):
            if "%s %d\n" % (how, k) in out or ("%s %d " % (how, k)) in out:
                return how
        return None

    def conn_of(text):
        for part in text.split():
            if part.startswith("conn="):
                return int(part[5:])
        return None

    http_body = """
        upstream pooled { server 127.0.0.1:%(a)d; keepalive 4; keepalive_timeout 1s; }
        server {
            listen 127.0.0.1:{port};
            location /once { proxy_pass https://127.0.0.1:%(a)d; }
            location /pooled { proxy_pass https://pooled; proxy_http_version 1.1;
                               proxy_set_header Connection ""; }
            location /mtls { proxy_pass https://127.0.0.1:%(b)d;
                             proxy_ssl_certificate %(crt)s;
                             proxy_ssl_certificate_key %(key)s;
                             proxy_ssl_password_file %(pw)s; }
        }
    """
    for who in ("shoal", "nginx"):
        pa, a = probe(who + "-plain")
        pb, b = probe(who + "-mtls", "--client-ca", P("clientca.crt"))
        body = http_body % {"a": a, "b": b, "crt": P("client.crt"), "key": P("client-enc.key"),
                            "pw": P("client.pass")}
        if who == "shoal":
            node = t.shoal("events { }\nhttp { access_log off; %s }" % body)
            port = node.port
        else:
            _, port, _ = nginx_ref.start(t, body)
        url = lambda p: "http://127.0.0.1:%d%s" % (port, p)  # noqa: E731

        r = t.curl(url("/once"))
        k = conn_of(r.text())
        t.check(r.status == 200 and k is not None, "%s: proxy_pass https: 200 (%r)" % (who, r.text()))
        sh.wait_for(lambda: ended(pa, k) is not None, 10 * t.slow, "the end of connection %d" % k)
        t.check(ended(pa, k) == "close_notify",
                "%s: a connection closed after its response sends close_notify (%s)" % (who, ended(pa, k)))

        r = t.curl(url("/pooled"))
        k = conn_of(r.text())
        r2 = t.curl(url("/pooled"))
        t.check(r.status == 200 and conn_of(r2.text()) == k,
                "%s: keepalive: the second request on the pooled TLS connection" % who)
        sh.wait_for(lambda: ended(pa, k) is not None, 10 * t.slow,
                    "the pooled connection %d closed by keepalive_timeout 1s" % k)
        if who == "shoal":
            t.check(ended(pa, k) == "close_notify",
                    "%s: a pooled connection closed by keepalive_timeout sends close_notify (%s)"
                    % (who, ended(pa, k)))
        else:  # a known difference: nginx closes an idle kept connection without it
            t.log("nginx: a pooled connection closed by keepalive_timeout ends: %s"
                  % ended(pa, k))

        r = t.curl(url("/mtls"))
        t.check(r.status == 200 and "client=shoal-node" in r.text(),
                "%s: mTLS with an encrypted key and proxy_ssl_password_file (%r)" % (who, r.text()))

    # grpcs://: the node's HTTP/2 connection ends with close_notify when it stops
    try:
        import grpc
    except ImportError:
        t.log("python3-grpcio is not installed: the grpcs:// part is skipped")
        return
    ph, h = probe("h2", "--mode", "h2")
    node = t.shoal("""
        events { }
        http { access_log off; server { listen 127.0.0.1:{port} http2;
            location / { grpc_pass grpcs://127.0.0.1:%d; grpc_read_timeout 1s; } } }""" % h)
    ch = grpc.insecure_channel("127.0.0.1:%d" % node.port)
    f = ch.unary_unary("/t.S/Unary", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        f(b"x", timeout=20 * t.slow)
        code = "answered"
    except grpc.RpcError as e:
        code = e.code()
    ch.close()
    # "conn N alpn=h2": the node's connection (the harness's port probe is
    # another, whose handshake fails)
    ks = [int(x.split()[1]) for x in ph.stdout().splitlines() if x.endswith(" alpn=h2")]
    t.check(code == grpc.StatusCode.DEADLINE_EXCEEDED and len(ks) == 1,
            "grpcs://: ALPN h2 offered; a backend that never answers: DEADLINE_EXCEEDED (%s, %s)"
            % (code, ph.stdout()))
    k = ks[0] if ks else -1
    t.check(ended(ph, k) is None, "the grpcs:// connection stays open after the call")
    rc = t.stop(node)
    sh.wait_for(lambda: ended(ph, k) is not None, 10 * t.slow, "the end of the grpcs:// connection")
    t.check(ended(ph, k) == "close_notify",
            "grpcs://: the node stopping (rc %s) closes its connection with close_notify (%s)"
            % (rc, ended(ph, k)))


sh.run(main)
