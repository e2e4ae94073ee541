package config

import (
	"net/textproto"
	"strings"
)

// reservedHeaders are request headers the gateway owns on the way to a
// service: it writes them itself (identity, forwarding, trace context), they
// carry the client's credentials, or they frame the message. A route may not
// forward a claim under one of these names, and a client header whose
// underscore spelling normalises to one of them is never passed on (CGI and
// WSGI servers read X_Consumer_Name and X-Consumer-Name as one variable).
var reservedHeaders = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Cookie": true, "Host": true,
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Content-Length": true, "Content-Type": true,
	"Content-Encoding": true, "Expect": true,
	"Forwarded": true, "X-Real-Ip": true,
	"Traceparent": true, "Tracestate": true, "Baggage": true,
	"X-Auth-Method": true,
}

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
