package config

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// Basic auth (RFC 7617) for consumers: the rules of a credential, written
// once. The control plane checks a new username and password with them
// before hashing (POST /v1/consumers/{name}/basic-auth), Validate checks
// what is stored, and the data plane re-validates every snapshot with the
// same functions, so a hash it accepts is one it can afford to check.

// BasicCredential is a consumer's basic-auth credential as stored and
// shipped: the username and a bcrypt hash of the password.
type BasicCredential struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	// Hash is the bcrypt hash of the password. It is a secret (a guessable
	// password can be found offline from it): the admin API never returns
	// it (GET, the export); an import that leaves it out keeps the stored
	// hash of the credential with the same id and username.
	Hash      string    `json:"hash,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Limits of basic-auth credentials.
const (
	// MaxBasicCredentials per consumer: rotation needs two at a time.
	MaxBasicCredentials = 16
	MaxBasicUsername    = 128
	// MinBasicPassword: an operator-chosen password shorter than this is
	// refused; generated ones are 32 characters.
	MinBasicPassword = 12
	// MaxBasicPassword is bcrypt's limit: it ignores what follows.
	MaxBasicPassword = 72
	// MinBcryptCost and MaxBcryptCost bound the cost of a stored hash: below,
	// a stolen hash is cheap to attack; above, each check at the gateway
	// costs a core for a quarter second or more (2^12 rounds is ~4x 2^10).
	MinBcryptCost = 10
	MaxBcryptCost = 12
)

// BasicUsernameProblem checks a username: 1 to 128 visible ASCII
// characters without ':' (RFC 7617: the user-id ends at the first colon).
func BasicUsernameProblem(u string) string {
	if u == "" || len(u) > MaxBasicUsername {
		return fmt.Sprintf("must be 1 to %d characters", MaxBasicUsername)
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return "must be visible ASCII characters without ':' (RFC 7617)"
		}
	}
	return ""
}

// BasicPasswordProblem checks a password an operator chooses: 12 to 72
// bytes of UTF-8 without control characters.
func BasicPasswordProblem(p string) string {
	switch {
	case len(p) < MinBasicPassword:
		return fmt.Sprintf("must be at least %d characters (leave it out to have one generated)", MinBasicPassword)
	case len(p) > MaxBasicPassword:
		return fmt.Sprintf("must be at most %d bytes (bcrypt ignores the rest)", MaxBasicPassword)
	case !utf8.ValidString(p):
		return "must be UTF-8"
	case strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return "must not contain control characters"
	}
	return ""
}

// BasicHashProblem checks a stored hash: bcrypt, with a cost between
// MinBcryptCost and MaxBcryptCost.
func BasicHashProblem(h string) string {
	if h == "" {
		return "is required; create credentials with POST /v1/consumers/{name}/basic-auth"
	}
	cost, err := bcrypt.Cost([]byte(h))
	if err != nil || len(h) != 60 {
		return "must be a bcrypt hash ($2a$, $2b$ or $2y$)"
	}
	if cost < MinBcryptCost || cost > MaxBcryptCost {
		return fmt.Sprintf("bcrypt cost %d is outside %d to %d", cost, MinBcryptCost, MaxBcryptCost)
	}
	return ""
}

func (c *Consumer) validateBasic(l *errorList, p string) {
	if len(c.BasicAuth) > MaxBasicCredentials {
		l.add(join(p, "basic_auth"), "at most %d credentials per consumer", MaxBasicCredentials)
	}
	for i, b := range c.BasicAuth {
		bp := join(p, fmt.Sprintf("basic_auth[%d]", i))
		if msg := nameProblem(b.ID); msg != "" {
			l.add(join(bp, "id"), "%s", msg)
		}
		if msg := BasicUsernameProblem(b.Username); msg != "" {
			l.add(join(bp, "username"), "%s", msg)
		}
		if msg := BasicHashProblem(b.Hash); msg != "" {
			l.add(join(bp, "hash"), "%s", msg)
		}
	}
}

// checkBasicUsernames: a username names one credential of one consumer,
// across all consumers (usernames maps each to its owner so far).
func checkBasicUsernames(l *errorList, p string, cs *Consumer, usernames map[string]string) {
	for i, b := range cs.BasicAuth {
		if owner, dup := usernames[b.Username]; dup {
			l.conflictf(join(p, fmt.Sprintf("basic_auth[%d].username", i)), "username %q already belongs to consumer %q", b.Username, owner)
			continue
		}
		usernames[b.Username] = cs.Name
	}
}

// BasicUsernameOwner returns the consumer holding username, "" when none.
func (c *Config) BasicUsernameOwner(username string) string {
	for i := range c.Consumers {
		for _, b := range c.Consumers[i].BasicAuth {
			if b.Username == username {
				return c.Consumers[i].Name
			}
		}
	}
	return ""
}

// Redacted returns a copy without the basic-auth hashes: what the admin API
// may show of a consumer.
func (c Consumer) Redacted() Consumer {
	if len(c.BasicAuth) == 0 {
		return c
	}
	out := make([]BasicCredential, len(c.BasicAuth))
	for i, b := range c.BasicAuth {
		b.Hash = ""
		out[i] = b
	}
	c.BasicAuth = out
	return c
}

// ConsumerKeepsHashes fills the hashes obj leaves out (an export has none)
// from existing, credential by credential, when id and username match.
func ConsumerKeepsHashes(existing *Consumer, obj *Consumer) {
	for i := range obj.BasicAuth {
		b := &obj.BasicAuth[i]
		if b.Hash != "" {
			continue
		}
		for _, old := range existing.BasicAuth {
			if old.ID == b.ID && old.Username == b.Username {
				b.Hash = old.Hash
				break
			}
		}
	}
}
