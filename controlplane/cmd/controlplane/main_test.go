package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Outside dev mode the control plane must refuse to start without tokens:
// an unauthenticated admin API is never a default.
func TestRefusesToStartWithoutTokens(t *testing.T) {
	t.Setenv("PORTICO_ADMIN_TOKEN", "")
	t.Setenv("PORTICO_DATAPLANE_TOKEN", "")
	t.Setenv("PORTICO_DEV", "")
	for _, args := range [][]string{
		{},
		{"--admin-token", "a"},
		{"--dataplane-token", "d"},
	} {
		err := run(append(args, "--store", "bolt:"+t.TempDir()+"/x.db", "--listen", "127.0.0.1:0"))
		if err == nil || !strings.Contains(err.Error(), "--admin-token and --dataplane-token are required") {
			t.Errorf("run(%v) = %v, want a refusal naming the token flags", args, err)
		}
	}
}

func TestBadFlagValues(t *testing.T) {
	t.Setenv("PORTICO_DEV", "perhaps")
	if err := run(nil); err == nil || !strings.Contains(err.Error(), "PORTICO_DEV") {
		t.Fatalf("bad env value = %v, want an error naming PORTICO_DEV", err)
	}
	t.Setenv("PORTICO_DEV", "")
	if err := run([]string{"--dev", "--store", "nosuch:x"}); err == nil || !strings.Contains(err.Error(), "bolt:<file>") {
		t.Fatalf("bad store = %v", err)
	}
	if err := run([]string{"--dev", "--log-level", "loud"}); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("bad log level = %v", err)
	}
}

func TestRedactStore(t *testing.T) {
	if got := redactStore("consul://user:secret@127.0.0.1:8500/portico"); strings.Contains(got, "secret") {
		t.Fatalf("redactStore leaked: %s", got)
	}
	if got := redactStore("bolt:/var/lib/x.db"); got != "bolt:/var/lib/x.db" {
		t.Fatalf("redactStore changed a plain spec: %s", got)
	}
}

// Tokens from files (a mounted secret): read as given, never both a value
// and a file.
func TestTokenFiles(t *testing.T) {
	t.Setenv("PORTICO_ADMIN_TOKEN", "")
	t.Setenv("PORTICO_DATAPLANE_TOKEN", "")
	t.Setenv("PORTICO_DEV", "")
	dir := t.TempDir()
	admin, dp := filepath.Join(dir, "admin-token"), filepath.Join(dir, "dataplane-token")
	os.WriteFile(admin, []byte("a-token\n"), 0o600)
	os.WriteFile(dp, []byte("d-token\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		// Past the token check, the store is what fails.
		{[]string{"--admin-token-file", admin, "--dataplane-token-file", dp}, "bolt:<file>"},
		{[]string{"--admin-token-file", admin, "--dataplane-token", "d"}, "bolt:<file>"},
		{[]string{"--admin-token-file", admin}, "--admin-token and --dataplane-token are required"},
		{[]string{"--admin-token", "a", "--admin-token-file", admin, "--dataplane-token", "d"}, "--admin-token and --admin-token-file are both set"},
		{[]string{"--admin-token-file", filepath.Join(dir, "none"), "--dataplane-token", "d"}, "--admin-token-file"},
	} {
		err := run(append(tc.args, "--store", "nosuch:x", "--listen", "127.0.0.1:0"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
