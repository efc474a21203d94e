#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# proxy_cache, Shoal beside nginx (issue 12), in one run on the same origin:
#  - hits/s of a 1 KB and a 100 KB body over HTTP/1.1 (wrk -t1 -c16) and over
#    HTTP/2 with TLS (h2load -c4 -m16, ALPN h2),
#  - misses/s (every request a new key: wrk with a counter in the query),
#  - memory per cached entry: the node's RSS growth (anonymous and
#    file-backed apart) and the store's disk bytes after the miss run,
#    divided by the entries it stored.
# Beside req/s each row gives the server's CPU time per request and how busy
# the client's CPU was: with one core each, large bodies saturate the client
# first, and then req/s says little about the server: the 100 KB rows are
# run again with each server held to CACHE_BENCH_CAP % (default 25) of its
# core by a CPU cgroup quota (root only), where the servers set the pace.
# h2load runs fail the row unless every response is a 2xx with the whole
# body.
# Each server runs one worker pinned to CPU 0; the clients are pinned to the
# last CPU; the origin (a third nginx serving the two files) is not pinned.
# The runs alternate Shoal and nginx ROUNDS times; the medians are printed
# and their ratio. The machine may be shared: compare ratios, not figures.
#   bench/cache.sh [SECONDS per run, default 5] [ROUNDS, default 3]
# Needs: nginx, wrk, h2load, openssl, taskset; the node built in build/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
secs=${1:-5}
rounds=${2:-3}
. "$here/lib.sh"
bench_init cache wrk h2load openssl taskset nginx
mkdir -p "$d/html" "$d/logs" "$d/ng/logs" "$d/or/logs" "$d/sc" "$d/ngc"
python3 -c 'import base64, os, sys
for n, p in ((1024, sys.argv[1]), (102400, sys.argv[2])):
    open(p, "wb").write(base64.b64encode(os.urandom(n))[:n])' "$d/html/1k" "$d/html/100k"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench \
  -keyout "$d/key.pem" -out "$d/cert.pem" >/dev/null 2>&1
op=$(free_port); sp=$(free_port); sps=$(free_port); np=$(free_port); nps=$(free_port)
cat > "$d/or/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $d/or/nginx.pid; error_log $d/or/logs/error.log warn;
events { worker_connections 4096; }
http { access_log off; $(temps "$d/or") keepalive_requests 1000000000;
       server { listen 127.0.0.1:$op; root $d/html; location / { try_files /1k =404; } location = /100k { } } }
CONF
site() { # $1 port $2 tls port $3 cache dir
  cat <<CONF
    access_log off; keepalive_requests 1000000000;
    upstream origin { server 127.0.0.1:$op; keepalive 32; }
    proxy_cache_path $3 levels=1:2 keys_zone=bench:64m max_size=2g inactive=1h;
    server {
        listen 127.0.0.1:$1;
        listen 127.0.0.1:$2 ssl http2;
        ssl_certificate $d/cert.pem; ssl_certificate_key $d/key.pem;
        location / {
            proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_cache bench; proxy_cache_valid 200 1h;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }
CONF
}
cat > "$d/shoal.conf" <<CONF
worker_processes 1; error_log $d/logs/error.log warn;
events { worker_connections 4096; }
http {
$(site "$sp" "$sps" "$d/sc")
}
CONF
cat > "$d/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $d/ng/nginx.pid; error_log $d/ng/logs/error.log warn;
events { worker_connections 4096; }
http { $(temps "$d/ng")
$(site "$np" "$nps" "$d/ngc")
}
CONF
"$nginx" -p "$d/or/" -c "$d/or/nginx.conf" & pids+=($!)
taskset -c 0 "$bin" -p "$d/" -c "$d/shoal.conf" & spid=$!; pids+=($spid)
taskset -c 0 "$nginx" -p "$d/ng/" -c "$d/nginx.conf" & npid=$!; pids+=($npid)
for p in $op $sp $np; do
  for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$p/1k" && break; sleep 0.05; done
done
# warm and check: the second answer of each is a cache hit with the origin's
# bytes ($scheme is in the key: http and https are two entries)
for u in "http://127.0.0.1:$sp" "http://127.0.0.1:$np" "https://127.0.0.1:$sps" "https://127.0.0.1:$nps"; do
  for f in 1k 100k; do
    curl -skf -o /dev/null "$u/$f"
    curl -skf -D "$d/h" -o "$d/o" "$u/$f"
    cmp -s "$d/o" "$d/html/$f" || { echo "cache.sh: $u/$f: bad body" >&2; exit 1; }
    grep -qi '^x-cache-status: HIT' "$d/h" || { echo "cache.sh: $u/$f: not a HIT" >&2; exit 1; }
  done
done
# One run of the client against the server of pid $1: prints RPS_CPU_LOAD:
# req/s, the server's CPU time per request (us, from /proc/PID/stat) and
# how busy the client's CPU was (%). At 100% the client, not the server,
# sets the pace: compare CPU per request then. An error (non-2xx, socket
# errors, a short body) prints "errors".
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run_client() { # server pid, h1|h2, url, wrk args...
  local pid=$1 kind=$2 url=$3 c0 c1 rps n busy
  shift 3
  c0=$(cpu_ticks "$pid")
  TIMEFORMAT='CLIENT %U %S %R'
  if [ "$kind" = h1 ]; then
    { time taskset -c "$last" wrk -t1 -c16 -d"${secs}s" "$@" "$url" > "$d/client.out"; } 2> "$d/client.time"
    rps=$(awk '/Non-2xx|Socket errors/ {bad=1} /Requests\/sec/ {r=$2} END {print bad ? "errors" : r}' "$d/client.out")
    n=$(awk '/requests in/ {print $1}' "$d/client.out")
  else
    local size=${1:-0}
    { time taskset -c "$last" h2load -c4 -m16 -D "$secs" "$url" > "$d/client.out" 2>/dev/null; } 2> "$d/client.time"
    # every request succeeded with a 2xx carrying the whole body
    rps=$(awk -v size="$size" '/^finished in/ {r=$4} /^requests:/ {ok=$8; if ($8 == "0" || $10 != "0" || $12 != "0" || $14 != "0") bad=1}
      /^status codes:/ && ($5 != "0" || $7 != "0" || $9 != "0") {bad=1}
      /^traffic:/ {for (i = 1; i < NF; i++) if ($(i + 1) == "data") {x = $i; gsub(/[()]/, "", x); data = x}}
      END {if (ok > 0 && data / ok < size) bad=1; print bad ? "errors" : r}' "$d/client.out")
    n=$(awk '/^requests:/ {print $8}' "$d/client.out")
  fi
  c1=$(cpu_ticks "$pid")
  busy=$(awk '/^CLIENT/ {printf "%.0f", ($2 + $3) * 100 / $4}' "$d/client.time")
  [ "$rps" = errors ] && { echo errors; return; }
  awk -v r="$rps" -v n="$n" -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v b="$busy" \
    'BEGIN {printf "%s_%.1f_%s\n", r, (n > 0 ? c * 1e6 / hz / n : 0), b}'
}
wrk_total() { awk '/requests in/ {print $1}' "$d/client.out"; }
# RSS of one kind (RssAnon, RssFile, RssShmem) in kB; "own" is anonymous
# plus shared memory (nginx keeps its keys zone in shared memory)
mem_kb() {
  if [ "$2" = own ]; then echo $(($(mem_kb "$1" RssAnon) + $(mem_kb "$1" RssShmem))); return; fi
  awk -v k="$2" '$1 == k ":" {print $2}' "/proc/$1/status"
}
cat > "$d/miss.lua" <<'LUA'
local n = 0
request = function() n = n + 1; return wrk.format(nil, "/m?" .. tostring(math.random(1, 1e9)) .. "-" .. n) end
LUA
col() { local i=$1; shift; local v; for v in "$@"; do echo "$v" | awk -F_ -v i="$i" '{print $i}'; done; }
report() { # name, shoal runs..., --, nginx runs... (each RPS_CPU_LOAD)
  local name=$1; shift; local s=() n=() side=s
  for v in "$@"; do if [ "$v" = "--" ]; then side=n; elif [ $side = s ]; then s+=("$v"); else n+=("$v"); fi; done
  for v in "${s[@]}" "${n[@]}"; do [ "$v" = errors ] && { printf '%-24s errors (a failed or short response)\n' "$name"; return; }; done
  local sm nm sc nc sl nl
  sm=$(median $(col 1 "${s[@]}")); nm=$(median $(col 1 "${n[@]}"))
  sc=$(median $(col 2 "${s[@]}")); nc=$(median $(col 2 "${n[@]}"))
  sl=$(median $(col 3 "${s[@]}")); nl=$(median $(col 3 "${n[@]}"))
  printf '%-24s shoal %9s  nginx %9s  shoal/nginx %s | server CPU/req shoal %6s us  nginx %6s us | client CPU shoal %s%% nginx %s%%   (req/s shoal: %s; nginx: %s)\n' \
    "$name" "$sm" "$nm" "$(awk -v s="$sm" -v n="$nm" 'BEGIN { if (n > 0 && s > 0) printf "%.2f", s / n; else print "-" }')" \
    "$sc" "$nc" "$sl" "$nl" "$(col 1 "${s[@]}" | xargs)" "$(col 1 "${n[@]}" | xargs)"
}
declare -A R
for test in h1-1k h1-100k h2tls-1k h2tls-100k; do
  sv=(); nv=()
  f=${test#*-}; size=$([ "$f" = 1k ] && echo 1024 || echo 102400)
  for _ in $(seq "$rounds"); do
    case $test in
      h1-*) nv+=("$(run_client "$npid" h1 "http://127.0.0.1:$np/$f")"); sv+=("$(run_client "$spid" h1 "http://127.0.0.1:$sp/$f")") ;;
      h2tls-*) nv+=("$(run_client "$npid" h2 "https://127.0.0.1:$nps/$f" "$size")"); sv+=("$(run_client "$spid" h2 "https://127.0.0.1:$sps/$f" "$size")") ;;
    esac
  done
  R[$test]="${sv[*]} -- ${nv[*]}"
done
# The 100 KB rows again with each server held to CAP% of its core (a CPU
# cgroup quota), so that the servers, not the one-core client, set the pace
# and req/s compares the servers. Needs root and a cpu cgroup controller
# (v2 cpu.max or v1 cpu.cfs_quota_us); else the rows say skipped.
cap=${CACHE_BENCH_CAP:-25}
cg_root=""
if [ -w /sys/fs/cgroup/cgroup.subtree_control ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
  cg_root=/sys/fs/cgroup; echo +cpu > "$cg_root/cgroup.subtree_control" 2>/dev/null || cg_root=""
elif [ -w /sys/fs/cgroup/cpu/cgroup.procs ] && [ -e /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
  cg_root=/sys/fs/cgroup/cpu
fi
cg_hold() { # pid name: into a group of its own with the quota
  local g="$cg_root/shoal-cache-bench-$$-$2"
  mkdir -p "$g" || return 1
  cg_dirs+=("$g")
  if [ -e "$g/cpu.max" ]; then echo "$((cap * 1000)) 100000" > "$g/cpu.max"
  else echo 100000 > "$g/cpu.cfs_period_us"; echo $((cap * 1000)) > "$g/cpu.cfs_quota_us"; fi
  echo "$1" > "$g/cgroup.procs"
}
cg_release() { # back to the root group, the groups removed
  local g p
  [ -n "$cg_root" ] || return 0
  for g in "${cg_dirs[@]}"; do
    while read -r p; do echo "$p" > "$cg_root/cgroup.procs" 2>/dev/null || true; done < "$g/cgroup.procs"
    rmdir "$g" 2>/dev/null || true
  done
  cg_dirs=()
}
cg_dirs=()
trap 'cg_release; bench_cleanup' EXIT
capped=""
if [ -n "$cg_root" ] && cg_hold "$spid" s && cg_hold "$npid" n; then
  capped=yes
  for test in h1-100k h2tls-100k; do
    sv=(); nv=()
    for _ in $(seq "$rounds"); do
      case $test in
        h1-*) nv+=("$(run_client "$npid" h1 "http://127.0.0.1:$np/100k")"); sv+=("$(run_client "$spid" h1 "http://127.0.0.1:$sp/100k")") ;;
        h2tls-*) nv+=("$(run_client "$npid" h2 "https://127.0.0.1:$nps/100k" 102400)"); sv+=("$(run_client "$spid" h2 "https://127.0.0.1:$sps/100k" 102400)") ;;
      esac
    done
    R[cap-$test]="${sv[*]} -- ${nv[*]}"
  done
fi
cg_release
s_a0=$(mem_kb $spid own); s_f0=$(mem_kb $spid RssFile); n_a0=$(mem_kb $npid own); n_f0=$(mem_kb $npid RssFile)
s_m=(); n_m=(); s_entries=0; n_entries=0
for _ in $(seq "$rounds"); do
  n_m+=("$(run_client "$npid" h1 "http://127.0.0.1:$np/" -s "$d/miss.lua")"); n_entries=$((n_entries + $(wrk_total)))
  s_m+=("$(run_client "$spid" h1 "http://127.0.0.1:$sp/" -s "$d/miss.lua")"); s_entries=$((s_entries + $(wrk_total)))
done
sleep 2 # the store's writer commits its last batch, nginx its files
s_a1=$(mem_kb $spid own); s_f1=$(mem_kb $spid RssFile); n_a1=$(mem_kb $npid own); n_f1=$(mem_kb $npid RssFile)
s_disk=$(du -sk "$d/sc" | awk '{print $1}'); n_disk=$(du -sk "$d/ngc" | awk '{print $1}')
echo "proxy_cache hits and misses, 1 worker on CPU 0, clients on CPU $last, ${secs}s x $rounds (medians; a shared machine: compare the ratios)"
echo "(client CPU near 100%: the client sets the pace, both servers wait on it; compare the server CPU per request, or the rows at ${cap}% CPU)"
for test in h1-1k h1-100k h2tls-1k h2tls-100k; do
  # shellcheck disable=SC2086
  report "hits $test" ${R[$test]}
done
for test in h1-100k h2tls-100k; do
  if [ -n "$capped" ]; then
    # shellcheck disable=SC2086
    report "hits $test at ${cap}% CPU" ${R[cap-$test]}
  else
    printf '%-24s skipped: no writable cpu cgroup (run as root with a cpu controller)\n' "hits $test at ${cap}% CPU"
  fi
done
report "misses (new key each)" "${s_m[@]}" -- "${n_m[@]}"
# entries: every miss request stored one (each a new key). Own memory is
# anonymous plus shared (nginx's keys zone); file-backed is the LMDB map's
# pages the node touched (page cache the kernel can drop; nginx reads its
# files with read(), so its page cache never shows in its RSS).
awk -v se="$s_entries" -v ne="$n_entries" -v sa="$((s_a1 - s_a0))" -v sf="$((s_f1 - s_f0))" -v na="$((n_a1 - n_a0))" -v nf="$((n_f1 - n_f0))" -v sd="$s_disk" -v nd="$n_disk" 'BEGIN {
  if (se == 0 || ne == 0) { print "memory per entry: no entries stored"; exit }
  printf "memory per entry of 1 KB (shoal %d entries, nginx %d): own RSS growth (anonymous + shared) shoal %.0f B, nginx %.0f B; file-backed RSS growth (mapped store) shoal %.0f B, nginx %.0f B; store on disk shoal %.0f B, nginx %.0f B\n",
    se, ne, sa * 1024 / se, na * 1024 / ne, sf * 1024 / se, nf * 1024 / ne, sd * 1024 / se, nd * 1024 / ne }'
