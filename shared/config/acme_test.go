package config

import (
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/testutil"
)

// TestACMEValidate: every rule of a certificate's acme section, with the
// field path an operator is pointed at.
func TestACMEValidate(t *testing.T) {
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	other := ca.Issue(t, []string{"www.example.com"}, time.Time{}, time.Time{})
	ok := func() Certificate {
		return Certificate{Name: "api", SNIs: []string{"api.example.com"}, ACME: &CertificateACME{
			Directory: "https://acme.example.net/dir", Email: "ops@example.com", CA: ca.PEM,
		}}
	}
	// A 32-byte MAC key, base64url as a CA hands it out.
	const hmacKey = "c2VjcmV0LWtleS1vZi0zMi1ieXRlcy1mb3ItaHMyNTY"
	chal := ACMEChallenge{Type: ACMEHTTP01, Domain: "api.example.com", Token: "tok_en-1", KeyAuth: "tok_en-1.thumb-print_"}
	cases := []struct {
		name   string
		edit   func(c *Certificate)
		fields []string
	}{
		{"pending: no cert, no key", func(*Certificate) {}, nil},
		{"no email, no ca", func(c *Certificate) { c.ACME.Email, c.ACME.CA = "", "" }, nil},
		{"issued", func(c *Certificate) { c.Cert, c.Key = leaf.CertPEM, leaf.KeyPEM }, nil},
		{"issued for other names", func(c *Certificate) { c.Cert, c.Key = other.CertPEM, other.KeyPEM }, []string{"snis[0]"}},
		{"key without cert", func(c *Certificate) { c.Key = leaf.KeyPEM }, []string{"key"}},
		{"directory missing", func(c *Certificate) { c.ACME.Directory = "" }, []string{"acme.directory"}},
		{"directory http", func(c *Certificate) { c.ACME.Directory = "http://acme.example.net/dir" }, []string{"acme.directory"}},
		{"directory user info", func(c *Certificate) { c.ACME.Directory = "https://u:p@acme.example.net/dir" }, []string{"acme.directory"}},
		{"directory relative", func(c *Certificate) { c.ACME.Directory = "/dir" }, []string{"acme.directory"}},
		{"directory too long", func(c *Certificate) {
			c.ACME.Directory = "https://a.example/" + strings.Repeat("d", MaxACMEDirectoryBytes)
		}, []string{"acme.directory"}},
		{"email bad", func(c *Certificate) { c.ACME.Email = "ops at example" }, []string{"acme.email"}},
		{"email with name", func(c *Certificate) { c.ACME.Email = "Ops <ops@example.com>" }, []string{"acme.email"}},
		{"ca not PEM", func(c *Certificate) { c.ACME.CA = "hello" }, []string{"acme.ca"}},
		{"ca a key", func(c *Certificate) { c.ACME.CA = leaf.KeyPEM }, []string{"acme.ca"}},
		{"challenge http-01", func(c *Certificate) { c.ACME.Challenge = ACMEHTTP01 }, nil},
		{"challenge tls-alpn-01", func(c *Certificate) { c.ACME.Challenge = ACMETLSALPN01 }, nil},
		{"challenge dns-01", func(c *Certificate) { c.ACME.Challenge = "dns-01" }, []string{"acme.challenge"}},
		{"eab", func(c *Certificate) { c.ACME.EAB = &ACMEEAB{KID: "kid-1", HMACKey: hmacKey} }, nil},
		{"eab padded key", func(c *Certificate) { c.ACME.EAB = &ACMEEAB{KID: "kid-1", HMACKey: hmacKey + "="} }, nil},
		{"eab key left out (kept from the stored object)", func(c *Certificate) { c.ACME.EAB = &ACMEEAB{KID: "kid-1"} }, nil},
		{"eab without kid", func(c *Certificate) { c.ACME.EAB = &ACMEEAB{HMACKey: hmacKey} }, []string{"acme.eab.kid"}},
		{"eab kid with a space", func(c *Certificate) { c.ACME.EAB = &ACMEEAB{KID: "kid 1", HMACKey: hmacKey} }, []string{"acme.eab.kid"}},
		{"eab kid too long", func(c *Certificate) {
			c.ACME.EAB = &ACMEEAB{KID: strings.Repeat("k", MaxACMEEABKIDBytes+1), HMACKey: hmacKey}
		}, []string{"acme.eab.kid"}},
		{"eab key not base64url", func(c *Certificate) { c.ACME.EAB = &ACMEEAB{KID: "kid-1", HMACKey: "not/base64+url"} }, []string{"acme.eab.hmac_key"}},
		{"eab key too short for HS256", func(c *Certificate) { c.ACME.EAB = &ACMEEAB{KID: "kid-1", HMACKey: "c2hvcnQ"} }, []string{"acme.eab.hmac_key"}},
		{"eab key too long", func(c *Certificate) {
			c.ACME.EAB = &ACMEEAB{KID: "kid-1", HMACKey: strings.Repeat("A", MaxACMEEABKeyBytes+4)}
		}, []string{"acme.eab.hmac_key"}},
		{"eab empty", func(c *Certificate) { c.ACME.EAB = &ACMEEAB{} }, []string{"acme.eab.kid"}},
		{"wildcard", func(c *Certificate) { c.SNIs = []string{"api.example.com", "*.example.com"} }, []string{"snis[1]"}},
		{"challenges from the control plane", func(c *Certificate) { c.ACME.Challenges = []ACMEChallenge{chal} }, nil},
		{"challenge type bad", func(c *Certificate) {
			ch := chal
			ch.Type = "dns-01"
			c.ACME.Challenges = []ACMEChallenge{chal, ch}
		}, []string{"acme.challenges[1].type"}},
		{"challenge token with a slash", func(c *Certificate) {
			ch := chal
			ch.Token, ch.KeyAuth = "../x", "../x.abc"
			c.ACME.Challenges = []ACMEChallenge{ch}
		}, []string{"acme.challenges[0].token"}},
		{"challenge key auth of another token", func(c *Certificate) {
			ch := chal
			ch.KeyAuth = "other.thumb"
			c.ACME.Challenges = []ACMEChallenge{ch}
		}, []string{"acme.challenges[0].key_auth"}},
		{"challenge domain bad", func(c *Certificate) {
			ch := chal
			ch.Domain = "*.example.com"
			c.ACME.Challenges = []ACMEChallenge{ch}
		}, []string{"acme.challenges[0].domain"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.edit(&c)
			c.Normalize()
			kind := ErrInvalid
			if tc.fields == nil {
				kind = nil
			}
			checkFields(t, c.Validate(), kind, tc.fields)
		})
	}
	// In a configuration: a pending ACME certificate needs no key; an
	// issued one does.
	cfg := Config{Certificates: []Certificate{ok()}}
	cfg.FillEmpty()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("pending ACME certificate in a configuration: %v", err)
	}
	if err := cfg.CheckCertificate(&cfg.Certificates[0]); err != nil {
		t.Fatalf("CheckCertificate of a pending ACME certificate: %v", err)
	}
	cfg.Certificates[0].Cert = leaf.CertPEM
	checkFields(t, cfg.Validate(), ErrInvalid, []string{"certificates[0].key"})
	// Once the stored key is kept (or not), the binding needs its MAC key:
	// both or neither.
	cfg.Certificates[0].Cert = ""
	cfg.Certificates[0].ACME.EAB = &ACMEEAB{KID: "kid-1"}
	checkFields(t, cfg.Validate(), ErrInvalid, []string{"certificates[0].acme.eab.hmac_key"})
	checkFields(t, cfg.CheckCertificate(&cfg.Certificates[0]), ErrInvalid, []string{"acme.eab.hmac_key"})
	// No message quotes the key.
	cfg.Certificates[0].ACME.EAB.HMACKey = "c2hvcnQ"
	if err := cfg.Validate(); err == nil || strings.Contains(err.Error(), "c2hvcnQ") {
		t.Fatalf("a short key: %v", err)
	}
}

// TestACMEKeep: what the control plane maintains is never taken from a
// write, and a change of names or directory makes an order due at once.
func TestACMEKeep(t *testing.T) {
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"api.example.com", "www.example.com"}, time.Time{}, time.Time{})
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	later := now.Add(time.Hour)
	stored := Certificate{Name: "api", SNIs: []string{"api.example.com", "www.example.com"}, Cert: leaf.CertPEM, Key: leaf.KeyPEM,
		ACME: &CertificateACME{Directory: "https://acme.example.net/dir", State: &CertificateACMEState{
			Status: ACMEFailed, Failures: 2, NextAttempt: &later, LastError: "boom",
			IssuedFor: ACMEIssuedFor("https://acme.example.net/dir", []string{"www.example.com", "api.example.com"}),
		}, Challenges: []ACMEChallenge{{Type: ACMEHTTP01, Domain: "api.example.com", Token: "t", KeyAuth: "t.k"}}}}

	t.Run("operator's cert, key, state and challenges are ignored", func(t *testing.T) {
		in := stored.Redacted()
		in.Cert, in.Key = "forged", "forged"
		in.ACME.State = &CertificateACMEState{Status: ACMEValid}
		CertificateKeepsKey(&stored, &in)
		if in.Cert != stored.Cert || in.Key != stored.Key || in.ACME.State != stored.ACME.State || len(in.ACME.Challenges) != 1 {
			t.Fatalf("kept %+v", in)
		}
		if !SameSpec(&stored, &in) {
			t.Fatalf("GET output put back is a change: %v", ChangedFields(&stored, &in))
		}
		if due, next := ACMEDue(&in, now); due || !next.Equal(later) {
			t.Fatalf("due %v next %v, want the backoff kept", due, next)
		}
	})
	t.Run("new object: nothing kept", func(t *testing.T) {
		in := stored.Redacted()
		CertificateKeepsKey(nil, &in)
		if in.Cert != "" || in.Key != "" || in.ACME.State != nil || in.ACME.Challenges != nil {
			t.Fatalf("kept %+v", in)
		}
		if due, _ := ACMEDue(&in, now); !due {
			t.Fatal("a new ACME certificate is not due")
		}
	})
	t.Run("fewer names: cert kept, order due now", func(t *testing.T) {
		in := stored.Redacted()
		in.SNIs = []string{"api.example.com"}
		CertificateKeepsKey(&stored, &in)
		if in.Cert != stored.Cert || in.ACME.State.Failures != 0 {
			t.Fatalf("kept %+v", in)
		}
		if due, _ := ACMEDue(&in, now); !due {
			t.Fatal("not due after a change of names")
		}
		if stored.ACME.State.Failures != 2 {
			t.Fatal("the stored state was written through")
		}
	})
	t.Run("a name the cert does not cover: no cert", func(t *testing.T) {
		in := stored.Redacted()
		in.SNIs = []string{"api.example.com", "new.example.com"}
		CertificateKeepsKey(&stored, &in)
		if in.Cert != "" || in.Key != "" {
			t.Fatal("kept a certificate that does not cover the names")
		}
		if err := in.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("eab: the MAC key is never shown and kept while kid and directory stay", func(t *testing.T) {
		const key = "c2VjcmV0LWtleS1vZi0zMi1ieXRlcy1mb3ItaHMyNTY"
		withEAB := stored
		a := *stored.ACME
		a.EAB = &ACMEEAB{KID: "kid-1", HMACKey: key}
		withEAB.ACME = &a
		r := withEAB.Redacted()
		if r.ACME.EAB == nil || r.ACME.EAB.KID != "kid-1" || r.ACME.EAB.HMACKey != "" || withEAB.ACME.EAB.HMACKey != key {
			t.Fatalf("redacted eab %+v (stored %+v)", r.ACME.EAB, withEAB.ACME.EAB)
		}
		in := withEAB.Redacted()
		CertificateKeepsKey(&withEAB, &in)
		if in.ACME.EAB.HMACKey != key || !SameSpec(&withEAB, &in) {
			t.Fatalf("GET output put back: eab %+v, changed %v", in.ACME.EAB, ChangedFields(&withEAB, &in))
		}
		for name, edit := range map[string]func(*Certificate){
			"another kid":       func(c *Certificate) { c.ACME.EAB.KID = "kid-2" },
			"another directory": func(c *Certificate) { c.ACME.Directory = "https://other.example.net/dir" },
		} {
			in := withEAB.Redacted()
			edit(&in)
			CertificateKeepsKey(&withEAB, &in)
			if in.ACME.EAB.HMACKey != "" {
				t.Errorf("%s: the stored MAC key was carried over", name)
			}
		}
		// A new key after a failure: ordered at once, not after the
		// backoff.
		in = withEAB.Redacted()
		in.ACME.EAB.HMACKey = "YW5vdGhlci1rZXktb2YtMzItYnl0ZXMtZm9yLWhzMjU"
		CertificateKeepsKey(&withEAB, &in)
		if due, _ := ACMEDue(&in, now); !due || in.ACME.State.Failures != 0 {
			t.Fatalf("a new EAB key after a failure is not due at once: %+v", in.ACME.State)
		}
		if withEAB.ACME.State.Failures != 2 {
			t.Fatal("the stored state was written through")
		}
	})
	t.Run("redacted has no key and no challenges", func(t *testing.T) {
		r := stored.Redacted()
		if r.Key != "" || r.ACME.Challenges != nil || len(stored.ACME.Challenges) != 1 {
			t.Fatalf("redacted %+v", r)
		}
	})
	t.Run("expiry is the control plane's job", func(t *testing.T) {
		old := ca.Issue(t, []string{"api.example.com"}, now.Add(-48*time.Hour), now.Add(-time.Hour))
		c := Certificate{Name: "x", SNIs: []string{"api.example.com"}, Cert: old.CertPEM, Key: old.KeyPEM, ACME: &CertificateACME{Directory: "https://a.example/d"}}
		if w, err := CertificateExpiry(&c, now); w != "" || err != nil {
			t.Fatalf("expiry rule applied to an ACME certificate: %q %v", w, err)
		}
	})
}
