#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The seed's 443 server beside nginx (issue 11): the seed configuration
# (../shared/fixtures/seed-loopback) copied verbatim and run by both, with
# every directive of its TLS server on (security headers, four limit_req /
# limit_conn zones, the two access logs with their formats, error pages,
# the deny locations, gzip), changed only where a benchmark must: one
# worker, rates raised so that nothing is rejected (the benchmark's one
# client address would otherwise be limited to 100 r/s), ssl_stapling off
# (the certificate is self-signed: nothing to staple) and the response
# cache left out (`proxy_cache` lines dropped: the proxied location "/" is
# measured, which the seed does not cache).
#
# The proxy (Shoal, then nginx, interleaved ROUNDS times) runs on CPU 0;
# the four backends (one nginx, `return 200` with a 200-byte JSON body) and
# the load tool on the last CPU. Loads on https://127.0.0.1:18443/:
#   h2   h2load -c16 -m10, HTTP/2 over TLS (ALPN h2), timed
#   h1   wrk -t1 -c64, HTTP/1.1 over TLS, keep-alive
# Medians per load, with the ratio Shoal / nginx (target: at least 1.2x).
#   bench/seed.sh [SECONDS per run, default 8] [ROUNDS, default 3]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
secs=${1:-8}
rounds=${2:-3}
bin=${SHOAL_BIN:-$root/build/bin/shoal}
seed=${SEED_DIR:-$root/../shared/fixtures/seed-loopback}
[ -d "$seed" ] || seed=/work/shared/fixtures/seed-loopback
[ -x "$bin" ] || cmake --build "$root/build" --target shoal >/dev/null
for t in wrk h2load nginx taskset curl; do
  command -v "$t" >/dev/null || { echo "seed.sh: $t is missing" >&2; exit 2; }
done
last=$(( $(nproc) - 1 ))
d=$(mktemp -d /tmp/seed-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$d"
}
trap cleanup EXIT INT TERM

# the seed, copied, with the benchmark's changes
cp -R "$seed" "$d/seed"
sh "$d/seed/make-certs.sh"
sed -i -e 's/^worker_processes .*/worker_processes 1;/' -e 's/rate=[0-9]*r\/s/rate=1000000r\/s/g' \
       -e '/proxy_cache_path/d' "$d/seed/nginx.conf"
sed -i -e 's/ssl_stapling on;/ssl_stapling off;/; s/ssl_stapling_verify on;/ssl_stapling_verify off;/' \
       -e 's/limit_conn conn_limit_per_ip 100;/limit_conn conn_limit_per_ip 1000;/' \
       -e 's/burst=200 nodelay/burst=100000 nodelay/g; s/burst=10 nodelay/burst=100000 nodelay/' \
       -e '/proxy_cache/d' "$d/seed/conf.d/api-gateway.conf"

# the backends: one nginx on the seed's four ports
mkdir -p "$d/be"
cat > "$d/be/nginx.conf" <<CONF
worker_processes 1; daemon off; error_log $d/be/error.log; pid $d/be/nginx.pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:19001; listen 127.0.0.1:19002; listen 127.0.0.1:19003; listen 127.0.0.1:19004;
    location / { default_type application/json;
      return 200 '{"id":"bench","object":"list","data":[{"id":"model-a","owned_by":"shoal"},{"id":"model-b","owned_by":"shoal"},{"id":"model-c","owned_by":"shoal"}],"padding":"xxxxxxxxxxxxxxxxxxxxxxxx"}'; } } }
CONF
taskset -c "$last" nginx -p "$d/be/" -c "$d/be/nginx.conf" &
pids+=($!)

url=https://127.0.0.1:18443/v1/items
wait_up() {
  for _ in $(seq 200); do
    curl -skf -o /dev/null "$url" && return 0
    sleep 0.05
  done
  echo "seed.sh: $1 did not answer on $url" >&2
  return 1
}

start() { # shoal|nginx
  rm -f "$d/seed/logs/"*.log
  if [ "$1" = shoal ]; then
    taskset -c 0 "$bin" -p "$d/seed/" -c "$d/seed/nginx.conf" 2>"$d/shoal.err" &
  else
    taskset -c 0 nginx -p "$d/seed/" -c "$d/seed/nginx.conf" -g 'daemon off; master_process off;' \
      2>"$d/nginx.err" &
  fi
  cur=$!
  pids+=("$cur")
  wait_up "$1"
}
stop() { kill "$cur" 2>/dev/null || true; wait "$cur" 2>/dev/null || true; }

h2() { taskset -c "$last" h2load -c16 -m10 -D "$secs" "$url" 2>/dev/null |
         awk '/^finished in/ {gsub(",", "", $4); print $4} /^status codes:/ {if ($5 + $7 + $9 > 0) print "non-2xx: " $0 > "/dev/stderr"}'; }
h1() { taskset -c "$last" wrk -t1 -c64 -d"${secs}s" "$url" |
         awk '/Requests\/sec/ {print $2} /Non-2xx/ {print "non-2xx: " $NF > "/dev/stderr"}'; }

declare -A res
for _ in $(seq "$rounds"); do
  for who in shoal nginx; do
    start "$who"
    # the same request through both: a 200 with the seed's headers
    hdr=$(curl -sk -D - -o /dev/null "$url")
    grep -qi '^strict-transport-security' <<<"$hdr" || { echo "seed.sh: $who sent no HSTS" >&2; exit 1; }
    res[$who.h2]+="$(h2) "
    res[$who.h1]+="$(h1) "
    stop
  done
done
median() { printf '%s\n' $@ | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "seed 443 server, 1 worker on CPU 0; backends and load on CPU $last; ${secs}s x $rounds rounds"
printf '%-22s %12s %12s %8s\n' load shoal nginx ratio
for l in h2 h1; do
  s=$(median ${res[shoal.$l]}); n=$(median ${res[nginx.$l]})
  name=$([ $l = h2 ] && echo "h2 TLS (-c16 -m10)" || echo "h1 TLS (wrk -c64)")
  printf '%-22s %12.0f %12.0f %7.2fx\n' "$name" "$s" "$n" "$(awk -v a="$s" -v b="$n" 'BEGIN{print a/b}')"
done
echo "runs: shoal h2 ${res[shoal.h2]}| nginx h2 ${res[nginx.h2]}| shoal h1 ${res[shoal.h1]}| nginx h1 ${res[nginx.h1]}"
