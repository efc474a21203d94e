#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""error_page, internal, named locations, recursive_error_pages and
proxy_intercept_errors, beside nginx 1.22 on the same configuration (the
seed's error pages: `error_page 404 /404.html; error_page 500 502 503 504
/50x.html;` with `internal` locations serving the seed's html/). For each
URL: status, Content-Type, Location and body as nginx's, over HTTP/1.1 and
HTTP/2:
- /missing (the upstream's 404, intercepted) gives 404 with html/404.html;
- /404.html asked directly gives 404 (its location is internal), with the
  page itself (the 404 is redirected to it);
- every backend down gives 502 with html/50x.html;
- an upstream 500 is replaced by the page with proxy_intercept_errors on,
  passed as it is with it off;
- `=` and `=200`, @named, a URL (302), `return 404`, a redirect loop with
  recursive_error_pages on (nginx's 10-redirect limit: 500)."""
import os

import nginx_ref
import shoal_harness as sh

HERE = os.path.dirname(os.path.abspath(__file__))
HTML = os.path.join(HERE, "fixtures", "seed-loopback", "html")

HTTP = """
    server {{
        listen 127.0.0.1:{{port}};
        {h2}
        error_page 404 /404.html;
        error_page 500 502 503 504 /50x.html;
        location = /404.html {{ root {html}; internal; }}
        location = /50x.html {{ root {html}; internal; }}
        location / {{ proxy_pass http://127.0.0.1:{b}; proxy_intercept_errors on; }}
        location /pass/ {{ proxy_pass http://127.0.0.1:{b}/; }}
        location /down/ {{ proxy_pass http://127.0.0.1:{dead}/; }}
        location /named/ {{ error_page 404 = @fallback; proxy_pass http://127.0.0.1:{b}/;
                           proxy_intercept_errors on; }}
        location @fallback {{ return 200 "fallback\\n"; }}
        location /eq/ {{ error_page 404 =200 /404.html; return 404; }}
        location /url/ {{ error_page 404 =301 http://example.invalid/moved; return 404; }}
        location /loop/ {{ recursive_error_pages on; error_page 404 /loop/again; return 404; }}
        location = /ret404 {{ return 404; }}
        location = /ret403 {{ return 403; }}
    }}
"""


def view(r):
    loc = r.header("Location")
    body = r.body
    if body and b"<hr><center>" in body:  # the signature line differs: "shoal" / "nginx/1.22.1"
        body = b"<standard page>"
    return (r.status, r.header("Content-Type"), loc, body)


def main(t):
    nginx_ref.skip_unless_available()
    b = t.backend("b1")
    dead = t.port()  # nothing listens there
    h2 = t.port()
    node = t.shoal("events { }\nhttp {\n" + HTTP.format(h2="listen 127.0.0.1:%d http2;" % h2, html=HTML,
                                                      b=b.port, dead=dead) + "\n}\n")
    _, nport, _ = nginx_ref.start(t, HTTP.format(h2="", html=HTML, b=b.port, dead=dead)
                                  .replace("{{", "{").replace("}}", "}"))
    with open(os.path.join(HTML, "404.html"), "rb") as f:
        page404 = f.read()
    with open(os.path.join(HTML, "50x.html"), "rb") as f:
        page50x = f.read()
    cases = ["/missing", "/404.html", "/50x.html", "/down/x", "/status/500", "/pass/status/500",
             "/status/502", "/pass/missing", "/named/missing", "/named/", "/eq/", "/url/",
             "/loop/", "/ret404", "/ret403", "/"]
    for u in cases:
        want = view(t.curl("http://127.0.0.1:%d%s" % (nport, u)))
        got1 = view(t.curl(node.url(u)))
        got2 = view(t.curl("http://127.0.0.1:%d%s" % (h2, u), "--http2-prior-knowledge"))
        t.check(got1 == want, "h1 %s: as nginx (shoal %s, nginx %s)" % (u, got1[:3], want[:3]),
                "shoal %r\nnginx %r" % (got1, want))
        t.check(got2 == want, "h2 %s: as nginx (shoal %s, nginx %s)" % (u, got2[:3], want[:3]),
                "shoal %r\nnginx %r" % (got2, want))
    # the four, spelled out
    r = t.curl(node.url("/missing"))
    t.check(r.status == 404 and r.body == page404, "/missing: 404 with html/404.html", r)
    r = t.curl(node.url("/404.html"))
    t.check(r.status == 404, "/404.html asked directly: 404 (internal)", r)
    r = t.curl("http://127.0.0.1:%d/down/x" % h2, "--http2-prior-knowledge")
    t.check(r.status == 502 and r.body == page50x, "every backend down: 502 with html/50x.html (h2)", r)
    r = t.curl(node.url("/status/500"))
    t.check(r.status == 500 and r.body == page50x, "proxy_intercept_errors on: the page for an upstream 500", r)
    r = t.curl(node.url("/pass/status/500"))
    t.check(r.status == 500 and r.body == b"status 500\n", "proxy_intercept_errors off: the upstream's 500 passes", r)


sh.run(main)
