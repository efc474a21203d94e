#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 2: `shoal -t` tests a configuration, like nginx -t.

A good file exits 0. Each broken file exits 1 with "FILE:LINE:" on stderr,
the line being the one of the offending directive: unknown directive,
directive in the wrong context (three ways), wrong argument count, a missing
`;`, an unclosed block, a stray `}`, proxy_pass to an unknown upstream,
a bad `return` code, an error inside an included file (its own name and
line). A missing -c file exits 1. `-t` without -c (no /etc/shoal/shoal.conf)
tests the embedded default and exits 0. `-t` never starts serving: its
listen port stays free. `-v` prints a version and exits 0."""

import os
import re

import shoal_harness as sh

GOOD = """\
# a comment
events {
}
http {
    upstream be {
        server 127.0.0.1:%(bp)d weight=2;
        server 127.0.0.1:%(bp2)d;
        keepalive 8;
    }
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            proxy_pass http://be;
            proxy_set_header X-From "shoal test";
        }
        location /r { return 200 "text"; }
        location /x { return 301 http://example.com/; }
        location /d { proxy_pass http://127.0.0.1:%(bp)d; }
    }
}
"""

# (name, text, line of the error or None when only the file is certain)
BROKEN = [
    ("unknown directive", """\
events { }
http {
    server {
        listen 127.0.0.1:%(port)d;
        frobnicate on;
    }
}
""", 5),
    ("listen in the http block (wrong context)", """\
events { }
http {
    listen 127.0.0.1:%(port)d;
    server { listen 127.0.0.1:%(port)d; }
}
""", 3),
    ("proxy_pass at the main level (wrong context)", """\
events { }

proxy_pass http://127.0.0.1:1;
http { server { listen 127.0.0.1:%(port)d; } }
""", 3),
    ("server (upstream member form) inside location (wrong context)", """\
events { }
http {
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            upstream be { server 127.0.0.1:1; }
        }
    }
}
""", 6),
    ("return with no arguments", """\
events { }
http {
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            return;
        }
    }
}
""", 6),
    ("proxy_pass with two arguments", """\
events { }
http {
    server {
        listen 127.0.0.1:%(port)d;
        location / { proxy_pass http://a:1 http://b:2; }
    }
}
""", 5),
    ("missing semicolon", """\
events { }
http {
    server {
        listen 127.0.0.1:%(port)d
    }
}
""", None),
    ("unclosed block", """\
events { }
http {
    server {
        listen 127.0.0.1:%(port)d;
""", None),
    ("stray closing brace", """\
events { }
http {
    server { listen 127.0.0.1:%(port)d; }
}
}
""", 5),
    ("proxy_pass to an unknown upstream name without a port", """\
events { }
http {
    server {
        listen 127.0.0.1:%(port)d;
        location / { proxy_pass http://no_such_upstream; }
    }
}
""", 5),
    ("return with a bad status code", """\
events { }
http {
    server {
        listen 127.0.0.1:%(port)d;
        location / { return 1000; }
    }
}
""", 5),
    ("upstream server with a bad weight", """\
events { }
http {
    upstream be {
        server 127.0.0.1:1 weight=zero;
    }
    server { listen 127.0.0.1:%(port)d; location / { proxy_pass http://be; } }
}
""", 4),
]


def main(t):
    port = t.port()
    vals = {"port": port, "bp": t.port(), "bp2": t.port()}
    d = os.path.join(t.tmp, "confs")
    os.makedirs(d)

    def write(name, text):
        p = os.path.join(d, name)
        with open(p, "w") as f:
            f.write(text % vals)
        return p

    good = write("good.conf", GOOD)
    r = t.run_shoal(["-p", d + "/", "-c", good, "-t"])
    t.check(r.returncode == 0, "-t on a good file exits 0 (got %d)" % r.returncode, r.stderr)
    t.check(not sh.port_accepts(port), "-t did not leave anything listening on the configured port")

    for i, (name, text, line) in enumerate(BROKEN):
        p = write("broken%02d.conf" % i, text)
        r = t.run_shoal(["-p", d + "/", "-c", p, "-t"])
        t.check(r.returncode == 1, "-t on a file with %s exits 1 (got %d)" % (name, r.returncode), r.stderr)
        if line is not None:
            pat = re.escape(p) + ":%d:" % line
            t.check(re.search(pat, r.stderr), "  stderr names %s:%d:" % (os.path.basename(p), line), r.stderr)
        else:
            pat = re.escape(p) + r":\d+:"
            t.check(re.search(pat, r.stderr), "  stderr names %s:LINE:" % os.path.basename(p), r.stderr)

    # An error inside an included file names that file and its line.
    inc = write("inc-bad.conf", "location / {\n    return 200 \"x\";\n}\nbogus_directive 1;\n")
    main_inc = write("with-include.conf", "events { }\nhttp {\n    server {\n        listen 127.0.0.1:%(port)d;\n"
                     "        include inc-bad.conf;\n    }\n}\n")
    r = t.run_shoal(["-p", d + "/", "-c", main_inc, "-t"])
    t.check(r.returncode == 1 and re.search(re.escape(inc) + ":4:", r.stderr),
            "an error in an included file: exit 1 and %s:4:" % os.path.basename(inc), r.stderr)

    # A missing file.
    missing = os.path.join(d, "nope.conf")
    r = t.run_shoal(["-p", d + "/", "-c", missing, "-t"])
    t.check(r.returncode == 1 and missing in r.stderr, "-t on a missing file exits 1 and names it", r.stderr)

    # The embedded default.
    if os.path.exists("/etc/shoal/shoal.conf"):
        t.log("skipping the embedded-default check: /etc/shoal/shoal.conf exists here")
    else:
        r = t.run_shoal(["-p", d + "/", "-t"])
        t.check(r.returncode == 0, "-t without -c (embedded default) exits 0 (got %d)" % r.returncode,
                r.stdout + r.stderr)
        r = t.run_shoal(["-t"])
        t.check(r.returncode == 0, "-t with neither -c nor -p exits 0 (got %d)" % r.returncode,
                r.stdout + r.stderr)

    r = t.run_shoal(["-v"])
    t.check(r.returncode == 0 and re.search(r"\d+\.\d+", r.stdout + r.stderr),
            "-v prints a version and exits 0", (r.returncode, r.stdout, r.stderr))


if __name__ == "__main__":
    sh.run(main)
