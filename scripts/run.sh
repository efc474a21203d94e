#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's run command: installs what is missing, builds (Release) and
# starts the demo: two demo backends and a three-node Shoal cluster on
# loopback, then shows `nodectl members` of it. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target shoal nodectl >/dev/null
exec bash scripts/demo.sh build/bin/shoal
