#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: map through a real node.

The seed's two maps ($request_uri -> $rate_limit_key with regexes, and
$http_upgrade -> $connection_upgrade with '' ''), a map with exact keys,
a case-insensitive regex with a capture used in the value, hostnames
masks, and a map of a map, all carried to the backend by proxy_set_header
(an empty value removes the header, as nginx) and into `return` bodies."""

import shoal_harness as sh


def main(t):
    b1 = t.backend("b1")
    node = t.shoal(f"""
        events {{ }}
        http {{
            access_log off;
            map $request_uri $rate_limit_key {{
                default "";
                ~^/api/v1/chat $binary_remote_addr;
                ~^/api/v1/completions $remote_addr;
            }}
            map $http_upgrade $connection_upgrade {{
                default upgrade;
                '' '';
            }}
            map $arg_plan $tier {{
                default free;
                gold premium;
                silver standard;
                ~*^trial-(\\d+)$ "trial for $1 days";
            }}
            map $http_host $site {{
                hostnames;
                default other;
                .shop.test shop;
                api.* api;
            }}
            map $tier $tier_class {{
                premium paid;
                standard paid;
                default unpaid;
            }}
            upstream be {{ server 127.0.0.1:{b1.port}; keepalive 4; }}
            server {{
                listen 127.0.0.1:{{port}};
                location /show {{ return 200 "$tier|$site|$tier_class"; }}
                location / {{
                    proxy_pass http://be;
                    proxy_set_header X-Rate-Key $rate_limit_key;
                    proxy_set_header Connection $connection_upgrade;
                    proxy_set_header X-Tier $tier;
                }}
            }}
        }}""")

    def echo(path, *hdrs):
        args = []
        for h in hdrs:
            args += ["-H", h]
        r = t.curl(node.url(path), *args)
        if r.status != 200:
            return None, r
        return sh.json_headers(r.json()), r

    hd, r = echo("/api/v1/completions/echo")
    t.check(hd is not None and hd.get("x-rate-key") == ["127.0.0.1"],
            "map $request_uri: ~^/api/v1/completions gives $remote_addr", hd or r)
    hd, r = echo("/other/echo")
    t.check(hd is not None and "x-rate-key" not in hd,
            "map $request_uri: default \"\" removes X-Rate-Key", hd or r)
    hd, r = echo("/api/v1/chat/echo")
    t.check(hd is not None and hd.get("x-rate-key") is not None and len(hd["x-rate-key"][0]) > 0,
            "map $request_uri: ~^/api/v1/chat gives the (binary) address", hd or r)

    hd, r = echo("/echo", "Upgrade: websocket")
    t.check(hd is not None and [v.lower() for v in hd.get("connection", [])] == ["upgrade"],
            "Upgrade: websocket -> Connection: upgrade", hd or r)
    hd, r = echo("/echo")
    t.check(hd is not None and all(v.lower() != "upgrade" for v in hd.get("connection", [])),
            "no Upgrade -> $connection_upgrade '' (no Connection: upgrade)", hd or r)

    hd, r = echo("/echo?plan=gold")
    t.check(hd is not None and hd.get("x-tier") == ["premium"], "exact key gold -> premium", hd or r)
    hd, r = echo("/echo?plan=TRIAL-30")
    t.check(hd is not None and hd.get("x-tier") == ["trial for 30 days"],
            "~* regex with capture: TRIAL-30 -> \"trial for 30 days\"", hd or r)

    shows = [
        ("/show?plan=silver", "a.shop.test", "standard|shop|paid"),
        ("/show", "shop.test", "free|shop|unpaid"),
        ("/show?plan=GOLD", "api.example", "premium|api|paid"),
        ("/show?plan=x", "elsewhere", "free|other|unpaid"),
    ]
    for path, host, want in shows:
        r = t.curl(node.url(path), "-H", "Host: " + host)
        t.check(r.status == 200 and r.body.decode() == want,
                "%s Host %s -> %r" % (path, host, want), r)

    # A map naming an undefined variable does not load (file:line).
    conf = t.write_conf("""
        events { }
        http {
            map $nope_var $x { default 1; }
            server { listen 127.0.0.1:1; }
        }""", name="bad.conf")
    res = t.run_shoal(["-t", "-c", conf])
    t.check(res.returncode == 1 and "bad.conf:3:" in res.stderr and "nope_var" in res.stderr,
            "an unknown variable in map fails -t with bad.conf:3", res.stderr)


if __name__ == "__main__":
    sh.run(main)
