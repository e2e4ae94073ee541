package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/controlplane/internal/analytics"
	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/nodes"
	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// want is what the per-endpoint test expects an endpoint to ask of an
// admin token. It is written here by hand, apart from the server's rules:
// the test compares the two, and an endpoint missing here fails it.
type want struct {
	role  string // read, write, admin; "dataplane" for the sync API, "public" for probes
	kind  config.Kind
	whole bool
}

var endpointAccess = map[string]want{
	"GET /healthz":                              {role: "public"},
	"GET /readyz":                               {role: "public"},
	"GET /metrics":                              {role: "public"},
	"GET /ui":                                   {role: "public"}, // the web UI's static files (they hold no data)
	"GET /ui/*":                                 {role: "public"},
	"HEAD /ui/*":                                {role: "public"},
	"GET /v1/snapshot":                          {role: "dataplane"},
	"POST /v1/report":                           {role: "dataplane"},
	"GET /v1/audit":                             {role: "read"},
	"GET /v1/dataplanes":                        {role: "read"},
	"GET /v1/analytics":                         {role: "read"},
	"GET /v1/store":                             {role: "read"},
	"GET /v1/openapi.json":                      {role: "read"},
	"GET /v1/whoami":                            {role: "read"},
	"POST /v1/store/adopt":                      {role: "admin"},
	"GET /v1/config":                            {role: "read", whole: true},
	"PUT /v1/config":                            {role: "write", whole: true},
	"GET /v1/global":                            {role: "read", kind: "global"},
	"PUT /v1/global":                            {role: "write", kind: "global"},
	"GET /v1/tokens":                            {role: "admin"},
	"POST /v1/tokens":                           {role: "admin"},
	"GET /v1/tokens/:name":                      {role: "admin"},
	"DELETE /v1/tokens/:name":                   {role: "admin"},
	"GET /v1/consumers/:name/api-keys":          {role: "read", kind: config.KindConsumer},
	"POST /v1/consumers/:name/api-keys":         {role: "write", kind: config.KindConsumer},
	"DELETE /v1/consumers/:name/api-keys/:id":   {role: "write", kind: config.KindConsumer},
	"GET /v1/consumers/:name/basic-auth":        {role: "read", kind: config.KindConsumer},
	"POST /v1/consumers/:name/basic-auth":       {role: "write", kind: config.KindConsumer},
	"DELETE /v1/consumers/:name/basic-auth/:id": {role: "write", kind: config.KindConsumer},
	"POST /v1/routes/:name/cache/purge":         {role: "write", kind: config.KindRoute},
}

func init() {
	for plural, kind := range map[string]config.Kind{"services": config.KindService, "routes": config.KindRoute,
		"consumers": config.KindConsumer, "issuers": config.KindIssuer, "certificates": config.KindCertificate} {
		for _, m := range []string{"GET /v1/" + plural, "GET /v1/" + plural + "/:name"} {
			endpointAccess[m] = want{role: "read", kind: kind}
		}
		for _, m := range []string{"POST /v1/" + plural, "PUT /v1/" + plural + "/:name", "DELETE /v1/" + plural + "/:name"} {
			endpointAccess[m] = want{role: "write", kind: kind}
		}
	}
}

// caller is one way of calling the API in the per-endpoint table.
type caller struct {
	name  string
	token string
	// role and kinds of an authenticated admin caller; "" for callers
	// that must get 401 from every admin endpoint.
	role  string
	kinds []config.Kind
	dp    bool // the data-plane token
}

func rank(role string) int { return slices.Index([]string{"read", "write", "admin"}, role) + 1 }

// TestEveryEndpointByRole calls every route the server registers (taken
// from its router, so a new endpoint without an entry in endpointAccess
// fails here) with every kind of caller, and checks 401 (no, unknown,
// expired or revoked token), 403 (a token without the role or kind) or
// neither. Write bodies are malformed, so that an allowed write answers
// 400 and changes nothing for the next row.
func TestEveryEndpointByRole(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cat, err := catalog.New(context.Background(), st, log)
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	e := New(Options{Catalog: cat, Nodes: nodes.NewRegistry(time.Minute, time.Hour), Log: log, MaxWait: time.Second,
		AdminToken: adminToken, DataplaneToken: dpToken, Analytics: analytics.NewAggregator(time.Hour, 10*time.Second, time.Now),
		Gatherer: prometheus.NewRegistry(), Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	ts := &testServer{URL: srv.URL, cat: cat, http: srv.Client()}
	admin, err := client.New(srv.URL, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	mint := func(spec apiv1.TokenSpec) string {
		t.Helper()
		tok, err := admin.CreateToken(ctx, spec)
		if err != nil {
			t.Fatalf("create token %s: %v", spec.Name, err)
		}
		return tok.Secret
	}
	soon := time.Now().Add(time.Hour)
	callers := []caller{
		{name: "no token"},
		{name: "unknown token", token: "pat_" + strings.Repeat("x", 43)},
		{name: "data-plane token on admin", token: dpToken, dp: true},
		{name: "expired", token: mint(apiv1.TokenSpec{Name: "expired", Role: "admin", ExpiresAt: &soon})},
		{name: "revoked", token: mint(apiv1.TokenSpec{Name: "revoked", Role: "admin"})},
		{name: "read", token: mint(apiv1.TokenSpec{Name: "reader", Role: "read"}), role: "read"},
		{name: "read consumers", token: mint(apiv1.TokenSpec{Name: "reader-consumers", Role: "read", Kinds: []config.Kind{config.KindConsumer}}), role: "read", kinds: []config.Kind{config.KindConsumer}},
		{name: "write", token: mint(apiv1.TokenSpec{Name: "writer", Role: "write"}), role: "write"},
		{name: "write routes", token: mint(apiv1.TokenSpec{Name: "writer-routes", Role: "write", Kinds: []config.Kind{config.KindRoute}}), role: "write", kinds: []config.Kind{config.KindRoute}},
		{name: "write global", token: mint(apiv1.TokenSpec{Name: "writer-global", Role: "write", Kinds: []config.Kind{"global"}}), role: "write", kinds: []config.Kind{"global"}},
		{name: "admin", token: mint(apiv1.TokenSpec{Name: "ops", Role: "admin"}), role: "admin"},
		{name: "bootstrap admin", token: adminToken, role: "admin"},
	}
	if _, err := admin.DeleteToken(ctx, "revoked"); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(2 * time.Hour)) // "expired" is now past its expiry

	routes := e.Routes()
	if len(routes) < len(endpointAccess) {
		t.Fatalf("the router holds %d routes, fewer than the %d endpoints expected", len(routes), len(endpointAccess))
	}
	seen := map[string]bool{}
	for _, r := range routes {
		notFound := r.Method == echo.RouteNotFound
		key := r.Method + " " + r.Path
		w, ok := endpointAccess[key]
		switch {
		case notFound:
			w = want{role: "read"} // the admin group's 404: authenticated first
		case !ok:
			t.Errorf("%s is served but has no row in endpointAccess: decide who may call it", key)
			continue
		}
		seen[key] = true
		method, path := r.Method, strings.NewReplacer(":name", "nope", ":id", "nope", "*", "no/such/path").Replace(r.Path)
		if notFound {
			method = http.MethodGet
		}
		body := ""
		if method == http.MethodPost || method == http.MethodPut {
			body = "{"
		}
		for _, c := range callers {
			status, hdr, data := ts.call(t, method, path, c.token, body)
			var expect string
			switch {
			case w.role == "public":
				expect = "pass"
			case w.role == "dataplane":
				expect = map[bool]string{true: "pass", false: "401"}[c.dp]
			case c.role == "":
				expect = "401"
			case rank(c.role) < rank(w.role), w.whole && len(c.kinds) > 0, w.kind != "" && len(c.kinds) > 0 && !slices.Contains(c.kinds, w.kind):
				expect = "403"
			default:
				expect = "pass"
			}
			got := "pass"
			if status == http.StatusUnauthorized || status == http.StatusForbidden {
				got = fmt.Sprint(status)
			}
			if got != expect {
				t.Errorf("%s %s as %s: %d, want %s; body %s", method, path, c.name, status, expect, data)
				continue
			}
			if got != "pass" {
				if ct := hdr.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("%s %s as %s: %d with Content-Type %q, want problem+json", method, path, c.name, status, ct)
				}
				if got == "401" && hdr.Get("WWW-Authenticate") == "" {
					t.Errorf("%s %s as %s: 401 without WWW-Authenticate", method, path, c.name)
				}
			}
		}
	}
	t.Logf("%d routes x %d callers", len(seen), len(callers))
	for key := range endpointAccess {
		if !seen[key] {
			t.Errorf("endpointAccess lists %s, which the router does not serve", key)
		}
	}
	for _, c := range callers {
		if c.token != "" && strings.Contains(logs.String(), c.token) {
			t.Errorf("the log holds the %s token", c.name)
		}
	}
}

// TestTokenLifecycle: a token is shown once, listed without its secret or
// hash, names itself in the audit log, sees what it may do in whoami, and
// is refused once revoked.
func TestTokenLifecycle(t *testing.T) {
	s := newTestServer(t, false)
	ctx := context.Background()
	created, err := s.admin.CreateToken(ctx, apiv1.TokenSpec{Name: "ci", Role: "write", Kinds: []config.Kind{config.KindService, config.KindRoute}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Secret, "pat_") || len(created.Secret) != 47 || created.Prefix != created.Secret[:8] {
		t.Fatalf("created token %+v: want a pat_ secret of 43 base64url characters and its prefix", created)
	}
	for _, path := range []string{"/v1/tokens", "/v1/tokens/ci", "/v1/audit", "/v1/config"} {
		_, _, data := s.call(t, "GET", path, adminToken, "")
		if bytes.Contains(data, []byte(created.Secret)) || bytes.Contains(data, []byte("sha256:")) {
			t.Errorf("GET %s shows the secret or its hash: %s", path, data)
		}
	}
	ci, err := client.New(s.URL, created.Secret, client.WithActor("pipeline"))
	if err != nil {
		t.Fatal(err)
	}
	me, err := ci.Whoami(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if me.Principal != "token:ci" || me.Role != "write" || len(me.Kinds) != 2 {
		t.Fatalf("whoami = %+v", me)
	}
	if _, _, err := ci.Services().Create(ctx, config.Service{Name: "users", Targets: []config.Target{{URL: "http://127.0.0.1:1"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ci.Consumers().Create(ctx, config.Consumer{Name: "alice"}); client.StatusOf(err) != http.StatusForbidden {
		t.Fatalf("a token limited to services and routes created a consumer: %v", err)
	}
	page, err := s.admin.Audit(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actors []string
	for _, e := range page.Entries {
		actors = append(actors, fmt.Sprintf("%s %s %s by %s", e.Action, e.Kind, e.Name, e.Actor))
	}
	wantActors := []string{"create token ci by admin (as alice)", "create service users by token:ci (as pipeline)"}
	if !slices.Equal(actors, wantActors) {
		t.Fatalf("audit = %q, want %q", actors, wantActors)
	}
	if _, err := s.admin.CreateToken(ctx, apiv1.TokenSpec{Name: "ci", Role: "read"}); client.StatusOf(err) != http.StatusConflict {
		t.Fatalf("a second token named ci: %v, want 409", err)
	}
	if _, err := s.admin.DeleteToken(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := ci.Whoami(ctx); client.StatusOf(err) != http.StatusUnauthorized {
		t.Fatalf("a revoked token: %v, want 401", err)
	}
	if _, err := s.admin.DeleteToken(ctx, "ci"); client.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("revoking twice: %v, want 404", err)
	}
}

// TestTokenValidation: the spec's field paths reach the problem.
func TestTokenValidation(t *testing.T) {
	s := newTestServer(t, false)
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	cases := []struct {
		name, body string
		status     int
		fields     []string
	}{
		{"no role", `{"name":"a"}`, 422, []string{"role"}},
		{"bad role and name", `{"name":"A B","role":"root"}`, 422, []string{"name", "role"}},
		{"kinds on admin", `{"name":"a","role":"admin","kinds":["route"]}`, 422, []string{"kinds"}},
		{"unknown and repeated kinds", `{"name":"a","role":"read","kinds":["route","bucket","route"]}`, 422, []string{"kinds[1]", "kinds[2]"}},
		{"expiry in the past", `{"name":"a","role":"read","expires_at":"` + past + `"}`, 422, []string{"expires_at"}},
		{"unknown field", `{"name":"a","role":"read","scope":"x"}`, 400, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, data := s.call(t, "POST", "/v1/tokens", adminToken, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, data)
			}
			var p struct {
				Errors []config.FieldError `json:"errors"`
			}
			if err := json.Unmarshal(data, &p); err != nil {
				t.Fatal(err)
			}
			var fields []string
			for _, f := range p.Errors {
				fields = append(fields, f.Field)
			}
			if tc.fields != nil && !slices.Equal(fields, tc.fields) {
				t.Fatalf("fields %q, want %q: %s", fields, tc.fields, data)
			}
		})
	}
}

// TestTokensAcrossReplicas: two control planes on one Consul KV store. A
// token created on one works on the other once it follows the store, its
// changes are audited under its name there, and a revocation on the second
// reaches the first.
func TestTokensAcrossReplicas(t *testing.T) {
	agent := testutil.StartConsul(t)
	a, b := newConsulServer(t, agent), newConsulServer(t, agent)
	created, err := a.admin.CreateToken(context.Background(), apiv1.TokenSpec{Name: "ci", Role: "write", Kinds: []config.Kind{config.KindService}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		code, _, _ := b.call(t, "PUT", "/v1/services/users", created.Secret, svcBody)
		return code == http.StatusCreated
	}, "the token created on a accepted by b")
	if code, _, body := b.call(t, "PUT", "/v1/routes/r", created.Secret, `{"paths":["/r"],"service":"users"}`); code != http.StatusForbidden {
		t.Fatalf("a services-only token writing a route on b: %d %s", code, body)
	}
	page, err := a.admin.Audit(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(page.Entries); n != 2 || page.Entries[1].Actor != "token:ci" || page.Entries[1].Kind != config.KindService {
		t.Fatalf("audit on a after b's write: %+v", page.Entries)
	}
	if _, err := b.admin.DeleteToken(context.Background(), "ci"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		code, _, _ := a.call(t, "GET", "/v1/whoami", created.Secret, "")
		return code == http.StatusUnauthorized
	}, "the token revoked on b refused by a")
}
