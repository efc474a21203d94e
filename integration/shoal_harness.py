# SPDX-License-Identifier: Apache-2.0
"""The integration-test harness for Shoal: real processes on free loopback ports.

Stdlib only. A test script does

    import shoal_harness as sh

    def main(t):                      # t: sh.Test
        b1 = t.backend("b1")
        node = t.shoal(f'''
            events {{ }}
            http {{
                upstream be {{ server 127.0.0.1:{b1.port}; keepalive 8; }}
                server {{ listen 127.0.0.1:{{port}}; location / {{ proxy_pass http://be; }} }}
            }}''')
        r = t.curl(node.url("/"))
        t.check(r.status == 200, "GET / is 200", r)

    sh.run(main)

`Test` is a context manager (sh.run uses it); so is `Proc`.

Rules it keeps (style.md, rule 14):

- Ports. `free_port()` takes a port below the kernel's ephemeral range (so
  the kernel never hands it to an outgoing connection), checks that it can be
  bound, and holds an flock on TMP/shoal-integ-ports/PORT.lock for the life
  of the process. Every harness user takes the same locks, so parallel tests
  (`ctest -j`, two build trees at once) never pick the same port.
- Processes. Every child (shoal or backend) gets its own directory under the
  test's temp dir, with stdout and stderr in files there, and PDEATHSIG so it
  dies if the test process is killed outright. They are stopped by PID
  (SIGTERM, then SIGKILL after a deadline) when the Test context exits, at
  interpreter exit and on SIGTERM/SIGINT/SIGHUP, whatever happens.
- Waiting is `wait_for(condition, deadline)`: a condition polled until a
  deadline, never a bare sleep; a child that exits while we wait for it fails
  at once with its stderr.
- A child's stderr is checked for sanitizer reports when it is stopped.

Spawn children from the main thread only: PDEATHSIG follows the thread that
forked.
"""

import argparse
import atexit
import ctypes
import fcntl
import hashlib
import http.client
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BACKEND_PY = os.path.join(HERE, "backend.py")

sys.path.insert(0, HERE)
import backend as _backend  # noqa: E402  (the stream pattern lives there)

pattern_pieces = _backend.pattern_pieces
pattern_sha256 = _backend.pattern_sha256


class HarnessError(Exception):
    """Something the test needed could not be set up (not a check failing)."""


# ------------------------------------------------------------------ waiting --

def wait_for(cond, timeout, what, interval=0.02):
    """Poll cond() until it returns a true value or timeout seconds pass.
    Returns that value; raises HarnessError naming `what` on timeout.
    cond may raise HarnessError to give up early."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise HarnessError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# -------------------------------------------------------------------- ports --

_LOCK_DIR = os.path.join(tempfile.gettempdir(), "shoal-integ-ports")
_held_locks = {}  # port -> open fd holding the flock


def _port_range():
    lo, hi = 20000, 32000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo, _ = (int(x) for x in f.read().split())
        if eph_lo > 12000:
            hi = min(hi, eph_lo - 1)
            lo = min(lo, hi - 8000)
    except (OSError, ValueError):
        pass
    return lo, hi


def free_port(host="127.0.0.1"):
    """A TCP port on host that is free now and that no other harness user will
    take while this process lives (see the module comment)."""
    os.makedirs(_LOCK_DIR, exist_ok=True)
    try:
        os.chmod(_LOCK_DIR, 0o1777)
    except OSError:
        pass
    lo, hi = _port_range()
    rnd = random.Random(os.getpid() ^ int(time.time() * 1e6))
    for _ in range(2000):
        port = rnd.randrange(lo, hi)
        if port in _held_locks:
            continue
        path = os.path.join(_LOCK_DIR, "%d.lock" % port)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
        except OSError:
            os.close(fd)
            continue
        finally:
            s.close()
        _held_locks[port] = fd
        return port
    raise HarnessError("no free port found in %d-%d" % (lo, hi))


def file_lines(path):
    """The lines of a (log) file as text (latin-1), [] while it does not exist."""
    try:
        with open(path, "rb") as f:
            return [l.decode("latin-1") for l in f.read().splitlines()]
    except FileNotFoundError:
        return []


def file_has(path, text):
    """True if the (log) file at path holds text; False while it cannot be read."""
    try:
        with open(path) as f:
            return text in f.read()
    except OSError:
        return False


def field_log(path, fields):
    """The lines of a log whose format joins len(fields) values with "|":
    a dict (fields -> values) per such line; [] while it cannot be read."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("|")
                if len(parts) == len(fields):
                    out.append(dict(zip(fields, parts)))
    except OSError:
        pass
    return out


def port_accepts(port, host="127.0.0.1", timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- processes --

_live = {}  # pid -> Proc; everything not yet stopped
_live_lock = threading.Lock()

_libc = None


def _set_pdeathsig():
    # Runs in the child between fork and exec: die with the parent.
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "ERROR: UndefinedBehaviorSanitizer")


class Proc:
    """A child process with its own directory, stdout/stderr in files there."""

    def __init__(self, name, argv, workdir, env=None, cwd=None):
        self.name = name
        self.argv = argv
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.stdout_path = os.path.join(workdir, "stdout")
        self.stderr_path = os.path.join(workdir, "stderr")
        out = open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        try:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                          env=env, cwd=cwd or workdir,
                                          preexec_fn=_set_pdeathsig)
        finally:
            out.close()
            err.close()
        self.pid = self.popen.pid
        self.returncode = None
        self.killed = False  # needed SIGKILL to stop
        self.injected = False  # killed on purpose (failure injection)
        self.exited_early = None  # exit code if it died before we stopped it
        with _live_lock:
            _live[self.pid] = self

    def alive(self):
        return self.popen.poll() is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stdout(self):
        return _read(self.stdout_path)

    def stderr(self):
        return _read(self.stderr_path)

    def tail(self, n=30):
        lines = self.stderr().splitlines()
        return "\n".join(lines[-n:])

    def signal(self, sig):
        """Send sig to this process (by PID), if it is still ours and alive."""
        if self.popen.poll() is None:
            os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after timeout seconds. Returns the exit code
        (negative: killed by that signal). Safe to call twice."""
        if self.popen.poll() is not None and self.returncode is None and not self.injected:
            self.exited_early = self.popen.returncode
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGCONT)  # a SIGSTOPped child cannot exit
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait_exit(timeout) is None:
                self.killed = True
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait()
        self.returncode = self.popen.returncode
        with _live_lock:
            _live.pop(self.pid, None)
        return self.returncode

    def kill(self):
        """SIGKILL now (failure injection) and reap."""
        self.injected = True
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait()
        self.returncode = self.popen.returncode
        with _live_lock:
            _live.pop(self.pid, None)

    def sanitizer_report(self):
        err = self.stderr()
        for m in SANITIZER_MARKS:
            i = err.find(m)
            if i >= 0:
                return err[max(0, i - 200):i + 3000]
        return None

    def memory_kb(self):
        """(VmRSS, VmHWM) in kB from /proc/PID/status."""
        vals = {}
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    vals[k] = int(v.split()[0])
        return vals.get("VmRSS"), vals.get("VmHWM")


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stop_all():
    with _live_lock:
        procs = list(_live.values())
    # Newest first: the node before its backends.
    for p in reversed(procs):
        try:
            p.stop(timeout=3.0)
        except Exception:
            pass


_handlers_installed = False


def _install_handlers():
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(stop_all)

    def on_signal(signum, frame):
        print("# signal %d: stopping every child by PID, then exiting" % signum, flush=True)
        stop_all()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            signal.signal(s, on_signal)
        except (ValueError, OSError):
            pass


# ------------------------------------------------------------- the actors --

class Backend:
    def __init__(self, proc, name, port, host="127.0.0.1"):
        self.proc = proc
        self.name = name
        self.port = port
        self.host = host
        self.addr = "%s:%d" % (host, port)
        self.admin = None  # the admin listener's port, when the harness chose it

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path="/"):
        return "http://%s%s" % (self.addr, path)

    def admin_url(self, path="/metrics"):
        return "http://127.0.0.1:%d%s" % (self.admin, path)

    def stats(self):
        """The backend's counters, asked directly (not through shoal)."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            c.request("GET", "/stats")
            r = c.getresponse()
            return json.loads(r.read())
        finally:
            c.close()


class Node:
    def __init__(self, proc, port, conf_path, prefix, host="127.0.0.1"):
        self.proc = proc
        self.port = port
        self.conf_path = conf_path
        self.prefix = prefix
        self.host = host
        self.addr = "%s:%d" % (host, port)

    @property
    def pid(self):
        return self.proc.pid

    def url(self, path="/"):
        return "http://%s%s" % (self.addr, path)


# ---------------------------------------------------------------- clients --

class CurlResult:
    def __init__(self, rc, status, headers, body, stderr, elapsed, info):
        self.rc = rc
        self.status = status
        self.headers = headers  # list of (name, value) of the last response
        self.body = body        # bytes (or None when streamed to a sink)
        self.stderr = stderr
        self.elapsed = elapsed
        self.info = info        # curl -w variables we asked for
        self.sha256 = None
        self.body_len = None

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def text(self):
        return self.body.decode("utf-8", "replace") if self.body is not None else ""

    def __repr__(self):
        body = self.body
        if body is not None and len(body) > 300:
            body = body[:300] + b"..."
        return ("CurlResult(rc=%s status=%s elapsed=%.3fs headers=%r body=%r stderr=%r)"
                % (self.rc, self.status, self.elapsed, self.headers, body, self.stderr.strip()))


def _parse_header_dump(raw):
    """curl -D output: possibly several responses (1xx, redirects); keep the
    last. Returns (status, [(name, value)])."""
    blocks = [b for b in re.split(r"\r?\n\r?\n", raw) if b.strip()]
    if not blocks:
        return None, []
    last = blocks[-1].splitlines()
    m = re.match(r"HTTP/\S+\s+(\d{3})", last[0]) if last else None
    status = int(m.group(1)) if m else None
    headers = []
    for line in last[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return status, headers


def curl(url, *args, timeout=30, data_file=None, sink=None, workdir=None):
    """Run curl on url with extra args. Returns a CurlResult; a curl error is
    rc != 0 with status None, not an exception.

    sink="sha256" streams the body through SHA-256 instead of keeping it
    (result.sha256, result.body_len); otherwise result.body is the bytes.
    data_file: shorthand for --data-binary @data_file."""
    workdir = workdir or tempfile.gettempdir()
    fd, hdr_path = tempfile.mkstemp(prefix="curl-hdr-", dir=workdir)
    os.close(fd)
    wfmt = "%{stderr}\\nCURLINFO num_connects=%{num_connects} http_version=%{http_version}\\n"
    # No -o: with several URLs, "-o -" would apply to the first only and
    # the bodies could interleave out of order on stdout.
    argv = ["curl", "-sS", "--no-progress-meter", "-D", hdr_path,
            "-w", wfmt, "--max-time", str(timeout)]
    if data_file:
        argv += ["--data-binary", "@" + data_file]
    argv += [url] + list(args)  # url first: extra URLs in args keep their order
    t0 = time.monotonic()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        h = hashlib.sha256()
        n = 0
        chunks = []
        err_buf = []
        t = threading.Thread(target=lambda: err_buf.append(p.stderr.read()), daemon=True)
        t.start()
        while True:
            piece = p.stdout.read(256 * 1024)
            if not piece:
                break
            n += len(piece)
            if sink == "sha256":
                h.update(piece)
            else:
                chunks.append(piece)
        try:
            rc = p.wait(timeout + 10)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        t.join(10)
        elapsed = time.monotonic() - t0
        stderr = (err_buf[0] if err_buf else b"").decode("utf-8", "replace")
        info = {}
        for m in re.finditer(r"CURLINFO (.*)", stderr):
            for kv in m.group(1).split():
                k, _, v = kv.partition("=")
                info[k] = v
        stderr = re.sub(r"\n?CURLINFO .*\n?", "\n", stderr).strip()
        status, headers = _parse_header_dump(_read(hdr_path))
        if rc != 0 and status is not None and not headers and status == 0:
            status = None
        res = CurlResult(rc, status, headers, None if sink else b"".join(chunks), stderr,
                         elapsed, info)
        res.body_len = n
        if sink == "sha256":
            res.sha256 = h.hexdigest()
        else:
            res.sha256 = hashlib.sha256(res.body).hexdigest()
        return res
    finally:
        try:
            os.unlink(hdr_path)
        except OSError:
            pass


class RawResponse:
    def __init__(self, status, reason, version, headers, body, head):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.body = body
        self.head = head

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        b = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return "RawResponse(%s %s %s headers=%r body=%r)" % (self.version, self.status, self.reason,
                                                             self.headers, b)


class RawConn:
    """A plain TCP connection for requests curl will not send (malformed,
    pipelined). Every read has a deadline."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, deadline):
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise HarnessError("read timed out (have %d bytes: %r)" % (len(self.buf), self.buf[:200]))
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise HarnessError("read timed out (have %d bytes: %r)" % (len(self.buf), self.buf[:200]))
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _take_line(self, deadline):
        while b"\n" not in self.buf:
            if not self._fill(deadline):
                raise HarnessError("connection closed inside a line: %r" % self.buf[:200])
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def _take(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise HarnessError("connection closed with %d of %d body bytes" % (len(self.buf), n))
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def read_response(self, timeout=None, head_request=False):
        """Read one response (head and body by its framing). Raises
        HarnessError if the connection closes first or the deadline passes.
        1xx interim responses are skipped."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            while b"\r\n\r\n" not in self.buf and b"\n\n" not in self.buf:
                if not self._fill(deadline):
                    if not self.buf:
                        raise HarnessError("connection closed before a response")
                    raise HarnessError("connection closed inside a response head: %r" % self.buf[:300])
            status_line = self._take_line(deadline)
            m = re.match(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", status_line)
            if not m:
                raise HarnessError("bad status line %r" % status_line)
            version, status = m.group(1).decode(), int(m.group(2))
            reason = (m.group(3) or b"").decode("latin-1")
            headers = []
            head = status_line + b"\r\n"
            while True:
                line = self._take_line(deadline)
                head += line + b"\r\n"
                if not line:
                    break
                k, _, v = line.decode("latin-1").partition(":")
                headers.append((k, v.strip()))
            if 100 <= status < 200 and status != 101:
                continue
            break
        resp = RawResponse(status, reason, version, headers, b"", head)
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if head_request or status in (204, 304) or 100 <= status < 200:
            return resp
        if "chunked" in te:
            body = []
            while True:
                size = int(self._take_line(deadline).split(b";")[0].strip(), 16)
                if size == 0:
                    while self._take_line(deadline):
                        pass
                    break
                body.append(self._take(size, deadline))
                self._take_line(deadline)
            resp.body = b"".join(body)
        elif cl is not None:
            resp.body = self._take(int(cl), deadline)
        else:
            while self._fill(deadline):
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def closed_by_peer(self, timeout=5.0):
        """True if the peer closes (EOF or reset) within timeout with no more
        data than what is already buffered; False if it stays open."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
            return True
        except HarnessError:
            return False


def raw_exchange(port, data, host="127.0.0.1", timeout=10.0, responses=1):
    """Send data in one write on a new connection and read `responses`
    responses. Returns (list of RawResponse, RawConn) — the caller closes."""
    c = RawConn(port, host, timeout)
    c.send(data)
    out = [c.read_response() for _ in range(responses)]
    return out, c


def read_head(s):
    """One HTTP/1.x response from socket s: its head (without the blank
    line), after reading a Content-Length body past it; what came before
    the close if the peer closed inside the head."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        got = s.recv(65536)
        if not got:
            return buf
        buf += got
    head, _, rest = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(rest) < n:
        got = s.recv(65536)
        if not got:
            break
        rest += got
    return head


def http_stream(port, method, path, body_pieces=None, content_length=None, chunked=False,
                headers=None, host="127.0.0.1", timeout=120):
    """A request whose body is produced piece by piece (never whole in memory)
    and whose response body is hashed as it arrives. Returns (status,
    headers, body_len, sha256 hex, body bytes if under 1 MiB else None)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.putrequest(method, path)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        if body_pieces is not None:
            if chunked:
                c.putheader("Transfer-Encoding", "chunked")
            else:
                c.putheader("Content-Length", str(content_length))
        c.endheaders()
        if body_pieces is not None:
            for p in body_pieces:
                if chunked:
                    c.send(b"%x\r\n" % len(p) + p + b"\r\n")
                else:
                    c.send(p)
            if chunked:
                c.send(b"0\r\n\r\n")
        r = c.getresponse()
        h = hashlib.sha256()
        n = 0
        small = []
        while True:
            d = r.read(256 * 1024)
            if not d:
                break
            n += len(d)
            h.update(d)
            if n <= 1 << 20:
                small.append(d)
        return r.status, r.getheaders(), n, h.hexdigest(), (b"".join(small) if n <= 1 << 20 else None)
    finally:
        c.close()


# ------------------------------------------------------------------- a test --

def sanitized(path):
    """True if the binary at path is built with AddressSanitizer."""
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


class Test:
    """One test script's run: temp dir, ports, processes, checks.

    t.slow is 5 when shoal is a sanitizer build, else 1: an upper time bound
    that only catches a hang (not a timeout being measured) is multiplied by
    it, so an ASan run on a loaded machine does not fail it."""

    def __init__(self, shoal_bin, name, keep=False, verbose=False):
        self.shoal_bin = shoal_bin
        self.slow = 5.0 if sanitized(shoal_bin) else 1.0
        self.name = name
        self.keep = keep
        self.verbose = verbose
        self.tmp = tempfile.mkdtemp(prefix="shoal-%s-" % name)
        self.procs = []
        self.passed = 0
        self.failures = []
        self.inconclusives = []
        self._n = 0

    # -- checks --

    def log(self, msg):
        print("    " + msg, flush=True)

    def check(self, cond, what, detail=None):
        """Record a check; a failed check does not stop the script."""
        if cond:
            self.passed += 1
            print("ok   - %s" % what, flush=True)
        else:
            self.failures.append(what)
            print("FAIL - %s" % what, flush=True)
            if detail is not None:
                for line in str(detail).splitlines()[:40]:
                    print("       | " + line, flush=True)
        return bool(cond)

    def inconclusive(self, what, detail=None):
        """A check that could not be judged (its precondition, such as a
        load generator keeping its pace, did not hold): neither passed nor
        failed; a script with no failure but some of these exits 77
        (skipped), never 0."""
        self.inconclusives.append(what)
        print("SKIP - inconclusive: %s" % what, flush=True)
        if detail is not None:
            for line in str(detail).splitlines()[:40]:
                print("       | " + line, flush=True)

    def require(self, cond, what, detail=None):
        """A check the rest of the script depends on: stop if it fails."""
        if not self.check(cond, what, detail):
            raise HarnessError("required check failed: %s" % what)

    # -- resources --

    def port(self):
        return free_port()

    def _subdir(self, base):
        self._n += 1
        d = os.path.join(self.tmp, "%02d-%s" % (self._n, base))
        os.makedirs(d)
        return d

    def _spawn(self, name, argv, workdir, env=None):
        _install_handlers()
        if threading.current_thread() is not threading.main_thread():
            raise HarnessError("spawn children from the main thread (PDEATHSIG)")
        p = Proc(name, argv, workdir, env=env)
        self.procs.append(p)
        return p

    def backend(self, name, port=None, timeout=15.0):
        """Start backend.py NAME on a free port (or `port`); wait for "ready"
        and for the port to accept."""
        port = port or self.port()
        d = self._subdir("backend-" + name)
        p = self._spawn(name, [sys.executable, BACKEND_PY, "--port", str(port), "--name", name],
                        d)

        def ready():
            if not p.alive():
                raise HarnessError("backend %s exited (rc=%s): %s" % (name, p.popen.returncode, p.tail()))
            return "ready" in p.stdout().split() and port_accepts(port)
        wait_for(ready, timeout, "backend %s on port %d" % (name, port))
        self.log("backend %s pid %d on 127.0.0.1:%d" % (name, p.pid, port))
        return Backend(p, name, port)

    def write_conf(self, text, port=None, name="shoal.conf", d=None):
        """Write text (dedented; "{port}" replaced by port) to d/name."""
        d = d or self._subdir("conf")
        text = textwrap.dedent(text).lstrip("\n")
        if port is not None:
            text = text.replace("{port}", str(port))
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def shoal(self, conf, port=None, wait=True, timeout=15.0, env=None, extra_args=()):
        """Start shoal -p DIR/ -c DIR/shoal.conf with conf text ("{port}" is
        replaced with its listen port, chosen free unless given). Waits until
        the port accepts."""
        port = port or self.port()
        d = self._subdir("shoal")
        os.makedirs(os.path.join(d, "logs"), exist_ok=True)
        # Every node has an admin listener (default 127.0.0.1:9901): tests
        # run in parallel, so each node gets a free port of its own unless
        # the test chose (appended, so the test's line numbers stay).
        admin = None
        if "admin_listen" not in conf:
            admin = free_port()
            conf = textwrap.dedent(conf).rstrip() + "\nadmin_listen 127.0.0.1:%d;\n" % admin
        conf_path = self.write_conf(conf, port=port, d=d)
        argv = [self.shoal_bin, "-p", d + "/", "-c", conf_path] + list(extra_args)
        e = dict(os.environ)
        e.update(env or {})
        p = self._spawn("shoal", argv, d, env=e)
        node = Node(p, port, conf_path, d + "/")
        node.admin = admin
        if wait:
            def ready():
                if not p.alive():
                    raise HarnessError("shoal exited (rc=%s) before listening on %d:\n%s"
                                       % (p.popen.returncode, port, p.tail()))
                return port_accepts(port)
            wait_for(ready, timeout, "shoal to accept on 127.0.0.1:%d" % port)
            self.log("shoal pid %d on 127.0.0.1:%d (%s)" % (p.pid, port, d))
        return node

    def proxy_shoal(self, backend, keepalive):
        """shoal with one server that proxies every request to backend
        (upstream be, with keepalive idle connections)."""
        return self.shoal(f"""
            events {{ }}
            http {{
                upstream be {{ server 127.0.0.1:{backend.port}; keepalive {keepalive}; }}
                server {{
                    listen 127.0.0.1:{{port}};
                    location / {{ proxy_pass http://be; }}
                }}
            }}""")

    def make_cert(self, name, cn, sans=None, kind="ec", days=2, d=None):
        """A throw-away self-signed certificate made with openssl in the
        test's temp dir (or d): kind "ec" (P-256) or "rsa" (2048). Returns
        (cert_path, key_path)."""
        d = d or os.path.join(self.tmp, "certs")
        os.makedirs(d, exist_ok=True)
        cert = os.path.join(d, name + ".crt")
        key = os.path.join(d, name + ".key")
        sans = sans or ["DNS:" + cn]
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec" \
            else ["-newkey", "rsa:2048"]
        p = subprocess.run(["openssl", "req", "-x509"] + newkey +
                           ["-nodes", "-days", str(days), "-subj", "/CN=" + cn,
                            "-addext", "subjectAltName=" + ",".join(sans),
                            "-keyout", key, "-out", cert],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise HarnessError("openssl req failed: " + p.stderr)
        return cert, key

    def s_client(self, port, *args, stdin=b"", timeout=20, host="127.0.0.1"):
        """openssl s_client -connect host:port ARGS; returns (rc, stdout+stderr
        as text). stdin is sent then closed (s_client then ends)."""
        argv = ["openssl", "s_client", "-connect", "%s:%d" % (host, port)] + list(args)
        p = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")

    def run_shoal(self, args, timeout=30, cwd=None, env=None):
        """Run shoal to completion (e.g. -t). Returns CompletedProcess (text)."""
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([self.shoal_bin] + list(args), capture_output=True, text=True,
                              timeout=timeout, cwd=cwd or self.tmp, env=e,
                              stdin=subprocess.DEVNULL)

    def curl(self, url, *args, **kw):
        kw.setdefault("workdir", self.tmp)
        r = curl(url, *args, **kw)
        if self.verbose:
            self.log(repr(r))
        return r

    def stop(self, proc_or_actor, timeout=5.0):
        p = getattr(proc_or_actor, "proc", proc_or_actor)
        rc = p.stop(timeout)
        self._check_sanitizers(p)
        return rc

    def _check_sanitizers(self, p):
        if getattr(p, "_san_checked", False):
            return
        p._san_checked = True
        rep = p.sanitizer_report()
        self.check(rep is None, "%s (pid %d) stderr has no sanitizer report" % (p.name, p.pid), rep)
        if p.exited_early is None:
            self.check(True, "%s (pid %d) stayed up until the test stopped it" % (p.name, p.pid))
        else:
            self.check(False, "%s (pid %d) died on its own before the test stopped it (rc=%s)"
                       % (p.name, p.pid, p.exited_early), p.tail())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Stop every child by PID (newest first), check their stderr for
        sanitizer reports and early deaths, remove the temp dir unless a
        check failed or --keep. Safe to call twice."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for p in reversed(self.procs):
            try:
                p.stop(3.0)
            except Exception:
                pass
        for p in self.procs:
            self._check_sanitizers(p)
        if self.failures or self.keep:
            print("    (files kept in %s)" % self.tmp, flush=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def dump_logs(self):
        for p in self.procs:
            print("---- %s pid %d: %s" % (p.name, p.pid, " ".join(shlex.quote(a) for a in p.argv)))
            print("---- stderr (tail):")
            print(p.tail(40))


def default_shoal_bin():
    env = os.environ.get("SHOAL_BIN")
    if env:
        return env
    for b in ("build", "build-integ"):
        for p in (os.path.join(REPO, b, "bin", "shoal"), os.path.join(REPO, b, "cmd", "shoal", "shoal")):
            if os.path.exists(p):
                return p
    return os.path.join(REPO, "build", "bin", "shoal")


def run(main, name=None):
    """Parse --shoal/--keep/-v, run main(Test), print a summary, exit 0 only
    if every check passed. Processes are stopped whatever happens."""
    name = name or os.path.splitext(os.path.basename(sys.argv[0]))[0]
    ap = argparse.ArgumentParser(description="Shoal integration test " + name)
    ap.add_argument("--shoal", default=default_shoal_bin(), help="path to the shoal binary")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if not os.access(args.shoal, os.X_OK):
        print("FAIL - shoal binary not found or not executable: %s" % args.shoal)
        sys.exit(2)
    _install_handlers()
    with Test(os.path.abspath(args.shoal), name, keep=args.keep, verbose=args.verbose) as t:
        print("# %s (shoal: %s, tmp: %s)" % (name, t.shoal_bin, t.tmp), flush=True)
        error = None
        try:
            main(t)
        except HarnessError as e:
            error = str(e)
        except Exception:
            error = traceback.format_exc()
        if error:
            print("FAIL - aborted: %s" % error, flush=True)
            t.failures.append("aborted")
            t.dump_logs()
    ok = not t.failures
    print("# %s: %d passed, %d failed%s" % (name, t.passed, len(t.failures),
                                            "" if ok else ": " + "; ".join(t.failures)), flush=True)
    if ok and t.inconclusives:
        print("# %s: skipped, %d inconclusive: %s" % (name, len(t.inconclusives),
                                                     "; ".join(t.inconclusives)), flush=True)
        sys.exit(77)
    sys.exit(0 if ok else 1)


def json_headers(echo):
    """/echo's header list as a dict of lowercased name -> list of values."""
    out = {}
    for k, v in echo.get("headers", []):
        out.setdefault(k.lower(), []).append(v)
    return out
