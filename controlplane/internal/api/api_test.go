package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portico-gw/portico/controlplane/internal/analytics"
	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/nodes"
	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
	"github.com/portico-gw/portico/shared/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	adminToken = "admin-secret"
	dpToken    = "dp-secret"
)

type testServer struct {
	URL   string
	cat   *catalog.Catalog
	admin *client.Client
	http  *http.Client
}

func newTestServer(t *testing.T, dev bool) *testServer {
	t.Helper()
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
	return serveCatalog(t, cat, log, dev)
}

// serveCatalog serves cat's admin and sync API on a test listener: in dev
// mode without tokens, else with adminToken and dpToken.
func serveCatalog(t *testing.T, cat *catalog.Catalog, log *slog.Logger, dev bool) *testServer {
	t.Helper()
	o := Options{Catalog: cat, Nodes: nodes.NewRegistry(time.Minute, time.Hour), Log: log, Dev: dev, MaxWait: 5 * time.Second,
		Analytics: analytics.NewAggregator(time.Hour, 10*time.Second, time.Now)}
	if !dev {
		o.AdminToken, o.DataplaneToken = adminToken, dpToken
	}
	srv := httptest.NewServer(New(o))
	t.Cleanup(srv.Close)
	admin, err := client.New(srv.URL, adminToken, client.WithActor("alice"))
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{URL: srv.URL, cat: cat, admin: admin, http: srv.Client()}
}

// call sends a raw request and returns status, headers and body.
func (s *testServer) call(t *testing.T, method, path, token, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

// reimportExport puts GET /v1/config's export back as it is and fails
// unless that changed nothing ("update":0); it returns the export and the
// import's answer, for checks of what they show.
func (s *testServer) reimportExport(t *testing.T) (export, answer []byte) {
	t.Helper()
	_, export = s.mustStatus(t, 200, "GET", "/v1/config", "")
	var e struct {
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(export, &e); err != nil {
		t.Fatal(err)
	}
	_, answer = s.mustStatus(t, 200, "PUT", "/v1/config", string(e.Config))
	if !strings.Contains(string(answer), `"update":0`) {
		t.Fatalf("re-importing the export changed something: %s", answer)
	}
	return export, answer
}

func (s *testServer) mustStatus(t *testing.T, want int, method, path, body string, hdr ...string) (http.Header, []byte) {
	t.Helper()
	got, h, data := s.call(t, method, path, adminToken, body, hdr...)
	if got != want {
		t.Fatalf("%s %s = %d, want %d; body: %s", method, path, got, want, data)
	}
	return h, data
}

var volatile = regexp.MustCompile(`"(time|created_at|updated_at|request_id|first_seen|last_seen)":"[^"]*"`)

// golden compares a response body with testdata/<name>.golden, with
// timestamps and request ids blanked.
func golden(t *testing.T, name string, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: not JSON: %s", name, body)
	}
	pretty, _ := json.MarshalIndent(v, "", "  ")
	got := volatile.ReplaceAll(pretty, []byte(`"$1":"*"`))
	got = append(got, '\n')
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

const svcBody = `{"targets":[{"url":"http://127.0.0.1:9001","weight":1}]}`

func TestAuthentication(t *testing.T) {
	s := newTestServer(t, false)
	e := New(Options{Catalog: s.cat, Nodes: nodes.NewRegistry(time.Minute, time.Hour), AdminToken: "x", DataplaneToken: "y",
		Analytics: analytics.NewAggregator(time.Hour, 10*time.Second, time.Now)})
	open := map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true, "/ui": true}
	checked := 0
	for _, r := range e.Routes() {
		path := strings.ReplaceAll(strings.ReplaceAll(r.Path, ":name", "x"), ":id", "y")
		if open[r.Path] || strings.HasSuffix(r.Path, "/*") || strings.HasPrefix(r.Method, "echo_route") {
			continue
		}
		checked++
		for _, tok := range []string{"", "wrong", strings.Repeat("a", 200)} {
			code, h, body := s.call(t, r.Method, path, tok, "{}")
			if code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q = %d, want 401", r.Method, path, tok, code)
			}
			if !strings.Contains(h.Get("WWW-Authenticate"), "Bearer") || h.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s %s: 401 without Bearer challenge or problem body: %v %s", r.Method, path, h, body)
			}
		}
	}
	if checked < 15 {
		t.Fatalf("walked only %d routes", checked)
	}
	// Each token is good for its own API only.
	if code, _, _ := s.call(t, "GET", "/v1/snapshot?after=0&wait=0s", adminToken, "", apiv1.HeaderNodeID, "n"); code != 401 {
		t.Errorf("admin token on the sync API = %d, want 401", code)
	}
	if code, _, _ := s.call(t, "GET", "/v1/services", dpToken, ""); code != 401 {
		t.Errorf("data-plane token on the admin API = %d, want 401", code)
	}
	if code, _, _ := s.call(t, "GET", "/v1/services", adminToken, ""); code != 200 {
		t.Errorf("admin token = %d, want 200", code)
	}
	if code, _, _ := s.call(t, "GET", "/healthz", "", ""); code != 200 {
		t.Errorf("healthz = %d, want 200 without a token", code)
	}

	dev := newTestServer(t, true)
	if code, _, _ := dev.call(t, "GET", "/v1/services", "", ""); code != 200 {
		t.Errorf("dev mode without token = %d, want 200", code)
	}
}

func TestObjectLifecycle(t *testing.T) {
	s := newTestServer(t, false)

	h, body := s.mustStatus(t, 201, "POST", "/v1/services", `{"name":"users","targets":[{"url":"http://127.0.0.1:9001"}]}`)
	if h.Get("ETag") != `"1"` || h.Get("Location") != "/v1/services/users" || h.Get(apiv1.HeaderRevision) != "1" {
		t.Fatalf("create headers: %v", h)
	}
	var svc config.Service
	if err := json.Unmarshal(body, &svc); err != nil || svc.Version != 1 || svc.Targets[0].Weight != 1 {
		t.Fatalf("created service %s (err %v): want version 1 and the default weight spelled out", body, err)
	}
	s.mustStatus(t, 409, "POST", "/v1/services", `{"name":"users","targets":[{"url":"http://127.0.0.1:9001"}]}`)

	// Update, then an identical write: no new version, no new revision.
	h, _ = s.mustStatus(t, 200, "PUT", "/v1/services/users", `{"targets":[{"url":"http://127.0.0.1:9002"}]}`)
	if h.Get("ETag") != `"2"` || h.Get(apiv1.HeaderRevision) != "2" {
		t.Fatalf("update headers: %v", h)
	}
	h, _ = s.mustStatus(t, 200, "PUT", "/v1/services/users", `{"targets":[{"url":"http://127.0.0.1:9002","weight":1}]}`)
	if h.Get("ETag") != `"2"` || h.Get(apiv1.HeaderRevision) != "2" {
		t.Fatalf("no-op write changed version or revision: %v", h)
	}

	// Conditional writes.
	s.mustStatus(t, 412, "PUT", "/v1/services/users", svcBody, "If-Match", `"1"`)
	s.mustStatus(t, 412, "PUT", "/v1/services/users", svcBody, "If-None-Match", "*")
	s.mustStatus(t, 412, "PUT", "/v1/services/ghost", svcBody, "If-Match", `"1"`)
	s.mustStatus(t, 412, "PUT", "/v1/services/users", svcBody, "If-Match", `"garbage"`)
	h, _ = s.mustStatus(t, 200, "PUT", "/v1/services/users", svcBody, "If-Match", `W/"2"`)
	if h.Get("ETag") != `"3"` {
		t.Fatalf("conditional update ETag = %s", h.Get("ETag"))
	}
	s.mustStatus(t, 201, "PUT", "/v1/services/orders", svcBody, "If-None-Match", "*")

	// Routes and referential integrity.
	s.mustStatus(t, 201, "PUT", "/v1/routes/users", `{"paths":["/users/*"],"methods":["get"],"service":"users","strip_prefix":true}`)
	_, body = s.mustStatus(t, 200, "GET", "/v1/routes/users", "")
	if !strings.Contains(string(body), `"methods":["GET"]`) {
		t.Fatalf("methods not normalised: %s", body)
	}
	s.mustStatus(t, 409, "DELETE", "/v1/services/users", "")
	s.mustStatus(t, 412, "DELETE", "/v1/routes/users", "", "If-Match", `"7"`)
	s.mustStatus(t, 204, "DELETE", "/v1/routes/users", "", "If-Match", `"1"`)
	s.mustStatus(t, 404, "DELETE", "/v1/routes/users", "")
	s.mustStatus(t, 204, "DELETE", "/v1/services/users", "")
	s.mustStatus(t, 404, "GET", "/v1/services/users", "")

	_, body = s.mustStatus(t, 200, "GET", "/v1/services", "")
	var list apiv1.List[config.Service]
	if err := json.Unmarshal(body, &list); err != nil || len(list.Items) != 1 || list.Items[0].Name != "orders" {
		t.Fatalf("list = %s", body)
	}

	// Audit: every accepted change, in order, with the actor.
	page, err := s.admin.Audit(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, e := range page.Entries {
		if e.Revision != int64(i+1) {
			t.Fatalf("audit entry %d has revision %d", i, e.Revision)
		}
		got = append(got, fmt.Sprintf("%s %s %s v%d", e.Action, e.Kind, e.Name, e.Version))
	}
	want := []string{
		"create service users v1", "update service users v2", "update service users v3",
		"create service orders v1", "create route users v1", "delete route users v1", "delete service users v3",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("audit (-want +got):\n%s", diff)
	}
	if a := page.Entries[0].Actor; a != "admin" {
		t.Fatalf("raw-HTTP actor = %q, want admin", a)
	}
	if _, _, err := s.admin.Services().Put(context.Background(), "billing", config.Service{Targets: []config.Target{{URL: "http://h"}}}); err != nil {
		t.Fatal(err)
	}
	page, _ = s.admin.Audit(context.Background(), 7, 10)
	if len(page.Entries) != 1 || page.Entries[0].Actor != "admin (as alice)" || page.Next != 8 {
		t.Fatalf("audit after 7 = %+v", page)
	}
}

func TestBadInput(t *testing.T) {
	s := newTestServer(t, false)
	s.mustStatus(t, 201, "PUT", "/v1/services/users", svcBody)
	rev := s.cat.Current().State.Revision
	tests := []struct {
		name, method, path, body string
		status                   int
		golden                   string
		hdr                      []string
	}{
		{"invalid route", "PUT", "/v1/routes/r", `{"paths":["users","/a//b"],"methods":["GTE"],"hosts":["Bad Host"],"service":"users","timeout":"2h"}`, 422, "route_invalid", nil},
		{"missing service", "PUT", "/v1/routes/r", `{"paths":["/a"],"service":"nope"}`, 422, "route_missing_service", nil},
		{"unknown field", "PUT", "/v1/routes/r", `{"paths":["/a"],"service":"users","stripprefix":true}`, 400, "route_unknown_field", nil},
		{"wrong type", "PUT", "/v1/services/s", `{"targets":[{"url":"http://h","weight":"heavy"}]}`, 400, "", nil},
		{"malformed", "PUT", "/v1/services/s", `{"targets":[`, 400, "", nil},
		{"trailing garbage", "PUT", "/v1/services/s", svcBody + `x`, 400, "", nil},
		{"name mismatch", "PUT", "/v1/services/s", `{"name":"t","targets":[{"url":"http://h"}]}`, 422, "", nil},
		{"bad name", "PUT", "/v1/services/a$b", svcBody, 422, "", nil},
		{"post without name", "POST", "/v1/services", svcBody, 422, "", nil},
		{"not json", "PUT", "/v1/services/s", svcBody, 415, "", []string{"Content-Type", "text/plain"}},
		{"too large", "PUT", "/v1/services/s", `{"targets":[{"url":"http://h/` + strings.Repeat("a", 2<<20) + `"}]}`, 413, "", nil},
		{"bad audit limit", "GET", "/v1/audit?limit=0", "", 400, "", nil},
		{"bad dry_run", "PUT", "/v1/config?dry_run=maybe", `{}`, 400, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := s.call(t, tt.method, tt.path, adminToken, tt.body, tt.hdr...)
			if code != tt.status {
				t.Fatalf("status = %d, want %d: %s", code, tt.status, body)
			}
			if ct := h.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type = %q, want application/problem+json", ct)
			}
			if tt.golden != "" {
				golden(t, tt.golden, body)
			}
			if got := s.cat.Current().State.Revision; got != rev {
				t.Fatalf("a refused request changed the revision: %d -> %d", rev, got)
			}
		})
	}
}

func TestConfigImportExport(t *testing.T) {
	s := newTestServer(t, false)
	ctx := context.Background()
	cfg := &config.Config{
		Services: []config.Service{{Name: "users", Targets: []config.Target{{URL: "http://127.0.0.1:9001"}}}},
		Routes:   []*config.Route{{Name: "users", Paths: []string{"/users/*"}, Service: "users"}},
	}
	res, err := s.admin.ImportConfig(ctx, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != 1 || res.Summary["create"] != 2 {
		t.Fatalf("first import = %+v", res)
	}
	// Export and import back: nothing changes.
	exp, err := s.admin.ExportConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err = s.admin.ImportConfig(ctx, exp.Config, false)
	if err != nil || res.Revision != 1 || len(res.Changes) != 0 {
		t.Fatalf("re-import of an export = %+v, %v; want no change", res, err)
	}
	// The export envelope itself is accepted too.
	_, raw := s.mustStatus(t, 200, "GET", "/v1/config", "")
	_, body := s.mustStatus(t, 200, "PUT", "/v1/config", string(raw))
	if !strings.Contains(string(body), `"changes":[]`) {
		t.Fatalf("envelope re-import: %s", body)
	}

	// Dry run: a diff, and nothing stored.
	next := exp.Config.Clone()
	next.Routes[0].StripPrefix = true
	next.Routes = append(next.Routes, &config.Route{Name: "health", Paths: []string{"/health"}, Service: "users"})
	next.Consumers = append(next.Consumers, config.Consumer{Name: "alice"})
	next.Services[0].Targets = append(next.Services[0].Targets, config.Target{URL: "http://127.0.0.1:9002"})
	buf, _ := json.Marshal(next)
	_, body = s.mustStatus(t, 200, "PUT", "/v1/config?dry_run=true", string(buf))
	golden(t, "import_dry_run", body)
	if s.cat.Current().State.Revision != 1 {
		t.Fatal("dry run changed the revision")
	}

	// A stale If-Match refuses; a current one applies, as one revision.
	s.mustStatus(t, 412, "PUT", "/v1/config", string(buf), "If-Match", `"0"`)
	h, _ := s.mustStatus(t, 200, "PUT", "/v1/config", string(buf), "If-Match", `"1"`)
	if h.Get(apiv1.HeaderRevision) != "2" {
		t.Fatalf("import revision = %s, want 2", h.Get(apiv1.HeaderRevision))
	}
	r, err := s.admin.Routes().Get(ctx, "users")
	if err != nil || r.Version != 2 || !r.StripPrefix {
		t.Fatalf("imported route = %+v, %v", r, err)
	}
	hr, err := s.admin.Routes().Get(ctx, "health")
	if err != nil || hr.Version != 1 {
		t.Fatalf("created route = %+v, %v", hr, err)
	}

	// An invalid import names the field in the submitted document and
	// changes nothing.
	bad := `{"services":[],"routes":[{"name":"x","paths":["/x"],"service":"users"},{"name":"y","paths":["/y"],"service":"nope"}]}`
	_, body = s.mustStatus(t, 422, "PUT", "/v1/config", bad)
	if !strings.Contains(string(body), `"field":"routes[1].service"`) {
		t.Fatalf("invalid import problem: %s", body)
	}
	// Routes are held by pointer: a null one is refused, not a crash.
	_, body = s.mustStatus(t, 422, "PUT", "/v1/config", `{"services":[],"routes":[{"name":"x","paths":["/x"],"service":"users"},null]}`)
	if !strings.Contains(string(body), `"field":"routes[1]"`) {
		t.Fatalf("null route problem: %s", body)
	}
	ambiguous := `{"services":[{"name":"s","targets":[{"url":"http://h"}]}],"routes":[{"name":"x","paths":["/a/{id}"],"service":"s"},{"name":"y","paths":["/a/{name}"],"service":"s"}]}`
	s.mustStatus(t, 409, "PUT", "/v1/config", ambiguous)
	if s.cat.Current().State.Revision != 2 {
		t.Fatal("refused import changed the revision")
	}
	page, _ := s.admin.Audit(ctx, 1, 10)
	if len(page.Entries) != 1 || page.Entries[0].Action != "import" || page.Entries[0].Summary != "import: 2 create, 2 update, 0 delete" {
		t.Fatalf("import audit = %+v", page.Entries)
	}
}

func TestSnapshotLongPoll(t *testing.T) {
	s := newTestServer(t, false)
	ctx := context.Background()
	dp, err := client.New(s.URL, dpToken)
	if err != nil {
		t.Fatal(err)
	}
	poll := func(after int64, wait time.Duration) ([]byte, error) {
		p, err := dp.PollSnapshot(ctx, client.PollRequest{After: after, Wait: wait, NodeID: "dp-1", NodeVersion: "test", AppliedRevision: after})
		if err != nil {
			return nil, err
		}
		if p.Dataplanes < 1 {
			return nil, fmt.Errorf("poll answer without %s", apiv1.HeaderDataplanes)
		}
		return p.Snapshot, nil
	}
	// Nothing newer than revision 0 yet: 304 when the wait runs out.
	raw, err := poll(0, 50*time.Millisecond)
	if err != nil || raw != nil {
		t.Fatalf("poll on an empty store = %q, %v; want 304", raw, err)
	}
	if _, _, err := s.admin.Services().Put(ctx, "users", config.Service{Targets: []config.Target{{URL: "http://h"}}}); err != nil {
		t.Fatal(err)
	}
	raw, err = poll(0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Decode(raw)
	if err != nil || snap.Revision != 1 || len(snap.Config.Services) != 1 {
		t.Fatalf("snapshot = %+v, %v", snap, err)
	}

	// A waiting poll wakes as soon as a write commits.
	type result struct {
		raw []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		raw, err := poll(1, 5*time.Second)
		done <- result{raw, err}
	}()
	testutil.Eventually(t, 5*time.Second, func() bool {
		d, _ := s.admin.Dataplanes(ctx)
		return len(d.Nodes) == 1 && d.Nodes[0].Polling
	}, "the poll registered")
	if _, _, err := s.admin.Routes().Put(ctx, "r", config.Route{Paths: []string{"/r"}, Service: "users"}); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	snap, err = snapshot.Decode(res.raw)
	if err != nil || snap.Revision != 2 {
		t.Fatalf("woken poll = %+v, %v", snap, err)
	}

	// The registry shows the node; it has not converged until it reports 2.
	d, err := s.admin.Dataplanes(ctx)
	if err != nil || len(d.Nodes) != 1 || d.Nodes[0].ID != "dp-1" || d.Converged || d.Revision != 2 {
		t.Fatalf("dataplanes = %+v, %v", d, err)
	}
	if _, err := poll(2, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	d, _ = s.admin.Dataplanes(ctx)
	if !d.Converged || !d.Nodes[0].Converged || d.Nodes[0].AppliedRevision != 2 {
		t.Fatalf("after reporting revision 2: %+v", d)
	}

	// gzip on request; a node id is required.
	code, h, body := s.call(t, "GET", "/v1/snapshot?after=0", dpToken, "", "Accept-Encoding", "gzip", apiv1.HeaderNodeID, "n2")
	if code != 200 || h.Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip poll = %d %v", code, h)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if _, err := snapshot.Decode(plain); err != nil {
		t.Fatalf("gzip snapshot: %v", err)
	}
	if code, _, _ := s.call(t, "GET", "/v1/snapshot?after=0", dpToken, ""); code != 400 {
		t.Fatalf("poll without node id = %d, want 400", code)
	}
	if code, _, _ := s.call(t, "GET", "/v1/snapshot?wait=forever", dpToken, "", apiv1.HeaderNodeID, "n"); code != 400 {
		t.Fatalf("bad wait = %d, want 400", code)
	}
}

// TestConcurrentWriters: many writers doing read-modify-write with If-Match
// on one object. Every success is a distinct version; losers get 412, and
// no write is silently overwritten.
func TestConcurrentWriters(t *testing.T) {
	s := newTestServer(t, false)
	ctx := context.Background()
	if _, _, err := s.admin.Services().Put(ctx, "svc", config.Service{Targets: []config.Target{{URL: "http://h:1"}}}); err != nil {
		t.Fatal(err)
	}
	const writers, rounds = 20, 10
	var (
		mu        sync.Mutex
		successes int
		wg        sync.WaitGroup
		errs      = make(chan error, writers)
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				cur, err := s.admin.Services().Get(ctx, "svc")
				if err != nil {
					errs <- err
					return
				}
				next := *cur
				next.Targets = append(next.Targets, config.Target{URL: fmt.Sprintf("http://w%d-%d:1", w, i)})
				_, _, err = s.admin.Services().Put(ctx, "svc", next, client.IfMatch(cur.Version))
				switch client.StatusOf(err) {
				case 0:
					mu.Lock()
					successes++
					mu.Unlock()
				case http.StatusPreconditionFailed:
				default:
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	final, err := s.admin.Services().Get(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	// Each success appended exactly one target on top of the previous one.
	if len(final.Targets) != 1+successes || final.Version != int64(1+successes) {
		t.Fatalf("%d successful writes but %d targets and version %d: an update was lost", successes, len(final.Targets), final.Version)
	}
	if successes == 0 {
		t.Fatal("no write succeeded")
	}
}

func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	e := New(Options{Catalog: nil, Nodes: nodes.NewRegistry(time.Minute, time.Hour), AdminToken: "x", DataplaneToken: "y",
		Analytics: analytics.NewAggregator(time.Hour, 10*time.Second, time.Now)})
	seen := map[string]bool{}
	for _, r := range e.Routes() {
		// The web UI's pages (/ui, /ui/*) are not part of the API.
		if strings.HasSuffix(r.Path, "/*") || r.Path == "/ui" || strings.HasPrefix(r.Method, "echo_route") {
			continue
		}
		path := strings.ReplaceAll(strings.ReplaceAll(r.Path, ":name", "{name}"), ":id", "{id}")
		seen[path+" "+r.Method] = true
		if _, ok := doc.Paths[path][strings.ToLower(r.Method)]; !ok {
			t.Errorf("%s %s is served but not in openapi.json", r.Method, path)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			if !seen[path+" "+strings.ToUpper(method)] {
				t.Errorf("openapi.json documents %s %s, which is not served", strings.ToUpper(method), path)
			}
		}
	}
}
