#!/usr/bin/env bash
# Prints the path of a Pebble binary, building it once if needed.
#
# Pebble (Let's Encrypt's small ACME server for tests, RFC 8555) is what
# the ACME tests order certificates from: its validation authority really
# connects to the data planes' HTTP and TLS ports on loopback. Beside it,
# pebble-challtestsrv (same module) is the DNS server Pebble resolves the
# test names with (every name answers 127.0.0.1 unless a test says
# otherwise); the tests find it next to pebble. Neither is packaged by
# Debian, so both are built from the Go module proxy with `go install
# github.com/letsencrypt/pebble/v2/cmd/...@<version>`, cached outside the
# repo in a directory keyed by version; PEBBLE_BIN may point at an existing
# pebble (with pebble-challtestsrv beside it). The build runs at the lowest
# CPU priority (nice 19) so that it does not starve a test run; cold, it
# took 16 s (module download included) on the loaded 2-core machine.
set -euo pipefail

VERSION="${PEBBLE_VERSION:-v2.10.3}"
if [[ -n "${PEBBLE_BIN:-}" && -x "${PEBBLE_BIN}" && -x "$(dirname "${PEBBLE_BIN}")/pebble-challtestsrv" ]]; then
  echo "${PEBBLE_BIN}"
  exit 0
fi
CACHE="${PORTICO_CACHE:-${HOME}/.cache/portico}"
DIR="${CACHE}/pebble-${VERSION}"
if [[ -x "${DIR}/pebble" && -x "${DIR}/pebble-challtestsrv" ]]; then
  echo "${DIR}/pebble"
  exit 0
fi

mkdir -p "${CACHE}"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
cd "${WORK}"
echo "building pebble ${VERSION} into ${DIR} (one-off, under a minute)" >&2
CGO_ENABLED=0 GOBIN="${WORK}/bin" GOFLAGS=-mod=mod nice -n 19 go install -trimpath -ldflags "-s -w" \
  "github.com/letsencrypt/pebble/v2/cmd/pebble@${VERSION}" \
  "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@${VERSION}" >&2
mkdir -p "${DIR}.tmp"
mv "${WORK}/bin/pebble" "${WORK}/bin/pebble-challtestsrv" "${DIR}.tmp/"
rm -rf "${DIR}"
mv "${DIR}.tmp" "${DIR}"
echo "${DIR}/pebble"
