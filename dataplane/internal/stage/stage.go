// Package stage is the contract between the proxy and the route features.
//
// A route feature (authentication, rate limits, throttling, caching,
// transformations, aggregation, gRPC translation) lives in a package of its
// own and has two steps:
//
//   - compile: from the route's configuration to an immutable Stage, once
//     per route when a table is compiled (nil when the route does not use
//     the feature, so a plain route pays nothing for it);
//   - apply: Stage.Serve on each request of the route, with the request's
//     state in one Request value.
//
// The proxy declares the order of the stages once (proxy/stages.go) and
// runs a route's Chain: each stage answers the request or hands it to the
// next with Request.Next; the last one (aggregation, a gRPC call, or the
// reverse proxy) answers. A stage that wraps the rest of the chain (the
// cache, a throttle slot) does its work around its call of Next.
//
// This package is a leaf: feature packages import it, it imports none of
// them, so facts one stage learns and another reads (the verified
// Identity, the path the service receives) are typed here.
package stage

import (
	"net/http"
)

// Stage is one compiled feature of one route. It is immutable and used by
// every request of the route at once.
type Stage interface {
	// Serve applies the stage: it answers the request (writing to req.W),
	// or calls req.Next exactly once to hand it on.
	Serve(req *Request)
	// Describe renders the compiled stage as plain data (no pointers, maps
	// only with string keys) for golden files: what the configuration
	// compiled to, deterministically.
	Describe() any
}

// Outbound is a stage's say in the request the reverse proxy sends to the
// service (header and query edits): Outbound edits out after the proxy
// removed hop-by-hop headers, so that a client's Connection header cannot
// strip what a stage added. Outbound hooks run innermost stage first, so an
// earlier stage has the last word.
type Outbound interface {
	Outbound(req *Request, out *http.Request)
}

// Responder edits the header of the route's answer just before it is
// written, whoever produced it (the service, the cache, an aggregation, a
// gRPC call, a problem of the gateway's).
type Responder interface {
	Respond(req *Request, h http.Header)
}

// IdentityWriter writes the verified identity into the headers of a request
// to a service (the auth stage's forwarded claims and identity headers).
type IdentityWriter interface {
	WriteIdentity(req *Request, h http.Header)
}

// Chain is a route's compiled stages in the declared order. It is
// immutable.
type Chain struct {
	stages   []Stage
	outbound []Outbound
}

// NewChain returns the chain of the stages given, in that order, leaving
// out nil ones (features the route does not use).
func NewChain(stages ...Stage) *Chain {
	c := &Chain{}
	for _, s := range stages {
		if s == nil {
			continue
		}
		c.stages = append(c.stages, s)
		if o, ok := s.(Outbound); ok {
			c.outbound = append(c.outbound, o)
		}
	}
	return c
}

// Stages returns the chain's stages, in order (nil-safe).
func (c *Chain) Stages() []Stage {
	if c == nil {
		return nil
	}
	return c.stages
}

// First returns the first non-nil stage: of several that can end a chain
// (aggregation, gRPC, the reverse proxy), the one the route uses.
func First(stages ...Stage) Stage {
	for _, s := range stages {
		if s != nil {
			return s
		}
	}
	return nil
}

// Find returns the chain's stage of type T, if it has one: how the next
// compile finds what carries over (a throttle's slots, a gRPC method's
// descriptors) and how the table learns what a stage declares (the claim
// headers an auth stage forwards).
func Find[T Stage](c *Chain) (T, bool) {
	for _, s := range c.Stages() {
		if t, ok := s.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}
