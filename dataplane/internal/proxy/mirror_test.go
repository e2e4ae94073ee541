package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// mirrorTarget records what the mirror service received; hang makes it
// block every request until the test ends.
type mirrorTarget struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []string // "METHOD path?query body=... user=..."
	seen atomic.Int64
}

func newMirrorTarget(t *testing.T, hang bool) *mirrorTarget {
	m := &mirrorTarget{}
	release := make(chan struct{})
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		m.mu.Lock()
		m.got = append(m.got, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+" body="+string(b)+" user="+r.Header.Get("X-User")+" xff="+r.Header.Get("X-Forwarded-For"))
		m.mu.Unlock()
		m.seen.Add(1)
		if hang {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	// release before Close: Close waits for handlers.
	t.Cleanup(m.srv.Close)
	t.Cleanup(func() { close(release) })
	return m
}

func (m *mirrorTarget) requests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.got...)
}

func mirrorGateway(t *testing.T, cfg *config.Config) (url string, reg *prometheus.Registry, spans *tracetest.SpanRecorder) {
	t.Helper()
	reg = prometheus.NewRegistry()
	spans = tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	h := NewHandler(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: NewMetrics(reg),
		Observe: ObserveOptions{TracerProvider: tp, Propagator: propagator}})
	applyCfg(t, h, 1, cfg)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL, reg, spans
}

func mirrorConfig(primary, shadow string, m config.Mirror) *config.Config {
	m.Service = "shadow"
	return &config.Config{
		Services: []config.Service{
			{Name: "primary", Targets: []config.Target{{URL: primary}}},
			{Name: "shadow", Targets: []config.Target{{URL: shadow}}},
		},
		Routes: []*config.Route{{Name: "users", Paths: []string{"/users/*"}, Service: "primary", StripPrefix: true,
			RequestHeaders: &config.Edits{Set: map[string]string{"X-User": "from-gw"}}, Mirror: &m}},
	}
}

// TestMirrorCopies: every request (percent 100) reaches the mirror with its
// method, the path the primary got, the query, the body, the route's
// header edits... the copy is counted by outcome and traced as a span of
// its own under the request's server span; a body over the bound is not
// copied (too_large).
func TestMirrorCopies(t *testing.T) {
	primary := echoUpstream(t, "primary")
	shadow := newMirrorTarget(t, false)
	gw, reg, spans := mirrorGateway(t, mirrorConfig(primary.URL, shadow.srv.URL, config.Mirror{Percent: 100, MaxBodyBytes: 16}))

	code, _, body := do(t, "POST", gw+"/users/7?x=1", strings.NewReader(`{"a":1}`))
	if code != 200 || !strings.HasPrefix(body, "primary POST /7?x=1") {
		t.Fatalf("client got %d %q", code, body)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return len(shadow.requests()) == 1 }, "the copy arrives")
	if got := shadow.requests()[0]; !strings.HasPrefix(got, `POST /7?x=1 body={"a":1} user= xff=127.0.0.1`) {
		t.Fatalf("mirror got %q", got)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return promtest.ToFloat64(mustCounter(t, reg, "users", "shadow", "2xx")) == 1
	}, "the copy counted as 2xx")

	// Over the bound: the client is served, the copy is not sent.
	if code, _, _ := do(t, "POST", gw+"/users/8", strings.NewReader(strings.Repeat("x", 17))); code != 200 {
		t.Fatalf("client got %d", code)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return promtest.ToFloat64(mustCounter(t, reg, "users", "shadow", "too_large")) == 1
	}, "the large body counted as too_large")
	if n := len(shadow.requests()); n != 1 {
		t.Fatalf("mirror got %d requests, want 1", n)
	}

	var server, mirror sdktrace.ReadOnlySpan
	testutil.Eventually(t, 5*time.Second, func() bool {
		for _, s := range spans.Ended() {
			switch {
			case s.SpanKind() == trace.SpanKindServer && server == nil:
				server = s
			case s.Name() == "mirror shadow":
				mirror = s
			}
		}
		return server != nil && mirror != nil
	}, "server and mirror spans ended")
	if mirror.Parent().SpanID() != server.SpanContext().SpanID() || mirror.SpanContext().TraceID() != server.SpanContext().TraceID() {
		t.Fatalf("mirror span is not the request's child: parent %v, server %v", mirror.Parent(), server.SpanContext())
	}
}

// TestMirrorThatHangsNeverAffectsClients: the mirror service accepts and
// never answers. Every client request is answered by the primary service
// (if an answer waited for the copy, none would come back), at most
// max_concurrent copies are in flight, the rest are dropped and counted.
func TestMirrorThatHangsNeverAffectsClients(t *testing.T) {
	primary := echoUpstream(t, "primary")
	shadow := newMirrorTarget(t, true)
	gw, reg, _ := mirrorGateway(t, mirrorConfig(primary.URL, shadow.srv.URL,
		config.Mirror{Percent: 100, MaxConcurrent: 3, Timeout: config.Duration(time.Minute)}))
	// A client that gives up long before the copies' timeout: an answer
	// that waited for a hanging copy would fail it.
	client := &http.Client{Timeout: 20 * time.Second}
	const n = 40
	for i := range n {
		resp, err := client.Post(gw+"/users/1", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "primary POST /1") {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return shadow.seen.Load() == 3 }, "three copies reach the hanging mirror")
	testutil.Eventually(t, 5*time.Second, func() bool {
		return promtest.ToFloat64(mustCounter(t, reg, "users", "shadow", "dropped")) == n-3
	}, "the others dropped and counted")
	if got := shadow.seen.Load(); got != 3 {
		t.Fatalf("mirror saw %d copies with max_concurrent 3", got)
	}
}

// TestMirrorPercent: about percent of the requests are copied.
func TestMirrorPercent(t *testing.T) {
	primary := echoUpstream(t, "primary")
	shadow := newMirrorTarget(t, false)
	gw, reg, _ := mirrorGateway(t, mirrorConfig(primary.URL, shadow.srv.URL, config.Mirror{Percent: 20}))
	const n = 500
	for range n {
		if code, _, _ := do(t, "GET", gw+"/users/1", nil); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	var sent float64
	testutil.Eventually(t, 5*time.Second, func() bool {
		sent = promtest.ToFloat64(mustCounter(t, reg, "users", "shadow", "2xx"))
		return sent == float64(shadow.seen.Load()) && sent > 0
	}, "copies counted")
	// Binomial(500, 0.2): 100 ± 9 (sd); 55-145 is 5 sd.
	if sent < 55 || sent > 145 {
		t.Fatalf("%v of %d requests mirrored at 20%%", sent, n)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, labels ...string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "portico_mirror_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if got["route"] == labels[0] && got["service"] == labels[1] && got["outcome"] == labels[2] {
				c.Add(m.GetCounter().GetValue())
			}
		}
	}
	return c
}
