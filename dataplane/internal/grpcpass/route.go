// Package grpcpass proxies gRPC as gRPC: the terminal stage of a route to a
// gRPC service that names no method to translate JSON into
// (config.GRPCPassThrough). A call passes through unread, end to end over
// HTTP/2 (h2c or TLS toward the service, as its targets say), whatever its
// kind: unary, server, client or bidirectional streaming.
//
// # What the gateway does to a call
//
//   - It must be a gRPC call (content type application/grpc, POST,
//     HTTP/2); anything else is refused.
//   - The deadline is the client's grpc-timeout, capped by the route's
//     timeout when the route sets one (a call without grpc-timeout then
//     gets it). The service receives what is left of it as its own
//     grpc-timeout, recomputed per attempt, and the gateway ends the call
//     when it passes (DEADLINE_EXCEEDED). Without either, the call lasts
//     as long as both ends want: streams are not uploads, so neither the
//     body deadlines nor a default route timeout apply to them.
//   - Metadata (headers) travels both ways as HTTP/2 headers, except
//     hop-by-hop fields and what the route's stages own: the identity
//     headers (written by the auth stage), the forwarding headers, and the
//     route's request_headers edits. Trailers (grpc-status, grpc-message,
//     grpc-status-details-bin, the service's trailing metadata) are passed
//     on as trailers.
//   - Cancellation: a client that resets its stream or goes away cancels
//     the call toward the service (its stream is reset), and the service
//     sees its context end.
//   - Each message is held to the route's max_body_bytes (the 5-byte
//     length prefix is read; RESOURCE_EXHAUSTED above it); a stream as a
//     whole is not bounded.
//
// # The call path
//
// A call goes through the service's call path (upstream.Call) like every
// other request: breaker (UNAVAILABLE while open), balancer, outlier
// detection, in-flight counts, retries under the budget. Retrying is safe
// only when the service saw nothing, so an attempt is retried only when its
// connection was never established and no byte of the request stream was
// read (net/http's HTTP/2 transport itself retries a stream the server
// refused before processing it). A response is classified when its headers
// arrive: a trailers-only answer carries its status there, and UNAVAILABLE,
// DEADLINE_EXCEEDED, INTERNAL, UNKNOWN and DATA_LOSS count against the
// instance (the rule JSON → gRPC uses); a status that ends a stream after
// messages reaches the breaker (End) but no longer the instance's outlier
// count. A service that breaks the stream mid-way ends the call with
// UNAVAILABLE in the trailers.
//
// The gateway's own refusals before an answer started (auth, rate limits,
// throttle, limits, no instance, open breaker) are written by
// stage.WriteProblem, which answers gRPC calls with a trailers-only status.
package grpcpass

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"

	"github.com/portico-gw/portico/dataplane/internal/grpcjson"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/tracecarrier"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
)

// Route is a pass-through route's terminal stage. It is immutable.
type Route struct {
	up *upstream.Upstream
	// h2c and h2 are the service's transports (h2 nil without TLS
	// instances).
	h2c, h2 *http.Transport
	// maxDeadline caps a call's deadline; 0: the client's alone.
	maxDeadline time.Duration
	maxMessage  int64
}

// Compile returns the pass-through stage of route r to service svc (up),
// or nil when r does not pass gRPC through. maxMessage bounds each request
// message (the route's max_body_bytes). tr nil: the process's transports
// (Shared).
func Compile(r *config.Route, svc *config.Service, up *upstream.Upstream, maxMessage int64, tr *Transports) stage.Stage {
	if up == nil || !config.GRPCPassThrough(r, svc) {
		return nil
	}
	if tr == nil {
		tr = Shared()
	}
	g := &Route{up: up, maxDeadline: r.Timeout.Std(), maxMessage: maxMessage}
	g.h2c, g.h2 = tr.For(up)
	return g
}

// Describe renders the stage for golden files.
func (g *Route) Describe() any {
	return struct {
		Service     string `json:"service"`
		MaxDeadline string `json:"max_deadline,omitempty"`
		MaxMessage  int64  `json:"max_message_bytes"`
		TLS         bool   `json:"tls,omitempty"`
	}{g.up.Name, durationOrEmpty(g.maxDeadline), g.maxMessage, g.h2 != nil}
}

func durationOrEmpty(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// Serve proxies one call.
func (g *Route) Serve(req *stage.Request) {
	w, r := req.W, req.R
	switch {
	case !stage.IsGRPC(r):
		stage.WriteProblem(w, r, http.StatusUnsupportedMediaType, "not-grpc", "this route takes gRPC calls only (content type application/grpc)")
		return
	case r.ProtoMajor != 2:
		stage.WriteProblem(w, r, http.StatusHTTPVersionNotSupported, "grpc-needs-http2", "gRPC calls need HTTP/2")
		return
	case r.Method != http.MethodPost:
		stage.WriteProblem(w, r, http.StatusMethodNotAllowed, "grpc-needs-post", "gRPC calls are POST requests")
		return
	}
	timeout, hasTimeout, err := parseTimeout(r.Header.Get("Grpc-Timeout"))
	if err != nil {
		stage.WriteProblem(w, r, http.StatusBadRequest, "bad-grpc-timeout", err.Error())
		return
	}
	if g.maxDeadline > 0 && (!hasTimeout || timeout > g.maxDeadline) {
		timeout, hasTimeout = g.maxDeadline, true
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if hasTimeout {
		ctx, cancel = context.WithTimeout(r.Context(), timeout)
	} else {
		ctx, cancel = context.WithCancel(r.Context())
	}
	defer cancel()
	ctx = context.WithValue(ctx, connectTimeoutKey{}, g.up.ConnectTimeout)

	c := &call{route: g, req: req, ctx: ctx}
	c.Call = upstream.Call{Upstream: g.up, Request: r}
	if err := c.Admit(); err != nil {
		w.Header().Set("Retry-After", "5")
		stage.WriteProblem(w, r, http.StatusServiceUnavailable, "circuit-open", "service "+g.up.Name+" is failing; calls are paused")
		return
	}
	failed, clientFault := c.run()
	c.End(failed, clientFault)
	req.Outcome.Upstream, req.Outcome.Attempts = c.Addr, c.Attempts
}

// call is one pass-through call.
type call struct {
	upstream.Call
	route *Route
	req   *stage.Request
	ctx   context.Context
	body  *sendBody // nil without a request body
	resp  *http.Response
}

// run makes the call and streams the answer back; it returns the
// breaker's verdict.
func (c *call) run() (failed, clientFault bool) {
	w := c.req.W
	out := c.outbound()
	err := c.Do(c.ctx, func(ctx context.Context, m *upstream.Member, n int) upstream.Result {
		return c.attempt(ctx, out, m, n)
	})
	if err != nil {
		return c.refuse(err)
	}
	resp := c.resp
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Not a gRPC answer (a proxy or a server that does not speak
		// gRPC on this path): the client gets the status the gRPC
		// protocol derives from the HTTP one, and none of its headers.
		code := httpToGRPC(resp.StatusCode)
		stage.WriteGRPCStatus(w, http.StatusBadGateway, code, "the service answered HTTP "+strconv.Itoa(resp.StatusCode)+", not gRPC")
		return resp.StatusCode >= 500, false
	}
	h := w.Header()
	for k, vs := range resp.Header {
		if !config.IsHopByHop(k) {
			h[k] = vs
		}
	}
	if st := resp.Header.Get("Grpc-Status"); st != "" {
		// Trailers-only: the status is in the header block.
		code := parseCode(st)
		logStatus(w, code)
		w.WriteHeader(http.StatusOK)
		return grpcjson.InstanceFailed(code), false
	}
	w.WriteHeader(http.StatusOK)
	ctl := http.NewResponseController(w)
	_ = ctl.Flush() // the client sees the headers (its metadata) at once
	if err := copyMessages(w, ctl, resp.Body); err != nil {
		return c.broken(err)
	}
	// Trailers come with the end of the body; net/http's server sends
	// header fields set after the body under http.TrailerPrefix as
	// trailers, without declaring them first.
	code := codes.Internal // a gRPC answer without grpc-status
	if st := resp.Trailer.Get("Grpc-Status"); st != "" {
		code = parseCode(st)
	}
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
	logStatus(w, code)
	return grpcjson.InstanceFailed(code), false
}

// outbound is the request every attempt sends, but for its instance, its
// grpc-timeout and its trace context: the client's metadata without
// hop-by-hop fields, with the forwarding headers and the route's stages'
// edits and identity.
func (c *call) outbound() *http.Request {
	r := c.req.R
	out := &http.Request{
		Method:        http.MethodPost,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        make(http.Header, len(r.Header)+4),
		ContentLength: -1,
	}
	for k, vs := range r.Header {
		if !config.IsHopByHop(k) && k != "Grpc-Timeout" {
			out.Header[k] = vs
		}
	}
	// gRPC servers require it; it is hop-by-hop in general, so the
	// client's was dropped above.
	out.Header.Set("Te", "trailers")
	if c.req.Env != nil {
		c.req.Env.ClientIP.SetForwarded(out.Header, r) // a nil Resolver trusts no one
	}
	c.req.Outbound(out)
	if rb := c.req.Body; rb != nil && r.Body != nil && r.Body != http.NoBody {
		c.body = &sendBody{r: rb.Stream(), max: c.route.maxMessage}
	}
	return out
}

// attempt sends the call to m (attempt n). The instance stays in flight
// until the answer is read (least_request counts it).
func (c *call) attempt(ctx context.Context, tmpl *http.Request, m *upstream.Member, n int) upstream.Result {
	if c.resp != nil {
		// Only a call nothing reached is retried; an answer is never
		// discarded for another, but should one be, it is closed.
		c.resp.Body.Close()
		c.resp = nil
	}
	rt := c.route.h2c
	if m.Scheme == "https" {
		rt = c.route.h2
		if rt == nil {
			return upstream.Result{Outcome: upstream.Local, Err: errors.New("service " + c.route.up.Name + " has an https instance but no TLS configuration")}
		}
	}
	out := tmpl.WithContext(ctx)
	out.Header = tmpl.Header.Clone()
	out.URL = &url.URL{Scheme: m.Scheme, Host: m.Host, Path: m.BasePath + c.req.R.URL.Path}
	out.Host = ""
	if c.body != nil {
		out.Body = c.body
	} else {
		out.Body, out.ContentLength = http.NoBody, 0
	}
	if dl, ok := ctx.Deadline(); ok {
		out.Header.Set("Grpc-Timeout", encodeTimeout(time.Until(dl)))
	}
	var span trace.Span
	if trace.SpanFromContext(ctx).IsRecording() && c.req.Env != nil && c.req.Env.Tracer != nil {
		ctx, span = c.req.Env.Tracer.Start(ctx, c.req.R.URL.Path[min(1, len(c.req.R.URL.Path)):], clientSpan...)
		span.SetAttributes(
			attribute.String("rpc.system", "grpc"),
			attribute.String("server.address", m.Host),
			attribute.String("portico.service", c.route.up.Name),
			attribute.Int("portico.attempt", n),
		)
		defer span.End()
		out = out.WithContext(ctx)
	}
	if env := c.req.Env; env != nil && env.Propagator != nil {
		env.Propagator.Inject(ctx, tracecarrier.Header(out.Header))
	}
	resp, err := rt.RoundTrip(out)
	if err != nil {
		if span != nil {
			span.RecordError(err)
			span.SetStatus(otelcodes.Error, err.Error())
		}
		switch {
		case c.body != nil && c.body.tooLarge.Load():
			return upstream.Result{Outcome: upstream.ClientFault, Err: errMessageTooLarge}
		case c.body != nil && c.body.failed.Load():
			return upstream.Result{Outcome: upstream.ClientFault, Err: err}
		}
		unsent := dialFailed(err) && (c.body == nil || c.body.sent.Load() == 0)
		return upstream.Result{Outcome: upstream.Broken, Unsent: unsent, Err: err}
	}
	resp.Body = &release{ReadCloser: resp.Body, m: m}
	c.resp = resp
	res := upstream.Result{Status: resp.StatusCode, Keep: true}
	switch {
	case resp.StatusCode != http.StatusOK:
		if resp.StatusCode >= 500 {
			res.Outcome = upstream.Failed
		}
	case resp.Header.Get("Grpc-Status") != "":
		code := parseCode(resp.Header.Get("Grpc-Status"))
		res.Status = grpcjson.HTTPStatus(code)
		if grpcjson.InstanceFailed(code) {
			res.Outcome = upstream.Failed
		}
	}
	if span != nil {
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if st := resp.Header.Get("Grpc-Status"); st != "" {
			span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(parseCode(st))))
		}
		if res.Outcome != upstream.OK {
			span.SetStatus(otelcodes.Error, "service failed")
		}
	}
	return res
}

// refuse answers a call that got no answer from any instance, and returns
// the breaker's verdict.
func (c *call) refuse(err error) (failed, clientFault bool) {
	w, r := c.req.W, c.req.R
	switch {
	case errors.Is(err, errMessageTooLarge):
		stage.WriteProblem(w, r, http.StatusRequestEntityTooLarge, "too-large", "a request message exceeds "+strconv.FormatInt(c.route.maxMessage, 10)+" bytes")
		return false, true
	case r.Context().Err() != nil:
		// The client went away (or reset its stream): nobody to answer.
		logStatus(w, codes.Canceled)
		return false, true
	case c.pastDeadline():
		stage.WriteProblem(w, r, http.StatusGatewayTimeout, "deadline-exceeded", "the call's deadline passed before the service answered")
		return true, false
	case errors.Is(err, upstream.ErrNoEndpoints):
		w.Header().Set("Retry-After", "1")
		stage.WriteProblem(w, r, http.StatusServiceUnavailable, "no-healthy-upstream", "service "+c.route.up.Name+" has no healthy instance")
		return true, false
	case errors.Is(err, upstream.ErrAttemptTimeout):
		stage.WriteProblem(w, r, http.StatusGatewayTimeout, "upstream-timeout", "the service did not answer in time")
		return true, false
	case errors.Is(err, upstream.ErrClientBody), c.ClientFault:
		stage.WriteProblem(w, r, http.StatusBadRequest, "bad-body", "the request stream could not be read")
		return false, true
	}
	detail := "the service failed"
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		detail = "the service refused the connection"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		detail = "the service closed the connection"
	}
	stage.WriteProblem(w, r, http.StatusBadGateway, "bad-gateway", detail)
	return c.Failed, false
}

// pastDeadline tells whether the call's deadline has passed. The service
// has the same deadline (grpc-timeout) and may end the stream a moment
// before the gateway's timer fires: whoever noticed first, the call ran
// out of time.
func (c *call) pastDeadline() bool {
	dl, ok := c.ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// broken ends a call whose answer broke off after it started: the status
// goes in the trailers.
func (c *call) broken(err error) (failed, clientFault bool) {
	w, r := c.req.W, c.req.R
	var code codes.Code
	var msg string
	switch {
	case r.Context().Err() != nil:
		logStatus(w, codes.Canceled)
		return false, true
	case c.pastDeadline():
		code, msg = codes.DeadlineExceeded, "the call's deadline passed"
	case c.body != nil && c.body.tooLarge.Load():
		code, msg = codes.ResourceExhausted, "a request message exceeds "+strconv.FormatInt(c.route.maxMessage, 10)+" bytes"
	default:
		code, msg = codes.Unavailable, "the service broke off the stream"
	}
	h := w.Header()
	h.Set(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(int(code)))
	h.Set(http.TrailerPrefix+"Grpc-Message", stage.EncodeGRPCMessage(msg))
	logStatus(w, code)
	return code != codes.ResourceExhausted, code == codes.ResourceExhausted
}

// copyMessages streams the answer to the client, flushing every read: a
// gRPC message must reach the client when the service sends it, not when a
// buffer fills.
func copyMessages(w io.Writer, ctl *http.ResponseController, body io.Reader) error {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if ferr := ctl.Flush(); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// release ends the instance's in-flight count when the answer is closed.
type release struct {
	io.ReadCloser
	m    *upstream.Member
	once sync.Once
}

func (b *release) Close() error {
	b.once.Do(b.m.EP.Release)
	return b.ReadCloser.Close()
}

// parseCode reads a grpc-status value; one that is not a number is
// UNKNOWN, as grpc-go reads it.
func parseCode(s string) codes.Code {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return codes.Unknown
	}
	return codes.Code(n)
}

// httpToGRPC is the gRPC protocol's mapping of an HTTP status received
// instead of a gRPC answer (grpc/doc/http-grpc-status-mapping.md).
func httpToGRPC(status int) codes.Code {
	switch status {
	case http.StatusBadRequest:
		return codes.Internal
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codes.Unavailable
	}
	return codes.Unknown
}

// logStatus makes the access log and metrics record a call that ended
// with code as the HTTP status it stands for (the wire says 200).
func logStatus(w http.ResponseWriter, code codes.Code) {
	if code == codes.OK {
		return
	}
	if l, ok := w.(interface{ LogStatus(int) }); ok {
		l.LogStatus(grpcjson.HTTPStatus(code))
	}
}

// dialFailed reports a connection that was never established.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
