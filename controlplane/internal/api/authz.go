package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portico-gw/portico/shared/admintoken"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/bearer"
	"github.com/portico-gw/portico/shared/config"
)

// access is what an admin endpoint asks of a token: a role, and the kind of
// object it reads or writes ("" when it is about no one kind), or the whole
// configuration at once (refused to a token limited to some kinds).
type access struct {
	role  admintoken.Role
	kind  config.Kind
	whole bool
}

func (a access) String() string {
	switch {
	case a.whole:
		return fmt.Sprintf("role %s over every kind", a.role)
	case a.kind != "":
		return fmt.Sprintf("role %s on %s objects", a.role, a.kind)
	}
	return "role " + string(a.role)
}

// identity is who an admin request comes from.
type identity struct {
	// principal names it in the audit log: "admin" (the bootstrap token),
	// "token:<name>", or "dev".
	principal string
	role      admintoken.Role
	kinds     []config.Kind
	token     *apiv1.Token // a scoped token; nil for the others
}

const identityKey = "portico.identity"

// adminPrefix is the admin group's path prefix.
const adminPrefix = "/v1"

// handle registers an admin endpoint with what it asks of a token. Every
// admin endpoint is registered through it: New checks that the router holds
// no admin route without a rule (checkRules), and the per-endpoint test
// checks each rule against every role.
func (s *server) handle(g *echo.Group, method, path string, a access, h echo.HandlerFunc) {
	g.Add(method, path, h)
	s.rules[method+" "+adminPrefix+path] = a
}

// checkRules panics when the router holds an admin route without a rule: an
// endpoint nobody decided the access of must not start serving.
func (s *server) checkRules(e *echo.Echo, unguarded ...string) {
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound || !strings.HasPrefix(r.Path, adminPrefix+"/") && r.Path != adminPrefix {
			continue
		}
		key := r.Method + " " + r.Path
		if _, ok := s.rules[key]; !ok && !slices.Contains(unguarded, key) {
			panic("api: admin endpoint " + key + " has no access rule (register it with server.handle)")
		}
	}
}

// authorize is the admin API's middleware: it authenticates the bearer
// token (401 when there is none, or it is unknown or expired) and checks
// the endpoint's rule against it (403 when the token lacks the role or the
// kind). The bootstrap --admin-token is an admin; in dev mode a request
// without a token is one too (and with an unknown token, unless an admin
// token is set as well), while a scoped token keeps its own role.
func (s *server) authorize(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, reason := s.authenticate(c)
		if id == nil {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, bearer.Challenge)
			return writeProblem(c, http.StatusUnauthorized, "unauthorized", reason)
		}
		c.Set(identityKey, id)
		// No rule: a path or method the router does not serve, which the
		// router's 404 or 405 then says to an authenticated caller.
		a, ok := s.rules[c.Request().Method+" "+c.Path()]
		if !ok {
			return next(c)
		}
		if why := id.refuses(a); why != "" {
			return writeProblem(c, http.StatusForbidden, "forbidden", why)
		}
		return next(c)
	}
}

// refuses says why id may not use an endpoint that asks for a ("" if it may).
func (id *identity) refuses(a access) string {
	switch {
	case !id.role.Allows(a.role):
		return fmt.Sprintf("%s has role %s; this endpoint needs %s", id.principal, id.role, a)
	case a.whole && len(id.kinds) > 0:
		return fmt.Sprintf("%s is limited to kinds %v; this endpoint needs %s", id.principal, id.kinds, a)
	case a.kind != "" && !admintoken.MayTouch(id.kinds, a.kind):
		return fmt.Sprintf("%s is limited to kinds %v; this endpoint needs %s", id.principal, id.kinds, a)
	}
	return ""
}

// authenticate finds the identity of a request, or says why there is none.
// The bootstrap token is compared in constant time (both sides hashed, so
// its length does not leak either); a scoped token is found by the SHA-256
// of the secret presented, which leaks nothing usable through timing, and
// its stored hash is then compared in constant time all the same.
func (s *server) authenticate(c echo.Context) (*identity, string) {
	got, ok := bearer.Token(c.Request().Header.Get(echo.HeaderAuthorization))
	if !ok {
		if s.Dev {
			return &identity{principal: "dev", role: admintoken.Admin}, ""
		}
		return nil, "a bearer token is required (Authorization: Bearer <token>)"
	}
	if s.AdminToken != "" {
		h := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(h[:], s.adminHash[:]) == 1 {
			return &identity{principal: "admin", role: admintoken.Admin}, ""
		}
	}
	hash := admintoken.Hash(got)
	t, found := s.Catalog.Current().TokenByHash(hash)
	if !found || subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hash)) != 1 {
		if s.Dev && s.AdminToken == "" {
			// Dev mode without an admin token takes any token, as it
			// takes none.
			return &identity{principal: "dev", role: admintoken.Admin}, ""
		}
		return nil, "the bearer token is not valid for this endpoint"
	}
	if t.ExpiresAt != nil && !s.Now().Before(*t.ExpiresAt) {
		return nil, fmt.Sprintf("token %q expired at %s", t.Name, t.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	tok := t.Token
	return &identity{principal: "token:" + t.Name, role: admintoken.Role(t.Role), kinds: t.Kinds, token: &tok}, ""
}

// identityOf returns the identity authorize found.
func identityOf(c echo.Context) *identity {
	id, _ := c.Get(identityKey).(*identity)
	return id
}

// whoami is GET /v1/whoami: what the presented token may do, so that a UI
// or a CLI can show it and offer only what will be allowed.
func (s *server) whoami(c echo.Context) error {
	id := identityOf(c)
	w := apiv1.Whoami{Principal: id.principal, Role: string(id.role), Kinds: id.kinds}
	if id.token != nil {
		w.Token = id.token.Name
		w.ExpiresAt = id.token.ExpiresAt
	}
	return c.JSON(http.StatusOK, w)
}
