package grpcjson

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// PoolOptions configure a Pool.
type PoolOptions struct {
	// TracerProvider and Propagator default to the globals, like the
	// proxy's: with a no-op provider the incoming trace context still
	// reaches the gRPC server.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// DialOptions are appended to the pool's own (transport credentials,
	// user agent); tests use them, operators should not need them.
	DialOptions []grpc.DialOption
}

// ErrPoolClosed is returned for calls made after Close.
var ErrPoolClosed = errors.New("grpcjson: pool closed")

// Pool keeps one *grpc.ClientConn per instance (scheme + host), created
// lazily and shared by every route and table revision, so a configuration
// change never reconnects. Each ClientConn dials exactly one address
// (passthrough resolver): balancing across instances is the upstream
// package's job, so that outlier ejection, least_request and hashing see
// gRPC calls like HTTP ones.
//
// A ClientConn that is not used goes idle after grpc-go's idle timeout
// (30 minutes) and then holds no connection, so instances that discovery
// removed cost a map entry until Close.
type Pool struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	extra  []grpc.DialOption

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

// NewPool returns an empty Pool.
func NewPool(o PoolOptions) *Pool {
	tp, prop := o.TracerProvider, o.Propagator
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	return &Pool{
		tracer: tp.Tracer("github.com/portico-gw/portico/dataplane/internal/grpcjson"),
		prop:   prop,
		extra:  o.DialOptions,
		conns:  map[string]*grpc.ClientConn{},
	}
}

// conn returns the ClientConn of one instance. grpc.NewClient does not
// connect, so holding the mutex across it is cheap; the first RPC dials.
// tlsConf is the service's TLS client configuration (upstream.ClientTLS,
// the one place it is built) for an https instance: connections made with
// it are the service's own, so the key names the configuration too (two
// services on one address may present different client certificates).
func (p *Pool) conn(scheme, host string, tlsConf *tls.Config) (*grpc.ClientConn, error) {
	key := scheme + "://" + host
	if scheme == "https" && tlsConf != nil {
		key += fmt.Sprintf("#%p", tlsConf)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrPoolClosed
	}
	if c := p.conns[key]; c != nil {
		return c, nil
	}
	var creds credentials.TransportCredentials
	switch scheme {
	case "http":
		// Plaintext HTTP/2 with prior knowledge (h2c).
		creds = insecure.NewCredentials()
	case "https":
		// The service's CA, server name and client certificate; without a
		// tls block, the system roots (upstream.ClientTLS). NewTLS clones
		// it and asks for h2.
		if tlsConf == nil {
			tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		creds = credentials.NewTLS(tlsConf)
	default:
		return nil, fmt.Errorf("grpcjson: instance %s: scheme %q is neither http nor https", key, scheme)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("portico"),
	}, p.extra...)
	c, err := grpc.NewClient("passthrough:///"+host, opts...)
	if err != nil {
		return nil, fmt.Errorf("grpcjson: client for %s: %w", key, err)
	}
	p.conns[key] = c
	return c, nil
}

// Close closes every connection; calls in flight fail with Canceled.
// Later calls fail with ErrPoolClosed.
func (p *Pool) Close() error {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.closed = nil, true
	p.mu.Unlock()
	var errs []error
	for k, c := range conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}
