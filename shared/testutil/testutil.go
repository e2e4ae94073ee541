// Package testutil holds helpers shared by Portico's tests: free loopback
// ports, a polling assertion, a load generator, and real servers on
// loopback ports: a Consul agent (StartConsul, StartConsulWithDNS) and redis-server
// (StartRedis), both stoppable and restartable to simulate outages, and a
// Jaeger all-in-one (StartJaeger) to receive and query traces.
// It uses the standard library only, so any module may import it from tests.
package testutil

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is released before returning, so another process can still take it;
// callers that bind it later should be ready to retry with a new one.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return p
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("listen on 127.0.0.1:0: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Eventually calls cond until it returns true, and fails the test with msg if
// that does not happen within timeout. It is meant for state that only an
// external process or the network can change; use channels to wait for this
// process's own goroutines.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("not true after %v: %s", timeout, msg)
	}
}

// EventuallyNil is Eventually for a condition that says why it is not met
// yet: the test fails with its last error.
func EventuallyNil(t testing.TB, timeout time.Duration, cond func() error, msg string) {
	t.Helper()
	var last error
	if !poll(timeout, func() bool { last = cond(); return last == nil }) {
		t.Fatalf("not %s after %v: %v", msg, timeout, last)
	}
}

// poll backs off from a short interval so that a fast condition is noticed
// quickly while a slow one does not keep a core busy.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	interval := 5 * time.Millisecond
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(interval, left))
		interval = min(interval*2, 250*time.Millisecond)
	}
}

// LoadResult counts the calls a Load made.
type LoadResult struct {
	Total, Failed int64
	// FirstError is the first failure, for the test's message.
	FirstError error
}

// Load calls fn from workers goroutines, again and again, until the returned
// stop is called; stop waits for the workers and reports what happened.
// Progress reports the number of calls made so far, for Eventually.
func Load(workers int, fn func() error) (stop func() LoadResult, progress func() int64) {
	var (
		total, failed atomic.Int64
		first         atomic.Pointer[error]
		wg            sync.WaitGroup
		done          = make(chan struct{})
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				err := fn()
				total.Add(1)
				if err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	stop = func() LoadResult {
		close(done)
		wg.Wait()
		r := LoadResult{Total: total.Load(), Failed: failed.Load()}
		if e := first.Load(); e != nil {
			r.FirstError = *e
		}
		return r
	}
	return stop, total.Load
}

// HTTPStatus is a Load function body: GET url and fail unless it answers
// want.
func HTTPStatus(c *http.Client, url string, want int) func() error {
	return func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// Clock is a settable clock for tests, safe for concurrent use: pass Now
// where code takes a func() time.Time, and move it with Add.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{t: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// RefusedAddr returns a loopback "host:port" where nothing listens, so
// connections to it are refused at once: a dead instance for tests.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
