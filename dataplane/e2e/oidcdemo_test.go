package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/testutil"
)

// TestOIDCDemo runs `OIDC=1 make run`'s identity provider the way
// scripts/run.sh does (the demo-oidc binary with the same flags, against a
// control plane, a data plane and the demo upstream with make run's demo
// service and route) and walks the tour as a browser: /app/hello sends it
// to the sign-in form, a wrong password is refused, the demo user's
// password (from the file the tour names) logs in, the demo upstream sees
// who it is, logout lands on the public page, and an API call without a
// session gets 401. The tour's introspection step: the machine client's
// opaque token opens /machine/*, no token or a made-up one does not.
func TestOIDCDemo(t *testing.T) {
	ctx := context.Background()
	hydraBin, err := testutil.HydraBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cp := startControlPlane(t, "cp", "bolt:"+filepath.Join(dir, "cp.db"))
	dp := startDataPlane(t, "dp-1", cp.url, filepath.Join(dir, "dp-1"))
	up := startUpstream(t, "demo")
	// make run's demo service and public route.
	if _, _, err := cp.admin.Services().Put(ctx, "demo", svc(up)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.admin.Routes().Put(ctx, "demo", config.Route{Paths: []string{"/demo/*"}, Methods: []string{"GET", "POST"}, Service: "demo", StripPrefix: true}); err != nil {
		t.Fatal(err)
	}

	free := func() string { return fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)) }
	appAddr, publicAddr, oidcDir := free(), free(), filepath.Join(dir, "oidc")
	// scripts/run.sh's OIDC=1 command line, in its environment (OIDC=1,
	// which Hydra would read as its "oidc" setting if it saw it); the
	// token: this control plane is not in dev mode.
	startEnv(t, []string{"OIDC=1", "PORTICO_TOKEN=" + adminToken}, "demo-oidc", "demo-oidc",
		"--hydra", hydraBin, "--controlplane", cp.url, "--gateway", dp.url,
		"--public", publicAddr, "--admin", free(), "--listen", appAddr, "--dir", oidcDir)
	testutil.Eventually(t, 120*time.Second, func() bool {
		code, _ := get("http://" + appAddr + "/healthz")
		return code == 200
	}, "demo-oidc set up (Hydra started, client registered, route app configured)")
	pwFile := filepath.Join(oidcDir, "oidc-alice.password")
	st, err := os.Stat(pwFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", st, err)
	}
	pw, _ := os.ReadFile(pwFile)
	password := strings.TrimSpace(string(pw))

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	fetch := func(method, u string, form url.Values) (*http.Response, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, u, body)
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	challengeRE := regexp.MustCompile(`name="login_challenge" value="([^"]+)"`)
	challenge := func(page string) string {
		t.Helper()
		m := challengeRE.FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no login form: %.300s", page)
		}
		return html.UnescapeString(m[1])
	}

	// Open the app: the gateway sends the browser through Hydra to the
	// sign-in form.
	resp, page := fetch("GET", dp.url+"/app/hello", nil)
	if resp.StatusCode != 200 || resp.Request.URL.Host != appAddr || resp.Request.URL.Path != "/login" || !strings.Contains(page, `type="password"`) {
		t.Fatalf("opening /app/hello: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	// A wrong password: the form again, 401.
	resp, page = fetch("POST", "http://"+appAddr+"/login", url.Values{"login_challenge": {challenge(page)}, "username": {"alice"}, "password": {"not-" + password}, "action": {"login"}})
	if resp.StatusCode != 401 || !strings.Contains(page, "Wrong user or password") {
		t.Fatalf("wrong password: %d %.200s", resp.StatusCode, page)
	}
	// The right one: back at the app, signed in.
	resp, page = fetch("POST", "http://"+appAddr+"/login", url.Values{"login_challenge": {challenge(page)}, "username": {"alice"}, "password": {password}, "action": {"login"}})
	var echo struct {
		Service  string            `json:"service"`
		Path     string            `json:"path"`
		Identity map[string]string `json:"identity"`
	}
	if resp.StatusCode != 200 || resp.Request.URL.String() != dp.url+"/app/hello" || json.Unmarshal([]byte(page), &echo) != nil {
		t.Fatalf("after signing in: %d at %s: %.300s", resp.StatusCode, resp.Request.URL, page)
	}
	if echo.Service != "demo" || echo.Path != "/hello" || echo.Identity["X-User-Id"] != "alice" ||
		echo.Identity["X-User-Email"] != "alice@example.com" || echo.Identity["X-Auth-Method"] != "oidc" {
		t.Fatalf("the demo upstream saw %+v", echo)
	}
	// The issuer's client secret and session key are not shown.
	if is, err := cp.admin.Issuers().Get(ctx, "hydra-demo"); err != nil || is.OIDC == nil || is.OIDC.ClientSecret != "" || is.OIDC.SessionKey != "" {
		t.Fatalf("GET issuer: %+v %v", is, err)
	}

	// The introspection step: a service's opaque access token
	// (client_credentials at Hydra, with the secret from the file the tour
	// names) opens /machine/*, checked at Hydra's RFC 7662 endpoint.
	secretFile := filepath.Join(oidcDir, "demo-service.secret")
	if st, err := os.Stat(secretFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("machine client secret file: %v %v", st, err)
	}
	sb, _ := os.ReadFile(secretFile)
	tokReq, _ := http.NewRequest("POST", "http://"+publicAddr+"/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}.Encode()))
	tokReq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	tokReq.SetBasicAuth("demo-service", strings.TrimSpace(string(sb)))
	tokResp, err := http.DefaultClient.Do(tokReq)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(tokResp.Body).Decode(&tok)
	tokResp.Body.Close()
	if err != nil || tokResp.StatusCode != 200 || tok.AccessToken == "" || strings.Count(tok.AccessToken, ".") == 2 {
		t.Fatalf("client_credentials token: %d %v (want an opaque token)", tokResp.StatusCode, err)
	}
	machine := func(token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", dp.url+"/machine/hello", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, page := machine(tok.AccessToken)
	echo.Identity = nil
	if code != 200 || json.Unmarshal([]byte(page), &echo) != nil || echo.Path != "/hello" ||
		echo.Identity["X-Consumer-Name"] != "demo-service" || echo.Identity["X-Auth-Method"] != "introspection" {
		t.Fatalf("/machine/hello with the service's token: %d %.300s", code, page)
	}
	if code, _ := machine(""); code != 401 {
		t.Fatalf("/machine/hello without a token: %d, want 401", code)
	}
	if code, _ := machine("ory_at_madeup" + strings.Repeat("x", 40)); code != 401 {
		t.Fatalf("/machine/hello with a made-up token: %d, want 401", code)
	}

	// Logout: through Hydra back to the public page.
	resp, _ = fetch("GET", dp.url+"/app/logout", nil)
	if at := resp.Request.URL; resp.StatusCode != 200 || at.Host != mustURL(t, dp.url).Host || at.Path != "/demo/logged-out" {
		t.Fatalf("after logout: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	req, _ := http.NewRequest("GET", dp.url+"/app/hello", nil)
	req.Header.Set("Accept", "application/json")
	resp, err = browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("API call after logout: %d, want 401", resp.StatusCode)
	}
}
