// Package cli holds what every Portico binary does the same way at startup:
// exit codes and a JSON slog logger at a chosen level.
package cli

import (
	"fmt"
	"log/slog"
	"os"
)

// Main runs run with the command-line arguments and exits 1, printing the
// error, if it fails.
func Main(name string, run func(args []string) error) {
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
