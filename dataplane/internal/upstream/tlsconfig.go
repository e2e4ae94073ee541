package upstream

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/portico-gw/portico/shared/config"
)

// ClientTLS builds the TLS client configuration toward a service's
// instances: the one place it is built, for the HTTP attempt, the active
// health checks and gRPC alike. A service with no https instance has none
// (nil, nil). Verification is always on: roots are the service's tls.ca or
// the system roots, the name checked is tls.server_name or the host
// dialled. NextProtos is left empty: the HTTP attempt speaks HTTP/1.1, and
// a gRPC caller clones the configuration and asks for h2.
func ClientTLS(svc *config.Service) (*tls.Config, error) {
	if !usesTLS(svc) {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if svc.TLS == nil {
		return cfg, nil
	}
	p, err := config.ParseServiceTLS(svc.TLS)
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", svc.Name, err)
	}
	cfg.RootCAs, cfg.ServerName = p.Roots, p.ServerName
	if p.Client != nil {
		cfg.Certificates = []tls.Certificate{*p.Client}
	}
	return cfg, nil
}

// usesTLS reports whether any instance of svc is reached over TLS.
func usesTLS(svc *config.Service) bool {
	if svc.Consul != nil {
		return svc.Consul.Scheme == "https"
	}
	for _, t := range svc.Targets {
		if len(t.URL) > 8 && t.URL[:8] == "https://" {
			return true
		}
	}
	return false
}

// TLSConfig is the service's compiled client configuration (nil without
// https instances). Callers must not modify it; Clone it.
func (u *Upstream) TLSConfig() *tls.Config { return u.tls }

// tlsTransport is the HTTP transport of one service with TLS instances: a
// clone of the shared transport with the service's TLS configuration, so
// that its keep-alive pool holds only connections made with that
// configuration (net/http pools by scheme and address, not by TLS
// settings: two services on one address with different client
// certificates must not share connections). It is made on first use and
// handed on to the next Upstream of the service while the tls block is
// unchanged.
type tlsTransport struct {
	once sync.Once
	rt   *http.Transport
	// adopted: a successor Upstream uses it; retiring this one must not
	// close its idle connections.
	adopted atomic.Bool
}

func (t *tlsTransport) get(template *http.Transport, cfg *tls.Config) *http.Transport {
	t.once.Do(func() {
		if template == nil {
			template = &http.Transport{Proxy: nil, DisableCompression: true}
		}
		t.rt = template.Clone()
		t.rt.TLSClientConfig = cfg
		// HTTP/1.1 to instances, as on the shared transport (see
		// proxy.NewTransport).
		t.rt.ForceAttemptHTTP2 = false
	})
	return t.rt
}

func (t *tlsTransport) close() {
	t.once.Do(func() {}) // no transport made after this
	if t.rt != nil && !t.adopted.Load() {
		t.rt.CloseIdleConnections()
	}
}

// httpTransport unwraps the shared transport to the *http.Transport a
// service's TLS transport is cloned from.
func httpTransport(rt http.RoundTripper) *http.Transport {
	switch t := rt.(type) {
	case *http.Transport:
		return t
	case *H1:
		return httpTransport(t.fallback)
	}
	return nil
}
