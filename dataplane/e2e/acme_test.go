package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// pebble is a real ACME server (Let's Encrypt's Pebble) with its DNS
// helper (pebble-challtestsrv): every name resolves to 127.0.0.1 unless a
// test says otherwise, and Pebble's validation authority connects to
// httpPort (HTTP-01) and tlsPort (TLS-ALPN-01) there: the data plane's
// listeners.
type pebble struct {
	directory string
	// caPEM signs Pebble's HTTPS certificate: what acme.ca carries.
	caPEM string
	// roots trust the certificates Pebble issues.
	roots *x509.CertPool
	// dnsMgmt is challtestsrv's management API.
	dnsMgmt string
}

// pebbleDNS starts pebble-challtestsrv as DNS server only and returns its
// DNS address and management URL.
func pebbleDNS(t *testing.T, chall string) (dnsAddr, mgmt string) {
	t.Helper()
	dnsAddr = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	mgmtAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	start(t, "challtestsrv", chall, "-dnsserver", dnsAddr, "-management", mgmtAddr,
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	mgmt = "http://" + mgmtAddr
	testutil.Eventually(t, 20*time.Second, func() bool {
		resp, err := httpc.Post(mgmt+"/set-default-ipv4", "application/json", strings.NewReader(`{"ip":"127.0.0.1"}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "pebble-challtestsrv answering")
	return dnsAddr, mgmt
}

// startPebble starts Pebble issuing certificates valid for validity,
// validating on httpPort and tlsPort of 127.0.0.1, resolving through dns.
// With eabKeys (kid -> base64url MAC key), Pebble requires an External
// Account Binding with one of them to register an account.
func startPebble(t *testing.T, name, bin, dns, dnsMgmt string, httpPort, tlsPort int, validity time.Duration, eabKeys map[string]string) *pebble {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile, apiRoots := writeCert(t, dir)
	listen := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	mgmt := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": certFile, "privateKey": keyFile,
		"httpPort": httpPort, "tlsPort": tlsPort, "ocspResponderURL": "",
		"externalAccountBindingRequired": eabKeys != nil, "externalAccountMACKeys": eabKeys, "keyAlgorithm": "ecdsa",
		"profiles": map[string]any{"default": map[string]any{"description": "test", "validityPeriod": int(validity.Seconds())}},
	}}
	raw, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// No sleep before validating, no nonce rejected on purpose, and no
	// authorization reused: each order (a renewal too) is validated
	// through the data plane. Never PEBBLE_VA_ALWAYS_VALID.
	startEnv(t, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		name, bin, "-config", cfgFile, "-dnsserver", dns)
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	api := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: apiRoots}}}
	p := &pebble{directory: "https://" + listen + "/dir", caPEM: string(caPEM), dnsMgmt: dnsMgmt}
	var rootPEM []byte
	testutil.Eventually(t, 30*time.Second, func() bool {
		resp, err := api.Get("https://" + mgmt + "/roots/0")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		rootPEM, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == 200
	}, name+" answering")
	p.roots = x509.NewCertPool()
	if !p.roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("%s root: %s", name, rootPEM)
	}
	return p
}

// setA makes host resolve to addr (clear: back to 127.0.0.1).
func (p *pebble) setA(t *testing.T, host, addr string) {
	t.Helper()
	path, body := "/add-a", fmt.Sprintf(`{"host":%q,"addresses":[%q]}`, host, addr)
	if addr == "" {
		path, body = "/clear-a", fmt.Sprintf(`{"host":%q}`, host)
	}
	resp, err := httpc.Post(p.dnsMgmt+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("challtestsrv %s: %d", path, resp.StatusCode)
	}
}

func (p *pebble) acme(challenge string) map[string]any {
	a := map[string]any{"directory": p.directory, "email": "ops@example.com", "ca": p.caPEM}
	if challenge != "" {
		a["challenge"] = challenge
	}
	return a
}

// acmeCert reads a certificate through the admin API.
func acmeCert(t *testing.T, cp *controlPlane, name string) config.Certificate {
	t.Helper()
	req, _ := http.NewRequest("GET", cp.url+"/v1/certificates/"+name, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET certificate %s = %d %s", name, resp.StatusCode, raw)
	}
	if bytes.Contains(raw, []byte("PRIVATE KEY")) || bytes.Contains(raw, []byte("key_auth")) {
		t.Fatalf("GET certificate %s shows a key or a challenge: %s", name, raw)
	}
	var c config.Certificate
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func putACME(t *testing.T, cp *controlPlane, name string, snis []string, acme map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"snis": snis, "acme": acme})
	req, _ := http.NewRequest("PUT", cp.url+"/v1/certificates/"+name, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 && resp.StatusCode != 200 {
		t.Fatalf("PUT certificate %s = %d %s", name, resp.StatusCode, raw)
	}
}

// waitStatus waits until the certificate's acme.state passes ok.
func waitStatus(t *testing.T, cp *controlPlane, name string, timeout time.Duration, what string, ok func(*config.CertificateACMEState) bool) config.Certificate {
	t.Helper()
	var c config.Certificate
	testutil.Eventually(t, timeout, func() bool {
		c = acmeCert(t, cp, name)
		return c.ACME != nil && c.ACME.State != nil && ok(c.ACME.State)
	}, name+": "+what)
	return c
}

// served is the serial (hex) of the certificate a TLS listener serves for
// sni, verified against roots ("" and the error when the handshake or
// the verification fails).
func served(addr, sni string, roots *x509.CertPool) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: sni, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

// TestACME orders certificates from a real ACME server (Pebble) through
// real data planes: Pebble's validation authority connects to the data
// plane's plain listener (HTTP-01) and TLS listener (TLS-ALPN-01). Covered:
// issuance with each challenge type and the certificate served; a failed
// challenge (the name resolving where no data plane listens) shown as
// failed with the last error and retried with a doubling backoff until it
// succeeds; a data plane that served no challenge serving the issued
// certificate; a control-plane restart keeping the certificates (no new
// order); a renewal at 2/3 of a short lifetime; no key in any answer or
// log.
func TestACME(t *testing.T) {
	pebbleBin, challBin, err := testutil.PebbleBinaries()
	if err != nil {
		t.Fatal(err) // a missing Pebble is a failure, never a skip
	}
	dir := t.TempDir()
	httpPort, tlsPort := testutil.FreePort(t), testutil.FreePort(t)
	dns, dnsMgmt := pebbleDNS(t, challBin)
	long := startPebble(t, "pebble", pebbleBin, dns, dnsMgmt, httpPort, tlsPort, 90*24*time.Hour, nil)
	short := startPebble(t, "pebble-short", pebbleBin, dns, dnsMgmt, httpPort, tlsPort, 30*time.Second, nil)

	store := "bolt:" + filepath.Join(dir, "cp.db")
	cpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cpArgs := []string{"--listen", cpAddr, "--store", store, "--admin-token", adminToken, "--dataplane-token", dpToken,
		"--log-level", "info", "--acme-backoff", "2s"}
	cpProc := start(t, "cp", "controlplane", cpArgs...)
	cp := &controlPlane{proc: cpProc, url: "http://" + cpAddr}
	waitHTTP(t, cp.url+"/readyz", 200)

	// dp1 listens where Pebble validates; dp2 elsewhere (it never sees a
	// validation request).
	addr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	ops := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	dp1 := start(t, "dp1", "dataplane", "--controlplane", cp.url, "--token", dpToken, "--listen", addr, "--ops-listen", ops,
		"--tls-listen", tlsAddr, "--state-dir", filepath.Join(dir, "dp1"), "--node-id", "dp1", "--poll-wait", "10s", "--log-level", "warn")
	_ = dp1
	waitHTTP(t, "http://"+ops+"/healthz", 200)

	putACME(t, cp, "api", []string{"api.example.com", "www.example.com"}, long.acme(config.ACMEHTTP01))
	putACME(t, cp, "alpn", []string{"alpn.example.com"}, long.acme(config.ACMETLSALPN01))
	var apiSerial string
	t.Run("issued through the data plane", func(t *testing.T) {
		for _, name := range []string{"api", "alpn"} {
			c := waitStatus(t, cp, name, 90*time.Second, "valid", func(s *config.CertificateACMEState) bool { return s.Status == config.ACMEValid })
			st := c.ACME.State
			if c.Status == nil || st.NotAfter == nil || st.RenewAt == nil || st.NextAttempt == nil || !st.NextAttempt.Equal(*st.RenewAt) || st.LastError != "" {
				t.Fatalf("%s: state %+v status %+v", name, st, c.Status)
			}
			life := c.Status.NotAfter.Sub(*st.RenewAt)
			if life < 29*24*time.Hour || life > 31*24*time.Hour {
				t.Errorf("%s: renew_at %v is not at 2/3 of a 90-day lifetime (not_after %v)", name, st.RenewAt, c.Status.NotAfter)
			}
			sni := c.SNIs[0]
			testutil.Eventually(t, 20*time.Second, func() bool {
				serial, err := served(tlsAddr, sni, long.roots)
				return err == nil && serial == c.Status.Serial
			}, name+" served by dp1, verified against Pebble's root")
			if name == "api" {
				apiSerial = c.Status.Serial
				if _, err := served(tlsAddr, "www.example.com", long.roots); err != nil {
					t.Errorf("second name: %v", err)
				}
			}
		}
	})

	t.Run("failed challenge, retried with backoff", func(t *testing.T) {
		// fail.example.com resolves to 127.0.0.2: nothing listens there.
		long.setA(t, "fail.example.com", "127.0.0.2")
		putACME(t, cp, "fail", []string{"fail.example.com"}, long.acme(config.ACMEHTTP01))
		c := waitStatus(t, cp, "fail", 90*time.Second, "failed twice", func(s *config.CertificateACMEState) bool { return s.Failures >= 2 })
		st := c.ACME.State
		if st.Status != config.ACMEFailed || st.LastError == "" || c.Cert != "" || st.LastAttempt == nil || st.NextAttempt == nil {
			t.Fatalf("state %+v", st)
		}
		// 2 s doubling: the n-th failure in a row waits 2 s × 2^(n-1).
		want := 2 * time.Second << (st.Failures - 1)
		if got := st.NextAttempt.Sub(*st.LastAttempt); got != want {
			t.Errorf("after %d failures next_attempt - last_attempt = %v, want %v", st.Failures, got, want)
		}
		if !strings.Contains(st.LastError, "fail.example.com") {
			t.Errorf("last_error does not say which name failed: %q", st.LastError)
		}
		t.Logf("failure %d: %s", st.Failures, st.LastError)
		long.setA(t, "fail.example.com", "") // back to 127.0.0.1: the next attempt passes
		c = waitStatus(t, cp, "fail", 120*time.Second, "valid after the retry", func(s *config.CertificateACMEState) bool { return s.Status == config.ACMEValid })
		if c.ACME.State.Failures != 0 || c.ACME.State.LastError != "" {
			t.Errorf("state after success %+v", c.ACME.State)
		}
	})

	t.Run("a data plane that served no challenge serves the certificate", func(t *testing.T) {
		tls2 := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
		startDataPlane(t, "dp2", cp.url, filepath.Join(dir, "dp2"), "--tls-listen", tls2)
		testutil.Eventually(t, 20*time.Second, func() bool {
			serial, err := served(tls2, "api.example.com", long.roots)
			return err == nil && serial == apiSerial
		}, "dp2 serving the issued certificate")
	})

	t.Run("a restart keeps the certificates", func(t *testing.T) {
		before := acmeCert(t, cp, "api")
		cpProc.term(t)
		cpProc.restart("controlplane")
		waitHTTP(t, cp.url+"/readyz", 200)
		after := acmeCert(t, cp, "api")
		if after.Status == nil || after.Status.Serial != apiSerial || after.Version != before.Version || after.ACME.State.Status != config.ACMEValid {
			t.Fatalf("after restart: version %d -> %d, state %+v", before.Version, after.Version, after.ACME.State)
		}
		// The account is reused: a new certificate for the same directory
		// and e-mail needs no new registration (the log says when one is
		// made).
		putACME(t, cp, "again", []string{"again.example.com"}, long.acme(""))
		waitStatus(t, cp, "again", 90*time.Second, "valid", func(s *config.CertificateACMEState) bool { return s.Status == config.ACMEValid })
		if n := strings.Count(readFile(t, cpProc.log), "account registered"); n != 1 {
			t.Errorf("%d account registrations for one directory and e-mail, want 1 (kept in the store across the restart)", n)
		}
	})

	t.Run("renewal", func(t *testing.T) {
		putACME(t, cp, "short", []string{"short.example.com"}, short.acme(""))
		first := waitStatus(t, cp, "short", 90*time.Second, "valid", func(s *config.CertificateACMEState) bool { return s.Status == config.ACMEValid })
		// 30 s lifetime: renewed 20 s after it starts, by a new order.
		renewed := waitStatus(t, cp, "short", 90*time.Second, "renewed", func(s *config.CertificateACMEState) bool {
			return s.Status == config.ACMEValid && !s.NotAfter.Equal(*first.ACME.State.NotAfter)
		})
		if renewed.Status.Serial == first.Status.Serial {
			t.Fatal("renewed with the same serial")
		}
		testutil.Eventually(t, 20*time.Second, func() bool {
			serial, err := served(tlsAddr, "short.example.com", short.roots)
			return err == nil && serial == renewed.Status.Serial
		}, "the renewed certificate served")
	})

	t.Run("no key in the export or the logs", func(t *testing.T) {
		req, _ := http.NewRequest("GET", cp.url+"/v1/config", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for what, text := range map[string]string{"export": string(raw), "control plane log": readFile(t, cpProc.log)} {
			if strings.Contains(text, "PRIVATE KEY") || strings.Contains(text, "key_auth") {
				t.Errorf("%s carries a private key or a challenge", what)
			}
		}
	})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
