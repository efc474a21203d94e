#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# proxy-bench.sh candidate for Shoal: reads the BENCH_* variables, writes a
# Shoal configuration equivalent to the one proxy-bench gives nginx (round
# robin over the backends, upstream keep-alive, no access log; HTTP/1.1, h2c and
# h2/HTTP/1.1 over TLS listeners), and execs the
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
  # h2c with prior knowledge, and TLS with ALPN h2 + http/1.1 and, as the
  # bench requires of every candidate, no session resumption
  [ -n "${BENCH_H2C_PORT:-}" ] && echo "    listen 127.0.0.1:$BENCH_H2C_PORT http2 backlog=4096;"
  if [ -n "${BENCH_TLS_PORT:-}" ] && [ -n "${BENCH_CERT:-}" ]; then
    echo "    listen 127.0.0.1:$BENCH_TLS_PORT ssl http2 backlog=4096;"
    echo "    ssl_certificate $BENCH_CERT; ssl_certificate_key $BENCH_KEY; ssl_protocols TLSv1.2 TLSv1.3;"
    echo "    ssl_session_cache off; ssl_session_tickets off;"
  fi
  echo "    location / { proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
  echo "  }"
  echo "}"
} > "$d/shoal.conf"
exec "$bin" -p "$d/" -c "$d/shoal.conf"
