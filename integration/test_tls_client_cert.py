#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 4: client-certificate authentication (mTLS) as nginx defines it:
`ssl_verify_client on | off | optional | optional_no_ca`,
`ssl_client_certificate`, `ssl_trusted_certificate`, `ssl_verify_depth`,
`ssl_crl` and the $ssl_client_* variables.

A PKI made with the openssl CLI (EC P-256, 2 days): a root CA
"O=Shoal Test, CN=Shoal Test CA" (`openssl ca`, with an index.txt so it can
revoke and issue a CRL), client1 and client2 (client2 revoked in crl.pem),
an expired client, client3 under an intermediate CA and client4 under two
(root -> inter -> inter2 -> client4), a client of another CA and a
self-signed client; the server certificate is signed by the root too, so
curl runs with --cacert and no -k.

One node, 2 workers. Address P (HTTP/1.1), one server per case, SNI and
Host alike (curl --resolve):
  a.test  verification off (the default server)
  b.test  on, ssl_client_certificate
  o.test  optional
  n.test  optional_no_ca
  t.test  on, ssl_trusted_certificate only (verifies, sends no CA names)
  r.test  on, ssl_crl
  d2.test on, ssl_verify_depth 2
Address P2 (`ssl http2`): h2.test, on. A second node has
`ssl_verify_client on; ssl_client_certificate` at the http level.

nginx's behaviour: the handshake completes whatever the client sends; the
server the request's Host selects decides: no certificate where it is
required is 400 "No required SSL certificate was sent", a certificate that
fails verification is 400 "The SSL certificate error" (optional_no_ca lets
an unknown issuer through as "FAILED:reason"); the backend is never asked
for those. A Host that selects a verifying server other than the one SNI
selected is 421. The variables reach the backend by proxy_set_header and
are read back from /echo. Also: the CA names in the CertificateRequest,
resumption keeping the client's identity, and `-t` errors.

ssl_verify_depth is OpenSSL's (nginx passes it to SSL_CTX_set_verify_depth):
it counts intermediate CAs, not the leaf nor the trust anchor, so the default
1 accepts root -> inter -> client3 and refuses client4's two intermediates,
which `ssl_verify_depth 2` accepts. Every expectation here but the two that
nginx 1.22 predates (ssl_trusted_certificate alone with `on`; FILE:LINE on
the missing-CA error) was checked against nginx 1.22.1 on OpenSSL 3.0."""

import hashlib
import json
import os
import re
import ssl
import subprocess
import time
import urllib.parse

import shoal_harness as sh

ORG = "Shoal Test"
NO_CERT = "No required SSL certificate was sent"
CERT_ERROR = "The SSL certificate error"

CNF = """\
[ ca ]
default_ca = CA_default

[ CA_default ]
dir              = {d}
database         = {d}/index.txt
new_certs_dir    = {d}/newcerts
serial           = {d}/serial
crlnumber        = {d}/crlnumber
certificate      = {d}/ca.pem
private_key      = {d}/ca.key
default_md       = sha256
default_days     = 2
default_crl_days = 2
policy           = policy_any
unique_subject   = no
copy_extensions  = none
email_in_dn      = no

[ policy_any ]
organizationName = optional
commonName       = supplied

[ req ]
distinguished_name = req_dn

[ req_dn ]

[ root_ext ]
basicConstraints     = critical,CA:TRUE
keyUsage             = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[ inter_ext ]
basicConstraints       = critical,CA:TRUE
keyUsage               = critical,keyCertSign,cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ server_ext ]
basicConstraints       = CA:FALSE
keyUsage               = critical,digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = {sans}
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid

[ selfie_ext ]
basicConstraints     = critical,CA:TRUE
subjectKeyIdentifier = hash

[ client_ext ]
basicConstraints       = CA:FALSE
keyUsage               = critical,digitalSignature
extendedKeyUsage       = clientAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
"""

HOSTS = ["a.test", "b.test", "o.test", "n.test", "t.test", "r.test", "d2.test", "h2.test", "i.test"]
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def openssl(*args):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise sh.HarnessError("openssl %s failed (rc %d): %s" % (" ".join(args), p.returncode, p.stderr))
    return p.stdout


class Pki:
    """Everything made in directory d (see the module comment)."""

    def __init__(self, d):
        self.d = d
        os.makedirs(os.path.join(d, "newcerts"))
        self.cnf = self.path("ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(CNF.format(d=d, sans=",".join("DNS:" + h for h in HOSTS)))
        open(self.path("index.txt"), "w").close()
        with open(self.path("serial"), "w") as f:
            f.write("0ABCDEF0123456789A\n")  # a leading 0 digit: printed as is, upper case
        with open(self.path("crlnumber"), "w") as f:
            f.write("01\n")

        self.ca, self.ca_key = self.path("ca.pem"), self.path("ca.key")
        openssl("req", "-config", self.cnf, "-x509", *EC, "-days", "2", "-subj",
                "/O=%s/CN=Shoal Test CA" % ORG, "-extensions", "root_ext",
                "-keyout", self.ca_key, "-out", self.ca)

        self.server = self.issue("server", "/O=%s/CN=a.test" % ORG, "server_ext")
        self.client1 = self.issue("client1", "/O=%s/CN=client1" % ORG)
        self.client2 = self.issue("client2", "/O=%s/CN=client2" % ORG)
        self.expired = self.issue("expired", "/O=%s/CN=expired" % ORG,
                                  dates=("20240101000000Z", "20240102000000Z"))
        self.inter = self.issue("inter", "/O=%s/CN=Shoal Test Intermediate CA" % ORG, "inter_ext")
        self.inter2 = self.x509_req("inter2", "/O=%s/CN=Shoal Test Intermediate CA 2" % ORG, self.inter,
                                    "inter_ext")
        self.client3 = self.x509_req("client3", "/O=%s/CN=client3" % ORG, self.inter)
        self.client4 = self.x509_req("client4", "/O=%s/CN=client4" % ORG, self.inter2)
        # what the clients send: their certificate and the intermediates
        self.client3_chain = self.chain("client3", self.client3, self.inter)
        self.client4_chain = self.chain("client4", self.client4, self.inter2, self.inter)

        # another CA, and a client of it; a self-signed client
        other = (self.path("other-ca.pem"), self.path("other-ca.key"))
        openssl("req", "-config", self.cnf, "-x509", *EC, "-days", "2", "-subj", "/O=Elsewhere/CN=Other CA",
                "-extensions", "root_ext", "-keyout", other[1], "-out", other[0])
        self.stranger = self.x509_req("stranger", "/O=Elsewhere/CN=stranger", other)
        self.selfie = (self.path("selfie.crt"), self.path("selfie.key"))
        openssl("req", "-config", self.cnf, "-x509", *EC, "-days", "2", "-subj", "/O=%s/CN=selfie" % ORG,
                "-extensions", "selfie_ext", "-keyout", self.selfie[1], "-out", self.selfie[0])

        # client2 revoked; the CRL
        openssl("ca", "-batch", "-config", self.cnf, "-revoke", self.client2[0])
        self.crl = self.path("crl.pem")
        openssl("ca", "-batch", "-config", self.cnf, "-gencrl", "-crldays", "2", "-out", self.crl)

    def path(self, name):
        return os.path.join(self.d, name)

    def issue(self, name, subj, ext="client_ext", dates=None):
        """A key and a certificate signed by the root with `openssl ca`."""
        key, csr, crt = self.path(name + ".key"), self.path(name + ".csr"), self.path(name + ".crt")
        openssl("req", "-config", self.cnf, "-new", *EC, "-subj", subj, "-keyout", key, "-out", csr)
        when = ["-startdate", dates[0], "-enddate", dates[1]] if dates else ["-days", "2"]
        openssl("ca", "-batch", "-config", self.cnf, "-preserveDN", "-notext", "-extensions", ext,
                *when, "-in", csr, "-out", crt)
        return crt, key

    def chain(self, name, cert, *cas):
        """(a file with cert and then cas, cert's key)"""
        path = self.path(name + "-chain.pem")
        with open(path, "w") as f:
            f.write("".join(open(c[0]).read() for c in (cert,) + cas))
        return path, cert[1]

    def x509_req(self, name, subj, issuer, ext="client_ext"):
        """A key and certificate signed by issuer (cert, key) with `openssl x509 -req`."""
        key, csr, crt = self.path(name + ".key"), self.path(name + ".csr"), self.path(name + ".crt")
        openssl("req", "-config", self.cnf, "-new", *EC, "-subj", subj, "-keyout", key, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", issuer[0], "-CAkey", issuer[1], "-set_serial",
                "0x" + os.urandom(8).hex(), "-days", "2", "-extfile", self.cnf,
                "-extensions", ext, "-out", crt)
        return crt, key


def cert_facts(crt):
    """What nginx's $ssl_client_* variables should say about crt, from the
    openssl CLI (RFC 2253 names, serial, validity) and the DER (SHA-1)."""
    out = openssl("x509", "-in", crt, "-noout", "-subject", "-issuer", "-serial", "-startdate",
                  "-enddate", "-nameopt", "RFC2253")
    f = {}
    for line in out.splitlines():
        k, _, v = line.partition("=")
        f[k.strip()] = v.strip()
    pem = open(crt).read()
    der = ssl.PEM_cert_to_DER_cert(pem)
    return {
        "s_dn": f["subject"], "i_dn": f["issuer"], "serial": f["serial"],
        "v_start": f["notBefore"], "v_end": f["notAfter"],
        "fingerprint": hashlib.sha1(der).hexdigest(), "pem": pem,
        "end_epoch": ssl.cert_time_to_seconds(f["notAfter"]),
    }


HEADERS = [  # header sent to the backend, variable
    ("X-Client-Verify", "ssl_client_verify"),
    ("X-Client-DN", "ssl_client_s_dn"),
    ("X-Client-Issuer", "ssl_client_i_dn"),
    ("X-Client-Serial", "ssl_client_serial"),
    ("X-Client-Fingerprint", "ssl_client_fingerprint"),
    ("X-Client-Escaped", "ssl_client_escaped_cert"),
    ("X-Client-Start", "ssl_client_v_start"),
    ("X-Client-End", "ssl_client_v_end"),
    ("X-Client-Remain", "ssl_client_v_remain"),
]
SET_HEADERS = ("\n" + " " * 12).join("proxy_set_header %s $%s;" % hv for hv in HEADERS)


def echo_headers(r):
    """/echo's headers as a dict lowercased name -> value (the last), or {}."""
    try:
        return {k: v[-1] for k, v in sh.json_headers(r.json()).items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def squeeze(s):
    return " ".join((s or "").split())


def echo_from_s_client(out):
    """The /echo JSON in s_client output (None if there is no 200 with JSON)."""
    i = out.find("HTTP/1.1 200")
    if i < 0:
        return None
    j = out.find("\r\n\r\n", i)
    k = out.find("{", j if j >= 0 else i)
    if k < 0:
        return None
    try:
        return json.JSONDecoder().raw_decode(out[k:])[0]
    except ValueError:
        return None


def main(t):
    pki = Pki(os.path.join(t.tmp, "pki"))
    b1 = t.backend("b1")
    p2 = t.port()
    srv = f"""
            ssl_certificate {pki.server[0]};
            ssl_certificate_key {pki.server[1]};"""
    loc = "location / { proxy_pass http://be; }"

    def server(name, verify=None, ca="ssl_client_certificate", extra=(), listen="{port} ssl"):
        """A server block for name: the server certificate, ssl_verify_client
        verify (if given) with ca for the CA, the extra directives, and
        every request proxied."""
        lines = [f"listen 127.0.0.1:{listen};", f"server_name {name};{srv}"]
        if verify:
            lines += [f"ssl_verify_client {verify};", f"{ca} {pki.ca};"]
        lines += list(extra) + [loc]
        return "\n            server {\n" + "".join("                %s\n" % x for x in lines) + "            }"

    servers = "".join((
        server("a.test"),
        server("b.test", "on"),
        server("o.test", "optional"),
        server("n.test", "optional_no_ca"),
        server("t.test", "on", ca="ssl_trusted_certificate"),
        server("r.test", "on", extra=[f"ssl_crl {pki.crl};"]),
        server("d2.test", "on", extra=["ssl_verify_depth 2;"]),
        server("h2.test", "on", listen=f"{p2} ssl http2"),
    ))
    node = t.shoal(f"""
        worker_processes 2;
        error_log logs/error.log info;
        events {{ }}
        http {{
            upstream be {{ server 127.0.0.1:{b1.port}; keepalive 8; }}
            ssl_session_cache shared:SSL:1m;
            {SET_HEADERS}{servers}
        }}""")
    node_http = t.shoal(f"""
        worker_processes 2;
        error_log logs/error.log info;
        events {{ }}
        http {{
            ssl_verify_client on;
            ssl_client_certificate {pki.ca};{srv}
            proxy_set_header X-Client-Verify $ssl_client_verify;
            server {{
                listen 127.0.0.1:{{port}} ssl;
                server_name i.test;
                location / {{ proxy_pass http://127.0.0.1:{b1.port}; }}
            }}
        }}""")
    port = node.port

    def count(path):
        return b1.stats()["paths"].get(path, 0)

    def get(host, path, cert=None, p=None, extra=()):
        """curl https://HOST:P/PATH (SNI and Host HOST) with the client
        certificate cert (a (crt, key) pair, crt may hold a chain)."""
        p = p or port
        args = ["--cacert", pki.ca, "--resolve", "%s:%d:127.0.0.1" % (host, p)]
        if cert:
            args += ["--cert", cert[0], "--key", cert[1]]
        if "--http2" not in extra:
            args.append("--http1.1")
        return t.curl("https://%s:%d%s" % (host, p, path), *args, *extra)

    def got(r):
        h = echo_headers(r)
        body = r.text()
        return "status %s, X-Client-Verify %r, body %r%s" % (
            r.status, h.get("x-client-verify"), body[:160] if not h else "(echo)",
            "" if r.rc == 0 else ", curl rc %s: %s" % (r.rc, r.stderr.strip()[-200:]))

    def proxied(host, path, cert, verify, what, p=None, extra=()):
        """Expect 200 from the backend with $ssl_client_verify == verify (a
        string, or a compiled regex). Returns (result, echo headers)."""
        r = get(host, path, cert, p, extra)
        h = echo_headers(r)
        v = h.get("x-client-verify")
        ok_v = verify.fullmatch(v or "") is not None if hasattr(verify, "fullmatch") else v == verify
        want = verify.pattern if hasattr(verify, "pattern") else verify
        t.check(r.status == 200 and ok_v and r.json().get("path") == path if h else False,
                "%s: expected 200 from the backend (%s) with $ssl_client_verify %r; got %s"
                % (what, path, want, got(r)), r)
        return r, h

    def refused(host, path, cert, text, what, p=None, extra=()):
        """Expect 400 with text in the body, the backend not asked."""
        before = count(path)
        r = get(host, path, cert, p, extra)
        after = count(path)
        t.check(r.status == 400 and text in r.text() and after == before,
                "%s: expected 400 with %r in the body and the backend not asked; got %s, backend "
                "requests for %s %d -> %d" % (what, text, got(r), path, before, after), r)
        return r

    c1, c2 = pki.client1, pki.client2

    # -- on: required, verified, with every variable --
    refused("b.test", "/b-none/echo", None, NO_CERT, "verify on, no client certificate")
    t0 = time.time()
    r, h = proxied("b.test", "/b-c1/echo", c1, "SUCCESS", "verify on, client1 (signed by the CA)")
    t1 = time.time()
    f = cert_facts(c1[0])
    want = [
        ("x-client-dn", "$ssl_client_s_dn", f["s_dn"]),
        ("x-client-issuer", "$ssl_client_i_dn", f["i_dn"]),
        ("x-client-serial", "$ssl_client_serial", f["serial"]),
        ("x-client-fingerprint", "$ssl_client_fingerprint", f["fingerprint"]),
    ]
    t.check(f["s_dn"] == "CN=client1,O=%s" % ORG and f["i_dn"] == "CN=Shoal Test CA,O=%s" % ORG
            and f["serial"] == "0ABCDEF0123456789B",
            "the PKI: openssl prints client1 as %r, issuer %r, serial %r (expected CN=client1,O=%s, "
            "CN=Shoal Test CA,O=%s, 0ABCDEF0123456789B)" % (f["s_dn"], f["i_dn"], f["serial"], ORG, ORG))
    for name, var, value in want:
        t.check(h.get(name) == value, "%s: expected %r; got %r" % (var, value, h.get(name)))
    for name, var, key in (("x-client-start", "$ssl_client_v_start", "v_start"),
                           ("x-client-end", "$ssl_client_v_end", "v_end")):
        t.check(squeeze(h.get(name)) == squeeze(f[key]) and h.get(name, "").endswith(" GMT"),
                "%s: expected %r (as openssl x509 prints it); got %r" % (var, f[key], h.get(name)))
    # nginx: (notAfter - now) / 86400, rounded down (0 when under a day); now is
    # some time during the request (nginx's clock is cached: allow 1 s before it)
    lo, hi = (max(0, int((f["end_epoch"] - w) // 86400)) for w in (t1, t0 - 1))
    remain = h.get("x-client-remain")
    t.check(remain is not None and remain.isdigit() and lo <= int(remain) <= hi,
            "$ssl_client_v_remain: expected %s (whole days left of a 2-day certificate, rounded "
            "down); got %r" % (lo if lo == hi else "%d..%d" % (lo, hi), remain))
    esc = h.get("x-client-escaped") or ""
    t.check(urllib.parse.unquote(esc).strip() == f["pem"].strip() and "\n" not in esc and " " not in esc
            and esc.startswith("-----BEGIN%20CERTIFICATE-----%0A"),
            "$ssl_client_escaped_cert: expected client1's PEM URL-encoded (starting "
            "\"-----BEGIN%%20CERTIFICATE-----%%0A\", no raw newline or space); got %r" % esc[:120])

    # -- on: certificates that fail verification --
    refused("b.test", "/b-stranger/echo", pki.stranger, CERT_ERROR, "verify on, a client of another CA")
    refused("b.test", "/b-selfie/echo", pki.selfie, CERT_ERROR, "verify on, a self-signed client")
    refused("b.test", "/b-expired/echo", pki.expired, CERT_ERROR,
            "verify on, an expired client certificate of the CA")

    # -- off: no certificate is asked for --
    proxied("a.test", "/a-c1/echo", c1, "NONE",
            "verify off (a.test), curl has client1: none is requested")

    # -- optional --
    proxied("o.test", "/o-none/echo", None, "NONE", "verify optional, no client certificate")
    proxied("o.test", "/o-c1/echo", c1, "SUCCESS", "verify optional, client1")
    refused("o.test", "/o-selfie/echo", pki.selfie, CERT_ERROR, "verify optional, a self-signed client")

    # -- optional_no_ca --
    proxied("n.test", "/n-none/echo", None, "NONE", "verify optional_no_ca, no client certificate")
    proxied("n.test", "/n-c1/echo", c1, "SUCCESS", "verify optional_no_ca, client1")
    proxied("n.test", "/n-selfie/echo", pki.selfie, re.compile(r"FAILED:self[- ]signed certificate"),
            "verify optional_no_ca, a self-signed client: proxied")
    # (OpenSSL's error for a lone leaf whose issuer is unknown: 21, as nginx 1.22 reports it)
    proxied("n.test", "/n-stranger/echo", pki.stranger,
            "FAILED:unable to verify the first certificate",
            "verify optional_no_ca, a client of another CA (no chain sent): proxied")
    refused("n.test", "/n-expired/echo", pki.expired, CERT_ERROR,
            "verify optional_no_ca, an expired certificate (not an unknown-issuer error)")

    # -- ssl_trusted_certificate only --
    proxied("t.test", "/t-c1/echo", c1, "SUCCESS", "verify on with ssl_trusted_certificate only, client1")
    refused("t.test", "/t-none/echo", None, NO_CERT,
            "verify on with ssl_trusted_certificate only, no client certificate")

    # -- the CA names in the CertificateRequest --
    def ca_names(host):
        _, out = t.s_client(port, "-servername", host, "-CAfile", pki.ca, stdin=b"")
        m = re.search(r"Acceptable client certificate CA names\n(.*?)\n(?:---|[A-Z][a-z]+ [A-Za-z ]+:)",
                      out, re.S)
        return (m.group(1) if m else None), out
    names, out = ca_names("b.test")
    t.check(names is not None and "Shoal Test CA" in names and ORG in names,
            "s_client -servername b.test (ssl_client_certificate): expected \"Acceptable client "
            "certificate CA names\" listing O=%s, CN=Shoal Test CA; got %r" % (ORG, names), out[-1500:])
    names, out = ca_names("t.test")
    t.check(names is None and "No client certificate CA names sent" in out,
            "s_client -servername t.test (ssl_trusted_certificate only): expected \"No client "
            "certificate CA names sent\"; got CA names %r" % names, out[-1500:])

    # -- ssl_crl --
    refused("r.test", "/r-c2/echo", c2, CERT_ERROR, "ssl_crl revoking client2, client2")
    proxied("r.test", "/r-c1/echo", c1, "SUCCESS", "ssl_crl revoking client2, client1")
    proxied("b.test", "/b-c2/echo", c2, "SUCCESS", "client2 where there is no ssl_crl")

    # -- ssl_verify_depth (nginx hands it to SSL_CTX_set_verify_depth: OpenSSL counts the
    #    intermediates, not the leaf or the trust anchor). Clients send their chains. --
    r, h = proxied("b.test", "/b-c3/echo", pki.client3_chain, "SUCCESS",
                   "ssl_verify_depth 1 (default), client3 under one intermediate CA "
                   "(root -> inter -> client3)")
    want = ("CN=client3,O=%s" % ORG, "CN=Shoal Test Intermediate CA,O=%s" % ORG)
    t.check((h.get("x-client-dn"), h.get("x-client-issuer")) == want,
            "client3: expected $ssl_client_s_dn, $ssl_client_i_dn = %r; got %r"
            % (want, (h.get("x-client-dn"), h.get("x-client-issuer"))))
    refused("b.test", "/b-c4/echo", pki.client4_chain, CERT_ERROR,
            "ssl_verify_depth 1 (default), client4 under two intermediate CAs (root -> inter -> inter2 "
            "-> client4): chain too long")
    r, h = proxied("d2.test", "/d2-c4/echo", pki.client4_chain, "SUCCESS",
                   "ssl_verify_depth 2, client4 under two intermediate CAs")
    want = ("CN=client4,O=%s" % ORG, "CN=Shoal Test Intermediate CA 2,O=%s" % ORG)
    t.check((h.get("x-client-dn"), h.get("x-client-issuer")) == want,
            "ssl_verify_depth 2, client4: expected $ssl_client_s_dn, $ssl_client_i_dn = %r; got %r"
            % (want, (h.get("x-client-dn"), h.get("x-client-issuer"))))

    # -- SNI and Host --
    before = count("/m421/echo")
    r = get("a.test", "/m421/echo", c1, extra=("-H", "Host: b.test"))
    t.check(r.status == 421 and count("/m421/echo") == before,
            "SNI a.test (no verification), Host b.test (verify on): expected 421 Misdirected Request "
            "and the backend not asked; got %s" % got(r), r)
    proxied("b.test", "/sni-b-host-a/echo", None, "NONE",
            "SNI b.test (verify on), Host a.test (verification off), no client certificate: a.test "
            "serves it", extra=("-H", "Host: a.test"))

    # -- HTTP/2 --
    r, h = proxied("h2.test", "/h2-c1/echo", c1, "SUCCESS", "HTTP/2, verify on, client1", p=p2,
                   extra=("--http2",))
    t.check(r.info.get("http_version") == "2" and h.get("x-client-dn") == "CN=client1,O=%s" % ORG,
            "HTTP/2 with client1: expected HTTP version 2 and $ssl_client_s_dn CN=client1,O=%s; got %s, %r"
            % (ORG, r.info.get("http_version"), h.get("x-client-dn")))
    refused("h2.test", "/h2-none/echo", None, NO_CERT, "HTTP/2, verify on, no client certificate",
            p=p2, extra=("--http2",))

    # -- http-level directives (second node) --
    refused("i.test", "/i-none/echo", None, NO_CERT,
            "ssl_verify_client on at the http level, no client certificate", p=node_http.port)
    proxied("i.test", "/i-c1/echo", c1, "SUCCESS", "ssl_verify_client on at the http level, client1",
            p=node_http.port)

    # -- resumption keeps the client's identity --
    sess = os.path.join(t.tmp, "client1.sess")

    def s_get(path, *args):
        req = ("GET %s HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n" % path).encode()
        _, out = t.s_client(port, "-servername", "b.test", "-CAfile", pki.ca, "-ign_eof", *args, stdin=req)
        m = re.search(r"^(Reused|New), TLSv", out, re.M)
        echo = echo_from_s_client(out)
        dn = sh.json_headers(echo).get("x-client-dn", [None])[-1] if echo else None
        return (m.group(1) if m else None), dn, out
    state, dn, out = s_get("/res1/echo", "-cert", c1[0], "-key", c1[1], "-sess_out", sess)
    t.check(state == "New" and dn == "CN=client1,O=%s" % ORG,
            "s_client -cert client1 -sess_out: expected a new session and the backend seeing "
            "X-Client-DN CN=client1,O=%s; got %s, %r" % (ORG, state, dn), out[-1500:])
    state, dn, out = s_get("/res2/echo", "-sess_in", sess)
    t.check(state == "Reused" and dn == "CN=client1,O=%s" % ORG,
            "s_client -sess_in (no -cert): expected \"Reused\" and the backend still seeing "
            "X-Client-DN CN=client1,O=%s; got %s, %r" % (ORG, state, dn), out[-1500:])

    # -- configuration errors (shoal -t) --
    def conf_test(name, server_lines):
        text = "events { }\nhttp {\n    server {\n        listen 127.0.0.1:%d ssl;\n" % t.port()
        text += "        ssl_certificate %s;\n        ssl_certificate_key %s;\n" % pki.server
        text += "".join("        %s\n" % s for s in server_lines) + "    }\n}\n"
        path = os.path.join(t.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path, t.run_shoal(["-t", "-c", path])

    path, p = conf_test("no-ca.conf", ["ssl_verify_client on;"])
    t.check(p.returncode == 1 and "ssl_client_certificate" in p.stderr
            and re.search(re.escape(path) + r":\d+", p.stderr),
            "-t: ssl_verify_client on without ssl_client_certificate/ssl_trusted_certificate: expected "
            "exit 1 and FILE:LINE naming ssl_client_certificate; got exit %d, stderr %r"
            % (p.returncode, p.stderr))
    path, p = conf_test("maybe.conf", ["ssl_verify_client maybe;"])
    t.check(p.returncode == 1 and "maybe" in p.stderr and (path + ":7") in p.stderr,
            "-t: ssl_verify_client maybe: expected exit 1 and %s:7 naming \"maybe\"; got exit %d, "
            "stderr %r" % (path, p.returncode, p.stderr))
    path, p = conf_test("no-ca-ok.conf", ["ssl_verify_client optional_no_ca;"])
    t.check(p.returncode == 0,
            "-t: ssl_verify_client optional_no_ca needs no CA file (nginx): expected exit 0; got exit "
            "%d, stderr %r" % (p.returncode, p.stderr))
    missing = os.path.join(t.tmp, "no-such-crl.pem")
    path, p = conf_test("bad-crl.conf", ["ssl_verify_client on;", "ssl_client_certificate %s;" % pki.ca,
                                         "ssl_crl %s;" % missing])
    t.check(p.returncode == 1 and missing in p.stderr,
            "-t: ssl_crl naming a missing file: expected exit 1 naming %s; got exit %d, stderr %r"
            % (missing, p.returncode, p.stderr))


if __name__ == "__main__":
    sh.run(main)
