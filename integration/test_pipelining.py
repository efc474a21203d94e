#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 2: HTTP/1.1 pipelining.

Requests written in one write on a raw socket must be answered in order:
two proxied GETs; a slow one before a fast one (order kept, not completion
order); a proxied POST with a body followed by a GET (the body boundary is
found exactly); a proxied request and a `return` one mixed; and a pipeline
split at awkward byte boundaries across several writes."""

import json

import shoal_harness as sh


def main(t):
    b1 = t.backend("b1")
    node = t.shoal(f"""
        events {{ }}
        http {{
            upstream be {{ server 127.0.0.1:{b1.port}; keepalive 8; }}
            server {{
                listen 127.0.0.1:{{port}};
                location /ret {{ return 200 "from return"; }}
                location / {{ proxy_pass http://be; }}
            }}
        }}""")

    def req(target, extra=""):
        return "GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (target, extra)

    # Two GETs in one write.
    resps, c = sh.raw_exchange(node.port, req("/echo?n=1") + req("/echo?n=2"), responses=2)
    c.close()
    q = [json.loads(r.body).get("query") if r.status == 200 else None for r in resps]
    t.check(q == ["n=1", "n=2"], "two pipelined GETs: two responses, in order", resps)

    # Slow first, fast second: order is request order.
    resps, c = sh.raw_exchange(node.port, req("/slow?ms=500") + req("/echo?after-slow"), responses=2)
    c.close()
    t.check(resps[0].status == 200 and resps[0].body == b"slow 500\n"
            and resps[1].status == 200 and json.loads(resps[1].body)["query"] == "after-slow",
            "slow request then fast request: responses in request order", resps)

    # POST with a body, then GET, in one write.
    body = b"x" * 5000
    data = ("POST /echo?p HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)).encode() + body \
        + req("/echo?g").encode()
    resps, c = sh.raw_exchange(node.port, data, responses=2)
    c.close()
    ok = (resps[0].status == 200 and resps[0].json()["body_len"] == 5000 and resps[0].json()["method"] == "POST"
          and resps[1].status == 200 and resps[1].json()["method"] == "GET" and resps[1].json()["query"] == "g")
    t.check(ok, "pipelined POST (5000-byte body) then GET: both right, in order", resps)

    # Chunked POST then GET.
    data = (b"POST /echo?c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n") + req("/echo?g2").encode()
    resps, c = sh.raw_exchange(node.port, data, responses=2)
    c.close()
    t.check(resps[0].status == 200 and resps[0].json()["body_len"] == 3
            and resps[1].status == 200 and resps[1].json()["query"] == "g2",
            "pipelined chunked POST then GET: both right, in order", resps)

    # Proxied, return, proxied.
    resps, c = sh.raw_exchange(node.port, req("/echo?a") + req("/ret") + req("/echo?b"), responses=3)
    c.close()
    t.check([r.status for r in resps] == [200, 200, 200] and resps[1].body == b"from return"
            and resps[0].json()["query"] == "a" and resps[2].json()["query"] == "b",
            "proxied, return, proxied pipelined: three responses in order", resps)

    # Ten requests, split into odd-sized writes.
    data = "".join(req("/echo?i=%d" % i) for i in range(10)).encode()
    with sh.RawConn(node.port) as c:
        for i in range(0, len(data), 37):
            c.send(data[i:i + 37])
        resps = [c.read_response() for _ in range(10)]
    t.check([r.json()["query"] if r.status == 200 else None for r in resps] == ["i=%d" % i for i in range(10)],
            "ten pipelined requests written in 37-byte pieces: ten responses in order", resps)

    # A pipelined request after a Connection: close one is not answered.
    with sh.RawConn(node.port) as c:
        c.send(req("/echo?first", "Connection: close\r\n") + req("/echo?second"))
        first = c.read_response()
        closed = c.closed_by_peer(timeout=5)
        rest = c.buf
    t.check(first.status == 200 and first.json()["query"] == "first" and closed and rest == b"",
            "after a Connection: close request the node answers it and closes (no second response)",
            (first, rest))


if __name__ == "__main__":
    sh.run(main)
