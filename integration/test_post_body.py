#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 2: request bodies with Content-Length.

POST (and PUT) of a 1 MB random body through the node with curl
--data-binary: the backend's /echo reports the same length and SHA-256, with
Content-Length framing; an empty POST; a 1 MB response body (GET /stream)
comes back byte for byte; and a second POST on the same client connection
works (the body was consumed exactly)."""

import hashlib
import json
import os
import socket

import shoal_harness as sh


def main(t):
    b1 = t.backend("b1")
    node = t.proxy_shoal(b1, 4)

    body = os.urandom(1 << 20)
    path = os.path.join(t.tmp, "body-1m")
    with open(path, "wb") as f:
        f.write(body)
    want = hashlib.sha256(body).hexdigest()

    r = t.curl(node.url("/echo"), data_file=path)
    t.check(r.status == 200, "POST /echo with a 1 MiB body is 200", r)
    if r.status == 200:
        e = r.json()
        t.check(e["method"] == "POST", "backend saw POST", e["method"])
        t.check(e["body_len"] == len(body), "backend read 1048576 bytes (got %s)" % e["body_len"])
        t.check(e["body_sha256"] == want, "SHA-256 of the body round-trips", (want, e["body_sha256"]))
        hdrs = sh.json_headers(e)
        t.check(e["framing"] == "content-length" and hdrs.get("content-length") == [str(len(body))],
                "backend got Content-Length: 1048576 (framing %s)" % e["framing"], hdrs)
        t.check("transfer-encoding" not in hdrs, "and no Transfer-Encoding", hdrs)

    r = t.curl(node.url("/echo"), "-X", "PUT", data_file=path)
    t.check(r.status == 200 and r.json()["method"] == "PUT" and r.json()["body_sha256"] == want,
            "PUT /echo with the same body round-trips", r)

    # An empty body.
    r = t.curl(node.url("/echo"), "-X", "POST", "-H", "Content-Length: 0")
    t.check(r.status == 200 and r.json()["body_len"] == 0, "POST with Content-Length: 0 is 200, 0 bytes", r)

    # A 1 MiB response.
    n = 1 << 20
    r = t.curl(node.url("/stream?bytes=%d" % n))
    t.check(r.status == 200 and r.body_len == n and r.sha256 == sh.pattern_sha256(n),
            "GET /stream?bytes=1048576 comes back intact (%s bytes)" % r.body_len, r)
    t.check(r.header("Content-Length") == str(n), "with Content-Length: %d" % n, r.headers)

    # Two POSTs on one client connection: the first body was consumed exactly.
    r = t.curl(node.url("/echo"), node.url("/echo?second"), data_file=path)
    ok = r.rc == 0 and r.status == 200 and r.info.get("num_connects") == "0"
    t.check(ok, "two 1 MiB POSTs on one client connection both answered", r)
    if ok:
        # Two JSON objects back to back.
        dec = json.JSONDecoder()
        text = r.text()
        first, i = dec.raw_decode(text)
        second, _ = dec.raw_decode(text[i:].lstrip())
        t.check(first["body_sha256"] == want and second["body_sha256"] == want
                and second["query"] == "second", "both bodies round-trip in order", (first, second))

    # Wrong length: the client promises more than it sends, then closes.
    with sh.RawConn(node.port) as c:
        c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-some")
        c.sock.shutdown(socket.SHUT_WR)
        closed = c.closed_by_peer(timeout=10)
    t.check(closed, "a truncated request body ends with the node closing the connection, no hang")
    r = t.curl(node.url("/"))
    t.check(r.status == 200, "node still serves afterwards", r)


if __name__ == "__main__":
    sh.run(main)
