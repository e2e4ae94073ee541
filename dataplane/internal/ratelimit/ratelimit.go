// Package ratelimit decides whether a request may pass a rate limit that
// holds for the whole cluster of data planes.
//
// # Algorithms
//
// A policy allows Limit requests per Window and key, with one of two
// algorithms.
//
// Sliding window (the default when no burst is configured). The window is
// cut into N = 100 slots of Window/N; each key keeps a count per slot that
// saw an admission. A request at time now, in slot s, is admitted when the
// admissions counted in slots s-N..s (N+1 slots: the current one, and the
// oldest, which the window [now-Window, now] overlaps only partly, counted
// in full) number fewer than Limit. Hence:
//
//   - up to Limit requests pass at once after the key has been idle for a
//     Window, as operators reading "100 per minute" expect;
//   - no interval of length Window, wherever it starts, admits more than
//     Limit: an admission at a saw every earlier admission of any window
//     [t-Window, t] containing a, since those lie in slots >= s(t)-N >=
//     s(a)-N. This is exact, not approximate;
//   - the price of counting the oldest slot in full is at most one slot in
//     N: a key under constant pressure gets Limit per Window·(1+1/N).
//
// GCRA, the generic cell rate algorithm (chosen explicitly, or implied by a
// burst). A policy has the emission interval T = Window/Limit and a
// tolerance of Burst·T. Each key keeps one number, its theoretical arrival
// time (TAT). A request at time now is admitted when now >= TAT - tolerance
// and then moves TAT to max(TAT, now) + T. Requests are spaced evenly:
// Burst+1 pass at once after a quiet period, then one per T, so any
// interval of length d admits at most Burst+1 + d/T. A burst of about 1% of
// Limit absorbs jitter (a request that arrives after its slot otherwise
// loses the difference for good), so NewPolicy adds Limit/100-1 to it.
//
// How that compares (all for "100 per minute"):
//
//   - Kong (rate-limiting plugin) and APISIX/Tyk count fixed windows:
//     100 at once, but up to 200 around a window boundary.
//   - nginx limit_req is GCRA ("leaky bucket") with burst=N nodelay
//     matching our gcra with Burst N; without burst it spaces requests
//     600ms apart.
//   - Envoy's global rate limit service counts fixed windows per unit
//     (second, minute, ...) like Kong; its local limiter is a token
//     bucket (GCRA with a burst of max_tokens).
//   - Portico's window: 100 at once, and never more than 100 in any
//     minute; gcra: nginx's behaviour, Burst explicit.
//
// # Cluster-wide counting
//
// RedisLimiter keeps every key's state in Redis under
// "rl:{<key>}:<fingerprint>" and decides with one Lua script per request
// (a GCRA TAT in a string, or a sliding window's slot counts in a hash with
// a running total, expired slots removed amortised O(1)); decisions are
// pipelined, one round trip for a batch. The scripts read Redis' TIME, so
// every data plane compares against the same clock; each key expires when
// it would be full again, so idle keys cost Redis nothing. The braces are a
// Redis Cluster hash tag. The fingerprint is a hash of the policy's
// algorithm parameters (algorithm, Limit, Window, Burst): a changed policy
// starts from fresh state at once on every data plane, and the old state
// expires by its TTL. Callers key by fixed-size values (the proxy hashes
// header and claim values), so a key's size is bounded whatever clients
// send.
//
// # Faults, and telling a slow Redis from a busy process
//
// Rate limiting must never be the reason traffic slows down or stops, and
// the decision is Redis's whenever Redis answers. A decision waiting in this
// process's own queue for the pipeline worker is never timed out: queueing
// means "this process is busy", not "Redis is slow". Only the exchange with
// Redis has a deadline: the budget (5ms by default) plus twice the largest
// reaction lag this process showed in the last second, capped at
// MaxLagAllowance. The lag is measured, while the limiter is busy, by a
// ping over a pipe inside the process (one goroutine parked reading, another
// writes and notes the time): the same netpoll and scheduler path a Redis
// reply takes, with a peer that answers at once. On a saturated CPU Go
// notices socket readiness late (netpoll is polled by sysmon every ~10ms
// when run queues never empty), which is why a fixed 5ms deadline would
// expire although Redis answered in 100µs. When the deadline comes it is
// judged again on the evidence then (a ping not yet read, a starved
// sampler, the deadline timer's own lateness), and before Redis is blamed
// one more ping is written and waited for: it is readied by the same
// netpoll as a reply already waiting, so only a process that answers its
// own ping promptly calls Redis late. An idle process has no lag, so a
// Redis that is genuinely slow or hung still misses its deadline within
// about the budget (plus the ping's millisecond).
//
// An exchange that fails or misses its deadline is an error. After a few
// consecutive errors spanning a few budgets a breaker stops calling Redis;
// once per cool-down a probe in the background (never a request) checks
// whether Redis is back. Outages are logged once when they begin and once
// when they end. Meanwhile, and for a request whose own exchange failed:
//
//   - fail_closed refuses (only then: never because the process is busy);
//   - fail_open decides locally, from this data plane's share of what Redis
//     would still allow. After every Redis decision the limiter remembers
//     the key's state (a GCRA TAT from the reply's reset, a window's count
//     and expiry) on its own monotonic clock. Deciding locally, it uses
//     the share policy — GCRA: interval T·P and the same tolerance in time;
//     window: Limit/P per Window — starting from that remembered state (the
//     count divided by P), not from a fresh bucket, with P the number of
//     live data planes.
//
// Bound during a real outage, with P correct: each data plane admits at
// most 1 + (its share of what Redis last reported as still available) +
// (its share of the refill during the outage); the cluster as a whole at
// most what Redis would have admitted plus P. A key this data plane never
// saw starts from a full share (Limit/P, Burst/P). Redis may also count a
// few decisions whose exchange timed out on the client; this errs towards
// limiting.
//
// # Memory
//
// The in-process limiter keys by a 128-bit hash of key and fingerprint, so
// an entry's size does not depend on what a client sent, and bounds the
// bytes of its entries (including a window key's slot list) by
// DefaultMaxBytes: a key whose state is full again is dropped in amortised
// sweeps, and a shard at its byte budget forgets arbitrary keys (which
// admits more, never less).
//
// # The route stage
//
// A route's rate limit is its rate-limit stage (Route, route.go; see
// package stage): the policy, the counter key of a request (the route, the
// client address, the consumer, a header's or a claim's value hashed to
// 128 bits, namespaced by route and key kind), the RateLimit-* headers on
// every answer, and 429 with Retry-After.
package ratelimit

import (
	"context"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// Algorithm selects how a Policy counts.
type Algorithm uint8

const (
	// GCRA spaces requests evenly with a burst; the zero value.
	GCRA Algorithm = iota
	// SlidingWindow admits Limit in any interval of length Window.
	SlidingWindow
)

// windowSlots is N, the number of slots a sliding window is cut into: the
// throughput given up to exactness is at most 1/N.
const windowSlots = 100

// Policy is a compiled config.RateLimit.
type Policy struct {
	// Limit requests per Window; a policy without a positive Limit and
	// Window has nothing to enforce and admits everything.
	Limit  int
	Window time.Duration
	// Burst (GCRA only) is how many requests beyond one may pass at once
	// after a quiet period; 0 spaces requests evenly.
	Burst int
	// FailClosed refuses requests while Redis is unavailable instead of
	// falling back to a local limit.
	FailClosed bool
	Algorithm  Algorithm
}

// NewPolicy compiles a validated config.RateLimit.
//
// A GCRA burst gets a tolerance of 1% of the limit, less the one request
// GCRA always lets through at once. With strict spacing, a request that
// arrives a little after its slot loses that slot for good, and network and
// scheduling jitter then keep a busy key measurably below its limit; the
// tolerance absorbs that much jitter (1% of the window) while any window of
// length Window still admits at most 1.01×Limit (+Burst).
func NewPolicy(rl config.RateLimit) Policy {
	p := Policy{
		Limit:      rl.Limit,
		Window:     rl.Window.Std(),
		FailClosed: rl.OnRedisError == config.FailClosed,
		Algorithm:  SlidingWindow,
	}
	if rl.EffectiveAlgorithm() == config.AlgorithmGCRA {
		p.Algorithm = GCRA
		p.Burst = rl.Burst + max(0, rl.Limit/100-1)
	}
	return p
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
	// (RateLimit-Remaining); never negative, and 0 only when the next
	// request would be refused.
	Remaining int
	// Reset is the time until the key's state is full again: every
	// admission counted against it has expired (RateLimit-Reset; round up
	// to whole seconds when writing it).
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

// params are a policy's algorithm parameters in the unit of its clock.
type params struct {
	alg Algorithm
	// GCRA
	interval, tolerance time.Duration
	// sliding window
	slot  time.Duration
	limit int
	// fp fingerprints the policy (see fingerprint).
	fp uint32
}

// compile turns a policy into parameters with the given resolution. GCRA's
// interval and the window's slot are rounded up, so that rounding can never
// let more through a window; ok is false for a policy with nothing to
// enforce.
func compile(p Policy, resolution time.Duration) (g params, ok bool) {
	if p.Limit <= 0 || p.Window <= 0 {
		return params{}, false
	}
	g.alg, g.limit, g.fp = p.Algorithm, p.Limit, fingerprint(p)
	if p.Algorithm == SlidingWindow {
		slot := (p.Window + windowSlots - 1) / windowSlots
		g.slot = max(resolution, (slot+resolution-1)/resolution*resolution)
		return g, true
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

// fingerprint hashes what decides a policy's counting (algorithm, Limit,
// Window, Burst; not FailClosed) with FNV-1a: the same on every data plane,
// and different for a changed policy but for a 1 in 2^32 chance, so that a
// changed limit starts from fresh state at once instead of the old policy's.
func fingerprint(p Policy) uint32 {
	h := uint32(2166136261)
	for _, v := range [...]uint64{uint64(p.Algorithm), uint64(p.Limit), uint64(p.Window), uint64(p.Burst)} {
		for range 8 {
			h ^= uint32(v & 0xff)
			h *= 16777619
			v >>= 8
		}
	}
	return h
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

// decideGCRA applies GCRA at now to a key whose theoretical arrival time is
// tat (zero or past: the bucket is full) and returns the decision and the
// new TAT, unchanged when refused. Times are on any monotonic axis.
func (g params) decideGCRA(now, tat time.Duration, limit int) (Decision, time.Duration) {
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

// slotCount is one slot of a sliding window that saw admissions.
type slotCount struct {
	slot int64 // index: time / slot length
	n    int64
}

// slotBytes is what one slotCount costs in a key's slot list.
const slotBytes = 16

// decideWindow applies the sliding window at now to a key's slots (sorted
// by index, oldest first) and returns the decision and the slots after it,
// reusing the slice. limit may be below g.limit (a share).
func (g params) decideWindow(now time.Duration, slots []slotCount, limit int) (Decision, []slotCount) {
	cur := int64(now / g.slot)
	first := cur - windowSlots
	drop := 0
	for drop < len(slots) && slots[drop].slot < first {
		drop++
	}
	if drop > 0 {
		slots = append(slots[:0], slots[drop:]...)
	}
	total := int64(0)
	for _, s := range slots {
		total += s.n
	}
	// expiry is when a slot stops being counted.
	expiry := func(slot int64) time.Duration { return time.Duration(slot+windowSlots+1)*g.slot - now }
	if total >= int64(limit) {
		// The next admission comes when enough of the oldest slots have
		// left the window.
		retry, acc := expiry(slots[len(slots)-1].slot), total
		for _, s := range slots {
			if acc -= s.n; acc < int64(limit) {
				retry = expiry(s.slot)
				break
			}
		}
		return Decision{Limit: limit, Reset: expiry(slots[len(slots)-1].slot), RetryAfter: retry}, slots
	}
	if n := len(slots); n > 0 && slots[n-1].slot == cur {
		slots[n-1].n++
	} else {
		slots = append(slots, slotCount{slot: cur, n: 1})
	}
	return Decision{
		Allowed:   true,
		Limit:     limit,
		Remaining: int(int64(limit) - total - 1),
		Reset:     expiry(cur),
	}, slots
}
