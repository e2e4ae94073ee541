package proxy

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// jsonUpstream answers every request with body (after waiting on release,
// when given), and counts requests and what they asked for.
type jsonUpstream struct {
	srv      *httptest.Server
	hits     atomic.Int64
	lastURI  atomic.Value
	lastHdr  atomic.Value
	lastHost atomic.Value
}

func newJSONUpstream(t *testing.T, status int, body string, release <-chan struct{}) *jsonUpstream {
	t.Helper()
	u := &jsonUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.lastURI.Store(r.URL.RequestURI())
		u.lastHdr.Store(r.Header.Clone())
		u.lastHost.Store(r.Host)
		if release != nil {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func aggConfig(users, orders, prefs string, requireAll bool) *config.Config {
	return &config.Config{
		Services: []config.Service{
			{Name: "users", Targets: []config.Target{{URL: users}}},
			{Name: "orders", Targets: []config.Target{{URL: orders}}},
			{Name: "prefs", Targets: []config.Target{{URL: prefs}},
				Retries: &config.Retries{Attempts: 1}},
		},
		Routes: []*config.Route{{
			Name: "profile", Paths: []string{"/profile/{id}"}, AggregateRequireAll: requireAll,
			Aggregate: []config.AggregateBackend{
				{Service: "users", Path: "/users/{id}", Key: "user", Required: true},
				{Service: "orders", Path: "/orders?user={id}&status={status}", Key: "orders"},
				{Service: "prefs", Path: "/prefs/{id}", Timeout: config.Duration(200 * time.Millisecond)},
			},
		}},
	}
}

func TestAggregate(t *testing.T) {
	users := newJSONUpstream(t, 200, `{"id":"7","name":"Ada"}`, nil)
	orders := newJSONUpstream(t, 200, `[{"id":1},{"id":2}]`, nil)
	prefs := newJSONUpstream(t, 200, `{"theme":"dark","lang":"en"}`, nil)
	_, gw := newGateway(t, aggConfig(users.srv.URL, orders.srv.URL, prefs.srv.URL, false))

	status, hdr, body := do(t, "GET", gw+"/profile/7?status=open%20now", nil, "Accept-Language", "fr")
	if status != 200 || hdr.Get("X-Portico-Completed") != "true" {
		t.Fatalf("status %d completed=%q: %s", status, hdr.Get("X-Portico-Completed"), body)
	}
	if want := `{"user":{"id":"7","name":"Ada"},"orders":[{"id":1},{"id":2}],"theme":"dark","lang":"en"}`; body != want {
		t.Errorf("merged\n got %s\nwant %s", body, want)
	}
	if got := users.lastURI.Load(); got != "/users/7" {
		t.Errorf("users asked for %v", got)
	}
	if got := orders.lastURI.Load(); got != "/orders?user=7&status=open+now" {
		t.Errorf("orders asked for %v (query values must flow in, escaped)", got)
	}
	if host := users.lastHost.Load(); host != strings.TrimPrefix(users.srv.URL, "http://") {
		t.Errorf("backend saw Host %v, want its own address", host)
	}
	if h := users.lastHdr.Load().(http.Header); h.Get("Accept-Language") != "fr" || h.Get("X-Forwarded-For") == "" {
		t.Errorf("backend headers: %v", h)
	}
}

// TestAggregatePathInjection: a query value that would move a backend call
// to another path is refused.
func TestAggregatePathInjection(t *testing.T) {
	users := newJSONUpstream(t, 200, `{}`, nil)
	cfg := &config.Config{
		Services: []config.Service{{Name: "users", Targets: []config.Target{{URL: users.srv.URL}}}},
		Routes: []*config.Route{{Name: "dash", Paths: []string{"/dash"},
			Aggregate: []config.AggregateBackend{{Service: "users", Path: "/users/{user}/summary", Key: "u"}}}},
	}
	_, gw := newGateway(t, cfg)
	for _, q := range []string{"..%2F..%2Finternal%2Fexport%23", "42%2Fsecrets", "..", "."} {
		if status, _, body := do(t, "GET", gw+"/dash?user="+q, nil); status != http.StatusBadRequest {
			t.Errorf("user=%s: %d %s", q, status, body)
		}
	}
	if n := users.hits.Load(); n != 0 {
		t.Errorf("%d calls reached the backend", n)
	}
	if status, _, _ := do(t, "GET", gw+"/dash?user=a%20b", nil); status != 200 || users.lastURI.Load() != "/users/a%20b/summary" {
		t.Errorf("a harmless value: %d %v", status, users.lastURI.Load())
	}
}

// TestAggregateMissingValue: a backend path parameter with no value (no
// such path parameter, query parameter absent or empty) is a 400 naming it,
// and no backend is called: "/prefs/{user}" must not become "/prefs/", the
// collection.
func TestAggregateMissingValue(t *testing.T) {
	prefs := newJSONUpstream(t, 200, `{}`, nil)
	cfg := &config.Config{
		Services: []config.Service{{Name: "prefs", Targets: []config.Target{{URL: prefs.srv.URL}}}},
		Routes: []*config.Route{{Name: "dash", Paths: []string{"/dash"},
			Aggregate: []config.AggregateBackend{{Service: "prefs", Path: "/prefs/{user}", Key: "p"}}}},
	}
	_, gw := newGateway(t, cfg)
	for _, q := range []string{"", "?user=", "?other=1"} {
		status, _, body := do(t, "GET", gw+"/dash"+q, nil)
		if status != http.StatusBadRequest || !strings.Contains(body, "missing-parameter") || !strings.Contains(body, `"parameter":"user"`) {
			t.Errorf("GET /dash%s = %d %s; want 400 missing-parameter naming user", q, status, body)
		}
	}
	if n := prefs.hits.Load(); n != 0 {
		t.Errorf("%d calls reached the backend (last %v)", n, prefs.lastURI.Load())
	}
	if status, _, _ := do(t, "GET", gw+"/dash?user=7", nil); status != 200 || prefs.lastURI.Load() != "/prefs/7" {
		t.Errorf("with a value: %d %v", status, prefs.lastURI.Load())
	}
}

// aggError is a failed backend as an aggregated answer's "errors" member
// and its problem's failed_backends list it.
type aggError struct {
	Service string `json:"service"`
	Key     string `json:"key,omitempty"`
	Status  int    `json:"status,omitempty"`
	Error   string `json:"error"`
}

func TestAggregatePartial(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	users := newJSONUpstream(t, 200, `{"id":"7"}`, nil)
	orders := newJSONUpstream(t, 503, `{"error":"down"}`, nil)
	slowPrefs := newJSONUpstream(t, 200, `{"theme":"dark"}`, release) // never answers in time
	h, gw := newGateway(t, aggConfig(users.srv.URL, orders.srv.URL, slowPrefs.srv.URL, false))

	status, hdr, body := do(t, "GET", gw+"/profile/7", nil)
	if status != 200 || hdr.Get("X-Portico-Completed") != "false" {
		t.Fatalf("partial: status %d completed=%q: %s", status, hdr.Get("X-Portico-Completed"), body)
	}
	var got struct {
		User   map[string]string `json:"user"`
		Orders any               `json:"orders"`
		Errors []aggError        `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if got.User["id"] != "7" || got.Orders != nil || len(got.Errors) != 2 {
		t.Fatalf("partial body: %s", body)
	}
	if hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("a partial answer is cacheable: Cache-Control %q", hdr.Get("Cache-Control"))
	}
	if e := got.Errors[0]; e.Service != "orders" || e.Key != "orders" || e.Status != 503 {
		t.Errorf("orders error: %+v", e)
	}
	if e := got.Errors[1]; e.Service != "prefs" || e.Status != http.StatusGatewayTimeout {
		t.Errorf("prefs error: %+v", e)
	}

	// A required backend down: 502 problem naming it.
	down := testutil.RefusedAddr(t)
	applyCfg(t, h, 2, aggConfig("http://"+down, orders.srv.URL, users.srv.URL, false))
	status, _, body = do(t, "GET", gw+"/profile/7", nil)
	if status != http.StatusBadGateway {
		t.Fatalf("required backend down: %d %s", status, body)
	}
	var p struct {
		Failed []aggError `json:"failed_backends"`
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil || len(p.Failed) != 2 || p.Failed[0].Service != "users" {
		t.Errorf("problem: %s (%v)", body, err)
	}

	// aggregate_require_all: any failure fails the request.
	applyCfg(t, h, 3, aggConfig(users.srv.URL, orders.srv.URL, users.srv.URL, true))
	if status, _, body = do(t, "GET", gw+"/profile/7", nil); status != http.StatusBadGateway {
		t.Errorf("require all: %d %s", status, body)
	}
}

func TestAggregateRejectsNonJSON(t *testing.T) {
	users := newJSONUpstream(t, 200, `{"id":"7"}`, nil)
	orders := newJSONUpstream(t, 200, `<html>oops</html>`, nil)
	prefs := newJSONUpstream(t, 200, `["not","an","object"]`, nil) // unkeyed: must be an object
	_, gw := newGateway(t, aggConfig(users.srv.URL, orders.srv.URL, prefs.srv.URL, false))
	status, _, body := do(t, "GET", gw+"/profile/7", nil)
	var got struct {
		Errors []aggError `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil || len(got.Errors) != 2 {
		t.Fatalf("status %d: %s", status, body)
	}
}

// TestAggregateSpans: one span per backend under the request's server
// span, each with the upstream attempt below it.
func TestAggregateSpans(t *testing.T) {
	users := newJSONUpstream(t, 200, `{"id":"7"}`, nil)
	orders := newJSONUpstream(t, 200, `[]`, nil)
	prefs := newJSONUpstream(t, 200, `{}`, nil)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	h := NewHandler(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Observe: ObserveOptions{TracerProvider: tp, Propagator: propagator}})
	applyCfg(t, h, 1, aggConfig(users.srv.URL, orders.srv.URL, prefs.srv.URL, false))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if status, _, body := do(t, "GET", srv.URL+"/profile/7", nil); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	spans := rec.Ended()
	server := spansByKind(spans, trace.SpanKindServer)
	if len(server) != 1 {
		t.Fatalf("%d server spans", len(server))
	}
	backends := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spansByKind(spans, trace.SpanKindInternal) {
		if s.Parent().SpanID() == server[0].SpanContext().SpanID() {
			backends[s.Name()] = s
		}
	}
	for _, name := range []string{"aggregate users", "aggregate orders", "aggregate prefs"} {
		b, ok := backends[name]
		if !ok {
			t.Fatalf("no %q span under the server span (have %v)", name, backends)
		}
		var attempts int
		for _, c := range spansByKind(spans, trace.SpanKindClient) {
			if c.Parent().SpanID() == b.SpanContext().SpanID() {
				attempts++
			}
		}
		if attempts != 1 {
			t.Errorf("%s: %d attempt spans below it, want 1", name, attempts)
		}
	}
}
