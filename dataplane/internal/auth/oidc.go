package auth

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"golang.org/x/oauth2"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/config"
)

// OpenID Connect login for browser routes.
//
// A route with auth.oidc logs browser users in at an issuer with an oidc
// block (authorization-code flow, RFC 6749 §4.1, with PKCE S256, state and
// nonce), and keeps them logged in with a session cookie. The rules:
//
//   - Who gets a redirect: a GET or HEAD whose Accept names text/html (a
//     browser navigating). Anything else without a session (an API call, a
//     fetch() asking for JSON, a POST) gets 401: a redirect to a login page
//     is of no use to a program, and a POST cannot survive the round trip.
//   - The login: state, nonce and the PKCE verifier are random (256 bits),
//     kept in a sealed login cookie (10 minutes, SameSite=Lax so that the
//     provider's redirect back carries it) with the local path to return
//     to; the callback requires the state to match (CSRF: a callback the
//     browser did not start is refused), exchanges the code with the
//     verifier, and verifies the ID token with go-oidc against the
//     discovery document's JWKS (signature, iss, aud = client_id, exp) and
//     the nonce. The login cookie is cleared whatever the outcome.
//   - The redirect URI is the request's scheme (as --trusted-proxies
//     resolves it) and Host + callback_path; the provider's list of
//     registered redirect URIs is the allow-list, so a forged Host gets
//     the provider's refusal, never a code.
//   - The session cookie (__Host-portico-<issuer>: Secure, HttpOnly,
//     SameSite=Lax, Path=/) is sealed with the issuer's session key
//     (session.go): every data plane holds the same key, so a session
//     started on one is valid on all. It carries the ID token's claims,
//     the granted scope, the refresh token and, room permitting, the ID
//     token (for logout's id_token_hint). It lasts until session_lifetime
//     (default 12h) after login however often it is refreshed.
//   - Refresh: from half the access token's lifetime before its expiry
//     (at most a minute before), the refresh token is used, once for the
//     cluster (refresh.go); the provider's refusal (4xx) ends the session
//     (the grant was revoked), its failure (5xx, unreachable) does not: the
//     session serves until the access token expires, then 503. A new ID
//     token must be valid and name the same sub. Without a refresh token
//     the session ends when the access token would have.
//   - Logout (logout_path) clears the cookie, then sends the browser to
//     the provider's end_session_endpoint when the discovery document has
//     one (RP-initiated logout, with id_token_hint and the
//     post_logout_redirect URL), else to post_logout_redirect. Both are
//     this host's paths from configuration, never from the request: no
//     open redirect.
//   - Claims and identity: the ID token's claims are the identity's
//     claims (claims, forward_claims, consumer_claim through jwt_issuers,
//     as for a JWT); X-Auth-Method is oidc. The cookie is removed from the
//     request to the service: it is the gateway's.

// MethodOIDC is the Identity.Method of a browser session.
const MethodOIDC = "oidc"

const (
	oidcTimeout       = 10 * time.Second
	oidcRetryDiscover = 5 * time.Second
	loginFlowLifetime = 10 * time.Minute
	maxRefreshMargin  = time.Minute
)

// oidcClient is an issuer's OIDC login: the discovered provider (fetched on
// first use, again at most every oidcRetryDiscover after a failure), the
// gateway's client, the session sealer.
type oidcClient struct {
	issuer   *Issuer
	url      string // the issuer URL
	clientID string
	secret   string
	sealer   *sealer
	lifetime time.Duration
	client   *http.Client
	log      *slog.Logger
	// refresher spends each refresh token once (refresh.go).
	refresher *refresher

	mu         sync.Mutex
	prov       *oidc.Provider
	endSession string
	failed     time.Time
}

func newOIDCClient(is *Issuer, spec *config.Issuer, base *http.Client, rc redis.UniversalClient, m *SessionMetrics, log *slog.Logger) (*oidcClient, error) {
	key, err := config.ParseSessionKey(spec.OIDC.SessionKey)
	if err != nil {
		return nil, fmt.Errorf("oidc.session_key: %w", err)
	}
	s, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	var c http.Client
	if base != nil {
		c = *base
	}
	c.Timeout = oidcTimeout
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = otelhttp.NewTransport(rt,
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "OIDC " + r.URL.Path }))
	// The token endpoint gets the client secret: never follow a redirect.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	oc := &oidcClient{
		issuer: is, url: spec.Issuer, clientID: spec.OIDC.ClientID, secret: spec.OIDC.ClientSecret,
		sealer: s, lifetime: cmp.Or(spec.OIDC.SessionLifetime.Std(), config.DefaultSessionLifetime),
		client: &c, log: log,
	}
	oc.refresher = newRefresher(oc, rc, m)
	return oc, nil
}

var errProviderDown = errors.New("auth: the OIDC provider's discovery document could not be read")

// ctx carries the gateway's bounded client to go-oidc and oauth2.
func (c *oidcClient) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.client)
}

func (c *oidcClient) provider() (*oidc.Provider, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prov != nil {
		return c.prov, c.endSession, nil
	}
	now := c.issuer.now()
	if !c.failed.IsZero() && now.Sub(c.failed) < oidcRetryDiscover {
		return nil, "", errProviderDown
	}
	// Not the request's context: go-oidc keeps this one for the JWKS
	// fetches of the provider's life; each call is bounded by the client.
	p, err := oidc.NewProvider(c.ctx(context.Background()), c.url)
	if err != nil {
		c.failed = now
		c.log.Warn("OIDC discovery failed", "issuer", c.issuer.name, "error", redactURLError(err))
		return nil, "", errProviderDown
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = p.Claims(&extra)
	c.prov, c.endSession = p, extra.EndSession
	return p, c.endSession, nil
}

func (c *oidcClient) config(p *oidc.Provider, redirect string, scopes []string) *oauth2.Config {
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader // client_secret_basic
	return &oauth2.Config{ClientID: c.clientID, ClientSecret: c.secret, Endpoint: ep, RedirectURL: redirect, Scopes: scopes}
}

func (c *oidcClient) verifier(p *oidc.Provider) *oidc.IDTokenVerifier {
	cfg := &oidc.Config{ClientID: c.clientID, Now: c.issuer.now}
	if len(c.issuer.algs) > 0 {
		cfg.SupportedSigningAlgs = c.issuer.algs
	}
	return p.Verifier(cfg)
}

// oidcSession is what the session cookie carries.
type oidcSession struct {
	Claims  map[string]any `json:"c"`
	Scope   string         `json:"s,omitempty"`
	IDToken string         `json:"i,omitempty"`
	Refresh string         `json:"r,omitempty"`
	// Issued is when the tokens were last obtained, Expiry when the access
	// token expires (refresh before), Until when the session ends.
	Issued int64  `json:"t"`
	Expiry int64  `json:"e"`
	Until  int64  `json:"u"`
	Client string `json:"a"`
}

// oidcFlow is what the login cookie carries between the redirect to the
// provider and the callback.
type oidcFlow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Return   string `json:"r"`
	Until    int64  `json:"u"`
}

// routeOIDC is a route's compiled auth.oidc.
type routeOIDC struct {
	c                       *oidcClient // nil: the issuer is missing or was rejected (503)
	issuerName              string
	scopes                  []string
	callback, logout, after string
	sessionCookie           string
	flowCookie              string
}

func compileOIDC(a *config.RouteOIDC, v *Verifier) *routeOIDC {
	o := &routeOIDC{
		issuerName: a.Issuer,
		scopes:     a.Scopes, callback: a.CallbackPath, logout: a.LogoutPath, after: cmp.Or(a.PostLogoutRedirect, "/"),
		sessionCookie: "__Host-portico-" + a.Issuer,
		flowCookie:    "__Host-portico-" + a.Issuer + "-login",
	}
	if len(o.scopes) == 0 {
		o.scopes = []string{oidc.ScopeOpenID}
	}
	if is := v.oidcIssuers[a.Issuer]; is != nil {
		o.c = is.oidc
	}
	return o
}

// describe renders the route's login, for golden files; nil without.
func (o *routeOIDC) describe() any {
	if o == nil {
		return nil
	}
	return map[string]any{"issuer": o.issuerName, "scopes": o.scopes, "callback_path": o.callback,
		"logout_path": o.logout, "post_logout_redirect": o.after, "cookie": o.sessionCookie, "provider_ready": o.c != nil}
}

// oidcIssuers indexes the issuers with an oidc block by name.
func oidcIssuers(issuers map[string]*Issuer) map[string]*Issuer {
	out := map[string]*Issuer{}
	for name, is := range issuers {
		if is != nil && is.oidc != nil {
			out[name] = is
		}
	}
	return out
}

// wantsHTML reports a browser navigating: only those are sent to log in.
func wantsHTML(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.Header.Get("Accept"), "text/html")
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (o *routeOIDC) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if maxAge > 0 {
		c.MaxAge = int(maxAge.Seconds())
	} else {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// absolute makes a URL of this request's scheme and host for a local path.
func absolute(req *stage.Request, path string) string {
	scheme := "http"
	if req.Env != nil && req.Env.ClientIP != nil {
		scheme = req.Env.ClientIP.Scheme(req.R)
	} else if req.R.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + req.R.Host + path
}

// problem answers a refusal that no credential can fix by retrying alone.
func oidcProblem(req *stage.Request, status int, slug, detail string) {
	req.W.Header().Set("Cache-Control", "no-store")
	stage.WriteProblem(req.W, req.R, status, slug, detail)
}

// ownPath answers the callback and logout paths; false for any other path.
func (o *routeOIDC) ownPath(req *stage.Request) bool {
	switch req.Path {
	case o.callback:
		o.serveCallback(req)
		return true
	case o.logout:
		if o.logout == "" {
			return false
		}
		o.serveLogout(req)
		return true
	}
	return false
}

// startLogin redirects a browser to the provider.
func (o *routeOIDC) startLogin(req *stage.Request) {
	if o.c == nil {
		oidcProblem(req, http.StatusServiceUnavailable, "auth-unavailable", "the login provider is not configured")
		return
	}
	p, _, err := o.c.provider()
	if err != nil {
		oidcProblem(req, http.StatusServiceUnavailable, "auth-unavailable", "the login provider cannot be reached")
		return
	}
	ret := req.Path
	if q := req.R.URL.RawQuery; q != "" {
		ret += "?" + q
	}
	if !strings.HasPrefix(ret, "/") || strings.HasPrefix(ret, "//") || strings.HasPrefix(ret, "/\\") {
		ret = "/"
	}
	flow := oidcFlow{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Return: ret,
		Until: o.c.issuer.now().Add(loginFlowLifetime).Unix()}
	val, err := o.c.sealer.seal(o.flowCookie, flow)
	if errors.Is(err, errCookieTooLarge) {
		flow.Return = "/" // a very long URL: start over at the root
		val, err = o.c.sealer.seal(o.flowCookie, flow)
	}
	if err != nil {
		oidcProblem(req, http.StatusInternalServerError, "login-failed", "the login could not be started")
		return
	}
	o.setCookie(req.W, o.flowCookie, val, loginFlowLifetime)
	u := o.c.config(p, absolute(req, o.callback), o.scopes).AuthCodeURL(flow.State, oidc.Nonce(flow.Nonce), oauth2.S256ChallengeOption(flow.Verifier))
	req.W.Header().Set("Cache-Control", "no-store")
	http.Redirect(req.W, req.R, u, http.StatusFound)
}

func (o *routeOIDC) serveCallback(req *stage.Request) {
	w, r := req.W, req.R
	if o.c == nil {
		oidcProblem(req, http.StatusServiceUnavailable, "auth-unavailable", "the login provider is not configured")
		return
	}
	var flow oidcFlow
	ck, err := r.Cookie(o.flowCookie)
	if err == nil {
		err = o.c.sealer.open(o.flowCookie, ck.Value, &flow)
	}
	o.setCookie(w, o.flowCookie, "", 0) // one use, whatever happens
	now := o.c.issuer.now()
	q := r.URL.Query()
	switch {
	case err != nil || now.Unix() >= flow.Until:
		oidcProblem(req, http.StatusBadRequest, "login-failed", "no login in progress in this browser (or it took more than 10 minutes); start again")
		return
	case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(flow.State)) != 1:
		oidcProblem(req, http.StatusBadRequest, "login-failed", "the login's state does not match: not started by this browser")
		return
	case q.Get("error") != "":
		// The provider's words are not echoed: they are attacker-shaped
		// input on this URL.
		oidcProblem(req, http.StatusUnauthorized, "login-refused", "the identity provider refused the login")
		return
	case q.Get("code") == "":
		oidcProblem(req, http.StatusBadRequest, "login-failed", "the callback carries no code")
		return
	}
	p, _, err := o.c.provider()
	if err != nil {
		oidcProblem(req, http.StatusServiceUnavailable, "auth-unavailable", "the login provider cannot be reached")
		return
	}
	ctx, cancel := context.WithTimeout(o.c.ctx(r.Context()), oidcTimeout)
	defer cancel()
	tok, err := o.c.config(p, absolute(req, o.callback), o.scopes).Exchange(ctx, q.Get("code"), oauth2.VerifierOption(flow.Verifier))
	if err != nil {
		o.c.log.Warn("OIDC code exchange failed", "issuer", o.issuerName, "error", exchangeError(err))
		oidcProblem(req, http.StatusBadGateway, "login-failed", "the identity provider did not exchange the code")
		return
	}
	sess, err := o.c.newSession(ctx, p, tok, flow.Nonce, "", now)
	if err != nil {
		o.c.log.Warn("OIDC ID token refused", "issuer", o.issuerName, "error", err)
		oidcProblem(req, http.StatusUnauthorized, "login-failed", "the identity provider's ID token is not valid")
		return
	}
	sess.Until = now.Add(o.c.lifetime).Unix()
	if !o.writeSession(w, sess) {
		oidcProblem(req, http.StatusInternalServerError, "login-failed", "the identity is too large for a session cookie")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, flow.Return, http.StatusFound)
}

// newSession checks a token answer's ID token (nonce: the login's; sub:
// the session's, on refresh) and makes the session of it.
func (c *oidcClient) newSession(ctx context.Context, p *oidc.Provider, tok *oauth2.Token, nonce, sub string, now time.Time) (*oidcSession, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, errors.New("no id_token in the token answer")
	}
	idt, err := c.verifier(p).Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	if nonce != "" && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, errors.New("nonce mismatch")
	}
	if sub != "" && idt.Subject != sub {
		return nil, errors.New("refreshed ID token names another subject")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, err
	}
	exp := tok.Expiry
	if exp.IsZero() {
		exp = idt.Expiry
	}
	scope, _ := tok.Extra("scope").(string)
	return &oidcSession{Claims: claims, Scope: scope, IDToken: raw, Refresh: tok.RefreshToken,
		Issued: now.Unix(), Expiry: exp.Unix(), Client: c.clientID}, nil
}

// writeSession seals the session into its cookie, dropping the ID token
// (logout's hint) when the whole would not fit; false when even that does
// not.
func (o *routeOIDC) writeSession(w http.ResponseWriter, s *oidcSession) bool {
	val, err := sealSession(o.c.sealer, o.sessionCookie, s)
	if err != nil {
		return false
	}
	left := time.Until(time.Unix(s.Until, 0))
	o.setCookie(w, o.sessionCookie, val, max(left, time.Second))
	return true
}

// sealSession seals s for name, without the ID token when the whole would
// not fit (s is not changed: a refreshed session is shared by requests).
func sealSession(sl *sealer, name string, s *oidcSession) (string, error) {
	val, err := sl.seal(name, s)
	if errors.Is(err, errCookieTooLarge) && s.IDToken != "" {
		c := *s
		c.IDToken = ""
		val, err = sl.seal(name, &c)
	}
	return val, err
}

// errNoSession: no usable session (none, expired, tampered, revoked).
var errNoSession = errors.New("auth: no valid session")

// session returns the request's session, refreshed (and its cookie
// rewritten) when due.
func (o *routeOIDC) session(req *stage.Request) (*oidcSession, error) {
	if o.c == nil {
		return nil, errProviderDown
	}
	ck, err := req.R.Cookie(o.sessionCookie)
	if err != nil {
		return nil, errNoSession
	}
	var s oidcSession
	if err := o.c.sealer.open(o.sessionCookie, ck.Value, &s); err != nil || s.Client != o.c.clientID {
		return nil, errNoSession
	}
	now := o.c.issuer.now()
	if now.Unix() >= s.Until {
		return nil, errNoSession
	}
	sess, refreshed := &s, false
refresh:
	for range maxRefreshHops {
		exp := time.Unix(sess.Expiry, 0)
		margin := min(maxRefreshMargin, exp.Sub(time.Unix(sess.Issued, 0))/2)
		switch {
		case now.Before(exp.Add(-margin)):
			break refresh
		case sess.Refresh == "" && now.Before(exp):
			break refresh
		case sess.Refresh == "":
			return nil, errNoSession
		}
		// Spent once for the cluster (refresh.go); a result taken from
		// another request may itself be due (short-lived tokens): then
		// its refresh token is next.
		ns, err := o.c.refresher.refresh(req.R.Context(), sess, now)
		switch {
		case err == nil:
			sess, refreshed = ns, true
			continue
		case refusedRefresh(err):
			// The provider said no, now or before: the grant is revoked
			// or expired. Said once per refusal, not per request that
			// still carries the dead cookie.
			if !errors.Is(err, errRefusedBefore) {
				o.c.log.Info("OIDC session ended: refresh refused", "issuer", o.issuerName, "error", exchangeError(err))
			}
			return nil, errNoSession
		case now.Before(exp):
			break refresh // a passing failure, within the access token's life
		default:
			// The provider failed (unreachable, 5xx) or another request's
			// refresh did not finish in time: the session is not over,
			// this request cannot be answered now (503).
			o.c.log.Warn("OIDC refresh failed", "issuer", o.issuerName, "error", exchangeError(err))
			return nil, errProviderDown
		}
	}
	if refreshed {
		o.writeSession(req.W, sess)
	}
	return sess, nil
}

// maxRefreshHops bounds the refreshes of one request: a result shared by
// another request that is itself due is refreshed in turn, at most twice.
const maxRefreshHops = 3

// refusedRefresh reports the provider's refusal of a refresh (a 4xx answer,
// or a new ID token that does not verify, now or remembered from before),
// as opposed to its failure.
func refusedRefresh(err error) bool {
	if errors.Is(err, errRefusedBefore) {
		return true
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return false
	}
	return re.Response == nil || re.Response.StatusCode < 500
}

func (c *oidcClient) refreshSession(ctx context.Context, s *oidcSession, now time.Time) (*oidcSession, error) {
	p, _, err := c.provider()
	if err != nil {
		return nil, err
	}
	// ctx is the refresher's, already detached from any one request.
	ctx, cancel := context.WithTimeout(c.ctx(ctx), oidcTimeout)
	defer cancel()
	tok, err := c.config(p, "", nil).TokenSource(ctx, &oauth2.Token{RefreshToken: s.Refresh, Expiry: now.Add(-time.Second)}).Token()
	if err != nil {
		return nil, err
	}
	sub, _ := s.Claims["sub"].(string)
	ns := *s
	if _, ok := tok.Extra("id_token").(string); ok {
		fresh, err := c.newSession(ctx, p, tok, "", sub, now)
		if err != nil {
			return nil, &oauth2.RetrieveError{ErrorCode: "invalid_id_token", ErrorDescription: err.Error()}
		}
		ns.Claims, ns.IDToken = fresh.Claims, fresh.IDToken
		ns.Expiry = fresh.Expiry
	} else {
		ns.Expiry = tok.Expiry.Unix()
	}
	if scope, _ := tok.Extra("scope").(string); scope != "" {
		ns.Scope = scope
	}
	if tok.RefreshToken != "" {
		ns.Refresh = tok.RefreshToken
	}
	ns.Issued = now.Unix()
	return &ns, nil
}

func (o *routeOIDC) serveLogout(req *stage.Request) {
	w := req.W
	var hint string
	if o.c != nil {
		if ck, err := req.R.Cookie(o.sessionCookie); err == nil {
			var s oidcSession
			if o.c.sealer.open(o.sessionCookie, ck.Value, &s) == nil {
				hint = s.IDToken
			}
		}
	}
	o.setCookie(w, o.sessionCookie, "", 0)
	w.Header().Set("Cache-Control", "no-store")
	target := o.after
	if o.c != nil {
		if _, end, err := o.c.provider(); err == nil && end != "" {
			if u, err := url.Parse(end); err == nil {
				q := u.Query()
				q.Set("client_id", o.c.clientID)
				q.Set("post_logout_redirect_uri", absolute(req, o.after))
				q.Set("state", randomToken())
				if hint != "" {
					q.Set("id_token_hint", hint)
				}
				u.RawQuery = q.Encode()
				target = u.String()
			}
		}
	}
	http.Redirect(w, req.R, target, http.StatusFound)
}

// identity makes a session's identity, with the consumer mapping of a JWT
// of the same issuer.
func (o *routeOIDC) identity(v *Verifier, s *oidcSession) *Identity {
	id := v.identity(o.c.issuer, s.Claims, MethodOIDC)
	if s.Scope != "" {
		id.Scopes = strings.Fields(s.Scope)
	}
	return id
}

// stripCookies removes the gateway's own cookies from a request to the
// service: the session is the gateway's, not the service's.
func (o *routeOIDC) stripCookies(h http.Header) {
	lines := h.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	var kept []string
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if name == o.sessionCookie || name == o.flowCookie || strings.TrimSpace(part) == "" {
				continue
			}
			kept = append(kept, strings.TrimSpace(part))
		}
	}
	h.Del("Cookie")
	if len(kept) > 0 {
		h.Set("Cookie", strings.Join(kept, "; "))
	}
}

// exchangeError keeps an oauth2 failure's code without the provider's body.
func exchangeError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return "provider answered " + cmp.Or(re.ErrorCode, fmt.Sprint(re.Response.StatusCode))
	}
	return redactURLError(err).Error()
}

// serveOIDC is the route's OIDC part of Serve, for a request that brought
// no other credential: the session's identity, or nil when it answered
// (a redirect to log in, or a refusal).
func (ra *Route) serveOIDC(req *stage.Request) (*Identity, *routeError) {
	o := ra.oidc
	s, err := o.session(req)
	switch {
	case errors.Is(err, errProviderDown):
		return nil, &routeError{http.StatusServiceUnavailable, "oidc_unavailable", "the login provider cannot be reached"}
	case err != nil && wantsHTML(req.R):
		if _, cerr := req.R.Cookie(o.sessionCookie); cerr == nil {
			o.setCookie(req.W, o.sessionCookie, "", 0) // a dead session: clear it
		}
		o.startLogin(req)
		return nil, nil
	case err != nil:
		return nil, &routeError{http.StatusUnauthorized, "session", "a login session is required"}
	}
	id := o.identity(ra.verifier, s)
	if aerr := ra.authorize(id); aerr != nil {
		return nil, aerr
	}
	return id, nil
}
