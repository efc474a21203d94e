#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 18: the rewrite module beside nginx 1.22 on the same configuration.

Every URL below is asked of both; status, Location (the port made neutral),
the add_header fields and the body (for proxied requests: the target the
backend received) must be nginx's:
- rewrite with each flag (none, last, break, redirect, permanent), a URL
  replacement, $scheme, the server level's rewrites (before the location
  is found) with each flag, the query string rules (a replacement with '?'
  adds its arguments before the request's, a trailing '?' drops them,
  redirects append them), break with proxy_pass (the changed URI is sent,
  the proxy_pass URI ignored), the 10-cycle limit;
- return: a code, text with variables, a URL, 301 to a relative URL
  (made absolute), 204, 444;
- set, variable truthiness ("" and "0" are false), uninitialized variables;
- if with =, !=, ~, ~*, !~, !~*, -f, !-f, -d, !-d, -e, !-e, -x, !-x (the
  file tests run in the thread pool), captures $1..$9 from rewrite and if
  regexes, nested groups and named captures;
- "if is evil": two ifs that match give the last one's add_header only,
  an if's add_header replaces the location's, proxy_pass inside if, an if
  in a proxied location, try_files lost inside an if location."""
import json
import os
import re

import nginx_ref
import shoal_harness as sh

HTTP = """
    server {{
        listen 127.0.0.1:{{port}};
        server_name localhost;
        root {root};
        rewrite ^/srv/(.*)$ /show/$1 last;
        rewrite ^/srvbreak/(.*)$ /show/$1 break;
        rewrite ^/srvnoflag/(.*)$ /show/$1;
        rewrite ^/srvred/(.*)$ /show/$1 redirect;
        if ($arg_srvret) {{ return 418 "server if $arg_srvret\\n"; }}
        set $srvvar sv;

        location /show/ {{ return 200 "show uri=$uri args=$args is_args=$is_args srvvar=$srvvar\\n"; }}
        location /none/ {{ rewrite ^/none/(.*)$ /show/$1; rewrite ^/show/a$ /show/b;
                          return 200 "after uri=$uri args=$args 1=$1\\n"; }}
        location /none2/ {{ rewrite ^/none2/(.*)$ /show/$1; }}
        location /last/ {{ rewrite ^/last/(.*)$ /show/$1 last; return 500; }}
        location /brk/ {{ rewrite ^/brk/(.*)$ /p/$1/echo break; return 500;
                         proxy_pass http://127.0.0.1:{b}; }}
        location /brkuri/ {{ rewrite ^/brkuri/(.*)$ /q/$1/echo break;
                            proxy_pass http://127.0.0.1:{b}/base/; }}
        location /plain/ {{ proxy_pass http://127.0.0.1:{b}/base/; }}
        location /red/ {{ rewrite ^/red/(.*)$ /show/$1 redirect; }}
        location /perm/ {{ rewrite ^/perm/(.*)$ /show/$1 permanent; }}
        location /url/ {{ rewrite ^/url/(.*)$ http://example.com/$1; }}
        location /urlq/ {{ rewrite ^/urlq/(.*)$ http://example.com/$1?x=1; }}
        location /urlqq/ {{ rewrite ^/urlqq/(.*)$ http://example.com/$1?; }}
        location /schemeurl/ {{ rewrite ^ $scheme://$host/new permanent; }}
        location /qs/add/ {{ rewrite ^/qs/add/(.*)$ /show/$1?new=1 last; }}
        location /qs/drop/ {{ rewrite ^/qs/drop/(.*)$ /show/$1? last; }}
        location /qs/keep/ {{ rewrite ^/qs/keep/(.*)$ /show/$1 last; }}
        location /qs/proxy/ {{ rewrite ^/qs/proxy/(.*)$ /r/$1/echo?a=$1 break;
                              proxy_pass http://127.0.0.1:{b}; }}
        location /loop/ {{ rewrite ^/loop/(.*)$ /loop/x$1 last; }}
        location ~ ^/cap/(?<first>[a-z]+)/(\\d+)$ {{
            rewrite ^/cap/(\\w)(\\w*)/(\\d)(\\d*)$ /capped;
            return 200 "1=$1 2=$2 3=$3 4=$4 first=$first uri=$uri\\n"; }}
        location ~ ^/locap/(\\w+)$ {{ rewrite ^/locap/nomatch$ /x; return 200 "loc 1=$1\\n"; }}
        location /nest/ {{
            if ($uri ~ ^/nest/((\\w+)-(\\w+))/(?<tail>.*)$) {{ return 200 "1=$1 2=$2 3=$3 4=$4 tail=$tail\\n"; }}
            return 404; }}
        location /if/ {{
            if ($arg_a = "x") {{ return 200 "eq\\n"; }}
            if ($arg_a != "") {{ set $ne 1; }}
            if ($http_x_t ~ ^ab(c)) {{ return 200 "re $1\\n"; }}
            if ($http_x_t ~* ^XY) {{ return 200 "rei\\n"; }}
            if ($http_x_t !~ ^z) {{ set $nre notz; }}
            if ($http_x_t !~* ^Q) {{ set $nrei notq; }}
            return 200 "ne=$ne nre=$nre nrei=$nrei\\n";
        }}
        location /file/ {{
            if (-f $request_filename) {{ return 200 "f\\n"; }}
            if (-d $request_filename) {{ return 200 "d\\n"; }}
            if (!-e $request_filename) {{ return 200 "not e\\n"; }}
            return 200 "other\\n";
        }}
        location /nf/ {{
            if (!-f $request_filename) {{ set $r "${{r}}notf "; }}
            if (!-d $request_filename) {{ set $r "${{r}}notd "; }}
            if (-e $request_filename) {{ set $r "${{r}}e "; }}
            if (-x $request_filename) {{ set $r "${{r}}x "; }}
            if (!-x $request_filename) {{ set $r "${{r}}notx "; }}
            return 200 "r=$r\\n";
        }}
        location /truth/ {{
            set $z "0"; set $e ""; set $one 1; set $zz "00";
            if ($z) {{ return 200 "zero true\\n"; }}
            if ($e) {{ return 200 "empty true\\n"; }}
            if ($ne) {{ return 200 "unset true\\n"; }}
            if ($zz) {{ set $t "zz "; }}
            if ($one) {{ return 200 "${{t}}one true\\n"; }}
        }}
        location = /ret/code {{ return 403; }}
        location = /ret/text {{ return 200 "hello $request_method $arg_x\\n"; }}
        location = /ret/url {{ return https://example.com/x?$args; }}
        location = /ret/301 {{ return 301 /show/rel; }}
        location = /ret/302 {{ return 302 http://example.com/$arg_to; }}
        location = /ret/204 {{ return 204; }}
        location = /ret/444 {{ return 444; }}
        location = /ret/418 {{ return 418 teapot; }}
        location /brkdir/ {{ rewrite ^ /p/brkdir/echo; break; return 500;
                            proxy_pass http://127.0.0.1:{b}; }}
        location /evil/onlyone {{
            set $true 1;
            if ($true) {{ add_header X-First 1; }}
            if ($true) {{ add_header X-Second 2; }}
            return 204;
        }}
        location /evil/outer {{
            add_header X-Outer 1;
            set $true 1;
            if ($true) {{ add_header X-Inner 1; }}
            return 200 "x\\n";
        }}
        location /evil/nomatch {{
            add_header X-Outer 1;
            if ($arg_no) {{ add_header X-Inner 1; }}
            return 200 "x\\n";
        }}
        location /evil/proxy/ {{
            proxy_pass http://127.0.0.1:{b}/base/;
            set $true 1;
            if ($true) {{ }}
        }}
        location /evil/ifproxy/ {{
            if ($arg_p) {{ proxy_pass http://127.0.0.1:{b}; }}
        }}
        location /evil/tryfiles/ {{ try_files /nope @fallback; set $true 1; if ($true) {{ }} }}
        location /evil/tryfiles2/ {{ try_files /nope @fallback; }}
        location @fallback {{ return 200 "fallback\\n"; }}
    }}
"""

CASES = [
    "/srv/abc?q=1", "/srvbreak/x", "/srvnoflag/y?z=2", "/srvred/r?k=v", "/show/s?srvret=7",
    "/none/a?o=1", "/none/zzz", "/none2/a", "/none2/q?w=1", "/last/l?x=y",
    "/brk/b1?a=b", "/brkuri/u1", "/plain/echo?p=1", "/red/x?y=1", "/perm/p", "/url/u?k=1",
    "/urlq/u?k=1", "/urlq/u", "/urlqq/u?k=1", "/schemeurl/s",
    "/qs/add/x?old=2", "/qs/add/x", "/qs/drop/x?old=2", "/qs/keep/x?old=2", "/qs/keep/a%20b",
    "/qs/proxy/v?o=1", "/loop/a",
    "/cap/abc/123", "/cap/x/9", "/locap/abc", "/nest/foo-bar/rest/of/it", "/nest/nomatch",
    "/if/?a=x", "/if/?a=y", "/if/", "/file/a.txt", "/file/sub", "/file/missing", "/nf/a.txt",
    "/nf/sub", "/nf/missing", "/nf/run.sh", "/truth/", "/ret/code", "/ret/text?x=1",
    "/ret/url?a=1&b=2", "/ret/301", "/ret/302?to=dest", "/ret/204", "/ret/444", "/ret/418",
    "/brkdir/q", "/evil/onlyone", "/evil/outer", "/evil/nomatch", "/evil/nomatch?no=1",
    "/evil/proxy/echo", "/evil/ifproxy/echo", "/evil/ifproxy/echo?p=1", "/evil/tryfiles/x",
    "/evil/tryfiles2/x",
]
HDR_CASES = [("/if/", "X-T: abcd"), ("/if/", "X-T: xyZ"), ("/if/", "X-T: zed"),
             ("/if/", "X-T: qq"), ("/if/", "X-T: Qq")]


def view(r, port):
    if r.status is None:
        return ("no response", r.rc)
    loc = r.header("Location")
    if loc:
        loc = loc.replace(":%d/" % port, ":PORT/")
    body = r.body or b""
    if b"<hr><center>" in body:  # the signature line differs
        body = b"<standard page>"
    elif body.startswith(b"{"):
        try:
            body = ("target", json.loads(body)["target"])
        except (ValueError, KeyError):
            pass
    hdrs = tuple((h, r.header(h)) for h in ("X-First", "X-Second", "X-Outer", "X-Inner"))
    return (r.status, loc, hdrs, body)


def make_root(d):
    os.makedirs(os.path.join(d, "file", "sub"), exist_ok=True)
    os.makedirs(os.path.join(d, "nf", "sub"), exist_ok=True)
    for p in ("file/a.txt", "nf/a.txt"):
        with open(os.path.join(d, p), "w") as f:
            f.write("a\n")
    with open(os.path.join(d, "nf", "run.sh"), "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(os.path.join(d, "nf", "run.sh"), 0o755)


def main(t):
    nginx_ref.skip_unless_available()
    b = t.backend("b1")
    root = t._subdir("root")
    make_root(root)
    http = HTTP.format(root=root, b=b.port)
    node = t.shoal("events { }\nhttp {\n" + http + "\n}\n")
    _, nport, nd = nginx_ref.start(t, http.replace("{{", "{").replace("}}", "}"))
    for u in CASES:
        want = view(t.curl("http://127.0.0.1:%d%s" % (nport, u)), nport)
        got = view(t.curl(node.url(u)), node.port)
        t.check(got == want, "%s: as nginx (%s)" % (u, str(want)[:90]),
                "shoal %r\nnginx %r" % (got, want))
    for u, h in HDR_CASES:
        want = view(t.curl("http://127.0.0.1:%d%s" % (nport, u), "-H", h), nport)
        got = view(t.curl(node.url(u), "-H", h), node.port)
        t.check(got == want, "%s %s: as nginx (%s)" % (u, h, str(want)[:60]),
                "shoal %r\nnginx %r" % (got, want))

    # rewrite_log: the match and the result at notice level in the error log
    conf = t.write_conf("""
        events { }
        error_log %s/rw.log notice;
        http {
            server { listen 127.0.0.1:{port}; rewrite_log on;
                location /a/ { rewrite ^/a/(.*)$ /b/$1 last; }
                location /b/ { return 200 "$uri $undefined_set\\n"; set $undefined_set x; } }
        }""" % t.tmp, name="rwlog.conf", port=t.port())
    res = t.run_shoal(["-t", "-c", conf])
    t.check(res.returncode == 0, "rewrite_log and set after use: shoal -t accepts", res.stderr)

    # errors at load: file:line
    for body, what in [("location / { rewrite ^/(.*$ /x; }", "pcre2_compile"),
                       ("location / { rewrite ^ /x bogus; }", "invalid parameter"),
                       ("location / { if ($a ! b) { return 200; } }", "condition"),
                       ("if ($host) { add_header X 1; }", "not allowed here"),
                       ("location / { set nodollar 1; }", "invalid variable name")]:
        conf = t.write_conf("events { }\nhttp {\n server { listen 127.0.0.1:1;\n %s\n }\n}\n" % body,
                            name="bad.conf")
        res = t.run_shoal(["-t", "-c", conf])
        t.check(res.returncode == 1 and "bad.conf:4:" in res.stderr and what in res.stderr,
                "refused with bad.conf:4: %s" % what, res.stderr)


if __name__ == "__main__":
    sh.run(main)
