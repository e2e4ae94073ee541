package ctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
)

// outputOnly are members the control plane computes on output and ignores
// on input; dump leaves them out of the file, and the diff out of its
// comparison.
var outputOnly = map[string]bool{"version": true, "revision": true, "created_at": true, "updated_at": true, "precedence": true}

func (a *app) dumpCmd() *cobra.Command {
	var showSecrets, withMeta bool
	var file string
	cmd := &cobra.Command{
		Use:   "dump",
		Short: "Write the control plane's configuration as YAML (or -o json), secrets as ${ENV} references",
		Long: `dump writes the whole configuration in the shape validate, diff and apply read.

Secrets the control plane returns (an HMAC issuer's keys, for instance) are
written as ${PORTICO_SECRET_...} references, named on standard error; apply
reads them back from the environment. --show-secrets writes the values.
TLS private keys and passwords are never returned by the control plane: a
file applied without them keeps the stored ones.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			raw, _, err := c.GetRaw(ctx, "/v1/config", nil)
			if err != nil {
				return err
			}
			exp, err := jsonToNode(raw)
			if err != nil {
				return fmt.Errorf("decode the export: %w", err)
			}
			cfg := get(exp, "config")
			if cfg == nil {
				return fmt.Errorf("the export has no config")
			}
			if !withMeta {
				stripOutputOnly(cfg)
			}
			dropEmpty(cfg)
			if !showSecrets {
				if vars := redact(cfg); len(vars) > 0 {
					fmt.Fprintf(a.io.Err, "dump: %d secret(s) written as ${ENV} references (set them before apply, or dump --show-secrets):\n", len(vars))
					for _, v := range vars {
						fmt.Fprintf(a.io.Err, "  %s\n", v)
					}
				}
			}
			var out []byte
			header := ""
			switch f := a.format("yaml"); f {
			case "json":
				out, err = encodeJSON(cfg)
			case "yaml":
				header = "# porticoctl dump: revision " + get(exp, "revision").Value + "\n"
				out, err = encodeYAML(cfg)
			default:
				err = fmt.Errorf("--output %q: dump writes yaml or json", f)
			}
			if err != nil {
				return err
			}
			if file != "" {
				return os.WriteFile(file, append([]byte(header), out...), 0o600)
			}
			_, err = a.io.Out.Write(append([]byte(header), out...))
			return err
		},
	}
	cmd.Flags().BoolVar(&showSecrets, "show-secrets", false, "write secrets in clear instead of ${ENV} references")
	cmd.Flags().BoolVar(&withMeta, "with-meta", false, "keep versions, revisions and timestamps")
	cmd.Flags().StringVarP(&file, "file", "f", "", "write to this file (mode 0600) instead of standard output")
	return cmd
}

func stripOutputOnly(cfg *yaml.Node) {
	for _, kind := range collections {
		for _, obj := range items(get(cfg, kind)) {
			drop(obj, func(k string, _ *yaml.Node) bool { return outputOnly[k] || kind == "certificates" && k == "status" })
		}
	}
}

// dropEmpty leaves out empty collections and sections, so a dump of a
// small configuration is as small.
func dropEmpty(cfg *yaml.Node) {
	drop(cfg, func(_ string, v *yaml.Node) bool {
		return (v.Kind == yaml.SequenceNode || v.Kind == yaml.MappingNode) && len(v.Content) == 0
	})
}

// fileFlag adds -f and returns where it lands.
func fileFlag(cmd *cobra.Command) *string {
	var f string
	cmd.Flags().StringVarP(&f, "file", "f", "", "configuration file, directory of YAML files, or - for standard input (required)")
	_ = cmd.MarkFlagRequired("file")
	_ = cmd.MarkFlagFilename("file", "yaml", "yml", "json")
	return &f
}

// load reads -f and checks it as the control plane would.
func (a *app) load(path string) (*config.Config, error) {
	src, err := Load(path, a.io.In, a.io.Getenv)
	if err != nil {
		return nil, err
	}
	a.src = src
	return src.Check()
}

// loadForServer reads -f for diff and apply: decoded strictly, and
// validated by the control plane's dry run, which knows what a file cannot
// (the stored keys of certificates a dump leaves out, ACME state); its
// field errors are mapped back to the file's lines like validate's.
func (a *app) loadForServer(path string) (*config.Config, error) {
	src, err := Load(path, a.io.In, a.io.Getenv)
	if err != nil {
		return nil, err
	}
	a.src = src
	return src.Decode()
}

func (a *app) validateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validate -f FILE",
		Short: "Check a configuration file offline with the control plane's own validation",
		Long: `validate decodes and validates the file exactly as PUT /v1/config does
(shared/config: strict decoding, Normalize, Validate), without a control
plane, and reports every failing field with its file and line.`,
		Args: cobra.NoArgs,
	}
	file := fileFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := a.load(*file)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.io.Out, "%s: valid (%s)\n", *file, counts(cfg))
		return nil
	}
	return cmd
}

func counts(cfg *config.Config) string {
	return fmt.Sprintf("%d services, %d routes, %d consumers, %d issuers, %d certificates",
		len(cfg.Services), len(cfg.Routes), len(cfg.Consumers), len(cfg.Issuers), len(cfg.Certificates))
}

// plan is what diff and apply show: the control plane's own dry run of the
// import (which objects change, and which fields), with the values of
// both sides taken from the export and the file.
type plan struct {
	Revision int64             `json:"revision"`
	Changes  []apiv1.DiffEntry `json:"changes"`
	Summary  map[string]int    `json:"summary"`
	current  *yaml.Node        // the export's config
	desired  *yaml.Node        // the file, normalised
}

func (a *app) plan(cmd *cobra.Command, c *client.Client, cfg *config.Config) (*plan, error) {
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	raw, _, err := c.GetRaw(ctx, "/v1/config", nil)
	if err != nil {
		return nil, err
	}
	exp, err := jsonToNode(raw)
	if err != nil {
		return nil, fmt.Errorf("decode the export: %w", err)
	}
	rev, err := strconv.ParseInt(get(exp, "revision").Value, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("decode the export's revision: %w", err)
	}
	res, err := c.ImportConfig(ctx, cfg, true, client.IfMatch(rev))
	if client.StatusOf(err) == http.StatusPreconditionFailed {
		return nil, errors.New("the configuration changed while it was being compared; run again")
	}
	if err != nil {
		return nil, err
	}
	norm := cfg.Clone()
	norm.Normalize()
	b, err := json.Marshal(norm)
	if err != nil {
		return nil, err
	}
	desired, err := jsonToNode(b)
	if err != nil {
		return nil, err
	}
	current := get(exp, "config")
	stripOutputOnly(current)
	stripOutputOnly(desired)
	return &plan{Revision: res.Revision, Changes: res.Changes, Summary: res.Summary, current: current, desired: desired}, nil
}

func (a *app) diffCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diff -f FILE",
		Short: "Show what apply would change, object by object; exit 0 when equal, 2 when different",
		Args:  cobra.NoArgs,
	}
	file := fileFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := a.loadForServer(*file)
		if err != nil {
			return err
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		p, err := a.plan(cmd, c, cfg)
		if err != nil {
			return err
		}
		if a.format("text") == "json" {
			if err := writeJSON(a.io.Out, p); err != nil {
				return err
			}
		} else if err := a.writePlan(p); err != nil {
			return err
		}
		if len(p.Changes) > 0 {
			return &exitStatus{ExitDifferent}
		}
		return nil
	}
	return cmd
}

func (a *app) applyCmd() *cobra.Command {
	var force bool
	var at int64
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Make the control plane's configuration what the file says, in one revision",
		Long: `apply shows the plan (as diff does) and sends the file as one import
(PUT /v1/config): every change lands in one revision, or none does.

The import is conditional on the revision the plan was made against, so a
change made by someone else in between is refused rather than overwritten.
--revision N refuses unless the control plane is still at revision N (the
revision a reviewed diff showed); --force applies whatever happened since.`,
		Args: cobra.NoArgs,
	}
	file := fileFlag(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "apply even if the control plane moved since the diff")
	cmd.Flags().Int64Var(&at, "revision", 0, "apply only if the control plane is at this revision (from a diff); 0: the revision of apply's own plan")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := a.loadForServer(*file)
		if err != nil {
			return err
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		p, err := a.plan(cmd, c, cfg)
		if err != nil {
			return err
		}
		if at != 0 && p.Revision != at && !force {
			return fmt.Errorf("the control plane moved since the diff: it is at revision %d, not %d; run diff again and review, or apply --force", p.Revision, at)
		}
		jsonOut := a.format("text") == "json"
		if !jsonOut {
			if err := a.writePlan(p); err != nil {
				return err
			}
		}
		if len(p.Changes) == 0 {
			if jsonOut {
				return writeJSON(a.io.Out, p)
			}
			return nil
		}
		var opts []client.WriteOption
		if !force {
			opts = append(opts, client.IfMatch(p.Revision))
		}
		ctx, cancel := a.ctx(cmd)
		defer cancel()
		res, err := c.ImportConfig(ctx, cfg, false, opts...)
		if client.StatusOf(err) == http.StatusPreconditionFailed {
			return fmt.Errorf("the control plane moved since the diff (revision %d); nothing was applied: run diff again and review, or apply --force", p.Revision)
		}
		if err != nil {
			return err
		}
		if jsonOut {
			return writeJSON(a.io.Out, res)
		}
		fmt.Fprintf(a.io.Out, "Applied: revision %d (%s).\n", res.Revision, summary(res.Summary))
		return nil
	}
	return cmd
}

func summary(s map[string]int) string {
	return fmt.Sprintf("%d created, %d updated, %d deleted", s["create"], s["update"], s["delete"])
}

// writePlan renders a plan: one block per object, + created, - deleted,
// ~ updated with the old and new value of each changed field.
func (a *app) writePlan(p *plan) error {
	var b bytes.Buffer
	col := colors(a.colored())
	for _, ch := range p.Changes {
		kindKey, name := string(ch.Kind)+"s", ch.Name
		switch ch.Op {
		case "create":
			fmt.Fprintf(&b, "%s+ %s %s%s\n", col.green, ch.Kind, name, col.reset)
			y, err := encodeYAML(findObject(p.desired, kindKey, name, ch.Kind))
			if err != nil {
				return err
			}
			writeLines(&b, col.green, "+     ", y, col.reset)
		case "delete":
			fmt.Fprintf(&b, "%s- %s %s%s\n", col.red, ch.Kind, name, col.reset)
		default:
			fmt.Fprintf(&b, "%s~ %s %s%s\n", col.yellow, ch.Kind, name, col.reset)
			cur := findObject(p.current, kindKey, name, ch.Kind)
			want := findObject(p.desired, kindKey, name, ch.Kind)
			for _, f := range ch.Fields {
				if err := fieldDiff(&b, col, f, cur, want); err != nil {
					return err
				}
			}
		}
	}
	if len(p.Changes) == 0 {
		fmt.Fprintf(&b, "No changes: the control plane matches the file (revision %d).\n", p.Revision)
	} else {
		fmt.Fprintf(&b, "\nPlan: %d to create, %d to update, %d to delete (against revision %d).\n",
			p.Summary["create"], p.Summary["update"], p.Summary["delete"], p.Revision)
	}
	_, err := a.io.Out.Write(b.Bytes())
	return err
}

// fieldDiff writes one changed field: its old value, then its new one.
func fieldDiff(b *bytes.Buffer, col palette, field string, cur, want *yaml.Node) error {
	for _, side := range []struct {
		obj    *yaml.Node
		color  string
		prefix string
	}{{cur, col.red, "-     "}, {want, col.green, "+     "}} {
		v := get(side.obj, field)
		if v == nil {
			continue
		}
		y, err := encodeYAML(mapping(strNode(field), v))
		if err != nil {
			return err
		}
		writeLines(b, side.color, side.prefix, y, col.reset)
	}
	return nil
}

func writeLines(b *bytes.Buffer, color, prefix string, text []byte, reset string) {
	for _, line := range bytes.Split(bytes.TrimRight(text, "\n"), []byte("\n")) {
		fmt.Fprintf(b, "%s%s%s%s\n", color, prefix, line, reset)
	}
}

// findObject returns the named object of a kind ("global" is the global
// section), or an empty mapping.
func findObject(cfg *yaml.Node, kindKey, name string, kind config.Kind) *yaml.Node {
	var n *yaml.Node
	if kind == "global" {
		n = get(cfg, "global")
	} else {
		n = byName(get(cfg, kindKey), name)
	}
	if n == nil {
		return mapping()
	}
	return n
}

type palette struct{ red, green, yellow, bold, reset string }

func colors(on bool) palette {
	if !on {
		return palette{}
	}
	return palette{red: "\x1b[31m", green: "\x1b[32m", yellow: "\x1b[33m", bold: "\x1b[1m", reset: "\x1b[0m"}
}
