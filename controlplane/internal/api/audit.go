package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/apiv1"
)

// audit lists audit entries oldest first: ?after=REV&limit=N (max 1000).
func (s *server) audit(c echo.Context) error {
	after, err := intParam(c, "after", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	limit, err := intParam(c, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	entries, err := s.Catalog.Audit(c.Request().Context(), after, int(limit))
	if err != nil {
		return err
	}
	if entries == nil {
		entries = []store.AuditEntry{}
	}
	next := after
	if n := len(entries); n > 0 {
		next = entries[n-1].Revision
	}
	return c.JSON(http.StatusOK, apiv1.AuditPage{Entries: entries, Next: next})
}

func intParam(c echo.Context, name string, def, lo, hi int64) (int64, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, badParam(name, "must be an integer between %d and %d", lo, hi)
	}
	return v, nil
}
