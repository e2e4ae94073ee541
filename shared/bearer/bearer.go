// Package bearer is the one reading and writing of RFC 6750 bearer
// credentials in Portico: the admin and sync APIs' tokens, the data plane's
// JWTs, and the client that presents a token.
//
// An Authorization value carries a bearer token when its scheme is "Bearer"
// in any case (RFC 9110: auth schemes are case-insensitive), followed by a
// space and a non-empty token; spaces around the token are dropped. Anything
// else (another scheme, no token) carries none.
package bearer

import "strings"

// Challenge is the WWW-Authenticate challenge of a missing or refused
// bearer token.
const Challenge = `Bearer realm="portico"`

// Token returns the bearer token of an Authorization header value.
func Token(authorization string) (string, bool) {
	scheme, tok, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Authorization is the Authorization header value presenting token.
func Authorization(token string) string { return "Bearer " + token }
