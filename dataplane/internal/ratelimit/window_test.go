package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// limiters returns, for each backend, a function deciding one request: the
// in-process limiter on clock, and Redis (whose clock is the server's).
func limiters(t *testing.T, clock *testutil.Clock) map[string]func(key string, p Policy) Decision {
	srv := testutil.StartRedis(t)
	rl := NewRedis(Options{Client: newClient(t, srv.URL()), Budget: time.Second, Log: slog.New(&logRecorder{})})
	ll := NewLocal(clock.Now)
	return map[string]func(string, Policy) Decision{
		"memory": func(k string, p Policy) Decision { return ll.Allow(context.Background(), k, p) },
		"redis": func(k string, p Policy) Decision {
			d := rl.Allow(context.Background(), k, p)
			if d.Source != SourceRedis {
				t.Fatalf("decision from %s", d.Source)
			}
			return d
		},
	}
}

// TestWindowBurstAfterIdle: with the default algorithm a client may send up
// to the limit at once, the headers count down to 0 exactly at the last
// admission, and the refusal says when the next one passes. Redis and the
// in-process limiter agree.
func TestWindowBurstAfterIdle(t *testing.T) {
	clock := newFakeClock()
	p := NewPolicy(config.RateLimit{Limit: 5, Window: config.Duration(time.Minute)})
	if p.Algorithm != SlidingWindow {
		t.Fatalf("default algorithm %v, want the sliding window", p.Algorithm)
	}
	for name, allow := range limiters(t, clock) {
		t.Run(name, func(t *testing.T) {
			var got []string
			for i := range 7 {
				d := allow("burst", p)
				got = append(got, fmt.Sprintf("%v/%d", d.Allowed, d.Remaining))
				if d.Limit != 5 {
					t.Fatalf("decision %d: limit %d", i, d.Limit)
				}
				if !d.Allowed {
					// The first admissions leave the count 101 slots of
					// 600ms after their own: about a minute from now.
					if d.RetryAfter < 59*time.Second || d.RetryAfter > 61*time.Second || d.Reset < d.RetryAfter {
						t.Fatalf("refusal %d: %+v, want a retry after about a minute", i, d)
					}
				} else if d.Reset < 59*time.Second || d.Reset > 61*time.Second {
					t.Fatalf("admission %d: reset %v, want about a minute", i, d.Reset)
				}
			}
			if want := "[true/4 true/3 true/2 true/1 true/0 false/0 false/0]"; fmt.Sprint(got) != want {
				t.Fatalf("decisions %v, want %s", got, want)
			}
		})
	}
}

// TestWindowSliding: under constant pressure no interval of length Window,
// wherever it starts, admits more than Limit (exactly; the issue allows
// 1%), and the key still gets at least Limit·N/(N+1) per Window. Redis is
// checked on its own clock, the in-process limiter on a fake one with
// irregular arrivals.
func TestWindowSliding(t *testing.T) {
	const L = 200
	t.Run("memory", func(t *testing.T) {
		clock := newFakeClock()
		l := NewLocal(clock.Now)
		p := Policy{Limit: L, Window: time.Second, Algorithm: SlidingWindow}
		var admits []int64
		for i := range 40_000 {
			clock.Add(time.Duration((i*7919)%173) * time.Microsecond * 3)
			if l.Allow(context.Background(), "k", p).Allowed {
				admits = append(admits, clock.Now().UnixMicro())
			}
		}
		checkWindows(t, admits, p, 0)
	})
	t.Run("redis", func(t *testing.T) {
		srv := testutil.StartRedis(t)
		const planes, workers = 3, 9
		var lims []*RedisLimiter
		for range planes {
			lims = append(lims, NewRedis(Options{Client: newClient(t, srv.URL()), Log: slog.New(&logRecorder{})}))
		}
		p := Policy{Limit: L, Window: 500 * time.Millisecond, Algorithm: SlidingWindow}
		admits, calls, notRedis := hammerRedis(lims, workers, "sliding", p, time.Now().Add(3*p.Window), 20_000)
		// Only admissions in Redis are checked (a local one is this
		// plane's share, not the cluster's count). Nine workers spinning
		// on two cores keep the process busy: nearly all decisions must
		// still be Redis's.
		t.Logf("%d of %d decisions not made in Redis", notRedis, calls)
		if notRedis*100 > calls {
			t.Fatalf("%d of %d decisions not made in Redis (%+v, %+v, %+v)", notRedis, calls, lims[0].Status(), lims[1].Status(), lims[2].Status())
		}
		slices.Sort(admits)
		// An exchange that missed its deadline may still have counted in
		// Redis without its admission being seen here.
		checkWindows(t, admits, p, notRedis)
	})
}

// checkWindows checks sorted admission times (µs) against the window's
// guarantees: at most Limit in any interval of length Window, Limit at once
// at the start (less unseen, admissions counted but not seen), and not much
// less than Limit per Window over the run.
func checkWindows(t *testing.T, admits []int64, p Policy, unseen int) {
	t.Helper()
	if len(admits) == 0 {
		t.Fatal("nothing admitted")
	}
	w := p.Window.Microseconds()
	busiest, j := 0, 0
	for i := range admits {
		for admits[i]-admits[j] >= w {
			j++
		}
		busiest = max(busiest, i-j+1)
	}
	t0 := admits[0]
	first := countIn(admits, t0, t0+w)
	windows := float64(admits[len(admits)-1]-t0) / float64(w)
	perWindow := float64(len(admits)) / max(windows, 1)
	t.Logf("%d admitted over %.1f windows (%.1f per window), %d in the first, at most %d in any %v (limit %d)",
		len(admits), windows, perWindow, first, busiest, p.Window, p.Limit)
	if busiest > p.Limit {
		t.Errorf("%d admitted within one window, want at most %d", busiest, p.Limit)
	}
	if first > p.Limit || first < p.Limit-unseen {
		t.Errorf("%d admitted in the first window, want the limit %d at once", first, p.Limit)
	}
	if windows >= 2 && perWindow < float64(p.Limit)*0.9 {
		t.Errorf("%.1f admitted per window, want about %d", perWindow, p.Limit)
	}
}

// TestPolicyChangeAppliesAtOnce: the counter state belongs to the policy,
// so raising, lowering or re-windowing a limit starts afresh under the new
// one at once (the issue: limit 2 per 24h used up, then 1000/s with a burst
// of 100 was still refused with Retry-After 43200).
func TestPolicyChangeAppliesAtOnce(t *testing.T) {
	pol := func(rl config.RateLimit) Policy { return NewPolicy(rl) }
	day, sec, hour := config.Duration(24*time.Hour), config.Duration(time.Second), config.Duration(time.Hour)
	cases := []struct {
		name           string
		before, after  Policy
		used, admitted int // requests under before; then of 10 under after
	}{
		{"raised (the issue)", pol(config.RateLimit{Limit: 2, Window: day}), pol(config.RateLimit{Limit: 1000, Window: sec, Burst: 100}), 2, 10},
		{"raised, window", pol(config.RateLimit{Limit: 2, Window: day}), pol(config.RateLimit{Limit: 5, Window: day}), 2, 5},
		{"lowered", pol(config.RateLimit{Limit: 100, Window: hour}), pol(config.RateLimit{Limit: 3, Window: hour}), 50, 3},
		{"window changed", pol(config.RateLimit{Limit: 4, Window: hour}), pol(config.RateLimit{Limit: 4, Window: sec}), 4, 4},
		{"algorithm changed", pol(config.RateLimit{Limit: 4, Window: hour}), pol(config.RateLimit{Limit: 4, Window: hour, Algorithm: config.AlgorithmGCRA}), 4, 1},
	}
	for name, allow := range limiters(t, newFakeClock()) {
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				key := "change:" + tc.name
				for i := range tc.used {
					if d := allow(key, tc.before); !d.Allowed {
						t.Fatalf("request %d under the old policy refused: %+v", i, d)
					}
				}
				if d := allow(key, tc.before); tc.used >= tc.before.Limit && d.Allowed {
					t.Fatalf("old policy not used up: %+v", d)
				}
				n := 0
				for range 10 {
					if allow(key, tc.after).Allowed {
						n++
					}
				}
				if n != tc.admitted {
					t.Fatalf("%d of 10 admitted under the new policy, want %d", n, tc.admitted)
				}
			})
		}
	}
}

// TestFallbackFromShare: while Redis is unavailable a data plane decides
// from its share of what Redis last reported as left for the key, not from
// a fresh bucket: with 90 of 100 used and 2 peers, about 5 more.
func TestFallbackFromShare(t *testing.T) {
	cases := []struct {
		name string
		p    Policy
	}{
		{"gcra, burst 99", Policy{Limit: 100, Window: time.Hour, Burst: 99}},
		{"window", Policy{Limit: 100, Window: time.Hour, Algorithm: SlidingWindow}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := testutil.StartRedis(t)
			lim := NewRedis(Options{Client: newClient(t, srv.URL()), Budget: time.Second, Peers: func() int { return 2 }, Log: slog.New(&logRecorder{})})
			ctx := context.Background()
			for i := range 90 {
				if d := lim.Allow(ctx, "share", tc.p); !d.Allowed || d.Source != SourceRedis {
					t.Fatalf("decision %d: %+v", i, d)
				}
			}
			srv.Stop()
			admitted, local := 0, 0
			for range 100 {
				d := lim.Allow(ctx, "share", tc.p)
				if d.Source == SourceLocal {
					local++
				}
				if d.Allowed {
					admitted++
				}
			}
			t.Logf("%d of 100 admitted locally (%d local decisions) after 90 of 100 used in Redis, 2 peers", admitted, local)
			if local != 100 || admitted < 4 || admitted > 6 {
				t.Fatalf("%d admitted, %d local; want about 5 (half of the 10 left), all local", admitted, local)
			}
		})
	}
}
