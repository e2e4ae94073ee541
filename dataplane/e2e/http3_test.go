package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestHTTP3Edge: the real data plane with --tls-listen and --http3 serves
// HTTP/3 on the TLS port over UDP to a real HTTP/3 client (quic-go),
// with the certificate written through the admin API (by SNI), answered
// by the service; TLS answers advertise it in Alt-Svc; a renewed
// certificate reaches new HTTP/3 handshakes without a restart.
func TestHTTP3Edge(t *testing.T) {
	ctx := context.Background()
	cp := startControlPlane(t, "cp-h3", "bolt:"+filepath.Join(t.TempDir(), "cp.db"))
	up := startUpstream(t, "h3-svc")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	startDataPlane(t, "dp-h3", cp.url, filepath.Join(t.TempDir(), "dp"), "--tls-listen", tlsAddr, "--http3")
	_, port, _ := net.SplitHostPort(tlsAddr)

	ca := testutil.NewCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	first := ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "all", config.Route{Paths: []string{"/*"}, Service: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Certificates().Put(ctx, "api", config.Certificate{Cert: first.CertPEM, Key: first.KeyPEM, SNIs: []string{"api.example.com"}}); err != nil {
		t.Fatal(err)
	}

	// A new transport per call: a new QUIC handshake each time, so a
	// renewed certificate shows.
	h3Get := func() (status int, body, proto, serial string, err error) {
		tr := &http3.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				return quic.DialAddrEarly(ctx, tlsAddr, tc, qc)
			},
		}
		defer tr.Close()
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		resp, err := c.Get("https://api.example.com:" + port + "/hello")
		if err != nil {
			return 0, "", "", "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Proto, resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
	}
	var status int
	var body, proto, serial string
	testutil.Eventually(t, 15*time.Second, func() bool {
		var err error
		status, body, proto, serial, err = h3Get()
		return err == nil && status == 200
	}, "an HTTP/3 answer with the certificate written through the admin API")
	if proto != "HTTP/3.0" || !strings.Contains(body, `"service":"h3-svc"`) || serial != first.Cert.SerialNumber.String() {
		t.Fatalf("HTTP/3: %s %d %q serial %s", proto, status, body, serial)
	}

	// TLS over TCP advertises it.
	tcp := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, tlsAddr)
		}}}
	resp, err := tcp.Get("https://api.example.com:" + port + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Alt-Svc"), `h3=":`+port+`"; ma=86400`; got != want || resp.ProtoMajor != 2 {
		t.Fatalf("%s Alt-Svc %q, want %q", resp.Proto, got, want)
	}

	// Renewed through the admin API: new HTTP/3 handshakes get it.
	renewed := ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	if _, _, err := cp.admin.Certificates().Put(ctx, "api", config.Certificate{Cert: renewed.CertPEM, Key: renewed.KeyPEM, SNIs: []string{"api.example.com"}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		_, _, _, serial, err := h3Get()
		return err == nil && serial == renewed.Cert.SerialNumber.String()
	}, "the renewed certificate on a new HTTP/3 handshake")
}

// TestHTTP3AdvertisePort: behind a load balancer that maps ports, the data
// plane advertises the port clients reach (PORTICO_HTTP3_ADVERTISE_PORT)
// in Alt-Svc, and still serves HTTP/3 on its own listener's port.
func TestHTTP3AdvertisePort(t *testing.T) {
	ctx := context.Background()
	cp := startControlPlane(t, "cp-h3port", "bolt:"+filepath.Join(t.TempDir(), "cp.db"))
	up := startUpstream(t, "h3port-svc")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	startDataPlaneEnv(t, []string{"PORTICO_HTTP3_ADVERTISE_PORT=443"}, "dp-h3port", cp.url, filepath.Join(t.TempDir(), "dp"),
		"--tls-listen", tlsAddr, "--http3")
	ca := testutil.NewCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	leaf := ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "all", config.Route{Paths: []string{"/*"}, Service: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Certificates().Put(ctx, "api", config.Certificate{Cert: leaf.CertPEM, Key: leaf.KeyPEM, SNIs: []string{"api.example.com"}}); err != nil {
		t.Fatal(err)
	}
	tcp := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, tlsAddr)
		}}}
	var altSvc string
	testutil.Eventually(t, 15*time.Second, func() bool {
		resp, err := tcp.Get("https://api.example.com/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		altSvc = resp.Header.Get("Alt-Svc")
		return resp.StatusCode == 200
	}, "an HTTPS answer")
	if want := `h3=":443"; ma=86400`; altSvc != want {
		t.Fatalf("Alt-Svc %q, want %q", altSvc, want)
	}
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, tlsAddr, tc, qc)
		},
	}
	defer tr.Close()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://api.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/3.0" {
		t.Fatalf("HTTP/3 on the listener's port: %s %d", resp.Proto, resp.StatusCode)
	}
}
