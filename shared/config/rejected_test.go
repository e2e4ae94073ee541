package config

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestValidateObjects: every validation error is attributed to the one
// object it belongs to (conflicts included, though Validate reports them
// only once nothing is invalid), and only an error of no object fails the
// whole configuration.
func TestValidateObjects(t *testing.T) {
	good := func() *Config {
		return &Config{
			Services:  []Service{{Name: "s", Targets: []Target{{URL: "http://h:1"}}}},
			Routes:    []*Route{{Name: "a", Paths: []string{"/a"}, Service: "s"}},
			Consumers: []Consumer{{Name: "alice"}},
			Issuers:   []Issuer{{Name: "i", Issuer: "https://i.example", Algorithms: []string{"HS256"}, Keys: []string{"0123456789abcdef0123456789abcdef"}}},
		}
	}
	tests := []struct {
		name    string
		mod     func(c *Config)
		want    map[string][]int // kind → indexes
		wantErr bool
	}{
		{"valid", func(*Config) {}, map[string][]int{}, false},
		{"bad service, and a route on it", func(c *Config) {
			c.Services = append(c.Services, Service{Name: "t", Targets: []Target{{URL: "ftp://h"}}})
			c.Routes = append(c.Routes, &Route{Name: "b", Paths: []string{"/b"}, Service: "t"})
		}, map[string][]int{"services": {1}}, false},
		{"route on a missing service", func(c *Config) {
			c.Routes = append(c.Routes, &Route{Name: "b", Paths: []string{"/b"}, Service: "ghost"})
		}, map[string][]int{"routes": {1}}, false},
		{"issuer key that is not a key", func(c *Config) {
			c.Issuers[0].Algorithms, c.Issuers[0].Keys = []string{"RS256"}, []string{"not a key"}
		}, map[string][]int{"issuers": {0}}, false},
		{"conflict beside an invalid object", func(c *Config) {
			c.Routes = append(c.Routes, &Route{Name: "b", Paths: []string{"/a"}, Service: "s"}, &Route{Name: "c", Paths: []string{"/c"}, Service: "s", MaxInFlight: -1})
		}, map[string][]int{"routes": {1, 2}}, false},
		{"consumer naming a missing issuer", func(c *Config) {
			c.Consumers[0].JWTIssuers = []string{"ghost"}
		}, map[string][]int{"consumers": {0}}, false},
		{"global section: nothing applies", func(c *Config) {
			c.Global.RateLimit = &RateLimit{Limit: 0, Window: Duration(time.Second)}
		}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.mod(c)
			in, err := c.ValidateObjects()
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			got := map[string][]int{}
			for kind, m := range map[string]map[int]string{"services": in.Services, "routes": in.Routes, "consumers": in.Consumers, "issuers": in.Issuers} {
				if len(m) > 0 {
					got[kind] = slices.Sorted(maps.Keys(m))
				}
				for i, reason := range m {
					if !strings.HasPrefix(reason, kind+"[") {
						t.Errorf("%s[%d] reason %q does not name its field", kind, i, reason)
					}
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("invalid = %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if !slices.Equal(got[k], v) {
					t.Fatalf("invalid = %v, want %v", got, tt.want)
				}
			}
			if in.Empty() != (len(tt.want) == 0) {
				t.Errorf("Empty() = %v", in.Empty())
			}
		})
	}
}
