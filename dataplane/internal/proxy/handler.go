// Package proxy is the data plane's request path: match the request against
// the current compiled Table (one atomic load, no lock), pick an upstream
// target, and proxy with httputil.ReverseProxy over one shared, tuned
// transport. A new configuration swaps the Table; requests in flight finish
// on the one they started with.
//
// What a client can hold or claim is bounded before any route stage runs
// (Limits, limits.go): an exact header-block limit, deadlines and a minimum
// rate on every read of a request body (body.go), idle and lifetime limits
// on tunnels, which open only for allowed Upgrade protocols (tunnel.go),
// and one pass over the client's headers that drops what a service must be
// able to trust the gateway for (headers.go). A failure the client caused
// is never reported to the service's breaker, outlier detection or retry
// budget.
package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/dataplane/internal/authority"
	"github.com/portico-gw/portico/dataplane/internal/cache"
	"github.com/portico-gw/portico/dataplane/internal/clientip"
	"github.com/portico-gw/portico/dataplane/internal/ratelimit"
	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/problem"
)

// Handler proxies requests according to the current Table.
type Handler struct {
	table   atomic.Pointer[Table]
	proxy   *httputil.ReverseProxy
	log     *slog.Logger
	metrics *Metrics
	limiter ratelimit.Limiter
	ips     *clientip.Resolver
	obs     observer
	cache   *cache.Cache
	limits  Limits
}

// Options configure a Handler.
type Options struct {
	Log       *slog.Logger
	Metrics   *Metrics
	Transport http.RoundTripper
	// Limiter decides rate limits; nil means an in-process limiter.
	Limiter ratelimit.Limiter
	// ClientIP says which peers' X-Forwarded-For is believed; nil: none.
	ClientIP *clientip.Resolver
	// Tracing, access logs and analytics; see observe.go.
	Observe ObserveOptions
	// Cache holds cached responses; nil: an in-memory cache of the default
	// size, without metrics.
	Cache *cache.Cache
	// Limits bound what clients can hold (header, body and tunnel
	// deadlines, header size); zero fields take the defaults.
	Limits Limits
}

// NewHandler returns a Handler with no table: it answers 503 until Swap.
func NewHandler(o Options) *Handler {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	obs := newObserver(o.Observe)
	if o.Transport == nil {
		o.Transport = upstream.NewTransport(NewTransport(), obs.tracerProvider, obs.prop)
	}
	if o.Limiter == nil {
		o.Limiter = ratelimit.NewLocal(time.Now)
	}
	if o.Cache == nil {
		o.Cache = cache.New(cache.Options{Memory: cache.NewMemory(cache.DefaultMemoryBytes), Log: o.Log})
	}
	h := &Handler{log: o.Log, metrics: o.Metrics, limiter: o.Limiter, ips: o.ClientIP, obs: obs, cache: o.Cache, limits: o.Limits.withDefaults()}
	h.proxy = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      o.Transport,
		BufferPool:     bufferPool{},
		ErrorHandler:   h.proxyError,
		ModifyResponse: h.headersArrived,
		ErrorLog:       slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
	return h
}

// Swap publishes a new table (Start it first) and retires what the old one
// held that the new one does not; it returns the previous table.
func (h *Handler) Swap(t *Table) *Table {
	old := h.table.Swap(t)
	if old != nil {
		old.Retire(t)
	}
	return old
}

// Table returns the table in use, or nil before the first Swap.
func (h *Handler) Table() *Table { return h.table.Load() }

// exchange is the per-request state the proxy callbacks and the upstream
// transport share: one context value per request.
type exchange struct {
	upstream.Exchange
	route    *Route
	identity *auth.Identity
	timer    *time.Timer
	timedOut atomic.Bool
	// pending counts what the route timeout still waits for: the response
	// headers, and the client's body when there is one.
	pending  atomic.Int32
	bodyOnce atomic.Bool
	// clientFault: the exchange failed because of the client (its body
	// stalled, broke off or was refused).
	clientFault atomic.Bool
	cancel      context.CancelFunc
	tunnel      atomic.Pointer[tunnel]
	// body is the client's request body, nil without one. (ReverseProxy
	// hands the error handler its outbound request, whose Body is a
	// wrapper of this one.)
	body *clientBody
	// lookup resolves {param}s for header and query edits; nil when the
	// route's templates have none.
	lookup func(string) string
}

func (x *exchange) UpstreamExchange() *upstream.Exchange { return &x.Exchange }

// settle notes that one thing the route timeout waits for has happened;
// after the last, the timeout stops.
func (x *exchange) settle() {
	if x.pending.Add(-1) == 0 {
		x.timer.Stop()
	}
}

// bodySent settles the client's body, once.
func (x *exchange) bodySent() {
	if x.bodyOnce.CompareAndSwap(false, true) {
		x.settle()
	}
}

// tunnelDone stops the timers of the exchange's tunnel, if it opened one.
func (x *exchange) tunnelDone() {
	if t := x.tunnel.Load(); t != nil {
		t.stop()
	}
}

func exchangeFrom(ctx context.Context) *exchange {
	x, _ := ctx.Value(upstream.ExchangeKey{}).(*exchange)
	return x
}

// serve handles one request and notes what happened in o.
func (h *Handler) serve(w *recorder, r *http.Request, o *outcome) {
	var body *clientBody
	if r.Body != nil && r.Body != http.NoBody {
		// Every read of the client's body is under deadlines (body.go).
		body = newClientBody(r.Body, w, &h.limits)
		r.Body = body
		defer body.finish()
	}
	t := h.table.Load()
	if t == nil {
		w.Header().Set("Retry-After", "1")
		writeProblem(w, r, http.StatusServiceUnavailable, "not-ready", "the gateway has no configuration yet")
		return
	}
	if sanitize(r, t.stripped, h.limits.AllowUnderscoreHeaders) > h.limits.MaxHeaderBytes {
		w.Header().Set("Connection", "close")
		writeProblem(w, r, http.StatusRequestHeaderFieldsTooLarge, "headers-too-large",
			"the request line and headers exceed "+strconv.Itoa(h.limits.MaxHeaderBytes)+" bytes")
		return
	}
	if len(r.Header["Authorization"]) > 1 {
		// Which one would count? The gateway checks the first, a service
		// might read the last.
		writeProblem(w, r, http.StatusBadRequest, "ambiguous-credentials", "the request carries more than one Authorization header")
		return
	}
	host, err := requestAuthority(r)
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, "bad-host", "the request's host is not valid: "+err.Error())
		return
	}
	// From here on the request names only the validated authority: the
	// router, the cache key and the forwarded headers all read r.Host.
	r.Host = host
	path, ok := cleanPath(r.URL.Path)
	if !ok {
		writeProblem(w, r, http.StatusBadRequest, "bad-path", "the request path is not valid")
		return
	}
	var m router.Match
	matched := t.router.Match(r.Host, r.Method, path, &m)
	if strings.IndexByte(path, ';') >= 0 && !sameRouteWithoutParams(t, r.Host, r.Method, path, matched, &m) {
		writeProblem(w, r, http.StatusBadRequest, "bad-path", "the path's ';' parameters would change which route it belongs to")
		return
	}
	preflight := false
	if !matched && isPreflight(r) {
		// A preflight asks about the method the browser will send; the
		// route may not accept OPTIONS itself.
		matched = t.router.Match(r.Host, r.Header.Get("Access-Control-Request-Method"), path, &m)
		preflight = matched
	}
	if !matched {
		writeProblem(w, r, http.StatusNotFound, "no-route", "no route matches this request")
		return
	}
	route := t.routes[m.Route]
	o.route, o.pattern, o.service = route.Name, route.spec.Paths[m.Path], route.service()
	if route.rejected != "" {
		// The reason stays in the data plane's report to the control plane
		// and its log: it may name configuration a client has no business
		// seeing.
		w.Header().Set("Retry-After", "30")
		writeProblem(w, r, http.StatusServiceUnavailable, "config-rejected",
			"this route's configuration could not be applied by the gateway; its operator is told")
		return
	}
	// The route's {param}s are resolved once for every template that uses
	// them (rewrite, edits, aggregation, response edits).
	var lookup func(string) string
	if route.params {
		lookup = paramLookup(&m, path)
	}
	if route.hasResponseHook() {
		w.hook = &responseHook{route: route, lookup: lookup, origin: r.Header.Get("Origin")}
	}
	if route.cors != nil && (preflight || isPreflight(r)) {
		w.hook = nil // the preflight answer is complete as it is
		route.cors.preflight(w, r)
		return
	}
	if preflight {
		writeProblem(w, r, http.StatusNotFound, "no-route", "no route matches this request")
		return
	}
	if r.ContentLength > route.MaxBodyBytes {
		writeProblem(w, r, http.StatusRequestEntityTooLarge, "too-large", "request body exceeds "+strconv.FormatInt(route.MaxBodyBytes, 10)+" bytes")
		return
	}
	if body != nil {
		body.rc = http.MaxBytesReader(w, body.rc, route.MaxBodyBytes)
	}
	if up := r.Header["Upgrade"]; len(up) > 0 && !route.upgradeAllowed(up) {
		// RFC 9110 §7.8: a server may ignore Upgrade. The request goes on
		// as a plain one; no tunnel opens for a protocol nobody allowed.
		delete(r.Header, "Upgrade")
	}
	// authn → rate limit → throttle → (aggregate | circuit breaker → proxy).
	var id *auth.Identity
	if route.auth != nil {
		if route.auth.apiKey && len(r.Header[route.auth.apiKeyHeader]) > 1 {
			writeProblem(w, r, http.StatusBadRequest, "ambiguous-credentials", "the request carries more than one "+route.auth.apiKeyHeader+" header")
			return
		}
		var aerr *authError
		id, aerr = route.auth.authenticate(r.Context(), t.verifier, r)
		if aerr != nil {
			if h.metrics != nil {
				h.metrics.authFailures.WithLabelValues(route.Name, aerr.reason).Inc()
			}
			slug := "forbidden"
			if aerr.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", route.auth.challenge)
				slug = "unauthorized"
			}
			o.authFailure = aerr.reason
			writeProblem(w, r, aerr.status, slug, aerr.detail)
			return
		}
	}
	if id != nil {
		o.consumer = id.Consumer
	}
	if rl := route.limit; rl != nil {
		d := h.limiter.Allow(r.Context(), rl.key(r, o.ip(h.ips, r), id), rl.policy)
		rl.writeHeaders(w.Header(), d)
		o.ratelimit = "allowed"
		if !d.Allowed {
			o.ratelimit = "refused"
			w.Header().Set("Retry-After", strconv.Itoa(max(1, ceilSeconds(d.RetryAfter))))
			writeProblem(w, r, http.StatusTooManyRequests, "rate-limited", "rate limit of "+rl.header+" exceeded")
			return
		}
	}
	if th := route.throttle; th != nil {
		// A slot is for a request that is under way: one whose client has
		// sent nothing of its body yet waits for its first byte without
		// one (under the body deadlines), so idle sockets cannot hold the
		// route.
		if body != nil {
			if err := body.prefetch(); err != nil {
				writeBodyError(w, r, err)
				return
			}
		}
		if !th.acquire(r.Context()) {
			if h.metrics != nil {
				h.metrics.throttled.WithLabelValues(route.Name).Inc()
			}
			w.Header().Set("Retry-After", "1")
			writeProblem(w, r, http.StatusServiceUnavailable, "too-many-in-flight", "the route is at its limit of "+strconv.Itoa(th.limit)+" concurrent requests")
			return
		}
		defer th.release()
	}
	if route.cache != nil {
		h.serveCached(w, r, route, m, path, lookup, id, o)
		return
	}
	h.answer(w, r, route, &m, path, lookup, id, o)
}

// answer produces the route's response: merged from several services, or
// from its one service.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, route *Route, m *router.Match, path string, lookup func(string) string, id *auth.Identity, o *outcome) {
	switch {
	case route.aggregate != nil:
		h.serveAggregate(w, r, route, m, lookup, id)
	case route.grpc != nil:
		serveGRPC(w, r, route, m, id)
	default:
		h.forward(w, r, route, m, path, lookup, id, o)
	}
}

// serveGRPC translates the request into a call of the route's gRPC method
// (which asks the service's breaker itself), bounded by the route timeout.
func serveGRPC(w http.ResponseWriter, r *http.Request, route *Route, m *router.Match, id *auth.Identity) {
	params := make(map[string]string, m.Params.Len())
	for i := range m.Params.Len() {
		k, v := m.Params.At(i)
		params[k] = v
	}
	ctx, cancel := context.WithTimeout(r.Context(), route.Timeout)
	defer cancel()
	r = r.WithContext(ctx)
	// The identity travels as metadata, like the headers an HTTP upstream
	// gets.
	r.Header = r.Header.Clone()
	setOutboundIdentity(r.Header, route.auth, id)
	route.grpc.Serve(w, r, params)
}

// serveCached answers from the route's cache or through answer. m is taken
// by value: the closure makes it escape, and only cached routes should pay
// for a heap copy.
// The same goes for the outcome: the closure fills its own, copied back.
func (h *Handler) serveCached(w *recorder, r *http.Request, route *Route, m router.Match, path string, lookup func(string) string, id *auth.Identity, o *outcome) {
	var fetched outcome
	h.cache.Serve(w, r, route.cache, o.consumer, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.answer(w, r, route, &m, path, lookup, id, &fetched)
	}))
	o.upstream, o.attempts = fetched.upstream, fetched.attempts
	o.cache = w.Header().Get(cache.StatusHeader)
}

// service names the route's service for metrics and logs; an aggregating
// route has several.
func (r *Route) service() string {
	if r.Upstream != nil {
		return r.Upstream.Name
	}
	return "aggregate"
}

// forward sends the request to the route's service through the reverse
// proxy.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, route *Route, m *router.Match, path string, lookup func(string) string, id *auth.Identity, o *outcome) {
	up := route.Upstream
	done, err := up.Admit()
	if err != nil {
		w.Header().Set("Retry-After", "5")
		writeProblem(w, r, http.StatusServiceUnavailable, "circuit-open", "service "+up.Name+" is failing; requests are paused")
		return
	}
	upstreamPath := path
	switch {
	case route.rewrite != nil:
		upstreamPath = route.rewrite.expand(lookup, nil)
	case route.StripPrefix:
		upstreamPath = path[m.PrefixLen:]
		if upstreamPath == "" || upstreamPath[0] != '/' {
			upstreamPath = "/" + upstreamPath
		}
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ex := &exchange{route: route, identity: id, lookup: lookup, cancel: cancel, Exchange: upstream.Exchange{Upstream: up, Path: upstreamPath}}
	body, _ := r.Body.(*clientBody)
	// The route timeout bounds the exchange until the response headers are
	// in and the client's body is sent, whichever is later: response
	// bodies and upgraded (WebSocket) connections then live as long as
	// both ends want (a context deadline would cut them off), an upload
	// does not.
	ex.pending.Store(1)
	if body != nil {
		ex.body, ex.Client = body, body
		ex.pending.Add(1)
	}
	ex.timer = time.AfterFunc(route.Timeout, func() {
		if body != nil && body.late() {
			// The wait was for the client's bytes, not the service's. The
			// transport waits for its body reader before it returns, so
			// that read is cut off now rather than at its own deadline.
			ex.clientFault.Store(true)
			body.Abandon()
		}
		ex.timedOut.Store(true)
		cancel()
	})
	defer ex.timer.Stop()
	if body != nil {
		f := ex.bodySent
		body.onDone.Store(&f)
		if body.complete() {
			ex.bodySent()
		}
	}
	defer ex.tunnelDone()
	reported := false
	defer func() {
		if !reported {
			// ReverseProxy panics with http.ErrAbortHandler when a body
			// breaks off after the headers went out (client or upstream
			// gone mid-stream). The breaker's verdict must still be given:
			// an unreported half-open trial would hold its slot for good.
			done(false, true)
		}
	}()
	h.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, upstream.ExchangeKey{}, ex)))
	// A failure the client caused (stalled, broken or refused body, client
	// gone) is reported as the client's: the breaker does not count it.
	timedOut := ex.timedOut.Load()
	clientFault := ex.clientFault.Load() || !timedOut && r.Context().Err() != nil
	done(!clientFault && (ex.Failed || timedOut), clientFault)
	reported = true
	if body != nil && !body.complete() && (ex.Failed || timedOut) {
		// Abandoned only now: cutting off a read makes net/http cancel the
		// request's context, which would read as the client leaving.
		body.Abandon()
	}
	o.upstream, o.attempts = ex.Addr, ex.Attempts
}

// rewrite builds the upstream request. Rewrite (unlike Director) starts from
// an outbound request stripped of hop-by-hop and X-Forwarded-* headers, so a
// client cannot smuggle its own forwarding headers through.
//
// The instance is chosen per attempt by the upstream transport, which fills
// in scheme, host and path; Host is left empty so each attempt sends its
// instance's host.
//
// Identity headers are set here, on the outbound request, after the proxy
// removed what the client's Connection header named: "Connection:
// X-Consumer-Name" cannot strip them.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	out := pr.Out.URL
	out.Scheme, out.Host = "http", "upstream.invalid"
	out.RawQuery = pr.In.URL.RawQuery
	pr.Out.Host = ""
	// A trusted proxy's forwarding chain is kept and extended.
	h.ips.SetForwarded(pr.Out.Header, pr.In)
	ex := exchangeFrom(pr.In.Context())
	if ex == nil {
		setOutboundIdentity(pr.Out.Header, nil, nil)
		return
	}
	if e := ex.route.reqEdits; e != nil {
		e.applyHeaders(pr.Out.Header, ex.lookup)
	}
	if e := ex.route.query; e != nil {
		out.RawQuery = e.applyQuery(out.RawQuery, ex.lookup)
	}
	setOutboundIdentity(pr.Out.Header, ex.route.auth, ex.identity)
}

// headersArrived settles the response headers for the route timeout: once
// they are in (and the client's body is sent), the response body streams
// for as long as the client reads it. An upgraded connection becomes a
// tunnel with idle and lifetime limits.
func (h *Handler) headersArrived(resp *http.Response) error {
	ex := exchangeFrom(resp.Request.Context())
	if ex == nil {
		return nil
	}
	ex.settle()
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		t := newTunnel(rwc, h.limits.TunnelIdleTimeout, h.limits.TunnelMaxLifetime, ex.cancel)
		ex.tunnel.Store(t)
		resp.Body = t
	}
	return nil
}

// proxyError maps upstream failures to problems: 504 when the route timeout
// fired, 413 for a body over the limit, 400 for a body that could not be
// read, 502 for everything the upstream did wrong, and nothing at all when
// the client has gone.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	ex := exchangeFrom(r.Context())
	if ex != nil {
		ex.Failed = true
	}
	var body *clientBody
	if ex != nil {
		body = ex.body
	}
	// The client's doing comes first: counting it against the service
	// would let any client open the breaker for everyone.
	clientFault := true
	switch {
	case body != nil && (body.stalled() || ex != nil && ex.clientFault.Load() || errors.Is(err, upstream.ErrClientLate) ||
		errors.Is(err, upstream.ErrClientBody) && body.late()):
		writeBodyError(w, r, errBodyStalled)
	case errors.Is(err, upstream.ErrClientBody), errors.As(err, new(*http.MaxBytesError)):
		writeBodyError(w, r, err)
	case ex != nil && ex.timedOut.Load():
		clientFault = false
		writeProblem(w, r, http.StatusGatewayTimeout, "upstream-timeout", "the upstream did not answer within "+ex.route.Timeout.String())
	case errors.Is(err, upstream.ErrAttemptTimeout):
		clientFault = false
		writeProblem(w, r, http.StatusGatewayTimeout, "upstream-timeout", "the upstream did not answer in time")
	case errors.Is(err, upstream.ErrNoEndpoints):
		clientFault = false
		w.Header().Set("Retry-After", "1")
		writeProblem(w, r, http.StatusServiceUnavailable, "no-healthy-upstream", "service "+ex.Upstream.Name+" has no healthy instance")
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody is left to answer. 499 is for the logs.
		w.WriteHeader(499)
	default:
		clientFault = false
		if body != nil && !body.complete() {
			// The rest of the upload has nowhere to go: it is not read
			// (forward abandons it once the outcome is reported), and the
			// connection closes after the answer.
			w.Header().Set("Connection", "close")
		}
		detail := "the upstream failed"
		var ne net.Error
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			detail = "the upstream refused the connection"
		case errors.As(err, &ne) && ne.Timeout():
			detail = "connecting to the upstream timed out"
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			detail = "the upstream closed the connection"
		}
		addr := ""
		if ex != nil {
			addr = ex.Addr
		}
		h.log.Warn("upstream error", "err", err, "upstream", addr, "path", r.URL.Path)
		writeProblem(w, r, http.StatusBadGateway, "bad-gateway", detail)
	}
	if clientFault && ex != nil {
		ex.Failed = false
		ex.clientFault.Store(true)
	}
}

// writeBodyError answers a request whose body the client did not deliver:
// 408 when it stopped sending, 413 over the route's limit, 400 when it was
// malformed or cut off. The connection is closed after the answer: the
// rest of the body is not worth waiting for.
func writeBodyError(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Connection", "close")
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, errBodyStalled):
		writeProblem(w, r, http.StatusRequestTimeout, "body-timeout", "the request body did not arrive in time")
	case errors.As(err, &mbe):
		writeProblem(w, r, http.StatusRequestEntityTooLarge, "too-large", "request body exceeds "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
	default:
		writeProblem(w, r, http.StatusBadRequest, "bad-body", "the request body could not be read")
	}
}

func writeProblem(w http.ResponseWriter, r *http.Request, status int, slug, detail string) {
	p := problem.New(status, slug, detail)
	p.Instance = r.URL.Path
	problem.Write(w, p)
}

// requestAuthority validates the authority the request names and returns
// its normal form (package authority). net/http has already chosen it: the
// absolute-form target's authority over the Host header (RFC 9112 §3.2.2;
// net/http then drops the Host header, so the two cannot disagree further
// down), HTTP/2's :authority, or Host. What net/http leaves unchecked is
// refused here:
//   - userinfo in an absolute-form target (RFC 9110 §4.2.4), and a scheme
//     other than http or https;
//   - an HTTP/2 request whose Host header names another authority than
//     :authority (RFC 9113 §8.3.1), which net/http keeps in r.Header; the
//     header is removed once checked.
func requestAuthority(r *http.Request) (string, error) {
	def := authority.PortHTTP
	if r.TLS != nil {
		def = authority.PortHTTPS
	}
	if r.URL.User != nil {
		return "", errors.New("userinfo in the request target")
	}
	if s := r.URL.Scheme; s != "" && !strings.EqualFold(s, "http") && !strings.EqualFold(s, "https") {
		return "", errors.New("request target scheme is not http or https")
	}
	host, err := authority.Normalize(r.Host, def)
	if err != nil {
		return "", err
	}
	if hs, ok := r.Header["Host"]; ok {
		for _, h := range hs {
			if n, err := authority.Normalize(h, def); err != nil || n != host {
				return "", errors.New("the Host header and the request's authority disagree")
			}
		}
		delete(r.Header, "Host")
	}
	return host, nil
}

// cleanPath normalises a decoded request path the way routes are written:
// no empty or dot segments. The upstream receives the cleaned path, so it
// sees exactly what the router matched. Trailing slashes are kept.
//
// Paths some upstreams would read with other dot segments than the router
// are refused (false) rather than guessed at: a backslash (decoded, so
// "%5C" too), which Windows servers and WHATWG URL parsers take for '/'
// ("/public/..\admin"), and a dot segment with a path parameter ("..;x",
// ".;"), which servlet containers reduce to ".." or ".".
func cleanPath(p string) (string, bool) {
	if p == "" {
		return "/", true
	}
	if p[0] != '/' || strings.IndexByte(p, '\\') >= 0 {
		return "", false
	}
	if !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p, true
	}
	trailing := strings.HasSuffix(p, "/")
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for _, s := range segs {
		switch s {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			if strings.HasPrefix(s, ".;") || strings.HasPrefix(s, "..;") {
				return "", false
			}
			out = append(out, s)
		}
	}
	c := "/" + strings.Join(out, "/")
	if trailing && c != "/" {
		c += "/"
	}
	return c, true
}

// sameRouteWithoutParams: path, with each segment's ";parameters" removed
// the way servlet containers read it ("/admin;x/y" is "/admin/y" to
// Tomcat), matches the same route as path (or none in both cases). When it
// does not, a servlet upstream would serve a resource of another route than
// the one whose policies the gateway applied, so the request is refused.
// Paths without ';' never get here; jsessionid and matrix parameters that
// stay within one route pass.
func sameRouteWithoutParams(t *Table, host, method, path string, matched bool, m *router.Match) bool {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	stripped, ok := cleanPath(strings.Join(segs, "/"))
	if !ok {
		return false
	}
	var m2 router.Match
	matched2 := t.router.Match(host, method, stripped, &m2)
	return matched == matched2 && (!matched || m.Route == m2.Route)
}

// bufferPool recycles the 32 KiB copy buffers of the reverse proxy.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// recorder notes the status code for metrics. Unwrap lets
// http.ResponseController (used by ReverseProxy to flush and to hijack for
// WebSocket upgrades) reach the real writer.
type recorder struct {
	http.ResponseWriter
	code  int
	bytes int64
	// hook edits the response headers just before they are written.
	hook *responseHook
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
			// Informational answers (103 Early Hints) precede the real one.
			r.ResponseWriter.WriteHeader(code)
			return
		}
		r.code = code
		if r.hook != nil {
			r.hook.apply(r.Header())
		}
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}
