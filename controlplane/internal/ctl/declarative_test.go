package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

const hmacSecret = "an-hmac-secret-of-32-bytes-or-more!"

// seed writes a configuration of every kind through the API, the way an
// operator would have built it up.
func seed(t *testing.T, c *client.Client) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := c.Services().Create(ctx, config.Service{Name: "users", Targets: []config.Target{{URL: "http://10.0.0.1:8080", Weight: 2}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Services().Create(ctx, config.Service{Name: "orders", Targets: []config.Target{{URL: "http://10.0.0.2:8080"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Routes().Create(ctx, config.Route{Name: "users", Paths: []string{"/users/*"}, Methods: []string{"GET"}, Service: "users", Timeout: config.Duration(2 * time.Second), Cache: &config.RouteCache{TTL: config.Duration(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Routes().Create(ctx, config.Route{Name: "orders", Paths: []string{"/orders"}, Service: "orders"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Issuers().Create(ctx, config.Issuer{Name: "hs", Issuer: "https://hs.example", Algorithms: []string{"HS256"}, Keys: []string{hmacSecret}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Consumers().Create(ctx, config.Consumer{Name: "alice", Groups: []string{"staff"}, JWTIssuers: []string{"hs"}}); err != nil {
		t.Fatal(err)
	}
}

// TestDumpApplyDiff is the declarative loop against real control planes:
// dump one, apply the dump to an empty one, diff reports no change on both;
// an edit shows as exactly that change (golden), apply makes it, and a
// stale apply is refused unless forced.
func TestDumpApplyDiff(t *testing.T) {
	src, dst := startControlPlane(t), startControlPlane(t)
	seed(t, src.admin)
	dir := t.TempDir()

	d := run(t, src.env(), "", "dump")
	if d.code != 0 {
		t.Fatalf("dump: %+v", d)
	}
	// The control plane never returns an HMAC issuer's keys: the dump has
	// none, and a file for a new control plane must bring them.
	if strings.Contains(d.out, hmacSecret) {
		t.Fatalf("dump shows the HMAC secret:\n%s", d.out)
	}
	golden(t, "dump.golden", d.out[strings.Index(d.out, "\n")+1:]) // without the revision line
	if shown := run(t, src.env(), "", "dump", "--show-secrets"); strings.Contains(shown.out, hmacSecret) {
		t.Fatalf("dump --show-secrets shows a secret the control plane must never return:\n%s", shown.out)
	}
	file := writeFile(t, dir, "portico.yaml", d.out)
	if r := run(t, src.env(), "", "diff", "-f", file); r.code != 0 {
		t.Fatalf("diff of the keyless dump against its source (the stored keys are kept): %+v", r)
	}
	r := run(t, dst.env(), "", "apply", "-f", file)
	line := 1 + strings.Count(d.out[:strings.Index(d.out, "  - name: hs")], "\n")
	if want := fmt.Sprintf("portico.yaml:%d: issuers[0].keys: give the HMAC secrets", line); r.code != 1 || !strings.Contains(r.errOut, want) {
		t.Fatalf("apply of a keyless HMAC issuer to an empty control plane: %+v, want %q", r, want)
	}
	withKeys := strings.Replace(d.out, "  - name: hs\n", "  - name: hs\n    keys: [\"${HS_SECRET}\"]\n", 1)
	file = writeFile(t, dir, "portico.yaml", withKeys)
	secret := "HS_SECRET=" + hmacSecret

	// Without the secret in the environment nothing is sent.
	if r := run(t, dst.env(), "", "apply", "-f", file); r.code != 1 || !strings.Contains(r.errOut, "HS_SECRET is not set") {
		t.Fatalf("apply without the secret: %+v", r)
	}
	r = run(t, dst.env(secret), "", "apply", "-f", file)
	if r.code != 0 || !strings.Contains(r.out, "Applied: revision 1 (6 created, 0 updated, 0 deleted).") {
		t.Fatalf("apply to an empty control plane: %+v", r)
	}
	for name, cp := range map[string]*controlPlane{"the empty one": dst, "the source": src} {
		if r := run(t, cp.env(secret), "", "diff", "-f", file); r.code != 0 || !strings.HasPrefix(r.out, "No changes") {
			t.Fatalf("diff of the dump against %s: %+v", name, r)
		}
	}
	if again := run(t, dst.env(), "", "dump"); again.out[strings.Index(again.out, "\n"):] != d.out[strings.Index(d.out, "\n"):] {
		t.Fatalf("the dump of the applied copy differs:\n%s\nfrom\n%s", again.out, d.out)
	}

	// An edit: one field of one route, a new route, a consumer gone.
	edited := strings.Replace(withKeys, "timeout: 2s", "timeout: 5s", 1)
	i, j := strings.Index(edited, "\nconsumers:"), strings.Index(edited, "\nissuers:")
	edited = edited[:i] + edited[j:] + "---\nroutes:\n  - name: health\n    paths: [/health]\n    service: orders\n"
	file = writeFile(t, dir, "portico.yaml", edited)
	r = run(t, dst.env(secret), "", "diff", "-f", file)
	if r.code != 2 {
		t.Fatalf("diff after an edit: %+v", r)
	}
	golden(t, "diff.golden", r.out)
	if c := run(t, dst.env(secret), "", "diff", "-f", file, "--color", "always"); !strings.Contains(c.out, "\x1b[32m+ route health\x1b[0m") ||
		!strings.Contains(c.out, "\x1b[31m-     timeout: 2s\x1b[0m") {
		t.Fatalf("diff --color always is not coloured:\n%q", c.out)
	}
	var p struct {
		Revision int64             `json:"revision"`
		Changes  []apiv1.DiffEntry `json:"changes"`
	}
	r = run(t, dst.env(secret), "", "diff", "-f", file, "-o", "json")
	if err := json.Unmarshal([]byte(r.out), &p); err != nil || r.code != 2 {
		t.Fatalf("diff -o json: %v: %+v", err, r)
	}
	var ops []string
	for _, c := range p.Changes {
		ops = append(ops, c.Op+" "+string(c.Kind)+" "+c.Name+" "+strings.Join(c.Fields, ","))
	}
	if want := []string{"create route health ", "update route users timeout", "delete consumer alice "}; !slices.Equal(ops, want) {
		t.Fatalf("diff -o json changes %q, want %q", ops, want)
	}

	// Someone else writes after the diff: apply --revision refuses.
	ctx := context.Background()
	if _, _, err := dst.admin.Services().Put(ctx, "orders", config.Service{Name: "orders", Targets: []config.Target{{URL: "http://10.9.9.9:8080"}}}); err != nil {
		t.Fatal(err)
	}
	stale := run(t, dst.env(secret), "", "apply", "-f", file, "--revision", itoa(p.Revision))
	if stale.code != 1 || !strings.Contains(stale.errOut, "moved since the diff") {
		t.Fatalf("stale apply: %+v", stale)
	}
	if rt, err := dst.admin.Routes().Get(ctx, "users"); err != nil || time.Duration(rt.Timeout) != 2*time.Second {
		t.Fatalf("a refused apply changed the route: %+v, %v", rt, err)
	}
	forced := run(t, dst.env(secret), "", "apply", "-f", file, "--revision", itoa(p.Revision), "--force")
	if forced.code != 0 || !strings.Contains(forced.out, "Applied: revision") || !strings.Contains(forced.out, "1 created, 2 updated, 1 deleted") {
		t.Fatalf("forced apply: %+v", forced)
	}
	if r := run(t, dst.env(secret), "", "diff", "-f", file); r.code != 0 {
		t.Fatalf("diff after apply: %+v", r)
	}
	audit := run(t, dst.env(), "", "audit")
	if !strings.Contains(audit.out, "admin (as tester)  import") {
		t.Fatalf("audit does not name the import's actor:\n%s", audit.out)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

var _ = os.Getenv
var _ = filepath.Join

// TestCertificatesRoundTrip: the control plane never returns a private
// key, so a dump carries certificates without one. diff and apply leave
// the check to the control plane, which keeps the stored key: the dump
// diffs clean against its source. An empty control plane needs the key,
// refuses the import at the certificate's line, and takes it from ${ENV}.
func TestCertificatesRoundTrip(t *testing.T) {
	src, dst := startControlPlane(t), startControlPlane(t)
	now := time.Now()
	leaf := testutil.NewCA(t).Issue(t, []string{"api.example.com"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	if _, _, err := src.admin.Certificates().Create(context.Background(), config.Certificate{Name: "api", Cert: leaf.CertPEM, Key: leaf.KeyPEM, SNIs: []string{"api.example.com"}}); err != nil {
		t.Fatal(err)
	}
	d := run(t, src.env(), "", "dump")
	if d.code != 0 || strings.Contains(d.out, "PRIVATE KEY") || !strings.Contains(d.out, "BEGIN CERTIFICATE") {
		t.Fatalf("dump of a certificate: %+v", d)
	}
	file := writeFile(t, t.TempDir(), "portico.yaml", d.out)
	if r := run(t, src.env(), "", "diff", "-f", file); r.code != 0 {
		t.Fatalf("diff of the dump against its source: %+v", r)
	}
	r := run(t, dst.env(), "", "apply", "-f", file)
	line := 1 + strings.Count(d.out[:strings.Index(d.out, "  - name: api")], "\n")
	if want := fmt.Sprintf("portico.yaml:%d: certificates[0].key: is required", line); r.code != 1 || !strings.Contains(r.errOut, want) || !strings.Contains(r.errOut, "HTTP 422") {
		t.Fatalf("apply of a keyless certificate to an empty control plane: %+v, want %q", r, want)
	}
	withKey := strings.Replace(d.out, "  - name: api\n", "  - name: api\n    key: ${API_KEY_PEM}\n", 1)
	file = writeFile(t, t.TempDir(), "portico.yaml", withKey)
	if r := run(t, dst.env("API_KEY_PEM="+leaf.KeyPEM), "", "apply", "-f", file); r.code != 0 || !strings.Contains(r.out, "1 created") {
		t.Fatalf("apply with the key from the environment: %+v", r)
	}
	if r := run(t, src.env("API_KEY_PEM="+leaf.KeyPEM), "", "diff", "-f", file); r.code != 0 {
		t.Fatalf("the file with the key against the source: %+v", r)
	}
}
