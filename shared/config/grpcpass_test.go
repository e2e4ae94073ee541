package config

import (
	"slices"
	"testing"
)

// TestGRPCPassThroughRoute: a route to a gRPC service without grpc.method
// passes calls through; what would change the method, add a query or
// replay an answer is refused with its field, by Validate (whole
// configuration) and CheckRoute (one route against the rest) alike.
func TestGRPCPassThroughRoute(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(r *Route)
		fields []string // nil: valid
	}{
		{"plain", func(*Route) {}, nil},
		{"POST listed", func(r *Route) { r.Methods = []string{"POST"} }, nil},
		{"auth, rate limit, headers, timeout", func(r *Route) {
			r.Auth = &RouteAuth{APIKey: true}
			r.RateLimit = &RateLimit{Limit: 10, Window: Duration(1e9), Key: "ip"}
			r.RequestHeaders = &Edits{Set: map[string]string{"X-Env": "prod"}}
			r.Timeout = Duration(5e9)
			r.MaxInFlight = 4
		}, nil},
		{"GET only", func(r *Route) { r.Methods = []string{"GET"} }, []string{"methods"}},
		{"rewrite", func(r *Route) { r.Rewrite = "/other.S/M" }, []string{"rewrite"}},
		{"strip prefix", func(r *Route) { r.Paths = []string{"/grpc/*"}; r.StripPrefix = true }, []string{"rewrite"}},
		{"query", func(r *Route) { r.Query = &Edits{Set: map[string]string{"a": "b"}} }, []string{"query"}},
		{"cache", func(r *Route) { r.Cache = &RouteCache{TTL: Duration(1e9)} }, []string{"cache"}},
		{"body edits", func(r *Route) { r.Body = &RouteBody{Request: []BodyEdit{{Op: BodyRemove, Path: "/x"}}} }, []string{"body"}},
		{"mirror", func(r *Route) { r.Mirror = &Mirror{Service: "h", Percent: 10} }, []string{"mirror"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := Service{Name: "g", Protocol: ProtocolGRPC, Targets: []Target{{URL: "http://h:1"}}}
			r := Route{Name: "r", Paths: []string{"/echo.Echo/*"}, Service: "g"}
			tt.edit(&r)
			if !GRPCPassThrough(&r, &svc) {
				t.Fatal("GRPCPassThrough = false")
			}
			web := Service{Name: "h", Targets: []Target{{URL: "http://h:2"}}}
			c := &Config{Services: []Service{svc, web}, Routes: []*Route{&r}}
			var got []string
			for _, f := range FieldErrors(c.Validate()) {
				got = append(got, f.Field)
			}
			var want []string
			for _, f := range tt.fields {
				want = append(want, "routes[0]."+f)
			}
			if !slices.Equal(got, want) {
				t.Errorf("Validate fields = %v, want %v", got, want)
			}
			got = nil
			rest := &Config{Services: []Service{svc, web}}
			for _, f := range FieldErrors(rest.CheckRoute(&r)) {
				got = append(got, f.Field)
			}
			if !slices.Equal(got, tt.fields) {
				t.Errorf("CheckRoute fields = %v, want %v", got, tt.fields)
			}
		})
	}
	// A route naming a method translates; an HTTP service never passes
	// gRPC through.
	svc := &Service{Name: "g", Protocol: ProtocolGRPC}
	if GRPCPassThrough(&Route{GRPC: &RouteGRPC{Method: "a.S/M"}}, svc) {
		t.Error("a route with grpc.method is not pass-through")
	}
	if GRPCPassThrough(&Route{}, &Service{Name: "h"}) {
		t.Error("an HTTP service's route is not pass-through")
	}
}
