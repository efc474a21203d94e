#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's run command, main job: two demo backends and a three-node
# Shoal cluster on loopback (issue 6). Each node is the embedded default
# configuration (round robin over 127.0.0.1:9001 and :9002) on its own port
# (8080, 8081, 8082), TLS + HTTP/2 with a throw-away self-signed certificate
# on 8443-8445 (0-RTT on), plus a `cluster {}` block: gossip on 7946-7948, admin
# API on 9901-9903, one gossip key made by `nodectl keygen`; every node lists
# every seed in `join` (itself included: the recommended pattern, so a
# restarted node finds the others). Shows `nodectl members`, prints what to
# try (every command with absolute paths: they work from any folder), then
# waits. A node that exits (say, killed as printed) is reported with the
# command that restarts it, and the demo keeps running. Ctrl-C (or TERM)
# stops everything this script started, by PID (and a node restarted by
# hand, by its pid file), and deletes its temp folder.
#
#   scripts/demo.sh [PATH/TO/shoal]        (default: build/bin/shoal; nodectl
#                                           is taken from the same directory)
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
# absolute, so the printed commands work from any folder
[ -e "$shoal" ] && shoal="$(cd "$(dirname "$shoal")" && pwd)/$(basename "$shoal")"
backend="$repo/integration/backend.py"
python="${PYTHON:-python3}"
nodectl="${NODECTL_BIN:-$(dirname "$shoal")/nodectl}"
gw_ports=(8080 8081 8082)
tls_ports=(8443 8444 8445)
gossip_ports=(7946 7947 7948)
admin_ports=(9901 9902 9903)
gw_port=8080
b_ports=(9001 9002)
b_names=(b1 b2)

die() { echo "demo: $*" >&2; exit 1; }

[ -x "$shoal" ] || die "no shoal binary at $shoal (build it first, or pass its path)"
[ -x "$nodectl" ] || die "no nodectl binary at $nodectl (build the nodectl target)"
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
for p in "${gw_ports[@]}" "${tls_ports[@]}" "${b_ports[@]}" "${gossip_ports[@]}" "${admin_ports[@]}"; do
  if port_taken "$p"; then taken+=("$p"); fi
done
if [ ${#taken[@]} -gt 0 ]; then
  echo "demo: port(s) ${taken[*]} on 127.0.0.1 already in use; the demo needs 8080-8082, 8443-8445, 9001-9002, 7946-7948 and 9901-9903." >&2
  echo "demo: stop whatever holds them (e.g. 'ss -ltnp | grep -E \":(${taken[*]// /|}) \"') and try again." >&2
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
    # nodes restarted by hand are not our children: their pid files
    for f in "$logdir"/node*.pid; do
      [ -f "$f" ] || continue
      p="$(cat "$f" 2>/dev/null)"
      # only if that PID is still a shoal of this demo (a stale file's PID may be reused)
      [ -n "$p" ] && grep -qa "$logdir" "/proc/$p/cmdline" 2>/dev/null && pids+=("$p")
    done
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
  if [ "${1:-keep}" = keep ]; then
    echo "demo: stopped; logs in $logdir"
  else
    rm -rf "$logdir"
    echo "demo: stopped; removed $logdir"
  fi
}
trap 'cleanup remove; exit 130' INT
trap 'cleanup remove; exit 143' TERM HUP
trap cleanup EXIT

for i in 0 1; do
  "$python" "$backend" --port "${b_ports[$i]}" --name "${b_names[$i]}" \
    >"$logdir/${b_names[$i]}.out" 2>"$logdir/${b_names[$i]}.log" &
  pids+=($!)
done
# One key for the cluster's gossip, made by nodectl (libsodium); each node
# persists its keyring beside it (gossip.key.NODE.keyring).
"$nodectl" keygen >"$logdir/gossip.key" || die "nodectl keygen failed"
chmod 600 "$logdir/gossip.key"
# A throw-away self-signed certificate for the TLS + HTTP/2 listeners.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$logdir/demo.key" \
  -out "$logdir/demo.crt" >/dev/null 2>&1 || die "openssl could not make the demo certificate"
node_pids=()
for i in 0 1 2; do
  n=$((i + 1))
  join="join 127.0.0.1:${gossip_ports[0]} 127.0.0.1:${gossip_ports[1]} 127.0.0.1:${gossip_ports[2]};"
  cat >"$logdir/node$n.conf" <<CONF
# Shoal demo node $n: the embedded default configuration on port ${gw_ports[$i]},
# TLS 1.2/1.3 + HTTP/2 on ${tls_ports[$i]} (self-signed), and a cluster block
# (written by scripts/demo.sh).
worker_processes 1;
pid $logdir/node$n.pid;
events { worker_connections 1024; }
http {
    upstream demo {
        server 127.0.0.1:${b_ports[0]};
        server 127.0.0.1:${b_ports[1]};
        keepalive 16;
    }
    server {
        listen 127.0.0.1:${gw_ports[$i]};
        listen 127.0.0.1:${tls_ports[$i]} ssl http2;
        ssl_certificate $logdir/demo.crt;
        ssl_certificate_key $logdir/demo.key;
        ssl_session_cache shared:SSL:1m;
        ssl_early_data on;
        location / {
            proxy_pass http://demo;
            proxy_set_header Host \$host;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header Early-Data \$ssl_early_data;
        }
        location = /shoal/hello { return 200 "hello from shoal node $n\n"; }
    }
}
cluster {
    name demo;
    node_name node$n;
    bind 127.0.0.1:${gossip_ports[$i]};
    admin_listen 127.0.0.1:${admin_ports[$i]};
    encrypt_key_file $logdir/gossip.key;
    profile local;
    tags demo=yes gateway=127.0.0.1:${gw_ports[$i]};
    $join
}
CONF
  "$shoal" -p "$logdir/" -c "$logdir/node$n.conf" >"$logdir/node$n.out" 2>"$logdir/node$n.log" &
  pids+=($!)
  node_pids+=($!)
done
shoal_pid=${node_pids[0]}

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
for i in 0 1 2; do
  wait_http "node$((i + 1))" "${node_pids[$i]}" "http://127.0.0.1:${gw_ports[$i]}/shoal/hello" || exit 1
  curl -fsS -o /dev/null --max-time 2 --cacert "$logdir/demo.crt" --http2 \
    "https://127.0.0.1:${tls_ports[$i]}/shoal/hello" || die "node$((i + 1)) does not answer over TLS + HTTP/2"
done
# The cluster forms within a second or two: wait (deadline 15 s) for 3 alive.
deadline=$((SECONDS + 15))
until [ "$("$nodectl" --addr 127.0.0.1:${admin_ports[0]} members --status alive --json 2>/dev/null |
          "$python" -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null)" = 3 ]; do
  if [ $SECONDS -ge $deadline ]; then
    echo "demo: the three nodes did not form a cluster within 15 s; node logs in $logdir" >&2
    exit 1
  fi
  sleep 0.2
done

u="http://127.0.0.1:$gw_port"
a="--addr 127.0.0.1:${admin_ports[0]}"
cat <<MSG

Shoal demo is up (logs and configs in $logdir):
  gateways http://127.0.0.1:8080  :8081  :8082   (shoal pids ${node_pids[*]})
           https://127.0.0.1:8443 :8444 :8445   (TLS + HTTP/2, self-signed: $logdir/demo.crt)
  admin    127.0.0.1:9901  :9902  :9903          (nodectl --addr ...)
  dashboard http://127.0.0.1:9901/ui/             (live members, upstreams, events)
  backends http://127.0.0.1:9001 (b1, pid ${pids[0]})  http://127.0.0.1:9002 (b2, pid ${pids[1]})

$ nodectl $a members
MSG
"$nodectl" $a members
cat <<MSG

Try:
  # the cluster, from any node; this node; the gossip keyring
  $nodectl --addr 127.0.0.1:9902 members
  $nodectl $a info
  $nodectl $a keys list

  # round robin: the answers alternate between b1 and b2, through any node
  for i in 1 2 3 4; do curl -s $u/; done; curl -s http://127.0.0.1:8082/shoal/hello

  # follow the cluster's events in another terminal, then crash node 3 and watch
  # the others see it suspect, then failed (plain \`kill\` would make it leave);
  # the demo keeps running and prints how to restart it
  $nodectl $a monitor
  kill -9 ${node_pids[2]}

  # rotate the gossip key through one node: install it, wait until every member
  # holds it (it spreads by gossip), then make it the primary everywhere
  K=\$($nodectl keygen); $nodectl $a keys install "\$K"
  until $nodectl $a keys list --json | $python -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if all(r["holders"][k] == r["members"] for k in r["keys"]) else 1)'; do echo "waiting until every member holds the new key"; sleep 1; done
  $nodectl --addr 127.0.0.1:9902 keys use "\$K"; $nodectl $a keys list

  # upstream health, stub_status and Prometheus metrics as node 1 sees them
  $nodectl $a upstreams
  curl -s http://127.0.0.1:9901/nginx_status; curl -s http://127.0.0.1:9901/metrics | head

  # reload node 1 (edit $logdir/node1.conf first): new connections get it
  $nodectl $a reload

  # TLS + HTTP/2 (ALPN h2), and the frames as nghttp sees them
  curl -s --cacert $logdir/demo.crt --http2 -w '(over HTTP/%{http_version})\n' https://127.0.0.1:8443/shoal/hello
  nghttp -nv https://127.0.0.1:8443/ | grep -E 'SETTINGS|HEADERS|:status|x-backend'

  # TLS 1.3 0-RTT: resume a session and send the request as early data (Early-Data: 1 upstream)
  printf 'GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' > $logdir/req
  openssl s_client -connect 127.0.0.1:8443 -sess_out $logdir/sess -ign_eof <$logdir/req >/dev/null 2>&1
  sleep 1 | openssl s_client -connect 127.0.0.1:8443 -sess_in $logdir/sess -early_data $logdir/req 2>/dev/null | grep -A1 -E 'Early data|Early-Data'

  # a POST: the backend echoes what it received (length and SHA-256 of the body)
  head -c 1000000 /dev/urandom > $logdir/body && sha256sum $logdir/body
  curl -s --data-binary @$logdir/body $u/echo

  # logrotate: move node 1's logs away, then reopen them (nginx's -s, via its pid file)
  $shoal -p $logdir/ -c $logdir/node1.conf -s reopen

Ctrl-C stops everything and deletes $logdir.
MSG

# Wait for Ctrl-C. A node that exits is reported once, with how to restart
# it; the demo keeps running (the others show its failure). A backend that
# exits likewise.
reported=()
while :; do
  for k in "${!pids[@]}"; do
    pid=${pids[$k]}
    [[ " ${reported[*]} " == *" $pid "* ]] && continue
    if ! kill -0 "$pid" 2>/dev/null; then
      reported+=("$pid")
      if [ "$k" -ge 2 ]; then
        n=$((k - 1))
        cat <<MSG

demo: node$n (pid $pid) exited. The others see it fail (suspect, then failed):
  $nodectl $a members
Restart it (it rejoins on its own: every node lists every seed in its join list):
  $shoal -p $logdir/ -c $logdir/node$n.conf 2>>$logdir/node$n.log &
The demo keeps running; Ctrl-C stops everything (a restarted node too).
MSG
      else
        echo
        echo "demo: backend ${b_names[$k]} (pid $pid) exited; restart it with:"
        echo "  $python $backend --port ${b_ports[$k]} --name ${b_names[$k]} &"
      fi
    fi
  done
  sleep 1
done
