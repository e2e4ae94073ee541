package analytics

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/testutil"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// newTest returns an aggregator with 1h retention and 10s buckets, started
// 3s into a bucket, with the clock then moved an hour on so that windows are
// not cut short by the start.
func newTest() (*Aggregator, *testutil.Clock) {
	clk := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 3, 0, time.UTC))
	a := NewAggregator(time.Hour, 10*time.Second, clk.Now)
	clk.Add(time.Hour)
	return a, clk
}

func hist(d time.Duration, n int64) apiv1.Histogram {
	i := apiv1.LatencyBucket(d)
	return apiv1.Histogram{Offset: i, Counts: []int64{n}}
}

func rc(route string, req, errs, cerrs int64, d time.Duration) apiv1.RouteCounters {
	return apiv1.RouteCounters{Route: route, Requests: req, Errors: errs, ClientErrors: cerrs, Latency: hist(d, req)}
}

func report(node string, end time.Time, routes ...apiv1.RouteCounters) apiv1.Report {
	return apiv1.Report{NodeID: node, Start: end.Add(-5 * time.Second), End: end, Routes: routes}
}

func mustAdd(t *testing.T, a *Aggregator, rep apiv1.Report) {
	t.Helper()
	if err := a.Add(rep); err != nil {
		t.Fatal(err)
	}
}

func findRoute(an apiv1.Analytics, name string) apiv1.RouteStats {
	for _, r := range an.Routes {
		if r.Route == name {
			return r
		}
	}
	return apiv1.RouteStats{Route: "missing " + name}
}

func TestTwoNodes(t *testing.T) {
	a, clk := newTest()
	now := clk.Now()
	mustAdd(t, a, report("dp-a", now.Add(-20*time.Second),
		rc("users", 90, 9, 0, 10*time.Millisecond), rc("orders", 10, 0, 2, time.Millisecond)))
	mustAdd(t, a, report("dp-b", now.Add(-15*time.Second),
		rc("users", 10, 1, 0, time.Second), rc("", 5, 0, 5, 100*time.Microsecond)))
	mustAdd(t, a, report("dp-a", now.Add(-5*time.Second), rc("users", 0, 0, 0, 0)))

	an := a.Query(5 * time.Minute)
	if an.Window != "5m" || !an.To.Equal(now) || an.From != now.Add(-5*time.Minute).Truncate(10*time.Second) {
		t.Fatalf("window %q from %v to %v", an.Window, an.From, an.To)
	}
	span := an.To.Sub(an.From).Seconds() // 303s: the oldest bucket counts whole
	if span != 303 {
		t.Fatalf("span = %vs", span)
	}

	names := []string{}
	for _, r := range an.Routes {
		names = append(names, r.Route)
	}
	if strings.Join(names, ",") != "users,orders," {
		t.Errorf("routes = %q, want busiest first", names)
	}
	u := findRoute(an, "users")
	if u.Requests != 100 || u.Errors != 10 || u.ErrorRate != 0.1 || u.RPS != 100/span {
		t.Errorf("users = %+v", u)
	}
	// 90 requests at 10ms and 10 at 1s: the merged histogram puts the
	// median and p90 near 10ms and p99 near 1s.
	within(t, "users p50", u.P50, 10, 0.19)
	within(t, "users p90", u.P90, 10, 0.19)
	within(t, "users p99", u.P99, 1000, 0.19)

	tot := an.Totals
	if tot.Route != "" || tot.Requests != 115 || tot.Errors != 10 || tot.ClientErrors != 7 || tot.RPS != 115/span {
		t.Errorf("totals = %+v", tot)
	}
	var sum int64
	for _, r := range an.Routes {
		sum += r.Requests
	}
	if sum != tot.Requests {
		t.Errorf("routes sum to %d, totals say %d", sum, tot.Requests)
	}

	if len(an.Dataplanes) != 2 {
		t.Fatalf("dataplanes = %+v", an.Dataplanes)
	}
	da, db := an.Dataplanes[0], an.Dataplanes[1]
	if da.NodeID != "dp-a" || da.Requests != 100 || da.Errors != 9 || da.ClientErrors != 2 || !da.LastReport.Equal(now.Add(-5*time.Second)) {
		t.Errorf("dp-a = %+v", da)
	}
	if db.NodeID != "dp-b" || db.Requests != 15 || db.ClientErrors != 5 || db.RPS != 15/span || !db.LastReport.Equal(now.Add(-15*time.Second)) {
		t.Errorf("dp-b = %+v", db)
	}
	within(t, "dp-a p50", da.P50, 10, 0.19)
	within(t, "dp-b p50", db.P50, 1000, 0.19)
}

func within(t *testing.T, what string, gotMs, wantMs, rel float64) {
	t.Helper()
	if gotMs < wantMs/(1+rel) || gotMs > wantMs*(1+rel) {
		t.Errorf("%s = %vms, want %vms ±%.0f%%", what, gotMs, wantMs, rel*100)
	}
}

func TestWindows(t *testing.T) {
	a, clk := newTest()
	t0 := clk.Now()
	mustAdd(t, a, report("dp", t0, rc("r", 10, 0, 0, time.Millisecond)))
	clk.Add(3 * time.Minute)
	mustAdd(t, a, report("dp", clk.Now(), rc("r", 1, 0, 0, time.Millisecond)))

	if got := a.Query(time.Minute).Totals.Requests; got != 1 {
		t.Errorf("1m window: %d requests, want only the recent report", got)
	}
	if got := a.Query(5 * time.Minute).Totals.Requests; got != 11 {
		t.Errorf("5m window: %d requests, want both reports", got)
	}
	an := a.Query(24 * time.Hour)
	if an.Window != "1h" || an.Totals.Requests != 11 || an.To.Sub(an.From) > time.Hour+10*time.Second {
		t.Errorf("window beyond retention: %q %v..%v", an.Window, an.From, an.To)
	}
	if an := a.Query(0); an.Window != "10s" || an.Totals.Requests != 1 {
		t.Errorf("window below the bucket: %q, %d requests", an.Window, an.Totals.Requests)
	}

	// A node that stopped reporting drops out of windows that exclude it.
	clk.Add(2 * time.Minute)
	if an := a.Query(time.Minute); len(an.Dataplanes) != 0 || len(an.Routes) != 0 {
		t.Errorf("quiet window: %+v", an)
	}
}

func TestWindowStartsAtCollection(t *testing.T) {
	clk := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	a := NewAggregator(time.Hour, 10*time.Second, clk.Now)
	clk.Add(2 * time.Minute)
	mustAdd(t, a, report("dp", clk.Now(), rc("r", 120, 0, 0, time.Millisecond)))
	an := a.Query(time.Hour)
	if an.From != time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) {
		t.Fatalf("from = %v, want the bucket the aggregator started in", an.From)
	}
	if an.Totals.RPS != 1 {
		t.Errorf("RPS = %v, want 120 requests over the 120s collected", an.Totals.RPS)
	}
}

func TestHeartbeatWithoutTraffic(t *testing.T) {
	a, clk := newTest()
	mustAdd(t, a, apiv1.Report{NodeID: "idle", Start: clk.Now().Add(-time.Second), End: clk.Now()})
	an := a.Query(time.Minute)
	if len(an.Dataplanes) != 1 || an.Dataplanes[0].Requests != 0 || !an.Dataplanes[0].LastReport.Equal(clk.Now()) {
		t.Fatalf("dataplanes = %+v", an.Dataplanes)
	}
	if an.Routes == nil || an.Totals.P99 != 0 {
		t.Fatalf("routes = %#v totals = %+v", an.Routes, an.Totals)
	}
	b, err := json.Marshal(a.Query(time.Minute))
	if err != nil || !strings.Contains(string(b), `"routes":[]`) || !strings.Contains(string(b), `"p99_ms":0`) {
		t.Errorf("json = %s (%v)", b, err)
	}
}

func TestSlightlyFastClock(t *testing.T) {
	a, clk := newTest()
	mustAdd(t, a, report("dp", clk.Now().Add(30*time.Second), rc("r", 1, 0, 0, time.Millisecond)))
	an := a.Query(time.Minute)
	if an.Totals.Requests != 1 || !an.Dataplanes[0].LastReport.Equal(clk.Now()) {
		t.Errorf("a report from a node 30s ahead is filed now: %+v", an)
	}
}

func TestInvalidReports(t *testing.T) {
	a, clk := newTest()
	now := clk.Now()
	ok := func() apiv1.Report { return report("dp", now, rc("r", 3, 1, 1, time.Millisecond)) }
	many := make([]apiv1.RouteCounters, apiv1.MaxReportRoutes+1)
	for i := range many {
		many[i] = rc(fmt.Sprint(i), 1, 0, 0, time.Millisecond)
	}
	for _, tc := range []struct {
		field string
		edit  func(*apiv1.Report)
	}{
		{"node_id", func(r *apiv1.Report) { r.NodeID = "" }},
		{"node_id", func(r *apiv1.Report) { r.NodeID = strings.Repeat("n", 129) }},
		{"start", func(r *apiv1.Report) { r.Start = time.Time{} }},
		{"end", func(r *apiv1.Report) { r.End = time.Time{} }},
		{"end", func(r *apiv1.Report) { r.Start = r.End.Add(time.Second) }},
		{"start", func(r *apiv1.Report) { r.Start = r.End.Add(-2 * time.Hour) }},
		{"end", func(r *apiv1.Report) { r.End = now.Add(2 * time.Minute) }},
		{"end", func(r *apiv1.Report) { r.Start, r.End = now.Add(-62*time.Minute), now.Add(-61*time.Minute) }},
		{"routes", func(r *apiv1.Report) { r.Routes = many }},
		{"routes[0].route", func(r *apiv1.Report) { r.Routes[0].Route = strings.Repeat("r", 129) }},
		{"routes[0].requests", func(r *apiv1.Report) { r.Routes[0].Requests = -1 }},
		{"routes[0].requests", func(r *apiv1.Report) { r.Routes[0].Requests = 1 << 62 }},
		{"routes[0].errors", func(r *apiv1.Report) { r.Routes[0].Errors = 4 }},
		{"routes[0].errors", func(r *apiv1.Report) { r.Routes[0].Errors = -1 }},
		{"routes[0].client_errors", func(r *apiv1.Report) { r.Routes[0].ClientErrors = 3 }},
		{"routes[0].latency", func(r *apiv1.Report) { r.Routes[0].Latency = apiv1.Histogram{Offset: 74, Counts: []int64{3}} }},
		{"routes[0].latency", func(r *apiv1.Report) { r.Routes[0].Latency = apiv1.Histogram{Offset: -1, Counts: []int64{3}} }},
		{"routes[0].latency", func(r *apiv1.Report) {
			r.Routes[0].Latency = apiv1.Histogram{Offset: 70, Counts: []int64{0, 0, 0, 3, 0}}
		}},
		{"routes[0].latency", func(r *apiv1.Report) { r.Routes[0].Latency = apiv1.Histogram{Counts: []int64{4, -1}} }},
		{"routes[0].latency", func(r *apiv1.Report) { r.Routes[0].Latency = hist(time.Millisecond, 2) }},
		{"routes[0].latency", func(r *apiv1.Report) {
			r.Routes[0].Latency = apiv1.Histogram{Counts: []int64{1 << 62, 1 << 62, 1 << 62, 1 << 62, 3}}
		}},
	} {
		rep := ok()
		tc.edit(&rep)
		err := a.Add(rep)
		var fe config.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("want an error on %s, got %v", tc.field, err)
			continue
		}
		t.Logf("%v", err)
	}
	if an := a.Query(time.Hour); an.Totals.Requests != 0 || len(an.Dataplanes) != 0 {
		t.Errorf("refused reports were counted: %+v", an)
	}
	mustAdd(t, a, ok())
}

func TestMemoryBounded(t *testing.T) {
	clk := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	a := NewAggregator(time.Minute, 10*time.Second, clk.Now)
	held := func() int {
		a.mu.RLock()
		defer a.mu.RUnlock()
		n := 0
		for _, s := range a.slots {
			if s.routes != nil {
				n++
			}
		}
		return n
	}
	for range 100 {
		clk.Add(10 * time.Second)
		mustAdd(t, a, report("dp", clk.Now(), rc("r", 1, 0, 0, time.Millisecond)))
	}
	if n := held(); n > 7 {
		t.Errorf("%d buckets held for 1m retention in 10s buckets, want at most 7", n)
	}
	if got := a.Query(time.Hour).Totals.Requests; got != 7 {
		t.Errorf("retained %d requests, want the 7 buckets of the last minute", got)
	}

	// Buckets expire even when no report lands on their place in the ring.
	clk.Add(5 * time.Minute)
	if an := a.Query(time.Hour); an.Totals.Requests != 0 {
		t.Errorf("expired buckets still queried: %+v", an.Totals)
	}
	mustAdd(t, a, report("dp", clk.Now(), rc("r", 1, 0, 0, time.Millisecond)))
	if n := held(); n != 1 {
		t.Errorf("%d buckets held after a long pause, want 1", n)
	}
}

func TestCapsPerBucket(t *testing.T) {
	a, clk := newTest()
	now := clk.Now()
	for node := range 2 {
		var routes []apiv1.RouteCounters
		for i := range 6000 {
			routes = append(routes, rc(fmt.Sprintf("r%d", node*6000+i), 1, 0, 0, time.Millisecond))
		}
		mustAdd(t, a, report(fmt.Sprint("dp-", node), now, routes...))
	}
	for i := range maxNodes {
		mustAdd(t, a, report(fmt.Sprint("extra-", i), now))
	}
	an := a.Query(time.Minute)
	if len(an.Routes) != apiv1.MaxReportRoutes || an.Totals.Requests != 12000 {
		t.Fatalf("%d routes, %d requests", len(an.Routes), an.Totals.Requests)
	}
	if o := findRoute(an, apiv1.OtherRoute); o.Requests != 12000-(apiv1.MaxReportRoutes-1) {
		t.Errorf("other = %+v", o)
	}
	if len(an.Dataplanes) != maxNodes || an.Dataplanes[0].NodeID != apiv1.OtherRoute || an.Dataplanes[0].LastReport.IsZero() {
		t.Errorf("%d dataplanes, first %q", len(an.Dataplanes), an.Dataplanes[0].NodeID)
	}
}

func TestConcurrentAddQuery(t *testing.T) {
	a, clk := newTest()
	const (
		nodes   = 4
		reports = 300
	)
	var wg sync.WaitGroup
	for n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range reports {
				rep := report(fmt.Sprint("dp-", n), clk.Now(), rc(fmt.Sprint("r", i%7), 2, 1, 0, time.Duration(i)*time.Millisecond))
				if err := a.Add(rep); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var qwg sync.WaitGroup
	for range 2 {
		qwg.Add(1)
		go func() {
			defer qwg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				an := a.Query(time.Hour)
				if an.Totals.Requests%2 != 0 {
					t.Error("a query saw half a report")
					return
				}
				clk.Add(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(stop)
	qwg.Wait()
	an := a.Query(time.Hour)
	if an.Totals.Requests != 2*nodes*reports || an.Totals.Errors != nodes*reports {
		t.Errorf("totals = %+v", an.Totals)
	}
	for _, d := range an.Dataplanes {
		if d.Requests != 2*reports {
			t.Errorf("%s: %d requests", d.NodeID, d.Requests)
		}
	}
}

func TestFormatWindow(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Minute: "1m", 5 * time.Minute: "5m", time.Hour: "1h", 90 * time.Second: "1m30s",
		70 * time.Minute: "1h10m", 10 * time.Second: "10s", 2*time.Hour + 30*time.Second: "2h0m30s",
	} {
		if got := formatWindow(d); got != want {
			t.Errorf("formatWindow(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestSeries(t *testing.T) {
	a, clk := newTest() // now is 13:00:03, collecting since 12:00:03
	now := clk.Now()
	mustAdd(t, a, report("dp", now.Add(-25*time.Second), rc("users", 10, 1, 0, time.Millisecond)))                                            // 12:59:38
	mustAdd(t, a, report("dp", now.Add(-5*time.Second), rc("users", 20, 0, 0, 10*time.Millisecond), rc("orders", 4, 0, 0, time.Millisecond))) // 12:59:58

	counts := func(s apiv1.RouteSeries) []int64 {
		var c []int64
		for _, p := range s.Points {
			c = append(c, p.Requests)
		}
		return c
	}
	cases := []struct {
		step                 time.Duration
		all, users, orders   string
		firstTime            time.Time
		rpsUsers2, errUsers2 float64
		point                int
	}{
		{step: 10 * time.Second, all: "[0 0 0 10 0 24 0]", users: "[0 0 0 10 0 20 0]", orders: "[0 0 0 0 0 4 0]",
			firstTime: time.Date(2026, 3, 1, 12, 59, 0, 0, time.UTC), point: 3, rpsUsers2: 1, errUsers2: 0.1},
		{step: 20 * time.Second, all: "[0 10 24 0]", users: "[0 10 20 0]", orders: "[0 0 4 0]",
			firstTime: time.Date(2026, 3, 1, 12, 59, 0, 0, time.UTC), point: 1, rpsUsers2: 0.5, errUsers2: 0.1},
	}
	for _, c := range cases {
		ss, err := a.Series(time.Minute, c.step, []string{"users", "orders", "users"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ss) != 3 || ss[0].Route != "" || ss[1].Route != "users" || ss[2].Route != "orders" {
			t.Fatalf("step %v: series %+v", c.step, ss)
		}
		for i, want := range []string{c.all, c.users, c.orders} {
			if got := fmt.Sprint(counts(ss[i])); got != want {
				t.Errorf("step %v %q: %s, want %s", c.step, ss[i].Route, got, want)
			}
		}
		if !ss[0].Points[0].Time.Equal(c.firstTime) {
			t.Errorf("step %v: first point at %v", c.step, ss[0].Points[0].Time)
		}
		p := ss[1].Points[c.point]
		if p.RPS != c.rpsUsers2 || p.ErrorRate != c.errUsers2 || p.P50 == 0 {
			t.Errorf("step %v: users point %+v", c.step, p)
		}
		// The last point holds now and divides by the 3 s it has lasted.
		if last := ss[0].Points[len(ss[0].Points)-1]; !last.Time.Add(c.step).After(now) || last.RPS != 0 {
			t.Errorf("step %v: last point %+v", c.step, last)
		}
	}
	for _, bad := range []struct{ window, step time.Duration }{
		{time.Minute, 15 * time.Second}, // not whole buckets
		{time.Minute, time.Second},      // below a bucket
		{time.Hour, 10 * time.Second},   // 361 points
	} {
		if _, err := a.Series(bad.window, bad.step, nil); err == nil {
			t.Errorf("Series(%v, %v) accepted", bad.window, bad.step)
		}
	}
	if ss, err := a.Series(time.Hour, 20*time.Second, nil); err != nil || len(ss) != 1 || len(ss[0].Points) != 181 {
		t.Errorf("1h in 20s steps: %v points, %v", len(ss), err)
	}
}
