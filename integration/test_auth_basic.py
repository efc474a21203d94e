#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""auth_basic beside nginx 1.22, the same http {} served by both:
- htpasswd lines made with `openssl passwd` ($apr1$, $1$, $5$, $6$, and
  {SHA}/{SSHA}/{PLAIN} by hand) and Python's crypt module when present
  (bcrypt $2b$ and a $2y$ spelling of it): the right password passes (the
  backend answers through proxy_pass), a wrong one, an unknown user, a
  missing or foreign Authorization are 401 with the same WWW-Authenticate;
- the realm with a variable, `auth_basic off` in a nested location, a
  missing file (403), `satisfy any` and `satisfy all` with allow/deny;
- $remote_user in the answer; an edit of the file is seen (within the
  recheck second) without a reload;
- bcrypt runs on the thread pool: several slow checks at once do not hold
  a fast request of another location.
"""
import base64
import hashlib
import os
import subprocess
import sys
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nginx_ref  # noqa: E402
import shoal_harness as sh  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)
try:
    import crypt  # noqa: E402  (deprecated in 3.11, gone in 3.13)
except ImportError:  # pragma: no cover
    crypt = None

SERVERS = """
    server {
        listen 127.0.0.1:{port};
        location / {
            auth_basic "Realm of $host";
            auth_basic_user_file {dir}/htpasswd;
            proxy_pass http://127.0.0.1:{bport};
            location /open/ { auth_basic off; proxy_pass http://127.0.0.1:{bport}/; }
        }
        location /who { auth_basic "w"; auth_basic_user_file {dir}/htpasswd;
                        add_header X-User "user=$remote_user";
                        proxy_pass http://127.0.0.1:{bport}/; }
        location /nofile { auth_basic "x"; auth_basic_user_file {dir}/missing;
                           proxy_pass http://127.0.0.1:{bport}/; }
        location /any { satisfy any; allow 10.9.9.9; deny all;
                        auth_basic "any"; auth_basic_user_file {dir}/htpasswd;
                        proxy_pass http://127.0.0.1:{bport}/; }
        location /anyip { satisfy any; allow 127.0.0.1; deny all;
                          auth_basic "anyip"; auth_basic_user_file {dir}/htpasswd;
                          proxy_pass http://127.0.0.1:{bport}/; }
        location /all { satisfy all; deny 127.0.0.1;
                        auth_basic "all"; auth_basic_user_file {dir}/htpasswd;
                        proxy_pass http://127.0.0.1:{bport}/; }
        location /allok { satisfy all; allow 127.0.0.1; deny all;
                          auth_basic "allok"; auth_basic_user_file {dir}/htpasswd;
                          proxy_pass http://127.0.0.1:{bport}/; }
        location /fast { return 200 "fast\\n"; }
    }
"""


def openssl_passwd(flag, pw):
    return subprocess.run(["openssl", "passwd", flag, pw], check=True, capture_output=True,
                          text=True).stdout.strip()


def htpasswd_lines():
    """[(user, password, line)] in every format this machine can make."""
    out = [
        ("apr1", "pw-apr1", openssl_passwd("-apr1", "pw-apr1")),
        ("md5", "pw-md5", openssl_passwd("-1", "pw-md5")),
        ("sha256", "pw-sha256", openssl_passwd("-5", "pw-sha256")),
        ("sha512", "pw-sha512", openssl_passwd("-6", "pw-sha512")),
        ("sha", "pw-sha", "{SHA}" + base64.b64encode(hashlib.sha1(b"pw-sha").digest()).decode()),
        ("ssha", "pw-ssha", "{SSHA}" + base64.b64encode(
            hashlib.sha1(b"pw-ssha" + b"salt1234").digest() + b"salt1234").decode()),
        ("plain", "pw-plain", "{PLAIN}pw-plain"),
    ]
    if crypt is not None and hasattr(crypt, "METHOD_BLOWFISH"):
        b = crypt.crypt("pw-bcrypt", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))
        out.append(("bcrypt", "pw-bcrypt", b))
        out.append(("bcrypt2y", "pw-bcrypt", "$2y$" + b[4:]))
    return out


def basic(user, pw):
    return "Authorization: Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


def main(t):
    nginx_ref.skip_unless_available()
    d = os.path.join(t.tmp, "auth")
    os.makedirs(d)
    lines = htpasswd_lines()
    if len(lines) < 9:
        t.log("python's crypt module is missing: no bcrypt lines")
    with open(os.path.join(d, "htpasswd"), "w") as f:
        f.write("# a comment line\n")
        for user, _, h in lines:
            f.write("%s:%s\n" % (user, h))
        f.write("withcomment:{PLAIN}pw:a trailing comment\n")
    be = t.backend("b1")
    port, nport = t.port(), t.port()

    def conf(p):
        return SERVERS.replace("{port}", str(p)).replace("{dir}", d).replace(
            "{bport}", str(be.port))
    t.shoal("http {\n%s\n}\n" % conf(port), port=port)
    nginx_ref.start(t, conf(nport), port=nport)

    def both(what, path, *args, expect=None):
        a = t.curl("http://127.0.0.1:%d%s" % (port, path), *args)
        b = t.curl("http://127.0.0.1:%d%s" % (nport, path), *args)
        ok = a.status == b.status and a.header("WWW-Authenticate") == b.header("WWW-Authenticate")
        ok = ok and (a.status != 200 or a.text() == b.text())
        if expect is not None:
            ok = ok and a.status == expect
        t.check(ok, "%s: %s %r %r (nginx: %s %r %r)" % (
            what, a.status, a.header("WWW-Authenticate"), a.text()[:40], b.status,
            b.header("WWW-Authenticate"), b.text()[:40]))
        return a

    for user, pw, h in lines:
        a = both("%s (%s): right password" % (user, h[:8]), "/", "-H", basic(user, pw),
                 expect=200)
        t.check(a.header("X-Backend") == "b1", "%s: proxied to the backend" % user)
        both("%s: wrong password" % user, "/", "-H", basic(user, pw + "x"), expect=401)
    both("a line with a trailing comment", "/", "-H", basic("withcomment", "pw"), expect=200)
    both("unknown user", "/", "-H", basic("nobody", "pw"), expect=401)
    both("no Authorization", "/", expect=401)
    both("Bearer instead of Basic", "/", "-H", "Authorization: Bearer abc", expect=401)
    both("not base64", "/", "-H", "Authorization: Basic !!!!", expect=401)
    both("no colon", "/", "-H", "Authorization: Basic " + base64.b64encode(b"plain").decode(),
         expect=401)
    both("a comment line is no user", "/", "-H", basic("# a comment line", "x"), expect=401)
    both("auth_basic off in a nested location", "/open/", expect=200)
    a = both("$remote_user", "/who", "-H", basic("plain", "pw-plain"), expect=200)
    t.check(a.header("X-User") == "user=plain", "$remote_user is the user: %r" % a.header("X-User"))
    both("a missing file: 403", "/nofile", "-H", basic("plain", "pw-plain"), expect=403)
    both("satisfy any: address denied, no password: 401", "/any", expect=401)
    both("satisfy any: address denied, password right: 200", "/any", "-H",
         basic("plain", "pw-plain"), expect=200)
    both("satisfy any: address denied, password wrong: 401", "/any", "-H",
         basic("plain", "nope"), expect=401)
    both("satisfy any: address allowed, no password: 200", "/anyip", expect=200)
    both("satisfy all: address denied, password right: 403", "/all", "-H",
         basic("plain", "pw-plain"), expect=403)
    both("satisfy all: address denied, no password: 403 (allow/deny first)", "/all",
         expect=403)
    both("satisfy all: address allowed, no password: 401", "/allok", expect=401)
    both("satisfy all: address allowed, password right: 200", "/allok", "-H",
         basic("plain", "pw-plain"), expect=200)

    # ---- the file is read again when it changes (no reload)
    with open(os.path.join(d, "htpasswd"), "a") as f:
        f.write("late:{PLAIN}late-pw\n")
    ok = sh.wait_for(lambda: t.curl("http://127.0.0.1:%d/who" % port, "-H",
                                    basic("late", "late-pw")).status == 200, 10 * t.slow,
                     "the added user", interval=0.2) is not False
    t.check(ok, "a user added to the file is accepted without a reload")

    # ---- bcrypt on the thread pool: a fast request goes by meanwhile
    if any(u == "bcrypt" for u, _, _ in lines):
        done = []

        def slow(i):
            # distinct wrong passwords: never in the verified cache
            r = t.curl("http://127.0.0.1:%d/who" % port, "-H", basic("bcrypt", "x%d" % i))
            done.append(r.status)
        ths = [threading.Thread(target=slow, args=(i,)) for i in range(8)]
        for th in ths:
            th.start()
        t0 = time.monotonic()
        f = t.curl("http://127.0.0.1:%d/fast" % port)
        fast = time.monotonic() - t0
        for th in ths:
            th.join()
        t.check(f.status == 200 and done == [401] * 8,
                "8 bcrypt checks (401) and a fast request (%.3f s) at once: %r" % (fast, done))
        r1 = t.curl("http://127.0.0.1:%d/who" % port, "-H", basic("bcrypt", "pw-bcrypt"))
        r2 = t.curl("http://127.0.0.1:%d/who" % port, "-H", basic("bcrypt", "pw-bcrypt"))
        t.check(r1.status == 200 and r2.status == 200, "bcrypt, right password, twice (cached)")
    else:
        t.log("no bcrypt: python's crypt module missing")


if __name__ == "__main__":
    sh.run(main)
