package grpcpass

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/upstream"
)

// Transports are the HTTP/2 transports of pass-through calls, shared by
// every route and table revision so that a configuration change never
// reconnects: one speaking h2c (HTTP/2 with prior knowledge, for http://
// instances) to every service, and one per service with TLS instances,
// made with that service's client configuration (upstream.ClientTLS, the
// one place it is built) asking for h2 by ALPN. net/http pools connections
// by scheme and address only, so two services on one address with
// different client certificates must not share a transport.
//
// HTTP/2 multiplexes a service instance's calls over one connection, as
// grpc-go's own clients do; pings find a connection that died silently.
type Transports struct {
	h2c *http.Transport

	mu sync.Mutex
	// tls holds each service's TLS transport with the configuration it
	// was made from: an Upstream keeps its *tls.Config while the service's
	// tls block is unchanged, so a new pointer means new settings.
	tls map[string]tlsTransport
}

type tlsTransport struct {
	cfg *tls.Config
	rt  *http.Transport
}

// NewTransports returns the transports of a data plane.
func NewTransports() *Transports {
	return &Transports{h2c: newTransport(nil), tls: map[string]tlsTransport{}}
}

// Shared returns the process's Transports, made on first use: the data
// plane has one set, as it has one HTTP transport.
var Shared = sync.OnceValue(NewTransports)

// For returns the transports of service u: h2c, and TLS when u has TLS
// instances (else nil). It runs when a route is compiled, never per call.
func (t *Transports) For(u *upstream.Upstream) (h2c, h2 *http.Transport) {
	cfg := u.TLSConfig()
	if cfg == nil {
		return t.h2c, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.tls[u.Name]; ok && e.cfg == cfg {
		return t.h2c, e.rt
	} else if ok {
		// Calls in flight keep their connections; idle ones close now.
		e.rt.CloseIdleConnections()
	}
	rt := newTransport(cfg)
	t.tls[u.Name] = tlsTransport{cfg: cfg, rt: rt}
	return t.h2c, rt
}

// Close closes idle connections (at shutdown).
func (t *Transports) Close() {
	t.h2c.CloseIdleConnections()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.tls {
		e.rt.CloseIdleConnections()
	}
}

// newTransport returns an HTTP/2-only transport: h2c without cfg, TLS with
// ALPN h2 with it.
func newTransport(cfg *tls.Config) *http.Transport {
	var p http.Protocols
	rt := &http.Transport{
		Proxy:              nil, // never through an environment proxy
		DialContext:        dial,
		DisableCompression: true, // gRPC compresses messages itself
		HTTP2: &http.HTTP2Config{
			// A connection that answers no ping within PingTimeout after
			// SendPingTimeout of silence is closed, failing its calls
			// rather than leaving them hanging on a dead peer.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
		MaxResponseHeaderBytes: 1 << 20,
	}
	if cfg == nil {
		p.SetUnencryptedHTTP2(true)
	} else {
		c := cfg.Clone()
		c.NextProtos = []string{"h2"}
		rt.TLSClientConfig = c
		rt.TLSHandshakeTimeout = 10 * time.Second
		p.SetHTTP2(true)
	}
	rt.Protocols = &p
	return rt
}

// connectTimeoutKey carries the service's connect timeout to dial: one
// transport serves every service, each with its own timeout.
type connectTimeoutKey struct{}

var dialer = &net.Dialer{KeepAlive: 30 * time.Second}

func dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	return dialer.DialContext(ctx, network, addr)
}
