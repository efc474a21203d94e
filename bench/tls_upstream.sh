#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# tls_upstream.sh -- proxied requests/s to a TLS backend, Shoal beside nginx
# with the same configuration, in one run (issue 14).
#
# A test CA and a backend certificate are made with openssl in a temp dir; an
# nginx TLS backend answers `return 200` (TLS 1.3, session tickets on). Shoal
# and nginx each proxy to it with `proxy_pass https://`, proxy_ssl_verify on,
# the CA, proxy_ssl_name, one worker, and wrk drives plain HTTP/1.1 at them:
#   pooled   upstream keepalive 32 (TLS connections reused: no handshake)
#   resumed  no keepalive: a TLS handshake per request, sessions resumed
#            (proxy_ssl_session_reuse on, the default), TLS 1.3
#   resumed12  the same over TLS 1.2 (an abbreviated handshake: no key
#            exchange, several times cheaper than TLS 1.3's PSK with ECDHE)
# proxy_ssl_protocols is set for both: nginx 1.22's default has no TLS 1.3.
# With two cores or more the proxy under test is pinned to core 0 and the
# backend and wrk to core 1. The machine may be shared and loaded: read the
# ratio, not the absolute figures.
#
# Usage: bench/tls_upstream.sh            Env: SHOAL=build/bin/shoal NGINX=/usr/sbin/nginx
#        DURATION=10 CONNS=32 (wrk -d / -c)
# Every process it starts is stopped by its PID on exit.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SHOAL=${SHOAL:-$REPO/build/bin/shoal}
NGINX=${NGINX:-/usr/sbin/nginx}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
for b in "$SHOAL" "$NGINX"; do [[ -x $b ]] || { echo "not executable: $b" >&2; exit 2; }; done
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 2; }
OUT=$(mktemp -d /tmp/tls-upstream-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if (( $(nproc) >= 2 )); then PIN_PROXY="taskset -c 0"; PIN_REST="taskset -c 1"; else PIN_PROXY=""; PIN_REST=""; fi

free_port() {
  python3 -c 'import socket,random
for _ in range(200):
    p = random.randrange(21000, 31000); s = socket.socket()
    try: s.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: s.close()'
}
wait_port() {
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1" >&2; exit 1
}

# ---- PKI
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$OUT/ca.key" -out "$OUT/ca.crt" -days 1 -subj /CN=BenchCA \
  -addext basicConstraints=critical,CA:TRUE 2>/dev/null
openssl req "${ec[@]}" -keyout "$OUT/be.key" -out "$OUT/be.csr" -subj /CN=backend.test 2>/dev/null
echo "subjectAltName=DNS:backend.test" > "$OUT/ext"
openssl x509 -req -in "$OUT/be.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" -CAcreateserial \
  -out "$OUT/be.crt" -days 1 -extfile "$OUT/ext" 2>/dev/null

BE=$(free_port); SH=$(free_port); NG=$(free_port)
mkdir -p "$OUT/be" "$OUT/ng" "$OUT/sh/logs"
cat > "$OUT/be/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $OUT/be/pid; error_log $OUT/be/error.log;
events { worker_connections 4096; }
http { log_format r '\$ssl_session_reused \$connection_requests'; access_log $OUT/be/access.log r;
  client_body_temp_path $OUT/be;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:be:10m; keepalive_requests 1000000;
  server { listen 127.0.0.1:$BE ssl; ssl_certificate $OUT/be.crt; ssl_certificate_key $OUT/be.key;
           location / { return 200 "ok\n"; } } }
EOF
proxy_http() { # port -> the same http{} body for both proxies
  cat <<EOF
  access_log off;
  upstream pooled { server 127.0.0.1:$BE; keepalive 32; }
  upstream fresh { server 127.0.0.1:$BE; }
  server { listen 127.0.0.1:$1;
    proxy_ssl_verify on; proxy_ssl_trusted_certificate $OUT/ca.crt; proxy_ssl_name backend.test;
    proxy_ssl_server_name on; proxy_ssl_protocols TLSv1.2 TLSv1.3;
    location /pooled { proxy_pass https://pooled; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location /resumed { proxy_pass https://fresh; }
    location /resumed12 { proxy_pass https://fresh; proxy_ssl_protocols TLSv1.2; }
  }
EOF
}
cat > "$OUT/ng/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $OUT/ng/pid; error_log $OUT/ng/error.log;
events { worker_connections 4096; }
http { client_body_temp_path $OUT/ng; proxy_temp_path $OUT/ng;
$(proxy_http "$NG")
}
EOF
cat > "$OUT/sh/shoal.conf" <<EOF
worker_processes 1;
events { worker_connections 4096; }
error_log $OUT/sh/error.log;
http {
$(proxy_http "$SH")
}
EOF

$PIN_REST "$NGINX" -p "$OUT/be/" -c "$OUT/be/nginx.conf" & PIDS+=($!)
wait_port "$BE"

run() { # name port path -> req/s
  : > "$OUT/be/access.log"
  local t0 t1
  t0=$(awk '{print $14 + $15}' "/proc/$PROXY_PID/stat")
  wrk_out=$($PIN_REST wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$2$3" 2>&1)
  t1=$(awk '{print $14 + $15}' "/proc/$PROXY_PID/stat")
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$wrk_out")
  non=$(awk '/Non-2xx/ {print $5}' <<< "$wrk_out")
  [[ -n $non ]] && echo "  $1 $3: $non non-2xx responses" >&2
  # the backend's view: connections (first requests) and how many resumed
  awk '$2 == 1 { n++; if ($1 == "r") r++ } END { printf "%d %d", n, r }' "$OUT/be/access.log" \
    > "$OUT/hs.$1.${3#/}"
  # the proxy's CPU time per request (user + system, clock ticks -> microseconds)
  awk -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$(awk '/requests in/ {print $1}' <<< "$wrk_out")" \
    'BEGIN { if (n > 0) printf "%.0f", d * 1e6 / hz / n; else print "-" }' > "$OUT/cpu.$1.${3#/}"
  echo "${rps:-0}"
}

declare -A R
for who in shoal nginx; do
  if [[ $who == shoal ]]; then
    $PIN_PROXY "$SHOAL" -p "$OUT/sh/" -c "$OUT/sh/shoal.conf" & PIDS+=($!); port=$SH
  else
    $PIN_PROXY "$NGINX" -p "$OUT/ng/" -c "$OUT/ng/nginx.conf" & PIDS+=($!); port=$NG
  fi
  PROXY_PID=${PIDS[-1]}
  wait_port "$port"
  curl -sf "http://127.0.0.1:$port/pooled" >/dev/null || { echo "$who: /pooled failed" >&2; exit 1; }
  for load in pooled resumed resumed12; do
    R[$who.$load]=$(run "$who" "$port" "/$load")
  done
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null
done

echo
echo "proxied req/s to a TLS backend (wrk -t1 -c$CONNS -d${DURATION}s, one proxy worker${PIN_PROXY:+ on core 0})"
printf "%-10s %12s %12s %8s   %-22s %s\n" load shoal nginx ratio "CPU us/req shoal|nginx" "backend handshakes (resumed): shoal | nginx"
for load in pooled resumed resumed12; do
  s=${R[shoal.$load]}; n=${R[nginx.$load]}
  read -r hs rs < "$OUT/hs.shoal.$load"; read -r hn rn < "$OUT/hs.nginx.$load"
  printf "%-10s %12s %12s %8s   %-22s %s (%s) | %s (%s)\n" "$load" "$s" "$n" \
    "$(awk -v a="$s" -v b="$n" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')" \
    "$(cat "$OUT/cpu.shoal.$load") | $(cat "$OUT/cpu.nginx.$load")" "$hs" "$rs" "$hn" "$rn"
done
echo "(ratio = shoal / nginx; the machine may be loaded: compare ratios, not absolute figures)"
