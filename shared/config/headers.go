package config

import (
	"net/textproto"
	"strings"
)

// HopByHop lists the headers that belong to one connection (RFC 9110
// §7.6.1, plus the Keep-Alive and Proxy-Connection of HTTP/1.0 practice):
// never configured on a route, never forwarded, never stored. The one list
// for validation, the proxy's copies of headers and the cache.
var HopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// IsHopByHop reports whether the canonical header name is in HopByHop.
func IsHopByHop(name string) bool {
	for _, h := range HopByHop {
		if h == name {
			return true
		}
	}
	return false
}

// withHopByHop returns names plus HopByHop, as a set.
func withHopByHop(names ...string) map[string]bool {
	set := make(map[string]bool, len(names)+len(HopByHop))
	for _, n := range append(names, HopByHop...) {
		set[n] = true
	}
	return set
}

// reservedHeaders are request headers the gateway owns on the way to a
// service: it writes them itself (identity, forwarding, trace context), they
// carry the client's credentials, or they frame the message. A route may not
// forward a claim under one of these names, and a client header whose
// underscore spelling normalises to one of them is never passed on (CGI and
// WSGI servers read X_Consumer_Name and X-Consumer-Name as one variable).
var reservedHeaders = withHopByHop(
	"Authorization", "Proxy-Authorization", "Cookie", "Host",
	"Content-Length", "Content-Type", "Content-Encoding", "Expect",
	"Forwarded", "X-Real-Ip",
	"Traceparent", "Tracestate", "Baggage",
	"X-Auth-Method",
)

// reservedPrefixes are families of names the gateway owns: X-Consumer-* (the
// identity) and X-Forwarded-* (forwarding).
var reservedPrefixes = []string{"X-Consumer-", "X-Forwarded-"}

// ReservedHeader reports whether name (any case; underscores read as dashes,
// the way CGI does) is a header the gateway owns toward services. Validation
// refuses such names in forward_claims, and the data plane drops client
// headers that would be read as one.
func ReservedHeader(name string) bool {
	name = textproto.CanonicalMIMEHeaderKey(strings.ReplaceAll(name, "_", "-"))
	if reservedHeaders[name] {
		return true
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
