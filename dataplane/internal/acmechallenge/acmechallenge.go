// Package acmechallenge answers the ACME challenges of the configuration on
// every data plane, so that a certificate ordered by the control plane is
// validated whichever data plane the ACME server's requests reach (behind
// any load balancer).
//
// Rules:
//
//   - The challenges travel in the snapshot (a certificate's
//     acme.challenges, written by the control plane's ACME client) and are
//     compiled per snapshot into an immutable table published with
//     atomic.Pointer; a request does one Load.
//   - HTTP-01 (RFC 8555 §8.3): GET or HEAD
//     /.well-known/acme-challenge/<token> on the plain HTTP listener, for a
//     token of the configuration and a Host naming the challenge's domain,
//     is answered 200 text/plain with the key authorization, before
//     routing and before https_redirect (the server validates over plain
//     HTTP and follows no redirect to a port it does not know). Any other
//     request, an unknown token included, goes on to the routes (an
//     application doing its own ACME keeps working).
//   - TLS-ALPN-01 (RFC 8737): a TLS client offering only the acme-tls/1
//     protocol for a name with a challenge gets a self-signed certificate
//     carrying the key authorization's digest (lego's
//     tlsalpn01.ChallengeCert), made once per challenge when the snapshot
//     is applied; tlsedge asks ALPNCertificate during the handshake.
//   - The key authorization is not a secret (it is served to anyone who
//     asks during validation); it proves control of the names only
//     together with the account key, which never leaves the control plane.
package acmechallenge

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-acme/lego/v5/challenge/tlsalpn01"

	"github.com/portico-gw/portico/shared/config"
)

// PathPrefix is where HTTP-01 answers live.
const PathPrefix = "/.well-known/acme-challenge/"

// Answers is the live set of challenges: compiled per snapshot, read per
// request and per handshake.
type Answers struct {
	log *slog.Logger
	cur atomic.Pointer[table]
	mu  sync.Mutex // one Apply at a time (each reuses the previous table)
}

type table struct {
	// http maps a token to its challenge.
	http map[string]config.ACMEChallenge
	// alpn maps a domain to its TLS-ALPN-01 certificate.
	alpn map[string]*alpnCert
}

type alpnCert struct {
	keyAuth string
	cert    *tls.Certificate
}

// New returns an empty set.
func New(log *slog.Logger) *Answers {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Answers{log: log}
	a.cur.Store(&table{})
	return a
}

// Apply puts the challenges of cfg in service. TLS-ALPN-01 certificates of
// challenges already in service are reused.
func (a *Answers) Apply(cfg *config.Config) {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.cur.Load()
	t := &table{}
	for i := range cfg.Certificates {
		c := &cfg.Certificates[i]
		if c.ACME == nil {
			continue
		}
		for _, ch := range c.ACME.Challenges {
			switch ch.Type {
			case config.ACMEHTTP01:
				if t.http == nil {
					t.http = map[string]config.ACMEChallenge{}
				}
				t.http[ch.Token] = ch
			case config.ACMETLSALPN01:
				if t.alpn == nil {
					t.alpn = map[string]*alpnCert{}
				}
				if old := prev.alpn[ch.Domain]; old != nil && old.keyAuth == ch.KeyAuth {
					t.alpn[ch.Domain] = old
					continue
				}
				cert, err := tlsalpn01.ChallengeCert(ch.Domain, ch.KeyAuth)
				if err != nil {
					a.log.Error("acme: cannot make the TLS-ALPN-01 certificate", "domain", ch.Domain, "err", err)
					continue
				}
				t.alpn[ch.Domain] = &alpnCert{keyAuth: ch.KeyAuth, cert: cert}
			}
		}
	}
	a.cur.Store(t)
}

// Wrap answers HTTP-01 challenges before next (the routes).
func (a *Answers) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ch, ok := a.httpChallenge(r); ok {
			h := w.Header()
			h.Set("Content-Type", "text/plain")
			h.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			if r.Method != http.MethodHead {
				_, _ = w.Write([]byte(ch.KeyAuth))
			}
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *Answers) httpChallenge(r *http.Request) (config.ACMEChallenge, bool) {
	token, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	if !ok || r.Method != http.MethodGet && r.Method != http.MethodHead {
		return config.ACMEChallenge{}, false
	}
	ch, ok := a.cur.Load().http[token]
	if !ok {
		return ch, false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return ch, strings.EqualFold(strings.TrimSuffix(host, "."), ch.Domain)
}

// ALPNCertificate returns the TLS-ALPN-01 certificate for a server name,
// or nil when it has no challenge.
func (a *Answers) ALPNCertificate(serverName string) *tls.Certificate {
	if c := a.cur.Load().alpn[strings.TrimSuffix(strings.ToLower(serverName), ".")]; c != nil {
		return c.cert
	}
	return nil
}
