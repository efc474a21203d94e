# SPDX-License-Identifier: Apache-2.0
"""Issue 11: limit decisions on the admin API's /metrics, by zone and
result (shoal_limit_decisions_total), with each zone's entries, capacity
and evictions: five requests of one key against burst=1 nodelay are 2
passed and 3 rejected; a limit_conn zone shows its passed count; the
families are grouped as Prometheus' text format wants (HELP and TYPE once,
then every line of the family)."""
import os
import re

import cluster_util as cu

sh = cu.sh

CONF = """
events { }
http {
    limit_req_zone $http_x_key zone=rq:1m rate=1r/m;
    limit_conn_zone $http_x_key zone=cn:1m;
    server {
        listen 127.0.0.1:{port};
        root %s;
        location /f { limit_req zone=rq burst=1 nodelay; limit_conn cn 5; }
    }
}
cluster {
    node_name lm; bind 127.0.0.1:%d; admin_listen %s;
    encrypt_key_file %s; profile local;
}
"""


def main(t, ctl):
    key = cu.write_keys(t, [cu.new_key()])
    html = t._subdir("html")
    with open(os.path.join(html, "f"), "w") as f:
        f.write("ok\n")
    admin = "127.0.0.1:%d" % t.port()
    node = t.shoal(CONF % (html, t.port(), admin, key))
    sh.wait_for(lambda: ctl.members(admin) is not None, 15, "admin API")
    got = [t.curl(node.url("/f"), "-H", "X-Key: m").status for _ in range(5)]
    t.check(got == [200, 200, 503, 503, 503], "1 + burst pass, 3 are 503", got)
    r = t.curl("http://%s/metrics" % admin)
    text = r.body.decode()

    def val(line):
        m = re.search(r"^%s (\d+)$" % re.escape(line), text, re.M)
        return int(m.group(1)) if m else None
    want = {
        'shoal_limit_decisions_total{kind="limit_req",zone="rq",result="passed"}': 2,
        'shoal_limit_decisions_total{kind="limit_req",zone="rq",result="rejected"}': 3,
        'shoal_limit_decisions_total{kind="limit_req",zone="rq",result="delayed"}': 0,
        'shoal_limit_decisions_total{kind="limit_conn",zone="cn",result="passed"}': 2,
        'shoal_limit_zone_entries{kind="limit_req",zone="rq"}': 1,
        'shoal_limit_zone_evictions_total{kind="limit_req",zone="rq"}': 0,
    }
    for line, v in want.items():
        t.check(val(line) == v, "/metrics: %s %d" % (line, v), text[-3000:])
    cap = val('shoal_limit_zone_capacity{kind="limit_req",zone="rq"}')
    t.check(cap is not None and 15000 < cap <= 1024 * 1024 // 52,
            "/metrics: a 1m zone's capacity (%s keys)" % cap)
    # each family in one group
    fams = [l.split("{")[0].split(" ")[0] for l in text.splitlines()
            if l.startswith("shoal_limit_")]
    seen, ok = [], True
    for f in fams:
        if seen and seen[-1] != f and f in seen:
            ok = False
        if not seen or seen[-1] != f:
            seen.append(f)
    t.check(ok and text.count("# TYPE shoal_limit_decisions_total") == 1,
            "/metrics: each limit family is one group", seen)


if __name__ == "__main__":
    cu.run(main)
