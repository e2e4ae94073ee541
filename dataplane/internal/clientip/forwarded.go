package clientip

import (
	"net"
	"net/http"
	"strings"
)

// SetForwarded writes the forwarding headers of a request to a service,
// the one writer of them (the reverse proxy and aggregation alike):
// X-Forwarded-For is the TCP peer's address, after the chain the peer sent
// when it is a trusted proxy; X-Forwarded-Host is the request's host and
// X-Forwarded-Proto its scheme. Whatever else the client sent under these
// names was removed before (by ReverseProxy's Rewrite mode, or by
// aggregation's header copy). A nil Resolver trusts no one.
func (r *Resolver) SetForwarded(out http.Header, in *http.Request) {
	if peer, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 && r.Trusts(in) {
			peer = strings.Join(prior, ", ") + ", " + peer
		}
		out.Set("X-Forwarded-For", peer)
	} else {
		out.Del("X-Forwarded-For")
	}
	out.Set("X-Forwarded-Host", in.Host)
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	out.Set("X-Forwarded-Proto", proto)
}
