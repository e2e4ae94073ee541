#!/usr/bin/env bash
# Prints the path of a Jaeger binary, building it once if needed.
#
# Tracing tests export spans to a real Jaeger (the v2 all-in-one, built on
# the OpenTelemetry collector) and read them back through its query API.
# Jaeger's release binaries cannot be downloaded here, so it is built from the
# Go module proxy. The binary is cached outside the repo, keyed by version;
# JAEGER_BIN may point at an existing one.
set -euo pipefail

VERSION="${JAEGER_VERSION:-v1.76.0}"
if [[ -n "${JAEGER_BIN:-}" && -x "${JAEGER_BIN}" ]]; then
  echo "${JAEGER_BIN}"
  exit 0
fi
CACHE="${PORTICO_CACHE:-${HOME}/.cache/portico}"
BIN="${CACHE}/jaeger-${VERSION}"
if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi

mkdir -p "${CACHE}"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}" "${BIN}.tmp.$$"' EXIT
cd "${WORK}"
echo "building jaeger ${VERSION} into ${BIN} (one-off, several minutes)" >&2
# A throwaway module, so that Jaeger's large dependency graph never touches
# the project's go.mod files; the tool directive pins the whole graph.
export GOFLAGS=-mod=mod GOWORK=off
go mod init portico.local/jaegerbuild >/dev/null 2>&1
go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@${VERSION}" >&2
# Built under a per-run name and moved into place, so that two builds racing
# (parallel CI jobs, two shells) never leave a half-written binary behind.
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "${BIN}.tmp.$$" github.com/jaegertracing/jaeger/cmd/jaeger >&2
mv "${BIN}.tmp.$$" "${BIN}"
echo "${BIN}"
