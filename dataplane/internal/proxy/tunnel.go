package proxy

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Upgraded connections (WebSocket, and the protocols a route lists in
// upgrade_protocols; any other Upgrade header is dropped, stages.go) become
// tunnels: ReverseProxy copies bytes both ways between the client's
// connection and the service's. Every byte either way passes through the
// service side, so a tunnel watches that side: no byte for
// Limits.TunnelIdleTimeout, or a lifetime over Limits.TunnelMaxLifetime,
// cancels the exchange, which closes the service's connection and with it
// the client's.

// tunnel is the service side of an upgraded connection.
type tunnel struct {
	io.ReadWriteCloser
	last    atomic.Int64 // unix nanoseconds of the last byte either way
	idle    time.Duration
	end     int64 // unix nanoseconds of the end of its lifetime
	cancel  func()
	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

var _ io.ReadWriteCloser = (*tunnel)(nil)

func newTunnel(rwc io.ReadWriteCloser, idle, lifetime time.Duration, cancel func()) *tunnel {
	now := time.Now()
	t := &tunnel{ReadWriteCloser: rwc, idle: idle, end: now.Add(lifetime).UnixNano(), cancel: cancel}
	t.last.Store(now.UnixNano())
	t.mu.Lock()
	t.timer = time.AfterFunc(min(idle, lifetime), t.check)
	t.mu.Unlock()
	return t
}

// check closes the tunnel when it has been idle or lived too long, and
// otherwise waits for the next moment either could happen.
func (t *tunnel) check() {
	now := time.Now().UnixNano()
	next := min(t.last.Load()+int64(t.idle), t.end)
	if now >= next {
		t.cancel()
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.timer.Reset(time.Duration(next - now))
	}
}

func (t *tunnel) Read(p []byte) (int, error) {
	n, err := t.ReadWriteCloser.Read(p)
	if n > 0 {
		t.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (t *tunnel) Write(p []byte) (int, error) {
	n, err := t.ReadWriteCloser.Write(p)
	if n > 0 {
		t.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (t *tunnel) Close() error {
	t.stop()
	return t.ReadWriteCloser.Close()
}

// stop ends the watch; the exchange calls it when it is over.
func (t *tunnel) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	t.timer.Stop()
}
