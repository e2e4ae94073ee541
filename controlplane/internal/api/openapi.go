package api

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openapiDoc describes every endpoint; a test checks it against the routes
// actually registered so that it cannot drift.
//
//go:embed openapi.json
var openapiDoc []byte

func (s *server) openapi(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openapiDoc)
}
