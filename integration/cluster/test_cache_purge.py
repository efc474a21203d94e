# SPDX-License-Identifier: Apache-2.0
"""Issue 12: purging the response cache of a node, through nodectl and the
admin API (POST /v1/cache/purge), and its observability (nodectl cache
stats, shoal_cache_* on /metrics).

A node with proxy_cache in front of an origin that counts requests
(cache_origin.py). Entries tagged by Surrogate-Key: a tag purge removes
every entry with that tag and nothing else; a key purge (the evaluated
proxy_cache_key, `http127.0.0.1:PORT/...` as nginx builds it) removes that
entry; a prefix purge every key under it; a soft purge marks the entry
stale, so `proxy_cache_use_stale updating` serves it while one request
refreshes it. Over HTTP/1.1 and HTTP/2 (h2c)."""
import json
import os
import sys
import urllib.request

import cluster_util as cu

sh = cu.sh
HERE = os.path.dirname(os.path.abspath(__file__))
ORIGIN_PY = os.path.join(os.path.dirname(HERE), "cache_origin.py")

CONF = """
events { }
http {
    proxy_cache_path %(cdir)s keys_zone=pz:10m;
    server {
        listen 127.0.0.1:{port};
        listen 127.0.0.1:%(h2)d http2;
        add_header X-Cache-Status $upstream_cache_status always;
        proxy_cache pz;
        proxy_cache_valid 200 10m;
        location / { proxy_pass http://127.0.0.1:%(o)d; }
        location /soft/ {
            proxy_cache_use_stale updating;
            proxy_pass http://127.0.0.1:%(o)d;
        }
    }
}
cluster {
    node_name cp; bind 127.0.0.1:%(g)d; admin_listen %(admin)s;
    encrypt_key_file %(key)s; profile local;
}
"""


def count_of(body):
    for w in (body or b"").split(b"\n", 1)[0].decode("latin1").split():
        if w.startswith("n="):
            return int(w[2:])
    return None


def main(t, ctl):
    oport = t.port()
    d = t._subdir("origin")
    origin = t._spawn("origin", [sys.executable, ORIGIN_PY, "--port", str(oport)], d)
    sh.wait_for(lambda: "ready" in origin.stdout() and sh.port_accepts(oport), 15, "origin")
    key = cu.write_keys(t, [cu.new_key()])
    admin = "127.0.0.1:%d" % t.port()
    h2 = t.port()
    node = t.shoal(CONF % {"cdir": os.path.join(t.tmp, "cache"), "h2": h2, "o": oport,
                           "g": t.port(), "admin": admin, "key": key})
    sh.wait_for(lambda: ctl.members(admin) is not None, 15, "admin API")

    def get(path, h2c=False):
        if h2c:
            r = t.curl("http://127.0.0.1:%d%s" % (h2, path), "--http2-prior-knowledge")
        else:
            r = t.curl(node.url(path))
        return r.header("X-Cache-Status"), count_of(r.body)

    for proto, h2c in (("h1", False), ("h2", True)):
        red = "red-" + proto  # tags are node-wide: one per protocol's round
        paths = {"a": "/t/%s/a?tag=%s%%20blue" % (proto, red), "b": "/t/%s/b?tag=%s" % (proto, red),
                 "c": "/t/%s/c?tag=green" % proto, "d": "/u/%s/d" % proto}
        for p in paths.values():
            get(p, h2c)
        t.check(all(get(p, h2c)[0] == "HIT" for p in paths.values()),
                "%s: four entries cached" % proto)
        # tag purge through nodectl: red goes (a and b), green and untagged stay
        r = ctl.run("cache", "purge", "--tag", red, addr=admin)
        t.check(r.returncode == 0 and "purged 2 entries" in r.stdout,
                "%s: nodectl cache purge --tag red: 2 entries" % proto, r.stdout + r.stderr)
        got = {k: get(p, h2c) for k, p in paths.items()}
        t.check(got["a"] == ("MISS", 2) and got["b"] == ("MISS", 2) and
                got["c"] == ("HIT", 1) and got["d"] == ("HIT", 1),
                "%s: a tag purge removes every entry with the tag and nothing else" % proto, got)
        # key purge: the evaluated proxy_cache_key, as nginx builds it
        k = "http127.0.0.1:%d%s" % (oport, paths["c"])
        r = ctl.run("cache", "purge", "--key", k, "--json", addr=admin)
        t.check(r.returncode == 0 and json.loads(r.stdout)["purged"] == 1,
                "%s: nodectl cache purge --key %s" % (proto, k), r.stdout + r.stderr)
        t.check(get(paths["c"], h2c) == ("MISS", 2), "%s: the purged key is a MISS" % proto)
        # prefix purge through the admin API
        body = json.dumps({"prefix": "http127.0.0.1:%d/u/%s/" % (oport, proto)}).encode()
        req = urllib.request.Request("http://%s/v1/cache/purge" % admin, data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as f:
            res = json.loads(f.read())
        t.check(res["purged"] == 1 and res["zones"][0]["zone"] == "pz",
                "%s: POST /v1/cache/purge {prefix}" % proto, res)
        t.check(get(paths["d"], h2c) == ("MISS", 2) and get(paths["a"], h2c) == ("HIT", 2),
                "%s: the prefix purge removed /u/ only" % proto)
        # soft purge: marked stale, served while one request refreshes it
        sp = "/soft/%s?ms=1500" % proto
        get(sp, h2c)
        r = ctl.run("cache", "purge", "--key", "http127.0.0.1:%d%s" % (oport, sp), "--soft",
                    addr=admin)
        t.check(r.returncode == 0 and "marked stale" in r.stdout, "%s: soft purge" % proto,
                r.stdout + r.stderr)
        import threading
        box = []
        th = threading.Thread(target=lambda: box.append(get(sp, h2c)))
        th.start()
        sh.wait_for(lambda: json.loads(urllib.request.urlopen(
            "http://127.0.0.1:%d/__count?t=%s" % (oport, urllib.request.quote(sp, safe=""))).read())["n"] >= 2,
            10, "the refresh to reach the origin")
        other = get(sp, h2c)
        th.join(30)
        t.check(other == ("UPDATING", 1) and box == [("EXPIRED", 2)],
                "%s: after a soft purge, UPDATING from the old entry while one refreshes" % proto,
                (other, box))

    # errors are 400 and change nothing
    for bad in ({}, {"key": "x", "tag": "y"}, {"key": 5}, {"tag": "x", "soft": "yes"}):
        req = urllib.request.Request("http://%s/v1/cache/purge" % admin,
                                     data=json.dumps(bad).encode(), method="POST")
        try:
            urllib.request.urlopen(req, timeout=10)
            code = 200
        except urllib.error.HTTPError as e:
            code = e.code
        t.check(code == 400, "purge %s: 400" % bad, code)
    r = ctl.run("cache", "purge", addr=admin)
    t.check(r.returncode == 2, "nodectl cache purge without --key/--prefix/--tag: usage error", r.stderr)

    # stats and metrics
    st = ctl.json(admin, "cache", "stats")
    z = st[0] if st else {}
    t.check(z.get("zone") == "pz" and z.get("hits", 0) >= 8 and z.get("misses", 0) >= 8 and
            z.get("fills", 0) >= 8 and z.get("purged", 0) >= 6 and z.get("entries", 0) >= 1 and
            z.get("bytes_served", 0) > 0,
            "nodectl cache stats --json: hits, misses, fills, purged, entries, bytes served", z)
    r = ctl.run("cache", "stats", addr=admin)
    t.check(r.returncode == 0 and "hits" in r.stdout and "pz" in r.stdout,
            "nodectl cache stats: a table", r.stdout)
    m = cu.metrics(admin)
    want = ['shoal_cache_requests_total{zone="pz",status="hit"}',
            'shoal_cache_requests_total{zone="pz",status="miss"}',
            'shoal_cache_requests_total{zone="pz",status="updating"}',
            'shoal_cache_served_bytes_total{zone="pz"}', 'shoal_cache_fills_total{zone="pz"}',
            'shoal_cache_evictions_total{zone="pz"}', 'shoal_cache_entries{zone="pz"}',
            'shoal_cache_size_bytes{zone="pz"}']
    t.check(all(k in m for k in want) and m[want[0]] >= 8 and m[want[4]] >= 8,
            "/metrics: shoal_cache_* families", {k: m.get(k) for k in want})


if __name__ == "__main__":
    cu.run(main)
