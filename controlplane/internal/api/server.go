// Package api serves the control plane's HTTP interface: the admin REST API
// for operators (/v1/services, /v1/routes, /v1/consumers, /v1/config,
// /v1/audit, /v1/dataplanes, /v1/openapi.json) and the sync API that data
// planes long-poll (/v1/snapshot). It is a thin layer over the catalog: it
// decodes, authenticates, maps errors to RFC 9457 problems, and nothing more.
package api

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/nodes"
)

// Options configure the API.
type Options struct {
	Catalog *catalog.Catalog
	Nodes   *nodes.Registry
	// AdminToken and DataplaneToken are the bearer tokens of operators and
	// data planes. Outside dev mode both must be set.
	AdminToken     string
	DataplaneToken string
	// Dev accepts requests without tokens.
	Dev     bool
	Log     *slog.Logger
	Version string
	// MaxWait caps the long-poll wait a data plane may ask for.
	MaxWait time.Duration
	// Stopping is closed when the server begins a graceful shutdown, so
	// that long polls end at once with 503 instead of holding it up.
	Stopping <-chan struct{}
	// Analytics aggregates the data planes' reports; nil: no analytics.
	Analytics Aggregator
	// Metrics and Gatherer serve /metrics; nil: no metrics.
	Metrics  *Metrics
	Gatherer prometheus.Gatherer
}

// Limits on request bodies: one object is small; a whole config may hold
// tens of thousands of routes.
const (
	maxObjectBody = 1 << 20
	maxConfigBody = 64 << 20
)

// New returns the HTTP handler of the control plane.
func New(o Options) *echo.Echo {
	if o.MaxWait <= 0 {
		o.MaxWait = 60 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &server{Options: o}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// Forwarding headers are client-controlled; the audit log records the peer.
	e.IPExtractor = echo.ExtractIPDirect()
	e.HTTPErrorHandler = s.handleError
	e.Use(middleware.RequestID())
	e.Use(s.accessLog)
	e.Use(s.observe)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			s.Log.Error("panic in handler", "err", err, "path", c.Path(), "stack", string(stack))
			return err
		},
	}))

	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	if o.Gatherer != nil {
		// Like the probes, metrics carry no secrets and need no token, so
		// Prometheus can scrape them without one.
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{})))
	}

	admin := e.Group("/v1", s.requireToken("admin", o.AdminToken))
	registerKind(s, admin, "/services", catalog.Services)
	registerKind(s, admin, "/routes", catalog.Routes)
	registerKind(s, admin, "/consumers", catalog.Consumers)
	registerKind(s, admin, "/issuers", catalog.Issuers)
	registerKind(s, admin, "/certificates", catalog.Certificates)
	admin.GET("/consumers/:name/api-keys", s.listAPIKeys)
	admin.POST("/consumers/:name/api-keys", s.createAPIKey)
	admin.DELETE("/consumers/:name/api-keys/:id", s.deleteAPIKey)
	admin.POST("/routes/:name/cache/purge", s.purgeRouteCache)
	admin.GET("/global", s.getGlobal)
	admin.PUT("/global", s.putGlobal)
	admin.GET("/config", s.exportConfig)
	admin.PUT("/config", s.importConfig)
	admin.GET("/audit", s.audit)
	admin.GET("/dataplanes", s.dataplanes)
	admin.GET("/store", s.storeStatus)
	admin.POST("/store/adopt", s.adoptStore)
	admin.GET("/openapi.json", s.openapi)

	e.GET("/v1/snapshot", s.snapshot, s.requireToken("dataplane", o.DataplaneToken))
	if o.Analytics != nil {
		e.POST("/v1/report", s.report, s.requireToken("dataplane", o.DataplaneToken))
		admin.GET("/analytics", s.analytics)
	}
	return e
}

type server struct {
	Options
}

func (s *server) ready(c echo.Context) error {
	if s.Catalog.Current() == nil {
		return writeProblem(c, http.StatusServiceUnavailable, "not-ready", "configuration not loaded")
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ready", "revision": s.Catalog.Current().State.Revision})
}

// accessLog logs one line per request. It never logs headers or bodies:
// they carry tokens and secrets.
func (s *server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		req := c.Request()
		s.Log.Info("admin request",
			"method", req.Method, "path", req.URL.Path, "status", c.Response().Status,
			"duration_ms", float64(time.Since(start).Microseconds())/1000,
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
			"remote", c.RealIP())
		return nil
	}
}
