package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http/httptest"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// BenchmarkClientCert: what the auth stage pays per request on a
// certificate route for a client that presents the same certificate
// again (every request of a kept-alive connection does): a P-256 leaf
// naming a consumer, against a one-CA bundle with a CRL.
func BenchmarkClientCert(b *testing.B) {
	ca := testutil.NewTestCA(b, "clients CA")
	alice := ca.Issue(b, "alice", testutil.ClientCertOptions{})
	old := ca.Issue(b, "old", testutil.ClientCertOptions{})
	v := NewVerifier(nil, []config.Consumer{{Name: "alice", CertIdentities: []string{"cn:alice"}}})
	ra := CompileRoute(&config.RouteAuth{ClientCert: &config.ClientCertAuth{CA: ca.PEM, CRLs: []string{ca.CRL(b, old.Leaf)}}}, v).(*Route)
	r := httptest.NewRequest("GET", "https://mtls.example.com/x", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{alice.Leaf}}
	b.ReportAllocs()
	for b.Loop() {
		id, err := ra.authenticate(r)
		if err != nil || id.Consumer != "alice" {
			b.Fatal(id, err)
		}
	}
}

// TestCertVerdicts: successes are remembered per compiled client_cert
// block and presented chain, never past the chain's validity, never
// across a recompiled block (a CRL pushed later refuses a certificate the
// old block accepted), and refusals are never remembered.
func TestCertVerdicts(t *testing.T) {
	ca, other := testutil.NewTestCA(t, "clients CA"), testutil.NewTestCA(t, "other CA")
	now := time.Now()
	alice := ca.Issue(t, "alice", testutil.ClientCertOptions{DNS: []string{"alice.example.com"}})
	long := ca.Issue(t, "long", testutil.ClientCertOptions{NotAfter: ca.Cert.NotAfter.Add(24 * time.Hour)})
	forged := other.Issue(t, "alice", testutil.ClientCertOptions{})
	block := &config.ClientCertAuth{CA: ca.PEM}
	c := compileClientCA(block)
	c.cache = newByteCache[certVerdict](1 << 20)
	chain := func(cs ...tls.Certificate) []*x509.Certificate {
		var out []*x509.Certificate
		for _, x := range cs {
			out = append(out, x.Leaf)
		}
		return out
	}
	remembered := func(c *clientCertCheck, peer []*x509.Certificate, at time.Time) bool {
		_, ok := c.cache.get(c.key(peer), at)
		return ok
	}

	ids, err := c.verify(chain(alice), now)
	if err != nil || !slices.Equal(ids, []string{"dns:alice.example.com", "cn:alice"}) {
		t.Fatalf("alice: %v %v", ids, err)
	}
	if !remembered(c, chain(alice), now) {
		t.Fatal("a success is not remembered")
	}
	if ids, err := c.verify(chain(alice), now); err != nil || len(ids) != 2 {
		t.Fatalf("alice again (remembered): %v %v", ids, err)
	}
	// Another presented chain is another key.
	if remembered(c, chain(alice, forged), now) {
		t.Fatal("a different presented chain hit alice's verdict")
	}

	// Refusals are not remembered.
	for _, peer := range [][]*x509.Certificate{chain(forged), chain(forged), chain(alice, forged)[1:]} {
		if _, err := c.verify(peer, now); !errors.Is(err, config.ErrCertUntrusted) {
			t.Fatalf("forged: %v", err)
		}
	}
	if n, _ := c.cache.stats(); n != 1 {
		t.Fatalf("%d entries after refusals, want alice's only", n)
	}

	// Validity: the leaf's NotAfter, and the CA's when it comes first.
	for _, tt := range []struct {
		name string
		peer []*x509.Certificate
		at   time.Time
		want error
	}{
		{"leaf at NotAfter", chain(alice), alice.Leaf.NotAfter, nil},
		{"leaf after NotAfter", chain(alice), alice.Leaf.NotAfter.Add(time.Second), config.ErrCertExpired},
		{"leaf before NotBefore (clock set back)", chain(alice), alice.Leaf.NotBefore.Add(-time.Second), config.ErrCertExpired},
		{"long leaf now", chain(long), now, nil},
		{"long leaf after the CA's NotAfter", chain(long), ca.Cert.NotAfter.Add(time.Second), config.ErrCertExpired},
		{"alice still now", chain(alice), now, nil},
	} {
		if _, err := c.verify(tt.peer, tt.at); !errors.Is(err, tt.want) && err != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if remembered(c, chain(long), ca.Cert.NotAfter) {
		t.Error("a verdict answered at its CA's NotAfter")
	}

	// A CRL pushed later: a new compile, a new key, alice refused.
	block2 := &config.ClientCertAuth{CA: ca.PEM, CRLs: []string{ca.CRL(t, alice.Leaf)}}
	c2 := compileClientCA(block2)
	c2.cache = c.cache
	if _, err := c2.verify(chain(alice), now); !errors.Is(err, config.ErrCertRevoked) {
		t.Fatalf("alice after the CRL: %v, want revoked", err)
	}
	if _, err := c2.verify(chain(alice), now); !errors.Is(err, config.ErrCertRevoked) {
		t.Fatalf("alice after the CRL, again: %v, want revoked", err)
	}
	// The same block compiled again starts afresh too.
	if c3 := compileClientCA(block); c3.gen == c.gen || c3.key(chain(alice)) == c.key(chain(alice)) {
		t.Fatal("two compiles share a key")
	}
}

// The process's cache holds at most certCacheBytes whatever succeeds.
func TestCertCacheBounded(t *testing.T) {
	ca := testutil.NewTestCA(t, "clients CA")
	c := compileClientCA(&config.ClientCertAuth{CA: ca.PEM})
	c.cache = newByteCache[certVerdict](4 * (certEntryBytes + 64))
	for i := range 20 {
		cert := ca.Issue(t, fmt.Sprintf("client-%02d", i), testutil.ClientCertOptions{})
		if _, err := c.verify([]*x509.Certificate{cert.Leaf}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if n, b := c.cache.stats(); b > c.cache.maxBytes || n > 4 {
			t.Fatalf("after %d successes: %d entries, %d bytes", i+1, n, b)
		}
	}
}

// certEntryBytes + certIDBytes per identity covers what one remembered
// verdict costs (measured with 10,000 entries in a byteCache).
func TestCertCacheEntrySize(t *testing.T) {
	const n = 10_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newByteCache[certVerdict](1 << 30)
	charged := int64(0)
	for i := range n {
		var k [32]byte
		k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
		v := certVerdict{ids: []string{fmt.Sprintf("dns:client-%06d.example.com", i), fmt.Sprintf("cn:client-%06d", i)}, notBefore: time.Now()}
		size := int64(certEntryBytes)
		for _, id := range v.ids {
			size += int64(len(id) + certIDBytes)
		}
		charged += size
		c.put(k, v, time.Now().Add(time.Hour), size)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (after.HeapAlloc - before.HeapAlloc) / n
	runtime.KeepAlive(c)
	t.Logf("%d bytes per entry, %d charged", per, charged/n)
	if int64(per) > charged/n {
		t.Fatalf("an entry costs %d bytes, more than the %d charged", per, charged/n)
	}
}
