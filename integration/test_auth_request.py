#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""auth_request beside nginx 1.22 (built with its auth request module), the
same http {} served by both, against a real Python auth service
(auth_backend.py) reached by proxy_pass from an internal location:
- 2xx (200, 204) passes to the protected backend, auth_request_set copies
  $upstream_http_x_user and $upstream_status of the auth response into
  variables the protected request sends upstream and adds to its answer;
- 401 is the client's answer with the auth service's WWW-Authenticate,
  403 likewise; 500 and 302 from the auth service are 500;
- the auth subrequest carries the method and fields but no body (a POST
  with a body is judged, its body still goes to the protected backend);
- an unreachable auth service is 500; `auth_request off` in a nested
  location; satisfy any with allow; an `internal` auth location is reached
  by the subrequest but is 404 to clients;
- a client that leaves while its auth subrequest waits (slow) leaves shoal
  serving, and 20 concurrent requests, half refused, all get their answer;
- the same over HTTP/2 (h2c prior knowledge), beside nginx, and 200
  multiplexed streams (h2load) all answered.
"""
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nginx_ref  # noqa: E402
import shoal_harness as sh  # noqa: E402

AUTH_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "auth_backend.py")

SERVERS = """
    server {
        listen 127.0.0.1:{port};
        location = /auth {
            internal;
            proxy_pass http://127.0.0.1:{aport}/check;
        }
        location = /auth-dead {
            internal;
            proxy_pass http://127.0.0.1:{dead}/check;
        }
        location / {
            auth_request /auth;
            auth_request_set $user $upstream_http_x_user;
            auth_request_set $auth_status $upstream_status;
            proxy_set_header X-User $user;
            add_header X-Auth-User "u=$user s=$auth_status";
            proxy_pass http://127.0.0.1:{bport};
            location /open/ { auth_request off; proxy_pass http://127.0.0.1:{bport}/; }
        }
        location /dead/ {
            auth_request /auth-dead;
            proxy_pass http://127.0.0.1:{bport}/;
        }
        location /any/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            auth_request /auth;
            proxy_pass http://127.0.0.1:{bport}/;
        }
    }
    server {
        listen 127.0.0.1:{h2port} http2;
        location = /auth { internal; proxy_pass http://127.0.0.1:{aport}/check; }
        location / {
            auth_request /auth;
            auth_request_set $user $upstream_http_x_user;
            add_header X-Auth-User "u=$user";
            proxy_pass http://127.0.0.1:{bport};
        }
    }
"""


def main(t):
    nginx_ref.skip_unless_module("http_auth_request_module")
    aport = t.port()
    d = t._subdir("auth")
    ap = t._spawn("auth", [sys.executable, AUTH_PY, "--port", str(aport)], d)
    sh.wait_for(lambda: "ready" in ap.stdout() and sh.port_accepts(aport), 15, "auth service")
    be = t.backend("b1")
    dead = t.port()
    port, nport, h2, nh2 = t.port(), t.port(), t.port(), t.port()

    def conf(p, h):
        return (SERVERS.replace("{port}", str(p)).replace("{aport}", str(aport))
                .replace("{bport}", str(be.port)).replace("{dead}", str(dead))
                .replace("{h2port}", str(h)))
    node = t.shoal("http {\n%s\n}\n" % conf(port, h2), port=port)
    nginx_ref.start(t, conf(nport, nh2), port=nport)

    def echo_field(res, name):
        if res.status != 200 or not res.body.startswith(b"{"):
            return None
        for n, val in res.json()["headers"]:
            if n.lower() == name.lower():
                return val
        return None

    def both(what, path, *args, expect=None):
        a = t.curl("http://127.0.0.1:%d%s" % (port, path), *args)
        b = t.curl("http://127.0.0.1:%d%s" % (nport, path), *args)
        same = (a.status == b.status and
                a.header("WWW-Authenticate") == b.header("WWW-Authenticate") and
                a.header("X-Auth-User") == b.header("X-Auth-User") and
                echo_field(a, "X-User") == echo_field(b, "X-User"))
        if expect is not None:
            same = same and a.status == expect
        t.check(same, "%s: %s %r %r user=%r (nginx: %s %r %r user=%r)" % (
            what, a.status, a.header("WWW-Authenticate"), a.header("X-Auth-User"),
            echo_field(a, "X-User"), b.status, b.header("WWW-Authenticate"),
            b.header("X-Auth-User"), echo_field(b, "X-User")))
        return a

    a = both("200 from the auth service passes", "/echo", "-H", "Authorization: Bearer good",
             expect=200)
    t.check(echo_field(a, "X-User") == "alice" and a.header("X-Auth-User") == "u=alice s=200",
            "auth_request_set: $upstream_http_x_user and $upstream_status of the auth response")
    both("204 passes", "/echo", "-H", "Authorization: Bearer admin", expect=200)
    both("401 with the service's WWW-Authenticate", "/echo", expect=401)
    both("401 for an unknown token", "/echo", "-H", "Authorization: Bearer nope", expect=401)
    both("403 passes through", "/echo", "-H", "Authorization: Bearer forbidden", expect=403)
    both("500 from the auth service: 500", "/echo", "-H", "Authorization: Bearer boom",
         expect=500)
    both("302 from the auth service: 500", "/echo", "-H", "Authorization: Bearer redirect",
         expect=500)
    # shoal alone: nginx passes the client's Content-Length to the auth
    # service without the body (its documentation asks for
    # proxy_pass_request_body off and an empty Content-Length by hand)
    a = t.curl("http://127.0.0.1:%d/echo" % port, "-X", "POST", "-H",
               "Authorization: Bearer good", "--data-binary", "x" * 5000)
    t.check(a.status == 200 and a.json()["body_len"] == 5000 and a.json()["method"] == "POST",
            "POST with a body: judged without it (no Content-Length to the auth service), the "
            "protected backend got the 5000-byte body: %s" % a.status)
    both("HEAD", "/echo", "-I", "-H", "Authorization: Bearer good", expect=200)
    both("auth_request off in a nested location", "/open/", expect=200)
    both("an unreachable auth service: 500", "/dead/", "-H", "Authorization: Bearer good",
         expect=500)
    both("satisfy any: the address allows without asking", "/any/", expect=200)
    both("the internal auth location is 404 to a client", "/auth", expect=404)

    a = t.curl("http://127.0.0.1:%d/echo" % port, "-X", "POST", "-H",
               "Authorization: Bearer nope", "--data-binary", "y" * 100)
    t.check(a.status == 401, "a refused POST with a body is 401 (%s)" % a.status)

    # ---- a client that leaves while its subrequest waits
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer slow\r\n\r\n")
    s.close()
    r = t.curl("http://127.0.0.1:%d/echo" % port, "-H", "Authorization: Bearer slow")
    t.check(r.status == 200 and echo_field(r, "X-User") == "slowpoke",
            "a slow auth answer, after another client left mid-subrequest: %s" % r.status)

    # ---- concurrency
    out = {}

    def one(i):
        tok = "good" if i % 2 == 0 else "forbidden"
        out[i] = t.curl("http://127.0.0.1:%d/echo" % port, "-H", "Authorization: Bearer " + tok,
                        timeout=60).status
    ths = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    t.check(all(out[i] == (200 if i % 2 == 0 else 403) for i in range(20)),
            "20 concurrent requests, half refused: %r" % [out[i] for i in range(20)])

    # ---- HTTP/2
    for tok, want in (("good", 200), ("nope", 401), ("forbidden", 403), ("boom", 500)):
        a = t.curl("http://127.0.0.1:%d/echo" % h2, "--http2-prior-knowledge", "-H",
                   "Authorization: Bearer " + tok)
        b = t.curl("http://127.0.0.1:%d/echo" % nh2, "--http2-prior-knowledge", "-H",
                   "Authorization: Bearer " + tok)
        t.check(a.status == b.status == want and
                a.header("WWW-Authenticate") == b.header("WWW-Authenticate") and
                a.header("X-Auth-User") == b.header("X-Auth-User"),
                "HTTP/2, %s: %s %r %r (nginx: %s %r %r)" % (
                    tok, a.status, a.header("WWW-Authenticate"), a.header("X-Auth-User"),
                    b.status, b.header("WWW-Authenticate"), b.header("X-Auth-User")))
    import shutil
    if shutil.which("h2load"):
        r = subprocess.run(["h2load", "-n", "200", "-c", "4", "-m", "10", "-H",
                            "Authorization: Bearer good", "http://127.0.0.1:%d/" % h2],
                           capture_output=True, text=True, timeout=120 * t.slow)
        t.check("status codes: 200 2xx" in r.stdout,
                "h2load: 200 multiplexed streams, each with its auth subrequest, all 200: %s" %
                [l for l in r.stdout.splitlines() if "status codes" in l])
    t.check(node.proc.alive(), "shoal is up")


if __name__ == "__main__":
    sh.run(main)
