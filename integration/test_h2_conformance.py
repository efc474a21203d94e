#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 14: RFC 9113 conformance of the HTTP/2 listeners, with raw frames
(h2raw.py) written from the RFC's text, over h2c and over TLS (ALPN h2).

Each check is named after the section it covers:

  3.4    the connection preface: an invalid preface is a connection error
         PROTOCOL_ERROR (TLS: GOAWAY; h2c shares its port with HTTP/1.1,
         so bytes that are not the preface are an HTTP/1.1 request there:
         505 and close); a preface not followed by SETTINGS, the same.
  5.1    stream states: DATA on an idle stream (connection error
         PROTOCOL_ERROR); DATA and HEADERS on a half-closed (remote)
         stream (STREAM_CLOSED: nghttp2 makes it a connection error, which
         5.4.1 allows); any frame but PRIORITY on a stream the client
         reset (stream error STREAM_CLOSED, the connection goes on); DATA
         or HEADERS after END_STREAM both ways (connection error
         STREAM_CLOSED), WINDOW_UPDATE and RST_STREAM then (ignored, they
         may cross our END_STREAM); frames on a stream we reset (ignored:
         they may have been in flight).
  5.1.1  stream identifiers: a HEADERS with an identifier lower than one
         the client opened, an even identifier (connection error
         PROTOCOL_ERROR); skipping identifiers is allowed.
  5.3.1  a stream that depends on itself (PROTOCOL_ERROR: stream error on
         an open stream; connection error on an idle one, which must not
         get a RST_STREAM; HEADERS with a self-dependency: nghttp2's
         connection error).
  6.3    PRIORITY on stream 0 (connection error PROTOCOL_ERROR), of a
         length other than 5 (FRAME_SIZE_ERROR), and a valid one (ignored:
         the node sends SETTINGS_NO_RFC7540_PRIORITIES).
"""

import socket
import struct

import h2raw as h
import shoal_harness as sh


def req(sid, end=True, path=b"/r", flags=0, prefix=b""):
    return h.frame(h.HEADERS, h.END_HEADERS | (h.END_STREAM if end else 0) | flags, sid,
                   prefix + h.request_block(b"GET" if end else b"POST", path, b"x"))


def priority(sid, dep, weight=15):
    return h.frame(h.PRIORITY, 0, sid, struct.pack(">IB", dep, weight))


def rst(sid, code=h.CANCEL):
    return h.frame(h.RST_STREAM, 0, sid, struct.pack(">I", code))


def summary(fs):
    out = []
    for ft, fl, sid, pl in fs:
        if ft == h.GOAWAY:
            out.append(("GOAWAY", h.error_code(pl)))
        elif ft == h.RST_STREAM:
            out.append(("RST_STREAM", sid, h.error_code(pl)))
        elif ft in (h.HEADERS, h.DATA):
            out.append(("HEADERS" if ft == h.HEADERS else "DATA", sid, fl & 1))
    return out


class Case:
    def __init__(self, t, port, tls, preface=None):
        self.t = t
        self.c = h.Conn(port, tls=tls, preface=preface)
        if preface is None:
            self.c.ack_settings(10 * t.slow)

    def send(self, *frames):
        for f in frames:
            self.c.send(f)

    def until(self, pred, timeout=10):
        return self.c.frames_until(pred, timeout * self.t.slow)

    def goaway(self, timeout=10):
        fs = self.until(lambda fs: any(f[0] == h.GOAWAY for f in fs), timeout)
        g = [h.error_code(f[3]) for f in fs if f[0] == h.GOAWAY]
        return (g[0] if g else None), fs

    def rst(self, sid, timeout=10):
        fs = self.until(lambda fs: any(f[0] in (h.RST_STREAM, h.GOAWAY) and
                                       (f[2] == sid or f[0] == h.GOAWAY) for f in fs), timeout)
        r = [h.error_code(f[3]) for f in fs if f[0] == h.RST_STREAM and f[2] == sid]
        return (r[0] if r else None), fs

    def alive(self, sid):
        """The connection still serves: a new request on sid gets its
        response, and a PING its ACK, with no GOAWAY."""
        self.send(req(sid), h.frame(h.PING, 0, 0, b"alive!!!"))
        fs = self.until(lambda fs: any(f[0] == h.PING and f[1] & h.ACK for f in fs) and
                        any(f[2] == sid and f[1] & h.END_STREAM for f in fs), 10)
        return (any(f[0] == h.PING and f[1] & h.ACK for f in fs) and
                any(f[2] == sid and f[0] in (h.HEADERS, h.DATA) and f[1] & h.END_STREAM
                    for f in fs) and not any(f[0] == h.GOAWAY for f in fs)), fs

    def close(self):
        self.c.close()


def response_done(sid):
    return lambda fs: any(f[2] == sid and f[0] in (h.HEADERS, h.DATA) and f[1] & h.END_STREAM
                          for f in fs)


def sections(t, port, tls):
    p = "tls" if tls else "h2c"

    # ---- 3.4 the connection preface
    if tls:
        c = Case(t, port, tls, preface=b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + h.frame(h.SETTINGS, 0, 0))
        code, fs = c.goaway()
        fs += c.until(lambda fs: False, 3)
        eof = c.c.eof
        t.check(code == h.PROTOCOL_ERROR and eof,
                "RFC 9113 3.4 (%s): an invalid preface: GOAWAY(PROTOCOL_ERROR), then close" % p,
                summary(fs))
        c.close()
    else:
        s = socket.create_connection(("127.0.0.1", port), timeout=10 * t.slow)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + h.frame(h.SETTINGS, 0, 0))
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        t.check(data.startswith(b"HTTP/1.1 505 "),
                "RFC 9113 3.4 (h2c): bytes that are not the preface are HTTP/1.1 on this port: "
                "505, then close", data[:200])
    c = Case(t, port, tls, preface=h.PREFACE + h.frame(h.PING, 0, 0, b"12345678"))
    code, fs = c.goaway()
    t.check(code == h.PROTOCOL_ERROR,
            "RFC 9113 3.4 (%s): a preface not followed by SETTINGS: GOAWAY(PROTOCOL_ERROR)" % p,
            summary(fs))
    c.close()

    # ---- 5.1 stream states
    c = Case(t, port, tls)
    c.send(h.frame(h.DATA, 0, 1, b"x"))
    code, fs = c.goaway()
    t.check(code == h.PROTOCOL_ERROR,
            "RFC 9113 5.1 (%s): DATA on an idle stream: GOAWAY(PROTOCOL_ERROR)" % p, summary(fs))
    c.close()

    for kind, f in (("DATA", h.frame(h.DATA, 0, 1, b"x")), ("HEADERS", req(1))):
        c = Case(t, port, tls)
        c.send(req(1, path=b"/slow?ms=3000"), f)
        fs = c.until(lambda fs: any(x[0] == h.GOAWAY or (x[0] == h.RST_STREAM and x[2] == 1)
                                    for x in fs), 10)
        codes = [h.error_code(x[3]) for x in fs if x[0] in (h.GOAWAY, h.RST_STREAM)]
        t.check(codes[:1] == [h.STREAM_CLOSED],
                "RFC 9113 5.1 (%s): %s on a half-closed (remote) stream: STREAM_CLOSED "
                "(stream or connection error)" % (p, kind), summary(fs))
        c.close()

    for kind, f in (("DATA", h.frame(h.DATA, 0, 1, b"x")), ("HEADERS", req(1)),
                    ("WINDOW_UPDATE", h.frame(h.WINDOW_UPDATE, 0, 1, struct.pack(">I", 100)))):
        c = Case(t, port, tls)
        c.send(req(1, end=False, path=b"/slow?ms=3000"), rst(1), f)
        code, fs = c.rst(1)
        ok, fs2 = c.alive(3)
        t.check(code == h.STREAM_CLOSED and ok,
                "RFC 9113 5.1 (%s): %s after the client's RST_STREAM: stream error "
                "RST_STREAM(STREAM_CLOSED), the connection goes on" % (p, kind),
                summary(fs + fs2))
        c.close()
    c = Case(t, port, tls)
    c.send(req(1, end=False, path=b"/slow?ms=3000"), rst(1), priority(1, 0))
    ok, fs = c.alive(3)
    t.check(ok and not any(f[0] == h.RST_STREAM for f in fs),
            "RFC 9113 5.1 (%s): PRIORITY after the client's RST_STREAM: allowed" % p, summary(fs))
    c.close()

    for kind, f, err in (("DATA", h.frame(h.DATA, 0, 1, b"x"), True),
                         ("HEADERS", req(1), True),
                         ("WINDOW_UPDATE", h.frame(h.WINDOW_UPDATE, 0, 1, struct.pack(">I", 9)), False),
                         ("RST_STREAM", rst(1), False)):
        c = Case(t, port, tls)
        c.send(req(1))
        fs = c.until(response_done(1), 10)
        c.send(f)
        if err:
            code, fs2 = c.goaway()
            t.check(code == h.STREAM_CLOSED,
                    "RFC 9113 5.1 (%s): %s on a closed stream (END_STREAM both ways): "
                    "GOAWAY(STREAM_CLOSED)" % (p, kind), summary(fs + fs2))
        else:
            ok, fs2 = c.alive(3)
            t.check(ok and not any(x[0] == h.RST_STREAM for x in fs2),
                    "RFC 9113 5.1 (%s): %s on a closed stream just after our END_STREAM: "
                    "ignored" % (p, kind), summary(fs + fs2))
        c.close()

    # frames the client had in flight when we reset the stream: ignored
    c = Case(t, port, tls)
    c.send(h.frame(h.HEADERS, h.END_HEADERS, 1,
                   h.request_block(b"POST", b"/small", b"x", [(b"content-length", b"900000")])))
    code, fs = c.rst(1)
    c.send(h.frame(h.DATA, 0, 1, b"y" * 1000), h.frame(h.DATA, h.END_STREAM, 1, b"y" * 10))
    ok, fs2 = c.alive(3)
    t.check(code == h.NO_ERROR and ok and not any(x[0] == h.RST_STREAM for x in fs2),
            "RFC 9113 5.1 (%s): DATA in flight after our RST_STREAM (an early 413): ignored, "
            "the connection goes on" % p, summary(fs + fs2))
    c.close()

    # ---- 5.1.1 stream identifiers
    c = Case(t, port, tls)
    c.send(req(5))
    c.until(response_done(5), 10)
    c.send(req(3))
    code, fs = c.goaway()
    t.check(code == h.PROTOCOL_ERROR,
            "RFC 9113 5.1.1 (%s): a stream identifier lower than a previous one: "
            "GOAWAY(PROTOCOL_ERROR)" % p, summary(fs))
    c.close()
    c = Case(t, port, tls)
    c.send(req(2))
    code, fs = c.goaway()
    t.check(code == h.PROTOCOL_ERROR,
            "RFC 9113 5.1.1 (%s): an even stream identifier from the client: "
            "GOAWAY(PROTOCOL_ERROR)" % p, summary(fs))
    c.close()
    c = Case(t, port, tls)
    c.send(req(1), req(7))
    fs = c.until(lambda fs: response_done(1)(fs) and response_done(7)(fs), 10)
    ok, fs2 = c.alive(9)
    t.check(response_done(1)(fs) and response_done(7)(fs) and ok,
            "RFC 9113 5.1.1 (%s): identifiers may skip (1, 7, 9): served" % p, summary(fs + fs2))
    c.close()

    # ---- 5.3.1 self-dependency
    c = Case(t, port, tls)
    c.send(priority(1, 1))
    code, fs = c.goaway()
    t.check(code == h.PROTOCOL_ERROR and not any(f[0] == h.RST_STREAM for f in fs),
            "RFC 9113 5.3.1 (%s): PRIORITY making an idle stream depend on itself: "
            "GOAWAY(PROTOCOL_ERROR), no RST_STREAM on the idle stream" % p, summary(fs))
    c.close()
    c = Case(t, port, tls)
    c.send(req(1, path=b"/slow?ms=3000"), priority(1, 1))
    code, fs = c.rst(1)
    ok, fs2 = c.alive(3)
    t.check(code == h.PROTOCOL_ERROR and ok,
            "RFC 9113 5.3.1 (%s): PRIORITY making an open stream depend on itself: "
            "RST_STREAM(PROTOCOL_ERROR), the connection goes on" % p, summary(fs + fs2))
    c.close()
    c = Case(t, port, tls)
    c.send(req(1, flags=h.PRIORITY_FLAG, prefix=struct.pack(">IB", 1, 15)))
    fs = c.until(lambda fs: any(f[0] == h.GOAWAY or (f[0] == h.RST_STREAM and f[2] == 1)
                                for f in fs), 10)
    codes = [h.error_code(f[3]) for f in fs if f[0] in (h.GOAWAY, h.RST_STREAM)]
    t.check(codes[:1] == [h.PROTOCOL_ERROR],
            "RFC 9113 5.3.1 (%s): HEADERS depending on its own stream: PROTOCOL_ERROR" % p,
            summary(fs))
    c.close()

    # ---- 6.3 PRIORITY
    c = Case(t, port, tls)
    c.send(priority(0, 1))
    code, fs = c.goaway()
    t.check(code == h.PROTOCOL_ERROR,
            "RFC 9113 6.3 (%s): PRIORITY on stream 0: GOAWAY(PROTOCOL_ERROR)" % p, summary(fs))
    c.close()
    c = Case(t, port, tls)
    c.send(req(1, path=b"/slow?ms=2000"), h.frame(h.PRIORITY, 0, 1, b"\0\0\0\0"))
    fs = c.until(lambda fs: any(f[0] == h.GOAWAY or (f[0] == h.RST_STREAM and f[2] == 1)
                                for f in fs), 10)
    codes = [h.error_code(f[3]) for f in fs if f[0] in (h.GOAWAY, h.RST_STREAM)]
    t.check(codes[:1] == [h.FRAME_SIZE_ERROR],
            "RFC 9113 6.3 (%s): PRIORITY of 4 octets: FRAME_SIZE_ERROR" % p, summary(fs))
    c.close()
    c = Case(t, port, tls)
    c.send(priority(1, 0), priority(3, 1), req(1))
    fs = c.until(response_done(1), 10)
    ok, fs2 = c.alive(5)
    t.check(response_done(1)(fs) and ok,
            "RFC 9113 6.3 (%s): valid PRIORITY frames (idle and open streams): accepted, "
            "ignored" % p, summary(fs + fs2))
    c.close()


def main(t):
    be = t.backend("b1")
    tls_port = t.port()
    cert, key = t.make_cert("node", "localhost")
    node = t.shoal("""
        events { }
        http {
          server {
            listen 127.0.0.1:{port} http2;
            listen 127.0.0.1:%d ssl http2;
            ssl_certificate %s; ssl_certificate_key %s;
            client_max_body_size 1k;
            location /r { return 200 "r\\n"; }
            location /small { return 200 "small\\n"; }
            location / { proxy_pass http://127.0.0.1:%d; }
          }
        }
    """ % (tls_port, cert, key, be.port))
    sections(t, node.port, False)
    sections(t, tls_port, True)
    r = t.curl(node.url("/r"), "--http2-prior-knowledge")
    t.check(r.status == 200, "the node still serves after every case", r)


if __name__ == "__main__":
    sh.run(main)
