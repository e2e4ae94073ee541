#!/usr/bin/env bash
# Makes sure Debian's python3-spyne (a SOAP server framework) and
# python3-zeep (a SOAP client) are installed: the SOAP tests start a real
# spyne service (dataplane/internal/soap/soaptest) on a loopback port and
# call it through the data plane. They run under /usr/bin/python3, which
# sees Debian's packages whatever python3 comes first in PATH.
set -euo pipefail
have() { /usr/bin/python3 -c 'import spyne, zeep' >/dev/null 2>&1; }
have && exit 0
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
echo "installing python3-spyne and python3-zeep (Debian packages) for the SOAP tests" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-spyne python3-zeep >/dev/null
have
