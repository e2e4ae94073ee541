package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/portico-gw/portico/dataplane/internal/promreg"
	"github.com/portico-gw/portico/dataplane/internal/redisconn"
)

// DefaultBudget bounds one exchange with Redis while this process is idle: a
// local Redis answers in well under a millisecond. A busy process adds its
// measured reaction lag (see MaxLagAllowance).
const DefaultBudget = 5 * time.Millisecond

// Breaker defaults.
const (
	DefaultBreakerFailures = 3
	DefaultBreakerCooldown = time.Second
)

// gcraScript decides one request. KEYS[1] is the bucket; ARGV[1] the
// emission interval and ARGV[2] the tolerance, both in microseconds. It
// returns {allowed, remaining, reset µs, retry-after µs, server time µs}.
//
// Times are integral microseconds since the epoch (about 2^51), exact in Lua's
// doubles; the TAT is written with %.0f so that it is stored as plain digits
// however a server version formats Lua numbers. Microseconds cap a key at a
// million decisions a second, far beyond what one Redis key serves anyway.
// replicate_commands makes Redis 3.2 and 4 accept a write after TIME; from 5
// on that is the default and the call does nothing.
var gcraScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, 0, tat - now, allow_at - now, now}
end
local new_tat = tat + interval
local ttl = new_tat - now
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(ttl / 1000))
return {1, math.floor((now - new_tat + tolerance) / interval) + 1, ttl, 0, now}
`)

// windowScript decides one request with the sliding window. KEYS[1] is a
// hash of slot index -> admissions, with fields t (the running total), o
// (the oldest slot that may hold admissions), l (the newest) and r (when a
// refused key admits again, cached until the next admission). ARGV[1] is
// the slot length in microseconds, ARGV[2] the number of slots N, ARGV[3]
// the limit. It returns what gcraScript does.
//
// Slots older than cur-N leave the count; each is deleted once, so the
// work is amortised O(1) per decision, and bounded by N+2 in any one call:
// the key expires N+1 slots after its newest admission. A refusal walks the
// slots once to find when enough of them expire, and caches the answer.
// Slot indices are written with %.0f: Lua's default number format would
// round large ones.
var windowScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local k = KEYS[1]
local cur = math.floor(now / slot)
local first = cur - n
local st = redis.call('HMGET', k, 't', 'o', 'l', 'r')
local total = tonumber(st[1]) or 0
local oldest = tonumber(st[2]) or cur
local last = tonumber(st[3]) or cur
local retry_at = tonumber(st[4])
local function f(x) return string.format('%.0f', x) end
if total <= 0 then
  total = 0
  oldest = cur
elseif oldest < first then
  for s = oldest, math.min(first - 1, last) do
    local c = tonumber(redis.call('HGET', k, f(s)))
    if c then
      total = total - c
      redis.call('HDEL', k, f(s))
    end
  end
  oldest = first
  if total <= 0 then
    total = 0
    oldest = cur
  end
end
if total >= limit then
  if not retry_at or retry_at <= now then
    retry_at = (last + n + 1) * slot
    local acc = total
    for s = oldest, last do
      local c = tonumber(redis.call('HGET', k, f(s)))
      if c then
        acc = acc - c
        if acc < limit then
          retry_at = (s + n + 1) * slot
          break
        end
      end
    end
    redis.call('HSET', k, 'r', f(retry_at))
  end
  return {0, 0, (last + n + 1) * slot - now, retry_at - now, now}
end
redis.call('HINCRBY', k, f(cur), 1)
total = total + 1
redis.call('HMSET', k, 't', f(total), 'o', f(oldest), 'l', f(cur))
if retry_at then redis.call('HDEL', k, 'r') end
local ttl = (cur + n + 1) * slot - now
redis.call('PEXPIRE', k, math.ceil(ttl / 1000))
return {1, limit - total, ttl, 0, now}
`)

// BreakerOptions sets when RedisLimiter stops calling Redis.
type BreakerOptions struct {
	// Failures is the number of consecutive failed calls that open the
	// breaker; default 3. The streak must also last Failures×Budget, so
	// that many requests failing together in one brief hiccup do not.
	Failures int
	// Cooldown is how long an open breaker skips Redis before a probe in
	// the background checks whether it is back; default 1s.
	Cooldown time.Duration
}

// Options configure a RedisLimiter.
type Options struct {
	// Client reaches Redis. For Budget to hold it must honour context
	// deadlines (ContextTimeoutEnabled, as ParseRedisURL sets); with a
	// client that does not, each call runs in a goroutine the decision
	// stops waiting for.
	Client redis.UniversalClient
	// Budget bounds each exchange with Redis while the process is idle;
	// default DefaultBudget. A busy process adds its measured reaction
	// lag, up to MaxLagAllowance.
	Budget  time.Duration
	Breaker BreakerOptions
	// Peers returns the number of live data planes (at least 1): while
	// Redis is unavailable each one allows its share, Limit/Peers(). Nil
	// means 1.
	Peers func() int
	// Log receives one warning per outage and one message on recovery;
	// default slog.Default().
	Log *slog.Logger
	// Metrics registers the limiter's metrics; nil records none.
	Metrics prometheus.Registerer
	// Now is the clock for the breaker and the local fallback; default
	// time.Now. Redis decisions always use the Redis server's clock.
	Now func() time.Time
}

// RedisLimiter counts decisions in Redis so that a limit holds for the whole
// cluster, and falls back to local decisions while Redis is unavailable.
// It does not own Options.Client: closing it is the caller's business.
type RedisLimiter struct {
	client  redis.UniversalClient
	budget  time.Duration
	guarded bool // the client ignores deadlines (said once, at start)
	peers   func() int
	log     *slog.Logger
	now     func() time.Time
	local   *LocalLimiter
	metrics *metrics
	br      breaker
	batch   *batcher
	lag     lagMonitor
}

// NewRedis returns a limiter deciding in Redis through o.Client.
func NewRedis(o Options) *RedisLimiter {
	if o.Client == nil {
		panic("ratelimit: NewRedis without a Redis client")
	}
	if o.Budget <= 0 {
		o.Budget = DefaultBudget
	}
	if o.Breaker.Failures <= 0 {
		o.Breaker.Failures = DefaultBreakerFailures
	}
	if o.Breaker.Cooldown <= 0 {
		o.Breaker.Cooldown = DefaultBreakerCooldown
	}
	if o.Peers == nil {
		o.Peers = func() int { return 1 }
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &RedisLimiter{
		client:  o.Client,
		budget:  o.Budget,
		guarded: !redisconn.HonoursDeadlines(o.Client),
		peers:   o.Peers,
		log:     o.Log,
		now:     o.Now,
		local:   NewLocal(o.Now),
		metrics: newMetrics(o.Metrics),
	}
	r.batch = &batcher{
		client:  o.Client,
		budget:  o.Budget,
		open:    func() bool { return !r.br.healthy.Load() && !r.br.isUp() },
		lag:     &r.lag,
		metrics: r.metrics,
		queue:   make(chan *pending, queueSize),
	}
	r.br = breaker{
		failures: o.Breaker.Failures,
		cooldown: o.Breaker.Cooldown,
		// Long enough for a hiccup to pass, short enough that a dead
		// Redis is skipped within a few budgets (15ms by default).
		span: time.Duration(o.Breaker.Failures) * o.Budget,
		up:   true,
	}
	r.br.healthy.Store(true)
	r.metrics.setUp(true)
	if o.Metrics != nil {
		promreg.Register(o.Metrics, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "portico_ratelimit_reaction_lag_seconds",
			Help: "Largest delay this data plane took to react to a ready socket in the last second (measured only while rate-limit decisions are made); a Redis exchange may take the budget plus twice this.",
		}, func() float64 { return r.lag.recent(time.Now()).Seconds() }))
	}
	if r.guarded {
		r.log.Warn("rate limiter: the Redis client ignores context deadlines; exchanges still end at their deadline, but a stalled one holds a goroutine until the client's own timeouts (set ContextTimeoutEnabled)")
	}
	return r
}

// tracer makes a span per Redis decision (the key is not recorded: it may
// hold a client address).
var tracer = otel.Tracer("github.com/portico-gw/portico/dataplane/ratelimit")

// Allow decides one request for key under p. It never fails, and waits for
// Redis no longer than an exchange's deadline (the budget while the process
// is idle).
func (r *RedisLimiter) Allow(ctx context.Context, key string, p Policy) Decision {
	d, _ := r.allow(ctx, key, p)
	return d
}

// allow is Allow that also returns the Redis server's time of a Redis
// decision in microseconds (0 otherwise), for tests that check admissions
// on the one clock every data plane shares.
func (r *RedisLimiter) allow(ctx context.Context, key string, p Policy) (Decision, int64) {
	g, ok := compile(p, time.Microsecond)
	if !ok {
		return unlimited(SourceRedis), 0
	}
	// Sampled while decisions are made, Redis up or not: the probe's
	// deadline needs it too.
	r.lag.touch(time.Now())
	lk := r.local.hash(key, g.fp)
	peers := max(r.peers(), 1)
	switch r.br.admit(r.now()) {
	case useRedis:
		// A request whose client has gone needs no round trip, and its
		// cancellation says nothing about Redis.
		if ctx.Err() != nil {
			break
		}
		// Only a recorded request gets a span for its decision (see
		// upstream.Transport for why).
		var span trace.Span
		sctx := ctx
		if trace.SpanFromContext(ctx).IsRecording() {
			sctx, span = tracer.Start(ctx, "ratelimit redis", clientSpan...)
		}
		d, at, err := r.call(sctx, key, g)
		if span != nil {
			span.SetAttributes(attribute.String("db.system", "redis"), attribute.Bool("portico.ratelimit.allowed", d.Allowed))
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, "redis call failed")
			}
			span.End()
		}
		if err == nil {
			r.record(nil)
			d.Limit = p.Limit
			if !p.FailClosed {
				// Kept for a local decision while Redis is unavailable.
				r.local.remember(lk, g, peers, d)
			}
			r.metrics.decision(d)
			return d, at
		}
		if ctx.Err() == nil && !errors.Is(err, errBreakerOpen) {
			r.record(err)
		}
	case startProbe:
		r.probe()
	}
	d := r.fallback(lk, g, p, peers)
	r.metrics.decision(d)
	return d, 0
}

// fallback decides without Redis: this data plane's share of what Redis
// would still allow, or a refusal for fail_closed policies.
func (r *RedisLimiter) fallback(lk localKey, g params, p Policy, peers int) Decision {
	if p.FailClosed {
		return Decision{Limit: p.Limit, Reset: time.Second, RetryAfter: time.Second, Source: SourceLocal}
	}
	// The same parameters at the local clock's resolution.
	lg, _ := compile(p, time.Nanosecond)
	lg.fp = g.fp
	return r.local.decide(lk, lg, peers, SourceLocal)
}

// call decides once in Redis through the batcher.
func (r *RedisLimiter) call(ctx context.Context, key string, g params) (Decision, int64, error) {
	v, err := r.batch.do(ctx, key, g)
	if err != nil {
		return Decision{}, 0, err
	}
	if len(v) != 5 {
		return Decision{}, 0, fmt.Errorf("rate limit script: %d values in reply, want 5", len(v))
	}
	return Decision{
		Allowed:    v[0] == 1,
		Remaining:  int(max(v[1], 0)),
		Reset:      time.Duration(v[2]) * time.Microsecond,
		RetryAfter: time.Duration(v[3]) * time.Microsecond,
		Source:     SourceRedis,
	}, v[4], nil
}

// probe checks in the background whether Redis is back, so that no request
// waits for the check. It first loads the scripts with time to spare, which
// also dials and greets a fresh connection and spares the first decisions
// a NOSCRIPT after a restart; then one PING must answer within an
// exchange's deadline, so that a Redis that is up but slow keeps the
// breaker open instead of closing it for requests to time out again. With a client that honours
// deadlines the goroutine ends within the cool-down plus the budget, and
// there is never more than one.
func (r *RedisLimiter) probe() {
	go func() {
		err := r.check()
		if err != nil {
			r.metrics.redisError()
		}
		if r.br.probed(err, r.now()) == cameUp {
			r.metrics.setUp(true)
			r.log.Info("rate limiter: Redis available again, deciding in Redis")
		}
	}()
}

// WarmUp dials a connection and loads the scripts before the first request
// needs them: a cold pool dialing at a busy start would otherwise cost the
// first decisions their deadline. It takes at most the breaker's cool-down;
// an error is for the first decisions to find, and the caller may ignore it.
func (r *RedisLimiter) WarmUp() error { return r.check() }

func (r *RedisLimiter) check() error {
	ctx, cancel := context.WithTimeout(context.Background(), r.br.cooldown)
	for _, s := range [...]*redis.Script{gcraScript, windowScript} {
		if err := s.Load(ctx, r.client).Err(); err != nil {
			cancel()
			return fmt.Errorf("rate limit probe: load script: %w", err)
		}
	}
	cancel()
	deadline := r.batch.exchangeDeadline(time.Now())
	ctx, cancel = context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("rate limit probe: ping within %v: %w", deadline, err)
	}
	return nil
}

// record feeds a decision call's outcome to the breaker, and logs and
// publishes an outage when it begins.
func (r *RedisLimiter) record(err error) {
	if err != nil {
		r.metrics.redisError()
	}
	if r.br.done(err, r.now()) == wentDown {
		r.metrics.setUp(false)
		r.log.Warn("rate limiter: Redis unavailable, deciding locally until it recovers",
			"error", err, "cooldown", r.br.cooldown)
	}
}

// Status reports the Redis backend's state for /status. LastError is the
// most recent failure, kept after recovery for diagnosis.
func (r *RedisLimiter) Status() Status {
	r.br.mu.Lock()
	defer r.br.mu.Unlock()
	return Status{Backend: SourceRedis, RedisUp: r.br.up, LastError: r.br.lastErr}
}

// breaker keeps a failing Redis out of the request path. Closed (up), every
// decision goes to Redis; failures consecutive failures spread over at least
// span open it, and then no decision does. Once per cooldown a background
// probe checks Redis, and only a successful probe closes it again: a late
// success of a call that was in flight when it opened must not make it flap.
type breaker struct {
	failures int
	cooldown time.Duration
	// span is how long a streak of failures must last to open the breaker.
	// Concurrent requests share a hiccup (a GC pause, a cold connection
	// pool after recovery): without it, one slow moment seen by a handful
	// of requests at once would look like a handful of failures.
	span time.Duration

	mu          sync.Mutex
	consecutive int
	streakStart time.Time // first failure of the current streak
	up          bool
	openUntil   time.Time // no probe before this
	probing     bool
	lastErr     string
	// healthy mirrors "up with no failure streak" for the common case:
	// every Redis decision asks admit and reports to done, and while Redis
	// is healthy neither needs the mutex.
	healthy atomic.Bool
}

type admission int

const (
	useRedis admission = iota
	useLocal
	startProbe // use local, and start the probe
)

type transition int

const (
	unchanged transition = iota
	wentDown
	cameUp
)

// isUp reports the breaker closed.
func (b *breaker) isUp() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.up
}

// admit tells a decision where to go.
func (b *breaker) admit(now time.Time) admission {
	if b.healthy.Load() {
		return useRedis
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.up:
		return useRedis
	case b.probing || now.Before(b.openUntil):
		return useLocal
	}
	b.probing = true
	return startProbe
}

// done records the outcome of a decision call.
func (b *breaker) done(err error, now time.Time) transition {
	if err == nil && b.healthy.Load() {
		return unchanged
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		if b.up {
			b.consecutive = 0
			b.healthy.Store(true)
		}
		return unchanged
	}
	b.healthy.Store(false)
	if b.consecutive == 0 {
		b.streakStart = now
	}
	b.consecutive++
	b.lastErr = err.Error()
	if b.up && b.consecutive >= b.failures && now.Sub(b.streakStart) >= b.span {
		b.up = false
		b.openUntil = now.Add(b.cooldown)
		return wentDown
	}
	return unchanged
}

// probed records the outcome of a probe.
func (b *breaker) probed(err error, now time.Time) transition {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if err != nil {
		b.lastErr = err.Error()
		b.openUntil = now.Add(b.cooldown)
		return unchanged
	}
	b.consecutive = 0
	b.up = true
	b.healthy.Store(true)
	return cameUp
}

// clientSpan is built once: a span option made per call is an allocation per
// request, traced or not.
var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
