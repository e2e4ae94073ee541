package config

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Client certificates (mTLS): a route's auth.client_cert names the CA
// bundle (and optionally CRLs) its clients' certificates must chain to,
// and consumers list the certificate identities they answer to
// (cert_identities). ParseClientCA is the one parser of a client_cert
// block: the control plane validates with it and the data plane compiles
// with it; VerifyClientCert is the one check of a presented chain.

// ClientCertAuth is a route's client-certificate requirement.
type ClientCertAuth struct {
	// CA is a PEM bundle of CA certificates (roots or intermediates) that
	// client certificates must chain to.
	CA string `json:"ca"`
	// CRLs are PEM certificate revocation lists, each signed by a CA of the
	// bundle; a certificate they list is refused.
	CRLs []string `json:"crls,omitempty"`
}

// Limits of a client_cert block.
const (
	MaxClientCABytes  = 256 << 10
	MaxClientCAs      = 100
	MaxClientCRLs     = 16
	MaxClientCRLBytes = 4 << 20
	MaxCertIdentities = 32
)

// ClientCA is a parsed client_cert block.
type ClientCA struct {
	Roots *x509.CertPool
	// revoked maps an issuing CA (its subject and public key) to the
	// serial numbers its CRLs revoke.
	revoked map[string]map[string]bool
}

func caKey(c *x509.Certificate) string {
	return string(c.RawSubject) + "\x00" + string(c.RawSubjectPublicKeyInfo)
}

// ParseClientCA parses and checks a client_cert block. Errors carry field
// paths relative to the block (ca, crls[i]).
func ParseClientCA(a *ClientCertAuth) (*ClientCA, error) {
	var l errorList
	out := parseClientCA(&l, "", a)
	if err := l.err(); err != nil {
		return nil, err
	}
	return out, nil
}

func parseClientCA(l *errorList, p string, a *ClientCertAuth) *ClientCA {
	out := &ClientCA{Roots: x509.NewCertPool(), revoked: map[string]map[string]bool{}}
	var cas []*x509.Certificate
	switch {
	case strings.TrimSpace(a.CA) == "":
		l.add(join(p, "ca"), "is required: a PEM bundle of the CA certificates client certificates must chain to")
	case len(a.CA) > MaxClientCABytes:
		l.add(join(p, "ca"), "is larger than %d bytes", MaxClientCABytes)
	default:
		rest := []byte(a.CA)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				if len(bytes.TrimSpace(rest)) > 0 {
					l.add(join(p, "ca"), "holds something that is not a PEM block")
				}
				break
			}
			if b.Type != "CERTIFICATE" {
				l.add(join(p, "ca"), "holds a %q PEM block; only CERTIFICATE blocks belong in a CA bundle", b.Type)
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				l.add(join(p, "ca"), "certificate %d: %v", len(cas)+1, err)
				continue
			}
			if !c.BasicConstraintsValid || !c.IsCA {
				l.add(join(p, "ca"), "certificate %d (%s) is not a CA certificate (basicConstraints CA:TRUE)", len(cas)+1, c.Subject)
				continue
			}
			cas = append(cas, c)
			out.Roots.AddCert(c)
		}
		if len(cas) == 0 && !l.has(join(p, "ca")) {
			l.add(join(p, "ca"), "holds no certificate")
		}
		if len(cas) > MaxClientCAs {
			l.add(join(p, "ca"), "holds %d certificates, more than %d", len(cas), MaxClientCAs)
		}
	}
	if len(a.CRLs) > MaxClientCRLs {
		l.add(join(p, "crls"), "at most %d CRLs", MaxClientCRLs)
	}
	for i, raw := range a.CRLs {
		fp := join(p, fmt.Sprintf("crls[%d]", i))
		if len(raw) > MaxClientCRLBytes {
			l.add(fp, "is larger than %d bytes", MaxClientCRLBytes)
			continue
		}
		b, rest := pem.Decode([]byte(raw))
		if b == nil || b.Type != "X509 CRL" || len(bytes.TrimSpace(rest)) > 0 {
			l.add(fp, "must be one PEM X509 CRL block")
			continue
		}
		crl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			l.add(fp, "%v", err)
			continue
		}
		var issuer *x509.Certificate
		for _, c := range cas {
			if bytes.Equal(c.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(c) == nil {
				issuer = c
				break
			}
		}
		if issuer == nil {
			if len(cas) > 0 {
				l.add(fp, "is not signed by a CA of the bundle (issuer %s)", crl.Issuer)
			}
			continue
		}
		set := out.revoked[caKey(issuer)]
		if set == nil {
			set = map[string]bool{}
			out.revoked[caKey(issuer)] = set
		}
		for _, e := range crl.RevokedCertificateEntries {
			set[serialKey(e.SerialNumber)] = true
		}
	}
	return out
}

func serialKey(n *big.Int) string { return string(n.Bytes()) + fmt.Sprint(n.Sign()) }

func (l *errorList) has(field string) bool {
	for _, f := range l.invalid {
		if f.Field == field {
			return true
		}
	}
	return false
}

// Reasons VerifyClientCert refuses a chain with (errors.Is).
var (
	ErrCertMissing   = errors.New("no client certificate")
	ErrCertExpired   = errors.New("client certificate expired or not yet valid")
	ErrCertUntrusted = errors.New("client certificate not signed by the route's CA")
	ErrCertUsage     = errors.New("client certificate not for client authentication")
	ErrCertRevoked   = errors.New("client certificate revoked")
)

// VerifyClientCert checks a presented chain (leaf first, as the TLS
// handshake gives it) at now: it must chain to the CA bundle, be valid
// then (every certificate of the chain), allow client authentication
// (extKeyUsage clientAuth, or none), and no certificate of the chain may
// be revoked by a CRL of its issuer. It returns the verified chain.
func (ca *ClientCA) VerifyClientCert(peer []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	if len(peer) == 0 {
		return nil, ErrCertMissing
	}
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	chains, err := peer[0].Verify(x509.VerifyOptions{Roots: ca.Roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		var inv x509.CertificateInvalidError
		switch {
		case errors.As(err, &inv) && inv.Reason == x509.Expired:
			return nil, fmt.Errorf("%w: %v", ErrCertExpired, err)
		case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
			return nil, fmt.Errorf("%w: %v", ErrCertUsage, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrCertUntrusted, err)
	}
	// Revocation: every chain Verify found must be clean, so that a
	// revoked intermediate is not bypassed through another path.
	for _, chain := range chains {
		for i := 0; i+1 < len(chain); i++ {
			if ca.revoked[caKey(chain[i+1])][serialKey(chain[i].SerialNumber)] {
				return nil, fmt.Errorf("%w: serial %s by %s", ErrCertRevoked, chain[i].SerialNumber, chain[i+1].Subject)
			}
		}
	}
	return chains[0], nil
}

// CertIdentities lists what a client certificate may be known by, in the
// form consumers' cert_identities use: uri:, dns:, email: for its SANs
// and cn: for its subject's common name.
func CertIdentities(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		out = append(out, "uri:"+u.String())
	}
	for _, d := range c.DNSNames {
		out = append(out, "dns:"+strings.ToLower(d))
	}
	for _, e := range c.EmailAddresses {
		out = append(out, "email:"+e)
	}
	if c.Subject.CommonName != "" {
		out = append(out, "cn:"+c.Subject.CommonName)
	}
	return out
}

// CertIdentityProblem checks one of a consumer's cert_identities.
func CertIdentityProblem(id string) string {
	kind, v, ok := strings.Cut(id, ":")
	switch {
	case !ok || v == "" || len(id) > 1024:
		return "must be cn:<common name>, dns:<name>, email:<address> or uri:<URI>"
	case kind != "cn" && kind != "dns" && kind != "email" && kind != "uri":
		return "must start with cn:, dns:, email: or uri:"
	case kind == "dns" && v != strings.ToLower(v):
		return "DNS names are written in lower case"
	case strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return "must not contain control characters"
	}
	return ""
}

func (c *Consumer) validateCertIdentities(l *errorList, p string) {
	if len(c.CertIdentities) > MaxCertIdentities {
		l.add(join(p, "cert_identities"), "at most %d identities", MaxCertIdentities)
	}
	for i, id := range c.CertIdentities {
		if msg := CertIdentityProblem(id); msg != "" {
			l.add(join(p, fmt.Sprintf("cert_identities[%d]", i)), "%s", msg)
		}
	}
}

// checkCertIdentities: an identity names one consumer.
func checkCertIdentities(l *errorList, p string, cs *Consumer, owners map[string]string) {
	for i, id := range cs.CertIdentities {
		if owner, dup := owners[id]; dup {
			l.conflictf(join(p, fmt.Sprintf("cert_identities[%d]", i)), "identity %q already belongs to consumer %q", id, owner)
			continue
		}
		owners[id] = cs.Name
	}
}
