package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/shared/apiv1"
)

// sendDelta answers a poll with the delta from the data plane's applied
// revision (base, of epoch) to p, when the catalog's history has it, and
// reports whether it did. Otherwise the caller sends the full snapshot: a
// new data plane, one too far behind, one of another epoch.
func (s *server) sendDelta(c echo.Context, p *catalog.Published, base int64, epoch string) (bool, error) {
	body, err := s.Catalog.Delta(p, base, epoch)
	if err != nil || body == nil {
		return false, err
	}
	trace.SpanFromContext(c.Request().Context()).SetAttributes(
		attribute.Int64("portico.revision", p.State.Revision), attribute.Int64("portico.delta_base", base))
	h := c.Response().Header()
	h.Set(apiv1.HeaderRevision, strconv.FormatInt(p.State.Revision, 10))
	h.Set(apiv1.HeaderEpoch, p.State.Epoch.ID)
	h.Set(apiv1.HeaderDelta, strconv.FormatInt(base, 10))
	h.Set("Cache-Control", "no-store")
	return true, c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body)
}
