#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Static files, beside nginx 1.22 serving the same folder with the same
configuration: status, Content-Type, Content-Length, Last-Modified, ETag,
Content-Range and Location compared field by field for index, types,
default_type, alias, try_files, a directory without its slash, HEAD,
If-None-Match / If-Modified-Since (304), one Range (206), an unsatisfiable
one (416), POST (405), `..` and encoded traversal, a FIFO (refused at
once, never opened for blocking). Then a 200 MB file over HTTP/1.1
(sendfile) and HTTP/2 arrives whole with the node's peak memory flat, and
while a client drains one slowly other requests are answered at once."""
import hashlib
import os
import socket
import time

import nginx_ref
import shoal_harness as sh

BIG = 200 * 1024 * 1024

HTTP = """
    types {{ text/html html; text/css css; image/png png; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{{port}};
        {h2}
        root {root};
        location / {{ }}
        location /al/ {{ alias {root}/sub/; }}
        location /tf/ {{ try_files $uri /sub/c.css =404; }}
        location /tf2/ {{ try_files /nothing /sub/; }}
        location /ix/ {{ index none.html c.css; alias {root}/sub/; }}
        location /noetag/ {{
            alias {root}/sub/; etag off; if_modified_since before; max_ranges 1; log_not_found off;
        }}
    }}
"""

FIELDS = ("content-type", "content-length", "last-modified", "etag", "content-range", "location",
          "accept-ranges")


def unboundary(r):
    """The multipart boundary is a per-process counter in both: compare the layout."""
    ct = r.header("content-type") or ""
    if "boundary=" not in ct:
        return ct, r.body
    b = ct.split("boundary=")[1].encode()
    return ct.split("boundary=")[0] + "boundary=B", r.body.replace(b, b"B")


def view(r):
    v = [r.status] + [r.header(f) for f in FIELDS]
    v[1] = unboundary(r)[0] or None
    if r.status is not None and r.status >= 300:
        v[2] = None  # the error page's signature line differs: "shoal" / "nginx/1.22.1"
    if v[6]:
        v[6] = v[6].split(":")[0] + ":" + v[6].split(":")[1] + ":PORT" + "/" + v[6].split("/", 3)[3]
    return tuple(v)


def main(t):
    nginx_ref.skip_unless_available()
    root = os.path.join(t.tmp, "www")
    os.makedirs(os.path.join(root, "sub"))
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write("<p>index</p>\n")
    with open(os.path.join(root, "sub", "c.css"), "w") as f:
        f.write("body { }\n")
    with open(os.path.join(root, "sub", "data.bin"), "wb") as f:
        f.write(bytes(range(256)) * 40)
    with open(os.path.join(root, "noext"), "w") as f:
        f.write("x\n")
    big = os.path.join(root, "big.bin")
    with open(big, "wb") as f:  # sparse: fast to make, read through the page cache
        f.write(b"head" * 1024)
        f.truncate(BIG)
    os.mkfifo(os.path.join(root, "fifo"))
    os.symlink(os.path.join(root, "sub", "c.css"), os.path.join(root, "link.css"))

    h2 = t.port()
    # under ASan the quarantine holds freed buffers and looks like growth: this node runs
    # without it, as test_large_body's (the other tests keep use-after-free detection)
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = {"ASAN_OPTIONS": (asan + ":" if asan else "") + "quarantine_size_mb=0"}
    node = t.shoal("events { }\nhttp {\n" + HTTP.format(h2="listen 127.0.0.1:%d http2;" % h2, root=root)
                   + "\n}\n", env=env)
    _, nport, _ = nginx_ref.start(t, HTTP.format(h2="", root=root).replace("{{", "{").replace("}}", "}"))

    def both(path, *args):
        return (t.curl("http://127.0.0.1:%d%s" % (nport, path), *args),
                t.curl(node.url(path), *args),
                t.curl("http://127.0.0.1:%d%s" % (h2, path), "--http2-prior-knowledge", *args))

    etag = t.curl("http://127.0.0.1:%d/sub/c.css" % nport).header("ETag")
    lm = t.curl("http://127.0.0.1:%d/sub/c.css" % nport).header("Last-Modified")
    cases = [
        ("/", ()), ("/index.html", ()), ("/sub/c.css", ()), ("/noext", ()), ("/missing", ()),
        ("/sub", ()), ("/sub/", ()), ("/al/c.css", ()), ("/al/data.bin", ()), ("/link.css", ()),
        ("/tf/x", ()), ("/tf/sub/c.css", ()), ("/tf2/x", ()), ("/ix/", ()),
        ("/sub/c.css", ("-I",)),
        ("/sub/c.css", ("-H", "If-None-Match: " + etag)),
        ("/sub/c.css", ("-H", "If-None-Match: \"other\"")),
        ("/sub/c.css", ("-H", "If-Modified-Since: " + lm)),
        ("/sub/c.css", ("-H", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT")),
        ("/sub/data.bin", ("-r", "100-199")), ("/sub/data.bin", ("-r", "10000-")),
        ("/sub/data.bin", ("-r", "-5")), ("/sub/data.bin", ("-r", "20000-30000")),
        ("/sub/data.bin", ("-r", "0-9", "-H", "If-Range: " + "\"nope\"")),
        # several ranges: multipart/byteranges as nginx lays it out
        ("/sub/data.bin", ("-r", "0-1,5-6")), ("/sub/data.bin", ("-r", "0-9,20-29,-5")),
        ("/sub/data.bin", ("-r", "0-9999,0-9999")),  # more than the file: the whole file
        ("/sub/data.bin", ("-H", "Range: bytes=abc")), ("/sub/data.bin", ("-H", "Range: bytes=5-3")),
        ("/sub/data.bin", ("-H", "Range: items=1-2")),
        ("/sub/c.css", ("-H", "If-Match: \"x\"")), ("/sub/c.css", ("-H", "If-Match: " + etag)),
        ("/sub/c.css", ("-H", "If-Match: *")),
        ("/sub/c.css", ("-H", "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT")),
        ("/sub/c.css", ("-H", "If-Unmodified-Since: " + lm)),
        ("/sub/c.css", ("-H", "If-None-Match: " + etag, "-H",
                        "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT")),
        ("/sub/c.css", ("-H", "If-None-Match: \"a\", W/" + etag)),
        # etag off, if_modified_since before, max_ranges 1, log_not_found off
        ("/noetag/c.css", ()), ("/noetag/c.css", ("-H", "If-None-Match: " + etag)),
        ("/noetag/c.css", ("-H", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT")),
        ("/noetag/c.css", ("-H", "If-Modified-Since: " + lm)),
        ("/noetag/data.bin", ("-r", "0-1")), ("/noetag/data.bin", ("-r", "0-1,5-6")),
        ("/noetag/missing", ()),
        ("/sub/c.css", ("-X", "POST", "-d", "x")),
        ("/sub/c.css", ("-X", "DELETE")),
        ("/%2e%2e/%2e%2e/etc/passwd", ("--path-as-is",)),
        ("/sub/../../etc/passwd", ("--path-as-is",)),
        ("/sub/%2e%2e%2f%2e%2e%2fetc/passwd", ("--path-as-is",)),
        ("/al../etc/passwd", ("--path-as-is",)),
        ("/fifo", ()),
    ]
    for path, args in cases:
        ng, s1, s2 = both(path, *args)
        want = view(ng)
        t.check(view(s1) == want, "h1 %s %s: as nginx (%s / nginx %s)" % (path, " ".join(args), view(s1), want))
        # HTTP/2 has no Location rewrite differences; lengths may be absent on HEAD in curl's view
        if "POST" not in args:  # known, also on main: curl sometimes fails an h2 POST answered
            # before its body was read (RST_STREAM NO_ERROR after the response); see the report
            t.check(view(s2)[:5] == want[:5], "h2 %s %s: as nginx (%s / nginx %s)" % (path, " ".join(args), view(s2), want))
        if ng.status in (200, 206) and "-I" not in args:
            nb = unboundary(ng)[1]
            t.check(unboundary(s1)[1] == nb and unboundary(s2)[1] == nb,
                    "%s %s: the same body" % (path, " ".join(args)))

    err = node.proc.stderr()
    t.check(("%s/missing\" failed" % root) in err and "sub/missing" not in err,
            "log_not_found off: only the other location logs its missing file")

    # the FIFO is never opened for blocking: others are answered meanwhile
    t0 = time.monotonic()
    for _ in range(20):
        t.curl(node.url("/fifo"))
        t.curl(node.url("/sub/c.css"))
    t.check(time.monotonic() - t0 < 20, "FIFO requests and file requests interleave without stalling")

    # 200 MB: whole, with flat memory, over both protocols
    with open(big, "rb") as f:
        want = hashlib.sha256()
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            want.update(b)
    want = want.hexdigest()
    rss0, _ = node.proc.memory_kb()
    r = t.curl(node.url("/big.bin"), sink="sha256", timeout=120)
    t.check(r.status == 200 and r.sha256 == want, "200 MB over HTTP/1.1 (sendfile): whole", r)
    r = t.curl("http://127.0.0.1:%d/big.bin" % h2, "--http2-prior-knowledge", sink="sha256", timeout=120)
    t.check(r.status == 200 and r.sha256 == want, "200 MB over HTTP/2: whole", r)
    rss, hwm = node.proc.memory_kb()
    t.check(hwm - rss0 < 32 * 1024, "peak memory grew by %d kB (< 32 MB) for 2 x 200 MB" % (hwm - rss0))

    # a client draining slowly never stalls the others
    s = socket.create_connection(("127.0.0.1", node.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    s.recv(4096)
    t0 = time.monotonic()
    ok = all(t.curl(node.url("/sub/c.css")).status == 200 for _ in range(20))
    t.check(ok and time.monotonic() - t0 < 10, "20 requests answered while a 200 MB download waits "
            "on a slow reader (%.2fs)" % (time.monotonic() - t0))
    s.close()


sh.run(main)
