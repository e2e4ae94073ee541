package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
)

func BenchmarkVerifyJWT(b *testing.B) {
	k := keys()
	v := inlineVerifier(b)
	// Real-clock tokens would expire mid-run on a slow machine; the
	// verifier's clock is fixed, so these stay valid.
	rsaClaims := claims(rsaIss, set("aud", "api://portico"), set("scope", "read write"))
	cases := []struct {
		name  string
		token string
	}{
		{"RS256", sign(b, jwt.SigningMethodRS256, k.rsa, "", rsaClaims)},
		{"ES256", sign(b, jwt.SigningMethodES256, k.ec256, "ec256", claims(ecIss))},
		{"HS256", sign(b, jwt.SigningMethodHS256, []byte(hmacSecret), "", claims(hsIss))},
		{"EdDSA", sign(b, jwt.SigningMethodEdDSA, k.ed, "ed1", claims(edIss))},
	}
	// The JWKS path reads the cached set on every request; this shows its
	// cost next to the inline RS256 case.
	srv := newJWKSServer(b, jwkMarshal(b, &k.rsa.PublicKey, "r1", ""), jwkMarshal(b, &k.ec256.PublicKey, "e1", ""))
	jv, _ := jwksVerifier(b, srv.URL, auth.IssuerOptions{})
	jwksToken := sign(b, jwt.SigningMethodRS256, k.rsa, "r1", realClaims())

	ctx := context.Background()
	b.Run("RS256_JWKS", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jv.VerifyJWT(ctx, jwksToken, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.VerifyJWT(ctx, c.token, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerifyAPIKey(b *testing.B) {
	consumers := make([]config.Consumer, 1000)
	var key string
	for i := range consumers {
		k, id, hash, err := apikey.New()
		if err != nil {
			b.Fatal(err)
		}
		consumers[i] = config.Consumer{Name: id, Groups: []string{"g"}, APIKeys: []config.APIKey{{ID: id, Hash: hash, CreatedAt: time.Now()}}}
		key = k
	}
	v := auth.NewVerifier(nil, consumers)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyAPIKey(key); err != nil {
			b.Fatal(err)
		}
	}
}
