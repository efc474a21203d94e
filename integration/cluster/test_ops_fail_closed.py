# SPDX-License-Identifier: Apache-2.0
"""Issue 16, fail closed: a directive that restricts access or traffic and is
not implemented yet is refused with file:line, at `-t`, at start and at a
reload (which keeps the running configuration); a directive that only tunes
is accepted with a warning that says what is ignored, and a reload reports
its warnings in the answer of `nodectl reload` and in the error log.

- `location /int { limit_except GET { deny all; } return 200 "secret"; }`: `shoal -t`
  exits 1 with CONF:LINE naming "limit_except"; started anyway, the node
  refuses to start (exit 1) instead of answering anyone with the secret
  (`internal` was refused here until issue 10 implemented it: test_error_pages);
- `limit_zone`, `limit_rate`, `secure_link`, `valid_referers`, `limit_except`: each
  refused with its own file:line (a line in an included file names that
  file; limit_req and limit_conn were refused here until issue 11
  implemented them: test_limit_req, test_limit_conn; max_ranges, auth_basic
  and satisfy until issues 10 and 18: test_static, test_auth_basic);
- a running node, reloaded with `limit_rate` added (nodectl reload, then
  SIGHUP): exit 1 with file:line, the error log has it, the old
  configuration keeps answering;
- reloaded with `open_file_cache max=10; proxy_buffers 8 16k;` added: exit 0, and the answer
  and the error log list both, with file:line and what is ignored."""

import os
import signal

import cluster_util as cu

sh = cu.sh

BASE = """
error_log logs/error.log notice;
events { }
http {
    server {
        listen 127.0.0.1:{port};
        location / { return 200 "base\\n"; }
        %s
    }
}
cluster {
    node_name fc; bind 127.0.0.1:%d; admin_listen %s;
    encrypt_key_file %s; profile local;
}
"""


def line_of(path, needle):
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if needle in line:
                return i
    raise sh.HarnessError("%s not in %s" % (needle, path))


def main(t, ctl):
    key = cu.write_keys(t, [cu.new_key()])

    # ---- -t refuses each restricting directive with file:line
    inc_dir = t._subdir("inc")
    inc = os.path.join(inc_dir, "limits.conf")
    with open(inc, "w") as f:
        f.write("# included\n\nsecure_link $arg_md5,$arg_expires;\n")
    cases = [
        ("limit_zone", "location /a { return 200; }\n}\nlimit_zone one $binary_remote_addr "
                       "10m;\nserver { listen 127.0.0.1:1;"),
        ("limit_rate", "location /a { limit_rate 10k; return 200; }"),
        ("secure_link", "location /a { include %s; return 200; }" % inc),
        ("valid_referers", "location /a { valid_referers none blocked; return 200; }"),
        ("limit_except", "location /a { limit_except GET { deny all; } return 200; }"),
    ]
    for name, snippet in cases:
        d = t._subdir("t-" + name)
        conf = t.write_conf(BASE % (snippet, 1, "127.0.0.1:1", key), port=1, d=d)
        r = t.run_shoal(["-p", d + "/", "-c", conf, "-t"])
        where = inc if name == "secure_link" else conf
        want = "%s:%d: \"%s\" is not implemented yet" % (where, line_of(where, name), name)
        t.check(r.returncode == 1 and want in r.stderr and "test failed" in r.stderr,
                "-t refuses \"%s\" with file:line (%s)" % (name, os.path.basename(where)), r.stderr)

    # ---- started anyway, a refused configuration never serves
    d = t._subdir("start-auth")
    os.makedirs(os.path.join(d, "logs"))
    port = t.port()
    conf = t.write_conf(BASE % ('location /int { limit_except GET { deny all; } return 200 "secret"; }', t.port(),
                                "127.0.0.1:%d" % t.port(), key), port=port, d=d)
    r = t.run_shoal(["-p", d + "/", "-c", conf], timeout=15)  # would run forever if it started
    t.check(r.returncode == 1 and "\"limit_except\" is not implemented yet" in r.stderr
            and not sh.port_accepts(port),
            "shoal with `limit_except` exits 1 with file:line and never listens (rc=%s)" % r.returncode,
            r.stderr)

    # ---- reloads of a running node
    admin = "127.0.0.1:%d" % t.port()
    node = t.shoal(BASE % ("", t.port(), admin, key))
    sh.wait_for(lambda: ctl.members(admin) is not None, 15, "admin API")
    errlog = os.path.join(node.prefix, "logs", "error.log")
    good = open(node.conf_path).read()

    def rewrite(snippet):
        text = good.replace('location / { return 200 "base\\n"; }',
                            'location / { return 200 "base\\n"; }\n        ' + snippet)
        with open(node.conf_path, "w") as f:
            f.write(text)

    rewrite("location /lim { limit_rate 10k; return 200 \"unlimited\\n\"; }")
    lim_line = line_of(node.conf_path, "limit_rate")
    want = "%s:%d: \"limit_rate\" is not implemented yet" % (node.conf_path, lim_line)
    r = ctl.run("reload", addr=admin, timeout=30)
    t.check(r.returncode == 1 and want in r.stderr and "running one stays" in r.stderr,
            "nodectl reload with limit_rate: exit 1, file:line, the running configuration stays", r)
    r2 = t.curl(node.url("/lim"))
    t.check(r2.status == 200 and r2.body == b"base\n",
            "the old configuration still answers (/lim is not the unlimited location)", r2)
    before = len(sh.file_lines(errlog))
    node.proc.signal(signal.SIGHUP)
    sh.wait_for(lambda: any(want in l for l in sh.file_lines(errlog)[before:]), 10,
                "the SIGHUP refusal in the error log")
    t.check(True, "SIGHUP with limit_rate: the refusal with file:line is in the error log")

    rewrite("open_file_cache max=10; proxy_buffers 8 16k;")
    gz, pb = line_of(node.conf_path, "open_file_cache"), line_of(node.conf_path, "proxy_buffers")
    r = ctl.run("reload", addr=admin, timeout=30)
    w1 = "%s:%d: \"open_file_cache\" is not supported yet, ignored (tuning only)" % (
        node.conf_path, gz)
    w2 = "%s:%d: \"proxy_buffers\" is not supported yet, ignored" % (node.conf_path, pb)
    t.check(r.returncode == 0 and "configuration ok" in r.stdout and w1 in r.stdout and w2 in r.stdout,
            "nodectl reload with tuning directives: exit 0, the answer lists each warning", r)
    sh.wait_for(lambda: all(any(w in l and "[warn]" in l for l in sh.file_lines(errlog))
                            for w in (w1, w2)), 10, "the reload's warnings in the error log")
    t.check(True, "the reload's warnings are in the error log at [warn]")
    t.check(node.proc.alive(), "node still up")


if __name__ == "__main__":
    cu.run(main)
