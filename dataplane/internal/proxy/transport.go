package proxy

import (
	"net"
	"net/http"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/upstream"
)

// NewTransport returns the one transport every upstream shares. Keep-alive
// pools are per host inside it; the connect timeout is per service and
// travels in the request context (upstream.DialContext), so one transport
// serves them all. Bodiless GET, HEAD and OPTIONS requests to http://
// instances take the lean HTTP/1.1 path (upstream.H1); everything else
// goes through net/http's Transport.
func NewTransport() http.RoundTripper {
	t := newHTTPTransport()
	return upstream.NewH1(t, upstream.H1Options{
		Dial:           t.DialContext,
		MaxIdlePerHost: t.MaxIdleConnsPerHost,
		IdleTimeout:    t.IdleConnTimeout,
		ReadBufferSize: t.ReadBufferSize, WriteBufferSize: t.WriteBufferSize,
	})
}

func newHTTPTransport() *http.Transport {
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  nil, // never send upstream traffic through an environment proxy
		DialContext:            upstream.DialContext(dialer.DialContext),
		MaxIdleConns:           4096,
		MaxIdleConnsPerHost:    512,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  1 * time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		// Upstreams are spoken to in HTTP/1.1: h2 to backends buys little on
		// a LAN and multiplexes every request of a host onto one connection.
		ForceAttemptHTTP2: false,
		// A proxy passes the client's Accept-Encoding and the upstream's
		// encoding through; it does not ask for gzip on the client's behalf
		// and decompress in between.
		DisableCompression: true,
		ReadBufferSize:     32 << 10,
		WriteBufferSize:    32 << 10,
	}
}
