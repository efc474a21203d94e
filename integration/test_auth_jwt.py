#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""auth_jwt (NGINX Plus semantics; nginx OSS has none, so shoal alone):
tokens made here with Python's standard library (HMAC) and the openssl CLI
(RSA PKCS#1 and PSS, ECDSA P-256/384/521, Ed25519 signing header.payload):
- every algorithm passes with its key, from a JWK set (kid chooses) and
  from PEM files; $jwt_claim_NAME, $jwt_header_NAME and
  auth_jwt_claim_set / auth_jwt_header_set reach the backend;
- expired, not yet valid, issued in the future, wrong kid, wrong signature,
  alg none, algorithm confusion (the RSA public key as an HS256 secret),
  a JWE (five parts), oversized and truncated tokens, garbage: 401 with
  `WWW-Authenticate: Bearer realm="...",error="invalid_token"` and the
  reason in the error log; no token: 401 without error=;
- auth_jwt_leeway, token=$cookie_NAME, auth_jwt_require (error=403),
  auth_jwt off, satisfy any with allow;
- auth_jwt_key_request: the JWK set fetched by a subrequest from an HTTP
  server (python -m http.server), for every request without
  auth_jwt_key_cache (a key removed from the served set is refused at
  once), once with it; a failing fetch is 500;
- `shoal -t` refuses auth_jwt_type encrypted with file:line.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shoal_harness as sh  # noqa: E402


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def ossl(*args, data=None):
    return subprocess.run(["openssl"] + list(args), input=data, check=True,
                          capture_output=True).stdout


def der_to_raw(der, n):
    """ECDSA-Sig-Value (SEQUENCE of two INTEGERs) to r || s, n bytes each."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7f)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        ln = der[i + 1]
        v = der[i + 2:i + 2 + ln].lstrip(b"\x00")
        out += v.rjust(n, b"\x00")
        i += 2 + ln
    return out


class Keys:
    def __init__(self, d):
        self.d = d
        self.hs = os.urandom(64)
        p = lambda n: os.path.join(d, n)  # noqa: E731
        ossl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p("rsa.pem"))
        ossl("pkey", "-in", p("rsa.pem"), "-pubout", "-out", p("rsa.pub"))
        ossl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p("rsa2.pem"))
        for crv, name in (("P-256", "ec256"), ("P-384", "ec384"), ("P-521", "ec521")):
            ossl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:" + crv, "-out",
                 p(name + ".pem"))
            ossl("pkey", "-in", p(name + ".pem"), "-pubout", "-out", p(name + ".pub"))
        ossl("genpkey", "-algorithm", "ed25519", "-out", p("ed.pem"))
        ossl("pkey", "-in", p("ed.pem"), "-pubout", "-out", p("ed.pub"))

    def path(self, n):
        return os.path.join(self.d, n)

    def rsa_jwk(self, kid):
        mod = ossl("rsa", "-pubin", "-in", self.path("rsa.pub"), "-noout", "-modulus").decode()
        n = bytes.fromhex(mod.strip().split("=")[1])
        return {"kty": "RSA", "kid": kid, "use": "sig", "n": b64u(n), "e": b64u(b"\x01\x00\x01")}

    def ec_jwk(self, name, crv, kid):
        der = ossl("pkey", "-pubin", "-in", self.path(name + ".pub"), "-outform", "DER")
        L = {"P-256": 32, "P-384": 48, "P-521": 66}[crv]
        pt = der[-(2 * L + 1):]
        assert pt[0] == 4
        return {"kty": "EC", "kid": kid, "crv": crv, "x": b64u(pt[1:1 + L]),
                "y": b64u(pt[1 + L:])}

    def ed_jwk(self, kid):
        der = ossl("pkey", "-pubin", "-in", self.path("ed.pub"), "-outform", "DER")
        return {"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64u(der[-32:])}

    def jwks(self):
        return {"keys": [
            {"kty": "oct", "kid": "hs", "k": b64u(self.hs)},
            self.rsa_jwk("rsa"),
            self.ec_jwk("ec256", "P-256", "ec256"),
            self.ec_jwk("ec384", "P-384", "ec384"),
            self.ec_jwk("ec521", "P-521", "ec521"),
            self.ed_jwk("ed"),
            {"kty": "foreign", "kid": "skipped"},
        ]}

    def sign(self, alg, signing_input, key=None):
        md = {"256": "-sha256", "384": "-sha384", "512": "-sha512"}.get(alg[2:])
        if alg.startswith("HS"):
            h = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
            return hmac.new(key if key is not None else self.hs, signing_input, h).digest()
        if alg.startswith("RS"):
            return ossl("dgst", md, "-sign", self.path(key or "rsa.pem"), data=signing_input)
        if alg.startswith("PS"):
            return ossl("dgst", md, "-sign", self.path(key or "rsa.pem"), "-sigopt",
                        "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest",
                        data=signing_input)
        if alg.startswith("ES"):
            name, L = {"ES256": ("ec256", 32), "ES384": ("ec384", 48), "ES512": ("ec521", 66)}[alg]
            der = ossl("dgst", md, "-sign", self.path(name + ".pem"), data=signing_input)
            return der_to_raw(der, L)
        if alg == "EdDSA":
            f = self.path("input.bin")
            with open(f, "wb") as fh:
                fh.write(signing_input)
            return ossl("pkeyutl", "-sign", "-inkey", self.path("ed.pem"), "-rawin", "-in", f)
        raise ValueError(alg)

    def token(self, alg, claims, kid=None, header=None, key=None, sign_alg=None):
        h = {"alg": alg, "typ": "JWT"}
        if kid is not None:
            h["kid"] = kid
        h.update(header or {})
        si = (b64u(json.dumps(h).encode()) + "." + b64u(json.dumps(claims).encode())).encode()
        if alg == "none":
            return si.decode() + "."
        return si.decode() + "." + b64u(self.sign(sign_alg or alg, si, key))


KID = {"HS": "hs", "RS": "rsa", "PS": "rsa", "ES256": "ec256", "ES384": "ec384",
       "ES512": "ec521", "EdDSA": "ed"}
ALGS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA"]


def kid_of(alg):
    return KID.get(alg, KID.get(alg[:2]))


CONF = """
http {
    large_client_header_buffers 4 64k;
    auth_jwt_claim_set $jwt_team org team;
    auth_jwt_header_set $jwt_typ typ;
    server {
        listen 127.0.0.1:{port};
        location /jwks/ {
            auth_jwt "api";
            auth_jwt_key_file {dir}/jwks.json;
            proxy_set_header X-Sub $jwt_claim_sub;
            proxy_set_header X-Kid $jwt_header_kid;
            proxy_set_header X-Team $jwt_team;
            proxy_set_header X-Typ $jwt_typ;
            proxy_set_header X-Roles $jwt_claim_roles;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /pem/ {
            auth_jwt "pem";
            auth_jwt_key_file {dir}/rsa.pub;
            auth_jwt_key_file {dir}/ec256.pub;
            auth_jwt_key_file {dir}/ed.pub;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /cookie/ {
            auth_jwt "c" token=$cookie_auth;
            auth_jwt_key_file {dir}/jwks.json;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /admin/ {
            auth_jwt "adm";
            auth_jwt_key_file {dir}/jwks.json;
            auth_jwt_require $jwt_claim_admin error=403;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /leeway/ {
            auth_jwt "l";
            auth_jwt_leeway 120s;
            auth_jwt_key_file {dir}/jwks.json;
            proxy_pass http://127.0.0.1:{bport}/;
            location /leeway/open/ { auth_jwt off; proxy_pass http://127.0.0.1:{bport}/; }
        }
        location = /keys { internal; proxy_pass http://127.0.0.1:{kport}/jwks.json; }
        location = /nokeys { internal; proxy_pass http://127.0.0.1:{kport}/missing.json; }
        location /fetched/ {
            auth_jwt "f";
            auth_jwt_key_request /keys;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /fetched-cached/ {
            auth_jwt "fc";
            auth_jwt_key_request /keys;
            auth_jwt_key_cache 1h;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /fetch-fails/ {
            auth_jwt "ff";
            auth_jwt_key_request /nokeys;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /any/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            auth_jwt "any";
            auth_jwt_key_file {dir}/jwks.json;
            proxy_pass http://127.0.0.1:{bport}/;
        }
    }
}
"""


def main(t):
    d = os.path.join(t.tmp, "keys")
    os.makedirs(d)
    k = Keys(d)
    with open(os.path.join(d, "jwks.json"), "w") as f:
        json.dump(k.jwks(), f)
    be = t.backend("b1")
    port, kport = t.port(), t.port()
    kd = os.path.join(t.tmp, "served")
    os.makedirs(kd)
    with open(os.path.join(kd, "jwks.json"), "w") as f:
        json.dump(k.jwks(), f)
    ks = t._spawn("keys", [sys.executable, "-m", "http.server", str(kport), "--bind", "127.0.0.1",
                           "--directory", kd], kd)
    sh.wait_for(lambda: sh.port_accepts(kport), 15, "the key server")
    node = t.shoal(CONF.replace("{port}", str(port)).replace("{dir}", d).replace(
        "{bport}", str(be.port)).replace("{kport}", str(kport)), port=port)
    now = int(time.time())
    good = {"sub": "alice", "exp": now + 600, "iat": now - 10, "nbf": now - 10,
            "org": {"team": "edge"}, "roles": ["r1", "r2"]}

    def get(path, token=None, *args):
        extra = list(args)
        if token is not None:
            extra += ["-H", "Authorization: Bearer " + token]
        return t.curl("http://127.0.0.1:%d%s" % (port, path), *extra)

    def echo_header(res, name):
        if res.status != 200:
            return None
        for n, v in res.json()["headers"]:
            if n.lower() == name.lower():
                return v
        return None

    # ---- every algorithm, from the JWK set (kid) and without kid
    for alg in ALGS:
        tok = k.token(alg, good, kid=kid_of(alg))
        r = get("/jwks/echo", tok)
        t.check(r.status == 200 and echo_header(r, "X-Sub") == "alice" and
                echo_header(r, "X-Kid") == kid_of(alg),
                "%s with kid %s: %s sub=%r kid=%r" % (alg, kid_of(alg), r.status,
                                                     echo_header(r, "X-Sub"),
                                                     echo_header(r, "X-Kid")))
        r = get("/jwks/", k.token(alg, good))
        t.check(r.status == 200, "%s without kid (every key of its type tried): %s" % (alg, r.status))
    r = get("/jwks/echo", k.token("ES256", good, kid="ec256"))
    t.check(echo_header(r, "X-Team") == "edge" and echo_header(r, "X-Typ") == "JWT" and
            echo_header(r, "X-Roles") == "r1,r2",
            "auth_jwt_claim_set (nested), auth_jwt_header_set, an array claim: %r %r %r" % (
                echo_header(r, "X-Team"), echo_header(r, "X-Typ"), echo_header(r, "X-Roles")))

    # ---- PEM key files
    for alg in ("RS256", "PS384", "ES256", "EdDSA"):
        r = get("/pem/", k.token(alg, good))
        t.check(r.status == 200, "%s with a PEM key file: %s" % (alg, r.status))
    r = get("/pem/", k.token("ES384", good))
    t.check(r.status == 401, "ES384 with only a P-256 PEM key: 401 (%s)" % r.status)

    # ---- refusals
    bad = []
    hs = k.token("HS256", good, kid="hs")
    h, p, s = hs.split(".")
    rsa_pub = open(k.path("rsa.pub"), "rb").read()
    cases = [
        ("expired", k.token("ES256", dict(good, exp=now - 60), kid="ec256"), "token expired"),
        ("not yet valid", k.token("RS256", dict(good, nbf=now + 600), kid="rsa"),
         "not yet valid"),
        ("issued in the future", k.token("HS256", dict(good, iat=now + 600), kid="hs"),
         "issued in the future"),
        ("exp not a number", k.token("HS256", dict(good, exp="soon"), kid="hs"),
         "invalid exp"),
        ("wrong kid", k.token("ES256", good, kid="nope"), "no key with the token's kid"),
        ("kid of another key type", k.token("ES256", good, kid="rsa"),
         "no key with the token's kid"),
        ("wrong signature (another RSA key)", k.token("RS256", good, kid="rsa", key="rsa2.pem"),
         "signature verification failed"),
        ("payload changed after signing",
         h + "." + b64u(json.dumps(dict(good, sub="mallory")).encode()) + "." + s,
         "signature verification failed"),
        ("alg none", k.token("none", good), "alg none"),
        ("alg None, kid hs", k.token("none", good, kid="hs", header={"alg": "None"}), "alg none"),
        ("confusion: the RSA public key as an HS256 secret",
         k.token("HS256", good, kid="rsa", key=rsa_pub), "no key with the token's kid"),
        ("confusion without kid", k.token("HS256", good, key=rsa_pub),
         "signature verification failed"),
        ("unknown alg", k.token("HS256", good, header={"alg": "XX999"}), "unsupported algorithm"),
        ("crit header", k.token("HS256", good, kid="hs", header={"crit": ["exp"]}),
         "critical"),
        ("JWE (five parts)", "a.b.c.d.e", "JWE"),
        ("truncated signature", hs[:-5], None),
        ("truncated to two parts", h + "." + p, "not three parts"),
        ("empty signature", h + "." + p + ".", "signature"),
        ("oversized", h + "." + "A" * 20000 + "." + s, "too long"),
        ("garbage", "%%%.***.&&&", "malformed"),
        ("header not JSON", b64u(b"nope") + "." + p + "." + s, "invalid header"),
        ("header a JSON array", b64u(b"[1]") + "." + p + "." + s, "invalid header"),
    ]
    for what, tok, reason in cases:
        r = get("/jwks/", tok)
        www = r.header("WWW-Authenticate")
        ok = r.status == 401 and www == 'Bearer realm="api",error="invalid_token"'
        t.check(ok, "%s: %s %r" % (what, r.status, www))
        if reason is not None:
            bad.append((what, reason))
    for what, reason in bad:
        t.check(sh.wait_for(lambda: re.search("JWT validation failed: [^\n]*" + re.escape(reason),
                                              node.proc.stderr()) is not None, 10,
                            "log line") is not False,
                "the error log says why (%s: %r)" % (what, reason))
    r = get("/jwks/")
    t.check(r.status == 401 and r.header("WWW-Authenticate") == 'Bearer realm="api"',
            "no token: 401, Bearer realm without error: %r" % r.header("WWW-Authenticate"))
    r = get("/jwks/", None, "-H", "Authorization: Basic Zm9vOmJhcg==")
    t.check(r.status == 401, "Basic instead of Bearer: 401")

    # ---- leeway, token=$cookie, require, off, satisfy any
    tok = k.token("HS256", dict(good, exp=now - 30), kid="hs")
    t.check(get("/leeway/", tok).status == 200, "expired 30 s ago within a 120 s leeway: 200")
    t.check(get("/jwks/", tok).status == 401, "the same token without leeway: 401")
    tok = k.token("HS256", dict(good, exp=now - 600), kid="hs")
    t.check(get("/leeway/", tok).status == 401, "expired 600 s ago, 120 s leeway: 401")
    t.check(get("/leeway/open/").status == 200, "auth_jwt off in a nested location: 200")
    r = get("/cookie/", None, "-H", "Cookie: a=b; auth=" + k.token("EdDSA", good, kid="ed"))
    t.check(r.status == 200, "token=$cookie_auth: %s" % r.status)
    r = get("/cookie/", k.token("EdDSA", good, kid="ed"))
    t.check(r.status == 401, "token=$cookie_auth ignores Authorization: %s" % r.status)
    r = get("/admin/", k.token("HS256", dict(good, admin=True), kid="hs"))
    t.check(r.status == 200, "auth_jwt_require $jwt_claim_admin met: %s" % r.status)
    r = get("/admin/", k.token("HS256", good, kid="hs"))
    t.check(r.status == 403, "auth_jwt_require not met, error=403: %s" % r.status)
    r = get("/admin/", k.token("HS256", dict(good, admin=0), kid="hs"))
    t.check(r.status == 403, "auth_jwt_require: \"0\" is not met: %s" % r.status)
    t.check(get("/any/").status == 200, "satisfy any: the address is allowed, no token: 200")
    t.check(node.proc.alive(), "shoal is still up after every malformed token")

    # ---- keys fetched by a subrequest
    def fetches():
        return ks.stderr().count("GET /jwks.json")
    tok = k.token("ES256", good, kid="ec256")
    n0 = fetches()
    for i in range(3):
        r = get("/fetched/", tok)
        t.check(r.status == 200, "auth_jwt_key_request, request %d: %s" % (i, r.status))
    sh.wait_for(lambda: fetches() - n0 >= 3, 10, "the key server's log")
    t.check(fetches() - n0 == 3, "without auth_jwt_key_cache: fetched for every request (%d)" % (
        fetches() - n0))
    n0 = fetches()
    for i in range(3):
        r = get("/fetched-cached/", tok)
        t.check(r.status == 200, "auth_jwt_key_cache 1h, request %d: %s" % (i, r.status))
    sh.wait_for(lambda: fetches() - n0 >= 1, 10, "the key server's log")
    t.check(fetches() - n0 == 1, "with auth_jwt_key_cache: fetched once (%d)" % (fetches() - n0))
    r = get("/fetched/", k.token("ES256", good, kid="nope"))
    t.check(r.status == 401, "fetched keys, wrong kid: 401 (%s)" % r.status)
    rotated = k.jwks()
    rotated["keys"] = [x for x in rotated["keys"] if x.get("kid") != "ec256"]
    with open(os.path.join(kd, "jwks.json"), "w") as f:
        json.dump(rotated, f)
    r = get("/fetched/", tok)
    t.check(r.status == 401, "a key removed from the served set is refused at once: %s" % r.status)
    r = get("/fetched-cached/", tok)
    t.check(r.status == 200, "... and still accepted where the keys are cached: %s" % r.status)
    r = get("/fetch-fails/", tok)
    t.check(r.status == 500, "the key request fails (404): 500 (%s)" % r.status)
    t.check(sh.wait_for(lambda: "the key request \"/nokeys\" answered 404" in node.proc.stderr(),
                        10, "log") is not False, "the failed key request is in the error log")
    r = get("/fetched/")
    t.check(r.status == 401 and fetches() >= 0, "no token: 401 without fetching")

    # ---- configuration refusals
    for bad_conf, what in (("auth_jwt_type encrypted;", "auth_jwt_type encrypted"),):
        path = t.write_conf("http { server { listen 127.0.0.1:{port}; location / {\n"
                            "auth_jwt x; %s } } }\n" % bad_conf, port=t.port(),
                            name="bad-%d.conf" % len(what))
        res = t.run_shoal(["-t", "-c", path])
        t.check(res.returncode != 0 and re.search(r"\.conf:2: .*not implemented", res.stderr),
                "%s is refused with file:line: %r" % (what, res.stderr.strip()[-160:]))


if __name__ == "__main__":
    sh.run(main)
