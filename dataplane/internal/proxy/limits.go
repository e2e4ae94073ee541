package proxy

import (
	"log/slog"
	"net/http"
	"time"
)

// Limits bound what a client can make the traffic listener hold: time to
// send headers and body, header size, idle keep-alive connections and
// upgraded tunnels. Zero fields take the defaults of DefaultLimits; the data
// plane's flags (cmd/dataplane) set them.
type Limits struct {
	// ReadHeaderTimeout bounds sending the request line and headers.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a kept-alive connection with no request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line plus header block, exactly:
	// net/http allows 4 KiB of slack over its own MaxHeaderBytes, which
	// Server takes off, and the handler measures what a pipelined request
	// may have got past it.
	MaxHeaderBytes int
	// BodyReadTimeout is the longest the gateway waits for the next bytes
	// of a request body it is reading (nginx's client_body_timeout).
	BodyReadTimeout time.Duration
	// BodyMinRate, in bytes per second, is what a client must keep up over
	// the time the gateway spends waiting for its body, once
	// BodyMinRateGrace of waiting is spent; negative turns it off.
	BodyMinRate      int64
	BodyMinRateGrace time.Duration
	// TunnelIdleTimeout closes an upgraded connection (WebSocket) with no
	// byte in either direction for that long; TunnelMaxLifetime closes it
	// regardless.
	TunnelIdleTimeout time.Duration
	TunnelMaxLifetime time.Duration
	// AllowUnderscoreHeaders passes client headers whose names contain
	// "_" (dropped by default, as nginx does), except those that read as a
	// header the gateway owns once "_" becomes "-".
	AllowUnderscoreHeaders bool
}

// Defaults of Limits (and of the data plane's flags).
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultBodyReadTimeout   = 15 * time.Second
	// DefaultBodyMinRate is mod_reqtimeout's MinRate: a 2G mobile link
	// manages it, a slowloris body does not.
	DefaultBodyMinRate       = 500
	DefaultBodyMinRateGrace  = 15 * time.Second
	DefaultTunnelIdleTimeout = 5 * time.Minute
	DefaultTunnelMaxLifetime = 24 * time.Hour
)

// withDefaults fills zero fields.
func (l Limits) withDefaults() Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&l.IdleTimeout, DefaultIdleTimeout)
	def(&l.BodyReadTimeout, DefaultBodyReadTimeout)
	def(&l.BodyMinRateGrace, DefaultBodyMinRateGrace)
	def(&l.TunnelIdleTimeout, DefaultTunnelIdleTimeout)
	def(&l.TunnelMaxLifetime, DefaultTunnelMaxLifetime)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.BodyMinRate == 0 {
		l.BodyMinRate = DefaultBodyMinRate
	}
	return l
}

// headerSlack is what net/http reads past Server.MaxHeaderBytes before it
// answers 431 (its bufio slop, server.go initialReadLimitSize).
const headerSlack = 4096

// Server returns the traffic server for h with h's limits. Bodies are
// bounded per route and may stream, so there is no whole-request read or
// write timeout: body reads have their own deadlines (body.go).
func (h *Handler) Server(errLog *slog.Logger) *http.Server {
	if errLog == nil {
		errLog = h.log
	}
	l := h.limits
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    max(l.MaxHeaderBytes-headerSlack, 1),
		ErrorLog:          slog.NewLogLogger(errLog.Handler(), slog.LevelDebug),
	}
}
