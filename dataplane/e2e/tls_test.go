package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// writeCert makes a throwaway CA and a server certificate for 127.0.0.1
// signed by it, and writes ca.pem, cert.pem and key.pem into dir.
func writeCert(t *testing.T, dir string) (caFile, certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portico test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	roots = x509.NewCertPool()
	roots.AddCert(caCert)
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", leafDER), write("key.pem", "EC PRIVATE KEY", keyDER), roots
}

// TestTLSAndSecretHygiene: the admin and sync APIs over TLS (a data plane
// verifying the control plane with its own CA), and no token or API key in
// any log line, audit entry, export or state file of any process.
func TestTLSAndSecretHygiene(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	caFile, certFile, keyFile, roots := writeCert(t, dir)
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cpProc := start(t, "cp-tls", "controlplane", "--listen", addr, "--store", "bolt:"+filepath.Join(dir, "cp.db"),
		"--admin-token", adminToken, "--dataplane-token", dpToken, "--tls-cert", certFile, "--tls-key", keyFile)
	httpsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	testutil.Eventually(t, 20*time.Second, func() bool {
		resp, err := httpsClient.Get("https://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "control plane answering over TLS")
	// Plain HTTP on the TLS port gets nothing useful.
	if resp, err := http.Get("http://" + addr + "/v1/services"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS listener")
		}
	}
	admin, err := client.New("https://"+addr, adminToken, client.WithHTTPClient(httpsClient))
	if err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, "tls-svc")
	dp := startDataPlane(t, "dp-tls", "https://"+addr, filepath.Join(dir, "dp"), "--controlplane-ca", caFile)
	if _, _, err := admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := admin.Consumers().Put(ctx, "alice", config.Consumer{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := admin.Routes().Put(ctx, "keyed", config.Route{Paths: []string{"/keyed"}, Service: "s",
		Auth: &config.RouteAuth{APIKey: true}}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "https://"+addr+"/v1/consumers/alice/api-keys", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := httpsClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create key: %v %v", resp, err)
	}
	var created struct{ Key string }
	if err := jsonDecode(resp, &created); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return withKey(dp.url+"/keyed", created.Key) == 200 },
		"data plane synced over TLS and accepting the key")
	// Credentials in every place a client can put them.
	for range 3 {
		r, _ := http.NewRequest("GET", dp.url+"/keyed?api_key="+created.Key, nil)
		r.Header.Set("X-API-Key", created.Key)
		r.Header.Set("Authorization", "Bearer "+adminToken)
		r.Header.Set("Cookie", "session="+dpToken)
		if resp, err := httpc.Do(r); err == nil {
			resp.Body.Close()
		}
	}
	exp, _ := admin.ExportConfig(ctx)
	page, _ := admin.Audit(ctx, 0, 100)
	cpProc.term(t)
	dp.term(t)
	secrets := map[string]string{"admin token": adminToken, "data-plane token": dpToken, "API key": created.Key}
	places := map[string]string{
		"control-plane log": readAll(cpProc.log),
		"data-plane log":    readAll(dp.log),
		"data-plane state":  readAll(filepath.Join(dp.stateDir, "snapshot.json")),
		"export":            fmt.Sprint(exp),
		"audit":             fmt.Sprint(page),
	}
	for what, secret := range secrets {
		for where, text := range places {
			if strings.Contains(text, secret) {
				t.Errorf("the %s appears in the %s", what, where)
			}
		}
	}
	if !strings.Contains(places["data-plane log"], `"msg":"access"`) {
		t.Fatal("no access log lines to check")
	}
}

func readAll(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
