package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
)

var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// upstreamSeen records the trace headers an upstream receives.
type upstreamSeen struct {
	mu      sync.Mutex
	headers []http.Header
}

func (u *upstreamSeen) handler(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.headers = append(u.headers, r.Header.Clone())
	u.mu.Unlock()
	fmt.Fprint(w, "ok")
}

type observed struct {
	gw       string
	spans    *tracetest.SpanRecorder
	accessed *bytes.Buffer
	reg      *prometheus.Registry
	seen     *upstreamSeen
	key      string
	mu       *sync.Mutex
}

func observedGateway(t *testing.T, extraTargets ...string) *observed {
	t.Helper()
	seen := &upstreamSeen{}
	up := httptest.NewServer(http.HandlerFunc(seen.handler))
	t.Cleanup(up.Close)
	key, id, hash, _ := apikey.New()
	cfg := &config.Config{
		Services: []config.Service{
			{Name: "users", Targets: []config.Target{{URL: up.URL}}},
			{Name: "flaky", Targets: append([]config.Target{{URL: up.URL}}, targetsOf(extraTargets)...),
				OutlierDetection: &config.OutlierDetection{Disabled: true}},
		},
		Consumers: []config.Consumer{{Name: "alice", APIKeys: []config.APIKey{{ID: id, Hash: hash, Prefix: "pk"}}}},
		Routes: []*config.Route{
			{Name: "users", Paths: []string{"/users/{id}"}, Service: "users", Auth: &config.RouteAuth{APIKey: true},
				RateLimit: &config.RateLimit{Limit: 1000, Window: config.Duration(time.Second), Key: "consumer"}},
			{Name: "flaky", Paths: []string{"/flaky"}, Service: "flaky"},
		},
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	var buf bytes.Buffer
	var mu sync.Mutex
	reg := prometheus.NewRegistry()
	h := NewHandler(Options{
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: NewMetrics(reg),
		Observe: ObserveOptions{
			TracerProvider: tp, Propagator: propagator,
			AccessLog:       slog.New(slog.NewJSONHandler(lockedWriter{&buf, &mu}, nil)),
			AccessLogSample: 1,
		},
	})
	applyCfg(t, h, 1, cfg)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &observed{gw: srv.URL, spans: rec, accessed: &buf, reg: reg, seen: seen, key: key, mu: &mu}
}

func targetsOf(urls []string) []config.Target {
	var ts []config.Target
	for _, u := range urls {
		ts = append(ts, config.Target{URL: u})
	}
	return ts
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func spansByKind(spans []sdktrace.ReadOnlySpan, kind trace.SpanKind) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanKind() == kind {
			out = append(out, s)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// TestTracing: the client's trace continues through the gateway (server
// span child of the client's span, one client span per upstream attempt)
// and reaches the upstream, baggage included.
func TestTracing(t *testing.T) {
	o := observedGateway(t)
	clientTrace := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	clientSpan := trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9}
	code, _, _ := do(t, "GET", o.gw+"/users/42", nil,
		"traceparent", fmt.Sprintf("00-%s-%s-01", clientTrace, clientSpan),
		"baggage", "tenant=acme",
		"X-Api-Key", o.key)
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	spans := o.spans.Ended()
	servers, clients := spansByKind(spans, trace.SpanKindServer), spansByKind(spans, trace.SpanKindClient)
	if len(servers) != 1 || len(clients) != 1 {
		t.Fatalf("got %d server and %d client spans, want 1 and 1", len(servers), len(clients))
	}
	srv, cli := servers[0], clients[0]
	if srv.SpanContext().TraceID() != clientTrace || srv.Parent().SpanID() != clientSpan {
		t.Fatalf("server span not a child of the client's span: trace %s parent %s", srv.SpanContext().TraceID(), srv.Parent().SpanID())
	}
	if cli.Parent().SpanID() != srv.SpanContext().SpanID() {
		t.Fatal("client span is not a child of the server span")
	}
	for k, want := range map[string]string{
		"http.route": "/users/{id}", "portico.route": "users", "portico.service": "users",
		"portico.consumer": "alice", "portico.ratelimit": "allowed", "http.response.status_code": "200",
		"http.request.method": "GET",
	} {
		if got := attr(srv, k); got != want {
			t.Errorf("server span %s = %q, want %q", k, got, want)
		}
	}
	if srv.Name() != "GET /users/{id}" {
		t.Errorf("server span name %q", srv.Name())
	}
	// The upstream receives the trace context of the attempt span.
	hdr := o.seen.headers[len(o.seen.headers)-1]
	ctx := propagator.Extract(t.Context(), propagation.HeaderCarrier(hdr))
	sc := trace.SpanContextFromContext(ctx)
	if sc.TraceID() != clientTrace || sc.SpanID() != cli.SpanContext().SpanID() {
		t.Fatalf("upstream got traceparent %q, want trace %s span %s", hdr.Get("traceparent"), clientTrace, cli.SpanContext().SpanID())
	}
	if baggage.FromContext(ctx).Member("tenant").Value() != "acme" {
		t.Fatalf("baggage lost: %q", hdr.Get("baggage"))
	}
}

// TestRetryAttemptSpans: a retried request shows two sibling attempt spans.
func TestRetryAttemptSpans(t *testing.T) {
	o := observedGateway(t, deadURL(t))
	for range 2 { // round robin: one of the two starts on the dead target
		if code, _, _ := do(t, "GET", o.gw+"/flaky", nil); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	var found bool
	for _, srv := range spansByKind(o.spans.Ended(), trace.SpanKindServer) {
		var attempts []sdktrace.ReadOnlySpan
		for _, c := range spansByKind(o.spans.Ended(), trace.SpanKindClient) {
			if c.Parent().SpanID() == srv.SpanContext().SpanID() {
				attempts = append(attempts, c)
			}
		}
		if len(attempts) == 2 {
			found = true
			if attempts[0].Status().Code.String() != "Error" || attr(attempts[0], "portico.attempt") != "1" || attr(attempts[1], "portico.attempt") != "2" {
				t.Fatalf("attempt spans: %v %v", attempts[0].Status(), attempts[1].Attributes())
			}
			if attr(srv, "portico.upstream.attempts") != "2" {
				t.Fatal("server span does not count the attempts")
			}
		}
	}
	if !found {
		t.Fatal("no request with two attempt spans")
	}
}

func TestAccessLog(t *testing.T) {
	o := observedGateway(t)
	do(t, "GET", o.gw+"/users/7?token=secret-query-token", nil, "X-Api-Key", o.key,
		"Authorization", "Bearer secret-bearer-token", "Cookie", "session=secret-cookie")
	do(t, "GET", o.gw+"/nowhere", nil)
	o.mu.Lock()
	raw := o.accessed.String()
	o.mu.Unlock()
	for _, secret := range []string{o.key, "secret-query-token", "secret-bearer-token", "secret-cookie"} {
		if strings.Contains(raw, secret) {
			t.Fatalf("access log contains a secret (%q): %s", secret, raw)
		}
	}
	lines := strings.Split(strings.TrimSpace(raw), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d access log lines, want 2:\n%s", len(lines), raw)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "trace_id", "span_id", "route", "service", "upstream", "method", "path", "status", "duration_ms", "bytes", "consumer", "client_ip"} {
		if _, ok := first[k]; !ok {
			t.Errorf("access log line lacks %q: %s", k, lines[0])
		}
	}
	if first["consumer"] != "alice" || first["status"] != float64(200) || first["path"] != "/users/7" {
		t.Fatalf("access log line: %s", lines[0])
	}
}

func TestMetricsAfterTraffic(t *testing.T) {
	o := observedGateway(t)
	for range 3 {
		do(t, "GET", o.gw+"/users/1", nil, "X-Api-Key", o.key)
	}
	do(t, "GET", o.gw+"/users/1", nil) // 401
	do(t, "GET", o.gw+"/nowhere", nil) // 404
	var buf bytes.Buffer
	mfs, err := o.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatal(err)
	}
	count := func(name string, labels map[string]string) float64 {
		mf := families[name]
		if mf == nil {
			return -1
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
		return 0
	}
	if got := count("portico_requests_total", map[string]string{"route": "users", "status": "2xx"}); got != 3 {
		t.Errorf("2xx on users = %v, want 3", got)
	}
	if got := count("portico_requests_total", map[string]string{"route": "users", "status": "4xx"}); got != 1 {
		t.Errorf("4xx on users = %v, want 1", got)
	}
	if got := count("portico_requests_total", map[string]string{"route": "", "status": "4xx"}); got != 1 {
		t.Errorf("unrouted 4xx = %v, want 1", got)
	}
	if got := count("portico_auth_failures_total", map[string]string{"route": "users", "reason": "missing"}); got != 1 {
		t.Errorf("auth failures = %v, want 1", got)
	}
	if families["portico_request_duration_seconds"] == nil || families["portico_requests_in_flight"] == nil {
		t.Error("latency histogram or in-flight gauge missing")
	}
}
