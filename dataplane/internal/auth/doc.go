// Package auth verifies who a request comes from: a bearer JWT signed by a
// configured issuer, or a consumer's API key.
//
// The rules, each one a defence against a known way of forging a caller:
//
//   - Size first. A token over MaxTokenBytes is refused before any decoding,
//     so a huge header cannot make the gateway burn CPU or memory.
//   - The unverified payload is read only for "iss", to choose the Issuer
//     whose configured issuer string equals it (and that the route allows).
//     Nothing else from an unverified token is trusted.
//   - Algorithms are pinned per issuer (jwt.WithValidMethods with the
//     issuer's list). The token's "alg" header never chooses how it is
//     checked: "none" is refused, and so is an HS256 token "signed" with an
//     RS256 issuer's public key (key confusion). An issuer never mixes HMAC
//     with public-key algorithms; NewIssuer re-checks what the control plane
//     validated rather than trusting it.
//   - A key must fit the algorithm family: RSA for RS*/PS*, ECDSA on the
//     matching curve for ES256/384/512 (jwt/v5 does not check the curve),
//     Ed25519 for EdDSA, a byte secret for HS*. HMAC secrets come only from
//     inline configuration, never from a JWKS; symmetric JWKS entries and
//     keys marked for encryption are ignored.
//   - A token naming a kid is checked with that key only. Without a kid (or
//     when no key carries it but some keys have no kid), every fitting key
//     is tried.
//   - Claims: iss must equal the issuer, exp is required, nbf and iat are
//     honoured, aud must contain one of the issuer's audiences when it has
//     any, all with the issuer's leeway.
//   - Lifetime: exp-now (plus leeway) and, with an iat, exp-iat must not
//     exceed the issuer's max_token_lifetime (default 24h). An issuer (or
//     whoever holds its key) cannot mint a token that outlives that bound.
//   - A token names a consumer (its consumer_claim, "sub" by default) only
//     if that consumer lists the token's issuer in jwt_issuers. Otherwise it
//     authenticates as no consumer, without groups: one identity provider's
//     "sub": "alice" must not carry the groups of the consumer alice that
//     another provider's users are.
//   - JWKS key sets are fetched off the request path, at start and then at
//     most every jwks_refresh (default 1m, 1s to 1h), sooner when the
//     response's Cache-Control max-age asks (but never more often than
//     every MinJWKSMaxAge, 5s); max-age never lengthens the interval. So a
//     key withdrawn from the set stops verifying tokens within jwks_refresh:
//     new ones, and remembered ones too, as a fetch that changes the set
//     empties the issuer's share of the token cache (cache.go). Fetches use
//     a bounded client (5s, 1 MiB); a set
//     that fails to fetch or parse (any key) leaves the last good set in
//     place. An unknown kid may trigger a fetch on the request path, but at
//     most one per RefreshUnknownKIDRate, never queued behind the limiter
//     or a running fetch: a flood of made-up kids costs the identity
//     provider one request per interval and the gateway nothing.
//   - API keys are looked up by their SHA-256 hash; the gateway never holds
//     the keys themselves.
//   - Tokens, keys and secrets are never logged, and never put into errors.
//
// A route's requirements are its auth stage (Route, route.go; see package
// stage): compiled from the route's auth section with the table's
// Verifier, it refuses with 401 (and a challenge) or 403, records the
// verified Identity on the request, and writes the identity headers and
// forwarded claims into every request to the service, after removing what
// a client sent under those names.
package auth
