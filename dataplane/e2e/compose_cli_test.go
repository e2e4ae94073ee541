package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// runSecretsInit runs the secrets-init job as `docker-compose config` with
// envFile resolves it (command and environment; the volume is vol) and
// returns its output and the secrets it left, checking modes and, as root,
// owners.
func runSecretsInit(t *testing.T, envFile, vol string) (string, map[string]string) {
	t.Helper()
	asRoot := os.Getuid() == 0
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
	run := func(envFile string) (string, map[string]string) {
		t.Helper()
		return runSecretsInit(t, envFile, vol)
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

// TestComposeSecretsStack: what the first `docker compose up` prints is what
// the stack uses. The secrets-init job runs as Compose resolves it, then a
// control plane and a data plane run with the environment Compose gives
// their services (the token files, from the job's volume): the printed
// admin token opens the admin API, the data plane syncs with its token
// file, the seed job's import of the printed demo key makes it alice's
// key, and no process log shows a secret.
func TestComposeSecretsStack(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.env")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(t.TempDir(), "secrets")
	out, secrets := runSecretsInit(t, empty, vol)
	printed := func(name string) string {
		m := regexp.MustCompile(`init-secrets: ` + name + ` generated, shown this once \(kept in [^)]*\): (\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s not printed:\n%s", name, out)
		}
		return m[1]
	}
	adminTok, demoKey := printed("admin-token"), printed("demo-api-key")

	cfg := composeCLIConfig(t, empty)
	// The services' environment, with the volume's mount point made the
	// test's directory and the Compose network's addresses left out.
	envOf := func(service string) []string {
		var env []string
		for k, v := range cfg.Services[service].Environment {
			if v == nil || strings.HasPrefix(k, "OTEL_") {
				continue
			}
			val := *v
			if rest, ok := strings.CutPrefix(val, "/secrets/"); ok {
				val = filepath.Join(vol, rest)
			}
			env = append(env, k+"="+val)
		}
		if len(env) == 0 {
			t.Fatalf("compose gives %s no environment", service)
		}
		return env
	}
	// Nothing of the test's own environment may stand in for a file.
	t.Setenv("PORTICO_ADMIN_TOKEN", "")
	t.Setenv("PORTICO_DATAPLANE_TOKEN", "")

	cpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cp := startEnv(t, envOf("controlplane"), "controlplane", "controlplane",
		"--listen", cpAddr, "--store", "bolt:"+filepath.Join(t.TempDir(), "cp.db"), "--log-level", "info")
	cpURL := "http://" + cpAddr
	waitHTTP(t, cpURL+"/readyz", 200)

	call := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, cpURL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call("GET", "/v1/config", adminTok, ""); code != 200 {
		t.Fatalf("the printed admin token: GET /v1/config = %d %s", code, body)
	}
	if code, _ := call("GET", "/v1/config", secrets["dataplane-token"], ""); code != 401 && code != 403 {
		t.Fatalf("the data-plane token opened the admin API: %d", code)
	}

	up := startUpstream(t, "users")
	for _, w := range []struct{ method, path, body string }{
		{"PUT", "/v1/services/users", `{"targets":[{"url":"` + up + `"}]}`},
		{"PUT", "/v1/consumers/alice", `{"groups":["staff"]}`},
		{"PUT", "/v1/routes/orders", `{"paths":["/orders/*"],"service":"users","auth":{"api_key":true}}`},
		// What seed.sh sends, twice: the second is a no-op.
		{"POST", "/v1/consumers/alice/api-keys", `{"key":"` + demoKey + `"}`},
		{"POST", "/v1/consumers/alice/api-keys", `{"key":"` + demoKey + `"}`},
	} {
		if code, body := call(w.method, w.path, adminTok, w.body); code/100 != 2 {
			t.Fatalf("%s %s = %d %s", w.method, w.path, code, body)
		}
	}

	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	ops := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	dp := startEnv(t, envOf("dataplane"), "dataplane", "dataplane", "--controlplane", cpURL,
		"--listen", addr, "--ops-listen", ops, "--state-dir", t.TempDir(), "--poll-wait", "10s", "--log-level", "info")
	waitHTTP(t, "http://"+ops+"/readyz", 200)
	req, _ := http.NewRequest("GET", "http://"+addr+"/orders/1", nil)
	req.Header.Set("X-API-Key", demoKey)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the printed demo key at the data plane: %d", resp.StatusCode)
	}
	if code, _ := get("http://" + addr + "/orders/1"); code != 401 {
		t.Fatalf("without a key: %d, want 401", code)
	}

	cp.term(t)
	dp.term(t)
	for _, p := range []*proc{cp, dp} {
		logs, _ := os.ReadFile(p.log)
		for name, v := range secrets {
			if strings.Contains(string(logs), v) {
				t.Errorf("%s's log shows %s", p.name, name)
			}
		}
	}
}
