# SPDX-License-Identifier: Apache-2.0
"""Issue 6: the admin API through the real `nodectl`, against real nodes,
for every command and for bad input.

- members (--status, --tag, --json), info, join (and a join that reaches
  nobody), leave, force-leave (unknown name, alive member, a SIGKILLed one),
  monitor (member events and a reload event on the stream), upstreams (a
  dead backend seen down after traffic), reload (ok, a bad configuration
  refused with file:line and nothing changed, SIGHUP), /nginx_status and
  /metrics, keygen, help for every command.
- Bad input: raw bad JSON and wrong arguments get 400 with a message and
  change nothing; an unknown node address, a node that is down (exit 2);
  a wrong token and a missing token (exit 1, 401); a node listening off
  loopback without admin_token_file is refused at load with file:line; the
  admin API on a unix socket."""

import json
import os
import signal
import socket
import subprocess
import threading

import cluster_util as cu

COMMANDS = ["members", "info", "join", "leave", "force-leave", "keys", "keyring", "keygen",
            "reload", "upstreams", "monitor", "stats", "version", "help"]


def raw(addr, method, path, body=None, headers=()):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    b = body.encode() if isinstance(body, str) else (body or b"")
    req = "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%sContent-Length: %d\r\n\r\n" % (
        method, path, "".join("%s: %s\r\n" % h for h in headers), len(b))
    s.sendall(req.encode() + b)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def one_line(r):
    return r.stderr.count("\n") == 1 and r.stderr.startswith("nodectl: ")


def main(t, ctl):
    c = cu.Cluster(t, ctl)
    key = cu.write_keys(t, [cu.new_key()])
    b1 = t.backend("b1")
    dead_port = t.port()  # never listened on: a dead backend
    ups = "upstream app { server 127.0.0.1:%d max_fails=1 fail_timeout=30s; " \
          "server 127.0.0.1:%d max_fails=1 fail_timeout=30s; }" % (b1.port, dead_port)

    def conf(name, gossip, admin, joins=(), extra="", body="return 200 ok;"):
        return """
            events { }
            http { %s
                   server { listen 127.0.0.1:{port}; location / { %s } } }
            cluster { name itest; node_name %s; bind %s; admin_listen %s;
                      encrypt_key_file %s; profile local; %s %s }
            """ % (ups, body, name, gossip, admin, key,
                   ("join %s;" % " ".join(joins)) if joins else "", extra)

    # n0 proxies to the upstream group (for `upstreams`), tagged for filters.
    gp, ap = t.port(), t.port()
    n0node = t.shoal(conf("a0", "127.0.0.1:%d" % gp, "127.0.0.1:%d" % ap,
                          extra="tags role=edge zone=z1;", body="proxy_pass http://app;"))
    n0 = cu.CNode("a0", n0node, "127.0.0.1:%d" % gp, "127.0.0.1:%d" % ap)
    cu.sh.wait_for(lambda: ctl.members(n0.admin) is not None, 15, "a0 admin API")
    c.nodes.append(n0)
    n1 = c.start("a1", key, joins=[n0.gossip], extra="tags role=db;")
    n2 = c.start("a2", key)  # no join: joined later with `nodectl join`
    c.wait_all_see([n0, n1], {"a0": "alive", "a1": "alive"}, 20, "a0 and a1 together")

    # monitor, running from the start: events must show up on the stream.
    mon = subprocess.Popen([ctl.path, "--addr", n0.admin, "monitor", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mon_lines = []
    mon_reader = threading.Thread(target=lambda: mon_lines.extend(iter(mon.stdout.readline, "")),
                                  daemon=True)
    mon_reader.start()

    def streams():
        st, body = raw(n0.admin, "GET", "/metrics")
        m = [ln.split() for ln in body.splitlines() if ln.startswith("shoal_admin_event_streams ")]
        return st == 200 and m and int(m[0][1]) >= 1
    cu.sh.wait_for(streams, 10, "the monitor's subscription to the event stream")

    # ---- join
    r = ctl.run("join", n0.gossip, addr=n2.admin)
    t.check(r.returncode == 0 and "join: ok" in r.stdout, "join ADDR: exit 0", r)
    c.wait_all_see(c.nodes, {"a0": "alive", "a1": "alive", "a2": "alive"}, 20, "3 alive")
    r = ctl.run("join", "127.0.0.1:%d" % t.port(), addr=n2.admin)
    t.check(r.returncode == 1 and one_line(r) and "502" in r.stderr,
            "join to an address where nobody listens: exit 1, one line", r)
    r = ctl.run("join", "not-an-addr", addr=n2.admin)
    t.check(r.returncode == 1 and one_line(r) and "400" in r.stderr,
            "join with a malformed address: 400, exit 1", r)
    r = ctl.run("join", addr=n2.admin)
    t.check(r.returncode == 2 and one_line(r), "join without ADDR: usage, exit 2", r)

    # ---- members and filters
    r = ctl.run("members", addr=n0.admin)
    t.check(r.returncode == 0 and r.stdout.splitlines()[0].split()[:3] ==
            ["NAME", "ADDRESS", "STATUS"] and len(r.stdout.splitlines()) == 4,
            "members: an aligned table of 3 (no colour when not a terminal)",
            r.stdout)
    t.check("\033[" not in r.stdout, "no colour codes off a terminal")
    m = ctl.json(n0.admin, "members", "--tag", "role=edge")
    t.check([x["name"] for x in m] == ["a0"], "members --tag role=edge", m)
    m = ctl.json(n0.admin, "members", "--status", "alive")
    t.check(len(m) == 3, "members --status alive", m)
    r = ctl.run("members", "--status", "zombie", addr=n0.admin)
    t.check(r.returncode == 2 and one_line(r), "members --status zombie: usage, exit 2", r)
    r = ctl.run("members", "--tag", "novalue", addr=n0.admin)
    t.check(r.returncode == 2 and one_line(r), "members --tag without =: usage, exit 2", r)

    # ---- info
    info = ctl.json(n1.admin, "info")
    t.check(info["name"] == "a1" and info["status"] == "alive" and info["members_alive"] == 3
            and info["tags"] == {"role": "db"}, "info --json", info)
    r = ctl.run("info", addr=n1.admin)
    t.check(r.returncode == 0 and "a1" in r.stdout and "uptime" in r.stdout, "info for people",
            r.stdout)

    # ---- upstreams: traffic through a0 takes the dead server out
    for _ in range(6):
        t.curl(n0node.url("/"))
    # the workers publish their health each second: polled below

    def dead_down():
        u = ctl.json(n0.admin, "upstreams") or []
        app = [g for g in u if g["name"] == "app"]
        if not app:
            return None
        st = {s["addr"]: s["state"] for s in app[0]["servers"]}
        return st if st.get("127.0.0.1:%d" % dead_port) == "down" else None
    st = cu.sh.wait_for(dead_down, 10, "the dead server seen down")
    t.check(st["127.0.0.1:%d" % b1.port] == "up", "upstreams: the live server is up, the dead "
            "one down", st)
    r = ctl.run("upstreams", addr=n0.admin)
    t.check(r.returncode == 0 and "UPSTREAM" in r.stdout and "down" in r.stdout,
            "upstreams for people", r.stdout)

    # ---- /nginx_status and /metrics
    code, body = raw(n0.admin, "GET", "/nginx_status")
    lines = body.splitlines()
    t.check(code == 200 and lines[0].startswith("Active connections:") and
            lines[1] == "server accepts handled requests" and lines[3].startswith("Reading:"),
            "/nginx_status in stub_status format", body)
    acc, han, req = (int(x) for x in lines[2].split())
    t.check(acc >= 6 and han == acc and req >= 6, "accepts/handled/requests count the traffic",
            body)
    code, body = raw(n0.admin, "GET", "/metrics")
    t.check(code == 200 and "shoal_http_requests_total" in body and
            'shoal_cluster_members{status="alive"} 3' in body, "/metrics in Prometheus text", body[:300])

    # ---- reload: ok, then a bad configuration refused, then SIGHUP
    r = ctl.run("reload", addr=n0.admin)
    t.check(r.returncode == 0 and "configuration ok, applied to new connections" in r.stdout,
            "reload: exit 0, applied", r)
    t.check(t.curl(n0node.url("/")).status in (200, 502), "the node serves after a reload")
    good = open(n0node.conf_path).read()
    with open(n0node.conf_path, "w") as f:
        f.write(good.replace("events { }", "events { }\nbogus_directive on;"))
    r = ctl.run("reload", addr=n0.admin)
    t.check(r.returncode == 1 and one_line(r) and "shoal.conf:2" in r.stderr and
            "bogus_directive" in r.stderr, "a bad configuration: refused with file:line, exit 1", r)
    t.check(t.curl(n0node.url("/")).status in (200, 502), "the running configuration stays")
    # Apply a real change with SIGHUP: a new location answers.
    with open(n0node.conf_path, "w") as f:
        f.write(good.replace("location / {", "location = /new { return 200 new; }\n location / {"))
    n0node.proc.signal(signal.SIGHUP)
    cu.sh.wait_for(lambda: t.curl(n0node.url("/new")).status == 200, 10,
                   "the SIGHUP reload to serve /new")
    t.check(True, "SIGHUP reloads: new connections see the new configuration")
    m = raw(n0.admin, "GET", "/metrics")[1]
    t.check("shoal_reloads_total 2" in m and "shoal_reload_failures_total 1" in m,
            "reloads counted in /metrics", [x for x in m.splitlines() if "reload" in x])

    # ---- force-leave
    r = ctl.run("force-leave", "nobody", addr=n0.admin)
    t.check(r.returncode == 1 and one_line(r) and "404" in r.stderr, "force-leave unknown: 404", r)
    r = ctl.run("force-leave", "a1", addr=n0.admin)
    t.check(r.returncode == 1 and one_line(r) and "409" in r.stderr,
            "force-leave of an alive member: 409", r)
    n1.node.proc.kill()
    c.wait_all_see([n0, n2], {"a1": "dead"}, 30, "a1 seen dead")
    r = ctl.run("force-leave", "a1", addr=n0.admin)
    t.check(r.returncode == 0, "force-leave of a dead member: exit 0", r)
    c.wait_all_see([n0, n2], {"a1": "left"}, 15, "a1 left everywhere")
    t.check(True, "force-leave spreads: a1 is left on every node")
    c.nodes.remove(n1)

    # ---- leave
    r = ctl.run("leave", addr=n2.admin)
    t.check(r.returncode == 0, "leave: exit 0", r)
    c.wait_all_see([n0], {"a2": "left"}, 15, "a2 seen left")
    r = ctl.run("leave", addr=n2.admin)
    t.check(r.returncode == 1 and "409" in r.stderr, "leave twice: 409", r)
    # issue 16: after leave, join makes the node a member again (Serf's -rejoin)
    r = ctl.run("join", n0.gossip, addr=n2.admin)
    t.check(r.returncode == 0, "join after leave: exit 0 (a member again)", r)
    c.wait_all_see([n0], {"a2": "alive"}, 15, "a2 seen alive again after its join")
    t.check(True, "after leave + join, n0 sees a2 alive again")
    t.check(t.curl(n2.node.url("/")).status == 200,
            "a node that left still serves HTTP")

    # ---- the event stream saw it all
    wanted = ("member-join", "member-failed", "member-leave", "reload")

    def mon_types():
        return [json.loads(line)["type"] for line in list(mon_lines) if line.strip()]
    try:
        cu.sh.wait_for(lambda: all(w in mon_types() for w in wanted), 10,
                       "the monitor to print every event")
    except cu.sh.HarnessError:
        pass  # the checks below say which one is missing
    mon.terminate()
    mon.wait(5)
    mon_reader.join(5)
    types = mon_types()
    for want in wanted:
        t.check(want in types, "monitor saw %s" % want, types)

    # ---- bad input, raw
    for path, body, what in (("/v1/join", "{not json", "bad JSON"),
                             ("/v1/join", "[1,2]", "a JSON array"),
                             ("/v1/force-leave", "{}", "force-leave without name"),
                             ("/v1/keyring/install", '{"key": 7}', "a key that is a number"),
                             ("/v1/join", "", "no body")):
        code, rb = raw(n0.admin, "POST", path, body)
        t.check(code == 400 and json.loads(rb)["error"], "%s: 400 with a message" % what, rb)
    code, _ = raw(n0.admin, "GET", "/v1/nothing")
    t.check(code == 404, "an unknown path: 404")
    code, _ = raw(n0.admin, "DELETE", "/v1/members")
    t.check(code == 405, "a wrong method: 405")
    t.check(len(ctl.json(n0.admin, "keys", "list")["keys"]) == 1, "bad requests changed nothing")

    # ---- unknown node, node down
    r = ctl.run("members", addr="no-such-host.invalid:9901")
    t.check(r.returncode == 2 and one_line(r), "an unknown node name: exit 2, one line", r)
    r = ctl.run("info", addr=n1.admin)  # SIGKILLed above
    t.check(r.returncode == 2 and one_line(r) and "cannot reach" in r.stderr,
            "a node that is down: exit 2, one line", r)

    # ---- tokens: a token file, a non-loopback listener, a unix socket
    tok = ctl.run("keygen").stdout.strip()
    t.check(len(tok) == 44 and ctl.run("keygen").stdout.strip() != tok,
            "keygen prints a new base64 key each time", tok)
    tokfile = os.path.join(t.tmp, "admin.token")
    with open(tokfile, "w") as f:
        f.write(tok + "\n")
    bad = t.write_conf(conf("x", "127.0.0.1:%d" % t.port(), "0.0.0.0:%d" % t.port()), port=t.port())
    r = t.run_shoal(["-t", "-c", bad])
    t.check(r.returncode == 1 and "shoal.conf:" in r.stderr and "admin_token_file" in r.stderr,
            "admin_listen off loopback without admin_token_file: refused at load, file:line", r)
    ta = "127.0.0.1:%d" % t.port()
    sock = os.path.join(t.tmp, "admin.sock")
    gp = t.port()
    nt_node = t.shoal(conf("tok", "127.0.0.1:%d" % gp, "0.0.0.0:%d" % int(ta.split(":")[1]),
                           extra="admin_token_file %s;" % tokfile))
    cu.sh.wait_for(lambda: ctl.run("info", addr=ta, env={"SHOAL_TOKEN": tok}).returncode == 0,
                   15, "the token-protected admin API")
    r = ctl.run("members", addr=ta)
    t.check(r.returncode == 1 and one_line(r) and "401" in r.stderr,
            "no token on a protected API: exit 1 (401), one line", r)
    r = ctl.run("members", "--token", "x" * 44, addr=ta)
    t.check(r.returncode == 1 and one_line(r) and "401" in r.stderr,
            "a wrong token: exit 1 (401), one line", r)
    r = ctl.run("members", "--token", tok, addr=ta)
    t.check(r.returncode == 0, "--token TOKEN: exit 0", r)
    r = ctl.run("members", addr=ta, env={"SHOAL_TOKEN": tok})
    t.check(r.returncode == 0, "SHOAL_TOKEN: exit 0", r)
    t.stop(nt_node)
    nu_node = t.shoal(conf("unix", "127.0.0.1:%d" % t.port(), "unix:" + sock))
    cu.sh.wait_for(lambda: ctl.run("info", addr="unix:" + sock).returncode == 0, 15,
                   "the admin API on a unix socket")
    info = ctl.json("unix:" + sock, "info")
    t.check(info and info["name"] == "unix" and (os.stat(sock).st_mode & 0o077) == 0,
            "admin API on a unix socket, owner-only", info)
    t.stop(nu_node)

    # ---- help for every command, usage errors
    for cmd in COMMANDS:
        r = ctl.run(cmd, "--help")
        r2 = ctl.run("help", cmd)
        t.check(r.returncode == 0 and r.stdout.startswith("usage: nodectl") and
                r.stdout == r2.stdout and r2.returncode == 0,
                "nodectl %s --help and nodectl help %s" % (cmd, cmd), r)
    r = ctl.run("help", "frobnicate")
    t.check(r.returncode == 2 and one_line(r), "help for an unknown command: exit 2", r)
    r = ctl.run("keys", "rotate", addr=n0.admin)
    t.check(r.returncode == 2 and one_line(r), "an unknown keys command: exit 2", r)
    r = ctl.run("force-leave", addr=n0.admin)
    t.check(r.returncode == 2 and one_line(r), "force-leave without NAME: exit 2", r)


if __name__ == "__main__":
    cu.run(main)
