package proxy

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/dataplane/internal/grpcjson"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
	"github.com/portico-gw/portico/shared/testutil"
)

// echoUpstream answers with what it received; tests read it back.
func echoUpstream(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if r.URL.Query().Get("read") != "" {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return
			}
		}
		w.Header().Set("X-Upstream", name)
		fmt.Fprintf(w, "%s %s %s?%s xff=%s host=%s",
			name, r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Forwarded-For"), r.Host)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// applyCfg puts cfg in service on h at revision rev the way the data plane
// does (Applier.Apply) and returns what was left out; the table in service
// is retired when the test ends.
func applyCfg(t testing.TB, h *Handler, rev int64, cfg *config.Config) []config.Rejected {
	t.Helper()
	return applyWith(t, h, testDeps(), rev, cfg)
}

// applyWith is applyCfg with the given Deps (a limiter, a cache).
func applyWith(t testing.TB, h *Handler, deps Deps, rev int64, cfg *config.Config) []config.Rejected {
	t.Helper()
	cfg.Sort()
	s, _, err := snapshot.Encode(rev, cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a := NewApplier(h, deps)
	rejected, err := a.Apply(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return rejected
}

func testDeps() Deps {
	return Deps{Upstream: upstream.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, GRPC: grpcjson.NewPool(grpcjson.PoolOptions{})}
}

// newGateway serves a Handler with cfg applied at revision 1 (none when
// cfg is nil).
func newGateway(t testing.TB, cfg *config.Config) (*Handler, string) {
	t.Helper()
	h := NewHandler(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: NewMetrics(prometheus.NewRegistry())})
	if cfg != nil {
		applyCfg(t, h, 1, cfg)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL
}

func do(t *testing.T, method, url string, body io.Reader, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestProxyRouting(t *testing.T) {
	users := echoUpstream(t, "users")
	orders := echoUpstream(t, "orders")
	cfg := &config.Config{
		Services: []config.Service{
			{Name: "users", Targets: []config.Target{{URL: users.URL + "/base"}}},
			{Name: "orders", Targets: []config.Target{{URL: orders.URL}}},
		},
		Routes: []*config.Route{
			{Name: "users", Paths: []string{"/users/*"}, Service: "users", StripPrefix: true},
			{Name: "user", Paths: []string{"/user/{id}"}, Methods: []string{"GET"}, Service: "users"},
			{Name: "orders", Paths: []string{"/orders/*"}, Hosts: []string{"shop.example.com"}, Service: "orders"},
		},
	}
	_, gw := newGateway(t, cfg)
	tests := []struct {
		name, method, path string
		hdr                []string
		status             int
		body               string
	}{
		{"prefix stripped, target path kept", "GET", "/users/42/x?a=1", nil, 200, "users GET /base/42/x?a=1"},
		{"prefix root", "GET", "/users", nil, 200, "users GET /base/?"},
		{"param route", "GET", "/user/7", nil, 200, "users GET /base/user/7?"},
		{"method not routed", "POST", "/user/7", nil, 404, "no-route"},
		{"host route", "GET", "/orders/1", []string{"Host", "shop.example.com"}, 200, "orders GET /orders/1?"},
		{"host route, other host", "GET", "/orders/1", []string{"Host", "evil.example.com"}, 404, "no-route"},
		{"dot segments cleaned before matching", "GET", "/user/../users/9", nil, 200, "users GET /base/9?"},
		{"client XFF replaced", "GET", "/users/1", []string{"X-Forwarded-For", "6.6.6.6"}, 200, "xff=127.0.0.1 "},
		{"upstream host header", "GET", "/users/1", nil, 200, "host=" + strings.TrimPrefix(users.URL, "http://")},
		{"no route", "GET", "/nothing", nil, 404, `"status":404`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := do(t, tt.method, gw+tt.path, nil, tt.hdr...)
			if code != tt.status || !strings.Contains(body, tt.body) {
				t.Fatalf("%s %s = %d %q; want %d containing %q", tt.method, tt.path, code, body, tt.status, tt.body)
			}
			if code >= 400 && h.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("error without problem+json: %v", h)
			}
		})
	}
}

func TestWeightedRoundRobin(t *testing.T) {
	a, b := echoUpstream(t, "a"), echoUpstream(t, "b")
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", LoadBalancer: config.LBWeighted, Targets: []config.Target{{URL: a.URL, Weight: 3}, {URL: b.URL, Weight: 1}}}},
		Routes:   []*config.Route{{Name: "r", Paths: []string{"/*"}, Service: "s"}},
	}
	_, gw := newGateway(t, cfg)
	counts := map[string]int{}
	for range 400 {
		_, h, _ := do(t, "GET", gw+"/", nil)
		counts[h.Get("X-Upstream")]++
	}
	if counts["a"] != 300 || counts["b"] != 100 {
		t.Fatalf("distribution = %v, want a:300 b:100", counts)
	}
}

func TestUpstreamFailures(t *testing.T) {
	slow := echoUpstream(t, "slow")
	dead := deadURL(t)
	cfg := &config.Config{
		Services: []config.Service{
			{Name: "slow", Targets: []config.Target{{URL: slow.URL}}},
			{Name: "dead", Targets: []config.Target{{URL: dead}}},
		},
		Routes: []*config.Route{
			{Name: "slow", Paths: []string{"/slow/*"}, Service: "slow", Timeout: config.Duration(100 * time.Millisecond), MaxBodyBytes: 1024},
			{Name: "dead", Paths: []string{"/dead"}, Service: "dead"},
		},
	}
	_, gw := newGateway(t, cfg)

	if code, _, body := do(t, "GET", gw+"/dead", nil); code != 502 || !strings.Contains(body, "refused") {
		t.Fatalf("dead upstream = %d %s, want 502", code, body)
	}
	if code, _, body := do(t, "GET", gw+"/slow/x?sleep=2s", nil); code != 504 || !strings.Contains(body, "upstream-timeout") {
		t.Fatalf("slow upstream = %d %s, want 504", code, body)
	}
	if code, _, _ := do(t, "GET", gw+"/slow/x?sleep=10ms", nil); code != 200 {
		t.Fatalf("fast enough upstream = %d, want 200", code)
	}
	big := strings.Repeat("x", 2048)
	if code, _, body := do(t, "POST", gw+"/slow/x", strings.NewReader(big)); code != 413 {
		t.Fatalf("declared body over limit = %d %s, want 413", code, body)
	}
	// A chunked body has no Content-Length: the limit is enforced while
	// the upstream reads it.
	chunked := io.MultiReader(strings.NewReader(big))
	if code, _, body := do(t, "POST", gw+"/slow/x?read=1", struct{ io.Reader }{chunked}); code != 413 {
		t.Fatalf("chunked body over limit = %d %s, want 413", code, body)
	}
	if code, _, _ := do(t, "POST", gw+"/slow/x?read=1", strings.NewReader("small")); code != 200 {
		t.Fatalf("small body = %d, want 200", code)
	}
}

// The route timeout bounds the wait for headers, not a streaming body.
func TestTimeoutDoesNotCutStreams(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for i := range 5 {
			fmt.Fprintf(w, "chunk%d\n", i)
			_ = rc.Flush()
			time.Sleep(60 * time.Millisecond)
		}
	}))
	t.Cleanup(up.Close)
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}}}},
		Routes:   []*config.Route{{Name: "r", Paths: []string{"/*"}, Service: "s", Timeout: config.Duration(100 * time.Millisecond)}},
	}
	_, gw := newGateway(t, cfg)
	code, _, body := do(t, "GET", gw+"/stream", nil)
	if code != 200 || !strings.Contains(body, "chunk4") {
		t.Fatalf("stream = %d %q, want all 5 chunks", code, body)
	}
}

func TestUpgradeIsTunnelled(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		fmt.Fprint(brw, "echo:"+line)
		_ = brw.Flush()
	}))
	t.Cleanup(up.Close)
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []*config.Route{{Name: "r", Paths: []string{"/ws"}, Service: "s", Timeout: config.Duration(50 * time.Millisecond),
			UpgradeProtocols: []string{"echo"}}},
	}
	_, gw := newGateway(t, cfg)
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade response = %v, %v", resp, err)
	}
	// Longer than the route timeout: the tunnel must stay open.
	time.Sleep(100 * time.Millisecond)
	fmt.Fprint(conn, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo:hello\n" {
		t.Fatalf("tunnel echoed %q, %v", line, err)
	}
}

// A swap never disturbs requests in flight, and new requests see the new
// table at once.
func TestSwapUnderLoad(t *testing.T) {
	up := echoUpstream(t, "up")
	arrived, release := make(chan struct{}), make(chan struct{})
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		fmt.Fprint(w, "gate")
	}))
	t.Cleanup(gate.Close)
	cfgWith := func(paths ...string) *config.Config {
		c := &config.Config{Services: []config.Service{
			{Name: "s", Targets: []config.Target{{URL: up.URL}}},
			{Name: "gate", Targets: []config.Target{{URL: gate.URL}}},
		}}
		for i, p := range paths {
			svc := "s"
			if p == "/slow" {
				svc = "gate"
			}
			c.Routes = append(c.Routes, &config.Route{Name: fmt.Sprintf("r%d", i), Paths: []string{p}, Service: svc})
		}
		return c
	}
	h, gw := newGateway(t, cfgWith("/a", "/slow"))
	slowDone := make(chan int, 1)
	go func() {
		resp, err := http.Get(gw + "/slow")
		if err != nil {
			slowDone <- 0
			return
		}
		resp.Body.Close()
		slowDone <- resp.StatusCode
	}()
	<-arrived
	stop, _ := testutil.Load(4, testutil.HTTPStatus(http.DefaultClient, gw+"/a", 200))
	for rev := int64(2); rev < 50; rev++ {
		applyCfg(t, h, rev, cfgWith("/a", fmt.Sprintf("/b%d", rev)))
	}
	res := stop()
	close(release)
	if res.Failed != 0 {
		t.Fatalf("%d of %d requests failed during swaps; first: %v", res.Failed, res.Total, res.FirstError)
	}
	if code := <-slowDone; code != 200 {
		t.Fatalf("in-flight request across swaps = %d, want 200", code)
	}
	if code, _, _ := do(t, "GET", gw+"/slow", nil); code != 404 {
		t.Fatalf("removed route = %d, want 404", code)
	}
	if h.Table().Revision != 49 {
		t.Fatalf("revision = %d", h.Table().Revision)
	}
}

func TestNotReadyWithoutTable(t *testing.T) {
	_, gw := newGateway(t, nil)
	code, h, _ := do(t, "GET", gw+"/", nil)
	if code != 503 || h.Get("Retry-After") == "" {
		t.Fatalf("no table = %d %v, want 503 with Retry-After", code, h)
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"":           "/",
		"/":          "/",
		"/a/b":       "/a/b",
		"/a//b":      "/a/b",
		"/a/./b/":    "/a/b/",
		"/a/../../b": "/b",
		"/..":        "/",
		"/a/b/..":    "/a",
		"/.a/b":      "/.a/b",
	} {
		if got, ok := cleanPath(in); !ok || got != want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	// Refused: relative, and dot segments other parsers see (issue 13).
	for _, p := range []string{"a", "/a/..;/b", "/a/..;x", "/a/.;/b", "/a\\b", "/a/..\\b", "/..\\"} {
		if _, ok := cleanPath(p); ok {
			t.Errorf("cleanPath(%q) accepted", p)
		}
	}
}
