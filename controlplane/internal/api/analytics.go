package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portico-gw/portico/controlplane/internal/analytics"

	"github.com/portico-gw/portico/shared/apiv1"
	"github.com/portico-gw/portico/shared/config"
)

// Aggregator is what the analytics endpoints need.
type Aggregator interface {
	Add(rep apiv1.Report) error
	Query(window time.Duration) apiv1.Analytics
	Series(window, step time.Duration, routes []string) ([]apiv1.RouteSeries, error)
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
	an := s.Analytics.Query(window)
	if raw := c.QueryParam("step"); raw != "" {
		// ?step=10s[&route=NAME...]: the window as points, for all routes
		// and the routes named (default: the 5 busiest), for charts.
		step, err := time.ParseDuration(raw)
		if err != nil {
			return badParam("step", "must be a duration such as 10s or 1m")
		}
		routes := c.QueryParams()["route"]
		if len(routes) > analytics.MaxSeriesRoutes {
			return badParam("route", "at most %d routes", analytics.MaxSeriesRoutes)
		}
		if len(routes) == 0 {
			for _, r := range an.Routes[:min(5, len(an.Routes))] {
				routes = append(routes, r.Route)
			}
		}
		if an.Series, err = s.Analytics.Series(window, step, routes); err != nil {
			return badParam("step", "%v", err)
		}
		an.Step = step.String()
	}
	return c.JSON(http.StatusOK, an)
}
