package config

import (
	"testing"
	"time"
)

// TestRouteTunnelLimits: a route's own tunnel limits are bounded; zero
// keeps the data plane's.
func TestRouteTunnelLimits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		idle, life time.Duration
		fields     []string
	}{
		{"none", 0, 0, nil},
		{"both", 30 * time.Second, time.Hour, nil},
		{"at the bounds", MaxTunnelIdleTimeout, MaxTunnelMaxLifetime, nil},
		{"negative idle", -time.Second, 0, []string{"routes[0].tunnel_idle_timeout"}},
		{"idle too long", MaxTunnelIdleTimeout + time.Second, 0, []string{"routes[0].tunnel_idle_timeout"}},
		{"lifetime too long", 0, MaxTunnelMaxLifetime + time.Second, []string{"routes[0].tunnel_max_lifetime"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{
				Services: []Service{{Name: "s", Targets: []Target{{URL: "http://10.0.0.1"}}}},
				Routes: []*Route{{Name: "r", Paths: []string{"/ws"}, Service: "s",
					TunnelIdleTimeout: Duration(tc.idle), TunnelMaxLifetime: Duration(tc.life)}},
			}
			if tc.fields == nil {
				checkFields(t, cfg.Validate(), nil, nil)
				return
			}
			checkFields(t, cfg.Validate(), ErrInvalid, tc.fields)
		})
	}
}
