#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Two regions 80 ms apart with 1% loss on the link between them, for 20
# minutes (issue 13): integration/cluster/test_multiregion.py with a long
# steady phase. Prints the test's lines and its MULTIREGION summary: false
# failures seen across the WAN (must be 0) and the cross-region detection
# time of a killed node. Needs root (network namespaces, TAP devices, nft).
#   bench/multiregion.sh [SECONDS, default 1200] [DELAY_MS, default 80] [LOSS %, default 1]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
[ -x "$root/build/bin/shoal" ] && [ -x "$root/build/bin/nodectl" ] ||
  cmake --build "$root/build" --target shoal nodectl >/dev/null
export SHOAL_MR_SECONDS=${1:-1200} SHOAL_MR_DELAY_MS=${2:-80} SHOAL_MR_LOSS=${3:-1}
exec timeout $(( SHOAL_MR_SECONDS + 600 )) python3 "$root/integration/cluster/test_multiregion.py" \
  --shoal "$root/build/bin/shoal" --nodectl "$root/build/bin/nodectl"
