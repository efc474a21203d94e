#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 18: geo and split_clients beside nginx 1.22, as variables in
`return` bodies:
- geo on a variable (X-IP) with CIDRs of several lengths (the longest wins),
  single addresses, IPv6, delete, default, a value that is not an address;
- geo on the client address with proxy and proxy_recursive (the address
  from X-Forwarded-For when the peer is a trusted proxy);
- geo ranges (the last range that holds the address);
- split_clients with fractional percents and `*`: 50 keys x 4 splits land in the same
  bucket as on nginx (MurmurHash2 as nginx's)."""
import nginx_ref
import shoal_harness as sh

HTTP = """
    geo $http_x_ip $net {
        default none;
        10.0.0.0/8 ten;
        10.1.0.0/16 ten-one;
        10.1.2.0/24 ten-one-two;
        10.1.2.3 host;
        192.168.0.0/16 private;
        2001:db8::/32 doc6;
        2001:db8:1::/48 doc6-1;
        172.16.0.0/12 deleted;
        delete 172.16.0.0/12;
    }
    geo $client {
        default world;
        proxy 127.0.0.0/8;
        proxy 10.9.0.0/16;
        proxy_recursive;
        10.1.0.0/16 inside;
        127.0.0.0/8 loop;
    }
    geo $http_x_ip $range {
        ranges;
        default out;
        10.0.0.0-10.0.0.255 r1;
        10.0.0.100-10.0.0.120 r2;
        10.0.1.0-10.0.1.10 r3;
        192.168.1.1-192.168.1.1 single;
    }
    split_clients "${arg_k}salt" $bucket {
        10% a;
        20.5% b;
        0.25% c;
        50% d;
        * e;
    }
    split_clients "$arg_k" $half {
        50% x;
        50% y;
    }
    split_clients "pre${arg_k}post" $third {
        33.33% p;
        33.33% q;
        * r;
    }
    split_clients "$arg_k$arg_k$arg_k" $tiny {
        0.5% one;
        1% two;
        95% three;
    }
    server {
        listen 127.0.0.1:{port};
        location / { return 200 "$net|$client|$range|$bucket|$half|$third|$tiny"; }
    }
"""

IPS = ["10.1.2.3", "10.1.2.4", "10.1.9.9", "10.200.0.1", "192.168.44.1", "172.16.5.5",
       "8.8.8.8", "2001:db8::1", "2001:db8:1::5", "2001:db9::1", "garbage", "",
       "10.0.0.5", "10.0.0.110", "10.0.0.150", "10.0.1.5", "10.0.1.11", "192.168.1.1"]
XFF = ["", "10.1.5.5", "8.8.8.8, 10.1.5.5", "10.1.5.5, 10.9.1.1", "10.1.5.5, 10.9.1.1, 10.9.2.2",
       "bogus"]


def main(t):
    nginx_ref.skip_unless_available()
    node = t.shoal("events { }\nhttp {\n" + HTTP + "\n}\n")
    _, nport, _ = nginx_ref.start(t, HTTP)

    def both(path, *args):
        a = t.curl("http://127.0.0.1:%d%s" % (nport, path), *args)
        b = t.curl(node.url(path), *args)
        return (a.status, a.body), (b.status, b.body)

    for ip in IPS:
        want, got = both("/", "-H", "X-IP: " + ip)
        t.check(got == want, "geo X-IP %r: as nginx %r" % (ip, want[1]), "shoal %r" % (got,))
    for xff in XFF:
        want, got = both("/", "-H", "X-Forwarded-For: " + xff)
        t.check(got == want, "geo proxy X-Forwarded-For %r: as nginx %r" % (xff, want[1]),
                "shoal %r" % (got,))
    bad = []
    for k in range(50):
        want, got = both("/?k=%d" % k)
        if got != want:
            bad.append((k, got, want))
    t.check(not bad, "split_clients: 50 keys x 4 splits in nginx's buckets", bad[:5])

    conf = t.write_conf("""
        events { }
        http { split_clients $uri $x { 60% a; 50% b; } server { listen 127.0.0.1:1; } }""",
                        name="bad.conf")
    res = t.run_shoal(["-t", "-c", conf])
    t.check(res.returncode == 1 and "greater than 100%" in res.stderr,
            "split_clients over 100% is refused", res.stderr)


if __name__ == "__main__":
    sh.run(main)
