package grpcpass_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/portico-gw/portico/dataplane/internal/proxy"
)

// TestTracingAndAccessLog: a call gets the gateway's server span and a
// client span per attempt, the service receives the attempt's trace
// context (traceparent) so its spans join the trace, and the access log
// records a refused call under the HTTP status its gRPC status stands for
// (the wire says 200).
func TestTracingAndAccessLog(t *testing.T) {
	srv := startEcho(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var logs bytes.Buffer
	g := newGateway(t, passConfig(nil, nil, srv.addr), func(o *proxy.Options) {
		o.Observe.TracerProvider = tp
		o.Observe.Propagator = propagation.TraceContext{}
		o.Observe.AccessLog = slog.New(slog.NewJSONHandler(&logs, nil))
		o.Observe.AccessLogSample = 1
	})
	c := g.client(t, false)
	if _, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	var server, client sdktrace.ReadOnlySpan
	for _, s := range exp.GetSpans().Snapshots() {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			server = s
		case trace.SpanKindClient:
			client = s
		}
	}
	if server == nil || client == nil {
		t.Fatalf("spans: %v", exp.GetSpans())
	}
	if client.Parent().SpanID() != server.SpanContext().SpanID() || client.Name() != "grpc.testing.TestService/UnaryCall" {
		t.Errorf("attempt span %q, parent %v; server span %v", client.Name(), client.Parent().SpanID(), server.SpanContext().SpanID())
	}
	tp0 := srv.lastMD().Get("traceparent")
	if len(tp0) != 1 || !strings.Contains(tp0[0], client.SpanContext().TraceID().String()+"-"+client.SpanContext().SpanID().String()) {
		t.Errorf("traceparent at the service = %v, want the attempt span %v", tp0, client.SpanContext())
	}

	// The access log records what the client got: the service's
	// UNIMPLEMENTED as 501, the gateway's "no route" as 404 (UNIMPLEMENTED
	// as well to the client).
	if _, err := c.UnimplementedCall(context.Background(), &testgrpc.Empty{}); codeOf(t, err) != codes.Unimplemented {
		t.Fatal(err)
	}
	other := testgrpc.NewUnimplementedServiceClient(g.conn(t, false))
	if _, err := other.UnimplementedCall(context.Background(), &testgrpc.Empty{}); codeOf(t, err) != codes.Unimplemented {
		t.Fatal(err)
	}
	for _, want := range []string{`"path":"/grpc.testing.TestService/UnaryCall","host":"`, `"status":501`, `"status":404`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("access log lacks %s: %s", want, logs.String())
		}
	}
}
