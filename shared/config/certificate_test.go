package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/testutil"
)

// TestCertificateValidate: every rule of the kind, with the field path an
// operator is pointed at, and no message ever quoting the key.
func TestCertificateValidate(t *testing.T) {
	ca := testutil.NewCA(t)
	inter := ca.Intermediate(t)
	leaf := ca.Issue(t, []string{"api.example.com", "*.example.org"}, time.Time{}, time.Time{})
	chained := inter.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	other := ca.Issue(t, []string{"api.example.com"}, time.Time{}, time.Time{})
	// Reversed chain: the intermediate first, then the leaf.
	blocks := strings.SplitAfter(chained.CertPEM, "-----END CERTIFICATE-----\n")
	reversed := blocks[1] + blocks[0]

	ok := func() Certificate {
		return Certificate{Name: "api", Cert: leaf.CertPEM, Key: leaf.KeyPEM, SNIs: []string{"api.example.com", "*.example.org"}}
	}
	cases := []struct {
		name   string
		edit   func(c *Certificate)
		fields []string
		kind   error
	}{
		{"valid", func(*Certificate) {}, nil, nil},
		{"valid chain with intermediate", func(c *Certificate) {
			c.Cert, c.Key, c.SNIs = chained.CertPEM, chained.KeyPEM, []string{"api.example.com"}
		}, nil, nil},
		{"name", func(c *Certificate) { c.Name = "-x" }, []string{"name"}, ErrInvalid},
		{"cert missing", func(c *Certificate) { c.Cert = "" }, []string{"cert"}, ErrInvalid},
		{"cert not PEM", func(c *Certificate) { c.Cert = "hello" }, []string{"cert"}, ErrInvalid},
		{"cert garbage DER", func(c *Certificate) {
			c.Cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
		}, []string{"cert"}, ErrInvalid},
		{"key in cert", func(c *Certificate) { c.Cert = leaf.CertPEM + leaf.KeyPEM }, []string{"cert"}, ErrInvalid},
		{"trailing data", func(c *Certificate) { c.Cert = leaf.CertPEM + "junk" }, []string{"cert"}, ErrInvalid},
		{"chain out of order", func(c *Certificate) {
			c.Cert, c.Key, c.SNIs = reversed, chained.KeyPEM, []string{"api.example.com"}
		}, []string{"cert"}, ErrInvalid},
		{"key missing is fine on its own", func(c *Certificate) { c.Key = "" }, nil, nil},
		{"key not PEM", func(c *Certificate) { c.Key = "secret-material" }, []string{"key"}, ErrInvalid},
		{"key of another certificate", func(c *Certificate) { c.Key = other.KeyPEM }, []string{"key"}, ErrInvalid},
		{"key is a certificate", func(c *Certificate) { c.Key = leaf.CertPEM }, []string{"key"}, ErrInvalid},
		{"snis empty", func(c *Certificate) { c.SNIs = nil }, []string{"snis"}, ErrInvalid},
		{"sni bad", func(c *Certificate) { c.SNIs = []string{"api.example.com", "a b"} }, []string{"snis[1]"}, ErrInvalid},
		{"sni two-label wildcard", func(c *Certificate) { c.SNIs = []string{"*.*.example.org"} }, []string{"snis[0]"}, ErrInvalid},
		{"sni inner wildcard", func(c *Certificate) { c.SNIs = []string{"a*.example.org"} }, []string{"snis[0]"}, ErrInvalid},
		{"sni bare wildcard", func(c *Certificate) { c.SNIs = []string{"*.org"} }, []string{"snis[0]"}, ErrInvalid},
		{"sni duplicate", func(c *Certificate) { c.SNIs = []string{"api.example.com", "api.example.com"} }, []string{"snis[1]"}, ErrInvalid},
		{"sni not covered", func(c *Certificate) { c.SNIs = []string{"api.example.com", "www.example.net"} }, []string{"snis[1]"}, ErrInvalid},
		{"sni under wildcard SAN", func(c *Certificate) { c.SNIs = []string{"a.example.org"} }, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.edit(&c)
			c.Normalize()
			err := c.Validate()
			checkFields(t, err, tc.kind, tc.fields)
			if err != nil && strings.Contains(err.Error(), "PRIVATE KEY-----\n") || err != nil && strings.Contains(err.Error(), "secret-material") {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
}

func checkFields(t *testing.T, err, kind error, fields []string) {
	t.Helper()
	if kind == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %v, want %v", err, kind)
	}
	var got []string
	for _, f := range FieldErrors(err) {
		got = append(got, f.Field)
	}
	if strings.Join(got, ",") != strings.Join(fields, ",") {
		t.Fatalf("fields %v, want %v (%v)", got, fields, err)
	}
}

// TestCertificatesInConfig: the rules between certificates (one per SNI,
// names unique) and the key required once stored, as Validate and the
// object check report them.
func TestCertificatesInConfig(t *testing.T) {
	ca := testutil.NewCA(t)
	a := ca.Issue(t, []string{"a.example.com", "*.example.com"}, time.Time{}, time.Time{})
	b := ca.Issue(t, []string{"b.example.com", "*.example.com"}, time.Time{}, time.Time{})
	cfg := Config{Certificates: []Certificate{
		{Name: "a", Cert: a.CertPEM, Key: a.KeyPEM, SNIs: []string{"a.example.com", "*.example.com"}},
		{Name: "b", Cert: b.CertPEM, Key: b.KeyPEM, SNIs: []string{"b.example.com", "*.example.com"}},
	}}
	checkFields(t, cfg.Validate(), ErrConflict, []string{"certificates[1].snis[1]"})
	in, err := cfg.ValidateObjects()
	if err != nil || len(in.Certificates) != 1 || in.Certificates[1] == "" {
		t.Fatalf("ValidateObjects = %+v, %v; want certificates[1] rejected", in, err)
	}
	checkFields(t, cfg.CheckCertificate(&cfg.Certificates[1]), ErrConflict, []string{"snis[1]"})

	cfg.Certificates[1].SNIs = []string{"b.example.com"}
	cfg.Certificates[0].Key = ""
	checkFields(t, cfg.Validate(), ErrInvalid, []string{"certificates[0].key"})
	checkFields(t, cfg.CheckCertificate(&cfg.Certificates[0]), ErrInvalid, []string{"key"})
}

// TestCertificateExpiry: expired and not-yet-valid refused, under 30 days
// a warning, otherwise nothing.
func TestCertificateExpiry(t *testing.T) {
	ca := testutil.NewCA(t)
	now := time.Now()
	cases := []struct {
		name      string
		from, to  time.Time
		wantErr   bool
		wantWarns bool
	}{
		{"expired", now.Add(-48 * time.Hour), now.Add(-time.Minute), true, false},
		{"not yet valid", now.Add(time.Hour), now.Add(90 * 24 * time.Hour), true, false},
		{"expiring", now.Add(-time.Hour), now.Add(10 * 24 * time.Hour), false, true},
		{"fine", now.Add(-time.Hour), now.Add(90 * 24 * time.Hour), false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := ca.Issue(t, []string{"x.example.com"}, tc.from, tc.to)
			c := &Certificate{Name: "x", Cert: l.CertPEM, Key: l.KeyPEM, SNIs: []string{"x.example.com"}}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate is not about time: %v", err)
			}
			warn, err := CertificateExpiry(c, now)
			if (err != nil) != tc.wantErr || (warn != "") != tc.wantWarns {
				t.Fatalf("CertificateExpiry = %q, %v", warn, err)
			}
			if err != nil {
				checkFields(t, err, ErrInvalid, []string{"cert"})
			}
			st := c.Describe(now)
			if st == nil || (len(st.Warnings) > 0) != (tc.wantErr || tc.wantWarns) {
				t.Fatalf("Describe = %+v", st)
			}
		})
	}
}

// TestCertificateKeepsKey: a write without a key keeps the stored key only
// when it matches the new certificate.
func TestCertificateKeepsKey(t *testing.T) {
	ca := testutil.NewCA(t)
	a := ca.Issue(t, []string{"a.example.com"}, time.Time{}, time.Time{})
	b := ca.Issue(t, []string{"a.example.com"}, time.Time{}, time.Time{})
	stored := &Certificate{Name: "a", Cert: a.CertPEM, Key: a.KeyPEM}
	same := &Certificate{Name: "a", Cert: a.CertPEM}
	CertificateKeepsKey(stored, same)
	if same.Key != a.KeyPEM {
		t.Fatal("same certificate: stored key not kept")
	}
	renewed := &Certificate{Name: "a", Cert: b.CertPEM}
	CertificateKeepsKey(stored, renewed)
	if renewed.Key != "" {
		t.Fatal("new key pair: the stored key must not be kept")
	}
	if r := stored.Redacted(); r.Key != "" || stored.Key == "" {
		t.Fatal("Redacted must clear the copy's key only")
	}
}
