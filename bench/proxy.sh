#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Shoal beside nginx, HAProxy and h2o on the same backends, loads and machine,
# in one run, with ../shared/bench/proxy-bench.sh (or $PROXY_BENCH): prints
# requests/s, p50/p99 latency, CPU per request and memory per idle connection
# side by side with the ratio to nginx. Proxy pinned to one core, load and
# backends on the other (proxy-bench's --pin split). Any proxy-bench option
# may follow, e.g.:  bench/proxy.sh --quick --loads h1,h1lat,idle
# Needs: nginx haproxy h2o wrk nghttp2-client (installed here if missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
pb=${PROXY_BENCH:-$root/../shared/bench/proxy-bench.sh}
[ -x "$pb" ] || [ -f "$pb" ] || { echo "proxy.sh: proxy-bench.sh not found at $pb (set PROXY_BENCH)" >&2; exit 2; }
SHOAL_DEPS_EXTRA="nginx haproxy h2o wrk nghttp2-client util-linux" bash "$root/scripts/deps.sh"
# nginx and friends must not be running as services on the bench ports
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j "$(nproc)" --target shoal >/dev/null
export SHOAL_BIN=$root/build/bin/shoal
exec bash "$pb" --extra "shoal=$here/shoal-candidate.sh" "$@"
