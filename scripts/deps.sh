#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages Shoal needs to build, test and demo, if
# any are missing. Needs root (or sudo) only when something is missing.
set -euo pipefail

PKGS=(
  cmake make gcc pkg-config clang libclang-rt-14-dev
  libuv1-dev libssl-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler
  liblmdb-dev libsodium-dev libpcre2-dev zlib1g-dev libjansson-dev libcmocka-dev
  libc-ares-dev                         # the resolver: asynchronous DNS against the configured servers
  libcrypt-dev                          # crypt(3): htpasswd files of auth_basic
  python3 curl nghttp2-client openssl iproute2 procps nftables nginx-light wrk
  python3-grpcio                        # integ_grpc: a real gRPC server and client through grpc_pass
  libsystemd-dev dpkg-dev logrotate     # sd_notify; the .deb (cpack, dpkg-shlibdeps); its logrotate file
  chromium python3-websocket            # the dashboard test drives headless Chromium (DevTools)
  prometheus                            # promtool: the metrics test runs `promtool check metrics`
)
[ "${SHOAL_DEPS_EXTRA:-}" ] && PKGS+=(${SHOAL_DEPS_EXTRA})

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "deps: run as root or install sudo (missing: ${missing[*]})" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
