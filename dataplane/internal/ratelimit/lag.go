package ratelimit

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Reaction lag. A Redis reply is on the socket long before the goroutine
// waiting for it runs when this process's CPUs are saturated: the runtime
// learns of socket readiness from netpoll, which a busy scheduler checks
// only when it runs out of work or when sysmon gets to it (every ~10ms),
// and the woken goroutine then waits its turn in a run queue. A fixed
// deadline would then blame Redis for the process's own queueing.
//
// lagMonitor measures that delay on the same path with a peer that answers
// at once: a goroutine parked reading a pipe, and a sampler that writes one
// byte every lagEvery and notes the time; the reader records how long it
// took to run. It samples only while the limiter is in use (touch), and
// both goroutines end after lagIdle without use, so an idle limiter holds
// no goroutine and no file descriptor.
const (
	lagEvery = 10 * time.Millisecond
	lagIdle  = time.Second
	// lagBuckets × lagBucket is the memory of recent: the largest lag of
	// the last second, kept per 100ms so that it ages out.
	lagBuckets = 10
	lagBucket  = 100 * time.Millisecond
)

type lagMonitor struct {
	lastUse atomic.Int64 // unix nanos of the latest touch
	running atomic.Bool
	// maxes[i] is the largest lag in the bucket numbered at[i]
	// (unix nanos / lagBucket); a bucket from another period counts as 0.
	maxes [lagBuckets]atomic.Int64
	at    [lagBuckets]atomic.Int64
	// wg tracks the goroutines of the current run, for tests.
	wg      sync.WaitGroup
	samples atomic.Int64
	// failed keeps the error of a pipe that could not be made (out of
	// file descriptors): the monitor then reports no lag.
	failed atomic.Pointer[string]
	// sent is the unix nanos of the ping in the pipe, 0 once read;
	// lastSample of the latest sample, or of the start of this run.
	sent, lastSample atomic.Int64
	// w is the write end of the current run's pipe, for ping.
	w atomic.Pointer[os.File]
}

var one = []byte{1}

// touch notes that the limiter is in use and starts sampling if it was not.
func (m *lagMonitor) touch(now time.Time) {
	// Stored at most once a millisecond: every decision touches, and a
	// store per decision would bounce the cache line between cores.
	if n := now.UnixNano(); n-m.lastUse.Load() > int64(time.Millisecond) {
		m.lastUse.Store(n)
	}
	if m.running.Load() || !m.running.CompareAndSwap(false, true) {
		return
	}
	r, w, err := os.Pipe()
	if err != nil {
		msg := fmt.Sprintf("lag monitor: %v", err)
		m.failed.Store(&msg)
		m.running.Store(false)
		return
	}
	sent := &m.sent
	sent.Store(0)
	m.lastSample.Store(time.Now().UnixNano())
	m.w.Store(w)
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		defer r.Close()
		var b [1]byte
		for {
			if _, err := r.Read(b[:]); err != nil {
				return // the sampler closed its end
			}
			now := time.Now()
			if t0 := sent.Swap(0); t0 != 0 {
				m.record(now, time.Duration(now.UnixNano()-t0))
			}
		}
	}()
	go func() {
		defer m.wg.Done()
		tick := time.NewTicker(lagEvery)
		defer tick.Stop()
		defer func() {
			m.w.Store(nil)
			_ = w.Close() // ends the reader
			m.running.Store(false)
		}()
		for due := range tick.C {
			now := time.Now()
			if now.UnixNano()-m.lastUse.Load() > int64(lagIdle) {
				return
			}
			// The tick itself comes late on a busy process: that is lag
			// too, measured by the timer's path rather than netpoll's.
			m.record(now, now.Sub(due))
			if t0 := sent.Load(); t0 != 0 {
				// The last ping is still unread: it has waited at least
				// this long.
				m.record(now, time.Duration(time.Now().UnixNano()-t0))
				continue
			}
			if !sent.CompareAndSwap(0, time.Now().UnixNano()) {
				continue // ping sent one
			}
			if _, err := w.Write(one); err != nil {
				return
			}
		}
	}()
}

func (m *lagMonitor) record(now time.Time, lag time.Duration) {
	m.samples.Add(1)
	m.lastSample.Store(now.UnixNano())
	b := now.UnixNano() / int64(lagBucket)
	i := b % lagBuckets
	if m.at[i].Load() != b {
		// A new period for this bucket. The reader and the sampler (for an
		// unread ping) may race here and lose one sample: harmless.
		m.maxes[i].Store(0)
		m.at[i].Store(b)
	}
	for {
		old := m.maxes[i].Load()
		if int64(lag) <= old || m.maxes[i].CompareAndSwap(old, int64(lag)) {
			return
		}
	}
}

// evidence returns the lag this process shows at now: the largest of the
// last second, the age of a ping not yet read, and how long the sampler
// has gone without a sample beyond its period (a starved sampler is lag
// too, and the only evidence in the first milliseconds of a run).
func (m *lagMonitor) evidence(now time.Time) time.Duration {
	lag := m.recent(now)
	if !m.running.Load() {
		return lag
	}
	n := now.UnixNano()
	if t0 := m.sent.Load(); t0 != 0 {
		lag = max(lag, time.Duration(n-t0))
	}
	if last := m.lastSample.Load(); last != 0 {
		lag = max(lag, time.Duration(n-last)-lagEvery)
	}
	return lag
}

// ping sends a ping now unless one is in flight, so that evidence soon
// tells whether the process reacts at once (a late Redis reply is then
// Redis's fault) or not. It reports whether a ping is in flight.
func (m *lagMonitor) ping(now time.Time) bool {
	w := m.w.Load()
	if w == nil {
		return false
	}
	if !m.sent.CompareAndSwap(0, now.UnixNano()) {
		return true
	}
	if _, err := w.Write(one); err != nil {
		m.sent.Store(0)
		return false // the run just ended
	}
	return true
}

// recent returns the largest lag of the last second.
func (m *lagMonitor) recent(now time.Time) time.Duration {
	b := now.UnixNano() / int64(lagBucket)
	var worst int64
	for i := range lagBuckets {
		if at := m.at[i].Load(); b-at < lagBuckets {
			worst = max(worst, m.maxes[i].Load())
		}
	}
	return time.Duration(worst)
}
