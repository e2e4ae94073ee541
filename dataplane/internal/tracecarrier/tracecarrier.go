// Package tracecarrier carries trace context in HTTP headers as
// propagation.HeaderCarrier does, without its allocations per request.
//
// The W3C propagators ask for their fields in lower case ("traceparent",
// "tracestate", "baggage"); http.Header canonicalises every such name with
// a fresh string, so extracting on every request and injecting on every
// upstream attempt cost three to four allocations each, sampled or not.
// Header maps the propagators' names to their canonical form with constant
// strings and reads and writes the map directly; other names go through
// http.CanonicalHeaderKey as before.
package tracecarrier

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"
)

// Header adapts an http.Header to propagation.TextMapCarrier (and
// ValuesGetter, for multi-value baggage).
type Header http.Header

var (
	_ propagation.TextMapCarrier = Header{}
	_ propagation.ValuesGetter   = Header{}
)

// canonical returns key's canonical header name, without allocating for the
// propagators' own fields.
func canonical(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	}
	return http.CanonicalHeaderKey(key)
}

// Get returns the first value of key.
func (h Header) Get(key string) string {
	if v := h[canonical(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Values returns every value of key.
func (h Header) Values(key string) []string { return h[canonical(key)] }

// Set replaces key's values with value.
func (h Header) Set(key, value string) { h[canonical(key)] = []string{value} }

// Keys lists the header names.
func (h Header) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}
