package apiv1

import (
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// TokenSpec is what an operator chooses about an admin API token
// (POST /v1/tokens). See package admintoken for the rules.
type TokenSpec struct {
	Name string `json:"name"`
	// Role is read, write or admin.
	Role string `json:"role"`
	// Kinds, when not empty, limits the token to objects of these kinds
	// (service, route, consumer, issuer, certificate, global).
	Kinds []config.Kind `json:"kinds,omitempty"`
	// ExpiresAt, when set, is the instant after which the token is refused.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Token is an admin API token as the API shows it: never its secret, never
// its hash.
type Token struct {
	TokenSpec
	// Prefix is the start of the secret ("pat_AbCd"), to recognise it.
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
	// CreatedBy is the audit actor that created it.
	CreatedBy string `json:"created_by,omitempty"`
	// Revision is the configuration revision that created it.
	Revision int64 `json:"revision"`
}

// CreatedToken answers POST /v1/tokens: the only time the secret is shown.
type CreatedToken struct {
	Token
	Secret string `json:"token"`
}

// Whoami answers GET /v1/whoami: who the presented token is and what it may
// do.
type Whoami struct {
	// Principal names the caller in the audit log: "admin" (the bootstrap
	// token), "token:<name>", or "dev".
	Principal string        `json:"principal"`
	Token     string        `json:"token,omitempty"`
	Role      string        `json:"role"`
	Kinds     []config.Kind `json:"kinds,omitempty"`
	ExpiresAt *time.Time    `json:"expires_at,omitempty"`
}
