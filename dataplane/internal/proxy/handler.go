// Package proxy is the data plane's request path: match the request against
// the current compiled Table (one atomic load, no lock), then run the
// matched route's stages, compiled with the table in the one order
// declared in stages.go (see package stage): transformations, auth, rate
// limit, throttle, cache, and a terminal stage that answers: aggregation,
// a gRPC call, or by default the reverse proxy (forward.go:
// httputil.ReverseProxy over one shared, tuned transport and the upstream
// call path). Each route feature lives in a package of its own; proxy keeps
// the table, the handler and the order. A new configuration swaps the
// Table; requests in flight finish on the one they started with.
//
// What a client can hold or claim is bounded before any route stage runs
// (Limits, limits.go): an exact header-block limit, deadlines and a minimum
// rate on every read of a request body (body.go), idle and lifetime limits
// on tunnels, which open only for allowed Upgrade protocols (package tunnel),
// and one pass over the client's headers that drops what a service must be
// able to trust the gateway for (headers.go). A failure the client caused
// is never reported to the service's breaker, outlier detection or retry
// budget.
package proxy

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/portico-gw/portico/dataplane/internal/authority"
	"github.com/portico-gw/portico/dataplane/internal/clientip"
	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/transform"
	"github.com/portico-gw/portico/dataplane/internal/tunnel"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
)

// Handler proxies requests according to the current Table.
type Handler struct {
	table   atomic.Pointer[Table]
	proxy   *httputil.ReverseProxy
	log     *slog.Logger
	metrics *Metrics
	ips     *clientip.Resolver
	obs     observer
	limits  Limits
	// env is what every request's stages are lent (stage.Env).
	env stage.Env
}

// Options configure a Handler.
type Options struct {
	Log       *slog.Logger
	Metrics   *Metrics
	Transport http.RoundTripper
	// ClientIP says which peers' X-Forwarded-For is believed; nil: none.
	ClientIP *clientip.Resolver
	// Tracing, access logs and analytics; see observe.go.
	Observe ObserveOptions
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
	h := &Handler{log: o.Log, metrics: o.Metrics, ips: o.ClientIP, obs: obs, limits: o.Limits.withDefaults()}
	h.env = stage.Env{Transport: o.Transport, Tracer: obs.tracer, Propagator: obs.prop, ClientIP: o.ClientIP, Mirrored: o.Metrics.mirrored(),
		ResponseChecked: o.Metrics.responseChecked(o.Log)}
	h.proxy = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      o.Transport,
		BufferPool:     bufferPool{},
		ErrorHandler:   h.proxyError,
		ModifyResponse: h.headersArrived,
		ErrorLog:       slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
	h.env.Proxy = h.proxy
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

// requests recycles the state of requests (stage.Request): most of it is
// the route match, hundreds of bytes that would otherwise be garbage per
// request.
var requests = sync.Pool{New: func() any { return new(stage.Request) }}

// serve handles one request: what the gateway checks on every request
// (headers, authority, path), the route match, then the route's stages.
func (h *Handler) serve(w *recorder, req *stage.Request) {
	r := req.R
	if r.ProtoMajor == 2 {
		// A WebSocket over HTTP/2 becomes the HTTP/1.1 handshake before
		// anything reads it: the route's chain decides on that (package
		// tunnel, h2.go). Its stream is no request body.
		ww, rr, err := tunnel.FromHTTP2(w, r)
		switch {
		case errors.Is(err, tunnel.ErrUnsupportedProtocol):
			stage.WriteProblem(w, r, http.StatusNotImplemented, "unsupported-protocol", err.Error())
			return
		case err != nil:
			stage.WriteProblem(w, r, http.StatusBadRequest, "bad-protocol", err.Error())
			return
		}
		req.W, req.R, r = ww, rr, rr
	}
	if r.Body != nil && r.Body != http.NoBody {
		// Every read of the client's body is under deadlines (body.go).
		body := newClientBody(r.Body, w, &h.limits)
		r.Body, req.Body = body, body
		defer body.finish()
	}
	t := h.table.Load()
	if t == nil {
		w.Header().Set("Retry-After", "1")
		stage.WriteProblem(w, r, http.StatusServiceUnavailable, "not-ready", "the gateway has no configuration yet")
		return
	}
	if sanitize(r, t.stripped, h.limits.AllowUnderscoreHeaders) > h.limits.MaxHeaderBytes {
		w.Header().Set("Connection", "close")
		stage.WriteProblem(w, r, http.StatusRequestHeaderFieldsTooLarge, "headers-too-large",
			"the request line and headers exceed "+strconv.Itoa(h.limits.MaxHeaderBytes)+" bytes")
		return
	}
	if len(r.Header["Authorization"]) > 1 {
		// Which one would count? The gateway checks the first, a service
		// might read the last.
		stage.WriteProblem(w, r, http.StatusBadRequest, "ambiguous-credentials", "the request carries more than one Authorization header")
		return
	}
	host, err := requestAuthority(r)
	if err != nil {
		stage.WriteProblem(w, r, http.StatusBadRequest, "bad-host", "the request's host is not valid: "+err.Error())
		return
	}
	// From here on the request names only the validated authority: the
	// router, the cache key and the forwarded headers all read r.Host.
	r.Host = host
	path, ok := cleanPath(r.URL.Path)
	if !ok {
		stage.WriteProblem(w, r, http.StatusBadRequest, "bad-path", "the request path is not valid")
		return
	}
	m := &req.Match
	in := router.Inputs{Header: r.Header, RawQuery: r.URL.RawQuery}
	matched := t.router.MatchRequest(r.Host, r.Method, path, &in, m)
	if strings.IndexByte(path, ';') >= 0 && !sameRouteWithoutParams(t, r.Host, r.Method, path, &in, matched, m) {
		stage.WriteProblem(w, r, http.StatusBadRequest, "bad-path", "the path's ';' parameters would change which route it belongs to")
		return
	}
	preflight := false
	if !matched && transform.IsPreflight(r) {
		// A preflight asks about the method the browser will send; the
		// route may not accept OPTIONS itself.
		matched = t.router.MatchRequest(r.Host, r.Header.Get("Access-Control-Request-Method"), path, &in, m)
		preflight = matched
	}
	if !matched {
		stage.WriteProblem(w, r, http.StatusNotFound, "no-route", "no route matches this request")
		return
	}
	route := t.routes[m.Route]
	o := &req.Outcome
	o.Route, o.Pattern, o.Service = route.Name, route.spec.Paths[m.Path], route.service()
	if route.rejected != "" {
		// The reason stays in the data plane's report to the control plane
		// and its log: it may name configuration a client has no business
		// seeing.
		w.Header().Set("Retry-After", "30")
		stage.WriteProblem(w, r, http.StatusServiceUnavailable, "config-rejected",
			"this route's configuration could not be applied by the gateway; its operator is told")
		return
	}
	if preflight && !route.preflight {
		// Matched only by the method a preflight announces, on a route
		// that does not answer preflights.
		stage.WriteProblem(w, r, http.StatusNotFound, "no-route", "no route matches this request")
		return
	}
	req.Path = path
	req.Run(route.chain)
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
		stage.WriteProblem(w, r, http.StatusRequestTimeout, "body-timeout", "the request body did not arrive in time")
	case errors.As(err, &mbe):
		stage.WriteProblem(w, r, http.StatusRequestEntityTooLarge, "too-large", "request body exceeds "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
	default:
		stage.WriteProblem(w, r, http.StatusBadRequest, "bad-body", "the request body could not be read")
	}
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
func sameRouteWithoutParams(t *Table, host, method, path string, in *router.Inputs, matched bool, m *router.Match) bool {
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
	matched2 := t.router.MatchRequest(host, method, stripped, in, &m2)
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
	// req is the request answered: its route's Responder edits the
	// response headers just before they are written.
	req *stage.Request
	// logged is the status a gRPC answer stands for (LogStatus), 0 for
	// others: a refused gRPC call is an HTTP 200 on the wire.
	logged int
}

// LogStatus makes the access log, metrics and analytics record status
// instead of the status written: stage.WriteGRPCStatus calls it.
func (r *recorder) LogStatus(status int) { r.logged = status }

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
			// Informational answers (103 Early Hints) precede the real one.
			r.ResponseWriter.WriteHeader(code)
			return
		}
		r.code = code
		r.req.Respond(r.Header())
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
	if r.logged != 0 {
		return r.logged
	}
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}
