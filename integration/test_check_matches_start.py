#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 15, defect 8: whatever `shoal -t` accepts must start.

`admin_listen localhost:PORT` passed -t and then stopped the start (the
cluster binds only numeric addresses). Each configuration below is run with
-t and started; -t must refuse (with file:line for a directive) exactly what
the start refuses, and a configuration -t accepts must start and listen:

- cluster admin_listen / bind / advertise given as a host name: refused by
  both (host names are not resolved for the cluster's addresses);
- error_log or pid in a directory that does not exist: refused by both
  (-t opens error_log as the start does, and checks the pid file can be
  created without writing it);
- the same configurations with numeric addresses and good paths: both pass,
  and the node listens.
"""

import os

import shoal_harness as sh


def main(t):
    keyfile = os.path.join(t.tmp, "gossip.key")
    with open(keyfile, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(keyfile, 0o600)
    missing = os.path.join(t.tmp, "no-such-dir")

    def conf(http_port, admin, bind, advertise=None, top=""):
        adv = f"advertise {advertise};" if advertise else ""
        return f"""{top}
        events {{ }}
        http {{ server {{ listen 127.0.0.1:{http_port}; location / {{ return 200; }} }} }}
        cluster {{
            name itest; node_name n1; bind {bind}; {adv}
            admin_listen {admin};
            encrypt_key_file {keyfile}; profile local;
        }}
        """

    def case(name, text_of, want_ok):
        hp, ap, gp = sh.free_port(), sh.free_port(), sh.free_port()
        text = text_of(hp, ap, gp)
        path = t.write_conf(text, name=name + ".conf")
        chk = t.run_shoal(["-t", "-c", path])
        t.check((chk.returncode == 0) == want_ok,
                f"{name}: -t {'accepts' if want_ok else 'refuses'}", chk.stderr)
        if not want_ok:
            t.check(".conf:" in chk.stderr or "open()" in chk.stderr,
                    f"{name}: -t says where (file:line or the path)", chk.stderr)
        # and the start agrees
        p = t._spawn("shoal-" + name, [t.shoal_bin, "-c", path, "-p", t.tmp + "/"],
                     os.path.join(t.tmp, "run-" + name))
        if want_ok:
            sh.wait_for(lambda: sh.port_accepts(hp) or not p.alive(), 15, f"{name} listening")
            t.check(p.alive() and sh.port_accepts(hp), f"{name}: starts and listens",
                    p.tail())
            t.stop(p)
        else:
            rc = p.wait_exit(15)
            if rc is not None:
                t.procs.remove(p)  # its exit is the point here
            t.check(rc not in (None, 0), f"{name}: the start refuses it too", (rc, p.tail()))

    case("admin-localhost", lambda hp, ap, gp: conf(hp, f"localhost:{ap}", f"127.0.0.1:{gp}"),
         False)
    case("bind-localhost", lambda hp, ap, gp: conf(hp, f"127.0.0.1:{ap}", f"localhost:{gp}"),
         False)
    case("advertise-name", lambda hp, ap, gp: conf(hp, f"127.0.0.1:{ap}", f"127.0.0.1:{gp}",
                                                   advertise=f"node1.example:{gp}"), False)
    case("admin-no-port", lambda hp, ap, gp: conf(hp, "127.0.0.1", f"127.0.0.1:{gp}"), False)
    case("error-log-missing-dir", lambda hp, ap, gp: conf(
        hp, f"127.0.0.1:{ap}", f"127.0.0.1:{gp}", top=f"error_log {missing}/error.log;"), False)
    case("pid-missing-dir", lambda hp, ap, gp: conf(
        hp, f"127.0.0.1:{ap}", f"127.0.0.1:{gp}", top=f"pid {missing}/shoal.pid;"), False)
    case("numeric", lambda hp, ap, gp: conf(
        hp, f"127.0.0.1:{ap}", f"127.0.0.1:{gp}", advertise=f"127.0.0.1:{gp}",
        top=f"error_log {t.tmp}/e.log; pid {t.tmp}/n.pid;"), True)
    case("admin-unix", lambda hp, ap, gp: conf(hp, f"unix:{t.tmp}/admin.sock",
                                               f"[::1]:{gp}"), True)


if __name__ == "__main__":
    sh.run(main)
