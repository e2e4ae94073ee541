#!/usr/bin/env bash
# Prints the path of an ORY Hydra binary, building it once if needed.
#
# Hydra (a certified OAuth2 / OpenID Connect server) is what the OAuth2
# introspection and OIDC login tests run against: started with an in-memory
# database (DSN=memory), driven through its admin API. It is not packaged by
# Debian. Its go.mod has replace directives (a pop fork, its own client), which
# `go install ...@version` and `go get -tool` ignore, so the module source is
# fetched from the Go module proxy (go mod download), copied out of the
# read-only module cache and built inside it, which honours them. The sqlite
# tags are what DSN=memory needs (cgo, mattn/go-sqlite3). The binary is cached
# outside the repo, keyed by version; HYDRA_BIN may point at an existing one.
# The build runs at the lowest CPU priority (nice 19); it is heavy (see
# docs/TESTING.md for its cold time), so build it cold under the shared CPU lock:
#   flock /tmp/portico-heavy.lock scripts/ensure-hydra.sh
# (the script itself takes only a lock of its own, so that two callers build it
# once and a caller that already holds the CPU lock, make test, cannot deadlock).
set -euo pipefail

VERSION="${HYDRA_VERSION:-v2.3.0}"
if [[ -n "${HYDRA_BIN:-}" && -x "${HYDRA_BIN}" ]]; then
  echo "${HYDRA_BIN}"
  exit 0
fi
CACHE="${PORTICO_CACHE:-${HOME}/.cache/portico}"
BIN="${CACHE}/hydra-${VERSION}"
if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi

mkdir -p "${CACHE}"
# One build at a time; whoever waited finds the binary built by the first.
exec 9>"${CACHE}/.hydra-${VERSION}.lock"
flock 9
if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi
WORK="$(mktemp -d)"
trap 'chmod -R u+w "${WORK}" 2>/dev/null; rm -rf "${WORK}"' EXIT
cd "${WORK}"
echo "building hydra ${VERSION} into ${BIN} (one-off, about 6 minutes on two cores)" >&2
SRC="$(GOFLAGS=-mod=mod go mod download -json "github.com/ory/hydra/v2@${VERSION}" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -n "${SRC}" && -f "${SRC}/go.mod" ]] || { echo "go mod download gave no source for hydra ${VERSION}" >&2; exit 1; }
cp -R "${SRC}" src
chmod -R u+w src
cd src
# Its own API client is a nested module (internal/httpclient) that the
# module zip leaves out: take the published one instead.
go mod edit -dropreplace github.com/ory/hydra-client-go/v2
CGO_ENABLED=1 GOFLAGS=-mod=mod nice -n 19 go build -trimpath -tags sqlite,sqlite_omit_load_extension \
  -ldflags "-s -w -X github.com/ory/hydra/v2/driver/config.Version=${VERSION}" \
  -o "${BIN}.tmp" . >&2
mv "${BIN}.tmp" "${BIN}"
echo "${BIN}"
