#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# grpc.sh -- unary gRPC calls/s through Shoal's grpc_pass beside nginx's
# grpc_pass with the same configuration, in one run (issue 14): to an h2c
# backend (grpc://) and to a TLS one (grpcs://, TLS 1.3, a test certificate).
#
# The backend is an nginx h2c server answering every call with a gRPC-shaped
# response (200, application/grpc, a 7-byte message, trailer grpc-status 0):
# a Python gRPC server would be the bottleneck. h2load drives unary calls
# (POST of a prepared 5+5-byte gRPC frame with -d, te: trailers) over h2c at
# each proxy, one worker each (nginx keeps up to 512 idle backend connections:
# its grpc_pass carries one call per connection; Shoal multiplexes calls on
# one connection per worker and server); the proxy under test is pinned to core 0, the
# backend and h2load to core 1 (when there are two cores). The machine may be
# shared and loaded: read the ratio, not the absolute figures.
#
# Usage: bench/grpc.sh        Env: SHOAL=build/bin/shoal NGINX=/usr/sbin/nginx
#        N=100000 (calls per run) C=16 (connections) M=16 (streams each)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SHOAL=${SHOAL:-$REPO/build/bin/shoal}
NGINX=${NGINX:-/usr/sbin/nginx}
N=${N:-100000}
C=${C:-16}
M=${M:-16}
for b in "$SHOAL" "$NGINX"; do [[ -x $b ]] || { echo "not executable: $b" >&2; exit 2; }; done
command -v h2load >/dev/null || { echo "h2load is needed (apt-get install nghttp2-client)" >&2; exit 2; }
OUT=$(mktemp -d /tmp/grpc-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [[ -n ${KEEP:-} ]]; then echo "kept $OUT" >&2; else rm -rf "$OUT"; fi
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
# one gRPC message: flag 0, length 5, "hello"
printf '\x00\x00\x00\x00\x05hello' > "$OUT/req.bin"

BE=$(free_port); SH=$(free_port); NG=$(free_port); BES=$(free_port); SHS=$(free_port); NGS=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$OUT/be.key" \
  -out "$OUT/be.crt" -days 2 -subj /CN=backend.test 2>/dev/null || { echo "openssl req failed" >&2; exit 1; }
mkdir -p "$OUT/be" "$OUT/ng" "$OUT/sh"
cat > "$OUT/be/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $OUT/be/pid; error_log $OUT/be/error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $OUT/be; keepalive_requests 10000000;
  http2_max_concurrent_streams 1000;
  server { listen 127.0.0.1:$BE http2; listen 127.0.0.1:$BES ssl http2;
    ssl_certificate $OUT/be.crt; ssl_certificate_key $OUT/be.key; ssl_protocols TLSv1.3;
    location / { default_type application/grpc; add_trailer grpc-status 0; return 200 "hi-back"; } } }
EOF
proxy_http() {
  cat <<EOF
  access_log off;
  upstream be { server 127.0.0.1:$BE; keepalive 512; }
  upstream bes { server 127.0.0.1:$BES; keepalive 512; }
  server { listen 127.0.0.1:$1 http2; location / { grpc_pass grpc://be; } }
  server { listen 127.0.0.1:$2 http2; location / { grpc_pass grpcs://bes; grpc_ssl_protocols TLSv1.3; } }
EOF
}
cat > "$OUT/ng/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $OUT/ng/pid; error_log $OUT/ng/error.log;
events { worker_connections 4096; }
http { client_body_temp_path $OUT/ng; keepalive_requests 10000000;
$(proxy_http "$NG" "$NGS")
}
EOF
cat > "$OUT/sh/shoal.conf" <<EOF
worker_processes 1;
events { worker_connections 4096; }
error_log $OUT/sh/error.log;
http { keepalive_requests 10000000;
$(proxy_http "$SH" "$SHS")
}
EOF
$PIN_REST "$NGINX" -p "$OUT/be/" -c "$OUT/be/nginx.conf" & PIDS+=($!)
wait_port "$BE"

declare -A R S
for who in shoal nginx; do
  if [[ $who == shoal ]]; then
    $PIN_PROXY "$SHOAL" -p "$OUT/sh/" -c "$OUT/sh/shoal.conf" & PIDS+=($!); ports="$SH $SHS"
  else
    $PIN_PROXY "$NGINX" -p "$OUT/ng/" -c "$OUT/ng/nginx.conf" & PIDS+=($!); ports="$NG $NGS"
  fi
  for port in $ports; do wait_port "$port"; done
  for row in unary tls; do
    if [[ $row == unary ]]; then port=${ports% *}; else port=${ports#* }; fi
    out=$($PIN_REST h2load -n "$N" -c "$C" -m "$M" -d "$OUT/req.bin" -H 'content-type: application/grpc' \
          -H 'te: trailers' "http://127.0.0.1:$port/t.S/Unary" 2>&1)
    R[$who.$row]=$(awk '/^finished in/ {print $4}' <<< "$out")
    S[$who.$row]=$(awk '/^status codes:/ {print $3}' <<< "$out")
    [[ ${S[$who.$row]} == "$N" ]] || { echo "$who $row: not every call got 2xx:" >&2; grep -E "requests:|status codes:" <<< "$out" >&2; }
  done
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null
done
echo
echo "unary gRPC calls/s through grpc_pass (h2load -n $N -c $C -m $M, one proxy worker${PIN_PROXY:+ on core 0})"
printf "%-16s %12s %12s %8s\n" "" shoal nginx ratio
for row in unary tls; do
  printf "%-16s %12s %12s %8s\n" "$([[ $row == unary ]] && echo "grpc:// (h2c)" || echo "grpcs:// (TLS)")" \
    "${R[shoal.$row]}" "${R[nginx.$row]}" \
    "$(awk -v a="${R[shoal.$row]}" -v b="${R[nginx.$row]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
done
echo "(2xx: shoal ${S[shoal.unary]}/${S[shoal.tls]}, nginx ${S[nginx.unary]}/${S[nginx.tls]} of $N; ratio = shoal / nginx; the machine may be loaded: compare ratios)"
