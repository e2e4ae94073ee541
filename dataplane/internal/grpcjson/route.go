package grpcjson

import (
	"context"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/stage"
)

// Route is a route's gRPC stage, the terminal stage of its chain: the
// request becomes a call of the route's method (which asks the service's
// breaker itself), bounded by the route timeout, with the caller's identity
// as metadata like the headers an HTTP service gets.
type Route struct {
	method  *Method
	timeout time.Duration
}

// NewRoute returns the stage calling m under the route timeout.
func NewRoute(m *Method, timeout time.Duration) *Route {
	return &Route{method: m, timeout: timeout}
}

// Method is the route's method (it carries over to the next table while
// the route's method and service are unchanged, with what reflection
// learned).
func (g *Route) Method() *Method { return g.method }

// Serve translates the request into the call and the answer back.
func (g *Route) Serve(req *stage.Request) {
	m := &req.Match
	params := make(map[string]string, m.Params.Len())
	for i := range m.Params.Len() {
		k, v := m.Params.At(i)
		params[k] = v
	}
	ctx, cancel := context.WithTimeout(req.R.Context(), g.timeout)
	defer cancel()
	r := req.R.WithContext(ctx)
	r.Header = r.Header.Clone()
	req.WriteIdentity(r.Header)
	req.Outcome.Upstream, req.Outcome.Attempts = g.method.ServeCall(req.W, r, params)
}

// Describe renders the method, for golden files.
func (g *Route) Describe() any {
	return struct {
		Method  string `json:"method"`
		Timeout string `json:"timeout"`
	}{g.method.FullMethod(), g.timeout.String()}
}
