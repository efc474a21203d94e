#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 2: proxy_set_header reaches the backend.

Fixed values set at the location and inherited from the server level (a
location with its own proxy_set_header replaces the inherited set, as in
nginx), a Host override, a value with spaces (quoted), and an empty value
removes the header. The backend's /echo shows what arrived. Client headers
not overridden pass through."""

import shoal_harness as sh


def main(t):
    b1 = t.backend("b1")
    node = t.shoal(f"""
        events {{ }}
        http {{
            upstream be {{ server 127.0.0.1:{b1.port}; keepalive 4; }}
            server {{
                listen 127.0.0.1:{{port}};
                proxy_set_header X-Server-Level "from server";
                location /own/ {{
                    proxy_pass http://be;
                    proxy_set_header X-Test hello;
                    proxy_set_header X-Spaced "a b  c";
                    proxy_set_header Host backend.example;
                    proxy_set_header X-Drop "";
                }}
                location / {{
                    proxy_pass http://be;
                }}
            }}
        }}""")

    def echo(path, *hdrs):
        args = []
        for h in hdrs:
            args += ["-H", h]
        res = t.curl(node.url(path), *args)
        if res.status != 200:
            return None, res
        return sh.json_headers(res.json()), res

    hd, r = echo("/own/echo?x", "X-Client: kept", "X-Drop: should-go")
    t.check(hd is not None, "/own/echo reaches the backend's echo", r)
    if hd:
        t.check(hd.get("x-test") == ["hello"], "proxy_set_header X-Test hello arrives", hd)
        t.check(hd.get("x-spaced") == ["a b  c"], "quoted value with spaces arrives intact", hd)
        t.check(hd.get("host") == ["backend.example"], "proxy_set_header Host backend.example replaces Host", hd)
        t.check("x-drop" not in hd, "proxy_set_header X-Drop \"\" removes the client's X-Drop", hd)
        t.check("x-server-level" not in hd,
                "a location with its own proxy_set_header does not inherit the server's (nginx rule)", hd)
        t.check(hd.get("x-client") == ["kept"], "a client header not overridden passes through", hd)

    hd, r = echo("/echo", "X-Client: kept")
    t.check(hd is not None, "/echo reaches the backend's echo", r)
    if hd:
        t.check(hd.get("x-server-level") == ["from server"], "server-level proxy_set_header is inherited", hd)
        t.check("x-test" not in hd, "the other location's headers are not set here", hd)
        t.check(hd.get("x-client") == ["kept"], "client header passes through", hd)


if __name__ == "__main__":
    sh.run(main)
