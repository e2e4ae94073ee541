// Package testutil holds helpers shared by Portico's tests: free loopback
// ports, a polling assertion, and a throwaway Consul agent (see StartConsul).
// It uses the standard library only, so any module may import it from tests.
package testutil

import (
	"fmt"
	"net"
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
