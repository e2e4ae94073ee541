package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/problem"
)

// toProblem maps an error to its problem document. Unknown errors become a
// 500 whose detail hides the cause (it is logged instead).
func (s *server) toProblem(c echo.Context, err error) *problem.Problem {
	var (
		p    *problem.Problem
		he   *echo.HTTPError
		mbe  *http.MaxBytesError
		prob *problem.Problem
	)
	switch {
	case errors.As(err, &p):
		prob = p
	case errors.As(err, &mbe):
		prob = problem.Newf(http.StatusRequestEntityTooLarge, "too-large", "request body exceeds %d bytes", mbe.Limit)
	case errors.Is(err, config.ErrMalformed):
		prob = problem.New(http.StatusBadRequest, "malformed", "the request body is not valid JSON for this resource")
		prob.Errors = config.FieldErrors(err)
	case errors.Is(err, config.ErrInvalid):
		prob = problem.New(http.StatusUnprocessableEntity, "validation", "the request failed validation")
		prob.Errors = config.FieldErrors(err)
	case errors.Is(err, config.ErrConflict):
		prob = problem.New(http.StatusConflict, "conflict", "the request conflicts with the current configuration")
		prob.Errors = config.FieldErrors(err)
	case errors.Is(err, catalog.ErrNotFound):
		prob = problem.New(http.StatusNotFound, "not-found", err.Error())
	case errors.Is(err, catalog.ErrPrecondition):
		prob = problem.New(http.StatusPreconditionFailed, "precondition-failed", err.Error())
	case errors.Is(err, catalog.ErrStoreReset):
		// 409, not 503: retrying does not help, an operator must act.
		prob = problem.New(http.StatusConflict, "store-reset", err.Error())
	case errors.Is(err, catalog.ErrNoReset):
		prob = problem.New(http.StatusConflict, "no-store-reset", "the store is where this control plane left it; there is nothing to adopt")
	case errors.Is(err, store.ErrConflict):
		prob = problem.New(http.StatusServiceUnavailable, "busy", "too many concurrent writers; retry")
		c.Response().Header().Set("Retry-After", "1")
	case errors.As(err, &he):
		prob = problem.New(he.Code, slugFor(he.Code), http.StatusText(he.Code))
		if m, ok := he.Message.(string); ok {
			prob.Detail = m
		}
	default:
		s.Log.Error("admin request failed", "path", c.Request().URL.Path, "err", err,
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
		prob = problem.New(http.StatusInternalServerError, "internal", "internal error; see the control plane log")
	}
	prob.Instance = c.Request().URL.Path
	return prob
}

func slugFor(status int) string {
	switch status {
	case http.StatusNotFound:
		return "not-found"
	case http.StatusMethodNotAllowed:
		return "method-not-allowed"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusRequestEntityTooLarge:
		return "too-large"
	}
	return "http-error"
}

// handleError is echo's error handler: every error leaves as problem+json.
func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	problem.Write(c.Response(), s.toProblem(c, err))
}

func writeProblem(c echo.Context, status int, slug, detail string) error {
	p := problem.New(status, slug, detail)
	p.Instance = c.Request().URL.Path
	problem.Write(c.Response(), p)
	return nil
}

// badParam is a 400 naming a query parameter that is wrong.
func badParam(field, format string, args ...any) *problem.Problem {
	p := problem.New(http.StatusBadRequest, "bad-parameter", "a query parameter is not valid")
	p.Errors = []config.FieldError{{Field: field, Message: fmt.Sprintf(format, args...)}}
	return p
}
