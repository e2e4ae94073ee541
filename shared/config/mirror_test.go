package config

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestMirrorValidate(t *testing.T) {
	base := func() *Config {
		return &Config{
			Services: []Service{
				{Name: "users", Targets: []Target{{URL: "http://127.0.0.1:1", Weight: 1}}},
				{Name: "next", Targets: []Target{{URL: "http://127.0.0.1:2", Weight: 1}}},
				{Name: "g", Protocol: ProtocolGRPC, Targets: []Target{{URL: "http://127.0.0.1:3", Weight: 1}}},
			},
			Routes: []*Route{{Name: "r", Paths: []string{"/u/*"}, Service: "users", Mirror: &Mirror{Service: "next", Percent: 5}}},
		}
	}
	tests := []struct {
		name   string
		mutate func(m *Mirror, r *Route)
		field  string // "" = valid
	}{
		{"valid", func(*Mirror, *Route) {}, ""},
		{"fraction and limits", func(m *Mirror, _ *Route) {
			m.Percent, m.MaxBodyBytes, m.MaxConcurrent, m.Timeout = 0.5, MaxMirrorBody, MaxMirrorConcurrency, Duration(time.Minute)
		}, ""},
		{"with a split", func(_ *Mirror, r *Route) {
			r.Service, r.Split = "", []SplitBackend{{Service: "users", Weight: 1}, {Service: "g", Weight: 0}}
			r.Split[1].Service = "next"
			r.Mirror.Service = "g"
		}, "routes[0].mirror.service"},
		{"zero percent", func(m *Mirror, _ *Route) { m.Percent = 0 }, "routes[0].mirror.percent"},
		{"over 100", func(m *Mirror, _ *Route) { m.Percent = 100.5 }, "routes[0].mirror.percent"},
		{"body too large", func(m *Mirror, _ *Route) { m.MaxBodyBytes = MaxMirrorBody + 1 }, "routes[0].mirror.max_body_bytes"},
		{"concurrency", func(m *Mirror, _ *Route) { m.MaxConcurrent = -1 }, "routes[0].mirror.max_concurrent"},
		{"timeout", func(m *Mirror, _ *Route) { m.Timeout = Duration(2 * time.Minute) }, "routes[0].mirror.timeout"},
		{"own service", func(m *Mirror, _ *Route) { m.Service = "users" }, "routes[0].mirror.service"},
		{"missing service", func(m *Mirror, _ *Route) { m.Service = "nope" }, "routes[0].mirror.service"},
		{"grpc service", func(m *Mirror, _ *Route) { m.Service = "g" }, "routes[0].mirror.service"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(c.Routes[0].Mirror, c.Routes[0])
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v, want ErrInvalid", err)
			}
			for _, f := range FieldErrors(err) {
				if f.Field == tc.field {
					return
				}
			}
			t.Fatalf("error %v does not name %s", err, tc.field)
		})
	}
	// The mirror's service is in use.
	c := base()
	if !slices.Contains(c.Routes[0].Backends(), "next") || !errors.Is(c.CheckServiceDelete("next"), ErrConflict) {
		t.Fatalf("the mirror's service is not in use: %v", c.Routes[0].Backends())
	}
}
