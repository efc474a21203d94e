#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""/metrics and the admin listener on every node (issue 17).

- A node with a single-member cluster, an upstream, TLS with HTTP/2 and gzip
  serves HTTP/1.0, HTTP/1.1 and HTTP/2 requests; its /metrics (open on
  loopback) counts them exactly by server, location (only where
  metrics_location_label is on), protocol, code and class; the latency
  histogram's count equals the requests; upstream tries, responses by class
  and failures by reason; TLS handshakes by protocol; HTTP/2 streams; gzip
  bytes in and out (and $gzip_ratio in the access log); gossip bytes and
  members; shoal_build_info; connections by state without "active" (no
  double counting).
- Every metric the Grafana dashboard (docs/grafana-shoal.json) names exists
  in that scrape, and the dashboard is valid JSON.
- Without a cluster block: the admin listener still runs (admin only):
  /metrics, /v1/upstreams, /nginx_status and `nodectl upstreams` work, the
  cluster paths answer 404 (nodectl exits 1).
- Tokens: with admin_token_file alone, /metrics stays open on loopback and
  /v1/upstreams needs the token; with admin_metrics_token_file the scrape
  takes the scrape token (or the admin token), the scrape token opens
  nothing else.
- Admin TLS (admin_ssl_certificate/_key): curl --cacert, nodectl
  https://... --cacert (and $SHOAL_CACERT); an untrusted certificate fails
  nodectl with exit 2.
- admin_listen off: no admin listener; an explicit admin_listen that cannot
  bind fails the start with the reason; the implicit default that cannot
  bind (127.0.0.1:9901 held) logs a warning and the node runs."""
import json
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shoal_harness as sh  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """[(name, {labels}, value)] and the set of family names (# TYPE)."""
    out, fams = [], {}
    for ln in text.splitlines():
        if ln.startswith("# TYPE "):
            _, _, name, typ = ln.split(" ", 3)
            fams[name] = typ
            continue
        if not ln or ln.startswith("#"):
            continue
        m = SERIES.match(ln)
        if m:
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out, fams


def total(series, name, **want):
    return sum(v for n, lab, v in series
               if n == name and all(lab.get(k) == w for k, w in want.items()))


def nodectl_bin(t):
    return os.path.join(os.path.dirname(t.shoal_bin), "nodectl")


def nodectl(t, *args, env=None):
    e = dict(os.environ)
    e.pop("SHOAL_ADDR", None)
    e.pop("SHOAL_TOKEN", None)
    e.update(env or {})
    return subprocess.run([nodectl_bin(t)] + list(args), capture_output=True, text=True,
                          timeout=30, env=e)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def scrape(t, port, *args, scheme="http"):
    return t.curl("%s://127.0.0.1:%d/metrics" % (scheme, port), *args)


def main(t):
    d = t.tmp
    cert, key = t.make_cert("admin", "localhost", sans=["DNS:localhost", "IP:127.0.0.1"])
    gkey = subprocess.run([nodectl_bin(t), "keygen"], capture_output=True, text=True,
                          timeout=30).stdout.strip()
    write(os.path.join(d, "gossip.key"), gkey + "\n")
    adm_tok = subprocess.run([nodectl_bin(t), "keygen"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    scr_tok = subprocess.run([nodectl_bin(t), "keygen"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    write(os.path.join(d, "admin.token"), adm_tok + "\n")
    write(os.path.join(d, "scrape.token"), scr_tok + "\n")
    root = os.path.join(d, "root")
    os.makedirs(root)
    write(os.path.join(root, "big.txt"), "shoal counts every request at its end. " * 400)
    be = t.backend("b1")

    # ---- 1. a full node: cluster, upstream, TLS + HTTP/2, gzip
    aport, gport, tport = t.port(), t.port(), t.port()
    node = t.shoal("""
        worker_processes 2;
        cluster {
            name m; node_name m1; bind 127.0.0.1:%(g)d; profile local;
            encrypt_key_file %(d)s/gossip.key;
            admin_listen 127.0.0.1:%(a)d;
        }
        http {
            log_format gz '$status $request_uri $gzip_ratio';
            access_log logs/access.log gz;
            upstream b { server 127.0.0.1:%(b)d; }
            limit_req_zone $binary_remote_addr zone=z:1m rate=1000r/s;
            proxy_cache_path %(d)s/cache levels=1:2 keys_zone=c1:1m max_size=10m;
            server {
                listen 127.0.0.1:{port};
                listen 127.0.0.1:%(tp)d ssl http2;
                server_name api.test;
                ssl_certificate %(cert)s;
                ssl_certificate_key %(key)s;
                root %(root)s;
                location / { limit_req zone=z burst=100; return 200 "ok\\n"; }
                location /api/ { metrics_location_label on; proxy_pass http://b/; }
                location /hc/ { health_check interval=500ms uri=/health; proxy_pass http://b/; }
                location /c/ { proxy_cache c1; proxy_pass http://b/; }
                location /txt/ {
                    alias %(root)s/;
                    gzip on; gzip_types text/plain; gzip_min_length 1;
                }
            }
        }
        """ % {"g": gport, "d": d, "a": aport, "b": be.port, "tp": tport, "cert": cert,
               "key": key, "root": root})
    base = node.url()
    for _ in range(5):
        t.require(t.curl(base + "x").status == 200, "GET / over HTTP/1.1")
    for _ in range(2):
        t.require(t.curl(base + "y", "--http1.0").status == 200, "GET / over HTTP/1.0")
    t.check(t.curl(base + "api/echo").status == 200, "a proxied request: 200")
    t.check(t.curl(base + "api/status/503").status == 503, "a proxied request: 503")
    for _ in range(2):
        r = t.curl("https://127.0.0.1:%d/h2" % tport, "--http2", "--cacert", cert,
                   "--resolve", "localhost:%d:127.0.0.1" % tport)
        t.check(r.status == 200, "GET / over HTTP/2 with TLS", r)
    # a TLS session, then a connection resuming it (HTTP/1.1 over TLS)
    sess = os.path.join(d, "sess.pem")
    get = b"GET /s HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n"
    t.s_client(tport, "-sess_out", sess, "-ign_eof", stdin=get)
    _, out = t.s_client(tport, "-sess_in", sess, "-ign_eof", stdin=get)
    resumed = 1 if re.search(r"^Reused, TLSv1\.3", out, re.M) else 0
    t.check(resumed == 1, "the second TLS connection resumed the session", out[-300:])
    r = t.curl(base + "txt/big.txt", "-H", "Accept-Encoding: gzip")
    t.check(r.status == 200 and r.header("Content-Encoding") == "gzip", "gzip answered", r)

    def logged():
        try:
            return "/txt/big.txt" in open(os.path.join(node.prefix, "logs/access.log")).read()
        except OSError:
            return False
    sh.wait_for(logged, 10 * t.slow, "the gzip request in the access log")
    line = [ln for ln in open(os.path.join(node.prefix, "logs/access.log"))
            if "/txt/big.txt" in ln][0].split()
    t.check(len(line) == 3 and re.match(r"^\d+\.\d\d$", line[2]) and float(line[2]) > 5,
            "$gzip_ratio is in/out with two decimals (%s)" % line)

    m = scrape(t, aport)
    t.require(m.status == 200, "/metrics open on loopback without a token", m)
    s, fams = parse(m.text())
    want = 5 + 2 + 2 + 2 + 2 + 1
    # the scrape itself is on the admin listener: not an HTTP request here
    t.check(total(s, "shoal_http_requests_total") == want,
            "shoal_http_requests_total sums to the %d requests made (%s)"
            % (want, total(s, "shoal_http_requests_total")))
    t.check(total(s, "shoal_http_requests_total", server="api.test", protocol="HTTP/1.1",
                  code="200", **{"class": "2xx"}) == 5 + 1 + 2 + 1,
            "9 requests by server, HTTP/1.1, code 200, class 2xx")
    t.check(total(s, "shoal_http_requests_total", protocol="HTTP/1.0") == 2,
            "2 requests by protocol=HTTP/1.0")
    t.check(total(s, "shoal_http_requests_total", protocol="HTTP/2") == 2,
            "2 requests by protocol=HTTP/2")
    t.check(total(s, "shoal_http_requests_total", server="api.test", location="/api/",
                  code="503", **{"class": "5xx"}) == 1,
            "the 503 by server, location (opted in), code and class")
    t.check(total(s, "shoal_http_requests_total", location="/api/") == 2,
            "location=/api/ has its 2 requests")
    t.check(not any(n == "shoal_http_requests_total" and lab.get("location") not in (None, "/api/")
                    for n, lab, v in s),
            "no location label where metrics_location_label is off")
    t.check(total(s, "shoal_http_request_duration_seconds_count") == want and
            total(s, "shoal_http_request_duration_seconds_bucket", le="+Inf") == want,
            "the latency histogram counts every request")
    t.check(fams.get("shoal_http_request_duration_seconds") == "histogram" and
            fams.get("shoal_upstream_response_duration_seconds") == "histogram",
            "request and upstream latency are histograms")
    t.check(total(s, "shoal_http_sent_bytes_total") > 1000 and
            total(s, "shoal_http_received_bytes_total") > 100, "bytes in and out counted")
    t.check(total(s, "shoal_upstream_requests_total", upstream="b") == 2 and
            total(s, "shoal_upstream_responses_total", upstream="b", **{"class": "2xx"}) == 1 and
            total(s, "shoal_upstream_responses_total", upstream="b", **{"class": "5xx"}) == 1,
            "upstream tries and responses by class")
    t.check(total(s, "shoal_upstream_server_up", upstream="b") == 1,
            "upstream server health as a gauge")
    t.check(total(s, "shoal_tls_handshakes_total", protocol="TLSv1.3") == 4 and
            total(s, "shoal_tls_resumptions_total", protocol="TLSv1.3") == resumed,
            "TLS handshakes and resumptions by protocol (%d, %d)"
            % (total(s, "shoal_tls_handshakes_total", protocol="TLSv1.3"),
               total(s, "shoal_tls_resumptions_total", protocol="TLSv1.3")))
    t.check(total(s, "shoal_http2_streams_total") >= 2, "HTTP/2 streams counted")
    gi, go = total(s, "shoal_http_gzip_input_bytes_total"), total(s, "shoal_http_gzip_output_bytes_total")
    t.check(total(s, "shoal_http_gzip_responses_total") == 1 and gi == 15600 and 0 < go < gi,
            "gzip bytes in and out (%d / %d)" % (gi, go))
    t.check(any(n == "shoal_build_info" and lab.get("version") and v == 1 for n, lab, v in s),
            "shoal_build_info{version} 1")
    states = sorted(lab.get("state") for n, lab, v in s if n == "shoal_connections")
    t.check(states == ["reading", "waiting", "writing"],
            "connections by state, nothing counted twice: %s" % states)
    t.check(total(s, "shoal_cluster_members", status="alive") == 1 and
            total(s, "shoal_gossip_sent_bytes_total") >= 0 and
            "shoal_gossip_suspicions_total" in fams, "gossip members, bytes, suspicions")

    # ---- 2. the Grafana dashboard names only metrics that exist
    with open(os.path.join(ROOT, "docs", "grafana-shoal.json")) as f:
        dash = json.load(f)
    names = set()
    for p in dash["panels"]:
        for tg in p.get("targets", []):
            names |= set(re.findall(r"\b(shoal_[a-z0-9_]+)", tg["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        names |= set(re.findall(r"\b(shoal_[a-z0-9_]+)", json.dumps(v.get("query", ""))))
    missing = sorted(n for n in names if n not in fams and
                     re.sub(r"_(bucket|sum|count)$", "", n) not in fams)
    t.check(len(names) > 20 and not missing,
            "every metric of docs/grafana-shoal.json (%d) is in the scrape; missing: %s"
            % (len(names), missing))

    # ---- 3. admin only (no cluster block), admin token without a scrape token
    a2 = t.port()
    n2 = t.shoal("""
        admin_listen 127.0.0.1:%d;
        admin_token_file %s/admin.token;
        http { upstream u2 { server 127.0.0.1:%d; }
               server { listen 127.0.0.1:{port}; location / { proxy_pass http://u2; } } }
        """ % (a2, d, be.port))
    sh.wait_for(lambda: sh.port_accepts(a2), 10 * t.slow, "the admin listener of a node "
                "without a cluster block")
    t.check(scrape(t, a2).status == 200, "admin only: /metrics open on loopback")
    t.check(t.curl("http://127.0.0.1:%d/nginx_status" % a2).status == 200,
            "admin only: /nginx_status open on loopback")
    t.check(t.curl("http://127.0.0.1:%d/v1/upstreams" % a2).status == 401,
            "admin only: /v1/upstreams needs the admin token")
    r = nodectl(t, "--addr", "127.0.0.1:%d" % a2, "--token", adm_tok, "upstreams")
    t.check(r.returncode == 0 and "u2" in r.stdout, "nodectl upstreams on a single node", r)
    r = nodectl(t, "--addr", "127.0.0.1:%d" % a2, "--token", adm_tok, "members")
    t.check(r.returncode == 1 and "no cluster" in r.stderr,
            "nodectl members without a cluster block: the node says why (exit 1)", r)
    r = nodectl(t, "--addr", "127.0.0.1:%d" % a2, "--token", adm_tok, "reload")
    t.check(r.returncode == 0, "nodectl reload on a single node", r)

    # ---- 4. scrape token and TLS
    a3 = t.port()
    t.shoal("""
        admin_listen 127.0.0.1:%d;
        admin_token_file %s/admin.token;
        admin_metrics_token_file %s/scrape.token;
        admin_ssl_certificate %s;
        admin_ssl_certificate_key %s;
        http { server { listen 127.0.0.1:{port}; location / { return 204; } } }
        """ % (a3, d, d, cert, key))
    sh.wait_for(lambda: sh.port_accepts(a3), 10 * t.slow, "the TLS admin listener")
    ca = ("--cacert", cert)
    scr = ("-H", "Authorization: Bearer " + scr_tok)
    adm = ("-H", "Authorization: Bearer " + adm_tok)
    t.check(scrape(t, a3, *ca, scheme="https").status == 401,
            "with a scrape token, /metrics needs a token")
    r = scrape(t, a3, *ca, *scr, scheme="https")
    t.check(r.status == 200 and "shoal_build_info" in r.text(),
            "the scrape token opens /metrics over TLS (curl --cacert)")
    t.check(scrape(t, a3, *ca, *adm, scheme="https").status == 200,
            "the admin token opens /metrics too")
    t.check(t.curl("https://127.0.0.1:%d/v1/upstreams" % a3, *ca, *scr).status == 401,
            "the scrape token opens nothing else")
    t.check(t.curl("https://127.0.0.1:%d/v1/upstreams" % a3, *ca, *adm).status == 200,
            "the admin token opens the rest")
    t.check(scrape(t, a3).status != 200, "plain HTTP to the TLS admin listener gets nothing")
    r = nodectl(t, "--addr", "https://127.0.0.1:%d" % a3, "--cacert", cert, "--token", adm_tok,
                "info")
    t.check(r.returncode == 0 and "admin_listen" in r.stdout, "nodectl https:// --cacert", r)
    r = nodectl(t, "--addr", "https://localhost:%d" % a3, "--token", adm_tok, "upstreams",
                env={"SHOAL_CACERT": cert})
    t.check(r.returncode == 0, "nodectl https:// with $SHOAL_CACERT and a host name", r)
    r = nodectl(t, "--addr", "https://127.0.0.1:%d" % a3, "--token", adm_tok, "info")
    t.check(r.returncode == 2 and "not trusted" in r.stderr,
            "nodectl refuses an untrusted admin certificate (exit 2)", r)

    # ---- -t: the admin directives' mistakes, with file:line
    bad = [("admin_listen 0.0.0.0:%d;\n" % t.port(), "bad1.conf:1:", "admin_token_file\" is required"),
           ("admin_ssl_certificate %s;\n" % cert, "bad2.conf:2:", "go together"),
           ("admin_metrics_token_file %s/none;\n" % d, "bad3.conf:2:",
            "cannot read admin_metrics_token_file"),
           ("admin_listen unix:%s/a.sock;\nadmin_ssl_certificate %s;\n"
            "admin_ssl_certificate_key %s;\n" % (d, cert, key), "bad4.conf:", "needs a TCP")]
    for i, (text, where, what) in enumerate(bad, 1):
        body = "http { server { listen 127.0.0.1:%d; } }\n" % t.port()
        conf = t.write_conf((text + body) if i == 1 else (body + text), name="bad%d.conf" % i)
        r = t.run_shoal(["-t", "-p", d + "/", "-c", conf])
        t.check(r.returncode != 0 and where in r.stderr and what in r.stderr,
                "-t refuses %s with file:line" % text.split()[0], r.stderr)

    # ---- 5. admin_listen off; explicit busy address; implicit default busy
    n4 = t.shoal("""
        admin_listen off;
        error_log logs/error.log info;
        http { server { listen 127.0.0.1:{port}; location / { return 204; } } }
        """)
    t.check(t.curl(n4.url()).status == 204, "admin_listen off: the node serves")
    log4 = open(os.path.join(n4.prefix, "logs/error.log")).read()
    t.check("admin API on" not in log4 and "admin:" not in log4,
            "admin_listen off: no admin listener", log4)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    bport = busy.getsockname()[1]
    conf = t.write_conf("""
        admin_listen 127.0.0.1:%d;
        http { server { listen 127.0.0.1:%d; location / { return 204; } } }
        """ % (bport, t.port()), name="busy.conf")
    r = t.run_shoal(["-p", d + "/", "-c", conf], timeout=30)
    t.check(r.returncode != 0 and "cannot listen on admin address 127.0.0.1:%d" % bport in r.stderr,
            "an explicit admin_listen that cannot bind fails the start with the reason",
            r.stderr[-600:])
    busy.close()
    # the implicit default: hold 127.0.0.1:9901 (or find it held already)
    hold = socket.socket()
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        hold.bind(("127.0.0.1", 9901))
        hold.listen(1)
    except OSError:
        hold.close()
        hold = None
    held = hold is not None or sh.port_accepts(9901)
    if held:
        p5 = t.port()
        d5 = os.path.join(d, "implicit")
        os.makedirs(os.path.join(d5, "logs"))
        c5 = t.write_conf("""
            error_log logs/error.log info;
            http { server { listen 127.0.0.1:%d; location / { return 204; } } }
            """ % p5, name="implicit.conf", d=d5)
        proc = t._spawn("shoal-implicit", [t.shoal_bin, "-p", d5 + "/", "-c", c5], d5)
        sh.wait_for(lambda: sh.port_accepts(p5) or not proc.alive(), 15 * t.slow,
                    "the node with the default admin address held")
        log5 = open(os.path.join(d5, "logs/error.log")).read()
        t.check(proc.alive() and "cannot listen on the default admin address 127.0.0.1:9901"
                in log5, "the implicit default that cannot bind: a warning, the node runs", log5)
        t.stop(proc)
    else:
        t.log("127.0.0.1:9901 could not be held: the implicit default case not checked")
    if hold is not None:
        hold.close()


if __name__ == "__main__":
    sh.run(main)
