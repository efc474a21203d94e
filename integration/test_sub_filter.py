#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 18: sub_filter beside nginx 1.22: static HTML files and a proxied
body through sub_filter (case-insensitive strings, variables in the
replacement, sub_filter_once on and off, several strings, sub_filter_types,
sub_filter_last_modified), over a 300 kB body whose matches cross the pieces
it streams in; the body and the Last-Modified / ETag / Content-Length fields
must be nginx's."""
import os

import nginx_ref
import shoal_harness as sh

HTTP = """
    server {{
        listen 127.0.0.1:{{port}};
        root {root};
        location /s/ {{ sub_filter 'hello' 'BYE $request_method'; sub_filter World earth; }}
        location /multi/ {{ sub_filter_once off; sub_filter ab X; sub_filter '<a' '[A'; }}
        location /types/ {{ sub_filter_types text/plain; sub_filter_once off; sub_filter foo bar; }}
        location /lm/ {{ sub_filter_last_modified on; sub_filter hello x; }}
        location /none/ {{ sub_filter zzz y; }}
        location /p/ {{ proxy_pass http://127.0.0.1:{b}/; sub_filter_once off;
                       sub_filter_types text/plain; sub_filter 'hello from' 'HI'; }}
    }}
"""


def main(t):
    nginx_ref.skip_unless_available()
    b = t.backend("b1")
    root = t._subdir("root")
    files = {
        "s/index.html": "Hello World hello\nWORLD\n",
        "s/big.html": "xxhelloxxWorldx" * 20000,
        "multi/a.html": "ab ab <a href=x> abab <A\n",
        "multi/big.html": "a" * 70000 + "b" + "<" * 3 + "a" * 80000 + "bab",
        "types/t.txt": "foo foo FOO\n",
        "types/t.html": "foo foo\n",
        "lm/a.html": "hello\n",
        "none/a.html": "nothing here\n",
    }
    for p, body in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, p)), exist_ok=True)
        with open(os.path.join(root, p), "w") as f:
            f.write(body)
    http = HTTP.format(root=root, b=b.port)
    node = t.shoal("events { }\nhttp {\n" + http + "\n}\n")
    _, nport, _ = nginx_ref.start(t, http.replace("{{", "{").replace("}}", "}"))

    def view(r):
        return (r.status, r.header("Content-Type"), r.header("Last-Modified") is not None,
                r.header("ETag") is not None, r.header("Content-Length") is not None, r.body)

    for u in ["/s/index.html", "/s/big.html", "/multi/a.html", "/multi/big.html", "/types/t.txt",
              "/types/t.html", "/lm/a.html", "/none/a.html", "/p/"]:
        want = view(t.curl("http://127.0.0.1:%d%s" % (nport, u)))
        got = view(t.curl(node.url(u)))
        t.check(got == want, "%s: as nginx (%d bytes)" % (u, len(want[-1] or b"")),
                "shoal %r\nnginx %r" % (got[:5] + (got[5][:200],), want[:5] + (want[5][:200],)))


if __name__ == "__main__":
    sh.run(main)
