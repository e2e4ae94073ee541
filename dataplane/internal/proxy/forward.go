package proxy

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/split"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/tunnel"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
)

// forward is the default terminal stage: the request goes to the route's
// one service through the reverse proxy (httputil.ReverseProxy with
// Rewrite, over upstream.Transport: instance choice and retries), after the
// service's circuit breaker.
type forward struct {
	up      *upstream.Upstream
	timeout time.Duration
	// split, when the route has backends, chooses the service per
	// request (up is then nil).
	split *split.Split
}

func (f *forward) Describe() any {
	if f.split != nil {
		return struct {
			Split   any    `json:"split"`
			Timeout string `json:"timeout"`
		}{f.split.Describe(), f.timeout.String()}
	}
	return struct {
		Service string `json:"service"`
		Timeout string `json:"timeout"`
	}{f.up.Name, f.timeout.String()}
}

// exchange is the per-request state the proxy callbacks and the upstream
// transport share: one context value per request.
type exchange struct {
	upstream.Exchange
	req      *stage.Request
	timeout  time.Duration
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
	tunnel      atomic.Pointer[tunnel.Conn]
	// body is the client's request body, nil without one. (ReverseProxy
	// hands the error handler its outbound request, whose Body is a
	// wrapper of this one.)
	body *clientBody
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
		t.Stop()
	}
}

func exchangeFrom(ctx context.Context) *exchange {
	x, _ := ctx.Value(upstream.ExchangeKey{}).(*exchange)
	return x
}

// Serve sends the request to the route's service through the reverse
// proxy (stage.Env.Proxy).
func (f *forward) Serve(req *stage.Request) {
	w, r := req.W, req.R
	up := f.up
	if f.split != nil {
		up = f.split.Choose(req)
		req.Outcome.Service = up.Name
	}
	ex := &exchange{req: req, timeout: f.timeout,
		Exchange: upstream.Exchange{Call: upstream.Call{Upstream: up}, Path: cmp.Or(req.UpstreamPath, req.Path)}}
	if err := ex.Admit(); err != nil {
		w.Header().Set("Retry-After", "5")
		stage.WriteProblem(w, r, http.StatusServiceUnavailable, "circuit-open", "service "+up.Name+" is failing; requests are paused")
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ex.cancel = cancel
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
	ex.timer = time.AfterFunc(f.timeout, func() {
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
			ex.End(false, true)
		}
	}()
	req.Env.Proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, upstream.ExchangeKey{}, ex)))
	// A failure the client caused (stalled, broken or refused body, client
	// gone) is reported as the client's: the breaker does not count it.
	timedOut := ex.timedOut.Load()
	clientFault := ex.clientFault.Load() || !timedOut && r.Context().Err() != nil
	ex.End(!clientFault && (ex.Failed || timedOut), clientFault)
	reported = true
	if body != nil && !body.complete() && (ex.Failed || timedOut) {
		// Abandoned only now: cutting off a read makes net/http cancel the
		// request's context, which would read as the client leaving.
		body.Abandon()
	}
	req.Outcome.Upstream, req.Outcome.Attempts = ex.Addr, ex.Attempts
}

// rewrite builds the upstream request. Rewrite (unlike Director) starts from
// an outbound request stripped of hop-by-hop and X-Forwarded-* headers, so a
// client cannot smuggle its own forwarding headers through.
//
// The instance is chosen per attempt by the upstream transport, which fills
// in scheme, host and path; Host is left empty so each attempt sends its
// instance's host.
//
// What the route's stages add (header and query edits, the identity) is
// set here, on the outbound request, after the proxy removed what the
// client's Connection header named: "Connection: X-Consumer-Name" cannot
// strip it.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	out := pr.Out.URL
	out.Scheme, out.Host = "http", "upstream.invalid"
	out.RawQuery = pr.In.URL.RawQuery
	pr.Out.Host = ""
	// A trusted proxy's forwarding chain is kept and extended.
	h.ips.SetForwarded(pr.Out.Header, pr.In)
	ex := exchangeFrom(pr.In.Context())
	if ex == nil {
		for _, name := range stage.IdentityHeaders {
			delete(pr.Out.Header, name)
		}
		return
	}
	ex.req.Outbound(pr.Out)
}

// headersArrived settles the response headers for the route timeout: once
// they are in (and the client's body is sent), the response body streams
// for as long as the client reads it. An upgraded connection becomes a
// tunnel with idle and lifetime limits: the node's, tightened by the
// route's (package tunnel).
func (h *Handler) headersArrived(resp *http.Response) error {
	// A service's Alt-Svc offers alternatives to the service's origin,
	// which clients never reach; theirs is the gateway's (whose TLS
	// listener advertises its own HTTP/3 with --http3).
	delete(resp.Header, "Alt-Svc")
	ex := exchangeFrom(resp.Request.Context())
	if ex == nil {
		return nil
	}
	ex.settle()
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
		version := "1.1"
		if b := tunnel.H2From(resp.Request.Context()); b != nil {
			// A WebSocket over HTTP/2: the client gets 200 only for a
			// service that answered the gateway's key (else 502).
			if err := b.Verify(resp); err != nil {
				return err
			}
			version = "2"
		}
		lim := tunnel.Effective(resp.Request.Context(), tunnel.Limits{Idle: h.limits.TunnelIdleTimeout, Lifetime: h.limits.TunnelMaxLifetime})
		// The protocol is one the request asked for (ReverseProxy refuses
		// a switch to another), and the limits stage let only the route's
		// allowed ones through: a bounded label.
		proto := strings.ToLower(resp.Header.Get("Upgrade"))
		t := tunnel.Open(rwc, lim, ex.cancel, h.metrics.tunnelMetrics(), ex.req.Outcome.Route, proto, version)
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
		stage.WriteProblem(w, r, http.StatusGatewayTimeout, "upstream-timeout", "the upstream did not answer within "+ex.timeout.String())
	case errors.Is(err, upstream.ErrAttemptTimeout):
		clientFault = false
		stage.WriteProblem(w, r, http.StatusGatewayTimeout, "upstream-timeout", "the upstream did not answer in time")
	case errors.Is(err, upstream.ErrNoEndpoints):
		clientFault = false
		w.Header().Set("Retry-After", "1")
		stage.WriteProblem(w, r, http.StatusServiceUnavailable, "no-healthy-upstream", "service "+ex.Upstream.Name+" has no healthy instance")
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
		stage.WriteProblem(w, r, http.StatusBadGateway, "bad-gateway", detail)
	}
	if clientFault && ex != nil {
		ex.Failed = false
		ex.clientFault.Store(true)
	}
}
