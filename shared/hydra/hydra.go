// Package hydra is what Portico needs around a local ORY Hydra (an
// OAuth2/OIDC provider) that Hydra does not bring itself: the configuration
// of an in-memory instance on loopback ports, a login-and-consent app (Hydra
// has no login UI: it hands every login, consent and logout to an app,
// which accepts them through Hydra's admin API), and the few admin calls
// that set a provider up. The tests (shared/testutil.StartHydra) and
// `OIDC=1 make run` (dataplane/cmd/demo-oidc) use this same code.
package hydra

import (
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Config is a local Hydra's configuration: in-memory database, opaque
// access tokens, public subject identifiers, Lax cookies.
type Config struct {
	// PublicAddr and AdminAddr are host:port to listen on (loopback).
	PublicAddr, AdminAddr string
	// AppURL is the login app's base URL (its /login, /consent, /logout).
	AppURL string
	// SystemSecret encrypts Hydra's database secrets (at least 16 bytes).
	SystemSecret string
	// AccessTokenTTL is the lifetime of access and ID tokens (0: Hydra's
	// default, 1h).
	AccessTokenTTL time.Duration
	// RefreshRotationGrace is how long a refresh token stays usable after
	// its first use (oauth2.grant.refresh_token.rotation_grace_period;
	// 0: Hydra's default, none: a second use revokes the grant; Hydra
	// caps it at 5m).
	RefreshRotationGrace time.Duration
}

// PublicURL is the OAuth2/OIDC endpoints' base, and the issuer.
func (c Config) PublicURL() string { return "http://" + c.PublicAddr }

// AdminURL is the admin API's base.
func (c Config) AdminURL() string { return "http://" + c.AdminAddr }

// YAML renders the configuration file for `hydra serve all --config`.
func (c Config) YAML() (string, error) {
	if len(c.SystemSecret) < 16 {
		return "", errors.New("hydra: the system secret must be at least 16 bytes")
	}
	host := func(addr string) (string, string) {
		i := strings.LastIndexByte(addr, ':')
		if i < 0 {
			return addr, ""
		}
		return addr[:i], addr[i+1:]
	}
	ph, pp := host(c.PublicAddr)
	ah, ap := host(c.AdminAddr)
	var b strings.Builder
	fmt.Fprintf(&b, `dsn: memory
log:
  level: warn
serve:
  public:
    host: %s
    port: %s
  admin:
    host: %s
    port: %s
  cookies:
    same_site_mode: Lax
urls:
  self:
    issuer: %s
  login: %s/login
  consent: %s/consent
  logout: %s/logout
secrets:
  system:
    - %s
strategies:
  access_token: opaque
oidc:
  subject_identifiers:
    supported_types: [public]
`, ph, pp, ah, ap, c.PublicURL(), c.AppURL, c.AppURL, c.AppURL, c.SystemSecret)
	if c.AccessTokenTTL > 0 {
		fmt.Fprintf(&b, "ttl:\n  access_token: %s\n  id_token: %s\n", c.AccessTokenTTL, c.AccessTokenTTL)
	}
	if c.RefreshRotationGrace > 0 {
		fmt.Fprintf(&b, "oauth2:\n  grant:\n    refresh_token:\n      rotation_grace_period: %s\n", c.RefreshRotationGrace)
	}
	return b.String(), nil
}

// ServeArgs are the arguments of `hydra` that serve a configuration file
// (development mode: plain HTTP on loopback; no telemetry).
func ServeArgs(configPath string) []string {
	return []string{"serve", "all", "--dev", "--sqa-opt-out", "--config", configPath}
}

// Admin calls a Hydra's admin API.
type Admin struct {
	URL    string
	Client *http.Client // nil: a client with a 10s timeout
}

func (a Admin) client() *http.Client {
	if a.Client != nil {
		return a.Client
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// Call sends body (JSON, when not nil) and decodes a 2xx answer into out
// (when not nil); any other answer is an error with Hydra's words.
func (a Admin) Call(ctx context.Context, method, path string, body, out any) error {
	return call(ctx, a.client(), method, a.URL+path, body, out)
}

// CreateClient registers an OAuth2 client (Hydra's client object),
// replacing one of the same client_id.
func (a Admin) CreateClient(ctx context.Context, client map[string]any) error {
	if id, _ := client["client_id"].(string); id != "" {
		err := a.Call(ctx, "DELETE", "/admin/clients/"+url.PathEscape(id), nil, nil)
		if err != nil && !strings.Contains(err.Error(), "HTTP 404") {
			return err
		}
	}
	return a.Call(ctx, "POST", "/admin/clients", client, nil)
}

// WaitReady waits (bounded by ctx) until Hydra answers its readiness check,
// then reads its JWKS once: Hydra makes its signing keys on the first read
// (RSA key generation, seconds on a loaded machine), better before the
// first login than during it.
func WaitReady(ctx context.Context, adminURL, publicURL string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	delay := 50 * time.Millisecond
	for {
		err := call(ctx, c, "GET", adminURL+"/health/ready", nil, nil)
		if err == nil {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("hydra not ready: %w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
	warm := &http.Client{}
	return call(ctx, warm, "GET", publicURL+"/.well-known/jwks.json", nil, nil)
}

func call(ctx context.Context, c *http.Client, method, u string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return Do(c, req, out)
}

// Do sends req and decodes a 2xx JSON answer into out (when not nil).
func Do(c *http.Client, req *http.Request, out any) error {
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("hydra %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("hydra %s %s: HTTP %d: %s", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("hydra %s %s: %w: %s", req.Method, req.URL.Path, err, b)
		}
	}
	return nil
}

// LoginApp is a login-and-consent app for one user at a time. With no
// password every login is accepted at once as the user (what a real app
// does once the user has typed a password: the tests' browser is a program);
// with a password, /login shows a form and accepts only the user's name and
// that password. Consent is granted for what the client asked (the apps
// behind the gateway are first-party), logout confirmed. Everything else
// (the CSRF cookies, the code, the tokens) is Hydra's.
type LoginApp struct {
	admin Admin

	mu       sync.Mutex
	subject  string
	claims   map[string]any
	password string
}

// NewLoginApp returns the app for the Hydra whose admin API is at adminURL,
// logging in "alice".
func NewLoginApp(adminURL string) *LoginApp {
	return &LoginApp{admin: Admin{URL: adminURL}, subject: "alice"}
}

// SetUser sets who logs in, and the claims put into ID tokens (beside
// Hydra's own).
func (a *LoginApp) SetUser(subject string, idTokenClaims map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.subject, a.claims = subject, idTokenClaims
}

// RequirePassword makes /login a form that accepts the user's name and
// password only ("" turns the form off).
func (a *LoginApp) RequirePassword(password string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.password = password
}

func (a *LoginApp) user() (subject string, claims map[string]any, password string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.subject, a.claims, a.password
}

var loginForm = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in (Portico demo identity provider)</title>
<style>body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto}label,input,button{display:block;width:100%;margin:.4rem 0}input,button{padding:.5rem;font-size:1rem}.err{color:#b00}</style></head>
<body><h1>Sign in</h1><p>ORY Hydra's login, as a demo app shows it{{if .Client}} for <b>{{.Client}}</b>{{end}}.</p>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
<form method="post" action="login">
<input type="hidden" name="login_challenge" value="{{.Challenge}}">
<label>User <input name="username" value="{{.User}}" autocomplete="username" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit" name="action" value="login">Sign in</button>
<button type="submit" name="action" value="deny">Cancel</button>
</form></body></html>
`))

// maxLoginForm bounds the login form's body.
const maxLoginForm = 8 << 10

// Handler serves /login, /consent, /logout and /healthz.
func (a *LoginApp) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		challenge := r.URL.Query().Get("login_challenge")
		subject, _, password := a.user()
		if password == "" {
			a.accept(w, r, "login", challenge, map[string]any{"subject": subject, "remember": false})
			return
		}
		var lr struct {
			Client struct {
				Name string `json:"client_name"`
				ID   string `json:"client_id"`
			} `json:"client"`
		}
		if err := a.admin.Call(r.Context(), "GET", "/admin/oauth2/auth/requests/login?login_challenge="+url.QueryEscape(challenge), nil, &lr); err != nil {
			http.Error(w, "this login is unknown or over; start again from the application", http.StatusBadRequest)
			return
		}
		a.form(w, http.StatusOK, challenge, subject, cmp.Or(lr.Client.Name, lr.Client.ID), "")
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxLoginForm)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		challenge := r.PostForm.Get("login_challenge")
		subject, _, password := a.user()
		if r.PostForm.Get("action") == "deny" {
			a.reject(w, r, "login", challenge)
			return
		}
		userOK := subtle.ConstantTimeCompare([]byte(r.PostForm.Get("username")), []byte(subject)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(r.PostForm.Get("password")), []byte(password)) == 1
		if password == "" || !userOK || !passOK {
			a.form(w, http.StatusUnauthorized, challenge, r.PostForm.Get("username"), "", "Wrong user or password.")
			return
		}
		a.accept(w, r, "login", challenge, map[string]any{"subject": subject, "remember": false})
	})
	mux.HandleFunc("GET /consent", func(w http.ResponseWriter, r *http.Request) {
		challenge := r.URL.Query().Get("consent_challenge")
		var cr struct {
			RequestedScope    []string `json:"requested_scope"`
			RequestedAudience []string `json:"requested_access_token_audience"`
		}
		if err := a.admin.Call(r.Context(), "GET", "/admin/oauth2/auth/requests/consent?consent_challenge="+url.QueryEscape(challenge), nil, &cr); err != nil {
			http.Error(w, "this consent is unknown or over; start again from the application", http.StatusBadRequest)
			return
		}
		_, claims, _ := a.user()
		a.accept(w, r, "consent", challenge, map[string]any{
			"grant_scope": cr.RequestedScope, "grant_access_token_audience": cr.RequestedAudience,
			"remember": false, "session": map[string]any{"id_token": claims},
		})
	})
	mux.HandleFunc("GET /logout", func(w http.ResponseWriter, r *http.Request) {
		a.accept(w, r, "logout", r.URL.Query().Get("logout_challenge"), nil)
	})
	return mux
}

func (a *LoginApp) form(w http.ResponseWriter, status int, challenge, user, client, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = loginForm.Execute(w, map[string]string{"Challenge": challenge, "User": user, "Client": client, "Error": msg})
}

// accept accepts a challenge through the admin API and sends the browser
// on to where Hydra says.
func (a *LoginApp) accept(w http.ResponseWriter, r *http.Request, kind, challenge string, body any) {
	a.finish(w, r, kind, "accept", challenge, body)
}

func (a *LoginApp) reject(w http.ResponseWriter, r *http.Request, kind, challenge string) {
	a.finish(w, r, kind, "reject", challenge, map[string]any{"error": "access_denied", "error_description": "the user cancelled the login"})
}

func (a *LoginApp) finish(w http.ResponseWriter, r *http.Request, kind, verb, challenge string, body any) {
	path := fmt.Sprintf("/admin/oauth2/auth/requests/%s/%s?%s_challenge=%s", kind, verb, kind, url.QueryEscape(challenge))
	var out struct {
		RedirectTo string `json:"redirect_to"`
	}
	if err := a.admin.Call(r.Context(), "PUT", path, body, &out); err != nil || out.RedirectTo == "" {
		http.Error(w, fmt.Sprintf("%s %s: %v", verb, kind, err), http.StatusBadGateway)
		return
	}
	w.Header().Set("Location", out.RedirectTo)
	w.WriteHeader(http.StatusFound)
}
