package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/hydra"
)

// DefaultHydraVersion is the ORY Hydra version scripts/ensure-hydra.sh builds.
const DefaultHydraVersion = "v2.3.0"

// hydraReadyTimeout bounds the wait for Hydra's health endpoint: it
// migrates its in-memory database and makes its signing keys at start,
// which takes seconds on a loaded 2-core box.
const hydraReadyTimeout = 60 * time.Second

// HydraBinary returns the path of the Hydra binary used by tests:
// $HYDRA_BIN if set, else the binary scripts/ensure-hydra.sh caches in
// ${PORTICO_CACHE:-$HOME/.cache/portico}/hydra-${HYDRA_VERSION:-v2.3.0}.
func HydraBinary() (string, error) {
	return cachedBinary("hydra", "HYDRA_BIN", "HYDRA_VERSION", "hydra", DefaultHydraVersion,
		"run scripts/ensure-hydra.sh (or make test) to build it, or point HYDRA_BIN at a hydra binary")
}

// Hydra is an ORY Hydra OAuth2 and OpenID Connect server on loopback ports
// with an in-memory database, for tests of the gateway's introspection and
// OIDC login. Its login, consent and logout UI is shared/hydra's login app
// (an HTTP server in the test process) accepting every challenge through
// Hydra's admin API, as a real login app does once the user has typed a
// password: the user is the subject SetUser names ("alice" by default).
type Hydra struct {
	// PublicURL is the OAuth2/OIDC endpoint base, and the issuer
	// (Issuer, as Hydra spells it in tokens and discovery).
	PublicURL string
	Issuer    string
	// AdminURL is the admin API (clients, challenges, introspection).
	AdminURL string
	LogPath  string
	// App is the login app; RequirePassword turns its form on.
	App *hydra.LoginApp

	client *http.Client
	proc   process
	app    *http.Server
}

// StartHydra starts Hydra with access and ID tokens of the given lifetime
// (0: Hydra's defaults), waits until it is ready, and kills it when the
// test ends. A missing binary fails the test.
func StartHydra(t testing.TB, accessTokenTTL time.Duration) *Hydra {
	t.Helper()
	return StartHydraWith(t, HydraOptions{AccessTokenTTL: accessTokenTTL})
}

// HydraOptions are the settings of Hydra's configuration a test may change;
// the zero value is Hydra's defaults.
type HydraOptions struct {
	// AccessTokenTTL is the lifetime of access and ID tokens (ttl.*).
	AccessTokenTTL time.Duration
	// RefreshRotationGrace is how long a refresh token stays usable after
	// its first use (oauth2.grant.refresh_token.rotation_grace_period;
	// Hydra's default 0: a second use is a reuse, which revokes the grant;
	// Hydra caps it at 5m).
	RefreshRotationGrace time.Duration
}

// StartHydraWith is StartHydra with more of Hydra's settings.
func StartHydraWith(t testing.TB, o HydraOptions) *Hydra {
	t.Helper()
	bin, err := HydraBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	h := &Hydra{LogPath: filepath.Join(dir, "hydra.log"), client: &http.Client{Timeout: 10 * time.Second}}
	// The login app first: Hydra's configuration names it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := hydra.Config{
		PublicAddr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), AdminAddr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		AppURL: "http://" + l.Addr().String(), SystemSecret: "portico-tests-hydra-system-secret-0123456789",
		AccessTokenTTL: o.AccessTokenTTL, RefreshRotationGrace: o.RefreshRotationGrace,
	}
	h.PublicURL, h.AdminURL = cfg.PublicURL(), cfg.AdminURL()
	h.App = hydra.NewLoginApp(h.AdminURL)
	h.app = &http.Server{Handler: h.App.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = h.app.Serve(l) }()
	yml, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "hydra.yml")
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	h.proc.name, h.proc.bin, h.proc.logPath = "hydra", bin, h.LogPath
	t.Cleanup(func() {
		if err := h.proc.kill(); err != nil {
			t.Error(err)
		}
		_ = h.app.Close()
		if t.Failed() {
			t.Logf("tail of hydra log %s:\n%s", h.LogPath, tail(h.LogPath, 40))
		}
	})
	ready := func(ctx context.Context) error {
		_, err := call(ctx, h.client, "GET", h.AdminURL+"/health/ready", nil)
		return err
	}
	if err := h.proc.start(hydra.ServeArgs(cfgPath), ready, hydraReadyTimeout); err != nil {
		t.Fatal(err)
	}
	var disc struct {
		Issuer string `json:"issuer"`
	}
	h.mustJSON(t, "GET", h.PublicURL+"/.well-known/openid-configuration", nil, &disc)
	h.Issuer = disc.Issuer
	// Signing keys are made on the first JWKS read: done here, it does
	// not eat into the time budget of the first login.
	ctx, cancel := context.WithTimeout(context.Background(), hydraReadyTimeout)
	defer cancel()
	if err := hydra.WaitReady(ctx, h.AdminURL, h.PublicURL); err != nil {
		t.Fatalf("hydra: %v", err)
	}
	return h
}

// SetUser sets who the login app logs in, and the claims it puts into ID
// tokens (beside Hydra's own).
func (h *Hydra) SetUser(subject string, idTokenClaims map[string]any) {
	h.App.SetUser(subject, idTokenClaims)
}

// CreateClient creates an OAuth2 client through the admin API (the body is
// Hydra's client object) and returns Hydra's answer.
func (h *Hydra) CreateClient(t testing.TB, client map[string]any) map[string]any {
	t.Helper()
	var out map[string]any
	h.mustJSON(t, "POST", h.AdminURL+"/admin/clients", client, &out)
	return out
}

// SetClientLifespans sets a client's token lifespans (Hydra's lifespans
// object, e.g. {"client_credentials_grant_access_token_lifespan":"2s"}).
func (h *Hydra) SetClientLifespans(t testing.TB, clientID string, lifespans map[string]any) {
	t.Helper()
	h.mustJSON(t, "PUT", h.AdminURL+"/admin/clients/"+url.PathEscape(clientID)+"/lifespans", lifespans, nil)
}

// ClientCredentialsToken gets an access token for a client (client_secret_basic).
func (h *Hydra) ClientCredentialsToken(t testing.TB, clientID, secret, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	req, _ := http.NewRequest("POST", h.PublicURL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	var out struct {
		AccessToken string `json:"access_token"`
	}
	h.do(t, req, &out)
	if out.AccessToken == "" {
		t.Fatal("hydra: token answer without access_token")
	}
	return out.AccessToken
}

// Revoke revokes a token at Hydra's RFC 7009 endpoint.
func (h *Hydra) Revoke(t testing.TB, clientID, secret, token string) {
	t.Helper()
	form := url.Values{"token": {token}}
	req, _ := http.NewRequest("POST", h.PublicURL+"/oauth2/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	h.do(t, req, nil)
}

// Introspect asks Hydra's introspection endpoint directly (what the gateway
// should find).
func (h *Hydra) Introspect(t testing.TB, token string) map[string]any {
	t.Helper()
	form := url.Values{"token": {token}}
	req, _ := http.NewRequest("POST", h.AdminURL+"/admin/oauth2/introspect", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var out map[string]any
	h.do(t, req, &out)
	return out
}

func (h *Hydra) mustJSON(t testing.TB, method, u string, body any, out any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	h.do(t, req, out)
}

func (h *Hydra) do(t testing.TB, req *http.Request, out any) {
	t.Helper()
	if err := hydra.Do(h.client, req, out); err != nil {
		t.Fatal(err)
	}
}
