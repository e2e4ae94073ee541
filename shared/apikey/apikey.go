// Package apikey creates consumer API keys and the hashes that stand for
// them everywhere after creation: the control plane stores only the hash, data
// planes receive only the hash, and a request's key is hashed to look it up.
// A leaked store or snapshot therefore leaks no usable key.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// KeyPrefix marks Portico keys, so a leaked one is recognisable by secret
// scanners and in support tickets.
const KeyPrefix = "pk_"

// New returns a fresh key (shown to the operator once), its id and its hash.
// 32 random bytes: the key is as strong as a 256-bit secret, so an
// unsalted fast hash is sound (there is nothing to brute-force).
func New() (key, id, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", "", fmt.Errorf("generate api key: %w", err)
	}
	var idb [6]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", "", fmt.Errorf("generate api key id: %w", err)
	}
	key = KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, "key-" + hex.EncodeToString(idb[:]), Hash(key), nil
}

// Hash returns "sha256:<hex>" of key.
func Hash(key string) string {
	h := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(h[:])
}

// Prefix returns the visible start of a key for listings ("pk_AbCd…").
func Prefix(key string) string {
	n := min(len(key), len(KeyPrefix)+4)
	return key[:n]
}

// LooksLikeKey is a cheap check before hashing a header value.
func LooksLikeKey(s string) bool {
	return strings.HasPrefix(s, KeyPrefix) && len(s) <= 128
}
