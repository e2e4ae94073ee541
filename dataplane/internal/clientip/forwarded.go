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
// X-Forwarded-Proto its scheme (see Scheme). Whatever else the client sent under these
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
	out.Set("X-Forwarded-Proto", r.Scheme(in))
}

// Scheme is the scheme the client used: "https" when the request came over
// this process's TLS listener, or when a trusted proxy (one that terminates
// TLS itself and forwards plain HTTP) says so in X-Forwarded-Proto; "http"
// otherwise. Of a list ("https, http", proxies appending their hop) the
// first value is the client's. Anyone else's X-Forwarded-Proto is ignored:
// a client could otherwise skip an HTTPS redirect, or make a service
// believe a plain request was private. A nil Resolver trusts no one.
func (r *Resolver) Scheme(in *http.Request) string {
	if in.TLS != nil {
		return "https"
	}
	if v := in.Header["X-Forwarded-Proto"]; len(v) > 0 && r.Trusts(in) {
		first, _, _ := strings.Cut(v[0], ",")
		if strings.EqualFold(strings.TrimSpace(first), "https") {
			return "https"
		}
	}
	return "http"
}
