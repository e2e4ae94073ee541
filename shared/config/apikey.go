package config

import (
	"strings"

	"github.com/portico-gw/portico/shared/apikey"
)

// MinImportedKeyChars is the shortest random part of an imported API key:
// 43 base64url characters carry 256 bits, as much as a key Portico makes.
const MinImportedKeyChars = 43

// ValidateAPIKey checks a key an operator brings (POST
// /v1/consumers/{name}/api-keys with {"key": ...}, the compose stack's
// generated demo key): Portico's prefix, so the data plane recognises it and
// secret scanners do too, then at least 256 bits of base64url, and no
// longer than a data plane looks at. A weak key is refused here rather than
// stored as a hash nobody can judge any more.
func ValidateAPIKey(key string) error {
	rest, ok := strings.CutPrefix(key, apikey.KeyPrefix)
	switch {
	case !ok:
		return Invalid("key", "must start with pk_ (then at least %d base64url characters, e.g. pk_ followed by `openssl rand 32 | basenc --base64url`)", MinImportedKeyChars)
	case !apikey.LooksLikeKey(key):
		return Invalid("key", "must be at most 128 characters")
	case len(rest) < MinImportedKeyChars:
		return Invalid("key", "must have at least %d base64url characters after pk_ (256 random bits), has %d", MinImportedKeyChars, len(rest))
	case strings.TrimLeft(rest, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "":
		return Invalid("key", "may only contain base64url characters (A-Z a-z 0-9 - _) after pk_")
	}
	return nil
}
