package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/portico-gw/portico/shared/telemetry"
	"github.com/portico-gw/portico/shared/testutil"
)

// clearOTELEnv unsets every OTEL_* variable for the test, so that a
// developer's or CI's own tracing setup cannot change what Setup sees.
func clearOTELEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "OTEL_") {
			t.Setenv(k, "") // restores the old value when the test ends
			os.Unsetenv(k)
		}
	}
}

func setup(t *testing.T, service, version string) func() {
	t.Helper()
	shutdown, err := telemetry.Setup(context.Background(), service, version)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	var once sync.Once
	flush := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
	t.Cleanup(flush) // stops the batcher's goroutine even if the test fails early
	return flush
}

// otlpReceiver is a minimal OTLP/HTTP traces endpoint recording what it is
// sent.
type otlpReceiver struct {
	URL string

	mu       sync.Mutex
	requests []*collectortrace.ExportTraceServiceRequest
	headers  []http.Header
}

func startReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
			http.NotFound(w, req)
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var msg collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.requests = append(r.requests, &msg)
		r.headers = append(r.headers, req.Header.Clone())
		r.mu.Unlock()
		resp, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

type exportedSpan struct {
	name     string
	traceID  string
	resource map[string]string
}

func (r *otlpReceiver) spans() []exportedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []exportedSpan
	for _, req := range r.requests {
		for _, rs := range req.GetResourceSpans() {
			res := attrs(rs.GetResource().GetAttributes())
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out = append(out, exportedSpan{name: s.GetName(), traceID: trace.TraceID(s.GetTraceId()).String(), resource: res})
				}
			}
		}
	}
	return out
}

func (r *otlpReceiver) requestCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return m
}

// This test comes first so that it sees the global tracer provider as a
// fresh gateway process does: later tests install SDK providers, and a
// global provider cannot be uninstalled.
func TestSetupWithoutEndpointKeepsNoopAndForwardsContext(t *testing.T) {
	clearOTELEnv(t)
	if telemetry.Enabled() {
		t.Fatal("Enabled() = true with no OTEL_* variables set")
	}
	before := otel.GetTracerProvider()
	setup(t, "portico-test", "1.0.0")
	if after := otel.GetTracerProvider(); after != before {
		t.Fatalf("Setup replaced the global tracer provider (%T) with %T although no exporter is configured", before, after)
	}

	// A gateway hop with tracing off: the incoming context must come out
	// as it went in, so the upstream joins the caller's trace.
	const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	in := propagation.HeaderCarrier{}
	in.Set("traceparent", traceparent)
	in.Set("baggage", "tenant=acme")
	prop := otel.GetTextMapPropagator()
	ctx := prop.Extract(context.Background(), in)
	ctx, span := otel.Tracer("test").Start(ctx, "proxy")
	defer span.End()
	if span.IsRecording() {
		t.Error("span is recording with no exporter configured")
	}
	out := propagation.HeaderCarrier{}
	prop.Inject(ctx, out)
	if got := out.Get("traceparent"); got != traceparent {
		t.Errorf("forwarded traceparent = %q, want %q", got, traceparent)
	}
	if got := out.Get("baggage"); got != "tenant=acme" {
		t.Errorf("forwarded baggage = %q, want %q", got, "tenant=acme")
	}
}

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing", nil, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{"exporter otlp", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"sdk disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, false},
		{"protocol alone", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearOTELEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if got := telemetry.Enabled(); got != tc.want {
				t.Errorf("Enabled() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSetupExportsOverOTLPHTTP(t *testing.T) {
	clearOTELEnv(t)
	recv := startReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,portico.zone=eu-1")
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20s3cret")
	if !telemetry.Enabled() {
		t.Fatal("Enabled() = false with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	flush := setup(t, "portico-test", "1.2.3")

	_, span := otel.Tracer("test").Start(context.Background(), "route")
	if !span.IsRecording() {
		t.Fatal("span is not recording with an exporter configured")
	}
	traceID := span.SpanContext().TraceID().String()
	span.End()
	flush()

	spans := recv.spans()
	if len(spans) != 1 {
		t.Fatalf("receiver got %d span(s) in %d request(s), want 1 span", len(spans), recv.requestCount())
	}
	got := spans[0]
	if got.name != "route" || got.traceID != traceID {
		t.Errorf("exported span %q in trace %s, want %q in trace %s", got.name, got.traceID, "route", traceID)
	}
	for k, want := range map[string]string{
		"service.name":                "portico-test",
		"service.version":             "1.2.3",
		"deployment.environment.name": "test",
		"portico.zone":                "eu-1",
		"telemetry.sdk.language":      "go",
	} {
		if v := got.resource[k]; v != want {
			t.Errorf("resource %s = %q, want %q (resource: %v)", k, v, want, got.resource)
		}
	}
	if got.resource["service.instance.id"] == "" {
		t.Errorf("resource has no service.instance.id: %v", got.resource)
	}
	recv.mu.Lock()
	auth := recv.headers[0].Get("Authorization")
	recv.mu.Unlock()
	if auth != "Bearer s3cret" {
		t.Errorf("exporter sent Authorization %q, want the value from OTEL_EXPORTER_OTLP_HEADERS", auth)
	}
}

func TestSetupServiceNameFromEnvWins(t *testing.T) {
	clearOTELEnv(t)
	recv := startReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_SERVICE_NAME", "edge-eu")
	flush := setup(t, "portico-test", "1.2.3")
	_, span := otel.Tracer("test").Start(context.Background(), "route")
	span.End()
	flush()
	spans := recv.spans()
	if len(spans) != 1 {
		t.Fatalf("receiver got %d span(s), want 1", len(spans))
	}
	if got := spans[0].resource["service.name"]; got != "edge-eu" {
		t.Errorf("service.name = %q, want OTEL_SERVICE_NAME's %q", got, "edge-eu")
	}
}

// The traces-specific variables win over the general ones: a general
// protocol of grpc must not stop a traces endpoint speaking HTTP.
func TestSetupTracesSpecificProtocolWins(t *testing.T) {
	clearOTELEnv(t)
	recv := startReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", recv.URL+"/v1/traces")
	flush := setup(t, "portico-test", "")
	_, span := otel.Tracer("test").Start(context.Background(), "route")
	span.End()
	flush()
	if n := len(recv.spans()); n != 1 {
		t.Fatalf("HTTP receiver got %d span(s), want 1", n)
	}
}

func TestSetupSamplerFromEnv(t *testing.T) {
	sampledParent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1},
		SpanID:     trace.SpanID{1},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	for _, tc := range []struct {
		sampler, arg string
		parent       bool // start under a sampled remote parent
		want         bool
	}{
		{"", "", false, true}, // default parentbased_always_on
		{"always_on", "", false, true},
		{"always_off", "", false, false},
		{"always_off", "", true, false},
		{"traceidratio", "0", false, false},
		{"traceidratio", "1", false, true},
		{"parentbased_always_on", "", false, true},
		{"parentbased_always_off", "", false, false},
		{"parentbased_always_off", "", true, true}, // the parent decides
		{"parentbased_traceidratio", "0", false, false},
		{"parentbased_traceidratio", "0", true, true},
	} {
		name := tc.sampler
		if name == "" {
			name = "default"
		}
		if tc.arg != "" {
			name += "=" + tc.arg
		}
		if tc.parent {
			name += ",sampled-parent"
		}
		t.Run(name, func(t *testing.T) {
			clearOTELEnv(t)
			recv := startReceiver(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
			if tc.sampler != "" {
				t.Setenv("OTEL_TRACES_SAMPLER", tc.sampler)
			}
			if tc.arg != "" {
				t.Setenv("OTEL_TRACES_SAMPLER_ARG", tc.arg)
			}
			flush := setup(t, "portico-test", "")
			ctx := context.Background()
			if tc.parent {
				ctx = trace.ContextWithRemoteSpanContext(ctx, sampledParent)
			}
			_, span := otel.Tracer("test").Start(ctx, "route")
			if got := span.IsRecording(); got != tc.want {
				t.Errorf("IsRecording() = %v, want %v", got, tc.want)
			}
			span.End()
			flush()
			if n, want := len(recv.spans()), map[bool]int{true: 1, false: 0}[tc.want]; n != want {
				t.Errorf("exported %d span(s), want %d", n, want)
			}
		})
	}
}

func TestSetupExporterNoneExportsNothing(t *testing.T) {
	clearOTELEnv(t)
	recv := startReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	flush := setup(t, "portico-test", "")
	_, span := otel.Tracer("test").Start(context.Background(), "route")
	span.End()
	flush()
	if n := recv.requestCount(); n != 0 {
		t.Errorf("receiver got %d request(s) with OTEL_TRACES_EXPORTER=none", n)
	}
}

func TestSetupRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, key, value, wantErr string
	}{
		{"protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", "thrift", `protocol "thrift"`},
		{"traces protocol", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc/json", `protocol "grpc/json"`},
		{"exporter", "OTEL_TRACES_EXPORTER", "zipkin", `OTEL_TRACES_EXPORTER="zipkin"`},
		{"resource attributes", "OTEL_RESOURCE_ATTRIBUTES", "novalue", "resource"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearOTELEnv(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
			t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20s3cret")
			t.Setenv(tc.key, tc.value)
			before := otel.GetTracerProvider()
			shutdown, err := telemetry.Setup(context.Background(), "portico-test", "")
			if err == nil {
				_ = shutdown(context.Background())
				t.Fatalf("Setup accepted %s=%q", tc.key, tc.value)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks the OTLP header value: %v", err)
			}
			if otel.GetTracerProvider() != before {
				t.Error("a failed Setup replaced the global tracer provider")
			}
			if err := shutdown(context.Background()); err != nil {
				t.Errorf("shutdown after a failed Setup: %v", err)
			}
		})
	}
}

// TestSetupExportsToJaeger checks the whole path against a real backend:
// what the SDK sends over each protocol is what Jaeger stores and serves.
func TestSetupExportsToJaeger(t *testing.T) {
	clearOTELEnv(t)
	// Started before any OTEL_* variable is set, so that Jaeger, which
	// inherits this process's environment, sees none of them.
	j := testutil.StartJaeger(t)

	for _, tc := range []struct{ protocol, endpoint string }{
		{"http/protobuf", "http://" + j.OTLPHTTP},
		{"grpc", "http://" + j.OTLPGRPC},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			service := "portico-test-" + strings.ReplaceAll(tc.protocol, "/", "-")
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tc.endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.protocol)
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=jaeger-test")
			flush := setup(t, service, "9.9.9")

			tracer := otel.Tracer("test")
			ctx, parent := tracer.Start(context.Background(), "gateway")
			_, child := tracer.Start(ctx, "upstream")
			child.End()
			parent.End()
			flush()

			traceID := parent.SpanContext().TraceID().String()
			var tr testutil.Trace
			testutil.Eventually(t, 30*time.Second, func() bool {
				tr = j.WaitTrace(t, service, traceID, 30*time.Second)
				return len(tr.Spans) == 2
			}, "jaeger did not get both spans")

			if tr.TraceID != traceID {
				t.Errorf("trace ID %s, want %s", tr.TraceID, traceID)
			}
			byName := map[string]testutil.Span{}
			for _, s := range tr.Spans {
				byName[s.OperationName] = s
				if s.Process.ServiceName != service {
					t.Errorf("span %q has service %q, want %q", s.OperationName, s.Process.ServiceName, service)
				}
			}
			gw, up := byName["gateway"], byName["upstream"]
			if gw.SpanID != parent.SpanContext().SpanID().String() {
				t.Errorf("gateway span ID %q, want %s (spans: %+v)", gw.SpanID, parent.SpanContext().SpanID(), tr.Spans)
			}
			if len(up.References) != 1 || up.References[0].RefType != "CHILD_OF" || up.References[0].SpanID != gw.SpanID {
				t.Errorf("upstream span references %+v, want CHILD_OF %s", up.References, gw.SpanID)
			}
			procTags := map[string]any{}
			for _, kv := range gw.Process.Tags {
				procTags[kv.Key] = kv.Value
			}
			if procTags["deployment.environment.name"] != "jaeger-test" || procTags["service.version"] != "9.9.9" {
				t.Errorf("process tags %v lack the resource attributes", procTags)
			}
		})
	}
}
