package auth

import (
	"errors"
	"fmt"

	"github.com/portico-gw/portico/shared/config"
)

// Sentinel errors. Every error VerifyJWT and VerifyAPIKey return matches
// exactly one of them with errors.Is, so callers can map a failure to a 401
// reason and a metrics label (Reason) without parsing messages.
var (
	ErrMissing          = errors.New("auth: no credentials")
	ErrMalformed        = errors.New("auth: malformed credentials")
	ErrUnknownIssuer    = errors.New("auth: unknown token issuer")
	ErrIssuerNotAllowed = errors.New("auth: token issuer not allowed here")
	ErrAlgorithm        = errors.New("auth: token algorithm not allowed for its issuer")
	ErrUnknownKey       = errors.New("auth: no key to verify the token")
	ErrSignature        = errors.New("auth: invalid token signature")
	ErrExpired          = errors.New("auth: token expired")
	ErrLifetime         = errors.New("auth: token lifetime exceeds the issuer's max_token_lifetime")
	ErrNotYetValid      = errors.New("auth: token not valid yet")
	ErrAudience         = errors.New("auth: token audience not accepted")
	ErrClaims           = errors.New("auth: token claims missing or invalid")
	ErrInvalidKey       = errors.New("auth: invalid API key")
	// ErrInactive: the introspection endpoint called the token inactive.
	ErrInactive = errors.New("auth: token not active")
	// ErrIntrospection: the introspection endpoint gave no usable answer.
	ErrIntrospection = errors.New("auth: introspection endpoint unavailable")
)

// reasons is ordered: the first match wins, so that an error carrying several
// sentinels (it never should) still gets one stable label.
var reasons = []struct {
	err    error
	reason string
}{
	{ErrMissing, "missing"},
	{ErrMalformed, "malformed"},
	{ErrUnknownIssuer, "unknown_issuer"},
	{ErrIssuerNotAllowed, "issuer_not_allowed"},
	{ErrAlgorithm, "algorithm"},
	{ErrUnknownKey, "unknown_key"},
	{ErrSignature, "signature"},
	{ErrExpired, "expired"},
	{ErrLifetime, "lifetime"},
	{ErrNotYetValid, "not_yet_valid"},
	{ErrAudience, "audience"},
	{ErrClaims, "claims"},
	{ErrInvalidKey, "invalid_api_key"},
	{ErrInvalidPassword, "invalid_password"},
	{ErrBusy, "busy"},
	{config.ErrCertMissing, "cert_missing"},
	{config.ErrCertExpired, "cert_expired"},
	{config.ErrCertUntrusted, "cert_untrusted"},
	{config.ErrCertUsage, "cert_usage"},
	{config.ErrCertRevoked, "cert_revoked"},
	{ErrCertAmbiguous, "cert_ambiguous"},
	{ErrInactive, "inactive"},
	{ErrIntrospection, "introspection_unavailable"},
}

// Reason returns a short, fixed label for err, fit for a metrics label or a
// 401 reason: "" for nil, "invalid" for an error of no known kind.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "invalid"
}

// fail wraps only the sentinel (%v for the detail): a caller's errors.Is then
// sees exactly one kind, whatever jwt or jwkset errors the detail carries.
func fail(kind error, detail any) error {
	if detail == nil {
		return kind
	}
	return fmt.Errorf("%w: %v", kind, detail)
}

// quoteKID bounds and quotes an attacker-chosen kid before it goes into an
// error message that may be logged.
func quoteKID(kid string) string {
	const max = 64
	if len(kid) > max {
		kid = kid[:max] + "…"
	}
	return fmt.Sprintf("%q", kid)
}
