package proxy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/dataplane/internal/ratelimit"
	"github.com/portico-gw/portico/shared/bearer"
	"github.com/portico-gw/portico/shared/config"
)

// Identity headers Portico sets for upstreams. Whatever a client sends under
// these names is removed first, on every route: an upstream can trust them.
const (
	HeaderConsumer       = "X-Consumer-Name"
	HeaderConsumerGroups = "X-Consumer-Groups"
	HeaderAuthMethod     = "X-Auth-Method"
)

var identityHeaders = []string{HeaderConsumer, HeaderConsumerGroups, HeaderAuthMethod}

// routeAuth is a compiled RouteAuth.
type routeAuth struct {
	jwt, apiKey  bool
	apiKeyHeader string
	issuers      []string
	consumers    map[string]bool
	groups       []string
	scopes       []string
	claims       map[string]string
	// forward maps claim names to canonical header names.
	forward map[string]string
	// challenge is the WWW-Authenticate value of a 401.
	challenge string
}

func compileAuth(a *config.RouteAuth) *routeAuth {
	if a == nil {
		return nil
	}
	ra := &routeAuth{
		jwt: a.JWT, apiKey: a.APIKey,
		apiKeyHeader: http.CanonicalHeaderKey(cmp.Or(a.APIKeyHeader, "X-API-Key")),
		issuers:      a.Issuers, groups: a.Groups, scopes: a.Scopes, claims: a.Claims,
		forward: map[string]string{},
	}
	if len(a.Consumers) > 0 {
		ra.consumers = map[string]bool{}
		for _, c := range a.Consumers {
			ra.consumers[c] = true
		}
	}
	for claim, h := range a.ForwardClaims {
		ra.forward[claim] = http.CanonicalHeaderKey(h)
	}
	var ch []string
	if ra.jwt {
		ch = append(ch, bearer.Challenge)
	}
	if ra.apiKey {
		ch = append(ch, `APIKey realm="portico", header="`+ra.apiKeyHeader+`"`)
	}
	ra.challenge = strings.Join(ch, ", ")
	return ra
}

// authError is a refused request: 401 (who are you?) or 403 (not you).
type authError struct {
	status int
	reason string
	detail string
}

// authenticate verifies the request's credentials and checks the route's
// requirements. It never reveals why a credential was bad beyond a reason
// label: details help attackers more than clients.
func (ra *routeAuth) authenticate(ctx context.Context, v *auth.Verifier, r *http.Request) (*auth.Identity, *authError) {
	var (
		id        *auth.Identity
		err       error
		presented bool
	)
	if ra.apiKey {
		if key := r.Header.Get(ra.apiKeyHeader); key != "" {
			presented = true
			id, err = v.VerifyAPIKey(key)
		}
	}
	if id == nil && ra.jwt {
		if tok, ok := bearer.Token(r.Header.Get("Authorization")); ok {
			presented = true
			id, err = v.VerifyJWT(ctx, tok, ra.issuers)
		}
	}
	switch {
	case !presented:
		return nil, &authError{http.StatusUnauthorized, "missing", "credentials are required"}
	case id == nil:
		return nil, &authError{http.StatusUnauthorized, auth.Reason(err), "the credentials are not valid"}
	}
	if ra.consumers != nil && !ra.consumers[id.Consumer] {
		return nil, &authError{http.StatusForbidden, "consumer", "this consumer may not use this route"}
	}
	if len(ra.groups) > 0 && !slices.ContainsFunc(ra.groups, func(g string) bool { return slices.Contains(id.Groups, g) }) {
		return nil, &authError{http.StatusForbidden, "group", "the consumer is in none of the required groups"}
	}
	for _, s := range ra.scopes {
		if !slices.Contains(id.Scopes, s) {
			return nil, &authError{http.StatusForbidden, "scope", "the token lacks a required scope"}
		}
	}
	for name, want := range ra.claims {
		if got, ok := id.Claims[name]; !ok || fmt.Sprint(got) != want {
			return nil, &authError{http.StatusForbidden, "claim", "the token lacks a required claim"}
		}
	}
	return id, nil
}

// setOutboundIdentity makes h, the headers going to a service, carry the
// gateway's identity headers and nothing a client sent under those names.
// Every way a route reaches a service (the reverse proxy, aggregation, a
// gRPC call) goes through it.
func setOutboundIdentity(h http.Header, ra *routeAuth, id *auth.Identity) {
	for _, name := range identityHeaders {
		h.Del(name)
	}
	if ra != nil {
		ra.setIdentity(h, id)
	}
}

// setIdentity writes the verified identity into the upstream request's
// headers, after removing client-sent copies.
func (ra *routeAuth) setIdentity(h http.Header, id *auth.Identity) {
	for _, name := range ra.forward {
		h.Del(name)
	}
	if ra.apiKey {
		// The gateway credential is for the gateway.
		h.Del(ra.apiKeyHeader)
	}
	if id == nil {
		return
	}
	if id.Consumer != "" {
		h.Set(HeaderConsumer, id.Consumer)
	}
	if len(id.Groups) > 0 {
		h.Set(HeaderConsumerGroups, strings.Join(id.Groups, ","))
	}
	h.Set(HeaderAuthMethod, id.Method)
	for claim, name := range ra.forward {
		if v, ok := id.Claims[claim]; ok {
			h.Set(name, fmt.Sprint(v))
		}
	}
}

// rateLimit is a compiled RateLimit.
type rateLimit struct {
	policy ratelimit.Policy
	kind   string // route, ip, consumer, header, claim
	name   string // header or claim name
	// prefix namespaces the counter by route, so a global default still
	// counts each route separately.
	prefix string
	header string // RateLimit-Policy value
	limit  string // RateLimit-Limit value of the policy's own limit
}

func compileRateLimit(route string, rl *config.RateLimit) *rateLimit {
	if rl == nil {
		return nil
	}
	kind, name, _ := strings.Cut(cmp.Or(rl.Key, "route"), ":")
	if kind == "header" {
		name = http.CanonicalHeaderKey(name)
	}
	w := rl.Window.Std()
	return &rateLimit{
		policy: ratelimit.NewPolicy(*rl),
		kind:   kind, name: name,
		prefix: route + "|" + cmp.Or(rl.Key, "route") + "|",
		header: strconv.Itoa(rl.Limit) + ";w=" + strconv.Itoa(int(w/time.Second)),
		limit:  strconv.Itoa(rl.Limit),
	}
}

// key returns the counter key of a request.
func (rl *rateLimit) key(r *http.Request, clientIP string, id *auth.Identity) string {
	switch rl.kind {
	case "ip":
		return rl.prefix + clientIP
	case "consumer":
		if id != nil && id.Consumer != "" {
			return rl.prefix + id.Consumer
		}
		// An authenticated caller that maps to no consumer is counted by
		// address rather than sharing one bucket with every other.
		return rl.prefix + "ip:" + clientIP
	case "header":
		return rl.prefix + hashKeyValue(r.Header.Get(rl.name))
	case "claim":
		if id != nil {
			if v, ok := id.Claims[rl.name]; ok {
				// "c:" keeps claim values out of the "ip:" buckets of callers
				// without the claim: a token whose claim reads "ip:<addr>"
				// must not spend that address's budget.
				return rl.prefix + "c:" + hashKeyValue(fmt.Sprint(v))
			}
		}
		return rl.prefix + "ip:" + clientIP
	}
	return rl.prefix
}

// hashKeyValue turns a client-chosen key value (a header's, a claim's) into
// a fixed-size one: the first 128 bits of its SHA-256, base64url, 22 bytes.
// A client sending 60 KB values then costs Redis and the in-process limiter
// no more per key than one sending 6 bytes, and every data plane computes
// the same key. 128 bits: two values share a counter only by a collision
// nobody can find.
func hashKeyValue(v string) string {
	sum := sha256.Sum256([]byte(v))
	var out [22]byte
	base64.RawURLEncoding.Encode(out[:], sum[:16])
	return string(out[:])
}

// writeHeaders sets the RateLimit-* fields (draft-ietf-httpapi-ratelimit-
// headers) on every answer of a limited route.
// writeHeaders sets the four RateLimit headers with one allocation for
// their values: they go on every answer of a limited route.
func (rl *rateLimit) writeHeaders(h http.Header, d ratelimit.Decision) {
	limit := rl.limit
	if d.Limit != rl.policy.Limit {
		limit = strconv.Itoa(d.Limit)
	}
	v := [...]string{limit, strconv.Itoa(max(d.Remaining, 0)), strconv.Itoa(ceilSeconds(d.Reset)), rl.header}
	vals := v[:]
	// Canonical keys written directly: Set would canonicalise each again.
	h["Ratelimit-Limit"] = vals[0:1:1]
	h["Ratelimit-Remaining"] = vals[1:2:2]
	h["Ratelimit-Reset"] = vals[2:3:3]
	h["Ratelimit-Policy"] = vals[3:4:4]
}

func ceilSeconds(d time.Duration) int {
	return int(math.Ceil(max(d, 0).Seconds()))
}

// throttle caps concurrent requests on one route of one data plane.
type throttle struct {
	limit int
	slots chan struct{}
	queue time.Duration
}

func newThrottle(limit int, queue time.Duration) *throttle {
	if limit <= 0 {
		return nil
	}
	return &throttle{limit: limit, slots: make(chan struct{}, limit), queue: queue}
}

// acquire takes a slot, waiting up to the queue timeout; release must be
// called when it returns true.
func (t *throttle) acquire(ctx context.Context) bool {
	select {
	case t.slots <- struct{}{}:
		return true
	default:
	}
	if t.queue <= 0 {
		return false
	}
	timer := time.NewTimer(t.queue)
	defer timer.Stop()
	select {
	case t.slots <- struct{}{}:
		return true
	case <-timer.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (t *throttle) release() { <-t.slots }
