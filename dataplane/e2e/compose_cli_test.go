package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/testutil"
)

// TestComposeConfigCLI runs the real Docker Compose CLI (`docker-compose
// config`, built by scripts/ensure-compose.sh; no Docker engine needed) on
// docker-compose.yml with .env.example as the operator's .env: Compose's own
// schema check, interpolation and merge must accept the file, and must
// see the same services, with the same data-plane command, as the
// compose-go library TestComposeFile checks with.
func TestComposeConfigCLI(t *testing.T) {
	bin, err := testutil.ComposeBinary()
	if err != nil {
		t.Fatal(err)
	}
	root := deployRepoRoot(t)
	cmd := exec.Command(bin, "--project-directory", root, "-f", filepath.Join(root, "docker-compose.yml"),
		"--env-file", filepath.Join(root, ".env.example"), "config", "--format", "json")
	// Only what Compose needs: the test's own environment must not fill
	// in variables .env.example should document.
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, stderr.String())
	}
	var cfg struct {
		Services map[string]struct {
			Command []string `json:"command"`
			Image   string   `json:"image"`
		} `json:"services"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("docker-compose config output: %v\n%s", err, out)
	}
	var cli []string
	for name := range cfg.Services {
		cli = append(cli, name)
	}
	slices.Sort(cli)
	p := loadCompose(t, root)
	var lib []string
	for _, s := range composeServices(p) {
		lib = append(lib, s.Name)
	}
	if !slices.Equal(cli, lib) {
		t.Fatalf("services: docker-compose config %v, compose-go %v", cli, lib)
	}
	if len(cli) == 0 {
		t.Fatal("docker-compose config listed no service")
	}
	dp, ok := cfg.Services["dataplane"]
	if !ok {
		t.Fatalf("no dataplane service in %v", cli)
	}
	if want := []string(p.Services["dataplane"].Command); !slices.Equal(dp.Command, want) {
		t.Fatalf("dataplane command: docker-compose %q, compose-go %q", dp.Command, want)
	}
	if !slices.Contains(dp.Command, "--tls-listen") {
		t.Fatalf("dataplane command without --tls-listen: %q", dp.Command)
	}
}
