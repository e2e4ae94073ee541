package extauthz

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/portico-gw/portico/shared/config"
)

// maxPooled bounds the connections a Client keeps: HTTP transports (one
// per TLS setting) and gRPC ClientConns (one per target and TLS setting).
// Past it, a stage gets connections of its own, closed when the stage is
// collected: a configuration naming thousands of decision services works,
// only without sharing.
const maxPooled = 1024

// Client is what every ext_authz stage of a data plane shares: pooled
// connections to decision services, metrics and the log. Tables come and
// go; the connections stay.
type Client struct {
	log     *slog.Logger
	metrics *metrics

	mu    sync.Mutex
	https map[string]*http.Client
	conns map[string]*grpc.ClientConn
}

// Options configure a Client.
type Options struct {
	// Registerer gets the ext_authz metrics; nil: not registered.
	Registerer prometheus.Registerer
	// Log reports failed checks; nil: slog.Default().
	Log *slog.Logger
}

// NewClient returns a Client.
func NewClient(o Options) *Client {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Client{log: o.Log, metrics: newMetrics(o.Registerer), https: map[string]*http.Client{}, conns: map[string]*grpc.ClientConn{}}
}

var (
	defaultOnce   sync.Once
	defaultClient *Client
)

// Default is the process's Client without registered metrics, for tables
// compiled without one (tests, tools).
func Default() *Client {
	defaultOnce.Do(func() { defaultClient = NewClient(Options{}) })
	return defaultClient
}

// tlsConfig resolves a tls block (ca, server_name) with the one parser of
// both planes; nil: the system roots.
func tlsConfig(t *config.ExtAuthzTLS) (*tls.Config, string, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if t == nil {
		return conf, "", nil
	}
	p, err := config.ParseServiceTLS(&config.ServiceTLS{CA: t.CA, ServerName: t.ServerName})
	if err != nil {
		return nil, "", err
	}
	conf.RootCAs, conf.ServerName = p.Roots, p.ServerName
	return conf, fmt.Sprintf("%x|%s", sha256.Sum256([]byte(t.CA)), t.ServerName), nil
}

// httpClient is the pooled HTTP client for a TLS setting. It never
// follows redirects (a redirect is the service's denial) and has no
// timeout of its own (each check's context bounds it).
func (cl *Client) httpClient(t *config.ExtAuthzTLS) (*http.Client, error) {
	conf, key, err := tlsConfig(t)
	if err != nil {
		return nil, err
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if c, ok := cl.https[key]; ok {
		return c, nil
	}
	tr := &http.Transport{
		Proxy:               nil, // a decision service is on the operator's network
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     conf,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if len(cl.https) < maxPooled {
		cl.https[key] = c
	} else {
		runtime.AddCleanup(c, func(tr *http.Transport) { tr.CloseIdleConnections() }, tr)
	}
	return c, nil
}
