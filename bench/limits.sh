#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cost of limit_req: req/s of a 1 KB static file through a location
# without limits and through one with a limit_req zone holding 100,000 live
# keys (rate high enough that nothing is rejected; wrk's Lua script sends
# X-Key cycling over 100,000 values to both, so both pay the same client
# work), one worker pinned to CPU 0, wrk -t1 -c64 pinned to the last CPU,
# interleaved ROUNDS times, medians printed. Then the zone's lookup cost
# on 1 and 2 threads (bench_limit_zone: spread keys, and one key for
# every thread, the worst contention).
#   bench/limits.sh [SECONDS per run, default 5] [ROUNDS, default 3]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
secs=${1:-5}
rounds=${2:-3}
bin=${SHOAL_BIN:-$root/build/bin/shoal}
zb=${ZONE_BENCH:-$root/build/node/tests/bench_limit_zone}
[ -x "$bin" ] && [ -x "$zb" ] || cmake --build "$root/build" --target shoal bench_limit_zone >/dev/null
for t in wrk taskset; do
  command -v "$t" >/dev/null || { echo "limits.sh: $t is missing" >&2; exit 2; }
done
last=$(( $(nproc) - 1 ))
d=$(mktemp -d /tmp/limits-bench.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$d"; }
trap cleanup EXIT
mkdir -p "$d/html/none" "$d/html/zone" "$d/logs"
head -c 1024 /dev/urandom > "$d/html/none/1k.bin"
cp "$d/html/none/1k.bin" "$d/html/zone/1k.bin"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$d/shoal.conf" <<CONF
worker_processes 1; error_log $d/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000000; default_type application/octet-stream;
  limit_req_zone \$http_x_key zone=big:8m rate=100000r/s;
  server { listen 127.0.0.1:$port; root $d/html;
    location /zone/ { limit_req zone=big burst=100000 nodelay; }
  }
}
CONF
cat > "$d/keys.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  if n >= 100000 then n = 0 end
  return wrk.format("GET", wrk.path, { ["X-Key"] = "client-" .. n })
end
LUA
taskset -c 0 "$bin" -p "$d/" -c "$d/shoal.conf" & pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/none/1k.bin" && break; sleep 0.05; done
run() { taskset -c "$last" wrk -t1 -c64 -d"${secs}s" -s "$d/keys.lua" "http://127.0.0.1:$port/$1/1k.bin" \
          | awk '/Requests\/sec/ {print $2} /Non-2xx/ {print "non-2xx:" $NF > "/dev/stderr"}'; }
run zone >/dev/null # fill the zone: 100,000 live keys
z_all=(); n_all=()
for _ in $(seq "$rounds"); do
  n_all+=("$(run none)"); z_all+=("$(run zone)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
zm=$(median "${z_all[@]}"); nm=$(median "${n_all[@]}")
echo "1 KB static file, 1 worker on CPU 0, wrk -t1 -c64 on CPU $last, ${secs}s x $rounds"
echo "no limit:                      ${n_all[*]} req/s (median $nm)"
echo "limit_req, 100,000 live keys:  ${z_all[*]} req/s (median $zm)"
awk -v z="$zm" -v n="$nm" 'BEGIN { printf "cost: %.1f%% of req/s, %.0f ns per request\n", 100 * (1 - z / n), 1e9 / z - 1e9 / n }'
echo "--- zone lookups (bench_limit_zone, CPUs 0-$last)"
taskset -c "0-$last" "$zb" 2000000
