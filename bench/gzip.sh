#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Requests/s for gzip of one 100 KB JSON file at gzip_comp_level 6 (served
# from disk, compressed per request: no gzip_static), Shoal beside nginx,
# each with one worker pinned to CPU 0 and wrk (-t1 -c16, keep-alive,
# Accept-Encoding: gzip) pinned to the last CPU, no access log; the two run
# one after the other, ROUNDS times interleaved, median of each printed.
#   bench/gzip.sh [SECONDS per run, default 5] [ROUNDS, default 3]
# Needs: nginx, wrk, taskset; the node built in build/ (built if missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
secs=${1:-5}
rounds=${2:-3}
. "$here/lib.sh"
bench_init gzip wrk taskset nginx
mkdir -p "$d/html"
python3 - "$d/html/data.json" <<'PY'
import json, random, sys
rnd = random.Random(7)
items = [{"id": i, "name": "item-%d" % i, "tags": ["alpha", "beta", "gamma"][: i % 3 + 1],
          "price": rnd.randint(1, 100000) / 100.0, "ok": i % 2 == 0,
          "note": "".join(rnd.choice("abcdefghij ") for _ in range(20))} for i in range(2000)]
data = json.dumps(items).encode()
open(sys.argv[1], "wb").write(data[:100 * 1024])
PY
serve_pair "access_log off; keepalive_requests 1000000000; types { application/json json; } gzip on; gzip_comp_level 6; gzip_types application/json;" \
  "$d/html" /data.json --compressed
# both must answer with gzip, and the same JSON once decompressed
for p in $sp $np; do
  curl -sf -H "Accept-Encoding: gzip" -D "$d/h.$p" -o "$d/o.$p" "http://127.0.0.1:$p/data.json"
  grep -qi '^content-encoding: gzip' "$d/h.$p" || { echo "gzip.sh: port $p did not compress" >&2; exit 1; }
  gzip -dc < "$d/o.$p" | cmp -s - "$d/html/data.json" || { echo "gzip.sh: port $p: bad body" >&2; exit 1; }
done
echo "compressed sizes: shoal $(stat -c %s "$d/o.$sp"), nginx $(stat -c %s "$d/o.$np") bytes"
run() { taskset -c "$last" wrk -t1 -c16 -H "Accept-Encoding: gzip" -d"${secs}s" "http://127.0.0.1:$1/data.json" | awk '/Non-2xx/ {bad=1} /Requests\/sec/ {r=$2} END {print bad ? "non-2xx" : r}'; }
compare_pair "gzip level 6 of a 100 KB JSON, 1 worker on CPU 0, wrk -t1 -c16 on CPU $last, ${secs}s x $rounds"
