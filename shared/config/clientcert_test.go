package config_test

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

func fields(err error) string {
	var got []string
	for _, fe := range config.FieldErrors(err) {
		got = append(got, fe.Field)
	}
	slices.Sort(got)
	return fmt.Sprint(got)
}

func TestClientCertValidate(t *testing.T) {
	ca, other := testutil.NewTestCA(t, "clients CA"), testutil.NewTestCA(t, "other CA")
	leaf := ca.Issue(t, "alice", testutil.ClientCertOptions{})
	leafPEM := "-----BEGIN CERTIFICATE-----\n" + "MIIB" + "\n-----END CERTIFICATE-----\n"
	tests := []struct {
		name   string
		cc     config.ClientCertAuth
		fields string // "" = valid
	}{
		{"valid", config.ClientCertAuth{CA: ca.PEM, CRLs: []string{ca.CRL(t, leaf.Leaf)}}, ""},
		{"two CAs", config.ClientCertAuth{CA: ca.PEM + other.PEM, CRLs: []string{other.CRL(t)}}, ""},
		{"no ca", config.ClientCertAuth{}, "[auth.client_cert.ca]"},
		{"not PEM", config.ClientCertAuth{CA: "hello"}, "[auth.client_cert.ca]"},
		{"broken certificate", config.ClientCertAuth{CA: leafPEM}, "[auth.client_cert.ca]"},
		{"a key in the bundle", config.ClientCertAuth{CA: ca.PEM + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, "[auth.client_cert.ca]"},
		{"CRL of another CA", config.ClientCertAuth{CA: ca.PEM, CRLs: []string{other.CRL(t)}}, "[auth.client_cert.crls[0]]"},
		{"CRL not PEM", config.ClientCertAuth{CA: ca.PEM, CRLs: []string{ca.CRL(t), "nope"}}, "[auth.client_cert.crls[1]]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := tc.cc
			r := config.Route{Name: "r", Paths: []string{"/"}, Service: "s", Auth: &config.RouteAuth{ClientCert: &cc}}
			err := r.Validate()
			if tc.fields == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, config.ErrInvalid) || fields(err) != tc.fields {
				t.Fatalf("%v: fields %s, want %s", err, fields(err), tc.fields)
			}
		})
	}
	// A leaf (not a CA) is refused as a bundle.
	leafOnly := config.ClientCertAuth{CA: string(pemOf(leaf.Certificate[0]))}
	if _, err := config.ParseClientCA(&leafOnly); fields(err) != "[ca]" || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("leaf as CA: %v", err)
	}
}

func TestVerifyClientCert(t *testing.T) {
	ca, other := testutil.NewTestCA(t, "clients CA"), testutil.NewTestCA(t, "other CA")
	good := ca.Issue(t, "alice", testutil.ClientCertOptions{DNS: []string{"Alice.Example.com"}, URIs: []string{"spiffe://example.org/alice"}, Emails: []string{"alice@example.com"}})
	revoked := ca.Issue(t, "mallory", testutil.ClientCertOptions{})
	expired := ca.Issue(t, "old", testutil.ClientCertOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	server := ca.Issue(t, "server", testutil.ClientCertOptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	foreign := other.Issue(t, "alice", testutil.ClientCertOptions{})
	parsed, err := config.ParseClientCA(&config.ClientCertAuth{CA: ca.PEM, CRLs: []string{ca.CRL(t, revoked.Leaf)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		want  error
	}{
		{"valid", []*x509.Certificate{good.Leaf}, nil},
		{"none", nil, config.ErrCertMissing},
		{"revoked", []*x509.Certificate{revoked.Leaf}, config.ErrCertRevoked},
		{"expired", []*x509.Certificate{expired.Leaf}, config.ErrCertExpired},
		{"server certificate", []*x509.Certificate{server.Leaf}, config.ErrCertUsage},
		{"other CA", []*x509.Certificate{foreign.Leaf}, config.ErrCertUntrusted},
		{"other CA, our CA sent as intermediate", []*x509.Certificate{foreign.Leaf, ca.Cert}, config.ErrCertUntrusted},
	} {
		_, err := parsed.VerifyClientCert(tc.chain, time.Now())
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if got := fmt.Sprint(config.CertIdentities(good.Leaf)); got != "[uri:spiffe://example.org/alice dns:alice.example.com email:alice@example.com cn:alice]" {
		t.Fatalf("identities %s", got)
	}
}

func TestCertIdentitiesValidate(t *testing.T) {
	c := config.Config{Consumers: []config.Consumer{
		{Name: "alice", CertIdentities: []string{"cn:alice", "dns:alice.example.com", "uri:spiffe://example.org/alice", "email:a@example.com"}},
		{Name: "bob", CertIdentities: []string{"cn:bob", "cn:alice", "DNS:x", "dns:Bob.example.com", "bob"}},
	}}
	err := c.Validate()
	if got := fields(err); got != "[consumers[1].cert_identities[2] consumers[1].cert_identities[3] consumers[1].cert_identities[4]]" {
		t.Fatalf("invalid: %s (%v)", got, err)
	}
	c.Consumers[1].CertIdentities = []string{"cn:bob", "cn:alice"}
	if err := c.Validate(); !errors.Is(err, config.ErrConflict) || fields(err) != "[consumers[1].cert_identities[1]]" {
		t.Fatalf("duplicate: %v", err)
	}
}

func pemOf(der []byte) []byte {
	return []byte("-----BEGIN CERTIFICATE-----\n" + b64lines(der) + "-----END CERTIFICATE-----\n")
}

func b64lines(der []byte) string {
	s := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	return b.String() + s + "\n"
}

// BenchmarkVerifyClientCert: what the auth stage pays per request on a
// certificate route (a P-256 leaf against a one-CA bundle with a CRL).
func BenchmarkVerifyClientCert(b *testing.B) {
	ca := testutil.NewTestCA(b, "clients CA")
	leaf := ca.Issue(b, "alice", testutil.ClientCertOptions{})
	parsed, err := config.ParseClientCA(&config.ClientCertAuth{CA: ca.PEM, CRLs: []string{ca.CRL(b, ca.Issue(b, "old", testutil.ClientCertOptions{}).Leaf)}})
	if err != nil {
		b.Fatal(err)
	}
	chain := []*x509.Certificate{leaf.Leaf}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parsed.VerifyClientCert(chain, now); err != nil {
			b.Fatal(err)
		}
	}
}
