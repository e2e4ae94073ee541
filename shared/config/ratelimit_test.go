package config

import (
	"testing"
	"time"
)

// TestRateLimitAlgorithm: the algorithm is window or gcra, implied by a
// burst when omitted, and a burst with the window is refused with its path.
func TestRateLimitAlgorithm(t *testing.T) {
	minute := Duration(time.Minute)
	tests := []struct {
		name  string
		rl    RateLimit
		want  string // effective algorithm
		field string // reported field; "" when valid
	}{
		{"default is the window", RateLimit{Limit: 100, Window: minute}, AlgorithmWindow, ""},
		{"a burst implies gcra", RateLimit{Limit: 100, Window: minute, Burst: 5}, AlgorithmGCRA, ""},
		{"explicit gcra without burst", RateLimit{Limit: 100, Window: minute, Algorithm: AlgorithmGCRA}, AlgorithmGCRA, ""},
		{"explicit window", RateLimit{Limit: 100, Window: minute, Algorithm: AlgorithmWindow}, AlgorithmWindow, ""},
		{"burst with the window", RateLimit{Limit: 100, Window: minute, Burst: 5, Algorithm: AlgorithmWindow}, AlgorithmWindow, "routes[0].rate_limit.burst"},
		{"unknown algorithm", RateLimit{Limit: 100, Window: minute, Algorithm: "leaky"}, "leaky", "routes[0].rate_limit.algorithm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rl.EffectiveAlgorithm(); got != tt.want {
				t.Fatalf("EffectiveAlgorithm() = %q, want %q", got, tt.want)
			}
			c := validConfig()
			c.Routes[0].RateLimit = &tt.rl
			var kind error
			if tt.field != "" {
				kind = ErrInvalid
			}
			checkValidation(t, c.Validate(), kind, tt.field)
		})
	}
}
