package config

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Certificates: the rules of the certificates kind, written once. The
// control plane validates with them (Validate, CheckCertificate, through
// Config.Validate and ValidateObjects) and the data plane builds what its TLS
// listener serves with ParseCertificate, the same parser; a property test in
// the data plane (tlsedge FuzzCompileAgreesWithValidate) holds the two
// together.
//
// Expiry is a write-time rule (CertificateExpiry), not part of Validate: a
// stored certificate that expires must not make every later write of the
// configuration fail, nor a data plane drop it (clients refusing an expired
// certificate is what they should see; the admin API shows days_left).

// Limits of a certificate object.
const (
	MaxCertChainBytes = 64 << 10
	MaxCertChainLen   = 10
	MaxCertKeyBytes   = 16 << 10
	MaxCertSNIs       = 100
	MinRSAKeyBits     = 2048
	// CertExpiryWarning: a certificate written with less time left than
	// this is accepted with a warning.
	CertExpiryWarning = 30 * 24 * time.Hour
)

// Certificate is a TLS certificate with its private key, served by the data
// planes' TLS listener to clients asking (SNI) for one of SNIs.
type Certificate struct {
	Name string `json:"name"`
	// Cert is the PEM chain: the leaf first, then each issuer in order
	// (the root may be left out).
	Cert string `json:"cert"`
	// Key is the leaf's PEM private key (PKCS#1, PKCS#8 or SEC 1). It is a
	// secret: the admin API never returns it (GET, the export), and the
	// audit log and logs never carry it. A write that leaves it out keeps
	// the stored key when that key matches the certificate, so an export
	// (which has no keys) can be imported back.
	Key string `json:"key,omitempty"`
	// SNIs are the server names the certificate is served for: host names
	// or one-label wildcards ("*.example.com"). Each name belongs to one
	// certificate.
	SNIs []string `json:"snis"`
	// ACME, when set, has the control plane obtain and renew the
	// certificate (acme.go): cert and key are then its own, never the
	// operator's.
	ACME *CertificateACME `json:"acme,omitempty"`
	// Status is computed by the admin API on output; it is ignored on input
	// (like Meta), so GET output can be PUT back.
	Status *CertificateStatus `json:"status,omitempty"`
	Meta
}

// CertificateStatus describes a certificate's leaf for operators.
type CertificateStatus struct {
	Subject  string    `json:"subject"`
	SANs     []string  `json:"sans"`
	Issuer   string    `json:"issuer"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	// DaysLeft is negative once the certificate has expired.
	DaysLeft int `json:"days_left"`
	// SPKISHA256 is the SHA-256 of the leaf's public key (hex): it names
	// the key pair without showing the private key.
	SPKISHA256 string   `json:"spki_sha256"`
	Warnings   []string `json:"warnings,omitempty"`
	// ServedBy lists the data planes that applied the certificate's
	// revision without rejecting it.
	ServedBy []string `json:"served_by,omitempty"`
}

var _ Object = (*Certificate)(nil)

func (c *Certificate) ObjectName() string { return c.Name }

// Normalize lower-cases the SNI names and drops the output-only status.
func (c *Certificate) Normalize() {
	for i, s := range c.SNIs {
		c.SNIs[i] = strings.ToLower(strings.TrimSpace(s))
	}
	c.Status = nil
}

// Validate checks the certificate on its own. The key may be missing here
// (a write keeps the stored one); Config.Validate and CheckCertificate
// require it.
func (c *Certificate) Validate() error {
	var l errorList
	c.validate(&l, "", false)
	return l.err()
}

// Redacted returns a copy without the private key (nor an ACME
// certificate's challenges and EAB MAC key): what the admin API may show.
func (c Certificate) Redacted() Certificate {
	c.Key = ""
	if c.ACME != nil {
		a := *c.ACME
		a.Challenges = nil
		if a.EAB != nil {
			a.EAB = &ACMEEAB{KID: a.EAB.KID}
		}
		c.ACME = &a
	}
	return c
}

func (c *Certificate) validate(l *errorList, p string, requireKey bool) {
	if msg := nameProblem(c.Name); msg != "" {
		l.add(join(p, "name"), "%s", msg)
	}
	if c.ACME != nil {
		c.ACME.validate(l, join(p, "acme"), requireKey)
	}
	// An ACME certificate has no cert until the first one is issued.
	pending := c.ACME != nil && c.Cert == ""
	var chain []*x509.Certificate
	if !pending {
		var msg string
		if chain, msg = parseChain(c.Cert); msg != "" {
			l.add(join(p, "cert"), "%s", msg)
		}
	}
	switch {
	case pending:
		if c.Key != "" {
			l.add(join(p, "key"), "must be empty until the ACME certificate is issued")
		}
	case c.Key == "" && requireKey:
		l.add(join(p, "key"), "is required (a PEM private key matching the certificate)")
	case c.Key != "":
		if _, msg := parseKey(c.Key, chain); msg != "" {
			l.add(join(p, "key"), "%s", msg)
		}
	}
	if len(c.SNIs) == 0 {
		l.add(join(p, "snis"), "at least one server name is required")
	}
	if len(c.SNIs) > MaxCertSNIs {
		l.add(join(p, "snis"), "at most %d names", MaxCertSNIs)
	}
	seen := make(map[string]int, len(c.SNIs))
	for i, s := range c.SNIs {
		f := join(p, fmt.Sprintf("snis[%d]", i))
		switch msg := SNIProblem(s); {
		case msg != "":
			l.add(f, "%s", msg)
		case seen[s] > 0:
			l.add(f, "duplicate of snis[%d]", seen[s]-1)
		case c.ACME != nil && strings.HasPrefix(s, "*."):
			l.add(f, "%q: an ACME certificate cannot have a wildcard (HTTP-01 and TLS-ALPN-01 cannot validate one)", s)
		case chain != nil && !covers(chain[0], s):
			l.add(f, "the certificate does not cover %q (its names: %s)", s, strings.Join(leafNames(chain[0]), ", "))
		}
		seen[s] = i + 1
	}
}

// SNIProblem says what is wrong with a server name a certificate claims, or
// "" if it is a host name or a one-label wildcard ("*.example.com").
func SNIProblem(s string) string {
	if strings.Count(s, "*") > 1 || strings.Contains(s, "*") && !strings.HasPrefix(s, "*.") {
		return fmt.Sprintf("%q: a wildcard must be one whole label on the left, as in *.example.com", s)
	}
	if strings.HasPrefix(s, "*.") && !strings.Contains(s[2:], ".") {
		return fmt.Sprintf("%q: a wildcard needs at least two labels after it (*.example.com)", s)
	}
	if msg := HostProblem(s); msg != "" {
		return msg
	}
	return ""
}

// covers reports whether the leaf is valid for the name: exact SANs, and a
// wildcard SNI only with the same wildcard SAN.
func covers(leaf *x509.Certificate, sni string) bool {
	if strings.HasPrefix(sni, "*.") {
		for _, san := range leaf.DNSNames {
			if strings.EqualFold(san, sni) {
				return true
			}
		}
		return false
	}
	return leaf.VerifyHostname(sni) == nil
}

func leafNames(leaf *x509.Certificate) []string {
	if len(leaf.DNSNames) == 0 {
		return []string{"no DNS names"}
	}
	return leaf.DNSNames
}

// parseChain parses the PEM chain and checks that each certificate is
// signed by the next one. Messages never quote the input.
func parseChain(certPEM string) ([]*x509.Certificate, string) {
	switch {
	case certPEM == "":
		return nil, "is required (a PEM certificate chain, leaf first)"
	case len(certPEM) > MaxCertChainBytes:
		return nil, fmt.Sprintf("must be at most %d bytes", MaxCertChainBytes)
	}
	var chain []*x509.Certificate
	rest := []byte(certPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Sprintf("PEM block %d is %q; only CERTIFICATE blocks belong here (the key goes in key)", len(chain)+1, b.Type)
		}
		x, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Sprintf("certificate %d does not parse: %s", len(chain)+1, parseReason(err))
		}
		chain = append(chain, x)
		if len(chain) > MaxCertChainLen {
			return nil, fmt.Sprintf("at most %d certificates", MaxCertChainLen)
		}
	}
	switch {
	case len(chain) == 0:
		return nil, "is not PEM: expected -----BEGIN CERTIFICATE----- blocks"
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, fmt.Sprintf("unexpected data after certificate %d", len(chain))
	}
	for i := 0; i+1 < len(chain); i++ {
		if chain[i].CheckSignatureFrom(chain[i+1]) != nil {
			return nil, fmt.Sprintf("certificate %d is not signed by certificate %d: the chain must be in order, leaf first, then each issuer", i+1, i+2)
		}
	}
	return chain, ""
}

// parseReason keeps x509's reason without the bytes it may quote.
func parseReason(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// parseKey parses the private key and checks it against the leaf (when
// the chain parsed). Messages never carry key material.
func parseKey(keyPEM string, chain []*x509.Certificate) (crypto.Signer, string) {
	if len(keyPEM) > MaxCertKeyBytes {
		return nil, fmt.Sprintf("must be at most %d bytes", MaxCertKeyBytes)
	}
	b, rest := pem.Decode([]byte(keyPEM))
	if b == nil {
		return nil, "is not PEM: expected a -----BEGIN PRIVATE KEY----- block"
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, "one PEM private key block only"
	}
	var (
		key any
		err error
	)
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Sprintf("PEM block is %q; expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY", b.Type)
	}
	if err != nil {
		return nil, "the private key does not parse"
	}
	signer, msg := keyProblem(key)
	if msg != "" {
		return nil, msg
	}
	if len(chain) > 0 && !publicKeysEqual(signer.Public(), chain[0].PublicKey) {
		return nil, "does not match the certificate (the first certificate in cert is the leaf)"
	}
	return signer, ""
}

func keyProblem(key any) (crypto.Signer, string) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < MinRSAKeyBits {
			return nil, fmt.Sprintf("RSA keys must have at least %d bits", MinRSAKeyBits)
		}
		return k, ""
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, ""
		}
		return nil, "ECDSA keys must be on P-256, P-384 or P-521"
	case ed25519.PrivateKey:
		return k, ""
	}
	return nil, "unsupported key type (RSA, ECDSA or Ed25519)"
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// ErrCertificate: a certificate object that does not make a TLS
// certificate.
var ErrCertificate = errors.New("certificate")

// ParseCertificate builds what a TLS listener serves from a certificate
// object, with the checks of Validate: the data plane's compile step.
func ParseCertificate(c *Certificate) (*tls.Certificate, error) {
	chain, msg := parseChain(c.Cert)
	if msg != "" {
		return nil, fmt.Errorf("%w %q: cert: %s", ErrCertificate, c.Name, msg)
	}
	if c.Key == "" {
		return nil, fmt.Errorf("%w %q: key: is required", ErrCertificate, c.Name)
	}
	key, msg := parseKey(c.Key, chain)
	if msg != "" {
		return nil, fmt.Errorf("%w %q: key: %s", ErrCertificate, c.Name, msg)
	}
	out := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		out.Certificate = append(out.Certificate, x.Raw)
	}
	return out, nil
}

// CertificateExpiry is the write-time rule on a certificate's validity
// period: an expired (or not yet valid) certificate is refused; one with
// less than CertExpiryWarning left is accepted with the warning returned.
func CertificateExpiry(c *Certificate, now time.Time) (warning string, err error) {
	if c.ACME != nil {
		// The control plane renews it; its state says when.
		return "", nil
	}
	chain, msg := parseChain(c.Cert)
	if msg != "" {
		return "", Invalid("cert", "%s", msg)
	}
	leaf := chain[0]
	switch left := leaf.NotAfter.Sub(now); {
	case left <= 0:
		return "", Invalid("cert", "the certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return "", Invalid("cert", "the certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	case left < CertExpiryWarning:
		return fmt.Sprintf("the certificate expires in %d days (%s): renew it soon", daysLeft(leaf.NotAfter, now), leaf.NotAfter.UTC().Format(time.RFC3339)), nil
	}
	return "", nil
}

func daysLeft(notAfter, now time.Time) int {
	return int(notAfter.Sub(now).Truncate(24*time.Hour) / (24 * time.Hour))
}

// Describe computes the status the admin API shows for a certificate.
// It returns nil when the chain does not parse (it never does once stored).
func (c *Certificate) Describe(now time.Time) *CertificateStatus {
	chain, msg := parseChain(c.Cert)
	if msg != "" {
		return nil
	}
	leaf := chain[0]
	st := &CertificateStatus{
		Subject:  leaf.Subject.String(),
		SANs:     append(slices.Clone(leaf.DNSNames), ipStrings(leaf)...),
		Issuer:   leaf.Issuer.String(),
		Serial:   leaf.SerialNumber.Text(16),
		NotAfter: leaf.NotAfter.UTC(),
		DaysLeft: daysLeft(leaf.NotAfter, now),
	}
	if st.SANs == nil {
		st.SANs = []string{}
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	st.SPKISHA256 = hex.EncodeToString(sum[:])
	if w, err := CertificateExpiry(c, now); err != nil {
		st.Warnings = append(st.Warnings, FieldErrors(err)[0].Message)
	} else if w != "" {
		st.Warnings = append(st.Warnings, w)
	}
	return st
}

func ipStrings(leaf *x509.Certificate) []string {
	var out []string
	for _, ip := range leaf.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// KeyMatches reports whether keyPEM is a valid private key for the leaf
// of certPEM: whether a write without a key may keep the stored one.
func KeyMatches(certPEM, keyPEM string) bool {
	chain, msg := parseChain(certPEM)
	if msg != "" || keyPEM == "" {
		return false
	}
	_, msg = parseKey(keyPEM, chain)
	return msg == ""
}

// CheckCertificate checks a certificate against the rest of the
// configuration: its key is present (given or kept) and no other
// certificate claims one of its names. Paths are relative to the object.
func (c *Config) CheckCertificate(cert *Certificate) error {
	var l errorList
	if cert.Key == "" && cert.ACME == nil {
		l.add("key", "is required: no key was given and no stored key matches this certificate")
	}
	if cert.ACME != nil && cert.ACME.EAB != nil {
		// A write may leave the MAC key out to keep the stored one: by
		// now it is kept, or missing.
		cert.ACME.EAB.validate(&l, "acme.eab", true)
	}
	owners := make(map[string]string)
	for i := range c.Certificates {
		if o := &c.Certificates[i]; o.Name != cert.Name {
			for _, s := range o.SNIs {
				owners[s] = o.Name
			}
		}
	}
	for i, s := range cert.SNIs {
		if owner, ok := owners[s]; ok {
			checkSNIOwner(&l, fmt.Sprintf("snis[%d]", i), s, owner)
		}
	}
	return l.err()
}

// checkSNIOwner: one certificate per server name, so SNI selects exactly
// one.
func checkSNIOwner(l *errorList, field, sni, owner string) {
	l.conflictf(field, "%q is already served by certificate %q: one certificate per server name", sni, owner)
}

// CertificateKeepsKey is what a write without a key keeps: the stored
// key, when it matches the new certificate.
//
// An ACME certificate keeps what the control plane maintains instead
// (ACMEKeep).
func CertificateKeepsKey(existing, obj *Certificate) {
	if obj.ACME != nil {
		ACMEKeep(existing, obj)
		return
	}
	if obj.Key == "" && existing != nil && KeyMatches(obj.Cert, existing.Key) {
		obj.Key = existing.Key
	}
}

// Certificate returns the named certificate and whether it exists.
func (c *Config) Certificate(name string) (*Certificate, bool) {
	i, ok := slices.BinarySearchFunc(c.Certificates, name, func(x Certificate, n string) int { return strings.Compare(x.Name, n) })
	if !ok {
		return nil, false
	}
	return &c.Certificates[i], true
}
