package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/shared/config"
)

const (
	fuzzRSIss    = "https://rs.example"
	fuzzHSIss    = "https://hs.example"
	fuzzHSSecret = "fuzz-secret-0123456789abcdef-0123456789"
)

var fuzzSentinels = []error{
	auth.ErrMissing, auth.ErrMalformed, auth.ErrUnknownIssuer, auth.ErrIssuerNotAllowed,
	auth.ErrAlgorithm, auth.ErrUnknownKey, auth.ErrSignature, auth.ErrExpired,
	auth.ErrNotYetValid, auth.ErrAudience, auth.ErrClaims, auth.ErrInvalidKey,
}

// FuzzJWTHeader feeds tokens with hostile headers and payloads to a Verifier
// holding an RS256 and an HS256 issuer. Nothing the fuzzer writes carries a
// valid signature (the RSA private key is thrown away; the HMAC secret never
// reaches the fuzzer), so every token must be refused, with exactly one
// sentinel, and without a panic.
func FuzzJWTHeader(f *testing.F) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	rsPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	issuers := map[string]*auth.Issuer{}
	for _, spec := range []config.Issuer{
		{Name: "rs", Issuer: fuzzRSIss, Algorithms: []string{"RS256"}, Keys: []string{rsPEM}, Audiences: []string{"api"}},
		{Name: "hs", Issuer: fuzzHSIss, Algorithms: []string{"HS256"}, Keys: []string{fuzzHSSecret}},
	} {
		is, err := auth.NewIssuer(context.Background(), &spec, auth.IssuerOptions{})
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(is.Close)
		issuers[spec.Name] = is
	}
	v := auth.NewVerifier(issuers, []config.Consumer{{Name: "alice"}})

	// Well-formed tokens signed with the wrong keys, whole (raw).
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		m   jwt.SigningMethod
		key any
		iss string
	}{
		{jwt.SigningMethodRS256, otherRSA, fuzzRSIss},
		{jwt.SigningMethodHS256, []byte("not-the-secret"), fuzzHSIss},
		// Key confusion: the RS issuer's public key used as an HMAC secret.
		{jwt.SigningMethodHS256, []byte(rsPEM), fuzzRSIss},
		{jwt.SigningMethodRS256, otherRSA, fuzzHSIss},
	} {
		tok, err := jwt.NewWithClaims(tc.m, jwt.MapClaims{"iss": tc.iss, "sub": "alice", "aud": "api", "exp": exp}).SignedString(tc.key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok, "", "", true)
	}
	for _, raw := range []string{"", ".", "..", "a.b.c", "a.b.c.d", "Bearer x.y.z", "\x00.\x00.\x00"} {
		f.Add(raw, "", "", true)
	}
	// Crafted headers and payloads, base64url-encoded by the target.
	for _, s := range []struct{ hdr, payload, sig string }{
		{`{"alg":"RS256","typ":"JWT"}`, `{"iss":"https://rs.example","sub":"alice","aud":"api","exp":9999999999}`, "c2ln"},
		{`{"alg":"HS256","typ":"JWT"}`, `{"iss":"https://hs.example","sub":"alice","exp":9999999999}`, ""},
		{`{"alg":"none"}`, `{"iss":"https://hs.example","exp":9999999999}`, ""},
		{`{"alg":"NONE","typ":"JWT"}`, `{"iss":"https://rs.example","exp":9999999999}`, ""},
		{`{"alg":"HS256","kid":{"x":[1,{"y":null}]}}`, `{"iss":"https://hs.example","exp":9999999999}`, "AAAA"},
		{`{"alg":"HS256","kid":"../../etc/passwd"}`, `{"iss":"https://hs.example","exp":9999999999}`, "AAAA"},
		{`{"alg":"RS256","crit":["exp"],"exp":1}`, `{"iss":"https://rs.example","exp":9999999999}`, "AAAA"},
		{`{"alg":"RS256","crit":[]}`, `{"iss":"https://rs.example","exp":9999999999}`, "AAAA"},
		{`{"alg":["RS256"],"typ":{"a":1}}`, `{"iss":"https://rs.example","exp":9999999999}`, "AAAA"},
		{`{"alg":"HS256","typ":1e999}`, `{"iss":"https://hs.example","exp":1e999}`, "AAAA"},
		{`{"alg":"HS256"}`, `{"iss":"https://hs.example","exp":123456789012345678901234567890,"nbf":-1e308}`, "AAAA"},
		{`{"alg":"HS256"}`, `{"iss":"https://hs.example","exp":"9999999999","iat":true}`, "AAAA"},
		{`{"alg":"RS256","jku":"http://127.0.0.1:1/jwks","x5u":"http://127.0.0.1:1/"}`, `{"iss":"https://rs.example","exp":9999999999}`, "AAAA"},
		{`{"alg":"RS256","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}`, `{"iss":"https://rs.example","exp":9999999999}`, "AAAA"},
		{`{"alg":"ES256"}`, `{"iss":"https://rs.example","exp":9999999999}`, "AAAA"},
		{`{"alg":"HS256","alg":"none"}`, `{"iss":"https://hs.example","iss":"https://rs.example","exp":9999999999}`, ""},
		{`{"alg":"HS256"}`, `{"ISS":"https://hs.example","exp":9999999999}`, "AAAA"},
		{`{"alg":"HS256"}`, `{"iss":["https://hs.example"],"exp":9999999999}`, "AAAA"},
		{`[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`, `{"iss":"https://hs.example","a":{"b":{"c":{"d":[[[[[]]]]]}}}}`, "AAAA"},
		{`{"alg":"HS256"}`, `{"iss":"https://hs.example\u0000","exp":9999999999}`, "AAAA"},
		{`{"alg":"HS256"} `, ` {"iss":"https://hs.example","exp":9999999999}`, "!!"},
	} {
		f.Add(s.hdr, s.payload, s.sig, false)
	}
	f.Fuzz(func(t *testing.T, hdr, payload, sig string, raw bool) {
		token := hdr
		if !raw {
			token = base64.RawURLEncoding.EncodeToString([]byte(hdr)) + "." +
				base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + sig
		}
		for _, allowed := range [][]string{nil, {"rs"}, {"hs"}} {
			id, err := v.VerifyJWT(context.Background(), token, allowed)
			if id != nil || err == nil {
				t.Fatalf("token %q accepted (allowed %v): %+v", token, allowed, id)
			}
			n := 0
			for _, s := range fuzzSentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("token %q: error %v matches %d sentinels, want exactly 1", token, err, n)
			}
			if auth.Reason(err) == "invalid" {
				t.Fatalf("token %q: error %v has no reason", token, err)
			}
		}
	})
}
