#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 15, adversarial suite: the smuggling and downgrade corpus.

integration/fixtures/smuggling_corpus.json holds the cases: HTTP/1.1 request
bytes, or an HTTP/2 request (header list, DATA frames) sent over h2c, each
with the statuses the client must get and the exact bytes the backend must
receive on each upstream connection ([] for nothing). The backend here is a
raw recorder (it parses framing only to answer, and records every byte).

Each case is also sent to nginx 1.22 (where installed) with the same proxy
configuration; its statuses are compared with ours and every difference must
be one the case explains ("why"); the differences are logged.

`--update` rewrites the expected statuses, backend bytes and nginx statuses
from this run (to review with git diff; never to make a failure go away).
"""

import json
import os
import select
import socket
import sys
import threading
import time

import shoal_harness as sh
import adversarial as adv
from adversarial import PREFACE, h2frame

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                      "smuggling_corpus.json")


def b2s(b):
    return b.decode("latin-1")


def s2b(s):
    return s.encode("latin-1")


# ---------------------------------------------------------------- recorder

class Recorder:
    """A raw HTTP/1.x backend: records every byte of every connection and
    answers each request it can frame with 200 "ok" and Connection: close."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = sh.free_port()
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.lock = threading.Lock()
        self.conns = []   # [bytearray, done]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self.lock:
            self.conns = []

    def settled(self):
        with self.lock:
            return all(c[1] for c in self.conns)

    def streams(self):
        with self.lock:
            return [bytes(c[0]) for c in self.conns]

    def _accept(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            rec = [bytearray(), False]
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self._serve, args=(s, rec), daemon=True).start()

    @staticmethod
    def _framed(buf):
        """Length of the first complete request in buf, or None."""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = buf[:end].lower()
        pos = end + 4
        if b"\r\ntransfer-encoding: chunked" in head:
            while True:
                le = buf.find(b"\r\n", pos)
                if le < 0:
                    return None
                size = int(buf[pos:le].split(b";")[0], 16)
                pos = le + 2
                if size == 0:
                    te = buf.find(b"\r\n\r\n", pos - 2)
                    return te + 4 if te >= 0 else None
                pos += size + 2
                if pos > len(buf):
                    return None
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                n = int(line.split(b":", 1)[1])
                return pos + n if len(buf) >= pos + n else None
        return pos

    def _serve(self, s, rec):
        s.settimeout(1.0)
        buf = b""
        try:
            while True:
                try:
                    got = s.recv(65536)
                except socket.timeout:
                    break
                if not got:
                    break
                with self.lock:
                    rec[0] += got
                buf += got
                try:
                    n = self._framed(buf)
                except ValueError:
                    n = None
                if n is not None:
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    # keep reading briefly: anything after it is recorded
                    s.settimeout(0.2)
                    buf = buf[n:]
        except OSError:
            pass
        finally:
            s.close()
            with self.lock:
                rec[1] = True


# ---------------------------------------------------------------- clients

def read_h1_responses(s, deadline, is_head=False):
    """Statuses of the responses on s until EOF or the deadline (is_head:
    responses to HEAD, without a body)."""
    buf = b""
    statuses = []
    while time.monotonic() < deadline:
        # one response at a time: head, then Content-Length or chunked body
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            line = head.split(b"\r\n", 1)[0]
            try:
                st = int(line.split()[1])
            except (IndexError, ValueError):
                return statuses + ["garbage"]
            n = 0
            chunked = False
            for h in head.split(b"\r\n")[1:]:
                k, _, v = h.partition(b":")
                if k.strip().lower() == b"content-length":
                    n = int(v)
                if k.strip().lower() == b"transfer-encoding":
                    chunked = True
            body_start = end + 4
            if is_head and st >= 200:
                n, chunked = 0, False
            if chunked:
                z = buf.find(b"\r\n0\r\n\r\n", body_start - 2)
                if z < 0:
                    break
                nxt = z + 7
            else:
                if len(buf) < body_start + n:
                    break
                nxt = body_start + n
            if st >= 200 or st == 101:
                statuses.append(st)
            buf = buf[nxt:]
        wait = max(0.0, deadline - time.monotonic())
        if statuses and not buf:
            wait = min(wait, 0.3)  # a keep-alive connection: nothing more is coming
        r, _, _ = select.select([s], [], [], wait)
        if not r:
            break
        try:
            got = s.recv(65536)
        except OSError:
            got = b""
        if not got:
            break
        buf += got
    return statuses


def h1_exchange(port, raw, timeout=2.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(raw)
    except OSError:
        pass
    st = read_h1_responses(s, time.monotonic() + timeout, is_head=raw.startswith(b"HEAD "))
    s.close()
    return st


def hp_int(v, prefix_bits, first):
    lim = (1 << prefix_bits) - 1
    if v < lim:
        return bytes([first | v])
    out = [first | lim]
    v -= lim
    while v >= 128:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def hpack(headers):
    """Literal fields without indexing, no Huffman: any bytes go as given."""
    out = b""
    for name, value in headers:
        n, v = s2b(name), s2b(value)
        out += b"\x00" + hp_int(len(n), 7, 0) + n + hp_int(len(v), 7, 0) + v
    return out


HUFF_DIGITS = {"00000": "0", "00001": "1", "00010": "2", "011001": "3", "011010": "4",
               "011011": "5", "011100": "6", "011101": "7", "011110": "8", "011111": "9"}
STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def first_status(block):
    """:status of a response header block (always its first field)."""
    b0 = block[0]
    if b0 & 0x80:
        return STATIC_STATUS.get(b0 & 0x7F)
    # literal with an indexed name (8: :status), with or without indexing
    i = 1
    ln = block[i] & 0x7F
    huff = block[i] & 0x80
    raw = block[i + 1:i + 1 + ln]
    if not huff:
        return int(raw)
    bits = "".join(f"{x:08b}" for x in raw)
    out, cur = "", ""
    for bt in bits:
        cur += bt
        if cur in HUFF_DIGITS:
            out += HUFF_DIGITS[cur]
            cur = ""
        if len(out) == 3:
            break
    return int(out)


def h2_exchange(port, case, timeout=2.0):
    """Send one request on stream 1; return its outcome: the :status, or
    "RST" (stream reset), or "GOAWAY", or None."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    block = hpack(case["headers"])
    datas = case.get("data", [])
    flags = 0x4 | (0x1 if not datas else 0)
    out = PREFACE + h2frame(4, 0, 0) + h2frame(1, flags, 1, block)
    for i, d in enumerate(datas):
        out += h2frame(0, 0x1 if i == len(datas) - 1 else 0, 1, s2b(d))
    try:
        s.sendall(out)
    except OSError:
        pass
    buf = b""
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline and result is None:
        while len(buf) >= 9:
            ln = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + ln:
                break
            ftype, fl, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload = buf[9:9 + ln]
            buf = buf[9 + ln:]
            if ftype == 4 and not fl & 1:
                s.sendall(h2frame(4, 1, 0))
            if ftype == 1 and sid == 1:
                p = payload
                if fl & 0x8:  # PADDED
                    p = p[1:len(p) - p[0]]
                if fl & 0x20:  # PRIORITY
                    p = p[5:]
                result = first_status(p)
                break
            if ftype == 3 and sid == 1:
                result = "RST"
                break
            if ftype == 7:
                result = "GOAWAY"
                break
        if result is not None:
            break
        r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        try:
            got = s.recv(65536)
        except OSError:
            got = b""
        if not got:
            result = result or "closed"
            break
        buf += got
    s.close()
    return [result]


def main(t):
    update = UPDATE
    with open(CORPUS) as f:
        corpus = json.load(f)
    cases = corpus["cases"]
    rec = Recorder()
    p_h2c = sh.free_port()
    node = t.shoal(f"""
        events {{ }}
        http {{
            server {{
                listen 127.0.0.1:{{port}};
                listen 127.0.0.1:{p_h2c} http2;
                location / {{ proxy_set_header Host $host; proxy_pass http://127.0.0.1:{rec.port}; }}
            }}
        }}""")
    ngx = None
    if os.path.exists(adv.NGINX):
        ngx = (sh.free_port(), sh.free_port())
        adv.start_nginx(t, f"server {{ listen 127.0.0.1:{ngx[0]}; listen 127.0.0.1:{ngx[1]} http2; "
                        f"location / {{ proxy_set_header Host $host; "
                        f"proxy_pass http://127.0.0.1:{rec.port}; }} }}", ngx[0])
    else:
        t.log("nginx not installed: no comparison")

    slow = []

    def run(case, port, h2port):
        t0 = time.monotonic()
        try:
            return run1(case, port, h2port)
        finally:
            slow.append((time.monotonic() - t0, case["id"], port))

    def run1(case, port, h2port):
        rec.reset()
        if case["proto"] == "h1":
            got = h1_exchange(port, s2b(case["send"]))
        else:
            got = h2_exchange(h2port, case)
        sh.wait_for(rec.settled, 5, "the backend connections end")
        return got, rec.streams()

    seen = set()
    diffs = []
    for case in cases:
        cid = case["id"]
        t.require(cid not in seen, f"case ids are unique ({cid})")
        seen.add(cid)
        got, streams = run(case, node.port, p_h2c)
        sstreams = [b2s(x) for x in streams]
        if update:
            case["status"] = got
            case["backend"] = sstreams
        else:
            t.check(got == case["status"], f"{cid}: statuses {case['status']}", got)
            t.check(sstreams == case["backend"],
                    f"{cid}: the backend received exactly the expected bytes "
                    f"({len(case['backend'])} connection(s))", sstreams)
        if ngx is not None:
            ngot, nstreams = run(case, ngx[0], ngx[1])
            if update:
                case["nginx"] = ngot
            if ngot != got:
                diffs.append((cid, got, ngot))
                t.check("why" in case, f"{cid}: differs from nginx ({got} vs nginx {ngot}) "
                        "and the case says why", case.get("why"))
            # nginx must not pass anything to the backend that we refuse
            if not streams and nstreams:
                t.log(f"{cid}: nginx forwarded {len(nstreams)} request(s) we refuse")
    slow.sort(reverse=True)
    t.log("slowest runs: " + ", ".join(f"{c} {d:.2f}s" for d, c, _ in slow[:8]))
    t.log(f"{len(cases)} cases; {len(diffs)} differ from nginx 1.22:")
    for cid, ours, theirs in diffs:
        t.log(f"  {cid}: shoal {ours}, nginx {theirs}")
    if update:
        with open(CORPUS, "w") as f:
            json.dump(corpus, f, indent=1, ensure_ascii=True)
            f.write("\n")
        t.log(f"updated {CORPUS}")


UPDATE = False

if __name__ == "__main__":
    if "--update" in sys.argv:
        sys.argv.remove("--update")
        UPDATE = True
    sh.run(main)
