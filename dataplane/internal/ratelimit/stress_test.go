package ratelimit

import (
	"context"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/testutil"
)

// spin keeps every CPU of this process busy with n goroutines until the
// returned stop is called: a data plane at saturation, in process.
func spin(n int) (stop func()) {
	var done atomic.Bool
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			x := 0
			for !done.Load() {
				for range 1000 {
					x++
				}
			}
			_ = x
		})
	}
	return func() { done.Store(true); wg.Wait() }
}

// TestBusyProcessDecidesInRedis: with Redis healthy and the process's CPUs
// saturated by its own work, every decision is still made in Redis with the
// default budget, and a fail_closed policy refuses nothing: the time a
// decision waits for this process to get to it is not Redis being slow.
// On the old limiter a fixed 5ms timer ran out for a large part of them.
func TestBusyProcessDecidesInRedis(t *testing.T) {
	srv := testutil.StartRedis(t)
	srv.Prefer()
	client := newClient(t, srv.URL())
	warmUp(t, client, 4)
	lim := NewRedis(Options{Client: client, Log: slog.New(&logRecorder{})})
	p := Policy{Limit: MaxInt32, Window: time.Second, Algorithm: SlidingWindow, FailClosed: true}

	stop := spin(2 * runtime.GOMAXPROCS(0))
	defer stop()
	const workers, each = 16, 100
	var (
		wg                      sync.WaitGroup
		refused, local, decided atomic.Int64
		mu                      sync.Mutex
		lat                     []time.Duration
		worstLag                atomic.Int64
	)
	for w := range workers {
		wg.Go(func() {
			var mine []time.Duration
			for i := range each {
				start := time.Now()
				d := lim.Allow(context.Background(), "busy:"+string(rune('a'+w%4)), p)
				mine = append(mine, time.Since(start))
				decided.Add(1)
				if !d.Allowed {
					refused.Add(1)
				}
				if d.Source != SourceRedis {
					local.Add(1)
				}
				if i%20 == 0 {
					lag := int64(lim.lag.recent(time.Now()))
					for {
						old := worstLag.Load()
						if lag <= old || worstLag.CompareAndSwap(old, lag) {
							break
						}
					}
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	stop()
	slices.Sort(lat)
	t.Logf("%d decisions with %d spinning goroutines: %d refused, %d local; latency p50 %v p99 %v max %v; worst reaction lag seen %v (deadline %v); %d lag samples",
		decided.Load(), 2*runtime.GOMAXPROCS(0), refused.Load(), local.Load(), pct(lat, 50), pct(lat, 99), lat[len(lat)-1],
		time.Duration(worstLag.Load()), DefaultBudget+min(2*time.Duration(worstLag.Load()), MaxLagAllowance), lim.lag.samples.Load())
	if refused.Load() != 0 || local.Load() != 0 {
		t.Fatalf("%d of %d refused and %d decided locally with Redis healthy: the busy process was taken for a failing Redis (%+v)",
			refused.Load(), decided.Load(), local.Load(), lim.Status())
	}
	if !lim.Status().RedisUp {
		t.Fatalf("breaker open with Redis healthy: %+v", lim.Status())
	}
}

// MaxInt32 keeps a policy's limit out of reach in tests.
const MaxInt32 = 1<<31 - 1

// TestHungRedisTripsWhenIdle: the lag allowance is measured, not assumed.
// An idle process shows no lag, so a Redis that stops answering (SIGSTOP:
// connections open, nothing answered) is skipped after a few budgets, and
// decisions go on locally without waiting for it; the lag monitor stops
// with the load.
func TestHungRedisTripsWhenIdle(t *testing.T) {
	srv := testutil.StartRedis(t)
	client := newClient(t, srv.URL())
	warmUp(t, client, 2)
	lim := NewRedis(Options{Client: client, Log: slog.New(&logRecorder{})})
	p := Policy{Limit: MaxInt32, Window: time.Second, Algorithm: SlidingWindow}
	ctx := context.Background()
	for range 50 {
		if d := lim.Allow(ctx, "hang", p); d.Source != SourceRedis {
			t.Fatalf("decision from %s before the fault", d.Source)
		}
	}
	idleLag := lim.lag.recent(time.Now())

	const pause = 2 * time.Second
	srv.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			srv.Thaw()
		}
	}()
	pausedAt := time.Now()
	var redisFailed, local int
	var lat []time.Duration
	// Sequential decisions for the first half of the pause: each that
	// waited for the hung Redis would take an exchange deadline.
	for time.Since(pausedAt) < pause/2 && len(lat) < 5000 {
		start := time.Now()
		d := lim.Allow(ctx, "hang", p)
		lat = append(lat, time.Since(start))
		if d.Source == SourceLocal {
			local++
		}
		if time.Since(start) >= DefaultBudget {
			redisFailed++
		}
	}
	slices.Sort(lat)
	t.Logf("idle reaction lag %v; during the hang: %d decisions, %d local, %d waited a budget or more; latency p50 %v max %v",
		idleLag, len(lat), local, redisFailed, pct(lat, 50), lat[len(lat)-1])
	// The breaker opens after 3 failures spanning 3 budgets: a handful of
	// decisions wait, the rest (hundreds) are local at once. With a lag
	// allowance that did not shrink to the budget when idle, each would
	// have waited much longer and there would be far fewer decisions.
	if local < 100 || redisFailed > 10 {
		t.Fatalf("%d local decisions, %d waited for Redis: want the breaker open after a few budgets", local, redisFailed)
	}
	if lim.Status().RedisUp {
		t.Fatal("breaker not open against a hung Redis")
	}
	srv.Thaw()
	thawed = true
	testutil.Eventually(t, 10*time.Second, func() bool {
		return lim.Allow(ctx, "hang", p).Source == SourceRedis
	}, "decisions back in Redis after the pause")
	// No goroutine left once idle: the monitor stops itself.
	testutil.Eventually(t, 5*time.Second, func() bool { return !lim.lag.running.Load() }, "lag monitor still running while idle")
	lim.lag.wg.Wait()
}

// TestOutageBound: Redis dies under load, with default options and two
// data planes. Local decisions start from each plane's share of what Redis
// last said was left, so the cluster admits about the limit over the
// policy's window, not the limit again on top of what Redis had admitted.
func TestOutageBound(t *testing.T) {
	cases := []struct {
		name string
		p    Policy
	}{
		{"gcra, burst 99", Policy{Limit: 100, Window: time.Minute, Burst: 99}},
		{"window", Policy{Limit: 100, Window: time.Minute, Algorithm: SlidingWindow}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const peers = 2
			srv := testutil.StartRedis(t)
			var lims []*RedisLimiter
			for range peers {
				c := newClient(t, srv.URL())
				warmUp(t, c, 2)
				lims = append(lims, NewRedis(Options{Client: c, Peers: func() int { return peers }, Log: slog.New(&logRecorder{})}))
			}
			ctx := context.Background()
			var admitted atomic.Int64
			// 80 of the 100 taken, from both planes, through Redis: an
			// exchange slower than its deadline (a loaded machine, -race)
			// is decided locally, from the share, and Redis does not know
			// of it; the bound then grows by one.
			localBefore := 0
			for i := range 80 {
				d := lims[i%peers].Allow(ctx, "outage", tc.p)
				if !d.Allowed {
					t.Fatalf("decision %d before the outage: %+v (%+v)", i, d, lims[i%peers].Status())
				}
				if d.Source != SourceRedis {
					localBefore++
				}
				admitted.Add(1)
			}
			if localBefore > 8 {
				t.Fatalf("%d of 80 decisions before the outage were not made in Redis", localBefore)
			}
			start := time.Now()
			srv.Stop()
			var wg sync.WaitGroup
			var local atomic.Int64
			for w := range 4 {
				lim := lims[w%peers]
				wg.Go(func() {
					for range 500 {
						d := lim.Allow(ctx, "outage", tc.p)
						if d.Source == SourceLocal {
							local.Add(1)
						}
						if d.Allowed {
							admitted.Add(1)
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			// What Redis would have allowed since: the refill over the
			// elapsed time (GCRA: one per T; the window: nothing within
			// its minute), plus one per plane for rounding.
			refill := int(elapsed / (tc.p.Window / time.Duration(tc.p.Limit)))
			if tc.p.Algorithm == SlidingWindow {
				refill = 0
			}
			bound := tc.p.Limit + refill + peers + localBefore
			t.Logf("%d admitted in all (80 before the outage, %d of them local; then %d local decisions during the outage over %v); bound %d",
				admitted.Load(), localBefore, local.Load(), elapsed.Round(time.Millisecond), bound)
			if local.Load() < 1500 {
				t.Fatalf("only %d of 2000 decisions were local during the outage", local.Load())
			}
			// At least most of the 20 left are used: the shares are not lost.
			if n := int(admitted.Load()); n > bound || n < 90 {
				t.Fatalf("%d admitted, want 90..%d", n, bound)
			}
		})
	}
}
