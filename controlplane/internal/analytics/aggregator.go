// Package analytics aggregates the traffic reports of data planes into
// per-route and per-data-plane figures over recent windows, so that the
// control plane can answer GET /v1/analytics without a metrics server.
//
// Reports are kept in memory only, in fixed time buckets: a restart of the
// control plane starts from nothing, which is acceptable for a live view.
package analytics

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

const (
	// maxNodeIDLen matches the limit on the node id header of the sync API.
	maxNodeIDLen = 128
	// maxNodes bounds the data planes kept per bucket; beyond, they are
	// counted together under the id apiv1.OtherRoute, so that node ids that change
	// on every restart cannot grow memory without bound.
	maxNodes = 1000
	// maxCount rejects counts no data plane can reach in one report, which
	// keeps sums far from overflowing.
	maxCount = 1 << 40
	// maxClockSkew is how far a report may end ahead of this clock; within
	// it the report counts as ending now.
	maxClockSkew = time.Minute
)

// Aggregator is safe for concurrent use.
//
// Memory: one slot per bucket over the retention (plus the current one),
// each holding per route and per data plane three counters and the
// histogram buckets in use (sparse, typically 10-30). For 100 routes, 5 data
// planes, 1h retention and 10s buckets that is about 10 MB; the caps of
// apiv1.MaxReportRoutes routes and maxNodes data planes per slot bound the
// worst case.
type Aggregator struct {
	retention, bucket time.Duration
	now               func() time.Time
	// started: queries never reach before it, so that rates are not
	// diluted by time when nothing was collected.
	started time.Time

	mu    sync.RWMutex
	slots []slot // ring; bucket i lives at slots[i % len(slots)]
	swept int64  // current bucket at the last sweep of expired slots
}

// slot holds the counts of reports that ended within one bucket.
type slot struct {
	idx    int64 // bucket number since the Unix epoch; valid if routes != nil
	routes map[string]*series
	nodes  map[string]*nodeSeries
}

type series struct {
	requests, errors, clientErrors int64
	latency                        apiv1.Histogram
}

func (s *series) add(o *series) {
	s.requests += o.requests
	s.errors += o.errors
	s.clientErrors += o.clientErrors
	s.latency.Merge(o.latency)
}

type nodeSeries struct {
	series
	last time.Time
}

// NewAggregator keeps reports for retention in buckets of the given width
// (e.g. 1h and 10s): the bucket is the granularity of query windows. now is
// the clock, time.Now outside tests.
func NewAggregator(retention, bucket time.Duration, now func() time.Time) *Aggregator {
	if bucket <= 0 || retention < bucket {
		panic(fmt.Sprintf("analytics: bucket %v must be positive and at most retention %v", bucket, retention))
	}
	if now == nil {
		now = time.Now
	}
	n := int((retention+bucket-1)/bucket) + 1
	return &Aggregator{retention: retention, bucket: bucket, now: now, started: now(), slots: make([]slot, n)}
}

func (a *Aggregator) index(t time.Time) int64 { return t.UnixNano() / int64(a.bucket) }

// Add records a report under the bucket of its end. An invalid report is
// refused whole with a config.FieldError naming the offending field.
func (a *Aggregator) Add(rep apiv1.Report) error {
	now := a.now()
	if err := a.validate(&rep, now); err != nil {
		return err
	}
	end := rep.End
	if end.After(now) {
		end = now
	}
	k := a.index(end)

	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweep(a.index(now))
	s := &a.slots[k%int64(len(a.slots))]
	if s.routes == nil || s.idx != k {
		*s = slot{idx: k, routes: map[string]*series{}, nodes: map[string]*nodeSeries{}}
	}
	id := rep.NodeID
	// The caps leave room for the OtherRoute entry itself.
	if _, ok := s.nodes[id]; !ok && len(s.nodes) >= maxNodes-1 {
		id = apiv1.OtherRoute
	}
	ns := s.nodes[id]
	if ns == nil {
		ns = &nodeSeries{}
		s.nodes[id] = ns
	}
	if end.After(ns.last) {
		ns.last = end
	}
	for _, rc := range rep.Routes {
		in := series{requests: rc.Requests, errors: rc.Errors, clientErrors: rc.ClientErrors, latency: rc.Latency}
		ns.add(&in)
		name := rc.Route
		if _, ok := s.routes[name]; !ok && len(s.routes) >= apiv1.MaxReportRoutes-1 {
			name = apiv1.OtherRoute
		}
		rs := s.routes[name]
		if rs == nil {
			rs = &series{}
			s.routes[name] = rs
		}
		rs.add(&in)
	}
	return nil
}

// sweep frees slots that fell out of the retention, once per bucket: the
// ring would overwrite them only when traffic reaches their position again.
func (a *Aggregator) sweep(cur int64) {
	if cur <= a.swept {
		return
	}
	a.swept = cur
	oldest := cur - int64(len(a.slots)) + 1
	for i := range a.slots {
		if a.slots[i].routes != nil && a.slots[i].idx < oldest {
			a.slots[i] = slot{}
		}
	}
}

func (a *Aggregator) validate(rep *apiv1.Report, now time.Time) error {
	bad := func(field, format string, args ...any) error {
		return config.FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case rep.NodeID == "":
		return bad("node_id", "is required")
	case len(rep.NodeID) > maxNodeIDLen:
		return bad("node_id", "must be at most %d characters", maxNodeIDLen)
	case rep.Start.IsZero():
		return bad("start", "is required")
	case rep.End.IsZero():
		return bad("end", "is required")
	case rep.End.Before(rep.Start):
		return bad("end", "is before start")
	case rep.End.Sub(rep.Start) > a.retention:
		return bad("start", "the report covers %v, more than the retention of %v", rep.End.Sub(rep.Start), a.retention)
	case rep.End.Sub(now) > maxClockSkew:
		return bad("end", "is %v ahead of the control plane's clock", rep.End.Sub(now).Round(time.Second))
	case a.index(rep.End) <= a.index(now)-int64(len(a.slots)):
		return bad("end", "is older than the retention of %v", a.retention)
	case len(rep.Routes) > apiv1.MaxReportRoutes:
		return bad("routes", "has %d entries, at most %d are allowed", len(rep.Routes), apiv1.MaxReportRoutes)
	}
	for i, rc := range rep.Routes {
		p := fmt.Sprintf("routes[%d].", i)
		switch {
		case len(rc.Route) > config.MaxNameLen:
			return bad(p+"route", "must be at most %d characters", config.MaxNameLen)
		case rc.Requests < 0 || rc.Requests > maxCount:
			return bad(p+"requests", "must be between 0 and %d", int64(maxCount))
		case rc.Errors < 0 || rc.Errors > rc.Requests:
			return bad(p+"errors", "must be between 0 and requests")
		case rc.ClientErrors < 0 || rc.ClientErrors > rc.Requests-rc.Errors:
			return bad(p+"client_errors", "must be between 0 and requests minus errors")
		}
		if err := rc.Latency.Validate(); err != nil {
			return bad(p+"latency", "%v", err)
		}
		// Bounding each count first keeps the sum of at most 74 of them
		// from overflowing.
		var n int64
		for _, c := range rc.Latency.Counts {
			n += min(c, maxCount+1)
		}
		if n != rc.Requests {
			return bad(p+"latency", "counts must sum to requests (%d)", rc.Requests)
		}
	}
	return nil
}

// Query sums the buckets of the last window, clamped to [bucket, retention].
// The oldest bucket is included whole, so the figures cover up to one bucket
// more than the window; Analytics.From says exactly, and rates divide by the
// time actually covered.
func (a *Aggregator) Query(window time.Duration) apiv1.Analytics {
	window = min(max(window, a.bucket), a.retention)
	now := a.now()
	cur := a.index(now)
	first := max(a.index(now.Add(-window)), a.index(a.started), cur-int64(len(a.slots))+1)
	from := time.Unix(0, first*int64(a.bucket)).UTC()

	routes := map[string]*series{}
	nodes := map[string]*nodeSeries{}
	a.mu.RLock()
	for i := range a.slots {
		s := &a.slots[i]
		if s.routes == nil || s.idx < first || s.idx > cur {
			continue
		}
		for name, rs := range s.routes {
			acc := routes[name]
			if acc == nil {
				acc = &series{}
				routes[name] = acc
			}
			acc.add(rs) // Merge copies: nothing aliases the slots after the unlock
		}
		for id, ns := range s.nodes {
			acc := nodes[id]
			if acc == nil {
				acc = &nodeSeries{}
				nodes[id] = acc
			}
			acc.add(&ns.series)
			if ns.last.After(acc.last) {
				acc.last = ns.last
			}
		}
	}
	a.mu.RUnlock()

	secs := now.Sub(from).Seconds()
	out := apiv1.Analytics{
		Window:     formatWindow(window),
		From:       from,
		To:         now.UTC(),
		Routes:     make([]apiv1.RouteStats, 0, len(routes)),
		Dataplanes: make([]apiv1.NodeStats, 0, len(nodes)),
	}
	var total series
	for name, s := range routes {
		out.Routes = append(out.Routes, routeStats(name, s, secs))
		total.add(s)
	}
	out.Totals = routeStats("", &total, secs)
	slices.SortFunc(out.Routes, func(x, y apiv1.RouteStats) int {
		return cmp.Or(cmp.Compare(y.Requests, x.Requests), strings.Compare(x.Route, y.Route))
	})
	for id, s := range nodes {
		rs := routeStats("", &s.series, secs)
		out.Dataplanes = append(out.Dataplanes, apiv1.NodeStats{
			NodeID: id, Requests: rs.Requests, Errors: rs.Errors, ClientErrors: rs.ClientErrors,
			ErrorRate: rs.ErrorRate, RPS: rs.RPS, LastReport: s.last.UTC(),
			P50: rs.P50, P90: rs.P90, P99: rs.P99,
		})
	}
	slices.SortFunc(out.Dataplanes, func(x, y apiv1.NodeStats) int { return strings.Compare(x.NodeID, y.NodeID) })
	return out
}

func routeStats(name string, s *series, secs float64) apiv1.RouteStats {
	st := apiv1.RouteStats{
		Route: name, Requests: s.requests, Errors: s.errors, ClientErrors: s.clientErrors,
		P50: ms(s.latency.Quantile(0.5)), P90: ms(s.latency.Quantile(0.9)), P99: ms(s.latency.Quantile(0.99)),
	}
	if s.requests > 0 {
		st.ErrorRate = float64(s.errors) / float64(s.requests)
	}
	if secs > 0 {
		st.RPS = float64(s.requests) / secs
	}
	return st
}

// ms converts to milliseconds, rounded to the microsecond: the estimates are
// not finer than that.
func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }

// formatWindow writes 5m rather than Duration's 5m0s, like the query
// parameter operators type.
func formatWindow(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MaxSeriesPoints and MaxSeriesRoutes bound a Series answer.
const (
	MaxSeriesPoints = 360
	MaxSeriesRoutes = 20
)

// Series splits the last window (clamped like Query's) into points of step,
// a whole number of buckets, aligned to multiples of step since the Unix
// epoch and oldest first, the last one holding now: one series for all
// routes together (Route "") and one per name in routes (at most
// MaxSeriesRoutes, duplicates dropped). Every point is present, with zeros
// where nothing was reported, so that charts show quiet time as quiet.
func (a *Aggregator) Series(window, step time.Duration, routes []string) ([]apiv1.RouteSeries, error) {
	if step < a.bucket || step%a.bucket != 0 {
		return nil, fmt.Errorf("step must be a whole number of %v buckets", a.bucket)
	}
	window = min(max(window, a.bucket), a.retention)
	now := a.now()
	per := int64(step / a.bucket) // buckets per point
	cur := a.index(now)
	last := cur / per
	firstPoint := a.index(now.Add(-window)) / per
	n := last - firstPoint + 1
	if n > MaxSeriesPoints {
		return nil, fmt.Errorf("window/step gives %d points, more than %d", n, MaxSeriesPoints)
	}
	names := []string{""}
	for _, r := range routes {
		if !slices.Contains(names, r) && len(names) <= MaxSeriesRoutes {
			names = append(names, r)
		}
	}
	acc := make([][]series, len(names)) // [route][point]
	for i := range acc {
		acc[i] = make([]series, n)
	}
	oldest := max(firstPoint*per, a.index(a.started), cur-int64(len(a.slots))+1)
	a.mu.RLock()
	for i := range a.slots {
		s := &a.slots[i]
		if s.routes == nil || s.idx < oldest || s.idx > cur {
			continue
		}
		k := s.idx/per - firstPoint
		for j, name := range names {
			if name == "" {
				for _, rs := range s.routes {
					acc[j][k].add(rs)
				}
			} else if rs := s.routes[name]; rs != nil {
				acc[j][k].add(rs)
			}
		}
	}
	a.mu.RUnlock()

	out := make([]apiv1.RouteSeries, len(names))
	for j, name := range names {
		pts := make([]apiv1.SeriesPoint, n)
		for k := range pts {
			start := time.Unix(0, (firstPoint+int64(k))*int64(step)).UTC()
			from, to := start, start.Add(step)
			if a.started.After(from) {
				from = a.started
			}
			if now.Before(to) {
				to = now
			}
			st := routeStats(name, &acc[j][k], max(to.Sub(from).Seconds(), 0))
			pts[k] = apiv1.SeriesPoint{Time: start, Requests: st.Requests, Errors: st.Errors,
				RPS: st.RPS, ErrorRate: st.ErrorRate, P50: st.P50, P99: st.P99}
		}
		out[j] = apiv1.RouteSeries{Route: name, Points: pts}
	}
	return out, nil
}
