package tlsedge

import (
	"crypto/tls"
	"strings"

	"github.com/portico-gw/portico/shared/config"
)

// Client certificates (mTLS). A route with auth.client_cert needs the
// client's certificate, but the route is known only once the request is
// read; the handshake knows the server name. So the listener asks for a
// certificate (tls.RequestClientCert: asked, not required, not judged)
// on every server name a route taking certificates may serve: its hosts,
// exact or wildcard, and every name when such a route has no hosts. A
// client that sends no SNI is asked whenever any route takes
// certificates. The auth stage then checks the certificate against the
// route's CA (see package auth); a name no such route serves is not asked,
// so browsers there never see a certificate prompt.
//
// Handshakes that ask for a certificate issue no session tickets and
// resume none: a session resumed from a handshake that did not ask would
// carry no certificate, and one that did would outlive a revocation the
// next full handshake would meet at the auth stage anyway. Clients on
// those names pay a full handshake per connection (keep-alive and HTTP/2
// make that once per client in practice).

// clientCertNames are the server names to ask for a certificate.
type clientCertNames struct {
	any   bool            // a route without hosts takes certificates
	exact map[string]bool // "api.example.com"
	wild  []string        // suffixes of "*.example.com": ".example.com"
}

// applyClientCertNames computes the names of cfg's certificate routes.
func (c *Certificates) applyClientCertNames(cfg *config.Config) {
	n := &clientCertNames{exact: map[string]bool{}}
	some := false
	for _, r := range cfg.Routes {
		if r == nil || r.Auth == nil || r.Auth.ClientCert == nil {
			continue
		}
		some = true
		if len(r.Hosts) == 0 {
			n.any = true
		}
		for _, h := range r.Hosts {
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				n.wild = append(n.wild, suffix)
			} else {
				n.exact[h] = true
			}
		}
	}
	if !some {
		n = nil
	}
	c.clientCerts.Store(n)
}

// wantsClientCert reports whether a handshake for serverName asks for a
// client certificate.
func (c *Certificates) wantsClientCert(serverName string) bool {
	n := c.clientCerts.Load()
	if n == nil {
		return false
	}
	name := strings.TrimSuffix(strings.ToLower(serverName), ".")
	if n.any || name == "" || n.exact[name] {
		return true
	}
	for _, s := range n.wild {
		if strings.HasSuffix(name, s) && len(name) > len(s) {
			return true
		}
	}
	return false
}

// getConfigForClient is the listener's tls.Config.GetConfigForClient:
// ACME's TLS-ALPN-01 first (acme.go), then the client-certificate
// configuration on the names that need it.
func (c *Certificates) getConfigForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if cfg, err := c.configForClient(hello); cfg != nil || err != nil {
		return cfg, err
	}
	if !c.wantsClientCert(hello.ServerName) {
		return nil, nil
	}
	return c.mtls, nil
}

// mtlsConfig is the listener's configuration asking for a client
// certificate: Config's, so that the two cannot drift apart, plus the ask.
func (c *Certificates) mtlsConfig() *tls.Config {
	cfg := c.Config()
	cfg.GetConfigForClient = nil // this is one of its answers
	cfg.ClientAuth = tls.RequestClientCert
	cfg.SessionTicketsDisabled = true
	return cfg
}
