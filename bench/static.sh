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
mkdir -p "$d/html"
head -c 1024 /dev/urandom > "$d/html/1k.bin"
serve_pair "access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000000; default_type application/octet-stream;" \
  "$d/html" /1k.bin
run() { taskset -c "$last" wrk -t1 -c64 -d"${secs}s" "http://127.0.0.1:$1/1k.bin" | awk '/Requests\/sec/ {print $2}'; }
compare_pair "1 KB static file, 1 worker on CPU 0, wrk -t1 -c64 on CPU $last, ${secs}s x $rounds"
