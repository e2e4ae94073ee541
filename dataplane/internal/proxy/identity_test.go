package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portico-gw/portico/shared/config"
)

// TestJWTConsumerBoundToIssuers: a consumer is named only by the issuers it
// lists in jwt_issuers. A token of another issuer with sub=alice
// authenticates (the route accepts any issuer) but as nobody: it does not
// get alice's groups, so the staff route refuses it, and the upstream does
// not hear "alice".
func TestJWTConsumerBoundToIssuers(t *testing.T) {
	up := headerEcho(t)
	const partnerSecret = "partner-secret-partner-secret-0123456789"
	cfg := &config.Config{
		Services:  []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}}}},
		Consumers: []config.Consumer{{Name: "alice", Groups: []string{"staff"}, JWTIssuers: []string{"corp"}}},
		Issuers: []config.Issuer{
			{Name: "corp", Issuer: "https://id.example.com", Algorithms: []string{"HS256"}, Keys: []string{hmacSecret}},
			{Name: "partner", Issuer: "https://partner.example", Algorithms: []string{"HS256"}, Keys: []string{partnerSecret}},
		},
		Routes: []*config.Route{
			{Name: "staff", Paths: []string{"/staff"}, Service: "s", Auth: &config.RouteAuth{JWT: true, Groups: []string{"staff"}}},
			{Name: "any", Paths: []string{"/any"}, Service: "s", Auth: &config.RouteAuth{JWT: true}},
		},
	}
	_, gw := newGateway(t, cfg)
	token := func(iss, secret string) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": iss, "sub": "alice",
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	corp, partner := token("https://id.example.com", hmacSecret), token("https://partner.example", partnerSecret)
	tests := []struct {
		name, path, auth string
		status           int
		contains         string
	}{
		{"trusted issuer names alice", "/staff", corp, 200, `"X-Consumer-Groups":["staff"]`},
		{"other issuer's sub=alice gets no groups", "/staff", partner, 403, "forbidden"},
		{"other issuer authenticates as nobody", "/any", partner, 200, `"X-Auth-Method":["jwt"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := do(t, "GET", gw+tt.path, nil, "Authorization", tt.auth)
			if code != tt.status || !strings.Contains(body, tt.contains) {
				t.Fatalf("GET %s = %d %s; want %d containing %s", tt.path, code, body, tt.status, tt.contains)
			}
			if tt.auth == partner && strings.Contains(body, "alice") {
				t.Fatalf("the upstream heard alice from the partner's token: %s", body)
			}
		})
	}
}

// TestJWTLifetimeBound: with the default max_token_lifetime (24h) a token
// whose exp lies further away, from now or from its iat, is a 401.
func TestJWTLifetimeBound(t *testing.T) {
	up := headerEcho(t)
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}}}},
		Issuers:  []config.Issuer{{Name: "corp", Issuer: "https://id.example.com", Algorithms: []string{"HS256"}, Keys: []string{hmacSecret}}},
		Routes:   []*config.Route{{Name: "any", Paths: []string{"/any"}, Service: "s", Auth: &config.RouteAuth{JWT: true}}},
	}
	_, gw := newGateway(t, cfg)
	now := time.Now()
	tests := []struct {
		name     string
		iat, exp time.Time
		status   int
	}{
		{"an hour", now, now.Add(time.Hour), 200},
		{"a year", now, now.Add(365 * 24 * time.Hour), 401},
		{"issued two days ago, an hour left", now.Add(-48 * time.Hour), now.Add(time.Hour), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := signHS256(t, jwt.MapClaims{"iss": "https://id.example.com", "sub": "x", "iat": tt.iat.Unix(), "exp": tt.exp.Unix()})
			if code, _, body := do(t, "GET", gw+"/any", nil, "Authorization", "Bearer "+tok); code != tt.status {
				t.Fatalf("GET /any = %d %s; want %d", code, body, tt.status)
			}
		})
	}
}
