package proxy

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/basicauth"
	"github.com/portico-gw/portico/shared/config"
)

func basicHeader(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// Basic auth through the real handler and upstream, with hashes of the
// control plane's cost: the identity reaches the service, the password
// does not, consumer rate limits key on it, and a changed password stops
// the old one at once although it was remembered.
func TestBasicAuth(t *testing.T) {
	up := headerEcho(t)
	hash := func(pw string) string {
		h, err := basicauth.Hash(pw)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	const alicePW, bobPW = "alice's long password", "bob's long password"
	cfg := func(aliceHash string) *config.Config {
		return &config.Config{
			Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}}}},
			Consumers: []config.Consumer{
				{Name: "alice", Groups: []string{"staff"}, BasicAuth: []config.BasicCredential{{ID: "basic-a", Username: "alice", Hash: aliceHash}}},
				{Name: "bob", BasicAuth: []config.BasicCredential{{ID: "basic-b", Username: "bob@example.com", Hash: hash(bobPW)}}},
			},
			Issuers: []config.Issuer{{Name: "corp", Issuer: "https://id.example.com", Audiences: []string{"portico"},
				Algorithms: []string{"HS256"}, Keys: []string{hmacSecret}}},
			Routes: []*config.Route{
				&config.Route{Name: "basic", Paths: []string{"/basic"}, Service: "s", Auth: &config.RouteAuth{Basic: true},
					RateLimit: &config.RateLimit{Limit: 2, Window: config.Duration(time.Hour), Key: "consumer"}},
				&config.Route{Name: "staff", Paths: []string{"/staff"}, Service: "s", Auth: &config.RouteAuth{Basic: true, JWT: true, Groups: []string{"staff"}}},
				&config.Route{Name: "keyed", Paths: []string{"/keyed"}, Service: "s", Auth: &config.RouteAuth{APIKey: true}},
			},
		}
	}
	aliceHash := hash(alicePW)
	h, gw := newGateway(t, cfg(aliceHash))
	alice, bob := basicHeader("alice", alicePW), basicHeader("bob@example.com", bobPW)
	tests := []struct {
		name, path, auth string
		status           int
		contains         string
	}{
		{"no credentials", "/staff", "", 401, "unauthorized"},
		{"wrong password", "/staff", basicHeader("alice", "not the password"), 401, "unauthorized"},
		{"unknown user", "/staff", basicHeader("mallory", alicePW), 401, "unauthorized"},
		{"not base64", "/staff", "Basic %%%", 401, "unauthorized"},
		{"no colon", "/staff", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice")), 401, "unauthorized"},
		{"header over the bound", "/staff", "Basic " + strings.Repeat("A", 2000), 401, "unauthorized"},
		{"good, in the group", "/staff", alice, 200, `"X-Consumer-Name":["alice"]`},
		{"good, method forwarded", "/staff", alice, 200, `"X-Auth-Method":["basic"]`},
		{"good, not in the group", "/staff", bob, 403, "forbidden"},
		{"basic on an api-key route", "/keyed", alice, 401, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.auth != "" {
				hdr = []string{"Authorization", tt.auth}
			}
			code, rh, body := do(t, "GET", gw+tt.path, nil, hdr...)
			if code != tt.status || !strings.Contains(body, tt.contains) {
				t.Fatalf("GET %s = %d %s; want %d containing %s", tt.path, code, body, tt.status, tt.contains)
			}
			if code == 401 && tt.path == "/staff" && rh.Get("WWW-Authenticate") != `Bearer realm="portico", Basic realm="portico", charset="UTF-8"` {
				t.Fatalf("challenge %q", rh.Get("WWW-Authenticate"))
			}
			if code == 200 && (strings.Contains(body, "Authorization") || strings.Contains(body, alicePW)) {
				t.Fatalf("the service saw the credentials: %s", body)
			}
		})
	}

	// Two Authorization headers: refused, not guessed.
	req, _ := http.NewRequest("GET", gw+"/staff", nil)
	req.Header.Add("Authorization", alice)
	req.Header.Add("Authorization", bob)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("two Authorization headers: %d", resp.StatusCode)
	}

	// The consumer's rate limit: two per hour for alice, bob has his own.
	for i, want := range []int{200, 200, 429} {
		if code, _, _ := do(t, "GET", gw+"/basic", nil, "Authorization", alice); code != want {
			t.Fatalf("alice's request %d: %d, want %d", i+1, code, want)
		}
	}
	if code, _, _ := do(t, "GET", gw+"/basic", nil, "Authorization", bob); code != 200 {
		t.Fatalf("bob limited by alice's requests: %d", code)
	}

	// gRPC calls get a gRPC status.
	code, rh, _ := do(t, "POST", gw+"/staff", nil, "Content-Type", "application/grpc", "Authorization", basicHeader("alice", "wrong password"))
	if code != 200 || rh.Get("Grpc-Status") != "16" {
		t.Fatalf("gRPC refusal: %d %v", code, rh)
	}

	// A new password: the old one, remembered by the cache, stops at once.
	applyCfg(t, h, 2, cfg(hash("alice's new password")))
	if code, _, _ := do(t, "GET", gw+"/staff", nil, "Authorization", alice); code != 401 {
		t.Fatalf("old password after the change: %d", code)
	}
	if code, _, _ := do(t, "GET", gw+"/staff", nil, "Authorization", basicHeader("alice", "alice's new password")); code != 200 {
		t.Fatalf("new password: %d", code)
	}
}
