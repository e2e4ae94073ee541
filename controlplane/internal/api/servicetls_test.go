package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

func serviceTLSBody(t *testing.T, ca, cert, key string) string {
	t.Helper()
	tlsBlock := map[string]any{"ca": ca, "server_name": "svc.internal", "client_cert": cert}
	if key != "" {
		tlsBlock["client_key"] = key
	}
	b, err := json.Marshal(map[string]any{"targets": []map[string]any{{"url": "https://10.0.0.1:8443"}}, "tls": tlsBlock})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestServiceClientKeyIsSecret: a service's tls.client_key goes the way of
// a certificate's key: stored, shipped in the snapshot to data planes, and
// never in a write's answer, GET, the list, the export, the audit log or a
// log line; a write or an import without it keeps the stored key when it
// matches client_cert; field paths for what is wrong.
func TestServiceClientKeyIsSecret(t *testing.T) {
	s, logs := newLoggedServer(t)
	ca, clientCA := testutil.NewCA(t), testutil.NewCA(t)
	client := clientCA.IssueClient(t, "portico-gw")
	renewed := clientCA.IssueClient(t, "portico-gw")
	var answers []string
	keep := func(b []byte) []byte { answers = append(answers, string(b)); return b }

	h, body := s.mustStatus(t, 201, "PUT", "/v1/services/pay", serviceTLSBody(t, ca.PEM, client.CertPEM, client.KeyPEM))
	keep(body)
	var got config.Service
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if h.Get("ETag") != `"1"` || got.TLS == nil || got.TLS.ClientKey != "" || got.TLS.ClientCert != client.CertPEM {
		t.Fatalf("create: ETag %s, body %s", h.Get("ETag"), body)
	}
	// GET output PUT back: the key is kept, nothing changes.
	_, body = s.mustStatus(t, 200, "GET", "/v1/services/pay", "")
	keep(body)
	h, _ = s.mustStatus(t, 200, "PUT", "/v1/services/pay", string(body), "If-Match", `"1"`)
	if h.Get("ETag") != `"1"` {
		t.Fatalf("GET output PUT back changed the service: ETag %s", h.Get("ETag"))
	}
	if svc, _ := s.cat.Current().State.Config.Service("pay"); svc == nil || svc.TLS.ClientKey != client.KeyPEM {
		t.Fatal("the stored key was not kept")
	}
	// A renewed certificate without its key cannot keep the old one.
	_, body = s.mustStatus(t, 422, "PUT", "/v1/services/pay", serviceTLSBody(t, ca.PEM, renewed.CertPEM, ""))
	if !strings.Contains(string(body), `"field":"tls.client_key"`) {
		t.Fatalf("renewal without a key: %s", body)
	}
	// Field paths for a broken block; the messages do not quote the key.
	_, body = s.mustStatus(t, 422, "PUT", "/v1/services/pay", serviceTLSBody(t, "junk", renewed.CertPEM, client.KeyPEM))
	keep(body)
	for _, f := range []string{`"field":"tls.ca"`, `"field":"tls.client_key"`} {
		if !strings.Contains(string(body), f) {
			t.Fatalf("broken block: %s lacks %s", body, f)
		}
	}
	_, body = s.mustStatus(t, 200, "PUT", "/v1/services/pay", serviceTLSBody(t, ca.PEM, renewed.CertPEM, renewed.KeyPEM), "If-Match", `"1"`)
	keep(body)
	_, body = s.mustStatus(t, 200, "GET", "/v1/services", "")
	keep(body)
	if !strings.Contains(string(body), `"server_name":"svc.internal"`) {
		t.Fatalf("list: %s", body)
	}

	// The export has no key; importing it back changes nothing and keeps it.
	_, export := s.mustStatus(t, 200, "GET", "/v1/config", "")
	keep(export)
	_, body = s.mustStatus(t, 200, "PUT", "/v1/config?dry_run=true", string(export))
	if !strings.Contains(string(body), `"changes":[]`) {
		t.Fatalf("dry run of the export: %s", body)
	}
	s.mustStatus(t, 200, "PUT", "/v1/config", string(export))
	if svc, _ := s.cat.Current().State.Config.Service("pay"); svc == nil || svc.TLS.ClientKey != renewed.KeyPEM || svc.Version != 2 {
		t.Fatalf("export round trip lost the key or moved the version: %+v", svc)
	}
	// Under another name nothing matches: the import names the field.
	var env struct {
		Config config.Config `json:"config"`
	}
	if err := json.Unmarshal(export, &env); err != nil {
		t.Fatal(err)
	}
	env.Config.Services[0].Name = "fresh"
	edited, _ := json.Marshal(env.Config)
	_, body = s.mustStatus(t, 422, "PUT", "/v1/config", string(edited))
	if !strings.Contains(string(body), `"field":"services[0].tls.client_key"`) {
		t.Fatalf("import without a key: %s", body)
	}

	_, body = s.mustStatus(t, 200, "GET", "/v1/audit", "")
	keep(body)
	// Data planes get the key: they need it.
	code, _, snap := s.call(t, "GET", "/v1/snapshot?after=0&wait=1ms", dpToken, "", "X-Portico-Node-Id", "dp-1")
	if code != 200 || !strings.Contains(string(snap), secretOf(renewed.KeyPEM)) {
		t.Fatalf("snapshot %d does not carry the key", code)
	}

	for _, key := range []string{client.KeyPEM, renewed.KeyPEM} {
		secret := secretOf(key)
		for i, a := range answers {
			if strings.Contains(a, secret) {
				t.Fatalf("answer %d carries the key: %s", i, a)
			}
		}
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("log carries the key:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "/v1/services/pay") {
		t.Fatal("the log buffer saw no request: the check above proves nothing")
	}
}
