#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""auth_request answers cached by key, the way nginx users do it: proxy_cache
in the auth subrequest's location (proxy_cache_key on the credentials,
proxy_cache_valid for the 2xx and 401/403 answers), beside nginx 1.22 with
the same http {} and a real auth service (auth_backend.py) counting the
requests it gets:
- ten requests with one token reach the auth service once (the next nine
  are judged from the cache), both servers, all 200 / all 401 alike;
- another token is another key (asked once more);
- a 401 is cached too (proxy_cache_valid 401), a 403 likewise;
- auth_request_set still sees the cached answer's fields
  ($upstream_http_x_user) and $upstream_cache_status says HIT;
- after proxy_cache_valid (1s, another auth location) it is asked again.
This is the documented way (no Shoal directive of its own): README."""
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nginx_ref  # noqa: E402
import shoal_harness as sh  # noqa: E402

AUTH_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "auth_backend.py")

HTTP = """
    proxy_cache_path {cache} keys_zone=auth:1m;
    server {
        listen 127.0.0.1:{port};
        location = /auth {
            internal;
            proxy_pass http://127.0.0.1:{aport}/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_cache auth;
            proxy_cache_key "$http_authorization";
            proxy_cache_valid 200 204 401 403 60s;
        }
        location = /auth-short {
            internal;
            proxy_pass http://127.0.0.1:{aport}/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_cache auth;
            proxy_cache_key "short $http_authorization";
            proxy_cache_valid 200 1s;
        }
        location /short/ {
            auth_request /auth-short;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location / {
            auth_request /auth;
            auth_request_set $user $upstream_http_x_user;
            auth_request_set $acache $upstream_cache_status;
            add_header X-Auth-User "u=$user c=$acache";
            proxy_pass http://127.0.0.1:{bport};
        }
    }
"""


def main(t):
    nginx_ref.skip_unless_module("http_auth_request_module")
    be = t.backend("b1")
    aport, naport = t.port(), t.port()
    for p, name in ((aport, "auth"), (naport, "nauth")):
        ap = t._spawn(name, [sys.executable, AUTH_PY, "--port", str(p)], t._subdir(name))
        sh.wait_for(lambda: "ready" in ap.stdout() and sh.port_accepts(p), 15, name)
    port, nport = t.port(), t.port()

    def conf(p, ap, cache):
        return (HTTP.replace("{port}", str(p)).replace("{aport}", str(ap))
                .replace("{bport}", str(be.port)).replace("{cache}", cache))
    node = t.shoal("http {\n%s\n}\n" % conf(port, aport, t._subdir("cache-s")), port=port)
    nginx_ref.start(t, conf(nport, naport, t._subdir("cache-n")), port=nport)

    def count(p):
        with urllib.request.urlopen("http://127.0.0.1:%d/count" % p, timeout=10) as r:
            return int(r.read().decode().strip().split()[-1])

    def run(token, n=10):
        """n requests with token on each server: (statuses, auth requests, last)."""
        out = []
        for p, ap in ((port, aport), (nport, naport)):
            before = count(ap)
            st, last = [], None
            for _ in range(n):
                last = t.curl("http://127.0.0.1:%d/echo" % p, "-H", "Authorization: Bearer " + token)
                st.append(last.status)
            out.append((st, count(ap) - before, last))
        return out

    (s, ns, sl), (g, ng, gl) = run("good")
    t.check(s == g == [200] * 10 and ns == ng == 1,
            "one token, ten requests: the auth service asked %d time(s) (nginx %d)" % (ns, ng))
    t.check(sl.header("X-Auth-User") == gl.header("X-Auth-User") == "u=alice c=HIT",
            "auth_request_set from the cached answer: %r (nginx %r)" % (
                sl.header("X-Auth-User"), gl.header("X-Auth-User")))
    (s, ns, _), (g, ng, _) = run("admin", 5)
    t.check(s == g == [200] * 5 and ns == ng == 1, "another token, another key: %d (%d)" % (ns, ng))
    (s, ns, _), (g, ng, _) = run("nope", 5)
    t.check(s == g == [401] * 5 and ns == ng == 1, "a 401 is cached: %d (%d)" % (ns, ng))
    (s, ns, _), (g, ng, _) = run("forbidden", 5)
    t.check(s == g == [403] * 5 and ns == ng == 1, "a 403 is cached: %d (%d)" % (ns, ng))
    t.curl(node.url("/short/echo"), "-H", "Authorization: Bearer good")
    before = count(aport)
    sh.wait_for(lambda: (t.curl(node.url("/short/echo"), "-H", "Authorization: Bearer good")
                         .status == 200 and count(aport) > before), 15 * t.slow,
                "the auth service asked again once proxy_cache_valid ended")
    t.check(True, "after proxy_cache_valid (1s) the service is asked again")
    t.check(node.proc.alive(), "shoal is up")


if __name__ == "__main__":
    sh.run(main)
