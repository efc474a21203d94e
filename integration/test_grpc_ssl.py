#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 14: grpc_pass grpcs:// and the grpc_ssl_* directives, with real
TLS gRPC servers (python3-grpcio, ssl_server_credentials) and nginx as a
TLS HTTP/2 front (it logs what the node's TLS client sent: SNI, ALPN,
resumed sessions), the node beside nginx with the same configuration.

Checks, for the node and for nginx: grpc_ssl_verify with
grpc_ssl_trusted_certificate and grpc_ssl_name (unary and streaming
calls through TLS), a wrong name and an unknown CA (UNAVAILABLE, and the
error log says why as nginx does), verification off by default, mTLS with
grpc_ssl_certificate / grpc_ssl_certificate_key whose key is encrypted
(grpc_ssl_password_file, the second passphrase of the file), no client
certificate (the backend refuses the handshake: UNAVAILABLE), SNI only with
grpc_ssl_server_name on, ALPN h2 offered, grpc_ssl_session_reuse (a new
connection after the backend's GOAWAY resumes the session; not with off),
grpc_ssl_protocols / grpc_ssl_ciphers seen by the backend, and
configuration errors at -t (a wrong passphrase, verify without a CA).

nginx keeps one session per upstream server whatever the location, so
a location with other TLS settings (no client certificate, no SNI, other
protocols) may resume a session made under another's (the backend then
reports that session's SNI and client certificate); those locations have
grpc_ssl_session_reuse off here so that both rows test the same thing. The
node keeps a session for the location (context) that made it only."""

import os

import nginx_ref
import shoal_harness as sh
import grpc_env  # first: may re-run under /usr/bin/python3
from grpc_env import ident
from pki import make_pki


def front_log(path):
    """Lines of the front nginx's access log: dicts of its fields."""
    return sh.field_log(path, ("sni", "reused", "conn", "alpn", "proto", "uri"))


def main(t):
    grpc = grpc_env.require_grpc()
    nginx_ref.skip_unless_available()
    P = make_pki(t)

    def gbackend(name, *tls):
        return grpc_env.backend(t, name, *tls)[1]

    good = gbackend("good", "--tls-cert", P("be.crt"), "--tls-key", P("be.key"))
    stranger = gbackend("stranger", "--tls-cert", P("stranger.crt"), "--tls-key", P("stranger.key"))
    mtls = gbackend("mtls", "--tls-cert", P("be.crt"), "--tls-key", P("be.key"),
                    "--client-ca", P("clientca.crt"))
    plain = gbackend("plain")
    # nginx as a TLS HTTP/2 front of the plain backend: it logs what the
    # TLS client sent; a GOAWAY after 3 calls makes the client reconnect
    flog = os.path.join(t.tmp, "front.log")
    front = t.port()
    nginx_ref.start(t, """
        log_format tls '$ssl_server_name|$ssl_session_reused|$connection|$ssl_alpn_protocol|'
                       '$ssl_protocol/$ssl_cipher|$uri';
        access_log %(log)s tls;
        ssl_session_cache shared:fr:1m;
        ssl_protocols TLSv1.2 TLSv1.3;
        server {
            listen 127.0.0.1:%(front)d ssl http2;
            ssl_certificate %(crt)s; ssl_certificate_key %(key)s;
            keepalive_requests 3;
            location / { grpc_pass grpc://127.0.0.1:%(plain)d; }
        }
        server { listen 127.0.0.1:{port}; location / { return 200; } }
    """ % {"log": flog, "front": front, "crt": P("be.crt"), "key": P("be.key"), "plain": plain})

    trust = "grpc_ssl_verify on; grpc_ssl_trusted_certificate %s;" % P("ca.crt")
    names = ("ok", "wrongname", "unknownca", "noverify", "mtls", "mtls_none", "sni", "nosni",
             "noreuse", "tls12")

    def body(ports):
        v = dict(ports)
        v.update(good=good, stranger=stranger, mtls_be=mtls, front=front, trust=trust,
                 ccrt=P("client.crt"), ckey=P("client-enc.key"), cpass=P("client.pass"))
        return """
            grpc_ssl_name backend.test;
            server { listen 127.0.0.1:%(ok)d http2;
                     location / { grpc_pass grpcs://127.0.0.1:%(good)d; %(trust)s } }
            server { listen 127.0.0.1:%(wrongname)d http2;
                     location / { grpc_pass grpcs://127.0.0.1:%(good)d; %(trust)s
                                  grpc_ssl_name wrong.test; } }
            server { listen 127.0.0.1:%(unknownca)d http2;
                     location / { grpc_pass grpcs://127.0.0.1:%(stranger)d; %(trust)s } }
            server { listen 127.0.0.1:%(noverify)d http2;
                     location / { grpc_pass grpcs://127.0.0.1:%(stranger)d; } }
            server { listen 127.0.0.1:%(mtls)d http2;
                     location / { grpc_pass grpcs://127.0.0.1:%(mtls_be)d; %(trust)s
                                  grpc_ssl_certificate %(ccrt)s;
                                  grpc_ssl_certificate_key %(ckey)s;
                                  grpc_ssl_password_file %(cpass)s; } }
            server { listen 127.0.0.1:%(mtls_none)d http2;
                     location / { grpc_pass grpcs://127.0.0.1:%(mtls_be)d; %(trust)s
                                  grpc_ssl_session_reuse off; } }
            server { listen 127.0.0.1:%(sni)d http2;
                     location / { grpc_pass grpcs://127.0.0.1:%(front)d; %(trust)s
                                  grpc_ssl_server_name on; } }
            server { listen 127.0.0.1:%(nosni)d http2;
                     location / { grpc_pass grpcs://127.0.0.1:%(front)d;
                                  grpc_ssl_session_reuse off; } }
            server { listen 127.0.0.1:%(noreuse)d http2;
                     location / { grpc_pass grpcs://127.0.0.1:%(front)d; grpc_ssl_server_name on;
                                  grpc_ssl_name noreuse.test; grpc_ssl_session_reuse off; } }
            server { listen 127.0.0.1:%(tls12)d http2;
                     location / { grpc_pass grpcs://127.0.0.1:%(front)d; grpc_ssl_server_name on;
                                  grpc_ssl_name tls12.test; grpc_ssl_protocols TLSv1.2;
                                  grpc_ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;
                                  grpc_ssl_session_reuse off; } }
            server { listen 127.0.0.1:{port}; location / { return 200; } }
        """ % v

    sports = {n: t.port() for n in names}
    nports = {n: t.port() for n in names}
    errlog = os.path.join(t.tmp, "shoal_error.log")
    t.shoal("""
        events { }
        error_log %s info;
        http { %s }
    """ % (errlog, body(sports)))
    _, _, ngdir = nginx_ref.start(t, body(nports))
    ng_err = os.path.join(ngdir, "logs", "error.log")

    chans = []

    def call(port, method="Unary", req=b"hi", kind="unary_unary"):
        ch = grpc.insecure_channel("127.0.0.1:%d" % port)
        chans.append(ch)
        f = getattr(ch, kind)("/t.S/" + method, request_serializer=ident,
                              response_deserializer=ident)
        r = f(req, timeout=20 * t.slow)
        return list(r) if kind == "unary_stream" else r

    def fails(port, method="Unary"):
        try:
            r = call(port, method)
            return "answered %r" % r
        except grpc.RpcError as e:
            return e.code()

    U = grpc.StatusCode.UNAVAILABLE
    for who, ports, elog in (("shoal", sports, errlog), ("nginx", nports, ng_err)):
        r = call(ports["ok"], req=b"tls")
        t.check(r == b"echo:tls", "%s: grpcs://, verify on, the right name: unary (%r)" % (who, r))
        r = call(ports["ok"], "Stream", b"500", "unary_stream")
        t.check(len(r) == 500 and r[-1] == b"m499", "%s: server streaming over TLS (%d)" % (who, len(r)))
        r = fails(ports["wrongname"])
        t.check(r == U, "%s: a certificate for another name: UNAVAILABLE (%s)" % (who, r))
        sh.wait_for(lambda: sh.file_has(elog, 'upstream SSL certificate does not match "wrong.test"'),
                    10 * t.slow, "%s's log line for the wrong name" % who)
        t.check(True, '%s: error log: upstream SSL certificate does not match "wrong.test"' % who)
        r = fails(ports["unknownca"])
        t.check(r == U, "%s: a certificate from an unknown CA: UNAVAILABLE (%s)" % (who, r))
        sh.wait_for(lambda: sh.file_has(elog, "upstream SSL certificate verify error: ("),
                    10 * t.slow, "%s's log line for the unknown CA" % who)
        t.check(True, "%s: error log: upstream SSL certificate verify error: (...)" % who)
        r = call(ports["noverify"])
        t.check(r == b"echo:hi", "%s: grpc_ssl_verify off (the default): any certificate" % who)
        r = call(ports["mtls"], "Peer")
        t.check(r == b"shoal-node", "%s: mTLS with an encrypted key (grpc_ssl_password_file): "
                "the backend saw CN shoal-node (%r)" % (who, r))
        r = fails(ports["mtls_none"], "Peer")
        t.check(r == U, "%s: no client certificate: the backend refuses, UNAVAILABLE (%s)" % (who, r))

        base = len(front_log(flog))
        for i in range(7):
            call(ports["sni"], req=b"s%d" % i)
        call(ports["nosni"])
        call(ports["tls12"])
        for i in range(4):
            call(ports["noreuse"], req=b"n%d" % i)
        sh.wait_for(lambda: len(front_log(flog)) >= base + 13, 10 * t.slow, "the front's log")
        lines = front_log(flog)[base:]
        sni = [x for x in lines if x["sni"] == "backend.test"]
        # nginx 1.22's default grpc_ssl_protocols has no TLSv1.3 (1.23.4's has)
        v13 = who == "nginx" or all(x["proto"].startswith("TLSv1.3/") for x in sni)
        t.check(len(sni) == 7 and v13 and all(x["alpn"] == "h2" for x in sni),
                "%s: grpc_ssl_server_name on: SNI backend.test, ALPN h2 (shoal: TLSv1.3) on every call (%s)"
                % (who, sni))
        conns = {}
        for x in sni:
            conns.setdefault(x["conn"], x["reused"])
        t.check(len(conns) >= 3 and list(conns.values()).count("r") >= 2,
                "%s: after the backend's GOAWAY the new connections resume the session "
                "(grpc_ssl_session_reuse on by default): %s" % (who, conns))
        nosni = [x for x in lines if x["sni"] in ("", "-")]
        t.check(len(nosni) == 1, "%s: grpc_ssl_server_name off (the default): no SNI (%s)"
                % (who, [x["sni"] for x in lines]))
        t12 = [x for x in lines if x["sni"] == "tls12.test"]
        t.check(len(t12) == 1 and t12[0]["proto"] == "TLSv1.2/ECDHE-ECDSA-AES128-GCM-SHA256",
                "%s: grpc_ssl_protocols TLSv1.2, grpc_ssl_ciphers: seen by the backend (%s)"
                % (who, t12))
        nr = {}
        for x in lines:
            if x["sni"] == "noreuse.test":
                nr.setdefault(x["conn"], x["reused"])
        t.check(len(nr) >= 2 and all(v == "." for v in nr.values()),
                "%s: grpc_ssl_session_reuse off: full handshakes only (%s)" % (who, nr))
    for ch in chans:
        ch.close()

    # configuration errors at -t
    def bad(extra, name):
        conf = t.write_conf("""
            events { }
            http { server { listen 127.0.0.1:%d; location / {
                grpc_pass grpcs://127.0.0.1:%d;
                %s
            } } }""" % (t.port(), good, extra), name=name)
        return t.run_shoal(["-t", "-c", conf])

    wrong = os.path.join(t.tmp, "wrong.pass")
    with open(wrong, "w") as f:
        f.write("nope\n")
    r = bad("grpc_ssl_certificate %s; grpc_ssl_certificate_key %s; grpc_ssl_password_file %s;"
            % (P("client.crt"), P("client-enc.key"), wrong), "badpass.conf")
    t.check(r.returncode != 0 and "cannot load certificate key" in r.stderr and ".conf:" in r.stderr,
            "-t: a wrong passphrase is a load error with file:line", r.stderr)
    r = bad("grpc_ssl_certificate %s; grpc_ssl_certificate_key %s;" % (P("client.crt"), P("client-enc.key")),
            "nopass.conf")
    t.check(r.returncode != 0 and "cannot load certificate key" in r.stderr,
            "-t: an encrypted key without grpc_ssl_password_file is a load error (no prompt)", r.stderr)
    r = bad("grpc_ssl_verify on;", "noca.conf")
    t.check(r.returncode != 0 and 'no "grpc_ssl_trusted_certificate" for "grpc_ssl_verify"' in r.stderr,
            "-t: grpc_ssl_verify on without a CA is a load error", r.stderr)
    r = bad("grpc_ssl_protocols TLSv9;", "badproto.conf")
    t.check(r.returncode != 0 and 'in "grpc_ssl_protocols"' in r.stderr,
            "-t: a bad grpc_ssl_protocols value names the directive", r.stderr)


sh.run(main)
