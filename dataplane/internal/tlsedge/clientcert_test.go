package tlsedge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/dataplane/internal/grpcjson"
	"github.com/portico-gw/portico/dataplane/internal/proxy"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestClientCertificates: real TLS handshakes against the real proxy
// handler with client certificates made in the test. The listener asks
// for a certificate only on the names of certificate routes; the auth
// stage refuses missing, expired, revoked, wrongly signed and
// server-only certificates, maps the certificate to its consumer (groups,
// forwarded identity), and refuses plain HTTP and gRPC calls without one.
func TestClientCertificates(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(app.Close)
	ca, other := testutil.NewTestCA(t, "clients CA"), testutil.NewTestCA(t, "other CA")
	alice := ca.Issue(t, "alice", testutil.ClientCertOptions{})
	bob := ca.Issue(t, "bob-laptop", testutil.ClientCertOptions{DNS: []string{"bob.example.com"}})
	nobody := ca.Issue(t, "nobody", testutil.ClientCertOptions{})
	revoked := ca.Issue(t, "alice", testutil.ClientCertOptions{})
	expired := ca.Issue(t, "alice", testutil.ClientCertOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	serverOnly := ca.Issue(t, "alice", testutil.ClientCertOptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	forged := other.Issue(t, "alice", testutil.ClientCertOptions{})
	cc := &config.ClientCertAuth{CA: ca.PEM, CRLs: []string{ca.CRL(t, revoked.Leaf)}}

	p := newPKI(t)
	c := New("", nil)
	cfg := &config.Config{
		Certificates: []config.Certificate{p.cert(t, "edge", 1, "api.example.com", "mtls.example.com")},
		Services:     []config.Service{{Name: "app", Targets: []config.Target{{URL: app.URL}}}},
		Consumers: []config.Consumer{
			{Name: "alice", Groups: []string{"staff"}, CertIdentities: []string{"cn:alice"}},
			{Name: "bob", CertIdentities: []string{"dns:bob.example.com"}},
		},
		Routes: []*config.Route{
			{Name: "open", Hosts: []string{"api.example.com"}, Paths: []string{"/*"}, Service: "app"},
			{Name: "mtls", Hosts: []string{"mtls.example.com"}, Paths: []string{"/*"}, Service: "app", Auth: &config.RouteAuth{ClientCert: cc}},
			{Name: "staff", Hosts: []string{"mtls.example.com"}, Paths: []string{"/staff"}, Service: "app", Auth: &config.RouteAuth{ClientCert: cc, Groups: []string{"staff"}}},
		},
	}
	h := newProxy(t, cfg, c)
	srv := h.Server(nil)
	Configure(srv, c)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	// call makes a new connection (a new handshake) presenting cert (nil:
	// none) and reports whether the server asked for one.
	call := func(t *testing.T, host, path string, cert *tls.Certificate, hdr ...string) (int, http.Header, string, bool) {
		t.Helper()
		var asked atomic.Bool
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: p.roots, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				asked.Store(true)
				if cert == nil {
					return &tls.Certificate{}, nil
				}
				return cert, nil
			}},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
			ForceAttemptHTTP2: true,
		}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://"+host+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s%s: %v", host, path, err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, resp.Header, b.String(), asked.Load()
	}

	tests := []struct {
		name, host, path string
		cert             *tls.Certificate
		status           int
		contains         string
	}{
		{"no certificate", "mtls.example.com", "/x", nil, 401, "unauthorized"},
		{"alice", "mtls.example.com", "/x", &alice, 200, `"X-Consumer-Name":["alice"]`},
		{"alice's method", "mtls.example.com", "/x", &alice, 200, `"X-Auth-Method":["client_cert"]`},
		{"alice in staff", "mtls.example.com", "/staff", &alice, 200, `"X-Consumer-Groups":["staff"]`},
		{"bob by DNS SAN, not in staff", "mtls.example.com", "/staff", &bob, 403, "forbidden"},
		{"bob elsewhere", "mtls.example.com", "/x", &bob, 200, `"X-Consumer-Name":["bob"]`},
		{"valid, no consumer", "mtls.example.com", "/x", &nobody, 200, `"X-Auth-Method":["client_cert"]`},
		{"valid, no consumer, group route", "mtls.example.com", "/staff", &nobody, 403, "forbidden"},
		{"revoked", "mtls.example.com", "/x", &revoked, 401, "unauthorized"},
		{"expired", "mtls.example.com", "/x", &expired, 401, "unauthorized"},
		{"server certificate", "mtls.example.com", "/x", &serverOnly, 401, "unauthorized"},
		{"other CA", "mtls.example.com", "/x", &forged, 401, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body, asked := call(t, tt.host, tt.path, tt.cert)
			if code != tt.status || !strings.Contains(body, tt.contains) {
				t.Fatalf("%d %s; want %d with %s", code, body, tt.status, tt.contains)
			}
			if !asked {
				t.Fatal("the handshake did not ask for a certificate")
			}
			if code == 200 && strings.Contains(body, `"X-Consumer-Name":["alice"]`) && tt.cert != &alice {
				t.Fatal("identity")
			}
		})
	}
	// A name no certificate route serves is not asked (no browser prompt).
	if code, _, _, asked := call(t, "api.example.com", "/x", nil); code != 200 || asked {
		t.Fatalf("open name: %d, asked %v", code, asked)
	}
	// gRPC calls get a gRPC status.
	if code, hdr, _, _ := call(t, "mtls.example.com", "/x", nil, "Content-Type", "application/grpc"); code != 200 || hdr.Get("Grpc-Status") != "16" {
		t.Fatalf("gRPC without a certificate: %d %v", code, hdr)
	}
	// Plain HTTP to a certificate route: no certificate, refused.
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	req, _ := http.NewRequest("GET", plain.URL+"/x", nil)
	req.Host = "mtls.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("plain HTTP: %d", resp.StatusCode)
	}
}

func TestWantsClientCert(t *testing.T) {
	c := New("", nil)
	cc := &config.ClientCertAuth{CA: "x"}
	c.applyClientCertNames(&config.Config{Routes: []*config.Route{
		{Name: "a", Hosts: []string{"mtls.example.com", "*.svc.example.com"}, Auth: &config.RouteAuth{ClientCert: cc}},
		{Name: "b", Hosts: []string{"open.example.com"}},
	}})
	for name, want := range map[string]bool{"mtls.example.com": true, "MTLS.example.com.": true, "a.svc.example.com": true, "a.b.svc.example.com": true,
		"svc.example.com": false, "open.example.com": false, "": true} {
		if got := c.wantsClientCert(name); got != want {
			t.Errorf("%q: %v, want %v", name, got, want)
		}
	}
	c.applyClientCertNames(&config.Config{Routes: []*config.Route{{Name: "b", Hosts: []string{"open.example.com"}}}})
	if c.wantsClientCert("") || c.wantsClientCert("open.example.com") {
		t.Fatal("asked without any certificate route")
	}
	c.applyClientCertNames(&config.Config{Routes: []*config.Route{{Name: "a", Auth: &config.RouteAuth{ClientCert: cc}}}})
	if !c.wantsClientCert("anything.example.org") {
		t.Fatal("a route without hosts takes certificates on every name")
	}
}

// TestClientCertRevokedOnOpenConnection: the auth stage remembers
// verified certificates, but a CRL pushed after a certificate was
// accepted refuses it on the next request of the same open connection
// (HTTP/1.1 keep-alive and HTTP/2), and the other clients of the route
// keep working.
func TestClientCertRevokedOnOpenConnection(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Consumer-Name"))
	}))
	t.Cleanup(app.Close)
	ca := testutil.NewTestCA(t, "clients CA")
	alice, bob := ca.Issue(t, "alice", testutil.ClientCertOptions{}), ca.Issue(t, "bob", testutil.ClientCertOptions{})
	p := newPKI(t)
	c := New("", nil)
	config1 := func(cc *config.ClientCertAuth) *config.Config {
		return &config.Config{
			Certificates: []config.Certificate{p.cert(t, "edge", 1, "mtls.example.com")},
			Services:     []config.Service{{Name: "app", Targets: []config.Target{{URL: app.URL}}}},
			Consumers: []config.Consumer{
				{Name: "alice", CertIdentities: []string{"cn:alice"}},
				{Name: "bob", CertIdentities: []string{"cn:bob"}},
			},
			Routes: []*config.Route{{Name: "mtls", Hosts: []string{"mtls.example.com"}, Paths: []string{"/*"}, Service: "app", Auth: &config.RouteAuth{ClientCert: cc}}},
		}
	}
	log := slog.New(slog.DiscardHandler)
	h := proxy.NewHandler(proxy.Options{Log: log, Metrics: proxy.NewMetrics(prometheus.NewRegistry()), Limits: proxy.Limits{
		BodyReadTimeout: proxy.DefaultBodyReadTimeout, BodyMinRate: proxy.DefaultBodyMinRate, BodyMinRateGrace: proxy.DefaultBodyMinRateGrace,
		TunnelIdleTimeout: proxy.DefaultTunnelIdleTimeout, TunnelMaxLifetime: proxy.DefaultTunnelMaxLifetime,
	}})
	a := proxy.NewApplier(h, proxy.Deps{Upstream: upstream.Deps{Log: log}, GRPC: grpcjson.NewPool(grpcjson.PoolOptions{})})
	t.Cleanup(a.Close)
	rev := int64(0)
	apply := func(cfg *config.Config) {
		t.Helper()
		rev++
		cfg.Sort()
		s, _, err := snapshot.Encode(rev, cfg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if rej, err := a.Apply(s); err != nil || len(rej) > 0 {
			t.Fatalf("apply: %v %v", rej, err)
		}
		if rej := c.Apply(cfg); len(rej) > 0 {
			t.Fatalf("certificates rejected: %v", rej)
		}
	}
	apply(config1(&config.ClientCertAuth{CA: ca.PEM}))
	srv := h.Server(nil)
	Configure(srv, c)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })

	// client keeps one connection open, presenting cert; dials counts
	// the connections it made.
	client := func(cert tls.Certificate, h2 bool) (*http.Client, *atomic.Int32) {
		var dials atomic.Int32
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: p.roots, Certificates: []tls.Certificate{cert}},
			ForceAttemptHTTP2: h2,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				dials.Add(1)
				return (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
			},
		}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}, &dials
	}
	get := func(cl *http.Client) (int, string, string) {
		t.Helper()
		resp, err := cl.Get("https://mtls.example.com/x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Proto
	}
	type conn struct {
		name   string
		cl     *http.Client
		dials  *atomic.Int32
		proto  string
		author string
	}
	var conns []conn
	for _, h2 := range []bool{false, true} {
		cl, d := client(alice, h2)
		conns = append(conns, conn{"alice", cl, d, map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2], "alice"})
		cl, d = client(bob, h2)
		conns = append(conns, conn{"bob", cl, d, map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2], "bob"})
	}
	for round := range 2 { // the second round is answered from the cache
		for _, cn := range conns {
			if code, body, proto := get(cn.cl); code != 200 || body != cn.author || proto != cn.proto {
				t.Fatalf("round %d, %s over %s: %d %q %s", round, cn.name, cn.proto, code, body, proto)
			}
		}
	}
	apply(config1(&config.ClientCertAuth{CA: ca.PEM, CRLs: []string{ca.CRL(t, alice.Leaf)}}))
	for _, cn := range conns {
		code, body, _ := get(cn.cl)
		want := 200
		if cn.name == "alice" {
			want = 401
		}
		if code != want || (want == 200 && body != cn.author) {
			t.Errorf("after the CRL, %s over %s: %d %q, want %d", cn.name, cn.proto, code, body, want)
		}
		if n := cn.dials.Load(); n != 1 {
			t.Errorf("%s over %s made %d connections; the test needs one kept open", cn.name, cn.proto, n)
		}
	}
}
