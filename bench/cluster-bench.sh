#!/usr/bin/env bash
# cluster-bench.sh -- Shoal's gossip figures beside HashiCorp Serf's, in one run.
#
# For each N (default: 5 20), runs ../shared/bench/serf-baseline.sh N (Serf, Debian's
# package) and the same four measurements on N REAL shoal processes on 127.0.0.1
# (profile lan, like serf's default): time until all see N alive after the joins through
# one seed, time until all others see a SIGKILLed node dead, time until all others see a
# SIGTERMed node left (graceful leave), and gossip bytes per node per second (UDP + TCP
# push-pull at IP level, counted once on lo with an AF_PACKET socket, over a quiet window
# that starts QUIET_DELAY_S after the joins). States are polled with
# `nodectl members --json` on every node in parallel, as serf-baseline polls `serf members`.
# Prints both side by side at the end.
#
# Usage: bench/cluster-bench.sh [N...]        (root or CAP_NET_RAW for the byte counts)
# Env:   SHOAL=build/bin/shoal NODECTL=build/bin/nodectl SERF_BASELINE=../shared/bench/serf-baseline.sh
#        QUIET_DELAY_S=30 QUIET_S=30 (passed to serf-baseline.sh too) SKIP_SERF=0
# Every shoal is stopped by its PID on exit, whatever happens.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SHOAL=${SHOAL:-$REPO/build/bin/shoal}
NODECTL=${NODECTL:-$(dirname "$SHOAL")/nodectl}
SERF_BASELINE=${SERF_BASELINE:-$REPO/../shared/bench/serf-baseline.sh}
export QUIET_DELAY_S=${QUIET_DELAY_S:-30} QUIET_S=${QUIET_S:-30}
SKIP_SERF=${SKIP_SERF:-0}
SIZES=("$@"); ((${#SIZES[@]})) || SIZES=(5 20)
for b in "$SHOAL" "$NODECTL"; do [[ -x $b ]] || { echo "not executable: $b (build first, or set SHOAL/NODECTL)" >&2; exit 2; }; done
OUT=$(mktemp -d /tmp/cluster-bench.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

shoal_run() { # N -> prints "SUMMARY ..." on the last line
  python3 - "$1" "$SHOAL" "$NODECTL" "$QUIET_DELAY_S" "$QUIET_S" <<'PY'
import json, os, random, signal, socket, struct, subprocess, sys, tempfile, threading, time
n, shoal, ctl, qdelay, qs = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
tmp = tempfile.mkdtemp(prefix="shoal-bench-")
procs = []
def stop_all(*_):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try: p.wait(5)
        except subprocess.TimeoutExpired: p.kill(); p.wait()
    if _: sys.exit(130)
signal.signal(signal.SIGTERM, stop_all); signal.signal(signal.SIGINT, stop_all)
def free_block(k):  # k consecutive free TCP+UDP ports below the ephemeral range
    for _ in range(200):
        base = random.randrange(21000, 31000 - k)
        ok = True
        for p in range(base, base + k):
            for ty in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, ty)
                try: s.bind(("127.0.0.1", p))
                except OSError: ok = False
                finally: s.close()
            if not ok: break
        if ok: return base
    sys.exit("no free port block")
gbase, abase, hbase = free_block(n), free_block(n), free_block(n)
key = os.path.join(tmp, "key"); open(key, "w").write(os.urandom(32).hex() + "\n")
def start(i):
    d = os.path.join(tmp, "n%d" % i); os.makedirs(d + "/logs")
    join = "join 127.0.0.1:%d;" % gbase if i else ""
    open(d + "/shoal.conf", "w").write("""events { }
http { server { listen 127.0.0.1:%d; location / { return 200; } } }
cluster { name bench; node_name node-%d; bind 127.0.0.1:%d; admin_listen 127.0.0.1:%d;
  encrypt_key_file %s; profile lan; %s }
""" % (hbase + i, i, gbase + i, abase + i, key, join))
    procs.append(subprocess.Popen([shoal, "-p", d + "/", "-c", d + "/shoal.conf"], stdin=subprocess.DEVNULL,
                                  stdout=open(d + "/out", "w"), stderr=subprocess.STDOUT))
def view(i):
    try:
        r = subprocess.run([ctl, "--addr", "127.0.0.1:%d" % (abase + i), "members", "--json"],
                           capture_output=True, text=True, timeout=3)
        return {m["name"]: m["status"] for m in json.loads(r.stdout)} if r.returncode == 0 else {}
    except Exception:
        return {}
def poll(idx, ok, t0, timeout):  # -> (first, last, done, round_ms)
    seen, rounds, start_t = {}, 0, time.monotonic()
    while len(seen) < len(idx) and time.monotonic() - t0 < timeout:
        pend = [i for i in idx if i not in seen]; res = {}
        th = [threading.Thread(target=lambda i=i: res.__setitem__(i, view(i))) for i in pend]
        [x.start() for x in th]; [x.join() for x in th]
        now = time.monotonic()
        for i in pend:
            if ok(res[i]): seen[i] = now - t0
        rounds += 1; time.sleep(0.02)
    rms = (time.monotonic() - start_t) * 1000 / max(rounds, 1)
    v = list(seen.values())
    return (min(v) if v else None, max(v) if v else None, len(seen), rms)
def fmt(x, done, want): return ("%.3f" % x) if done == want and x is not None else "timeout(%d/%d)" % (done, want)
def sniff(dur, ports):
    c = [0, 0]
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3)); s.bind(("lo", 0)); s.settimeout(0.2)
    except OSError:
        return None
    end = time.monotonic() + dur
    while time.monotonic() < end:
        try: d, a = s.recvfrom(65535)
        except socket.timeout: continue
        if a[2] != 4 or d[12:14] != b"\x08\x00": continue  # outgoing copy, IPv4
        ip = d[14:]; hl = (ip[0] & 15) * 4
        if ip[9] not in (6, 17): continue
        sp, dp = struct.unpack("!HH", ip[hl:hl + 4])
        if sp in ports or dp in ports:
            c[0 if ip[9] == 17 else 1] += len(ip)
    return c
try:
    start(0)
    t = time.monotonic() + 10
    while not view(0) and time.monotonic() < t: time.sleep(0.05)
    t_join = time.monotonic()
    for i in range(1, n): start(i)
    ALL = list(range(n))
    f, l, done, rms = poll(ALL, lambda v: sum(1 for s in v.values() if s == "alive") == n, t_join, 30)
    join_all = fmt(l, done, n)
    print("[shoal N=%d] join: all see %d alive after %ss (poll round ~%dms)" % (n, n, join_all, rms), flush=True)
    w = t_join + qdelay - time.monotonic()
    if w > 0: time.sleep(w)
    ports = set(range(gbase, gbase + n))
    c = sniff(qs, ports)
    if c is None: udp = tcp = "na"
    else: udp, tcp = "%.0f" % (c[0] / qs / n), "%.0f" % (c[1] / qs / n)
    print("[shoal N=%d] steady state per node: UDP %s B/s, TCP push-pull %s B/s (IP level, %gs window)" % (n, udp, tcp, qs), flush=True)
    victim, leaver = n // 2, 1
    others = [i for i in ALL if i != victim]
    t_kill = time.monotonic(); procs[victim].kill(); procs[victim].wait()
    f, l, done, rms = poll(others, lambda v: v.get("node-%d" % victim) == "dead", t_kill, 60)
    fail_first, fail_all = fmt(f, done, len(others)) if f is not None else "na", fmt(l, done, len(others))
    print("[shoal N=%d] failure: first sees node-%d dead at %ss, all %d at %ss" % (n, victim, fail_first, len(others), fail_all), flush=True)
    rest = [i for i in others if i != leaver]
    t_leave = time.monotonic(); procs[leaver].send_signal(signal.SIGTERM)
    f, l, done, rms = poll(rest, lambda v: v.get("node-%d" % leaver) == "left", t_leave, 30)
    leave_all = fmt(l, done, len(rest))
    print("[shoal N=%d] leave: all %d see node-%d left at %ss" % (n, len(rest), leaver, leave_all), flush=True)
    print("SUMMARY N=%d join_all_s=%s fail_first_s=%s fail_all_s=%s leave_all_s=%s udp_Bps_per_node=%s tcp_Bps_per_node=%s"
          % (n, join_all, fail_first, fail_all, leave_all, udp, tcp), flush=True)
finally:
    stop_all()
    subprocess.run(["rm", "-rf", tmp])
PY
}

for n in "${SIZES[@]}"; do
  echo "=== shoal, N=$n ($(basename "$SHOAL") $("$NODECTL" version), profile lan)"
  shoal_run "$n" | tee "$OUT/shoal.$n"
  if ((SKIP_SERF)); then echo "SUMMARY na" >"$OUT/serf.$n"; continue; fi
  echo "=== serf, N=$n ($SERF_BASELINE $n)"
  bash "$SERF_BASELINE" "$n" | tee "$OUT/serf.$n"
done

get() { grep '^SUMMARY' "$1" | tail -1 | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }
echo
echo "Side by side (loopback, profile lan, quiet window ${QUIET_S}s starting ${QUIET_DELAY_S}s after the joins; times in s from the event, as seen by polling every node):"
printf '%-5s %-34s %14s %14s\n' "N" "measure" "shoal" "serf"
for n in "${SIZES[@]}"; do
  s=$OUT/shoal.$n f=$OUT/serf.$n
  printf '%-5s %-34s %14s %14s\n' "$n" "join: all see N alive" "$(get "$s" join_all_s)" "$(get "$f" join_all_s)"
  printf '%-5s %-34s %14s %14s\n' "$n" "kill -9: first sees it dead" "$(get "$s" fail_first_s)" "$(get "$f" fail_first_s)"
  printf '%-5s %-34s %14s %14s\n' "$n" "kill -9: all see it dead/failed" "$(get "$s" fail_all_s)" "$(get "$f" fail_all_s)"
  printf '%-5s %-34s %14s %14s\n' "$n" "leave: all see it left" "$(get "$s" leave_all_s)" "$(get "$f" leave_all_s)"
  printf '%-5s %-34s %14s %14s\n' "$n" "UDP bytes/node/s (IP level)" "$(get "$s" udp_Bps_per_node)" "$(get "$f" udp_Bps_per_node)"
  printf '%-5s %-34s %14s %14s\n' "$n" "TCP push-pull bytes/node/s" "$(get "$s" tcp_Bps_per_node)" "$(get "$f" tcp_Bps_per_node)"
done
