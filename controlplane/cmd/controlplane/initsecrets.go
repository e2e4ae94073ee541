package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/portico-gw/portico/shared/envflag"
	"github.com/portico-gw/portico/shared/secretfile"
)

// initSecrets is "controlplane init-secrets": the compose stack's first-start
// step (docker-compose.yml, service secrets-init), in the control plane's
// image because that image is there already and has no shell to script it
// in. It makes each secret named on the command line a file of --dir,
// as shared/secretfile describes, e.g.
//
//	controlplane init-secrets --dir /secrets --owner 65532:65532 \
//	  admin-token:env=PORTICO_ADMIN_TOKEN:show dataplane-token:env=PORTICO_DATAPLANE_TOKEN \
//	  demo-api-key:env=PORTICO_DEMO_API_KEY:apikey:show grafana-admin-password:owner=472:0
func initSecrets(args []string) error {
	fs := envflag.New("controlplane init-secrets")
	dir := fs.String("dir", "PORTICO_SECRETS_DIR", "", "directory of the secret files (a volume)")
	owner := fs.String("owner", "PORTICO_SECRETS_OWNER", "", "UID:GID owning each file unless its spec says owner=; empty: the user running this")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: controlplane init-secrets --dir DIR [--owner UID:GID] NAME[:env=VAR][:apikey][:show][:owner=UID:GID]...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() == 0 {
		return errors.New("init-secrets: --dir and at least one secret are required")
	}
	specs := make([]secretfile.Spec, 0, fs.NArg())
	for _, a := range fs.Args() {
		sp, err := secretfile.ParseSpec(a, *owner)
		if err != nil {
			return fmt.Errorf("init-secrets: %w", err)
		}
		specs = append(specs, sp)
	}
	if err := secretfile.Ensure(*dir, specs, os.Getenv, os.Stdout); err != nil {
		return fmt.Errorf("init-secrets: %w", err)
	}
	return nil
}
