// Command demo-oidc is `OIDC=1 make run`'s identity provider: it starts ORY
// Hydra (the binary scripts/ensure-hydra.sh builds) in memory on loopback
// ports, serves the login-and-consent app Hydra hands its logins to (a
// sign-in form for one demo user, shared/hydra.LoginApp), registers the
// gateway as a client at Hydra, and configures Portico through the admin
// API: issuer "hydra-demo" with an oidc block and route "app" (/app/*,
// behind an OIDC login, forwarding the user's sub and email to the demo
// service). It runs until interrupted and stops Hydra with it.
//
// The demo user's password is generated once and kept in
// <dir>/oidc-<user>.password (0600); Hydra's system secret and the client
// secret are new at each start (Hydra keeps nothing: in-memory database).
// /healthz on the login app answers 200 once everything is set up.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portico-gw/portico/shared/childproc"
	"github.com/portico-gw/portico/shared/cli"
	"github.com/portico-gw/portico/shared/client"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/envflag"
	"github.com/portico-gw/portico/shared/hydra"
)

// hydraStartTimeout bounds Hydra's start: it migrates its in-memory
// database and makes RSA signing keys, seconds on a loaded 2-core box.
const hydraStartTimeout = 90 * time.Second

const (
	issuerName = "hydra-demo"
	clientID   = "portico-demo"
	routeName  = "app"
	// The machine client of the introspection step: it gets opaque access
	// tokens by client_credentials, which route machine checks at Hydra's
	// RFC 7662 endpoint.
	machineClient = "demo-service"
	machineScope  = "orders:read"
	machineRoute  = "machine"
)

func main() { cli.Main("demo-oidc", run) }

type options struct {
	hydraBin, controlplane, token, gateways, public, admin, listen, dir, service, afterLogout, user string
}

func run(args []string) error {
	fs := envflag.New("demo-oidc")
	hydraBin := fs.String("hydra", "HYDRA_BIN", "", "the hydra binary (scripts/ensure-hydra.sh prints its path)")
	cp := fs.String("controlplane", "PORTICO_URL", "http://127.0.0.1:9000", "the control plane's admin API")
	token := fs.String("token", "PORTICO_TOKEN", "", "admin API token (empty: a control plane in --dev mode)")
	gateways := fs.String("gateway", "DEMO_OIDC_GATEWAY", "http://localhost:8080", "comma-separated base URLs browsers reach the data plane at (each gets a redirect URI at Hydra; the first is the one to open)")
	public := fs.String("public", "DEMO_OIDC_PUBLIC", "127.0.0.1:4444", "Hydra's public (OAuth2/OIDC) address; the issuer is http://<this>")
	admin := fs.String("admin", "DEMO_OIDC_ADMIN", "127.0.0.1:4445", "Hydra's admin address")
	listen := fs.String("listen", "DEMO_OIDC_LISTEN", "127.0.0.1:4446", "the login-and-consent app's address")
	dir := fs.String("dir", "DEMO_OIDC_DIR", ".portico/run/oidc", "where Hydra's configuration, its log and the demo user's password go")
	service := fs.String("service", "DEMO_OIDC_SERVICE", "demo", "the Portico service route app forwards to (must exist)")
	afterLogout := fs.String("after-logout", "DEMO_OIDC_AFTER_LOGOUT", "/demo/logged-out", "the public path browsers land on after logging out (a route that needs no login)")
	user := fs.String("user", "DEMO_OIDC_USER", "alice", "the demo user's name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o := options{hydraBin: *hydraBin, controlplane: *cp, token: *token, gateways: *gateways, public: *public, admin: *admin,
		listen: *listen, dir: *dir, service: *service, afterLogout: *afterLogout, user: *user}
	if o.hydraBin == "" {
		return errors.New("--hydra is required (scripts/ensure-hydra.sh builds it and prints its path)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, o, slog.Default())
}

func serve(ctx context.Context, o options, log *slog.Logger) error {
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return err
	}
	password, err := demoPassword(filepath.Join(o.dir, "oidc-"+o.user+".password"))
	if err != nil {
		return err
	}
	cfg := hydra.Config{PublicAddr: o.public, AdminAddr: o.admin, AppURL: "http://" + o.listen, SystemSecret: randomString(32)}

	// The login app first: Hydra sends browsers to it.
	app := hydra.NewLoginApp(cfg.AdminURL())
	app.SetUser(o.user, map[string]any{"email": o.user + "@example.com", "name": o.user})
	app.RequirePassword(password)
	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "setting up", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/", app.Handler())
	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("login app: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	// Hydra, in its own process group, stopped with us.
	yml, err := cfg.YAML()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(o.dir, "hydra.yml")
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(o.dir, "hydra.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(o.hydraBin, hydra.ServeArgs(cfgPath)...)
	// Not our environment: Hydra reads every variable named like a key of
	// its configuration (OIDC, DSN, SERVE_..., URLS_...) over the file, and
	// `OIDC=1 make run` has OIDC=1 in it.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir()}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := childproc.Start(cmd); err != nil {
		return fmt.Errorf("hydra: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()
	sctx, cancel := context.WithTimeout(ctx, hydraStartTimeout)
	defer cancel()
	startErr := make(chan error, 1)
	go func() { startErr <- hydra.WaitReady(sctx, cfg.AdminURL(), cfg.PublicURL()) }()
	select {
	case err := <-startErr:
		if err != nil {
			return fmt.Errorf("%w; see %s", err, logf.Name())
		}
	case err := <-exited:
		exited <- err
		return fmt.Errorf("hydra exited before becoming ready (%v); see %s", err, logf.Name())
	}

	if err := setup(sctx, o, cfg); err != nil {
		return err
	}
	ready.Store(true)
	first, _, _ := strings.Cut(o.gateways, ",")
	log.Info("OIDC demo ready", "open", strings.TrimRight(first, "/")+"/app/hello", "user", o.user,
		"password_file", filepath.Join(o.dir, "oidc-"+o.user+".password"), "issuer", cfg.PublicURL())

	select {
	case <-ctx.Done():
		return nil
	case err := <-exited:
		exited <- err
		return fmt.Errorf("hydra exited (%v); see %s", err, logf.Name())
	case err := <-served:
		return fmt.Errorf("login app: %w", err)
	}
}

// setup registers the gateway at Hydra and configures Portico.
func setup(ctx context.Context, o options, cfg hydra.Config) error {
	secret := randomString(32)
	var redirects, logouts []string
	for g := range strings.SplitSeq(o.gateways, ",") {
		g = strings.TrimRight(strings.TrimSpace(g), "/")
		if g == "" {
			continue
		}
		redirects = append(redirects, g+"/app/callback")
		logouts = append(logouts, g+o.afterLogout)
	}
	if len(redirects) == 0 {
		return errors.New("--gateway: no URL")
	}
	err := hydra.Admin{URL: cfg.AdminURL()}.CreateClient(ctx, map[string]any{
		"client_id": clientID, "client_secret": secret, "client_name": "Portico make run",
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
		"scope": "openid offline_access email profile", "token_endpoint_auth_method": "client_secret_basic",
		"redirect_uris": redirects, "post_logout_redirect_uris": logouts,
	})
	if err != nil {
		return err
	}
	machineSecret, err := keptSecret(filepath.Join(o.dir, machineClient+".secret"))
	if err != nil {
		return err
	}
	err = hydra.Admin{URL: cfg.AdminURL()}.CreateClient(ctx, map[string]any{
		"client_id": machineClient, "client_secret": machineSecret, "client_name": "Portico make run: a service calling an API",
		"grant_types": []string{"client_credentials"}, "scope": machineScope, "token_endpoint_auth_method": "client_secret_basic",
	})
	if err != nil {
		return err
	}
	pc, err := client.New(o.controlplane, o.token, client.WithActor("demo-oidc"))
	if err != nil {
		return err
	}
	// The control plane generates the session key; the client secret is
	// never shown again by the admin API. Hydra's introspection endpoint is
	// on its admin port, which asks for no client credentials.
	if _, _, err := pc.Issuers().Put(ctx, issuerName, config.Issuer{Issuer: cfg.PublicURL(),
		OIDC:          &config.IssuerOIDC{ClientID: clientID, ClientSecret: secret},
		Introspection: &config.Introspection{URL: cfg.AdminURL() + "/admin/oauth2/introspect"}}); err != nil {
		return fmt.Errorf("PUT /v1/issuers/%s: %w", issuerName, err)
	}
	// The token's sub is the client's id: a consumer of that name trusts
	// the issuer, so the route knows the caller as that consumer.
	if _, _, err := pc.Consumers().Put(ctx, machineClient, config.Consumer{Groups: []string{"services"}, JWTIssuers: []string{issuerName}}); err != nil {
		return fmt.Errorf("PUT /v1/consumers/%s: %w", machineClient, err)
	}
	if _, _, err := pc.Routes().Put(ctx, machineRoute, config.Route{Paths: []string{"/machine/*"}, Service: o.service, StripPrefix: true,
		Auth: &config.RouteAuth{Introspection: true, Issuers: []string{issuerName}, Scopes: []string{machineScope},
			ForwardClaims: map[string]string{"client_id": "X-Client-Id", "scope": "X-Scope"}}}); err != nil {
		return fmt.Errorf("PUT /v1/routes/%s: %w", machineRoute, err)
	}
	if _, _, err := pc.Routes().Put(ctx, routeName, config.Route{Paths: []string{"/app/*"}, Service: o.service, StripPrefix: true,
		Auth: &config.RouteAuth{
			OIDC: &config.RouteOIDC{Issuer: issuerName, Scopes: []string{"openid", "offline_access", "email", "profile"},
				CallbackPath: "/app/callback", LogoutPath: "/app/logout", PostLogoutRedirect: o.afterLogout},
			ForwardClaims: map[string]string{"sub": "X-User-Id", "email": "X-User-Email"},
		}}); err != nil {
		return fmt.Errorf("PUT /v1/routes/%s: %w", routeName, err)
	}
	return nil
}

// demoPassword reads the demo user's password from path, or makes one and
// keeps it there (0600) for the next start.
func demoPassword(path string) (string, error) { return kept(path, 12) }

// keptSecret is the machine client's secret, kept like the password (the
// tour's curl line reads it from the file).
func keptSecret(path string) (string, error) { return kept(path, 32) }

// kept reads a secret from path, or makes one of n random bytes and keeps
// it there (0600) for the next start.
func kept(path string, n int) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	p := randomString(n)
	if err := os.WriteFile(path, []byte(p+"\n"), 0o600); err != nil {
		return "", err
	}
	return p, nil
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
