package httpsredirect

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/clientip"
	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// next is the rest of the chain: it answers 200.
type next struct{}

func (next) Serve(req *stage.Request) { req.W.WriteHeader(http.StatusOK) }
func (next) Describe() any            { return "next" }

func TestRedirectAndHSTS(t *testing.T) {
	trusted, err := clientip.Parse("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	hsts := &config.HSTS{MaxAge: config.Duration(365 * 24 * time.Hour), IncludeSubdomains: true, Preload: true}
	cases := []struct {
		name      string
		route     config.Route
		target    string
		host      string
		tls       bool
		proto     string // X-Forwarded-Proto
		peer      string // RemoteAddr; --trusted-proxies is 10.0.0.0/8
		status    int
		location  string
		stsHeader string
	}{
		{"plain redirected", config.Route{HTTPSRedirect: true}, "/a/b?x=1&y=%2F", "api.example.com", false, "", "", 308, "https://api.example.com/a/b?x=1&y=%2F", ""},
		{"port dropped", config.Route{HTTPSRedirect: true}, "/a", "api.example.com:8080", false, "", "", 308, "https://api.example.com/a", ""},
		{"https_port", config.Route{HTTPSRedirect: true, HTTPSPort: 8443}, "/a", "localhost:8080", false, "", "", 308, "https://localhost:8443/a", ""},
		{"https_port 443", config.Route{HTTPSRedirect: true, HTTPSPort: 443}, "/a", "localhost:8080", false, "", "", 308, "https://localhost/a", ""},
		{"IPv6", config.Route{HTTPSRedirect: true, HTTPSPort: 8443}, "/", "[::1]:8080", false, "", "", 308, "https://[::1]:8443/", ""},
		{"IPv6 without a port", config.Route{HTTPSRedirect: true}, "/", "[::1]", false, "", "", 308, "https://[::1]/", ""},
		{"TLS passes with HSTS", config.Route{HTTPSRedirect: true, HSTS: hsts}, "/a", "api.example.com", true, "", "", 200, "", "max-age=31536000; includeSubDomains; preload"},
		{"no HSTS over plain HTTP", config.Route{HSTS: hsts}, "/a", "api.example.com", false, "", "", 200, "", ""},
		{"trusted proxy says https", config.Route{HTTPSRedirect: true, HSTS: hsts}, "/a", "api.example.com", false, "https", "10.1.2.3:5000", 200, "", "max-age=31536000; includeSubDomains; preload"},
		{"trusted proxy's list: the client's first", config.Route{HTTPSRedirect: true}, "/a", "api.example.com", false, "HTTPS, http", "10.1.2.3:5000", 200, "", ""},
		{"trusted proxy says http", config.Route{HTTPSRedirect: true}, "/a", "api.example.com", false, "http", "10.1.2.3:5000", 308, "https://api.example.com/a", ""},
		{"untrusted peer's X-Forwarded-Proto ignored", config.Route{HTTPSRedirect: true, HSTS: hsts}, "/a", "api.example.com", false, "https", "192.0.2.7:5000", 308, "https://api.example.com/a", ""},
		{"HSTS alone over TLS", config.Route{HSTS: &config.HSTS{MaxAge: config.Duration(time.Hour)}}, "/a", "api.example.com", true, "", "", 200, "", "max-age=3600"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := Compile(&tc.route)
			r := httptest.NewRequest("POST", tc.target, nil)
			r.Host = tc.host
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if tc.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tc.proto)
			}
			if tc.peer != "" {
				r.RemoteAddr = tc.peer
			}
			w := httptest.NewRecorder()
			req := &stage.Request{W: w, R: r, Env: &stage.Env{ClientIP: trusted}}
			req.Run(stage.NewChain(s, next{}))
			if w.Code != tc.status || w.Header().Get("Location") != tc.location || w.Header().Get("Strict-Transport-Security") != tc.stsHeader {
				t.Fatalf("%d Location %q STS %q", w.Code, w.Header().Get("Location"), w.Header().Get("Strict-Transport-Security"))
			}
		})
	}
	if Compile(&config.Route{}) != nil {
		t.Fatal("a route without the options has a stage")
	}
}
