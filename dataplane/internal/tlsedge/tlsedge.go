// Package tlsedge terminates TLS on the data plane's TLS listener with the
// certificates of the configuration (the certificates kind).
//
// Rules:
//
//   - A certificate is chosen by the client's SNI: the exact name first,
//     then the wildcard one label up ("a.example.com" → "*.example.com";
//     a wildcard never covers two labels, nor the bare domain). A client
//     without SNI (an IP address in the URL, an old client) gets the
//     certificate named by --tls-default-cert; without one, or for a name
//     no certificate claims, the handshake fails (unrecognized_name), so
//     a scanner learns nothing from the gateway's certificates.
//   - Certificates are compiled from each snapshot (config.ParseCertificate,
//     the parser the control plane validates with) into an immutable table
//     published with atomic.Pointer; GetCertificate does one Load per
//     handshake. A rotation reaches new handshakes at once; connections
//     already open keep the certificate they were set up with and are
//     never closed for it. A snapshot that changed no certificate (same
//     names, versions and revisions: most snapshots change routes) keeps
//     the table as it is; otherwise a certificate unchanged since the last
//     snapshot is validated again (the rules are between certificates)
//     but not parsed into a tls.Certificate again.
//   - A certificate the data plane cannot use (invalid, or claiming a name
//     another certificate claims) is left out and reported like any
//     rejected object (config.Rejected); the rest of the configuration,
//     and the other certificates, apply. Which certificates are rejected
//     is decided by config.ValidateObjects, the control plane's rules, so
//     the two cannot disagree (FuzzCompileAgreesWithValidate).
//   - TLS 1.2 is the minimum; TLS 1.2 suites are ECDHE with AES-GCM or
//     ChaCha20-Poly1305 only (forward secrecy, AEAD); TLS 1.3 suites are
//     all AEAD. ALPN offers h2 and http/1.1. Session resumption uses
//     session tickets with the cluster's keys, so a ticket from one data
//     plane resumes on another (tickets.go).
//   - An expired certificate is still served (clients refuse it, which is
//     what they should see); the admin API shows days_left.
package tlsedge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/portico-gw/portico/shared/config"
)

// CipherSuites are the TLS 1.2 suites offered: ECDHE key exchange (forward
// secrecy) with an AEAD cipher, nothing else (no CBC, no RSA key exchange,
// no 3DES or RC4).
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ErrNoCertificate is the handshake error for a name no certificate
// serves.
var ErrNoCertificate = errors.New("tlsedge: no certificate for this server name")

// Certificates is the live set of certificates: compiled per snapshot,
// read per handshake.
type Certificates struct {
	// DefaultName names the certificate for clients without SNI.
	defaultName string
	log         *slog.Logger
	cur         atomic.Pointer[table]
	// mu makes applies one at a time (each reuses the previous table).
	mu sync.Mutex
	// alpn answers TLS-ALPN-01 challenges (acme.go); nil: none.
	alpn ALPNAnswerer
	// clientCerts are the names whose handshakes ask for a client
	// certificate, mtls the configuration that asks (clientcert.go).
	clientCerts atomic.Pointer[clientCertNames]
	mtls        *tls.Config
	// tickets are the session-ticket keys in service (tickets.go).
	tickets atomic.Pointer[ticketKeys]
}

// table is one compiled set; never modified once published.
type table struct {
	byName map[string]*entry
	exact  map[string]*entry
	// wild maps the suffix a wildcard covers ("example.com" for
	// "*.example.com") to its certificate.
	wild     map[string]*entry
	rejected []config.Rejected
	// ids are the certificates the table was compiled from (name,
	// version, revision), to recognise a snapshot that changed none.
	ids []certID
}

type certID struct {
	name              string
	version, revision int64
}

type entry struct {
	name              string
	version, revision int64
	cert              *tls.Certificate
}

// New returns an empty set; defaultName may be "".
func New(defaultName string, log *slog.Logger) *Certificates {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certificates{defaultName: defaultName, log: log}
	c.cur.Store(&table{})
	c.tickets.Store(newLocalTicketKeys())
	c.mtls = c.mtlsConfig()
	return c
}

// Apply compiles the certificates of cfg and puts them in service for new
// handshakes. It returns the certificates left out, with the reason.
func (c *Certificates) Apply(cfg *config.Config) []config.Rejected {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := compile(cfg, c.cur.Load())
	c.cur.Store(t)
	c.applyClientCertNames(cfg)
	if c.defaultName != "" {
		if _, ok := t.byName[c.defaultName]; !ok {
			c.log.Warn("the default TLS certificate is not in the configuration (or was rejected): clients without SNI fail the handshake",
				"tls_default_cert", c.defaultName)
		}
	}
	return t.rejected
}

// compile builds a table from cfg, reusing the parsed certificates of prev
// that did not change.
func compile(cfg *config.Config, prev *table) *table {
	ids := make([]certID, len(cfg.Certificates))
	for i := range cfg.Certificates {
		c := &cfg.Certificates[i]
		ids[i] = certID{c.Name, c.Version, c.Revision}
	}
	// Objects without metadata (version 0) are never taken as unchanged.
	if slices.Equal(ids, prev.ids) && !slices.ContainsFunc(ids, func(id certID) bool { return id.version == 0 }) {
		return prev
	}
	t := &table{byName: map[string]*entry{}, exact: map[string]*entry{}, wild: map[string]*entry{}, ids: ids}
	if len(cfg.Certificates) == 0 {
		return t
	}
	// The control plane's rules decide what is rejected: the whole check
	// over the certificates alone (they refer to nothing else).
	shadow := config.Config{Certificates: cfg.Certificates}
	invalid, err := shadow.ValidateObjects()
	for i := range cfg.Certificates {
		spec := &cfg.Certificates[i]
		reason, bad := invalid.Certificates[i]
		if err != nil {
			reason, bad = err.Error(), true
		}
		if bad {
			t.rejected = append(t.rejected, config.NewRejected(config.KindCertificate, spec.Name, reason))
			continue
		}
		if spec.Cert == "" { // an ACME certificate not issued yet
			continue
		}
		e := prev.byName[spec.Name]
		if e == nil || e.version != spec.Version || e.revision != spec.Revision || spec.Version == 0 {
			cert, err := config.ParseCertificate(spec)
			if err != nil { // Validate passed, so this is a bug: say so loudly
				t.rejected = append(t.rejected, config.NewRejected(config.KindCertificate, spec.Name, err.Error()))
				continue
			}
			e = &entry{name: spec.Name, version: spec.Version, revision: spec.Revision, cert: cert}
		}
		t.byName[spec.Name] = e
		for _, sni := range spec.SNIs {
			if suffix, ok := strings.CutPrefix(sni, "*."); ok {
				t.wild[suffix] = e
			} else {
				t.exact[sni] = e
			}
		}
	}
	return t
}

// GetCertificate is tls.Config.GetCertificate: the certificate for the
// client's server name (exact, then wildcard), or the default one for a
// client without SNI.
func (c *Certificates) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	t := c.cur.Load()
	name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	if name == "" {
		if e := t.byName[c.defaultName]; e != nil && c.defaultName != "" {
			return e.cert, nil
		}
		return nil, fmt.Errorf("%w: the client sent no SNI and no --tls-default-cert is in service", ErrNoCertificate)
	}
	if e := t.exact[name]; e != nil {
		return e.cert, nil
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if e := t.wild[name[i+1:]]; e != nil {
			return e.cert, nil
		}
	}
	return nil, ErrNoCertificate
}

// Names lists the certificates in service by name, for /status; nil on a
// nil set (no TLS listener).
func (c *Certificates) Names() []string {
	if c == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(c.cur.Load().byName))
}

// Config returns the server TLS configuration: certificates from c, TLS
// 1.2 minimum, AEAD suites, ALPN h2 and http/1.1.
func (c *Certificates) Config() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   CipherSuites,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: c.GetCertificate,
		// ACME's TLS-ALPN-01 validation (acme.go), client certificates
		// on the names that need them (clientcert.go).
		GetConfigForClient: c.getConfigForClient,
		// Session tickets under the cluster's keys (tickets.go).
		WrapSession:   c.wrapSession,
		UnwrapSession: c.unwrapSession,
	}
}
