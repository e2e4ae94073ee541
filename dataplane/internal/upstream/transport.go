package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/portico-gw/portico/dataplane/internal/balancer"
	"github.com/portico-gw/portico/dataplane/internal/tracecarrier"
)

// ErrNoEndpoints means the service has no instance to send the request to
// (none discovered, or all unhealthy). The proxy answers 503 at once.
var ErrNoEndpoints = errors.New("no healthy upstream instance")

// ErrAttemptTimeout means one attempt got no response headers within the
// service's timeout.
var ErrAttemptTimeout = errors.New("upstream attempt timed out")

// ErrClientBody wraps an attempt that failed because of the client's
// request body (broken chunked framing, a body over the route's limit, a
// client that stopped sending it): the client's fault, not the instance's.
var ErrClientBody = errors.New("reading the client's request body failed")

// ErrClientLate is the ErrClientBody of an attempt that timed out while the
// client was behind with its body: the timeout measured the client.
var ErrClientLate = fmt.Errorf("%w: the client was late with it", ErrClientBody)

// Exchange is a Call of the reverse proxy (or of anyone sending an HTTP
// request through Transport), with the upstream path the instance's base
// path is put in front of.
type Exchange struct {
	Call
	// Path is the upstream path before the instance's base path.
	Path string
}

// ClientBody is the client's request body as the proxy reads it.
type ClientBody interface {
	// ClientFault tells whether the body failed (stalled past its
	// deadline, broke off, malformed, over the limit): whatever failed
	// after that is the client's doing.
	ClientFault() bool
	// Late tells whether the client is behind with its body: a timeout
	// that fires now measured the client, not the instance.
	Late() bool
	// Abandon cuts off a read waiting for the client: net/http's
	// transport waits for its body reader before an attempt returns.
	Abandon()
}

// Exchanger gives the transport the Exchange inside whatever per-request
// value the proxy keeps in the context under ExchangeKey.
type Exchanger interface{ UpstreamExchange() *Exchange }

// ExchangeKey is the context key of the Exchanger.
type ExchangeKey struct{}

// Transport is the HTTP attempt of the call path: RoundTrip runs the Call
// of the Exchange in the request's context (Call.Do), sending each attempt
// to its instance through the shared HTTP transport.
type Transport struct {
	base http.RoundTripper
	// template is the *http.Transport inside base, which a service with
	// TLS instances clones for its own (tlsconfig.go).
	template *http.Transport
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
}

// NewTransport wraps the shared HTTP transport. Its DialContext must honour
// ConnectTimeout (see DialContext). Each attempt gets a client span from tp
// and carries the trace context (prop) to the upstream, so retries show as
// sibling spans and the upstream's own spans join the trace.
func NewTransport(base http.RoundTripper, tp trace.TracerProvider, prop propagation.TextMapPropagator) *Transport {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	if prop == nil {
		prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	return &Transport{base: base, template: httpTransport(base), tracer: tp.Tracer("github.com/portico-gw/portico/dataplane/upstream"), prop: prop}
}

// RoundTrip implements http.RoundTripper: the Exchange's call with HTTP
// attempts. A request without an Exchange goes to the base transport as it
// is.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	xv, _ := req.Context().Value(ExchangeKey{}).(Exchanger)
	if xv == nil {
		return t.base.RoundTrip(req)
	}
	x := xv.UpstreamExchange()
	hasBody := req.Body != nil && req.Body != http.NoBody
	var body *bodyGuard
	if hasBody {
		body = &bodyGuard{rc: req.Body}
	}
	x.Request = req
	// A body is read as it is sent: once an instance has had some of it,
	// another cannot get it whole.
	x.Resend = Idempotent(req.Method) && !hasBody
	var resp *http.Response
	err := x.Do(req.Context(), func(ctx context.Context, m *Member, n int) Result {
		if resp != nil {
			drain(resp) // a retry: the previous answer is discarded
		}
		var res Result
		resp, res = t.attempt(ctx, req, x, m, body, n)
		return res
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// attempt sends one try to m. The instance stays in flight until the
// response body is closed, which is what least_request compares.
func (t *Transport) attempt(ctx context.Context, req *http.Request, x *Exchange, m *Member, body *bodyGuard, n int) (*http.Response, Result) {
	// A request whose span is not recorded (not sampled, or no tracing)
	// gets no attempt span either: creating one would cost an allocation
	// per attempt for nothing, and the trace context sent upstream is the
	// request's own.
	var span trace.Span
	if trace.SpanFromContext(ctx).IsRecording() {
		ctx, span = t.tracer.Start(ctx, req.Method, clientSpan...)
		defer span.End()
	}
	out := req.WithContext(ctx)
	url := *req.URL
	url.Scheme, url.Host, url.Path, url.RawPath = m.Scheme, m.Host, m.BasePath+x.Path, ""
	out.URL = &url
	if body != nil {
		out.Body = body
	}
	// Attempts run one after another, so writing the trace context into
	// the shared header map cannot race with an earlier attempt.
	t.prop.Inject(ctx, tracecarrier.Header(out.Header))
	rt := t.base
	if u := x.Upstream; u.tlsRT != nil && m.Scheme == "https" {
		rt = u.tlsRT.get(t.template, u.tls)
	}
	resp, err := rt.RoundTrip(out)
	if span != nil {
		span.SetAttributes(
			attribute.String("http.request.method", req.Method),
			attribute.String("server.address", m.Host),
			attribute.String("url.full", url.String()),
			attribute.String("portico.service", x.Upstream.Name),
			attribute.Int("portico.attempt", n),
		)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
			if resp.StatusCode >= 500 {
				span.SetStatus(codes.Error, resp.Status)
			}
		}
	}
	switch {
	case err != nil && body != nil && body.failed.Load():
		return nil, Result{Outcome: ClientFault, Err: err}
	case err != nil:
		return nil, Result{Outcome: Broken, Unsent: dialFailed(err), Err: err}
	}
	if rw, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		// An upgraded connection must stay writable for the tunnel.
		resp.Body = &releaseRWBody{releaseBody{ReadCloser: rw, ep: m.EP}, rw}
	} else {
		resp.Body = &releaseBody{ReadCloser: resp.Body, ep: m.EP}
	}
	res := Result{Status: resp.StatusCode, Keep: true}
	if resp.StatusCode >= 500 {
		res.Outcome = Failed
	}
	return resp, res
}

// dialFailed reports a connection that was never established: nothing was
// sent, so any request, whatever its method or body, can go elsewhere.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// drain reads a little of a response being discarded for a retry, so that
// a short body lets its connection be reused.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
}

// bodyGuard lends the client's body to one attempt after another. The
// transport closes a request body when an attempt fails; the guard ignores
// that, and the reverse proxy closes the real body when the request is done.
// It also notes a failed read, which tells a client's broken body apart
// from an upstream's failure.
type bodyGuard struct {
	rc io.ReadCloser
	// failed is atomic: the transport may still be reading the body when
	// RoundTrip has returned a response.
	failed atomic.Bool
}

func (g *bodyGuard) Read(p []byte) (int, error) {
	n, err := g.rc.Read(p)
	if err != nil && err != io.EOF {
		g.failed.Store(true)
	}
	return n, err
}

func (g *bodyGuard) Close() error { return nil }

type releaseBody struct {
	io.ReadCloser
	ep   *balancer.Endpoint
	once sync.Once
}

func (b *releaseBody) Close() error {
	b.once.Do(b.ep.Release)
	return b.ReadCloser.Close()
}

type releaseRWBody struct {
	releaseBody
	w io.Writer
}

func (b *releaseRWBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// DialContext wraps dial so that a connection honours the connect timeout
// of the Upstream the request is for: one shared transport serves every
// service, each with its own timeout.
func DialContext(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		// The exchange is in the context already; reading the timeout from it
		// spares a context value per attempt.
		if xv, ok := ctx.Value(ExchangeKey{}).(Exchanger); ok {
			if d := xv.UpstreamExchange().Upstream.ConnectTimeout; d > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
		}
		return dial(ctx, network, addr)
	}
}

// clientSpan is built once: a span option made per call is an allocation per
// request, traced or not.
var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
