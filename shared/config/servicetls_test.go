package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/testutil"
)

// TestServiceTLSValidate: the rules of a service's tls block, with the
// field paths Validate reports (ParseServiceTLS agrees: it fails exactly
// when Validate, with the key required, does), and no message quoting the
// key.
func TestServiceTLSValidate(t *testing.T) {
	ca := testutil.NewCA(t)
	client := ca.IssueClient(t, "portico")
	other := ca.IssueClient(t, "other")
	server := ca.Issue(t, []string{"svc.internal"}, time.Time{}, time.Time{})

	keyBody := strings.Split(client.KeyPEM, "\n")[1] // a line of the key material
	ok := func() Service {
		return Service{Name: "s", Targets: []Target{{URL: "https://10.0.0.1:8443"}}, TLS: &ServiceTLS{
			CA: ca.PEM, ServerName: "svc.internal", ClientCert: client.CertPEM, ClientKey: client.KeyPEM,
		}}
	}
	cases := []struct {
		name   string
		edit   func(s *Service)
		fields []string // with the key required (Config.Validate)
	}{
		{"valid", func(*Service) {}, nil},
		{"empty block: system roots", func(s *Service) { s.TLS = &ServiceTLS{} }, nil},
		{"ca only", func(s *Service) { s.TLS = &ServiceTLS{CA: ca.PEM} }, nil},
		{"server name is an IP", func(s *Service) { s.TLS.ServerName = "10.0.0.1" }, nil},
		{"ca bundle of two", func(s *Service) { s.TLS.CA = ca.PEM + testutil.NewCA(t).PEM }, nil},
		{"consul https", func(s *Service) {
			s.Targets, s.Consul = nil, &ConsulSource{Service: "x", Scheme: "https"}
		}, nil},
		{"plain targets", func(s *Service) { s.Targets = []Target{{URL: "http://10.0.0.1"}} }, []string{"tls"}},
		{"one plain target", func(s *Service) {
			s.Targets = append(s.Targets, Target{URL: "http://10.0.0.2"})
		}, []string{"tls"}},
		{"consul http", func(s *Service) { s.Targets, s.Consul = nil, &ConsulSource{Service: "x"} }, []string{"tls"}},
		{"ca not PEM", func(s *Service) { s.TLS.CA = "hello" }, []string{"tls.ca"}},
		{"ca garbage DER", func(s *Service) {
			s.TLS.CA = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
		}, []string{"tls.ca"}},
		{"ca carries a key", func(s *Service) { s.TLS.CA = ca.PEM + client.KeyPEM }, []string{"tls.ca"}},
		{"ca trailing data", func(s *Service) { s.TLS.CA = ca.PEM + "junk" }, []string{"tls.ca"}},
		{"server name with port", func(s *Service) { s.TLS.ServerName = "svc.internal:443" }, []string{"tls.server_name"}},
		{"server name wildcard", func(s *Service) { s.TLS.ServerName = "*.internal" }, []string{"tls.server_name"}},
		{"key without cert", func(s *Service) { s.TLS.ClientCert = "" }, []string{"tls.client_key"}},
		{"cert without key", func(s *Service) { s.TLS.ClientKey = "" }, []string{"tls.client_key"}},
		{"cert not PEM", func(s *Service) { s.TLS.ClientCert = "x" }, []string{"tls.client_cert"}},
		{"key not PEM", func(s *Service) { s.TLS.ClientKey = "secret-material" }, []string{"tls.client_key"}},
		{"key of another certificate", func(s *Service) { s.TLS.ClientKey = other.KeyPEM }, []string{"tls.client_key"}},
		{"key of the server", func(s *Service) { s.TLS.ClientKey = server.KeyPEM }, []string{"tls.client_key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := ok()
			tc.edit(&s)
			s.Normalize()
			cfg := &Config{Services: []Service{s}}
			err := cfg.Validate()
			var want []string
			for _, f := range tc.fields {
				want = append(want, "services[0]."+f)
			}
			if len(want) == 0 {
				checkFields(t, err, nil, nil)
			} else {
				checkFields(t, err, ErrInvalid, want)
			}
			// The object on its own lets the key be left out (a write
			// keeps the stored one); otherwise it says the same.
			objErr := s.Validate()
			if tc.name == "cert without key" {
				checkFields(t, objErr, nil, nil)
			} else if len(tc.fields) == 0 {
				checkFields(t, objErr, nil, nil)
			} else {
				checkFields(t, objErr, ErrInvalid, tc.fields)
			}
			// The data plane's parser agrees on the tls block's own rules.
			if s.TLS != nil {
				_, perr := ParseServiceTLS(s.TLS)
				tlsOnly := len(tc.fields) > 0 && tc.fields[0] != "tls"
				if (perr != nil) != tlsOnly {
					t.Fatalf("ParseServiceTLS = %v, Validate fields %v", perr, tc.fields)
				}
				if perr != nil && !errors.Is(perr, ErrServiceTLS) {
					t.Fatalf("ParseServiceTLS error %v is not ErrServiceTLS", perr)
				}
			}
			for _, e := range []error{err, objErr} {
				if e != nil && (strings.Contains(e.Error(), "PRIVATE KEY-----\n") || strings.Contains(e.Error(), keyBody) || strings.Contains(e.Error(), "secret-material")) {
					t.Fatalf("error quotes the key: %v", e)
				}
			}
		})
	}
}

// TestServiceKeepsKey: the client key is a secret like a certificate's:
// Redacted drops it, a write without it keeps the stored one when it
// matches client_cert, and CheckService asks for it otherwise.
func TestServiceKeepsKey(t *testing.T) {
	ca := testutil.NewCA(t)
	a := ca.IssueClient(t, "a")
	b := ca.IssueClient(t, "b")
	stored := Service{Name: "s", Targets: []Target{{URL: "https://x"}}, TLS: &ServiceTLS{ClientCert: a.CertPEM, ClientKey: a.KeyPEM}}

	red := stored.Redacted()
	if red.TLS.ClientKey != "" || stored.TLS.ClientKey == "" || red.TLS.ClientCert != a.CertPEM {
		t.Fatalf("Redacted: copy key %q, stored key kept %v", red.TLS.ClientKey, stored.TLS.ClientKey != "")
	}
	cases := []struct {
		name    string
		cert    string
		key     string
		wantKey string
		check   bool // CheckService passes
	}{
		{"same cert, no key: kept", a.CertPEM, "", a.KeyPEM, true},
		{"other cert, no key: not kept", b.CertPEM, "", "", false},
		{"new key given: used", b.CertPEM, b.KeyPEM, b.KeyPEM, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := Service{Name: "s", Targets: []Target{{URL: "https://x"}}, TLS: &ServiceTLS{ClientCert: tc.cert, ClientKey: tc.key}}
			ServiceKeepsKey(&stored, &obj)
			if obj.TLS.ClientKey != tc.wantKey {
				t.Fatalf("key kept = %v, want %v", obj.TLS.ClientKey != "", tc.wantKey != "")
			}
			err := (&Config{}).CheckService(&obj)
			if (err == nil) != tc.check {
				t.Fatalf("CheckService = %v", err)
			}
			if err != nil {
				checkFields(t, err, ErrInvalid, []string{"tls.client_key"})
			}
		})
	}
	// No stored service, or one without tls: nothing to keep.
	obj := Service{Name: "s", TLS: &ServiceTLS{ClientCert: a.CertPEM}}
	ServiceKeepsKey(nil, &obj)
	ServiceKeepsKey(&Service{Name: "s"}, &obj)
	if obj.TLS.ClientKey != "" {
		t.Fatal("a key appeared from nowhere")
	}
}
