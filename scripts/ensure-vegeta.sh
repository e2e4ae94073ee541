#!/usr/bin/env bash
# Prints the path of a vegeta binary, building it once if needed.
#
# vegeta (github.com/tsenart/vegeta) is an open-loop load generator: it sends
# requests at a fixed rate whatever the answers' latency, so that a slow
# answer does not hold back the next request (wrk's closed loop does, and so
# hides tail latency: "coordinated omission"). `make bench-load`'s rate
# scenario uses it to measure p99 at a fixed share of saturation. Built from
# the Go module proxy once (about 20 s) and cached outside the repo, keyed by
# version; VEGETA_BIN may point at an existing one.
set -euo pipefail

VERSION="${VEGETA_VERSION:-v12.13.0}"
if [[ -n "${VEGETA_BIN:-}" && -x "${VEGETA_BIN}" ]]; then
  echo "${VEGETA_BIN}"
  exit 0
fi
CACHE="${PORTICO_CACHE:-${HOME}/.cache/portico}"
BIN="${CACHE}/vegeta-${VERSION}"
if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi

mkdir -p "${CACHE}"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
cd "${WORK}"
echo "building vegeta ${VERSION} into ${BIN} (one-off, about 20 s)" >&2
CGO_ENABLED=0 GOBIN="${WORK}/bin" nice -n 19 go install -trimpath -ldflags "-s -w" \
  "github.com/tsenart/vegeta/v12@${VERSION}" >&2
mv "${WORK}/bin/vegeta" "${BIN}.tmp"
mv "${BIN}.tmp" "${BIN}"
echo "${BIN}"
