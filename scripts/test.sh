#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's test command: installs what is missing, builds three ways and
# runs every test through ctest:
#   build/       Release, -Werror: unit and integration tests
#   build-asan/  Debug with AddressSanitizer + UndefinedBehaviorSanitizer:
#                the same tests again (the node under test is the ASan one)
#   build-fuzz/  clang + libFuzzer: every fuzz target for a bounded time
# Exits non-zero if anything fails. SHOAL_FUZZ_SECONDS (default 20) bounds
# each fuzz target; SHOAL_JOBS (default: cores) sets build/test parallelism.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${SHOAL_JOBS:-$(nproc)}
fuzz_seconds=${SHOAL_FUZZ_SECONDS:-20}

bash scripts/deps.sh || exit 1

status=0
step() { echo; echo "=== $*"; }

build() { # dir, cmake args...
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -DSHOAL_WERROR=ON "$@" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir" -j "$jobs" 2>&1 | grep -Ev '^\[ *[0-9]+%\]|^Consolidate|^Scanning|^Built target' || true
  [ "${PIPESTATUS[0]}" -eq 0 ]
}

mkdir -p build build-asan build-fuzz

step "Release build and tests"
if build build -DCMAKE_BUILD_TYPE=Release; then
  (cd build && ctest -j "$jobs" --output-on-failure --timeout 600) || status=1
else
  echo "Release build failed"; status=1
fi

step "ASan + UBSan build and tests"
if build build-asan -DCMAKE_BUILD_TYPE=Debug -DSHOAL_SANITIZE=ON; then
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest -j "$jobs" --output-on-failure --timeout 900) || status=1
else
  echo "ASan build failed"; status=1
fi

step "Fuzz targets (${fuzz_seconds}s each)"
if CC=clang build build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHOAL_FUZZ=ON -DSHOAL_TESTS=OFF \
     -DSHOAL_FUZZ_SECONDS="$fuzz_seconds"; then
  (cd build-fuzz && ctest -j "$jobs" --output-on-failure -L fuzz) || status=1
else
  echo "fuzz build failed"; status=1
fi

echo
if [ $status -eq 0 ]; then echo "=== all tests passed"; else echo "=== FAILURES (see above)"; fi
exit $status
