package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
)

// MaxTokenBytes bounds a bearer token. Real tokens are well under 2 KiB; the
// bound is checked before any decoding.
const MaxTokenBytes = 8 << 10

// Identity methods.
const (
	MethodJWT    = "jwt"
	MethodAPIKey = "api_key"
	MethodBasic  = "basic"
)

// Identity is a verified caller (the type the request path carries, see
// package stage). It is shared by every request that sends the same token
// (see cache.go) and must not be modified.
type Identity = stage.Identity

type consumer struct {
	name   string
	groups []string
	// issuers may name this consumer in a JWT (config jwt_issuers).
	issuers []string
}

// Verifier holds every issuer and the API-key index of one configuration
// revision. It is immutable and safe for concurrent use.
type Verifier struct {
	// byIss maps an "iss" value to the issuer objects that trust it, sorted
	// by name so that the choice among several is deterministic.
	byIss     map[string][]*Issuer
	consumers map[string]*consumer
	// apiKeys maps a key's hash to its consumer; nil marks a hash that two
	// consumers claim, which authenticates neither.
	apiKeys map[string]*consumer
	tokens  tokenCache
	// basic maps a username to its credential (basic.go); nil marks one
	// two consumers claim.
	basic        map[string]*basicUser
	basicChecker *BasicChecker // nil: DefaultBasicChecker
	// certIDs maps a client certificate identity (clientcert.go) to its
	// consumer; nil marks one two consumers claim.
	certIDs map[string]*Identity
	// introspecting are the issuers with an introspection endpoint, by
	// name (introspect.go).
	introspecting []*Issuer
	// oidcIssuers are the issuers with an oidc block, by name (oidc.go).
	oidcIssuers map[string]*Issuer
}

// VerifierOption configures NewVerifier.
type VerifierOption func(*Verifier)

// WithBasicChecker checks passwords with b instead of the process's
// DefaultBasicChecker (tests, benchmarks).
func WithBasicChecker(b *BasicChecker) VerifierOption {
	return func(v *Verifier) { v.basicChecker = b }
}

// NewVerifier indexes issuers (keyed by name; nil values are skipped) and the
// consumers' API keys. The Verifier does not own the issuers: closing them
// is the caller's, once no Verifier uses them.
func NewVerifier(issuers map[string]*Issuer, consumers []config.Consumer, opts ...VerifierOption) *Verifier {
	v := &Verifier{
		byIss:     make(map[string][]*Issuer, len(issuers)),
		consumers: make(map[string]*consumer, len(consumers)),
		apiKeys:   make(map[string]*consumer),
		basic:     make(map[string]*basicUser),
		certIDs:   make(map[string]*Identity),
	}
	for _, o := range opts {
		o(v)
	}
	for _, is := range issuers {
		if is != nil {
			v.byIss[is.iss] = append(v.byIss[is.iss], is)
		}
	}
	v.introspecting, v.oidcIssuers = introspectingIssuers(issuers), oidcIssuers(issuers)
	for _, list := range v.byIss {
		slices.SortFunc(list, func(a, b *Issuer) int { return strings.Compare(a.name, b.name) })
	}
	for i := range consumers {
		c := &consumer{name: consumers[i].Name, groups: slices.Clone(consumers[i].Groups), issuers: slices.Clone(consumers[i].JWTIssuers)}
		v.consumers[c.name] = c
		for _, k := range consumers[i].APIKeys {
			if other, dup := v.apiKeys[k.Hash]; dup && (other == nil || other.name != c.name) {
				// Cannot happen with keys from apikey.New; if a snapshot says
				// otherwise, refusing the key beats guessing its owner.
				v.apiKeys[k.Hash] = nil
				continue
			}
			v.apiKeys[k.Hash] = c
		}
		v.indexBasic(c, consumers[i].BasicAuth)
		v.indexCertIdentities(c, consumers[i].CertIdentities)
	}
	return v
}

// VerifyJWT checks a bearer token (without the "Bearer " prefix). allowed
// lists the issuer names a route accepts; empty means any.
func (v *Verifier) VerifyJWT(ctx context.Context, token string, allowed []string) (*Identity, error) {
	if token == "" {
		return nil, ErrMissing
	}
	if len(token) > MaxTokenBytes {
		return nil, fail(ErrMalformed, "token larger than 8 KiB")
	}
	if id, ok := v.tokens.get(token); ok && (len(allowed) == 0 || slices.Contains(allowed, id.Issuer)) {
		return id, nil
	}
	iss, err := peekIssuer(token)
	if err != nil {
		return nil, err
	}
	candidates := v.byIss[iss]
	if len(candidates) == 0 {
		return nil, ErrUnknownIssuer
	}
	var best error
	for _, is := range candidates {
		if len(allowed) > 0 && !slices.Contains(allowed, is.name) {
			continue
		}
		keys := is.keys.version() // before verifying: a set fetched meanwhile must win
		claims, err := is.verify(ctx, token)
		if err != nil {
			// Report the candidate that got furthest: "expired" from the
			// issuer whose key verified says more than "signature" from one
			// whose key did not.
			if best == nil || (signatureLevel(best) && !signatureLevel(err)) {
				best = err
			}
			continue
		}
		id := v.identity(is, claims, MethodJWT)
		var exp time.Time
		if e, err := claims.GetExpirationTime(); err == nil && e != nil {
			exp = e.Time
		}
		v.tokens.put(token, id, is, exp, keys)
		return id, nil
	}
	if best == nil {
		return nil, ErrIssuerNotAllowed
	}
	return nil, best
}

// signatureLevel reports a failure before the signature was verified.
func signatureLevel(err error) bool {
	return errors.Is(err, ErrSignature) || errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrAlgorithm)
}

// peekIssuer reads "iss" from the unverified payload. Only the choice of
// issuer depends on it, and that issuer's parser then requires the verified
// iss to be equal.
func peekIssuer(token string) (string, error) {
	_, rest, ok1 := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return "", fail(ErrMalformed, "not a JWS compact token")
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return "", fail(ErrMalformed, "payload is not base64url")
	}
	var p struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", fail(ErrMalformed, "payload is not a JSON object with a string iss")
	}
	if p.Iss == "" {
		return "", fail(ErrUnknownIssuer, "no iss claim")
	}
	return p.Iss, nil
}

func (v *Verifier) identity(is *Issuer, claims jwt.MapClaims, method string) *Identity {
	id := &Identity{
		Method: method,
		Issuer: is.name,
		Claims: claims,
		Scopes: scopes(claims),
	}
	// A token names a consumer only if the consumer trusts its issuer:
	// otherwise any issuer could mint "sub": "admin" and inherit the
	// groups of the consumer of that name.
	if name, ok := claims[is.consumerClaim].(string); ok {
		if c := v.consumers[name]; c != nil && slices.Contains(c.issuers, is.name) {
			id.Consumer = c.name
			id.Groups = slices.Clone(c.groups)
		}
	}
	return id
}

// scopes prefers "scope" (RFC 8693, RFC 9068) and uses "scp" only without
// it: a union would let a token grant more than either claim says. Entries
// of the wrong type are dropped, which can only grant less.
func scopes(claims jwt.MapClaims) []string {
	if s, ok := claims["scope"]; ok {
		str, _ := s.(string)
		return strings.Fields(str)
	}
	switch s := claims["scp"].(type) {
	case string:
		return strings.Fields(s)
	case []any:
		out := make([]string, 0, len(s))
		for _, e := range s {
			if str, ok := e.(string); ok && str != "" {
				out = append(out, str)
			}
		}
		return out
	}
	return nil
}

// VerifyAPIKey looks a key up by its hash.
func (v *Verifier) VerifyAPIKey(key string) (*Identity, error) {
	if key == "" {
		return nil, ErrMissing
	}
	if !apikey.LooksLikeKey(key) {
		return nil, ErrMalformed
	}
	// A plain map lookup, not a constant-time compare: what it compares is
	// the SHA-256 of the presented key, which the caller controls only
	// through a preimage-resistant hash. Timing can at most reveal how a
	// digest of the attacker's own choosing relates to stored digests, which
	// gives no way to steer the next guess toward a stored key.
	c := v.apiKeys[apikey.Hash(key)]
	if c == nil {
		return nil, ErrInvalidKey
	}
	return &Identity{Consumer: c.name, Groups: slices.Clone(c.groups), Method: MethodAPIKey}, nil
}
