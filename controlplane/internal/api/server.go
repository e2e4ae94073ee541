// Package api serves the control plane's HTTP interface: the admin REST API
// for operators (/v1/services, /v1/routes, /v1/consumers, /v1/config,
// /v1/audit, /v1/dataplanes, /v1/openapi.json) and the sync API that data
// planes long-poll (/v1/snapshot). It is a thin layer over the catalog: it
// decodes, authenticates, maps errors to RFC 9457 problems, and nothing more.
package api

import (
	"crypto/sha256"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/nodes"
	"github.com/portico-gw/portico/controlplane/internal/ui"
	"github.com/portico-gw/portico/shared/admintoken"
	"github.com/portico-gw/portico/shared/config"
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
	// Now tells the time tokens expire by; nil: time.Now.
	Now func() time.Time
	// TicketKeys is the value of apiv1.HeaderTicketKeys on sync answers
	// (tickets.Keeper.Header); nil or "": none sent.
	TicketKeys func() string
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
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &server{Options: o, rules: map[string]access{}, adminHash: sha256.Sum256([]byte(o.AdminToken))}
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

	// The admin web UI: static files, no token needed to load them (they
	// hold no data); every call they make to /v1 carries the operator's.
	uiFiles := echo.WrapHandler(ui.Handler("/ui/"))
	e.GET("/ui", func(c echo.Context) error {
		ui.SecurityHeaders(c.Response().Header())
		return c.Redirect(http.StatusMovedPermanently, "/ui/")
	})
	e.GET("/ui/*", uiFiles)
	e.HEAD("/ui/*", uiFiles)

	r, w, adm := admintoken.Read, admintoken.Write, admintoken.Admin
	admin := e.Group(adminPrefix, s.authorize)
	registerKind(s, admin, "/services", catalog.Services)
	registerKind(s, admin, "/routes", catalog.Routes)
	registerKind(s, admin, "/consumers", catalog.Consumers)
	registerKind(s, admin, "/issuers", catalog.Issuers)
	registerKind(s, admin, "/certificates", catalog.Certificates)
	s.handle(admin, http.MethodGet, "/consumers/:name/api-keys", access{role: r, kind: config.KindConsumer}, s.listAPIKeys)
	s.handle(admin, http.MethodPost, "/consumers/:name/api-keys", access{role: w, kind: config.KindConsumer}, s.createAPIKey)
	s.handle(admin, http.MethodDelete, "/consumers/:name/api-keys/:id", access{role: w, kind: config.KindConsumer}, s.deleteAPIKey)
	s.handle(admin, http.MethodGet, "/consumers/:name/basic-auth", access{role: r, kind: config.KindConsumer}, s.listBasicAuth)
	s.handle(admin, http.MethodPost, "/consumers/:name/basic-auth", access{role: w, kind: config.KindConsumer}, s.createBasicAuth)
	s.handle(admin, http.MethodDelete, "/consumers/:name/basic-auth/:id", access{role: w, kind: config.KindConsumer}, s.deleteBasicAuth)
	s.handle(admin, http.MethodPost, "/routes/:name/cache/purge", access{role: w, kind: config.KindRoute}, s.purgeRouteCache)
	s.handle(admin, http.MethodGet, "/global", access{role: r, kind: admintoken.KindGlobal}, s.getGlobal)
	s.handle(admin, http.MethodPut, "/global", access{role: w, kind: admintoken.KindGlobal}, s.putGlobal)
	s.handle(admin, http.MethodGet, "/config", access{role: r, whole: true}, s.exportConfig)
	s.handle(admin, http.MethodPut, "/config", access{role: w, whole: true}, s.importConfig)
	s.handle(admin, http.MethodGet, "/audit", access{role: r}, s.audit)
	s.handle(admin, http.MethodGet, "/dataplanes", access{role: r}, s.dataplanes)
	s.handle(admin, http.MethodGet, "/store", access{role: r}, s.storeStatus)
	s.handle(admin, http.MethodPost, "/store/adopt", access{role: adm}, s.adoptStore)
	s.handle(admin, http.MethodGet, "/openapi.json", access{role: r}, s.openapi)
	s.handle(admin, http.MethodGet, "/whoami", access{role: r}, s.whoami)
	s.handle(admin, http.MethodGet, "/tokens", access{role: adm}, s.listTokens)
	s.handle(admin, http.MethodPost, "/tokens", access{role: adm}, s.createToken)
	s.handle(admin, http.MethodGet, "/tokens/:name", access{role: adm}, s.getToken)
	s.handle(admin, http.MethodDelete, "/tokens/:name", access{role: adm}, s.deleteToken)

	// The sync API: data planes' own token, not an admin one.
	e.GET("/v1/snapshot", s.snapshot, s.requireToken("dataplane", o.DataplaneToken))
	if o.Analytics != nil {
		e.POST("/v1/report", s.report, s.requireToken("dataplane", o.DataplaneToken))
		s.handle(admin, http.MethodGet, "/analytics", access{role: r}, s.analytics)
	}
	s.checkRules(e, "GET /v1/snapshot", "POST /v1/report")
	return e
}

type server struct {
	Options
	// rules holds each admin endpoint's access rule by "METHOD /path" as
	// the router names it (authz.go).
	rules     map[string]access
	adminHash [32]byte
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
