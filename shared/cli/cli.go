// Package cli holds what every Portico binary does the same way at startup:
// exit codes and a JSON slog logger at a chosen level.
package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/portico-gw/portico/shared/telemetry"
)

// Main runs run with the command-line arguments and exits 1, printing the
// error, if it fails. "<binary> probe <url>" is handled here for every
// binary: container images have no shell or curl, so health checks call the
// binary itself.
func Main(name string, run func(args []string) error) {
	if len(os.Args) == 3 && os.Args[1] == "probe" {
		if err := Probe(os.Args[2]); err != nil {
			fmt.Fprintf(os.Stderr, "%s probe: %v\n", name, err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// NewLogger returns a JSON logger on stderr at level ("debug", "info",
// "warn" or "error").
func NewLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// Probe GETs url and succeeds on a 2xx answer within two seconds.
func Probe(url string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}

// Tracing sets tracing up from the OTEL_* variables (see telemetry.Setup)
// and returns the function that flushes it at exit, within five seconds.
func Tracing(ctx context.Context, service, version string) (flush func(), err error) {
	shutdown, err := telemetry.Setup(ctx, service, version)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}, nil
}
