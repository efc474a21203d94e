# SPDX-License-Identifier: Apache-2.0
"""A minimal cleartext HTTP/2 client for tests that must write frames by
hand (RST_STREAM at a chosen moment, malformed requests): frames as given,
header blocks from HPACK's static table and literals, no Huffman."""
import socket
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
END_STREAM, END_HEADERS = 0x1, 0x4
CANCEL = 0x8


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


class Conn:
    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))

    def send(self, data):
        self.sock.sendall(data)

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
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return out
            if not d:
                return out
            self.buf += d

    def close(self):
        self.sock.close()
