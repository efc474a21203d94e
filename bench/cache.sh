#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# proxy_cache, Shoal beside nginx (issue 12), in one run on the same origin:
#  - hits/s of a 1 KB and a 100 KB body over HTTP/1.1 (wrk -t1 -c16) and over
#    HTTP/2 with TLS (h2load -c4 -m16, ALPN h2),
#  - misses/s (every request a new key: wrk with a counter in the query),
#  - memory per cached entry: the node's RSS growth and the store's disk
#    bytes after the miss run, divided by the entries it stored.
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
wrk_rps() { taskset -c "$last" wrk -t1 -c16 -d"${secs}s" "$@" | tee "$d/wrk.out" | awk '/Non-2xx|Socket errors/ {bad=1} /Requests\/sec/ {r=$2} END {print bad ? "errors" : r}'; }
wrk_total() { awk '/requests in/ {print $1}' "$d/wrk.out"; }
h2_rps() { taskset -c "$last" h2load -c4 -m16 -D "$secs" "$1" 2>/dev/null | awk '/^finished in/ {r=$4} /^requests:/ && ($8 == "0" || $12 != "0") {bad=1} /^status codes:/ && ($5 != "0" || $9 != "0") {bad=1} END {print bad ? "errors" : r}'; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cat > "$d/miss.lua" <<'LUA'
local n = 0
request = function() n = n + 1; return wrk.format(nil, "/m?" .. tostring(math.random(1, 1e9)) .. "-" .. n) end
LUA
report() { # name, shoal values..., --, nginx values...
  local name=$1; shift; local s=() n=() side=s
  for v in "$@"; do if [ "$v" = "--" ]; then side=n; elif [ $side = s ]; then s+=("$v"); else n+=("$v"); fi; done
  local sm nm; sm=$(median "${s[@]}"); nm=$(median "${n[@]}")
  printf '%-28s shoal %10s  nginx %10s  shoal/nginx %s   (shoal: %s; nginx: %s)\n' "$name" "$sm" "$nm" \
    "$(awk -v s="$sm" -v n="$nm" 'BEGIN { if (n > 0 && s > 0) printf "%.2f", s / n; else print "-" }')" "${s[*]}" "${n[*]}"
}
declare -A R
for test in h1-1k h1-100k h2tls-1k h2tls-100k; do
  sv=(); nv=()
  for _ in $(seq "$rounds"); do
    case $test in
      h1-*) f=${test#h1-}; nv+=("$(wrk_rps "http://127.0.0.1:$np/$f")"); sv+=("$(wrk_rps "http://127.0.0.1:$sp/$f")") ;;
      h2tls-*) f=${test#h2tls-}; nv+=("$(h2_rps "https://127.0.0.1:$nps/$f")"); sv+=("$(h2_rps "https://127.0.0.1:$sps/$f")") ;;
    esac
  done
  R[$test]="${sv[*]} -- ${nv[*]}"
done
s_rss0=$(rss_kb $spid); n_rss0=$(rss_kb $npid)
s_m=(); n_m=(); s_entries=0; n_entries=0
for _ in $(seq "$rounds"); do
  n_m+=("$(wrk_rps -s "$d/miss.lua" "http://127.0.0.1:$np/")"); n_entries=$((n_entries + $(wrk_total)))
  s_m+=("$(wrk_rps -s "$d/miss.lua" "http://127.0.0.1:$sp/")"); s_entries=$((s_entries + $(wrk_total)))
done
sleep 2 # the store's writer commits its last batch, nginx its files
s_rss1=$(rss_kb $spid); n_rss1=$(rss_kb $npid)
s_disk=$(du -sk "$d/sc" | awk '{print $1}'); n_disk=$(du -sk "$d/ngc" | awk '{print $1}')
echo "proxy_cache hits and misses, 1 worker on CPU 0, clients on CPU $last, ${secs}s x $rounds (medians; a shared machine: compare the ratios)"
for test in h1-1k h1-100k h2tls-1k h2tls-100k; do
  # shellcheck disable=SC2086
  report "hits $test req/s" ${R[$test]}
done
report "misses/s (new key each)" "${s_m[@]}" -- "${n_m[@]}"
# entries: every miss request stored one (each a new key)
awk -v se="$s_entries" -v ne="$n_entries" -v sr0="$s_rss0" -v sr1="$s_rss1" -v nr0="$n_rss0" -v nr1="$n_rss1" -v sd="$s_disk" -v nd="$n_disk" 'BEGIN {
  if (se == 0 || ne == 0) { print "memory per entry: no entries stored"; exit }
  printf "memory per entry of 1 KB (shoal %d entries, nginx %d): RSS growth shoal %.0f B, nginx %.0f B; store on disk shoal %.0f B, nginx %.0f B\n",
    se, ne, (sr1 - sr0) * 1024 / se, (nr1 - nr0) * 1024 / ne, sd * 1024 / se, nd * 1024 / ne }'
