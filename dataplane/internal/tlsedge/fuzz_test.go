package tlsedge

import (
	"crypto/tls"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// certVariants are certificate objects, sound and broken in every way the
// rules know, that the fuzz target combines into configurations.
func certVariants(t testing.TB) []config.Certificate {
	ca := testutil.NewCA(t)
	inter := ca.Intermediate(t)
	a := ca.Issue(t, []string{"a.example.com"}, time.Time{}, time.Time{})
	w := ca.Issue(t, []string{"*.example.com", "example.com"}, time.Time{}, time.Time{})
	ch := inter.Issue(t, []string{"chain.example.org"}, time.Time{}, time.Time{})
	blocks := strings.SplitAfter(ch.CertPEM, "-----END CERTIFICATE-----\n")
	expired := ca.Issue(t, []string{"old.example.com"}, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	mk := func(name string, l testutil.Leaf, snis ...string) config.Certificate {
		return config.Certificate{Name: name, Cert: l.CertPEM, Key: l.KeyPEM, SNIs: snis, Meta: config.Meta{Version: 1, Revision: 1}}
	}
	v := []config.Certificate{
		mk("a", a, "a.example.com"),
		mk("wild", w, "*.example.com", "example.com"),
		mk("chain", ch, "chain.example.org"),
		mk("old", expired, "old.example.com"), // expiry is not the data plane's business
		mk("a2", a, "a.example.com"),          // claims a's name
		mk("a", w, "*.example.com"),           // a's object name again
	}
	wrongKey := mk("wrongkey", a, "a.example.com")
	wrongKey.Key = w.KeyPEM
	reversed := mk("reversed", ch, "chain.example.org")
	reversed.Cert = blocks[1] + blocks[0]
	garbage := mk("garbage", a, "a.example.com")
	garbage.Cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
	noKey := mk("nokey", a, "a.example.com")
	noKey.Key = ""
	badSNI := mk("badsni", w, "*.*.example.com")
	uncovered := mk("uncovered", a, "b.example.com")
	noSNI := mk("nosni", a)
	badName := mk("-bad", a, "a.example.com")
	return append(v, wrongKey, reversed, garbage, noKey, badSNI, uncovered, noSNI, badName)
}

// FuzzCompileAgreesWithValidate: the data plane leaves out exactly the
// certificates the control plane's rules refuse (config.ValidateObjects),
// so whatever Validate accepts is served whole; and every certificate
// served answers for each of its names.
func FuzzCompileAgreesWithValidate(f *testing.F) {
	variants := certVariants(f)
	f.Add([]byte{0, 1, 2})
	f.Add([]byte{0, 4})
	f.Add([]byte{5, 0, 6, 7})
	f.Add([]byte{8, 9, 10, 11, 12, 13})
	f.Add([]byte{1, 14, 3})
	f.Fuzz(func(t *testing.T, picks []byte) {
		if len(picks) > 6 {
			picks = picks[:6]
		}
		cfg := &config.Config{}
		for _, p := range picks {
			c := variants[int(p)%len(variants)]
			c.SNIs = slices.Clone(c.SNIs)
			cfg.Certificates = append(cfg.Certificates, c)
		}
		invalid, err := cfg.ValidateObjects()
		if err != nil {
			t.Fatalf("certificates alone cannot fail a whole configuration: %v", err)
		}
		rejected := New("", nil).compileAndList(cfg)
		var want []string
		for i := range cfg.Certificates {
			if _, bad := invalid.Certificates[i]; bad {
				want = append(want, cfg.Certificates[i].Name)
			}
		}
		if !slices.Equal(rejected, want) {
			t.Fatalf("rejected %v, ValidateObjects refuses %v", rejected, want)
		}
		if cfg.Validate() == nil && len(rejected) > 0 {
			t.Fatalf("Validate accepts but compile rejects %v", rejected)
		}
		c := New("", nil)
		c.Apply(cfg)
		for i := range cfg.Certificates {
			spec := &cfg.Certificates[i]
			if _, bad := invalid.Certificates[i]; bad {
				continue
			}
			for _, sni := range spec.SNIs {
				name := strings.Replace(sni, "*", "x", 1)
				got, err := c.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
				if err != nil || got.Leaf == nil || got.Leaf.VerifyHostname(name) != nil {
					t.Fatalf("%s: %q not served (%v)", spec.Name, name, err)
				}
			}
		}
	})
}

// compileAndList applies cfg and returns the names of the rejected
// certificates, in order.
func (c *Certificates) compileAndList(cfg *config.Config) []string {
	var out []string
	for _, r := range c.Apply(cfg) {
		out = append(out, r.Name)
	}
	return out
}
