#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 18: proxy_method, proxy_pass_request_body, proxy_pass_request_headers,
proxy_set_body and proxy_store off beside nginx 1.22: what the backend
receives (method, body length and framing, whether the client's fields
arrived) must be nginx's, for GET and POST, and the client connection stays
usable after a body that was not passed (it is read and dropped)."""
import nginx_ref
import shoal_harness as sh

HTTP = """
    server {{
        listen 127.0.0.1:{{port}};
        location /m/ {{ proxy_pass http://127.0.0.1:{b}; proxy_method PUT; }}
        location /mv/ {{ proxy_pass http://127.0.0.1:{b}; proxy_method $arg_m; }}
        location /nobody/ {{ proxy_pass http://127.0.0.1:{b}; proxy_pass_request_body off;
                             proxy_set_header Content-Length ""; }}
        location /noheaders/ {{ proxy_pass http://127.0.0.1:{b}; proxy_pass_request_headers off; }}
        location /setbody/ {{ proxy_pass http://127.0.0.1:{b}; proxy_set_body "k=$arg_k&m=$request_method"; }}
        location /store/ {{ proxy_pass http://127.0.0.1:{b}; proxy_store off; }}
    }}
"""


def view(r):
    if r.status != 200:
        return (r.status,)
    j = r.json()
    names = sorted({h[0].lower() for h in j["headers"]} & {"x-custom", "user-agent", "accept",
                                                          "content-length", "transfer-encoding"})
    return (j["method"], j["body_len"], j["framing"], tuple(names))


def main(t):
    nginx_ref.skip_unless_available()
    b = t.backend("b1")
    http = HTTP.format(b=b.port)
    node = t.shoal("events { }\nhttp {\n" + http + "\n}\n")
    _, nport, _ = nginx_ref.start(t, http.replace("{{", "{").replace("}}", "}"))
    cases = []
    for loc in ("m", "nobody", "noheaders", "setbody", "store"):
        cases.append(("/%s/echo?k=1" % loc, ()))
        cases.append(("/%s/echo?k=2" % loc, ("--data-binary", "hello body")))
        cases.append(("/%s/echo" % loc, ("-H", "Transfer-Encoding: chunked", "--data-binary", "xyz")))
    cases.append(("/mv/echo?m=PATCH", ("-H", "X-Custom: 1")))
    for u, args in cases:
        args = ("-H", "X-Custom: yes") + tuple(args)
        want = view(t.curl("http://127.0.0.1:%d%s" % (nport, u), *args))
        got = view(t.curl(node.url(u), *args))
        t.check(got == want, "%s %s: as nginx %s" % (u, args[2:4], want),
                "shoal %r\nnginx %r" % (got, want))
    # a body not passed is dropped: the next request on the connection works
    r = t.curl(node.url("/nobody/echo"), "--data-binary", "x" * 100000, "--next",
               node.url("/store/echo"))
    t.check(r.rc == 0 and r.info.get("num_connects") in ("0", "1") and r.body.count(b"method") == 2,
            "two requests on one connection after a dropped 100 kB body", r)


if __name__ == "__main__":
    sh.run(main)
