// Package acme is the control plane's ACME client (RFC 8555): it obtains
// and renews the certificates that ask for it (a certificate object's acme
// section, shared/config/acme.go), once for the cluster.
//
// Rules:
//
//   - One actor. The client acts only while it holds the store's "acme"
//     lease (store.Leases): with the embedded store the file lock already
//     makes one process; control planes sharing a Consul store take a
//     Consul lock, so one of them orders while the others wait, and
//     another takes over within the lock's session TTL when it dies.
//   - The protocol is github.com/go-acme/lego/v5's; this package only
//     decides when to order, answers challenges through the
//     configuration, and stores the result.
//   - Challenges are answered by every data plane: Present writes the
//     challenge into the certificate's acme.challenges (one revision, in
//     the snapshot) and waits until every connected data plane has applied
//     that revision (at most ChallengeWait: a data plane that is down or
//     slow does not block the order; the server validates against what
//     answers it). The final write (the issued certificate, or the
//     failure) clears them.
//   - The account key (one account per directory, e-mail and, with an
//     External Account Binding, kid) lives in the
//     store's secrets (store.Secrets), never in a revision: not in a
//     snapshot, the audit log, the export or a log line. The certificate's
//     private key is stored in the object's key like any certificate key
//     (never returned by the admin API).
//   - When: a certificate is due when it has no state yet, when its names
//     or directory changed (config.ACMEKeep), and at acme.state.next_attempt:
//     RenewAt (2/3 of the issued certificate's lifetime) after a success,
//     and after a failure a backoff of --acme-backoff (1 minute) doubling up to 6 hours
//     (failures in a row). A failure keeps the earlier certificate in
//     service.
//   - Certificates are ordered one at a time (an order waits on a remote
//     server's validation; ACME servers rate-limit accounts anyway).
package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"
	"github.com/go-acme/lego/v5/registration"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/nodes"
	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/pause"
)

// Backoff after failed orders: Options.Backoff (DefaultBackoff) doubling
// per failure in a row, at most BackoffMax.
const (
	DefaultBackoff = time.Minute
	BackoffMax     = 6 * time.Hour
	// MaxErrorBytes bounds acme.state.last_error.
	MaxErrorBytes = 1000
)

// Options configures a Client.
type Options struct {
	Catalog *catalog.Catalog
	// Store keeps the account keys (store.Secrets) and gives the lease
	// (store.Leases).
	Store store.Store
	// Nodes, when set, is how Present learns that the data planes
	// applied a challenge.
	Nodes *nodes.Registry
	Log   *slog.Logger
	// Now is the clock deciding what is due (time.Now when nil).
	Now func() time.Time
	// ChallengeWait bounds the wait for data planes to apply a challenge
	// (20 s when zero).
	ChallengeWait time.Duration
	// UserAgent is sent to the ACME server.
	UserAgent string
	// Backoff is the wait after a first failure, doubling per failure
	// in a row up to BackoffMax (DefaultBackoff when zero).
	Backoff time.Duration
}

// Client orders and renews the ACME certificates of the catalog.
type Client struct {
	o       Options
	secrets store.Secrets
	leases  store.Leases
}

// New checks the options.
func New(o Options) (*Client, error) {
	secrets, leases, err := store.ActorSupport(o.Store, "acme")
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ChallengeWait == 0 {
		o.ChallengeWait = 20 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultBackoff
	}
	if o.UserAgent == "" {
		o.UserAgent = "portico-controlplane"
	}
	// lego logs through its own default logger (stdout text): send it to
	// ours, at warn and above (its info lines narrate each step).
	legolog.SetDefault(slog.New(levelAtLeast{o.Log.Handler(), slog.LevelWarn}).With("component", "acme"))
	return &Client{o: o, secrets: secrets, leases: leases}, nil
}

// Run orders what is due while this process holds the lease, until ctx
// ends: it wakes at the earliest next attempt and on every new revision
// (a certificate created or changed).
func (c *Client) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		held, release, err := c.leases.Lead(ctx, "acme")
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.o.Log.Warn("acme: taking the lease failed; retrying", "err", err)
			if !pause.For(ctx, 5*time.Second, nil) {
				return nil
			}
			continue
		}
		c.o.Log.Info("acme: this control plane orders the cluster's ACME certificates")
		c.lead(held)
		release()
	}
	return nil
}

// lead is Run's loop while the lease is held.
func (c *Client) lead(ctx context.Context) {
	for ctx.Err() == nil {
		rev := c.o.Catalog.Current().State.Revision
		next := c.RunDue(ctx)
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(c.o.Now()), time.Second)
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		c.o.Catalog.Wait(wctx, rev)
		cancel()
	}
}

// RunDue orders each ACME certificate due now, one at a time, and returns
// the earliest next attempt among them (zero when there is none).
func (c *Client) RunDue(ctx context.Context) (next time.Time) {
	for _, name := range c.acmeNames() {
		if ctx.Err() != nil {
			return next
		}
		cert, ok := c.o.Catalog.Current().State.Config.Certificate(name)
		if !ok || cert.ACME == nil {
			continue
		}
		due, at := config.ACMEDue(cert, c.o.Now())
		if due {
			c.order(ctx, cert)
			cert, ok = c.o.Catalog.Current().State.Config.Certificate(name)
			if !ok || cert.ACME == nil {
				continue
			}
			if due, at = config.ACMEDue(cert, c.o.Now()); due {
				// Not stored (the store refused the write): try again
				// after the shortest backoff.
				at = c.o.Now().Add(c.o.Backoff)
			}
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

func (c *Client) acmeNames() []string {
	var out []string
	for _, cert := range c.o.Catalog.Current().State.Config.Certificates {
		if cert.ACME != nil {
			out = append(out, cert.Name)
		}
	}
	return out
}

// order obtains cert's certificate and stores the outcome in the catalog.
func (c *Client) order(ctx context.Context, cert *config.Certificate) {
	start := c.o.Now().UTC().Truncate(time.Millisecond)
	log := c.o.Log.With("certificate", cert.Name, "snis", cert.SNIs, "directory", cert.ACME.Directory)
	log.Info("acme: ordering a certificate")
	chain, keyPEM, err := c.obtain(ctx, cert)
	if ctx.Err() != nil {
		return // lease lost or shutting down: the next holder orders again
	}
	_, _, werr := c.o.Catalog.UpdateACME(ctx, cert.Name, func(obj *config.Certificate) error {
		st := config.CertificateACMEState{}
		if obj.ACME.State != nil {
			st = *obj.ACME.State
		}
		st.LastAttempt = &start
		obj.ACME.Challenges = nil
		if err != nil {
			st.Status = config.ACMEFailed
			st.LastError = errorText(err)
			st.Failures++
			next := start.Add(Backoff(c.o.Backoff, st.Failures))
			st.NextAttempt = &next
			obj.ACME.State = &st
			return nil
		}
		leaf := chain[0]
		notAfter := leaf.NotAfter.UTC()
		renew := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3).UTC().Truncate(time.Second)
		st.Status, st.LastError, st.Failures = config.ACMEValid, "", 0
		st.NotAfter, st.RenewAt, st.NextAttempt = &notAfter, &renew, &renew
		st.IssuedFor = config.ACMEIssuedFor(cert.ACME.Directory, cert.SNIs)
		obj.Cert, obj.Key = encodeChain(chain), keyPEM
		obj.ACME.State = &st
		return nil
	})
	switch {
	case werr != nil:
		log.Error("acme: storing the outcome failed", "err", werr, "order_err", err)
	case err != nil:
		log.Warn("acme: order failed", "err", errorText(err))
	default:
		log.Info("acme: certificate issued", "not_after", chain[0].NotAfter.UTC(), "serial", chain[0].SerialNumber.Text(16))
	}
}

// Backoff is the wait after the n-th failure in a row, first the wait
// after the first.
func Backoff(first time.Duration, n int) time.Duration {
	d := first
	for i := 1; i < n && d < BackoffMax; i++ {
		d *= 2
	}
	return min(d, BackoffMax)
}

// obtain runs one order against the ACME server: the account (made once),
// the challenges through the data planes, the certificate with a new
// P-256 key. It returns the chain (checked to cover the names) and the
// key as PEM.
func (c *Client) obtain(ctx context.Context, cert *config.Certificate) ([]*x509.Certificate, string, error) {
	httpc, err := httpClient(cert.ACME.CA)
	if err != nil {
		return nil, "", err
	}
	user, err := c.account(ctx, cert.ACME, httpc)
	if err != nil {
		return nil, "", err
	}
	client, err := c.legoClient(cert.ACME, user, httpc)
	if err != nil {
		return nil, "", err
	}
	p := &provider{c: c, name: cert.Name}
	if cert.ACME.Challenge != config.ACMETLSALPN01 {
		if err := client.Challenge.SetHTTP01Provider(p.of(config.ACMEHTTP01)); err != nil {
			return nil, "", err
		}
	}
	if cert.ACME.Challenge != config.ACMEHTTP01 {
		if err := client.Challenge.SetTLSALPN01Provider(p.of(config.ACMETLSALPN01)); err != nil {
			return nil, "", err
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	res, err := client.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: cert.SNIs, Bundle: true, PrivateKey: key})
	if err != nil {
		return nil, "", err
	}
	chain, err := parseChain(res.Certificate)
	if err != nil {
		return nil, "", fmt.Errorf("the issued certificate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	check := config.Certificate{Name: cert.Name, SNIs: cert.SNIs, Cert: encodeChain(chain), Key: keyPEM}
	if err := check.Validate(); err != nil {
		return nil, "", fmt.Errorf("the issued certificate: %w", err)
	}
	return chain, keyPEM, nil
}

func (c *Client) legoClient(a *config.CertificateACME, user *account, httpc *http.Client) (*lego.Client, error) {
	cfg := &lego.Config{
		CADirURL:   a.Directory,
		User:       user,
		UserAgent:  c.o.UserAgent,
		HTTPClient: httpc,
		Certificate: lego.CertificateConfig{
			Timeout:             30 * time.Second,
			OverallRequestLimit: certificate.DefaultOverallRequestLimit,
		},
	}
	client, err := lego.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("directory %s: %w", a.Directory, err)
	}
	return client, nil
}

// httpClient talks to the ACME server, trusting caPEM (a private ACME
// server) or the system roots.
func httpClient(caPEM string) (*http.Client, error) {
	tlsc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, errors.New("acme.ca: no certificate in the bundle")
		}
		tlsc.RootCAs = pool
	}
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   15 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			TLSClientConfig:       tlsc,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		},
	}, nil
}

// account is an ACME account: its key and registration.
type account struct {
	email string
	key   crypto.Signer
	reg   *acme.ExtendedAccount
}

func (a *account) GetEmail() string                       { return a.email }
func (a *account) GetRegistration() *acme.ExtendedAccount { return a.reg }
func (a *account) GetPrivateKey() crypto.Signer           { return a.key }

// storedAccount is how an account is kept in the store's secrets.
type storedAccount struct {
	// Key is the account's PKCS#8 private key (PEM).
	Key string `json:"key"`
	// URL is the account's URL at the server (its key id).
	URL string `json:"url"`
}

// accountSecret names the secret of the account for a directory and
// e-mail, and the EAB's kid when there is one: an account bound to an
// external account is another account.
func accountSecret(a *config.CertificateACME) string {
	id := a.Directory + "\n" + a.Email
	if a.EAB != nil {
		id += "\neab:" + a.EAB.KID
	}
	sum := sha256.Sum256([]byte(id))
	return "acme-account-" + hex.EncodeToString(sum[:16])
}

// account loads the account for a's directory and e-mail from the store,
// or makes one (a new P-256 key, registered with the server, agreeing to
// its terms, bound to the external account when a has an EAB) and stores
// it.
func (c *Client) account(ctx context.Context, a *config.CertificateACME, httpc *http.Client) (*account, error) {
	name := accountSecret(a)
	raw, ok, err := c.secrets.GetSecret(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("load the ACME account: %w", err)
	}
	if ok {
		var sa storedAccount
		if err := json.Unmarshal(raw, &sa); err != nil {
			return nil, fmt.Errorf("load the ACME account: %w", err)
		}
		key, err := parseKey(sa.Key)
		if err != nil {
			return nil, fmt.Errorf("load the ACME account: %w", err)
		}
		return &account{email: a.Email, key: key, reg: &acme.ExtendedAccount{Location: sa.URL}}, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	user := &account{email: a.Email, key: key}
	client, err := c.legoClient(a, user, httpc)
	if err != nil {
		return nil, err
	}
	var reg *acme.ExtendedAccount
	if a.EAB != nil {
		reg, err = client.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{
			TermsOfServiceAgreed: true, Kid: a.EAB.KID, HmacEncoded: a.EAB.HMACKey})
	} else {
		reg, err = client.Registration.Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
	}
	if err != nil {
		return nil, fmt.Errorf("register an ACME account: %w", err)
	}
	user.reg = reg
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	sa, err := json.Marshal(storedAccount{Key: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), URL: reg.Location})
	if err != nil {
		return nil, err
	}
	if err := c.secrets.PutSecret(ctx, name, sa); err != nil {
		return nil, fmt.Errorf("store the ACME account: %w", err)
	}
	c.o.Log.Info("acme: account registered", "directory", a.Directory, "account", reg.Location)
	return user, nil
}

// provider answers challenges of one certificate through the data planes
// (lego's challenge.Provider).
type provider struct {
	c    *Client
	name string
	typ  string
}

func (p *provider) of(typ string) *provider { return &provider{c: p.c, name: p.name, typ: typ} }

// Present adds the challenge to the certificate's acme.challenges and
// waits (at most ChallengeWait) for the connected data planes to apply
// that revision.
func (p *provider) Present(ctx context.Context, domain, token, keyAuth string) error {
	_, change, err := p.c.o.Catalog.UpdateACME(ctx, p.name, func(obj *config.Certificate) error {
		obj.ACME.Challenges = append(append([]config.ACMEChallenge(nil), obj.ACME.Challenges...),
			config.ACMEChallenge{Type: p.typ, Domain: domain, Token: token, KeyAuth: keyAuth})
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish the %s challenge for %s: %w", p.typ, domain, err)
	}
	p.c.waitApplied(ctx, change.Revision)
	return nil
}

// CleanUp does nothing: the order's final write clears every challenge of
// the certificate at once (one revision instead of one per name).
func (p *provider) CleanUp(context.Context, string, string, string) error { return nil }

// waitApplied waits until every connected data plane applied rev, at most
// ChallengeWait. Data planes report their applied revision as they poll
// again, right after applying.
func (c *Client) waitApplied(ctx context.Context, rev int64) {
	if c.o.Nodes == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.ChallengeWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		behind := 0
		cur := c.o.Catalog.Current().State
		for _, n := range c.o.Nodes.ListAt(cur.Revision, cur.Epoch.ID) {
			if n.Status == "connected" && n.AppliedRevision < rev {
				behind++
			}
		}
		if behind == 0 {
			return
		}
		select {
		case <-ctx.Done():
			c.o.Log.Warn("acme: data planes have not applied the challenge; asking the server to validate anyway", "behind", behind, "revision", rev)
			return
		case <-tick.C:
		}
	}
}

func parseChain(pemBytes []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for rest := pemBytes; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		x, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		chain = append(chain, x)
	}
	if len(chain) == 0 {
		return nil, errors.New("no certificate in the answer")
	}
	return chain, nil
}

func encodeChain(chain []*x509.Certificate) string {
	var b strings.Builder
	for _, x := range chain {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: x.Raw}))
	}
	return b.String()
}

func parseKey(keyPEM string) (crypto.Signer, error) {
	b, _ := pem.Decode([]byte(keyPEM))
	if b == nil {
		return nil, errors.New("the account key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, errors.New("the account key does not parse")
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("the account key cannot sign")
	}
	return s, nil
}

// errorText is what acme.state.last_error shows of an error: one line,
// bounded.
func errorText(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > MaxErrorBytes {
		s = s[:MaxErrorBytes] + "…"
	}
	return s
}

// levelAtLeast passes on records at min or above.
type levelAtLeast struct {
	slog.Handler
	min slog.Level
}

func (h levelAtLeast) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelAtLeast) WithAttrs(a []slog.Attr) slog.Handler {
	return levelAtLeast{h.Handler.WithAttrs(a), h.min}
}

func (h levelAtLeast) WithGroup(n string) slog.Handler {
	return levelAtLeast{h.Handler.WithGroup(n), h.min}
}
