package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// Aggregator is what the analytics endpoints need.
type Aggregator interface {
	Add(rep apiv1.Report) error
	Query(window time.Duration) apiv1.Analytics
}

// maxReportBody bounds one data plane's report (10,000 routes of counters).
const maxReportBody = 8 << 20

// report is POST /v1/report: a data plane's counters since its last one.
func (s *server) report(c echo.Context) error {
	body, err := readBody(c, maxReportBody)
	if err != nil {
		return err
	}
	var rep apiv1.Report
	if err := config.Decode(body, &rep); err != nil {
		return err
	}
	if err := s.Analytics.Add(rep); err != nil {
		var fe config.FieldError
		if errors.As(err, &fe) {
			return &config.ValidationError{Kind: config.ErrInvalid, Fields: []config.FieldError{fe}}
		}
		return config.Invalid("", "%v", err)
	}
	return c.NoContent(http.StatusNoContent)
}

// analytics is GET /v1/analytics?window=5m: traffic per route and per data
// plane, aggregated from the data planes' reports.
func (s *server) analytics(c echo.Context) error {
	window := 5 * time.Minute
	if raw := c.QueryParam("window"); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil || d < time.Minute || d > time.Hour {
			return badParam("window", "must be a duration between 1m and 1h")
		}
		window = d
	}
	return c.JSON(http.StatusOK, s.Analytics.Query(window))
}
