package config

import (
	"encoding/base64"
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
	MaxACMEEABKIDBytes    = 256
	MaxACMEEABKeyBytes    = 1024
	// MinACMEEABKeyBytes: the HMAC key signs the binding with HS256,
	// which needs a key of at least 256 bits (RFC 7518 §3.2).
	MinACMEEABKeyBytes = 32
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
	// EAB binds the ACME account to an account the operator holds at the
	// CA (External Account Binding, RFC 8555 §7.3.4), for CAs that
	// require it (ZeroSSL, Google Trust Services, Sectigo, private
	// step-ca or Boulder setups). Used once, when the account is
	// registered.
	EAB *ACMEEAB `json:"eab,omitempty"`
	// State is maintained by the control plane (ignored on input).
	State *CertificateACMEState `json:"state,omitempty"`
	// Challenges are the challenges being answered, maintained by the
	// control plane for the data planes (ignored on input, never shown
	// by the admin API).
	Challenges []ACMEChallenge `json:"challenges,omitempty"`
}

// ACMEEAB is an External Account Binding: the key identifier and MAC key
// the CA hands out.
type ACMEEAB struct {
	// KID is the key identifier.
	KID string `json:"kid"`
	// HMACKey is the MAC key, base64url as CAs give it (padded or not).
	// It is a secret: the admin API never returns it (GET, lists, write
	// answers, the export), the audit log and logs never carry it, and a
	// write that leaves it out keeps the stored one while the kid and
	// the directory are the same (ACMEKeep), so GET output and an export
	// can be put back.
	HMACKey string `json:"hmac_key,omitempty"`
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

// requireKey: the EAB's hmac_key must be there (a write that leaves it
// out keeps the stored one; Config.Validate and CheckCertificate check
// the result).
func (a *CertificateACME) validate(l *errorList, p string, requireKey bool) {
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
	if a.EAB != nil {
		a.EAB.validate(l, join(p, "eab"), requireKey)
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

func (e *ACMEEAB) validate(l *errorList, p string, requireKey bool) {
	switch {
	case e.KID == "":
		l.add(join(p, "kid"), "is required with an external account binding (the key identifier the CA gave)")
	case len(e.KID) > MaxACMEEABKIDBytes:
		l.add(join(p, "kid"), "must be at most %d bytes", MaxACMEEABKIDBytes)
	case strings.ContainsFunc(e.KID, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		l.add(join(p, "kid"), "must not contain spaces or control characters")
	}
	switch {
	case e.HMACKey == "":
		if requireKey {
			l.add(join(p, "hmac_key"), "is required with an external account binding (the MAC key the CA gave, base64url)")
		}
	case len(e.HMACKey) > MaxACMEEABKeyBytes:
		l.add(join(p, "hmac_key"), "must be at most %d bytes", MaxACMEEABKeyBytes)
	default:
		// The message never quotes the value: it is a secret.
		if key, ok := ACMEEABKey(e.HMACKey); !ok {
			l.add(join(p, "hmac_key"), "must be base64url (the MAC key as the CA gives it)")
		} else if len(key) < MinACMEEABKeyBytes {
			l.add(join(p, "hmac_key"), "decodes to %d bytes; at least %d are needed (HS256)", len(key), MinACMEEABKeyBytes)
		}
	}
}

// ACMEEABKey decodes an EAB MAC key: base64url, unpadded or padded (as
// the ACME library accepts it).
func ACMEEABKey(s string) ([]byte, bool) {
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, true
	}
	if b, err := base64.URLEncoding.DecodeString(s); err == nil {
		return b, true
	}
	return nil, false
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
	if e, old := a.EAB, existing.ACME.EAB; e != nil && e.HMACKey == "" && old != nil && old.KID == e.KID && existing.ACME.Directory == a.Directory {
		// GET never shows the MAC key: a write without it keeps it.
		a.EAB = &ACMEEAB{KID: e.KID, HMACKey: old.HMACKey}
	}
	a.State = existing.ACME.State
	a.Challenges = existing.ACME.Challenges
	if a.State != nil && (ACMEIssuedFor(a.Directory, obj.SNIs) != ACMEIssuedFor(existing.ACME.Directory, existing.SNIs) ||
		a.State.Status == ACMEFailed && !sameACMESettings(&a, existing.ACME)) {
		// Another directory or other names, or new settings after a
		// failure (an EAB key fixed, say): order at once, whatever
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

// sameACMESettings: a and b ask for the same order (directory, contact,
// CA, challenge, binding).
func sameACMESettings(a, b *CertificateACME) bool {
	return a.Directory == b.Directory && a.Email == b.Email && a.CA == b.CA && a.Challenge == b.Challenge &&
		(a.EAB == nil) == (b.EAB == nil) && (a.EAB == nil || *a.EAB == *b.EAB)
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
