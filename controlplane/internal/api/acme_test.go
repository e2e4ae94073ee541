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
	s.reimportExport(t)
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestACMEEABKeyNeverReturned: an ACME certificate's External Account
// Binding MAC key is a secret: no write answer, GET, list, export or
// audit entry shows it; a PUT of GET output or an import of the export
// keeps it; a binding without its MAC key (nothing stored) or with a bad
// one is refused with the field path, and the message never quotes it.
func TestACMEEABKeyNeverReturned(t *testing.T) {
	s := newTestServer(t, false)
	const secret = "c2VjcmV0LWtleS1vZi0zMi1ieXRlcy1mb3ItaHMyNTY" // 32 bytes, base64url
	cert := func(eab string) string {
		return `{"snis":["api.example.com"],"acme":{"directory":"https://acme.example.net/dir","eab":` + eab + `}}`
	}
	for _, tc := range []struct{ name, eab, field string }{
		{"no key, none stored", `{"kid":"kid-1"}`, "acme.eab.hmac_key"},
		{"no kid", `{"hmac_key":"` + secret + `"}`, "acme.eab.kid"},
		{"key not base64url", `{"kid":"kid-1","hmac_key":"not+base64/url"}`, "acme.eab.hmac_key"},
		{"key too short", `{"kid":"kid-1","hmac_key":"c2hvcnQta2V5"}`, "acme.eab.hmac_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, data := s.call(t, "PUT", "/v1/certificates/api", adminToken, cert(tc.eab))
			if code != 422 || !strings.HasPrefix(h.Get("Content-Type"), "application/problem+json") || !strings.Contains(string(data), `"`+tc.field+`"`) {
				t.Fatalf("= %d %s, want a problem at %s", code, data, tc.field)
			}
			if strings.Contains(string(data), "c2hvcnQta2V5") || strings.Contains(string(data), "not+base64") {
				t.Fatalf("the problem quotes the key: %s", data)
			}
		})
	}
	s.mustStatus(t, 404, "GET", "/v1/certificates/api", "") // nothing half-applied

	_, created := s.mustStatus(t, 201, "PUT", "/v1/certificates/api", cert(`{"kid":"kid-1","hmac_key":"`+secret+`"}`))
	_, one := s.mustStatus(t, 200, "GET", "/v1/certificates/api", "")
	if !strings.Contains(string(one), `"eab":{"kid":"kid-1"}`) {
		t.Fatalf("GET does not show the kid: %s", one)
	}
	// GET output put back: no change, the key kept.
	h, kept := s.mustStatus(t, 200, "PUT", "/v1/certificates/api", string(one))
	if h.Get("ETag") != `"1"` {
		t.Fatalf("GET output put back made version %s, want 1 (no change)", h.Get("ETag"))
	}
	exp, imported := s.reimportExport(t)
	if cur, ok := s.cat.Current().State.Config.Certificate("api"); !ok || cur.ACME.EAB == nil || cur.ACME.EAB.HMACKey != secret {
		t.Fatalf("the stored binding lost its key: %+v", cur)
	}
	// Another kid without a key: the stored key is not carried over.
	code, _, data := s.call(t, "PUT", "/v1/certificates/api", adminToken, cert(`{"kid":"kid-2"}`))
	if code != 422 || !strings.Contains(string(data), `"acme.eab.hmac_key"`) {
		t.Fatalf("another kid without a key = %d %s", code, data)
	}
	_, list := s.mustStatus(t, 200, "GET", "/v1/certificates", "")
	_, audit := s.mustStatus(t, 200, "GET", "/v1/audit", "")
	_, exp2 := s.mustStatus(t, 200, "GET", "/v1/config", "")
	for what, b := range map[string][]byte{"create answer": created, "GET": one, "update answer": kept, "export": exp,
		"import answer": imported, "refusal": data, "list": list, "audit": audit, "export after": exp2} {
		if strings.Contains(string(b), secret) || strings.Contains(string(b), "hmac_key\":\"") {
			t.Fatalf("the %s shows the EAB MAC key: %s", what, b)
		}
	}
}
