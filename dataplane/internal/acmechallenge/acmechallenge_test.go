package acmechallenge

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/portico-gw/portico/shared/config"
)

func cfgWith(chs ...config.ACMEChallenge) *config.Config {
	return &config.Config{Certificates: []config.Certificate{
		{Name: "plain", SNIs: []string{"plain.example.com"}},
		{Name: "api", SNIs: []string{"api.example.com", "www.example.com"}, ACME: &config.CertificateACME{Directory: "https://a.example/dir", Challenges: chs}},
	}}
}

// TestHTTP01: the answer for a known token and its domain, before the
// routes; everything else goes on to them.
func TestHTTP01(t *testing.T) {
	a := New(nil)
	a.Apply(cfgWith(
		config.ACMEChallenge{Type: config.ACMEHTTP01, Domain: "api.example.com", Token: "tok1", KeyAuth: "tok1.thumb"},
		config.ACMEChallenge{Type: config.ACMETLSALPN01, Domain: "www.example.com", Token: "tok2", KeyAuth: "tok2.thumb"},
	))
	routes := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "routes")
	})
	h := a.Wrap(routes)
	cases := []struct {
		name, method, host, path string
		status                   int
		body                     string
	}{
		{"answer", "GET", "api.example.com", "/.well-known/acme-challenge/tok1", 200, "tok1.thumb"},
		{"host with port, upper case", "GET", "API.example.com:80", "/.well-known/acme-challenge/tok1", 200, "tok1.thumb"},
		{"head", "HEAD", "api.example.com", "/.well-known/acme-challenge/tok1", 200, ""},
		{"another domain", "GET", "www.example.com", "/.well-known/acme-challenge/tok1", 418, "routes"},
		{"unknown token", "GET", "api.example.com", "/.well-known/acme-challenge/nope", 418, "routes"},
		{"tls-alpn-01 token", "GET", "www.example.com", "/.well-known/acme-challenge/tok2", 418, "routes"},
		{"post", "POST", "api.example.com", "/.well-known/acme-challenge/tok1", 418, "routes"},
		{"other path", "GET", "api.example.com", "/tok1", 418, "routes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "http://"+tc.host+tc.path, nil)
			req.Host = tc.host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status || rec.Body.String() != tc.body {
				t.Fatalf("= %d %q, want %d %q", rec.Code, rec.Body.String(), tc.status, tc.body)
			}
		})
	}
	// A snapshot without the challenge withdraws it.
	a.Apply(cfgWith())
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://api.example.com/.well-known/acme-challenge/tok1", nil)
	h.ServeHTTP(rec, req)
	if rec.Code != 418 {
		t.Fatalf("withdrawn challenge answered %d", rec.Code)
	}
}

// TestTLSALPN01: the challenge certificate names the domain and carries
// the key authorization's digest in the critical acmeIdentifier
// extension (RFC 8737); it is made once per challenge.
func TestTLSALPN01(t *testing.T) {
	a := New(nil)
	ch := config.ACMEChallenge{Type: config.ACMETLSALPN01, Domain: "www.example.com", Token: "tok2", KeyAuth: "tok2.thumb"}
	a.Apply(cfgWith(ch))
	cert := a.ALPNCertificate("WWW.example.com.")
	if cert == nil {
		t.Fatal("no certificate for the challenge's domain")
	}
	if a.ALPNCertificate("api.example.com") != nil {
		t.Fatal("a certificate for a name without a TLS-ALPN-01 challenge")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "www.example.com" {
		t.Fatalf("names %v", leaf.DNSNames)
	}
	want := sha256.Sum256([]byte(ch.KeyAuth))
	found := false
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}) {
			var got []byte
			if _, err := asn1.Unmarshal(ext.Value, &got); err != nil || string(got) != string(want[:]) || !ext.Critical {
				t.Fatalf("acmeIdentifier %x critical %v (%v), want %x", got, ext.Critical, err, want)
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no acmeIdentifier extension")
	}
	a.Apply(cfgWith(ch))
	if a.ALPNCertificate("www.example.com") != cert {
		t.Fatal("the certificate was made again for an unchanged challenge")
	}
}
