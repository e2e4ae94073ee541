package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --token-file reads the sync token from a mounted secret; a value and a
// file together are refused.
func TestTokenFile(t *testing.T) {
	t.Setenv("PORTICO_DATAPLANE_TOKEN", "")
	t.Setenv("PORTICO_DATAPLANE_TOKEN_FILE", "")
	file := filepath.Join(t.TempDir(), "dataplane-token")
	if err := os.WriteFile(file, []byte("d-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := parseFlags([]string{"--token-file", file})
	if err != nil || *f.token != "d-token" {
		t.Fatalf("--token-file: token %q, %v", *f.token, err)
	}
	t.Setenv("PORTICO_DATAPLANE_TOKEN_FILE", file)
	if f, err = parseFlags(nil); err != nil || *f.token != "d-token" {
		t.Fatalf("PORTICO_DATAPLANE_TOKEN_FILE: token %q, %v", *f.token, err)
	}
	if _, err := parseFlags([]string{"--token", "x"}); err == nil || !strings.Contains(err.Error(), "--token and --token-file") {
		t.Fatalf("--token with PORTICO_DATAPLANE_TOKEN_FILE: %v", err)
	}
}
