package auth

import (
	"crypto/x509"
	"errors"
	"net/http"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// Client certificates (mTLS). The TLS listener asks for a certificate on
// the server names of routes that take one (tlsedge) but does not judge
// it: the route is not known during the handshake. The auth stage checks
// the presented chain against the route's own CA bundle and CRLs with
// config's VerifyClientCert (the control plane parses the same block with
// the same code): it must chain to the bundle, be within its validity
// dates, allow client authentication and not be revoked. A request that
// came over plain HTTP, or over TLS without a certificate, presented none.
//
// The certificate names a consumer through its identities (uri:, dns:,
// email: SANs and cn:, config.CertIdentities) and the consumers'
// cert_identities; a certificate naming two consumers authenticates
// neither (ErrCertAmbiguous); one naming none authenticates as no
// consumer, like a JWT naming no known consumer.

// MethodClientCert is the identity method of a client certificate.
const MethodClientCert = "client_cert"

// ErrCertAmbiguous: the certificate's identities name several consumers.
var ErrCertAmbiguous = errors.New("auth: client certificate names more than one consumer")

// compileClientCA parses a route's client_cert block. The snapshot was
// validated with the same parser, so an error is a bug: the route then
// trusts no certificate (fail closed).
func compileClientCA(a *config.ClientCertAuth) *config.ClientCA {
	ca, err := config.ParseClientCA(a)
	if err != nil {
		return &config.ClientCA{Roots: x509.NewCertPool()}
	}
	return ca
}

// indexCertIdentities adds a consumer's cert_identities to v; an identity
// two consumers claim (validation refuses that) names neither.
func (v *Verifier) indexCertIdentities(c *consumer, ids []string) {
	if len(ids) == 0 {
		return
	}
	id := &Identity{Consumer: c.name, Groups: c.groups, Method: MethodClientCert}
	for _, s := range ids {
		if _, dup := v.certIDs[s]; dup {
			v.certIDs[s] = nil
			continue
		}
		v.certIDs[s] = id
	}
}

// verifyClientCert checks the request's client certificate against ca.
// presented is false for plain HTTP and for TLS without a certificate.
func (v *Verifier) verifyClientCert(r *http.Request, ca *config.ClientCA, now time.Time) (id *Identity, presented bool, err error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, false, nil
	}
	chain, err := ca.VerifyClientCert(r.TLS.PeerCertificates, now)
	if err != nil {
		return nil, true, err
	}
	var found *Identity
	for _, s := range config.CertIdentities(chain[0]) {
		c, ok := v.certIDs[s]
		switch {
		case !ok:
		case c == nil || (found != nil && found.Consumer != c.Consumer):
			return nil, true, ErrCertAmbiguous
		default:
			found = c
		}
	}
	if found == nil {
		return &Identity{Method: MethodClientCert}, true, nil
	}
	return found, true, nil
}
