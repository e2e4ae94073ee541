package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/balancer"
)

// Call is one request to a service on the one path every caller shares:
//
//	Admit (circuit breaker) → pick an instance → attempt → retry on another
//	instance under the service's retries and budget → record each attempt
//	for outlier detection and metrics → End (the breaker's verdict)
//
// The reverse proxy, aggregation and JSON→gRPC differ only in the attempt
// they supply (an Attempt: one try on one instance, classified as a
// Result). Everything about the service — which instance, whether to try
// again, what counts against an instance or the breaker, what is the
// client's fault — is decided here, the same way for all of them.
//
// A Call is used by one request at a time. Callers whose outcome is known
// when the last attempt returns use Run; the reverse proxy, whose verdict
// waits for the response body to be streamed, calls Admit, Do and End.
type Call struct {
	Upstream *Upstream
	// Request is what the balancer hashes on (header, cookie, client IP);
	// nil hashes on nothing (the consistent-hash policy picks as for a
	// request without the key).
	Request *http.Request
	// Resend tells whether the request may reach an instance twice: it is
	// idempotent and can be sent again whole. Without it, only an attempt
	// that reached no instance (Result.Unsent) is retried.
	Resend bool
	// Client is the client's request body as the proxy reads it, or nil.
	// An attempt that fails while it reports a fault of the client's is
	// not charged to the instance, the breaker or the retry budget.
	Client ClientBody

	// Reported by Do:
	Attempts int
	Addr     string // instance of the last attempt
	// Failed: the service failed the call (its last attempt failed, or no
	// instance could be picked); the breaker's verdict unless the caller
	// knows more.
	Failed bool
	// ClientFault: the call ended because of the client (it went away, or
	// its body failed): nothing was charged, and the breaker must not
	// count it.
	ClientFault bool

	// verdict is the breaker's two-step callback while a verdict is owed.
	verdict func(error)
	// late: an attempt timed out while the client was late with its body.
	late atomic.Bool
}

// Attempt is one try of a call on instance m (the n-th of the call). ctx
// ends at the call's end or at the service's attempt timeout. It reports
// what happened as a Result; anything else it produces (a response, a
// message) it keeps in its own variables.
//
// An Attempt that is called again is a retry: it must first dispose of
// what the previous try produced (an HTTP response is drained and closed).
type Attempt func(ctx context.Context, m *Member, n int) Result

// Result classifies one attempt for the call path.
type Result struct {
	Outcome Outcome
	// Status is the HTTP status of the answer, or the one a gRPC status
	// maps to; 0 without an answer. A failure whose status is in the
	// service's retries.on_statuses is retried when the call may Resend.
	Status int
	// Unsent: nothing reached the instance (the connection was never
	// established), so any request may go to another instance.
	Unsent bool
	// Keep: the answer still uses the instance (an HTTP response body yet
	// to be read); the attempt releases it (Member.EP.Release) when done
	// with it, which is what least_request counts. Ignored with an Err.
	Keep bool
	Err  error
}

// Outcome is what an attempt says about the instance.
type Outcome uint8

const (
	// OK: the instance answered. An answer about the request (a 4xx, a
	// gRPC NOT_FOUND) says nothing against the instance.
	OK Outcome = iota
	// Failed: the instance answered with a failure of its own (a 5xx; a
	// gRPC UNAVAILABLE, INTERNAL, UNKNOWN, DATA_LOSS or DEADLINE_EXCEEDED).
	Failed
	// Broken: no answer (refused, reset, closed, timed out).
	Broken
	// ClientFault: the attempt failed because of the client (its request
	// body failed to arrive). Never retried or charged.
	ClientFault
	// Local: the gateway could not make the attempt (a connection pool
	// closed for shutdown). Never retried or charged.
	Local
)

// ErrCircuitOpen is returned by Admit while the breaker refuses requests.
var ErrCircuitOpen = errors.New("circuit breaker open")

// errClientGone marks outcomes that say nothing about the upstream.
var errClientGone = errors.New("client went away")

var errUpstreamFailed = errors.New("upstream failed")

// Admit asks the service's circuit breaker for permission: ErrCircuitOpen
// while it is open. After a nil error, End must be called exactly once.
func (c *Call) Admit() error {
	b := c.Upstream.breaker
	if b == nil {
		return nil
	}
	d, err := b.Allow()
	if err != nil {
		return ErrCircuitOpen
	}
	c.verdict = d
	return nil
}

// End gives the breaker its verdict on an admitted call: failed when the
// service failed it (connection error, timeout, 5xx), clientFault when the
// client is to blame (it left first, or its body stalled, broke off or was
// refused): such a call is not counted at all, neither as a failure nor as
// a success. Only the first End of an admitted call counts.
func (c *Call) End(failed, clientFault bool) {
	d := c.verdict
	if d == nil {
		return
	}
	c.verdict = nil
	switch {
	case clientFault:
		d(errClientGone)
	case failed:
		d(errUpstreamFailed)
	default:
		d(nil)
	}
}

// Run is Admit, Do and End with Do's verdict, for callers whose outcome is
// known when the last attempt returns (aggregation, gRPC).
func (c *Call) Run(ctx context.Context, attempt Attempt) error {
	if err := c.Admit(); err != nil {
		return err
	}
	err := c.Do(ctx, attempt)
	c.End(c.Failed, c.ClientFault)
	return err
}

// Do sends the call to an instance, and to others while a retry is safe,
// allowed by the service's retries and paid for by its budget. It returns
// the last attempt's error: ErrNoEndpoints when no instance could be
// picked, an error wrapping ErrClientBody (ErrClientLate) when the client's
// body failed, ErrAttemptTimeout when the service's attempt timeout fired.
//
// An attempt that fails after ctx ended (the client left, the caller's
// deadline passed) teaches nothing about the instance: it is not recorded
// or retried, and the call is the client's fault only if it left
// (context.Cause is context.Canceled).
func (c *Call) Do(ctx context.Context, attempt Attempt) error {
	u := c.Upstream
	u.budget.request()
	v := u.view.Load()
	var tried balancer.Tried
	m := v.pick(c.Request, &tried, u.deps.Now().UnixNano())
	if m == nil {
		c.Failed = true
		return ErrNoEndpoints
	}
	for n := 1; ; n++ {
		tried.Add(m.EP)
		c.Attempts, c.Addr = n, m.Host
		res := c.try(ctx, m, n, attempt)
		if res.Err != nil && ctx.Err() != nil {
			// Nothing to learn, and nobody to answer or no time left.
			gone := errors.Is(context.Cause(ctx), context.Canceled)
			c.Failed, c.ClientFault = !gone, gone
			return res.Err
		}
		if res.Err != nil && (res.Outcome == ClientFault || c.late.Load() || c.Client != nil && c.Client.ClientFault()) {
			// Charging the instance (or, through Failed, the breaker) would
			// let any client eject instances and open the breaker with
			// malformed uploads; and no other instance would do better.
			c.Failed, c.ClientFault = false, true
			if c.late.Load() {
				return fmt.Errorf("%w: %w", ErrClientLate, res.Err)
			}
			return fmt.Errorf("%w: %w", ErrClientBody, res.Err)
		}
		if res.Outcome == Local {
			c.Failed = false
			return res.Err
		}
		failed := res.Outcome != OK
		u.record(v, m, failed)
		u.metrics.attempt(res.Outcome)

		retry := n < u.retry.attempts &&
			(res.Unsent || c.Resend && (res.Outcome == Broken || failed && u.retry.onStatus[res.Status]))
		var next *Member
		if retry {
			next = v.pick(c.Request, &tried, u.deps.Now().UnixNano())
		}
		if next == nil || !u.budget.spend() {
			c.Failed = failed
			return res.Err
		}
		u.metrics.retry()
		m = next
	}
}

// try makes attempt n on m under the service's attempt timeout, with m in
// flight while it runs (and after, when the result keeps it).
func (c *Call) try(ctx context.Context, m *Member, n int, attempt Attempt) Result {
	u := c.Upstream
	start := time.Now()
	var timer *time.Timer
	if u.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		timer = time.AfterFunc(u.AttemptTimeout, func() {
			cancel()
			if cl := c.Client; cl != nil && cl.Late() {
				// The attempt waited on the client: the failure is the
				// client's, and a read waiting for it must not hold the
				// attempt past its timeout.
				c.late.Store(true)
				cl.Abandon()
			}
		})
	}
	m.EP.Acquire()
	res := attempt(ctx, m, n)
	if timer != nil && !timer.Stop() && res.Err != nil {
		res.Err = fmt.Errorf("%w after %s: %w", ErrAttemptTimeout, u.AttemptTimeout, res.Err)
		if res.Outcome == OK || res.Outcome == Failed {
			res.Outcome = Broken
		}
	}
	u.metrics.observeLatency(time.Since(start))
	if res.Err != nil || !res.Keep {
		m.EP.Release()
	}
	return res
}

// Idempotent tells whether a request with this method may be sent twice
// (RFC 9110 §9.2.2).
func Idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}
