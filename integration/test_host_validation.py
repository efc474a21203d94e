#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 15, defects 6 and 7: the request's host, beside nginx 1.22.

Defect 7: the Host field is validated by nginx's rules (ngx_http_validate_host):
`Host: a b`, `a<TAB>b`, `a/b`, `..`, `a..b`, `.`, `:80`, an empty Host, NUL and
control bytes are 400; `A.` is `a`, the port is dropped, `.a`, `a\\b`, `a_b`
pass, as nginx lets them.

Defect 6: an absolute-form target's authority wins over Host (RFC 9112
3.2.2): `GET http://evil.example/p` with `Host: a` is routed to the server
evil.example, $host is evil.example, and a backend behind
`proxy_set_header Host $host` receives `Host: evil.example`; $http_host stays
`a`. Its grammar is nginx's: no userinfo, no '_', no fragment. HTTP/2: a host
field differing from :authority is 400 (nginx: 400), :authority alone
routes.

Every HTTP/1.1 case is sent to shoal and to nginx (where installed) with the
same configuration, and the statuses (and for 200s, the server and $host)
must be equal.
"""

import os
import shutil
import socket
import subprocess

import adversarial as adv
import shoal_harness as sh

# (request-line target, Host header value or None, version)
CASES = [
    ("/", b"a b", "1.1"), ("/", b"a\tb", "1.1"), ("/", b"a/b", "1.1"), ("/", b"..", "1.1"),
    ("/", b":80", "1.1"), ("/", b"", "1.1"), ("/", b"a..b", "1.1"), ("/", b".", "1.1"),
    ("/", b"a\x01b", "1.1"), ("/", b"a\x7fb", "1.1"), ("/", b"a b:80", "1.1"),
    ("/", b"", "1.0"), ("/", None, "1.0"), ("/", None, "1.1"),
    ("/", b"A.", "1.1"), ("/", b"a.", "1.1"), ("/", b".a", "1.1"), ("/", b"a:80", "1.1"),
    ("/", b"[::1]:80", "1.1"), ("/", b"a\\b", "1.1"), ("/", b"a_b", "1.1"),
    ("/", b"a:b:c", "1.1"), ("/", b"EVIL.EXAMPLE.:99", "1.1"), ("/", b"a\x80b", "1.1"),
    ("http://evil.example/p", b"a", "1.1"), ("http://EVIL.example:80/p", b"a", "1.1"),
    ("http://evil.example", b"a", "1.1"), ("http://evil.example?x=1", b"a", "1.1"),
    ("http://evil.example/p", b"a b", "1.1"), ("http://evil.example/p", None, "1.1"),
    ("http://evil.example/p", None, "1.0"), ("http://u@evil.example/p", b"a", "1.1"),
    ("http://evil_x.example/p", b"a", "1.1"), ("http://evil..example/p", b"a", "1.1"),
    ("http://evil.example./p", b"a", "1.1"), ("http:///p", b"a", "1.1"),
    ("https://evil.example/p", b"a", "1.1"), ("ftp://evil.example/p", b"a", "1.1"),
    ("http://[::1]:80/p", b"a", "1.1"), ("http://a:/p", b"evil.example", "1.1"),
    ("http://a:80x/p", b"a", "1.1"), ("http:foo", b"a", "1.1"), ("http://a#f", b"a", "1.1"),
    ("http://a%41/p", b"a", "1.1"), ("http://[::1/p", b"a", "1.1"),
]


def request(target, host, version):
    r = b"GET " + target.encode() + b" HTTP/" + version.encode() + b"\r\n"
    if host is not None:
        r += b"Host: " + host + b"\r\n"
    return r + b"Connection: close\r\n\r\n"


def exchange(port, raw):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(raw)
    buf = b""
    try:
        while True:
            got = s.recv(65536)
            if not got:
                break
            buf += got
    except OSError:
        pass
    s.close()
    line = buf.split(b"\r\n", 1)[0]
    status = int(line.split()[1]) if line.startswith(b"HTTP/") else None
    body = buf.split(b"\r\n\r\n", 1)[1] if status == 200 else b""
    return status, body.strip()


def conf_body(be_port):
    return f"""
        server {{ listen 127.0.0.1:{{port}} default_server; server_name a;
            location / {{ return 200 "srv=a host=$host http_host=$http_host"; }}
            location /echo {{ proxy_set_header Host $host; proxy_pass http://127.0.0.1:{be_port}; }} }}
        server {{ listen 127.0.0.1:{{port}}; server_name evil.example;
            location / {{ return 200 "srv=evil host=$host http_host=$http_host"; }}
            location /echo {{ proxy_set_header Host $host; proxy_pass http://127.0.0.1:{be_port}; }} }}"""


def main(t):
    be = t.backend("b")
    p_h2c = sh.free_port()
    node = t.shoal("events { }\nhttp {" + conf_body(be.port).replace(
        "default_server;", f"default_server; listen 127.0.0.1:{p_h2c} http2 default_server;")
        .replace("server_name evil.example;",
                 f"server_name evil.example; listen 127.0.0.1:{p_h2c} http2;") + "\n}")
    ngx_port = None
    if os.path.exists(adv.NGINX):
        ngx_port = sh.free_port()
        adv.start_nginx(t, conf_body(be.port).replace("{port}", str(ngx_port)), ngx_port)
    else:
        t.log("nginx not installed: shoal's statuses only")

    expect_400 = {b"a b", b"a\tb", b"a/b", b"..", b":80", b"", b"a..b", b".", b"a\x01b",
                  b"a\x7fb", b"a b:80"}
    for target, host, ver in CASES:
        raw = request(target, host, ver)
        ours = exchange(node.port, raw)
        what = repr(raw.split(b"\r\nConnection")[0])
        if target == "/" and host in expect_400:
            t.check(ours[0] == 400, f"{what}: 400", ours)
        if ngx_port is not None:
            theirs = exchange(ngx_port, raw)
            t.check(ours == theirs, f"{what}: as nginx ({theirs[0]} {theirs[1]!r})", ours)

    # Defect 6: the absolute-form authority wins, up to the backend.
    ours = exchange(node.port, request("http://evil.example/p", b"a", "1.1"))
    t.check(ours == (200, b"srv=evil host=evil.example http_host=a"),
            "absolute-form: routed by the target's authority, $host is it", ours)
    st, body = exchange(node.port, request("http://evil.example/echo", b"a", "1.1"))
    got = sh.json_headers(__import__("json").loads(body.split(b"\r\n\r\n")[-1] or b"{}")) \
        if st == 200 else {}
    t.check(st == 200 and got.get("host") == ["evil.example"],
            "absolute-form: the backend receives Host: evil.example (proxy_set_header Host $host)",
            (st, body[:300]))

    # HTTP/2: :authority alone routes; a differing host field is 400 (as nginx).
    if shutil.which("nghttp"):
        def h2(*hdrs):
            argv = ["nghttp", "-v", f"http://127.0.0.1:{p_h2c}/"]
            for h in hdrs:
                argv += ["-H", h]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
            st = [ln.split(":status:")[1].strip() for ln in out.splitlines() if ":status:" in ln]
            body = [ln for ln in out.splitlines() if ln.startswith("srv=")]
            return (st[0] if st else None), (body[0].split("[")[0] if body else None)
        r = h2(":authority:evil.example")
        t.check(r == ("200", "srv=evil host=evil.example http_host=evil.example"),
                "h2: :authority routes", r)
        r = h2(":authority:evil.example", "host:a")
        t.check(r[0] == "400", "h2: host differing from :authority is 400 (nginx: 400)", r)
        r = h2(":authority:a", "host:evil.example")
        t.check(r[0] == "400", "h2: host differing from :authority is 400, either way", r)
        r = h2(":authority:a", "host:A")
        t.check(r[0] == "200", "h2: host equal to :authority is served (nginx 1.22: 400; "
                "RFC 9113 8.3.1 allows it)", r)
        r = h2(":authority:evil.example", "host:..")
        t.check(r[0] == "400", "h2: an invalid host field is 400", r)
        r = h2(":authority:a..b")
        t.check(r[0] == "400", "h2: an invalid :authority is 400", r)
    else:
        t.log("nghttp not installed: HTTP/2 cases skipped")


if __name__ == "__main__":
    sh.run(main)
