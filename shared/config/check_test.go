package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestObjectChecksAgreeWithValidate: the rules between objects are written
// once (object.go, ambiguity.go), and an object checked against the rest of
// a configuration (CheckRoute, CheckRouteAuth, CheckConsumer, CheckIssuer:
// the admin API's writes) gets exactly the errors Validate reports for it
// inside the whole configuration (an import, the catalog's commit and the
// data plane's compile).
func TestObjectChecksAgreeWithValidate(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef"
	base := func() *Config {
		return &Config{
			Services: []Service{
				{Name: "users", Targets: []Target{{URL: "http://127.0.0.1:9001", Weight: 1}}},
				{Name: "shop", Protocol: ProtocolGRPC, Targets: []Target{{URL: "http://127.0.0.1:9003", Weight: 1}}},
			},
			Routes: []*Route{
				{Name: "a-users", Paths: []string{"/users/*"}, Methods: []string{"GET"}, Service: "users"},
				{Name: "a-user", Paths: []string{"/user/{id}"}, Hosts: []string{"api.example.com"}, Service: "users"},
			},
			Consumers: []Consumer{{Name: "alice"}},
			Issuers:   []Issuer{{Name: "corp", Issuer: "https://id.example.com", Algorithms: []string{"HS256"}, Keys: []string{key}}},
		}
	}
	route := func(r Route) func(*Config) (string, error) {
		return func(c *Config) (string, error) {
			c.Routes = append(c.Routes, &r)
			return fmt.Sprintf("routes[%d]", len(c.Routes)-1), joinErrs(c.CheckRoute(&r), c.CheckRouteAuth(&r))
		}
	}
	tests := []struct {
		name string
		add  func(*Config) (prefix string, check error)
		want int // errors expected
	}{
		{"fine route", route(Route{Name: "z", Paths: []string{"/z"}, Service: "users"}), 0},
		{"missing service", route(Route{Name: "z", Paths: []string{"/z"}, Service: "ghost"}), 1},
		{"gRPC pass-through (service without method)", route(Route{Name: "z", Paths: []string{"/z"}, Service: "shop"}), 0},
		{"gRPC pass-through with a rewrite", route(Route{Name: "z", Paths: []string{"/z"}, Service: "shop", Rewrite: "/y"}), 1},
		{"method on an HTTP service", route(Route{Name: "z", Paths: []string{"/z"}, Service: "users", GRPC: &RouteGRPC{Method: "shop.v1.Orders/Get"}}), 1},
		{"aggregates a missing and a gRPC service", route(Route{Name: "z", Paths: []string{"/z"},
			Aggregate: []AggregateBackend{{Service: "ghost", Path: "/a"}, {Service: "shop", Path: "/b"}}}), 2},
		{"same requests as a-users", route(Route{Name: "z", Paths: []string{"/z", "/users/*"}, Methods: []string{"GET", "POST"}, Service: "users"}), 1},
		{"same requests on a host", route(Route{Name: "z", Paths: []string{"/user/{name}"}, Hosts: []string{"api.example.com"}, Service: "users"}), 1},
		{"missing issuer", route(Route{Name: "z", Paths: []string{"/z"}, Service: "users", Auth: &RouteAuth{JWT: true, Issuers: []string{"corp", "ghost"}}}), 1},
		{"consumer names a missing issuer", func(c *Config) (string, error) {
			cs := Consumer{Name: "bob", JWTIssuers: []string{"ghost", "corp"}}
			c.Consumers = append(c.Consumers, cs)
			return "consumers[1]", c.CheckConsumer(&cs)
		}, 1},
		{"second issuer for one iss", func(c *Config) (string, error) {
			is := Issuer{Name: "corp2", Issuer: "https://id.example.com", Algorithms: []string{"HS256"}, Keys: []string{key}}
			c.Issuers = append(c.Issuers, is)
			return "issuers[1]", c.CheckIssuer(&is)
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			c.Sort() // as the catalog keeps it: Config.Service looks up by name
			if err := c.Validate(); err != nil {
				t.Fatalf("base configuration: %v", err)
			}
			prefix, checkErr := tt.add(c)
			var whole []string
			l := c.check()
			for _, f := range append(l.invalid, l.conflict...) {
				if rest, ok := strings.CutPrefix(f.Field, prefix+"."); ok {
					whole = append(whole, rest+": "+f.Message)
				}
			}
			var alone []string
			for _, f := range FieldErrors(checkErr) {
				alone = append(alone, f.Error())
			}
			slices.Sort(whole)
			slices.Sort(alone)
			if !slices.Equal(whole, alone) || len(alone) != tt.want {
				t.Fatalf("Validate on the whole says\n  %s\nthe object check says\n  %s\nwant %d errors",
					strings.Join(whole, "\n  "), strings.Join(alone, "\n  "), tt.want)
			}
		})
	}
}

// joinErrs merges the fields of validation errors (nil ones skipped).
func joinErrs(errs ...error) error {
	var out ValidationError
	for _, err := range errs {
		out.Fields = append(out.Fields, FieldErrors(err)...)
	}
	if len(out.Fields) == 0 {
		return nil
	}
	return &out
}
