#!/usr/bin/env bash
# Prints the path of a Caddy binary, building it once if needed.
#
# Caddy is not packaged by Debian's stable release at a current version, so
# `make bench-load` uses one built from the Go module proxy with
# `go install github.com/caddyserver/caddy/v2/cmd/caddy@<version>` (the
# standard modules only). The binary is cached outside the repo, keyed by
# version; CADDY_BIN may point at an existing one. The build runs at the
# lowest CPU priority (nice 19) so that it does not starve a test run.
set -euo pipefail

VERSION="${CADDY_VERSION:-v2.11.9}"
if [[ -n "${CADDY_BIN:-}" && -x "${CADDY_BIN}" ]]; then
  echo "${CADDY_BIN}"
  exit 0
fi
CACHE="${PORTICO_CACHE:-${HOME}/.cache/portico}"
BIN="${CACHE}/caddy-${VERSION}"
if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi

mkdir -p "${CACHE}"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
cd "${WORK}"
echo "building caddy ${VERSION} into ${BIN} (one-off, a few minutes)" >&2
CGO_ENABLED=0 GOBIN="${WORK}/bin" nice -n 19 go install -trimpath -ldflags "-s -w" \
  "github.com/caddyserver/caddy/v2/cmd/caddy@${VERSION}" >&2
mv "${WORK}/bin/caddy" "${BIN}.tmp"
mv "${BIN}.tmp" "${BIN}"
echo "${BIN}"
