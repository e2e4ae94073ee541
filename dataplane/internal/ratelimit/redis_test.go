package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
	"github.com/redis/go-redis/v9"
)

func TestRedisBurst(t *testing.T) {
	srv := testutil.StartRedis(t)
	lim := NewRedis(Options{Client: newClient(t, srv.URL()), Budget: time.Second})
	const T = 100 * time.Millisecond // 1s / 10
	cases := []struct {
		name      string
		burst     int
		admitted  int           // of a rapid burst of 30
		lastReset time.Duration // after the last admission
	}{
		{"burst 0", 0, 1, T},
		{"burst 9", 9, 10, 10 * T},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := Policy{Limit: 10, Window: time.Second, Burst: tc.burst}
			key := "burst:" + t.Name()
			var ds []Decision
			start := time.Now()
			for range 30 {
				ds = append(ds, lim.Allow(context.Background(), key, p))
			}
			elapsed := time.Since(start)
			// One more may pass per T the burst took; on a loaded machine
			// 30 round trips can take that long.
			slack := int(elapsed / T)
			admitted := 0
			for i, d := range ds {
				if d.Source != SourceRedis || d.Limit != 10 || d.Remaining < 0 {
					t.Fatalf("decision %d: %+v", i, d)
				}
				if d.Allowed {
					admitted++
					if d.RetryAfter != 0 || d.Reset <= 0 || d.Reset > time.Duration(tc.burst+1)*T {
						t.Errorf("admitted %d: %+v", i, d)
					}
					continue
				}
				if d.RetryAfter <= 0 || d.RetryAfter > T || d.Reset < d.RetryAfter || d.Reset > time.Duration(tc.burst+1)*T || d.Remaining != 0 {
					t.Errorf("refused %d: %+v", i, d)
				}
			}
			t.Logf("%d of 30 admitted in %v", admitted, elapsed)
			if admitted < tc.admitted || admitted > tc.admitted+slack {
				t.Fatalf("%d of 30 admitted in %v, want %d", admitted, elapsed, tc.admitted)
			}
			if slack == 0 {
				for i := range tc.admitted {
					if want := tc.burst - i; ds[i].Remaining != want {
						t.Errorf("decision %d: remaining %d, want %d", i, ds[i].Remaining, want)
					}
				}
				if r := ds[tc.admitted-1].Reset; r < tc.lastReset-10*time.Millisecond || r > tc.lastReset {
					t.Errorf("reset after the last admission %v, want about %v", r, tc.lastReset)
				}
			}
		})
	}
}

func TestRedisKeys(t *testing.T) {
	srv := testutil.StartRedis(t)
	client := newClient(t, srv.URL())
	lim := NewRedis(Options{Client: client, Budget: time.Second})
	ctx := context.Background()
	p := Policy{Limit: 10, Window: time.Second, Burst: 4}

	for range 5 {
		lim.Allow(ctx, "route-a:ip:1.2.3.4", p)
	}
	if d := lim.Allow(ctx, "route-a:ip:1.2.3.4", p); d.Allowed {
		t.Fatalf("sixth request allowed: %+v", d)
	}
	if d := lim.Allow(ctx, "route-a:ip:5.6.7.8", p); !d.Allowed || d.Remaining != 4 {
		t.Fatalf("another key: %+v, want a fresh bucket", d)
	}

	// The bucket lives under its hash-tagged name, tagged with the
	// policy's fingerprint, and expires when full.
	g, _ := compile(p, time.Microsecond)
	keyA, keyB := "rl:{route-a:ip:1.2.3.4}:"+fmt.Sprintf("%08x", g.fp), "rl:{route-a:ip:5.6.7.8}:"+fmt.Sprintf("%08x", g.fp)
	ttl, err := client.PTTL(ctx, keyA).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > 500*time.Millisecond {
		t.Fatalf("TTL %v, want at most 5 intervals (500ms)", ttl)
	}
	testutil.Eventually(t, 3*time.Second, func() bool {
		n, err := client.Exists(ctx, keyA, keyB).Result()
		return err == nil && n == 0
	}, "rate-limit keys did not expire")
	if d := lim.Allow(ctx, "route-a:ip:1.2.3.4", p); !d.Allowed || d.Remaining != 4 {
		t.Fatalf("after expiry: %+v, want a full bucket", d)
	}
}

// TestRedisOneRoundTrip checks that a decision costs one EVALSHA, and that
// a server that lost its scripts (a restart) costs one SCRIPT LOAD per
// script and the batch that met the NOSCRIPT again, once.
func TestRedisOneRoundTrip(t *testing.T) {
	srv := testutil.StartRedis(t)
	client := newClient(t, srv.URL())
	lim := NewRedis(Options{Client: client, Budget: time.Second})
	ctx := context.Background()
	p := Policy{Limit: 1000, Window: time.Second}

	if err := client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		if d := lim.Allow(ctx, "rt:"+strconv.Itoa(i%5), p); d.Source != SourceRedis {
			t.Fatalf("decision %d from %s", i, d.Source)
		}
	}
	stats := commandCalls(t, client)
	if stats["evalsha"] != n+1 || stats["script|load"] != 2 || stats["eval"] != 0 {
		t.Fatalf("command calls %v; want evalsha=%d (one per decision, one again after NOSCRIPT) and script|load=2", stats, n+1)
	}
}

// commandCalls returns the calls per command from INFO commandstats.
func commandCalls(t *testing.T, c redis.UniversalClient) map[string]int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for line := range strings.Lines(info) {
		// cmdstat_evalsha:calls=50,usec=...
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		v, _, _ := strings.Cut(rest, ",")
		calls[name], _ = strconv.Atoi(v)
	}
	return calls
}

// TestBreaker drives the breaker with a fake clock against a port nobody
// listens on, counting the commands that reach the client.
func TestBreaker(t *testing.T) {
	client := newClient(t, "redis://"+testutil.RefusedAddr(t)+"/0")
	var calls atomic.Int64
	client.AddHook(countHook{&calls})
	clock := newFakeClock()
	logs := &logRecorder{}
	lim := NewRedis(Options{
		Client:  client,
		Breaker: BreakerOptions{Failures: 3, Cooldown: time.Second},
		Now:     clock.Now,
		Log:     slog.New(logs),
	})
	p := Policy{Limit: 10, Window: time.Second}
	ctx := context.Background()
	probeDone := func() bool {
		lim.br.mu.Lock()
		defer lim.br.mu.Unlock()
		return !lim.br.probing
	}

	// A caller that has gone away neither reaches Redis nor counts
	// against it.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for range 10 {
		lim.Allow(cancelled, "k", p)
	}
	if n := calls.Load(); n != 0 || !lim.Status().RedisUp {
		t.Fatalf("cancelled requests: %d calls, status %+v", n, lim.Status())
	}

	// Failures at one instant are one hiccup, however many.
	for i := range 5 {
		if d := lim.Allow(ctx, "k", p); d.Source != SourceLocal {
			t.Fatalf("decision %d from %q, want local", i, d.Source)
		}
	}
	if !lim.Status().RedisUp {
		t.Fatal("breaker opened on failures that did not span 3 budgets")
	}
	for i := range 10 {
		clock.Add(DefaultBudget)
		if d := lim.Allow(ctx, "k", p); d.Source != SourceLocal {
			t.Fatalf("decision %d from %q, want local", i, d.Source)
		}
	}
	// The streak began with the first of the five: it lasts 3 budgets
	// after three more. A decision that gave up waiting before its batch
	// went out is not sent, so at most those 8 reached Redis.
	testutil.Eventually(t, 5*time.Second, lim.batch.idle, "batches still in flight")
	n8 := calls.Load()
	if n8 < 1 || n8 > 8 {
		t.Fatalf("%d calls reached Redis, want at most the 8 made before the breaker opened", n8)
	}
	st := lim.Status()
	if st.Backend != "redis" || st.RedisUp || st.LastError == "" {
		t.Fatalf("status %+v, want redis down with an error", st)
	}

	// After the cool-down one request starts a probe in the background
	// and is decided locally at once, like the rest.
	clock.Add(time.Second)
	for range 10 {
		if d := lim.Allow(ctx, "k", p); d.Source != SourceLocal {
			t.Fatalf("decision from %q while open", d.Source)
		}
	}
	testutil.Eventually(t, 5*time.Second, probeDone, "probe did not finish")
	if n := calls.Load(); n != n8+1 {
		t.Fatalf("%d calls reached Redis, want %d and one probe", n, n8)
	}
	for range 10 {
		lim.Allow(ctx, "k", p)
	}
	if n := calls.Load(); n != n8+1 {
		t.Fatalf("%d calls: a failed probe must wait for the next cool-down", n)
	}
	clock.Add(time.Second)
	lim.Allow(ctx, "k", p)
	testutil.Eventually(t, 5*time.Second, probeDone, "probe did not finish")
	if n := calls.Load(); n != n8+2 {
		t.Fatalf("%d calls, want another probe after another cool-down", n)
	}
	if w, i := logs.count(slog.LevelWarn), logs.count(slog.LevelInfo); w != 1 || i != 0 {
		t.Fatalf("%d warnings and %d infos, want one warning for the outage:\n%s", w, i, logs)
	}
}

// countHook counts the commands a client processes.
type countHook struct{ n *atomic.Int64 }

func (countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func TestFallbackShare(t *testing.T) {
	cases := []struct {
		name  string
		p     Policy
		peers int
		want  int // admitted of a burst of 100 while Redis is down
	}{
		{"fail_open one peer", Policy{Limit: 10, Window: time.Minute, Burst: 9}, 1, 10},
		{"fail_open four peers", Policy{Limit: 40, Window: time.Minute, Burst: 39}, 4, 10},
		{"fail_open more peers than limit", Policy{Limit: 3, Window: time.Minute}, 10, 1},
		{"fail_closed", Policy{Limit: 10, Window: time.Minute, Burst: 9, FailClosed: true}, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := newClient(t, "redis://"+testutil.RefusedAddr(t)+"/0")
			// The real clock lets the breaker open after its span; the
			// windows are long enough for no refill to matter meanwhile.
			lim := NewRedis(Options{Client: client, Peers: func() int { return tc.peers }, Log: slog.New(&logRecorder{})})
			admitted := 0
			for range 100 {
				d := lim.Allow(context.Background(), "k", tc.p)
				if d.Source != SourceLocal {
					t.Fatalf("source %q, want local", d.Source)
				}
				if d.Allowed {
					admitted++
				} else if d.RetryAfter <= 0 {
					t.Fatalf("refused without a retry-after: %+v", d)
				}
			}
			if admitted != tc.want {
				t.Fatalf("%d admitted, want %d", admitted, tc.want)
			}
		})
	}
}

func TestNewPolicy(t *testing.T) {
	cases := []struct {
		in   config.RateLimit
		want Policy
	}{
		{config.RateLimit{Limit: 100, Window: config.Duration(time.Minute), Burst: 5},
			Policy{Limit: 100, Window: time.Minute, Burst: 5}},
		{config.RateLimit{Limit: 1000, Window: config.Duration(time.Minute), Burst: 5},
			Policy{Limit: 1000, Window: time.Minute, Burst: 14}},
		{config.RateLimit{Limit: 1000, Window: config.Duration(time.Minute), Algorithm: config.AlgorithmGCRA},
			Policy{Limit: 1000, Window: time.Minute, Burst: 9}},
		{config.RateLimit{Limit: 1, Window: config.Duration(time.Second), OnRedisError: config.FailOpen},
			Policy{Limit: 1, Window: time.Second, Algorithm: SlidingWindow}},
		{config.RateLimit{Limit: 1000, Window: config.Duration(time.Second), Algorithm: config.AlgorithmWindow, OnRedisError: config.FailClosed},
			Policy{Limit: 1000, Window: time.Second, FailClosed: true, Algorithm: SlidingWindow}},
	}
	for _, tc := range cases {
		if got := NewPolicy(tc.in); got != tc.want {
			t.Errorf("NewPolicy(%+v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// TestGuardedClient checks the budget with a client that ignores context
// deadlines (go-redis' default): the decision stops waiting even though the
// call goes on.
func TestGuardedClient(t *testing.T) {
	srv := testutil.StartRedis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = client.Close() })
	logs := &logRecorder{}
	lim := NewRedis(Options{Client: client, Log: slog.New(logs)})
	if !lim.guarded || logs.count(slog.LevelWarn) != 1 {
		t.Fatalf("guarded %v, %d warnings; want the budget enforced around the client, and said so", lim.guarded, logs.count(slog.LevelWarn))
	}
	p := Policy{Limit: 10, Window: time.Second}
	ctx := context.Background()
	testutil.Eventually(t, 5*time.Second, func() bool { return lim.Allow(ctx, "g", p).Source == SourceRedis }, "no decision from Redis")

	srv.Pause(300 * time.Millisecond)
	start := time.Now()
	d := lim.Allow(ctx, "g", p)
	took := time.Since(start)
	t.Logf("decision against a hanging Redis: %+v in %v", d, took)
	if d.Source != SourceLocal || took > DefaultBudget+50*time.Millisecond {
		t.Fatalf("decision %+v after %v, want a local one within the budget", d, took)
	}
}
