#!/usr/bin/env bash
# Prints the path of opa-extauthz (scripts/opa-extauthz: OPA's Rego engine,
# v1.22.4, behind Envoy's ext_authz v3 gRPC API), building it once if
# needed. The external-authorization tests use it as the gRPC decision
# service (see scripts/ensure-opa.sh for why not opa-envoy-plugin).
#
# Cached outside the repo, keyed by a hash of its source (a change rebuilds
# it); OPA_EXTAUTHZ_BIN may point at an existing one. Cold: a few minutes
# on two busy cores (OPA's packages; seconds when ensure-opa.sh already
# built them into the Go build cache).
set -euo pipefail

if [[ -n "${OPA_EXTAUTHZ_BIN:-}" && -x "${OPA_EXTAUTHZ_BIN}" ]]; then
  echo "${OPA_EXTAUTHZ_BIN}"
  exit 0
fi
SRC="$(cd "$(dirname "$0")/opa-extauthz" && pwd)"
SUM="$(cat "${SRC}/go.mod" "${SRC}/go.sum" "${SRC}/main.go" | sha256sum | cut -c1-12)"
CACHE="${PORTICO_CACHE:-${HOME}/.cache/portico}"
BIN="${CACHE}/opa-extauthz-${SUM}"
if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi
mkdir -p "${CACHE}"
echo "building opa-extauthz into ${BIN} (one-off)" >&2
cd "${SRC}"
GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 nice -n 19 go build -trimpath -o "${BIN}.tmp" . >&2
mv "${BIN}.tmp" "${BIN}"
echo "${BIN}"
