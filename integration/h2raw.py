# SPDX-License-Identifier: Apache-2.0
"""A minimal HTTP/2 client for tests that must write frames by hand
(RST_STREAM at a chosen moment, malformed requests, protocol errors):
frames as given, header blocks from HPACK's static table and literals, no
Huffman. Cleartext (h2c, prior knowledge) or TLS (ALPN h2)."""
import re
import socket
import ssl
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 2, 3, 4, 6, 7
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, ACK, END_HEADERS, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x20
# error codes (RFC 9113 7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL = 0x5, 0x6, 0x7, 0x8


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def _lit(n):
    """An HPACK string length (7-bit prefix, no Huffman)."""
    if n < 127:
        return bytes([n])
    out, n = bytearray([127]), n - 127
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def request_block(method=b"GET", path=b"/", authority=b"x", extra=()):
    out = bytearray([0x82 if method == b"GET" else 0x83, 0x86])  # :method, :scheme http
    out += b"\x04" + _lit(len(path)) + path  # literal without indexing, name :path
    out += b"\x01" + _lit(len(authority)) + authority  # :authority
    for name, value in extra:
        out += b"\x00" + _lit(len(name)) + name + _lit(len(value)) + value
    return bytes(out)


def error_code(payload):
    """The error code of a RST_STREAM payload, or of a GOAWAY's."""
    if len(payload) == 4:
        return struct.unpack(">I", payload)[0]
    return struct.unpack(">I", payload[4:8])[0]


class Conn:
    """preface: bytes sent first (the preface and an empty SETTINGS unless
    given); tls: ALPN h2 over TLS, certificates not verified."""

    def __init__(self, port, timeout=10, tls=False, preface=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
            assert self.sock.selected_alpn_protocol() == "h2", self.sock.selected_alpn_protocol()
        self.buf = b""
        self.eof = False
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0) if preface is None else preface)

    def send(self, data):
        """False when the server already closed."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def frames_until(self, pred, timeout=10):
        """Frames (type, flags, stream, payload) read until pred(frames) or
        EOF or the deadline; returns them."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            while len(self.buf) >= 9:
                n = struct.unpack(">I", b"\0" + self.buf[:3])[0]
                if len(self.buf) < 9 + n:
                    break
                sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
                out.append((self.buf[3], self.buf[4], sid, self.buf[9:9 + n]))
                self.buf = self.buf[9 + n:]
            if pred(out) or time.monotonic() >= deadline:
                return out
            if self.eof:
                return out
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return out
            except (ConnectionResetError, ssl.SSLError, OSError):
                d = b""
            if not d:
                self.eof = True
                continue
            self.buf += d

    def ack_settings(self, timeout=10):
        """Read up to the server's SETTINGS and acknowledge it; the frames read."""
        fs = self.frames_until(lambda fs: any(f[0] == SETTINGS and not f[1] & ACK for f in fs),
                               timeout)
        self.send(frame(SETTINGS, ACK, 0))
        return fs

    def close(self):
        self.sock.close()


# ------------------------------------------------ nghttp -nv output --

def nghttp_events(out):
    """(kind, detail) of nghttp -nv output, in order: ("status", 413),
    ("clen", 176), ("data", (length, end_stream)), ("rst", code)."""
    ev = []
    for line in out.splitlines():
        m = re.search(r"recv \(stream_id=\d+\) :status: (\d+)", line)
        if m:
            ev.append(("status", int(m.group(1))))
        m = re.search(r"recv \(stream_id=\d+\) content-length: (\d+)", line)
        if m:
            ev.append(("clen", int(m.group(1))))
        m = re.search(r"recv DATA frame <length=(\d+), flags=0x(\w+)", line)
        if m:
            ev.append(("data", (int(m.group(1)), int(m.group(2), 16) & 1)))
        m = re.search(r"recv RST_STREAM frame", line)
        if m:
            ev.append(("rst", None))
        m = re.search(r"\(error_code=(\w+)\(", line)
        if m and ev and ev[-1] == ("rst", None):
            ev[-1] = ("rst", m.group(1))
    return ev


def whole_then_reset(ev):
    """The response's DATA add up to its content-length, END_STREAM on the
    last, and RST_STREAM(NO_ERROR) comes after (not before) it."""
    clen = next((v for k, v in ev if k == "clen"), None)
    data = [v for k, v in ev if k == "data"]
    got = sum(n for n, _ in data)
    end_at = next((i for i, (k, v) in enumerate(ev) if k == "data" and v[1]), None)
    rst_at = [i for i, (k, v) in enumerate(ev) if k == "rst"]
    return (clen is not None and got == clen and end_at is not None and len(rst_at) == 1 and
            rst_at[0] > end_at and ev[rst_at[0]][1] == "NO_ERROR")
