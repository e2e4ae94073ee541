// Package tunnel is what an upgraded connection becomes: WebSocket, and the
// protocols a route lists in upgrade_protocols (any other Upgrade header is
// dropped by the proxy's limits stage, so no tunnel opens for a protocol
// nobody allowed).
//
// Rules:
//
//   - A tunnel opens only after the route's whole chain let the handshake
//     through: IP rules, authentication (401/403), rate limits (429) and
//     max_in_flight (503) are decided on the HTTP/1.1 Upgrade request, like
//     on any request, and a refused handshake never reaches the service.
//     The verified identity reaches the service in the handshake's headers.
//     Messages inside an open tunnel are not rate limited one by one: the
//     limit counts connections.
//   - The reverse proxy copies bytes both ways between the client's
//     connection and the service's. Every byte either way passes through the
//     service side, so a tunnel watches that side (Conn): no byte for the
//     idle timeout, or a lifetime over the maximum, cancels the exchange,
//     which closes the service's connection and with it the client's.
//   - The limits are the data plane's (--tunnel-idle-timeout,
//     --tunnel-max-lifetime) unless the route sets tighter ones
//     (tunnel_idle_timeout, tunnel_max_lifetime): a route can shorten them,
//     never lengthen them past what the operator allowed the node.
//   - Metrics count tunnels opened (by route, protocol and the client's
//     HTTP version), open now, and closed by reason: idle, lifetime, or
//     ended (either side closed).
//   - WebSocket over HTTP/2 (RFC 8441 extended CONNECT, h2.go) is bridged
//     to the same HTTP/1.1 handshake toward the service, so all of the
//     above holds for it too.
package tunnel

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// Limits bound one tunnel; zero fields mean none.
type Limits struct {
	Idle     time.Duration
	Lifetime time.Duration
}

// tighter returns l with each of o's fields that is set and shorter.
func (l Limits) tighter(o Limits) Limits {
	if o.Idle > 0 && (l.Idle <= 0 || o.Idle < l.Idle) {
		l.Idle = o.Idle
	}
	if o.Lifetime > 0 && (l.Lifetime <= 0 || o.Lifetime < l.Lifetime) {
		l.Lifetime = o.Lifetime
	}
	return l
}

// Route is the stage of a route that sets its own tunnel limits.
type Route struct {
	limits Limits
}

var _ stage.Stage = (*Route)(nil)

// Compile returns the route's stage, or nil when the route keeps the data
// plane's limits.
func Compile(r *config.Route) stage.Stage {
	l := Limits{Idle: r.TunnelIdleTimeout.Std(), Lifetime: r.TunnelMaxLifetime.Std()}
	if l == (Limits{}) {
		return nil
	}
	return &Route{limits: l}
}

type limitsKey struct{}

// Serve hands an upgrade request on with the route's limits in its context
// (where the proxy finds them when the service switches protocols);
// other requests go on untouched.
func (s *Route) Serve(req *stage.Request) {
	if _, ok := req.R.Header["Upgrade"]; ok {
		req.R = req.R.WithContext(context.WithValue(req.R.Context(), limitsKey{}, s.limits))
	}
	req.Next()
}

func (s *Route) Describe() any {
	return struct {
		Idle     string `json:"idle_timeout,omitempty"`
		Lifetime string `json:"max_lifetime,omitempty"`
	}{durString(s.limits.Idle), durString(s.limits.Lifetime)}
}

func durString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// Effective is the limits of a tunnel opened for the request whose context
// is ctx: the node's, tightened by the route's.
func Effective(ctx context.Context, node Limits) Limits {
	if l, ok := ctx.Value(limitsKey{}).(Limits); ok {
		return node.tighter(l)
	}
	return node
}

// Close reasons, the values of the closed metric's reason label.
const (
	ReasonIdle     = "idle"
	ReasonLifetime = "lifetime"
	ReasonEnded    = "ended"
)

// forever stands for "no limit" (and stays far from int64 nanoseconds'
// overflow).
const forever = 100 * 365 * 24 * time.Hour

// Conn is the service side of an upgraded connection.
type Conn struct {
	io.ReadWriteCloser
	last   atomic.Int64 // unix nanoseconds of the last byte either way
	idle   time.Duration
	end    int64 // unix nanoseconds of the end of its lifetime
	cancel func()
	m      *Metrics
	route  string
	opened time.Time
	reason atomic.Pointer[string] // why the tunnel was cut, nil while it was not

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

var _ io.ReadWriteCloser = (*Conn)(nil)

// Open watches rwc under lim; cancel ends the exchange (and so both
// connections). m may be nil. route, protocol and the client's HTTP
// version ("1.1" or "2") label the metrics.
func Open(rwc io.ReadWriteCloser, lim Limits, cancel func(), m *Metrics, route, protocol, httpVersion string) *Conn {
	now := time.Now()
	if lim.Idle <= 0 {
		lim.Idle = forever
	}
	if lim.Lifetime <= 0 {
		lim.Lifetime = forever
	}
	c := &Conn{ReadWriteCloser: rwc, idle: lim.Idle, end: now.Add(lim.Lifetime).UnixNano(), cancel: cancel,
		m: m, route: route, opened: now}
	c.last.Store(now.UnixNano())
	m.opened(route, protocol, httpVersion)
	c.mu.Lock()
	c.timer = time.AfterFunc(min(lim.Idle, lim.Lifetime), c.check)
	c.mu.Unlock()
	return c
}

// check cuts the tunnel when it has been idle or lived too long, and
// otherwise waits for the next moment either could happen.
func (c *Conn) check() {
	now := time.Now().UnixNano()
	next := min(c.last.Load()+int64(c.idle), c.end)
	if now >= next {
		r := ReasonIdle
		if next == c.end {
			r = ReasonLifetime
		}
		c.reason.CompareAndSwap(nil, &r)
		c.cancel()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		c.timer.Reset(time.Duration(next - now))
	}
}

func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Write(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *Conn) Close() error {
	c.Stop()
	return c.ReadWriteCloser.Close()
}

// Stop ends the watch and counts the tunnel closed, once; the exchange
// calls it when it is over.
func (c *Conn) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.stopped = true
	c.timer.Stop()
	reason := ReasonEnded
	if r := c.reason.Load(); r != nil {
		reason = *r
	}
	c.m.closed(c.route, reason, time.Since(c.opened))
}
