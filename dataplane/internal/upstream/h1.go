package upstream

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// H1 is a lean HTTP/1.1 client for the common case of a gateway: an
// idempotent request without a body (GET, HEAD, OPTIONS) to a plain-http
// upstream. net/http's Transport gives every keep-alive connection a read
// goroutine and a write goroutine and hands each request and response
// between them and the caller over channels; under load those hand-offs
// (scheduler, select, wake-ups) cost about a tenth of a proxied request's
// CPU. H1 writes the request and parses the response head on the calling
// goroutine, with the standard library's own wire format (Request.Write,
// http.ReadResponse), and keeps idle connections per host. Only the wait
// for the answer's first byte is handed to a short-lived goroutine (see
// awaitAnswer for why).
//
// Everything else — bodies, upgrades, TLS, other methods — goes to the
// fallback Transport unchanged, so HTTP semantics there are net/http's.
type H1 struct {
	fallback http.RoundTripper
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)

	maxIdlePerHost int
	idleTimeout    time.Duration
	readBuf        int
	writeBuf       int

	// handOff says whether awaitAnswer waits on a goroutine of its own:
	// GOMAXPROCS > 1, read again at each sweep because Go follows a
	// container's CPU limit as it changes.
	handOff atomic.Bool

	mu        sync.Mutex
	idle      map[string][]*h1conn // by host:port, most recent last
	lastSweep time.Time
}

// H1Options configure an H1. Zero values take the defaults in brackets.
type H1Options struct {
	// Dial opens connections; it must honour the context (connect timeout).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdlePerHost [512] and IdleTimeout [90s] bound kept-alive
	// connections, as in http.Transport.
	MaxIdlePerHost int
	IdleTimeout    time.Duration
	// ReadBufferSize and WriteBufferSize [32 KiB] size each connection's
	// buffers.
	ReadBufferSize, WriteBufferSize int
}

// NewH1 returns an H1 sending what it does not handle to fallback.
func NewH1(fallback http.RoundTripper, o H1Options) *H1 {
	if o.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		o.Dial = d.DialContext
	}
	t := &H1{
		fallback:       fallback,
		dial:           o.Dial,
		maxIdlePerHost: cmp.Or(o.MaxIdlePerHost, 512),
		idleTimeout:    cmp.Or(o.IdleTimeout, 90*time.Second),
		readBuf:        cmp.Or(o.ReadBufferSize, 32<<10),
		writeBuf:       cmp.Or(o.WriteBufferSize, 32<<10),
		idle:           map[string][]*h1conn{},
	}
	t.handOff.Store(runtime.GOMAXPROCS(0) > 1)
	return t
}

type h1conn struct {
	net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	lr        *headLimit
	host      string
	idleSince time.Time
	answered  chan error // awaitAnswer's hand-off; buffered, so its goroutine never blocks
}

// awaitAnswer waits until the answer's first byte can be read. With more
// than one P it waits on a goroutine of its own that hands the result back
// over a channel; with one it waits on the caller's.
//
// Parking the request's own goroutine on the network poller is one
// scheduler round trip cheaper, but a goroutine woken by the poller goes to
// the back of a run queue, while net/http's server puts its per-request
// goroutines (the background read it starts for every request, and the
// hand-offs that stop it) in the P's runnext slot, ahead of the queue.
// Under saturation, in a CPU group of its own, traces showed answers that
// had arrived overtaken by hundreds of newer goroutines (scripts/tracewait)
// and p99 at 1.6-3x Go's ReverseProxy, whose Transport hands its reader's
// answers over by channel, into runnext. Handing off the same way cut the
// longest waits (p99.9 28 -> 17 ms, max 120 -> 32 ms) and brought p99 to
// 0.9-1.2x Go's proxy at the same CPU in that set-up; sharing the load
// generator's CPU group, p99 stayed at parity for up to 14% more CPU.
//
// With a single P (GOMAXPROCS=1, which Go sets itself under a CPU limit of
// one core) there is no other P to run what waits, and the extra goroutine
// and hand-offs in runnext only lengthen the chains that starve the run
// queue: p99 went from about 1.4x to 3x Go's ReverseProxy's there, so the
// caller parks itself. docs/PERFORMANCE.md, goal 1, has the measurements.
func (t *H1) awaitAnswer(pc *h1conn) error {
	if !t.handOff.Load() {
		_, err := pc.br.Peek(1)
		return err
	}
	go func() {
		_, err := pc.br.Peek(1)
		pc.answered <- err
	}()
	return <-pc.answered
}

// maxResponseHead bounds a response's status line and headers, like
// http.Transport's MaxResponseHeaderBytes: an upstream cannot make the
// gateway buffer without end.
const maxResponseHead = 1 << 20

// headLimit is the connection as the buffered reader sees it: while a
// response head is read it allows at most maxResponseHead bytes.
type headLimit struct {
	c      net.Conn
	remain int64 // < 0: no limit (reading a body)
}

func (l *headLimit) Read(p []byte) (int, error) {
	if l.remain < 0 {
		return l.c.Read(p)
	}
	if l.remain == 0 {
		return 0, fmt.Errorf("upstream response head larger than %d bytes", maxResponseHead)
	}
	if int64(len(p)) > l.remain {
		p = p[:l.remain]
	}
	n, err := l.c.Read(p)
	l.remain -= int64(n)
	return n, err
}

// eligible says whether H1 sends req itself.
func eligible(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	return req.URL.Scheme == "http" &&
		(req.Body == nil || req.Body == http.NoBody) && req.ContentLength == 0 &&
		len(req.TransferEncoding) == 0 &&
		req.Header.Get("Upgrade") == "" && !req.Close
}

// RoundTrip implements http.RoundTripper.
func (t *H1) RoundTrip(req *http.Request) (*http.Response, error) {
	if !eligible(req) {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	host := req.URL.Host
	if req.URL.Port() == "" {
		host = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	for retried := false; ; retried = true {
		pc, reused, err := t.conn(ctx, host)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: %w", ctx.Err(), err)
			}
			return nil, err
		}
		resp, err := t.exchange(ctx, pc, req)
		if err == nil {
			return resp, nil
		}
		// A kept-alive connection the server had closed fails at once
		// with nothing read: the request (idempotent, bodiless) is sent
		// again, as net/http does. The other idle connections to the host
		// are likely dead too (a restart, a short keep-alive timeout on
		// its side), so they are dropped and the retry dials afresh.
		if reused && !retried && ctx.Err() == nil && staleConn(err) {
			t.dropIdle(host)
			continue
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return nil, err
	}
}

// exchange sends req on pc and reads the response head. The connection is
// the response body's until it is read to the end or closed.
func (t *H1) exchange(ctx context.Context, pc *h1conn, req *http.Request) (*http.Response, error) {
	// Cancelling the request (client gone, route or attempt timeout) must
	// unblock a read or write in progress: an expired deadline does that.
	stop := context.AfterFunc(ctx, func() { _ = pc.SetDeadline(time.Unix(1, 0)) })
	if err := req.Write(pc.bw); err != nil {
		stop()
		pc.Close()
		return nil, err
	}
	if err := pc.bw.Flush(); err != nil {
		stop()
		pc.Close()
		return nil, err
	}
	var resp *http.Response
	pc.lr.remain = maxResponseHead
	// Waiting for the first byte apart from the parse tells a connection
	// that was dead before it answered anything (io.EOF, reset: safe to
	// send again) from one that died mid-response (ReadResponse reports
	// both as io.ErrUnexpectedEOF).
	if err := t.awaitAnswer(pc); err != nil {
		stop()
		pc.Close()
		return nil, err
	}
	for {
		var err error
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			stop()
			pc.Close()
			return nil, err
		}
		// Informational answers (100, 103) precede the real one; 101
		// cannot happen without an Upgrade header, which goes elsewhere.
		if resp.StatusCode < 100 || resp.StatusCode > 199 {
			break
		}
	}
	pc.lr.remain = -1
	keep := !resp.Close
	if resp.Body == http.NoBody {
		t.release(pc, stop, keep)
		return resp, nil
	}
	resp.Body = &h1body{rc: resp.Body, pc: pc, t: t, stop: stop, keep: keep}
	return resp, nil
}

// staleConn reports an error of a connection that was already dead: the
// peer closed or reset it before answering anything.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// conn returns an idle connection to host, or dials one.
func (t *H1) conn(ctx context.Context, host string) (*h1conn, bool, error) {
	now := time.Now()
	t.mu.Lock()
	list := t.idle[host]
	for len(list) > 0 {
		pc := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if now.Sub(pc.idleSince) < t.idleTimeout {
			t.idle[host] = list
			t.mu.Unlock()
			return pc, true, nil
		}
		pc.Close()
	}
	t.idle[host] = list
	t.mu.Unlock()
	c, err := t.dial(ctx, "tcp", host)
	if err != nil {
		return nil, false, err
	}
	lr := &headLimit{c: c, remain: -1}
	return &h1conn{Conn: c, br: bufio.NewReaderSize(lr, t.readBuf), bw: bufio.NewWriterSize(c, t.writeBuf), lr: lr, host: host, answered: make(chan error, 1)}, false, nil
}

// release returns pc to the idle pool, unless it cannot carry another
// request: the response asked to close, the cancellation deadline may
// already be on it, or the upstream sent more than the response (a body
// to a HEAD, bytes past Content-Length) that the next exchange would take
// for its answer.
func (t *H1) release(pc *h1conn, stop func() bool, keep bool) {
	if !stop() || !keep || pc.br.Buffered() > 0 {
		pc.Close()
		return
	}
	now := time.Now()
	pc.idleSince = now
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.lastSweep) > t.idleTimeout/2 {
		t.sweepLocked(now)
	}
	list := t.idle[pc.host]
	if len(list) >= t.maxIdlePerHost {
		pc.Close()
		return
	}
	t.idle[pc.host] = append(list, pc)
}

// sweepLocked closes connections idle for longer than the timeout, so that
// hosts no longer used (instances gone from discovery) do not keep sockets.
func (t *H1) sweepLocked(now time.Time) {
	t.lastSweep = now
	t.handOff.Store(runtime.GOMAXPROCS(0) > 1)
	for host, list := range t.idle {
		kept := list[:0]
		for _, pc := range list {
			if now.Sub(pc.idleSince) < t.idleTimeout {
				kept = append(kept, pc)
			} else {
				pc.Close()
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(t.idle, host)
		} else {
			t.idle[host] = kept
		}
	}
}

// dropIdle closes the idle connections to host.
func (t *H1) dropIdle(host string) {
	t.mu.Lock()
	list := t.idle[host]
	delete(t.idle, host)
	t.mu.Unlock()
	for _, pc := range list {
		pc.Close()
	}
}

// CloseIdleConnections closes every idle connection (and the fallback's).
func (t *H1) CloseIdleConnections() {
	t.mu.Lock()
	for host, list := range t.idle {
		for _, pc := range list {
			pc.Close()
		}
		delete(t.idle, host)
	}
	t.mu.Unlock()
	if c, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// h1body gives the connection back once the body is read to the end; a
// body closed early closes the connection (what is left unread would
// otherwise be taken for the next response).
type h1body struct {
	rc   io.ReadCloser
	pc   *h1conn
	t    *H1
	stop func() bool
	keep bool
	done bool
}

func (b *h1body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.done = true
		b.t.release(b.pc, b.stop, b.keep)
	} else if err != nil {
		b.done = true
		b.stop()
		b.pc.Close()
	}
	return n, err
}

func (b *h1body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	b.stop()
	return b.pc.Close()
}
