package ctl

import (
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/api"
	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/nodes"
	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// TestObjectCommands: get (table, one object, -o json), delete, purge and
// whoami against a control plane, with the table output in golden files.
func TestObjectCommands(t *testing.T) {
	cp := startControlPlane(t)
	seed(t, cp.admin)
	r := run(t, cp.env(), "", "get", "routes")
	if r.code != 0 {
		t.Fatalf("get routes: %+v", r)
	}
	golden(t, "get-routes.golden", r.out)
	r = run(t, cp.env(), "", "get", "svc")
	golden(t, "get-services.golden", r.out)
	if r := run(t, cp.env(), "", "get", "route", "users", "-o", "json"); r.code != 0 || !strings.Contains(r.out, `"name": "users"`) || !strings.Contains(r.out, `"version": 1`) {
		t.Fatalf("get route users -o json: %+v", r)
	}
	if r := run(t, cp.env(), "", "get", "route", "nope"); r.code != 1 || !strings.Contains(r.errOut, "(HTTP 404 not-found)") {
		t.Fatalf("get of a missing route: %+v", r)
	}
	if r := run(t, cp.env(), "", "get", "buckets"); r.code != 1 || !strings.Contains(r.errOut, `unknown kind "buckets"`) {
		t.Fatalf("get of an unknown kind: %+v", r)
	}
	if r := run(t, cp.env(), "", "purge", "users"); r.code != 0 || !strings.Contains(r.out, "Purged the cache of route users: revision 7") {
		t.Fatalf("purge: %+v", r)
	}
	if r := run(t, cp.env(), "", "delete", "route", "orders", "--if-version", "9"); r.code != 1 || !strings.Contains(r.errOut, "HTTP 412") {
		t.Fatalf("delete with a stale version: %+v", r)
	}
	if r := run(t, cp.env(), "", "delete", "service", "orders"); r.code != 1 || !strings.Contains(r.errOut, "HTTP 409") {
		t.Fatalf("delete of a service in use: %+v", r)
	}
	if r := run(t, cp.env(), "", "delete", "route", "orders", "--if-version", "1"); r.code != 0 || r.out != "Deleted route orders: revision 8.\n" {
		t.Fatalf("delete: %+v", r)
	}
	if r := run(t, cp.env(), "", "whoami"); r.out != "admin: role admin on every kind, never expires\n" {
		t.Fatalf("whoami: %+v", r)
	}
}

// TestTokensAndErrors: 401 and 403 come back as the control plane's
// problem with a hint; a scoped token's name is in the audit table.
func TestTokensAndErrors(t *testing.T) {
	cp := startControlPlane(t)
	seed(t, cp.admin)
	ctx := context.Background()
	reader, err := cp.admin.CreateToken(ctx, apiv1.TokenSpec{Name: "reader", Role: "read"})
	if err != nil {
		t.Fatal(err)
	}
	routes, err := cp.admin.CreateToken(ctx, apiv1.TokenSpec{Name: "routes-ci", Role: "write", Kinds: []config.Kind{config.KindRoute}})
	if err != nil {
		t.Fatal(err)
	}
	noToken := []string{"PORTICO_URL=" + cp.url}
	if r := run(t, noToken, "", "get", "routes"); r.code != 1 || !strings.Contains(r.errOut, "HTTP 401") || !strings.Contains(r.errOut, "hint: set PORTICO_TOKEN") {
		t.Fatalf("no token: %+v", r)
	}
	asReader := append(noToken, "PORTICO_TOKEN="+reader.Secret)
	dump := run(t, asReader, "", "dump")
	if dump.code != 0 {
		t.Fatalf("dump with a read token: %+v", dump)
	}
	file := writeFile(t, t.TempDir(), "p.yaml", strings.Replace(dump.out, "timeout: 2s", "timeout: 3s", 1))
	env := append(asReader, "PORTICO_SECRET_ISSUER_HS_KEY_0="+hmacSecret)
	if r := run(t, env, "", "apply", "-f", file); r.code != 1 || !strings.Contains(r.errOut, "token:reader has role read; this endpoint needs role write") ||
		!strings.Contains(r.errOut, "HTTP 403") || !strings.Contains(r.errOut, "porticoctl whoami") {
		t.Fatalf("apply with a read token: %+v", r)
	}
	asRoutes := []string{"PORTICO_URL=" + cp.url, "PORTICO_TOKEN=" + routes.Secret, "PORTICO_ACTOR=ci"}
	if r := run(t, asRoutes, "", "whoami"); r.out != "token:routes-ci: role write on route, never expires\n" {
		t.Fatalf("whoami: %+v", r)
	}
	if r := run(t, asRoutes, "", "purge", "users"); r.code != 0 {
		t.Fatalf("purge with a routes token: %+v", r)
	}
	if r := run(t, asRoutes, "", "delete", "consumer", "alice"); r.code != 1 || !strings.Contains(r.errOut, "HTTP 403") {
		t.Fatalf("delete consumer with a routes token: %+v", r)
	}
	audit := run(t, cp.env(), "", "audit", "--after", "8")
	if !strings.Contains(audit.out, "token:routes-ci (as ci)  purge") {
		t.Fatalf("audit does not name the token:\n%s", audit.out)
	}
	tokens := run(t, cp.env(), "", "get", "tokens")
	if !strings.Contains(tokens.out, "routes-ci  write  route") || strings.Contains(tokens.out, routes.Secret) {
		t.Fatalf("get tokens:\n%s", tokens.out)
	}
	// create token: the secret alone on standard output, usable at once.
	made := run(t, cp.env(), "", "create", "token", "pipeline", "--role", "write", "--kinds", "routes,service", "--expires-in", "1h")
	secret := strings.TrimSpace(made.out)
	if made.code != 0 || !strings.HasPrefix(secret, "pat_") || strings.Count(made.out, "\n") != 1 || !strings.Contains(made.errOut, "not shown again") {
		t.Fatalf("create token: %+v", made)
	}
	if r := run(t, []string{"PORTICO_URL=" + cp.url, "PORTICO_TOKEN=" + secret}, "", "whoami"); !strings.HasPrefix(r.out, "token:pipeline: role write on route, service, expires 20") {
		t.Fatalf("whoami with the created token: %+v", r)
	}
	if r := run(t, cp.env(), "", "create", "token", "Bad Name", "--role", "root", "--kinds", "bucket"); r.code != 1 ||
		!strings.Contains(r.errOut, "HTTP 422") || !strings.Contains(r.errOut, "  role: ") || !strings.Contains(r.errOut, "  kinds[0]: ") || !strings.Contains(r.errOut, "  name: ") {
		t.Fatalf("create token with bad fields: %+v", r)
	}
	if r := run(t, cp.env(), "", "delete", "token", "reader"); r.code != 0 {
		t.Fatalf("revoke: %+v", r)
	}
	if r := run(t, asReader, "", "get", "routes"); r.code != 1 || !strings.Contains(r.errOut, "HTTP 401") {
		t.Fatalf("a revoked token: %+v", r)
	}
}

// TestValidateAgreesWithControlPlane: for every validate case, the
// control plane's own dry-run import refuses exactly the fields validate
// reports (or accepts what validate accepts).
func TestValidateAgreesWithControlPlane(t *testing.T) {
	cp := startControlPlane(t)
	cases, _ := filepath.Glob("testdata/validate/*")
	for _, dir := range cases {
		if strings.HasSuffix(dir, ".golden") {
			continue
		}
		src, err := Load(dir, nil, func(k string) (string, bool) { return hmacSecret, k == "HS_SECRET" })
		if err != nil {
			continue // a problem of the files themselves: nothing to send
		}
		_, local := src.Check()
		cfg, err := src.Decode()
		var remote error
		if err == nil {
			_, remote = cp.admin.ImportConfig(context.Background(), cfg, true)
		}
		if err != nil {
			remote = err
		}
		var lf, rf []string
		for _, f := range config.FieldErrors(local) {
			lf = append(lf, f.Field+": "+f.Message)
		}
		for _, f := range problemFields(remote) {
			rf = append(rf, f.Field+": "+f.Message)
		}
		if (local == nil) != (remote == nil) || !slices.Equal(lf, rf) {
			t.Errorf("%s: validate says %v %q, the control plane %v %q", dir, local, lf, remote, rf)
		}
	}
}

// TestTablesGolden renders the data-plane, audit and analytics tables of
// fixed answers.
func TestTablesGolden(t *testing.T) {
	at := time.Date(2026, 12, 3, 9, 30, 0, 0, time.UTC)
	var out bytes.Buffer
	a := &app{io: IO{Out: &out}}
	err := a.writeDataplanes(&apiv1.Dataplanes{Revision: 12, Converged: false, Nodes: []apiv1.Dataplane{
		{ID: "dp-1", Version: "v1.4.0", AppliedRevision: 12, Status: "connected", Converged: true, LastSeen: at,
			TLS: &apiv1.DataplaneTLS{HTTP3: true, TicketKey: "0123456789abcdef"}},
		{ID: "dp-2", Version: "v1.4.0", AppliedRevision: 11, Status: "connected", LastSeen: at.Add(-3 * time.Second),
			Rejected: []config.Rejected{{Kind: config.KindRoute, Name: "legacy"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	out.WriteString("\n")
	err = a.writeAudit(&apiv1.AuditPage{Entries: []apiv1.AuditEntry{
		{Revision: 11, Time: at, Actor: "token:ci (as pipeline)", Action: "import", Summary: "import: 1 create, 1 update, 0 delete"},
		{Revision: 12, Time: at.Add(time.Minute), Actor: "admin", Action: "update", Kind: config.KindRoute, Name: "users", Version: 4},
	}})
	if err != nil {
		t.Fatal(err)
	}
	out.WriteString("\n")
	err = a.writeAnalytics(&apiv1.Analytics{Window: "5m0s", From: at.Add(-5 * time.Minute), To: at, Routes: []apiv1.RouteStats{
		{Route: "users", Requests: 12000, Errors: 12, ClientErrors: 300, ErrorRate: 0.001, RPS: 40, P50: 1.2, P90: 3.4, P99: 12.75},
		{Route: "", Requests: 30, ClientErrors: 30, RPS: 0.1, P50: 0.2, P90: 0.3, P99: 0.4},
	}, Totals: apiv1.RouteStats{Requests: 12030, Errors: 12, ClientErrors: 330, ErrorRate: 0.000997, RPS: 40.1, P50: 1.2, P90: 3.4, P99: 12.7},
		Step: "20s", Series: []apiv1.RouteSeries{
			{Route: "", Points: points(0, 10, 20, 40, 80, 40, 20, 10)},
			{Route: "users", Points: points(0, 0, 7, 7, 14, 14, 0, 0)},
		}})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "tables.golden", out.String())
}

// TestCompletion: bash and zsh scripts, and completion of kinds and of
// names from the control plane.
func TestCompletion(t *testing.T) {
	cp := startControlPlane(t)
	seed(t, cp.admin)
	for shell, mark := range map[string]string{"bash": "__start_porticoctl", "zsh": "#compdef porticoctl", "fish": "complete -c porticoctl"} {
		if r := run(t, nil, "", "completion", shell); r.code != 0 || !strings.Contains(r.out, mark) {
			t.Errorf("completion %s: exit %d, no %q", shell, r.code, mark)
		}
	}
	r := run(t, cp.env(), "", "__complete", "get", "")
	for _, k := range []string{"routes", "services", "consumers", "tokens", "global"} {
		if !strings.Contains(r.out, k+"\n") {
			t.Errorf("completing a kind does not offer %s:\n%s", k, r.out)
		}
	}
	if r := run(t, cp.env(), "", "__complete", "get", "routes", ""); !strings.HasPrefix(r.out, "orders\nusers\n") {
		t.Errorf("completing a route name:\n%s", r.out)
	}
}

var _ = os.Getenv

// TestCACert: an https control plane signed by a private CA is reached
// with --cacert (or PORTICO_CACERT), and refused without it.
func TestCACert(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cat, err := catalog.New(context.Background(), st, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(api.New(api.Options{Catalog: cat, Nodes: nodes.NewRegistry(time.Minute, time.Hour), Log: log,
		AdminToken: adminToken, DataplaneToken: "dp"}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PORTICO_URL=" + srv.URL, "PORTICO_TOKEN=" + adminToken}
	if r := run(t, env, "", "whoami"); r.code != 1 || !strings.Contains(r.errOut, "certificate") {
		t.Fatalf("without --cacert: %+v", r)
	}
	if r := run(t, env, "", "whoami", "--cacert", ca); r.code != 0 || !strings.HasPrefix(r.out, "admin:") {
		t.Fatalf("with --cacert: %+v", r)
	}
	if r := run(t, append(env, "PORTICO_CACERT="+ca), "", "whoami"); r.code != 0 {
		t.Fatalf("with PORTICO_CACERT: %+v", r)
	}
}

func points(rps ...float64) []apiv1.SeriesPoint {
	p := make([]apiv1.SeriesPoint, len(rps))
	for i, r := range rps {
		p[i].RPS = r
	}
	return p
}

// TestAnalyticsTrend: the real control plane's series for a route that
// received a report reach the table as a sparkline.
func TestAnalyticsTrend(t *testing.T) {
	cp := startControlPlane(t)
	if r := run(t, cp.env(), "", "analytics"); r.code != 0 || !strings.Contains(r.out, "TREND (REQ/S, 20s STEPS)") || !strings.Contains(r.out, "TOTAL") {
		t.Fatalf("analytics with no traffic: %+v", r)
	}
	if r := run(t, cp.env(), "", "analytics", "--trend=false"); r.code != 0 || strings.Contains(r.out, "TREND") {
		t.Fatalf("analytics --trend=false: %+v", r)
	}
}
