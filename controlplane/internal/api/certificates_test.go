package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// lockedBuffer collects a server's log lines (written from handler
// goroutines).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newLoggedServer is newTestServer with every log line kept.
func newLoggedServer(t *testing.T) (*testServer, *lockedBuffer) {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	buf := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cat, err := catalog.New(context.Background(), st, log)
	if err != nil {
		t.Fatal(err)
	}
	return serveCatalog(t, cat, log, false), buf
}

func certBody(t *testing.T, cert, key string, snis ...string) string {
	t.Helper()
	m := map[string]any{"cert": cert, "snis": snis}
	if key != "" {
		m["key"] = key
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCertificateValidationTable: the admin API refuses each broken
// certificate with the field path the issue lists.
func TestCertificateValidationTable(t *testing.T) {
	s := newTestServer(t, false)
	ca := testutil.NewCA(t)
	good := ca.Issue(t, []string{"api.example.com", "*.example.org"}, time.Time{}, time.Time{})
	other := ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	inter := ca.Intermediate(t)
	chained := inter.Issue(t, []string{"chain.example.com"}, time.Time{}, time.Time{})
	blocks := strings.SplitAfter(chained.CertPEM, "-----END CERTIFICATE-----\n")
	expired := ca.Issue(t, []string{"old.example.com"}, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	s.mustStatus(t, 201, "PUT", "/v1/certificates/taken", certBody(t, good.CertPEM, good.KeyPEM, "api.example.com"))

	tests := []struct {
		name, body, field string
		status            int
	}{
		{"not PEM", certBody(t, "nope", good.KeyPEM, "x.example.com"), "cert", 422},
		{"key does not match leaf", certBody(t, good.CertPEM, other.KeyPEM, "a.example.org"), "key", 422},
		{"key not PEM", certBody(t, good.CertPEM, "not a key", "a.example.org"), "key", 422},
		{"chain out of order", certBody(t, blocks[1]+blocks[0], chained.KeyPEM, "chain.example.com"), "cert", 422},
		{"sni invalid", certBody(t, good.CertPEM, good.KeyPEM, "a_b.example.org"), "snis[0]", 422},
		{"sni two-label wildcard", certBody(t, good.CertPEM, good.KeyPEM, "*.*.example.org"), "snis[0]", 422},
		{"sni not on the certificate", certBody(t, good.CertPEM, good.KeyPEM, "a.example.org", "www.example.net"), "snis[1]", 422},
		{"sni claimed by another certificate", certBody(t, good.CertPEM, good.KeyPEM, "a.example.org", "api.example.com"), "snis[1]", 409},
		{"expired", certBody(t, expired.CertPEM, expired.KeyPEM, "old.example.com"), "cert", 422},
		{"no key and none stored", certBody(t, good.CertPEM, "", "a.example.org"), "key", 422},
		{"unknown field", `{"cert":"x","snis":["a.b"],"private":"x"}`, "private", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, body := s.mustStatus(t, tt.status, "PUT", "/v1/certificates/other", tt.body)
			if !strings.Contains(string(body), `"field":"`+tt.field+`"`) {
				t.Fatalf("problem does not name %s: %s", tt.field, body)
			}
			if strings.Contains(string(body), secretOf(good.KeyPEM)) || strings.Contains(string(body), secretOf(other.KeyPEM)) {
				t.Fatalf("problem carries key material: %s", body)
			}
		})
	}
	_, body := s.mustStatus(t, 422, "PUT", "/v1/certificates/other", certBody(t, good.CertPEM, other.KeyPEM, "a_b.example.org", "*.example.org", "*.example.org"))
	golden(t, "certificate_invalid", body)
	s.mustStatus(t, 201, "PUT", "/v1/certificates/chain", certBody(t, chained.CertPEM, chained.KeyPEM, "chain.example.com"))
}

// TestCertificateLifecycle: versions, If-Match, the status shown, the
// key kept by a write without one, audit, export round trip and dry run,
// and the key never in any answer, the audit log or a log line.
func TestCertificateLifecycle(t *testing.T) {
	s, logs := newLoggedServer(t)
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"api.example.com", "*.example.org"}, time.Time{}, time.Now().Add(10*24*time.Hour))
	renewed := ca.Issue(t, []string{"api.example.com", "*.example.org"}, time.Time{}, time.Now().Add(90*24*time.Hour))
	var answers []string
	keep := func(b []byte) []byte { answers = append(answers, string(b)); return b }

	h, body := s.mustStatus(t, 201, "PUT", "/v1/certificates/api", certBody(t, leaf.CertPEM, leaf.KeyPEM, "api.example.com", "*.example.org"))
	keep(body)
	var got config.Certificate
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if h.Get("ETag") != `"1"` || got.Key != "" || got.Status == nil {
		t.Fatalf("create: ETag %s, body %s", h.Get("ETag"), body)
	}
	st := got.Status
	if st.Subject != "CN=api.example.com" || st.Issuer != ca.Cert.Subject.String() || st.Serial != leaf.Cert.SerialNumber.Text(16) ||
		st.DaysLeft != 9 || len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "expires in 9 days") ||
		strings.Join(st.SANs, ",") != "api.example.com,*.example.org" || !st.NotAfter.Equal(leaf.Cert.NotAfter) {
		t.Fatalf("status = %+v", st)
	}

	// GET output can be PUT back (status ignored, the key kept): a no-op.
	_, body = s.mustStatus(t, 200, "GET", "/v1/certificates/api", "")
	keep(body)
	h, _ = s.mustStatus(t, 200, "PUT", "/v1/certificates/api", string(body), "If-Match", `"1"`)
	if h.Get("ETag") != `"1"` {
		t.Fatalf("GET output PUT back changed the certificate: ETag %s", h.Get("ETag"))
	}
	// A stale If-Match loses; a renewal with its key wins; a write without
	// a key keeps the (matching) stored one.
	s.mustStatus(t, 412, "PUT", "/v1/certificates/api", certBody(t, renewed.CertPEM, renewed.KeyPEM, "api.example.com"), "If-Match", `"7"`)
	_, body = s.mustStatus(t, 200, "PUT", "/v1/certificates/api", certBody(t, renewed.CertPEM, renewed.KeyPEM, "api.example.com"), "If-Match", `"1"`)
	keep(body)
	h, body = s.mustStatus(t, 200, "PUT", "/v1/certificates/api", certBody(t, renewed.CertPEM, "", "api.example.com", "*.example.org"))
	keep(body)
	if h.Get("ETag") != `"3"` {
		t.Fatalf("ETag after the key-less write = %s", h.Get("ETag"))
	}
	if c, _ := s.cat.Current().State.Config.Certificate("api"); c == nil || c.Key != renewed.KeyPEM {
		t.Fatal("the stored key was not kept")
	}
	// A key-less write of another key pair's certificate cannot keep it.
	s.mustStatus(t, 422, "PUT", "/v1/certificates/api", certBody(t, leaf.CertPEM, "", "api.example.com"))

	_, body = s.mustStatus(t, 200, "GET", "/v1/certificates", "")
	keep(body)
	if !strings.Contains(string(body), `"days_left":89`) {
		t.Fatalf("list: %s", body)
	}

	// The export has no key; importing it back changes nothing and keeps
	// the key (dry run first).
	_, export := s.mustStatus(t, 200, "GET", "/v1/config", "")
	keep(export)
	_, body = s.mustStatus(t, 200, "PUT", "/v1/config?dry_run=true", string(export))
	if !strings.Contains(string(body), `"changes":[]`) {
		t.Fatalf("dry run of the export: %s", body)
	}
	s.mustStatus(t, 200, "PUT", "/v1/config", string(export))
	if c, _ := s.cat.Current().State.Config.Certificate("api"); c == nil || c.Key != renewed.KeyPEM || c.Version != 3 {
		t.Fatalf("export round trip lost the key or moved the version: %+v", c)
	}
	// An import that changes the certificate: the dry run names the field.
	var env struct {
		Config config.Config `json:"config"`
	}
	if err := json.Unmarshal(export, &env); err != nil {
		t.Fatal(err)
	}
	env.Config.Certificates[0].SNIs = []string{"api.example.com"}
	edited, _ := json.Marshal(env.Config)
	_, body = s.mustStatus(t, 200, "PUT", "/v1/config?dry_run=true", string(edited))
	if !strings.Contains(string(body), `"kind":"certificate","name":"api","fields":["snis"]`) {
		t.Fatalf("dry run: %s", body)
	}
	// Without a stored match the import names the key.
	env.Config.Certificates[0].Name = "fresh"
	env.Config.Certificates[0].SNIs = []string{"other.example.org"}
	edited, _ = json.Marshal(env.Config)
	_, body = s.mustStatus(t, 422, "PUT", "/v1/config", string(edited))
	if !strings.Contains(string(body), `"field":"certificates[0].key"`) {
		t.Fatalf("import without a key: %s", body)
	}

	_, body = s.mustStatus(t, 200, "GET", "/v1/audit", "")
	keep(body)
	if !strings.Contains(string(body), `"kind":"certificate"`) {
		t.Fatalf("audit: %s", body)
	}
	s.mustStatus(t, 204, "DELETE", "/v1/certificates/api", "", "If-Match", `"3"`)

	for _, key := range []string{leaf.KeyPEM, renewed.KeyPEM} {
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
	if !strings.Contains(logs.String(), "/v1/certificates/api") {
		t.Fatal("the log buffer saw no request: the check above proves nothing")
	}
}

// TestCertificateServedBy: served_by lists the nodes whose TLS listener is
// on (as each reports on its polls) and that applied the certificate's
// revision; GET /v1/dataplanes shows each node's TLS listener; a bad
// report is refused.
func TestCertificateServedBy(t *testing.T) {
	s := newTestServer(t, false)
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	s.mustStatus(t, 201, "PUT", "/v1/certificates/api", certBody(t, leaf.CertPEM, leaf.KeyPEM, "api.example.com"))
	rev := s.cat.Current().State.Revision
	epoch := s.cat.Current().State.Epoch.ID
	nodes := []struct {
		id      string
		applied int64
		hdr     []string
		want    string // the node's "tls" in GET /v1/dataplanes
	}{
		{"dp-tls", rev, []string{"X-Portico-Node-Tls", "tls"}, `{"http3":false}`},
		{"dp-h3", rev, []string{"X-Portico-Node-Tls", "tls, http3", "X-Portico-Node-Ticket-Key", "0123456789abcdef"}, `{"http3":true,"ticket_key":"0123456789abcdef"}`},
		{"dp-plain", rev, nil, ""},
		{"dp-behind", rev - 1, []string{"X-Portico-Node-Tls", "tls"}, `{"http3":false}`},
		{"dp-newer", rev, []string{"X-Portico-Node-Tls", "tls, h4"}, `{"http3":false}`},
	}
	for _, n := range nodes {
		hdr := append([]string{"X-Portico-Node-Id", n.id, "X-Portico-Applied-Revision", fmt.Sprint(n.applied), "X-Portico-Epoch", epoch}, n.hdr...)
		code, _, body := s.call(t, "GET", fmt.Sprintf("/v1/snapshot?after=%d&wait=1ms", n.applied), dpToken, "", hdr...)
		if code != 304 && code != 200 {
			t.Fatalf("poll %s: %d %s", n.id, code, body)
		}
	}
	_, body := s.mustStatus(t, 200, "GET", "/v1/certificates/api", "")
	if !strings.Contains(string(body), `"served_by":["dp-h3","dp-newer","dp-tls"]`) {
		t.Fatalf("served_by: %s", body)
	}
	_, body = s.mustStatus(t, 200, "GET", "/v1/dataplanes", "")
	var list apiv1.Dataplanes
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		i := slices.IndexFunc(list.Nodes, func(d apiv1.Dataplane) bool { return d.ID == n.id })
		if i < 0 {
			t.Fatalf("%s not listed: %s", n.id, body)
		}
		got := ""
		if tls := list.Nodes[i].TLS; tls != nil {
			b, _ := json.Marshal(tls)
			got = string(b)
		}
		if got != n.want {
			t.Errorf("%s: tls %s, want %s", n.id, got, n.want)
		}
	}
	// A node that stops its TLS listener leaves served_by on its next poll.
	s.call(t, "GET", fmt.Sprintf("/v1/snapshot?after=%d&wait=1ms", rev), dpToken, "",
		"X-Portico-Node-Id", "dp-tls", "X-Portico-Applied-Revision", fmt.Sprint(rev), "X-Portico-Epoch", epoch)
	if _, body = s.mustStatus(t, 200, "GET", "/v1/certificates/api", ""); !strings.Contains(string(body), `"served_by":["dp-h3","dp-newer"]`) {
		t.Fatalf("served_by after dp-tls turned TLS off: %s", body)
	}
	for _, bad := range []string{"xyz", strings.Repeat("ab", 33)} {
		code, _, body := s.call(t, "GET", "/v1/snapshot?after=0&wait=1ms", dpToken, "",
			"X-Portico-Node-Id", "dp-bad", "X-Portico-Node-Tls", "tls", "X-Portico-Node-Ticket-Key", bad)
		if code != 400 || !strings.Contains(string(body), "X-Portico-Node-Ticket-Key") {
			t.Errorf("ticket key %q: %d %s", bad, code, body)
		}
	}
}

// secretOf is the first line of a PEM key's base64: what any copy of the
// key, raw or in JSON, would contain.
func secretOf(keyPEM string) string { return strings.Split(keyPEM, "\n")[1][:40] }
