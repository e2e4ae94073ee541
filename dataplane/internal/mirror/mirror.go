// Package mirror is the request-mirroring stage (issue 16): a share of a
// route's requests is copied to another service, fire and forget.
//
// # Isolation
//
// The client's exchange never waits for the copy and never depends on it:
//
//   - The copy is decided before the rest of the chain runs (percent, and
//     a body announced larger than the bound is not copied) and sent only
//     after the rest of the chain has answered the client, from a
//     goroutine of its own, with a context of its own (the mirror's
//     timeout, not the client's: a client that leaves does not cancel a
//     copy, and a copy that hangs holds nothing of the client's).
//   - The body is copied as the proxy reads it for the primary service
//     (stage.Body.Tap, up to max_body_bytes); nothing is read ahead. A body
//     that was not read to its end or went over the bound is not copied.
//   - At most max_concurrent copies per route are in flight on a data
//     plane; one more is dropped, not queued. A hanging mirror service so
//     costs at most that many goroutines and connections, each for at
//     most the timeout.
//
// Copies go through the call path of the mirror's service (upstream.Call
// with the upstream transport: its balancer, breaker, retries of requests
// that never reached an instance), in a span of their own that is a child
// of the request's, and are counted by outcome (Env.Mirrored: 2xx..5xx,
// error, timeout, dropped, too_large, incomplete).
package mirror

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
)

// Route is a route's compiled mirror stage. It is immutable except for its
// slots, which it shares with nobody.
type Route struct {
	route    string
	up       *upstream.Upstream
	percent  float64
	maxBody  int64
	timeout  time.Duration
	slots    chan struct{}
	hopByHop []string
}

// Compile returns r's mirror stage, or nil when it has none or its service
// is not in the table (rejected): mirroring is then off, and the route
// serves as without it.
func Compile(r *config.Route, ups map[string]*upstream.Upstream) stage.Stage {
	if r.Mirror == nil || ups[r.Mirror.Service] == nil {
		return nil // a nil interface: the chain leaves it out
	}
	m := r.Mirror
	return &Route{
		route:    r.Name,
		up:       ups[m.Service],
		percent:  m.Percent,
		maxBody:  cmp.Or(m.MaxBodyBytes, config.DefaultMirrorBody),
		timeout:  cmp.Or(m.Timeout.Std(), config.DefaultMirrorTimeout),
		slots:    make(chan struct{}, cmp.Or(m.MaxConcurrent, config.DefaultMirrorConcurrency)),
		hopByHop: config.HopByHop,
	}
}

// Describe shows the stage for the stages golden file.
func (m *Route) Describe() any {
	return struct {
		Service       string  `json:"service"`
		Percent       float64 `json:"percent"`
		MaxBodyBytes  int64   `json:"max_body_bytes"`
		MaxConcurrent int     `json:"max_concurrent"`
		Timeout       string  `json:"timeout"`
	}{m.up.Name, m.percent, m.maxBody, cap(m.slots), m.timeout.String()}
}

// Serve runs the rest of the chain and then, for the chosen share of
// requests, sends the copy.
func (m *Route) Serve(req *stage.Request) {
	if m.percent < 100 && rand.Float64()*100 >= m.percent {
		req.Next()
		return
	}
	r := req.R
	if r.ContentLength > m.maxBody {
		req.Next()
		m.count(req.Env, "too_large")
		return
	}
	var body *capped
	if req.Body != nil {
		body = &capped{max: m.maxBody}
		req.Body.Tap(body)
	}
	// What the copy needs is taken before the chain runs: stages may edit
	// the request for the primary service, and the Request is reused once
	// Serve returns.
	c := &copyReq{
		method: r.Method,
		path:   cmp.Or(req.UpstreamPath, req.Path),
		query:  r.URL.RawQuery,
		header: r.Header.Clone(),
		parent: trace.SpanContextFromContext(r.Context()),
	}
	for _, h := range m.hopByHop {
		c.header.Del(h)
	}
	c.header.Del("Expect")
	req.Next()
	if req.Body != nil {
		// The tap stays: the transport may still be reading the body on
		// its own goroutine (capped is safe for that).
		switch {
		case body.overflowed():
			m.count(req.Env, "too_large")
			return
		case !req.Body.Complete():
			m.count(req.Env, "incomplete")
			return
		}
		c.body = body.Bytes()
	}
	// The identity and forwarding headers the primary service got.
	req.WriteIdentity(c.header)
	req.Env.ClientIP.SetForwarded(c.header, r)
	select {
	case m.slots <- struct{}{}:
	default:
		m.count(req.Env, "dropped")
		return
	}
	env := req.Env
	go func() {
		defer func() { <-m.slots }()
		m.count(env, m.send(env, c))
	}()
}

func (m *Route) count(env *stage.Env, outcome string) {
	if env != nil && env.Mirrored != nil {
		env.Mirrored(m.route, m.up.Name, outcome)
	}
}

// copyReq is what a copy carries, owned by its goroutine.
type copyReq struct {
	method, path, query string
	header              http.Header
	body                []byte
	parent              trace.SpanContext
}

// exchange carries the copy's upstream.Exchange to the transport.
type exchange struct{ upstream.Exchange }

func (x *exchange) UpstreamExchange() *upstream.Exchange { return &x.Exchange }

// send makes the copy's call and returns its outcome.
func (m *Route) send(env *stage.Env, c *copyReq) (outcome string) {
	ctx := trace.ContextWithSpanContext(context.Background(), c.parent)
	ctx, span := env.Tracer.Start(ctx, "mirror "+m.up.Name, trace.WithSpanKind(trace.SpanKindInternal))
	defer func() {
		if span.IsRecording() {
			span.SetAttributes(attribute.String("portico.route", m.route), attribute.String("portico.service", m.up.Name),
				attribute.String("portico.mirror.outcome", outcome), attribute.String("url.path", c.path))
			if outcome == "error" || outcome == "timeout" {
				span.SetStatus(codes.Error, outcome)
			}
		}
		span.End()
	}()
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	ex := &exchange{upstream.Exchange{Call: upstream.Call{Upstream: m.up}, Path: c.path}}
	if err := ex.Admit(); err != nil {
		return "error"
	}
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(context.WithValue(ctx, upstream.ExchangeKey{}, ex), c.method, "http://upstream.invalid/", body)
	if err != nil {
		ex.End(false, false)
		return "error"
	}
	req.URL.RawQuery = c.query
	req.Host = ""
	req.Header = c.header
	if c.body != nil {
		req.ContentLength = int64(len(c.body))
		req.Header.Set("Content-Length", strconv.Itoa(len(c.body)))
	}
	resp, err := env.Transport.RoundTrip(req)
	if err != nil {
		ex.End(ex.Failed, false)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "timeout"
		}
		return "error"
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	ex.End(ex.Failed || resp.StatusCode >= 500, false)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "timeout"
	}
	return strconv.Itoa(resp.StatusCode/100) + "xx"
}

// capped keeps up to max bytes written to it and notes when there were
// more. The body's reader writes; Serve reads after the chain returned.
type capped struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	max  int64
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over || int64(c.buf.Len()+len(p)) > c.max {
		c.over = true
		return len(p), nil
	}
	return c.buf.Write(p)
}

func (c *capped) overflowed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.over
}

// Bytes returns a copy of what was kept.
func (c *capped) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}
