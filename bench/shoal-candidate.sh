#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# proxy-bench.sh candidate for Shoal: reads the BENCH_* variables, writes a
# Shoal configuration equivalent to the one proxy-bench gives nginx (round
# robin over the backends, upstream keep-alive, no access log), and execs the
# node, so no shell stays in the process group.
# SHOAL_BIN: the node binary (default: build/bin/shoal beside this folder).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${SHOAL_BIN:-$here/../build/bin/shoal}
d=$BENCH_DIR
mkdir -p "$d"
{
  echo "worker_processes $BENCH_WORKERS; error_log $d/error.log warn;"
  echo "events { worker_connections ${BENCH_MAXCONN:-8192}; }"
  echo "http {"
  echo "  access_log off; keepalive_timeout 300s; keepalive_requests 1000000000;"
  echo "  upstream backends {"
  for b in ${BENCH_BACKENDS//,/ }; do echo "    server $b;"; done
  echo "    keepalive 1024; keepalive_requests 1000000000; keepalive_timeout 300s;"
  echo "  }"
  echo "  server {"
  echo "    listen 127.0.0.1:$BENCH_PORT backlog=4096;"
  echo "    location / { proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
  echo "  }"
  echo "}"
} > "$d/shoal.conf"
exec "$bin" -p "$d/" -c "$d/shoal.conf"
