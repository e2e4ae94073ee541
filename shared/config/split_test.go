package config

import (
	"errors"
	"strings"
	"testing"
)

func TestSplitValidate(t *testing.T) {
	base := func() *Config {
		return &Config{
			Services: []Service{
				{Name: "v1", Targets: []Target{{URL: "http://127.0.0.1:1", Weight: 1}}},
				{Name: "v2", Targets: []Target{{URL: "http://127.0.0.1:2", Weight: 1}}},
				{Name: "g", Protocol: ProtocolGRPC, Targets: []Target{{URL: "http://127.0.0.1:3", Weight: 1}}},
			},
			Routes: []*Route{{Name: "r", Paths: []string{"/u/*"},
				Split: []SplitBackend{{Service: "v1", Weight: 90}, {Service: "v2", Weight: 10}}}},
		}
	}
	tests := []struct {
		name   string
		mutate func(r *Route)
		kind   error
		field  string
	}{
		{"valid", func(*Route) {}, nil, ""},
		{"sticky header", func(r *Route) { r.Sticky = "header:X-User-Id" }, nil, ""},
		{"sticky cookie", func(r *Route) { r.Sticky = "cookie:uid" }, nil, ""},
		{"sticky consumer with auth", func(r *Route) { r.Sticky = "consumer"; r.Auth = &RouteAuth{APIKey: true} }, nil, ""},
		{"sticky consumer without auth", func(r *Route) { r.Sticky = "consumer" }, ErrInvalid, "routes[0].sticky"},
		{"bad sticky", func(r *Route) { r.Sticky = "ip" }, ErrInvalid, "routes[0].sticky"},
		{"sticky without split", func(r *Route) { r.Split = nil; r.Service = "v1"; r.Sticky = "cookie:a" }, ErrInvalid, "routes[0].sticky"},
		{"with service", func(r *Route) { r.Service = "v1" }, ErrInvalid, "routes[0].service"},
		{"one backend", func(r *Route) { r.Split = r.Split[:1] }, ErrInvalid, "routes[0].backends"},
		{"all drained", func(r *Route) { r.Split[0].Weight, r.Split[1].Weight = 0, 0 }, ErrInvalid, "routes[0].backends"},
		{"negative weight", func(r *Route) { r.Split[1].Weight = -1 }, ErrInvalid, "routes[0].backends[1].weight"},
		{"weight too big", func(r *Route) { r.Split[1].Weight = MaxSplitWeight + 1 }, ErrInvalid, "routes[0].backends[1].weight"},
		{"duplicate", func(r *Route) { r.Split[1].Service = "v1" }, ErrInvalid, "routes[0].backends[1].service"},
		{"missing service", func(r *Route) { r.Split[1].Service = "v9" }, ErrInvalid, "routes[0].backends[1].service"},
		{"grpc service", func(r *Route) { r.Split[1].Service = "g" }, ErrInvalid, "routes[0].backends[1].service"},
		{"with aggregate", func(r *Route) { r.Aggregate = []AggregateBackend{{Service: "v1", Path: "/a"}} }, ErrInvalid, "routes[0].aggregate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(c.Routes[0])
			err := c.Validate()
			if tc.kind == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.kind) {
				t.Fatalf("error %v, want %v", err, tc.kind)
			}
			for _, f := range FieldErrors(err) {
				if f.Field == tc.field {
					return
				}
			}
			t.Fatalf("error %v does not name %s", err, tc.field)
		})
	}
}

// TestSplitServicesAreInUse: a service a split sends to cannot be deleted
// (409), and its route's backends count as its users.
func TestSplitServicesAreInUse(t *testing.T) {
	c := &Config{
		Services: []Service{{Name: "v1", Targets: []Target{{URL: "http://127.0.0.1:1", Weight: 1}}}, {Name: "v2", Targets: []Target{{URL: "http://127.0.0.1:2", Weight: 1}}}},
		Routes:   []*Route{{Name: "r", Paths: []string{"/"}, Split: []SplitBackend{{Service: "v1", Weight: 1}, {Service: "v2", Weight: 1}}}},
	}
	if err := c.CheckServiceDelete("v2"); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "routes [r]") {
		t.Fatalf("CheckServiceDelete = %v, want a conflict naming the route", err)
	}
}
