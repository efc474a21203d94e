#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 4: TLS termination with real clients (curl, openssl s_client, Python's ssl).

One node, four workers, two TLS addresses:
 - A (HTTP/1.1 only): server a.test with an ECDSA and an RSA certificate, a
   shared session cache, two session-ticket key files, an OCSP staple file
   and add_header with the $ssl_* variables; server b.test on the same
   address with its own certificate (SNI picks it);
 - C (ssl http2): TLS 1.3 only, TLS 1.3 suites set by ssl_conf_command.
Checks: curl --http1.1 and --http2 (ALPN falls back to http/1.1 on A, h2 on C),
TLS 1.2 and 1.3 accepted, 1.1 refused, ALPN results (and the fatal alert when
nothing is in common), SNI and the ECDSA/RSA choice, session resumption by
cache and by ticket across workers, ticket-key rotation and certificate
reload on SIGHUP (the whole configuration, with a request in flight finishing), OCSP stapling, the $ssl_*
variables and $scheme, and configuration errors."""

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import shoal_harness as sh

HTTP_GET = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


def reused(out):
    m = re.search(r"^(Reused|New), (TLSv[0-9.]+)", out, re.M)
    return m.group(1) if m else None


def resume_series(t, port, extra, n=6):
    """A session, then n connections resuming it; returns the list of
    "Reused"/"New" of the n."""
    sess = os.path.join(t.tmp, "sess-%d.pem" % time.monotonic_ns())
    t.s_client(port, "-servername", "a.test", "-sess_out", sess, "-ign_eof", *extra,
               stdin=HTTP_GET)
    res = []
    for _ in range(n):
        _, out = t.s_client(port, "-servername", "a.test", "-sess_in", sess, "-ign_eof", *extra,
                            stdin=HTTP_GET)
        res.append(reused(out))
    return res, sess


def make_staple(t, cert, key, out):
    d = os.path.dirname(out)
    idx = os.path.join(d, "index.txt")
    open(idx, "w").close()
    req = os.path.join(d, "ocsp-req.der")
    subprocess.run(["openssl", "ocsp", "-issuer", cert, "-cert", cert, "-reqout", req, "-no_nonce"],
                   check=True, capture_output=True, timeout=30)
    subprocess.run(["openssl", "ocsp", "-index", idx, "-rsigner", cert, "-rkey", key, "-CA", cert,
                    "-reqin", req, "-respout", out, "-ndays", "1"],
                   check=True, capture_output=True, timeout=30)


def peer_cert_sha(conn):
    return hashlib.sha256(conn.getpeercert(binary_form=True)).hexdigest()


def main(t):
    d = os.path.join(t.tmp, "certs")
    a_ec = t.make_cert("a-ec", "a.test", ["DNS:a.test"], kind="ec")
    a_rsa = t.make_cert("a-rsa", "a.test", ["DNS:a.test"], kind="rsa")
    b = t.make_cert("b", "b.test")
    c = t.make_cert("c", "c.test")
    staple = os.path.join(d, "ocsp.der")
    make_staple(t, a_ec[0], a_ec[1], staple)
    k_current = os.path.join(d, "ticket-current.key")
    k_previous = os.path.join(d, "ticket-previous.key")
    keys = [os.urandom(80) for _ in range(3)]
    for path, k in ((k_current, keys[0]), (k_previous, keys[1])):
        with open(path, "wb") as f:
            f.write(k)

    b1 = t.backend("b1")
    port_c = t.port()
    node = t.shoal(f"""
        worker_processes 4;
        error_log logs/error.log info;
        events {{ }}
        http {{
            server {{
                listen 127.0.0.1:{{port}} ssl;
                server_name a.test;
                ssl_certificate {a_ec[0]};
                ssl_certificate_key {a_ec[1]};
                ssl_certificate {a_rsa[0]};
                ssl_certificate_key {a_rsa[1]};
                ssl_protocols TLSv1.2 TLSv1.3;
                ssl_prefer_server_ciphers on;
                ssl_session_cache shared:SSL:1m;
                ssl_session_timeout 10m;
                ssl_session_ticket_key {k_current};
                ssl_session_ticket_key {k_previous};
                ssl_stapling on;
                ssl_stapling_file {staple};
                add_header X-TLS "$ssl_protocol|$ssl_cipher|$ssl_server_name|$ssl_session_reused|$scheme|$https" always;
                location / {{ return 200 "a $ssl_protocol $scheme\\n"; }}
                location /slow {{ proxy_pass http://127.0.0.1:{b1.port}; }}
            }}
            server {{
                listen 127.0.0.1:{{port}} ssl;
                server_name b.test;
                ssl_certificate {b[0]};
                ssl_certificate_key {b[1]};
                location / {{ return 200 "b\\n"; }}
            }}
            server {{
                listen 127.0.0.1:{port_c} ssl http2;
                server_name c.test;
                ssl_certificate {c[0]};
                ssl_certificate_key {c[1]};
                ssl_protocols TLSv1.3;
                ssl_conf_command Ciphersuites TLS_CHACHA20_POLY1305_SHA256;
                location / {{ return 200 "c $server_protocol\\n"; }}
            }}
        }}""")
    pa = node.port
    url = "https://a.test:%d/" % pa
    res = ["--resolve", "a.test:%d:127.0.0.1" % pa, "-k"]

    # curl over TLS, HTTP/1.1 and (asked for) HTTP/2 on an address without http2
    r = t.curl(url, "--http1.1", *res)
    t.check(r.status == 200 and r.body == b"a TLSv1.3 https\n",
            "curl --http1.1 over TLS: 200 \"a TLSv1.3 https\"", r)
    xt = r.header("X-TLS") or ""
    t.check(re.match(r"^TLSv1\.3\|TLS_[A-Z0-9_]+\|a\.test\|\.\|https\|on$", xt) is not None,
            "$ssl_protocol|$ssl_cipher|$ssl_server_name|$ssl_session_reused|$scheme|$https: " + xt, r)
    r = t.curl(url, "--http2", *res)
    t.check(r.status == 200 and r.info.get("http_version") == "1.1",
            "curl --http2 to a listener without http2: ALPN gives http/1.1 (got %s)"
            % r.info.get("http_version"), r)
    r = t.curl("https://c.test:%d/" % port_c, "--http2", "--resolve",
               "c.test:%d:127.0.0.1" % port_c, "-k")
    t.check(r.status == 200 and r.info.get("http_version") == "2" and r.body == b"c HTTP/2.0\n",
            "curl --http2 to `listen ... ssl http2`: HTTP/2 200 \"c HTTP/2.0\"", r)

    # protocol versions
    for v, ok in (("-tls1_2", True), ("-tls1_3", True), ("-tls1_1", False)):
        rc, out = t.s_client(pa, "-servername", "a.test", v, "-ign_eof", stdin=HTTP_GET)
        got = reused(out) is not None and "HTTP/1.1 200" in out
        t.check(got == ok, "s_client %s: %s" % (v, "accepted" if ok else "refused"), out[-600:])
    rc, out = t.s_client(port_c, "-servername", "c.test", "-tls1_2", stdin=b"")
    t.check(reused(out) is None, "TLS 1.2 refused where ssl_protocols is TLSv1.3 only", out[-400:])
    rc, out = t.s_client(port_c, "-servername", "c.test", "-tls1_3", stdin=b"")
    t.check("TLS_CHACHA20_POLY1305_SHA256" in out,
            "ssl_conf_command Ciphersuites: TLS 1.3 suite TLS_CHACHA20_POLY1305_SHA256", out[-600:])

    # ALPN
    rc, out = t.s_client(port_c, "-servername", "c.test", "-alpn", "h2,http/1.1", stdin=b"")
    t.check("ALPN protocol: h2" in out, "ALPN h2,http/1.1 on an http2 listener: h2", out[-600:])
    rc, out = t.s_client(pa, "-servername", "a.test", "-alpn", "h2,http/1.1", stdin=b"")
    t.check("ALPN protocol: http/1.1" in out, "ALPN h2,http/1.1 on a TLS listener without http2: http/1.1",
            out[-600:])
    rc, out = t.s_client(pa, "-servername", "a.test", "-alpn", "h2", stdin=b"")
    t.check(reused(out) is None and "no application protocol" in out,
            "ALPN h2 only where h2 is off: the handshake fails (no_application_protocol)", out[-600:])

    # SNI picks the certificate; ECDSA or RSA by what the client supports
    for name, cn in (("a.test", "a.test"), ("b.test", "b.test")):
        rc, out = t.s_client(pa, "-servername", name, stdin=b"")
        t.check(re.search(r"subject=CN\s*=\s*%s" % re.escape(cn), out) is not None,
                "SNI %s: certificate CN=%s" % (name, cn), out[:800])
    rc, out = t.s_client(pa, "-noservername", stdin=b"")
    t.check(re.search(r"subject=CN\s*=\s*a\.test", out) is not None,
            "no SNI: the default server's certificate (a.test)", out[:800])
    rc, out = t.s_client(pa, "-servername", "a.test", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256",
                         stdin=b"")
    t.check("Server public key is 2048 bit" in out, "an RSA-only client gets the RSA certificate",
            out[-800:])
    rc, out = t.s_client(pa, "-servername", "a.test", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256",
                         stdin=b"")
    t.check("Server public key is 256 bit" in out, "an ECDSA client gets the ECDSA certificate",
            out[-800:])

    # OCSP stapling from ssl_stapling_file
    rc, out = t.s_client(pa, "-servername", "a.test", "-status", stdin=b"")
    t.check("OCSP Response Status: successful" in out, "ssl_stapling_file: the OCSP response is stapled",
            out[:1200])

    # Session resumption, by cache (no tickets) and by ticket, over 4 workers
    for ver in ("-tls1_2", "-tls1_3"):
        got, _ = resume_series(t, pa, [ver, "-no_ticket"])
        t.check(got == ["Reused"] * 6, "%s session cache (no tickets): 6 of 6 reconnections resumed, "
                "over 4 workers" % ver, got)
        got, _ = resume_series(t, pa, [ver])
        t.check(got == ["Reused"] * 6, "%s session tickets: 6 of 6 reconnections resumed, "
                "over 4 workers" % ver, got)
    sess = os.path.join(t.tmp, "sess-r.pem")
    t.s_client(pa, "-servername", "a.test", "-sess_out", sess, "-ign_eof", stdin=HTTP_GET)
    rc, out = t.s_client(pa, "-servername", "a.test", "-sess_in", sess, "-ign_eof", stdin=HTTP_GET)
    t.check("|r|https|on" in out, "$ssl_session_reused is \"r\" on a resumed session", out[-600:])

    # Ticket-key rotation on SIGHUP: a ticket under the key that became the
    # second one still resumes; once that key is gone it does not.
    got, sess = resume_series(t, pa, ["-tls1_2"], n=1)
    with open(k_previous, "wb") as f:
        f.write(keys[0])
    with open(k_current, "wb") as f:
        f.write(keys[1])

    def reloaded(count):
        return lambda: sh._read(os.path.join(node.prefix, "logs/error.log")).count(
            "reload: configuration ok") >= count
    node.proc.signal(signal.SIGHUP)
    sh.wait_for(reloaded(1), 10, "the TLS reload")
    rc, out = t.s_client(pa, "-servername", "a.test", "-tls1_2", "-sess_in", sess, stdin=b"")
    t.check(reused(out) == "Reused", "after rotation (SIGHUP), a ticket under the previous key resumes",
            out[-400:])
    with open(k_previous, "wb") as f:
        f.write(keys[1])
    with open(k_current, "wb") as f:
        f.write(keys[2])
    node.proc.signal(signal.SIGHUP)
    sh.wait_for(reloaded(2), 10, "the second TLS reload")
    rc, out = t.s_client(pa, "-servername", "a.test", "-tls1_2", "-sess_in", sess, "-no_ticket",
                         stdin=b"")
    t.check(reused(out) == "New", "a ticket under a key no longer listed does not resume", out[-400:])

    # Certificate reload on SIGHUP: a request in flight on a TLS connection
    # finishes (the previous generation drains), a new connection gets the
    # new certificate.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    old = ctx.wrap_socket(socket.create_connection(("127.0.0.1", pa), timeout=10),
                          server_hostname="a.test")
    sha_before = peer_cert_sha(old)
    old.sendall(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    sh.wait_for(lambda: b1.stats()["in_flight"] >= 1, 10, "the slow request in flight at b1")
    new_cert = t.make_cert("a-ec-2", "a.test", ["DNS:a.test"], kind="ec", d=os.path.join(t.tmp, "new"))
    shutil.copy(new_cert[0], a_ec[0])
    shutil.copy(new_cert[1], a_ec[1])
    node.proc.signal(signal.SIGHUP)
    sh.wait_for(reloaded(3), 10, "the certificate reload")
    got = b""
    old.settimeout(10)
    try:
        while b"slow 1500" not in got:
            d = old.recv(4096)
            if not d:
                break
            got += d
    except OSError:
        pass
    t.check(b"200 OK" in got and b"slow 1500" in got,
            "a request in flight on a TLS connection across SIGHUP completes", got[:300])
    old.close()
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", pa), timeout=10),
                         server_hostname="a.test") as fresh:
        sha_after = peer_cert_sha(fresh)
    want = hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(new_cert[0]).read())).hexdigest()
    t.check(sha_after == want and sha_after != sha_before,
            "a new connection after SIGHUP gets the new certificate")

    # A reload that fails keeps the running certificates.
    with open(a_ec[1], "w") as f:
        f.write("not a key\n")
    node.proc.signal(signal.SIGHUP)
    sh.wait_for(lambda: "configuration refused" in sh._read(os.path.join(node.prefix, "logs/error.log")),
                10, "the failed reload")
    r = t.curl(url, "--http1.1", *res)
    t.check(r.status == 200, "after a failed reload (bad key file) the node still serves TLS", r)

    # Configuration errors
    bad = t.write_conf(f"""
        events {{ }}
        http {{ server {{ listen 127.0.0.1:{t.port()} ssl; location / {{ return 200; }} }} }}""")
    p = t.run_shoal(["-t", "-c", bad])
    t.check(p.returncode == 1 and 'no "ssl_certificate" is defined' in p.stderr,
            "-t: a `listen ... ssl` server without ssl_certificate is refused with file:line",
            p.stderr)
    bad = t.write_conf(f"""
        events {{ }}
        http {{ server {{ listen 127.0.0.1:{t.port()} ssl; ssl_certificate {b[0]};
                          ssl_certificate_key {c[1]}; }} }}""")
    p = t.run_shoal(["-t", "-c", bad])
    t.check(p.returncode == 1 and "mismatch" in p.stderr,
            "-t: a certificate with another certificate's key is refused", p.stderr)
    ok = t.write_conf(f"""
        events {{ }}
        http {{ server {{ listen 127.0.0.1:{t.port()} ssl; ssl_certificate {b[0]};
                          ssl_certificate_key {b[1]}; ssl_early_data on; ssl_dhparam {b[0]}; }} }}""")
    p = t.run_shoal(["-t", "-c", ok])
    t.check(p.returncode == 1 and "DH parameters" in p.stderr,
            "-t: ssl_dhparam on a file without DH parameters is refused", p.stderr)


if __name__ == "__main__":
    sh.run(main)
