package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in, owner string
		want      Spec
		err       string
	}{
		{in: "admin-token", want: Spec{Name: "admin-token", UID: -1, GID: -1}},
		{in: "admin-token:env=PORTICO_ADMIN_TOKEN:show", owner: "65532:65532",
			want: Spec{Name: "admin-token", Env: "PORTICO_ADMIN_TOKEN", Show: true, UID: 65532, GID: 65532}},
		{in: "demo-api-key:apikey:owner=472:0", owner: "65532:65532",
			want: Spec{Name: "demo-api-key", Kind: APIKey, UID: 472, GID: 0}},
		{in: "../etc/passwd", err: "name"},
		{in: ".hidden", err: "name"},
		{in: "x:env=", err: "env= needs"},
		{in: "x:loud", err: "unknown option"},
		{in: "x:owner=root", err: "UID:GID"},
		{in: "x", owner: "1", err: "UID:GID"},
	}
	for _, tc := range tests {
		got, err := ParseSpec(tc.in, tc.owner)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSpec(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSpec(%q, %q) = %+v, %v; want %+v", tc.in, tc.owner, got, err, tc.want)
		}
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"lf": "s3cret\n", "crlf": "s3cret\r\n", "bare": "s3cret"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := Read(p); err != nil || got != "s3cret" {
			t.Errorf("Read(%q) = %q, %v", content, got, err)
		}
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := Read(empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("Read(empty) = %v", err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, maxSize+1), 0o600)
	if _, err := Read(big); err == nil {
		t.Error("Read accepted a file larger than a secret")
	}

	v := ""
	if err := Resolve(&v, filepath.Join(dir, "lf"), "token", "token-file"); err != nil || v != "s3cret" {
		t.Errorf("Resolve = %q, %v", v, err)
	}
	v = "given"
	if err := Resolve(&v, filepath.Join(dir, "lf"), "token", "token-file"); err == nil || !strings.Contains(err.Error(), "--token and --token-file") {
		t.Errorf("Resolve with both = %v", err)
	}
	v = ""
	if err := Resolve(&v, filepath.Join(dir, "none"), "token", "token-file"); err == nil || !strings.Contains(err.Error(), "--token-file") {
		t.Errorf("Resolve of a missing file = %v", err)
	}
}

// TestEnsure: generated once, kept after, replaced by the environment, every
// file 0600, and a value printed only by the run that generated it.
func TestEnsure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	specs := []Spec{
		{Name: "admin-token", Env: "ADMIN", Show: true, UID: -1, GID: -1},
		{Name: "dataplane-token", Env: "DP", UID: -1, GID: -1},
		{Name: "demo-api-key", Env: "KEY", Kind: APIKey, Show: true, UID: -1, GID: -1},
	}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	files := func() map[string]string {
		m := map[string]string{}
		for _, sp := range specs {
			p := filepath.Join(dir, sp.Name)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", sp.Name, fi.Mode().Perm())
			}
			v, err := Read(p)
			if err != nil {
				t.Fatal(err)
			}
			m[sp.Name] = v
		}
		return m
	}

	var out strings.Builder
	if err := Ensure(dir, specs, getenv, &out); err != nil {
		t.Fatal(err)
	}
	first := files()
	if len(first["admin-token"]) != 43 || len(first["dataplane-token"]) != 43 || first["admin-token"] == first["dataplane-token"] {
		t.Errorf("generated tokens %q", first)
	}
	if err := config.ValidateAPIKey(first["demo-api-key"]); err != nil {
		t.Errorf("generated API key: %v", err)
	}
	for name, v := range first {
		shown := strings.Contains(out.String(), v)
		if want := name != "dataplane-token"; shown != want {
			t.Errorf("first run: %s shown %v, want %v:\n%s", name, shown, want, out.String())
		}
	}

	out.Reset()
	if err := Ensure(dir, specs, getenv, &out); err != nil {
		t.Fatal(err)
	}
	if second := files(); second["admin-token"] != first["admin-token"] || second["demo-api-key"] != first["demo-api-key"] || second["dataplane-token"] != first["dataplane-token"] {
		t.Errorf("second run changed secrets: %q then %q", first, second)
	}
	for _, v := range first {
		if strings.Contains(out.String(), v) {
			t.Errorf("second run printed a secret:\n%s", out.String())
		}
	}

	// A file someone loosened is tightened again.
	os.Chmod(filepath.Join(dir, "admin-token"), 0o644)
	env["ADMIN"] = "from-dot-env-0123456789"
	out.Reset()
	if err := Ensure(dir, specs, getenv, &out); err != nil {
		t.Fatal(err)
	}
	third := files()
	if third["admin-token"] != "from-dot-env-0123456789" || third["dataplane-token"] != first["dataplane-token"] {
		t.Errorf("with ADMIN set: %q", third)
	}
	if strings.Contains(out.String(), "from-dot-env") || !strings.Contains(out.String(), "admin-token set from ADMIN") {
		t.Errorf("with ADMIN set, output:\n%s", out.String())
	}

	// A bad API key in the environment changes nothing, not even the
	// secrets listed before it.
	env["ADMIN"], env["KEY"] = "another-admin-token", "pk_short"
	if err := Ensure(dir, specs, getenv, &out); err == nil || !strings.Contains(err.Error(), "KEY") {
		t.Fatalf("bad KEY: %v", err)
	}
	if got := files(); got["admin-token"] != third["admin-token"] {
		t.Errorf("a refused run changed admin-token to %q", got["admin-token"])
	}

	// An empty file is not silently replaced.
	os.WriteFile(filepath.Join(dir, "dataplane-token"), nil, 0o600)
	delete(env, "KEY")
	if err := Ensure(dir, specs, getenv, &out); err == nil || !strings.Contains(err.Error(), "dataplane-token") {
		t.Fatalf("empty file: %v", err)
	}
	if err := Ensure(dir, []Spec{specs[0], specs[0]}, getenv, &out); err == nil {
		t.Fatal("a secret listed twice was accepted")
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
