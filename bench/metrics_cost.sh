#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# What counting costs (issue 17): requests/s through the proxy (keep-alive
# to one backend, a 2-byte answer) for Shoal without any scrape, Shoal with
# /metrics scraped every second (curl, as Prometheus would), and nginx as the
# same proxy beside them; each proxy one worker pinned to CPU 0, the backend
# (nginx, `return 200`) and wrk (-t1 -c32) pinned to the last CPU; runs
# interleaved ROUNDS times, medians and their ratios printed. The machine
# may be loaded by other work: read the ratios, not the absolute figures.
#   bench/metrics_cost.sh [SECONDS per run, default 5] [ROUNDS, default 3]
# SCRAPE_PATH=/v1/info scrapes another admin path instead (the same client
# load without the metrics work: tells the client's cost from the scrape's).
# Needs: nginx, wrk, taskset, curl; the node built in build/ (built if missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
secs=${1:-5}
rounds=${2:-3}
. "$here/lib.sh"
bench_init metrics wrk taskset curl nginx
mkdir -p "$d/logs" "$d/ng/logs" "$d/be/logs"
bp=$(free_port); sp=$(free_port); ap=$(free_port); np=$(free_port)
cat > "$d/be/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $d/be/nginx.pid; error_log $d/be/logs/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000000; $(temps "$d/be")
       server { listen 127.0.0.1:$bp; location / { return 200 "ok"; } } }
CONF
common="access_log off; keepalive_requests 1000000000; upstream b { server 127.0.0.1:$bp; keepalive 64; }"
loc="location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
cat > "$d/shoal.conf" <<CONF
worker_processes 1; error_log $d/logs/error.log warn; admin_listen 127.0.0.1:$ap;
events { worker_connections 4096; }
http { $common server { listen 127.0.0.1:$sp; server_name bench; metrics_location_label on; $loc } }
CONF
cat > "$d/ng/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $d/ng/nginx.pid; error_log $d/ng/logs/error.log warn;
events { worker_connections 4096; }
http { $common $(temps "$d/ng") server { listen 127.0.0.1:$np; $loc } }
CONF
taskset -c "$last" "$nginx" -p "$d/be/" -c "$d/be/nginx.conf" & pids+=($!)
taskset -c 0 "$bin" -p "$d/" -c "$d/shoal.conf" & pids+=($!)
taskset -c 0 "$nginx" -p "$d/ng/" -c "$d/ng/nginx.conf" & pids+=($!)
for p in $sp $np; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.05; done
  curl -sf -o /dev/null "http://127.0.0.1:$p/" || { echo "metrics_cost.sh: port $p does not answer" >&2; exit 1; }
done
curl -sf -o /dev/null "http://127.0.0.1:$ap/metrics" || { echo "metrics_cost.sh: no /metrics" >&2; exit 1; }
run() { taskset -c "$last" wrk -t1 -c32 -d"${secs}s" "http://127.0.0.1:$1/" | awk '/Non-2xx/ {bad=1} /Requests\/sec/ {r=$2} END {print bad ? "non-2xx" : r}'; }
# one scrape a second while a run lasts (on the load's CPU, like any client)
scrape_path=${SCRAPE_PATH:-/metrics}
scraper() { while :; do taskset -c "$last" curl -sf -o /dev/null "http://127.0.0.1:$ap$scrape_path" || true; sleep 1; done; }
n_all=(); s_all=(); m_all=(); r_all=()
scraped() {
  scraper & spid=$!
  run "$sp"
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
}
for i in $(seq "$rounds"); do
  n_all+=("$(run $np)")
  # the two Shoal runs back to back, their order alternating, so that a
  # change of the machine's load weighs on both alike
  if (( i % 2 )); then s=$(run $sp); m=$(scraped); else m=$(scraped); s=$(run $sp); fi
  s_all+=("$s"); m_all+=("$m")
  r_all+=("$(awk -v s="$s" -v m="$m" 'BEGIN { printf "%.3f", m / s }')")
done
lines=$(curl -sf "http://127.0.0.1:$ap/metrics" | wc -l)
# the node's CPU time for 200 scrapes, beside 200 of the smallest admin request
spid=${pids[1]}
cpu() { awk '{print $14 + $15}' "/proc/$spid/stat"; }
tick=$(getconf CLK_TCK)
c0=$(cpu); for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$ap/metrics"; done
c1=$(cpu); for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$ap/v1/info"; done
c2=$(cpu)
# what one scrape takes, end to end (the admin thread sums every worker)
st=$(for _ in $(seq 20); do curl -sf -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$ap/metrics"; done | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)] * 1000}')
nm=$(median "${n_all[@]}"); sm=$(median "${s_all[@]}"); mm=$(median "${m_all[@]}"); rm_=$(median "${r_all[@]}")
echo "proxy keep-alive to one backend, 1 worker on CPU 0, wrk -t1 -c32 on CPU $last, ${secs}s x $rounds"
echo "nginx proxy:                  ${n_all[*]} req/s (median $nm)"
echo "shoal proxy, no scrape:       ${s_all[*]} req/s (median $sm)"
echo "shoal proxy, $scrape_path every 1s: ${m_all[*]} req/s (median $mm)"
echo "scraped/unscraped per round:  ${r_all[*]} (median $rm_)"
echo "one scrape: ${st} ms median of 20 (/metrics is $lines lines); node CPU per scrape:" \
  "$(awk -v a="$c0" -v b="$c1" -v t="$tick" 'BEGIN { printf "%.2f", (b - a) * 1000 / t / 200 }') ms," \
  "per /v1/info: $(awk -v a="$c1" -v b="$c2" -v t="$tick" 'BEGIN { printf "%.2f", (b - a) * 1000 / t / 200 }') ms"
awk -v s="$sm" -v n="$nm" 'BEGIN { printf "shoal/nginx: %.2f\n", s / n }'
