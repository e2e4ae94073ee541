package config

import (
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Automatic certificates (ACME, RFC 8555): the rules of a certificate
// object's acme section, written once.
//
// A certificate with acme carries no PEM from the operator: the control
// plane (one actor for the cluster) orders it from acme.directory for the
// object's snis, answers the server's HTTP-01 or TLS-ALPN-01 challenges
// through every data plane (the challenges travel in the snapshot, in
// acme.challenges), stores the issued chain and key in the object's cert
// and key, and renews it ahead of expiry. What the control plane
// maintains (cert, key, acme.state, acme.challenges) is never taken from a
// write: ACMEKeep copies it from the stored object, so GET output can be
// PUT back and an export imported.
//
// Until the first certificate is issued the object has no cert: it is
// valid, and data planes serve nothing for its names yet (they do answer
// its challenges).

// Limits of the acme section.
const (
	MaxACMEDirectoryBytes = 2048
	MaxACMEKeyAuthBytes   = 512
	MaxACMETokenBytes     = 256
)

// ACME challenge types a certificate may be validated with: both are
// answered by the data planes themselves (DNS-01 would need a DNS
// provider's credentials).
const (
	ACMEHTTP01    = "http-01"
	ACMETLSALPN01 = "tls-alpn-01"
)

// ACME status values (CertificateACMEState.Status).
const (
	// ACMEPending: no certificate issued yet; the next attempt is due.
	ACMEPending = "pending"
	// ACMEValid: the stored certificate was issued for the current
	// directory and names, and is renewed at RenewAt.
	ACMEValid = "valid"
	// ACMEFailed: the last attempt failed (LastError); an earlier
	// certificate, if any, is still served until it expires.
	ACMEFailed = "failed"
)

// CertificateACME asks the control plane to obtain and renew the
// certificate from an ACME server.
type CertificateACME struct {
	// Directory is the ACME server's directory URL (https).
	Directory string `json:"directory"`
	// Email is the account's contact address (optional).
	Email string `json:"email,omitempty"`
	// CA is a PEM bundle of the certificates that sign the directory's
	// HTTPS certificate, for a private ACME server; empty: the system
	// roots.
	CA string `json:"ca,omitempty"`
	// Challenge restricts the challenge type: "http-01" or
	// "tls-alpn-01"; empty: whichever of the two the server offers.
	Challenge string `json:"challenge,omitempty"`
	// State is maintained by the control plane (ignored on input).
	State *CertificateACMEState `json:"state,omitempty"`
	// Challenges are the challenges being answered, maintained by the
	// control plane for the data planes (ignored on input, never shown
	// by the admin API).
	Challenges []ACMEChallenge `json:"challenges,omitempty"`
}

// CertificateACMEState is where the ACME client stands for a certificate,
// shown by GET /v1/certificates/{name}.
type CertificateACMEState struct {
	Status string `json:"status"`
	// NotAfter is the issued certificate's expiry (none before the first).
	NotAfter *time.Time `json:"not_after,omitempty"`
	// RenewAt is when the certificate is renewed: at 2/3 of its lifetime.
	RenewAt *time.Time `json:"renew_at,omitempty"`
	// LastAttempt, LastError: the last order and, if it failed, why.
	LastAttempt *time.Time `json:"last_attempt,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	// Failures counts the attempts failed in a row (0 after a success).
	Failures int `json:"failures,omitempty"`
	// NextAttempt is when the control plane orders again: RenewAt, or
	// after a failure the backoff.
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	// IssuedFor identifies the directory and names the stored
	// certificate was obtained for (ACMEIssuedFor); a change orders a new
	// one at once.
	IssuedFor string `json:"issued_for,omitempty"`
}

// ACMEChallenge is one challenge the data planes answer.
type ACMEChallenge struct {
	// Type is "http-01" or "tls-alpn-01".
	Type string `json:"type"`
	// Domain is the name being validated.
	Domain string `json:"domain"`
	// Token names the HTTP-01 resource
	// (/.well-known/acme-challenge/<token>).
	Token string `json:"token"`
	// KeyAuth is the key authorization: the body of the HTTP-01 answer,
	// hashed into the TLS-ALPN-01 certificate.
	KeyAuth string `json:"key_auth"`
}

// ACMEIssuedFor names what a certificate was ordered for: the directory and
// the sorted names.
func ACMEIssuedFor(directory string, snis []string) string {
	names := slices.Clone(snis)
	slices.Sort(names)
	return directory + " " + strings.Join(names, ",")
}

func (a *CertificateACME) validate(l *errorList, p string) {
	switch u, err := url.Parse(a.Directory); {
	case a.Directory == "":
		l.add(join(p, "directory"), "is required (the ACME server's directory URL)")
	case len(a.Directory) > MaxACMEDirectoryBytes:
		l.add(join(p, "directory"), "must be at most %d bytes", MaxACMEDirectoryBytes)
	case err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "":
		l.add(join(p, "directory"), "must be an https:// URL without user info or fragment (RFC 8555 requires HTTPS)")
	}
	if a.Email != "" {
		if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email || addr.Name != "" || len(a.Email) > 254 {
			l.add(join(p, "email"), "must be a plain e-mail address (ops@example.com)")
		}
	}
	if a.CA != "" {
		if _, msg := parseCABundle(a.CA); msg != "" {
			l.add(join(p, "ca"), "%s", msg)
		}
	}
	switch a.Challenge {
	case "", ACMEHTTP01, ACMETLSALPN01:
	default:
		l.add(join(p, "challenge"), "must be %q or %q (or empty: either)", ACMEHTTP01, ACMETLSALPN01)
	}
	if len(a.Challenges) > 2*MaxCertSNIs {
		l.add(join(p, "challenges"), "at most %d", 2*MaxCertSNIs)
	}
	for i, ch := range a.Challenges {
		f := join(p, fmt.Sprintf("challenges[%d]", i))
		if ch.Type != ACMEHTTP01 && ch.Type != ACMETLSALPN01 {
			l.add(join(f, "type"), "must be %q or %q", ACMEHTTP01, ACMETLSALPN01)
		}
		if HostProblem(ch.Domain) != "" || strings.HasPrefix(ch.Domain, "*.") {
			l.add(join(f, "domain"), "must be a host name")
		}
		if ch.Token == "" || len(ch.Token) > MaxACMETokenBytes || !base64URL(ch.Token) {
			l.add(join(f, "token"), "must be 1 to %d base64url characters", MaxACMETokenBytes)
		}
		if ch.KeyAuth == "" || len(ch.KeyAuth) > MaxACMEKeyAuthBytes || !strings.HasPrefix(ch.KeyAuth, ch.Token+".") || !base64URL(ch.KeyAuth[len(ch.Token)+1:]) {
			l.add(join(f, "key_auth"), "must be <token>.<account key thumbprint> (base64url), at most %d bytes", MaxACMEKeyAuthBytes)
		}
	}
}

func base64URL(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ACMEKeep applies the rule that what the control plane maintains on an
// ACME certificate is never taken from a write: obj (being written) gets
// the stored object's issued cert and key (when they still cover obj's
// names; otherwise none, and a new order is due), its state and its
// challenges. existing may be nil (a new object). A certificate without
// acme is left alone.
func ACMEKeep(existing, obj *Certificate) {
	if obj.ACME == nil {
		return
	}
	a := *obj.ACME
	obj.ACME = &a
	obj.Cert, obj.Key, a.State, a.Challenges = "", "", nil, nil
	if existing == nil || existing.ACME == nil {
		return
	}
	a.State = existing.ACME.State
	a.Challenges = existing.ACME.Challenges
	if a.State != nil && ACMEIssuedFor(a.Directory, obj.SNIs) != ACMEIssuedFor(existing.ACME.Directory, existing.SNIs) {
		// Another directory or other names: order at once, whatever
		// the backoff of earlier failures.
		st := *a.State
		st.NextAttempt, st.Failures = nil, 0
		a.State = &st
	}
	if existing.Cert == "" {
		return
	}
	chain, msg := parseChain(existing.Cert)
	if msg != "" {
		return
	}
	for _, s := range obj.SNIs {
		if !covers(chain[0], s) {
			return
		}
	}
	obj.Cert, obj.Key = existing.Cert, existing.Key
}

// ACMEDue reports whether the control plane should order c's certificate
// now, and otherwise when next (zero for a certificate without acme).
func ACMEDue(c *Certificate, now time.Time) (due bool, next time.Time) {
	if c.ACME == nil {
		return false, time.Time{}
	}
	if st := c.ACME.State; st != nil && st.NextAttempt != nil && now.Before(*st.NextAttempt) {
		return false, *st.NextAttempt
	}
	return true, now
}
