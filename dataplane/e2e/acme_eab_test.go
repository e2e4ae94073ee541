package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestACMEEAB orders from a real ACME server that requires External
// Account Binding (Pebble with externalAccountBindingRequired, as
// ZeroSSL, Google Trust Services or a private step-ca do): a certificate
// without a binding is refused at registration, a wrong MAC key or an
// unknown kid too, each failure visible on GET /v1/certificates/{name};
// the right kid and key register the account and the certificate is
// issued through the data plane; the MAC key never shows in an answer,
// the export or the control plane's log.
func TestACMEEAB(t *testing.T) {
	pebbleBin, challBin, err := testutil.PebbleBinaries()
	if err != nil {
		t.Fatal(err) // a missing Pebble is a failure, never a skip
	}
	const (
		kid = "portico-kid-1"
		// 32-byte MAC keys, base64url as a CA hands them out.
		macKey   = "Q0Etc2lkZS1tYWMta2V5LWZvci1wb3J0aWNvLXRlc3Q"
		wrongKey = "d3Jvbmctc2lkZS1tYWMta2V5LWZvci1wb3J0aWNvLXQ"
	)
	dir := t.TempDir()
	httpPort, tlsPort := testutil.FreePort(t), testutil.FreePort(t)
	dns, dnsMgmt := pebbleDNS(t, challBin)
	eab := startPebble(t, "pebble-eab", pebbleBin, dns, dnsMgmt, httpPort, tlsPort, 90*24*time.Hour, map[string]string{kid: macKey})

	cpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cpProc := start(t, "cp", "controlplane", "--listen", cpAddr, "--store", "bolt:"+filepath.Join(dir, "cp.db"),
		"--admin-token", adminToken, "--dataplane-token", dpToken, "--log-level", "info", "--acme-backoff", "2s")
	cp := &controlPlane{proc: cpProc, url: "http://" + cpAddr}
	waitHTTP(t, cp.url+"/readyz", 200)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	ops := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	start(t, "dp1", "dataplane", "--controlplane", cp.url, "--token", dpToken, "--listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--ops-listen", ops, "--tls-listen", tlsAddr, "--state-dir", filepath.Join(dir, "dp1"), "--node-id", "dp1", "--poll-wait", "10s", "--log-level", "warn")
	waitHTTP(t, "http://"+ops+"/healthz", 200)

	withEAB := func(k, key string) map[string]any {
		a := eab.acme(config.ACMEHTTP01)
		a["eab"] = map[string]any{"kid": k, "hmac_key": key}
		return a
	}
	for _, tc := range []struct {
		name string
		acme map[string]any
		// want: what last_error says (Pebble's problem).
		want []string
	}{
		{"no binding", eab.acme(config.ACMEHTTP01), []string{"externalAccountRequired"}},
		{"wrong key", withEAB(kid, wrongKey), []string{"unauthorized", "external account binding JWS verification error"}},
		{"unknown kid", withEAB("no-such-kid", macKey), []string{"unauthorized", "not known"}},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-")
			putACME(t, cp, name, []string{name + ".example.com"}, tc.acme)
			c := waitStatus(t, cp, name, 90*time.Second, "failed", func(s *config.CertificateACMEState) bool { return s.Failures >= 1 })
			st := c.ACME.State
			if st.Status != config.ACMEFailed || c.Cert != "" {
				t.Fatalf("state %+v", st)
			}
			for _, w := range tc.want {
				if !strings.Contains(st.LastError, w) {
					t.Errorf("last_error %q does not say %q", st.LastError, w)
				}
			}
			t.Logf("%s: %s", tc.name, st.LastError)
		})
	}

	t.Run("the right binding: registered and issued", func(t *testing.T) {
		// The certificate refused without a binding gets one: ordered at
		// once (new settings after a failure), not after the backoff.
		putACME(t, cp, "no-binding", []string{"no-binding.example.com"}, withEAB(kid, macKey))
		c := waitStatus(t, cp, "no-binding", 90*time.Second, "valid", func(s *config.CertificateACMEState) bool { return s.Status == config.ACMEValid })
		if c.ACME.EAB == nil || c.ACME.EAB.KID != kid || c.ACME.EAB.HMACKey != "" || c.Status == nil {
			t.Fatalf("GET: eab %+v status %+v", c.ACME.EAB, c.Status)
		}
		testutil.Eventually(t, 20*time.Second, func() bool {
			serial, err := served(tlsAddr, "no-binding.example.com", eab.roots)
			return err == nil && serial == c.Status.Serial
		}, "the certificate served, verified against Pebble's root")
		// The wrong key fixed by the operator: the same kid, now bound.
		putACME(t, cp, "wrong-key", []string{"wrong-key.example.com"}, withEAB(kid, macKey))
		waitStatus(t, cp, "wrong-key", 90*time.Second, "valid", func(s *config.CertificateACMEState) bool { return s.Status == config.ACMEValid })
		if n := strings.Count(readFile(t, cpProc.log), "account registered"); n != 1 {
			t.Errorf("%d account registrations, want 1 (the bound account, reused by the second certificate)", n)
		}
	})

	t.Run("the MAC key is never shown", func(t *testing.T) {
		texts := map[string]string{"control plane log": readFile(t, cpProc.log)}
		for _, path := range []string{"/v1/certificates/no-binding", "/v1/certificates", "/v1/config", "/v1/audit"} {
			req, _ := http.NewRequest("GET", cp.url+path, nil)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := httpc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			texts["GET "+path] = string(raw)
		}
		for what, text := range texts {
			if strings.Contains(text, macKey) || strings.Contains(text, wrongKey) {
				t.Errorf("%s carries an EAB MAC key", what)
			}
		}
	})
}
