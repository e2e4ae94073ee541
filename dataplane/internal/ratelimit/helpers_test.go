package ratelimit

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/redisconn"

	"github.com/redis/go-redis/v9"
)

// newClient returns a client for url that the test closes.
func newClient(t testing.TB, url string) redis.UniversalClient {
	t.Helper()
	c, err := redisconn.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// logRecorder is a slog.Handler that keeps the records, for tests that
// check what is logged and how often.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// count returns the number of records at level.
func (h *logRecorder) count(level slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Level == level {
			n++
		}
	}
	return n
}

func (h *logRecorder) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := ""
	for _, r := range h.records {
		s += r.Level.String() + " " + r.Message + "\n"
	}
	return s
}

// event is one Allow call as a load worker saw it.
type event struct {
	start, end time.Time
	d          Decision
}

// load calls Allow from several goroutines as fast as they can until stop,
// and keeps every call for the checks afterwards.
type load struct {
	done    chan struct{}
	wg      sync.WaitGroup
	calls   atomic.Int64
	lastSrc [3]atomic.Int64 // latest start (unix nanos) of a call per deciding source
	bySrc   [3]atomic.Int64 // calls per deciding source
	mu      sync.Mutex
	events  [][]event
}

var sourceIndex = map[string]int{SourceRedis: 0, SourceLocal: 1, SourceMemory: 2}

// startLoad runs workers goroutines; worker i uses limiters[i%len]. With a
// pace, each worker makes at most one call per pace, as request handlers
// do, instead of spinning: a spinning worker keeps the CPUs busy and what
// is then measured is the scheduler, not the limiter.
func startLoad(limiters []Limiter, workers int, key string, p Policy, pace time.Duration) *load {
	l := &load{done: make(chan struct{}), events: make([][]event, workers)}
	for w := range workers {
		lim := limiters[w%len(limiters)]
		l.wg.Go(func() {
			var (
				evs  []event
				tick <-chan time.Time
			)
			if pace > 0 {
				ticker := time.NewTicker(pace)
				defer ticker.Stop()
				tick = ticker.C
			}
			defer func() {
				l.mu.Lock()
				l.events[w] = evs
				l.mu.Unlock()
			}()
			for {
				if tick != nil {
					select {
					case <-l.done:
						return
					case <-tick:
					}
				}
				select {
				case <-l.done:
					return
				default:
				}
				start := time.Now()
				d := lim.Allow(context.Background(), key, p)
				end := time.Now()
				evs = append(evs, event{start, end, d})
				l.calls.Add(1)
				i := sourceIndex[d.Source]
				l.bySrc[i].Add(1)
				for {
					last := l.lastSrc[i].Load()
					if start.UnixNano() <= last || l.lastSrc[i].CompareAndSwap(last, start.UnixNano()) {
						break
					}
				}
			}
		})
	}
	return l
}

// decidedBy reports whether a call that started after t was decided by
// source. Start, not end: a call already under way at t says nothing about
// what happened after it.
func (l *load) decidedBy(source string, after time.Time) bool {
	return l.lastSrc[sourceIndex[source]].Load() > after.UnixNano()
}

// count returns the number of calls decided by source so far.
func (l *load) count(source string) int64 {
	return l.bySrc[sourceIndex[source]].Load()
}

// stop ends the load and returns every call, in no particular order.
func (l *load) stop() []event {
	close(l.done)
	l.wg.Wait()
	var all []event
	for _, evs := range l.events {
		all = append(all, evs...)
	}
	return all
}

// hammerRedis has workers spread over lims decide key under p as fast as
// they can until stopAt (or maxCalls each, when positive), and returns the
// Redis server times (µs) of the admissions decided in Redis, the number of
// calls, and how many were not decided in Redis.
func hammerRedis(lims []*RedisLimiter, workers int, key string, p Policy, stopAt time.Time, maxCalls int) (admits []int64, calls, notRedis int) {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for w := range workers {
		lim := lims[w%len(lims)]
		wg.Go(func() {
			var mine []int64
			n, bad := 0, 0
			for ; (maxCalls <= 0 || n < maxCalls) && time.Now().Before(stopAt); n++ {
				d, at := lim.allow(context.Background(), key, p)
				switch {
				case d.Source != SourceRedis:
					bad++
				case d.Allowed:
					mine = append(mine, at)
				}
			}
			mu.Lock()
			admits = append(admits, mine...)
			calls += n
			notRedis += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	return admits, calls, notRedis
}
