#!/usr/bin/env bash
# Prints the path of a Consul agent binary, building it once if needed.
#
# Consul is not packaged by Debian, so tests use an agent built from the Go
# module proxy (v1.14.0 is the last MPL-2.0 line whose dependencies resolve
# there). The binary is cached outside the repo, keyed by version; CONSUL_BIN
# may point at an existing one.
set -euo pipefail

VERSION="${CONSUL_VERSION:-v1.14.0}"
if [[ -n "${CONSUL_BIN:-}" && -x "${CONSUL_BIN}" ]]; then
  echo "${CONSUL_BIN}"
  exit 0
fi
CACHE="${PORTICO_CACHE:-${HOME}/.cache/portico}"
BIN="${CACHE}/consul-${VERSION}"
if [[ -x "${BIN}" ]]; then
  echo "${BIN}"
  exit 0
fi

mkdir -p "${CACHE}"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
cd "${WORK}"
cat > main.go <<'GO'
package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/consul/command"
	"github.com/hashicorp/consul/command/cli"
	mcli "github.com/mitchellh/cli"
)

func main() {
	ui := &cli.BasicUI{BasicUi: mcli.BasicUi{Writer: os.Stdout, ErrorWriter: os.Stderr}}
	c := &mcli.CLI{Name: "consul", Args: os.Args[1:], Commands: command.RegisteredCommands(ui), HelpWriter: os.Stdout, ErrorWriter: os.Stderr}
	code, err := c.Run()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}
GO
cat > go.mod <<GOMOD
module portico.local/consulbuild

go 1.22

require github.com/hashicorp/consul ${VERSION}

replace launchpad.net/gocheck => github.com/go-check/check v0.0.0-20140225173054-eb6ee6f84d0a
GOMOD
echo "building consul ${VERSION} into ${BIN} (one-off, a few minutes)" >&2
export GOFLAGS=-mod=mod
go mod tidy >&2
CGO_ENABLED=0 go build -trimpath -o "${BIN}.tmp" . >&2
mv "${BIN}.tmp" "${BIN}"
echo "${BIN}"
