# SPDX-License-Identifier: Apache-2.0
"""Issue 13, multi-region shared state: the global rate limit and the
cluster-wide purge across two regions DELAY ms apart (default 80).

The network of test_multiregion.py (netns_util.WanNet: two bridges, each region's
nodes in network namespaces of their own, wan_relay.py holding every frame
DELAY ms between the bridges, nftables dropping LOSS percent, default 0
here). PER_REGION nodes in "east" and in "west" (default 2 + 2), `profile
wan`, a region and a zone each; each node runs an origin of its own
(../cache_origin.py on 127.0.0.1:8081 in its namespace, so the cache key is
the same on every node) and serves

- /h/x under `limit_req_zone $http_x_key zone=hot:1m rate=200r/s global`
  (burst 20 nodelay), one key;
- /w/... through `proxy_cache`.

Global limit: a paced C load generator (gload) in each region offers
twice the rate to its region's nodes (400 r/s in each region, 800 r/s in
all); over SECONDS whole seconds after 3 of warm-up the cluster-wide admitted
rate is compared with the configured 200 r/s. The error is printed; the
test fails only past BOUND (default 15%, the lag of a region's deltas is
DELAY + the 100-200 ms push period) and calls a window inconclusive
(skipped) if a generator fell behind.

Purge: PURGES rounds; each warms /w/rI on every node (a HIT everywhere),
then a watcher on every node but east's first polls its own node every 2
ms, and east's first node is asked to purge the key (admin API, POST
/v1/cache/purge, synchronous: it returns when every live member applied
it). Per round: the call's duration, and from the call until the first
non-HIT on each node; the p50/p99 of "no node of west serves it" (the
slowest west node) and of the call. The purge must reach every node (a
round in which a node still serves the entry 10 s later fails).

Environment: SHOAL_MR_DELAY_MS (80), SHOAL_MR_LOSS (0 here),
SHOAL_WAN_PER_REGION (2), SHOAL_WAN_SECONDS (5), SHOAL_WAN_PURGES (6),
SHOAL_WAN_BOUND (0.15). bench/cluster_wan.sh runs it longer and prints the
table (the line starting WAN_STATE holds the figures)."""

import json
import os
import queue
import subprocess
import sys
import threading
import time

import cluster_util as cu
import glimit_util as gu
import netns_util as nu

sh = cu.sh
HERE = os.path.dirname(os.path.abspath(__file__))
ORIGIN_PY = os.path.join(os.path.dirname(HERE), "cache_origin.py")
DELAY_MS = float(os.environ.get("SHOAL_MR_DELAY_MS", "80"))
LOSS = int(os.environ.get("SHOAL_MR_LOSS", "0"))
PER_REGION = int(os.environ.get("SHOAL_WAN_PER_REGION", "2"))
SECONDS = int(os.environ.get("SHOAL_WAN_SECONDS", "5"))
PURGES = int(os.environ.get("SHOAL_WAN_PURGES", "6"))
BOUND = float(os.environ.get("SHOAL_WAN_BOUND", "0.15"))
RATE = 200

# a watcher in one node's namespace, driven on stdin:
#   warm PATH   GET until a HIT          -> "warm PATH STATUS"
#   watch PATH  GET every 2 ms until not a HIT -> "watching PATH" once the
#               first answer was a HIT, then "gone PATH MONOTONIC STATUS"
#   purge KEY   POST /v1/cache/purge     -> "purged T0 T1 HTTPSTATUS BODY"
WATCHER = r"""
import http.client, json, sys, time
def conn():
    return http.client.HTTPConnection("127.0.0.1", 8080, timeout=5)
c = conn()
def get(path):
    global c
    for _ in range(2):
        try:
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            return r.getheader("X-Cache-Status")
        except Exception:
            c.close()
            c = conn()
    return None
print("ready", flush=True)
for line in sys.stdin:
    cmd, arg = line.split()
    if cmd == "warm":
        st, end = None, time.monotonic() + 15
        while time.monotonic() < end:
            st = get(arg)
            if st == "HIT":
                break
            time.sleep(0.02)
        print("warm", arg, st, flush=True)
    elif cmd == "watch":
        st, end, first = "HIT", time.monotonic() + 10, True
        while time.monotonic() < end:
            st = get(arg)
            if first:
                print("watching", arg, st, flush=True)
                first = False
            if st != "HIT":
                break
            time.sleep(0.002)
        print("gone", arg, "%.6f" % time.monotonic(), st, flush=True)
    elif cmd == "purge":
        a = http.client.HTTPConnection("127.0.0.1", 9901, timeout=30)
        t0 = time.monotonic()
        a.request("POST", "/v1/cache/purge", body=json.dumps({"key": arg}),
                  headers={"Content-Type": "application/json"})
        r = a.getresponse()
        data = r.read().decode("utf-8", "replace").replace("\n", " ")
        print("purged %.6f %.6f %d %s" % (t0, time.monotonic(), r.status, data), flush=True)
"""


class Watcher:
    def __init__(self, t, ns, name):
        self.name = name
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-u", "-c",
                                   WATCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, bufsize=1)
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("ready", 30)

    def _read(self):
        for line in self.p.stdout:
            self.q.put(line.split())
        self.q.put(None)

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def expect(self, word, timeout):
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise sh.HarnessError("watcher %s: no %r in %.0f s" % (self.name, word, timeout))
            try:
                f = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if f is None:
                raise sh.HarnessError("watcher %s exited" % self.name)
            if f and f[0] == word:
                return f

    def close(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
            except OSError:
                pass
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def conf(name, addr, key, joins, region, zone, cdir, www):
    return """
        worker_processes 1;
        events { }
        http {
            limit_req_zone $http_x_key zone=hot:1m rate=%dr/s global;
            limit_req_status 429;
            proxy_cache_path %s keys_zone=pz:10m;
            server {
                listen %s:8080;
                listen 127.0.0.1:8080;
                root %s;
                add_header X-Cache-Status $upstream_cache_status always;
                location /h/ { limit_req zone=hot burst=20 nodelay; }
                location /w/ {
                    proxy_cache pz;
                    proxy_cache_valid 200 10m;
                    proxy_pass http://127.0.0.1:8081;
                }
            }
        }
        cluster {
            name wanstate; node_name %s; bind %s:7946; admin_listen 127.0.0.1:9901;
            encrypt_key_file %s; profile wan; region %s; zone %s;
            %s
        }
        """ % (RATE, cdir, addr, www, name, addr, key, region, zone,
               ("join %s;" % " ".join(joins)) if joins else "")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100.0 * (len(xs) - 1))))] if xs else float("nan")


def main(t, ctl):
    extra = []   # loads and watchers: stopped by PID on every exit path

    def cleanup():
        for x in extra:
            try:
                x.stop() if isinstance(x, gu.Load) else x.close()
            except Exception:
                pass
    nu.run_in_netns(t, nu.WanNet(DELAY_MS, LOSS), lambda net: run(t, ctl, net, extra),
                    need_tun=True, cleanup=cleanup)


def run(t, ctl, net, extra):
    net.setup()
    c = cu.Cluster(t, ctl)
    key = cu.write_keys(t, [cu.new_key()])
    www = gu.make_root(t)
    seeds = []
    for i in range(2 * PER_REGION):
        side = "a" if i < PER_REGION else "b"
        region = "east" if side == "a" else "west"
        ns, addr = net.add_node(i, side)
        d = t._subdir("shoal-n%d" % i)
        t._spawn("origin", ["ip", "netns", "exec", ns, sys.executable, ORIGIN_PY, "--port",
                            "8081"], t._subdir("origin-n%d" % i))
        conf_path = t.write_conf(conf("n%d" % i, addr, key, seeds, region,
                                      "%s-%d" % (region, i % 2), os.path.join(d, "cache"), www),
                                 port=8080, d=d)
        p = t._spawn("shoal", ["ip", "netns", "exec", ns, t.shoal_bin, "-p", d + "/", "-c",
                               conf_path], d)
        n = cu.CNode("n%d" % i, None, "%s:7946" % addr, "127.0.0.1:9901", netns=ns, proc=p)
        n.addr, n.region = addr, region
        sh.wait_for(lambda n=n: c._admin_up(n), 30 * t.slow, "admin of n%d in %s" % (i, ns))
        c.nodes.append(n)
        if i == 0 or i == PER_REGION:
            seeds.append(n.gossip)
    east, west = c.nodes[:PER_REGION], c.nodes[PER_REGION:]
    alive = {n.name: "alive" for n in c.nodes}
    secs = c.wait_all_see(c.nodes, alive, 120, "%d alive everywhere" % len(c.nodes))
    t.check(True, "%d + %d nodes, %d ms apart, %d%% loss: one cluster in %.1f s"
            % (PER_REGION, PER_REGION, DELAY_MS, LOSS, secs))

    def zones_heard():
        for n in c.nodes:
            lim = ctl.json(n.admin, "limits", netns=n.netns) or {}
            z = [x for x in lim.get("zones", []) if x["zone"] == "hot"]
            if not z or z[0]["degraded"] or z[0]["heard"] != len(c.nodes):
                return False
        return True
    sh.wait_for(zones_heard, 60 * t.slow, "every node's zone hot to hear %d members"
                % len(c.nodes), interval=0.2)

    # -- global limit: 2x the rate offered in each region --
    loads = []
    for region in (east, west):
        ld = gu.Load({"%s:8080" % n.addr: 1.0 for n in region}, 2 * RATE, gu.hot_key,
                     path="/h/x", argv_prefix=["ip", "netns", "exec", region[0].netns])
        extra.append(ld)
        loads.append(ld.start())
    w0, w1 = 3, 3 + SECONDS
    time.sleep(max(0.0, w1 + 0.2 - min(ld.now() for ld in loads)))
    per_region, kept_all = [], True
    for ld, region in zip(loads, (east, west)):
        kept = ld.kept(w0, w1)
        mean_all, xs_all = ld.admitted_all(w0, w1)
        mean, xs = ld.admitted(w0, w1)
        per_region.append((region[0].region, mean_all, mean, xs_all, len(kept)))
        kept_all = kept_all and len(kept) >= max(2, SECONDS // 2)
        t.log("%s: offered %.0f/s, admitted %s (at pace: %d of %d seconds; sent, late ms: %s)"
              % (region[0].region, ld.offered(w0, w1), xs_all, len(kept), SECONDS,
                 ld.pace(w0, w1)))
    for ld in loads:
        ld.stop()
    # the regions' clocks start within a fraction of a second of each other:
    # second i of one and of the other overlap mostly
    per_sec = [sum(x) for x in zip(*[x[3] for x in per_region])]
    worst = max((abs(x - RATE) / float(RATE) for x in per_sec), default=0.0)
    total_all = sum(x[1] for x in per_region)
    total = sum(x[2] for x in per_region)
    err = (total - RATE) / float(RATE)
    what = ("global limit across %d ms: %.1f/s admitted for %d/s (%+.1f%%, within %.0f%%)"
            % (DELAY_MS, total, RATE, err * 100, BOUND * 100))
    if total_all > RATE * (1 + BOUND):
        t.check(False, what + " (over, with the clients at any pace)", per_region)
    elif not kept_all:
        t.inconclusive(what + ": a load generator fell behind", per_region)
    else:
        t.check(abs(err) <= BOUND, what, per_region)

    # -- purge from east's first node; until no node of west serves it --
    ws = {}
    for n in c.nodes:
        ws[n.name] = Watcher(t, n.netns, n.name)
        extra.append(ws[n.name])
    src = east[0]
    watched = [n for n in c.nodes if n is not src]
    call_ms, west_ms, east_ms, per_node = [], [], [], {n.name: [] for n in watched}
    failed = []
    for r in range(PURGES):
        path = "/w/r%d" % r
        for n in c.nodes:
            ws[n.name].send("warm " + path)
        for n in c.nodes:
            f = ws[n.name].expect("warm", 30)
            t.require(f[2] == "HIT", "round %d: %s caches %s" % (r, n.name, path), f)
        for n in watched:
            ws[n.name].send("watch " + path)
        for n in watched:
            f = ws[n.name].expect("watching", 30)
            t.require(f[2] == "HIT", "round %d: %s serves %s from its cache before the purge"
                      % (r, n.name, path), f)
        ws[src.name].send("purge http127.0.0.1:8081" + path)
        f = ws[src.name].expect("purged", 60)
        t0, t1, status = float(f[1]), float(f[2]), int(f[3])
        if status != 200:
            failed.append((r, "purge answered %d: %s" % (status, " ".join(f[4:]))))
        call_ms.append((t1 - t0) * 1000)
        gone = {}
        for n in watched:
            g = ws[n.name].expect("gone", 30)
            if g[3] == "HIT":
                failed.append((r, "%s still serves %s 10 s after the purge" % (n.name, path)))
            gone[n.name] = (float(g[2]) - t0) * 1000
            per_node[n.name].append(gone[n.name])
        west_ms.append(max(gone[n.name] for n in west))
        e = [gone[n.name] for n in east if n is not src]
        if e:
            east_ms.append(max(e))
        t.log("purge %d: call %.0f ms; gone after %s" % (
            r, call_ms[-1], ", ".join("%s %.0f ms" % (k, v) for k, v in sorted(gone.items()))))
    t.check(not failed, "%d purges from east reached every node of both regions" % PURGES, failed)

    print("\n# shared state across two regions (%d + %d nodes, %d ms between, %d%% loss; "
          "loaded machine: compare, do not quote absolutes)" % (PER_REGION, PER_REGION,
                                                               DELAY_MS, LOSS))
    print("%-34s %10s %10s" % ("global limit", "r/s", "error"))
    print("%-34s %10d %10s" % ("configured", RATE, ""))
    for name, mall, m, xs, k in per_region:
        print("%-34s %10.1f %10s  %s" % ("admitted via " + name, m, "", xs))
    print("%-34s %10.1f %+9.1f%%  %s" % ("admitted, cluster", total, err * 100, per_sec))
    print("%-34s %10s %+9.1f%%" % ("worst second, cluster", "", worst * 100))
    print("%-34s %10s %10s %10s" % ("purge (from east, %d rounds)" % PURGES, "p50 ms", "p99 ms",
                                    "max ms"))
    print("%-34s %10.0f %10.0f %10.0f" % ("call returns (all applied)", pct(call_ms, 50),
                                          pct(call_ms, 99), max(call_ms)))
    if east_ms:
        print("%-34s %10.0f %10.0f %10.0f" % ("no east node serves it", pct(east_ms, 50),
                                              pct(east_ms, 99), max(east_ms)))
    print("%-34s %10.0f %10.0f %10.0f" % ("no west node serves it", pct(west_ms, 50),
                                          pct(west_ms, 99), max(west_ms)))
    print("WAN_STATE delay_ms=%d loss_pct=%d per_region=%d limit_rate=%d admitted=%.1f err_pct=%.1f "
          "worst_second_pct=%.1f purges=%d call_p50=%.0f call_p99=%.0f west_p50=%.0f west_p99=%.0f east_p50=%s"
          % (DELAY_MS, LOSS, PER_REGION, RATE, total, err * 100, worst * 100, PURGES, pct(call_ms, 50),
             pct(call_ms, 99), pct(west_ms, 50), pct(west_ms, 99),
             ("%.0f" % pct(east_ms, 50)) if east_ms else "-"), flush=True)
    print(json.dumps({"per_node_ms": per_node}), flush=True)


if __name__ == "__main__":
    cu.run(main)
