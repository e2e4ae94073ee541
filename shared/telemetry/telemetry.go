// Package telemetry sets up OpenTelemetry tracing for Portico's binaries from
// the standard OTEL_* environment variables, so that operators configure it
// the way they configure any other OpenTelemetry-instrumented service.
//
// Without an OTLP endpoint nothing is set up but the W3C propagators: the
// global tracer provider stays the no-op one, whose spans cost next to
// nothing and carry the incoming trace context unchanged, so a gateway with
// tracing off still forwards traceparent, tracestate and baggage.
package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// The variables this package decides on itself. Everything else (headers,
// TLS, timeouts, compression, the sampler, batching limits, resource
// attributes) is read by the SDK and the exporters, so that every standard
// variable works without being listed here.
const (
	envSDKDisabled      = "OTEL_SDK_DISABLED"
	envTracesExporter   = "OTEL_TRACES_EXPORTER"
	envEndpoint         = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint   = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol         = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol   = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	protoGRPC           = "grpc"
	protoHTTPProtobuf   = "http/protobuf"
	protoHTTPJSON       = "http/json"
	exporterOTLP        = "otlp"
	exporterNone        = "none"
	defaultOTLPProtocol = protoHTTPProtobuf
)

// Enabled reports whether an exporter is configured: an OTLP endpoint is set
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), and
// neither OTEL_TRACES_EXPORTER=none nor OTEL_SDK_DISABLED=true turns it off.
// When false, Setup leaves the no-op tracer provider in place.
//
// An endpoint is required even though the exporters would default to
// localhost: a gateway must not start exporting (and logging export
// failures) just because nobody configured tracing.
func Enabled() bool {
	if strings.EqualFold(strings.TrimSpace(os.Getenv(envSDKDisabled)), "true") {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(os.Getenv(envTracesExporter)), exporterNone) {
		return false
	}
	return os.Getenv(envEndpoint) != "" || os.Getenv(envTracesEndpoint) != ""
}

// Setup configures tracing from the standard OTEL_* variables and installs
// the global tracer provider and the W3C propagators (tracecontext +
// baggage). It returns a shutdown func that flushes spans; call it before
// the process exits, with a deadline, or buffered spans are lost.
//
// When Enabled is false it installs only the propagators and returns a
// shutdown that does nothing. The propagators are installed even when Setup
// fails, so that a caller which carries on without tracing still forwards
// trace context.
//
// The protocol comes from OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
// OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" (the default), "http/json" or
// "grpc". service.name is OTEL_SERVICE_NAME if set, else service; the
// resource also takes OTEL_RESOURCE_ATTRIBUTES, which override service and
// version too, so that an operator has the last word.
func Setup(ctx context.Context, service, version string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	noop := func(context.Context) error { return nil }
	if !Enabled() {
		return noop, nil
	}
	if e := strings.TrimSpace(os.Getenv(envTracesExporter)); e != "" && e != exporterOTLP {
		return noop, fmt.Errorf("telemetry: %s=%q is not supported (want %q or %q)", envTracesExporter, e, exporterOTLP, exporterNone)
	}
	res, err := newResource(ctx, service, version)
	if err != nil {
		return noop, err
	}
	exp, err := newExporter(ctx)
	if err != nil {
		return noop, err
	}
	// The sampler is left to the SDK, which reads OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG itself (default parentbased_always_on); the
	// batcher likewise reads OTEL_BSP_*.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// protocol returns the OTLP protocol for traces: the signal-specific
// variable wins over the general one, as the OTLP exporter spec says.
func protocol() string {
	for _, k := range []string{envTracesProtocol, envProtocol} {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v
		}
	}
	return defaultOTLPProtocol
}

// newExporter picks the exporter for the protocol. Each exporter reads the
// rest of OTEL_EXPORTER_OTLP_* (endpoint, headers, TLS, timeout) itself,
// including the protocol again, which is how otlptracehttp knows to send
// JSON for "http/json". Neither connects here: the first export does.
func newExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch p := protocol(); p {
	case protoGRPC:
		exp, err = otlptracegrpc.New(ctx)
	case protoHTTPProtobuf, protoHTTPJSON:
		exp, err = otlptracehttp.New(ctx)
	default:
		// Silently falling back to another protocol would send requests the
		// collector cannot parse, and the operator would see no traces and
		// no reason why.
		return nil, fmt.Errorf("telemetry: OTLP protocol %q is not supported (want %q, %q or %q)", p, protoHTTPProtobuf, protoHTTPJSON, protoGRPC)
	}
	if err != nil {
		// Exporter errors name the endpoint at most, never the headers, which
		// may carry credentials.
		return nil, fmt.Errorf("telemetry: create OTLP %s exporter: %w", protocol(), err)
	}
	return exp, nil
}

// newResource describes this process. Later options override earlier ones,
// hence the order: defaults, then what the binary knows, then the
// environment.
//
// The process's command line is left out (resource.WithProcess would add
// it): flags may carry secrets, and spans travel to third-party backends.
func newResource(ctx context.Context, service, version string) (*resource.Resource, error) {
	var attrs []attribute.KeyValue
	if service != "" {
		attrs = append(attrs, semconv.ServiceName(service))
	}
	if version != "" {
		attrs = append(attrs, semconv.ServiceVersion(version))
	}
	res, err := resource.New(ctx,
		resource.WithService(), // unknown_service:<exe> and a service.instance.id
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
		resource.WithAttributes(attrs...),
		resource.WithFromEnv(),
	)
	if err != nil {
		// Even a partial resource (resource.ErrPartialResource, typically a
		// malformed OTEL_RESOURCE_ATTRIBUTES) fails: that shows the operator
		// the typo instead of silently dropping attributes their dashboards
		// rely on.
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}
