// Package extauthz is the route stage of "ext_authz" (issue 18): each
// request of the route is let through only if a decision service says so.
//
// Rules:
//
//   - The stage runs after authentication, so the service learns the
//     verified identity (consumer, groups, method) besides the request: its
//     method, path and query, host, scheme, the client address as package
//     clientip resolves it (behind --trusted-proxies), and the client's
//     headers (ext_authz.request_headers, or all of them). A route's API
//     key never leaves the gateway (the identity stands for it), nor does
//     anything a client sent under the identity or forwarding names.
//   - http (forward-auth): GET url carrying the client's headers, the
//     identity headers, X-Forwarded-Method, -Proto, -Host, -Uri and -For.
//     A 2xx answer allows; a 3xx or 4xx answer denies and is the client's
//     answer (status, body up to config.MaxExtAuthzDenyBody, Content-Type
//     and client_headers); a 5xx answer, a timeout or a transport failure
//     is an error.
//   - grpc: envoy.service.auth.v3.Authorization/Check with a CheckRequest
//     built as Envoy builds it (attributes.source.address, request.http:
//     method, path, host, scheme, headers) plus the identity in
//     context_extensions. Status OK allows; another status denies, with
//     the DeniedResponse's status (403 without one), headers and body; a
//     failed call is an error.
//   - Headers of an allowing decision reach the service behind the route
//     only for names in upstream_headers, and whatever the client sent
//     under those names is removed before the check, whatever the
//     decision: a service can trust them as it trusts the identity
//     headers. They are written after the proxy drops hop-by-hop headers
//     (stage.Outbound), so a client's Connection header cannot strip them.
//   - An error answers 503 "ext-authz-unavailable" with failure_mode
//     fail_closed (the default) and lets the request through unchanged
//     with fail_open; either way it is counted and logged.
//   - A denial without a body, and every gateway refusal, is problem+json
//     (a gRPC status for a gRPC call, by stage.WriteProblem).
//   - With cache, allow and deny decisions (never errors) are kept for
//     cache.ttl in an LRU bounded in bytes, keyed by a hash of everything
//     the check sends: two requests share a decision only if the service
//     could not have told them apart.
//   - Each check runs under the route's ext_authz timeout and the client's
//     own context: a client that leaves cancels its check.
//   - include_body sends the request body, in either protocol (http: the
//     check is then a POST carrying it, with its Content-Type and
//     Content-Encoding); a body over max_bytes is refused with 413 before
//     any check rather than judged on a part, and the whole body still
//     reaches the service behind the route.
//
// The stage is compiled per route and immutable; connections belong to the
// process's Client (one HTTP transport per TLS setting, one gRPC
// ClientConn per target), shared by every route and every table.
package extauthz

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// decider asks a decision service about one check.
type decider interface {
	decide(ctx context.Context, c *check, req *stage.Request) (*decision, error)
	describe() map[string]any
}

// Stage is a route's compiled external authorization.
type Stage struct {
	route    string
	mode     string // "http" or "grpc"
	d        decider
	timeout  time.Duration
	failOpen bool
	// requestHeaders: the client headers sent (canonical); nil: all.
	requestHeaders []string
	// upstream: the names a decision may set upstream (canonical).
	upstream []string
	// client: the names of a denial passed to the client (canonical).
	client []string
	cache  *decisionCache
	cl     *Client
	// maxBody: the body is sent, up to this many bytes (0: not sent).
	maxBody int64
}

var (
	_ stage.Stage    = (*Stage)(nil)
	_ stage.Outbound = (*Stage)(nil)
)

// Compile returns route r's stage, or nil when it has no ext_authz. cl
// holds the connections and metrics; nil: Default. A block that does not
// compile (it was refused by validation) leaves the route failing closed.
func Compile(r *config.Route, cl *Client) stage.Stage {
	e := r.ExtAuthz
	if e == nil {
		return nil
	}
	if cl == nil {
		cl = Default()
	}
	s := &Stage{
		route: r.Name, timeout: e.EffectiveTimeout(), failOpen: e.FailOpen(), cl: cl,
		requestHeaders: canonical(e.RequestHeaders), upstream: canonical(e.UpstreamHeaders), client: canonical(e.ClientHeaders),
	}
	if len(s.requestHeaders) == 0 {
		s.requestHeaders = nil
	}
	if b := e.IncludeBody; b != nil {
		s.maxBody = b.MaxBytes
	}
	var err error
	switch {
	case e.HTTP != nil:
		s.mode = "http"
		s.d, err = newHTTPDecider(e, cl)
	case e.GRPC != nil:
		s.mode = "grpc"
		s.d, err = newGRPCDecider(r, cl)
	default:
		err = errors.New("neither http nor grpc")
	}
	if err != nil {
		cl.log.Warn("ext_authz does not compile; the route fails closed", slog.String("route", r.Name), slog.Any("error", err))
		s.d, s.failOpen = broken{err}, false
	}
	if c := e.Cache; c != nil {
		s.cache = newDecisionCache(c.TTL.Std(), c.EffectiveMaxBytes())
	}
	return s
}

func canonical(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = textproto.CanonicalMIMEHeaderKey(n)
	}
	return out
}

// Serve asks for a decision and applies it.
func (s *Stage) Serve(req *stage.Request) {
	h := req.R.Header
	for _, name := range s.upstream {
		delete(h, name)
	}
	c := s.newCheck(req)
	if s.maxBody > 0 {
		body, ok := s.readBody(req)
		if !ok {
			return
		}
		c.Body = body
		// What the body is goes with it, whatever request_headers
		// lists: a body without its type cannot be read.
		for _, name := range [...]string{"Content-Type", "Content-Encoding"} {
			if v, ok := req.R.Header[name]; ok {
				c.Header[name] = v
			}
		}
	}
	d, cached, err := s.decision(req, c)
	switch {
	case err != nil:
		reason := errorReason(req.R.Context(), err)
		s.cl.metrics.errored(s.route, s.mode, reason)
		s.cl.log.Warn("ext_authz check failed", slog.String("route", s.route), slog.String("reason", reason),
			slog.Bool("fail_open", s.failOpen), slog.Any("error", err))
		if s.failOpen {
			s.cl.metrics.decided(s.route, "error_allowed", false)
			req.Next()
			return
		}
		s.cl.metrics.decided(s.route, "error_denied", false)
		req.Outcome.AuthFailure = "ext_authz_error"
		if reason == "canceled" {
			// The client left: nobody reads the answer, and the access log
			// says 499 like the proxy's own.
			stage.WriteProblem(req.W, req.R, 499, "client-closed-request", "the client closed the request during the authorization check")
			return
		}
		stage.WriteProblem(req.W, req.R, http.StatusServiceUnavailable, "ext-authz-unavailable", "the authorization service could not be asked")
	case d.Allow:
		s.cl.metrics.decided(s.route, "allowed", cached)
		for name, v := range d.Upstream {
			h[name] = slices.Clone(v)
		}
		req.Next()
	default:
		s.cl.metrics.decided(s.route, "denied", cached)
		req.Outcome.AuthFailure = "ext_authz_denied"
		d.writeDenial(req)
	}
}

// decision is the cached decision for c, or the service's.
func (s *Stage) decision(req *stage.Request, c *check) (d *decision, cached bool, err error) {
	var key string
	if s.cache != nil {
		key = c.key()
		if hit := s.cache.get(key); hit != nil {
			return hit, true, nil
		}
	}
	ctx, cancel := context.WithTimeout(req.R.Context(), s.timeout)
	defer cancel()
	if req.Env != nil && req.Env.Tracer != nil {
		// A client span of its own: the check's traceparent names it.
		var span trace.Span
		ctx, span = req.Env.Tracer.Start(ctx, "ext_authz "+s.mode, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("portico.route", s.route)))
		defer span.End()
		defer func() {
			if err != nil {
				span.SetStatus(otelcodes.Error, err.Error())
			}
		}()
	}
	start := time.Now()
	d, err = s.d.decide(ctx, c, req)
	s.cl.metrics.observe(s.route, s.mode, time.Since(start))
	if err != nil {
		return nil, false, err
	}
	d.filter(s.upstream, s.client)
	if s.cache != nil {
		s.cache.put(key, d)
	}
	return d, false, nil
}

// Outbound writes the decision's headers into the request to the service
// again, after the proxy removed hop-by-hop headers (a client's
// "Connection: X-User" must not strip X-User). Serve removed the client's
// own values of these names, so what the incoming request holds under them
// is the decision's.
func (s *Stage) Outbound(req *stage.Request, out *http.Request) {
	for _, name := range s.upstream {
		if v, ok := req.R.Header[name]; ok {
			out.Header[name] = slices.Clone(v)
		} else {
			delete(out.Header, name)
		}
	}
}

// errorReason names a failed check for metrics and logs: timeout,
// canceled (the client left), or unavailable (a transport failure, a 5xx,
// a failed gRPC call, an answer that cannot be read).
func errorReason(clientCtx context.Context, err error) string {
	switch {
	case clientCtx.Err() != nil:
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded) || isGRPCDeadline(err):
		return "timeout"
	case errors.Is(err, errBadAnswer):
		return "bad_answer"
	}
	return "unavailable"
}

// errBadAnswer: the service answered something that is not a decision.
var errBadAnswer = errors.New("not a decision")

// broken is the decider of a block that did not compile.
type broken struct{ err error }

func (b broken) decide(context.Context, *check, *stage.Request) (*decision, error) {
	return nil, b.err
}
func (b broken) describe() map[string]any { return map[string]any{"broken": b.err.Error()} }

// Describe is the stage in the golden test's terms.
func (s *Stage) Describe() any {
	out := map[string]any{
		"mode": s.mode, "timeout": s.timeout.String(), "fail_open": s.failOpen,
		"service": s.d.describe(),
	}
	if s.requestHeaders != nil {
		out["request_headers"] = s.requestHeaders
	}
	if len(s.upstream) > 0 {
		out["upstream_headers"] = s.upstream
	}
	if len(s.client) > 0 {
		out["client_headers"] = s.client
	}
	if s.maxBody > 0 {
		out["include_body"] = s.maxBody
	}
	if s.cache != nil {
		out["cache"] = map[string]any{"ttl": s.cache.ttl.String(), "max_bytes": s.cache.maxBytes}
	}
	return out
}

// readBody reads the request body for the check and puts it back for the
// rest of the chain. A body over the bound is refused (413): a decision on
// a part of it could be dodged by padding.
func (s *Stage) readBody(req *stage.Request) ([]byte, bool) {
	r := req.R
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	if r.ContentLength > s.maxBody {
		stage.WriteProblem(req.W, r, http.StatusRequestEntityTooLarge, "too-large", "request body exceeds the "+strconv.FormatInt(s.maxBody, 10)+" bytes the authorization check takes")
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.maxBody+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			stage.WriteProblem(req.W, r, http.StatusRequestEntityTooLarge, "too-large", "request body exceeds "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
			return nil, false
		}
		stage.WriteProblem(req.W, r, http.StatusBadRequest, "bad-body", "the request body could not be read")
		return nil, false
	}
	if int64(len(body)) > s.maxBody {
		stage.WriteProblem(req.W, r, http.StatusRequestEntityTooLarge, "too-large", "request body exceeds the "+strconv.FormatInt(s.maxBody, 10)+" bytes the authorization check takes")
		return nil, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.Header.Del("Content-Length")
	return body, true
}
