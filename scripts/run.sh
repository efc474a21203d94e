#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's run command: installs what is missing, builds (Release) and
# starts the demo: two demo backends and one Shoal node on loopback, on the
# node's built-in default configuration. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target shoal >/dev/null
exec bash scripts/demo.sh build/bin/shoal
