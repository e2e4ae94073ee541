package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/bearer"
)

const principalKey = "portico.principal"

// requireToken authenticates a bearer token. Both sides are hashed before the
// constant-time compare so that neither the content nor the length of the
// expected token leaks through timing.
func (s *server) requireToken(principal, token string) echo.MiddlewareFunc {
	want := sha256.Sum256([]byte(token))
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			got, ok := bearer.Token(c.Request().Header.Get(echo.HeaderAuthorization))
			switch {
			case ok && token != "":
				h := sha256.Sum256([]byte(got))
				if subtle.ConstantTimeCompare(h[:], want[:]) == 1 {
					c.Set(principalKey, principal)
					return next(c)
				}
			case s.Dev:
				// Dev mode needs no token, but a wrong one is still refused.
				c.Set(principalKey, "dev")
				return next(c)
			}
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, bearer.Challenge)
			if !ok {
				return writeProblem(c, http.StatusUnauthorized, "unauthorized", "a bearer token is required (Authorization: Bearer <token>)")
			}
			return writeProblem(c, http.StatusUnauthorized, "unauthorized", "the bearer token is not valid for this endpoint")
		}
	}
}

// actor builds the audit identity of a request.
func actor(c echo.Context) catalog.Actor {
	p, _ := c.Get(principalKey).(string)
	if id := identityOf(c); id != nil {
		p = id.principal
	}
	claimed := c.Request().Header.Get(apiv1.HeaderActor)
	if len(claimed) > 128 {
		claimed = claimed[:128]
	}
	claimed = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, claimed)
	return catalog.Actor{
		Principal:  p,
		Claimed:    claimed,
		RemoteAddr: c.RealIP(),
		RequestID:  c.Response().Header().Get(echo.HeaderXRequestID),
	}
}
