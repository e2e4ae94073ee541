#!/usr/bin/env bash
# Makes sure haproxy (the Debian package, 2.6 on Debian 12) is installed: the
# twin tests and `make cluster` put a real HAProxy in front of the data
# planes, started on their own ports with their own configuration.
set -euo pipefail
# Debian installs it in /usr/sbin, which is not on every user's PATH.
have() { command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]]; }
have && exit 0
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
echo "installing haproxy (Debian package) for the twin tests and make cluster" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq haproxy >/dev/null
# The package starts a system-wide haproxy with /etc/haproxy/haproxy.cfg;
# nothing here uses it, and it would hold ports for no reason.
$SUDO systemctl disable --now haproxy >/dev/null 2>&1 || true
have
