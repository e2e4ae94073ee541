package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// limits mirror the defaults of the data plane's traffic listener
// (dataplane/internal/proxy/limits.go); see newServer for how each maps.
const (
	maxHeaderBytes    = 64 << 10
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
)

// fastProxy is the prototype's request path: what a gateway must do per
// request on the plain route and no more. What it does, and what a
// production fast path would still have to carry, is listed in
// docs/PERFORMANCE.md ("Goal 3: a fast HTTP/1.1 path?").
type fastProxy struct {
	upstream *fasthttp.HostClient
	prefix   []byte // the one route: requests under it go to upstream
	route    string
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

func newFastProxy(upstreamAddr string, reg prometheus.Registerer) *fastProxy {
	p := &fastProxy{
		upstream: &fasthttp.HostClient{
			Addr: upstreamAddr,
			// Sized like Portico's transport for the benchmark's 64
			// connections (MaxIdleConnsPerHost 256).
			MaxConns:            256,
			MaxIdleConnDuration: 90 * time.Second,
			MaxConnWaitTimeout:  5 * time.Second,
			ReadTimeout:         60 * time.Second,
			WriteTimeout:        60 * time.Second,
			// A gateway forwards what it was sent: no User-Agent of its
			// own, header names as received, the path as the router
			// cleaned it (the server side already normalised it).
			NoDefaultUserAgentHeader:      true,
			DisableHeaderNamesNormalizing: true,
			// Responses stream through instead of being buffered whole:
			// a gateway cannot hold a 1 GB download in memory.
			StreamResponseBody: true,
			// A request is sent once; retrying is a route's decision
			// (Portico's retry policy), not the client library's.
			MaxIdemponentCallAttempts: 1,
		},
		prefix: []byte("/bench/"),
		route:  "bench",
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proto_requests_total", Help: "Requests by route, method and status class.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "proto_request_duration_seconds", Help: "Request duration by route.",
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "proto_in_flight", Help: "Requests in flight."}),
	}
	reg.MustRegister(p.requests, p.duration, p.inFlight)
	return p
}

// newServer is the client-facing listener with the data plane's limits:
// ReadBufferSize bounds the request line and headers (fasthttp answers 431
// past it), ReadTimeout is the header deadline (request bodies stream, so it
// does not bound them), IdleTimeout closes idle keep-alive connections.
func newServer(h fasthttp.RequestHandler) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       h,
		Name:                          "",
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		ReadBufferSize:                maxHeaderBytes,
		ReadTimeout:                   readHeaderTimeout,
		IdleTimeout:                   idleTimeout,
		StreamRequestBody:             true,
		DisablePreParseMultipartForm:  true,
		DisableHeaderNamesNormalizing: true,
		SecureErrorLogMessage:         true,
		ErrorHandler:                  serverError,
	}
}

// serverError answers what fasthttp refused before the handler: 501 for a
// transfer coding it does not support (as net/http and Portico), 431 for a
// header block over ReadBufferSize, 400 otherwise. fasthttp closes the
// connection after each.
func serverError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrUnsupportedTransferEncoding):
		refuse(ctx, fasthttp.StatusNotImplemented, "unsupported-transfer-coding")
	case errors.As(err, &small):
		refuse(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "headers-too-large")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		refuse(ctx, fasthttp.StatusRequestEntityTooLarge, "body-too-large")
	default:
		refuse(ctx, fasthttp.StatusBadRequest, "bad-request")
	}
}

// dropped are the request headers removed before forwarding, found in the
// one pass over the client's headers: the RFC 9110 §7.6.1
// connection-specific fields (and the legacy ones net/http's ReverseProxy
// removes too; Transfer-Encoding is not listed, fasthttp re-frames the body
// itself), the client's forwarding headers (X-Forwarded-* are written anew,
// Forwarded is dropped, as ReverseProxy's Rewrite does in Portico), and
// those Portico's sanitize removes on every route (dataplane/internal/proxy/
// headers.go strippedAlways): the gateway writes or vouches for them, a
// client may not. Lower case: they are compared case-insensitively.
var dropped = map[string]bool{
	"connection": true, "proxy-connection": true, "keep-alive": true, "proxy-authenticate": true,
	"proxy-authorization": true, "te": true, "trailer": true, "upgrade": true,
	"forwarded": true, "x-forwarded-for": true, "x-forwarded-host": true, "x-forwarded-proto": true,
	"x-consumer-name": true, "x-consumer-groups": true, "x-auth-method": true,
	"x-real-ip": true, "x-forwarded-port": true, "x-forwarded-prefix": true, "x-forwarded-ssl": true,
}

// hopByHopResponse are removed from the upstream's response.
var hopByHopResponse = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Upgrade",
}

func (p *fastProxy) serve(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	p.inFlight.Inc()
	status := p.handle(ctx)
	p.inFlight.Dec()
	p.requests.WithLabelValues(p.route, methodLabel(ctx.Method()), statusClass(status)).Inc()
	p.duration.WithLabelValues(p.route).Observe(time.Since(start).Seconds())
}

// handle checks and forwards one request; it returns the status answered.
func (p *fastProxy) handle(ctx *fasthttp.RequestCtx) int {
	req := &ctx.Request
	h := &req.Header
	if h.IsHTTP11() && len(h.Host()) == 0 {
		return refuse(ctx, fasthttp.StatusBadRequest, "bad-host")
	}
	if !validAuthority(h.Host()) {
		return refuse(ctx, fasthttp.StatusBadRequest, "bad-host")
	}
	// Framing: fasthttp refuses duplicate or malformed Content-Length,
	// codings other than chunked and identity, repeated Transfer-Encoding
	// fields and a Transfer-Encoding on HTTP/1.0 (400, see serverError for
	// the 501 Portico answers); it closes the connection after a request
	// carrying both. It accepts "Transfer-Encoding: identity" and hides it
	// (a request without a length), which net/http refuses with 501: found
	// in the raw header block. Portico also closes after every request
	// with a Transfer-Encoding (RFC 9112 §6.1).
	if h.ContentLength() == -1 {
		ctx.SetConnectionClose()
	} else if hasTransferEncoding(h.RawHeaders()) {
		ctx.SetConnectionClose()
		return refuse(ctx, fasthttp.StatusNotImplemented, "unsupported-transfer-coding")
	}
	// One pass over the headers: the exact header-block size, duplicate
	// credentials, headers a client may not send, and the Connection
	// field's own hop-by-hop names.
	size := len(h.Method()) + 1 + len(h.RequestURI()) + 1 + len(h.Protocol()) + 4
	auths, drop := 0, false
	var conn []byte
	for k, v := range h.All() {
		size += len(k) + 2 + len(v) + 2
		switch {
		case len(k) == len("Authorization") && bytes.EqualFold(k, []byte("Authorization")):
			auths++
		case isDropped(k):
			drop = true
			if len(k) == len("Connection") && bytes.EqualFold(k, []byte("Connection")) {
				conn = v
			}
		}
	}
	if size > maxHeaderBytes {
		ctx.SetConnectionClose()
		return refuse(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "headers-too-large")
	}
	if auths > 1 {
		return refuse(ctx, fasthttp.StatusBadRequest, "ambiguous-credentials")
	}
	// Route: the server normalised the path (percent-decoding, dot
	// segments, duplicate slashes) before the handler; requests that are
	// not under the route's prefix get 404.
	path := ctx.Path()
	if !bytes.HasPrefix(path, p.prefix) || bytes.IndexByte(path, 0) >= 0 {
		return refuse(ctx, fasthttp.StatusNotFound, "no-route")
	}
	if drop {
		dropClientHeaders(h, conn)
	}
	// Forwarded headers: the peer is the client (no trusted proxies, as
	// Portico's default), so its X-Forwarded-For is replaced, not
	// appended to.
	var ipBuf [64]byte
	ip := ipBuf[:0]
	if ta, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr().Unmap().AppendTo(ip)
	}
	h.SetBytesV("X-Forwarded-For", ip)
	h.SetBytesV("X-Forwarded-Host", h.Host())
	h.Set("X-Forwarded-Proto", "http")

	// The client's connection is its own: a "Connection: close" or an
	// HTTP/1.0 request must not close the pooled upstream connection.
	clientClose := h.ConnectionClose() || ctx.Response.ConnectionClose()
	h.ResetConnectionClose()
	// A body the client breaks off or mis-frames is the client's fault
	// (400), not the upstream's (502): its reads are watched. Only
	// requests with a body pay for the wrapper.
	var body *clientBody
	if n := h.ContentLength(); n > 0 || n == -1 {
		body = &clientBody{r: req.BodyStream()}
		req.SetBodyStream(body, n)
	}
	resp := &ctx.Response
	if err := p.upstream.Do(req, resp); err != nil {
		resp.Reset()
		if clientClose {
			ctx.SetConnectionClose()
		}
		if body != nil && body.err != nil {
			ctx.SetConnectionClose()
			return refuse(ctx, fasthttp.StatusBadRequest, "bad-body")
		}
		if errors.Is(err, fasthttp.ErrTimeout) {
			return refuse(ctx, fasthttp.StatusGatewayTimeout, "upstream-timeout")
		}
		return refuse(ctx, fasthttp.StatusBadGateway, "upstream-error")
	}
	if c := resp.Header.Peek(fasthttp.HeaderConnection); len(c) > 0 {
		dropListed(&resp.Header, c)
	}
	for _, name := range hopByHopResponse {
		resp.Header.Del(name)
	}
	resp.Header.ResetConnectionClose()
	if clientClose {
		ctx.SetConnectionClose()
	}
	return resp.StatusCode()
}

// isDropped tells a header name of dropped, or one with "_" (dropped as
// nginx does by default: CGI and WSGI servers read X_Consumer_Name as
// X-Consumer-Name), without allocating.
func isDropped(k []byte) bool {
	if bytes.IndexByte(k, '_') >= 0 {
		return true
	}
	if len(k) > 32 {
		return false
	}
	var lower [32]byte
	for i, c := range k {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return dropped[string(lower[:len(k)])]
}

// dropClientHeaders removes the headers isDropped tells and those the
// Connection field names (hop-by-hop too, RFC 9110 §7.6.1). Deleting
// reuses the header's memory, so the names are copied first; only requests
// that carry such headers pay for it.
// clientBody remembers the error of a read of the client's body.
type clientBody struct {
	r   io.Reader
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// dropListed removes from a response the headers its Connection field
// names (copied first: deleting reuses the header's memory).
func dropListed(h *fasthttp.ResponseHeader, conn []byte) {
	var names []string
	for tok := range bytes.SplitSeq(conn, []byte(",")) {
		if tok = bytes.TrimSpace(tok); len(tok) > 0 {
			names = append(names, string(tok))
		}
	}
	for _, n := range names {
		h.Del(n)
	}
}

// hasTransferEncoding tells whether a raw header block has a
// Transfer-Encoding field (any case) at the start of a line.
func hasTransferEncoding(raw []byte) bool {
	const name = "transfer-encoding:"
	for len(raw) > 0 {
		if len(raw) >= len(name) && raw[0]|0x20 == 't' && bytes.EqualFold(raw[:len(name)], []byte(name)) {
			return true
		}
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			return false
		}
		raw = raw[i+1:]
	}
	return false
}

func dropClientHeaders(h *fasthttp.RequestHeader, conn []byte) {
	var names []string
	for tok := range bytes.SplitSeq(conn, []byte(",")) {
		if tok = bytes.TrimSpace(tok); len(tok) > 0 {
			names = append(names, string(tok))
		}
	}
	for k := range h.All() {
		if isDropped(k) {
			names = append(names, string(k))
		}
	}
	for _, n := range names {
		h.Del(n)
	}
}

// validAuthority accepts host[:port] with RFC 3986 reg-name or IP-literal
// characters, as Portico's requestAuthority does for the Host field (it
// also resolves absolute-form targets; the prototype's server does that
// part through its URI parsing).
func validAuthority(h []byte) bool {
	if len(h) == 0 {
		return true
	}
	for _, c := range h {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_' || c == '~':
		default:
			return false
		}
	}
	return true
}

// refuse answers a problem+json error, like stage.WriteProblem.
func refuse(ctx *fasthttp.RequestCtx, status int, kind string) int {
	closing := ctx.Response.ConnectionClose()
	ctx.Response.Reset()
	if closing {
		ctx.SetConnectionClose()
	}
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/problem+json")
	ctx.Response.SetBodyString(`{"type":"urn:portico:` + kind + `","status":` + strconv.Itoa(status) + `}`)
	return status
}

func methodLabel(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "PATCH":
		return "PATCH"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	}
	return "OTHER"
}

func statusClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	}
	return "2xx"
}
