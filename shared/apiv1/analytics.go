package apiv1

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Analytics wire types: data planes count per-route traffic themselves and
// send the counts with their heartbeat, so that the control plane can answer
// "how is the cluster doing" without a Prometheus server.

// OtherRoute is the route name under which a data plane or the control plane
// counts traffic for routes beyond its cap on distinct routes. Route names
// cannot contain parentheses, so it never collides with a real route.
const OtherRoute = "(other)"

// MaxReportRoutes bounds the entries of Report.Routes, OtherRoute included.
// Data planes fold the excess into OtherRoute; the control plane refuses
// larger reports.
const MaxReportRoutes = 10_000

// Report is what a data plane sends every few seconds: the counts since its
// previous accepted report. After a failed send the counts are merged into
// the next report, so Start may lie several intervals before End.
type Report struct {
	NodeID string `json:"node_id"`
	// Start and End are the period the counts cover, by the data plane's
	// clock.
	Start  time.Time       `json:"start"`
	End    time.Time       `json:"end"`
	Routes []RouteCounters `json:"routes"`
}

// RouteCounters are the counts of one route over a report's period.
type RouteCounters struct {
	// Route is the route's name, "" for requests that matched no route.
	Route    string `json:"route"`
	Requests int64  `json:"requests"`
	// Errors counts 5xx answered to the client, whoever produced them.
	Errors int64 `json:"errors"`
	// ClientErrors counts 4xx.
	ClientErrors int64 `json:"client_errors"`
	// Latency holds one observation per request: its counts sum to
	// Requests.
	Latency Histogram `json:"latency"`
}

// LatencyBounds are the inclusive upper bounds of the latency buckets:
// bucket 0 is [0, 250µs], bucket i is (LatencyBounds[i-1], LatencyBounds[i]]
// and the last bucket, len(LatencyBounds), counts everything above 65.5s.
//
// The bounds grow by 2^(1/4) ≈ 1.19, from 250µs to 250µs·2^18 = 65.536s
// (rounded to the microsecond). A quantile estimate lies in the same bucket
// as the true quantile, so it is within −16%…+19% of it at worst;
// interpolation within the bucket usually does far better on real latency
// distributions. Below 250µs the error is absolute (at most 250µs); above
// 65.5s Quantile can only answer 65.536s, a lower bound.
//
// Every node must use the same layout for histograms to merge by adding
// counts: the bounds are part of the wire format and read-only. Changing them
// requires a new API version.
var LatencyBounds = latencyBounds()

const (
	latencyBase     = 250 * time.Microsecond
	latencyDoubling = 18 // the last bound is latencyBase << latencyDoubling
)

func latencyBounds() []time.Duration {
	steps := [4]float64{1, math.Pow(2, 0.25), math.Sqrt2, math.Pow(2, 0.75)}
	b := make([]time.Duration, 0, 4*latencyDoubling+1)
	for i := 0; i <= 4*latencyDoubling; i++ {
		d := float64(latencyBase<<(i/4)) * steps[i%4]
		b = append(b, time.Duration(math.Round(d/float64(time.Microsecond)))*time.Microsecond)
	}
	return b
}

// LatencyBucket returns the index of the bucket that counts d.
func LatencyBucket(d time.Duration) int {
	i, _ := slices.BinarySearch(LatencyBounds, d)
	return i
}

// Histogram counts observations in the buckets of LatencyBounds. It is
// sparse: Counts[i] is the count of bucket Offset+i, and buckets outside
// [Offset, Offset+len(Counts)) are zero. Latencies cluster, so a route's
// histogram usually needs a handful of counts instead of all 74. The zero
// value is an empty histogram.
type Histogram struct {
	Offset int     `json:"offset,omitempty"`
	Counts []int64 `json:"counts"`
}

// Validate checks the shape: the counts lie within the bucket layout and none
// is negative.
func (h *Histogram) Validate() error {
	n := len(LatencyBounds) + 1
	switch {
	case h.Offset < 0 || h.Offset >= n:
		return fmt.Errorf("offset %d is outside [0, %d)", h.Offset, n)
	case len(h.Counts) > n-h.Offset:
		return fmt.Errorf("%d counts from offset %d exceed the %d buckets", len(h.Counts), h.Offset, n)
	}
	for i, c := range h.Counts {
		if c < 0 {
			return fmt.Errorf("counts[%d] is negative", i)
		}
	}
	return nil
}

// Count returns the number of observations.
func (h *Histogram) Count() int64 {
	var n int64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Observe counts one observation of d; it is for tests and cold paths, the
// data plane counts with atomics of its own.
func (h *Histogram) Observe(d time.Duration) {
	i := LatencyBucket(d)
	h.grow(i, i+1)
	h.Counts[i-h.Offset]++
}

// Merge adds o's counts to h. h never shares o's backing array, so o may be
// reused afterwards.
func (h *Histogram) Merge(o Histogram) {
	if len(o.Counts) == 0 {
		return
	}
	h.grow(o.Offset, o.Offset+len(o.Counts))
	for i, c := range o.Counts {
		h.Counts[o.Offset-h.Offset+i] += c
	}
}

// grow widens h to cover buckets [lo, hi).
func (h *Histogram) grow(lo, hi int) {
	if len(h.Counts) == 0 {
		h.Offset, h.Counts = lo, make([]int64, hi-lo)
		return
	}
	end := h.Offset + len(h.Counts)
	if lo >= h.Offset && hi <= end {
		return
	}
	nlo, nhi := min(lo, h.Offset), max(hi, end)
	c := make([]int64, nhi-nlo)
	copy(c[h.Offset-nlo:], h.Counts)
	h.Offset, h.Counts = nlo, c
}

// Quantile estimates the q-quantile (0 ≤ q ≤ 1) by locating the bucket that
// holds it and interpolating linearly within that bucket; see LatencyBounds
// for the error bound. An empty histogram answers 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	total := h.Count()
	if total == 0 || math.IsNaN(q) {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := q * float64(total)
	var cum int64
	for i, c := range h.Counts {
		if c == 0 {
			continue
		}
		if float64(cum+c) < rank {
			cum += c
			continue
		}
		b := h.Offset + i
		if b >= len(LatencyBounds) {
			return LatencyBounds[len(LatencyBounds)-1]
		}
		var lo time.Duration
		if b > 0 {
			lo = LatencyBounds[b-1]
		}
		f := (rank - float64(cum)) / float64(c)
		return lo + time.Duration(f*float64(LatencyBounds[b]-lo))
	}
	// Only float rounding of rank gets here.
	return LatencyBounds[min(h.Offset+len(h.Counts)-1, len(LatencyBounds)-1)]
}

// Analytics is GET /v1/analytics: the cluster's traffic over a recent window.
type Analytics struct {
	// Window is the window the figures cover, after clamping to the
	// control plane's retention.
	Window string `json:"window"`
	// From and To are the period actually summed: the window aligned down
	// to the aggregation bucket, and never before the control plane started
	// collecting. Rates divide by To−From.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Routes is sorted by requests, busiest first.
	Routes []RouteStats `json:"routes"`
	// Dataplanes has one entry per data plane that reported in the window,
	// sorted by node id.
	Dataplanes []NodeStats `json:"dataplanes"`
	// Totals sums every route; its Route is empty.
	Totals RouteStats `json:"totals"`
	// Step and Series answer ?step=: the window in points of Step, oldest
	// first, for all routes together (Route "") and for the routes asked
	// for (or the busiest). Absent without step.
	Step   string        `json:"step,omitempty"`
	Series []RouteSeries `json:"series,omitempty"`
}

// RouteSeries is one route's traffic over the window in fixed steps; Route
// is "" for all routes together.
type RouteSeries struct {
	Route  string        `json:"route"`
	Points []SeriesPoint `json:"points"`
}

// SeriesPoint is the traffic of one step: reports that ended in
// [Time, Time+step). Rates divide by the part of the step that has passed
// and that the control plane was collecting.
type SeriesPoint struct {
	Time      time.Time `json:"t"`
	Requests  int64     `json:"requests"`
	Errors    int64     `json:"errors"`
	RPS       float64   `json:"rps"`
	ErrorRate float64   `json:"error_rate"`
	P50       float64   `json:"p50_ms"`
	P99       float64   `json:"p99_ms"`
}

// RouteStats is one route's traffic over the window.
type RouteStats struct {
	// Route is "" for requests that matched no route, OtherRoute for routes
	// beyond the cap on distinct routes.
	Route        string `json:"route"`
	Requests     int64  `json:"requests"`
	Errors       int64  `json:"errors"`
	ClientErrors int64  `json:"client_errors"`
	// ErrorRate is Errors/Requests: 5xx only, since 4xx are usually the
	// client's doing.
	ErrorRate float64 `json:"error_rate"`
	RPS       float64 `json:"rps"`
	// Latency quantiles in milliseconds, estimated from merged histograms.
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
}

// NodeStats is one data plane's traffic over the window, all routes
// together.
type NodeStats struct {
	NodeID       string  `json:"node_id"`
	Requests     int64   `json:"requests"`
	Errors       int64   `json:"errors"`
	ClientErrors int64   `json:"client_errors"`
	ErrorRate    float64 `json:"error_rate"`
	RPS          float64 `json:"rps"`
	// LastReport is the end of the node's latest report in the window.
	LastReport time.Time `json:"last_report"`
	P50        float64   `json:"p50_ms"`
	P90        float64   `json:"p90_ms"`
	P99        float64   `json:"p99_ms"`
}
