#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: location order and server_name selection through a real node.

Locations in nginx's order (`=`, longest prefix remembered, `^~`, regexes in
config order, nested regexes first, fallback to the prefix), regex captures
($1 and named) carried into a proxied request header and a `return` body,
matching on the normalized URI, and server selection by Host: exact,
leading and trailing wildcards, a regex name with a named capture, and the
default_server. Also: an invalid regex is a load error with file:line."""

import shoal_harness as sh


def main(t):
    b1 = t.backend("b1")
    node = t.shoal(f"""
        events {{ }}
        http {{
            access_log off;
            upstream be {{ server 127.0.0.1:{b1.port}; keepalive 4; }}
            server {{
                listen 127.0.0.1:{{port}} default_server;
                server_name _;
                location = / {{ return 200 "exact-root"; }}
                location / {{ return 200 "prefix-root"; }}
                location /documents/ {{ return 200 "documents"; }}
                location ^~ /images/ {{ return 200 "images"; }}
                location ~* \\.(gif|jpg|jpeg)$ {{ return 200 "regex-image"; }}
                location /api/ {{
                    return 200 "api";
                    location ~ ^/api/v(?<ver>\\d+)/(\\w+) {{
                        proxy_pass http://be;
                        proxy_set_header X-Version $ver;
                        proxy_set_header X-Resource $2;
                    }}
                }}
                location ~ ^/users/(\\d+)/posts/(\\d+)$ {{ return 200 "user=$1 post=$2"; }}
            }}
            server {{
                listen 127.0.0.1:{{port}};
                server_name example.com www.example.com;
                return 200 "srv-exact $host $server_name";
            }}
            server {{
                listen 127.0.0.1:{{port}};
                server_name *.example.com;
                return 200 "srv-head-wild $host";
            }}
            server {{
                listen 127.0.0.1:{{port}};
                server_name mail.*;
                return 200 "srv-tail-wild";
            }}
            server {{
                listen 127.0.0.1:{{port}};
                server_name ~^(?<tenant>[a-z]+)\\.tenants\\.test$;
                return 200 "srv-regex tenant=$tenant";
            }}
        }}""")

    def body(path, host=None):
        args = ["-H", "Host: " + host] if host else []
        r = t.curl(node.url(path), *args)
        return r.status, r.body.decode("latin-1"), r

    cases = [
        ("/", "exact-root"),
        ("/index.html", "prefix-root"),
        ("/documents/document.html", "documents"),
        ("/images/1.gif", "images"),
        ("/documents/1.jpg", "regex-image"),
        ("/documents/1.JPEG", "regex-image"),
        ("/api/other", "api"),
        ("/users/12/posts/345", "user=12 post=345"),
        ("/documents/../images/2.gif", "images"),
        ("//documents//a", "documents"),
        ("/%69mages/x", "images"),
    ]
    for path, want in cases:
        st, b, r = body(path)
        t.check(st == 200 and b == want, "%s -> location answering %r" % (path, want), r)

    # Nested regex inside a prefix wins; its captures reach the backend.
    r = t.curl(node.url("/api/v2/widgets/echo"))
    t.check(r.status == 200, "/api/v2/widgets/echo is proxied by the nested regex location", r)
    if r.status == 200:
        hd = sh.json_headers(r.json())
        t.check(hd.get("x-version") == ["2"], "named capture $ver=2 set as X-Version", hd)
        t.check(hd.get("x-resource") == ["widgets"], "$2=widgets set as X-Resource", hd)
        t.check(r.json()["target"] == "/api/v2/widgets/echo", "the URI reaches the backend unchanged", r.json())

    # server_name selection by Host.
    hosts = [
        ("example.com", "srv-exact example.com example.com"),
        ("WWW.EXAMPLE.COM", "srv-exact www.example.com example.com"),
        ("example.com:8080", "srv-exact example.com example.com"),
        ("a.example.com", "srv-head-wild a.example.com"),
        ("mail.example.com", "srv-head-wild mail.example.com"),
        ("mail.other.org", "srv-tail-wild"),
        ("acme.tenants.test", "srv-regex tenant=acme"),
        ("nobody.test", "exact-root"),
    ]
    for host, want in hosts:
        st, b, r = body("/", host)
        t.check(st == 200 and b == want, "Host %s -> %r" % (host, want), r)

    # A broken regex does not load: file:line in the error.
    conf = t.write_conf("""
        events { }
        http {
            server {
                listen 127.0.0.1:1;
                location ~ ^/(unclosed { return 200; }
            }
        }""", name="bad.conf")
    res = t.run_shoal(["-t", "-c", conf])
    t.check(res.returncode == 1 and "bad.conf:5:" in res.stderr and "pcre2_compile" in res.stderr,
            "an invalid location regex fails -t with bad.conf:5", res.stderr)


if __name__ == "__main__":
    sh.run(main)
