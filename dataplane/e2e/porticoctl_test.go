package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// porticoctl runs the real binary against a control plane with
// PORTICO_URL/PORTICO_TOKEN and returns its exit status and output.
func porticoctl(t *testing.T, cpURL string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "porticoctl"), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"PORTICO_URL=" + cpURL, "PORTICO_TOKEN=" + adminToken, "PORTICO_ACTOR=e2e"}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errOut.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errOut.String()
	}
	t.Fatalf("porticoctl %v: %v", args, err)
	return 0, "", ""
}

// TestPorticoctl drives the real porticoctl against real control planes
// and a data plane: dump → apply to an empty control plane → diff says
// nothing changed; an edit → diff shows exactly that change (exit 2) →
// apply → the data plane serves it; a stale apply is refused without
// --force; validate points at the file's line.
func TestPorticoctl(t *testing.T) {
	ctx := context.Background()
	v1, v2 := startUpstream(t, "users-v1"), startUpstream(t, "users-v2")
	dir := t.TempDir()
	src := startControlPlane(t, "cp-src", "bolt:"+filepath.Join(dir, "src.db"))
	if _, _, err := src.admin.Services().Put(ctx, "users", svc(v1)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.admin.Routes().Put(ctx, "users", route("/api/users/*", "users")); err != nil {
		t.Fatal(err)
	}
	dst := startControlPlane(t, "cp-dst", "bolt:"+filepath.Join(dir, "dst.db"))
	dp := startDataPlane(t, "dp-ctl", dst.url, filepath.Join(dir, "dp"))

	code, dump, stderr := porticoctl(t, src.url, nil, "dump")
	if code != 0 {
		t.Fatalf("dump: %d %s", code, stderr)
	}
	file := filepath.Join(dir, "portico.yaml")
	if err := os.WriteFile(file, []byte(dump), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := porticoctl(t, dst.url, nil, "apply", "-f", file); code != 0 || !strings.Contains(out, "Applied: revision 1 (2 created, 0 updated, 0 deleted).") {
		t.Fatalf("apply to the empty control plane: %d\n%s%s", code, out, stderr)
	}
	if code, out, stderr := porticoctl(t, dst.url, nil, "dataplanes", "--wait", "20s"); code != 0 || !strings.Contains(out, "converged: yes") {
		t.Fatalf("dataplanes --wait: %d\n%s%s", code, out, stderr)
	}
	if !serves(dp.url+"/api/users/1", "users-v1") {
		t.Fatal("the data plane does not serve the applied route")
	}
	for name, cp := range map[string]string{"the empty one": dst.url, "the source": src.url} {
		if code, out, _ := porticoctl(t, cp, nil, "diff", "-f", file); code != 0 || !strings.HasPrefix(out, "No changes") {
			t.Fatalf("diff of the dump against %s: %d\n%s", name, code, out)
		}
	}

	// The edit: the service moves to v2. diff shows that and nothing else.
	if err := os.WriteFile(file, []byte(strings.Replace(dump, v1, v2, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := porticoctl(t, dst.url, nil, "diff", "-f", file)
	want := "~ service users\n" +
		"-     targets:\n-       - url: " + v1 + "\n-         weight: 1\n" +
		"+     targets:\n+       - url: " + v2 + "\n+         weight: 1\n" +
		"\nPlan: 0 to create, 1 to update, 0 to delete (against revision 1).\n"
	if code != 2 || out != want {
		t.Fatalf("diff after the edit: exit %d, want 2\n%s%s\nwant:\n%s", code, out, stderr, want)
	}
	if code, out, stderr := porticoctl(t, dst.url, nil, "apply", "-f", file); code != 0 || !strings.HasSuffix(out, "Applied: revision 2 (0 created, 1 updated, 0 deleted).\n") {
		t.Fatalf("apply of the edit: %d\n%s%s", code, out, stderr)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return serves(dp.url+"/api/users/1", "users-v2") }, "the data plane serving the edit")

	// Stale: someone changes the control plane after the reviewed diff.
	if err := os.WriteFile(file, []byte(dump), 0o600); err != nil {
		t.Fatal(err)
	}
	_, out, _ = porticoctl(t, dst.url, nil, "diff", "-f", file, "-o", "json")
	var plan apiv1.ImportResult
	if err := json.Unmarshal([]byte(out), &plan); err != nil || plan.Revision != 2 {
		t.Fatalf("diff -o json: %v: %s", err, out)
	}
	if _, _, err := dst.admin.Routes().Put(ctx, "other", config.Route{Paths: []string{"/other"}, Service: "users"}); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = porticoctl(t, dst.url, nil, "apply", "-f", file, "--revision", "2")
	if code != 1 || !strings.Contains(stderr, "moved since the diff: it is at revision 3, not 2") {
		t.Fatalf("stale apply: %d\n%s%s", code, out, stderr)
	}
	if !serves(dp.url+"/api/users/1", "users-v2") {
		t.Fatal("a refused apply changed what the data plane serves")
	}
	if code, out, stderr := porticoctl(t, dst.url, nil, "apply", "-f", file, "--revision", "2", "--force"); code != 0 || !strings.Contains(out, "(0 created, 1 updated, 1 deleted)") {
		t.Fatalf("forced apply: %d\n%s%s", code, out, stderr)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return serves(dp.url+"/api/users/1", "users-v1") }, "the data plane serving the forced apply")

	// validate, offline: the file's line.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("routes:\n  - name: r\n    paths: [/r]\n    service: users\n    methods: [FETCH!]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = porticoctl(t, "http://127.0.0.1:1", nil, "validate", "-f", bad)
	if code != 1 || !strings.Contains(stderr, bad+":5: routes[0].methods[0]:") {
		t.Fatalf("validate: %d %s", code, stderr)
	}
	// The data plane's traffic is in analytics, per route.
	testutil.Eventually(t, 20*time.Second, func() bool {
		_, out, _ := porticoctl(t, dst.url, nil, "analytics", "--window", "5m")
		return strings.Contains(out, "users ")
	}, "analytics listing the users route")
}
