#!/usr/bin/env bash
# Prints the path of a Helm binary (v4), building it once if needed.
#
# The chart test (deployments/helm/test) runs the real `helm lint` and
# `helm template` on deployments/helm/portico: Helm's own template engine,
# value coercion and chart checks, not a copy that could disagree with it.
# No cluster is needed for either. Release binaries cannot be downloaded
# here; the module has no replace or exclude directive, so `go install`
# builds it from the Go module proxy. The binary is cached outside the repo,
# keyed by version; HELM_BIN may point at an existing one.
set -euo pipefail

VERSION="${HELM_VERSION:-v4.3.2}"
if [[ -n "${HELM_BIN:-}" && -x "${HELM_BIN}" ]]; then
  echo "${HELM_BIN}"
  exit 0
fi
CACHE="${PORTICO_CACHE:-${HOME}/.cache/portico}"
BIN="${CACHE}/helm-${VERSION}"
if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi

mkdir -p "${CACHE}"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}" "${BIN}.tmp.$$"' EXIT
echo "building helm ${VERSION} into ${BIN} (one-off, several minutes)" >&2
# Outside any workspace or module, so only Helm's own go.mod decides.
cd "${WORK}"
GOWORK=off GOFLAGS=-mod=mod GOBIN="${WORK}/bin" CGO_ENABLED=0 go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${VERSION}" \
  "helm.sh/helm/v4/cmd/helm@${VERSION}" >&2
# Moved into place under a per-run name, so that two builds racing never
# leave a half-written binary behind.
cp "${WORK}/bin/helm" "${BIN}.tmp.$$"
mv "${BIN}.tmp.$$" "${BIN}"
echo "${BIN}"
