#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 3: ip_hash with real backends and real client addresses.

On loopback, every 127.x.y.z is a local address, so curl --interface
127.x.y.z gives each request the client address we want. Four backends
under `ip_hash`:
- every client of one /24 (nginx hashes the first three octets) goes to
  the same backend, request after request;
- the backend is the one nginx's formula names (hash = 89, then
  (hash * 113 + octet) % 6271 per octet, % 4), computed here;
- different /24s use several backends;
- when a client's backend dies, that /24 moves to the backend nginx's
  rehash names and stays there, while the other /24s do not move."""

import shoal_harness as sh


def ip_hash_index(octets, n, dead=()):
    h = 89
    for _ in range(21):
        for o in octets:
            h = (h * 113 + o) % 6271
        if h % n not in dead:
            return h % n
    return None


def subnet(k):
    x = ((k + 1) * 2654435761) & 0xffffffff
    return (1 + (x >> 16) % 254, (x >> 8) & 0xff)  # 127.A.B.0/24


def main(t):
    bs = [t.backend("b%d" % i) for i in range(4)]
    servers = "\n".join("server 127.0.0.1:%d;" % b.port for b in bs)
    node = t.shoal(f"""
        worker_processes 1;
        events {{ }}
        http {{
            upstream sticky {{
                ip_hash;
                {servers}
            }}
            server {{
                listen 127.0.0.1:{{port}};
                location / {{ proxy_pass http://sticky; }}
            }}
        }}""")

    def ask(src):
        r = t.curl(node.url("/"), "--interface", src)
        return r.header("X-Backend") if r.status == 200 else "status %s" % r.status

    r = t.curl(node.url("/"), "--interface", "127.9.9.9")
    t.require(r.status == 200, "a request from 127.9.9.9 through --interface works", r)

    nets = [subnet(k) for k in range(12)]
    got = {}
    all_ok = True
    for a, b in nets:
        names = [ask("127.%d.%d.%d" % (a, b, host)) for host in (1, 2, 77, 200) for _ in range(2)]
        want = "b%d" % ip_hash_index((127, a, b), 4)
        got[(a, b)] = names[0]
        if names != [want] * len(names):
            all_ok = False
            t.log("127.%d.%d.0/24: got %s, want %s" % (a, b, names, want))
    t.check(all_ok, "each /24 sticks to the backend nginx's ip_hash names (12 subnets, "
            "4 hosts, 2 requests each)")
    used = set(got.values())
    t.log("backends used by the 12 subnets: %s" % sorted(used))
    t.check(len(used) >= 3, "different /24s spread over the backends", got)

    # the first subnet's backend dies: that /24 moves, the others stay
    a, b = nets[0]
    victim = ip_hash_index((127, a, b), 4)
    t.log("killing b%d (serves 127.%d.%d.0/24)" % (victim, a, b))
    bs[victim].proc.kill()
    moved = [ask("127.%d.%d.%d" % (a, b, host)) for host in (1, 2, 77, 200) for _ in range(2)]
    want = "b%d" % ip_hash_index((127, a, b), 4, dead=(victim,))
    t.check(moved == [want] * len(moved),
            "its clients all move to %s, nginx's rehash, and stay" % want, moved)
    others = {n: ask("127.%d.%d.5" % n) for n in nets[1:]}
    t.check(all(others[n] == got[n] for n in nets[1:] if got[n] != "b%d" % victim),
            "clients of the live backends do not move", (got, others))


if __name__ == "__main__":
    sh.run(main)
