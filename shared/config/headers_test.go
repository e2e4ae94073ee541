package config

import "testing"

func TestReservedHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Consumer-Name": true, "x_consumer_name": true, "X-Consumer-Anything": true,
		"X-Forwarded-Prefix": true, "Transfer_Encoding": true, "authorization": true, "X-Real-IP": true,
		"X-User-Sub": false, "X_Custom": false, "Accept": false,
	} {
		if got := ReservedHeader(name); got != want {
			t.Errorf("ReservedHeader(%q) = %v, want %v", name, got, want)
		}
	}
}

// A route may not forward a claim under a header the gateway owns or one
// spelled with "_"; upgrade_protocols are tokens.
func TestValidateGatewayHeaders(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(r *Route)
		kind  error
		field string
	}{
		{"claim to a free header", func(r *Route) {
			r.Auth = &RouteAuth{APIKey: true, ForwardClaims: map[string]string{"sub": "X-User-Sub"}}
		}, nil, ""},
		{"claim to an identity header", func(r *Route) {
			r.Auth = &RouteAuth{APIKey: true, ForwardClaims: map[string]string{"sub": "X-Consumer-Name"}}
		}, ErrInvalid, "routes[0].auth.forward_claims.sub"},
		{"claim to Authorization", func(r *Route) {
			r.Auth = &RouteAuth{APIKey: true, ForwardClaims: map[string]string{"sub": "authorization"}}
		}, ErrInvalid, "routes[0].auth.forward_claims.sub"},
		{"claim to an underscore name", func(r *Route) {
			r.Auth = &RouteAuth{APIKey: true, ForwardClaims: map[string]string{"sub": "X_User"}}
		}, ErrInvalid, "routes[0].auth.forward_claims.sub"},
		{"upgrade protocol", func(r *Route) { r.UpgradeProtocols = []string{"echo"} }, nil, ""},
		{"upgrade protocol list", func(r *Route) { r.UpgradeProtocols = []string{"echo, foo"} }, ErrInvalid, "routes[0].upgrade_protocols[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{
				Services: []Service{{Name: "s", Targets: []Target{{URL: "http://127.0.0.1:1"}}}},
				Routes:   []*Route{{Name: "r", Paths: []string{"/x"}, Service: "s"}},
			}
			tt.edit(c.Routes[0])
			checkValidation(t, c.Validate(), tt.kind, tt.field)
		})
	}
}
