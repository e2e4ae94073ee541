package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/dataplane/internal/discovery"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// tlsUpstream is a real HTTPS server with a certificate for svc.internal
// issued by ca. With clientCA it requires a client certificate signed by
// it (mTLS). It answers with the client certificate's common name, and
// counts health-check requests.
type tlsUpstream struct {
	*httptest.Server
	probes atomic.Int64
}

func newTLSUpstream(t *testing.T, ca *testutil.CA, clientCA *testutil.CA) *tlsUpstream {
	t.Helper()
	leaf := ca.Issue(t, []string{"svc.internal"}, time.Time{}, time.Time{})
	cert, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	u := &tlsUpstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") == "portico-health-check" {
			u.probes.Add(1)
		}
		cn := "-"
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			cn = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprintf(w, "tls client=%s", cn)
	}))
	u.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(clientCA.Cert)
		u.TLS.ClientCAs, u.TLS.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	u.Server.Config.ErrorLog = slog.NewLogLogger(slog.New(slog.NewTextHandler(io.Discard, nil)).Handler(), slog.LevelError)
	u.StartTLS()
	t.Cleanup(u.Close)
	return u
}

// TestUpstreamTLS: https targets verified against the service's CA and
// server name, client certificates presented to an mTLS upstream, and
// every way verification can fail refused (502), never skipped: the
// system roots without a ca, a wrong CA, a name the certificate does not
// carry, a missing or untrusted client certificate.
func TestUpstreamTLS(t *testing.T) {
	ca, clientCA, otherCA := testutil.NewCA(t), testutil.NewCA(t), testutil.NewCA(t)
	client := clientCA.IssueClient(t, "portico-gw")
	stranger := otherCA.IssueClient(t, "stranger")
	plain := newTLSUpstream(t, ca, nil)
	mtls := newTLSUpstream(t, ca, clientCA)

	cases := []struct {
		name   string
		target string
		tls    *config.ServiceTLS
		status int
		body   string
	}{
		{"ca and server name", plain.URL, &config.ServiceTLS{CA: ca.PEM, ServerName: "svc.internal"}, 200, "tls client=-"},
		{"no tls block: system roots do not know the test CA", plain.URL, nil, 502, ""},
		{"empty tls block: system roots", plain.URL, &config.ServiceTLS{ServerName: "svc.internal"}, 502, ""},
		{"wrong CA", plain.URL, &config.ServiceTLS{CA: otherCA.PEM, ServerName: "svc.internal"}, 502, ""},
		{"name not in the certificate", plain.URL, &config.ServiceTLS{CA: ca.PEM, ServerName: "other.internal"}, 502, ""},
		{"no server name: the IP dialled is not in the certificate", plain.URL, &config.ServiceTLS{CA: ca.PEM}, 502, ""},
		{"mTLS with the client certificate", mtls.URL, &config.ServiceTLS{CA: ca.PEM, ServerName: "svc.internal", ClientCert: client.CertPEM, ClientKey: client.KeyPEM}, 200, "tls client=portico-gw"},
		{"mTLS without a client certificate", mtls.URL, &config.ServiceTLS{CA: ca.PEM, ServerName: "svc.internal"}, 502, ""},
		{"mTLS with an untrusted client certificate", mtls.URL, &config.ServiceTLS{CA: ca.PEM, ServerName: "svc.internal", ClientCert: stranger.CertPEM, ClientKey: stranger.KeyPEM}, 502, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{
				Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: tc.target}}, TLS: tc.tls,
					Retries: &config.Retries{Attempts: 1}}},
				Routes: []*config.Route{{Name: "r", Paths: []string{"/*"}, Service: "s"}},
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			_, url := newGateway(t, cfg)
			status, _, body := do(t, "GET", url+"/x", nil)
			if status != tc.status || tc.body != "" && body != tc.body {
				t.Fatalf("status %d body %q, want %d %q", status, body, tc.status, tc.body)
			}
		})
	}
}

// TestUpstreamTLSHealthChecks: active health checks reach an mTLS instance
// with the service's TLS configuration (the instance counts probes that
// completed the handshake), and traffic keeps flowing.
func TestUpstreamTLSHealthChecks(t *testing.T) {
	ca, clientCA := testutil.NewCA(t), testutil.NewCA(t)
	client := clientCA.IssueClient(t, "portico-gw")
	up := newTLSUpstream(t, ca, clientCA)
	cfg := &config.Config{
		Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: up.URL}},
			TLS:         &config.ServiceTLS{CA: ca.PEM, ServerName: "svc.internal", ClientCert: client.CertPEM, ClientKey: client.KeyPEM},
			HealthCheck: &config.HealthCheck{Path: "/health", Interval: config.Duration(100 * time.Millisecond), UnhealthyThreshold: 1}}},
		Routes: []*config.Route{{Name: "r", Paths: []string{"/*"}, Service: "s"}},
	}
	_, url := newGateway(t, cfg)
	testutil.Eventually(t, 10*time.Second, func() bool { return up.probes.Load() >= 3 }, "three probes over mTLS")
	if status, _, body := do(t, "GET", url+"/x", nil); status != 200 || body != "tls client=portico-gw" {
		t.Fatalf("after probes: %d %q", status, body)
	}
}

// TestUpstreamTLSConsul: a Consul service with scheme https and a tls
// block: instances discovered from a real agent are reached over mTLS
// with the configured server name (their address is an IP the
// certificate does not carry).
func TestUpstreamTLSConsul(t *testing.T) {
	ca, clientCA := testutil.NewCA(t), testutil.NewCA(t)
	client := clientCA.IssueClient(t, "portico-gw")
	up := newTLSUpstream(t, ca, clientCA)
	c := testutil.StartConsul(t)
	cc, err := api.NewClient(&api.Config{Address: c.Addr})
	if err != nil {
		t.Fatal(err)
	}
	host, portS, _ := net.SplitHostPort(up.Listener.Addr().String())
	port, _ := strconv.Atoi(portS)
	if err := cc.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "tlsvc-1", Name: "tlsvc", Address: host, Port: port}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := discovery.NewWatcher(cc, log, prometheus.NewRegistry())
	deps := testDeps()
	deps.Upstream.Watcher = w

	for _, tc := range []struct {
		name   string
		tls    *config.ServiceTLS
		status int
	}{
		{"mTLS", &config.ServiceTLS{CA: ca.PEM, ServerName: "svc.internal", ClientCert: client.CertPEM, ClientKey: client.KeyPEM}, 200},
		{"no client certificate", &config.ServiceTLS{CA: ca.PEM, ServerName: "svc.internal"}, 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{
				Services: []config.Service{{Name: "s", Consul: &config.ConsulSource{Service: "tlsvc", Scheme: "https"}, TLS: tc.tls,
					Retries: &config.Retries{Attempts: 1}}},
				Routes: []*config.Route{{Name: "r", Paths: []string{"/*"}, Service: "s"}},
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			h := NewHandler(Options{Log: log, Metrics: NewMetrics(prometheus.NewRegistry())})
			applyWith(t, h, deps, 1, cfg)
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			var status int
			var body string
			// Discovery fills the pool shortly after the table goes live.
			testutil.Eventually(t, 10*time.Second, func() bool {
				status, _, body = do(t, "GET", srv.URL+"/x", nil)
				return status != http.StatusServiceUnavailable
			}, "instances discovered")
			if status != tc.status || status == 200 && !strings.Contains(body, "client=portico-gw") {
				t.Fatalf("status %d body %q, want %d", status, body, tc.status)
			}
		})
	}
}
