#!/usr/bin/env bash
# Makes sure redis-server (the Debian package) is installed: the rate-limit
# tests run against a real Redis, started by the tests on free ports.
set -euo pipefail
command -v redis-server >/dev/null && exit 0
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
echo "installing redis-server (Debian package) for the tests" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
# The package starts a system-wide server on 6379; the tests do not use it.
$SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
command -v redis-server >/dev/null
