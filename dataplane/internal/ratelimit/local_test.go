package ratelimit

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/testutil"
)

func newFakeClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
}

func TestLocalGCRA(t *testing.T) {
	type step struct {
		advance time.Duration // before the request
		want    Decision
	}
	const ms = time.Millisecond
	cases := []struct {
		name  string
		p     Policy
		steps []step
	}{{
		name: "burst 0 spaces requests by T",
		p:    Policy{Limit: 10, Window: time.Second},
		steps: []step{
			{0, Decision{Allowed: true, Limit: 10, Remaining: 0, Reset: 100 * ms}},
			{0, Decision{Limit: 10, Reset: 100 * ms, RetryAfter: 100 * ms}},
			{99 * ms, Decision{Limit: 10, Reset: 1 * ms, RetryAfter: 1 * ms}},
			{1 * ms, Decision{Allowed: true, Limit: 10, Remaining: 0, Reset: 100 * ms}},
			// A quiet period does not bank anything without a burst.
			{time.Hour, Decision{Allowed: true, Limit: 10, Remaining: 0, Reset: 100 * ms}},
			{0, Decision{Limit: 10, Reset: 100 * ms, RetryAfter: 100 * ms}},
		},
	}, {
		name: "burst 2 lets three through at once, then one per T",
		p:    Policy{Limit: 10, Window: time.Second, Burst: 2},
		steps: []step{
			{0, Decision{Allowed: true, Limit: 10, Remaining: 2, Reset: 100 * ms}},
			{0, Decision{Allowed: true, Limit: 10, Remaining: 1, Reset: 200 * ms}},
			{0, Decision{Allowed: true, Limit: 10, Remaining: 0, Reset: 300 * ms}},
			{0, Decision{Limit: 10, Reset: 300 * ms, RetryAfter: 100 * ms}},
			{50 * ms, Decision{Limit: 10, Reset: 250 * ms, RetryAfter: 50 * ms}},
			{50 * ms, Decision{Allowed: true, Limit: 10, Remaining: 0, Reset: 300 * ms}},
			// Half an interval later there is still no whole request spare.
			{150 * ms, Decision{Allowed: true, Limit: 10, Remaining: 0, Reset: 250 * ms}},
			{300 * ms, Decision{Allowed: true, Limit: 10, Remaining: 2, Reset: 100 * ms}},
		},
	}, {
		name: "interval rounds up, never down",
		p:    Policy{Limit: 3, Window: time.Second},
		steps: []step{
			{0, Decision{Allowed: true, Limit: 3, Reset: 333333334}},
			{333333333, Decision{Limit: 3, Reset: 1, RetryAfter: 1}},
			{1, Decision{Allowed: true, Limit: 3, Reset: 333333334}},
		},
	}, {
		name: "no limit",
		p:    Policy{},
		steps: []step{
			{0, Decision{Allowed: true}},
			{0, Decision{Allowed: true}},
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			l := NewLocal(clock.Now)
			for i, s := range tc.steps {
				clock.Add(s.advance)
				got := l.Allow(context.Background(), "k", tc.p)
				want := s.want
				want.Source = SourceMemory
				if got != want {
					t.Fatalf("step %d: got %+v, want %+v", i, got, want)
				}
			}
		})
	}
}

// TestLocalWindowBound checks the property the algorithm is chosen for:
// with Burst 0, no interval of length Window admits more than Limit+1
// requests, wherever it starts, under any arrival pattern.
func TestLocalWindowBound(t *testing.T) {
	clock := newFakeClock()
	l := NewLocal(clock.Now)
	p := Policy{Limit: 7, Window: time.Second}
	var admitted []time.Time
	// Arrivals at irregular gaps, some far denser than the limit.
	for i := range 5000 {
		clock.Add(time.Duration((i*7919)%173) * time.Millisecond / 3)
		if l.Allow(context.Background(), "k", p).Allowed {
			admitted = append(admitted, clock.Now())
		}
	}
	j := 0
	for i := range admitted {
		for admitted[i].Sub(admitted[j]) >= p.Window {
			j++
		}
		if n := i - j + 1; n > p.Limit+1 {
			t.Fatalf("%d admitted within %v ending at #%d; want at most %d", n, p.Window, i, p.Limit+1)
		}
	}
	if len(admitted) < 100 {
		t.Fatalf("only %d admitted: arrivals too sparse for the test to mean anything", len(admitted))
	}
}

func TestLocalKeysIndependent(t *testing.T) {
	l := NewLocal(newFakeClock().Now)
	p := Policy{Limit: 1, Window: time.Minute}
	if !l.Allow(context.Background(), "a", p).Allowed {
		t.Fatal("first request for a refused")
	}
	if l.Allow(context.Background(), "a", p).Allowed {
		t.Fatal("second request for a allowed")
	}
	if !l.Allow(context.Background(), "b", p).Allowed {
		t.Fatal("first request for b refused: keys share state")
	}
}

func TestLocalMemoryBounded(t *testing.T) {
	clock := newFakeClock()
	l := NewLocal(clock.Now)
	short := Policy{Limit: 1, Window: time.Second}
	long := Policy{Limit: 1, Window: time.Hour}

	// Idle keys go: one-off clients, each full again a second after its
	// request, must not accumulate, and sweeping them must not cost the
	// live ones their state. About 10000 keys are live at any time.
	const oneOff, live = 200_000, 10_000
	for i := range oneOff {
		l.Allow(context.Background(), "ip:"+strconv.Itoa(i), short)
		if i%(live/10) == live/10-1 {
			clock.Add(100 * time.Millisecond)
		}
	}
	if n, _ := l.size(); n > 3*live {
		t.Fatalf("%d keys tracked with %d live, want idle ones dropped", n, live)
	}
	for i := oneOff - live*9/10; i < oneOff; i++ {
		if l.Allow(context.Background(), "ip:"+strconv.Itoa(i), short).Allowed {
			t.Fatalf("live key ip:%d was forgotten", i)
		}
	}
	n, _ := l.size()
	t.Logf("idle keys: %d tracked after %d distinct keys, %d live", n, oneOff, live)

	// Keys that are all still limited hit the byte budget instead, for
	// either algorithm: a window key's slot list counts too.
	for _, alg := range []Algorithm{GCRA, SlidingWindow} {
		const maxBytes = 1 << 20
		l = newLocal(clock.Now, maxBytes)
		long.Algorithm = alg
		for i := range 200_000 {
			l.Allow(context.Background(), "user:"+strconv.Itoa(i), long)
		}
		keys, bytes := l.size()
		if bytes > maxBytes {
			t.Fatalf("algorithm %d: %d bytes in %d keys, want at most the budget %d", alg, bytes, keys, maxBytes)
		}
		// The most recent key is remembered: eviction makes room before adding.
		if l.Allow(context.Background(), "user:199999", long).Allowed {
			t.Fatal("the key just added was forgotten")
		}
		t.Logf("algorithm %d, live keys: %d tracked (%d bytes) after 2e5 distinct keys (budget %d)", alg, keys, bytes, maxBytes)
	}
}

func TestLocalConcurrent(t *testing.T) {
	l := NewLocal(nil)
	// The limit is far below what the goroutines ask, so exactly the burst
	// passes during the run (the interval is hours long).
	p := Policy{Limit: 1, Window: 24 * time.Hour, Burst: 99}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for range 8 {
		wg.Go(func() {
			n := 0
			for range 1000 {
				if l.Allow(context.Background(), "shared", p).Allowed {
					n++
				}
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if allowed != 100 {
		t.Fatalf("%d allowed, want 100", allowed)
	}
}

func TestCompileClampsTolerance(t *testing.T) {
	g, ok := compile(Policy{Limit: 1, Window: 24 * time.Hour, Burst: 1_000_000_000}, time.Microsecond)
	if !ok || g.tolerance != maxTolerance || g.interval != 24*time.Hour {
		t.Fatalf("compile = %+v, %v; want interval 24h, tolerance %v", g, ok, maxTolerance)
	}
	g, _ = compile(Policy{Limit: 1_000_000_000, Window: time.Second}, time.Microsecond)
	if g.interval != time.Microsecond {
		t.Fatalf("interval %v, want the resolution 1µs", g.interval)
	}
}
