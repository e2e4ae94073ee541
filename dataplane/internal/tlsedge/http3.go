package tlsedge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// HTTP/3 (--http3): the TLS listener's port number, over UDP, with QUIC
// (github.com/quic-go/quic-go). It serves the same handler as the TLS
// listener, with the same certificates chosen by SNI (Certificates'
// GetCertificate) and the same header, idle and body limits; QUIC's own
// limits are below. Clients learn of it from the Alt-Svc header that
// every answer over TLS (HTTP/1.1 and HTTP/2) carries; a client that cannot
// reach UDP keeps using TCP.
//
// 0-RTT is off: early data can be replayed by an attacker, and a gateway
// cannot know which of its routes' requests are safe to replay.
const (
	// MaxHTTP3Streams is the concurrent request streams a client may open
	// on one connection, as MaxConcurrentStreams for HTTP/2.
	MaxHTTP3Streams = MaxConcurrentStreams
	// AltSvcMaxAge is how long (seconds) a client may remember that
	// HTTP/3 is offered: a day, so that turning --http3 off is noticed
	// soon (a client that finds the port closed falls back to TCP anyway).
	AltSvcMaxAge = 86400
	// HTTP3 flow-control windows: the HTTP/2 ones.
	MaxHTTP3StreamWindow     = MaxReceiveBufferPerStream
	MaxHTTP3ConnectionWindow = MaxReceiveBufferPerConnection
)

// HTTP3 is the HTTP/3 server of the TLS listener srv (after Configure):
// srv's handler and limits, c's certificates. Serve it on a UDP socket
// with Serve; Alt-Svc is added to srv's answers by AdvertiseHTTP3.
func HTTP3(srv *http.Server, c *Certificates, log *slog.Logger) *http3.Server {
	if log == nil {
		log = slog.Default()
	}
	return &http3.Server{
		Handler:        srv.Handler,
		TLSConfig:      http3.ConfigureTLSConfig(c.Config()),
		MaxHeaderBytes: srv.MaxHeaderBytes,
		IdleTimeout:    srv.IdleTimeout,
		QUICConfig: &quic.Config{
			// The handshake is bounded like a TLS one on TCP.
			HandshakeIdleTimeout:           srv.ReadHeaderTimeout,
			MaxIdleTimeout:                 srv.IdleTimeout,
			MaxIncomingStreams:             MaxHTTP3Streams,
			MaxStreamReceiveWindow:         MaxHTTP3StreamWindow,
			MaxConnectionReceiveWindow:     MaxHTTP3ConnectionWindow,
			InitialStreamReceiveWindow:     MaxHTTP3StreamWindow / 2,
			InitialConnectionReceiveWindow: MaxHTTP3ConnectionWindow / 2,
			Allow0RTT:                      false,
		},
		Logger: log,
	}
}

// ListenHTTP3 opens the UDP socket of HTTP/3 on the TLS listener's address
// (same host, same port number).
func ListenHTTP3(tlsAddr net.Addr) (net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", tlsAddr.String())
	if err != nil {
		return nil, fmt.Errorf("http3: listen udp %s: %w", tlsAddr, err)
	}
	return pc, nil
}

// ServeHTTP3 serves h3 on pc until Shutdown or Close; those end it
// without an error.
func ServeHTTP3(h3 *http3.Server, pc net.PacketConn) error {
	if err := h3.Serve(pc); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) {
		return err
	}
	return nil
}

// ShutdownHTTP3 stops h3 gracefully (open requests finish within ctx).
func ShutdownHTTP3(ctx context.Context, h3 *http3.Server) error {
	if err := h3.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// AdvertiseHTTP3 makes every answer of the TLS listener srv carry
// Alt-Svc: h3=":port"; ma=AltSvcMaxAge, before its handler runs (so it is
// on the gateway's own answers too: refusals, redirects, cache hits).
func AdvertiseHTTP3(srv *http.Server, port int) {
	next := srv.Handler
	value := []string{`h3=":` + strconv.Itoa(port) + `"; ma=` + strconv.Itoa(AltSvcMaxAge)}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The header map's own key, set without canonicalising: one map
		// write per request.
		w.Header()["Alt-Svc"] = value
		next.ServeHTTP(w, r)
	})
}
