package proxy

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/stage"
)

// Request bodies are read under deadlines, like nginx's client_body_timeout
// and Apache's mod_reqtimeout:
//
//   - every read of the client's body must return within BodyReadTimeout
//     (the connection's read deadline is set before each read);
//   - once BodyMinRateGrace of waiting for the client is spent, the client
//     must have sent BodyMinRate bytes per second of the time the gateway
//     waited for it. Only time spent waiting for the client counts: an
//     upstream that reads slowly does not make its client late.
//
// A client that misses either gets 408 (if nothing was answered yet) and its
// connection is closed. Whatever the reason a request failed, when the
// client's body is at fault — it stalled, broke off or was malformed, or a
// timeout fired while the gateway was waiting for the client's bytes — the
// failure is the client's: it is never reported to the service's circuit
// breaker, outlier detection or retry budget (upstream.ClientBody). A
// failure of the service's own (refused, reset, a 5xx) while the client is
// slow is still the service's: only timeouts are weighed against a late
// client.

// errBodyStalled is the read error of a body whose client missed its
// deadline.
var errBodyStalled = errors.New("the client stopped sending its request body")

const (
	bodyOpen    int32 = iota
	bodyDone          // read to EOF
	bodyStalled       // the client missed a read deadline
	bodyBroken        // another read error (aborted, malformed, too large)
)

// clientBody wraps a request body read from the client. Reads happen on
// one goroutine at a time (the handler's, or the upstream transport's
// writer); state and the wait accounting are read from others.
type clientBody struct {
	rc  io.ReadCloser
	ctl *http.ResponseController
	lim *Limits
	// noDeadlines: the connection cannot take read deadlines
	// (ResponseController says ErrNotSupported).
	noDeadlines atomic.Bool
	// abandoned: the gateway no longer wants the body (Abandon).
	abandoned atomic.Bool

	read   int64        // bytes returned so far
	born   time.Time    // when the request's body was first seen
	waited atomic.Int64 // nanoseconds spent blocked on the client, past reads
	// waitStart is when the read now blocked on the client began (unix
	// nanoseconds), 0 when none is.
	waitStart atomic.Int64
	pre       [1]byte // a byte read ahead by prefetch
	hasPre    bool
	state     atomic.Int32
	// onDone is called once when the body has been read to its end.
	onDone atomic.Pointer[func()]
	// tap receives a copy of every byte read (a mirror's), nil for none.
	tap io.Writer
}

func newClientBody(rc io.ReadCloser, w http.ResponseWriter, lim *Limits) *clientBody {
	return &clientBody{rc: rc, ctl: http.NewResponseController(w), lim: lim, born: time.Now()}
}

// deadline is when the read about to start must have returned.
func (b *clientBody) deadline(now time.Time) time.Time {
	d := b.lim.BodyReadTimeout
	if rate := b.lim.BodyMinRate; rate > 0 {
		// The client has earned grace plus one second per rate bytes sent;
		// what it has not used up yet is how long it may still take.
		earned := b.lim.BodyMinRateGrace.Seconds() + float64(b.read)/float64(rate) - time.Duration(b.waited.Load()).Seconds()
		if earned < d.Seconds() {
			d = time.Duration(earned * float64(time.Second))
		}
	}
	return now.Add(d)
}

func (b *clientBody) setDeadline(t time.Time) {
	if b.noDeadlines.Load() {
		return
	}
	if err := b.ctl.SetReadDeadline(t); errors.Is(err, http.ErrNotSupported) {
		b.noDeadlines.Store(true)
	}
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.hasPre && len(p) > 0 {
		b.hasPre = false
		p[0] = b.pre[0]
		if b.tap != nil {
			b.tap.Write(p[:1])
		}
		return 1, nil
	}
	switch b.state.Load() {
	case bodyStalled:
		return 0, errBodyStalled
	case bodyDone:
		return 0, io.EOF
	}
	start := time.Now()
	b.setDeadline(b.deadline(start))
	b.waitStart.Store(start.UnixNano())
	if b.abandoned.Load() {
		// Abandon ran between the deadline above and waiting: it may not
		// have seen this read.
		b.setDeadline(start)
	}
	n, err := b.rc.Read(p)
	if b.tap != nil && n > 0 {
		b.tap.Write(p[:n])
	}
	b.waitStart.Store(0)
	b.waited.Add(int64(time.Since(start)))
	b.read += int64(n)
	switch {
	case err == nil:
	case err == io.EOF:
		// The connection goes back to reading the next request; it must
		// not inherit this body's deadline.
		b.setDeadline(time.Time{})
		if b.state.CompareAndSwap(bodyOpen, bodyDone) {
			if f := b.onDone.Load(); f != nil {
				(*f)()
			}
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.state.Store(bodyStalled)
		err = errBodyStalled
	default:
		b.state.CompareAndSwap(bodyOpen, bodyBroken)
	}
	return n, err
}

// prefetch waits for the body's first byte (or its end), under the same
// deadlines as any read, and keeps it for the next Read. A route with
// max_in_flight takes its slot only after this: a client that sends
// headers and then nothing holds no slot.
func (b *clientBody) prefetch() error {
	n, err := b.Read(b.pre[:])
	b.hasPre = n == 1
	if err == io.EOF {
		err = nil
	}
	return err
}

// Await is prefetch for a stage (a throttle) that must not take a scarce
// slot for a client that has sent nothing yet: false when the body failed
// and the request was answered (408, 413 or 400).
func (b *clientBody) Await(req *stage.Request) bool {
	if err := b.prefetch(); err != nil {
		writeBodyError(req.W, req.R, err)
		return false
	}
	return true
}

// Stream lifts the body deadlines for the rest of the body (a gRPC stream
// that idles between messages): the read deadline a prefetch may have set
// is cleared, and later reads set none.
func (b *clientBody) Stream() io.Reader {
	b.setDeadline(time.Time{})
	b.noDeadlines.Store(true)
	return b
}

// Close gives up on the rest of the body. A read still blocked on the
// client (the upstream transport's writer, after the exchange failed) is
// cut off at once rather than at its deadline: net/http's Close would
// otherwise wait for it, and the answer with it.
func (b *clientBody) Close() error {
	b.Abandon()
	return b.rc.Close()
}

// Abandon ends the wait for a body the gateway no longer needs (a read
// blocked on the client returns at once); net/http then closes the
// connection instead of reading the rest of the body.
func (b *clientBody) Abandon() {
	b.abandoned.Store(true)
	if b.state.Load() == bodyOpen && b.waiting() {
		b.setDeadline(time.Now())
	}
}

// finish runs when the handler returns. A body not read to its end is
// drained by net/http (up to 256 KiB) to reuse the connection. The drain
// of a client that is late, or whose body the exchange abandoned, is cut
// off at once (the connection is closed after the answer); any other gets
// the body read timeout, so a client cannot hold the connection by
// stalling after its answer.
func (b *clientBody) finish() {
	if b.state.Load() == bodyDone {
		return
	}
	if b.abandoned.Load() || b.late() {
		b.setDeadline(time.Now())
		return
	}
	b.setDeadline(time.Now().Add(b.lim.BodyReadTimeout))
}

// stalled reports whether the client missed a body deadline.
func (b *clientBody) stalled() bool { return b.state.Load() == bodyStalled }

// waiting reports whether a read is blocked on the client right now.
func (b *clientBody) waiting() bool { return b.waitStart.Load() != 0 }

// ClientFault reports whether the client's body failed: it stalled past a
// deadline, broke off, was malformed or over the limit. Any failure of the
// exchange after that is the client's.
func (b *clientBody) ClientFault() bool {
	s := b.state.Load()
	return s == bodyStalled || s == bodyBroken
}

// Late is late, for the upstream transport: when an attempt times out while
// the client is late, the timeout measured the client.
func (b *clientBody) Late() bool { return b.late() }

// complete reports whether the body was read to its end.
func (b *clientBody) complete() bool { return b.state.Load() == bodyDone }

// Complete is complete for stages (stage.Body).
func (b *clientBody) Complete() bool { return b.complete() }

// Tap sends a copy of what is read from now on to w (stage.Body).
func (b *clientBody) Tap(w io.Writer) { b.tap = w }

// late reports whether the client is behind with its body: it missed a
// deadline, or the body is unfinished and the gateway is waiting for it
// now, or has spent at least half the exchange so far waiting for it. (A
// dribbling client is between two reads now and then; a service that does
// not read its upload keeps the gateway from reading, not waiting.)
func (b *clientBody) late() bool {
	switch b.state.Load() {
	case bodyStalled:
		return true
	case bodyOpen:
		return b.waiting() || 2*b.waited.Load() >= int64(time.Since(b.born))
	}
	return false
}
