package auth_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// freshClaims are valid claims with a unique jti: every token signed from
// them is new, so the token cache never answers for it.
func freshClaims(t *testing.T) jwt.MapClaims {
	c := realClaims()
	c["jti"] = rand.Text()
	c["iat"] = time.Now().Unix()
	return c
}

// TestJWKSKeyWithdrawn: a key the identity provider withdraws from its
// JWKS stops verifying tokens (new ones, and ones remembered as verified)
// once the set is fetched again, on the
// issuer's schedule (jwks_refresh, set in the issuer's configuration as a
// user sets it) or sooner when the JWKS response's Cache-Control max-age
// says so. The unknown-kid refresh cannot help here (the withdrawn kid is
// still in the cached set), and is set out of reach.
func TestJWKSKeyWithdrawn(t *testing.T) {
	tests := []struct {
		name         string
		refresh      time.Duration // the issuer's jwks_refresh
		cacheControl string        // the JWKS response's
	}{
		{"on the configured schedule", time.Second, ""},
		{"sooner, as Cache-Control max-age says", time.Hour, "public, max-age=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := keys()
			srv := newJWKSServer(t, jwkMarshal(t, &k.ec256.PublicKey, "old", ""), jwkMarshal(t, &k.ec256b.PublicKey, "new", ""))
			srv.mu.Lock()
			srv.cacheControl = tt.cacheControl
			srv.mu.Unlock()
			is := newIssuer(t, config.Issuer{Name: "idp", Issuer: jwksIss, Algorithms: []string{"ES256"}, JWKSURL: srv.URL,
				JWKSRefresh: config.Duration(tt.refresh)}, auth.IssuerOptions{RefreshUnknownKIDRate: time.Hour})
			v := auth.NewVerifier(map[string]*auth.Issuer{"idp": is}, testConsumers)
			ctx := context.Background()
			// A token verified before the withdrawal, and so remembered.
			remembered := sign(t, jwt.SigningMethodES256, k.ec256, "old", freshClaims(t))
			for range 2 {
				if _, err := v.VerifyJWT(ctx, remembered, nil); err != nil {
					t.Fatal(err)
				}
			}
			for _, kid := range []string{"old", "new"} {
				key := k.ec256
				if kid == "new" {
					key = k.ec256b
				}
				if _, err := v.VerifyJWT(ctx, sign(t, jwt.SigningMethodES256, key, kid, freshClaims(t)), nil); err != nil {
					t.Fatalf("before the withdrawal, kid %s: %v", kid, err)
				}
			}

			srv.serve(t, jwkMarshal(t, &k.ec256b.PublicKey, "new", "")) // "old" withdrawn
			testutil.Eventually(t, 15*time.Second, func() bool {
				_, err := v.VerifyJWT(ctx, sign(t, jwt.SigningMethodES256, k.ec256, "old", freshClaims(t)), nil)
				return errors.Is(err, auth.ErrUnknownKey)
			}, "a new token signed with the withdrawn key refused")
			if _, err := v.VerifyJWT(ctx, sign(t, jwt.SigningMethodES256, k.ec256b, "new", freshClaims(t)), nil); err != nil {
				t.Fatalf("the key still published: %v", err)
			}
			// The token cache does not outlive the key set either.
			if _, err := v.VerifyJWT(ctx, remembered, nil); !errors.Is(err, auth.ErrUnknownKey) {
				t.Fatalf("a token remembered from before the withdrawal: %v, want unknown key", err)
			}
		})
	}
}

// TestJWKSRefreshValidation: jwks_refresh is bounded and only applies to a
// JWKS issuer.
func TestJWKSRefreshValidation(t *testing.T) {
	tests := []struct {
		name string
		spec config.Issuer
		ok   bool
	}{
		{"default", config.Issuer{JWKSURL: "https://id.example/jwks"}, true},
		{"1s", config.Issuer{JWKSURL: "https://id.example/jwks", JWKSRefresh: config.Duration(time.Second)}, true},
		{"1h", config.Issuer{JWKSURL: "https://id.example/jwks", JWKSRefresh: config.Duration(time.Hour)}, true},
		{"too short", config.Issuer{JWKSURL: "https://id.example/jwks", JWKSRefresh: config.Duration(time.Millisecond)}, false},
		{"too long", config.Issuer{JWKSURL: "https://id.example/jwks", JWKSRefresh: config.Duration(2 * time.Hour)}, false},
		{"without jwks_url", config.Issuer{Keys: []string{hmacSecret}, JWKSRefresh: config.Duration(time.Minute)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.Name, spec.Issuer, spec.Algorithms = "idp", jwksIss, []string{"ES256"}
			if len(spec.Keys) > 0 {
				spec.Algorithms = []string{"HS256"}
			}
			err := spec.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && config.FieldErrors(err)[0].Field != "jwks_refresh" {
				t.Errorf("error names %v, want jwks_refresh", config.FieldErrors(err))
			}
		})
	}
}
