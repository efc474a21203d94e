#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""gzip, gzip_static and the streaming deflate filter, beside nginx 1.22 on
the same http {} text (static files and a proxied backend):
- a 100 KB JSON with `curl --compressed` over HTTP/1.1 and HTTP/2 (h2c):
  Content-Encoding gzip, chunked on HTTP/1.1, no Content-Length, a weak
  ETag, no Accept-Ranges, Vary, the body decompresses to the file; the
  head's fields as nginx's;
- not compressed: below gzip_min_length, a type not listed, `gzip;q=0`
  (Vary still there, as nginx), a Range (206 as it is), a response
  that has a Content-Encoding already; `*` takes gzip;
- HEAD gets the head nginx gives; gzip_static serves FILE.gz as it is;
- 64 MB streamed from the backend (chunked) compressed with flat memory,
  and $body_bytes_sent counts the compressed bytes.
"""
import gzip
import hashlib
import json
import os
import random
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nginx_ref  # noqa: E402
import shoal_harness as sh  # noqa: E402

HTTP = """
    gzip on;
    gzip_types application/json text/plain text/css application/octet-stream;
    gzip_vary on;
    gzip_min_length 256;
    gzip_comp_level 6;
    gzip_proxied any;
    types { text/html html; application/json json; text/plain txt; image/png png;
            text/css css; }
    default_type application/octet-stream;
    access_log {logs}/access.log bbs;
    server {
        listen 127.0.0.1:{port}{h2};
        root {root};
        location /st/ { gzip_static on; }
        location /up/ { proxy_pass http://127.0.0.1:{bport}/; proxy_buffering off; }
        location /up0/ { gzip_min_length 1; proxy_pass http://127.0.0.1:{bport}/; }
    }
"""
FMT = "log_format bbs '$request_uri $status $body_bytes_sent';"
SKIP_FIELDS = {"date", "server", "last-modified", "connection", "keep-alive"}


def fields(r):
    return {k.lower(): v for k, v in r.headers if k.lower() not in SKIP_FIELDS}


def main(t):
    nginx_ref.skip_unless_available()
    root = os.path.join(t.tmp, "root")
    os.makedirs(os.path.join(root, "st"))
    rnd = random.Random(7)
    items = [{"id": i, "name": "item-%d" % i, "tags": ["a", "b", "c"][: i % 3 + 1],
              "price": rnd.randint(1, 10000) / 100.0, "ok": i % 2 == 0} for i in range(1400)]
    big = json.dumps(items).encode()[:100 * 1024]
    with open(os.path.join(root, "big.json"), "wb") as f:
        f.write(big)
    with open(os.path.join(root, "small.txt"), "wb") as f:
        f.write(b"tiny\n")
    with open(os.path.join(root, "pic.png"), "wb") as f:
        f.write(b"\x89PNG" + b"x" * 4000)
    css = b"body { color: red; }\n" * 100
    with open(os.path.join(root, "st", "a.css"), "wb") as f:
        f.write(css)
    pre = gzip.compress(css, 9)
    with open(os.path.join(root, "st", "a.css.gz"), "wb") as f:
        f.write(pre)

    be = t.backend("b1")
    sport, nport = t.port(), t.port()
    nlogs = os.path.join(t.tmp, "nginx-logs")
    os.makedirs(nlogs)
    common = HTTP.replace("{root}", root).replace("{bport}", str(be.port))
    node = t.shoal("http {\n%s\n%s\n}\n" % (FMT, common.replace("{h2}", " http2")
                                             .replace("{logs}", "logs")), port=sport)
    nginx_ref.start(t, FMT + common.replace("{h2}", "").replace("{logs}", nlogs), port=nport)
    s = "http://127.0.0.1:%d" % sport
    n = "http://127.0.0.1:%d" % nport

    # ---- the JSON over HTTP/1.1, beside nginx
    rs = t.curl(s + "/big.json", "--compressed", "--http1.1")
    rn = t.curl(n + "/big.json", "--compressed", "--http1.1")
    t.check(rs.status == 200 and rs.body == big, "HTTP/1.1 --compressed: the body decompresses "
            "to the file", rs)
    t.check(rs.header("Content-Encoding") == "gzip" and rs.header("Content-Length") is None
            and rs.header("Transfer-Encoding") == "chunked",
            "HTTP/1.1: Content-Encoding gzip, chunked, no Content-Length", rs.headers)
    t.check(rs.header("Vary") == "Accept-Encoding", "Vary: Accept-Encoding", rs.headers)
    t.check(rs.header("Accept-Ranges") is None, "no Accept-Ranges on a compressed response")
    t.check((rs.header("ETag") or "").startswith('W/"'), "ETag weakened: %s" % rs.header("ETag"))
    fs, fn = fields(rs), fields(rn)
    t.check(set(fs) == set(fn), "the same fields as nginx: %s" % sorted(fs),
            "shoal %s\nnginx %s" % (sorted(fs), sorted(fn)))
    for k in ("content-type", "content-encoding", "vary", "etag", "transfer-encoding"):
        t.check(fs.get(k) == fn.get(k), "%s as nginx: %r" % (k, fs.get(k)), (fs.get(k), fn.get(k)))
    raw = t.curl(s + "/big.json", "-H", "Accept-Encoding: gzip")
    t.check(len(raw.body) < len(big) / 3 and zlib.decompress(raw.body, 47) == big,
            "a gzip stream, %d bytes for %d" % (len(raw.body), len(big)))

    # ---- HTTP/2 (h2c)
    r2 = t.curl(s + "/big.json", "--compressed", "--http2-prior-knowledge")
    t.check(r2.info.get("http_version") == "2" and r2.status == 200 and r2.body == big and
            r2.header("content-encoding") == "gzip" and r2.header("content-length") is None and
            r2.header("vary") == "Accept-Encoding",
            "HTTP/2 --compressed: gzip, no content-length, the file", r2)

    # ---- what is not compressed, as nginx
    cases = [
        ("below gzip_min_length", "/small.txt", []),
        ("a type not listed", "/pic.png", []),
        ("gzip;q=0", "/big.json", ["-H", "Accept-Encoding: gzip;q=0, deflate"]),
        ("no Accept-Encoding", "/big.json", []),
        ("q=0.000 with spaces", "/big.json", ["-H", "Accept-Encoding: br, gzip ; q=0.000"]),
    ]
    for what, path, args in cases:
        a = t.curl(s + path, *args)
        b = t.curl(n + path, *args)
        t.check(a.header("Content-Encoding") is None and b.header("Content-Encoding") is None,
                "%s: not compressed (shoal and nginx)" % what, (a.headers, b.headers))
        t.check(a.header("Vary") == b.header("Vary"), "%s: Vary as nginx (%r)"
                % (what, a.header("Vary")), (a.headers, b.headers))
        if "-I" not in args:
            t.check(a.body == b.body, "%s: the body as nginx" % what)
    a = t.curl(s + "/big.json", "-I", "-H", "Accept-Encoding: gzip")
    b = t.curl(n + "/big.json", "-I", "-H", "Accept-Encoding: gzip")
    t.check(fields(a) == fields(b) and a.status == 200,
            "HEAD: the head nginx gives (gzip, weak ETag, Vary, no length), no body",
            (a.headers, b.headers))
    a = t.curl(s + "/big.json", "-H", "Accept-Encoding: gzip;q=0.5, *;q=0")
    t.check(a.header("Content-Encoding") == "gzip", "gzip;q=0.5: compressed")
    a = t.curl(s + "/big.json", "-H", "Accept-Encoding: *")
    t.check(a.header("Content-Encoding") == "gzip", "`*` takes gzip (RFC 9110)")
    a = t.curl(s + "/big.json", "-H", "Accept-Encoding: gzip", "-H", "Range: bytes=0-99")
    t.check(a.status == 206 and a.header("Content-Encoding") is None and a.body == big[:100],
            "a Range: 206 of the file as it is, never compressed", a)

    # ---- a response that has a Content-Encoding already (never twice)
    a = t.curl(s + "/up0/hdr?Content-Encoding=br", "-H", "Accept-Encoding: gzip")
    t.check(a.header_all("Content-Encoding") == ["br"] and a.body == b"hdr\n",
            "an upstream's Content-Encoding: passed as it is", a)
    a = t.curl(s + "/up0/hdr", "-H", "Accept-Encoding: gzip")
    t.check(a.header("Content-Encoding") == "gzip" and gzip.decompress(a.body) == b"hdr\n",
            "a proxied text/plain response: compressed", a)

    # ---- gzip_static
    for base, who in ((s, "shoal"), (n, "nginx")):
        a = t.curl(base + "/st/a.css", "-H", "Accept-Encoding: gzip")
        t.check(a.header("Content-Encoding") == "gzip" and a.body == pre and
                a.header("Content-Length") == str(len(pre)) and
                a.header("Vary") == "Accept-Encoding",
                "%s gzip_static: a.css.gz as it is, with its length and Vary" % who, a)
    a = t.curl(s + "/st/a.css")
    t.check(a.header("Content-Encoding") is None and a.body == css,
            "gzip_static without Accept-Encoding: the plain file")

    # ---- 64 MB streamed, compressed, memory flat
    size = 64 * 1024 * 1024
    rss0, _ = node.proc.memory_kb()
    d = zlib.decompressobj(47)
    h = hashlib.sha256()
    import subprocess
    p = subprocess.Popen(["curl", "-sS", "--max-time", "60", "-H", "Accept-Encoding: gzip",
                          s + "/up/stream?bytes=%d&chunked=1" % size], stdout=subprocess.PIPE)
    got = 0
    comp = 0
    while True:
        piece = p.stdout.read(256 * 1024)
        if not piece:
            break
        comp += len(piece)
        out = d.decompress(piece)
        got += len(out)
        h.update(out)
    p.wait(70)
    rss, hwm = node.proc.memory_kb()
    ref = t.curl(be.url("/stream?bytes=%d" % size), sink="sha256")
    t.check(got == size and h.hexdigest() == ref.sha256,
            "64 MB streamed through gzip: %d compressed bytes decompress to the stream" % comp)
    t.check(hwm - rss0 < 16 * 1024, "peak memory grew by %d kB (< 16 MB) for 64 MB" % (hwm - rss0))

    # ---- $body_bytes_sent: the compressed bytes
    log = os.path.join(node.prefix, "logs", "access.log")
    sh.wait_for(lambda: any(l.startswith("/up/stream") for l in sh.file_lines(log)), 10,
                "the stream's log line")
    line = [l for l in sh.file_lines(log) if l.startswith("/up/stream")][-1]
    t.check(line.split()[2] == str(comp), "$body_bytes_sent %s = the compressed length %d"
            % (line.split()[2], comp))


if __name__ == "__main__":
    sh.run(main)
