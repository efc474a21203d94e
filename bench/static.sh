#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Requests/s for one 1 KB static file, Shoal beside nginx, each with one
# worker pinned to CPU 0 and wrk (-t1 -c64, keep-alive) pinned to the last
# CPU, sendfile on, no access log; the two run one after the other, ROUNDS
# times interleaved, and the median of each is printed.
#   bench/static.sh [SECONDS per run, default 5] [ROUNDS, default 3]
# Needs: nginx, wrk, taskset; the node built in build/ (built if missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
secs=${1:-5}
rounds=${2:-3}
. "$here/lib.sh"
bench_init static wrk taskset nginx
mkdir -p "$d/html" "$d/logs" "$d/ng/logs"
head -c 1024 /dev/urandom > "$d/html/1k.bin"
sp=$(free_port); np=$(free_port)
common="access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000000; default_type application/octet-stream;"
cat > "$d/shoal.conf" <<CONF
worker_processes 1; error_log $d/logs/error.log warn;
events { worker_connections 4096; }
http { $common server { listen 127.0.0.1:$sp; root $d/html; } }
CONF
cat > "$d/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $d/ng/nginx.pid; error_log $d/ng/logs/error.log warn;
events { worker_connections 4096; }
http { $common client_body_temp_path $d/ng/b; proxy_temp_path $d/ng/p; fastcgi_temp_path $d/ng/f;
       uwsgi_temp_path $d/ng/u; scgi_temp_path $d/ng/s;
       server { listen 127.0.0.1:$np; root $d/html; } }
CONF
taskset -c 0 "$bin" -p "$d/" -c "$d/shoal.conf" & pids+=($!)
taskset -c 0 "$nginx" -p "$d/ng/" -c "$d/nginx.conf" & pids+=($!)
for p in $sp $np; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$p/1k.bin" && break; sleep 0.05; done
done
run() { taskset -c "$last" wrk -t1 -c64 -d"${secs}s" "http://127.0.0.1:$1/1k.bin" | awk '/Requests\/sec/ {print $2}'; }
s_all=(); n_all=()
for _ in $(seq "$rounds"); do
  n_all+=("$(run $np)"); s_all+=("$(run $sp)")
done
sm=$(median "${s_all[@]}"); nm=$(median "${n_all[@]}")
echo "1 KB static file, 1 worker on CPU 0, wrk -t1 -c64 on CPU $last, ${secs}s x $rounds"
echo "nginx: ${n_all[*]} req/s (median $nm)"
echo "shoal: ${s_all[*]} req/s (median $sm)"
awk -v s="$sm" -v n="$nm" 'BEGIN { printf "shoal/nginx: %.2f\n", s / n }'
