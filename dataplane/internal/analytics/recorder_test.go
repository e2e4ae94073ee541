package analytics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/testutil"

	"github.com/portico-gw/portico/shared/apiv1"
)

func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

func byRoute(rep apiv1.Report) map[string]apiv1.RouteCounters {
	m := map[string]apiv1.RouteCounters{}
	for _, rc := range rep.Routes {
		if _, dup := m[rc.Route]; dup {
			panic("duplicate route " + rc.Route)
		}
		m[rc.Route] = rc
	}
	return m
}

func TestFlushCountsAndPeriods(t *testing.T) {
	clk := newClock()
	t0 := clk.Now()
	r := NewRecorder("dp-1", clk.Now)
	r.Observe("users", 200, 3*time.Millisecond)
	r.Observe("users", 404, 3*time.Millisecond)
	r.Observe("users", 503, 40*time.Millisecond)
	r.Observe("", 404, 100*time.Microsecond)
	r.Observe("orders", 201, time.Second)
	clk.Add(10 * time.Second)

	rep := r.Flush()
	if rep.NodeID != "dp-1" || !rep.Start.Equal(t0) || !rep.End.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("header = %q %v..%v", rep.NodeID, rep.Start, rep.End)
	}
	names := []string{}
	for _, rc := range rep.Routes {
		names = append(names, rc.Route)
	}
	if !slices.Equal(names, []string{"", "orders", "users"}) {
		t.Fatalf("routes = %q, want sorted by name", names)
	}
	u := byRoute(rep)["users"]
	if u.Requests != 3 || u.Errors != 1 || u.ClientErrors != 1 {
		t.Errorf("users = %+v", u)
	}
	// 3ms lies in (2.828ms, 3.364ms], bucket 15; 40ms in (38.055ms, 45.255ms], bucket 30.
	if u.Latency.Offset != 15 || len(u.Latency.Counts) != 16 || u.Latency.Counts[0] != 2 || u.Latency.Counts[15] != 1 {
		t.Errorf("users latency = %+v", u.Latency)
	}
	if h := byRoute(rep)[""].Latency; h.Offset != 0 || !slices.Equal(h.Counts, []int64{1}) {
		t.Errorf("unmatched latency = %+v", h)
	}

	// Counts restart; idle routes are left out; the next period starts
	// where the last ended.
	r.Observe("orders", 500, time.Millisecond)
	clk.Add(5 * time.Second)
	rep2 := r.Flush()
	if !rep2.Start.Equal(rep.End) || len(rep2.Routes) != 1 || rep2.Routes[0].Route != "orders" || rep2.Routes[0].Requests != 1 || rep2.Routes[0].Errors != 1 {
		t.Fatalf("second report = %+v", rep2)
	}
	if rep3 := r.Flush(); len(rep3.Routes) != 0 || rep3.Routes == nil {
		t.Fatalf("idle report routes = %#v, want empty and non-nil", rep3.Routes)
	}
}

func TestFlushClockStepsBack(t *testing.T) {
	clk := newClock()
	r := NewRecorder("dp", clk.Now)
	clk.Add(-time.Minute)
	rep := r.Flush()
	if rep.End.Before(rep.Start) {
		t.Fatalf("period %v..%v ends before it starts", rep.Start, rep.End)
	}
}

func TestLatencyBuckets(t *testing.T) {
	b := apiv1.LatencyBounds
	if len(b) != 73 || b[0] != 250*time.Microsecond || b[8] != time.Millisecond || b[len(b)-1] != 65536*time.Millisecond {
		t.Fatalf("layout changed (a wire-incompatible change): %d bounds %v..%v", len(b), b[0], b[len(b)-1])
	}
	for i := 1; i < len(b); i++ {
		if r := float64(b[i]) / float64(b[i-1]); r < 1.18 || r > 1.2 {
			t.Errorf("bound %d/%d ratio %.3f", i, i-1, r)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 0}, {0, 0}, {250 * time.Microsecond, 0}, {250*time.Microsecond + 1, 1},
		{time.Millisecond, 8}, {time.Millisecond + 1, 9}, {65536 * time.Millisecond, 72},
		{65536*time.Millisecond + 1, 73}, {time.Hour, 73},
	} {
		if got := apiv1.LatencyBucket(tc.d); got != tc.want {
			t.Errorf("LatencyBucket(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestQuantiles(t *testing.T) {
	t.Run("interpolates within a bucket", func(t *testing.T) {
		// 100 observations spread evenly over (1ms, 1.189ms]: the median is
		// halfway.
		var h apiv1.Histogram
		for i := range 100 {
			h.Observe(time.Millisecond + time.Duration(i+1)*1890*time.Nanosecond)
		}
		if h.Offset != 9 || len(h.Counts) != 1 {
			t.Fatalf("histogram = %+v", h)
		}
		if got, want := h.Quantile(0.5), time.Millisecond+(1189-1000)*time.Microsecond/2; absDiff(got, want) > time.Microsecond {
			t.Errorf("p50 = %v, want %v", got, want)
		}
		if got := h.Quantile(0); got != time.Millisecond {
			t.Errorf("p0 = %v, want the bucket's lower bound", got)
		}
		if got := h.Quantile(1); got != 1189*time.Microsecond {
			t.Errorf("p100 = %v, want the bucket's upper bound", got)
		}
	})
	t.Run("edge cases", func(t *testing.T) {
		var h apiv1.Histogram
		if h.Quantile(0.5) != 0 {
			t.Error("empty histogram has a median")
		}
		h.Observe(2 * time.Minute)
		if got := h.Quantile(0.99); got != apiv1.LatencyBounds[len(apiv1.LatencyBounds)-1] {
			t.Errorf("overflow p99 = %v, want the last bound", got)
		}
		if h.Quantile(math.NaN()) != 0 || h.Quantile(7) != h.Quantile(1) {
			t.Error("q outside [0,1] not handled")
		}
	})
	t.Run("relative error within the documented bound", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		var h apiv1.Histogram
		xs := make([]time.Duration, 20000)
		for i := range xs {
			// Log-normal around 20ms with a long tail.
			xs[i] = time.Duration(math.Exp(rng.NormFloat64()*1.2) * float64(20*time.Millisecond))
			h.Observe(xs[i])
		}
		slices.Sort(xs)
		for _, q := range []float64{0.01, 0.1, 0.5, 0.9, 0.99, 0.999} {
			exact := xs[int(math.Ceil(q*float64(len(xs))))-1]
			got := h.Quantile(q)
			ratio := float64(got) / float64(exact)
			if ratio < 1/1.19 || ratio > 1.19 {
				t.Errorf("q%.3f = %v, exact %v (ratio %.3f)", q, got, exact, ratio)
			}
			if q <= 0.99 && math.Abs(ratio-1) > 0.05 {
				t.Errorf("q%.3f = %v, exact %v: %.1f%% off, interpolation should do better on a smooth distribution", q, got, exact, 100*(ratio-1))
			}
		}
	})
	t.Run("merge", func(t *testing.T) {
		var a, b apiv1.Histogram
		a.Observe(time.Millisecond)
		b.Observe(time.Second)
		b.Observe(100 * time.Microsecond)
		bCounts := slices.Clone(b.Counts)
		a.Merge(b)
		a.Merge(apiv1.Histogram{})
		if a.Offset != 0 || len(a.Counts) != apiv1.LatencyBucket(time.Second)+1 || a.Count() != 3 {
			t.Fatalf("merged = %+v", a)
		}
		a.Counts[0] = 99
		if !slices.Equal(b.Counts, bCounts) {
			t.Error("Merge aliases its argument")
		}
	})
}

func absDiff(a, b time.Duration) time.Duration {
	if a > b {
		return a - b
	}
	return b - a
}

// TestConcurrentObserveFlush checks that every observation is reported
// exactly once while Flush runs concurrently, including when routes are
// forgotten and recreated under racing Observe calls.
func TestConcurrentObserveFlush(t *testing.T) {
	clk := newClock()
	r := NewRecorder("dp", clk.Now)
	const (
		workers = 8
		perG    = 20000
		nroute  = 50
	)
	statuses := []int{200, 201, 404, 429, 500, 503}
	type tally struct{ req, errs, cerrs int64 }

	var (
		mu      sync.Mutex
		reports []apiv1.Report
	)
	stop := make(chan struct{})
	flusherDone := make(chan struct{})
	go func() {
		defer close(flusherDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			rep := r.Flush()
			mu.Lock()
			reports = append(reports, rep)
			mu.Unlock()
		}
	}()

	wants := make([]map[string]tally, workers)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			w := map[string]tally{}
			for i := range perG {
				// Routes drift over time so that old ones go idle and get
				// forgotten, and an occasional revisit recreates them.
				k := i * nroute / perG
				if rng.IntN(50) == 0 {
					k = rng.IntN(nroute)
				}
				route := fmt.Sprintf("r%d", k)
				st := statuses[rng.IntN(len(statuses))]
				r.Observe(route, st, time.Duration(rng.IntN(int(time.Second))))
				c := w[route]
				c.req++
				if st >= 500 {
					c.errs++
				} else if st >= 400 {
					c.cerrs++
				}
				w[route] = c
			}
			wants[g] = w
		}()
	}
	wg.Wait()
	close(stop)
	<-flusherDone
	// One flush may still carry counts, then idleFlushes idle ones, and the
	// next forgets every route.
	for range idleFlushes + 2 {
		reports = append(reports, r.Flush())
	}

	want := map[string]tally{}
	for _, w := range wants {
		for k, c := range w {
			s := want[k]
			s.req, s.errs, s.cerrs = s.req+c.req, s.errs+c.errs, s.cerrs+c.cerrs
			want[k] = s
		}
	}
	got := map[string]tally{}
	for _, rep := range reports {
		for _, rc := range byRoute(rep) {
			if rc.Requests <= 0 || rc.Latency.Count() != rc.Requests {
				t.Fatalf("%s: %d requests, histogram holds %d: counts torn by a flush", rc.Route, rc.Requests, rc.Latency.Count())
			}
			s := got[rc.Route]
			s.req, s.errs, s.cerrs = s.req+rc.Requests, s.errs+rc.Errors, s.cerrs+rc.ClientErrors
			got[rc.Route] = s
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: reported %+v, observed %+v", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("reported %d routes, observed %d", len(got), len(want))
	}
	if n := r.nroutes.Load(); n != 0 {
		t.Errorf("%d routes still held after the workers stopped", n)
	}
	t.Logf("%d flushes", len(reports))
}

// TestFlushBetweenLoadAndClaim runs a Flush while an Observe holds counters
// it has loaded but not yet claimed: the observation must land in the next
// report, not in the retired counters.
func TestFlushBetweenLoadAndClaim(t *testing.T) {
	r := NewRecorder("dp", newClock().Now)
	r.Observe("a", 200, time.Millisecond)
	r.Flush()
	r.Flush() // both counters have been swapped in once: the spare is warm

	loaded, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	testHookClaim = func() {
		once.Do(func() {
			close(loaded)
			<-release
		})
	}
	t.Cleanup(func() { testHookClaim = nil })
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Observe("a", 503, time.Millisecond)
	}()
	<-loaded
	if rep := r.Flush(); len(rep.Routes) != 0 {
		t.Fatalf("flush during the observation reported %+v", rep.Routes)
	}
	close(release)
	<-done
	m := byRoute(r.Flush())
	if a := m["a"]; a.Requests != 1 || a.Errors != 1 || a.Latency.Count() != 1 {
		t.Fatalf("next flush = %+v, want the observation", m)
	}
}

func TestRouteCap(t *testing.T) {
	r := NewRecorder("dp", newClock().Now)
	const extra = 25
	for i := range maxRoutes + extra {
		r.Observe(fmt.Sprintf("route-%05d", i), 200, time.Millisecond)
	}
	r.Observe("route-00000", 200, time.Millisecond) // known routes keep counting
	rep := r.Flush()
	if len(rep.Routes) != apiv1.MaxReportRoutes {
		t.Fatalf("%d routes reported, want %d", len(rep.Routes), apiv1.MaxReportRoutes)
	}
	m := byRoute(rep)
	if m[apiv1.OtherRoute].Requests != extra || m["route-00000"].Requests != 2 {
		t.Fatalf("other = %d, route-00000 = %d", m[apiv1.OtherRoute].Requests, m["route-00000"].Requests)
	}

	// Idle routes are forgotten, which makes room again.
	for range idleFlushes + 1 {
		r.Flush()
	}
	r.Observe("newcomer", 200, time.Millisecond)
	if m := byRoute(r.Flush()); m["newcomer"].Requests != 1 || m[apiv1.OtherRoute].Requests != 0 {
		t.Fatalf("after idle routes were forgotten: %+v", m)
	}
}

func TestMergeReportsFoldsBeyondCap(t *testing.T) {
	mk := func(from, to int, n int64) apiv1.Report {
		var rep apiv1.Report
		for i := from; i < to; i++ {
			c := n + int64(i)
			rep.Routes = append(rep.Routes, apiv1.RouteCounters{
				Route: fmt.Sprintf("r%05d", i), Requests: c, Latency: apiv1.Histogram{Offset: 8, Counts: []int64{c}},
			})
		}
		return rep
	}
	older, newer := mk(0, 6000, 1), mk(4000, 10500, 1)
	older.Routes = append(older.Routes, apiv1.RouteCounters{Route: apiv1.OtherRoute, Requests: 7, Latency: apiv1.Histogram{Counts: []int64{7}}})
	slices.SortFunc(older.Routes, func(a, b apiv1.RouteCounters) int { return cmpString(a.Route, b.Route) })
	total := requests(&older) + requests(&newer)

	m := mergeReports(older, newer)
	if len(m.Routes) != apiv1.MaxReportRoutes {
		t.Fatalf("%d routes, want %d", len(m.Routes), apiv1.MaxReportRoutes)
	}
	if requests(&m) != total {
		t.Fatalf("merged requests = %d, want %d", requests(&m), total)
	}
	byName := byRoute(m)
	if byName["r10499"].Requests != 10500 || byName["r05000"].Requests != 2*5001 {
		t.Errorf("busiest routes not kept: %+v %+v", byName["r10499"], byName["r05000"])
	}
	if _, ok := byName["r00000"]; ok {
		t.Error("quietest route kept")
	}
	for _, rc := range m.Routes {
		if rc.Latency.Count() != rc.Requests {
			t.Fatalf("%s: histogram %d, requests %d", rc.Route, rc.Latency.Count(), rc.Requests)
		}
	}
	if !slices.IsSortedFunc(m.Routes, func(a, b apiv1.RouteCounters) int { return cmpString(a.Route, b.Route) }) {
		t.Error("merged routes not sorted by name")
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sendCall is one call of a scripted send. Run waits in send until the test
// replies, which lets the test observe and move the clock between attempts.
type sendCall struct {
	// live: the context was not done when send was called.
	live  bool
	rep   apiv1.Report
	reply chan error
}

func scriptedSend(calls chan<- sendCall) func(context.Context, apiv1.Report) error {
	return func(ctx context.Context, rep apiv1.Report) error {
		c := sendCall{ctx.Err() == nil, rep, make(chan error)}
		calls <- c
		return <-c.reply
	}
}

// runInterval is long enough that a send's context cannot time out between
// the call and the test's look at it.
const runInterval = 50 * time.Millisecond

func startRun(t *testing.T, r *Recorder) (calls chan sendCall, cancel func(), done chan struct{}) {
	calls = make(chan sendCall)
	ctx, cancel := context.WithCancel(t.Context())
	done = make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx, runInterval, scriptedSend(calls))
	}()
	return calls, cancel, done
}

// finalSend answers the attempts Run makes with a dead context after it was
// cancelled, as a real send would, and returns its last attempt.
func finalSend(calls chan sendCall) sendCall {
	for {
		c := <-calls
		if c.live {
			return c
		}
		c.reply <- context.Canceled
	}
}

func TestRunMergesFailedSends(t *testing.T) {
	clk := newClock()
	t0 := clk.Now()
	r := NewRecorder("dp", clk.Now)
	r.Observe("a", 200, time.Millisecond)
	r.Observe("a", 500, time.Millisecond)
	calls, cancel, done := startRun(t, r)

	c := <-calls
	if requests(&c.rep) != 2 {
		t.Fatalf("first report = %+v", c.rep)
	}
	r.Observe("a", 200, time.Millisecond)
	r.Observe("b", 404, time.Millisecond)
	c.reply <- errors.New("control plane down")

	c = <-calls
	if requests(&c.rep) != 4 || !c.rep.Start.Equal(t0) {
		t.Fatalf("report after a failure = %+v, want the failed counts merged in and their start kept", c.rep)
	}
	m := byRoute(c.rep)
	if a := m["a"]; a.Requests != 3 || a.Errors != 1 || a.Latency.Count() != 3 || m["b"].ClientErrors != 1 {
		t.Fatalf("merged routes = %+v", m)
	}
	r.Observe("a", 200, time.Millisecond)
	c.reply <- nil

	c = <-calls
	if requests(&c.rep) != 1 {
		t.Fatalf("report after a success = %+v, want only new counts", c.rep)
	}
	// Stopping: the last counts still go out, with a live context.
	r.Observe("a", 200, time.Millisecond)
	cancel()
	c.reply <- nil

	c = finalSend(calls)
	if requests(&c.rep) != 1 {
		t.Fatalf("final report = %+v", c.rep)
	}
	c.reply <- nil
	<-done
	if r.Dropped() != 0 {
		t.Errorf("dropped %d", r.Dropped())
	}
}

func TestRunDropsOldBacklog(t *testing.T) {
	clk := newClock()
	r := NewRecorder("dp", clk.Now)
	r.Observe("a", 200, time.Millisecond)
	r.Observe("a", 200, time.Millisecond)
	calls, cancel, done := startRun(t, r)
	errDown := errors.New("down")

	c := <-calls
	// By the next attempt the failed counts are older than the backlog
	// allows.
	clk.Add(backlogIntervals*runInterval + time.Nanosecond)
	r.Observe("a", 200, time.Millisecond)
	c.reply <- errDown

	c = <-calls
	if requests(&c.rep) != 1 {
		t.Fatalf("report = %+v, want the stale backlog dropped", c.rep)
	}
	if r.Dropped() != 2 {
		t.Errorf("Dropped = %d, want 2", r.Dropped())
	}
	// This report's period began before the clock jump: when this send
	// fails, it is already too old to keep.
	r.Observe("a", 200, time.Millisecond)
	cancel()
	c.reply <- errDown

	// The last attempt carries the newest request only, and fails too.
	c = finalSend(calls)
	if requests(&c.rep) != 1 {
		t.Fatalf("final report = %+v", c.rep)
	}
	c.reply <- errDown
	<-done
	if r.Dropped() != 4 {
		t.Errorf("Dropped = %d, want 4", r.Dropped())
	}
}

// BenchmarkObserve measures the per-request cost with every goroutine on one
// hot route (worst contention) and spread over many routes.
func BenchmarkObserve(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			r := NewRecorder("dp", time.Now)
			routes := make([]string, n)
			for i := range routes {
				routes[i] = fmt.Sprintf("route-%d", i)
				r.Observe(routes[i], 200, time.Millisecond)
			}
			var seed atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(1)) * 7919
				for pb.Next() {
					i++
					r.Observe(routes[i%n], 200+i%4*100, time.Duration(i%1024)*37*time.Microsecond)
				}
			})
		})
	}
}
