// Command porticoctl operates a Portico control plane from the command line:
// declarative configuration (dump, validate, diff, apply), objects, data
// planes, traffic and the audit log. See docs/CLI.md.
package main

import "github.com/portico-gw/portico/controlplane/internal/ctl"

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { ctl.Main(version) }
