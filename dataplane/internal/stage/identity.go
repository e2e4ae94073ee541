package stage

// Identity headers the gateway sets for services. Whatever a client sends
// under these names is removed first, on every route: a service can trust
// them.
const (
	HeaderConsumer       = "X-Consumer-Name"
	HeaderConsumerGroups = "X-Consumer-Groups"
	HeaderAuthMethod     = "X-Auth-Method"
)

// IdentityHeaders lists the identity headers.
var IdentityHeaders = []string{HeaderConsumer, HeaderConsumerGroups, HeaderAuthMethod}

// Identity is a verified caller: the fact the auth stage establishes and
// later stages read (rate-limit keys, cache keys, headers to services).
// Package auth verifies credentials into it (auth.Identity is this type);
// one Identity is shared by every request that sends the same token and
// must not be modified.
type Identity struct {
	// Consumer is the consumer's name; "" if a valid JWT names no known
	// consumer.
	Consumer string
	// Groups are the consumer's groups.
	Groups []string
	// Method is MethodJWT or MethodAPIKey.
	Method string
	// Issuer is the issuer object's name, for a JWT.
	Issuer string
	// Claims are the verified JWT claims (nil for an API key).
	Claims map[string]any
	// Scopes come from "scope" (space-separated) or, without it, "scp"
	// (space-separated string or array of strings).
	Scopes []string
}
