#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 18: proxy_redirect (default, off, explicit, regex), proxy_cookie_domain
and proxy_cookie_path beside nginx 1.22: the backend answers with the
Location, Refresh and Set-Cookie fields each request asks for (/hdr), and the
fields the client gets must be nginx's (ports made neutral):
- default (nginx's default): the proxy_pass URL becomes the location's name,
  or "/" when proxy_pass has no URI; a relative result is made absolute;
- off passes the field as the upstream sent it;
- explicit rules (first match wins; variables in the replacement), a regex
  rule with captures;
- a relative Location from the upstream is made absolute;
- Refresh's url= part;
- Set-Cookie domain= (case-insensitive, a leading dot ignored) and path=
  (prefix, and a regex)."""
import urllib.parse

import nginx_ref
import shoal_harness as sh

HTTP = """
    server {{
        listen 127.0.0.1:{{port}};
        location /one/ {{ proxy_pass http://127.0.0.1:{b}/; }}
        location /plain/ {{ proxy_pass http://127.0.0.1:{b}; }}
        location /off/ {{ proxy_pass http://127.0.0.1:{b}/; proxy_redirect off; }}
        location /explicit/ {{ proxy_pass http://127.0.0.1:{b}/;
            proxy_redirect http://backend.test/ /explicit/;
            proxy_redirect http://other.test/ http://$host/o/; }}
        location /regex/ {{ proxy_pass http://127.0.0.1:{b}/;
            proxy_redirect ~^http://(\\w+)\\.test/(.*)$ /re/$1/$2; }}
        location /cookie/ {{ proxy_pass http://127.0.0.1:{b}/;
            proxy_cookie_domain backend.test example.org;
            proxy_cookie_path /two/ /cookie/;
            proxy_cookie_path ~^/re/(.*)$ /x/$1; }}
    }}
"""


def q(**kw):
    return "hdr?" + urllib.parse.urlencode(kw)


def main(t):
    nginx_ref.skip_unless_available()
    b = t.backend("b1")
    bp = b.port
    http = HTTP.format(b=bp)
    node = t.shoal("events { }\nhttp {\n" + http + "\n}\n")
    _, nport, _ = nginx_ref.start(t, http.replace("{{", "{").replace("}}", "}"))
    up = "http://127.0.0.1:%d" % bp
    cases = [
        "/one/" + q(status=302, Location=up + "/x/y"),
        "/one/" + q(status=302, Location=up + "/"),
        "/one/" + q(status=302, Location="http://elsewhere.test/x"),
        "/plain/" + q(status=302, Location=up + "/x"),
        "/off/" + q(status=302, Location=up + "/x"),
        "/off/" + q(status=302, Location="/rel"),
        "/explicit/" + q(status=302, Location="http://backend.test/a/b"),
        "/explicit/" + q(status=302, Location="http://other.test/z"),
        "/regex/" + q(status=301, Location="http://foo.test/bar?x=1"),
        "/one/" + q(status=302, Location="/relative/path"),
        "/one/" + q(Refresh="5; url=" + up + "/r"),
        "/cookie/" + q(**{"Set-Cookie": "a=1; Domain=backend.test; Path=/two/x"}),
        "/cookie/" + q(**{"Set-Cookie": "b=2; path=/re/q; domain=.BACKEND.test; HttpOnly"}),
        "/cookie/" + q(**{"Set-Cookie": "c=3; Path=/other"}),
    ]

    def view(r, port):
        out = []
        for h in ("Location", "Refresh", "Set-Cookie"):
            v = r.header(h)
            if v is not None:
                v = v.replace(":%d/" % port, ":PORT/")
            out.append((h, v))
        return (r.status, tuple(out))

    for u in cases:
        want = view(t.curl("http://127.0.0.1:%d%s" % (nport, u)), nport)
        got = view(t.curl(node.url(u)), node.port)
        t.check(got == want, "%s: as nginx %s" % (urllib.parse.unquote(u)[:70], want),
                "shoal %r\nnginx %r" % (got, want))


if __name__ == "__main__":
    sh.run(main)
