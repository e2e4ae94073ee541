package api

import (
	"net/http"
	"slices"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// listTokens is GET /v1/tokens: the tokens without secrets or hashes.
func (s *server) listTokens(c echo.Context) error {
	tokens, rev := s.Catalog.Tokens()
	out := make([]apiv1.Token, len(tokens))
	for i, t := range tokens {
		out[i] = t.Token
	}
	return c.JSON(http.StatusOK, apiv1.List[apiv1.Token]{Revision: rev, Items: out})
}

func (s *server) getToken(c echo.Context) error {
	tokens, _ := s.Catalog.Tokens()
	i := slices.IndexFunc(tokens, func(t store.Token) bool { return t.Name == c.Param("name") })
	if i < 0 {
		return writeProblem(c, http.StatusNotFound, "not-found", "token "+strconv.Quote(c.Param("name"))+" not found")
	}
	return c.JSON(http.StatusOK, tokens[i].Token)
}

// createToken is POST /v1/tokens. The answer is the only place the secret
// ever appears, so it must not be cached anywhere.
func (s *server) createToken(c echo.Context) error {
	body, err := readBody(c, maxObjectBody)
	if err != nil {
		return err
	}
	var spec apiv1.TokenSpec
	if err := config.Decode(body, &spec); err != nil {
		return err
	}
	secret, tok, ch, err := s.Catalog.CreateToken(c.Request().Context(), spec, actor(c))
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set(echo.HeaderLocation, c.Request().URL.Path+"/"+tok.Name)
	h.Set(apiv1.HeaderRevision, strconv.FormatInt(ch.Revision, 10))
	return c.JSON(http.StatusCreated, apiv1.CreatedToken{Token: tok.Token, Secret: secret})
}

// deleteToken is DELETE /v1/tokens/:name: the token is refused from the
// revision it answers with.
func (s *server) deleteToken(c echo.Context) error {
	ch, err := s.Catalog.DeleteToken(c.Request().Context(), c.Param("name"), actor(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set(apiv1.HeaderRevision, strconv.FormatInt(ch.Revision, 10))
	return c.NoContent(http.StatusNoContent)
}
