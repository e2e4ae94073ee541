package auth

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
	"github.com/golang-jwt/jwt/v5"
)

// keyEntry is one verification key with the metadata that restricts it.
type keyEntry struct {
	kid string
	// alg, when the JWK names one, is the only algorithm the key may verify.
	alg string
	key any
}

// usable reports whether e may verify a token signed with alg.
func (e *keyEntry) usable(alg string) bool {
	return (e.alg == "" || e.alg == alg) && fits(alg, e.key)
}

// fits reports whether key is of the type and size alg needs. jwt/v5 checks
// the Go type but not the ECDSA curve, and a P-384 key accepting "ES256"
// signatures is exactly the kind of cross-algorithm use pinning must prevent.
func fits(alg string, key any) bool {
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

// selectKey returns what jwt/v5 should verify with: one key, or a
// VerificationKeySet that it tries in turn.
func selectKey(entries []keyEntry, alg, kid string) (any, error) {
	var c collector
	if kid != "" {
		named := false
		for i := range entries {
			if entries[i].kid == kid {
				named = true
				if entries[i].usable(alg) {
					c.add(entries[i].key)
				}
			}
		}
		// A key that carries the kid is the only one the issuer meant; if it
		// does not fit alg, trying others would defeat the kid.
		if named {
			if c.n == 0 {
				return nil, fail(ErrUnknownKey, "key "+quoteKID(kid)+" does not fit "+alg)
			}
			return c.result(), nil
		}
	}
	for i := range entries {
		// A key without a kid may be the one a kid-bearing token names (a PEM
		// key has no kid), so it stays a candidate; a key with another kid
		// does not.
		if (kid == "" || entries[i].kid == "") && entries[i].usable(alg) {
			c.add(entries[i].key)
		}
	}
	if c.n == 0 {
		if kid != "" {
			return nil, fail(ErrUnknownKey, "no key "+quoteKID(kid)+" for "+alg)
		}
		return nil, fail(ErrUnknownKey, "no key for "+alg)
	}
	return c.result(), nil
}

// collector avoids allocating a key set in the common one-key case.
type collector struct {
	n     int
	first any
	set   []jwt.VerificationKey
}

func (c *collector) add(k any) {
	switch c.n {
	case 0:
		c.first = k
	case 1:
		c.set = append(c.set, c.first, k)
	default:
		c.set = append(c.set, k)
	}
	c.n++
}

func (c *collector) result() any {
	if c.n == 1 {
		return c.first
	}
	return jwt.VerificationKeySet{Keys: c.set}
}

// parseInlineKeys turns an issuer's configured keys into entries. For an
// HMAC issuer every key is a secret, whatever it looks like: a secret that
// happens to start with "{" is still a secret. For a public-key issuer no key
// is ever a secret, so a public key can never become an HMAC key.
func parseInlineKeys(keys, algs []string, hmac bool) ([]keyEntry, error) {
	entries := make([]keyEntry, 0, len(keys))
	for i, k := range keys {
		var e keyEntry
		if hmac {
			if len(k) < 32 {
				return nil, fmt.Errorf("keys[%d]: an HMAC secret must be at least 32 bytes", i)
			}
			e = keyEntry{key: []byte(k)}
		} else {
			var err error
			e, err = parsePublicKey(strings.TrimSpace(k))
			if err != nil {
				// err never quotes the key: keys[i] may be a secret pasted
				// into the wrong issuer.
				return nil, fmt.Errorf("keys[%d]: %w", i, err)
			}
		}
		if !slices.ContainsFunc(algs, e.usable) {
			return nil, fmt.Errorf("keys[%d]: a %s fits none of the issuer's algorithms %v", i, describeKey(e.key), algs)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func parsePublicKey(s string) (keyEntry, error) {
	switch {
	case strings.HasPrefix(s, "-----BEGIN"):
		k, err := parsePEM(s)
		return keyEntry{key: k}, err
	case strings.HasPrefix(s, "{"):
		return parseJWK(s)
	}
	return keyEntry{}, errors.New("not a PEM public key, certificate or JWK")
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

func parseJWK(s string) (keyEntry, error) {
	// Checked on the raw JSON because jwkset, asked for public material only,
	// would silently drop "d" and accept a private key.
	var secret struct {
		D string `json:"d"`
		K string `json:"k"`
	}
	if err := json.Unmarshal([]byte(s), &secret); err != nil {
		return keyEntry{}, errors.New("invalid JWK JSON")
	}
	if secret.D != "" || secret.K != "" {
		return keyEntry{}, errors.New("JWK carries private or symmetric key material; configure a public key")
	}
	j, err := jwkset.NewJWKFromRawJSON(json.RawMessage(s), jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return keyEntry{}, fmt.Errorf("invalid JWK: %w", err)
	}
	e, ok := entryFromJWK(j)
	if !ok {
		return keyEntry{}, errors.New("JWK is not a signature verification key")
	}
	return e, nil
}

// entryFromJWK keeps only keys meant for verifying signatures: JWKS documents
// often mix in encryption keys, and a symmetric key from a URL would let
// whoever controls that URL mint HMAC tokens.
func entryFromJWK(j jwkset.JWK) (keyEntry, bool) {
	m := j.Marshal()
	if m.USE == jwkset.UseEnc || m.KTY == jwkset.KtyOct {
		return keyEntry{}, false
	}
	if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return keyEntry{}, false
	}
	key := j.Key()
	// A JWKS may publish a private JWK by mistake; verify with its public half.
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public()
	}
	return keyEntry{kid: m.KID, alg: m.ALG.String(), key: key}, true
}

func describeKey(k any) string {
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
