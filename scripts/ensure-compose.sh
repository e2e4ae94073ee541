#!/usr/bin/env bash
# Prints the path of a Docker Compose binary (v2 CLI, "docker-compose"),
# building it once if needed.
#
# The compose file test runs the real `docker-compose config` on
# docker-compose.yml: Compose's own parser, interpolation and checks, not
# a library that could disagree with it. No Docker engine is needed for
# `config`. Release binaries cannot be downloaded here, and the module's
# go.mod has an exclude block (so `go install ...@version` refuses it, as it
# refuses replace directives): the module source is taken from the Go module
# proxy (go mod download), copied out of the read-only module cache and
# built inside it with its own go.mod.
# The binary is cached outside the repo, keyed by version; COMPOSE_BIN may
# point at an existing one.
set -euo pipefail

VERSION="${COMPOSE_VERSION:-v5.6.0}"
if [[ -n "${COMPOSE_BIN:-}" && -x "${COMPOSE_BIN}" ]]; then
  echo "${COMPOSE_BIN}"
  exit 0
fi
CACHE="${PORTICO_CACHE:-${HOME}/.cache/portico}"
BIN="${CACHE}/docker-compose-${VERSION}"
if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi

mkdir -p "${CACHE}"
WORK="$(mktemp -d)"
trap 'chmod -R u+w "${WORK}" 2>/dev/null; rm -rf "${WORK}" "${BIN}.tmp.$$"' EXIT
echo "building docker-compose ${VERSION} into ${BIN} (one-off, several minutes)" >&2
export GOWORK=off GOFLAGS=-mod=mod
cd "${WORK}"
DIR="$(go mod download -json "github.com/docker/compose/v5@${VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "${DIR}" || ! -f "${DIR}/go.mod" ]]; then
  echo "go mod download github.com/docker/compose/v5@${VERSION} gave no source directory" >&2
  exit 1
fi
cp -r "${DIR}" "${WORK}/src"
chmod -R u+w "${WORK}/src"
cd "${WORK}/src"
# Built under a per-run name and moved into place, so that two builds racing
# never leave a half-written binary behind.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=${VERSION}" -o "${BIN}.tmp.$$" ./cmd >&2
mv "${BIN}.tmp.$$" "${BIN}"
echo "${BIN}"
