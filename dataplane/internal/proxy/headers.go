package proxy

import (
	"maps"
	"net/http"
	"strings"

	"github.com/portico-gw/portico/dataplane/internal/auth"
	"github.com/portico-gw/portico/dataplane/internal/stage"

	"github.com/portico-gw/portico/shared/config"
)

// Client headers a service must be able to trust are handled in two places,
// one for each direction of trust:
//
//   - sanitize, on every request before anything else reads the headers,
//     removes what a client must never be able to say: every header name
//     that ANY route forwards a claim in (a public route to the same service
//     must not carry a forged X-User-Sub), the identity headers, and the
//     forwarding headers the gateway does not write (X-Real-Ip,
//     X-Forwarded-Port, -Prefix, -Ssl). Names with "_" are dropped too, as
//     nginx does by default: CGI and WSGI servers read X_Consumer_Name as
//     X-Consumer-Name. Limits.AllowUnderscoreHeaders passes them, except
//     those that read as a header the gateway owns (config.ReservedHeader).
//   - clientip.Resolver.SetForwarded, the one writer of X-Forwarded-For/-Host/-Proto, for the
//     reverse proxy and aggregation alike.

// strippedAlways are removed from every request: the gateway sets some of
// them itself, and does not vouch for the others.
var strippedAlways = []string{
	stage.HeaderConsumer, stage.HeaderConsumerGroups, stage.HeaderAuthMethod,
	"X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Ssl",
}

// headerSet is a set of canonical header names with a first-byte filter:
// most request headers are ruled out without hashing their name.
type headerSet struct {
	names map[string]bool
	first [256]bool
}

func (s *headerSet) has(name string) bool {
	return name != "" && s.first[name[0]] && s.names[name]
}

// compileStripped returns the set of header names sanitize removes for a
// table: strippedAlways and every route's forwarded-claim headers. A name
// some route reads credentials from is never in it (validation refuses such
// a claim header; this keeps a data plane safe even so).
func compileStripped(routes []*Route) *headerSet { return countHeaders(routes).stripped() }

// headerCounts are what the stripped set is made of: per header name, how
// many routes forward a claim in it (fwd) and read an API key from it
// (keys). A table keeps them so that a change recounts only the routes it
// touched (compileChange) instead of every route.
type headerCounts struct{ fwd, keys map[string]int }

func countHeaders(routes []*Route) *headerCounts {
	c := &headerCounts{fwd: map[string]int{}, keys: map[string]int{}}
	for _, r := range routes {
		c.add(r, 1)
	}
	return c
}

// routeHeaders returns the headers route r (nil: none) forwards claims in
// and reads an API key from.
func routeHeaders(r *Route) (fwd []string, key string) {
	if r == nil {
		return nil, ""
	}
	a, ok := stage.Find[*auth.Route](r.chain)
	if !ok {
		return nil, ""
	}
	return a.ForwardHeaders(), a.APIKeyHeader()
}

// add counts the headers of route r n times (-1: takes them away).
func (c *headerCounts) add(r *Route, n int) {
	bump := func(m map[string]int, h string) {
		if m[h] += n; m[h] == 0 {
			delete(m, h)
		}
	}
	fwd, key := routeHeaders(r)
	for _, h := range fwd {
		bump(c.fwd, h)
	}
	if key != "" {
		bump(c.keys, key)
	}
}

func (c *headerCounts) clone() *headerCounts {
	return &headerCounts{fwd: maps.Clone(c.fwd), keys: maps.Clone(c.keys)}
}

func (c *headerCounts) stripped() *headerSet {
	set := &headerSet{names: make(map[string]bool, len(strippedAlways)+len(c.fwd))}
	for _, n := range strippedAlways {
		set.names[n] = true
	}
	for h := range c.fwd {
		set.names[h] = true
	}
	delete(set.names, "Authorization")
	for h := range c.keys {
		delete(set.names, h)
	}
	for n := range set.names {
		set.first[n[0]] = true
	}
	return set
}

// sanitize removes, in place, the client headers no service may receive
// (see above), and returns the size of the request line and header block
// as they were: a lower bound of their bytes on the wire (whitespace around
// values is not kept). A request over Limits.MaxHeaderBytes by this measure
// got past net/http's own limit, which counts only the bytes read from the
// socket for this request: a pipelined request already buffered with the
// previous one is not counted.
//
// One pass over the request's headers, not over the set: a table with
// thousands of claim headers costs a request at most one map lookup per
// header it carries.
func sanitize(r *http.Request, stripped *headerSet, allowUnderscore bool) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2 + 2
	if r.Host != "" && r.RequestURI != "" && r.RequestURI[0] == '/' {
		n += len("Host: \r\n") + len(r.Host)
	}
	for name, vs := range r.Header {
		for _, v := range vs {
			n += len(name) + 2 + len(v) + 2
		}
		if stripped.has(name) {
			delete(r.Header, name)
			continue
		}
		if strings.IndexByte(name, '_') >= 0 && (!allowUnderscore || config.ReservedHeader(name) ||
			stripped.has(http.CanonicalHeaderKey(strings.ReplaceAll(name, "_", "-")))) {
			delete(r.Header, name)
		}
	}
	return n
}
