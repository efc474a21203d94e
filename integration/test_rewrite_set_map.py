#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`set` on a variable that map, geo or split_clients defines, beside nginx
1.22 (nginx's variables of those modules are changeable: `set` overrides
the module's value for the rest of the request):
- before `set` runs the map's value is read, after it the set value, also
  inside `if`; `set $m "x$m"` reads the map first;
- a location without `set` still gets the map's value;
- `set` parsed before the `map` that defines the name (a server above the
  map in the http block) works the same;
- geo and split_clients variables likewise; `set $uri` stays refused.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nginx_ref  # noqa: E402
import shoal_harness as sh  # noqa: E402

HTTP = """
    server {
        listen 127.0.0.1:{port2};
        location / { set $late "set-$late"; return 200 "late=$late\\n"; }
        location /none { return 200 "late=$late\\n"; }
    }
    map $arg_a $m {
        default d;
        x mx;
    }
    map $uri $late {
        default map-late;
    }
    geo $g {
        default g0;
        10.0.0.0/8 g10;
    }
    split_clients "$arg_k" $sc {
        50% half;
        * other;
    }
    server {
        listen 127.0.0.1:{port};
        location /a { set $m "over"; return 200 "m=$m\\n"; }
        location /b { return 200 "m=$m\\n"; }
        location /c { set $pre "$m"; set $m "x$m"; return 200 "pre=$pre m=$m\\n"; }
        location /d {
            if ($arg_s) { set $m "from-if"; }
            return 200 "m=$m\\n";
        }
        location /g { set $g "g-set"; return 200 "g=$g\\n"; }
        location /g0 { return 200 "g=$g\\n"; }
        location /s { set $sc "sc-set"; return 200 "sc=$sc\\n"; }
    }
"""


def main(t):
    nginx_ref.skip_unless_available()
    port, port2, nport, nport2 = t.port(), t.port(), t.port(), t.port()

    def conf(p, p2):
        return HTTP.replace("{port2}", str(p2)).replace("{port}", str(p))
    t.shoal("http {\n%s\n}\n" % conf(port, port2), port=port)
    nginx_ref.start(t, conf(nport, nport2), port=nport)
    for p2, path, want in (
            (False, "/a?a=x", "m=over"), (False, "/b?a=x", "m=mx"), (False, "/b", "m=d"),
            (False, "/c?a=x", "pre=mx m=xmx"), (False, "/d?a=x", "m=mx"),
            (False, "/d?a=x&s=1", "m=from-if"), (False, "/g", "g=g-set"), (False, "/g0", "g=g0"),
            (False, "/s?k=1", "sc=sc-set"), (True, "/", "late=set-map-late"),
            (True, "/none", "late=map-late")):
        a = t.curl("http://127.0.0.1:%d%s" % (port2 if p2 else port, path))
        b = t.curl("http://127.0.0.1:%d%s" % (nport2 if p2 else nport, path))
        t.check(a.status == b.status == 200 and a.text().strip() == b.text().strip() == want,
                "%s: %r (nginx %r, want %r)" % (path, a.text().strip(), b.text().strip(), want))
    conf_path = t.write_conf("http { server { listen 127.0.0.1:%d; location / { set $uri x; "
                             "return 200; } } }\n" % t.port(), name="bad.conf")
    r = t.run_shoal(["-t", "-c", conf_path])
    t.check(r.returncode != 0 and "duplicate \"uri\" variable" in r.stderr,
            "set $uri is refused as nginx refuses it: %s" % r.stderr.strip()[-200:])


if __name__ == "__main__":
    sh.run(main)
