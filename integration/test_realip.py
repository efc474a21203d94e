#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Real client addresses, beside nginx 1.22 on the same servers:
- set_real_ip_from + X-Forwarded-For (plain and recursive) and X-Real-IP
  change $remote_addr in the answer, in the access log and in allow/deny;
  $realip_remote_addr keeps the peer; an untrusted peer's field is ignored;
- `listen ... proxy_protocol`: PROXY v1 (TCP4, TCP6, UNKNOWN) and v2 (TCP4
  with TLVs, TCP6, LOCAL), whole or split over two writes, give
  $proxy_protocol_addr/_port/_server_addr/_server_port, and with
  `real_ip_header proxy_protocol` $remote_addr; before TLS on a TLS port;
- malformed PROXY headers close the connection without an answer and are
  logged ("broken header"), nginx closes them too.
"""
import os
import socket
import ssl
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nginx_ref  # noqa: E402
import shoal_harness as sh  # noqa: E402

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
VARS = ("$remote_addr|$remote_port|$realip_remote_addr|$proxy_protocol_addr|"
        "$proxy_protocol_port|$proxy_protocol_server_addr|$proxy_protocol_server_port")
SERVERS = """
    log_format ra '$remote_addr $realip_remote_addr $request_uri $status';
    server {
        listen 127.0.0.1:{pa};
        access_log {logs}/a.log ra;
        set_real_ip_from 127.0.0.1;
        set_real_ip_from 10.0.0.0/8;
        real_ip_header X-Forwarded-For;
        location / { return 200 "$remote_addr|$realip_remote_addr\\n"; }
        location /rec { real_ip_recursive on; return 200 "$remote_addr\\n"; }
        location /deny { deny 203.0.113.7; allow all; try_files /nonexistent =204; }
    }
    server {
        listen 127.0.0.1:{pe};
        set_real_ip_from 127.0.0.1;
        set_real_ip_from 10.0.0.0/8;
        real_ip_header X-Forwarded-For;
        real_ip_recursive on;
        location / { return 200 "$remote_addr\\n"; }
    }
    server {
        listen 127.0.0.1:{pf};
        set_real_ip_from 127.0.0.0/8;
        real_ip_header X-Real-IP;
        location / { return 200 "$remote_addr|$remote_port\\n"; }
    }
    server {
        listen 127.0.0.1:{pb};
        set_real_ip_from 192.0.2.0/24;
        real_ip_header X-Forwarded-For;
        location / { return 200 "$remote_addr\\n"; }
    }
    server {
        listen 127.0.0.1:{pc} proxy_protocol;
        set_real_ip_from 127.0.0.1;
        real_ip_header proxy_protocol;
        location / { return 200 "VARS\\n"; }
    }
    server {
        listen 127.0.0.1:{pd} proxy_protocol;
        location / { return 200 "VARS\\n"; }
    }
""".replace("VARS", VARS)


def v2(cmd, fam, addr, tlvs=b""):
    body = addr + tlvs
    return SIG + bytes([0x20 | cmd, fam]) + struct.pack(">H", len(body)) + body


def v2_tcp4(src, dst, sp, dp, tlvs=b""):
    return v2(1, 0x11, socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sp, dp),
              tlvs)


def exchange(port, pieces, timeout=5):
    """Send pieces (each its own write), then read to EOF or one response.
    Returns the bytes read ('' when the server closed without answering)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        for p in pieces:
            try:
                s.sendall(p)
            except (BrokenPipeError, ConnectionResetError):
                return b""
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not d:
                break
            out += d
            if b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        if len(body) >= int(line.split(b":")[1]):
                            return out
        return out
    finally:
        s.close()


def body_of(resp):
    return resp.partition(b"\r\n\r\n")[2].decode("latin-1").strip()


GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def main(t):
    nginx_ref.skip_unless_available()
    ports = {k: t.port() for k in ("pa", "pb", "pc", "pd", "pe", "pf")}
    nports = {k: t.port() for k in ("pa", "pb", "pc", "pd", "pe", "pf")}
    tls_port = t.port()
    cert, key = t.make_cert("pp", "localhost")

    def conf(text, p, logs):
        for k, v in p.items():
            text = text.replace("{%s}" % k, str(v))
        return text.replace("{logs}", logs)
    tls = """
    server {
        listen 127.0.0.1:%d ssl proxy_protocol;
        ssl_certificate %s;
        ssl_certificate_key %s;
        set_real_ip_from 127.0.0.1;
        real_ip_header proxy_protocol;
        location / { return 200 "$remote_addr $proxy_protocol_addr\\n"; }
    }""" % (tls_port, cert, key)
    node = t.shoal("http {\n%s\n%s\n}\n" % (conf(SERVERS, ports, "logs"), tls), port=ports["pa"])
    nlogs = os.path.join(t.tmp, "nginx-logs")
    os.makedirs(nlogs)
    nginx_ref.start(t, conf(SERVERS, nports, nlogs), port=nports["pa"])

    def both(what, path, key, *args, expect=None):
        a = t.curl("http://127.0.0.1:%d%s" % (ports[key], path), *args)
        b = t.curl("http://127.0.0.1:%d%s" % (nports[key], path), *args)
        ok = a.status == b.status and (a.status != 200 or a.body == b.body)
        if expect is not None:
            ok = ok and a.text().strip() == expect
        t.check(ok, "%s: %s %r (nginx: %s %r)" % (what, a.status, a.text().strip(), b.status,
                                                   b.text().strip()))

    both("XFF from a trusted peer", "/", "pa", "-H", "X-Forwarded-For: 203.0.113.7",
         expect="203.0.113.7|127.0.0.1")
    both("XFF, not recursive: the last address", "/", "pa", "-H",
         "X-Forwarded-For: 198.51.100.1, 10.1.2.3", expect="10.1.2.3|127.0.0.1")
    both("the server's realip applies at post-read, a location's recursion comes too late "
         "(nginx)", "/rec", "pa", "-H", "X-Forwarded-For: 198.51.100.1, 10.1.2.3",
         expect="10.1.2.3")
    both("XFF, recursive: the last untrusted address", "/", "pe", "-H",
         "X-Forwarded-For: 198.51.100.1, 10.1.2.3", expect="198.51.100.1")
    both("XFF, recursive, two fields", "/", "pe", "-H", "X-Forwarded-For: 198.51.100.2",
         "-H", "X-Forwarded-For: 10.9.9.9", expect="198.51.100.2")
    both("XFF, recursive, all trusted: the first", "/", "pe", "-H",
         "X-Forwarded-For: 10.0.0.1, 10.0.0.2", expect="10.0.0.1")
    both("XFF with a port", "/", "pa", "-H", "X-Forwarded-For: 203.0.113.9:5555",
         expect="203.0.113.9|127.0.0.1")
    both("XFF garbage: the peer", "/", "pa", "-H", "X-Forwarded-For: nonsense",
         expect="127.0.0.1|127.0.0.1")
    both("X-Real-IP (no port: $remote_port empty)", "/", "pf", "-H", "X-Real-IP: 2001:db8::5",
         expect="2001:db8::5|")
    both("deny sees the real address", "/deny", "pa", "-H", "X-Forwarded-For: 203.0.113.7")
    a = t.curl("http://127.0.0.1:%d/deny" % ports["pa"], "-H", "X-Forwarded-For: 203.0.113.7")
    t.check(a.status == 403, "deny 203.0.113.7 given by XFF: 403")
    a = t.curl("http://127.0.0.1:%d/deny" % ports["pa"], "-H", "X-Forwarded-For: 203.0.113.8")
    t.check(a.status == 204, "another XFF address: allowed")
    t.check(sh.wait_for(lambda: "client: 203.0.113.7" in node.proc.stderr(), 10,
                        "the refusal's error log line") is not False,
            "the error log's \"client:\" is the real address, as nginx's")
    both("an untrusted peer's XFF is ignored", "/", "pb", "-H", "X-Forwarded-For: 203.0.113.7",
         expect="127.0.0.1")
    log = os.path.join(node.prefix, "logs", "a.log")
    sh.wait_for(lambda: any(" /deny 403" in l for l in sh.file_lines(log)), 10, "the log line")
    t.check(any(l == "203.0.113.7 127.0.0.1 /deny 403" for l in sh.file_lines(log)),
            "the access log has the real address and $realip_remote_addr",
            "\n".join(sh.file_lines(log)))

    # ---- PROXY protocol, shoal beside nginx
    v1 = b"PROXY TCP4 198.51.100.7 192.0.2.9 40000 443\r\n"
    v16 = b"PROXY TCP6 2001:db8::7 2001:db8::9 40001 8443\r\n"
    tlv = b"\x01\x00\x02h2" + b"\x04\x00\x00" + b"\xea\x00\x05vpc-1"
    a6 = socket.inet_pton(socket.AF_INET6, "2001:db8::8") + \
        socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack(">HH", 1, 2)
    cases = [
        ("v1 TCP4", [v1 + GET], "pc", "198.51.100.7|40000|127.0.0.1|198.51.100.7|40000|192.0.2.9|443"),
        ("v1 TCP6", [v16 + GET], "pc", None),
        ("v1 UNKNOWN", [b"PROXY UNKNOWN\r\n" + GET], "pc", None),
        ("v1 split over writes", [v1[:9], v1[9:30], v1[30:] + GET], "pc", None),
        ("v2 TCP4 with TLVs", [v2_tcp4("198.51.100.8", "192.0.2.10", 40002, 80, tlv) + GET], "pc",
         "198.51.100.8|40002|127.0.0.1|198.51.100.8|40002|192.0.2.10|80"),
        ("v2 TCP6", [v2(1, 0x21, a6) + GET], "pc", None),
        ("v2 LOCAL", [v2(0, 0x00, b"") + GET], "pc", None),
        ("v2 split", [v2_tcp4("198.51.100.9", "192.0.2.1", 1, 2)[:10],
                      v2_tcp4("198.51.100.9", "192.0.2.1", 1, 2)[10:], GET], "pc", None),
        ("v1 without realip", [v1 + GET], "pd", None),
        ("v2 without realip", [v2_tcp4("198.51.100.8", "192.0.2.10", 40002, 80) + GET], "pd", None),
    ]
    for what, pieces, key, expect in cases:
        a = body_of(exchange(ports[key], pieces))
        b = body_of(exchange(nports[key], pieces))
        vals, nvals = a.split("|"), b.split("|")
        if "split" in what:  # nginx 1.22 wants the header in the first read
            ok = vals[0] != "127.0.0.1"
        elif vals[0] == "127.0.0.1":  # the peer's own port differs
            ok = vals[0] == nvals[0] and vals[2:] == nvals[2:]
        else:
            ok = a == b
        if expect is not None:
            ok = ok and a == expect
        t.check(ok and a != "", "PROXY %s: %r (nginx: %r)" % (what, a, b))

    # ---- malformed: closed, no answer, logged
    bad = [
        ("garbage", b"HELLO\r\n\r\n"),
        ("v1 bad address (nginx 1.22 takes it as text)", b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n" + GET),
        ("v1 bad port", b"PROXY TCP4 1.2.3.4 4.5.6.7 99999 2\r\n" + GET),
        ("v1 too long", b"PROXY TCP4 " + b"1" * 200 + b"\r\n"),
        ("v1 wrong protocol", b"PROXY UDP4 1.2.3.4 4.5.6.7 1 2\r\n" + GET),
        ("v2 bad version", SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12 + GET),
        ("v2 short address block", SIG + b"\x21\x11\x00\x04" + b"\x00" * 4 + GET),
        ("v2 TLV past the end (nginx 1.22 reads TLVs lazily)", v2_tcp4("1.2.3.4", "5.6.7.8", 1, 2, b"\x04\x00\x09abc") + GET),
        ("v2 too long", SIG + b"\x21\x11\xff\xff" + b"\x00" * 2000),
        ("plain HTTP", GET),
    ]
    for what, data in bad:
        a = exchange(ports["pc"], [data])
        b = exchange(nports["pc"], [data])
        t.check(a == b"" and (b == b"" or "nginx 1.22" in what),
                "malformed PROXY (%s): closed without an answer (nginx too)" % what,
                (a[:200], b[:200]))
    n_broken = lambda: node.proc.stderr().count("broken header")  # noqa: E731
    sh.wait_for(lambda: n_broken() >= len(bad), 10, "a 'broken header' error per bad connection")
    t.check(n_broken() == len(bad), "each malformed header logged once (%d)" % n_broken())
    a = body_of(exchange(ports["pc"], [v1 + GET]))
    t.check(a.startswith("198.51.100.7|"), "the port still serves after malformed headers")

    # ---- PROXY before TLS
    s = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
    s.sendall(b"PROXY TCP4 198.51.100.77 192.0.2.1 1000 443\r\n")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(s, server_hostname="localhost") as ts:
        ts.sendall(GET)
        out = b""
        while True:
            d = ts.recv(65536)
            if not d:
                break
            out += d
    t.check(body_of(out) == "198.51.100.77 198.51.100.77",
            "PROXY v1 then TLS on a TLS port: %r" % body_of(out))


if __name__ == "__main__":
    sh.run(main)
