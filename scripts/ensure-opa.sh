#!/usr/bin/env bash
# Prints the path of an Open Policy Agent binary (`opa`), building it once if
# needed.
#
# OPA is not packaged by Debian and its Envoy plugin (opa-envoy-plugin) is not
# served by the Go module proxy, so the external-authorization tests use:
#   - OPA's own server, built here from the module proxy (v1.22.4), as the
#     HTTP (forward-auth) decision service: its server authorization policy
#     (--authorization=basic, data.system.authz) is real Rego deciding on the
#     method, path and headers of each request it receives;
#   - OPA's Rego engine behind Envoy's ext_authz gRPC API
#     (scripts/ensure-opa-extauthz.sh), for the gRPC mode.
# The binary is cached outside the repo, keyed by version; OPA_BIN may point
# at an existing one. A cold build takes several minutes on two busy cores.
set -euo pipefail

VERSION="${OPA_VERSION:-v1.22.4}"
if [[ -n "${OPA_BIN:-}" && -x "${OPA_BIN}" ]]; then
  echo "${OPA_BIN}"
  exit 0
fi
CACHE="${PORTICO_CACHE:-${HOME}/.cache/portico}"
BIN="${CACHE}/opa-${VERSION}"
if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi

mkdir -p "${CACHE}"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
echo "building opa ${VERSION} into ${BIN} (one-off, several minutes)" >&2
# go install of the module's main package at a version: no replace
# directives, the module's own go.sum.
GOWORK=off GOFLAGS=-trimpath CGO_ENABLED=0 GOBIN="${WORK}" \
  nice -n 19 go install "github.com/open-policy-agent/opa@${VERSION}" >&2
mv "${WORK}/opa" "${BIN}"
echo "${BIN}"
