# SPDX-License-Identifier: Apache-2.0
"""Issue 17, "Install": the Debian package, built, inspected, installed on
this machine, run the way its systemd unit runs it, reloaded, stopped,
removed and purged.

- `cpack -G DEB` in the build tree makes shoal_VERSION_ARCH.deb; dpkg-deb
  shows the files, the conffiles, a Depends that names the package of every
  library the binaries need (computed by dpkg-shlibdeps: each NEEDED entry of
  readelf is traced to its package with dpkg -S), and the unit's settings.
- `cmake --install` (DESTDIR, prefix /usr) installs the same files.
- `dpkg -i`: the `shoal` system user, /var/log/shoal and /var/lib/shoal with
  their owners and modes, a gossip key, the man pages, bash completion, the
  unit enabled; the postinst run again (an upgrade) keeps the key.
- The unit's command lines are run as systemd would run them (systemd does
  not run as PID 1 on our machines; where it does, the unit the postinst
  started is stopped first): ExecStartPre and ExecStart as User=shoal with only
  CAP_NET_BIND_SERVICE (setpriv), UMask, WorkingDirectory and a NOTIFY_SOCKET
  of ours: READY=1 arrives, HTTP and the admin API answer, logs are written
  with the right owner; ExecReload ($MAINPID) sends RELOADING=1 then READY=1
  and a server added in /etc/shoal/conf.d/ answers; logrotate rotates and,
  when this shoal catches SIGUSR1, the node writes to the new file;
  KillSignal (SIGTERM) sends STOPPING=1 and the node exits 0 well within
  TimeoutStopSec.
- `dpkg -r` keeps the conffiles and the state; `dpkg --purge` removes them,
  the logs and the state; the system user stays, as Debian does.

Needs root and dpkg-dev (exit 77 otherwise). The machine is restored
whatever happens: the package purged, no shoal left running, the user
deleted if this test created it. One run at a time on a machine (a lock).
"""

import fcntl
import grp
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time

import shoal_harness as sh

SKIP = 77
PKG = "shoal"


def skip(why):
    print("SKIP - %s" % why, flush=True)
    sys.exit(SKIP)


def run(argv, timeout=120, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def installed():
    r = run(["dpkg-query", "-W", "-f=${Status}", PKG])
    return r.returncode == 0 and "installed" in r.stdout and "not-installed" not in r.stdout


def dpkg_known():
    """The package is known to dpkg in any state (installed, config-files)."""
    r = run(["dpkg-query", "-W", "-f=${Status}", PKG])
    return r.returncode == 0 and "not-installed" not in r.stdout


def unit_settings(text):
    """systemd unit text -> {key: [values]} over every section."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        k, _, v = line.partition("=")
        out.setdefault(k.strip(), []).append(v.strip())
    return out


class Notify:
    """A NOTIFY_SOCKET of ours (abstract, so the shoal user can reach it)."""

    def __init__(self):
        self.name = "shoal-integ-notify-%d" % os.getpid()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.msgs = []

    @property
    def env(self):
        return "@" + self.name

    def wait(self, line, timeout, proc=None):
        """Wait for a datagram holding `line` (KEY=VALUE) after those seen."""
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.msgs):
                if line in m.split("\n"):
                    del self.msgs[:i + 1]
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if proc is not None and not proc.alive():
                return False
            self.sock.settimeout(min(left, 0.2))
            try:
                self.msgs.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()


def main(t):
    if os.geteuid() != 0:
        skip("not root: dpkg -i needs root")
    for tool in ("dpkg-deb", "dpkg-shlibdeps", "cpack", "setpriv", "readelf"):
        if shutil.which(tool) is None:
            skip("%s not found (bash scripts/deps.sh installs dpkg-dev)" % tool)
    # one package test per machine at a time (two build trees, two engineers)
    lockf = open(os.path.join(sh.tempfile.gettempdir(), "shoal-integ-package.lock"), "w")
    sh.wait_for(lambda: _try_lock(lockf), 240, "the machine's package-test lock", interval=0.5)
    if dpkg_known():
        skip("a shoal package is already on this machine (dpkg -l shoal): not touching it")
    user_existed = _user_exists()
    try:
        body(t)
    finally:
        for p in t.procs:  # before the purge: the node goes first
            p.stop(timeout=50)
        if dpkg_known():
            r = run(["dpkg", "--purge", PKG])
            t.log("cleanup: dpkg --purge: rc=%d" % r.returncode)
        for p in ("/etc/shoal/conf.d/itest.conf",):
            if os.path.exists(p):
                os.unlink(p)
        for d in ("/etc/shoal/conf.d", "/etc/shoal"):
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
        if not user_existed and _user_exists():
            r = run(["deluser", "--system", "--quiet", "shoal"])
            if _group_exists():
                run(["delgroup", "--system", "--quiet", "shoal"])
            t.log("cleanup: the shoal user this test made is deleted (rc=%d)" % r.returncode)
        t.check(not dpkg_known() and not any(_alive_as_shoal()),
                "the machine is restored: no shoal package, no process of user shoal")


def _try_lock(f):
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _user_exists():
    try:
        pwd.getpwnam("shoal")
        return True
    except KeyError:
        return False


def _group_exists():
    try:
        grp.getgrnam("shoal")
        return True
    except KeyError:
        return False


def _alive_as_shoal():
    if not _user_exists():
        return []
    uid = pwd.getpwnam("shoal").pw_uid
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat("/proc/" + pid).st_uid == uid:
                    out.append(int(pid))
            except OSError:
                pass
    return out


def body(t):
    shoal = t.shoal_bin
    build = os.path.dirname(os.path.dirname(shoal))
    cfg = os.path.join(build, "CPackConfig.cmake")
    t.require(os.path.exists(cfg), "the build tree has CPackConfig.cmake", cfg)
    version = run([shoal, "-v"]).stdout.split()[-1]
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()

    # ---------------------------------------------------------- the .deb --
    out = os.path.join(t.tmp, "pkg")
    t0 = time.monotonic()
    r = run(["cpack", "--config", cfg, "-G", "DEB", "-B", out], timeout=300, cwd=build)
    t.require(r.returncode == 0, "cpack -G DEB builds the package", r.stdout + r.stderr)
    t.log("cpack took %.1fs" % (time.monotonic() - t0))
    deb = os.path.join(out, "shoal_%s_%s.deb" % (version, arch))
    t.require(os.path.exists(deb), "the package is shoal_VERSION_ARCH.deb (%s)"
              % os.path.basename(deb), os.listdir(out))

    listing = run(["dpkg-deb", "-c", deb]).stdout
    files = {}
    for line in listing.splitlines():
        f = line.split()
        files[f[5][1:].rstrip("/") or "/"] = (f[0], f[1])
    want = {"/usr/sbin/shoal": "-rwxr-xr-x", "/usr/bin/nodectl": "-rwxr-xr-x",
            "/etc/shoal/shoal.conf": "-rw-r--r--", "/etc/shoal/conf.d": "drwxr-xr-x",
            "/etc/logrotate.d/shoal": "-rw-r--r--",
            "/lib/systemd/system/shoal.service": "-rw-r--r--",
            "/usr/share/man/man8/shoal.8.gz": "-rw-r--r--",
            "/usr/share/man/man1/nodectl.1.gz": "-rw-r--r--",
            "/usr/share/bash-completion/completions/nodectl": "-rw-r--r--",
            "/usr/share/doc/shoal/deploy.md": "-rw-r--r--",
            "/usr/share/doc/shoal/copyright": "-rw-r--r--"}
    for path, mode in want.items():
        t.check(files.get(path, ("?",))[0] == mode and files[path][1] == "root/root",
                "the package holds %s (%s root/root)" % (path, mode), files.get(path))

    ctl = os.path.join(t.tmp, "control")
    run(["dpkg-deb", "-e", deb, ctl])
    with open(os.path.join(ctl, "conffiles")) as f:
        conffiles = sorted(f.read().split())
    t.check(conffiles == ["/etc/logrotate.d/shoal", "/etc/shoal/shoal.conf"],
            "conffiles: /etc/shoal/shoal.conf and /etc/logrotate.d/shoal", conffiles)
    for s in ("postinst", "prerm", "postrm"):
        p = os.path.join(ctl, s)
        t.check(os.path.exists(p) and os.stat(p).st_mode & 0o777 == 0o755,
                "maintainer script %s is there, mode 0755" % s)

    depends = run(["dpkg-deb", "-f", deb, "Depends"]).stdout.strip()
    dep_pkgs = {d.strip().split()[0] for d in depends.split(",") if d.strip()}
    t.log("Depends: " + depends)
    # every library the binaries need, traced to its Debian package
    staged = os.path.join(t.tmp, "staged")
    run(["dpkg-deb", "-x", deb, staged])
    needed = {}  # library -> its resolved path
    for b in ("usr/sbin/shoal", "usr/bin/nodectl"):
        dyn = run(["readelf", "-d", os.path.join(staged, b)]).stdout
        resolved = dict(re.findall(r"^\s*(\S+) => (/\S+)", run(["ldd", os.path.join(staged, b)])
                                   .stdout, re.M))
        for lib in re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dyn):
            needed[lib] = resolved.get(lib, lib)
    needed_pkgs = _lib_packages(needed)
    missing = {l: p for l, p in needed_pkgs.items() if p not in dep_pkgs}
    t.check(needed_pkgs and not missing,
            "Depends names the package of every library the binaries need (%d libraries: %s)"
            % (len(needed_pkgs), ", ".join(sorted(set(needed_pkgs.values())))), missing)
    t.check(re.search(r"libc6 \(>= [0-9.]+\)", depends) is not None and "libsystemd0" in depends
            and "adduser" in dep_pkgs,
            "Depends has shlibdeps' versions (libc6 (>= ...)), libsystemd0 and adduser")

    with open(os.path.join(staged, "lib/systemd/system/shoal.service")) as f:
        unit_text = f.read()
    u = unit_settings(unit_text)
    one = lambda k: (u.get(k) or [""])[-1]  # noqa: E731
    t.check(one("Type") == "notify", "unit: Type=notify")
    t.check(one("User") == "shoal" and one("Group") == "shoal", "unit: User=shoal Group=shoal")
    t.check(one("ExecStart") == "/usr/sbin/shoal -c /etc/shoal/shoal.conf",
            "unit: ExecStart=/usr/sbin/shoal -c /etc/shoal/shoal.conf", one("ExecStart"))
    t.check(one("ExecReload") == "/bin/kill -HUP $MAINPID", "unit: ExecReload sends SIGHUP")
    t.check(one("KillSignal") == "SIGTERM", "unit: KillSignal=SIGTERM")
    stop_s = int(re.match(r"(\d+)s?$", one("TimeoutStopSec")).group(1))
    t.check(stop_s > 30 + 2, "unit: TimeoutStopSec (%ds) covers worker_shutdown_timeout's "
            "default 30s plus the cluster leave" % stop_s)
    for k, v in (("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                 ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
                 ("AmbientCapabilities", "CAP_NET_BIND_SERVICE")):
        t.check(one(k) == v, "unit: %s=%s" % (k, v), one(k))
    rw = " ".join(u.get("ReadWritePaths", [])).split()
    t.check("/var/log/shoal" in rw and "/var/lib/shoal" in rw,
            "unit: ReadWritePaths has the logs and /var/lib/shoal (keyring, cache)", rw)

    # ---------------------------------------------- cmake --install, same --
    di = os.path.join(t.tmp, "destdir")
    env = dict(os.environ, DESTDIR=di)
    r = run(["cmake", "--install", build, "--prefix", "/usr"], env=env)
    t.check(r.returncode == 0, "cmake --install (DESTDIR, prefix /usr) runs", r.stderr)
    got = set()
    for root, dirs, fs in os.walk(di):
        for name in fs + [d for d in dirs if not os.listdir(os.path.join(root, d))]:
            got.add(os.path.join(root, name)[len(di):])
    deb_leaves = {p for p, (m, _) in files.items() if m[0] == "-"} | {"/etc/shoal/conf.d"}
    t.check(got == deb_leaves, "cmake --install installs the same files as the package",
            "only in cmake --install: %s\nonly in the .deb: %s"
            % (sorted(got - deb_leaves), sorted(deb_leaves - got)))

    # -------------------------------------------------------- dpkg -i --
    r = run(["dpkg", "-i", deb], timeout=180)
    t.require(r.returncode == 0, "dpkg -i installs the package", r.stdout + r.stderr)
    if os.path.isdir("/run/systemd/system"):
        # systemd runs here: the postinst started the unit on the packaged
        # configuration (port 80); see it, then stop it so that the command
        # lines below run alone.
        r = run(["systemctl", "is-active", "shoal.service"])
        t.log("systemd: shoal.service after dpkg -i: %s" % r.stdout.strip())
        r = run(["systemctl", "stop", "shoal.service"], timeout=60)
        t.check(r.returncode == 0, "systemctl stop shoal.service", r.stderr)
    pw = pwd.getpwnam("shoal")
    t.check(pw.pw_uid < 1000 and pw.pw_shell in ("/usr/sbin/nologin", "/bin/false")
            and pw.pw_dir == "/var/lib/shoal",
            "a `shoal` system user (uid %d < 1000, no login shell, home /var/lib/shoal)"
            % pw.pw_uid, pw)
    adm = grp.getgrnam("adm").gr_gid
    for path, uid, gid, mode in (("/var/log/shoal", pw.pw_uid, adm, 0o750),
                                 ("/var/lib/shoal", pw.pw_uid, pw.pw_gid, 0o750),
                                 ("/var/lib/shoal/gossip.key", pw.pw_uid, pw.pw_gid, 0o600)):
        st = os.stat(path)
        t.check((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, mode),
                "%s: owner %d:%d mode %o" % (path, uid, gid, mode),
                (st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))))
    with open("/var/lib/shoal/gossip.key") as f:
        key1 = f.read()
    r = run(["man", "-w", "8", "shoal"])
    t.check(r.stdout.strip() == "/usr/share/man/man8/shoal.8.gz", "man -w 8 shoal finds shoal(8)",
            r.stdout + r.stderr)
    r = run(["man", "-w", "1", "nodectl"])
    t.check(r.stdout.strip() == "/usr/share/man/man1/nodectl.1.gz",
            "man -w 1 nodectl finds nodectl(1)", r.stdout + r.stderr)
    r = run(["bash", "-c", "source /usr/share/bash-completion/completions/nodectl; "
             "COMP_WORDS=(nodectl mem); COMP_CWORD=1; _nodectl; echo ${COMPREPLY[@]}; "
             "COMP_WORDS=(nodectl keys i); COMP_CWORD=2; _nodectl; echo ${COMPREPLY[@]}"])
    t.check(r.stdout.split("\n")[:2] == ["members", "install"],
            "bash completion: `nodectl mem<TAB>` -> members, `nodectl keys i<TAB>` -> install",
            r.stdout + r.stderr)
    if shutil.which("deb-systemd-helper"):
        t.check(os.path.islink("/etc/systemd/system/multi-user.target.wants/shoal.service"),
                "the unit is enabled (WantedBy=multi-user.target), as dh_installsystemd does")
    # an upgrade's configure step again (what dpkg -i of a newer version runs;
    # run directly: a second dpkg -i costs a man-db trigger run)
    r = run(["sh", "/var/lib/dpkg/info/shoal.postinst", "configure", version])
    with open("/var/lib/shoal/gossip.key") as f:
        t.check(r.returncode == 0 and f.read() == key1,
                "postinst configure runs again (as on an upgrade) and keeps the gossip key",
                r.stdout + r.stderr)
    if shutil.which("systemd-analyze"):
        r = run(["systemd-analyze", "verify", "--man=no", "/lib/systemd/system/shoal.service"])
        bad = [l for l in (r.stdout + r.stderr).splitlines()
               if "shoal.service" in l and "Failed to" not in l]
        t.check(not bad, "systemd-analyze verify has nothing to say about shoal.service",
                r.stdout + r.stderr)

    # The unit's command lines, as systemd would run them (no systemd here).
    def as_unit(cmdline):
        caps = "-all,+net_bind_service"
        return ["sh", "-c", "umask %s; cd %s && exec setpriv --reuid=shoal --regid=shoal "
                "--init-groups --inh-caps=%s --ambient-caps=%s --bounding-set=%s --no-new-privs "
                "-- %s" % (one("UMask"), one("WorkingDirectory"), caps, caps, caps, cmdline)]

    r = run(as_unit(one("ExecStartPre")))
    t.check(r.returncode == 0 and "test is successful" in r.stderr,
            "ExecStartPre (shoal -t) accepts the installed default configuration as user shoal",
            r.stderr)

    # Free ports in place of 80, 7946 and 9901 (a shared machine).
    http, gossip, admin, extra = t.port(), t.port(), t.port(), t.port()
    with open("/etc/shoal/shoal.conf") as f:
        conf = f.read()
    conf2 = conf.replace("listen 80 default_server;", "listen 127.0.0.1:%d default_server;" % http)
    conf2 = conf2.replace("bind 127.0.0.1:7946;", "bind 127.0.0.1:%d;" % gossip)
    conf2 = conf2.replace("admin_listen 127.0.0.1:9901;", "admin_listen 127.0.0.1:%d;" % admin)
    t.require(conf2.count("127.0.0.1:%d" % http) == 1 and str(gossip) in conf2
              and str(admin) in conf2, "the default configuration's ports can be moved")
    with open("/etc/shoal/shoal.conf", "w") as f:
        f.write(conf2)

    notify = Notify()
    env = dict(os.environ, NOTIFY_SOCKET=notify.env)
    proc = t._spawn("shoal-unit", as_unit(one("ExecStart")), os.path.join(t.tmp, "unit"), env=env)
    t.require(notify.wait("READY=1", 20, proc), "ExecStart: the node sends READY=1 (Type=notify)",
              proc.tail())
    r = t.curl("http://127.0.0.1:%d/shoal/health" % http)
    t.check(r.status == 200 and r.body == b"ok\n", "the default server answers /shoal/health", r)
    r = t.curl("http://127.0.0.1:%d/" % http)
    t.check(r.status == 404, "the default server answers 404 elsewhere", r)
    ctl = "/usr/bin/nodectl"
    r = run([ctl, "--addr", "127.0.0.1:%d" % admin, "members"])
    t.check(r.returncode == 0 and "alive" in r.stdout,
            "nodectl (installed) reads the node's members", r.stdout + r.stderr)
    r = t.curl("http://127.0.0.1:%d/ui/" % admin)
    t.check(r.status == 200 and b"/ui/app.js" in r.body,
            "the installed node serves the dashboard at /ui/", r)
    with open("/proc/%d/status" % proc.pid) as f:
        status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
    t.check(status["Uid"].split()[0] == str(pw.pw_uid), "the node runs as user shoal",
            status["Uid"])
    t.check(int(status["CapEff"].strip(), 16) == 1 << 10 and status["NoNewPrivs"].strip() == "1",
            "the node holds CAP_NET_BIND_SERVICE only, no new privileges",
            (status["CapEff"], status["NoNewPrivs"]))
    st = os.stat("/var/log/shoal/error.log")
    t.check(st.st_uid == pw.pw_uid and stat.S_IMODE(st.st_mode) == 0o640,
            "/var/log/shoal/error.log is the node's, mode 0640 (UMask=0027)",
            (st.st_uid, oct(st.st_mode)))
    sh.wait_for(lambda: "/shoal/health" in "".join(sh.file_lines("/var/log/shoal/access.log")),
                10, "the access log line")
    with open("/run/shoal/shoal.pid") as f:
        t.check(f.read().strip() == str(proc.pid), "/run/shoal/shoal.pid holds the node's pid")

    # ExecReload, with a site added in conf.d
    with open("/etc/shoal/conf.d/itest.conf", "w") as f:
        f.write("server { listen 127.0.0.1:%d; location / { return 200 \"from conf.d\\n\"; } }\n"
                % extra)
    r = run(["sh", "-c", one("ExecReload").replace("$MAINPID", str(proc.pid))])
    t.check(r.returncode == 0, "ExecReload runs", r.stderr)
    t.check(notify.wait("RELOADING=1", 10, proc) and notify.wait("READY=1", 20, proc),
            "the reload sends RELOADING=1 then READY=1")
    sh.wait_for(lambda: sh.port_accepts(extra), 10, "the conf.d server after the reload")
    r = t.curl("http://127.0.0.1:%d/" % extra)
    t.check(r.status == 200 and r.body == b"from conf.d\n",
            "a server in /etc/shoal/conf.d/ answers after the reload", r)

    # logrotate (the package's file, forced)
    if shutil.which("logrotate"):
        state = os.path.join(t.tmp, "logrotate.state")
        r = run(["logrotate", "-d", "-s", state, "/etc/logrotate.d/shoal"])
        t.check(r.returncode == 0 and "error:" not in r.stderr,
                "logrotate accepts /etc/logrotate.d/shoal", r.stderr[-2000:])
        with open("/proc/%d/status" % proc.pid) as f:
            caught = int(dict(l.split(":", 1) for l in f.read().splitlines())["SigCgt"], 16)
        if caught & (1 << (10 - 1)):  # SIGUSR1 is 10
            r = run(["logrotate", "-f", "-s", state, "/etc/logrotate.d/shoal"])
            t.check(r.returncode == 0 and os.path.exists("/var/log/shoal/access.log.1"),
                    "logrotate -f rotates access.log and error.log", r.stderr[-2000:])
            t.curl("http://127.0.0.1:%d/shoal/health?after-rotation" % http)
            sh.wait_for(lambda: "after-rotation" in
                        "".join(sh.file_lines("/var/log/shoal/access.log")), 10,
                        "the node to write to the new access.log after SIGUSR1")
            t.check(proc.alive(), "the node lives on after the rotation")
        else:
            t.log("this shoal does not catch SIGUSR1 yet: logrotate checked, not run "
                  "(it would end the node)")
    else:
        t.log("logrotate is not installed: its file was not exercised")

    # KillSignal: drain and exit 0
    t0 = time.monotonic()
    proc.injected = True  # it is meant to exit now
    proc.signal(getattr(__import__("signal"), one("KillSignal")))
    t.check(notify.wait("STOPPING=1", 10), "SIGTERM: the node sends STOPPING=1")
    rc = proc.wait_exit(stop_s)
    t.check(rc == 0, "SIGTERM: the node exits 0 in %.1fs (TimeoutStopSec %ds)"
            % (time.monotonic() - t0, stop_s), proc.tail())
    t.check(not os.path.exists("/run/shoal/shoal.pid"), "the pid file is removed at exit")
    proc.stop()
    notify.close()

    # logrotate with the node stopped (the pid file gone: no signal sent)
    if shutil.which("logrotate"):
        r = run(["logrotate", "-f", "-s", os.path.join(t.tmp, "logrotate.state2"),
                 "/etc/logrotate.d/shoal"])
        st = os.stat("/var/log/shoal/error.log") if os.path.exists("/var/log/shoal/error.log") \
            else None
        t.check(r.returncode == 0 and os.path.exists("/var/log/shoal/error.log.1") and st
                and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (pw.pw_uid, adm, 0o640),
                "logrotate -f (as su shoal adm) rotates error.log and creates a new one "
                "shoal:adm 0640", (r.stdout + r.stderr, st))

    # remove, then purge
    os.unlink("/etc/shoal/conf.d/itest.conf")  # the admin's own file, not the package's
    r = run(["dpkg", "-r", PKG], timeout=180)
    t.check(r.returncode == 0 and not os.path.exists("/usr/sbin/shoal")
            and os.path.exists("/etc/shoal/shoal.conf")
            and os.path.exists("/var/lib/shoal/gossip.key"),
            "dpkg -r removes the binaries, keeps the conffiles and the state", r.stdout + r.stderr)
    r = run(["dpkg", "--purge", PKG], timeout=180)
    gone = [p for p in ("/etc/shoal", "/etc/logrotate.d/shoal", "/var/log/shoal", "/var/lib/shoal",
                        "/lib/systemd/system/shoal.service", "/usr/bin/nodectl",
                        "/usr/share/doc/shoal") if os.path.exists(p)]
    t.check(r.returncode == 0 and not gone and not dpkg_known(),
            "dpkg --purge removes the conffiles, logs and state", (r.stdout + r.stderr, gone))
    t.check(not os.path.exists("/etc/systemd/system/multi-user.target.wants/shoal.service"),
            "purge removes the unit's enablement (deb-systemd-helper)")
    t.check(_user_exists(), "the system user stays after purge (Debian: never remove system "
            "accounts; `deluser --system shoal` by hand)")


def _lib_packages(libs):
    """{library: the Debian package that ships it} by one dpkg -S (with /usr
    merged, dpkg may know a file under /lib or /usr/lib)."""
    cands = {}
    for lib, path in libs.items():
        real = os.path.realpath(path)
        for p in {path, real, "/usr" + real, real[4:] if real.startswith("/usr/") else real}:
            cands[p] = lib
    r = run(["dpkg", "-S"] + sorted(cands))
    out = {lib: "(no package ships %s)" % path for lib, path in libs.items()}
    for line in r.stdout.splitlines():
        pkgs, _, path = line.partition(": ")
        if path in cands:
            out[cands[path]] = pkgs.split(",")[0].split(":")[0].strip()
    return out


if __name__ == "__main__":
    sh.run(main)
