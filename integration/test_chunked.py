#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 2: chunked bodies in both directions.

Request: curl -H 'Transfer-Encoding: chunked' --data-binary of a 3 MiB
random file; the backend's /echo sees the same bytes (whatever framing the
node forwards with, never both Content-Length and Transfer-Encoding). A raw
chunked request with chunk extensions and a trailer. Response: the backend
streams chunked (/stream?chunked=1); the client gets every byte, framed with
Transfer-Encoding: chunked (an HTTP/1.1 proxy streaming a body of unknown
length has no other choice), for sizes that are and are not multiples of the
backend's 64 KiB pieces, and an empty chunked body."""

import hashlib
import os

import shoal_harness as sh


def main(t):
    b1 = t.backend("b1")
    node = t.shoal(f"""
        events {{ }}
        http {{
            client_max_body_size 64m;
            upstream be {{ server 127.0.0.1:{b1.port}; keepalive 4; }}
            server {{
                listen 127.0.0.1:{{port}};
                location / {{ proxy_pass http://be; }}
            }}
        }}""")

    # -- chunked request body, via curl --
    body = os.urandom(3 * (1 << 20) + 123)
    path = os.path.join(t.tmp, "body")
    with open(path, "wb") as f:
        f.write(body)
    want = hashlib.sha256(body).hexdigest()
    r = t.curl(node.url("/echo"), "-H", "Transfer-Encoding: chunked", data_file=path)
    t.check(r.status == 200, "chunked POST /echo (3 MiB + 123) is 200", r)
    if r.status == 200:
        e = r.json()
        hdrs = sh.json_headers(e)
        t.check(e["body_len"] == len(body) and e["body_sha256"] == want,
                "backend got the same %d bytes (got %s)" % (len(body), e["body_len"]))
        t.check(not ("content-length" in hdrs and "transfer-encoding" in hdrs),
                "backend never sees both Content-Length and Transfer-Encoding", hdrs)
        t.log("node forwarded the chunked request as framing=%s" % e["framing"])

    # -- chunked request with extensions and a trailer, raw --
    raw = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n")
    (resp,), c = sh.raw_exchange(node.port, raw)
    c.close()
    t.check(resp.status == 200 and resp.json()["body_len"] == 11
            and resp.json()["body_sha256"] == hashlib.sha256(b"hello world").hexdigest(),
            "raw chunked request with an extension and a trailer: backend got \"hello world\"", resp)

    # A chunked request body of zero bytes.
    (resp,), c = sh.raw_exchange(node.port, b"POST /echo HTTP/1.1\r\nHost: t\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    c.close()
    t.check(resp.status == 200 and resp.json()["body_len"] == 0, "empty chunked request body: 0 bytes", resp)

    # -- chunked responses --
    for n in (0, 1, 65536, 5 * 65536 + 7, 4 * (1 << 20)):
        r = t.curl(node.url("/stream?bytes=%d&chunked=1" % n), sink="sha256")
        ok = r.rc == 0 and r.status == 200 and r.body_len == n and r.sha256 == sh.pattern_sha256(n)
        t.check(ok, "chunked response of %d bytes arrives intact (got %s bytes, rc=%s)"
                % (n, r.body_len, r.rc), r)
        te = (r.header("Transfer-Encoding") or "").lower()
        t.check(te == "chunked" and r.header("Content-Length") is None,
                "and is framed Transfer-Encoding: chunked to the client", r.headers)

    # Raw: the chunked framing itself is well formed and the connection stays usable.
    with sh.RawConn(node.port) as c:
        c.send("GET /stream?bytes=70000&chunked=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        a = c.read_response()
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        b = c.read_response()
    t.check(a.status == 200 and len(a.body) == 70000
            and hashlib.sha256(a.body).hexdigest() == sh.pattern_sha256(70000),
            "raw client decodes the 70000-byte chunked response", a)
    t.check(b.status == 200 and b.body == b"hello from b1\n",
            "the next request on that connection is answered (framing ended exactly)", b)

    # Another chunked upload after all that: pooled upstream connections are clean.
    r = t.curl(node.url("/echo"), "-H", "Transfer-Encoding: chunked", data_file=path)
    t.check(r.status == 200 and r.json()["body_sha256"] == want, "a second chunked upload also round-trips", r)


if __name__ == "__main__":
    sh.run(main)
