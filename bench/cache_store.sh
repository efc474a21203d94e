#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The cache store alone (cache/, issue 12), no HTTP: fills/s, hits/s (whole
# body copied, and handed to a sink with sh_cache_hit_send), misses/s, and
# memory per cached entry (keys_zone index in RAM; LMDB disk beyond the body
# bytes), for 1 KB and 100 KB bodies, one thread pinned to CPU 0. The HTTP
# benchmark beside nginx's proxy_cache is bench/proxy_cache.sh (the module).
# For comparison, nginx documents its keys_zone at about 8000 keys per MB
# (~128 bytes per key) and keeps one file per entry (a header of ~0.5 KB
# plus the body, rounded up to the 4 KB filesystem block, plus an inode).
# The machine is shared and loaded: compare ratios, not absolute numbers.
#   bench/cache_store.sh [ENTRIES_1K, default 20000] [ENTRIES_100K, default 2000]
# Needs: taskset; build/ (bench_cache_store is built if missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
n1=${1:-20000}
n100=${2:-2000}
bin=$root/build/cache/tests/bench_cache_store
[ -x "$bin" ] || cmake --build "$root/build" --target bench_cache_store >/dev/null
command -v taskset >/dev/null || { echo "cache_store.sh: taskset is missing" >&2; exit 2; }
d=$(mktemp -d /tmp/cache-store-bench.XXXXXX)
trap 'rm -rf "$d"' EXIT
echo "== 1 KB bodies"
taskset -c 0 "$bin" "$d/1k" "$n1" 1024 1
echo "== 100 KB bodies"
taskset -c 0 "$bin" "$d/100k" "$n100" 102400 1
