package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestTLSEdge: certificates written through the admin API are served by a
// data plane's --tls-listen, chosen by SNI (exact, wildcard, the default
// for clients without SNI), over HTTP/2 to a real client (curl); a
// renewed certificate reaches new handshakes while an open connection
// goes on; the admin API shows which data plane serves it; the private
// key appears in no log, answer or export.
func TestTLSEdge(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is required: apt-get install curl")
	}
	ctx := context.Background()
	cp := startControlPlane(t, "cp-tls", "bolt:"+filepath.Join(t.TempDir(), "cp.db"))
	up := startUpstream(t, "tls-svc")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	dp := startDataPlane(t, "dp-tls", cp.url, filepath.Join(t.TempDir(), "dp"), "--tls-listen", tlsAddr, "--tls-default-cert", "api")
	_, port, _ := net.SplitHostPort(tlsAddr)

	ca := testutil.NewCA(t)
	caFile := ca.WriteCA(t, t.TempDir())
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	api := ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	wild := ca.Issue(t, []string{"*.example.com"}, time.Time{}, time.Time{})
	s := svc(up)
	if _, _, err := cp.admin.Services().Put(ctx, "s", s); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "all", config.Route{Paths: []string{"/*"}, Service: "s"}); err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]testutil.Leaf{"api": api, "wild": wild} {
		got, _, err := cp.admin.Certificates().Put(ctx, name, config.Certificate{Cert: l.CertPEM, Key: l.KeyPEM, SNIs: l.Cert.DNSNames})
		if err != nil || got.Key != "" {
			t.Fatalf("put %s: %v (key in the answer: %t)", name, err, got != nil && got.Key != "")
		}
	}

	serial := func(sni string) string {
		conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: sni, RootCAs: roots})
		if err != nil {
			return ""
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return serial("api.example.com") == api.Cert.SerialNumber.String() },
		"the data plane serving the certificate written through the admin API")
	if got := serial("shop.example.com"); got != wild.Cert.SerialNumber.String() {
		t.Fatalf("shop.example.com: serial %s, want the wildcard's", got)
	}
	noSNI, err := tls.Dial("tcp", tlsAddr, &tls.Config{InsecureSkipVerify: true}) // an IP address: no SNI
	if err != nil {
		t.Fatal(err)
	}
	if got := noSNI.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(api.Cert.SerialNumber) != 0 {
		t.Fatalf("no SNI: serial %s, want the --tls-default-cert's", got)
	}
	noSNI.Close()

	// curl over HTTPS with the test CA: HTTP/2, answered by the service.
	for _, host := range []string{"api.example.com", "shop.example.com"} {
		out, err := exec.Command(curl, "-sS", "--cacert", caFile, "--resolve", host+":"+port+":127.0.0.1",
			"-w", "\n%{http_version}", "https://"+host+":"+port+"/hello").CombinedOutput()
		if err != nil || !strings.HasSuffix(string(out), "\n2") || !strings.Contains(string(out), `"service":"tls-svc"`) {
			t.Fatalf("curl %s: %v: %s", host, err, out)
		}
	}

	// Rotation: an open HTTP/2 connection keeps working, new handshakes
	// get the renewed certificate.
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, tlsAddr)
		},
	}}
	request := func() (serial string, reused bool) {
		t.Helper()
		var info httptrace.GotConnInfo
		req, _ := http.NewRequest("GET", "https://api.example.com/x", nil)
		req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { info = i }}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("through the open connection: %d %s", resp.StatusCode, resp.Proto)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String(), info.Reused
	}
	before, _ := request()
	renewed := ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	if _, _, err := cp.admin.Certificates().Put(ctx, "api", config.Certificate{Cert: renewed.CertPEM, Key: renewed.KeyPEM, SNIs: []string{"api.example.com"}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return serial("api.example.com") == renewed.Cert.SerialNumber.String() },
		"new handshakes getting the renewed certificate")
	if after, reused := request(); !reused || after != before {
		t.Fatalf("the open connection was dropped or changed: reused=%v serial %s → %s", reused, before, after)
	}

	// The admin API says who serves it.
	testutil.Eventually(t, 15*time.Second, func() bool {
		c, err := cp.admin.Certificates().Get(ctx, "api")
		return err == nil && c.Status != nil && slices.Contains(c.Status.ServedBy, "dp-tls")
	}, "GET /v1/certificates/api listing dp-tls in served_by")
	if st := dp.status(t); fmt.Sprint(st["tls_certificates"]) != "[api wild]" {
		t.Fatalf("/status tls_certificates = %v", st["tls_certificates"])
	}

	// The keys are in no log line, no answer and no export.
	exp, err := cp.admin.ExportConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, _, err := cp.admin.Certificates().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []testutil.Leaf{api, wild, renewed} {
		secret := strings.Split(l.KeyPEM, "\n")[1][:40]
		for _, f := range []string{cp.proc.log, dp.proc.log} {
			if data, _ := os.ReadFile(f); strings.Contains(string(data), secret) {
				t.Fatalf("%s carries a private key", f)
			}
		}
		for _, c := range append(exp.Config.Certificates, list...) {
			if c.Key != "" {
				t.Fatalf("certificate %s returned with its key", c.Name)
			}
		}
	}
}

// TestTLSRejectedCertificateLoudly: a data plane handed a certificate it
// cannot use (written to its state dir as another control-plane version
// could have sent it: a key of another certificate) serves the rest, the
// other certificates included, and says so like any rejected object:
// /status, the metric and one ERROR line that does not carry the key.
func TestTLSRejectedCertificateLoudly(t *testing.T) {
	up := startUpstream(t, "tlsrej-svc")
	stateDir := filepath.Join(t.TempDir(), "dp")
	ca := testutil.NewCA(t)
	good := ca.Issue(t, []string{"good.example.com"}, time.Time{}, time.Time{})
	bad := ca.Issue(t, []string{"bad.example.com"}, time.Time{}, time.Time{})
	cfg := &config.Config{
		Services: []config.Service{svc(up)},
		Routes:   []*config.Route{{Name: "all", Paths: []string{"/*"}, Service: "s"}},
		Certificates: []config.Certificate{
			{Name: "bad", Cert: bad.CertPEM, Key: good.KeyPEM, SNIs: []string{"bad.example.com"}, Meta: config.Meta{Version: 1, Revision: 5}},
			{Name: "good", Cert: good.CertPEM, Key: good.KeyPEM, SNIs: []string{"good.example.com"}, Meta: config.Meta{Version: 1, Revision: 5}},
		},
	}
	cfg.Services[0].Name = "s"
	cfg.Sort()
	_, raw, err := snapshot.Encode(5, cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "snapshot.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	dp := startDataPlane(t, "dp-tlsrej", "http://"+testutil.RefusedAddr(t), stateDir, "--tls-listen", tlsAddr)

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	dial := func(sni string) error {
		conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{ServerName: sni, RootCAs: roots})
		if err == nil {
			conn.Close()
		}
		return err
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return dial("good.example.com") == nil }, "the good certificate served")
	if dial("bad.example.com") == nil {
		t.Fatal("the rejected certificate was served")
	}
	if !serves(dp.url+"/x", "tlsrej-svc") {
		t.Fatal("the routes stopped with the certificate")
	}
	st := dp.status(t)
	objs, _ := st["rejected_objects"].([]any)
	if len(objs) != 1 || !strings.Contains(fmt.Sprint(objs[0]), "certificate") || !strings.Contains(fmt.Sprint(objs[0]), "bad") {
		t.Fatalf("/status rejected_objects = %v, want the certificate bad", st["rejected_objects"])
	}
	if _, metrics := get(dp.ops + "/metrics"); !strings.Contains(metrics, "\nportico_config_objects_rejected 1\n") {
		t.Errorf("/metrics lacks portico_config_objects_rejected 1:\n%s", grepLines(metrics, "portico_config"))
	}
	logs, _ := os.ReadFile(dp.proc.log)
	if n := strings.Count(string(logs), "configuration object rejected"); n != 1 {
		t.Errorf("%d log lines about rejected objects, want 1:\n%s", n, logs)
	}
	if strings.Contains(string(logs), strings.Split(good.KeyPEM, "\n")[1][:40]) {
		t.Fatal("the data plane's log carries a private key")
	}
}
