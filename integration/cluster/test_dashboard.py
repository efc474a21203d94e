# SPDX-License-Identifier: Apache-2.0
"""Issue 17, "See the cluster": the dashboard at /ui/ in a real browser.

Three nodes with region/zone and an admin token; headless Chromium (Debian's
`chromium`) driven over its DevTools protocol:

- /ui/ is served from memory without the token (HTML, CSS, JS, icon, with a
  Content-Security-Policy) while the API still answers 401 without it.
- The page asks for the token; a wrong one is refused on the page, the right
  one shows three members, alive, with their region and zone.
- Traffic through the node: the upstream table shows the live server up and
  the dead one down, and the request counter moves.
- One node is SIGKILLed: its row turns failed, and the member-failed event
  came through the live event stream (the page's event list).
- No JavaScript exception, no console error or warning, no failed load other
  than the 401s before the token was given.
- A screenshot is saved (dashboard.png in the test's directory, or the path
  in $SHOAL_UI_SCREENSHOT).

Exit 77 when chromium or python3-websocket is missing.
"""

import base64
import json
import os
import shutil
import sys
import urllib.request

import cluster_util as cu

sh = cu.sh

try:
    import websocket  # Debian's python3-websocket
except ImportError:
    # ctest may run another interpreter (pyenv) than Debian's python3, whose
    # packages live in dist-packages; python3-websocket is pure Python.
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import websocket
    except ImportError:
        websocket = None


def chromium_path():
    for c in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(c)
        if p:
            return p
    return None


class Browser:
    """One headless Chromium, one page, its DevTools session."""

    def __init__(self, t):
        self.t = t
        self.dir = os.path.join(t.tmp, "chromium")
        os.makedirs(self.dir)
        argv = [chromium_path(), "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--metrics-recording-only", "--mute-audio",
                "--hide-scrollbars", "--window-size=1360,1000",
                "--user-data-dir=" + os.path.join(self.dir, "profile"),
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                "about:blank"]
        self.proc = t._spawn("chromium", argv, self.dir, env=dict(os.environ, HOME=self.dir))
        portfile = os.path.join(self.dir, "profile", "DevToolsActivePort")

        def port():
            if not self.proc.alive():
                raise sh.HarnessError("chromium exited: " + self.proc.tail())
            try:
                with open(portfile) as f:
                    return int(f.readline())
            except (OSError, ValueError):
                return None
        dport = sh.wait_for(port, 60, "chromium's DevTools port", interval=0.1)
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % dport, timeout=10) as r:
            pages = [p for p in json.load(r) if p.get("type") == "page"]
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30,
                                              suppress_origin=True)
        self.next_id = 0
        self.events = []  # (method, params) not yet looked at
        self.errors = []  # what the page reported as an error
        self.net_401 = []  # 401 loads (expected only before the token)
        for m in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            self.call(m)

    def _on_event(self, msg):
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append("exception: %s %s" % (d.get("text"), d.get("exception", {})
                                                      .get("description", "")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            self.errors.append("console.%s: %s" % (p["type"], " ".join(
                str(a.get("value", a.get("description", ""))) for a in p.get("args", []))))
        elif m == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
            e = p["entry"]
            if e.get("source") == "network" and "401" in e.get("text", ""):
                self.net_401.append(e.get("url", ""))
            else:
                self.errors.append("log %s/%s: %s %s" % (e.get("source"), e.get("level"),
                                                         e.get("text"), e.get("url", "")))
        self.events.append((m, p))

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise sh.HarnessError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self._on_event(msg)

    def pump(self):
        """Take the events that arrived (non-blocking)."""
        self.ws.settimeout(0.01)
        try:
            while True:
                msg = json.loads(self.ws.recv())
                if "method" in msg:
                    self._on_event(msg)
        except websocket.WebSocketTimeoutException:
            pass
        finally:
            self.ws.settimeout(30)

    def js(self, expr):
        self.pump()
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise sh.HarnessError("evaluate %r: %s" % (expr, r["exceptionDetails"]))
        return r.get("result", {}).get("value")

    def wait_js(self, expr, timeout, what):
        return sh.wait_for(lambda: self.js(expr), timeout, what, interval=0.1)

    def screenshot(self, path):
        r = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.ws.close()
        except Exception:
            pass
        self.proc.injected = True  # closing it is the test's doing
        self.proc.wait_exit(10)
        self.proc.stop()


def http_get(addr, path, token=None):
    req = urllib.request.Request("http://%s%s" % (addr, path))
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


ROWS = "[...document.querySelectorAll('#members tbody tr')]"


def main(t, ctl):
    if chromium_path() is None or websocket is None:
        print("SKIP - needs chromium and python3-websocket (bash scripts/deps.sh)", flush=True)
        sys.exit(77)
    key = cu.write_keys(t, [cu.new_key()])
    token = "dashboard-token-" + os.urandom(8).hex()
    tokfile = os.path.join(t.tmp, "admin.token")
    with open(tokfile, "w") as f:
        f.write(token + "\n")
    b1 = t.backend("b1")
    dead = t.port()  # nothing listens: a dead server
    places = {"d0": ("eu-west", "eu-west-1a"), "d1": ("eu-west", "eu-west-1b"),
              "d2": ("us-east", "us-east-1a")}
    nodes = []
    for name, (region, zone) in places.items():
        gp, ap = t.port(), t.port()
        joins = "join %s;" % nodes[0].gossip if nodes else ""
        node = t.shoal("""
            events { }
            http {
                upstream app { server 127.0.0.1:%d max_fails=1 fail_timeout=60s;
                               server 127.0.0.1:%d max_fails=1 fail_timeout=60s; }
                server { listen 127.0.0.1:{port}; location / { proxy_pass http://app; } }
            }
            cluster { name dash; node_name %s; bind 127.0.0.1:%d; admin_listen 127.0.0.1:%d;
                      encrypt_key_file %s; profile local; region %s; zone %s;
                      tags role=edge; admin_token_file %s; %s }
            """ % (b1.port, dead, name, gp, ap, key, region, zone, tokfile, joins))
        cn = cu.CNode(name, node, "127.0.0.1:%d" % gp, "127.0.0.1:%d" % ap)
        sh.wait_for(lambda: http_get(cn.admin, "/v1/info", token)[0] == 200, 15,
                    "%s's admin API" % name)
        nodes.append(cn)
    d0, d1, d2 = nodes

    def alive_everywhere():
        return all(len([m for m in json.loads(http_get(n.admin, "/v1/members", token)[2])
                        if m["status"] == "alive"]) == 3 for n in nodes)
    sh.wait_for(alive_everywhere, 30, "three members alive on every node")

    # The files: from memory, no token, with a CSP; the API still wants it.
    for path, ctype in (("/ui/", "text/html"), ("/ui", "text/html"),
                        ("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css"),
                        ("/ui/favicon.svg", "image/svg+xml")):
        st, hd, body = http_get(d0.admin, path)
        t.check(st == 200 and hd.get("Content-Type", "").startswith(ctype) and body
                and "default-src 'none'" in hd.get("Content-Security-Policy", "")
                and hd.get("X-Frame-Options") == "DENY",
                "GET %s without a token: 200 %s with a Content-Security-Policy" % (path, ctype),
                (st, hd))
    st, _, _ = http_get(d0.admin, "/v1/members")
    t.check(st == 401, "the API itself still answers 401 without the token", st)
    for path in ("/ui/nope.js", "/ui/../v1/members", "/ui/x/app.js"):
        st, _, _ = http_get(d0.admin, path, token)
        t.check(st == 404, "GET %s: 404 (only the embedded files are served)" % path, st)

    br = Browser(t)
    try:
        run_browser(t, br, nodes, token, b1, dead)
    finally:
        br.close()


def run_browser(t, br, nodes, token, b1, dead):
    d0, d1, d2 = nodes
    url = "http://%s/ui/" % d0.admin
    br.call("Page.navigate", url=url)
    br.wait_js("location.href === %s && document.readyState === 'complete'" % json.dumps(url), 30,
               "the page to load")
    br.wait_js("!document.getElementById('login').hidden", 30, "the token prompt")
    t.check(True, "without a token the page asks for one")

    def submit(tok):
        br.js("document.getElementById('token').value = %s;"
              "document.getElementById('login-form').requestSubmit(); true" % json.dumps(tok))
    submit("wrong-token-0123456789")
    br.wait_js("!document.getElementById('login-error').hidden", 15, "the refusal")
    t.check("refused" in br.js("document.getElementById('login-error').textContent"),
            "a wrong token is refused on the page")
    try:  # the two 401s so far (no token, the wrong one), logged as they are
        sh.wait_for(lambda: br.pump() or len(br.net_401) >= 2, 3, "the 401s logged")
    except sh.HarnessError:
        pass
    n401 = len(br.net_401)
    submit(token)
    br.wait_js("!document.getElementById('app').hidden", 15, "the dashboard after the token")
    rows = br.wait_js("(() => { const r = %s.map(tr => [tr.dataset.name, tr.dataset.status,"
                      " tr.children[2].textContent, tr.children[3].textContent]);"
                      " return r.length === 3 && r.every(x => x[1] === 'alive') ? r : null; })()"
                      % ROWS, 20, "three members rendered alive")
    t.check(rows == [["d0", "alive", "eu-west", "eu-west-1a"], ["d1", "alive", "eu-west", "eu-west-1b"],
                     ["d2", "alive", "us-east", "us-east-1a"]],
            "three members rendered, alive, with region and zone", rows)
    br.wait_js("document.getElementById('live').textContent === 'live'", 15,
               "the event stream connected")

    # traffic: the dead server is taken out, the request counter moves
    for _ in range(6):
        t.curl(d0.node.url("/"))
    ups = br.wait_js(
        "(() => { const r = [...document.querySelectorAll('#upstreams tr[data-addr]')]"
        ".map(tr => [tr.dataset.addr, tr.dataset.state]);"
        " return r.some(x => x[1] === 'down') ? r : null; })()", 20,
        "the dead upstream server shown down")
    t.check(sorted(ups) == sorted([["127.0.0.1:%d" % b1.port, "up"], ["127.0.0.1:%d" % dead, "down"]]),
            "upstreams: the live server up, the dead one down", ups)
    total = br.wait_js("(() => { const s = document.getElementById('n-rps-sub').textContent;"
                       " return parseInt(s) >= 6 ? s : null; })()", 15,
                       "the request counter to count the requests")
    t.check(True, "this node's request counter shows the traffic (%s)" % total)
    # the latency and error tiles read shoal_http_request_duration_seconds and
    # shoal_http_requests_total{code} (issue 17): values, never "not exported"
    for _ in range(3):
        t.curl(d0.node.url("/"))
    lat = br.wait_js("(() => { const s = document.getElementById('n-lat').textContent;"
                     " return / \\/ /.test(s) && !/not exported/.test(s) ? s : null; })()", 20,
                     "the latency tile to show p50 / p99")
    t.check(True, "latency p50 / p99 from the histogram (%s)" % lat)
    err = br.wait_js("(() => { const s = document.getElementById('n-err').textContent;"
                     " return /%$/.test(s) ? s : null; })()", 20, "the error rate tile")
    t.check(True, "error rate from the requests by code (%s)" % err)

    # one node dies: its row turns failed, through the event stream
    applied = br.js("window.shoalUI.eventsApplied")
    d2.proc.kill()
    st = br.wait_js("(() => { const tr = document.querySelector('#members tr[data-name=\"d2\"]');"
                    " return tr && tr.dataset.status === 'dead' ?"
                    " tr.querySelector('.badge').textContent : null; })()", 45,
                    "d2's row to turn failed")
    t.check(st == "failed", "the killed node's row turns failed", st)
    ev = br.js("[...document.querySelectorAll('#events li.member-failed')].map(li => li.textContent)")
    t.check(any("d2" in e for e in ev) and br.js("window.shoalUI.eventsApplied") > applied,
            "the failure came through the live event stream (member-failed d2)", ev)
    tile = br.js("document.getElementById('n-members').textContent")
    t.check(tile == "2 / 3", "the members tile follows: 2 / 3 alive", tile)
    others = br.js("%s.filter(tr => tr.dataset.name !== 'd2').map(tr => tr.dataset.status)" % ROWS)
    t.check(others == ["alive", "alive"], "the two others stay alive", others)

    shot = os.environ.get("SHOAL_UI_SCREENSHOT") or os.path.join(t.tmp, "dashboard.png")
    br.screenshot(shot)
    t.log("screenshot: %s" % shot)
    br.pump()
    late_401 = br.net_401[n401:]
    t.check(not br.errors, "no JavaScript exception, console error or failed load",
            "\n".join(br.errors))
    t.check(not late_401, "no 401 once the right token was given", late_401)


if __name__ == "__main__":
    cu.run(main)
