#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 14: TLS to upstreams (proxy_pass https://, the proxy_ssl_* directives).

A test CA is made here with the openssl CLI (a root, a backend certificate
for backend.test, a certificate from another CA, a client CA and a client
certificate, a CRL revoking a backend certificate), and nginx serves the
backends over TLS, logging per request $ssl_session_reused, $connection,
$ssl_protocol, $ssl_cipher, $ssl_server_name and the client certificate.

Checks: verification ok, wrong name and unknown CA (502, and the error log
says why as nginx does), proxy_ssl_verify_depth 0, a revoked certificate
(proxy_ssl_crl), SNI only with proxy_ssl_server_name on, mTLS to the
backend with proxy_ssl_certificate (and without: the backend's 400),
sessions resumed by the backend ($ssl_session_reused) and not with
proxy_ssl_session_reuse off, proxy_ssl_protocols, proxy_ssl_ciphers and
proxy_ssl_conf_command seen by the backend, TLS connections pooled with
keepalive under load (handshakes counted on the backend: its distinct
connections), configuration errors at -t, and the node beside nginx with
the same configuration for the main cases."""

import os
import re
import shutil
import subprocess
import time

import nginx_ref
import shoal_harness as sh
from pki import make_pki


def backend_log(path):
    """Lines of the backend's access log: dicts of its fields."""
    return sh.field_log(path, ("reused", "conn", "reqs", "proto", "cipher", "sni", "client", "uri"))


def main(t):
    nginx_ref.skip_unless_available()
    if shutil.which("wrk") is None:
        print("SKIP: wrk not installed")
        raise SystemExit(77)
    P = make_pki(t)
    ports = {k: t.port() for k in ("good", "stranger", "mtls", "revoked", "chain")}
    blog = os.path.join(t.tmp, "backend_access.log")

    def tls_server(name, crt, key, answer, extra=""):
        """A backend server block on ports[name] with the certificate crt."""
        return """
        server {
            listen 127.0.0.1:%d ssl;
            ssl_certificate %s; ssl_certificate_key %s;%s
            location / { return 200 "%s\\n"; }
        }""" % (ports[name], P(crt), P(key), extra, answer)

    _, _, bdir = nginx_ref.start(t, """
        log_format tls '$ssl_session_reused|$connection|$connection_requests|$ssl_protocol|'
                       '$ssl_cipher|$ssl_server_name|$ssl_client_s_dn|$uri';
        access_log %s tls;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:be:1m;
        keepalive_requests 100000;""" % blog + "".join((
        tls_server("good", "be.crt", "be.key", "good $ssl_server_name"),
        tls_server("stranger", "stranger.crt", "stranger.key", "stranger"),
        tls_server("revoked", "revoked.crt", "revoked.key", "revoked"),
        tls_server("chain", "chain.crt", "chained.key", "chain"),
        tls_server("mtls", "be.crt", "be.key", "client $ssl_client_s_dn",
                   "\n            ssl_client_certificate %s; ssl_verify_client on;" % P("clientca.crt")),
    )) + """
        server { listen 127.0.0.1:{port}; location / { return 200; } }
    """)

    trust = "proxy_ssl_verify on; proxy_ssl_trusted_certificate %s;" % P("ca.crt")
    pool = 'proxy_http_version 1.1; proxy_set_header Connection "";'
    http_body = """
        upstream good { server 127.0.0.1:%(good)d; keepalive 16; }
        upstream good_nopool { server 127.0.0.1:%(good)d; }
        upstream stranger { server 127.0.0.1:%(stranger)d; }
        upstream revoked { server 127.0.0.1:%(revoked)d; }
        upstream mtls { server 127.0.0.1:%(mtls)d; }
        upstream chain { server 127.0.0.1:%(chain)d; }
        server {
            listen 127.0.0.1:{port};
            proxy_ssl_name backend.test;
            location /ok { proxy_pass https://good; %(pool)s %(trust)s proxy_ssl_server_name on; }
            location /nosni { proxy_pass https://good_nopool; %(trust)s }
            location /wrongname { proxy_pass https://good_nopool; %(trust)s
                                  proxy_ssl_name wrong.test; }
            location /unknownca { proxy_pass https://stranger; %(trust)s }
            location /noverify { proxy_pass https://stranger; }
            location /depth0 { proxy_pass https://chain; %(trust)s proxy_ssl_verify_depth 0; }
            location /depth1 { proxy_pass https://chain; %(trust)s }
            location /crl { proxy_pass https://revoked; %(trust)s proxy_ssl_crl %(crl)s; }
            location /crl_good { proxy_pass https://good_nopool; %(trust)s
                                 proxy_ssl_crl %(crl)s; }
            location /mtls { proxy_pass https://mtls; %(trust)s
                             proxy_ssl_certificate %(ccrt)s; proxy_ssl_certificate_key %(ckey)s; }
            location /mtls_none { proxy_pass https://mtls; %(trust)s }
            location /reuse { proxy_pass https://good_nopool; %(trust)s }
            location /noreuse { proxy_pass https://good_nopool; %(trust)s
                                proxy_ssl_session_reuse off; }
            location /tls12 { proxy_pass https://good_nopool; proxy_ssl_protocols TLSv1.2;
                              proxy_ssl_ciphers ECDHE-ECDSA-AES256-GCM-SHA384; }
            location /confcmd { proxy_pass https://good_nopool;
                proxy_ssl_conf_command Ciphersuites TLS_CHACHA20_POLY1305_SHA256; }
            location /load { proxy_pass https://good; %(pool)s %(trust)s }
        }
    """ % {"good": ports["good"], "stranger": ports["stranger"], "revoked": ports["revoked"],
           "mtls": ports["mtls"], "chain": ports["chain"], "pool": pool, "trust": trust, "crl": P("ca.crl"),
           "ccrt": P("client.crt"), "ckey": P("client.key")}
    errlog = os.path.join(t.tmp, "shoal_error.log")
    node = t.shoal("""
        events { }
        error_log %s info;
        http { access_log off; %s }
    """ % (errlog, http_body))
    _, ngport, ngdir = nginx_ref.start(t, http_body)
    ng_err = os.path.join(ngdir, "logs", "error.log")

    def get(base, path):
        return t.curl("http://127.0.0.1:%d%s" % (base, path))

    def last_for(uri):
        lines = [x for x in backend_log(blog) if x["uri"] == uri]
        return lines[-1] if lines else None

    for who, port, elog in (("shoal", node.port, errlog), ("nginx", ngport, ng_err)):
        r = get(port, "/ok")
        t.check(r.status == 200 and r.text() == "good backend.test\n",
                "%s: verify on, trusted CA, the right name, SNI on: 200 (the backend saw SNI "
                "backend.test)" % who, r)
        r = get(port, "/nosni")
        t.check(r.status == 200 and r.text() == "good \n",
                "%s: proxy_ssl_server_name off (the default): no SNI sent" % who, r)
        r = get(port, "/wrongname")
        t.check(r.status == 502, "%s: a certificate for another name: 502" % who, r)
        sh.wait_for(lambda: sh.file_has(elog, 'upstream SSL certificate does not match "wrong.test"'),
                    10 * t.slow, "%s's log line for the wrong name" % who)
        t.check(True, "%s: error log: upstream SSL certificate does not match \"wrong.test\""
                % who)
        r = get(port, "/unknownca")
        t.check(r.status == 502, "%s: a certificate from an unknown CA: 502" % who, r)
        sh.wait_for(lambda: sh.file_has(elog, "upstream SSL certificate verify error: (21:unable "
                                          "to verify the first certificate)"),
                    10 * t.slow, "%s's log line for the unknown CA" % who)
        t.check(True, "%s: error log: upstream SSL certificate verify error: (21:unable to "
                "verify the first certificate)" % who)
        r = get(port, "/noverify")
        t.check(r.status == 200 and r.text() == "stranger\n",
                "%s: proxy_ssl_verify off (the default): the unknown CA is served" % who, r)
        r = get(port, "/depth0")
        t.check(r.status == 502, "%s: proxy_ssl_verify_depth 0, a chain with an intermediate: 502"
                % who, r)
        r = get(port, "/depth1")
        if who == "shoal":
            t.check(r.status == 200, "shoal: proxy_ssl_verify_depth 1 (the default), the same "
                    "chain: 200 (OpenSSL's depth, as openssl s_client -verify_depth 1)", r)
        else:
            t.log("nginx: proxy_ssl_verify_depth 1, a chain with an intermediate: %d (nginx "
                  "1.22 needs depth 2 here)" % r.status)
        r = get(port, "/crl")
        t.check(r.status == 502, "%s: proxy_ssl_crl, a revoked certificate: 502" % who, r)
        sh.wait_for(lambda: sh.file_has(elog, "upstream SSL certificate verify error: (23:"),
                    10 * t.slow, "%s's log line for the revoked certificate" % who)
        r = get(port, "/crl_good")
        t.check(r.status == 200, "%s: proxy_ssl_crl, a certificate not revoked: 200" % who, r)
        r = get(port, "/mtls")
        t.check(r.status == 200 and "CN=shoal-node" in r.text(),
                "%s: proxy_ssl_certificate: the backend requiring a client certificate "
                "sees CN=shoal-node" % who, r)
        r = get(port, "/mtls_none")
        if who == "shoal":
            t.check(r.status == 400,
                    "shoal: no client certificate for a backend requiring one: its 400", r)
        else:
            t.log("nginx: /mtls_none: %d %r (nginx keeps one session per server, whatever the "
                  "location: it resumes the session /mtls made with a client certificate)"
                  % (r.status, r.text()))

        # session reuse: new connections (no keepalive) resume
        for i in range(5):
            get(port, "/reuse")
        for i in range(3):
            get(port, "/noreuse")
        sh.wait_for(lambda: len([x for x in backend_log(blog) if x["uri"] == "/noreuse"]) >= 3 *
                    (2 if who == "nginx" else 1), 10 * t.slow, "backend log lines")
        lines = [x for x in backend_log(blog) if x["uri"] == "/reuse"][-5:]
        t.check(len(lines) == 5 and all(x["reused"] == "r" for x in lines[1:]) and
                len({x["conn"] for x in lines}) == 5,
                "%s: proxy_ssl_session_reuse on: 5 connections, the last 4 resumed "
                "($ssl_session_reused on the backend)" % who, lines)
        lines = [x for x in backend_log(blog) if x["uri"] == "/noreuse"][-3:]
        t.check(len(lines) == 3 and all(x["reused"] == "." for x in lines),
                "%s: proxy_ssl_session_reuse off: no session resumed" % who, lines)

        r = get(port, "/tls12")
        x = last_for("/tls12")
        t.check(r.status == 200 and x is not None and x["proto"] == "TLSv1.2" and
                x["cipher"] == "ECDHE-ECDSA-AES256-GCM-SHA384",
                "%s: proxy_ssl_protocols TLSv1.2 and proxy_ssl_ciphers: the backend saw them"
                % who, x)
        r = get(port, "/confcmd")
        x = last_for("/confcmd")
        if who == "shoal":
            t.check(r.status == 200 and x is not None and x["proto"] == "TLSv1.3" and
                    x["cipher"] == "TLS_CHACHA20_POLY1305_SHA256",
                    "shoal: proxy_ssl_conf_command Ciphersuites: the backend saw it", x)
        else:
            t.log("nginx: /confcmd: %r (nginx resumed the TLS 1.2 session /tls12 made with the "
                  "same server)" % (x,))

    # pooled TLS connections under load: handshakes counted on the backend
    before = {x["conn"] for x in backend_log(blog)}
    p = subprocess.run(["wrk", "-t1", "-c8", "-d2s", node.url("/load")], capture_output=True,
                       text=True, timeout=60 * t.slow)
    m = re.search(r"(\d+) requests in", p.stdout)
    n = int(m.group(1)) if m else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)

    def settled():
        return len([x for x in backend_log(blog) if x["uri"] == "/load"]) >= n
    sh.wait_for(settled, 10 * t.slow, "the backend's log lines of the load")
    load = [x for x in backend_log(blog) if x["uri"] == "/load"]
    conns = {x["conn"] for x in load} - before
    # each connection carries keepalive_requests (1000) requests, then a new
    # one (resumed) takes over
    resumed = len({x["conn"] for x in load if x["reused"] == "r"} - before)
    t.check(n >= 200 and non2xx is None and 1 <= len(conns) <= n // 1000 + 16,
            "keepalive 16 to a TLS upstream under load (wrk -c8, %d requests): %d TLS "
            "connections (handshakes) on the backend, %d of them resumed"
            % (n, len(conns), resumed), p.stdout)

    # configuration errors, at -t
    bad = os.path.join(t.tmp, "bad.conf")
    for conf, want in (
            ("location / { proxy_pass https://127.0.0.1:1; proxy_ssl_verify on; }",
             'no "proxy_ssl_trusted_certificate" for "proxy_ssl_verify" on'),
            ("location / { proxy_pass https://127.0.0.1:1; proxy_ssl_certificate /nonexistent.crt;"
             " proxy_ssl_certificate_key /nonexistent.key; }", 'cannot load certificate'),
            ("location / { proxy_pass https://127.0.0.1:1; proxy_ssl_conf_command NoSuchCommand x; }",
             'SSL_CONF_cmd("NoSuchCommand"'),
            ("location / { proxy_pass https://127.0.0.1:1; proxy_ssl_protocols TLSv9; }",
             'invalid value "TLSv9"'),
            ("location / { proxy_pass https://127.0.0.1:1; }\n location /h { proxy_pass https://hb; "
             "health_check; }\n", '"health_check" with "proxy_pass https://" is not supported yet')):
        with open(bad, "w") as f:
            f.write("events { }\nhttp {\n upstream hb { server 127.0.0.1:1; }\n server {\n"
                    " listen 127.0.0.1:1;\n %s\n }\n}\n" % conf)
        r = t.run_shoal(["-t", "-c", bad])
        t.check(r.returncode != 0 and want in r.stderr and "bad.conf:" in r.stderr,
                "shoal -t refuses with file:line: %s" % want, r.stderr[-500:])


if __name__ == "__main__":
    sh.run(main)
