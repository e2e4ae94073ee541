package proxy

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/tracecarrier"
)

// ObserveOptions configure tracing, access logs and analytics.
type ObserveOptions struct {
	// TracerProvider and Propagator default to the globals, which
	// telemetry.Setup installs (a no-op provider when no exporter is
	// configured: trace context still passes through to upstreams).
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// AccessLog receives one line per request; nil: no access log.
	AccessLog *slog.Logger
	// AccessLogSample is the share of successful requests logged (0..1);
	// requests answered with 4xx or 5xx are always logged.
	AccessLogSample float64
	// Analytics counts per-route traffic for the control plane.
	Analytics interface {
		Observe(route string, status int, d time.Duration)
	}
}

type observer struct {
	ObserveOptions
	tracerProvider trace.TracerProvider
	tracer         trace.Tracer
	prop           propagation.TextMapPropagator
}

func newObserver(o ObserveOptions) observer {
	tp, prop := o.TracerProvider, o.Propagator
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	return observer{ObserveOptions: o, tracerProvider: tp, tracer: tp.Tracer("github.com/portico-gw/portico/dataplane"), prop: prop}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := h.obs.prop.Extract(r.Context(), tracecarrier.Header(r.Header))
	ctx, span := h.obs.tracer.Start(ctx, r.Method, serverSpan...)
	r = r.WithContext(ctx)
	if h.metrics != nil {
		h.metrics.inFlight.Inc()
	}
	// The request's state comes from a pool (as gin's and echo's contexts
	// do): a stage.Request is valid only until the request is answered.
	req := requests.Get().(*stage.Request)
	rec := &recorder{ResponseWriter: w, req: req}
	req.W, req.R, req.Env = rec, r, &h.env
	if len(r.TransferEncoding) > 0 {
		// net/http honours Transfer-Encoding over a Content-Length sent
		// with it and then drops the Content-Length, so the handler cannot
		// tell such a request apart. RFC 9112 §6.1 requires closing the
		// connection after it; closing after every request with a
		// Transfer-Encoding does that, and a smuggled tail behind the body
		// is never read as a request. Chunked uploads are rare; the cost is
		// one reconnect each.
		rec.Header().Set("Connection", "close")
	}
	defer func() {
		// ReverseProxy aborts a body cut off mid-stream with a panic
		// (http.ErrAbortHandler); such a request is still counted, logged
		// and its span ended, then the panic goes on to net/http.
		if p := recover(); p != nil {
			// Not back to the pool: what panicked may still hold it.
			h.finish(rec, req, r, span, start)
			panic(p)
		}
	}()
	h.serve(rec, req)
	h.finish(rec, req, r, span, start)
	*req = stage.Request{}
	requests.Put(req)
}

// finish records a request once it is answered (or aborted).
func (h *Handler) finish(rec *recorder, req *stage.Request, r *http.Request, span trace.Span, start time.Time) {
	status, elapsed := rec.status(), time.Since(start)
	o := &req.Outcome
	if h.metrics != nil {
		h.metrics.inFlight.Dec()
		h.metrics.observe(o.Route, r.Method, status, elapsed)
		if o.AuthFailure != "" {
			h.metrics.authFailures.WithLabelValues(o.Route, o.AuthFailure).Inc()
		}
		if o.Throttled {
			h.metrics.throttled.WithLabelValues(o.Route).Inc()
		}
		if o.IPRefused != "" {
			h.metrics.ipRefusals.WithLabelValues(o.Route, o.IPRefused).Inc()
		}
	}
	if span.IsRecording() {
		h.endSpan(span, r, req, status)
	}
	span.End()
	if h.obs.Analytics != nil {
		h.obs.Analytics.Observe(o.Route, status, elapsed)
	}
	if l := h.obs.AccessLog; l != nil && (status >= 400 || h.obs.AccessLogSample >= 1 || rand.Float64() < h.obs.AccessLogSample) {
		h.accessLog(l, r, req, status, rec.bytes, elapsed, span.SpanContext())
	}
}

// endSpan names the server span after the matched route (HTTP semantic
// conventions: "{method} {http.route}") and records the outcome.
func (h *Handler) endSpan(span trace.Span, r *http.Request, req *stage.Request, status int) {
	o := &req.Outcome
	if o.Pattern != "" {
		span.SetName(r.Method + " " + o.Pattern)
	}
	span.SetAttributes(
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", r.URL.Path),
		attribute.String("url.scheme", scheme(r)),
		attribute.String("server.address", r.Host),
		attribute.String("client.address", req.ClientIP()),
		attribute.String("user_agent.original", r.UserAgent()),
		attribute.Int("http.response.status_code", status),
	)
	if o.Pattern != "" {
		span.SetAttributes(attribute.String("http.route", o.Pattern),
			attribute.String("portico.route", o.Route), attribute.String("portico.service", o.Service))
	}
	if o.Consumer != "" {
		span.SetAttributes(attribute.String("portico.consumer", o.Consumer))
	}
	if o.RateLimit != "" {
		span.SetAttributes(attribute.String("portico.ratelimit", o.RateLimit))
	}
	if o.Cache != "" {
		span.SetAttributes(attribute.String("portico.cache", o.Cache))
	}
	if o.AuthFailure != "" {
		span.SetAttributes(attribute.String("portico.auth.failure", o.AuthFailure))
	}
	if o.Attempts > 1 {
		span.SetAttributes(attribute.Int("portico.upstream.attempts", o.Attempts))
	}
	// Server spans are errors on 5xx only: a 4xx is the client's doing.
	if status >= 500 {
		span.SetStatus(codes.Error, strconv.Itoa(status))
		span.SetAttributes(attribute.String("error.type", strconv.Itoa(status)))
	}
}

// accessLog writes one JSON line per request. It never logs headers,
// cookies, credentials or the query string (which may carry tokens).
func (h *Handler) accessLog(l *slog.Logger, r *http.Request, req *stage.Request, status int, bytes int64, d time.Duration, sc trace.SpanContext) {
	o := &req.Outcome
	attrs := make([]slog.Attr, 0, 16)
	if sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("host", r.Host),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.Int64("bytes", bytes),
		slog.String("client_ip", req.ClientIP()),
		slog.String("route", o.Route),
		slog.String("service", o.Service),
		slog.String("upstream", o.Upstream),
	)
	if o.Attempts > 1 {
		attrs = append(attrs, slog.Int("attempts", o.Attempts))
	}
	if o.Consumer != "" {
		attrs = append(attrs, slog.String("consumer", o.Consumer))
	}
	if o.RateLimit != "" {
		attrs = append(attrs, slog.String("ratelimit", o.RateLimit))
	}
	if o.Cache != "" {
		attrs = append(attrs, slog.String("cache", o.Cache))
	}
	if o.AuthFailure != "" {
		attrs = append(attrs, slog.String("auth_failure", o.AuthFailure))
	}
	l.LogAttrs(context.Background(), slog.LevelInfo, "access", attrs...)
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// serverSpan is built once: a span option made per call is an allocation per
// request, traced or not.
var serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
