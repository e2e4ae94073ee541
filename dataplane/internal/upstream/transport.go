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
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/portico-gw/portico/dataplane/internal/balancer"
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

// Exchange is the per-request state the transport needs and reports back.
type Exchange struct {
	Upstream *Upstream
	// Path is the upstream path before the instance's base path.
	Path string
	// Reported by RoundTrip:
	Attempts int
	Addr     string // instance of the last attempt
	Failed   bool   // the upstream failed the request (for the breaker)
	// Client is the client's request body as the proxy reads it, or nil.
	// An attempt that fails while it reports a fault of the client's is
	// not charged to the instance, the breaker or the retry budget.
	Client ClientBody
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

// Transport sends each request to an instance of its Upstream, retrying on
// another instance when that is safe and the retry budget allows.
type Transport struct {
	base   http.RoundTripper
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
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
	return &Transport{base: base, tracer: tp.Tracer("github.com/portico-gw/portico/dataplane/upstream"), prop: prop}
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	xv, _ := req.Context().Value(ExchangeKey{}).(Exchanger)
	if xv == nil {
		return t.base.RoundTrip(req)
	}
	x := xv.UpstreamExchange()
	u := x.Upstream
	u.budget.request()
	v := u.view.Load()
	hasBody := req.Body != nil && req.Body != http.NoBody
	var body *bodyGuard
	if hasBody {
		body = &bodyGuard{rc: req.Body, client: x.Client}
	}
	safeToResend := idempotent(req.Method) && !hasBody
	var tried balancer.Tried
	m := v.pick(req, &tried, u.deps.Now().UnixNano())
	if m == nil {
		x.Failed = true
		return nil, ErrNoEndpoints
	}
	for attempt := 1; ; attempt++ {
		tried.Add(m.EP)
		x.Attempts, x.Addr = attempt, m.Host
		resp, err := t.attempt(req, u, m, x.Path, body, attempt)
		if err != nil && req.Context().Err() != nil {
			return nil, err // the client went away: nothing to learn, nobody to answer
		}
		if err != nil && body != nil && body.clientFault() {
			// Charging the instance (or, through x.Failed, the breaker) would
			// let any client eject instances and open the breaker with
			// malformed uploads; and no other instance would do better.
			x.Failed = false
			if body.late.Load() {
				return nil, fmt.Errorf("%w: %w", ErrClientLate, err)
			}
			return nil, fmt.Errorf("%w: %w", ErrClientBody, err)
		}
		failed := err != nil || resp.StatusCode >= 500
		u.record(v, m, failed)
		u.metrics.attempt(err, resp)

		retry := attempt < u.retry.attempts &&
			(err != nil && (dialFailed(err) || safeToResend) ||
				err == nil && safeToResend && u.retry.onStatus[resp.StatusCode])
		var next *Member
		if retry {
			next = v.pick(req, &tried, u.deps.Now().UnixNano())
		}
		if next == nil || !u.budget.spend() {
			x.Failed = failed
			if err != nil {
				return nil, err
			}
			return resp, nil
		}
		if resp != nil {
			drain(resp)
		}
		u.metrics.retry()
		m = next
	}
}

// attempt sends one try to m. The instance counts as in flight until the
// response body is closed, which is what least_request compares.
func (t *Transport) attempt(req *http.Request, u *Upstream, m *Member, path string, body *bodyGuard, n int) (*http.Response, error) {
	// A request whose span is not recorded (not sampled, or no tracing)
	// gets no attempt span either: creating one would cost an allocation
	// per attempt for nothing, and the trace context sent upstream is the
	// request's own.
	ctx := req.Context()
	var span trace.Span
	if trace.SpanFromContext(ctx).IsRecording() {
		ctx, span = t.tracer.Start(ctx, req.Method, clientSpan...)
		defer span.End()
	}
	start := time.Now()
	var timer *time.Timer
	if u.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		timer = time.AfterFunc(u.AttemptTimeout, func() {
			cancel()
			if body != nil && body.client != nil && body.client.Late() {
				// The attempt waited on the client: the failure is the
				// client's, and a read waiting for it must not hold the
				// attempt past its timeout.
				body.late.Store(true)
				body.client.Abandon()
			}
		})
	}
	out := req.WithContext(ctx)
	url := *req.URL
	url.Scheme, url.Host, url.Path, url.RawPath = m.Scheme, m.Host, m.BasePath+path, ""
	out.URL = &url
	if body != nil {
		out.Body = body
	}
	// Attempts run one after another, so writing the trace context into
	// the shared header map cannot race with an earlier attempt.
	t.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	m.EP.Acquire()
	resp, err := t.base.RoundTrip(out)
	if timer != nil && !timer.Stop() && err != nil {
		err = fmt.Errorf("%w after %s: %w", ErrAttemptTimeout, u.AttemptTimeout, err)
	}
	u.metrics.observeLatency(time.Since(start))
	if span != nil {
		span.SetAttributes(
			attribute.String("http.request.method", req.Method),
			attribute.String("server.address", m.Host),
			attribute.String("url.full", url.String()),
			attribute.String("portico.service", u.Name),
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
	if err != nil {
		m.EP.Release()
		return nil, err
	}
	if rw, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		// An upgraded connection must stay writable for the tunnel.
		resp.Body = &releaseRWBody{releaseBody{ReadCloser: rw, ep: m.EP}, rw}
		return resp, nil
	}
	resp.Body = &releaseBody{ReadCloser: resp.Body, ep: m.EP}
	return resp, nil
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
	client ClientBody // nil when the proxy does not say
	// late: an attempt timed out while the client was late with the body.
	late atomic.Bool
}

// clientFault reports whether a failed attempt is the client's doing.
func (g *bodyGuard) clientFault() bool {
	return g.failed.Load() || g.late.Load() || g.client != nil && g.client.ClientFault()
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
