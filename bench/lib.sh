# SPDX-License-Identifier: Apache-2.0
# Sourced by the bench/*.sh scripts that run Shoal beside nginx: the setup
# they all share. After `. "$here/lib.sh"` and `bench_init NAME TOOL...`:
#   $bin $nginx  the binaries (SHOAL_BIN, NGINX_BIN override; shoal is built
#                in build/ when missing)
#   $last        the last CPU (the load generator's; servers take CPU 0)
#   $d           a scratch directory, removed at exit
#   pids+=($!)   what to kill at exit (by PID)
# A TOOL named `nginx` stands for $nginx. Exits 2 when a tool is missing.
# For the scripts that serve files from both side by side: serve_pair and
# compare_pair, below.

bench_init() {
  local name=$1 t
  shift
  bin=${SHOAL_BIN:-$root/build/bin/shoal}
  nginx=${NGINX_BIN:-/usr/sbin/nginx}
  [ -x "$bin" ] || cmake --build "$root/build" --target shoal >/dev/null
  for t in "$@"; do
    [ "$t" = nginx ] && t=$nginx
    command -v "$t" >/dev/null || { echo "$name.sh: $t is missing" >&2; exit 2; }
  done
  last=$(( $(nproc) - 1 ))
  d=$(mktemp -d "/tmp/$name-bench.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$d"
}

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# nginx's temp paths under DIR (nginx wants them writable even when unused).
temps() {
  echo "client_body_temp_path $1/b; proxy_temp_path $1/p; fastcgi_temp_path $1/f; uwsgi_temp_path $1/u; scgi_temp_path $1/s;"
}

# The median of the numbers given.
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Wait (at most 5 s) until URL answers; curl options may follow the URL.
wait_http() {
  local _
  for _ in $(seq 100); do curl -sf -o /dev/null "$@" && return 0; sleep 0.05; done
  echo "no answer from $1" >&2
  return 1
}

# Shoal on $sp and nginx on $np (free ports, set here), each one worker
# pinned to CPU 0 with the http-level directives COMMON and one server
# serving DOCROOT; returns once both answer PATH (curl options may follow).
serve_pair() {
  local common=$1 docroot=$2 path=$3 p
  shift 3
  mkdir -p "$d/logs" "$d/ng/logs"
  sp=$(free_port); np=$(free_port)
  cat > "$d/shoal.conf" <<CONF
worker_processes 1; error_log $d/logs/error.log warn;
events { worker_connections 4096; }
http { $common server { listen 127.0.0.1:$sp; root $docroot; } }
CONF
  cat > "$d/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $d/ng/nginx.pid; error_log $d/ng/logs/error.log warn;
events { worker_connections 4096; }
http { $common $(temps "$d/ng")
       server { listen 127.0.0.1:$np; root $docroot; } }
CONF
  taskset -c 0 "$bin" -p "$d/" -c "$d/shoal.conf" & pids+=($!)
  taskset -c 0 "$nginx" -p "$d/ng/" -c "$d/nginx.conf" & pids+=($!)
  for p in $sp $np; do wait_http "http://127.0.0.1:$p$path" "$@"; done
}

# `run PORT` (the script's: prints requests/s) $rounds times for nginx ($np)
# then Shoal ($sp), interleaved; prints TITLE, each one's figures with
# their median, and the ratio of the medians.
compare_pair() {
  local title=$1 _ sm nm s_all=() n_all=()
  for _ in $(seq "$rounds"); do
    n_all+=("$(run "$np")"); s_all+=("$(run "$sp")")
  done
  sm=$(median "${s_all[@]}"); nm=$(median "${n_all[@]}")
  echo "$title"
  echo "nginx: ${n_all[*]} req/s (median $nm)"
  echo "shoal: ${s_all[*]} req/s (median $sm)"
  awk -v s="$sm" -v n="$nm" 'BEGIN { printf "shoal/nginx: %.2f\n", s / n }'
}
