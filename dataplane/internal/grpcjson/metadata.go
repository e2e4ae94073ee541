package grpcjson

import (
	"encoding/base64"
	"net/http"
	"strings"

	"google.golang.org/grpc/metadata"
)

// outgoingMetadata picks the request headers a gRPC server gets. It is an
// allow-list on purpose: credentials (Authorization, Cookie, API keys) were
// for the gateway, and most other HTTP headers mean nothing to gRPC. The
// identity headers (the proxy's identityHeaders) are trustworthy because
// the proxy replaces whatever the client sent under those names; other
// X-Consumer-* headers are the client's and are not passed on.
func outgoingMetadata(h http.Header) metadata.MD {
	md := metadata.MD{}
	for k, vs := range h {
		switch lk := strings.ToLower(k); lk {
		case "x-request-id", "x-auth-method", "x-consumer-name", "x-consumer-groups":
			md[lk] = append(md[lk], vs...)
		}
	}
	return md
}

// mdCarrier lets the propagator write trace context into metadata.
type mdCarrier metadata.MD

func (c mdCarrier) Get(k string) string {
	if v := metadata.MD(c).Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(k, v string) { metadata.MD(c).Set(k, v) }

func (c mdCarrier) Keys() []string {
	ks := make([]string, 0, len(c))
	for k := range c {
		ks = append(ks, k)
	}
	return ks
}

// writeMetadata copies response metadata into HTTP headers the way
// grpc-gateway does: Grpc-Metadata-<key> for headers, Grpc-Trailer-<key>
// for trailers (known before the body here, since the call is unary).
// Binary (-bin) values are raw bytes after grpc-go decoded them; they are
// sent base64 again, since a header cannot carry them.
func writeMetadata(h http.Header, prefix string, md metadata.MD) {
	for k, vs := range md {
		if k == "content-type" || strings.HasPrefix(k, "grpc-") || strings.HasPrefix(k, ":") {
			continue
		}
		name := prefix + k
		bin := strings.HasSuffix(k, "-bin")
		for _, v := range vs {
			if bin {
				v = base64.StdEncoding.EncodeToString([]byte(v))
			}
			h.Add(name, v)
		}
	}
}
