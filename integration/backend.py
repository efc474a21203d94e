#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A demo and test backend for Shoal: a threaded HTTP/1.1 server, stdlib only.

It keeps connections alive, reads request bodies framed by Content-Length or
chunked, and streams every large body in 64 KiB pieces, so a 1 GB upload or
download never sits in its memory. Every response carries `X-Backend: NAME`.

Endpoints (any method unless noted; a request body is always read in full):
  /                    "hello from NAME\\n"
  /echo, .../echo      (any path ending in /echo, so it works behind
                       prefixed locations) JSON: backend, method, target,
                       path, query, version, headers (list of
                       [name, value] in arrival order), framing
                       ("content-length", "chunked" or "none"), body_len,
                       body_sha256
  /stream?bytes=N      (or any path ending in /stream) N deterministic bytes (see pattern_block()), with
         [&chunked=1]  Content-Length, or chunked when chunked=1 (close-
         [&abort_after=M] delimited to an HTTP/1.0 client); abort_after=M
                       resets the connection after M body bytes
  /status/CODE         that status, body "status CODE\\n" (none for 1xx/204/304)
  /slow?ms=N           waits N ms, then "slow N\\n"
  /hdr?NAME=VALUE&...  200 "hdr\\n" with each query pair as a response field
                       (in order, repeatable); status=CODE sets the status
  /raw/KIND            a broken response, then close: KIND is garbage (not
                       HTTP), cl_te (Content-Length and Transfer-Encoding
                       both), bad_cl (Content-Length: abc), or empty (close
                       without a byte)
  /stats               JSON counters (below); not counted itself
  /health              "ok\\n"; not counted

Counters (/stats): `accepted` is every TCP connection accepted (readiness
probes included); `connections` is the connections that carried at least one
counted request; `received` is every request line read that is not for
/stats or /health, including ones this server itself rejects; `requests` is
those it answered; `paths` counts received request targets (without query);
`in_flight` is counted requests being handled now.

CLI: backend.py --port P --name NAME [--host 127.0.0.1] [--quiet]
Prints "listening on http://HOST:PORT" and then "ready" on stdout once the
socket listens. SIGTERM or SIGINT stops it.
"""

import argparse
import hashlib
import http.server
import json
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

PIECE = 64 * 1024
ADMIN_PATHS = ("/stats", "/health")


def pattern_block():
    """The 64 KiB block /stream repeats: byte i of a stream is
    block[i % 65536]. Built from SHA-256 so it neither compresses nor
    repeats within a block, which makes misplaced or dropped pieces show."""
    out = bytearray()
    k = 0
    while len(out) < PIECE:
        out += hashlib.sha256(b"shoal-stream-%d" % k).digest()
        k += 1
    return bytes(out[:PIECE])


BLOCK = pattern_block()


def pattern_pieces(n, piece=PIECE):
    """Yield the first n bytes of the stream pattern in pieces of at most
    `piece` bytes (piece must divide 65536)."""
    assert PIECE % piece == 0
    off = 0
    while off < n:
        take = min(piece, n - off)
        start = off % PIECE
        yield BLOCK[start:start + take]
        off += take


def pattern_sha256(n):
    """SHA-256 hex of the first n bytes of the stream pattern."""
    h = hashlib.sha256()
    for p in pattern_pieces(n):
        h.update(p)
    return h.hexdigest()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = 0
        self.connections = 0
        self.received = 0
        self.requests = 0
        self.in_flight = 0
        self.paths = {}

    def snapshot(self):
        with self.lock:
            return {
                "accepted": self.accepted,
                "connections": self.connections,
                "received": self.received,
                "requests": self.requests,
                "in_flight": self.in_flight,
                "paths": dict(self.paths),
            }


class BadBody(Exception):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shoal-test-backend/1"

    # -- connection and request accounting ---------------------------------

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY,
        # Nagle plus the peer's delayed ACK stalls every response ~40 ms.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.counted_conn = False
        with self.server.stats.lock:
            self.server.stats.accepted += 1

    def parse_request(self):
        # Count the request line before validating it, so a request that
        # reached us malformed still shows in `received`.
        path = ""
        parts = self.raw_requestline.decode("latin-1").split()
        if len(parts) >= 2:
            path = parts[1].split("?", 1)[0]
        self.counted = path not in ADMIN_PATHS
        if self.counted:
            st = self.server.stats
            with st.lock:
                st.received += 1
                st.paths[path] = st.paths.get(path, 0) + 1
                if not self.counted_conn:
                    st.connections += 1
                    self.counted_conn = True
        return super().parse_request()

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            sys.stderr.write("%s [%s] %s\n" % (self.server.name, self.address_string(), fmt % args))

    # -- bodies ---------------------------------------------------------------

    def framing(self):
        te = self.headers.get_all("Transfer-Encoding") or []
        if any("chunked" in v.lower() for v in te):
            return "chunked"
        if self.headers.get("Content-Length") is not None:
            return "content-length"
        return "none"

    def body_pieces(self):
        """Yield the request body in pieces, whatever its framing."""
        framing = self.framing()
        if framing == "chunked":
            while True:
                line = self.rfile.readline(4098)
                if not line.endswith(b"\n"):
                    raise BadBody("chunk size line too long or truncated")
                size_s = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_s, 16)
                except ValueError:
                    raise BadBody("bad chunk size %r" % size_s)
                if size == 0:
                    while True:  # trailers, up to the empty line
                        t = self.rfile.readline(4098)
                        if not t:
                            raise BadBody("truncated trailers")
                        if t in (b"\r\n", b"\n"):
                            return
                while size > 0:
                    data = self.rfile.read(min(PIECE, size))
                    if not data:
                        raise BadBody("truncated chunk")
                    size -= len(data)
                    yield data
                if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    raise BadBody("missing CRLF after chunk")
        elif framing == "content-length":
            try:
                left = int(self.headers["Content-Length"])
            except ValueError:
                raise BadBody("bad Content-Length")
            if left < 0:
                raise BadBody("negative Content-Length")
            while left > 0:
                data = self.rfile.read(min(PIECE, left))
                if not data:
                    raise BadBody("truncated body")
                left -= len(data)
                yield data

    def drain(self):
        n = 0
        h = hashlib.sha256()
        for p in self.body_pieces():
            n += len(p)
            h.update(p)
        return n, h.hexdigest()

    # -- responses -------------------------------------------------------------

    def send_simple(self, code, body, ctype="text/plain"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("X-Backend", self.server.name)
        no_body = code < 200 or code in (204, 304)
        if not no_body:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        # head and body in one write, as real servers send a small answer:
        # a backend killed between two writes would hand the proxy a head
        # without its body, which nobody can retry (nginx neither)
        self._headers_buffer.append(b"\r\n")
        if not no_body and self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def send_json(self, obj, code=200):
        self.send_simple(code, json.dumps(obj, indent=1) + "\n", "application/json")

    def abort_connection(self):
        """Reset the connection (RST, not FIN): a backend dying mid-response."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    # -- dispatch ---------------------------------------------------------------

    def dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        q = urllib.parse.parse_qs(url.query)
        st = self.server.stats
        if self.counted:
            with st.lock:
                st.in_flight += 1
        try:
            self.route(path, q)
        except BadBody as e:
            self.close_connection = True
            try:
                self.send_simple(400, "bad body: %s\n" % e)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            if self.counted:
                with st.lock:
                    st.in_flight -= 1
                    st.requests += 1

    def route(self, path, q):
        name = self.server.name
        if path == "/echo" or path.endswith("/echo"):
            n, digest = self.drain()
            self.send_json({
                "backend": name,
                "method": self.command,
                "path": path,
                "target": self.path,
                "query": urllib.parse.urlsplit(self.path).query,
                "version": self.request_version,
                "headers": [[k, v] for k, v in self.headers.items()],
                "framing": self.framing(),
                "body_len": n,
                "body_sha256": digest,
            })
            return
        self.drain()
        if path == "/":
            self.send_simple(200, "hello from %s\n" % name)
        elif path == "/health":
            self.send_simple(200, "ok\n")
        elif path == "/stats":
            snap = self.server.stats.snapshot()
            snap["backend"] = name
            self.send_json(snap)
        elif path.startswith("/status/"):
            try:
                code = int(path[len("/status/"):])
                if not 100 <= code <= 999:
                    raise ValueError
            except ValueError:
                self.send_simple(400, "bad status\n")
                return
            self.send_simple(code, "status %d\n" % code)
        elif path == "/hdr" or path.endswith("/hdr"):
            pairs = urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)
            code = int(dict(pairs).get("status", "200"))
            body = b"hdr\n"
            self.send_response(code)
            self.send_header("X-Backend", self.server.name)
            for k, v in pairs:
                if k != "status":
                    self.send_header(k, v)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        elif path == "/slow":
            ms = int(q.get("ms", ["1000"])[0])
            time.sleep(ms / 1000.0)
            self.send_simple(200, "slow %d\n" % ms)
        elif path.startswith("/raw/") or "/raw/" in path:
            self.raw_broken(path.rsplit("/", 1)[-1])
        elif path == "/stream" or path.endswith("/stream"):
            self.stream(q)
        else:
            self.send_simple(404, "not found: %s\n" % path)

    RAW = {
        "garbage": b"HELLO THERE\r\n\r\n",
        "cl_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n0\r\n\r\n",
        "bad_cl": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello",
        "empty": b"",
    }

    def raw_broken(self, kind):
        data = self.RAW.get(kind)
        if data is None:
            self.send_simple(404, "no raw kind %s\n" % kind)
            return
        self.close_connection = True
        self.wfile.write(data)
        self.wfile.flush()

    def stream(self, q):
        n = int(q.get("bytes", ["0"])[0])
        chunked = q.get("chunked", ["0"])[0] == "1"
        abort_after = int(q.get("abort_after", ["-1"])[0])
        http10 = self.request_version == "HTTP/1.0"
        self.send_response(200)
        self.send_header("X-Backend", self.server.name)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("X-Stream-Sha256", pattern_sha256(n) if n <= 64 * 1024 * 1024 else "-")
        if chunked and not http10:
            self.send_header("Transfer-Encoding", "chunked")
        elif chunked and http10:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(n))
        self.end_headers()
        if self.command == "HEAD":
            return
        sent = 0
        for piece in pattern_pieces(n):
            if abort_after >= 0 and sent + len(piece) > abort_after:
                piece = piece[:abort_after - sent]
                if piece:
                    self._write_piece(piece, chunked and not http10)
                self.wfile.flush()
                self.abort_connection()
                return
            self._write_piece(piece, chunked and not http10)
            sent += len(piece)
        if chunked and not http10:
            self.wfile.write(b"0\r\n\r\n")

    def _write_piece(self, piece, chunked):
        if chunked:
            self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
        else:
            self.wfile.write(piece)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = dispatch


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, name, quiet):
        self.name = name
        self.quiet = quiet
        self.stats = Stats()
        super().__init__(addr, Handler)


def main():
    ap = argparse.ArgumentParser(description="Shoal demo/test backend")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--quiet", action="store_true", help="no per-request log on stderr")
    args = ap.parse_args()

    srv = Server((args.host, args.port), args.name, args.quiet)

    def stop(signum, frame):
        # shutdown() waits for serve_forever, so run it off the main thread.
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = srv.server_address[:2]
    print("listening on http://%s:%d" % (host, port), flush=True)
    print("ready", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
