#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# soak.sh -- a long run of one shoal node under mixed traffic, sampling its memory and open
# files (issue 15); outside the test command.
#
# One node (worker_processes 2, a single-member cluster block for the admin API's /metrics)
# proxies to nginx (a 1 KiB `return`) with upstream keep-alive, and answers /local itself.
# Traffic, all under `nice -n $NICE`, for MINUTES (default 30):
#   ka     HTTP/1.1 keep-alive: h2load --h1, 8 connections, RATE_KA requests/s each
#   h2     HTTP/2 over TLS (ALPN h2): h2load, 4 connections x 8 streams, RATE_H2 requests/s each
#   new    HTTP/1.1, a new connection per request: NEW_RATE connections/s
#   tls    HTTP/1.1 over TLS, a new connection (full handshake) per request: TLS_RATE/s
# Every INTERVAL seconds (default 30) it prints one row: elapsed time, the node's RSS and
# peak RSS (VmRSS, VmHWM), open fds, threads, and requests and connections counted by the node.
# Verdict at the end, from the sample at WARM_PCT% of the run (default 20: after warm-up) to
# the last: RSS flat if it grew by at most max(RSS_SLACK_KB, 5%), fds flat if they grew by at
# most FD_SLACK; and the clients' failed/errored requests.
#
# Usage: bench/soak.sh [MINUTES]
# Env:   SHOAL=build/bin/shoal NGINX=/usr/sbin/nginx INTERVAL=30 NICE=10 RATE_KA=25 RATE_H2=25
#        NEW_RATE=6 TLS_RATE=2 WARM_PCT=20 RSS_SLACK_KB=4096 FD_SLACK=16
# Ports are taken through the integration harness's locks (/tmp/shoal-integ-ports), so a test
# running at the same time never gets one of ours. Everything started is stopped by its PID
# on exit, whatever happens. Exit status: 0 flat and no failed request, 1 otherwise, 2 setup.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SHOAL=${SHOAL:-$REPO/build/bin/shoal}
NGINX=${NGINX:-/usr/sbin/nginx}
MINUTES=${1:-30}
INTERVAL=${INTERVAL:-30}
NICE=${NICE:-10}
RATE_KA=${RATE_KA:-25}
RATE_H2=${RATE_H2:-25}
NEW_RATE=${NEW_RATE:-6}
TLS_RATE=${TLS_RATE:-2}
WARM_PCT=${WARM_PCT:-20}
RSS_SLACK_KB=${RSS_SLACK_KB:-4096}
FD_SLACK=${FD_SLACK:-16}
for b in "$SHOAL" "$NGINX" "$(command -v h2load)" "$(command -v openssl)" "$(command -v curl)"; do
  [[ -x $b ]] || { echo "soak: not executable or missing: ${b:-h2load/openssl/curl}" >&2; exit 2; }
done
OUT=$(mktemp -d /tmp/shoal-soak.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  wait 2>/dev/null
  [[ ${KEEP:-0} == 1 ]] && echo "soak: files kept in $OUT" || rm -rf "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# A free port below the ephemeral range, held (flock) for our lifetime like the harness does.
LOCKS=/tmp/shoal-integ-ports
mkdir -p "$LOCKS"
free_port() {
  local p fd
  for _ in $(seq 500); do
    p=$((20000 + RANDOM % 12000))
    exec {fd}>"$LOCKS/$p.lock" || continue
    if flock -n "$fd" && ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
       python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',$p))" 2>/dev/null; then
      echo "$p"; PORT_FDS+=("$fd"); return 0
    fi
    exec {fd}>&-
  done
  echo "soak: no free port" >&2; exit 2
}
PORT_FDS=()
# (command substitution would run free_port in a subshell and drop the lock: assign directly)
next_port() { free_port > "$OUT/port"; read -r "$1" < "$OUT/port"; }
next_port P_BE; next_port P_HTTP; next_port P_TLS; next_port P_GOSSIP; next_port P_ADMIN
# free_port ran in this shell, so the locks' fds stay open until we exit.

accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_accepts() { # PORT SECONDS WHAT
  local end=$((SECONDS + $2))
  until accepts "$1"; do
    ((SECONDS < end)) || { echo "soak: $3 did not listen on $1 within $2 s" >&2; exit 2; }
    sleep 0.1
  done
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=soak \
  -addext subjectAltName=DNS:soak -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null ||
  { echo "soak: openssl req failed" >&2; exit 2; }
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$OUT/gossip.key"; echo >> "$OUT/gossip.key"
chmod 600 "$OUT/gossip.key"
body=$(head -c 768 /dev/urandom | base64 -w0 | head -c 1024)
mkdir -p "$OUT/nginx/logs"
cat > "$OUT/nginx/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $OUT/nginx/nginx.pid; error_log $OUT/nginx/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$P_BE; location / { return 200 "$body"; } } }
EOF
cat > "$OUT/shoal.conf" <<EOF
worker_processes 2;
error_log $OUT/shoal-error.log warn;
events { worker_connections 4096; }
http {
  # h2load does not reconnect: keep its connections for the whole run (nginx's default 1000
  # requests would end each client early)
  access_log off; keepalive_requests 1000000; keepalive_timeout 600s;
  upstream be { server 127.0.0.1:$P_BE; keepalive 32; }
  server {
    listen 127.0.0.1:$P_HTTP;
    listen 127.0.0.1:$P_TLS ssl http2;
    ssl_certificate $OUT/cert.pem; ssl_certificate_key $OUT/key.pem;
    location / { proxy_pass http://be; }
    location = /local { return 200 "local\n"; }
  }
}
cluster { name soak; node_name soak-1; bind 127.0.0.1:$P_GOSSIP; admin_listen 127.0.0.1:$P_ADMIN;
          encrypt_key_file $OUT/gossip.key; profile local; }
EOF
"$NGINX" -p "$OUT/nginx/" -c "$OUT/nginx/nginx.conf" 2> "$OUT/nginx/stderr" &
pids+=($!)
wait_accepts "$P_BE" 15 nginx
nice -n "$NICE" "$SHOAL" -p "$OUT/" -c "$OUT/shoal.conf" 2> "$OUT/shoal.stderr" &
SPID=$!; pids+=($SPID)
wait_accepts "$P_HTTP" 15 shoal; wait_accepts "$P_TLS" 15 shoal; wait_accepts "$P_ADMIN" 15 "shoal's admin API"

DUR=$((MINUTES * 60))
T0=$SECONDS
END=$((T0 + DUR))
H=http://127.0.0.1:$P_HTTP S=https://127.0.0.1:$P_TLS
# --rps paces each client, -n ends the run after about DUR seconds (h2load's -D stops each
# client after 1000 requests whatever the duration)
nice -n "$NICE" h2load --h1 -c 8 --rps "$RATE_KA" -n $((8 * RATE_KA * DUR)) "$H/" "$H/local" \
  > "$OUT/ka.out" 2>&1 &
gens=($!)
nice -n "$NICE" h2load -c 4 -m 8 --rps "$RATE_H2" -n $((4 * RATE_H2 * DUR)) "$S/" "$S/local" \
  > "$OUT/h2.out" 2>&1 &
gens+=($!)
loop() { # NAME URL RATE: batches of 10 s, one request per connection, until END
  local n=$(( $3 * 10 ))
  while (( SECONDS + 10 <= END )); do
    nice -n "$NICE" h2load --h1 -c "$n" -n "$n" -r "$3" "$2" >> "$OUT/$1.out" 2>&1
  done
}
loop new "$H/" "$NEW_RATE" & gens+=($!)
loop tls "$S/" "$TLS_RATE" & gens+=($!)
pids+=("${gens[@]}")

metric() { curl -s --max-time 5 "http://127.0.0.1:$P_ADMIN/metrics" |
           awk -v m="$1" '$1 == m { print $2; exit }'; }
sample() { # -> "rss hwm fds threads requests accepted"
  local rss hwm thr
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SPID/status" 2>/dev/null)
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$SPID/status" 2>/dev/null)
  thr=$(awk '/^Threads:/ {print $2}' "/proc/$SPID/status" 2>/dev/null)
  echo "${rss:-0} ${hwm:-0} $(ls "/proc/$SPID/fd" 2>/dev/null | wc -l) ${thr:-0}" \
       "$(metric shoal_http_requests_total) $(metric shoal_connections_accepted_total)"
}
echo "soak: $MINUTES min, shoal pid $SPID (http $P_HTTP, tls+h2 $P_TLS), sampling every $INTERVAL s"
printf '%8s %10s %10s %6s %8s %12s %12s\n' elapsed rss_kB hwm_kB fds threads requests accepted
rows=()
next=$T0
while :; do
  kill -0 "$SPID" 2>/dev/null || { echo "soak: shoal (pid $SPID) died:"; tail -5 "$OUT/shoal.stderr"; exit 1; }
  if (( SECONDS >= next )); then
    s=$(sample); rows+=("$((SECONDS - T0)) $s")
    # shellcheck disable=SC2086
    printf '%8s %10s %10s %6s %8s %12s %12s\n' "$((SECONDS - T0))s" $s
    next=$((next + INTERVAL))
  fi
  (( SECONDS >= END )) && break
  sleep 1
done
# The generators end on their own about now; a late one is stopped after 60 s more.
for _ in $(seq 600); do
  busy=0; for p in "${gens[@]}"; do kill -0 "$p" 2>/dev/null && busy=1; done
  (( busy )) || break
  sleep 0.1
done
for p in "${gens[@]}"; do kill -TERM "$p" 2>/dev/null; done
wait "${gens[@]}" 2>/dev/null

# The clients' view: h2load's "requests: N total, N started, N done, N succeeded, N failed, N errored"
fail=0
printf '\n%-6s %10s %10s %8s %8s %8s\n' client done succeeded failed errored timeout
for c in ka h2 new tls; do
  read -r d s f e t < <(awk '/^requests:/ {d+=$6; s+=$8; f+=$10; e+=$12; t+=$14}
                             END {print d+0, s+0, f+0, e+0, t+0}' "$OUT/$c.out")
  printf '%-6s %10s %10s %8s %8s %8s\n' "$c" "$d" "$s" "$f" "$e" "$t"
  (( f + e + t > 0 || s == 0 )) && fail=1
done

# Verdict from the warm sample to the last.
n=${#rows[@]}
w=$(( n * WARM_PCT / 100 )); (( w >= n - 1 )) && w=0
read -r tw rw _ fw _ <<< "${rows[$w]}"
read -r tl rl _ fl _ <<< "${rows[$((n - 1))]}"
rslack=$(( rw / 20 > RSS_SLACK_KB ? rw / 20 : RSS_SLACK_KB ))
verdict=0
echo
if (( rl - rw <= rslack )); then
  echo "RSS flat: ${rw} kB at ${tw}s -> ${rl} kB at ${tl}s ($((rl - rw)) kB, bound ${rslack} kB)"
else
  echo "RSS GROWING: ${rw} kB at ${tw}s -> ${rl} kB at ${tl}s ($((rl - rw)) kB, bound ${rslack} kB)"
  verdict=1
fi
if (( fl - fw <= FD_SLACK )); then
  echo "fds flat: ${fw} at ${tw}s -> ${fl} at ${tl}s (bound +${FD_SLACK})"
else
  echo "fds GROWING: ${fw} at ${tw}s -> ${fl} at ${tl}s (bound +${FD_SLACK})"
  verdict=1
fi
(( fail )) && echo "some client requests failed (table above)"
if (( verdict || fail )); then echo "verdict: NOT flat"; exit 1; fi
echo "verdict: flat (RSS and fds), every client request succeeded"
