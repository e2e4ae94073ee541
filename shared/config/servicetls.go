package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Upstream TLS: how a data plane verifies a service's instances and, with
// a client certificate, proves itself to them (mTLS). The rules are written
// once, in parseServiceTLS: Validate (control plane, field paths) and
// ParseServiceTLS (the data plane's compile step, upstream.ClientTLS) both
// run it, so a data plane never builds a configuration the control plane
// would have refused, nor the other way round.
//
// There is deliberately no way to turn verification off: an instance whose
// certificate does not chain to ca (or the system roots without ca), or
// does not name server_name (or the host dialled), is refused. A
// self-signed instance is trusted by giving its certificate as ca.
//
// client_key is a secret handled like a certificate object's key: never
// returned by the admin API (GET, write answers, the export), never in the
// audit log or a log line or message, kept on a write that leaves it out
// when it matches client_cert (so an export round-trips), shipped to data
// planes in the snapshot only.

// Limits of a service's tls block.
const (
	MaxServiceCABytes = 256 << 10
	MaxServiceCACerts = 100
)

// ServiceTLS configures TLS toward a service's instances (https targets,
// or a Consul source with scheme https).
type ServiceTLS struct {
	// CA is a PEM bundle of the certificates trusted to sign the
	// instances' certificates. Empty: the system roots.
	CA string `json:"ca,omitempty"`
	// ServerName is the name the instances' certificates must carry (and
	// the SNI sent). Empty: the target's host (for Consul instances, their
	// address).
	ServerName string `json:"server_name,omitempty"`
	// ClientCert is the PEM chain (leaf first) presented to instances that
	// ask for a client certificate.
	ClientCert string `json:"client_cert,omitempty"`
	// ClientKey is ClientCert's private key: a secret (see above).
	ClientKey string `json:"client_key,omitempty"`
}

// ParsedServiceTLS is what a ServiceTLS resolves to.
type ParsedServiceTLS struct {
	// Roots is nil for the system roots.
	Roots      *x509.CertPool
	ServerName string
	// Client is nil without a client certificate.
	Client *tls.Certificate
}

// ErrServiceTLS: a service's tls block that does not make a TLS client
// configuration.
var ErrServiceTLS = errors.New("service tls")

// ParseServiceTLS checks t with Validate's rules and resolves it. A
// missing client key is an error here: the data plane needs it.
func ParseServiceTLS(t *ServiceTLS) (*ParsedServiceTLS, error) {
	out, fields := parseServiceTLS(t, true)
	if len(fields) > 0 {
		msgs := make([]string, len(fields))
		for i, f := range fields {
			msgs[i] = "tls." + f.Field + ": " + f.Message
		}
		return nil, fmt.Errorf("%w: %s", ErrServiceTLS, strings.Join(msgs, "; "))
	}
	return out, nil
}

// parseServiceTLS is the one set of rules. Field paths are relative to the
// tls block; messages never quote the PEM input (the key least of all).
func parseServiceTLS(t *ServiceTLS, requireKey bool) (*ParsedServiceTLS, []FieldError) {
	var fields []FieldError
	add := func(field, format string, args ...any) {
		fields = append(fields, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	out := &ParsedServiceTLS{ServerName: t.ServerName}
	if t.CA != "" {
		pool, msg := parseCABundle(t.CA)
		if msg != "" {
			add("ca", "%s", msg)
		}
		out.Roots = pool
	}
	if t.ServerName != "" {
		if msg := serverNameProblem(t.ServerName); msg != "" {
			add("server_name", "%s", msg)
		}
	}
	switch {
	case t.ClientCert == "" && t.ClientKey != "":
		add("client_key", "needs client_cert")
	case t.ClientCert != "":
		chain, msg := parseChain(t.ClientCert)
		if msg != "" {
			add("client_cert", "%s", msg)
		}
		switch {
		case t.ClientKey == "" && requireKey:
			add("client_key", "is required with client_cert (a PEM private key matching it)")
		case t.ClientKey != "":
			key, msg := parseKey(t.ClientKey, chain)
			if msg != "" {
				add("client_key", "%s", msg)
			} else if chain != nil {
				c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
				for _, x := range chain {
					c.Certificate = append(c.Certificate, x.Raw)
				}
				out.Client = c
			}
		}
	}
	if len(fields) > 0 {
		return nil, fields
	}
	return out, nil
}

// parseCABundle parses a PEM bundle of CERTIFICATE blocks.
func parseCABundle(caPEM string) (*x509.CertPool, string) {
	if len(caPEM) > MaxServiceCABytes {
		return nil, fmt.Sprintf("must be at most %d bytes", MaxServiceCABytes)
	}
	pool := x509.NewCertPool()
	n := 0
	rest := []byte(caPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Sprintf("PEM block %d is %q; only CERTIFICATE blocks belong here", n+1, b.Type)
		}
		x, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Sprintf("certificate %d does not parse: %s", n+1, parseReason(err))
		}
		pool.AddCert(x)
		if n++; n > MaxServiceCACerts {
			return nil, fmt.Sprintf("at most %d certificates", MaxServiceCACerts)
		}
	}
	switch {
	case n == 0:
		return nil, "is not PEM: expected -----BEGIN CERTIFICATE----- blocks"
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, fmt.Sprintf("unexpected data after certificate %d", n)
	}
	return pool, ""
}

// serverNameProblem: a DNS name (no wildcard) or an IP address.
func serverNameProblem(s string) string {
	if net.ParseIP(s) != nil {
		return ""
	}
	if strings.HasPrefix(s, "*.") {
		return "must be one name, not a wildcard"
	}
	if msg := HostProblem(s); msg != "" {
		return "must be a host name or an IP address (lower case, no port)"
	}
	return ""
}

// validateTLS checks the tls block of a service on its own: the key may be
// missing (a write keeps the stored one); Config.Validate and CheckService
// require it.
func (s *Service) validateTLS(l *errorList, p string, requireKey bool) {
	if s.TLS == nil {
		return
	}
	tp := join(p, "tls")
	if !s.usesHTTPS() {
		l.add(tp, "applies to https instances: give https:// targets (all of them) or consul.scheme https")
	}
	_, fields := parseServiceTLS(s.TLS, requireKey)
	for _, f := range fields {
		l.add(join(tp, f.Field), "%s", f.Message)
	}
}

// usesHTTPS reports whether every instance of the service is reached over
// TLS.
func (s *Service) usesHTTPS() bool {
	if s.Consul != nil {
		return s.Consul.Scheme == "https"
	}
	if len(s.Targets) == 0 {
		return false
	}
	for _, t := range s.Targets {
		u, err := url.Parse(t.URL)
		if err != nil || u.Scheme != "https" {
			return false
		}
	}
	return true
}

// Redacted returns a copy without the client key (nor a SOAP service's
// WS-Security password): what the admin API may show.
func (s Service) Redacted() Service {
	s.SOAP = s.SOAP.SOAPRedacted()
	if s.TLS != nil && s.TLS.ClientKey != "" {
		t := *s.TLS
		t.ClientKey = ""
		s.TLS = &t
	}
	return s
}

// ServiceKeepsKey is what a write without a client key keeps: the stored
// key, when it matches the new client certificate (and the stored SOAP
// WS-Security password, for the same username).
func ServiceKeepsKey(existing, obj *Service) {
	SOAPKeepsPassword(existing, obj)
	if obj.TLS == nil || obj.TLS.ClientCert == "" || obj.TLS.ClientKey != "" || existing == nil || existing.TLS == nil {
		return
	}
	if KeyMatches(obj.TLS.ClientCert, existing.TLS.ClientKey) {
		obj.TLS.ClientKey = existing.TLS.ClientKey
	}
}

// CheckService checks a service against what a write must complete: its
// client key is present (given or kept). Paths are relative to the object.
func (c *Config) CheckService(s *Service) error {
	var l errorList
	if s.TLS != nil && s.TLS.ClientCert != "" && s.TLS.ClientKey == "" {
		l.add("tls.client_key", "is required: no key was given and no stored key matches client_cert")
	}
	if s.SOAP != nil && s.SOAP.WSSecurity != nil && s.SOAP.WSSecurity.Password == "" {
		l.add("soap.ws_security.password", "is required: none was given and no stored one is kept for this username")
	}
	return l.err()
}
