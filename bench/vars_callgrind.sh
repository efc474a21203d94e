#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# What variables cost per request, deterministically (issue 10, item 7):
# one worker under callgrind answers N keep-alive requests (`return 200`)
# and logs each with a 29-variable log_format (the core's, $http_*,
# $proxy_add_x_forwarded_for); prints the instructions per request of the
# log line's evaluation (sh_cv_eval_log, inclusive) and of the whole
# request (process, inclusive) for each binary given. Instruction counts do
# not depend on the machine's load; compare binaries, e.g. one built from
# main before a change:
#   bench/vars_callgrind.sh [N, default 1000] [BINARY...] (default: build/bin/shoal, or SHOAL_BIN)
# Needs: valgrind, callgrind_annotate, curl. Binaries with symbols (Release is fine).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
n=${1:-1000}
shift || true
bench_init vars_callgrind valgrind callgrind_annotate curl
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("$bin")
port=$(free_port)
mkdir -p "$d/logs"
cat >"$d/cg.conf" <<EOF
worker_processes 1;
error_log logs/error.log warn;
pid logs/shoal.pid;
http {
    log_format big '\$remote_addr - \$remote_user [\$time_local] "\$request" \$status \$body_bytes_sent '
                   '"\$http_referer" "\$http_user_agent" \$request_time \$host \$uri \$args \$is_args '
                   '\$request_method \$server_protocol \$scheme \$server_port \$connection '
                   '\$connection_requests \$request_length \$bytes_sent \$content_length \$msec '
                   '\$proxy_add_x_forwarded_for \$server_name \$request_uri \$pipe';
    access_log logs/access.log big;
    server {
        listen 127.0.0.1:$port;
        server_name cg.test;
        location / { return 200 "ok\n"; }
    }
}
EOF
urls=()
for i in $(seq "$n"); do urls+=("http://127.0.0.1:$port/a/b?x=$i"); done
printf '%-40s %14s %14s\n' binary "log Ir/req" "request Ir/req"
for b in "${bins[@]}"; do
  rm -f "$d"/logs/* "$d/cg.out"
  valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" "$b" -p "$d/" -c "$d/cg.conf" \
    >"$d/vg.log" 2>&1 &
  vp=$!
  pids+=("$vp")
  for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
  curl -s -H 'Host: cg.test' -H 'User-Agent: cg' "${urls[@]}" >/dev/null
  kill -QUIT "$(cat "$d/logs/shoal.pid")" 2>/dev/null || kill "$vp"
  wait "$vp" || true
  reqs=$(wc -l <"$d/logs/access.log")
  ann=$(callgrind_annotate --inclusive=yes "$d/cg.out" 2>/dev/null)
  ir() { echo "$ann" | grep -E "$1" | head -1 | awk '{gsub(",","",$1); print $1}'; }
  printf '%-40s %14d %14d\n' "$b" \
    $(( $(ir 'sh_cv_eval_log \[') / reqs )) $(( $(ir ':process \[') / reqs ))
done
