// Package fault is the fault-injection stage (issue 16): for resilience
// drills, a share of a route's requests is delayed, or answered with an
// error status without reaching the service, optionally only for requests
// that carry a header.
//
// The stage runs right before the request would leave for the service
// (after auth, rate limits, the cache and the request transforms), so a
// drill exercises the client against everything else the gateway does. A
// delay waits on a timer and the client's context: a client that gives up
// frees it at once. An injected abort is a problem+json answer of type
// "fault-injected", and every faulted answer carries
// X-Portico-Fault: delay, abort or both, so that nobody mistakes a drill
// for an outage. Delay and abort are decided independently.
package fault

import (
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"strconv"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// HeaderFault marks an answer the stage delayed or produced.
const HeaderFault = "X-Portico-Fault"

// Route is a route's compiled fault injection. It is immutable.
type Route struct {
	delayPercent, abortPercent float64
	delay                      time.Duration
	status                     int
	header                     string // canonical; "" for every request
}

// Compile returns the stage for r's fault, nil when it has none.
func Compile(r *config.Route) stage.Stage {
	f := r.Fault
	if f == nil {
		return nil
	}
	s := &Route{}
	if f.Delay != nil {
		s.delayPercent, s.delay = f.Delay.Percent, f.Delay.Duration.Std()
	}
	if f.Abort != nil {
		s.abortPercent, s.status = f.Abort.Percent, f.Abort.Status
	}
	if f.Header != "" {
		s.header = textproto.CanonicalMIMEHeaderKey(f.Header)
	}
	return s
}

// Serve applies the faults the dice choose, then hands on.
func (s *Route) Serve(req *stage.Request) {
	if s.header != "" && len(req.R.Header[s.header]) == 0 {
		req.Next()
		return
	}
	delay := s.delayPercent > 0 && rand.Float64()*100 < s.delayPercent
	abort := s.abortPercent > 0 && rand.Float64()*100 < s.abortPercent
	switch {
	case delay && abort:
		req.W.Header().Set(HeaderFault, "delay, abort")
	case delay:
		req.W.Header().Set(HeaderFault, "delay")
	case abort:
		req.W.Header().Set(HeaderFault, "abort")
	}
	if delay {
		t := time.NewTimer(s.delay)
		select {
		case <-t.C:
		case <-req.R.Context().Done():
			t.Stop()
			return // the client left; nothing to answer
		}
	}
	if abort {
		stage.WriteProblem(req.W, req.R, s.status, "fault-injected",
			"fault injection answered "+strconv.Itoa(s.status)+" ("+http.StatusText(s.status)+") without calling the service")
		return
	}
	req.Next()
}

// Describe shows the stage for the stages golden file.
func (s *Route) Describe() any {
	type delay struct {
		Percent  float64 `json:"percent"`
		Duration string  `json:"duration"`
	}
	type abort struct {
		Percent float64 `json:"percent"`
		Status  int     `json:"status"`
	}
	out := struct {
		Delay  *delay `json:"delay,omitempty"`
		Abort  *abort `json:"abort,omitempty"`
		Header string `json:"header,omitempty"`
	}{Header: s.header}
	if s.delayPercent > 0 {
		out.Delay = &delay{s.delayPercent, s.delay.String()}
	}
	if s.abortPercent > 0 {
		out.Abort = &abort{s.abortPercent, s.status}
	}
	return out
}
