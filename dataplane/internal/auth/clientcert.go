package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// Client certificates (mTLS). The TLS listener asks for a certificate on
// the server names of routes that take one (tlsedge) but does not judge
// it: the route is not known during the handshake. The auth stage checks
// the presented chain against the route's own CA bundle and CRLs with
// config's VerifyClientCert (the control plane parses the same block with
// the same code): it must chain to the bundle, be within its validity
// dates, allow client authentication and not be revoked. A request that
// came over plain HTTP, or over TLS without a certificate, presented none.
//
// The certificate names a consumer through its identities (uri:, dns:,
// email: SANs and cn:, config.CertIdentities) and the consumers'
// cert_identities; a certificate naming two consumers authenticates
// neither (ErrCertAmbiguous); one naming none authenticates as no
// consumer, like a JWT naming no known consumer.
//
// Verdicts are remembered. Verifying a chain and looking it up in the
// CRLs costs about 100 µs and 40 allocations, and a client sends the same
// chain with every request of a kept-alive connection (and of its next
// connections). So a success is remembered in a process-wide cache
// bounded in bytes (certCacheBytes), under SHA-256 of the compiled
// client_cert block's generation and every presented certificate's DER:
//   - the generation is new for every compile of a client_cert block, so
//     a CA or CRL change (a new snapshot) is a new key: a certificate
//     revoked by a CRL pushed after it was accepted is refused on the
//     next request, on connections already open too; the old generation's
//     entries are never hit again and age out of the LRU;
//   - the whole presented chain is in the key because the chain found
//     depends on the intermediates the client sent;
//   - an entry lasts until the earliest NotAfter of the verified chain
//     (exclusive, a little stricter than x509) and is not answered before
//     its latest NotBefore (a clock set back);
//   - it holds the leaf's identities, not the certificates: consumers are
//     looked up per request in the table's Verifier, so a consumer
//     change applies at once as well.
// Refusals are not remembered: a refused certificate may be any
// self-made one, and remembering those would let anyone push the
// accepted ones out of the bound. Caching per connection instead was
// rejected: the handler sees no connection identity, and a CRL change
// would still need checking against every open connection; keying by the
// compiled block does both with one lookup, and a client's next
// connections hit too.

// MethodClientCert is the identity method of a client certificate.
const MethodClientCert = "client_cert"

// ErrCertAmbiguous: the certificate's identities name several consumers.
var ErrCertAmbiguous = errors.New("auth: client certificate names more than one consumer")

const (
	// certCacheBytes bounds the process's remembered verdicts.
	certCacheBytes = 4 << 20
	// certEntryBytes is what one verdict is charged besides its
	// identities' bytes: the list element, map slot, entry, verdict and
	// slice headers (TestCertCacheEntrySize measures it).
	certEntryBytes = 320
	// certIDBytes is charged per identity besides its length.
	certIDBytes = 16
)

// clientCertCheck is a route's compiled client_cert block.
type clientCertCheck struct {
	ca    *config.ClientCA
	gen   uint64                  // the key of its verdicts
	cache *byteCache[certVerdict] // certCache, or a test's
}

// certVerdict is a remembered success.
type certVerdict struct {
	ids       []string  // config.CertIdentities of the leaf
	notBefore time.Time // latest NotBefore of the verified chain
}

// certGen numbers compiled client_cert blocks.
var certGen atomic.Uint64

// certCache is the process's cache of verdicts (all routes).
var certCache = sync.OnceValue(func() *byteCache[certVerdict] { return newByteCache[certVerdict](certCacheBytes) })

// compileClientCA parses a route's client_cert block. The snapshot was
// validated with the same parser, so an error is a bug: the route then
// trusts no certificate (fail closed).
func compileClientCA(a *config.ClientCertAuth) *clientCertCheck {
	ca, err := config.ParseClientCA(a)
	if err != nil {
		ca = &config.ClientCA{Roots: x509.NewCertPool()}
	}
	return &clientCertCheck{ca: ca, gen: certGen.Add(1), cache: certCache()}
}

// key is the cache key of a presented chain under this block.
func (c *clientCertCheck) key(peer []*x509.Certificate) [32]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], c.gen)
	h.Write(n[:])
	for _, p := range peer {
		binary.BigEndian.PutUint64(n[:], uint64(len(p.Raw)))
		h.Write(n[:])
		h.Write(p.Raw)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// verify returns the identities of the presented chain's leaf once the
// chain is verified (remembered, or checked now and remembered).
func (c *clientCertCheck) verify(peer []*x509.Certificate, now time.Time) ([]string, error) {
	k := c.key(peer)
	if v, ok := c.cache.get(k, now); ok && !now.Before(v.notBefore) {
		return v.ids, nil
	}
	chain, err := c.ca.VerifyClientCert(peer, now)
	if err != nil {
		return nil, err
	}
	v := certVerdict{ids: config.CertIdentities(chain[0]), notBefore: chain[0].NotBefore}
	until := chain[0].NotAfter
	size := int64(certEntryBytes)
	for _, cert := range chain[1:] {
		if cert.NotAfter.Before(until) {
			until = cert.NotAfter
		}
		if cert.NotBefore.After(v.notBefore) {
			v.notBefore = cert.NotBefore
		}
	}
	for _, id := range v.ids {
		size += int64(len(id) + certIDBytes)
	}
	c.cache.put(k, v, until, size)
	return v.ids, nil
}

// indexCertIdentities adds a consumer's cert_identities to v; an identity
// two consumers claim (validation refuses that) names neither.
func (v *Verifier) indexCertIdentities(c *consumer, ids []string) {
	if len(ids) == 0 {
		return
	}
	id := &Identity{Consumer: c.name, Groups: c.groups, Method: MethodClientCert}
	for _, s := range ids {
		if _, dup := v.certIDs[s]; dup {
			v.certIDs[s] = nil
			continue
		}
		v.certIDs[s] = id
	}
}

// verifyClientCert checks the request's client certificate against ca.
// presented is false for plain HTTP and for TLS without a certificate.
func (v *Verifier) verifyClientCert(r *http.Request, ca *clientCertCheck, now time.Time) (id *Identity, presented bool, err error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, false, nil
	}
	ids, err := ca.verify(r.TLS.PeerCertificates, now)
	if err != nil {
		return nil, true, err
	}
	var found *Identity
	for _, s := range ids {
		c, ok := v.certIDs[s]
		switch {
		case !ok:
		case c == nil || (found != nil && found.Consumer != c.Consumer):
			return nil, true, ErrCertAmbiguous
		default:
			found = c
		}
	}
	if found == nil {
		return &Identity{Method: MethodClientCert}, true, nil
	}
	return found, true, nil
}
