#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: proxy_next_upstream, as nginx.

- Default (error timeout): a dead server (nothing listens) in a group of
  two: every request succeeds via the other; the access log's
  $upstream_addr / $upstream_status show both tries ("dead, live" /
  "502, 200").
- http_503 / http_502 listed: a 503 (502) answer from one server (a
  second server block of the node that `return`s it) is retried on the
  next and the client gets 200; the log shows "503, 200". Not listed: the
  client gets the 503 (round robin over two servers: half the answers).
- Non-idempotent requests: a POST that reached a server which then closed
  without answering (/raw/empty) is not retried (502, one server saw it)
  while a GET is (both saw it); with `non_idempotent` a POST is retried
  too. The POSTs here have no body, so the result is the same whether the
  body is buffered (nginx's default) or streamed (Shoal, nginx's
  proxy_request_buffering off). The same POST on a pooled keep-alive
  connection is not retried either (nginx: request_sent and POST ->
  NON_IDEMPOTENT, whatever the connection).
- `proxy_next_upstream off`: a request that picks the dead server gets 502
  at once (no retry)."""

import os
import re

import shoal_harness as sh

LINE_RE = re.compile(r'^p=(?P<port>\d+) (?P<method>\S+) (?P<uri>\S+) s=(?P<status>\d+) '
                     r'ua="(?P<ua>[^"]*)" us="(?P<us>[^"]*)"$')


def log_lines(path, port):
    try:
        with open(path, "rb") as f:
            raw = f.read().decode("latin-1").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in raw:
        m = LINE_RE.match(line)
        if m and int(m.group("port")) == port:
            out.append(m.groupdict())
    return out


def main(t):
    dead = t.port()  # reserved, nothing listens
    b1 = t.backend("b1")
    b2 = t.backend("b2")
    p503 = t.port()
    p502 = t.port()
    A = "127.0.0.1:%d"
    node = t.shoal(f"""
        events {{ }}
        http {{
            log_format up 'p=$server_port $request_method $uri s=$status ua="$upstream_addr" us="$upstream_status"';
            access_log logs/up.log up;
            upstream dead_live {{ server {A % dead}; server {A % b1.port}; }}
            upstream s503_def {{ server {A % p503}; server {A % b1.port}; }}
            upstream s503_listed {{ server {A % p503}; server {A % b1.port}; }}
            upstream s502_listed {{ server {A % p502}; server {A % b1.port}; }}
            upstream post_plain {{ server {A % b1.port}; server {A % b2.port}; }}
            upstream get_plain {{ server {A % b1.port}; server {A % b2.port}; }}
            upstream post_ni {{ server {A % b1.port}; server {A % b2.port}; }}
            upstream post_keep {{ server {A % b1.port}; server {A % b2.port}; keepalive 8; }}
            upstream off_ul {{ server {A % dead}; server {A % b1.port}; }}
            server {{
                listen 127.0.0.1:{{port}};
                location /dl/ {{ proxy_pass http://dead_live/; }}
                location /def503/ {{ proxy_pass http://s503_def/; }}
                location /n503/ {{ proxy_next_upstream error timeout http_503; proxy_pass http://s503_listed/; }}
                location /n502/ {{ proxy_next_upstream error timeout http_502; proxy_pass http://s502_listed/; }}
                location /post/ {{ proxy_pass http://post_plain/; }}
                location /get/ {{ proxy_pass http://get_plain/; }}
                location /postni/ {{ proxy_next_upstream error timeout non_idempotent; proxy_pass http://post_ni/; }}
                location /postka/ {{ proxy_pass http://post_keep/; }}
                location /off/ {{ proxy_next_upstream off; proxy_pass http://off_ul/; }}
            }}
            server {{ listen {A % p503}; location / {{ return 503 "busy\\n"; }} }}
            server {{ listen {A % p502}; location / {{ return 502 "bad\\n"; }} }}
        }}""")
    log = os.path.join(node.prefix, "logs", "up.log")

    def empty_counts():
        return [b.stats()["paths"].get("/raw/empty", 0) for b in (b1, b2)]

    # -- default: error timeout --
    rs = [t.curl(node.url("/dl/?i=%d" % i), timeout=30) for i in range(6)]
    t.check(all(r.status == 200 and r.header("X-Backend") == "b1" for r in rs),
            "default proxy_next_upstream, dead + live: all 6 GETs 200 from b1 (got %s)" % [r.status for r in rs],
            rs[0])

    # -- http_503 / http_502 --
    rs = [t.curl(node.url("/def503/"), timeout=30) for i in range(4)]
    st = [r.status for r in rs]
    t.check(st.count(503) == 2 and st.count(200) == 2,
            "http_503 not listed, round robin over a 503 server and b1: the client gets the 503 half the time "
            "(got %s)" % st, rs[0])
    for prefix, code in (("/n503/", 503), ("/n502/", 502)):
        rs = [t.curl(node.url(prefix), timeout=30) for i in range(4)]
        st = [r.status for r in rs]
        t.check(all(s == 200 for s in st),
                "http_%d listed: a %d from the first server is retried on b1, every client gets 200 (got %s)"
                % (code, code, st), rs[0])

    # -- non-idempotent --
    c0 = empty_counts()
    r = t.curl(node.url("/post/raw/empty"), "-X", "POST", timeout=30)
    c1 = empty_counts()
    d = [b - a for a, b in zip(c0, c1)]
    t.check(r.status == 502 and sum(d) == 1,
            "POST /post/raw/empty (server closes without answering), default proxy_next_upstream: 502, not retried "
            "(got %s, per-backend %s, want one in all)" % (r.status, d), r)
    c0 = empty_counts()
    r = t.curl(node.url("/get/raw/empty"), timeout=30)
    c1 = empty_counts()
    d = [b - a for a, b in zip(c0, c1)]
    t.check(r.status == 502 and d == [1, 1],
            "GET /get/raw/empty: retried on the other server, then 502 (got %s, per-backend %s, want [1, 1])"
            % (r.status, d), r)
    c0 = empty_counts()
    r = t.curl(node.url("/postni/raw/empty"), "-X", "POST", timeout=30)
    c1 = empty_counts()
    d = [b - a for a, b in zip(c0, c1)]
    t.check(r.status == 502 and d == [1, 1],
            "POST /postni/raw/empty with non_idempotent: retried on the other server, then 502 (got %s, "
            "per-backend %s, want [1, 1])" % (r.status, d), r)
    # Pooled connections to both servers first.
    for i in range(4):
        r = t.curl(node.url("/postka/"), node.url("/postka/"), timeout=30)
    t.check(r.status == 200, "GET /postka/ warms the keep-alive pool", r)
    c0 = empty_counts()
    r = t.curl(node.url("/postka/raw/empty"), "-X", "POST", timeout=30)
    c1 = empty_counts()
    d = [b - a for a, b in zip(c0, c1)]
    t.check(r.status == 502 and sum(d) == 1,
            "POST /postka/raw/empty on a pooled keep-alive connection (the server got it and closed without an "
            "answer): 502, not retried (got %s, per-backend %s, want one in all)" % (r.status, d), r)

    # -- off --
    rs = [t.curl(node.url("/off/?i=%d" % i), timeout=30) for i in range(4)]
    st = [r.status for r in rs]
    fast = all(r.elapsed < 3.0 * t.slow for r in rs)
    t.check(st.count(502) == 1 and st.count(200) == 3 and fast,
            "proxy_next_upstream off, dead + live: the request that picks the dead server gets 502 at once, then "
            "the dead one is avoided (max_fails 1): got %s in %s s" % (st, ["%.2f" % r.elapsed for r in rs]), rs[0])

    # -- the access log --
    def have_all():
        ls = log_lines(log, node.port)
        return len(ls) >= 6 + 4 + 8 + 3 + 8 + 1 + 4 and ls
    try:
        ls = sh.wait_for(have_all, 10, "access log lines")
    except sh.HarnessError:
        ls = log_lines(log, node.port)
    dl = [l for l in ls if l["uri"] == "/dl/"]
    want_ua = "%s, %s" % (A % dead, A % b1.port)
    t.check(any(l["ua"] == want_ua and l["us"] == "502, 200" and l["status"] == "200" for l in dl),
            'access log for /dl/: a line with $upstream_addr "%s" and $upstream_status "502, 200"' % want_ua, dl)
    n503 = [l for l in ls if l["uri"] == "/n503/"]
    want_ua = "%s, %s" % (A % p503, A % b1.port)
    t.check(any(l["ua"] == want_ua and l["us"] == "503, 200" for l in n503),
            'access log for /n503/: a line with $upstream_addr "%s" and $upstream_status "503, 200"' % want_ua, n503)
    n502 = [l for l in ls if l["uri"] == "/n502/"]
    want_ua = "%s, %s" % (A % p502, A % b1.port)
    t.check(any(l["ua"] == want_ua and l["us"] == "502, 200" for l in n502),
            'access log for /n502/: a line with $upstream_addr "%s" and $upstream_status "502, 200"' % want_ua, n502)
    off = [l for l in ls if l["uri"] == "/off/"]
    t.check(any(l["ua"] == A % dead and l["us"] == "502" and l["status"] == "502" for l in off),
            'access log for /off/: the 502 line names only the dead server ("%s", "502")' % (A % dead), off)

    r = t.curl(node.url("/dl/"), timeout=30)
    t.check(node.proc.alive() and r.status == 200, "node still up and serving", r)


if __name__ == "__main__":
    sh.run(main)
