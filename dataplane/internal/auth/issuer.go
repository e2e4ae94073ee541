package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/portico-gw/portico/shared/config"
	"github.com/redis/go-redis/v9"
)

// Defaults of IssuerOptions.
const (
	DefaultRefreshInterval       = config.DefaultJWKSRefresh
	DefaultRefreshUnknownKIDRate = time.Minute
)

// IssuerOptions tune an Issuer; the zero value is fit for production.
type IssuerOptions struct {
	// HTTPClient fetches the JWKS. It is copied, never modified; the copy's
	// timeout is capped at 5s and its responses at 1 MiB.
	HTTPClient *http.Client
	// RefreshInterval is the longest time between two JWKS fetches for
	// issuers whose spec sets no jwks_refresh (default 1m); a response's
	// Cache-Control max-age may shorten it.
	RefreshInterval time.Duration
	// RefreshUnknownKIDRate is the least time between two fetches caused by
	// tokens naming a kid the cached set lacks (default 1m).
	RefreshUnknownKIDRate time.Duration
	// Log receives JWKS fetch failures (default slog.Default()).
	Log *slog.Logger
	// Now replaces the clock for exp, nbf and iat (tests).
	Now func() time.Time
	// Redis, when set, lets the data planes spend each OIDC session's
	// refresh token once for the cluster (refresh.go); nil: once per data
	// plane.
	Redis redis.UniversalClient
	// SessionMetrics counts OIDC session refreshes (nil: not counted).
	SessionMetrics *SessionMetrics
}

// keySource finds the key(s) for a token's alg and kid.
type keySource interface {
	key(ctx context.Context, alg, kid string) (any, error)
	// version changes whenever the key set does, so that tokens verified
	// with an earlier set are not answered from memory.
	version() uint64
}

// staticKeys are an issuer's inline keys.
type staticKeys []keyEntry

func (s staticKeys) key(_ context.Context, alg, kid string) (any, error) {
	return selectKey(s, alg, kid)
}

// version: inline keys change only with the issuer, which is then a new
// Issuer with a new Verifier and an empty token cache.
func (staticKeys) version() uint64 { return 0 }

// Issuer verifies tokens of one config.Issuer. It is safe for concurrent use
// and may outlive a configuration revision, so that a JWKS cache survives
// changes elsewhere in the configuration.
type Issuer struct {
	name          string
	iss           string
	algs          []string
	audiences     []string
	consumerClaim string
	// maxLifetime bounds exp-iat and exp-now; leeway is added to the
	// latter, as the parser adds it to exp.
	maxLifetime time.Duration
	leeway      time.Duration
	parser      *jwt.Parser
	keys        keySource
	closeOnce   sync.Once
	stop        context.CancelFunc
	now         func() time.Time // the parser's clock
	// intro checks opaque tokens (introspect.go); nil without an
	// introspection block.
	intro *introspector
	// oidc logs browser users in (oidc.go); nil without an oidc block.
	oidc *oidcClient
}

// NewIssuer prepares the verification of spec's tokens. For a JWKS issuer it
// fetches the key set once before returning (a failure is logged, not
// returned: tokens fail until a fetch succeeds) and refreshes it until
// Close. ctx bounds only that construction.
func NewIssuer(ctx context.Context, spec *config.Issuer, o IssuerOptions) (*Issuer, error) {
	if spec == nil {
		return nil, errors.New("auth: nil issuer")
	}
	wrap := func(err error) error { return fmt.Errorf("auth: issuer %q: %w", spec.Name, err) }
	if spec.Issuer == "" {
		return nil, wrap(errors.New("issuer (the iss value) is required"))
	}
	oauth := spec.Introspection != nil || spec.OIDC != nil
	hmac, err := checkAlgorithms(spec.Algorithms)
	if err != nil && !(oauth && len(spec.Algorithms) == 0) {
		return nil, wrap(err)
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.RefreshUnknownKIDRate <= 0 {
		o.RefreshUnknownKIDRate = DefaultRefreshUnknownKIDRate
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}

	is := &Issuer{
		name:          spec.Name,
		iss:           spec.Issuer,
		algs:          slices.Clone(spec.Algorithms),
		audiences:     slices.Clone(spec.Audiences),
		consumerClaim: spec.ConsumerClaim,
		maxLifetime:   cmp.Or(spec.MaxTokenLifetime.Std(), config.DefaultMaxTokenLifetime),
		leeway:        spec.Leeway.Std(),
		stop:          func() {},
		now:           time.Now,
	}
	if is.consumerClaim == "" {
		is.consumerClaim = "sub"
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(is.algs),
		jwt.WithIssuer(spec.Issuer),
		jwt.WithLeeway(spec.Leeway.Std()),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if len(is.audiences) > 0 {
		// Any one of them suffices (WithAllAudiences would demand all).
		opts = append(opts, jwt.WithAudience(is.audiences...))
	}
	if o.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(o.Now))
		is.now = o.Now
	}
	is.parser = jwt.NewParser(opts...)

	switch {
	case spec.JWKSURL != "" && len(spec.Keys) > 0:
		return nil, wrap(errors.New("give keys or a jwks_url, not both"))
	case spec.JWKSURL != "":
		if hmac {
			return nil, wrap(errors.New("HMAC secrets are never taken from a JWKS URL"))
		}
		// The refresh runs until Close, not until the construction context
		// ends; ctx may still abort the first fetch.
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stopLink := context.AfterFunc(ctx, cancel)
		every := cmp.Or(spec.JWKSRefresh.Std(), o.RefreshInterval)
		src := newJWKSSource(runCtx, spec.Name, spec.JWKSURL, every, o, log)
		stopLink()
		if err := ctx.Err(); err != nil {
			cancel()
			return nil, wrap(err)
		}
		is.keys, is.stop = src, cancel
	case len(spec.Keys) > 0:
		entries, err := parseInlineKeys(spec.Keys, is.algs, hmac)
		if err != nil {
			return nil, wrap(err)
		}
		is.keys = staticKeys(entries)
	case oauth:
		// Introspection or OIDC only: this issuer verifies no JWT
		// bearer tokens of its own.
		is.keys = noKeys{}
	default:
		return nil, wrap(errors.New("give keys or a jwks_url"))
	}
	if spec.Introspection != nil {
		is.intro = newIntrospector(is, spec.Introspection, o.HTTPClient)
	}
	if spec.OIDC != nil {
		if is.oidc, err = newOIDCClient(is, spec, o.HTTPClient, o.Redis, o.SessionMetrics, log); err != nil {
			return nil, wrap(err)
		}
	}
	return is, nil
}

// checkAlgorithms re-applies the control plane's rules: the data plane does
// not trust its input to have been validated.
func checkAlgorithms(algs []string) (hmac bool, err error) {
	if len(algs) == 0 {
		return false, errors.New("no algorithms")
	}
	public := false
	for _, a := range algs {
		if !config.IsAllowedAlgorithm(a) { // "none" never is
			return false, fmt.Errorf("algorithm %q is not allowed", a)
		}
		if config.IsHMAC(a) {
			hmac = true
		} else {
			public = true
		}
	}
	if hmac && public {
		return false, errors.New("HMAC mixed with public-key algorithms: a public key could then serve as an HMAC secret")
	}
	return hmac, nil
}

// noKeys is the key source of an issuer without keys of its own
// (introspection or OIDC only): every JWT naming it is refused.
type noKeys struct{}

func (noKeys) key(context.Context, string, string) (any, error) {
	return nil, fail(ErrUnknownKey, "the issuer has no keys for bearer JWTs")
}

func (noKeys) version() uint64 { return 0 }

// Name returns the issuer object's name.
func (i *Issuer) Name() string { return i.name }

// Close stops the JWKS refresh. Tokens verify with the last keys afterwards,
// but no fetch happens any more.
func (i *Issuer) Close() {
	i.closeOnce.Do(i.stop)
}

// verify checks token against this issuer and returns its claims.
func (i *Issuer) verify(ctx context.Context, token string) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	tok, err := i.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		return i.keyFor(ctx, t)
	})
	if err != nil {
		return nil, i.classify(tok, claims, err)
	}
	if err := i.checkLifetime(claims); err != nil {
		return nil, err
	}
	return claims, nil
}

// checkLifetime refuses a token valid for longer than the issuer allows,
// counted from its iat and from now: a token minted to last a year is not
// accepted for a year because its issuer (or whoever holds its key) said so.
func (i *Issuer) checkLifetime(claims jwt.MapClaims) error {
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return fail(ErrClaims, "no exp") // the parser requires it; never reached
	}
	if left := exp.Sub(i.now()); left > i.maxLifetime+i.leeway {
		return fail(ErrLifetime, fmt.Sprintf("exp is %s away, more than %s", left.Round(time.Second), i.maxLifetime))
	}
	if iat, err := claims.GetIssuedAt(); err == nil && iat != nil {
		if life := exp.Sub(iat.Time); life > i.maxLifetime {
			return fail(ErrLifetime, fmt.Sprintf("exp-iat is %s, more than %s", life, i.maxLifetime))
		}
	}
	return nil
}

// keyError marks an error of keyFor, so classify can take it back out of
// jwt's wrapping.
type keyError struct{ error }

func (e keyError) Unwrap() error { return e.error }

func (i *Issuer) keyFor(ctx context.Context, t *jwt.Token) (any, error) {
	k, err := i.findKey(ctx, t)
	if err != nil {
		return nil, keyError{err}
	}
	return k, nil
}

func (i *Issuer) findKey(ctx context.Context, t *jwt.Token) (any, error) {
	// jwt/v5 implements no critical header extension, so RFC 7515 §4.1.11
	// says a token that names any must be refused.
	if _, ok := t.Header["crit"]; ok {
		return nil, fail(ErrMalformed, "crit header")
	}
	var kid string
	if v, ok := t.Header["kid"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, fail(ErrMalformed, "kid is not a string")
		}
		kid = s
	}
	// The parser has already refused an alg outside i.algs.
	return i.keys.key(ctx, t.Method.Alg(), kid)
}

// classify maps a jwt/v5 error to one sentinel.
func (i *Issuer) classify(tok *jwt.Token, claims jwt.MapClaims, err error) error {
	// Our own keyfunc errors come back wrapped in jwt's; they are the most
	// precise, and already carry their sentinel.
	var ke keyError
	if errors.As(err, &ke) {
		return ke.error
	}
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return fail(ErrMalformed, err)
	}
	// jwt/v5 reports a method outside WithValidMethods as a bad signature,
	// and an unregistered one (typo, or an attack) as unverifiable.
	if tok != nil {
		alg, _ := tok.Header["alg"].(string)
		if !slices.Contains(i.algs, alg) {
			return fail(ErrAlgorithm, fmt.Sprintf("%.20q not allowed for issuer %q", alg, i.name))
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fail(ErrSignature, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return fail(ErrExpired, err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fail(ErrNotYetValid, err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fail(ErrAudience, err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fail(ErrUnknownIssuer, err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		if _, ok := claims["iss"]; !ok {
			// The issuer was chosen by a key that merely folds to "iss"
			// (encoding/json matches names case-insensitively).
			return fail(ErrUnknownIssuer, err)
		}
		if _, ok := claims["aud"]; !ok && len(i.audiences) > 0 {
			return fail(ErrAudience, "no aud claim")
		}
		return fail(ErrClaims, err)
	}
	return fail(ErrClaims, err)
}
