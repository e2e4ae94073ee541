package ctl

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

func (a *app) createCmd() *cobra.Command {
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an admin API token (other objects: apply a file)",
	}
	var role string
	var kinds []string
	var expiresIn time.Duration
	var expiresAt string
	tok := &cobra.Command{
		Use:   "token NAME --role read|write|admin [--kinds route,service] [--expires-in 720h | --expires-at RFC3339]",
		Short: "Create a scoped admin token; its secret is printed once, alone on standard output",
		Long: `create token makes a scoped admin API token (admin role needed) and prints
its secret alone on standard output, so that a script can capture it:

    export PORTICO_TOKEN=$(porticoctl create token ci --role write --kinds route --expires-in 720h)

The control plane keeps only its SHA-256; the secret is never shown again.
Revoke it with porticoctl delete token NAME.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := apiv1.TokenSpec{Name: args[0], Role: role}
			for _, k := range kinds {
				spec.Kinds = append(spec.Kinds, config.Kind(strings.TrimSuffix(strings.TrimSpace(k), "s")))
			}
			switch {
			case expiresIn > 0 && expiresAt != "":
				return fmt.Errorf("give --expires-in or --expires-at, not both")
			case expiresIn > 0:
				t := time.Now().Add(expiresIn).UTC().Truncate(time.Second)
				spec.ExpiresAt = &t
			case expiresAt != "":
				t, err := time.Parse(time.RFC3339, expiresAt)
				if err != nil {
					return fmt.Errorf("--expires-at: %w", err)
				}
				spec.ExpiresAt = &t
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			created, err := c.CreateToken(ctx, spec)
			if err != nil {
				return err
			}
			if a.format("text") == "json" {
				return writeJSON(a.io.Out, created)
			}
			fmt.Fprintf(a.io.Err, "Created token %s (role %s, revision %d). Its secret follows; it is not shown again.\n", created.Name, created.Role, created.Revision)
			fmt.Fprintln(a.io.Out, created.Secret)
			return nil
		},
	}
	tok.Flags().StringVar(&role, "role", "", "read, write or admin (required)")
	tok.Flags().StringSliceVar(&kinds, "kinds", nil, "limit a read or write token to these kinds: service, route, consumer, issuer, certificate, global")
	tok.Flags().DurationVar(&expiresIn, "expires-in", 0, "the token expires this long from now")
	tok.Flags().StringVar(&expiresAt, "expires-at", "", "the token expires at this RFC 3339 instant")
	_ = tok.MarkFlagRequired("role")
	_ = tok.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"read", "write", "admin"}, cobra.ShellCompDirectiveNoFileComp))
	_ = tok.RegisterFlagCompletionFunc("kinds", cobra.FixedCompletions([]string{"service", "route", "consumer", "issuer", "certificate", "global"}, cobra.ShellCompDirectiveNoFileComp))
	create.AddCommand(tok)
	return create
}
