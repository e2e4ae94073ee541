package api

import (
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/portico-gw/portico/controlplane/internal/catalog"
	"github.com/portico-gw/portico/controlplane/internal/nodes"
)

// Metrics are the control plane's Prometheus metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the admin-API metrics and the gauges that read the
// catalog and the data-plane registry at scrape time.
func NewMetrics(reg prometheus.Registerer, cat *catalog.Catalog, reg2 *nodes.Registry) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_cp_requests_total",
			Help: "Requests to the control plane, by method, route template and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portico_cp_request_duration_seconds",
			Help:    "Time to answer control-plane requests (long polls excluded), by route template.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "portico_cp_revision", Help: "Current configuration revision.",
		}, func() float64 { return float64(cat.Current().State.Revision) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "portico_cp_dataplanes_connected", Help: "Data planes polling this control plane now or recently.",
		}, func() float64 { return float64(reg2.Connected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "portico_cp_store_reset",
			Help: "1 while the store is found emptied or rolled back and writes are refused (see GET /v1/store).",
		}, func() float64 {
			if cat.Reset() != nil {
				return 1
			}
			return 0
		}),
		&lagCollector{cat: cat, nodes: reg2},
	)
	return m
}

// lagCollector reports, per connected data plane, how many revisions it is
// behind (0 once it has converged) and how many objects of its applied
// revision it could not apply (0 normally: alert on more, in one place for
// the whole fleet).
type lagCollector struct {
	cat   *catalog.Catalog
	nodes *nodes.Registry
}

var lagDesc = prometheus.NewDesc("portico_cp_dataplane_lag_revisions",
	"Revisions between the current configuration and what a connected data plane runs.", []string{"node"}, nil)

var rejectedDesc = prometheus.NewDesc("portico_cp_dataplane_rejected_objects",
	"Objects of its applied revision a connected data plane could not apply (GET /v1/dataplanes says which and why).", []string{"node"}, nil)

func (l *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lagDesc; ch <- rejectedDesc }

func (l *lagCollector) Collect(ch chan<- prometheus.Metric) {
	rev := l.cat.Current().State.Revision
	for _, n := range l.nodes.List(rev) {
		if n.Status == "connected" {
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(rev-n.AppliedRevision), n.ID)
			ch <- prometheus.MustNewConstMetric(rejectedDesc, prometheus.GaugeValue, float64(len(n.Rejected)), n.ID)
		}
	}
}

// observe is the middleware that gives every request a server span (joined
// to the caller's trace when it sent one) and counts it.
func (s *server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	tracer := otel.Tracer("github.com/portico-gw/portico/controlplane")
	prop := otel.GetTextMapPropagator()
	return func(c echo.Context) error {
		req := c.Request()
		ctx := prop.Extract(req.Context(), propagation.HeaderCarrier(req.Header))
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		ctx, span := tracer.Start(ctx, req.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", req.Method), attribute.String("http.route", route)))
		defer span.End()
		c.SetRequest(req.WithContext(ctx))
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		code := c.Response().Status
		span.SetAttributes(attribute.Int("http.response.status_code", code))
		if code >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(code))
		}
		if s.Metrics != nil {
			s.Metrics.requests.WithLabelValues(req.Method, route, strconv.Itoa(code)).Inc()
			if route != "/v1/snapshot" {
				s.Metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
			}
		}
		return nil
	}
}
