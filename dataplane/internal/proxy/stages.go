package proxy

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/portico-gw/portico/dataplane/internal/aggregate"
	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/dataplane/internal/bodyedit"
	"github.com/portico-gw/portico/dataplane/internal/cache"
	"github.com/portico-gw/portico/dataplane/internal/extauthz"
	"github.com/portico-gw/portico/dataplane/internal/fault"
	"github.com/portico-gw/portico/dataplane/internal/grpcpass"
	"github.com/portico-gw/portico/dataplane/internal/httpsredirect"
	"github.com/portico-gw/portico/dataplane/internal/ipfilter"
	"github.com/portico-gw/portico/dataplane/internal/mirror"
	"github.com/portico-gw/portico/dataplane/internal/ratelimit"
	"github.com/portico-gw/portico/dataplane/internal/split"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/throttle"
	"github.com/portico-gw/portico/dataplane/internal/transform"
	"github.com/portico-gw/portico/dataplane/internal/tunnel"
	"github.com/portico-gw/portico/shared/config"
)

// stages compiles route r's stages in the order they apply to a request.
// This is the one place that order is written down (as Envoy Gateway
// declares its filter order): each line is one feature's compile step,
// which returns nil for a feature the route does not use. Adding a stage is
// a package with a compile step and a stage.Stage, and one line here.
//
// Before any stage the handler has checked what every request must pass
// (headers, authority, path), matched the route, and answered for a route
// whose configuration was rejected.
func (c *routeCompiler) stages(r *config.Route) *stage.Chain {
	svc, _ := c.cfg.Service(r.Service)
	pass := grpcpass.Compile(r, svc, c.rt.Upstream, c.rt.MaxBodyBytes, c.deps.GRPCPass)
	return stage.NewChain(
		httpsredirect.Compile(r),                                                // plain HTTP → 308 to HTTPS; HSTS on TLS answers
		ipfilter.Compile(c.t.globalIP, r.IP),                                    // global, then route IP rules (403) before any work
		transform.CompileResponse(r),                                            // response edits and CORS on every answer; preflights answered
		compileLimits(r, c.rt.MaxBodyBytes, pass != nil),                        // body limit (413; per message for gRPC streams), Upgrade only for allowed protocols
		auth.CompileRoute(r.Auth, c.t.verifier),                                 // API key / JWT (401, 403) → the identity
		extauthz.Compile(r, c.deps.ExtAuthz),                                    // a decision service (HTTP forward-auth or Envoy ext_authz gRPC) allows or denies
		ratelimit.CompileRoute(r.Name, c.rateLimit(r), c.deps.Limiter),          // 429, RateLimit-* headers
		throttle.Compile(r.MaxInFlight, r.QueueTimeout.Std(), c.prevThrottle()), // max_in_flight (503)
		c.compileSchemas(r),                                                     // the request body against the route's JSON Schema (400 with pointers)
		cache.CompileRoute(c.deps.Cache, r.Name, r.Revision, r.Cache),           // answers from the cache, or stores what the rest answers
		transform.CompileRequest(r),                                             // rewrite or strip prefix, query and header edits
		bodyedit.Compile(r),                                                     // JSON body edits by pointer (400 for a non-JSON body)
		fault.Compile(r),                                                        // injected delays and error answers (drills)
		mirror.Compile(r, c.t.upstreams),                                        // a copy of a share of requests, sent after the answer
		tunnel.Compile(r),                                                       // the route's own idle and lifetime limits on WebSocket tunnels
		// The terminal stage answers: the first of these the route uses.
		stage.First(
			aggregate.Compile(r, c.t.upstreams, c.rt.Timeout), // fan-out to several services
			c.grpc, // JSON → gRPC (compiled before: it can reject the route)
			pass,   // gRPC passed through as gRPC
			// JSON → SOAP (compiled here: it can reject the route)
			c.compileSOAP(r),
			&forward{up: c.rt.Upstream, timeout: c.rt.Timeout, split: split.Compile(r, c.t.upstreams)}, // the reverse proxy (to the service, or one of the split's)
		),
	)
}

// limits is the route's own limits stage: its body limit, and the
// protocols its requests may upgrade to.
type limits struct {
	maxBody  int64
	upgrades []string // beside websocket
	// perMessage: the body is a gRPC stream, which may last as long as its
	// call; the pass-through stage holds each message to maxBody instead.
	perMessage bool
}

func compileLimits(r *config.Route, maxBody int64, perMessage bool) stage.Stage {
	return &limits{maxBody: maxBody, upgrades: r.UpgradeProtocols, perMessage: perMessage}
}

// Serve refuses a body announced over the limit at once (413) and caps a
// chunked one, and drops an Upgrade header the route does not tunnel
// (RFC 9110 §7.8 lets a server ignore it: the request goes on as a plain
// one, and no tunnel opens for a protocol nobody allowed).
func (l *limits) Serve(req *stage.Request) {
	r := req.R
	switch b, _ := req.Body.(*clientBody); {
	case l.perMessage && stage.IsGRPC(r):
		// A stream lasts as long as its call: the pass-through stage
		// bounds each message instead.
	case r.ContentLength > l.maxBody:
		stage.WriteProblem(req.W, r, http.StatusRequestEntityTooLarge, "too-large", "request body exceeds "+strconv.FormatInt(l.maxBody, 10)+" bytes")
		return
	case b != nil:
		b.rc = http.MaxBytesReader(req.W, b.rc, l.maxBody)
	}
	if up := r.Header["Upgrade"]; len(up) > 0 && !l.upgradeAllowed(up) {
		delete(r.Header, "Upgrade")
	}
	req.Next()
}

// upgradeAllowed reports whether a request's Upgrade header (its values)
// names exactly one protocol the route tunnels: websocket, or one of its
// upgrade_protocols.
func (l *limits) upgradeAllowed(values []string) bool {
	if len(values) != 1 || strings.ContainsRune(values[0], ',') {
		return false
	}
	proto := strings.TrimSpace(values[0])
	if strings.EqualFold(proto, "websocket") {
		return true
	}
	for _, p := range l.upgrades {
		if strings.EqualFold(proto, p) {
			return true
		}
	}
	return false
}

func (l *limits) Describe() any {
	return struct {
		MaxBodyBytes int64    `json:"max_body_bytes"`
		PerMessage   bool     `json:"per_grpc_message,omitempty"`
		Upgrades     []string `json:"upgrade_protocols,omitempty"`
	}{l.maxBody, l.perMessage, l.upgrades}
}
