# SPDX-License-Identifier: Apache-2.0
"""nodectl's contract for automation, against a real node: exit 0 on
success, 1 when the node answers with an error, 2 for a usage error or an
unreachable node, with exactly one line on stderr for every failure;
--addr or $SHOAL_ADDR; --json prints the API's JSON; --help; version."""

import json
import socket

import cluster_util as cu


def main(t, ctl):
    c = cu.Cluster(t, ctl)
    n = c.start("solo", cu.write_keys(t, [cu.new_key()]))

    def one_line(r):
        return r.stderr.count("\n") == 1 and r.stderr.startswith("nodectl: ")

    r = ctl.run("members", "--json", addr=n.admin)
    t.check(r.returncode == 0 and json.loads(r.stdout)[0]["name"] == "solo" and r.stderr == "",
            "members --json with --addr: exit 0, the API's JSON, nothing on stderr", r)
    r = ctl.run("members", "--json", env={"SHOAL_ADDR": n.admin})
    t.check(r.returncode == 0 and json.loads(r.stdout)[0]["status"] == "alive",
            "SHOAL_ADDR picks the node when --addr is absent", r)
    r = ctl.run("--addr=" + n.admin, "stats")
    t.check(r.returncode == 0 and "dropped_unknown_key" in r.stdout, "stats for people", r)

    for args, what in ((("--help",), "--help"), (("version",), "version")):
        r = ctl.run(*args)
        t.check(r.returncode == 0 and r.stdout and r.stderr == "", "%s exits 0" % what, r)
    t.check(ctl.run("--help").stdout.startswith("usage: nodectl"), "--help prints the usage")
    t.check(ctl.run("version").stdout.split()[0] == "nodectl", "version names nodectl")

    for args, what in ((("frobnicate",), "an unknown command"), ((), "no command"),
                       (("members", "--bogus"), "an unknown option"),
                       (("members", "extra"), "an extra argument"),
                       (("--addr",), "--addr without a value"),
                       (("--addr", "nocolon", "members"), "an address without a port")):
        r = ctl.run(*args)
        t.check(r.returncode == 2 and one_line(r), "%s: exit 2, one line on stderr" % what, r)

    # Unreachable: a port nobody listens on (we hold its lock, never bind it).
    dead = "127.0.0.1:%d" % t.port()
    r = ctl.run("members", addr=dead)
    t.check(r.returncode == 2 and one_line(r) and "cannot reach" in r.stderr,
            "an unreachable node: exit 2, one line", r)
    # A listener that never answers: the deadline turns it into exit 2.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        r = ctl.run("members", addr="127.0.0.1:%d" % s.getsockname()[1], timeout=20)
        t.check(r.returncode == 2 and one_line(r), "a node that never answers: exit 2 after the deadline", r)
    finally:
        s.close()

    # Errors from the node: exit 1 and its message.
    r = ctl.run("keyring", "remove", cu.new_key().hex(), addr=n.admin)
    t.check(r.returncode == 1 and one_line(r) and "404" in r.stderr,
            "removing an unknown key: exit 1, the node's message on one line", r)
    r = ctl.run("keyring", "install", "not-a-key", addr=n.admin)
    t.check(r.returncode == 1 and one_line(r) and "400" in r.stderr,
            "installing a malformed key: exit 1, one line", r)


if __name__ == "__main__":
    cu.run(main)
