package config

import "time"

// Limits of a route's own tunnel limits (tunnel_idle_timeout,
// tunnel_max_lifetime). They tighten the data plane's; these bounds only
// keep a typo from meaning "a year".
const (
	MaxTunnelIdleTimeout = 24 * time.Hour
	MaxTunnelMaxLifetime = 7 * 24 * time.Hour
)

func (r *Route) validateTunnel(l *errorList, p string) {
	if d := r.TunnelIdleTimeout.Std(); d < 0 || d > MaxTunnelIdleTimeout {
		l.add(join(p, "tunnel_idle_timeout"), "must be between 0 (the data plane's) and %s", MaxTunnelIdleTimeout)
	}
	if d := r.TunnelMaxLifetime.Std(); d < 0 || d > MaxTunnelMaxLifetime {
		l.add(join(p, "tunnel_max_lifetime"), "must be between 0 (the data plane's) and %s", MaxTunnelMaxLifetime)
	}
}
