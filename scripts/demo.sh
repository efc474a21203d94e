#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's run command, main job: two demo backends and one gateway node
# on loopback, on the node's embedded default configuration (127.0.0.1:8080,
# round robin over 127.0.0.1:9001 and :9002). Prints what to try, then waits.
# Ctrl-C (or TERM) stops everything this script started, by PID.
#
#   scripts/demo.sh [PATH/TO/shoal]        (default: build/bin/shoal)
#
# Installing packages and building are the callers' business (the lead's
# scripts run before this one).
set -u

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
shoal="${1:-${SHOAL_BIN:-}}"
if [ -z "$shoal" ]; then
  for c in "$repo/build/bin/shoal" "$repo/build/cmd/shoal/shoal"; do
    [ -x "$c" ] && { shoal="$c"; break; }
  done
  shoal="${shoal:-$repo/build/bin/shoal}"
fi
backend="$repo/integration/backend.py"
python="${PYTHON:-python3}"
gw_port=8080
b_ports=(9001 9002)
b_names=(b1 b2)

die() { echo "demo: $*" >&2; exit 1; }

[ -x "$shoal" ] || die "no shoal binary at $shoal (build it first, or pass its path)"
command -v "$python" >/dev/null || die "python3 is needed for the demo backends"
command -v curl >/dev/null || die "curl is needed to check the demo"
[ -f "$backend" ] || die "missing $backend"
if [ -z "${SHOAL_DEMO_ALLOW_ETC:-}" ] && [ -e /etc/shoal/shoal.conf ]; then
  die "/etc/shoal/shoal.conf exists, so shoal would not run its embedded default; move it away (or set SHOAL_DEMO_ALLOW_ETC=1)"
fi

# A port is taken if something accepts on it or we cannot bind it.
port_taken() {
  "$python" - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
PY
}
taken=()
for p in "$gw_port" "${b_ports[@]}"; do
  if port_taken "$p"; then taken+=("$p"); fi
done
if [ ${#taken[@]} -gt 0 ]; then
  echo "demo: port(s) ${taken[*]} on 127.0.0.1 already in use; the demo needs 8080, 9001 and 9002." >&2
  echo "demo: stop whatever holds them (e.g. 'ss -ltnp | grep -E \":(8080|9001|9002) \"') and try again." >&2
  exit 1
fi

logdir="$(mktemp -d "${TMPDIR:-/tmp}/shoal-demo.XXXXXX")"
pids=()
stopping=0
cleanup() {
  [ "$stopping" = 1 ] && return
  stopping=1
  trap - INT TERM HUP EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo
    echo "demo: stopping (PIDs ${pids[*]})"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    # Wait up to 5 s for them, then SIGKILL what is left.
    for _ in $(seq 50); do
      alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    wait 2>/dev/null
  fi
  echo "demo: stopped; logs in $logdir"
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM HUP
trap cleanup EXIT

for i in 0 1; do
  "$python" "$backend" --port "${b_ports[$i]}" --name "${b_names[$i]}" \
    >"$logdir/${b_names[$i]}.out" 2>"$logdir/${b_names[$i]}.log" &
  pids+=($!)
done
# No -c: the embedded default configuration. -p keeps any relative paths in
# the log dir.
"$shoal" -p "$logdir/" >"$logdir/shoal.out" 2>"$logdir/shoal.log" &
shoal_pid=$!
pids+=("$shoal_pid")

# Wait (deadline 15 s) until every process answers; fail at once if one exits.
wait_http() { # name pid url
  local deadline=$((SECONDS + 15))
  while :; do
    if ! kill -0 "$2" 2>/dev/null; then
      echo "demo: $1 exited early; its log:" >&2
      tail -n 20 "$logdir/$1.log" >&2
      return 1
    fi
    curl -fsS -o /dev/null --max-time 1 "$3" 2>/dev/null && return 0
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: $1 did not answer $3 within 15 s; its log:" >&2
      tail -n 20 "$logdir/$1.log" >&2
      return 1
    fi
    sleep 0.1
  done
}
wait_http b1 "${pids[0]}" "http://127.0.0.1:9001/health" || exit 1
wait_http b2 "${pids[1]}" "http://127.0.0.1:9002/health" || exit 1
wait_http shoal "$shoal_pid" "http://127.0.0.1:$gw_port/" || exit 1

u="http://127.0.0.1:$gw_port"
cat <<MSG

Shoal demo is up (logs in $logdir):
  gateway  $u                     (shoal pid $shoal_pid, embedded default config)
  backend  http://127.0.0.1:9001        (b1, pid ${pids[0]})
  backend  http://127.0.0.1:9002        (b2, pid ${pids[1]})

Try:
  # round robin: the answers alternate between b1 and b2
  for i in 1 2 3 4; do curl -s $u/; done

  # a POST: the backend echoes what it received (length and SHA-256 of the body)
  head -c 1000000 /dev/urandom > /tmp/body && sha256sum /tmp/body
  curl -s --data-binary @/tmp/body $u/echo

  # a chunked upload, and a 100 MB chunked download streamed through the gateway
  curl -s -H 'Transfer-Encoding: chunked' --data-binary @/tmp/body $u/echo
  curl -s -o /dev/null -w '%{size_download} bytes in %{time_total} s\n' "$u/stream?bytes=100000000&chunked=1"

  # keep-alive: five requests on one client connection, then the backends'
  # counters (fewer upstream connections than requests: the pool reuses them)
  curl -s $u/ $u/ $u/ $u/ $u/
  curl -s http://127.0.0.1:9001/stats; curl -s http://127.0.0.1:9002/stats

  # a backend status passed through, and a smuggling attempt refused with 400
  curl -si $u/status/503 | head -1
  curl -si -H 'Content-Length: 5' -H 'Transfer-Encoding: chunked' --data-binary hello $u/echo | head -1

Ctrl-C stops everything.
MSG

# Wait for Ctrl-C, or for any child to exit (then stop the rest).
while :; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo: process $pid exited; stopping the rest" >&2
      exit 1
    fi
  done
  wait -n 2>/dev/null || sleep 1
done
