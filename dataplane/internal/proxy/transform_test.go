package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// headerUpstream answers with the path, query and the headers it received,
// and with a few headers of its own for the response edits to work on.
func headerUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "upstream/1.0")
		w.Header().Set("X-Powered-By", "php")
		w.Header().Set("Access-Control-Allow-Origin", "*") // the gateway owns CORS
		var b strings.Builder
		b.WriteString(r.URL.Path + "?" + r.URL.RawQuery + "\n")
		for _, name := range []string{"X-Tenant", "X-User", "X-Added", "Cookie", "X-Debug"} {
			b.WriteString(name + "=" + strings.Join(r.Header.Values(name), ",") + "\n")
		}
		_, _ = w.Write([]byte(b.String()))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestTransformations(t *testing.T) {
	up := headerUpstream(t)
	cfg := &config.Config{
		Services: []config.Service{{Name: "users", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []*config.Route{
			{Name: "user", Paths: []string{"/api/users/{id}"}, Service: "users",
				Rewrite: "/v2/accounts/{id}/profile",
				Query:   &config.Edits{Add: map[string]string{"source": "gw", "user": "{id}"}},
				RequestHeaders: &config.Edits{
					Set:    map[string]string{"X-Tenant": "acme", "X-User": "user-{id}"},
					Add:    map[string]string{"X-Added": "one"},
					Remove: []string{"Cookie", "X-Debug"},
				},
				ResponseHeaders: &config.Edits{
					Set:    map[string]string{"Server": "portico"},
					Add:    map[string]string{"X-Route-User": "{id}"},
					Remove: []string{"X-Powered-By"},
				}},
			{Name: "files", Paths: []string{"/files/*"}, Service: "users", Rewrite: "/storage/{*}",
				Query: &config.Edits{Set: map[string]string{"v": "2"}, Remove: []string{"debug"}}},
		},
	}
	_, gw := newGateway(t, cfg)

	status, hdr, body := do(t, "GET", gw+"/api/users/42?x=1", nil,
		"X-Tenant", "evil", "Cookie", "session=secret", "X-Debug", "1", "X-Added", "client")
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	lines := strings.Split(body, "\n")
	if want := "/v2/accounts/42/profile?x=1&source=gw&user=42"; lines[0] != want {
		t.Errorf("upstream got %q, want %q", lines[0], want)
	}
	for _, want := range []string{"X-Tenant=acme", "X-User=user-42", "X-Added=client,one", "Cookie=", "X-Debug="} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("upstream headers %q lack %q", body, want)
		}
	}
	if hdr.Get("Server") != "portico" || hdr.Get("X-Powered-By") != "" || hdr.Get("X-Route-User") != "42" {
		t.Errorf("response headers not edited: %v", hdr)
	}

	// A prefix rewrite with {*}; set replaces the client's value, remove drops one.
	status, _, body = do(t, "GET", gw+"/files/a/b.txt?v=1&debug=1&keep=yes", nil)
	if status != 200 || !strings.HasPrefix(body, "/storage/a/b.txt?keep=yes&v=2\n") {
		t.Errorf("files: %d %q", status, body)
	}
	// A gateway-made answer (404 here is the upstream's; use a missing
	// route instead) is not a route answer: no edits apply.
	status, hdr, _ = do(t, "GET", gw+"/nowhere", nil)
	if status != 404 || hdr.Get("X-Route-User") != "" {
		t.Errorf("unrouted: %d %v", status, hdr)
	}
}

func TestCORS(t *testing.T) {
	up := headerUpstream(t)
	cfg := &config.Config{
		Services: []config.Service{{Name: "users", Targets: []config.Target{{URL: up.URL}}}},
		Routes: []*config.Route{
			{Name: "api", Paths: []string{"/api/*"}, Methods: []string{"GET", "PUT"}, Service: "users",
				CORS: &config.CORS{
					AllowOrigins:     []string{"https://app.example.com", "https://*.example.org"},
					AllowHeaders:     []string{"Authorization", "Content-Type"},
					ExposeHeaders:    []string{"X-Request-Id"},
					AllowCredentials: true,
					MaxAge:           config.Duration(10 * time.Minute),
				}},
			{Name: "public", Paths: []string{"/public"}, Service: "users", CORS: &config.CORS{AllowOrigins: []string{"*"}}},
			{Name: "plain", Paths: []string{"/plain"}, Methods: []string{"GET"}, Service: "users"},
		},
	}
	_, gw := newGateway(t, cfg)

	tests := []struct {
		name       string
		method     string
		path       string
		hdr        []string
		status     int
		wantHeader map[string]string
	}{
		{"preflight allowed (route has no OPTIONS)", "OPTIONS", "/api/x", []string{"Origin", "https://app.example.com", "Access-Control-Request-Method", "PUT"}, 204,
			map[string]string{"Access-Control-Allow-Origin": "https://app.example.com", "Access-Control-Allow-Methods": "GET, PUT",
				"Access-Control-Allow-Headers": "Authorization, Content-Type", "Access-Control-Allow-Credentials": "true", "Access-Control-Max-Age": "600"}},
		{"preflight wildcard subdomain", "OPTIONS", "/api/x", []string{"Origin", "https://a.b.example.org", "Access-Control-Request-Method", "GET"}, 204,
			map[string]string{"Access-Control-Allow-Origin": "https://a.b.example.org"}},
		{"preflight bare suffix is not a subdomain", "OPTIONS", "/api/x", []string{"Origin", "https://evilexample.org", "Access-Control-Request-Method", "GET"}, 403,
			map[string]string{"Access-Control-Allow-Origin": ""}},
		{"preflight origin refused", "OPTIONS", "/api/x", []string{"Origin", "https://evil.com", "Access-Control-Request-Method", "GET"}, 403,
			map[string]string{"Access-Control-Allow-Origin": ""}},
		{"preflight for a method the route lacks", "OPTIONS", "/api/x", []string{"Origin", "https://app.example.com", "Access-Control-Request-Method", "DELETE"}, 404, nil},
		{"preflight on a route without CORS", "OPTIONS", "/plain", []string{"Origin", "https://app.example.com", "Access-Control-Request-Method", "GET"}, 404, nil},
		{"actual request, allowed origin", "GET", "/api/x", []string{"Origin", "https://app.example.com"}, 200,
			map[string]string{"Access-Control-Allow-Origin": "https://app.example.com", "Access-Control-Expose-Headers": "X-Request-Id", "Vary": "Origin"}},
		{"actual request, other origin: upstream's CORS removed", "GET", "/api/x", []string{"Origin", "https://evil.com"}, 200,
			map[string]string{"Access-Control-Allow-Origin": ""}},
		{"public route answers *", "GET", "/public", []string{"Origin", "https://any.where"}, 200,
			map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": ""}},
		{"echoes requested headers when none configured", "OPTIONS", "/public", []string{"Origin", "https://any.where", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "x-custom"}, 204,
			map[string]string{"Access-Control-Allow-Headers": "x-custom", "Access-Control-Allow-Methods": "GET, HEAD, POST", "Access-Control-Max-Age": "300"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := do(t, tt.method, gw+tt.path, nil, tt.hdr...)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			for k, v := range tt.wantHeader {
				if got := hdr.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.method == "OPTIONS" && status == 204 && body != "" {
				t.Errorf("preflight reached the upstream: %q", body)
			}
		})
	}
}
