package jwtkey

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func pemBlock(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// TestParse: which inline keys an issuer with given algorithms accepts.
// The control plane refuses at write time exactly what the data plane
// cannot load, because both call Parse.
func TestParse(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	pkix := func(k any) string {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemBlock("PUBLIC KEY", der)
	}
	privDER, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	const secret = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name    string
		key     string
		algs    []string
		hmac    bool
		wantErr string // "" for success
	}{
		{"RSA PEM for RS256", pkix(&rk.PublicKey), []string{"RS256"}, false, ""},
		{"PKCS#1 PEM for PS256", pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rk.PublicKey)), []string{"PS256"}, false, ""},
		{"EC P-256 for ES256", pkix(&ek.PublicKey), []string{"ES256"}, false, ""},
		{"EC P-256 for ES384 only", pkix(&ek.PublicKey), []string{"ES384"}, false, "fits none"},
		{"Ed25519 JWK", `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`, []string{"EdDSA"}, false, ""},
		{"JWK pinned to another alg", `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"ES256"}`, []string{"EdDSA"}, false, "fits none"},
		{"Ed25519 PEM for RS256", pkix(edPub), []string{"RS256"}, false, "fits none"},
		{"not a key", "not a key", []string{"RS256"}, false, "not a PEM"},
		{"private key PEM", pemBlock("PRIVATE KEY", privDER), []string{"EdDSA"}, false, "private key"},
		{"two PEM blocks", pkix(&rk.PublicKey) + pkix(&ek.PublicKey), []string{"RS256"}, false, "more than one"},
		{"broken PEM body", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", []string{"RS256"}, false, "PUBLIC KEY"},
		{"private JWK", `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}`, []string{"EdDSA"}, false, "private"},
		{"symmetric JWK", `{"kty":"oct","k":"c2VjcmV0"}`, []string{"RS256"}, false, "symmetric"},
		{"invalid JWK JSON", "{", []string{"RS256"}, false, "JSON"},
		{"HMAC secret", secret, []string{"HS256"}, true, ""},
		{"HMAC secret that looks like a JWK is a secret", `{"kty":"oct","k":"c2VjcmV0"}` + secret, []string{"HS256"}, true, ""},
		{"short HMAC secret", "short", []string{"HS256"}, true, "at least 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := Parse(tt.key, tt.algs, tt.hmac)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if !Fits(tt.algs[0], k.Key) {
					t.Fatalf("parsed %s does not fit %s", Describe(k.Key), tt.algs[0])
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse = %v; want an error containing %q", err, tt.wantErr)
			}
			if len(tt.key) > 16 && strings.Contains(err.Error(), tt.key) {
				t.Fatalf("the error quotes the key: %v", err)
			}
		})
	}
	_, err = ParseAll([]string{secret, "short"}, []string{"HS256"}, true)
	var ie *IndexError
	if !errors.As(err, &ie) || ie.Index != 1 {
		t.Fatalf("ParseAll = %v; want an IndexError on entry 1", err)
	}
}
