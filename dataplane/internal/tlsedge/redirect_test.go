package tlsedge

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// TestHTTPSRedirectEndToEnd: a route with https_redirect answers 308 on the
// plain listener, to the TLS listener's port, keeping method and body
// (a POST followed by a real client arrives as a POST with its body), and
// answers over TLS with its HSTS header; a route without it is served on
// both.
func TestHTTPSRedirectEndToEnd(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(b))
	}))
	t.Cleanup(app.Close)
	p := newPKI(t)
	c := New("", nil)
	// The TLS listener's port is only known once it listens: serve the
	// handler on both listeners from one gateway.
	tlsAddr, plainAddr := gatewayBoth(t, c, func(tlsPort int) *config.Config {
		return &config.Config{
			Certificates: []config.Certificate{p.cert(t, "edge", 1, "localhost")},
			Services:     []config.Service{{Name: "app", Targets: []config.Target{{URL: app.URL}}}},
			Routes: []*config.Route{
				{Name: "secure", Paths: []string{"/secure/*"}, Service: "app", HTTPSRedirect: true, HTTPSPort: tlsPort,
					HSTS: &config.HSTS{MaxAge: config.Duration(24 * time.Hour), IncludeSubdomains: true}},
				{Name: "open", Paths: []string{"/open"}, Service: "app"},
			},
		}
	})
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Post("http://localhost:"+portOf(plainAddr)+"/secure/x?q=1", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 308 || resp.Header.Get("Location") != "https://localhost:"+tlsPort+"/secure/x?q=1" || resp.Header.Get("Strict-Transport-Security") != "" {
		t.Fatalf("plain: %d Location %q STS %q", resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Strict-Transport-Security"))
	}
	// A client that follows it with the test CA: POST and body kept, HSTS set.
	client := h2Client(p, tlsAddr)
	client.Transport.(*http.Transport).DialContext = nil // follow the Location for real
	resp, err = client.Post("http://localhost:"+portOf(plainAddr)+"/secure/x?q=1", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "POST /secure/x?q=1 payload" || resp.ProtoMajor != 2 ||
		resp.Header.Get("Strict-Transport-Security") != "max-age=86400; includeSubDomains" {
		t.Fatalf("followed: %d %s %q STS %q", resp.StatusCode, resp.Proto, body, resp.Header.Get("Strict-Transport-Security"))
	}
	if resp, err := noFollow.Get("http://localhost:" + portOf(plainAddr) + "/open"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("route without https_redirect over plain HTTP: %v %v", resp, err)
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// gatewayBoth listens for TLS first, builds the configuration knowing its
// port, and serves the proxy handler on a plain and the TLS listener.
func gatewayBoth(t *testing.T, c *Certificates, cfgOf func(tlsPort int) *config.Config) (tlsAddr, plainAddr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portOf(ln.Addr().String()))
	h := newProxy(t, cfgOf(port), c)
	srv := h.Server(nil)
	Configure(srv, c)
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	return ln.Addr().String(), plain.Listener.Addr().String()
}
