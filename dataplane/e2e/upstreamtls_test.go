package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestUpstreamMTLSEdge: a service with tls (its CA, a server name, a client
// certificate and key) written through the admin API reaches the real data
// plane in its snapshot, which calls an mTLS upstream with it; the client
// key is in no answer, no export, no log of either binary, nor in the
// state dir beyond the snapshot file (0600). A service without the client
// certificate is refused by the upstream (502).
func TestUpstreamMTLSEdge(t *testing.T) {
	ctx := context.Background()
	ca, clientCA := testutil.NewCA(t), testutil.NewCA(t)
	client := clientCA.IssueClient(t, "portico-gw")
	leaf := ca.Issue(t, []string{"pay.internal"}, time.Time{}, time.Time{})
	cert, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "mtls client=%s", r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	up.Config.ErrorLog = log.New(io.Discard, "", 0)
	up.StartTLS()
	t.Cleanup(up.Close)

	cp := startControlPlane(t, "cp-mtls", "bolt:"+filepath.Join(t.TempDir(), "cp.db"))
	stateDir := filepath.Join(t.TempDir(), "dp")
	dp := startDataPlane(t, "dp-mtls", cp.url, stateDir)
	withCert := config.Service{Targets: []config.Target{{URL: up.URL}}, Retries: &config.Retries{Attempts: 1},
		TLS: &config.ServiceTLS{CA: ca.PEM, ServerName: "pay.internal", ClientCert: client.CertPEM, ClientKey: client.KeyPEM}}
	got, _, err := cp.admin.Services().Put(ctx, "pay", withCert)
	if err != nil || got.TLS == nil || got.TLS.ClientKey != "" {
		t.Fatalf("put: %v (answer %+v)", err, got)
	}
	noCert := config.Service{Targets: []config.Target{{URL: up.URL}}, Retries: &config.Retries{Attempts: 1},
		TLS: &config.ServiceTLS{CA: ca.PEM, ServerName: "pay.internal"}}
	if _, _, err := cp.admin.Services().Put(ctx, "anon", noCert); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ name, path, svc string }{{"pay", "/pay/*", "pay"}, {"anon", "/anon/*", "anon"}} {
		if _, _, err := cp.admin.Routes().Put(ctx, r.name, config.Route{Paths: []string{r.path}, Service: r.svc}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(dp.url + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var status int
	var body string
	testutil.Eventually(t, 15*time.Second, func() bool {
		status, body = get("/pay/x")
		return status == 200
	}, "the data plane calling the mTLS upstream with the client certificate")
	if body != "mtls client=portico-gw" {
		t.Fatalf("body %q", body)
	}
	if status, body := get("/anon/x"); status != http.StatusBadGateway {
		t.Fatalf("without a client certificate: %d %q, want 502", status, body)
	}

	// The key is in no answer, export, log, and only in the state dir's
	// snapshot (0600), which the data plane boots from.
	secret := strings.Split(client.KeyPEM, "\n")[1][:40]
	list, _, err := cp.admin.Services().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	export, err := cp.admin.ExportConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for what, v := range map[string]any{"list": list, "export": export} {
		if strings.Contains(fmt.Sprintf("%+v", v), secret) {
			t.Fatalf("the %s carries the client key", what)
		}
	}
	for _, f := range []string{cp.proc.log, dp.proc.log} {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), secret) {
			t.Fatalf("%s carries the client key", f)
		}
	}
	found := 0
	err = filepath.Walk(stateDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), secret) {
			found++
			if fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s holds the client key with mode %v", p, fi.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil || found == 0 {
		t.Fatalf("state dir: %v, %d files with the key (want the snapshot: the data plane boots from it)", err, found)
	}
}
