package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// adminCall sends an admin API request with the admin token.
func adminCall(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	} else {
		rd = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	return resp.StatusCode, raw
}

// readDir concatenates the files of dir.
func readDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		if !e.IsDir() {
			b.WriteString(readAll(filepath.Join(dir, e.Name())))
		}
	}
	return b.String()
}

func withBasic(url, user, pass string) (int, string) {
	req, _ := http.NewRequest("GET", url, nil)
	req.SetBasicAuth(user, pass)
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var body json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, string(body)
}

// TestBasicAuthLifecycle: a basic-auth credential created through the
// control plane's API (generated password, bcrypt at the control plane's
// cost) authenticates on the data plane; the data plane holds the hash,
// never the password; nothing logs it; deleting the credential stops it.
func TestBasicAuthLifecycle(t *testing.T) {
	ctx := context.Background()
	up := startUpstream(t, "basic-svc")
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp := startDataPlane(t, "dp-1", cp.url, filepath.Join(dir, "dp-1"))
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Consumers().Put(ctx, "alice", config.Consumer{Groups: []string{"staff"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "staff", config.Route{Paths: []string{"/staff"}, Service: "s",
		Auth: &config.RouteAuth{Basic: true, Groups: []string{"staff"}}}); err != nil {
		t.Fatal(err)
	}
	code, raw := adminCall(t, "POST", cp.url+"/v1/consumers/alice/basic-auth", `{"username":"alice@example.com"}`)
	var created struct{ ID, Username, Password string }
	if err := json.Unmarshal(raw, &created); code != 201 || err != nil || created.Password == "" {
		t.Fatalf("create: %d %s", code, raw)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		code, _ := withBasic(dp.url+"/staff", "alice@example.com", created.Password)
		return code == 200
	}, "the data plane accepting the new credential")
	if code, body := withBasic(dp.url+"/staff", "alice@example.com", created.Password); code != 200 {
		t.Fatalf("again: %d %s", code, body)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(readAll(dp.log), `"route":"staff","service":"s","upstream"`) &&
			strings.Contains(readAll(dp.log), `"consumer":"alice"`)
	}, "the access log naming consumer alice")
	if code, _ := withBasic(dp.url+"/staff", "alice@example.com", created.Password+"x"); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}
	// The username is taken, by any consumer.
	if code, _ := adminCall(t, "PUT", cp.url+"/v1/consumers/bob", `{}`); code != 201 {
		t.Fatal(code)
	}
	if code, raw := adminCall(t, "POST", cp.url+"/v1/consumers/bob/basic-auth", `{"username":"alice@example.com"}`); code != 409 || !strings.Contains(string(raw), "username") {
		t.Fatalf("taken username: %d %s", code, raw)
	}
	// The password is nowhere but in the client: not in the state file,
	// the export, the audit log or any process's log; the hash is in the
	// data plane's state, never in the admin API's answers.
	raw2 := readDir(t, dp.stateDir) // the snapshot and the journal of deltas
	_, export := adminCall(t, "GET", cp.url+"/v1/config", "")
	_, audit := adminCall(t, "GET", cp.url+"/v1/audit", "")
	for what, s := range map[string]string{"state file": raw2, "export": string(export), "audit": string(audit),
		"control-plane log": readAll(cp.log), "data-plane log": readAll(dp.log)} {
		if strings.Contains(s, created.Password) {
			t.Fatalf("the password is in the %s", what)
		}
		if what != "state file" && strings.Contains(s, "$2a$") {
			t.Fatalf("a bcrypt hash is in the %s", what)
		}
	}
	if !strings.Contains(raw2, "$2a$10$") {
		t.Fatal("the data plane's state holds no hash: how did it check the password?")
	}
	// Deleted: refused at once, although the data plane remembered it.
	if code, _ := adminCall(t, "DELETE", cp.url+"/v1/consumers/alice/basic-auth/"+created.ID, ""); code != 204 {
		t.Fatal(code)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		code, _ := withBasic(dp.url+"/staff", "alice@example.com", created.Password)
		return code == 401
	}, "the data plane refusing the deleted credential")
}

// TestClientCertEdge: mTLS through the real binaries. The route's CA and
// CRL and the consumer's identity go through the admin API; the data
// plane's TLS listener asks for a certificate on the route's host; a
// valid certificate reaches the service as its consumer, an expired, a
// revoked, another CA's and no certificate are 401, and plain HTTP too.
func TestClientCertEdge(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	up := startUpstream(t, "mtls-svc")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	dp := startDataPlane(t, "dp-mtls", cp.url, filepath.Join(dir, "dp"), "--tls-listen", tlsAddr)

	server := testutil.NewCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(server.Cert)
	leaf := server.Issue(t, []string{"mtls.example.com"}, time.Time{}, time.Time{})
	clients, other := testutil.NewTestCA(t, "clients CA"), testutil.NewTestCA(t, "other CA")
	alice := clients.Issue(t, "alice", testutil.ClientCertOptions{URIs: []string{"spiffe://example.org/alice"}})
	revoked := clients.Issue(t, "alice", testutil.ClientCertOptions{URIs: []string{"spiffe://example.org/alice"}})
	expired := clients.Issue(t, "alice", testutil.ClientCertOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	forged := other.Issue(t, "alice", testutil.ClientCertOptions{URIs: []string{"spiffe://example.org/alice"}})

	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Certificates().Put(ctx, "edge", config.Certificate{Cert: leaf.CertPEM, Key: leaf.KeyPEM, SNIs: []string{"mtls.example.com"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Consumers().Put(ctx, "alice", config.Consumer{Groups: []string{"staff"}, CertIdentities: []string{"uri:spiffe://example.org/alice"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "mtls", config.Route{Hosts: []string{"mtls.example.com"}, Paths: []string{"/*"}, Service: "s",
		Auth:      &config.RouteAuth{ClientCert: &config.ClientCertAuth{CA: clients.PEM, CRLs: []string{clients.CRL(t, revoked.Leaf)}}, Groups: []string{"staff"}},
		RateLimit: &config.RateLimit{Limit: 1000, Window: config.Duration(time.Minute), Key: "consumer"}}); err != nil {
		t.Fatal(err)
	}
	call := func(cert *tls.Certificate) int {
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "mtls.example.com", RootCAs: roots,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if cert == nil {
					return &tls.Certificate{}, nil
				}
				return cert, nil
			}}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://"+tlsAddr+"/x", nil)
		req.Host = "mtls.example.com"
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return call(&alice) == 200 }, "alice's certificate accepted on the TLS listener")
	for name, c := range map[string]*tls.Certificate{"none": nil, "revoked": &revoked, "expired": &expired, "other CA": &forged} {
		if code := call(c); code != 401 {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	if code, _ := get(dp.url + "/x"); code != 404 && code != 401 {
		t.Errorf("plain HTTP without the host: %d", code)
	}
	req, _ := http.NewRequest("GET", dp.url+"/x", nil)
	req.Host = "mtls.example.com"
	if resp, err := httpc.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("plain HTTP to the mTLS route: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return strings.Contains(readAll(dp.log), `"consumer":"alice"`) },
		"the access log naming consumer alice")
}
