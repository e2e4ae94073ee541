// Package throttle is the in-flight cap of a route (max_in_flight): at most
// that many requests of the route are under way on one data plane at
// once; the rest wait up to queue_timeout for a slot, then get 503.
//
// A slot is a buffered channel's place. The slots carry over to the next
// table while the cap and the queue timeout are unchanged, so a new
// revision does not open a second set of slots while old requests still
// hold theirs. A slot is for a request that is under way: one whose client
// has sent nothing of its body yet waits for its first byte without one
// (under the body deadlines), so idle sockets cannot hold the route.
package throttle

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/stage"
)

// Route caps the concurrent requests of one route.
type Route struct {
	limit int
	slots chan struct{}
	queue time.Duration
}

// Compile returns the cap of limit requests with the given queue timeout
// (nil for no cap), or prev, the previous table's stage of the route, when
// it has the same settings.
func Compile(limit int, queue time.Duration, prev *Route) stage.Stage {
	if limit <= 0 {
		return nil
	}
	if prev != nil && prev.limit == limit && prev.queue == queue {
		return prev
	}
	return &Route{limit: limit, slots: make(chan struct{}, limit), queue: queue}
}

// Serve holds a slot for the rest of the chain, or refuses with 503.
func (t *Route) Serve(req *stage.Request) {
	// A gRPC stream may rightly wait for the service to speak first, so
	// its first message is not awaited: its slot is held from the start.
	if req.Body != nil && !stage.IsGRPC(req.R) && !req.Body.Await(req) {
		return
	}
	if !t.acquire(req.R.Context()) {
		req.Outcome.Throttled = true
		req.W.Header().Set("Retry-After", "1")
		stage.WriteProblem(req.W, req.R, http.StatusServiceUnavailable, "too-many-in-flight", "the route is at its limit of "+strconv.Itoa(t.limit)+" concurrent requests")
		return
	}
	defer t.release()
	req.Next()
}

// acquire takes a slot, waiting up to the queue timeout; release must be
// called when it returns true.
func (t *Route) acquire(ctx context.Context) bool {
	select {
	case t.slots <- struct{}{}:
		return true
	default:
	}
	if t.queue <= 0 {
		return false
	}
	timer := time.NewTimer(t.queue)
	defer timer.Stop()
	select {
	case t.slots <- struct{}{}:
		return true
	case <-timer.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (t *Route) release() { <-t.slots }

// Describe renders the cap, for golden files.
func (t *Route) Describe() any {
	return struct {
		MaxInFlight  int    `json:"max_in_flight"`
		QueueTimeout string `json:"queue_timeout"`
	}{t.limit, t.queue.String()}
}
