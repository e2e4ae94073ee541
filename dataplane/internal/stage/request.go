package stage

import (
	"io"
	"net/http"
	"net/netip"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/dataplane/internal/clientip"
	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/shared/problem"
)

// Request is the state of one request on its way through a route's chain:
// what the proxy found (the cleaned path, the route match), what stages
// learn (the identity, the path the service receives), and what happened
// (Outcome, for the span, the access log and metrics). Stages read and
// write it in place, one at a time. A Request is valid only while its
// request is being served: the proxy reuses it for the next request, so a
// stage must not keep it, nor hand it to a goroutine that outlives Serve.
type Request struct {
	W http.ResponseWriter
	R *http.Request
	// Path is the cleaned request path, which the router matched.
	Path string
	// Match is the route match: the route's {param} captures and, for a
	// "/*" pattern, how much of Path its static part covered.
	Match router.Match
	// Identity is the verified caller, nil until (and unless) an auth
	// stage verified one.
	Identity *Identity
	// UpstreamPath is the path the service receives, when a stage chose
	// one (a rewrite, a stripped prefix); "" means Path.
	UpstreamPath string
	// Body is the client's request body, nil without one.
	Body Body
	// Env is what the gateway lends the request's stages.
	Env *Env
	// Outcome is what happened, for the span, the access log, metrics and
	// analytics.
	Outcome Outcome

	chain    *Chain
	next     int
	identity IdentityWriter
	respond  Responder
}

// Body is the client's request body as the proxy holds it.
type Body interface {
	// Await waits (under the body deadlines) for the body's first byte, so
	// that a client that sent nothing yet holds no scarce slot; false when
	// the body failed and the request was answered.
	Await(req *Request) bool
	// Stream hands the body over to a protocol whose request stream may
	// pause between messages for as long as the call lasts (gRPC client
	// and bidirectional streams): from now on reads run without the body
	// deadlines, which would cut such a stream off as a stalled upload.
	// The caller bounds the exchange itself (the call's deadline, the
	// client leaving).
	Stream() io.Reader
	// Tap copies every byte read from the body from now on to w (a
	// mirror's copy of the request), on the reading goroutine. Call it
	// before anything reads the body on.
	Tap(w io.Writer)
	// Complete reports whether the body has been read to its end.
	Complete() bool
}

// Env is what the gateway process lends every request's stages: long-lived
// services that belong to no configuration.
type Env struct {
	// Proxy is the gateway's reverse proxy, which the forward stage hands
	// a request to (with the exchange in its context).
	Proxy http.Handler
	// Transport calls a service's instances (balancer, retries, outlier
	// detection) for a request whose context carries an
	// upstream.Exchanger.
	Transport http.RoundTripper
	// Tracer starts spans of the gateway's own work.
	Tracer trace.Tracer
	// Propagator writes the trace context into requests to services that
	// do not go through Transport (gRPC pass-through).
	Propagator propagation.TextMapPropagator
	// ClientIP says which peers' X-Forwarded-For is believed.
	ClientIP *clientip.Resolver
	// Mirrored counts a mirrored copy's outcome (metrics); nil counts
	// nothing. It is called from the copy's own goroutine.
	Mirrored func(route, service, outcome string)
	// ResponseChecked reports a report-only check of an answer against
	// the route's response schema (bodyschema): outcome ok, invalid,
	// not_json, too_large or dropped, detail the failures of an invalid
	// one (to log); nil reports nothing. Called from the check's own
	// goroutine.
	ResponseChecked func(route, outcome, detail string)
}

// Outcome is what the stages found out about a request.
type Outcome struct {
	Route, Pattern, Service string
	Consumer                string
	Upstream                string
	Attempts                int
	RateLimit               string     // "", "allowed", "refused"
	Cache                   string     // "", "HIT", "MISS", "BYPASS"
	AuthFailure             string     // the reason of a refused credential
	Throttled               bool       // refused for the route's in-flight cap
	IPRefused               string     // "", "global", "route": whose IP rules refused
	clientAddr              netip.Addr // resolved once, on first use
	clientResolved          bool
	clientIP                string // clientAddr formatted, on first use
}

// Run starts the request down chain c.
func (r *Request) Run(c *Chain) {
	r.chain, r.next = c, 0
	r.Next()
}

// Next hands the request to the next stage of its chain. The last stage of
// a chain answers; a chain that runs out answers 500 (a compile bug, not a
// client's doing).
func (r *Request) Next() {
	stages := r.chain.Stages()
	if r.next >= len(stages) {
		WriteProblem(r.W, r.R, http.StatusInternalServerError, "no-terminal-stage", "the route has nothing to answer with")
		return
	}
	s := stages[r.next]
	r.next++
	s.Serve(r)
}

// ServeHTTP runs the rest of the chain with w and r: how a stage that wraps
// the rest of the chain as an http.Handler (the cache) hands the request
// on.
func (r *Request) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	w0, r0 := r.W, r.R
	r.W, r.R = w, hr
	r.Next()
	r.W, r.R = w0, r0
}

// Param resolves a template placeholder from the route match: {name} is a
// path parameter, {*} the rest of a "/*" path without its leading slash.
func (r *Request) Param(name string) string {
	if name == "*" {
		return strings.TrimPrefix(r.Path[r.Match.PrefixLen:], "/")
	}
	v, _ := r.Match.Params.Get(name)
	return v
}

// ClientIP returns the request's client address, resolving it (a parse,
// and an X-Forwarded-For walk behind trusted proxies) at most once.
func (r *Request) ClientIP() string {
	if r.Outcome.clientIP == "" {
		if a := r.ClientAddr(); a.IsValid() {
			r.Outcome.clientIP = a.String()
		}
	}
	return r.Outcome.clientIP
}

// ClientAddr is ClientIP as an address (the zero Addr when the peer address
// cannot be parsed), for stages that compare it rather than print it.
func (r *Request) ClientAddr() netip.Addr {
	if !r.Outcome.clientResolved {
		r.Outcome.clientAddr = r.Env.ClientIP.ClientAddr(r.R)
		r.Outcome.clientResolved = true
	}
	return r.Outcome.clientAddr
}

// Authenticated records the verified identity and the stage that writes it
// into requests to services.
func (r *Request) Authenticated(id *Identity, w IdentityWriter) {
	r.Identity, r.identity = id, w
	if id != nil {
		r.Outcome.Consumer = id.Consumer
	}
}

// OnResponse makes rs edit the header of the route's answer before it is
// written (one Responder per request: the transform stage's).
func (r *Request) OnResponse(rs Responder) { r.respond = rs }

// Respond runs the route's Responder on h, the header of the answer about
// to be written. The proxy's response recorder calls it once.
func (r *Request) Respond(h http.Header) {
	if r.respond != nil {
		r.respond.Respond(r, h)
	}
}

// Outbound makes out, a request the reverse proxy is about to send to the
// service, carry what the route's stages add: their Outbound edits
// (innermost first), then the identity.
func (r *Request) Outbound(out *http.Request) {
	o := r.chain.outbound
	for i := len(o) - 1; i >= 0; i-- {
		o[i].Outbound(r, out)
	}
	r.WriteIdentity(out.Header)
}

// WriteIdentity makes h, the header of a request to a service, carry the
// gateway's identity headers and nothing a client sent under those names.
// Every way a route reaches a service (the reverse proxy, aggregation, a
// gRPC call) goes through it.
func (r *Request) WriteIdentity(h http.Header) {
	for _, name := range IdentityHeaders {
		delete(h, name)
	}
	if r.identity != nil {
		r.identity.WriteIdentity(r, h)
	}
}

// WriteProblem answers with an RFC 9457 problem whose instance is the
// request path: the one way a stage (or the proxy) refuses a request. A
// gRPC call (IsGRPC) gets the same refusal as a gRPC status instead
// (WriteGRPCStatus, code GRPCCode(status), message detail): its client
// cannot read a problem.
func WriteProblem(w http.ResponseWriter, r *http.Request, status int, slug, detail string) {
	if IsGRPC(r) {
		WriteGRPCStatus(w, status, GRPCCode(status), detail)
		return
	}
	p := problem.New(status, slug, detail)
	p.Instance = r.URL.Path
	problem.Write(w, p)
}
