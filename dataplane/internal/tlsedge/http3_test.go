package tlsedge

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/portico-gw/portico/shared/apikey"
	"github.com/portico-gw/portico/shared/config"
)

// gatewayHTTP3 serves the real proxy handler like main does with --http3:
// the TLS listener (HTTP/1.1 and HTTP/2, Alt-Svc on every answer) and
// HTTP/3 on the same port number over UDP.
func gatewayHTTP3(t *testing.T, c *Certificates, cfg *config.Config) string {
	t.Helper()
	h := newProxy(t, cfg, c)
	srv := h.Server(nil)
	Configure(srv, c)
	// The TCP port must be free on UDP too: a few tries.
	var ln net.Listener
	var pc net.PacketConn
	for range 20 {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if pc, err = ListenHTTP3(ln.Addr()); err == nil {
			break
		}
		ln.Close()
		ln = nil
	}
	if ln == nil {
		t.Fatal("no port free on both TCP and UDP")
	}
	h3 := HTTP3(srv, c, nil)
	AdvertiseHTTP3(srv, ln.Addr().(*net.TCPAddr).Port)
	go srv.ServeTLS(ln, "", "")
	done := make(chan error, 1)
	go func() { done <- ServeHTTP3(h3, pc) }()
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ShutdownHTTP3(ctx, h3); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		pc.Close()
	})
	return ln.Addr().String()
}

// h3Client speaks HTTP/3 only (quic-go's client) to addr, trusting roots.
func h3Client(p *pki, addr string) (*http.Client, *http3.Transport) {
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.roots},
		// Every name resolves to the gateway; the URL's host is the SNI.
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, addr, tlsCfg, cfg)
		},
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr
}

// TestHTTP3: a real HTTP/3 client (quic-go) through the gateway on the TLS
// port over UDP: the same handler (auth 401/200 with the identity reaching
// the service, the body limit 413, the rate limit 429), the same
// certificates by SNI (exact, wildcard; an unknown name refused), and the
// TLS listener advertising it in Alt-Svc over HTTP/1.1 and HTTP/2.
func TestHTTP3(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		// The service's own Alt-Svc must not reach clients beside the
		// gateway's.
		w.Header().Set("Alt-Svc", `h3=":9999"; ma=60`)
		fmt.Fprintf(w, "%s %s consumer=%s proto=%s body=%d", r.Method, r.URL.Path,
			r.Header.Get("X-Consumer-Name"), r.Header.Get("X-Forwarded-Proto"), len(b))
	}))
	t.Cleanup(app.Close)
	key, id, hash, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	p := newPKI(t)
	c := New("", nil)
	cfg := &config.Config{
		Certificates: []config.Certificate{p.cert(t, "api", 1, "api.example.com"), p.cert(t, "wild", 1, "*.example.org")},
		Services:     []config.Service{{Name: "app", Targets: []config.Target{{URL: app.URL}}}},
		Consumers:    []config.Consumer{{Name: "alice", APIKeys: []config.APIKey{{ID: id, Hash: hash, Prefix: apikey.Prefix(key)}}}},
		Routes: []*config.Route{
			{Name: "site", Paths: []string{"/*"}, Service: "app", MaxBodyBytes: 1024},
			{Name: "admin", Paths: []string{"/admin/*"}, Service: "app", Auth: &config.RouteAuth{APIKey: true}},
			{Name: "limited", Paths: []string{"/limited"}, Service: "app", RateLimit: &config.RateLimit{Limit: 1, Window: config.Duration(time.Hour)}},
		},
	}
	addr := gatewayHTTP3(t, c, cfg)
	_, port, _ := net.SplitHostPort(addr)
	client, tr := h3Client(p, addr)
	t.Cleanup(func() { tr.Close() })

	type answer struct {
		status int
		body   string
		proto  string
		cn     string
	}
	do := func(method, url string, body string, hdr ...string) (answer, error) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return answer{}, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		a := answer{status: resp.StatusCode, body: string(b), proto: resp.Proto}
		if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
			a.cn = resp.TLS.PeerCertificates[0].Subject.CommonName
		}
		return a, nil
	}
	for _, tc := range []struct {
		name, method, url, body string
		hdr                     []string
		status                  int
		contains                string
		cn                      string
	}{
		{"plain GET", "GET", "https://api.example.com/hello", "", nil, 200, "GET /hello consumer= proto=https body=0", "api.example.com"},
		{"wildcard certificate", "GET", "https://shop.example.org/x", "", nil, 200, "GET /x", "*.example.org"},
		{"POST body", "POST", "https://api.example.com/up", strings.Repeat("b", 1000), nil, 200, "body=1000", "api.example.com"},
		{"body over the route's limit", "POST", "https://api.example.com/up", strings.Repeat("b", 2000), nil, 413, "too-large", ""},
		{"no key", "GET", "https://api.example.com/admin/x", "", nil, 401, "unauthorized", ""},
		{"key", "GET", "https://api.example.com/admin/x", "", []string{"X-Api-Key", key}, 200, "consumer=alice", ""},
		{"forged identity replaced", "GET", "https://api.example.com/admin/x", "", []string{"X-Api-Key", key, "X-Consumer-Name", "mallory"}, 200, "consumer=alice", ""},
		{"rate limit: first", "GET", "https://api.example.com/limited", "", nil, 200, "GET /limited", ""},
		{"rate limit: second", "GET", "https://api.example.com/limited", "", nil, 429, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := do(tc.method, tc.url, tc.body, tc.hdr...)
			if err != nil {
				t.Fatal(err)
			}
			if a.status != tc.status || !strings.Contains(a.body, tc.contains) || a.proto != "HTTP/3.0" {
				t.Fatalf("%s %d %q, want %d containing %q over HTTP/3.0", a.proto, a.status, a.body, tc.status, tc.contains)
			}
			if tc.cn != "" && a.cn != tc.cn {
				t.Fatalf("certificate %q, want %q", a.cn, tc.cn)
			}
		})
	}
	// An unknown server name: no certificate, no connection.
	if _, err := do("GET", "https://unknown.example.net/", ""); err == nil {
		t.Fatal("HTTP/3 to an unknown server name succeeded")
	}

	// The TLS listener advertises HTTP/3 on its port, over HTTP/2 and
	// HTTP/1.1 alike, on the gateway's own answers too (401).
	want := `h3=":` + port + `"; ma=86400`
	for _, h2 := range []bool{true, false} {
		tcp := &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: p.roots},
			ForceAttemptHTTP2: h2,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		}}
		if !h2 {
			tcp.Transport.(*http.Transport).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		for _, path := range []string{"/hello", "/admin/x"} {
			resp, err := tcp.Get("https://api.example.com" + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Values("Alt-Svc"); len(got) != 1 || got[0] != want {
				t.Fatalf("%s %s: Alt-Svc %q, want %q", resp.Proto, path, got, want)
			}
		}
	}
}
