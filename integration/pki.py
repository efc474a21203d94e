# SPDX-License-Identifier: Apache-2.0
"""A test PKI made with the openssl CLI (shared by the upstream TLS tests):
a root, a backend certificate for backend.test, one from another CA, a
client CA and a client certificate (also with its key encrypted:
client-enc.key, passphrase in client.pass), an intermediate and a chain,
and a CRL revoking a backend certificate."""

import os
import subprocess

import shoal_harness as sh


def openssl(t, *args):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60,
                       cwd=t.tmp)
    if p.returncode != 0:
        raise sh.HarnessError("openssl %s failed: %s" % (" ".join(args), p.stderr))
    return p


def make_pki(t):
    d = os.path.join(t.tmp, "pki")
    os.makedirs(d)
    P = lambda n: os.path.join(d, n)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    def ca(name, cn):
        openssl(t, "req", "-x509", *ec, "-keyout", P(name + ".key"), "-out", P(name + ".crt"),
                "-days", "2", "-subj", "/CN=" + cn,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def intermediate(name, cn, ca_name):
        openssl(t, "req", *ec, "-keyout", P(name + ".key"), "-out", P(name + ".csr"),
                "-subj", "/CN=" + cn)
        ext = P(name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
        openssl(t, "x509", "-req", "-in", P(name + ".csr"), "-CA", P(ca_name + ".crt"),
                "-CAkey", P(ca_name + ".key"), "-CAcreateserial", "-out", P(name + ".crt"),
                "-days", "2", "-extfile", ext)

    def leaf(name, cn, ca_name, san, client=False):
        openssl(t, "req", *ec, "-keyout", P(name + ".key"), "-out", P(name + ".csr"),
                "-subj", "/CN=" + cn)
        ext = P(name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=%s\n"
                    % (san, "clientAuth" if client else "serverAuth"))
        openssl(t, "x509", "-req", "-in", P(name + ".csr"), "-CA", P(ca_name + ".crt"),
                "-CAkey", P(ca_name + ".key"), "-CAcreateserial", "-out", P(name + ".crt"),
                "-days", "2", "-extfile", ext)

    ca("ca", "Shoal Test CA")
    ca("other", "Other CA")
    ca("clientca", "Client CA")
    leaf("be", "backend.test", "ca", "DNS:backend.test")
    leaf("revoked", "backend.test", "ca", "DNS:backend.test")
    leaf("stranger", "backend.test", "other", "DNS:backend.test")
    leaf("client", "shoal-node", "clientca", "DNS:shoal-node", client=True)
    intermediate("int", "Shoal Test Intermediate", "ca")
    leaf("chained", "backend.test", "int", "DNS:backend.test")
    with open(P("chain.crt"), "w") as f:
        f.write(open(P("chained.crt")).read() + open(P("int.crt")).read())
    # a CRL of ca revoking "revoked" (openssl ca wants a small database)
    with open(P("index.txt"), "w"):
        pass
    with open(P("crlnumber"), "w") as f:
        f.write("01\n")
    with open(P("ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca=c\n[c]\ndatabase=%s\ncrlnumber=%s\ndefault_md=sha256\n"
                "default_crl_days=2\n" % (P("index.txt"), P("crlnumber")))
    openssl(t, "ca", "-config", P("ca.cnf"), "-keyfile", P("ca.key"), "-cert", P("ca.crt"),
            "-revoke", P("revoked.crt"))
    openssl(t, "ca", "-config", P("ca.cnf"), "-keyfile", P("ca.key"), "-cert", P("ca.crt"),
            "-gencrl", "-out", P("ca.crl"))
    # the client key encrypted (AES-256), its passphrase second in a file
    with open(P("client.pass"), "w") as f:
        f.write("not-this-one\ns3cret pass\n")
    openssl(t, "pkey", "-in", P("client.key"), "-out", P("client-enc.key"), "-aes256",
            "-passout", "pass:s3cret pass")
    return P
