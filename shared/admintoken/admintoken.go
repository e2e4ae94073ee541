// Package admintoken defines Portico's scoped admin API tokens: what a token
// may do, how its secret is made, and the hash that stands for it.
//
// A token has a role and optionally a list of kinds and an expiry:
//
//   - read: every GET of the admin API except the token list;
//   - write: read, plus writes of configuration objects (services, routes,
//     consumers and their API keys, issuers, certificates, the global
//     section, a whole-configuration import, cache purges);
//   - admin: everything, including tokens and adopting a reset store.
//
// Kinds, when given (read and write tokens only), narrow the object
// endpoints to those kinds, reads included; endpoints that read or write
// the whole configuration at once then refuse the token. A token past its
// expiry is unknown (401), a known token asking for more than it has is
// forbidden (403).
//
// The secret is 32 random bytes: with 256 bits of entropy there is nothing
// to brute-force, so the store keeps a plain SHA-256 of it (a slow or
// salted hash defends low-entropy passwords, which these are not), and a
// request's token is hashed and looked up by that digest.
package admintoken

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// Role is what a token may do.
type Role string

// The roles, weakest first.
const (
	Read  Role = "read"
	Write Role = "write"
	Admin Role = "admin"
)

func (r Role) rank() int {
	switch r {
	case Read:
		return 1
	case Write:
		return 2
	case Admin:
		return 3
	}
	return 0
}

// Allows says whether a token of role r may do what needs role need.
func (r Role) Allows(need Role) bool { return r.rank() > 0 && r.rank() >= need.rank() }

// KindGlobal names the global section among the kinds a token may touch.
const KindGlobal config.Kind = "global"

// Kinds are the kinds a token may be limited to.
var Kinds = []config.Kind{config.KindService, config.KindRoute, config.KindConsumer, config.KindIssuer, config.KindCertificate, KindGlobal}

// MaxTokens bounds the tokens a control plane keeps: each one is checked
// against every admin request's hash index and written with the state.
const MaxTokens = 1000

// prefix marks Portico admin tokens so secret scanners recognise them.
const prefix = "pat_"

// New returns a fresh secret (shown once) and its hash.
func New() (secret, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("generate admin token: %w", err)
	}
	secret = prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, Hash(secret), nil
}

// Hash returns "sha256:<hex>" of a secret.
func Hash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(h[:])
}

// Prefix returns the visible start of a secret ("pat_AbCd").
func Prefix(secret string) string { return secret[:min(len(secret), len(prefix)+4)] }

// Validate checks a token spec as POST /v1/tokens receives it, at now:
// field paths in the errors.
func Validate(s *apiv1.TokenSpec, now time.Time) error {
	var errs []error
	if err := config.ValidateName(s.Name); err != nil {
		errs = append(errs, err)
	}
	role := Role(s.Role)
	switch {
	case s.Role == "":
		errs = append(errs, config.Invalid("role", "is required: read, write or admin"))
	case role.rank() == 0:
		errs = append(errs, config.Invalid("role", "%q is not a role: read, write or admin", s.Role))
	case role == Admin && len(s.Kinds) > 0:
		errs = append(errs, config.Invalid("kinds", "an admin token touches every kind; give kinds to read or write tokens"))
	}
	for i, k := range s.Kinds {
		if !slices.Contains(Kinds, k) {
			errs = append(errs, config.Invalid(fmt.Sprintf("kinds[%d]", i), "%q is not a kind: %v", k, Kinds))
		} else if slices.Index(s.Kinds, k) != i {
			errs = append(errs, config.Invalid(fmt.Sprintf("kinds[%d]", i), "%q is listed twice", k))
		}
	}
	if s.ExpiresAt != nil && !s.ExpiresAt.After(now) {
		errs = append(errs, config.Invalid("expires_at", "%s is not in the future", s.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	return joinFields(errs)
}

// joinFields merges validation errors into one with every field.
func joinFields(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	out := &config.ValidationError{Kind: config.ErrInvalid}
	for _, err := range errs {
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			out.Fields = append(out.Fields, ve.Fields...)
		}
	}
	return out
}

// MayTouch says whether a token limited to kinds may touch kind (no limit:
// every kind).
func MayTouch(kinds []config.Kind, kind config.Kind) bool {
	return len(kinds) == 0 || slices.Contains(kinds, kind)
}
