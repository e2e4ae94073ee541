// Package analytics counts a data plane's traffic per route, compactly enough
// to send every few seconds with the heartbeat, so that the control plane can
// show cluster-wide traffic without a metrics server.
package analytics

import (
	"cmp"
	"context"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-gw/portico/shared/apiv1"
)

const (
	// maxRoutes leaves room for apiv1.OtherRoute within a report.
	maxRoutes = apiv1.MaxReportRoutes - 1
	// idleFlushes: a route with no traffic for this many flushes in a row is
	// forgotten at the next one, so that renamed and deleted routes free
	// their place under the cap. Recreating it later costs one allocation.
	idleFlushes = 3
	// backlogIntervals bounds how long Run keeps counts it failed to send.
	// The control plane files a report under its end time, so a long
	// backlog would show up there as a burst; past this, counts are dropped.
	backlogIntervals = 10
	// finalSendTimeout bounds the last send when Run stops, so that it
	// cannot hold up shutdown for a long interval.
	finalSendTimeout = 5 * time.Second
	// maxSpare: Flush needs one spare at a time; forgotten routes return
	// more, which are left to the GC beyond this.
	maxSpare = 8
)

// Recorder counts requests per route. Observe may be called concurrently
// with everything; Flush and Run serialize among themselves.
type Recorder struct {
	nodeID string
	now    func() time.Time

	routes sync.Map // string → *entry
	// nroutes counts the entries of routes, for the cap.
	nroutes atomic.Int64
	other   *entry
	dropped atomic.Int64

	flushMu sync.Mutex
	last    time.Time   // end of the previous Flush
	spare   []*counters // zeroed counters to swap in, reused across flushes
}

// entry is one route's counting slot. Flush replaces cur with fresh counters
// (or nil when it forgets the route) and reads the old ones once no Observe
// is still writing to them.
type entry struct {
	cur  atomic.Pointer[counters]
	idle int // flushes in a row without traffic; guarded by flushMu
}

type counters struct {
	// writers counts Observe calls between their claim on these counters
	// and their last increment; Flush waits for zero before reading.
	writers      atomic.Int64
	requests     atomic.Int64
	errors       atomic.Int64
	clientErrors atomic.Int64
	hist         []atomic.Int64 // one per latency bucket
}

func newCounters() *counters {
	return &counters{hist: make([]atomic.Int64, len(apiv1.LatencyBounds)+1)}
}

// NewRecorder returns a recorder whose reports carry nodeID and whose first
// report starts now. now is the clock, time.Now outside tests.
func NewRecorder(nodeID string, now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	r := &Recorder{nodeID: nodeID, now: now, last: now(), other: &entry{}}
	r.other.cur.Store(newCounters())
	return r
}

// Observe counts one request to route answered with status after d. It takes
// no lock: a map read and a few atomic adds, without allocating once the
// route has been seen.
func (r *Recorder) Observe(route string, status int, d time.Duration) {
	b := apiv1.LatencyBucket(d)
	for {
		e := r.entry(route)
		c := e.cur.Load()
		if c == nil {
			// Flush forgot the route after we found it; it is gone from the
			// map, so the next lookup makes a new entry.
			continue
		}
		if testHookClaim != nil {
			testHookClaim()
		}
		c.writers.Add(1)
		// Flush may have swapped c out between the Load and our claim; then
		// it may already have read c, so count into the new counters instead.
		if e.cur.Load() != c {
			c.writers.Add(-1)
			continue
		}
		c.requests.Add(1)
		switch {
		case status >= 500:
			c.errors.Add(1)
		case status >= 400:
			c.clientErrors.Add(1)
		}
		c.hist[b].Add(1)
		c.writers.Add(-1)
		return
	}
}

// testHookClaim runs in Observe between loading the counters and claiming
// them: tests use it to run a Flush inside that window, which is otherwise
// too narrow to hit reliably.
var testHookClaim func()

func (r *Recorder) entry(route string) *entry {
	if v, ok := r.routes.Load(route); ok {
		return v.(*entry)
	}
	// Reserve a place under the cap before inserting, so racing inserts of
	// different routes cannot overshoot it.
	if r.nroutes.Add(1) > maxRoutes {
		r.nroutes.Add(-1)
		return r.other
	}
	e := &entry{}
	e.cur.Store(newCounters())
	// Clone: the key outlives the request, and route may share memory with
	// something much larger.
	v, loaded := r.routes.LoadOrStore(strings.Clone(route), e)
	if loaded {
		r.nroutes.Add(-1)
	}
	return v.(*entry)
}

// Flush returns the counts since the previous Flush and starts counting
// afresh. Every observation lands in exactly one Flush: one that races with
// Flush is reported either now or next time. Routes without requests are
// left out; Routes is sorted by name.
func (r *Recorder) Flush() apiv1.Report {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	end := r.now()
	if end.Before(r.last) {
		// The wall clock stepped back; keep periods well-formed.
		end = r.last
	}
	rep := apiv1.Report{NodeID: r.nodeID, Start: r.last, End: end, Routes: []apiv1.RouteCounters{}}
	r.last = end

	r.routes.Range(func(k, v any) bool {
		e := v.(*entry)
		var old *counters
		if e.idle >= idleFlushes {
			// Delete before retiring cur: an Observe that then finds cur nil
			// must not find e again in the map.
			if r.routes.CompareAndDelete(k, e) {
				r.nroutes.Add(-1)
			}
			old = e.cur.Swap(nil)
		} else {
			old = e.cur.Swap(r.takeSpare())
		}
		if n := r.drain(k.(string), old, &rep); n == 0 {
			e.idle++
		} else {
			e.idle = 0
		}
		return true
	})
	r.drain(apiv1.OtherRoute, r.other.cur.Swap(r.takeSpare()), &rep)

	// A route forgotten and recreated within this Flush shows up twice:
	// merge. Routes created while Flush forgot others can also take the
	// report past the cap on routes.
	slices.SortFunc(rep.Routes, func(a, b apiv1.RouteCounters) int { return strings.Compare(a.Route, b.Route) })
	rep.Routes = foldExcess(mergeSorted(rep.Routes))
	return rep
}

func (r *Recorder) takeSpare() *counters {
	if n := len(r.spare); n > 0 {
		c := r.spare[n-1]
		r.spare = r.spare[:n-1]
		return c
	}
	return newCounters()
}

// drain waits until no Observe writes to c, appends its counts to rep unless
// it is empty, zeroes it and keeps it for reuse. It returns the requests.
func (r *Recorder) drain(route string, c *counters, rep *apiv1.Report) int64 {
	for c.writers.Load() != 0 {
		runtime.Gosched()
	}
	n := c.requests.Swap(0)
	if n > 0 {
		rc := apiv1.RouteCounters{
			Route:        route,
			Requests:     n,
			Errors:       c.errors.Swap(0),
			ClientErrors: c.clientErrors.Swap(0),
		}
		lo, hi := -1, 0
		for i := range c.hist {
			if c.hist[i].Load() != 0 {
				if lo < 0 {
					lo = i
				}
				hi = i + 1
			}
		}
		rc.Latency = apiv1.Histogram{Offset: lo, Counts: make([]int64, hi-lo)}
		for i := lo; i < hi; i++ {
			rc.Latency.Counts[i-lo] = c.hist[i].Swap(0)
		}
		rep.Routes = append(rep.Routes, rc)
	}
	// Observe calls that loaded c before the swap may still bump writers
	// (and back off), never the counts: c is safe to swap in again.
	if len(r.spare) < maxSpare {
		r.spare = append(r.spare, c)
	}
	return n
}

// mergeSorted merges adjacent entries of the same route.
func mergeSorted(rs []apiv1.RouteCounters) []apiv1.RouteCounters {
	out := rs[:0]
	for _, rc := range rs {
		if n := len(out); n > 0 && out[n-1].Route == rc.Route {
			add(&out[n-1], rc)
			continue
		}
		out = append(out, rc)
	}
	return out
}

func add(dst *apiv1.RouteCounters, rc apiv1.RouteCounters) {
	dst.Requests += rc.Requests
	dst.Errors += rc.Errors
	dst.ClientErrors += rc.ClientErrors
	// Merge into a fresh histogram: dst may share its counts with a report
	// already handed to send.
	var h apiv1.Histogram
	h.Merge(dst.Latency)
	h.Merge(rc.Latency)
	dst.Latency = h
}

// Dropped returns the requests whose counts Run gave up on after sends kept
// failing for backlogIntervals intervals.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Run flushes every interval and sends the report, until ctx ends. Each send
// gets at most interval. When a send fails, its counts are merged into the
// next report, for up to backlogIntervals intervals; older counts are
// dropped (see Dropped). When ctx ends, Run makes one last attempt, bounded
// by interval and 5s, so that a draining node's final seconds are not lost.
func (r *Recorder) Run(ctx context.Context, interval time.Duration, send func(context.Context, apiv1.Report) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var pending *apiv1.Report
	attempt := func(ctx context.Context, timeout time.Duration) {
		rep := r.Flush()
		if pending != nil {
			if rep.End.Sub(pending.Start) > backlogIntervals*interval {
				r.dropped.Add(requests(pending))
			} else {
				rep = mergeReports(*pending, rep)
			}
			pending = nil
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if send(sctx, rep) != nil {
			pending = &rep
		}
	}
	for {
		select {
		case <-ctx.Done():
			attempt(context.WithoutCancel(ctx), min(interval, finalSendTimeout))
			if pending != nil {
				r.dropped.Add(requests(pending))
			}
			return
		case <-t.C:
			attempt(ctx, interval)
		}
	}
}

func requests(rep *apiv1.Report) int64 {
	var n int64
	for _, rc := range rep.Routes {
		n += rc.Requests
	}
	return n
}

// mergeReports returns one report covering older's start to newer's end.
func mergeReports(older, newer apiv1.Report) apiv1.Report {
	rs := make([]apiv1.RouteCounters, 0, len(older.Routes)+len(newer.Routes))
	rs = append(append(rs, older.Routes...), newer.Routes...)
	slices.SortStableFunc(rs, func(a, b apiv1.RouteCounters) int { return strings.Compare(a.Route, b.Route) })
	rs = foldExcess(mergeSorted(rs))
	return apiv1.Report{NodeID: newer.NodeID, Start: older.Start, End: newer.End, Routes: rs}
}

// foldExcess keeps a report within apiv1.MaxReportRoutes, which the control
// plane enforces, by folding the quietest routes into OtherRoute. rs is
// sorted by name without duplicates, and stays so.
func foldExcess(rs []apiv1.RouteCounters) []apiv1.RouteCounters {
	if len(rs) <= apiv1.MaxReportRoutes {
		return rs
	}
	slices.SortFunc(rs, func(a, b apiv1.RouteCounters) int {
		if a.Route == apiv1.OtherRoute || b.Route == apiv1.OtherRoute {
			// OtherRoute sorts last, among the folded ones.
			return boolCmp(a.Route == apiv1.OtherRoute, b.Route == apiv1.OtherRoute)
		}
		return cmp.Compare(b.Requests, a.Requests)
	})
	other := apiv1.RouteCounters{Route: apiv1.OtherRoute}
	for _, rc := range rs[apiv1.MaxReportRoutes-1:] {
		add(&other, rc)
	}
	rs = append(rs[:apiv1.MaxReportRoutes-1], other)
	slices.SortFunc(rs, func(a, b apiv1.RouteCounters) int { return strings.Compare(a.Route, b.Route) })
	return rs
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
