package api

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestACMECertificateAPI: an ACME certificate through the admin API: created
// without PEM, refused with field paths, its maintained fields (issued
// cert and key, state, challenges) never taken from a write, the key and
// the challenges never shown (GET, list, export), GET output put back
// unchanged, and an export imported back.
func TestACMECertificateAPI(t *testing.T) {
	s := newTestServer(t, false)
	ca := testutil.NewCA(t)
	body := func(extra string) string {
		return `{"snis":["api.example.com"],"acme":{"directory":"https://acme.example.net/dir","email":"ops@example.com"` + extra + `}}`
	}
	s.mustStatus(t, 201, "PUT", "/v1/certificates/api", body(`,"ca":`+jsonString(ca.PEM)))

	for _, tc := range []struct {
		name, body, field string
	}{
		{"http directory", `{"snis":["a.example.com"],"acme":{"directory":"http://x.example/dir"}}`, "acme.directory"},
		{"wildcard", `{"snis":["*.example.com"],"acme":{"directory":"https://x.example/dir"}}`, "snis[0]"},
		{"bad email", `{"snis":["a.example.com"],"acme":{"directory":"https://x.example/dir","email":"nope"}}`, "acme.email"},
		{"bad ca", `{"snis":["a.example.com"],"acme":{"directory":"https://x.example/dir","ca":"nope"}}`, "acme.ca"},
		{"bad challenge", `{"snis":["a.example.com"],"acme":{"directory":"https://x.example/dir","challenge":"dns-01"}}`, "acme.challenge"},
		{"name taken", `{"snis":["api.example.com"],"acme":{"directory":"https://x.example/dir"}}`, "snis[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, data := s.call(t, "PUT", "/v1/certificates/bad", adminToken, tc.body)
			if code != 422 && code != 409 || !strings.HasPrefix(h.Get("Content-Type"), "application/problem+json") || !strings.Contains(string(data), `"`+tc.field+`"`) {
				t.Fatalf("= %d %s, want a problem at %s", code, data, tc.field)
			}
		})
	}
	if _, _, err := s.cat.UpdateACME(context.Background(), "missing", func(*config.Certificate) error { return nil }); err == nil {
		t.Fatal("UpdateACME of a missing certificate succeeded")
	}

	// The ACME client issues: cert, key, state and a challenge in one write.
	leaf := ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	next := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	_, _, err := s.cat.UpdateACME(context.Background(), "api", func(c *config.Certificate) error {
		c.Cert, c.Key = leaf.CertPEM, leaf.KeyPEM
		c.ACME.State = &config.CertificateACMEState{Status: config.ACMEValid, NextAttempt: &next,
			IssuedFor: config.ACMEIssuedFor(c.ACME.Directory, c.SNIs)}
		c.ACME.Challenges = []config.ACMEChallenge{{Type: config.ACMEHTTP01, Domain: "api.example.com", Token: "tok", KeyAuth: "tok.SECRETTHUMB"}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, data := s.mustStatus(t, 200, "GET", "/v1/certificates/api", "")
	var got config.Certificate
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.ACME == nil || got.ACME.State == nil || got.ACME.State.Status != config.ACMEValid || got.Status == nil || got.Status.DaysLeft < 0 {
		t.Fatalf("GET = %s", data)
	}
	for _, path := range []string{"/v1/certificates/api", "/v1/certificates", "/v1/config"} {
		_, out := s.mustStatus(t, 200, "GET", path, "")
		if strings.Contains(string(out), "PRIVATE KEY") || strings.Contains(string(out), "SECRETTHUMB") || strings.Contains(string(out), `"challenges"`) {
			t.Fatalf("GET %s shows the key or the challenges: %s", path, out)
		}
	}
	// GET output put back: no change, the key kept.
	h, _ := s.mustStatus(t, 200, "PUT", "/v1/certificates/api", string(data))
	if h.Get("ETag") != `"2"` {
		t.Fatalf("GET output put back made version %s, want 2 (no change)", h.Get("ETag"))
	}
	// A write cannot forge the certificate or the state.
	forged := ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	s.mustStatus(t, 200, "PUT", "/v1/certificates/api", `{"snis":["api.example.com"],"cert":`+jsonString(forged.CertPEM)+`,"key":`+jsonString(forged.KeyPEM)+
		`,"acme":{"directory":"https://acme.example.net/dir","email":"ops@example.com","ca":`+jsonString(ca.PEM)+`,"state":{"status":"valid"}}}`)
	cur, ok := s.cat.Current().State.Config.Certificate("api")
	if !ok || cur.Cert != leaf.CertPEM || cur.Key != leaf.KeyPEM || cur.ACME.State.NextAttempt == nil || len(cur.ACME.Challenges) != 1 {
		t.Fatalf("a write replaced what the ACME client maintains: %+v", cur.ACME)
	}
	// The export imports back (it has no key).
	_, exp := s.mustStatus(t, 200, "GET", "/v1/config", "")
	var e struct {
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(exp, &e); err != nil {
		t.Fatal(err)
	}
	_, res := s.mustStatus(t, 200, "PUT", "/v1/config", string(e.Config))
	if !strings.Contains(string(res), `"update":0`) {
		t.Fatalf("re-importing the export changed something: %s", res)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
