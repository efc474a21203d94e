#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`expires`, beside nginx 1.22 on the same configuration: every form (a
time, a negative time, 0, epoch, max, `modified TIME` from the upstream's
Last-Modified, `@time-of-day`, off), inheritance, the statuses it applies
to, and an upstream's Expires / Cache-Control fields replaced (only the first
Cache-Control kept). For each URL the test compares Cache-Control exactly and
Expires as seconds after the response's Date (daily: as the absolute time),
over HTTP/1.1 and HTTP/2 for shoal. Bad forms are refused by `shoal -t`."""
import email.utils
import os
import time

import nginx_ref
import shoal_harness as sh

HTTP = """
    server {{
        listen 127.0.0.1:{{port}};
        {h2}
        expires 1d;
        location = /inherit {{ return 200 "x"; }}
        location = /year {{ expires 1y; return 200 "x"; }}
        location = /neg {{ expires -1; return 200 "x"; }}
        location = /zero {{ expires 0; return 200 "x"; }}
        location = /epoch {{ expires epoch; return 200 "x"; }}
        location = /max {{ expires max; return 200 "x"; }}
        location = /off {{ expires off; return 200 "x"; }}
        location = /daily {{ expires @15h30m; return 200 "x"; }}
        location = /notfound {{ expires 1h; return 404; }}
        location = /moved {{ expires 1h; return 301 /elsewhere; }}
        location = /hours {{ expires "1h 30m"; return 204; }}
        location /up/ {{ expires 2h; proxy_pass http://127.0.0.1:{bport}/; }}
        location /mod/ {{ expires modified 1h; proxy_pass http://127.0.0.1:{bport}/; }}
    }}
"""


def fields(r):
    date = r.header("Date")
    exp = r.header("Expires")
    rel = None
    if date and exp:
        rel = int(email.utils.parsedate_to_datetime(exp).timestamp() -
                  email.utils.parsedate_to_datetime(date).timestamp())
    return {"status": r.status, "cc": r.header_all("Cache-Control"), "exp_rel": rel,
            "expires": exp, "n_expires": len(r.header_all("Expires"))}


def main(t):
    nginx_ref.skip_unless_available()
    b = t.backend("b1")
    h2 = t.port()
    node = t.shoal("events { }\nhttp {\n" + HTTP.format(h2="listen 127.0.0.1:%d http2;" % h2,
                                                      bport=b.port) + "\n}\n")
    _, nport, _ = nginx_ref.start(t, HTTP.format(h2="", bport=b.port).replace("{{", "{").replace("}}", "}"))
    lm_recent = email.utils.formatdate(time.time() - 600, usegmt=True)
    urls = ["/inherit", "/year", "/neg", "/zero", "/epoch", "/max", "/off", "/daily", "/notfound",
            "/moved", "/hours",
            "/up/hdr?Cache-Control=private&Cache-Control=no-store&Expires=0",
            "/up/status/500",
            "/mod/hdr?Last-Modified=" + lm_recent.replace(" ", "%20").replace(",", "%2C"),
            "/mod/hdr?Last-Modified=Sun,%2006%20Nov%201994%2008:49:37%20GMT",
            "/mod/hdr"]
    for u in urls:
        want = fields(t.curl("http://127.0.0.1:%d%s" % (nport, u)))
        for proto, got in (("h1", fields(t.curl(node.url(u)))),
                           ("h2", fields(t.curl("http://127.0.0.1:%d%s" % (h2, u),
                                                "--http2-prior-knowledge")))):
            same = (got["status"] == want["status"] and got["n_expires"] == want["n_expires"])
            # max-age and Expires computed from a clock: a second apart at most
            def near(a, b):
                return a == b or (a is not None and b is not None and abs(a - b) <= 2)

            def ages(cc):
                return [int(v.split("=")[1]) if v.startswith("max-age=") else v for v in cc]
            ga, wa = ages(got["cc"]), ages(want["cc"])
            same = same and len(ga) == len(wa) and all(
                near(x, y) if isinstance(x, int) and isinstance(y, int) else x == y
                for x, y in zip(ga, wa))
            if u == "/daily":
                same = same and got["expires"] == want["expires"]
            elif u not in ("/epoch", "/max"):
                same = same and near(got["exp_rel"], want["exp_rel"])
            else:
                same = same and got["expires"] == want["expires"]
            t.check(same, "%s %s: as nginx (shoal %s, nginx %s)" % (proto, u, got, want))
    # the seed's form, spelled out
    r = t.curl(node.url("/year"))
    t.check(r.header("Cache-Control") == "max-age=31536000", "expires 1y: max-age=31536000", r)

    for bad, why in (("@25h", "daily over 24 hours"), ("modified @1h", "modified with a daily time"),
                     ("soon", "not a time"), ("1500ms", "milliseconds"), ("$x", "a variable")):
        conf = t.write_conf("events { }\nhttp { server { listen 127.0.0.1:1; expires %s; } }\n" % bad)
        rc = t.run_shoal(["-t", "-c", conf])
        t.check(rc.returncode != 0 and "expires" in (rc.stderr + rc.stdout),
                "shoal -t refuses `expires %s` (%s)" % (bad, why), rc)


sh.run(main)
