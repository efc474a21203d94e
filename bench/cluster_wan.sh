#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Cluster-shared state across two regions (issue 13): the global rate limit's
# error and the cluster-wide purge's p50/p99 with DELAY ms between two groups
# of nodes in network namespaces (integration/cluster/wan_relay.py), traffic
# in both regions, purge from east, time until no node of west serves it.
# Runs integration/cluster/test_multiregion_state.py once per loss rate with
# a longer window and more purges, then prints one table of its WAN_STATE
# lines. Bounded: each run under `timeout`; the test stops what it starts by
# PID and deletes its namespaces. Needs root (ip netns, TAP, nft).
# nginx has no cluster-wide limit: its limit_req is per instance, so N nodes
# admit N x the rate (+300% for 4 nodes) by construction; that row is not
# measured. The machine is loaded: compare, do not quote absolutes.
#   bench/cluster_wan.sh [SECONDS, default 20] [PURGES, default 40]
#                        [PER_REGION, default 2] [DELAY_MS, default 80] [LOSSES, default "0 1"]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${SHOAL_BUILD:-$root/build}
cmake --build "$build" --target shoal nodectl gload >/dev/null
export SHOAL_WAN_SECONDS=${1:-20} SHOAL_WAN_PURGES=${2:-40} SHOAL_WAN_PER_REGION=${3:-2}
export SHOAL_MR_DELAY_MS=${4:-80}
export SHOAL_GLOAD=$build/integration/cluster/gload
losses=${5:-"0 1"}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for loss in $losses; do
  echo "## loss ${loss}%: ${SHOAL_WAN_PER_REGION}+${SHOAL_WAN_PER_REGION} nodes, ${SHOAL_MR_DELAY_MS} ms," \
       "${SHOAL_WAN_SECONDS} s of load, ${SHOAL_WAN_PURGES} purges"
  rc=0
  SHOAL_MR_LOSS=$loss timeout $(( SHOAL_WAN_SECONDS + SHOAL_WAN_PURGES * 5 + 240 )) \
    python3 "$root/integration/cluster/test_multiregion_state.py" \
    --shoal "$build/bin/shoal" --nodectl "$build/bin/nodectl" > "$out.$loss" 2>&1 || rc=$?
  grep -E '^(#|global|configured|admitted|worst|purge|call|no |FAIL|SKIP)' "$out.$loss" || true
  grep '^WAN_STATE' "$out.$loss" >> "$out" || echo "WAN_STATE loss_pct=$loss failed rc=$rc" >> "$out"
  [ "$rc" = 0 ] || { echo "(exit $rc; log: $out.$loss)"; trap - EXIT; }
done
echo
printf '%-6s %-7s %-8s %-10s %-9s %-11s %-9s %-9s %-9s %-9s\n' loss nodes delay_ms "admitted/s" "error" \
  "worst 1s" "call p50" "call p99" "west p50" "west p99"
while read -r line; do
  declare -A f=()
  for kv in ${line#WAN_STATE }; do f[${kv%%=*}]=${kv#*=}; done
  printf '%-6s %-7s %-8s %-10s %-9s %-11s %-9s %-9s %-9s %-9s\n' "${f[loss_pct]:-?}%" \
    "${f[per_region]:-?}+${f[per_region]:-?}" "${f[delay_ms]:-?}" "${f[admitted]:--}" "${f[err_pct]:--}%" \
    "${f[worst_second_pct]:--}%" "${f[call_p50]:--}" "${f[call_p99]:--}" "${f[west_p50]:--}" "${f[west_p99]:--}"
  unset f
done < "$out"
printf '%-6s %-7s %-8s %-10s %-9s %s\n' "-" "nginx" "-" "$(( 2 * SHOAL_WAN_PER_REGION * 200 ))" \
  "+$(( (2 * SHOAL_WAN_PER_REGION - 1) * 100 ))%" "(per-instance limit_req, by construction; no cluster purge)"
