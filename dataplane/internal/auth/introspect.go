package auth

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/portico-gw/portico/shared/config"
)

// Opaque access tokens (RFC 7662 introspection).
//
// A route with auth.introspection takes bearer tokens that are not JWTs of
// a known issuer and asks the introspection endpoint of each issuer it
// allows (those with an introspection block, by name) until one calls the
// token active. The rules:
//
//   - The answer decides only if it is a 200 JSON object whose "active" is
//     true; then exp (if given) must be in the future and nbf not, iss (if
//     given) must equal the issuer's issuer value, aud must contain one of
//     the issuer's audiences when it has any, exp must not be further away
//     than max_token_lifetime, and a refresh token (token_use or token_type
//     says so) is refused: only access tokens open routes.
//   - The answer's members are the identity's claims: "scope" feeds the
//     route's scopes, consumer_claim ("sub" by default) names a consumer
//     that lists the issuer in jwt_issuers, claims and forward_claims read
//     them, exactly as for a JWT.
//   - Answers are remembered in a cache bounded in bytes (cache_max_bytes),
//     keyed by the SHA-256 of the token (the token itself is not kept): an
//     active answer until the token's exp and at most cache_ttl, an
//     inactive one at most min(cache_ttl, 10s), so a token revoked at the
//     provider is refused within cache_ttl and an expired one at once. A
//     failed call (timeout, 5xx, not JSON) is never remembered and answers
//     503: the gateway cannot tell whether the token is good.
//   - The call is a POST of token and token_type_hint=access_token, with
//     the client credentials in HTTP Basic when configured, bounded by the
//     issuer's timeout and a 64 KiB answer; redirects are not followed (a
//     redirected POST would carry the secret elsewhere).

// MethodIntrospection is the Identity.Method of an introspected token.
const MethodIntrospection = "introspection"

// maxIntrospectionBytes bounds an introspection answer.
const maxIntrospectionBytes = 64 << 10

// introEntryOverhead is what an entry costs beside its answer's bytes (map
// slot, list element, hash, times, decoded map): an estimate, so that the
// byte bound holds within a small factor.
const introEntryOverhead = 256

type introspector struct {
	issuer   *Issuer
	endpoint string
	clientID string
	secret   string
	client   *http.Client
	ttl      time.Duration
	cache    *byteCache[introAnswer]
}

// introAnswer is a remembered answer: the claims of an active token, nil
// for an inactive one.
type introAnswer struct {
	claims map[string]any
}

func newIntrospector(is *Issuer, spec *config.Introspection, base *http.Client) *introspector {
	var c http.Client
	if base != nil {
		c = *base
	}
	c.Timeout = cmp.Or(spec.Timeout.Std(), config.DefaultIntrospectionTimeout)
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = otelhttp.NewTransport(rt,
		otelhttp.WithSpanNameFormatter(func(string, *http.Request) string { return "OAuth2 introspection" }))
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &introspector{
		issuer:   is,
		endpoint: spec.URL, clientID: spec.ClientID, secret: spec.ClientSecret,
		client: &c,
		ttl:    cmp.Or(spec.CacheTTL.Std(), config.DefaultIntrospectionTTL),
		cache:  newByteCache[introAnswer](cmp.Or(spec.CacheMaxBytes, config.DefaultIntrospectionCacheSize)),
	}
}

// check returns the claims of an active token, ErrInactive (or another
// refusal) otherwise, ErrIntrospection when the endpoint gave no answer.
func (in *introspector) check(ctx context.Context, token string) (map[string]any, error) {
	key := sha256.Sum256([]byte(token))
	now := in.issuer.now()
	if a, ok := in.cache.get(key, now); ok {
		if a.claims == nil {
			return nil, ErrInactive
		}
		// Re-checked: the entry lives until exp, but exp - leeway and
		// nbf depend on the clock.
		return a.claims, in.validate(a.claims, now)
	}
	claims, raw, err := in.call(ctx, token)
	if err != nil {
		return nil, err
	}
	until := now.Add(in.ttl)
	active, _ := claims["active"].(bool)
	verr := in.validate(claims, now)
	switch {
	case !active:
		in.cache.put(key, introAnswer{}, now.Add(min(in.ttl, config.NegativeIntrospectionTTL)), introEntryOverhead)
		return nil, ErrInactive
	case verr != nil:
		// Not remembered: refusals other than inactive are rare, and
		// some (nbf) change with time.
		return nil, verr
	}
	if exp, ok := numericClaim(claims, "exp"); ok && exp.Before(until) {
		until = exp
	}
	in.cache.put(key, introAnswer{claims: claims}, until, int64(len(raw))+introEntryOverhead)
	return claims, nil
}

// validate applies the rules to an active answer.
func (in *introspector) validate(c map[string]any, now time.Time) error {
	is := in.issuer
	if exp, ok := numericClaim(c, "exp"); ok {
		if !now.Before(exp.Add(is.leeway)) {
			return fail(ErrExpired, nil)
		}
		if left := exp.Sub(now); left > is.maxLifetime+is.leeway {
			return fail(ErrLifetime, fmt.Sprintf("exp is %s away, more than %s", left.Round(time.Second), is.maxLifetime))
		}
	} else if _, present := c["exp"]; present {
		return fail(ErrClaims, "exp is not a number")
	}
	if nbf, ok := numericClaim(c, "nbf"); ok && now.Add(is.leeway).Before(nbf) {
		return fail(ErrNotYetValid, nil)
	}
	if iss, present := c["iss"]; present && iss != is.iss {
		return fail(ErrUnknownIssuer, "iss of the introspection answer is not the issuer's")
	}
	if use, _ := c["token_use"].(string); use != "" && use != "access_token" {
		return fail(ErrClaims, "not an access token")
	}
	if typ, _ := c["token_type"].(string); strings.EqualFold(typ, "refresh_token") {
		return fail(ErrClaims, "not an access token")
	}
	if len(is.audiences) > 0 && !slices.ContainsFunc(audiences(c["aud"]), func(a string) bool { return slices.Contains(is.audiences, a) }) {
		return fail(ErrAudience, nil)
	}
	return nil
}

// call asks the endpoint. Only its outcome is logged by callers, never the
// token or the secret.
func (in *introspector) call(ctx context.Context, token string) (map[string]any, []byte, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, nil, fail(ErrIntrospection, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if in.clientID != "" {
		// RFC 6749 §2.3.1: both form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(in.clientID), url.QueryEscape(in.secret))
	}
	resp, err := in.client.Do(req)
	if err != nil {
		return nil, nil, fail(ErrIntrospection, redactURLError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBytes+1))
	switch {
	case err != nil:
		return nil, nil, fail(ErrIntrospection, err)
	case resp.StatusCode != http.StatusOK:
		return nil, nil, fail(ErrIntrospection, fmt.Sprintf("HTTP %d", resp.StatusCode))
	case len(raw) > maxIntrospectionBytes:
		return nil, nil, fail(ErrIntrospection, "answer larger than 64 KiB")
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil || claims == nil {
		return nil, nil, fail(ErrIntrospection, "answer is not a JSON object")
	}
	if _, ok := claims["active"].(bool); !ok {
		return nil, nil, fail(ErrIntrospection, "answer has no boolean active")
	}
	return claims, bytes.Clone(raw), nil
}

// redactURLError keeps a transport error's kind without its URL (which is
// configuration, but may carry a query an operator considers private).
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// numericClaim reads a NumericDate claim.
func numericClaim(c map[string]any, name string) (time.Time, bool) {
	f, ok := c[name].(float64)
	if !ok {
		return time.Time{}, false
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

// audiences reads "aud": a string or an array of strings.
func audiences(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		out := make([]string, 0, len(a))
		for _, e := range a {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// introspectingIssuers lists the issuers with an introspection endpoint, by
// name: the order a route's opaque tokens are asked about in.
func introspectingIssuers(issuers map[string]*Issuer) []*Issuer {
	var out []*Issuer
	for _, is := range issuers {
		if is != nil && is.intro != nil {
			out = append(out, is)
		}
	}
	slices.SortFunc(out, func(a, b *Issuer) int { return strings.Compare(a.name, b.name) })
	return out
}

// Introspect checks an opaque bearer token at the introspection endpoints
// of the issuers allowed (empty: any), in name order, until one calls it
// active. When none does, an endpoint that could not be asked wins over
// "inactive": the token may be that provider's.
func (v *Verifier) Introspect(ctx context.Context, token string, allowed []string) (*Identity, error) {
	if token == "" {
		return nil, ErrMissing
	}
	if len(token) > MaxTokenBytes {
		return nil, fail(ErrMalformed, "token larger than 8 KiB")
	}
	var best error
	for _, is := range v.introspecting {
		if len(allowed) > 0 && !slices.Contains(allowed, is.name) {
			continue
		}
		claims, err := is.intro.check(ctx, token)
		if err == nil {
			return v.identity(is, claims, MethodIntrospection), nil
		}
		if best == nil || errors.Is(err, ErrIntrospection) || errors.Is(best, ErrInactive) {
			best = err
		}
	}
	if best == nil {
		return nil, ErrIssuerNotAllowed
	}
	return nil, best
}

// looksLikeJWS reports a token of three base64url parts: a JWT for the
// JWT verifier; anything else is opaque.
func looksLikeJWS(token string) bool {
	return strings.Count(token, ".") == 2
}

// verifyBearer checks a bearer token on a route: a JWT with the JWT
// verifier when the route takes JWTs, an opaque token (or a JWT of no
// configured issuer) at the introspection endpoints when it takes those.
func (ra *Route) verifyBearer(ctx context.Context, token string) (*Identity, error) {
	if ra.jwt && (looksLikeJWS(token) || !ra.introspect) {
		id, err := ra.verifier.VerifyJWT(ctx, token, ra.issuers)
		if !ra.introspect || !errors.Is(err, ErrUnknownIssuer) {
			return id, err
		}
	}
	return ra.verifier.Introspect(ctx, token, ra.issuers)
}
