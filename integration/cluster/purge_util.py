# SPDX-License-Identifier: Apache-2.0
"""What the cluster-wide purge tests share (issue 13): nodes with a
proxy_cache in front of one origin (../cache_origin.py, which counts the
requests of each target), a cluster block, and the admin API's
POST /v1/cache/purge. A node keeps its ports and its cache directory across
a restart (PNode.restart)."""

import json
import os
import sys
import time
import urllib.error
import urllib.request

import cluster_util as cu

sh = cu.sh
HERE = os.path.dirname(os.path.abspath(__file__))
ORIGIN_PY = os.path.join(os.path.dirname(HERE), "cache_origin.py")


def start_origin(t):
    port = t.port()
    d = t._subdir("origin")
    p = t._spawn("origin", [sys.executable, ORIGIN_PY, "--port", str(port)], d)
    sh.wait_for(lambda: "ready" in p.stdout() and sh.port_accepts(port), 15, "origin")
    return port


def conf(name, gossip, admin, keyfile, cdir, oport, joins=(), extra=""):
    join = ("join %s;" % " ".join(joins)) if joins else ""
    return """
        worker_processes 1;
        events { }
        http {
            proxy_cache_path %s keys_zone=pz:10m;
            %s
            server {
                listen 127.0.0.1:{port};
                add_header X-Cache-Status $upstream_cache_status always;
                proxy_cache pz;
                proxy_cache_valid 200 10m;
                location / { proxy_pass http://127.0.0.1:%d; }
            }
        }
        cluster {
            name purge; node_name %s; bind %s; admin_listen %s;
            encrypt_key_file %s; profile local; %s
        }
        """ % (cdir, extra, oport, name, gossip, admin, keyfile, join)


class PNode:
    def __init__(self, t, ctl, name, keyfile, oport, joins=(), extra=""):
        self.t, self.ctl, self.name = t, ctl, name
        self.http_port, self.gossip_port, self.admin_port = t.port(), t.port(), t.port()
        self.gossip = "127.0.0.1:%d" % self.gossip_port
        self.admin = "127.0.0.1:%d" % self.admin_port
        self.cdir = os.path.join(t.tmp, "cache-" + name)
        self.conf = conf(name, self.gossip, self.admin, keyfile, self.cdir, oport, joins, extra)
        self.node = None

    def start(self, wait_admin=True):
        self.node = self.t.shoal(self.conf, port=self.http_port)
        if wait_admin:
            def admin_up():
                if not self.node.proc.alive():
                    raise sh.HarnessError("%s exited: %s" % (self.name, self.node.proc.tail()))
                return self.ctl.members(self.admin) is not None
            sh.wait_for(admin_up, 15 * self.t.slow, "admin API of %s" % self.name)
        return self

    def restart(self, wait_admin=True):
        return self.start(wait_admin)

    @property
    def proc(self):
        return self.node.proc

    def get(self, path):
        """(X-Cache-Status, the origin's count) of GET path."""
        r = self.t.curl("http://127.0.0.1:%d%s" % (self.http_port, path))
        return r.header("X-Cache-Status"), count_of(r.body)

    def purges(self):
        return json.loads(cu.http_get(self.admin, "/v1/cache/purges")[1])


def count_of(body):
    for w in (body or b"").split(b"\n", 1)[0].decode("latin1").split():
        if w.startswith("n="):
            return int(w[2:])
    return None


def purge(admin, timeout=30, **body):
    """POST /v1/cache/purge: (status, JSON answer, seconds)."""
    req = urllib.request.Request("http://%s/v1/cache/purge" % admin,
                                 data=json.dumps(body).encode(), method="POST")
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as f:
            code, raw = f.status, f.read()
    except urllib.error.HTTPError as e:
        code, raw = e.code, e.read()
    return code, json.loads(raw or b"{}"), time.monotonic() - t0


def start_cluster(t, ctl, n, oport, extra="", prefix="p"):
    key = cu.write_keys(t, [cu.new_key()])
    nodes = []
    for i in range(n):
        joins = [nodes[0].gossip] if nodes else []
        nodes.append(PNode(t, ctl, "%s%d" % (prefix, i), key, oport, joins, extra).start())
    wait_members(t, ctl, nodes, n)
    return nodes, key


def wait_members(t, ctl, nodes, n, timeout=30):
    def all_see():
        for x in nodes:
            m = ctl.members(x.admin) or []
            if sum(1 for y in m if y["status"] == "alive") < n:
                return False
        return True
    sh.wait_for(all_see, timeout * t.slow, "%d nodes to see %d alive members" % (len(nodes), n))


def key_of(oport, path):
    return "http127.0.0.1:%d%s" % (oport, path)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100.0 * (len(xs) - 1))))]
