#!/usr/bin/env bash
# Installs the Debian packages the build, tests and demo need, if missing.
# Usage: scripts/deps.sh [bench|lint|script-cost|fuzz]   (bench: the
# OpenResty peer's packages; lint: cppcheck; script-cost: valgrind; fuzz:
# clang and its libFuzzer)
set -euo pipefail
pkgs="gcc make nginx nginx-dev libhiredis-dev libjansson-dev libpcre2-dev
      libssl-dev zlib1g-dev redis-server perl curl"
if [ "${1:-}" = lint ]; then
    pkgs="$pkgs cppcheck"
fi
if [ "${1:-}" = fuzz ]; then
    pkgs="$pkgs clang libclang-rt-14-dev"
fi
if [ "${1:-}" = script-cost ]; then
    pkgs="$pkgs valgrind python3"
fi
if [ "${1:-}" = bench ]; then
    pkgs="$pkgs wrk bc python3 libnginx-mod-http-lua lua-nginx-redis
          lua-nginx-string"
fi
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $missing >/dev/null
# Debian starts these services on install; the project runs its own.
$SUDO systemctl disable --now nginx redis-server >/dev/null 2>&1 || true
