#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# fuzz-long.sh -- longer fuzzing than ctest's bounded runs (issue 15), outside the test command.
#
# Runs every libFuzzer target of a fuzz build (the sh_add_fuzz() entries of */fuzz/CMakeLists.txt)
# one at a time for RUNS executions (default 10^7) under `nice -n 10`, starting from the corpus
# kept in the repository, with new units written to a scratch directory. Then it merges those
# units into the repository's corpus with -merge=1 (only units that add coverage), unless the
# corpus would pass MAX_FILES files. Prints one line per target: runs, seconds, exec/s, corpus
# files before and after, and any crash/leak/timeout file it left (the run stops at the first
# finding: rerun the target on that file to reproduce it).
#
# Usage: bench/fuzz-long.sh [TARGET...]       (default: every target)
# Env:   BUILD=build-fuzz RUNS=10000000 MAX_LEN=4096 MAX_FILES=299 MERGE=1 NICE=10
#        (build first: CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo
#         -DSHOAL_FUZZ=ON -DSHOAL_TESTS=OFF && cmake --build build-fuzz -j2)
# Exit status: 0 when no target found anything, 1 otherwise, 2 on a usage or build problem.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
BUILD=${BUILD:-$REPO/build-fuzz}
RUNS=${RUNS:-10000000}
MAX_LEN=${MAX_LEN:-4096}
MAX_FILES=${MAX_FILES:-299}
MERGE=${MERGE:-1}
NICE=${NICE:-10}
OUT=$(mktemp -d /tmp/shoal-fuzz-long.XXXXXX)
child=
cleanup() { [[ -n $child ]] && kill "$child" 2>/dev/null; wait 2>/dev/null; rm -rf "$OUT"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# name -> corpus directory, read from the CMake registrations (an entry spans lines).
declare -A corpus
for f in "$REPO"/*/fuzz/CMakeLists.txt; do
  d=$(dirname "$f")
  while read -r name dir; do
    [[ -n $name ]] && corpus[$name]=$d/$dir
  done < <(tr '\n' ' ' < "$f" | grep -o 'sh_add_fuzz([a-z0-9_]* [^)]*)' |
           sed -nE 's/sh_add_fuzz\(([a-z0-9_]+) .*CORPUS \$\{CMAKE_CURRENT_SOURCE_DIR\}\/([^ )]+).*/\1 \2/p')
done
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(printf '%s\n' "${!corpus[@]}" | sort)

find_bin() { # the target's executable somewhere under the build tree
  find "$BUILD" -type f -name "$1" -perm -u+x 2>/dev/null | head -1
}

status=0
printf '%-20s %10s %8s %8s %7s %7s  %s\n' target runs seconds exec/s before after finding
for t in "${targets[@]}"; do
  dir=${corpus[$t]:-}
  bin=$(find_bin "$t")
  if [[ -z $dir || -z $bin ]]; then
    echo "$t: no such fuzz target or not built (BUILD=$BUILD)" >&2; exit 2
  fi
  work=$OUT/$t; mkdir -p "$work/new" "$work/artifacts"
  before=$(find "$dir" -type f | wc -l)
  t0=$(date +%s)
  nice -n "$NICE" "$bin" -runs="$RUNS" -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/new" "$dir" \
    > "$work/log" 2>&1 &
  child=$!; wait "$child"; rc=$?; child=
  secs=$(( $(date +%s) - t0 ))
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$work/log" | tail -1)
  eps=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$work/log" | tail -1)
  finding=$(ls "$work/artifacts" 2>/dev/null | head -3 | tr '\n' ' ')
  if [[ $rc -ne 0 || -n $finding ]]; then
    status=1
    keep=$BUILD/findings/$t; mkdir -p "$keep"
    cp "$work/artifacts/"* "$work/log" "$keep/" 2>/dev/null
    finding="rc=$rc ${finding:-none} (kept in $keep)"
  elif [[ $MERGE == 1 ]]; then
    # -merge=1 A B adds to A the units of B that add coverage over A's: merge into a copy of
    # the kept corpus, then copy the units it gained (named by their SHA-1) up to MAX_FILES.
    cp -r "$dir" "$work/merged"
    nice -n "$NICE" "$bin" -merge=1 -max_len="$MAX_LEN" -timeout=10 "$work/merged" "$work/new" \
      > "$work/merge.log" 2>&1 || true
    n=$before
    for f in "$work/merged"/*; do
      [[ -e $dir/$(basename "$f") ]] && continue
      (( n >= MAX_FILES )) && break
      cp "$f" "$dir/"; n=$((n + 1))
    done
  fi
  after=$(find "$dir" -type f | wc -l)
  printf '%-20s %10s %8s %8s %7s %7s  %s\n' "$t" "${runs:-?}" "$secs" "${eps:-?}" "$before" "$after" \
    "${finding:-none}"
done
exit $status
