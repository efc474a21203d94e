#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 4: OCSP stapling fetched from the certificate's responder.

A CA and a server certificate whose AIA names http://127.0.0.1:PORT, an
index.txt marking it valid, and `openssl ocsp` as the responder. Shoal with
`ssl_stapling on; ssl_stapling_verify on; ssl_trusted_certificate ca.pem`
fetches the response off the worker loops: s_client -status is polled until
the staple shows (the first connections may go unstapled). A second node
whose certificate names a responder that is down: no staple, the
connection still works. A third whose certificate names a dead responder
but with `ssl_stapling_responder` set to the live one: stapled."""

import os
import subprocess
import time

import shoal_harness as sh

GET = b"GET / HTTP/1.1\r\nHost: o.test\r\nConnection: close\r\n\r\n"


def run(argv):
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def make_ca_and_cert(d, name, ocsp_port):
    ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    if not os.path.exists(ca):
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", "/CN=Test CA", "-keyout", ca_key, "-out", ca])
    key, csr, crt = (os.path.join(d, name + ext) for ext in (".key", ".csr", ".crt"))
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:o.test\n"
                "authorityInfoAccess=OCSP;URI:http://127.0.0.1:%d/\n" % ocsp_port)
    run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", "/CN=o.test", "-keyout", key, "-out", csr])
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "2", "-extfile", ext, "-out", crt])
    return ca, ca_key, crt, key


def index_line(crt):
    out = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-serial", "-subject",
                          "-enddate", "-nameopt", "compat"],
                         check=True, capture_output=True, text=True).stdout
    f = dict(line.split("=", 1) for line in out.splitlines())
    end = time.strptime(f["notAfter"].replace(" GMT", "").strip(), "%b %d %H:%M:%S %Y")
    return "V\t%s\t\t%s\tunknown\t%s\n" % (time.strftime("%y%m%d%H%M%SZ", end),
                                         f["serial"].strip(), f["subject"].strip())


def conf(crt, key, ca, extra=""):
    return f"""
        worker_processes 2;
        error_log logs/error.log info;
        events {{ }}
        http {{
            server {{
                listen 127.0.0.1:{{port}} ssl;
                server_name o.test;
                ssl_certificate {crt};
                ssl_certificate_key {key};
                ssl_stapling on;
                ssl_stapling_verify on;
                ssl_trusted_certificate {ca};
                {extra}
                location / {{ return 200 "ok\\n"; }}
            }}
        }}"""


def wait_staple(t, port, timeout=30):
    """s_client -status until a staple shows (the first connections may go
    unstapled while the fetcher works) or the deadline; the last output."""
    out = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, out = t.s_client(port, "-servername", "o.test", "-status", "-ign_eof", stdin=GET)
        if "OCSP Response Status: successful" in out:
            break
        time.sleep(0.2)
    return out


def main(t):
    d = os.path.join(t.tmp, "pki")
    os.makedirs(d)
    ocsp_port = t.port()
    ca, ca_key, crt, key = make_ca_and_cert(d, "server", ocsp_port)
    # a certificate whose AIA names a port where nothing answers: only
    # ssl_stapling_responder can get it a staple
    _, _, crt3, key3 = make_ca_and_cert(d, "server3", t.port())
    idx = os.path.join(d, "index.txt")
    with open(idx, "w") as f:
        f.write(index_line(crt) + index_line(crt3))
    with open(idx + ".attr", "w") as f:
        f.write("unique_subject = no\n")  # both are CN=o.test
    responder = t._spawn("ocsp", ["openssl", "ocsp", "-index", idx, "-port", str(ocsp_port),
                                  "-rsigner", ca, "-rkey", ca_key, "-CA", ca, "-ndays", "1"],
                         os.path.join(t.tmp, "ocsp"))
    # no probe connection: openssl 3.0's responder stalls after an empty one
    sh.wait_for(lambda: "waiting for OCSP client" in responder.stdout() + responder.stderr(), 15,
                "the OCSP responder listens")

    node = t.shoal(conf(crt, key, ca))
    out = wait_staple(t, node.port)
    t.check("OCSP Response Status: successful" in out, "the responder's OCSP response is stapled",
            out[-3000:])
    t.check("Cert Status: good" in out, "the stapled response says good", out[-3000:])
    t.check("ok" in out.splitlines()[-1] or "\nok" in out, "the request is served", out[-500:])

    # ssl_stapling_responder overrides the certificate's (dead) responder
    node3 = t.shoal(conf(crt3, key3, ca, "ssl_stapling_responder http://127.0.0.1:%d/;" % ocsp_port))
    out = wait_staple(t, node3.port)
    t.check("OCSP Response Status: successful" in out and "Cert Status: good" in out,
            "ssl_stapling_responder: the response of the configured responder is stapled "
            "(the certificate's own responder is down)", out[-3000:])

    # The responder goes down: the next node gets no staple but serves.
    t.stop(responder)
    ca2, _, crt2, key2 = make_ca_and_cert(d, "server2", ocsp_port)
    node2 = t.shoal(conf(crt2, key2, ca2))
    err_log = os.path.join(node2.prefix, "logs", "error.log")

    def fetch_failed():
        t.s_client(node2.port, "-servername", "o.test", "-status", "-ign_eof", stdin=GET)
        return any("OCSP stapling of the certificate" in ln for ln in sh.file_lines(err_log))
    sh.wait_for(fetch_failed, 30, "node2's OCSP fetch to fail (logged)", interval=0.2)
    rc, out = t.s_client(node2.port, "-servername", "o.test", "-status", "-ign_eof", stdin=GET)
    t.check("OCSP response: no response sent" in out, "responder down: no staple", out[-3000:])
    t.check("HTTP/1.1 200" in out, "responder down: the connection still works", out[-3000:])


if __name__ == "__main__":
    sh.run(main)
