# SPDX-License-Identifier: Apache-2.0
"""Helpers of the adversarial suite (issue 15): many slow or idle clients
driven from one thread, and a normal client that measures its latency
meanwhile. Stdlib only.

- Swarm(port, n, data, step, ...): n connections that each send `prefix`
  at once and then `data` one byte per `step` seconds, from one thread
  (select), recording when the server closes each; optionally over TLS.
- Normal(port): a thread that sends GET / on a new connection in a loop
  and records (time, latency, status) until stopped.
- client_hello(): the bytes of a real TLS ClientHello (Python's ssl).
- h2frame(): an HTTP/2 frame.
- start_nginx(t, http, port): nginx 1.22 (NGINX) beside shoal for
  differential checks, with `http` as the inside of its http {} block.
"""

import os
import select
import socket
import ssl
import struct
import threading
import time

import shoal_harness as sh

NGINX = "/usr/sbin/nginx"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def client_hello():
    """The bytes of a real TLS ClientHello."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="a.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def tls_context(alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


class Swarm:
    """n connections trickling data a byte per step (see the module doc)."""

    def __init__(self, port, n, data, step, prefix=b"", tls=None, stop_after=None):
        self.port, self.n, self.data, self.step = port, n, data, step
        self.prefix, self.tls, self.stop_after = prefix, tls, stop_after
        self.conns = []  # [sock, next byte, opened_at, closed_at]
        self.failed_connects = 0
        self._halt = threading.Event()
        self._th = None

    def open(self):
        for _ in range(self.n):
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                if self.tls is not None:
                    s = self.tls.wrap_socket(s, server_hostname="a.test")
                if self.prefix:
                    s.sendall(self.prefix)
                s.setblocking(False)
            except OSError:
                self.failed_connects += 1
                continue
            self.conns.append([s, 0, time.monotonic(), None])
        return self

    def start(self):
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()
        return self

    def _close(self, c, now):
        if c[3] is None:
            c[3] = now
            try:
                c[0].close()
            except OSError:
                pass

    def _run(self):
        t0 = time.monotonic()
        next_send = t0
        while not self._halt.is_set():
            now = time.monotonic()
            sending = self.stop_after is None or now - t0 < self.stop_after
            if now >= next_send:
                next_send = now + self.step
                for c in self.conns:
                    if c[3] is not None or not sending or c[1] >= len(self.data):
                        continue
                    try:
                        c[0].send(self.data[c[1]:c[1] + 1])
                        c[1] += 1
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                        pass
                    except OSError:
                        self._close(c, time.monotonic())
            live = [c for c in self.conns if c[3] is None]
            if not live:
                time.sleep(0.05)  # nothing to watch; stop() ends the loop
                continue
            wait = max(0.0, min(next_send - time.monotonic(), 0.1))
            socks = {c[0]: c for c in live}
            try:
                r, _, _ = select.select(list(socks), [], [], wait)
            except (OSError, ValueError):
                r = []
            for s in r:
                c = socks[s]
                try:
                    got = s.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    continue
                except OSError:
                    got = b""
                if not got:
                    self._close(c, time.monotonic())

    def open_count(self):
        return sum(1 for c in self.conns if c[3] is None)

    def lifetimes(self):
        """Seconds from connect to the server's close, of those closed."""
        return sorted(c[3] - c[2] for c in self.conns if c[3] is not None)

    def stop(self):
        self._halt.set()
        if self._th is not None:
            self._th.join(10)
        for c in self.conns:
            if c[3] is None:
                try:
                    c[0].close()
                except OSError:
                    pass


class Normal(threading.Thread):
    """GET / on a new connection in a loop; records (t, latency, status)."""

    def __init__(self, port, path="/", interval=0.05, tls=None):
        super().__init__(daemon=True)
        self.port, self.path, self.interval, self.tls = port, path, interval, tls
        self.samples = []
        self._halt = threading.Event()

    def one(self):
        t0 = time.monotonic()
        status = None
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            if self.tls is not None:
                s = self.tls.wrap_socket(s, server_hostname="a.test")
            s.sendall(b"GET " + self.path.encode() + b" HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n")
            buf = b""
            while True:
                got = s.recv(65536)
                if not got:
                    break
                buf += got
            s.close()
            line = buf.split(b"\r\n", 1)[0]
            status = int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else None
        except OSError:
            status = None
        return t0, time.monotonic() - t0, status

    def run(self):
        while not self._halt.is_set():
            self.samples.append(self.one())
            self._halt.wait(self.interval)

    def mark(self):
        return len(self.samples)

    def since(self, mark):
        return self.samples[mark:]

    def stop(self):
        self._halt.set()
        self.join(10)


def latency_summary(samples):
    """(count, failures, p50 ms, p99 ms, max ms) of Normal samples."""
    if not samples:
        return 0, 0, None, None, None
    lat = sorted(s[1] * 1000 for s in samples)
    fails = sum(1 for s in samples if s[2] != 200)

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1)
    return len(samples), fails, pct(0.5), pct(0.99), round(lat[-1], 1)


def start_nginx(t, http, port):
    """Run nginx (one worker, no daemon) with `http` inside its http {}
    block under t's temp dir, stopped with the test; waits for port."""
    d = os.path.join(t.tmp, "nginx")
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; master_process off; worker_processes 1;
error_log {d}/logs/error.log info; pid {d}/nginx.pid;
events {{ worker_connections 256; }}
http {{ access_log off; client_body_temp_path {d}/cb; proxy_temp_path {d}/pt;
{http}
}}
""")
    p = t._spawn("nginx", [NGINX, "-p", d, "-c", conf], os.path.join(d, "run"))
    sh.wait_for(lambda: sh.port_accepts(port), 10, "nginx listening")
    return p
