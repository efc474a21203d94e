# SPDX-License-Identifier: Apache-2.0
"""Issue 13: shared TLS session tickets.

Two nodes A and B in a cluster, the same certificate, no
ssl_session_ticket_key file, `ssl_session_ticket_key_rotation 2s` (so a
key encrypts for 2 s and decrypts for 4 s more) and ssl_session_timeout
1h (the session itself does not expire during the test):

- the nodes agree on the encrypting key (GET /v1/tls/tickets: its id,
  never the secret);
- a session ticket issued by A (openssl s_client -sess_out) resumes on B
  (-sess_in: "Reused"), with TLS 1.2 and TLS 1.3;
- once the key that sealed it has aged out (three periods), B no longer
  resumes it (a full handshake: "New");
- a server with its own ssl_session_ticket_key file does not take the
  shared keys: A's ticket does not resume there.
"""

import json
import os
import re
import time

import cluster_util as cu

sh = cu.sh
ROT = 2.0
HTTP_GET = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


def conf(name, gossip, admin, keyfile, joins, cert, key, keyport, tkfile):
    join = ("join %s;" % " ".join(joins)) if joins else ""
    return """
        worker_processes 2;
        events { }
        http {
            ssl_session_ticket_key_rotation %ds;
            server {
                listen 127.0.0.1:{port} ssl;
                server_name a.test;
                ssl_certificate %s; ssl_certificate_key %s;
                ssl_session_timeout 1h;
                location / { return 200 "%s\\n"; }
            }
            server {
                listen 127.0.0.1:%d ssl;
                server_name a.test;
                ssl_certificate %s; ssl_certificate_key %s;
                ssl_session_timeout 1h;
                ssl_session_ticket_key %s;
                location / { return 200 "%s-filekey\\n"; }
            }
        }
        cluster {
            name itest; node_name %s; bind %s; admin_listen %s;
            encrypt_key_file %s; profile local; %s
        }
        """ % (int(ROT), cert, key, name, keyport, cert, key, tkfile, name, name, gossip, admin,
               keyfile, join)


def reused(out):
    m = re.search(r"^(Reused|New), (TLSv[0-9.]+)", out, re.M)
    return m.group(1) if m else None


def tickets(admin):
    code, body = cu.http_get(admin, "/v1/tls/tickets")
    return json.loads(body) if code == 200 else None


def main(t, ctl):
    cert, key = t.make_cert("a", "a.test")
    tk = os.path.join(t.tmp, "ticket.key")
    with open(tk, "wb") as f:
        f.write(os.urandom(80))
    gkey = cu.write_keys(t, [cu.new_key()])
    c = cu.Cluster(t, ctl)
    nodes = []
    for name in ("a", "b"):
        gp, ap, kp = t.port(), t.port(), t.port()
        gossip, admin = "127.0.0.1:%d" % gp, "127.0.0.1:%d" % ap
        joins = [nodes[0].gossip] if nodes else ()
        node = t.shoal(conf(name, gossip, admin, gkey, joins, cert, key, kp, tk))
        cn = cu.CNode(name, node, gossip, admin)
        cn.keyport = kp
        sh.wait_for(lambda: c._admin_up(cn), 15 * t.slow, "admin of %s" % name)
        nodes.append(cn)
        c.nodes.append(cn)
    A, B = nodes
    c.wait_all_see(nodes, {"a": "alive", "b": "alive"}, 30 * t.slow, "a and b alive")

    def enc_id(k):
        ids = [x["id"] for x in (k or {}).get("keys", []) if x["encrypts"]]
        return ids[0] if len(ids) == 1 else None

    def same_key():
        a, b = enc_id(tickets(A.admin)), enc_id(tickets(B.admin))
        return a is not None and a == b
    sh.wait_for(same_key, 10 * t.slow, "a and b to encrypt with the same key")
    ka = tickets(A.admin)
    t.check(ka["rotation_ms"] == int(ROT * 1000) and enc_id(ka) is not None
            and all(set(k) == {"id", "age_ms", "origin", "encrypts"} for k in ka["keys"]),
            "/v1/tls/tickets: the same encrypting key on both, ids only (no secrets)", ka)

    code, body = cu.http_get(B.admin, "/metrics")
    body = body.decode()
    t.check("shoal_tls_ticket_keys " in body and "shoal_tls_ticket_key_rotation_seconds 2.000" in body,
            "/metrics: shoal_tls_ticket_keys and the rotation period", body[-1500:])

    results = {}
    for ver in ("-tls1_2", "-tls1_3"):
        sh.wait_for(same_key, 10 * t.slow, "the same key")
        sess = os.path.join(t.tmp, "sess%s.pem" % ver)
        t_before = time.monotonic()
        _, out_a = t.s_client(A.node.port, "-servername", "a.test", "-sess_out", sess, "-ign_eof",
                              ver, stdin=HTTP_GET)
        t_after = time.monotonic()
        t.require(os.path.exists(sess) and "a\n" in out_a, "%s: a session from A" % ver, out_a[-600:])
        _, out_b = t.s_client(B.node.port, "-servername", "a.test", "-sess_in", sess, "-ign_eof",
                              ver, stdin=HTTP_GET)
        t.check(reused(out_b) == "Reused" and "\nb\n" in out_b,
                "%s: a ticket issued by A resumes on B" % ver, out_b[-800:])
        _, out_f = t.s_client(B.keyport, "-servername", "a.test", "-sess_in", sess, "-ign_eof", ver,
                              stdin=HTTP_GET)
        t.check(reused(out_f) == "New",
                "%s: B's server with its own ssl_session_ticket_key does not take it" % ver,
                out_f[-600:])
        results[ver] = (sess, t_before, t_after)

    # a period later its key only decrypts: still resumed (and renewed).
    # The ticket's key encrypted when A issued it, between t_before and
    # t_after: it was made in [t_before - ROT, t_after], so it only decrypts
    # from t_after + ROT at the latest and lives until t_before + 2 ROT -
    # ROT/4 at the earliest (the oldest key leaves when the next one is made
    # a lead of ROT/4 ahead). The check is judged only if the s_client ran
    # in that window: before, t_issue was taken after three s_clients, and
    # on a loaded machine the key could be gone before this one ran.
    sess, t_before, t_issue = results["-tls1_2"]
    mid = t_issue + ROT + 0.2
    sh.wait_for(lambda: time.monotonic() >= mid, ROT + 5, "one rotation period")
    m0 = time.monotonic()
    _, out_b = t.s_client(B.node.port, "-servername", "a.test", "-sess_in", sess, "-ign_eof",
                          "-tls1_2", stdin=HTTP_GET)
    m1 = time.monotonic()
    if m0 >= t_issue + ROT and m1 < t_before + 2 * ROT - ROT / 4 - 0.1:
        t.check(reused(out_b) == "Reused",
                "-tls1_2: a period later (its key now only decrypts) it still resumes on B",
                out_b[-800:])
    else:
        t.log("not judged: the mid-life resumption ran [%.2f, %.2f] s after the issue began, "
              "outside the window in which its key surely only decrypts"
              % (m0 - t_before, m1 - t_before))

    # the key ages out: three periods after it was made at the latest
    deadline = t_issue + 3 * ROT + 1.0
    sh.wait_for(lambda: time.monotonic() >= deadline, 3 * ROT + 5, "the key to age out")
    for ver in ("-tls1_2", "-tls1_3"):
        sess = results[ver][0]
        _, out_b = t.s_client(B.node.port, "-servername", "a.test", "-sess_in", sess, "-ign_eof",
                              ver, stdin=HTTP_GET)
        t.check(reused(out_b) == "New" and "\nb\n" in out_b,
                "%s: after three rotation periods the ticket no longer resumes on B "
                "(a full handshake)" % ver, out_b[-800:])
    kb = tickets(B.admin)
    t.check(1 <= len(kb["keys"]) <= 3 and all(k["age_ms"] < 3 * ROT * 1000 + 1000 for k in kb["keys"]),
            "at most three live keys, none older than three periods", kb)
    # a fresh session from B resumes on A: the rotation went on in step
    sh.wait_for(same_key, 10 * t.slow, "the same key")
    sess = os.path.join(t.tmp, "sess-late.pem")
    t.s_client(B.node.port, "-servername", "a.test", "-sess_out", sess, "-ign_eof", "-tls1_2",
               stdin=HTTP_GET)
    _, out_a = t.s_client(A.node.port, "-servername", "a.test", "-sess_in", sess, "-ign_eof",
                          "-tls1_2", stdin=HTTP_GET)
    t.check(reused(out_a) == "Reused", "after rotations, a ticket from B resumes on A", out_a[-600:])


if __name__ == "__main__":
    cu.run(main)
