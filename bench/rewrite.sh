#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cost of the rewrite module, in one run: req/s of
#   /plain        `return 200` (no rewrite directive)
#   /r/abc        `rewrite ^/r/(.*)$ /show/$1 last;` then, in /show/, a `set`,
#                 two `if`s (a variable, a case-insensitive regex) and `return`
# through shoal and nginx with the same http block. Each runs 1 worker pinned
# to CPU 0, wrk -t1 -c32 on the last CPU; runs are interleaved ROUNDS times
# and medians printed. The machine is shared and loaded: read the ratios,
# not the absolute figures.
#   bench/rewrite.sh [SECONDS per run, default 5] [ROUNDS, default 3]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
secs=${1:-5}
rounds=${2:-3}
. "$here/lib.sh"
bench_init rewrite wrk taskset python3 curl nginx
mkdir -p "$d/logs" "$d/tmp"
ps=$(free_port) pn=$(free_port)
body() {
  cat <<CONF
    access_log off;
    server { listen 127.0.0.1:$1;
      location /r/ { rewrite ^/r/(.*)\$ /show/\$1 last; }
      location /show/ { set \$v "x\$uri"; if (\$arg_x) { return 403; }
                        if (\$http_user_agent ~* bot) { return 404; } return 200 "ok \$v\n"; }
      location /plain { return 200 "ok\n"; } }
CONF
}
printf 'worker_processes 1;\nevents { }\nhttp {\n%s\n}\n' "$(body "$ps")" > "$d/shoal.conf"
printf 'daemon off; master_process off; pid %s/n.pid; error_log %s/logs/e.log;\nevents { }\nhttp { client_body_temp_path %s/tmp/b; proxy_temp_path %s/tmp/p; fastcgi_temp_path %s/tmp/f; uwsgi_temp_path %s/tmp/u; scgi_temp_path %s/tmp/s;\n%s\n}\n' \
  "$d" "$d" "$d" "$d" "$d" "$d" "$d" "$(body "$pn")" > "$d/nginx.conf"
taskset -c 0 "$bin" -p "$d/" -c "$d/shoal.conf" > "$d/logs/shoal.out" 2>&1 & pids+=($!)
taskset -c 0 "$nginx" -p "$d/" -c "$d/nginx.conf" & pids+=($!)
for p in "$ps" "$pn"; do
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$p/plain" >/dev/null && break; sleep 0.1; done
done
run() { taskset -c "$last" wrk -t1 -c32 -d"${secs}s" "http://127.0.0.1:$1$2" | awk '/Requests\/sec/ {print int($2)}'; }
declare -A res
for r in $(seq "$rounds"); do
  for path in /plain /r/abc; do
    for who in nginx shoal; do
      port=$([ "$who" = shoal ] && echo "$ps" || echo "$pn")
      res[$who$path]+="$(run "$port" "$path") "
    done
  done
done
printf '%-8s %12s %12s %8s\n' path nginx shoal ratio
for path in /plain /r/abc; do
  n=$(median ${res[nginx$path]})
  s=$(median ${res[shoal$path]})
  printf '%-8s %12s %12s %8s\n' "$path" "$n" "$s" "$(awk -v a="$s" -v b="$n" 'BEGIN {printf "%.2f", a/b}')"
done
