package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// headerEcho answers with the request headers it received, as JSON.
func headerEcho(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			time.Sleep(d)
		}
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(srv.Close)
	return srv
}

const hmacSecret = "0123456789abcdef0123456789abcdef-test-secret"

func signHS256(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(hmacSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func authGateway(t *testing.T) (gw string, key string) {
	t.Helper()
	up := headerEcho(t)
	key, id, hash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}}}},
		Consumers: []config.Consumer{
			{Name: "alice", Groups: []string{"staff"}, APIKeys: []config.APIKey{{ID: id, Hash: hash, Prefix: apikey.Prefix(key)}}},
			{Name: "bob", Groups: []string{"guests"}},
		},
		Issuers: []config.Issuer{{Name: "corp", Issuer: "https://id.example.com", Audiences: []string{"portico"},
			Algorithms: []string{"HS256"}, Keys: []string{hmacSecret}}},
		Routes: []*config.Route{
			{Name: "open", Paths: []string{"/open"}, Service: "s"},
			{Name: "keyed", Paths: []string{"/keyed"}, Service: "s", Auth: &config.RouteAuth{APIKey: true}},
			{Name: "staff", Paths: []string{"/staff"}, Service: "s", Auth: &config.RouteAuth{APIKey: true, JWT: true, Groups: []string{"staff"}}},
			{Name: "orders", Paths: []string{"/orders"}, Service: "s", Auth: &config.RouteAuth{JWT: true, Scopes: []string{"orders:read"},
				ForwardClaims: map[string]string{"sub": "X-User-Id"}}},
		},
	}
	_, gw = newGateway(t, cfg)
	return gw, key
}

func TestAuthentication(t *testing.T) {
	gw, key := authGateway(t)
	valid := func(mod func(jwt.MapClaims)) string {
		c := jwt.MapClaims{"iss": "https://id.example.com", "aud": "portico", "sub": "bob",
			"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "scope": "orders:read profile"}
		if mod != nil {
			mod(c)
		}
		return "Bearer " + signHS256(t, c)
	}
	tests := []struct {
		name, path string
		hdr        []string
		status     int
		contains   string
	}{
		{"open route, spoofed identity removed", "/open", []string{"X-Consumer-Name", "root"}, 200, `"X-Forwarded-For"`},
		{"no key", "/keyed", nil, 401, "unauthorized"},
		{"wrong key", "/keyed", []string{"X-Api-Key", "pk_not-a-real-key"}, 401, "unauthorized"},
		{"good key", "/keyed", []string{"X-Api-Key", key}, 200, `"X-Consumer-Name":["alice"]`},
		{"spoofed consumer replaced", "/keyed", []string{"X-Api-Key", key, "X-Consumer-Name", "mallory"}, 200, `"X-Consumer-Name":["alice"]`},
		{"connection header cannot strip identity", "/keyed", []string{"X-Api-Key", key, "Connection", "X-Consumer-Name"}, 200, `"X-Consumer-Name":["alice"]`},
		{"group allowed", "/staff", []string{"X-Api-Key", key}, 200, `"X-Consumer-Groups":["staff"]`},
		{"group refused", "/staff", []string{"Authorization", valid(nil)}, 403, "forbidden"},
		{"jwt with scope", "/orders", []string{"Authorization", valid(nil)}, 200, `"X-User-Id":["bob"]`},
		{"jwt without scope", "/orders", []string{"Authorization", valid(func(c jwt.MapClaims) { c["scope"] = "profile" })}, 403, "forbidden"},
		{"expired jwt", "/orders", []string{"Authorization", valid(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })}, 401, "unauthorized"},
		{"wrong audience", "/orders", []string{"Authorization", valid(func(c jwt.MapClaims) { c["aud"] = "other" })}, 401, "unauthorized"},
		{"api key on jwt-only route", "/orders", []string{"X-Api-Key", key}, 401, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := do(t, "GET", gw+tt.path, nil, tt.hdr...)
			if code != tt.status || !strings.Contains(body, tt.contains) {
				t.Fatalf("GET %s = %d %s; want %d containing %s", tt.path, code, body, tt.status, tt.contains)
			}
			if code == 401 && !strings.Contains(h.Get("WWW-Authenticate"), "realm=") {
				t.Fatalf("401 without a challenge: %v", h)
			}
			if code == 200 && (strings.Contains(body, key) || strings.Contains(body, "root") || strings.Contains(body, "mallory")) {
				t.Fatalf("upstream saw a credential or a spoofed identity: %s", body)
			}
		})
	}
}

func TestRateLimitHeaders(t *testing.T) {
	up := headerEcho(t)
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []*config.Route{
			{Name: "limited", Paths: []string{"/limited"}, Service: "s",
				RateLimit: &config.RateLimit{Limit: 3, Window: config.Duration(time.Minute), Burst: 2, Key: "header:X-Client"}},
			{Name: "defaulted", Paths: []string{"/defaulted"}, Service: "s"},
		},
		Global: config.Global{RateLimit: &config.RateLimit{Limit: 1, Window: config.Duration(time.Hour)}},
	}
	_, gw := newGateway(t, cfg)
	codes := []int{}
	var last http.Header
	for range 5 {
		code, h, _ := do(t, "GET", gw+"/limited", nil, "X-Client", "a")
		codes = append(codes, code)
		last = h
		if h.Get("RateLimit-Limit") != "3" || h.Get("RateLimit-Policy") != "3;w=60" {
			t.Fatalf("headers: %v", h)
		}
	}
	// Burst 2: three at once, then refused.
	if fmt.Sprint(codes) != "[200 200 200 429 429]" {
		t.Fatalf("codes = %v", codes)
	}
	if ra := last.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("429 without Retry-After: %v", last)
	}
	if code, _, _ := do(t, "GET", gw+"/limited", nil, "X-Client", "b"); code != 200 {
		t.Fatal("another key shares the first key's budget")
	}
	// The global default applies to routes without a limit.
	do(t, "GET", gw+"/defaulted", nil)
	if code, _, body := do(t, "GET", gw+"/defaulted", nil); code != 429 || !strings.Contains(body, "rate-limited") {
		t.Fatalf("global default: %d %s", code, body)
	}
}

func TestThrottle(t *testing.T) {
	var inside atomic.Int64
	var gate atomic.Pointer[chan struct{}]
	newGate := func() chan struct{} { ch := make(chan struct{}); gate.Store(&ch); return ch }
	release := newGate()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inside.Add(1)
		if strings.HasSuffix(r.URL.Path, "/hold") {
			select {
			case <-*gate.Load():
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(up.Close)
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []*config.Route{
			{Name: "capped", Paths: []string{"/hold", "/quick"}, Service: "s", MaxInFlight: 1},
			{Name: "queued", Paths: []string{"/q/*"}, Service: "s", MaxInFlight: 1, QueueTimeout: config.Duration(5 * time.Second)},
		},
	}
	_, gw := newGateway(t, cfg)
	held := make(chan int, 2)
	go func() { code, _, _ := do(t, "GET", gw+"/hold", nil); held <- code }()
	testutil.Eventually(t, 5*time.Second, func() bool { return inside.Load() == 1 }, "first request inside")
	if code, _, body := do(t, "GET", gw+"/quick", nil); code != 503 || !strings.Contains(body, "too-many-in-flight") {
		t.Fatalf("over the cap: %d %s", code, body)
	}
	close(release)
	if code := <-held; code != 200 {
		t.Fatalf("held request = %d", code)
	}
	// With a queue the second request waits for the slot instead.
	release = newGate()
	go func() { code, _, _ := do(t, "GET", gw+"/q/hold", nil); held <- code }()
	testutil.Eventually(t, 5*time.Second, func() bool { return inside.Load() == 2 }, "queued route's first request inside")
	time.AfterFunc(100*time.Millisecond, func() { close(release) })
	if code, _, _ := do(t, "GET", gw+"/q/quick", nil); code != 200 {
		t.Fatalf("queued request = %d, want 200 after waiting", code)
	}
	if code := <-held; code != 200 {
		t.Fatalf("held request = %d", code)
	}
}

// TestRevocationReachesReusedRoutes: a route carried over unchanged by an
// incremental compile keeps its compiled stages, and its auth stage
// verifies with what the table in service knows: an API key revoked in a
// revision that does not touch the route stops working at once, and while
// no consumer or issuer changes the auth routes are carried over.
func TestRevocationReachesReusedRoutes(t *testing.T) {
	up := headerEcho(t)
	aliceKey, aliceID, aliceHash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	bobKey, bobID, bobHash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	meta := func(v int64) config.Meta { return config.Meta{Version: v, Revision: v} }
	cfg := &config.Config{
		Services: []config.Service{{Meta: meta(1), Name: "s", Targets: []config.Target{{URL: up.URL}}}},
		Consumers: []config.Consumer{
			{Meta: meta(1), Name: "alice", APIKeys: []config.APIKey{{ID: aliceID, Hash: aliceHash, Prefix: apikey.Prefix(aliceKey)}}},
			{Meta: meta(1), Name: "bob", APIKeys: []config.APIKey{{ID: bobID, Hash: bobHash, Prefix: apikey.Prefix(bobKey)}}},
		},
		Routes: []*config.Route{
			{Meta: meta(1), Name: "keyed", Paths: []string{"/keyed"}, Service: "s", Auth: &config.RouteAuth{APIKey: true}},
			{Meta: meta(1), Name: "open", Paths: []string{"/open"}, Service: "s"},
		},
	}
	h, gw := newGateway(t, cfg)
	status := func(key string) int {
		code, _, _ := do(t, "GET", gw+"/keyed", nil, "X-Api-Key", key)
		return code
	}
	if a, b := status(aliceKey), status(bobKey); a != 200 || b != 200 {
		t.Fatalf("before: alice %d, bob %d; want 200, 200", a, b)
	}

	// Revision 2 revokes alice's key; the route is not touched.
	cfg.Consumers[0].APIKeys, cfg.Consumers[0].Meta = nil, meta(2)
	applyCfg(t, h, 2, cfg)
	if a, b := status(aliceKey), status(bobKey); a != 401 || b != 200 {
		t.Fatalf("after revoking alice's key: alice %d, bob %d; want 401, 200", a, b)
	}

	// Revision 3 changes another route only: the auth route is carried
	// over, and still refuses the revoked key.
	before := h.Table().routesByName()["keyed"]
	cfg.Routes[1].Timeout, cfg.Routes[1].Meta = config.Duration(time.Second), meta(3)
	applyCfg(t, h, 3, cfg)
	if h.Table().routesByName()["keyed"] != before {
		t.Error("the auth route was compiled again though no consumer, issuer or the route changed")
	}
	if a, b := status(aliceKey), status(bobKey); a != 401 || b != 200 {
		t.Fatalf("after an unrelated change: alice %d, bob %d; want 401, 200", a, b)
	}
}
