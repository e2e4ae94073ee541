// Package basicauth creates consumers' basic-auth passwords and the slow
// hashes that stand for them everywhere after creation: the control plane
// stores only the bcrypt hash, data planes receive only the hash and check
// a request's password against it. The admin API never returns the hash
// either: unlike an API key's SHA-256 (a 256-bit random secret cannot be
// guessed), a password chosen by a person can be guessed offline from its
// hash, and bcrypt only makes each guess expensive.
//
// The rules a username, a password and a stored hash must meet live in
// shared/config (BasicUsernameProblem, BasicPasswordProblem,
// BasicHashProblem), with the control plane's other validation.
package basicauth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// Cost is the bcrypt cost of the hashes the control plane makes: 2^10
// rounds, about 50-80 ms of one core here, OWASP's minimum for bcrypt.
// The data plane accepts costs between config.MinBcryptCost and
// config.MaxBcryptCost, so that an imported hash cannot make one check
// cost seconds.
const Cost = 10

// NewPassword returns a generated password: 24 random bytes, base64url
// (32 characters, 192 bits), for a credential created without one.
func NewPassword() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// NewID returns a credential id ("basic-" and 12 hex digits).
func NewID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate credential id: %w", err)
	}
	return "basic-" + hex.EncodeToString(b[:]), nil
}

// Hash returns the bcrypt hash of password at Cost. The caller has checked
// the password (config.BasicPasswordProblem: at most 72 bytes, bcrypt's
// limit, so nothing is silently cut off).
func Hash(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), Cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}
