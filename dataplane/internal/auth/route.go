package auth

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/shared/bearer"
	"github.com/portico-gw/portico/shared/config"
)

// Route is a route's compiled auth requirements, its auth stage: which
// credentials it takes (API key, JWT from which issuers), which consumers,
// groups, scopes and claims it requires, and which claims it forwards to
// the service in which headers.
//
// Serve verifies the request's credentials (401, with a challenge, when
// there are none or they are not valid; 403 when the caller may not use
// the route) and records the identity on the request; WriteIdentity puts
// it into every request to the service (the reverse proxy, aggregation, a
// gRPC call), after removing what a client sent under those names.
type Route struct {
	verifier     *Verifier
	jwt, apiKey  bool
	basic        bool
	clientCert   *clientCertCheck // nil: the route takes no client certificate
	introspect   bool             // opaque bearer tokens (introspect.go)
	oidc         *routeOIDC       // browser login (oidc.go); nil without
	apiKeyHeader string
	issuers      []string
	consumers    map[string]bool
	groups       []string
	scopes       []string
	claims       map[string]string
	// forward maps claim names to canonical header names.
	forward map[string]string
	// challenge is the WWW-Authenticate value of a 401.
	challenge string
}

// CompileRoute compiles a route's auth section (nil when it has none) to
// verify with v, the table's verifier.
func CompileRoute(a *config.RouteAuth, v *Verifier) stage.Stage {
	if a == nil {
		return nil
	}
	ra := &Route{
		verifier: v,
		jwt:      a.JWT, apiKey: a.APIKey, basic: a.Basic, introspect: a.Introspection,
		apiKeyHeader: http.CanonicalHeaderKey(cmp.Or(a.APIKeyHeader, "X-API-Key")),
		issuers:      a.Issuers, groups: a.Groups, scopes: a.Scopes, claims: a.Claims,
		forward: map[string]string{},
	}
	if len(a.Consumers) > 0 {
		ra.consumers = map[string]bool{}
		for _, c := range a.Consumers {
			ra.consumers[c] = true
		}
	}
	if a.OIDC != nil {
		ra.oidc = compileOIDC(a.OIDC, v)
	}
	for claim, h := range a.ForwardClaims {
		ra.forward[claim] = http.CanonicalHeaderKey(h)
	}
	if a.ClientCert != nil {
		ra.clientCert = compileClientCA(a.ClientCert)
	}
	var ch []string
	if ra.jwt || ra.introspect {
		ch = append(ch, bearer.Challenge)
	}
	if ra.apiKey {
		ch = append(ch, `APIKey realm="portico", header="`+ra.apiKeyHeader+`"`)
	}
	if ra.basic {
		ch = append(ch, `Basic realm="portico", charset="UTF-8"`)
	}
	if len(ch) == 0 && ra.oidc != nil {
		ch = append(ch, `OIDC realm="portico"`) // a session cookie: no header credential
	}
	ra.challenge = strings.Join(ch, ", ")
	return ra
}

// ForwardHeaders are the header names the route forwards claims in: no
// client may send them on any route (the proxy strips them).
func (ra *Route) ForwardHeaders() []string { return slices.Collect(maps.Values(ra.forward)) }

// APIKeyHeader is the header the route reads API keys from, "" when it
// takes none.
func (ra *Route) APIKeyHeader() string {
	if !ra.apiKey {
		return ""
	}
	return ra.apiKeyHeader
}

// Serve authenticates and authorizes the request.
func (ra *Route) Serve(req *stage.Request) {
	w, r := req.W, req.R
	if ra.apiKey && len(r.Header[ra.apiKeyHeader]) > 1 {
		stage.WriteProblem(w, r, http.StatusBadRequest, "ambiguous-credentials", "the request carries more than one "+ra.apiKeyHeader+" header")
		return
	}
	if ra.basic && len(r.Header["Authorization"]) > 1 {
		stage.WriteProblem(w, r, http.StatusBadRequest, "ambiguous-credentials", "the request carries more than one Authorization header")
		return
	}
	if ra.oidc != nil && ra.oidc.ownPath(req) {
		return // the login callback, or logout
	}
	id, aerr := ra.authenticate(r)
	if ra.oidc != nil && aerr != nil && aerr.reason == "missing" {
		// No header credential: the browser session (oidc.go).
		if id, aerr = ra.serveOIDC(req); id == nil && aerr == nil {
			return // sent to log in
		}
	}
	if aerr != nil {
		slug := "forbidden"
		if aerr.status == http.StatusServiceUnavailable {
			slug = "auth-unavailable" // the identity provider (introspection, OIDC)
			if aerr.reason == "busy" {
				w.Header().Set("Retry-After", "1")
				slug = "auth-busy"
			}
		}
		if aerr.status == http.StatusUnauthorized {
			if ra.challenge != "" { // a certificate-only route has no scheme to name
				w.Header().Set("WWW-Authenticate", ra.challenge)
			}
			slug = "unauthorized"
		}
		req.Outcome.AuthFailure = aerr.reason
		stage.WriteProblem(w, r, aerr.status, slug, aerr.detail)
		return
	}
	req.Authenticated(id, ra)
	req.Next()
}

// routeError is a refused request: 401 (who are you?) or 403 (not you).
type routeError struct {
	status int
	reason string
	detail string
}

// authenticate verifies the request's credentials and checks the route's
// requirements. It never reveals why a credential was bad beyond a reason
// label: details help attackers more than clients.
func (ra *Route) authenticate(r *http.Request) (*Identity, *routeError) {
	var (
		id        *Identity
		err       error
		presented bool
	)
	if ra.apiKey {
		if key := r.Header.Get(ra.apiKeyHeader); key != "" {
			presented = true
			id, err = ra.verifier.VerifyAPIKey(key)
		}
	}
	if id == nil && (ra.jwt || ra.introspect) {
		if tok, ok := bearer.Token(r.Header.Get("Authorization")); ok {
			presented = true
			id, err = ra.verifyBearer(r.Context(), tok)
		}
	}
	if id == nil && ra.basic {
		if user, pass, basic, ok := basicCredentials(r.Header.Get("Authorization")); basic {
			presented = true
			id, err = nil, ErrMalformed
			if ok {
				id, err = ra.verifier.VerifyBasic(r.Context(), user, pass)
			}
		}
	}
	if id == nil && ra.clientCert != nil {
		if cid, ok, cerr := ra.verifier.verifyClientCert(r, ra.clientCert, time.Now()); ok {
			presented, id, err = true, cid, cerr
		}
	}
	switch {
	case errors.Is(err, ErrBusy) && id == nil:
		return nil, &routeError{http.StatusServiceUnavailable, Reason(err), "too many password checks in progress; try again"}
	case !presented:
		return nil, &routeError{http.StatusUnauthorized, "missing", "credentials are required"}
	case id == nil && errors.Is(err, ErrIntrospection):
		return nil, &routeError{http.StatusServiceUnavailable, Reason(err), "the identity provider could not be asked about the token"}
	case id == nil:
		return nil, &routeError{http.StatusUnauthorized, Reason(err), "the credentials are not valid"}
	}
	if aerr := ra.authorize(id); aerr != nil {
		return nil, aerr
	}
	return id, nil
}

// authorize checks an authenticated identity against the route's
// consumers, groups, scopes and claims (403).
func (ra *Route) authorize(id *Identity) *routeError {
	if ra.consumers != nil && !ra.consumers[id.Consumer] {
		return &routeError{http.StatusForbidden, "consumer", "this consumer may not use this route"}
	}
	if len(ra.groups) > 0 && !slices.ContainsFunc(ra.groups, func(g string) bool { return slices.Contains(id.Groups, g) }) {
		return &routeError{http.StatusForbidden, "group", "the consumer is in none of the required groups"}
	}
	for _, s := range ra.scopes {
		if !slices.Contains(id.Scopes, s) {
			return &routeError{http.StatusForbidden, "scope", "the token lacks a required scope"}
		}
	}
	for name, want := range ra.claims {
		if got, ok := id.Claims[name]; !ok || fmt.Sprint(got) != want {
			return &routeError{http.StatusForbidden, "claim", "the token lacks a required claim"}
		}
	}
	return nil
}

// WriteIdentity writes the verified identity into h, the header of a
// request to the service, after removing client-sent copies of the
// forwarded claims and the gateway credential (which is for the gateway).
func (ra *Route) WriteIdentity(req *stage.Request, h http.Header) {
	for _, name := range ra.forward {
		h.Del(name)
	}
	if ra.apiKey {
		h.Del(ra.apiKeyHeader)
	}
	if ra.basic && basicScheme(h.Get("Authorization")) {
		// The password is for the gateway; a bearer token passes on.
		h.Del("Authorization")
	}
	if ra.oidc != nil {
		ra.oidc.stripCookies(h)
	}
	id := req.Identity
	if id == nil {
		return
	}
	if id.Consumer != "" {
		h.Set(stage.HeaderConsumer, id.Consumer)
	}
	if len(id.Groups) > 0 {
		h.Set(stage.HeaderConsumerGroups, strings.Join(id.Groups, ","))
	}
	h.Set(stage.HeaderAuthMethod, id.Method)
	for claim, name := range ra.forward {
		if v, ok := id.Claims[claim]; ok {
			h.Set(name, fmt.Sprint(v))
		}
	}
}

// Describe renders the requirements, for golden files.
func (ra *Route) Describe() any {
	consumers := slices.Sorted(maps.Keys(ra.consumers))
	return struct {
		JWT          bool              `json:"jwt,omitempty"`
		Introspect   bool              `json:"introspection,omitempty"`
		APIKey       bool              `json:"api_key,omitempty"`
		Basic        bool              `json:"basic,omitempty"`
		ClientCert   bool              `json:"client_cert,omitempty"`
		APIKeyHeader string            `json:"api_key_header,omitempty"`
		Issuers      []string          `json:"issuers,omitempty"`
		Consumers    []string          `json:"consumers,omitempty"`
		Groups       []string          `json:"groups,omitempty"`
		Scopes       []string          `json:"scopes,omitempty"`
		Claims       map[string]string `json:"claims,omitempty"`
		Forward      map[string]string `json:"forward_claims,omitempty"`
		Challenge    string            `json:"challenge"`
		OIDC         any               `json:"oidc,omitempty"`
	}{ra.jwt, ra.introspect, ra.apiKey, ra.basic, ra.clientCert != nil, ra.APIKeyHeader(), ra.issuers, consumers, ra.groups, ra.scopes, ra.claims, ra.forward, ra.challenge, ra.oidc.describe()}
}
