#!/usr/bin/env bash
# Prints the path of a Traefik binary, building it once if needed.
#
# Traefik is not packaged by Debian, and its go.mod has replace directives, so
# `go install ...@version` refuses it: the module source is fetched from the
# Go module proxy (go mod download), copied out of the read-only module cache
# and built with `go build ./cmd/traefik` inside it, which honours the
# replaces. The web UI is not built (the module ships only its placeholder);
# the benchmark does not use it. Used by `make bench-load`; the binary is
# cached outside the repo, keyed by version; TRAEFIK_BIN may point at an
# existing one. The build runs at the lowest CPU priority (nice 19): on two
# cores it takes several minutes and must not starve a test run.
set -euo pipefail

VERSION="${TRAEFIK_VERSION:-v3.6.12}"
if [[ -n "${TRAEFIK_BIN:-}" && -x "${TRAEFIK_BIN}" ]]; then
  echo "${TRAEFIK_BIN}"
  exit 0
fi
CACHE="${PORTICO_CACHE:-${HOME}/.cache/portico}"
BIN="${CACHE}/traefik-${VERSION}"
if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi

mkdir -p "${CACHE}"
WORK="$(mktemp -d)"
trap 'chmod -R u+w "${WORK}" 2>/dev/null; rm -rf "${WORK}"' EXIT
cd "${WORK}"
echo "building traefik ${VERSION} into ${BIN} (one-off, several minutes)" >&2
# go mod download needs no module of its own; -json tells where the source is.
SRC="$(GOFLAGS=-mod=mod go mod download -json "github.com/traefik/traefik/v3@${VERSION}" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -n "${SRC}" && -f "${SRC}/go.mod" ]] || { echo "go mod download gave no source for traefik ${VERSION}" >&2; exit 1; }
cp -R "${SRC}" src
chmod -R u+w src
cd src
CGO_ENABLED=0 nice -n 19 go build -trimpath \
  -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=${VERSION}" \
  -o "${BIN}.tmp" ./cmd/traefik >&2
mv "${BIN}.tmp" "${BIN}"
echo "${BIN}"
