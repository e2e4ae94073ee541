package tlsedge

import (
	"net/http"
	"time"
)

// HTTP/2 limits of the TLS listener. Go's net/http already bounds what the
// HTTP/2 attacks of recent years need: streams a client resets before the
// handler finishes still count against MaxConcurrentStreams and a client
// that keeps resetting is disconnected (rapid reset, CVE-2023-44487, Go
// 1.21.3); header blocks split into CONTINUATION frames are counted
// against the header-list limit as they arrive (CVE-2023-45288, Go
// 1.22.2). The header-list limit is the server's MaxHeaderBytes, the same
// 64 KiB as on HTTP/1.1 (431 past it).
const (
	// MaxConcurrentStreams per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
	MaxConcurrentStreams = 250
	// MaxReadFrameSize is the largest frame a client may send (16 KiB is
	// the protocol's minimum and default).
	MaxReadFrameSize = 16 << 10
	// MaxDecoderHeaderTableSize bounds the HPACK table a client makes the
	// server keep per connection.
	MaxDecoderHeaderTableSize = 4 << 10
	// Flow-control windows: how much a client may send ahead of the
	// handler reading it, per stream and per connection.
	MaxReceiveBufferPerStream     = 1 << 20
	MaxReceiveBufferPerConnection = 4 << 20
	// A connection silent this long is pinged, and closed when the ping
	// is not answered within PingTimeout.
	SendPingTimeout = time.Minute
	PingTimeout     = 15 * time.Second
	// WriteByteTimeout closes a connection whose client reads nothing of
	// what is written to it for this long.
	WriteByteTimeout = time.Minute
)

// Configure makes srv (the traffic server with the handler and its
// header, idle and body limits) a TLS server with the certificates of c:
// HTTP/1.1 and HTTP/2, with the HTTP/2 limits above. The TLS handshake is
// bounded by srv's ReadHeaderTimeout (net/http applies it to the
// handshake). Serve it with srv.ServeTLS(ln, "", "").
func Configure(srv *http.Server, c *Certificates) {
	srv.TLSConfig = c.Config()
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	srv.Protocols = &p
	srv.HTTP2 = http2Config()
}

// ConfigureH2C lets the plain server srv accept HTTP/2 without TLS (h2c
// with prior knowledge, what gRPC clients and curl --http2-prior-knowledge
// send) beside HTTP/1.1, with the same HTTP/2 limits as the TLS listener.
// The HTTP/1.1 Upgrade: h2c dance is not offered (net/http dropped it).
func ConfigureH2C(srv *http.Server) {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Protocols = &p
	srv.HTTP2 = http2Config()
}

func http2Config() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:          MaxConcurrentStreams,
		MaxReadFrameSize:              MaxReadFrameSize,
		MaxDecoderHeaderTableSize:     MaxDecoderHeaderTableSize,
		MaxReceiveBufferPerStream:     MaxReceiveBufferPerStream,
		MaxReceiveBufferPerConnection: MaxReceiveBufferPerConnection,
		SendPingTimeout:               SendPingTimeout,
		PingTimeout:                   PingTimeout,
		WriteByteTimeout:              WriteByteTimeout,
	}
}
