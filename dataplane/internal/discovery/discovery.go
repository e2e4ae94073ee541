// Package discovery follows, through Consul's health API, the instances of
// the services that data-plane routes point at.
//
// Each watched source has one long-lived blocking query, shared by all its
// subscribers. When Consul cannot be reached the last known instances stay
// in force: an outage of the registry must not become an outage of the
// services it describes.
//
// The same holds for a Consul that comes back empty (an agent restarted
// without its data, an older snapshot restored: seen as an answer after
// failed queries, or an index lower than the last one). Its empty answer
// means it has not heard from the instances yet, not that they are gone:
// they register again within seconds (consulreg re-asserts registrations).
// For RebuildGrace after such a return, an empty list does not replace a
// non-empty one; a non-empty answer is taken at once.
package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/promreg"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/shared/consulreg"
	"github.com/portico-gw/portico/shared/pause"
)

// Source names a set of instances in Consul; it mirrors config.ConsulSource.
type Source struct {
	Service string
	// Tags: instances must carry all of them.
	Tags       []string
	Datacenter string
}

// Key returns a canonical form of s: sources that select the same instances
// (tags in another order or repeated) have the same key. It identifies the
// watch and labels its metrics.
func (s Source) Key() string {
	var b strings.Builder
	// Escaped so that a tag containing one of the separators cannot make two
	// different sources collide.
	b.WriteString(url.QueryEscape(s.Service))
	if tags := normTags(s.Tags); len(tags) > 0 {
		b.WriteByte('[')
		for i, t := range tags {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(url.QueryEscape(t))
		}
		b.WriteByte(']')
	}
	if s.Datacenter != "" {
		b.WriteByte('@')
		b.WriteString(url.QueryEscape(s.Datacenter))
	}
	return b.String()
}

// normTags returns a sorted, duplicate-free copy: the caller's slice may be
// shared with its configuration.
func normTags(tags []string) []string {
	if len(tags) == 0 {
		return nil
	}
	out := slices.Clone(tags)
	slices.Sort(out)
	return slices.Compact(out)
}

// Instance is one passing instance of a source.
type Instance struct {
	ID     string // Consul service ID
	Addr   string // "host:port"; IPv6 hosts are bracketed
	Weight int    // Service.Weights.Passing, at least 1
}

func compareInstances(a, b Instance) int {
	// Service IDs are only unique per agent, so the address breaks ties.
	return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Addr, b.Addr), cmp.Compare(a.Weight, b.Weight))
}

// SourceStatus describes one watched source, for /status.
type SourceStatus struct {
	Source      string    `json:"source"`
	Instances   int       `json:"instances"`
	Known       bool      `json:"known"`            // at least one successful answer
	Healthy     bool      `json:"consul_reachable"` // last query succeeded
	LastError   string    `json:"last_error,omitempty"`
	LastChange  time.Time `json:"last_change,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
}

// Option tunes a Watcher.
type Option func(*Watcher)

// WithWaitTime sets how long one blocking query may wait for a change
// (default 30s). It bounds how long an unnoticed dead connection can delay
// the next query, not how fast changes arrive: those end the query at once.
func WithWaitTime(d time.Duration) Option {
	return func(w *Watcher) {
		if d > 0 {
			w.waitTime = d
		}
	}
}

// WithBackoff sets the retry delay after a failed query: it starts at
// initial and doubles up to max (defaults 200ms and 5s), with jitter.
func WithBackoff(initial, max time.Duration) Option {
	return func(w *Watcher) {
		if initial > 0 && max >= initial {
			w.backoffMin, w.backoffMax = initial, max
		}
	}
}

// Watcher runs the watches. All its methods are safe for concurrent use.
type Watcher struct {
	client     *api.Client
	log        *slog.Logger
	metrics    *metrics // nil: no registry
	waitTime   time.Duration
	backoffMin time.Duration
	backoffMax time.Duration

	wg sync.WaitGroup // every watch goroutine

	mu      sync.Mutex
	closed  bool
	watches map[string]*watch
}

// NewWatcher returns a Watcher querying Consul through c. reg may be nil.
func NewWatcher(c *api.Client, log *slog.Logger, reg prometheus.Registerer, opts ...Option) *Watcher {
	if log == nil {
		log = slog.Default()
	}
	w := &Watcher{
		client:     c,
		log:        log,
		waitTime:   30 * time.Second,
		backoffMin: 200 * time.Millisecond,
		backoffMax: 5 * time.Second,
		watches:    make(map[string]*watch),
	}
	if reg != nil {
		w.metrics = newMetrics(reg)
	}
	for _, o := range opts {
		o(w)
	}
	return w
}

// watch is the state of one source: a poll goroutine running the blocking
// queries and a deliver goroutine calling the subscribers, so that a new
// subscriber is served at once even while a query is blocked.
type watch struct {
	w    *Watcher
	src  Source // tags normalised
	key  string
	stop context.CancelFunc
	// wake tells the deliver goroutine that there is a new list or a new
	// subscriber; one pending signal is enough, hence the buffer of 1.
	wake chan struct{}
	done chan struct{} // closed when both goroutines have returned

	// Guarded by Watcher.mu: the goroutines, Watch, cancel and Status
	// meet there.
	stopped bool
	subs    map[*subscriber]struct{}
	// current is the newest instance list and version its number, 0 while
	// nothing is known yet. The poller replaces them; the deliverer hands
	// them out. Slow subscribers therefore skip intermediate lists rather
	// than stall the poller or build up a backlog.
	current []Instance
	version uint64
	status  SourceStatus
}

type subscriber struct {
	onChange  func([]Instance)
	cancelled atomic.Bool
	seen      uint64 // version last delivered; owned by the deliver goroutine
}

// Watch starts (or joins) the watch of src and calls onChange with the full
// sorted instance list when it is first known (at once if it already is)
// and then each time it changes. onChange runs on the watch's goroutine, one
// call at a time, and must be quick; the slice is the subscriber's own. A
// source that cannot be queried is never reported empty because of it: the
// last known list stays until Consul answers again.
//
// cancel removes the subscriber. It does not wait for a call already under
// way (so that onChange itself may cancel), hence one last call can still
// run after it returns. The watch stops with its last subscriber. After
// Close, Watch does nothing.
func (w *Watcher) Watch(src Source, onChange func([]Instance)) (cancel func()) {
	if onChange == nil {
		panic("discovery: Watch with a nil onChange")
	}
	src.Tags = normTags(src.Tags)
	key := src.Key()
	sub := &subscriber{onChange: onChange}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return func() {}
	}
	ws := w.watches[key]
	if ws == nil {
		ws = w.start(src, key)
		w.watches[key] = ws
	}
	ws.subs[sub] = struct{}{}
	ws.signal()

	var once sync.Once
	return func() { once.Do(func() { w.unsubscribe(ws, sub) }) }
}

func (w *Watcher) unsubscribe(ws *watch, sub *subscriber) {
	sub.cancelled.Store(true)
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(ws.subs, sub)
	if len(ws.subs) == 0 && !ws.stopped {
		delete(w.watches, ws.key)
		w.stopLocked(ws)
	}
}

// start launches the goroutines of a new watch. Called with w.mu held.
func (w *Watcher) start(src Source, key string) *watch {
	ctx, stop := context.WithCancel(context.Background())
	ws := &watch{
		w:      w,
		src:    src,
		key:    key,
		stop:   stop,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		subs:   make(map[*subscriber]struct{}),
		status: SourceStatus{Source: key},
	}
	if w.metrics != nil {
		// Created up front so that the series exist, at 0, before any error.
		w.metrics.errors.WithLabelValues(key)
	}
	var running atomic.Int32
	running.Store(2)
	exit := func() {
		if running.Add(-1) == 0 {
			close(ws.done)
		}
		w.wg.Done()
	}
	w.wg.Add(2)
	go func() { defer exit(); ws.poll(ctx) }()
	go func() { defer exit(); ws.deliver(ctx) }()
	return ws
}

// stopLocked ends a watch. The metric series go now, under the lock, rather
// than when the goroutines exit: a new watch of the same source may already
// have recreated them by then.
func (w *Watcher) stopLocked(ws *watch) {
	ws.stopped = true
	ws.stop()
	if w.metrics != nil {
		w.metrics.delete(ws.key)
	}
}

// Close stops every watch and waits for their goroutines. It must not be
// called from onChange.
func (w *Watcher) Close() {
	w.mu.Lock()
	w.closed = true
	for key, ws := range w.watches {
		delete(w.watches, key)
		w.stopLocked(ws)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// Status reports every watched source, sorted by key.
func (w *Watcher) Status() []SourceStatus {
	w.mu.Lock()
	out := make([]SourceStatus, 0, len(w.watches))
	for _, ws := range w.watches {
		out = append(out, ws.status)
	}
	w.mu.Unlock()
	slices.SortFunc(out, func(a, b SourceStatus) int { return cmp.Compare(a.Source, b.Source) })
	return out
}

func (ws *watch) signal() {
	select {
	case ws.wake <- struct{}{}:
	default:
	}
}

// deliver hands the current list to every subscriber that has not seen it.
func (ws *watch) deliver(ctx context.Context) {
	w := ws.w
	var pending []*subscriber
	for {
		select {
		case <-ctx.Done():
			return
		case <-ws.wake:
		}
		w.mu.Lock()
		cur, ver := ws.current, ws.version
		pending = pending[:0]
		if ver != 0 {
			for s := range ws.subs {
				if s.seen != ver {
					pending = append(pending, s)
				}
			}
		}
		w.mu.Unlock()
		// Called without the lock so that onChange may use the Watcher.
		for _, s := range pending {
			if ctx.Err() != nil {
				return
			}
			if s.cancelled.Load() {
				continue
			}
			s.seen = ver
			s.onChange(slices.Clone(cur))
		}
		clear(pending) // drop references to cancelled subscribers
	}
}

// RebuildGrace is how long after Consul comes back from an outage or a
// rebuild an empty answer is not believed (see the package doc).
const RebuildGrace = 10 * time.Second

// poll runs the blocking queries of one source until ctx ends.
func (ws *watch) poll(ctx context.Context) {
	w := ws.w
	var (
		index     uint64
		last      []Instance
		known     bool
		failures  int
		downSince time.Time
		goodIndex uint64    // the index of the last answer, kept across failures
		rebuiltAt time.Time // when Consul came back from an outage or a rebuild
	)
	for {
		began := time.Now()
		entries, meta, err := ws.query(ctx, index)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			if failures == 1 {
				downSince = began
				// Once per outage: a retry every few seconds would flood
				// the log without saying anything new.
				w.log.Warn("consul discovery query failed; keeping last known instances",
					"source", ws.key, "known", known, "instances", len(last), "error", err)
			} else {
				w.log.Debug("consul discovery query failed again", "source", ws.key, "attempt", failures, "error", err)
			}
			ws.recordError(err)
			// The next query must not block: after Consul comes back with
			// nothing changed, a blocking one would hide the recovery for
			// a whole wait time. The comparison with the last list keeps
			// the fresh answer from being delivered again.
			index = 0
			if !pause.For(ctx, w.backoff(failures), nil) {
				return
			}
			continue
		}
		if failures > 0 || meta.LastIndex < goodIndex {
			rebuiltAt = time.Now()
		}
		if failures > 0 {
			w.log.Info("consul discovery query succeeded again",
				"source", ws.key, "failed_attempts", failures, "outage", time.Since(downSince).Round(time.Millisecond))
			failures = 0
		}
		goodIndex = meta.LastIndex

		prev := index
		index = nextIndex(prev, meta.LastIndex)
		insts := toInstances(entries)
		if len(insts) == 0 && len(last) > 0 && !rebuiltAt.IsZero() && time.Since(rebuiltAt) < RebuildGrace {
			// Not believed yet: keep the last instances and ask again
			// soon without blocking, so that the grace ends on time.
			ws.recordSuccess(last, false)
			index = 0
			if !pause.For(ctx, w.backoffMin, nil) {
				return
			}
			continue
		}
		changed := !known || !slices.Equal(insts, last)
		if changed {
			last, known = insts, true
		}
		ws.recordSuccess(insts, changed)

		// An unchanged index returned early means the query did not block;
		// Consul's guidance is to rate-limit such loops. Real changes move
		// the index and so are never delayed by this.
		if !changed && prev != 0 && meta.LastIndex == prev && time.Since(began) < w.waitTime/2 {
			if !pause.For(ctx, w.backoffMin, nil) {
				return
			}
		}
	}
}

// nextIndex applies Consul's blocking-query rules to the index returned by
// the last answer: an index lower than the previous one (a restored or
// rebuilt server) must be reset to 0, which makes the next query return the
// current state at once; and a blocking query needs an index of at least 1,
// or it returns immediately and loops.
func nextIndex(prev, got uint64) uint64 {
	if got < prev {
		return 0
	}
	return max(got, 1)
}

func (ws *watch) query(ctx context.Context, index uint64) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	w := ws.w
	// Consul adds up to wait/16 of jitter; beyond that plus a margin, the
	// connection is presumed dead (a black-holed agent would otherwise hang
	// the watch forever: the API client sets no timeout of its own).
	ctx, cancel := context.WithTimeout(ctx, w.waitTime+w.waitTime/16+10*time.Second)
	defer cancel()
	q := (&api.QueryOptions{
		Datacenter: ws.src.Datacenter,
		AllowStale: true, // any server may answer: discovery favours availability
		WaitIndex:  index,
		WaitTime:   w.waitTime,
	}).WithContext(ctx)
	var (
		entries []*api.ServiceEntry
		meta    *api.QueryMeta
		err     error
	)
	// ServiceMultipleTags with one tag is the same request as Service with
	// that tag; with none, Service without a tag filter.
	if len(ws.src.Tags) == 0 {
		entries, meta, err = w.client.Health().Service(ws.src.Service, "", true, q)
	} else {
		entries, meta, err = w.client.Health().ServiceMultipleTags(ws.src.Service, ws.src.Tags, true, q)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("consul health query for %s: %w", ws.key, err)
	}
	if meta == nil {
		return nil, nil, fmt.Errorf("consul health query for %s: %w", ws.key, errors.New("no query metadata in answer"))
	}
	return entries, meta, nil
}

func toInstances(entries []*api.ServiceEntry) []Instance {
	out := make([]Instance, 0, len(entries))
	for _, e := range entries {
		addr, ok := consulreg.EntryAddr(e)
		if !ok {
			continue
		}
		out = append(out, Instance{ID: e.Service.ID, Addr: addr, Weight: max(e.Service.Weights.Passing, 1)})
	}
	slices.SortFunc(out, compareInstances)
	return out
}

func (ws *watch) recordSuccess(insts []Instance, changed bool) {
	w := ws.w
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if ws.stopped {
		return
	}
	st := &ws.status
	st.Healthy, st.Known, st.LastError, st.LastSuccess = true, true, "", now
	if changed {
		ws.current = insts
		ws.version++
		st.Instances, st.LastChange = len(insts), now
		ws.signal()
	}
	if w.metrics != nil {
		w.metrics.up.WithLabelValues(ws.key).Set(1)
		w.metrics.instances.WithLabelValues(ws.key).Set(float64(len(insts)))
	}
}

func (ws *watch) recordError(err error) {
	w := ws.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if ws.stopped {
		return
	}
	ws.status.Healthy, ws.status.LastError = false, err.Error()
	if w.metrics != nil {
		w.metrics.up.WithLabelValues(ws.key).Set(0)
		w.metrics.errors.WithLabelValues(ws.key).Inc()
	}
}

// backoff returns the delay before retry number n (from 1): exponential,
// capped, with half of it random so that data planes that lost Consul
// together do not come back in lockstep.
func (w *Watcher) backoff(n int) time.Duration {
	d := w.backoffMax
	if shift := n - 1; shift < 30 {
		d = min(w.backoffMin<<shift, w.backoffMax)
	}
	half := d / 2
	return half + rand.N(half+1)
}

type metrics struct {
	instances *prometheus.GaugeVec
	up        *prometheus.GaugeVec
	errors    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		instances: promreg.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portico_discovery_instances",
			Help: "Passing instances of a Consul source, as last answered.",
		}, []string{"source"})),
		up: promreg.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portico_discovery_consul_up",
			Help: "1 if the last Consul query for the source succeeded, else 0.",
		}, []string{"source"})),
		errors: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_discovery_errors_total",
			Help: "Failed Consul queries, by source.",
		}, []string{"source"})),
	}
}

func (m *metrics) delete(key string) {
	m.instances.DeleteLabelValues(key)
	m.up.DeleteLabelValues(key)
	m.errors.DeleteLabelValues(key)
}
