package extauthz

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portico-gw/portico/dataplane/internal/clientip"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// identity stands in for the auth stage's identity writer: it removes the
// route's API key header and writes the identity headers.
type identity struct{}

func (identity) WriteIdentity(req *stage.Request, h http.Header) {
	h.Del("X-Api-Key")
	h.Set(stage.HeaderConsumer, req.Identity.Consumer)
	h.Set(stage.HeaderAuthMethod, req.Identity.Method)
}

// upstream is the end of the chain: it records the request's headers as the
// service behind the route would receive them (after Outbound).
type upstream struct {
	got  http.Header
	body string
}

func (u *upstream) Serve(req *stage.Request) {
	out := req.R.Clone(req.R.Context())
	// The proxy drops hop-by-hop headers, among them those Connection
	// names, before the stages' Outbound hooks run.
	for _, name := range strings.Split(out.Header.Get("Connection"), ",") {
		if name = strings.TrimSpace(name); name != "" {
			out.Header.Del(name)
		}
	}
	out.Header.Del("Connection")
	req.Outbound(out)
	u.got = out.Header
	if req.R.Body != nil {
		b, _ := io.ReadAll(req.R.Body)
		u.body = string(b)
	}
	req.W.WriteHeader(http.StatusOK)
}
func (u *upstream) Describe() any { return nil }

// decisionService is a forward-auth service whose answers the test sets; it
// records what each check carried.
type decisionService struct {
	mu     sync.Mutex
	calls  int
	last   *http.Request
	answer func(w http.ResponseWriter, r *http.Request)
}

func (d *decisionService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	d.calls++
	d.last = r
	answer := d.answer
	d.mu.Unlock()
	answer(w, r)
}

func (d *decisionService) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

type fixture struct {
	t   *testing.T
	svc *decisionService
	url string
	reg *prometheus.Registry
	cl  *Client
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, svc: &decisionService{answer: func(w http.ResponseWriter, _ *http.Request) {}}, reg: prometheus.NewRegistry()}
	srv := httptest.NewServer(f.svc)
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/authz"
	f.cl = NewClient(Options{Registerer: f.reg, Log: slog.New(slog.DiscardHandler)})
	t.Cleanup(f.cl.Close)
	return f
}

func (f *fixture) stage(e config.ExtAuthz) stage.Stage {
	f.t.Helper()
	r := config.Route{Name: "r", Paths: []string{"/*"}, Service: "s", ExtAuthz: &e}
	if err := r.Validate(); err != nil {
		f.t.Fatal(err)
	}
	return Compile(&r, f.cl)
}

// run sends a request from 192.0.2.10 (behind the trusted 10.0.0.1) down
// s, as consumer alice with an API key.
func run(s stage.Stage, mod func(r *http.Request)) (*httptest.ResponseRecorder, *upstream) {
	r := httptest.NewRequest("POST", "http://api.example.com/orders/7?x=1&y=%2F", strings.NewReader("{}"))
	r.RemoteAddr = "10.0.0.1:4711"
	r.Header.Set("X-Forwarded-For", "192.0.2.10")
	r.Header.Set("X-Api-Key", "pk_secret")
	r.Header.Set("Authorization", "Bearer t")
	r.Header.Set("X-Request-Tag", "a")
	if mod != nil {
		mod(r)
	}
	ips, _ := clientip.Parse("10.0.0.0/8")
	w := httptest.NewRecorder()
	req := &stage.Request{W: w, R: r, Env: &stage.Env{ClientIP: ips}}
	req.Authenticated(&stage.Identity{Consumer: "alice", Groups: []string{"staff"}, Method: "api_key"}, identity{})
	up := &upstream{}
	req.Run(stage.NewChain(s, up))
	return w, up
}

// TestHTTPCheckRequest: what the forward-auth service receives.
func TestHTTPCheckRequest(t *testing.T) {
	f := newFixture(t)
	f.svc.answer = func(w http.ResponseWriter, _ *http.Request) {}
	cases := []struct {
		name    string
		e       config.ExtAuthz
		want    map[string]string // "" = absent
		wantURL string
	}{
		{"all headers", config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: "URL"}}, map[string]string{
			"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/orders/7?x=1&y=%2F", "X-Forwarded-Host": "api.example.com",
			"X-Forwarded-Proto": "http", "X-Forwarded-For": "192.0.2.10",
			"X-Consumer-Name": "alice", "X-Auth-Method": "api_key", "Authorization": "Bearer t", "X-Request-Tag": "a",
			"X-Api-Key": "", "Content-Length": "", "X-Consumer-Groups": "",
		}, "/authz"},
		{"listed headers", config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: "URL?policy=orders"}, RequestHeaders: []string{"x-request-tag", "X-Api-Key"}}, map[string]string{
			"X-Forwarded-Method": "POST", "X-Consumer-Name": "alice", "X-Request-Tag": "a", "Authorization": "", "X-Api-Key": "",
		}, "/authz?policy=orders"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.e.HTTP.URL = strings.Replace(c.e.HTTP.URL, "URL", f.url, 1)
			w, _ := run(f.stage(c.e), func(r *http.Request) {
				// A client's own forwarding and identity claims never reach
				// the service.
				r.Header.Set("X-Consumer-Name", "mallory")
				r.Header.Set("X-Forwarded-Uri", "/public")
				r.Header.Set("X_Consumer_Groups", "admin")
			})
			if w.Code != 200 {
				t.Fatalf("status %d %s", w.Code, w.Body)
			}
			got := f.svc.last
			if got.Method != "GET" || got.URL.RequestURI() != c.wantURL {
				t.Fatalf("check %s %s", got.Method, got.URL.RequestURI())
			}
			for name, want := range c.want {
				if v := got.Header.Values(name); strings.Join(v, ",") != want {
					t.Errorf("%s = %q, want %q", name, v, want)
				}
			}
			if v := got.Header.Values("X_consumer_groups"); len(v) > 0 {
				t.Errorf("underscore identity header sent: %q", v)
			}
		})
	}
}

// TestHTTPDecisions: allow with upstream headers, denials passed back,
// errors by failure mode.
func TestHTTPDecisions(t *testing.T) {
	f := newFixture(t)
	base := config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: f.url}, UpstreamHeaders: []string{"X-User-Id", "Authorization"}, ClientHeaders: []string{"WWW-Authenticate", "Location"}}
	s := f.stage(base)

	// Allow: the listed answer headers reach the service, others do not;
	// the client's own X-User-Id is gone even with Connection naming it.
	f.svc.answer = func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-User-Id", "u-42")
		w.Header().Set("Authorization", "Bearer internal")
		w.Header().Set("X-Other", "no")
		w.WriteHeader(204)
	}
	w, up := run(s, func(r *http.Request) {
		r.Header.Set("X-User-Id", "spoofed")
		r.Header.Set("Connection", "X-User-Id")
	})
	if w.Code != 200 || up.got.Get("X-User-Id") != "u-42" || up.got.Get("Authorization") != "Bearer internal" || up.got.Get("X-Other") != "" {
		t.Fatalf("allow: %d, upstream got %v", w.Code, up.got)
	}
	// Allow without the header: the client's value is still removed.
	f.svc.answer = func(w http.ResponseWriter, _ *http.Request) {}
	w, up = run(s, func(r *http.Request) { r.Header.Set("X-User-Id", "spoofed") })
	if w.Code != 200 || len(up.got.Values("X-User-Id")) != 0 {
		t.Fatalf("allow without header: upstream got %v", up.got)
	}

	// Deny: the service's status, body, Content-Type and listed headers.
	f.svc.answer = func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("WWW-Authenticate", `Bearer realm="orders"`)
		w.Header().Set("X-Internal", "secret")
		w.WriteHeader(401)
		_, _ = io.WriteString(w, `{"reason":"not yours"}`)
	}
	w, up = run(s, nil)
	if w.Code != 401 || w.Body.String() != `{"reason":"not yours"}` || w.Header().Get("Content-Type") != "application/json" ||
		w.Header().Get("WWW-Authenticate") != `Bearer realm="orders"` || w.Header().Get("X-Internal") != "" || up.got != nil {
		t.Fatalf("deny: %d %v %s (upstream %v)", w.Code, w.Header(), w.Body, up.got)
	}
	// A redirect to a login page.
	f.svc.answer = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://login.example.com/?rd=x", http.StatusFound)
	}
	if w, _ = run(s, nil); w.Code != 302 || w.Header().Get("Location") != "https://login.example.com/?rd=x" {
		t.Fatalf("redirect: %d %v", w.Code, w.Header())
	}
	// A denial without a body: a problem.
	f.svc.answer = func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(403) }
	w, _ = run(s, nil)
	if w.Code != 403 || w.Header().Get("Content-Type") != "application/problem+json" || !strings.Contains(w.Body.String(), "ext-authz-denied") {
		t.Fatalf("bodiless deny: %d %v %s", w.Code, w.Header(), w.Body)
	}
	// A gRPC call gets a gRPC status.
	w, _ = run(s, func(r *http.Request) { r.Header.Set("Content-Type", "application/grpc") })
	if w.Code != 200 || w.Header().Get("Grpc-Status") != "7" {
		t.Fatalf("grpc deny: %d %v", w.Code, w.Header())
	}

	// Errors: a 5xx answer, and an unreachable service.
	f.svc.answer = func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(502) }
	w, up = run(s, func(r *http.Request) { r.Header.Set("X-User-Id", "spoofed") })
	if w.Code != 503 || !strings.Contains(w.Body.String(), "ext-authz-unavailable") || up.got != nil {
		t.Fatalf("fail closed: %d %s", w.Code, w.Body)
	}
	open := base
	open.FailureMode = config.FailOpen
	w, up = run(f.stage(open), func(r *http.Request) { r.Header.Set("X-User-Id", "spoofed") })
	if w.Code != 200 || len(up.got.Values("X-User-Id")) != 0 {
		t.Fatalf("fail open: %d, upstream got %v", w.Code, up.got)
	}
	gone := base
	gone.HTTP = &config.ExtAuthzHTTP{URL: "http://127.0.0.1:1/authz"}
	if w, _ = run(f.stage(gone), nil); w.Code != 503 {
		t.Fatalf("unreachable: %d", w.Code)
	}

	for _, c := range []struct {
		decision, cached string
		want             float64
	}{{"allowed", "false", 2}, {"denied", "false", 4}, {"error_denied", "false", 2}, {"error_allowed", "false", 1}} {
		if got := testutil.ToFloat64(f.cl.metrics.decisions.WithLabelValues("r", c.decision, c.cached)); got != c.want {
			t.Errorf("decisions %s = %v, want %v", c.decision, got, c.want)
		}
	}
	if got := testutil.ToFloat64(f.cl.metrics.errors.WithLabelValues("r", "http", "unavailable")); got != 3 {
		t.Errorf("errors unavailable = %v, want 3", got)
	}
}

// TestDecisionCache: equal checks share a decision, a check that differs in
// anything sent does not, errors are not kept, and the cache stays within
// its bytes.
func TestDecisionCache(t *testing.T) {
	f := newFixture(t)
	s := f.stage(config.ExtAuthz{HTTP: &config.ExtAuthzHTTP{URL: f.url}, UpstreamHeaders: []string{"X-User-Id"},
		Cache: &config.ExtAuthzCache{TTL: config.Duration(time.Minute), MaxBytes: 4096}})
	f.svc.answer = func(w http.ResponseWriter, _ *http.Request) { w.Header().Set("X-User-Id", "u-1") }
	for range 3 {
		if w, up := run(s, nil); w.Code != 200 || up.got.Get("X-User-Id") != "u-1" {
			t.Fatalf("%d %v", w.Code, up.got)
		}
	}
	if n := f.svc.count(); n != 1 {
		t.Fatalf("%d checks for three equal requests", n)
	}
	run(s, func(r *http.Request) { r.Header.Set("X-Request-Tag", "b") })
	run(s, func(r *http.Request) { r.URL.RawQuery = "x=2" })
	if n := f.svc.count(); n != 3 {
		t.Fatalf("%d checks, want 3 (each differing request asked)", n)
	}
	if testutil.ToFloat64(f.cl.metrics.decisions.WithLabelValues("r", "allowed", "true")) != 2 {
		t.Fatal("cached decisions not counted")
	}
	// Past the ttl the service is asked again.
	now := time.Now()
	s.(*Stage).cache.now = func() time.Time { return now.Add(61 * time.Second) }
	run(s, nil)
	if n := f.svc.count(); n != 4 {
		t.Fatalf("%d checks: a decision outlived its ttl", n)
	}
	s.(*Stage).cache.now = time.Now
	// Errors are asked again.
	f.svc.answer = func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }
	run(s, func(r *http.Request) { r.Header.Set("X-Request-Tag", "c") })
	run(s, func(r *http.Request) { r.Header.Set("X-Request-Tag", "c") })
	if n := f.svc.count(); n != 6 {
		t.Fatalf("%d checks: an error was cached", n)
	}
	// Bounded: 200 distinct checks in 4 KiB.
	f.svc.answer = func(w http.ResponseWriter, _ *http.Request) {}
	for i := range 200 {
		run(s, func(r *http.Request) { r.Header.Set("X-Request-Tag", strings.Repeat("x", i)) })
	}
	n, b := s.(*Stage).cache.stats()
	if b > 4096 || n == 0 {
		t.Fatalf("cache holds %d bytes in %d entries, bound 4096", b, n)
	}
}

// TestDescribe: what a block compiles to.
func TestDescribe(t *testing.T) {
	f := newFixture(t)
	got, _ := json.Marshal(f.stage(config.ExtAuthz{GRPC: &config.ExtAuthzGRPC{Address: "127.0.0.1:9191"}, FailureMode: config.FailOpen,
		UpstreamHeaders: []string{"x-user"}, Cache: &config.ExtAuthzCache{TTL: config.Duration(time.Second)}}).Describe())
	want := `{"cache":{"max_bytes":1048576,"ttl":"1s"},"fail_open":true,"mode":"grpc","service":{"address":"127.0.0.1:9191","tls":false},"timeout":"1s","upstream_headers":["X-User"]}`
	if string(got) != want {
		t.Fatalf("%s\nwant %s", got, want)
	}
	if Compile(&config.Route{}, f.cl) != nil {
		t.Fatal("a stage without ext_authz")
	}
}
