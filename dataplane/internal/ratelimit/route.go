package ratelimit

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// Route is a route's compiled rate limit, its rate-limit stage: the policy,
// how a request's counter key is made (per route, client address,
// consumer, header or claim), and the RateLimit-* header values. Serve asks
// the Limiter, writes the RateLimit-* headers on every answer and refuses
// with 429 and Retry-After when the limit is reached.
type Route struct {
	limiter Limiter
	policy  Policy
	kind    string // route, ip, consumer, header, claim
	name    string // header or claim name
	// prefix namespaces the counter by route, so a global default still
	// counts each route separately.
	prefix string
	header string // RateLimit-Policy value
	limit  string // RateLimit-Limit value of the policy's own limit
}

// CompileRoute compiles the rate limit of route (its own, or the global
// default: nil for none) to be decided by l.
func CompileRoute(route string, rl *config.RateLimit, l Limiter) stage.Stage {
	if rl == nil {
		return nil
	}
	return compileRoute(route, rl, l)
}

func compileRoute(route string, rl *config.RateLimit, l Limiter) *Route {
	kind, name, _ := strings.Cut(cmp.Or(rl.Key, "route"), ":")
	if kind == "header" {
		name = http.CanonicalHeaderKey(name)
	}
	w := rl.Window.Std()
	return &Route{
		limiter: l,
		policy:  NewPolicy(*rl),
		kind:    kind, name: name,
		prefix: route + "|" + cmp.Or(rl.Key, "route") + "|",
		header: strconv.Itoa(rl.Limit) + ";w=" + strconv.Itoa(int(w/time.Second)),
		limit:  strconv.Itoa(rl.Limit),
	}
}

// Policy is the route's compiled policy.
func (rl *Route) Policy() Policy { return rl.policy }

// Serve decides the request.
func (rl *Route) Serve(req *stage.Request) {
	d := rl.limiter.Allow(req.R.Context(), rl.key(req.R, req.ClientIP(), req.Identity), rl.policy)
	rl.writeHeaders(req.W.Header(), d)
	req.Outcome.RateLimit = "allowed"
	if !d.Allowed {
		req.Outcome.RateLimit = "refused"
		req.W.Header().Set("Retry-After", strconv.Itoa(max(1, ceilSeconds(d.RetryAfter))))
		stage.WriteProblem(req.W, req.R, http.StatusTooManyRequests, "rate-limited", "rate limit of "+rl.header+" exceeded")
		return
	}
	req.Next()
}

// key returns the counter key of a request.
func (rl *Route) key(r *http.Request, clientIP string, id *stage.Identity) string {
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
// headers) with one allocation for their values: they go on every answer
// of a limited route.
func (rl *Route) writeHeaders(h http.Header, d Decision) {
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

// Describe renders the policy and the key, for golden files.
func (rl *Route) Describe() any {
	algo := "sliding_window"
	if rl.policy.Algorithm == GCRA {
		algo = "gcra"
	}
	return struct {
		Limit      int    `json:"limit"`
		Window     string `json:"window"`
		Burst      int    `json:"burst,omitempty"`
		Algorithm  string `json:"algorithm"`
		FailClosed bool   `json:"fail_closed,omitempty"`
		KeyPrefix  string `json:"key_prefix"`
		KeyKind    string `json:"key_kind"`
		KeyName    string `json:"key_name,omitempty"`
		Policy     string `json:"ratelimit_policy"`
	}{rl.policy.Limit, rl.policy.Window.String(), rl.policy.Burst, algo, rl.policy.FailClosed, rl.prefix, rl.kind, rl.name, rl.header}
}
