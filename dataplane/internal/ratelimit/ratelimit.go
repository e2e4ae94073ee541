// Package ratelimit decides whether a request may pass a rate limit that
// holds for the whole cluster of data planes.
//
// # Algorithm
//
// Limits are enforced with GCRA, the generic cell rate algorithm. A policy of
// Limit requests per Window has the emission interval T = Window/Limit and a
// tolerance of Burst·T. Each key keeps one number, its theoretical arrival
// time (TAT): the moment the key would have caught up if requests had arrived
// exactly every T. A request at time now is admitted when
//
//	now >= TAT - tolerance
//
// and then moves TAT to max(TAT, now) + T. A key whose TAT lies in the past
// is "full" and needs no state at all, which is why keys can expire. With
// Burst 0 requests are spaced at least T apart, so any interval of length
// Window admits at most Limit+1 of them — unlike fixed windows, which let
// 2·Limit through around a window boundary. Burst lets that many more
// through at once after a quiet period. It also absorbs jitter: with Burst 0
// a request that arrives after its slot loses the difference for good, so a
// key under heavy concurrent load gets somewhat less than Limit per Window
// (3% to 20% less in this package's tests), while a burst of about 1% of
// Limit keeps it within 1%.
//
// # Cluster-wide counting
//
// RedisLimiter keeps the TAT of every key in Redis under "rl:{<key>}" and
// decides with one Lua script per request: one round trip (EVALSHA, with
// EVAL when the server does not know the script yet). The script reads the
// clock with Redis' TIME, so every data plane compares against the same
// clock whatever their own clocks say, and it sets each key to expire when
// its bucket is full again, so idle keys cost Redis nothing. The braces are
// a Redis Cluster hash tag, keeping the whole key on one slot.
//
// # Faults
//
// Rate limiting must never be the reason traffic slows down or stops. Every
// Redis call is bounded by a small time budget (5ms by default). A call that
// fails or runs out of time is counted, and the request is decided locally:
// under fail_open by an in-process GCRA limiter allowing Limit/peers (this
// data plane's share of the cluster's limit), under fail_closed by refusing
// it. After a few consecutive failures a breaker stops calling Redis at all,
// so a dead or hanging Redis costs requests no latency. Once per cool-down a
// probe in the background (never a request) checks whether Redis is back
// and answers within the budget; when it is, decisions return to Redis. An
// outage is logged once when it begins and once when it ends, never per
// request.
//
// A call that times out on the client may still have run on the server, so
// during trouble Redis can count a few requests that were decided locally;
// this errs towards limiting, never towards letting more through.
package ratelimit

import (
	"context"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// Policy is a compiled config.RateLimit.
type Policy struct {
	// Limit requests per Window; a policy without a positive Limit and
	// Window has nothing to enforce and admits everything.
	Limit  int
	Window time.Duration
	// Burst is how many requests beyond one may pass at once after a quiet
	// period; 0 spaces requests evenly.
	Burst int
	// FailClosed refuses requests while Redis is unavailable instead of
	// falling back to a local limit.
	FailClosed bool
}

// NewPolicy compiles a validated config.RateLimit.
//
// The burst gets a tolerance of 1% of the limit, less the one request GCRA
// always lets through at once. With strict spacing, a request that arrives
// a little after its slot loses that slot for good, and network and
// scheduling jitter then keep a busy key measurably below its limit; the
// tolerance absorbs that much jitter (1% of the window) while any window of
// length Window still admits at most 1.01×Limit (+Burst).
func NewPolicy(rl config.RateLimit) Policy {
	return Policy{
		Limit:      rl.Limit,
		Window:     rl.Window.Std(),
		Burst:      rl.Burst + max(0, rl.Limit/100-1),
		FailClosed: rl.OnRedisError == config.FailClosed,
	}
}

// Decision is the answer for one request, with what the RateLimit-* and
// Retry-After response headers need.
type Decision struct {
	Allowed bool
	// Limit is the limit enforced for this decision (RateLimit-Limit): the
	// policy's, or this data plane's share of it when deciding locally. It
	// is 0 for a policy with nothing to enforce.
	Limit int
	// Remaining is how many more requests would be admitted right now
	// (RateLimit-Remaining); never negative.
	Remaining int
	// Reset is the time until the key's bucket is full again
	// (RateLimit-Reset; round up to whole seconds when writing it).
	Reset time.Duration
	// RetryAfter is, for a refused request, the time until the next request
	// would be admitted; zero when allowed.
	RetryAfter time.Duration
	// Source tells who decided: SourceRedis, SourceLocal or SourceMemory.
	Source string
}

// Decision sources.
const (
	// SourceRedis: counted in Redis, for the whole cluster.
	SourceRedis = "redis"
	// SourceLocal: Redis was unavailable; decided by this data plane alone.
	SourceLocal = "local"
	// SourceMemory: no Redis is configured; LocalLimiter is the limiter.
	SourceMemory = "memory"
)

// Limiter decides requests against a policy per key. Implementations never
// fail: trouble with a backend turns into a decision, not an error.
type Limiter interface {
	Allow(ctx context.Context, key string, p Policy) Decision
}

// Status is the limiter's state as /status shows it.
type Status struct {
	Backend string `json:"backend"` // "redis" or "memory"
	// RedisUp is false while the breaker keeps Redis out of decisions.
	RedisUp   bool   `json:"redis_up"`
	LastError string `json:"last_error,omitempty"`
}

// maxTolerance caps Burst·T. Config allows bursts whose tolerance would
// overflow int64 nanoseconds; a year of tolerance is already unlimited in
// practice, and keeps Redis' Lua numbers (doubles) exact in microseconds.
const maxTolerance = 365 * 24 * time.Hour

// gcra holds a policy's parameters in the unit of its clock.
type gcra struct {
	interval, tolerance time.Duration
}

// compile turns a policy into GCRA parameters with the given resolution.
// The interval is rounded up so that rounding can never let more than
// Limit+1 requests through a window; ok is false for a policy with nothing
// to enforce.
func compile(p Policy, resolution time.Duration) (g gcra, ok bool) {
	if p.Limit <= 0 || p.Window <= 0 {
		return gcra{}, false
	}
	step := (p.Window + time.Duration(p.Limit) - 1) / time.Duration(p.Limit)
	step = max(resolution, (step+resolution-1)/resolution*resolution)
	g.interval = step
	switch burst := max(p.Burst, 0); {
	case burst == 0:
	case time.Duration(burst) > maxTolerance/step:
		g.tolerance = maxTolerance / resolution * resolution
	default:
		g.tolerance = time.Duration(burst) * step
	}
	return g, true
}

// unlimited is the decision for a policy with nothing to enforce; its zero
// Limit tells the caller there are no RateLimit headers to write.
func unlimited(source string) Decision {
	return Decision{Allowed: true, Source: source}
}

// floorDiv divides rounding towards minus infinity: a negative count of
// spare requests must not round up to one.
func floorDiv(a, b time.Duration) time.Duration {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// decide applies GCRA at now to a key whose theoretical arrival time is tat
// (zero or past: the bucket is full) and returns the decision and the new
// TAT, unchanged when refused. Times are on any monotonic axis.
func (g gcra) decide(now, tat time.Duration, limit int) (Decision, time.Duration) {
	tat = max(tat, now)
	allowAt := tat - g.tolerance
	if now < allowAt {
		return Decision{
			Limit:      limit,
			Reset:      tat - now,
			RetryAfter: allowAt - now,
		}, tat
	}
	newTAT := tat + g.interval
	return Decision{
		Allowed: true,
		Limit:   limit,
		// How many more fit at this instant: k more requests pass while
		// newTAT + (k-1)·T - tolerance <= now.
		Remaining: int(floorDiv(now-newTAT+g.tolerance, g.interval)) + 1,
		Reset:     newTAT - now,
	}, newTAT
}
