package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// Session cookies are sealed, not signed: AES-256-GCM under the issuer's
// session key (the same on every data plane: the control plane generates
// it and ships it in the snapshot), so a cookie is both secret (the refresh
// token and the claims inside are unreadable to the browser and to anyone
// who copies the cookie's value from a log) and authenticated (a changed
// byte fails to open). The cookie's purpose and name are the additional
// data: a login-flow cookie cannot be replayed as a session, nor one
// issuer's session as another's. The value is "v1." + base64url(nonce ||
// ciphertext); a random 96-bit nonce per seal (GCM's limit of 2^32 seals
// per key is far beyond what a session key sees between rotations).
//
// Bounded size: a sealed value over maxCookieValue is refused when sealing
// (the caller drops what it can, see oidc.go) and when opening, before any
// decoding, so a client cannot make the gateway decode megabytes.

// maxCookieValue bounds a sealed cookie value: browsers keep at most about
// 4096 bytes per cookie, name and attributes included.
const maxCookieValue = 3800

const sealPrefix = "v1."

var (
	errCookieTooLarge = errors.New("auth: sealed cookie larger than 3800 bytes")
	errCookieInvalid  = errors.New("auth: cookie does not open")
)

type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// seal encodes v as JSON and seals it for the cookie named name.
func (s *sealer) seal(name string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	n := s.aead.NonceSize()
	if base64.RawURLEncoding.EncodedLen(n+len(plain)+s.aead.Overhead())+len(sealPrefix) > maxCookieValue {
		return "", errCookieTooLarge
	}
	buf := make([]byte, n, n+len(plain)+s.aead.Overhead())
	_, _ = rand.Read(buf) // never fails (crypto/rand since Go 1.24)
	buf = s.aead.Seal(buf, buf[:n], plain, []byte(name))
	return sealPrefix + base64.RawURLEncoding.EncodeToString(buf), nil
}

// open reverses seal; any change to the value, or a value sealed for
// another name or with another key, is errCookieInvalid.
func (s *sealer) open(name, value string, v any) error {
	if len(value) > maxCookieValue {
		return errCookieTooLarge
	}
	rest, ok := strings.CutPrefix(value, sealPrefix)
	if !ok {
		return errCookieInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	n := s.aead.NonceSize()
	if err != nil || len(raw) < n+s.aead.Overhead() {
		return errCookieInvalid
	}
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(name))
	if err != nil {
		return errCookieInvalid
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return errCookieInvalid
	}
	return nil
}
