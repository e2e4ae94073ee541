// Package jwtkey parses the keys of a JWT issuer: PEM public keys and
// certificates, JWKs, and HMAC secrets. It is the one definition of "a key
// the gateway can verify with": the control plane validates an issuer's keys
// with it at write time and the data plane compiles them with it, so a key
// the control plane accepts is a key every data plane can load.
//
// The rules:
//
//   - For an HMAC issuer every key is a secret of at least MinHMACSecret
//     bytes, whatever it looks like: a secret that happens to start with "{"
//     is still a secret.
//   - For a public-key issuer no key is ever a secret, so a public key can
//     never become an HMAC key (key confusion). A key is a PEM "PUBLIC KEY",
//     "RSA PUBLIC KEY" or "CERTIFICATE" block (one block per entry), or a JWK
//     without private ("d") or symmetric ("k") material.
//   - A key must fit at least one of the issuer's algorithms: RSA for
//     RS*/PS*, ECDSA on the matching curve for ES256/384/512, Ed25519 for
//     EdDSA. A JWK that names an "alg" may verify only that algorithm.
//   - Errors never quote the key: it may be a secret pasted into the wrong
//     issuer.
package jwtkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/MicahParks/jwkset"
)

// MinHMACSecret is the least length of an HMAC secret, in bytes.
const MinHMACSecret = 32

// Key is one verification key with the metadata that restricts it.
type Key struct {
	// KID is the JWK's key id ("" for PEM keys and secrets).
	KID string
	// Alg, when the JWK names one, is the only algorithm the key may verify.
	Alg string
	// Key is *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte.
	Key any
}

// Usable reports whether k may verify a token signed with alg.
func (k *Key) Usable(alg string) bool {
	return (k.Alg == "" || k.Alg == alg) && Fits(alg, k.Key)
}

// Fits reports whether key is of the type and size alg needs. jwt/v5 checks
// the Go type but not the ECDSA curve, and a P-384 key accepting "ES256"
// signatures is exactly the kind of cross-algorithm use pinning must prevent.
func Fits(alg string, key any) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		_, ok := key.(*rsa.PublicKey)
		return ok
	case "ES256", "ES384", "ES512":
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve != nil && k.Curve.Params().Name == curveOf[alg]
	case "EdDSA":
		k, ok := key.(ed25519.PublicKey)
		return ok && len(k) == ed25519.PublicKeySize
	case "HS256", "HS384", "HS512":
		_, ok := key.([]byte)
		return ok
	}
	return false
}

var curveOf = map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}

// IndexError says which entry of an issuer's keys failed.
type IndexError struct {
	Index int
	Err   error
}

func (e *IndexError) Error() string { return fmt.Sprintf("keys[%d]: %v", e.Index, e.Err) }

// Unwrap returns the cause.
func (e *IndexError) Unwrap() error { return e.Err }

// ParseAll parses an issuer's inline keys. hmac says whether the issuer's
// algorithms are HMAC ones (an issuer never mixes the two families). The
// error is an *IndexError naming the first entry that failed.
func ParseAll(keys, algs []string, hmac bool) ([]Key, error) {
	out := make([]Key, 0, len(keys))
	for i, k := range keys {
		e, err := Parse(k, algs, hmac)
		if err != nil {
			return nil, &IndexError{Index: i, Err: err}
		}
		out = append(out, e)
	}
	return out, nil
}

// Parse parses one inline key of an issuer with algorithms algs.
func Parse(k string, algs []string, hmac bool) (Key, error) {
	var e Key
	if hmac {
		if len(k) < MinHMACSecret {
			return Key{}, fmt.Errorf("an HMAC secret must be at least %d bytes", MinHMACSecret)
		}
		e = Key{Key: []byte(k)}
	} else {
		var err error
		if e, err = parsePublic(strings.TrimSpace(k)); err != nil {
			return Key{}, err
		}
	}
	if !slices.ContainsFunc(algs, e.Usable) {
		return Key{}, fmt.Errorf("a %s fits none of the issuer's algorithms %v", Describe(e.Key), algs)
	}
	return e, nil
}

func parsePublic(s string) (Key, error) {
	switch {
	case strings.HasPrefix(s, "-----BEGIN"):
		k, err := parsePEM(s)
		return Key{Key: k}, err
	case strings.HasPrefix(s, "{"):
		return parseJWK(s)
	}
	return Key{}, errors.New("not a PEM public key, certificate or JWK")
}

func parsePEM(s string) (any, error) {
	block, rest := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("invalid PEM")
	}
	// One key per entry keeps "which key is this" unambiguous; a pasted
	// chain or bundle is refused rather than half used.
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, errors.New("more than one PEM block; give one key per entry")
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PUBLIC KEY: %w", err)
		}
		return k, nil
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("RSA PUBLIC KEY: %w", err)
		}
		return k, nil
	case "CERTIFICATE":
		// The certificate only carries the key: its validity period and chain
		// are not checked, as identity providers publish long-expired
		// self-signed certificates for keys they still sign with.
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CERTIFICATE: %w", err)
		}
		return c.PublicKey, nil
	}
	if strings.Contains(block.Type, "PRIVATE") {
		return nil, errors.New("is a private key; configure its public key (private keys must not be shipped to gateways)")
	}
	return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
}

func parseJWK(s string) (Key, error) {
	// Checked on the raw JSON because jwkset, asked for public material only,
	// would silently drop "d" and accept a private key.
	var secret struct {
		D string `json:"d"`
		K string `json:"k"`
	}
	if err := json.Unmarshal([]byte(s), &secret); err != nil {
		return Key{}, errors.New("invalid JWK JSON")
	}
	if secret.D != "" || secret.K != "" {
		return Key{}, errors.New("JWK carries private or symmetric key material; configure a public key")
	}
	j, err := jwkset.NewJWKFromRawJSON(json.RawMessage(s), jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return Key{}, fmt.Errorf("invalid JWK: %w", err)
	}
	e, ok := FromJWK(j)
	if !ok {
		return Key{}, errors.New("JWK is not a signature verification key")
	}
	return e, nil
}

// FromJWK keeps only keys meant for verifying signatures: JWKS documents
// often mix in encryption keys, and a symmetric key from a URL would let
// whoever controls that URL mint HMAC tokens.
func FromJWK(j jwkset.JWK) (Key, bool) {
	m := j.Marshal()
	if m.USE == jwkset.UseEnc || m.KTY == jwkset.KtyOct {
		return Key{}, false
	}
	if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return Key{}, false
	}
	key := j.Key()
	// A JWKS may publish a private JWK by mistake; verify with its public half.
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public()
	}
	return Key{KID: m.KID, Alg: m.ALG.String(), Key: key}, true
}

// Describe names a key's type and size without revealing it.
func Describe(k any) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d key", k.N.BitLen())
	case *ecdsa.PublicKey:
		if k.Curve != nil {
			return "ECDSA " + k.Curve.Params().Name + " key"
		}
		return "ECDSA key"
	case ed25519.PublicKey:
		return "Ed25519 key"
	case []byte:
		return "secret"
	}
	return fmt.Sprintf("%T key", k)
}
