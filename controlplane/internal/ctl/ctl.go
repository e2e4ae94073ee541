// Package ctl is porticoctl, the operator's command line for a Portico
// control plane: declarative configuration (dump, validate, diff, apply)
// and day-to-day reads and writes (get, delete, purge, dataplanes,
// analytics, audit), all through the admin API and its typed Go client.
//
// The contract with scripts: exit status 0 on success, 1 on any error, and
// for diff 2 when the file and the control plane differ (as terraform plan
// -detailed-exitcode); --output json prints what the API answered.
// Errors from the control plane are its problem+json, printed with the
// failing field paths and, when they come from a file, its file and line.
package ctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/problem"
)

// Exit statuses.
const (
	ExitOK        = 0
	ExitError     = 1
	ExitDifferent = 2
)

// DefaultURL is where a control plane started by make run listens.
const DefaultURL = "http://127.0.0.1:9000"

// IO is what a run reads and writes; tests give buffers and an environment.
type IO struct {
	In     io.Reader
	Out    io.Writer
	Err    io.Writer
	Getenv func(string) (string, bool)
	// Terminal says whether Out is a terminal (colours on by default).
	Terminal bool
	Version  string
}

// Main runs porticoctl with the process's arguments and exits.
func Main(version string) {
	os.Exit(Run(context.Background(), os.Args[1:], IO{Version: version,
		In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.LookupEnv,
		Terminal: isatty.IsTerminal(os.Stdout.Fd()) || isatty.IsCygwinTerminal(os.Stdout.Fd()),
	}))
}

// Run runs porticoctl with args and returns the exit status.
func Run(ctx context.Context, args []string, io IO) int {
	a := &app{io: io}
	root := a.command()
	root.SetArgs(args)
	root.SetIn(io.In)
	root.SetOut(io.Out)
	root.SetErr(io.Err)
	err := root.ExecuteContext(ctx)
	var ex *exitStatus
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ex):
		return ex.code
	}
	a.printError(err)
	return ExitError
}

// exitStatus ends a run with a status and no message (diff's 2).
type exitStatus struct{ code int }

func (e *exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

type app struct {
	io IO
	// flags
	url, token, output, actor, color, cacert string
	timeout                                  time.Duration
	// src is the file a command sent, to point errors at lines.
	src *Source
}

func (a *app) env(name string) string {
	v, _ := a.io.Getenv(name)
	return v
}

func (a *app) command() *cobra.Command {
	root := &cobra.Command{
		Use:   "porticoctl",
		Short: "Operate a Portico control plane: declarative config, objects, data planes, traffic, audit",
		Long: `porticoctl talks to a Portico control plane's admin API.

The control plane and the token come from --url and --token, or from
PORTICO_URL and PORTICO_TOKEN (default URL ` + DefaultURL + `).
Configuration files are YAML in the shape of "porticoctl dump": a file, a
directory of files, or - for standard input, with ${ENV} references for
secrets. Exit status: 0 success, 1 error, 2 (diff) the file and the control
plane differ.`,
		Version:           firstOf(a.io.Version, "dev"),
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.url, "url", "", "control plane URL (env PORTICO_URL; default "+DefaultURL+")")
	pf.StringVar(&a.token, "token", "", "admin API token (env PORTICO_TOKEN)")
	pf.StringVar(&a.cacert, "cacert", "", "PEM file of the CA that signs an https control plane's certificate (env PORTICO_CACERT; default: the system's roots)")
	pf.StringVarP(&a.output, "output", "o", "", "output format: table, yaml or json (default: table for lists, yaml for objects)")
	pf.StringVar(&a.actor, "actor", "", "name recorded in the audit log beside the token (env PORTICO_ACTOR; default: the login name)")
	pf.StringVar(&a.color, "color", "auto", "colour output: auto (when a terminal and NO_COLOR is unset), always or never")
	pf.DurationVar(&a.timeout, "timeout", 60*time.Second, "time limit of each request to the control plane")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "yaml", "json"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("color", cobra.FixedCompletions([]string{"auto", "always", "never"}, cobra.ShellCompDirectiveNoFileComp))
	root.AddCommand(a.dumpCmd(), a.validateCmd(), a.diffCmd(), a.applyCmd(),
		a.getCmd(), a.createCmd(), a.deleteCmd(), a.purgeCmd(),
		a.dataplanesCmd(), a.analyticsCmd(), a.auditCmd(), a.whoamiCmd())
	return root
}

// client returns the admin API client the flags and environment name.
func (a *app) client() (*client.Client, error) {
	u := firstOf(a.url, a.env("PORTICO_URL"), DefaultURL)
	tok := firstOf(a.token, a.env("PORTICO_TOKEN"))
	actor := firstOf(a.actor, a.env("PORTICO_ACTOR"))
	if actor == "" {
		if me, err := user.Current(); err == nil {
			actor = me.Username
		}
	}
	opts := []client.Option{client.WithActor(actor)}
	if ca := firstOf(a.cacert, a.env("PORTICO_CACERT")); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", ca)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		opts = append(opts, client.WithHTTPClient(&http.Client{Transport: tr}))
	}
	return client.New(u, tok, opts...)
}

func (a *app) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), a.timeout)
}

func (a *app) colored() bool {
	switch a.color {
	case "always":
		return true
	case "never":
		return false
	}
	_, noColor := a.io.Getenv("NO_COLOR")
	return a.io.Terminal && !noColor
}

func firstOf(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// printError writes an error as an operator wants to read it: the
// problem's detail, then every failing field with the file and line it
// came from when the request carried a file.
func (a *app) printError(err error) {
	w := a.io.Err
	var p *problem.Problem
	var fe *errFile
	switch {
	case errors.As(err, &fe):
		fmt.Fprintf(w, "error: %s\n", fe.msg)
	case errors.As(err, &p):
		msg := firstOf(p.Detail, p.Title)
		fmt.Fprintf(w, "error: %s (HTTP %d %s)\n", msg, p.Status, slug(p.Type))
		a.printFields(p.Errors)
		switch p.Status {
		case 401:
			fmt.Fprintln(w, "hint: set PORTICO_TOKEN (or --token) to a valid admin API token")
		case 403:
			fmt.Fprintln(w, "hint: the token's role or kinds do not allow this; porticoctl whoami shows them")
		}
	default:
		if fields := config.FieldErrors(err); len(fields) > 0 {
			what := "is not valid"
			switch {
			case errors.Is(err, config.ErrMalformed):
				what = "cannot be decoded"
			case errors.Is(err, config.ErrConflict):
				what = "is not consistent"
			}
			fmt.Fprintf(w, "error: the configuration %s (%d field(s), the control plane would refuse it too):\n", what, len(fields))
			a.printFields(fields)
			return
		}
		fmt.Fprintf(w, "error: %v\n", err)
	}
}

func (a *app) printFields(fields []config.FieldError) {
	for _, f := range fields {
		if a.src != nil && f.Field != "" {
			if pos, ok := a.src.Where(f.Field); ok {
				fmt.Fprintf(a.io.Err, "  %s: %s: %s\n", pos, f.Field, f.Message)
				continue
			}
		}
		fmt.Fprintf(a.io.Err, "  %s\n", f.Error())
	}
}

func slug(typ string) string {
	if i := strings.LastIndexByte(typ, ':'); i >= 0 {
		return typ[i+1:]
	}
	return typ
}
