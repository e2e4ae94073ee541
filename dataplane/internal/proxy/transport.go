package proxy

import (
	"context"
	"net"
	"net/http"
	"time"
)

type connectTimeoutKey struct{}

func withConnectTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, connectTimeoutKey{}, d)
}

// NewTransport returns the one transport every upstream shares. Keep-alive
// pools are per host inside it; the connect timeout is per service and
// travels in the request context, so one transport serves them all.
func NewTransport() *http.Transport {
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil, // never send upstream traffic through an environment proxy
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && d > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConns:           4096,
		MaxIdleConnsPerHost:    512,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  1 * time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		// Upstreams are spoken to in HTTP/1.1: h2 to backends buys little on
		// a LAN and multiplexes every request of a host onto one connection.
		ForceAttemptHTTP2: false,
		ReadBufferSize:    32 << 10,
		WriteBufferSize:   32 << 10,
	}
}
