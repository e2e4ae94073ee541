package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portico-gw/portico/shared/jwtkey"
)

// Algorithms a JWT issuer may allow. "none" is not among them, on purpose.
var (
	hmacAlgs   = []string{"HS256", "HS384", "HS512"}
	publicAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

// IsHMAC reports an HMAC algorithm.
func IsHMAC(alg string) bool { return slices.Contains(hmacAlgs, alg) }

// IsAllowedAlgorithm reports an algorithm an issuer may name: the one list
// the control plane validates with and the data plane re-checks with.
func IsAllowedAlgorithm(alg string) bool { return IsHMAC(alg) || slices.Contains(publicAlgs, alg) }

// Limits of rate-limit policies.
const (
	MinRateWindow = time.Second
	MaxRateWindow = 24 * time.Hour
	MaxRateLimit  = 1_000_000_000
)

func (r *RateLimit) validate(l *errorList, p string) {
	if r.Limit < 1 || r.Limit > MaxRateLimit {
		l.add(join(p, "limit"), "must be between 1 and %d", MaxRateLimit)
	}
	if w := r.Window.Std(); w < MinRateWindow || w > MaxRateWindow {
		l.add(join(p, "window"), "must be between 1s and 24h (e.g. \"1s\", \"1m\", \"1h\", \"24h\")")
	}
	if r.Burst < 0 || r.Burst > MaxRateLimit {
		l.add(join(p, "burst"), "must be between 0 and %d", MaxRateLimit)
	}
	switch r.Algorithm {
	case "", AlgorithmGCRA:
	case AlgorithmWindow:
		if r.Burst != 0 {
			l.add(join(p, "burst"), "only applies to algorithm gcra; the window admits up to limit at once")
		}
	default:
		l.add(join(p, "algorithm"), "must be window or gcra")
	}
	if msg := RateKeyProblem(r.Key); msg != "" {
		l.add(join(p, "key"), "%s", msg)
	}
	switch r.OnRedisError {
	case "", FailOpen, FailClosed:
	default:
		l.add(join(p, "on_redis_error"), "must be fail_open or fail_closed")
	}
}

// RateKeyProblem checks a rate-limit key: route, ip, consumer,
// header:<Name> or claim:<name>.
func RateKeyProblem(k string) string {
	kind, name, hasName := strings.Cut(k, ":")
	switch {
	case !hasName && (k == "" || k == "route" || k == "ip" || k == "consumer"):
		return ""
	case hasName && kind == "header" && isToken(name):
		return ""
	case hasName && kind == "claim" && name != "" && len(name) <= 128 && !strings.ContainsAny(name, " \t\r\n"):
		return ""
	}
	return `must be route, ip, consumer, header:<Name> or claim:<name>`
}

func (a *RouteAuth) validate(l *errorList, p string) {
	if !a.JWT && !a.APIKey && !a.Basic && a.ClientCert == nil && !a.Introspection && a.OIDC == nil {
		l.add(p, "enable at least one method: jwt, api_key, basic, client_cert, introspection or oidc")
	}
	if a.ClientCert != nil {
		parseClientCA(l, join(p, "client_cert"), a.ClientCert)
	}
	if a.APIKeyHeader != "" && !isToken(a.APIKeyHeader) {
		l.add(join(p, "api_key_header"), "must be a header name")
	}
	if len(a.Issuers) > 0 && !a.JWT && !a.Introspection {
		l.add(join(p, "issuers"), "only applies when jwt or introspection is enabled")
	}
	for field, list := range map[string][]string{"issuers": a.Issuers, "consumers": a.Consumers, "groups": a.Groups} {
		for i, n := range list {
			if msg := nameProblem(n); msg != "" {
				l.add(join(p, fmt.Sprintf("%s[%d]", field, i)), "%s", msg)
			}
		}
	}
	for i, s := range a.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			l.add(join(p, fmt.Sprintf("scopes[%d]", i)), "must be a non-empty scope without spaces")
		}
	}
	if (len(a.Scopes) > 0 || len(a.Claims) > 0) && !a.JWT && !a.Introspection && a.OIDC == nil {
		l.add(join(p, "scopes"), "scopes and claims need jwt, introspection or oidc enabled")
	}
	if a.OIDC != nil {
		a.OIDC.validate(l, join(p, "oidc"))
	}
	for claim, header := range a.ForwardClaims {
		switch {
		case claim == "" || !isToken(header):
			l.add(join(p, "forward_claims."+claim), "must map a claim name to a header name")
		case strings.Contains(header, "_"):
			// The data plane drops client headers spelled with "_" by
			// default; a gateway header must not look like one.
			l.add(join(p, "forward_claims."+claim), "header name %q must not contain \"_\"", header)
		case ReservedHeader(header):
			l.add(join(p, "forward_claims."+claim), "header %q is set by the gateway (identity, forwarding, credentials or framing)", header)
		}
	}
}

// Validate checks an issuer on its own.
func (is *Issuer) Validate() error {
	var l errorList
	is.validate(&l, "")
	return l.err()
}

// Normalize has nothing to do for an issuer; it completes Object.
func (is *Issuer) Normalize() {}

// ObjectName implements Object.
func (is *Issuer) ObjectName() string { return is.Name }

func (is *Issuer) validate(l *errorList, p string) {
	if msg := nameProblem(is.Name); msg != "" {
		l.add(join(p, "name"), "%s", msg)
	}
	if is.Issuer == "" {
		l.add(join(p, "issuer"), "is required (the exact iss value of the tokens)")
	}
	// An issuer that only introspects opaque tokens, or only logs users
	// in (OIDC: its keys come from discovery), needs no keys of its own.
	signs := len(is.Algorithms) > 0 || len(is.Keys) > 0 || is.JWKSURL != "" || (is.Introspection == nil && is.OIDC == nil)
	if len(is.Algorithms) == 0 && (signs && is.OIDC == nil) {
		l.add(join(p, "algorithms"), "list the algorithms this issuer signs with, e.g. [\"RS256\"]")
	}
	hmac, public := false, false
	for i, alg := range is.Algorithms {
		switch {
		case IsHMAC(alg):
			hmac = true
		case slices.Contains(publicAlgs, alg):
			public = true
		default:
			l.add(join(p, fmt.Sprintf("algorithms[%d]", i)), "%q is not allowed; use HS256/384/512, RS*, PS*, ES* or EdDSA", alg)
		}
	}
	if hmac && public {
		l.add(join(p, "algorithms"), "do not mix HMAC with public-key algorithms: a public key must never be usable as an HMAC secret")
	}
	switch {
	case is.JWKSURL == "" && len(is.Keys) == 0:
		// An HMAC issuer's keys are secrets a write may leave out (the
		// stored ones are kept): checkSecrets asks for them after that.
		if signs && is.OIDC == nil && !hmac {
			l.add(join(p, "keys"), "give keys or a jwks_url (or an introspection or oidc block)")
		}
	case is.JWKSURL != "" && len(is.Keys) > 0:
		l.add(join(p, "jwks_url"), "give keys or a jwks_url, not both")
	case is.JWKSURL != "":
		u, err := url.Parse(is.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			l.add(join(p, "jwks_url"), "must be an http(s) URL")
		}
		if hmac {
			l.add(join(p, "jwks_url"), "HMAC secrets are not fetched from a JWKS URL; give them in keys")
		}
	}
	// Keys are parsed by the function the data plane compiles them with, so
	// that a key accepted here loads on every data plane. Parsing needs a
	// sound algorithm list; without one, that list's error says enough.
	algsOK := len(is.Algorithms) > 0 && !(hmac && public) &&
		!slices.ContainsFunc(is.Algorithms, func(a string) bool { return !IsAllowedAlgorithm(a) })
	for i, k := range is.Keys {
		fp := join(p, fmt.Sprintf("keys[%d]", i))
		switch {
		case strings.TrimSpace(k) == "":
			l.add(fp, "is empty")
		case algsOK:
			if _, err := jwtkey.Parse(k, is.Algorithms, hmac); err != nil {
				l.add(fp, "%v", err)
			}
		}
	}
	for i, a := range is.Audiences {
		if a == "" {
			l.add(join(p, fmt.Sprintf("audiences[%d]", i)), "is empty")
		}
	}
	if d := is.Leeway.Std(); d < 0 || d > 5*time.Minute {
		l.add(join(p, "leeway"), "must be between 0 and 5m")
	}
	if is.ConsumerClaim != "" && strings.ContainsAny(is.ConsumerClaim, " \t\r\n") {
		l.add(join(p, "consumer_claim"), "must be a claim name")
	}
	if d := is.JWKSRefresh.Std(); d != 0 && (d < MinJWKSRefresh || d > MaxJWKSRefresh) {
		l.add(join(p, "jwks_refresh"), "must be between %s and %s (0: the default, %s)", MinJWKSRefresh, MaxJWKSRefresh, DefaultJWKSRefresh)
	} else if d != 0 && is.JWKSURL == "" {
		l.add(join(p, "jwks_refresh"), "only applies with jwks_url")
	}
	if is.Introspection != nil {
		is.Introspection.validate(l, join(p, "introspection"))
	}
	if is.OIDC != nil {
		is.OIDC.validate(l, p, is.Issuer)
	}
	if d := is.MaxTokenLifetime.Std(); d != 0 && (d < MinMaxTokenLifetime || d > MaxMaxTokenLifetime) {
		l.add(join(p, "max_token_lifetime"), "must be between %s and %s (0: the default, %s)", MinMaxTokenLifetime, MaxMaxTokenLifetime, DefaultMaxTokenLifetime)
	}
}
