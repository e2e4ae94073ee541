package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// allHeadersEcho is a service that answers with the headers it received, so
// that tests see what the gateway forwards (identity, claims, cookies).
func allHeadersEcho(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "headers": r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// echoed is what allHeadersEcho answered.
type echoed struct {
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"`
}

func (e echoed) get(name string) string {
	if v := e.Headers[http.CanonicalHeaderKey(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// bearerGet sends a GET with a bearer token and returns the status and the
// echoed request (on 200).
func bearerGet(t *testing.T, url, token string) (int, echoed) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, echoed{}
	}
	defer resp.Body.Close()
	var e echoed
	if resp.StatusCode == 200 {
		_ = json.NewDecoder(resp.Body).Decode(&e)
	}
	return resp.StatusCode, e
}

// TestIntrospection: opaque OAuth2 access tokens issued by a real ORY Hydra
// (client_credentials) are checked at Hydra's RFC 7662 endpoint by two data
// planes: an active token with the route's scope passes with its sub
// mapped to a consumer and its claims forwarded; a made-up token, one
// without the scope, an expired one and a revoked one are refused.
func TestIntrospection(t *testing.T) {
	ctx := context.Background()
	hydra := testutil.StartHydra(t, 0)
	hydra.CreateClient(t, map[string]any{
		"client_id": "billing", "client_secret": "billing-secret-0123456789",
		"grant_types": []string{"client_credentials"}, "scope": "read write",
		"token_endpoint_auth_method": "client_secret_basic",
	})
	hydra.CreateClient(t, map[string]any{
		"client_id": "shortlived", "client_secret": "shortlived-secret-0123456789",
		"grant_types": []string{"client_credentials"}, "scope": "read",
		"token_endpoint_auth_method": "client_secret_basic",
	})
	hydra.SetClientLifespans(t, "shortlived", map[string]any{"client_credentials_grant_access_token_lifespan": "3s"})

	up := allHeadersEcho(t)
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dps := []*dataPlane{
		startDataPlane(t, "dp-1", cp.url, filepath.Join(dir, "dp-1")),
		startDataPlane(t, "dp-2", cp.url, filepath.Join(dir, "dp-2")),
	}
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Issuers().Put(ctx, "hydra", config.Issuer{
		Issuer: hydra.Issuer,
		Introspection: &config.Introspection{
			URL:      hydra.AdminURL + "/admin/oauth2/introspect",
			ClientID: "portico", ClientSecret: "introspection-secret-value",
			CacheTTL: config.Duration(time.Second),
		},
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Consumers().Put(ctx, "billing", config.Consumer{Groups: []string{"finance"}, JWTIssuers: []string{"hydra"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "api", config.Route{Paths: []string{"/api/*"}, Service: "s", Auth: &config.RouteAuth{
		Introspection: true, Issuers: []string{"hydra"}, Scopes: []string{"read"},
		ForwardClaims: map[string]string{"client_id": "X-Client-Id", "scope": "X-Scope"},
	}}); err != nil {
		t.Fatal(err)
	}

	token := hydra.ClientCredentialsToken(t, "billing", "billing-secret-0123456789", "read write")
	if strings.Count(token, ".") == 2 {
		t.Fatalf("hydra issued a JWT, not an opaque token: %.20s…", token)
	}
	for _, dp := range dps {
		var e echoed
		testutil.Eventually(t, 15*time.Second, func() bool {
			var code int
			code, e = bearerGet(t, dp.url+"/api/orders", token)
			return code == 200
		}, dp.id+" accepting an active token")
		if e.get("X-Consumer-Name") != "billing" || e.get("X-Consumer-Groups") != "finance" || e.get("X-Auth-Method") != "introspection" ||
			e.get("X-Client-Id") != "billing" || e.get("X-Scope") != "read write" || e.get("Authorization") == "" {
			t.Fatalf("%s forwarded %v", dp.id, e.Headers)
		}
		if code, _ := bearerGet(t, dp.url+"/api/orders", "ory_at_madeup"+strings.Repeat("x", 40)); code != 401 {
			t.Fatalf("%s: made-up token: %d, want 401", dp.id, code)
		}
	}

	// A token without the route's scope: 403.
	writeOnly := hydra.ClientCredentialsToken(t, "billing", "billing-secret-0123456789", "write")
	if code, _ := bearerGet(t, dps[0].url+"/api/orders", writeOnly); code != 403 {
		t.Fatalf("token without scope read: %d, want 403", code)
	}

	// Expired: a 3s token passes, then is refused once its exp passes
	// (the cache never keeps an answer past exp).
	short := hydra.ClientCredentialsToken(t, "shortlived", "shortlived-secret-0123456789", "read")
	if code, _ := bearerGet(t, dps[1].url+"/api/orders", short); code != 200 {
		t.Fatalf("short-lived token while valid: %d", code)
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		code, _ := bearerGet(t, dps[1].url+"/api/orders", short)
		return code == 401
	}, "the expired token refused")
	// Hydra agrees (its expiry has sub-second precision, the answer's exp
	// whole seconds: it may say so up to a second later).
	testutil.Eventually(t, 5*time.Second, func() bool {
		active, _ := hydra.Introspect(t, short)["active"].(bool)
		return !active
	}, "hydra calling the expired token inactive")

	// Revoked at Hydra (RFC 7009): refused within cache_ttl (1s) on both.
	hydra.Revoke(t, "billing", "billing-secret-0123456789", token)
	for _, dp := range dps {
		testutil.Eventually(t, 10*time.Second, func() bool {
			code, _ := bearerGet(t, dp.url+"/api/orders", token)
			return code == 401
		}, dp.id+" refusing the revoked token")
	}
	if active, _ := hydra.Introspect(t, token)["active"].(bool); active {
		t.Fatal("hydra still calls the revoked token active")
	}
	// The introspection client secret never shows through the admin API.
	is, err := cp.admin.Issuers().Get(ctx, "hydra")
	if err != nil || is.Introspection == nil || is.Introspection.ClientID != "portico" || is.Introspection.ClientSecret != "" {
		t.Fatalf("GET issuer: %+v %v", is, err)
	}
}

// TestOIDCLogin: a browser (a real HTTP client with a cookie jar that
// follows redirects) logs in through a real ORY Hydra (authorization code,
// PKCE, state, nonce; login and consent accepted through Hydra's admin
// API), gets a session on one data plane that the other accepts, sees its
// ID-token claims and consumer forwarded, has its tokens refreshed before
// they expire, is refused with a tampered cookie, and logs out (RP-initiated
// at Hydra) back to a public page; API calls without a session get 401,
// not a redirect.
func TestOIDCLogin(t *testing.T) {
	ctx := context.Background()
	// Access tokens of 6s: the gateway refreshes from half their life.
	hydra := testutil.StartHydra(t, 6*time.Second)
	hydra.SetUser("alice", map[string]any{"email": "alice@example.com"})

	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp1 := startDataPlane(t, "dp-1", cp.url, filepath.Join(dir, "dp-1"))
	dp2 := startDataPlane(t, "dp-2", cp.url, filepath.Join(dir, "dp-2"))
	setupOIDCApp(t, hydra, cp, dp1, dp2)
	// The session key was generated by the control plane and is not shown.
	if is, err := cp.admin.Issuers().Get(ctx, "hydra"); err != nil || is.OIDC == nil || is.OIDC.SessionKey != "" || is.OIDC.ClientSecret != "" {
		t.Fatalf("GET issuer: %+v %v", is, err)
	}

	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(c *http.Client, url, accept string, cookie *http.Cookie) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Accept", accept)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	const html, api = "text/html,application/xhtml+xml", "application/json"
	for _, dp := range []*dataPlane{dp1, dp2} {
		testutil.Eventually(t, 15*time.Second, func() bool {
			r := send(noFollow, dp.url+"/app/home", api, nil)
			return r.StatusCode == 401
		}, dp.id+" asking API calls for a session")
	}
	// A browser without a session is sent to Hydra with PKCE, state, nonce.
	r := send(noFollow, dp1.url+"/app/home", html, nil)
	loc, _ := url.Parse(r.Header.Get("Location"))
	if r.StatusCode != 302 || loc == nil || !strings.HasPrefix(loc.String(), hydra.PublicURL+"/oauth2/auth") ||
		loc.Query().Get("code_challenge_method") != "S256" || loc.Query().Get("state") == "" || loc.Query().Get("nonce") == "" ||
		loc.Query().Get("redirect_uri") != dp1.url+"/app/callback" {
		t.Fatalf("login redirect: %d %s", r.StatusCode, r.Header.Get("Location"))
	}

	// The whole flow, as a browser: dp-1 → Hydra → login → consent → dp-1.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	r = send(browser, dp1.url+"/app/home?tab=2", html, nil)
	var e echoed
	if r.StatusCode != 200 || json.NewDecoder(r.Body).Decode(&e) != nil || e.Path != "/app/home" || r.Request.URL.RawQuery != "tab=2" {
		t.Fatalf("after login: %d at %s", r.StatusCode, r.Request.URL)
	}
	if e.get("X-User-Email") != "alice@example.com" || e.get("X-User-Id") != "alice" || e.get("X-Consumer-Name") != "alice" ||
		e.get("X-Auth-Method") != "oidc" || strings.Contains(e.get("Cookie"), "__Host-portico") {
		t.Fatalf("forwarded after login: %v", e.Headers)
	}
	var session *http.Cookie
	for _, c := range jar.Cookies(mustURL(t, dp1.url)) {
		if c.Name == "__Host-portico-hydra" {
			session = c
		}
	}
	if session == nil {
		t.Fatal("no session cookie after login")
	}
	for _, h := range r.Request.Response.Header.Values("Set-Cookie") { // the callback's answer
		if strings.HasPrefix(h, "__Host-portico-hydra=") && !(strings.Contains(h, "Secure") && strings.Contains(h, "HttpOnly") && strings.Contains(h, "SameSite=Lax") && strings.Contains(h, "Path=/")) {
			t.Fatalf("session cookie attributes: %s", h)
		}
	}

	// The session is valid on the other data plane (same key everywhere),
	// for API calls too.
	r = send(noFollow, dp2.url+"/app/orders", api, session)
	if r.StatusCode != 200 || json.NewDecoder(r.Body).Decode(&e) != nil || e.get("X-User-Email") != "alice@example.com" {
		t.Fatalf("session on dp-2: %d", r.StatusCode)
	}

	// A tampered cookie is refused: 401 for an API call, a new login for a
	// browser.
	tampered := *session
	b := []byte(tampered.Value)
	b[len(b)/2] ^= 0x02
	tampered.Value = string(b)
	if r := send(noFollow, dp2.url+"/app/orders", api, &tampered); r.StatusCode != 401 {
		t.Fatalf("tampered cookie, API: %d", r.StatusCode)
	}
	if r := send(noFollow, dp1.url+"/app/orders", html, &tampered); r.StatusCode != 302 || !strings.HasPrefix(r.Header.Get("Location"), hydra.PublicURL) {
		t.Fatalf("tampered cookie, browser: %d %s", r.StatusCode, r.Header.Get("Location"))
	}

	// Refresh: once the access token is past half its life, a request
	// refreshes it at Hydra and gets a new cookie; the identity stays.
	var refreshed *http.Cookie
	testutil.Eventually(t, 20*time.Second, func() bool {
		r := send(noFollow, dp2.url+"/app/orders", api, session)
		if r.StatusCode != 200 {
			t.Fatalf("during refresh: %d", r.StatusCode)
		}
		for _, c := range r.Cookies() {
			if c.Name == "__Host-portico-hydra" && c.Value != session.Value && c.MaxAge > 0 {
				refreshed = c
			}
		}
		return refreshed != nil
	}, "a refreshed session cookie")
	r = send(noFollow, dp1.url+"/app/orders", api, refreshed)
	if r.StatusCode != 200 || json.NewDecoder(r.Body).Decode(&e) != nil || e.get("X-User-Id") != "alice" {
		t.Fatalf("refreshed session on dp-1: %d %v", r.StatusCode, e.Headers)
	}
	jar.SetCookies(mustURL(t, dp1.url), []*http.Cookie{{Name: refreshed.Name, Value: refreshed.Value, Path: "/", Secure: true, HttpOnly: true}})

	// Logout: the cookie is cleared, Hydra's end_session_endpoint logs out
	// too and sends the browser back to the public page.
	r = send(browser, dp1.url+"/app/logout", html, nil)
	if r.StatusCode != 200 || r.Request.URL.Host != mustURL(t, dp1.url).Host || r.Request.URL.Path != "/bye" {
		t.Fatalf("after logout: %d at %s", r.StatusCode, r.Request.URL)
	}
	for _, c := range jar.Cookies(mustURL(t, dp1.url)) {
		if c.Name == "__Host-portico-hydra" {
			t.Fatal("session cookie still in the browser after logout")
		}
	}
	if r := send(browser, dp1.url+"/app/home", api, nil); r.StatusCode != 401 {
		t.Fatalf("after logout, API call: %d", r.StatusCode)
	}
}

// oidcClientSecret is the client secret setupOIDCApp registers at Hydra.
const oidcClientSecret = "web-client-secret-0123456789"

// setupOIDCApp registers the client "web" at Hydra (redirect URIs on every
// data plane, post-logout redirect to dp[0]/bye) and configures the
// gateway: issuer "hydra" with an oidc block, consumer alice (group staff)
// mapped from the sub claim, route /app/* behind OIDC login for group
// staff (email and sub forwarded), and the public route /bye.
func setupOIDCApp(t *testing.T, hydra *testutil.Hydra, cp *controlPlane, dps ...*dataPlane) {
	t.Helper()
	ctx := context.Background()
	up := allHeadersEcho(t)
	var redirects []string
	for _, dp := range dps {
		redirects = append(redirects, dp.url+"/app/callback")
	}
	hydra.CreateClient(t, map[string]any{
		"client_id": "web", "client_secret": oidcClientSecret,
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
		"scope": "openid offline_access email", "token_endpoint_auth_method": "client_secret_basic",
		"redirect_uris":             redirects,
		"post_logout_redirect_uris": []string{dps[0].url + "/bye"},
	})
	if _, _, err := cp.admin.Services().Put(ctx, "s", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Issuers().Put(ctx, "hydra", config.Issuer{Issuer: hydra.Issuer, OIDC: &config.IssuerOIDC{ClientID: "web", ClientSecret: oidcClientSecret}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Consumers().Put(ctx, "alice", config.Consumer{Groups: []string{"staff"}, JWTIssuers: []string{"hydra"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "app", config.Route{Paths: []string{"/app/*"}, Service: "s", Auth: &config.RouteAuth{
		OIDC: &config.RouteOIDC{Issuer: "hydra", Scopes: []string{"openid", "offline_access", "email"},
			CallbackPath: "/app/callback", LogoutPath: "/app/logout", PostLogoutRedirect: "/bye"},
		Groups:        []string{"staff"},
		ForwardClaims: map[string]string{"email": "X-User-Email", "sub": "X-User-Id"},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "public", route("/bye", "s")); err != nil {
		t.Fatal(err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
