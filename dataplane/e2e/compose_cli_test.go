package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/secretfile"
	"github.com/portico-gw/portico/shared/testutil"
)

// composeCLIConfig runs the real Docker Compose CLI (`docker-compose config`,
// built by scripts/ensure-compose.sh; no Docker engine needed) on
// docker-compose.yml with envFile as the operator's .env and returns its
// JSON. Only what Compose needs is in its environment: the test's own must
// not fill in variables.
func composeCLIConfig(t *testing.T, envFile string) composeCLIProject {
	t.Helper()
	bin, err := testutil.ComposeBinary()
	if err != nil {
		t.Fatal(err)
	}
	root := deployRepoRoot(t)
	cmd := exec.Command(bin, "--project-directory", root, "-f", filepath.Join(root, "docker-compose.yml"),
		"--env-file", envFile, "config", "--format", "json")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker-compose config (env file %s): %v\n%s", filepath.Base(envFile), err, stderr.String())
	}
	var cfg composeCLIProject
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("docker-compose config output: %v\n%s", err, out)
	}
	return cfg
}

type composeCLIProject struct {
	Services map[string]struct {
		Command     []string           `json:"command"`
		Image       string             `json:"image"`
		Environment map[string]*string `json:"environment"`
	} `json:"services"`
}

// dotEnvFromExample writes .env.example with its commented-out assignments
// enabled: an operator's .env that sets every secret.
func dotEnvFromExample(t *testing.T) (path string, vals map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployRepoRoot(t), ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	vals = map[string]string{}
	var b strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		if l, ok := strings.CutPrefix(line, "#"); ok {
			if k, v, ok := strings.Cut(l, "="); ok && k != "" && !strings.ContainsAny(k, " \t") {
				line = l
				vals[k] = v
			}
		}
		b.WriteString(line + "\n")
	}
	path = filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, vals
}

// TestComposeConfigCLI: Compose's own schema check, interpolation and merge
// accept docker-compose.yml with no .env at all (the zero-setup start), with
// .env.example as it is, and with a .env setting every secret; each time it
// sees the same services, with the same data-plane command, as the
// compose-go library TestComposeFile checks with.
func TestComposeConfigCLI(t *testing.T) {
	root := deployRepoRoot(t)
	empty := filepath.Join(t.TempDir(), "empty.env")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dotEnv, vals := dotEnvFromExample(t)
	if vals["PORTICO_ADMIN_TOKEN"] == "" || vals["PORTICO_DEMO_API_KEY"] == "" {
		t.Fatalf(".env.example shows no example secrets: %v", vals)
	}
	p := loadCompose(t, root)
	var lib []string
	for _, s := range composeServices(p) {
		lib = append(lib, s.Name)
	}
	for name, envFile := range map[string]string{"no .env": empty, ".env.example": filepath.Join(root, ".env.example"), "secrets in .env": dotEnv} {
		cfg := composeCLIConfig(t, envFile)
		var cli []string
		for name := range cfg.Services {
			cli = append(cli, name)
		}
		slices.Sort(cli)
		if !slices.Equal(cli, lib) {
			t.Fatalf("%s: services: docker-compose config %v, compose-go %v", name, cli, lib)
		}
		if len(cli) == 0 {
			t.Fatalf("%s: docker-compose config listed no service", name)
		}
		dp, ok := cfg.Services["dataplane"]
		if !ok {
			t.Fatalf("%s: no dataplane service in %v", name, cli)
		}
		if want := []string(p.Services["dataplane"].Command); !slices.Equal(dp.Command, want) {
			t.Fatalf("%s: dataplane command: docker-compose %q, compose-go %q", name, dp.Command, want)
		}
		if !slices.Contains(dp.Command, "--tls-listen") {
			t.Fatalf("%s: dataplane command without --tls-listen: %q", name, dp.Command)
		}
		// The secrets reach secrets-init from .env, and only from there.
		for k, v := range cfg.Services["secrets-init"].Environment {
			want := ""
			if envFile == dotEnv {
				want = vals[k]
			}
			if v == nil || *v != want {
				t.Errorf("%s: secrets-init gets %s=%v, want %q", name, k, v, want)
			}
		}
	}
}

// TestComposeSecretsInit runs the secrets step exactly as `docker-compose
// config` says docker-compose.yml runs it (the control plane binary, its
// command and environment; only the volume is a temporary directory): the
// first start generates every secret and prints the admin token and the demo
// API key once; a second start keeps them and prints no secret; a .env
// replaces them, without printing them; every file is 0600 and, when the
// test runs as root as the job does, owned by its reader.
func TestComposeSecretsInit(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.env")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dotEnv, vals := dotEnvFromExample(t)
	vol := filepath.Join(t.TempDir(), "secrets")
	asRoot := os.Getuid() == 0

	run := func(envFile string) (string, map[string]string) {
		t.Helper()
		svc := composeCLIConfig(t, envFile).Services["secrets-init"]
		if len(svc.Command) == 0 || svc.Command[0] != "init-secrets" {
			t.Fatalf("secrets-init runs %q", svc.Command)
		}
		args := slices.Clone(svc.Command)
		var specs []string
		for i := 1; i < len(args); i++ {
			switch {
			case args[i] == "--dir":
				args[i+1] = vol
				i++
			case args[i] == "--owner":
				if !asRoot {
					args[i+1] = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
				}
				i++
			case !strings.HasPrefix(args[i], "-"):
				if !asRoot {
					// Only root may give a file away; elsewhere the
					// files stay the test user's.
					args[i], _, _ = strings.Cut(args[i], ":owner=")
				}
				specs = append(specs, args[i])
			}
		}
		cmd := exec.Command(filepath.Join(binDir, "controlplane"), args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		for k, v := range svc.Environment {
			if v != nil {
				cmd.Env = append(cmd.Env, k+"="+*v)
			}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("controlplane %q: %v\n%s", args, err, out)
		}
		files := map[string]string{}
		for _, spec := range specs {
			sp, err := secretfile.ParseSpec(spec, "")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(vol, sp.Name)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatalf("after secrets-init: %v", err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", sp.Name, fi.Mode().Perm())
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && asRoot {
				full, _ := secretfile.ParseSpec(spec, "65532:65532")
				if int(st.Uid) != full.UID || int(st.Gid) != full.GID {
					t.Errorf("%s: owned by %d:%d, want %d:%d", sp.Name, st.Uid, st.Gid, full.UID, full.GID)
				}
			}
			if files[sp.Name], err = secretfile.Read(path); err != nil {
				t.Fatal(err)
			}
		}
		return string(out), files
	}

	out1, first := run(empty)
	t.Logf("first start:\n%s", out1)
	if len(first) < 5 {
		t.Fatalf("secrets made: %v, want the admin and data-plane tokens, the JWT key, the demo API key and Grafana's password", slices.Collect(maps.Keys(first)))
	}
	for name, v := range first {
		if len(v) < 43 {
			t.Errorf("%s: %d characters, want at least 43 (256 random bits)", name, len(v))
		}
		shown := strings.Contains(out1, v)
		if want := name == "admin-token" || name == "demo-api-key"; shown != want {
			t.Errorf("first start: %s printed %v, want %v", name, shown, want)
		}
	}
	if err := config.ValidateAPIKey(first["demo-api-key"]); err != nil {
		t.Errorf("generated demo API key: %v", err)
	}

	out2, second := run(empty)
	if !maps.Equal(first, second) {
		t.Errorf("second start changed the secrets")
	}
	for name, v := range second {
		if strings.Contains(out2, v) {
			t.Errorf("second start printed %s:\n%s", name, out2)
		}
	}

	out3, third := run(dotEnv)
	envOf := map[string]string{"admin-token": "PORTICO_ADMIN_TOKEN", "dataplane-token": "PORTICO_DATAPLANE_TOKEN",
		"jwt-secret": "PORTICO_JWT_SECRET", "demo-api-key": "PORTICO_DEMO_API_KEY", "grafana-admin-password": "GRAFANA_ADMIN_PASSWORD"}
	for name, v := range third {
		if want := vals[envOf[name]]; want == "" || v != want {
			t.Errorf("with .env: %s = %q, want .env's %s (%q)", name, v, envOf[name], want)
		}
		if strings.Contains(out3, v) {
			t.Errorf("with .env: printed %s:\n%s", name, out3)
		}
	}
}
