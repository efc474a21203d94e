#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: proxy_hide_header and proxy_pass_header, as nginx.

The upstream is a small server inside this test that answers every
request with Server, Date, X-Pad, X-Accel-Expires/-Buffering/-Charset/
-Limit-Rate, X-Foo and X-Bar (X-Accel-Redirect is left out: nginx acts on
it). Checks:
- by default the upstream's Server, Date, X-Pad and X-Accel-* do not reach
  the client; the node's own Server and Date are there, once each; X-Foo
  and X-Bar pass;
- proxy_hide_header X-Foo hides X-Foo too (the defaults still apply);
- proxy_pass_header Server passes the upstream's Server (and the node
  does not add its own: one Server field); proxy_pass_header Date the same
  for Date;
- inheritance: a location with its own proxy_hide_header replaces the
  list of the enclosing one (nginx array directives), one without inherits
  it."""

import socket
import threading

import shoal_harness as sh

UP_DATE = "Mon, 01 Jan 2001 00:00:00 GMT"
UP_SERVER = "fake-upstream/9"
RESPONSE = ("HTTP/1.1 200 OK\r\n"
            "Server: " + UP_SERVER + "\r\n"
            "Date: " + UP_DATE + "\r\n"
            "X-Pad: avoid browser bug\r\n"
            "X-Accel-Expires: 10\r\n"
            "X-Accel-Buffering: no\r\n"
            "X-Accel-Charset: utf-8\r\n"
            "X-Accel-Limit-Rate: 0\r\n"
            "X-Foo: foo\r\n"
            "X-Bar: bar\r\n"
            "Content-Type: text/plain\r\n"
            "Content-Length: 3\r\n"
            "Connection: close\r\n"
            "\r\n"
            "ok\n").encode()


class FakeUpstream:
    """One response per connection, always the same. Threads, no child."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = port
        self.served = 0
        self.stopped = False
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            c.settimeout(10)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            c.sendall(RESPONSE)
            self.served += 1
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stopped = True
        self.sock.close()


ACCEL = ("x-accel-expires", "x-accel-buffering", "x-accel-charset", "x-accel-limit-rate")


def main(t):
    up = FakeUpstream(t.port())
    try:
        run(t, up)
    finally:
        up.close()


def run(t, up):
    node = t.shoal(f"""
        events {{ }}
        http {{
            upstream fake {{ server 127.0.0.1:{up.port}; }}
            server {{
                listen 127.0.0.1:{{port}};
                location /def {{ proxy_pass http://fake; }}
                location /hide {{ proxy_hide_header X-Foo; proxy_pass http://fake; }}
                location /pass {{ proxy_pass_header Server; proxy_pass http://fake; }}
                location /passdate {{ proxy_pass_header Date; proxy_pass http://fake; }}
                location /inh/ {{
                    proxy_hide_header X-Bar;
                    location /inh/a {{ proxy_pass http://fake; }}
                    location /inh/b {{ proxy_hide_header X-Foo; proxy_pass http://fake; }}
                }}
            }}
        }}""")

    def get(path):
        r = t.curl(node.url(path))
        t.require(r.status == 200 and r.body == b"ok\n", "GET %s through the fake upstream: 200 ok" % path, r)
        return r

    def names(r):
        return [k.lower() for k, _ in r.headers]

    r = get("/def")
    n = names(r)
    t.check(r.header_all("Server") != [] and UP_SERVER not in r.header_all("Server") and n.count("server") == 1,
            "default: one Server field, the node's, not the upstream's (got %s)" % r.header_all("Server"), r)
    t.check(n.count("date") == 1 and r.header("Date") != UP_DATE,
            "default: one Date field, the node's, not the upstream's (got %s)" % r.header_all("Date"), r)
    t.check("x-pad" not in n, "default: X-Pad hidden", r)
    for a in ACCEL:
        t.check(a not in n, "default: %s hidden" % a, r)
    t.check(r.header("X-Foo") == "foo" and r.header("X-Bar") == "bar", "default: X-Foo and X-Bar pass", r)

    r = get("/hide")
    n = names(r)
    t.check("x-foo" not in n and r.header("X-Bar") == "bar", "proxy_hide_header X-Foo: X-Foo hidden, X-Bar passes", r)
    t.check(UP_SERVER not in r.header_all("Server") and "x-pad" not in n and r.header("Date") != UP_DATE
            and not any(a in n for a in ACCEL),
            "proxy_hide_header X-Foo: the default hidden headers stay hidden", r)

    r = get("/pass")
    t.check(r.header_all("Server") == [UP_SERVER],
            "proxy_pass_header Server: exactly one Server field, the upstream's %r (got %s)"
            % (UP_SERVER, r.header_all("Server")), r)
    t.check(r.header("Date") != UP_DATE and names(r).count("date") == 1 and "x-pad" not in names(r),
            "proxy_pass_header Server: Date and X-Pad still the node's / hidden", r)

    r = get("/passdate")
    t.check(r.header_all("Date") == [UP_DATE],
            "proxy_pass_header Date: exactly one Date field, the upstream's (got %s)" % r.header_all("Date"), r)

    r = get("/inh/a")
    t.check("x-bar" not in names(r) and r.header("X-Foo") == "foo",
            "nested location without proxy_hide_header inherits X-Bar hidden", r)
    r = get("/inh/b")
    t.check("x-foo" not in names(r) and r.header("X-Bar") == "bar",
            "nested location with its own proxy_hide_header X-Foo replaces the inherited list: X-Bar passes", r)
    t.check(up.served >= 6, "the fake upstream served every request (%d)" % up.served)


if __name__ == "__main__":
    sh.run(main)
