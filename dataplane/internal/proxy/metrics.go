package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/dataplane/internal/tunnel"
)

// Metrics are the request-path metrics of a data plane.
type Metrics struct {
	authFailures *prometheus.CounterVec
	throttled    *prometheus.CounterVec
	ipRefusals   *prometheus.CounterVec
	inFlight     prometheus.Gauge
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	tunnels      *tunnel.Metrics
	// mirrors counts mirrored copies by route, service and outcome.
	mirrors *prometheus.CounterVec
	// responses counts report-only checks of answers (bodyschema).
	responses *prometheus.CounterVec
}

// NewMetrics registers the request metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_auth_failures_total",
			Help: "Requests refused by authentication or authorization, by route and reason.",
		}, []string{"route", "reason"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_throttled_total",
			Help: "Requests refused because the route was at max_in_flight.",
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portico_requests_in_flight",
			Help: "Requests being handled right now.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_requests_total",
			Help: "Requests handled, by route (empty when none matched), method and status class (2xx...5xx).",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portico_request_duration_seconds",
			Help:    "Time from request arrival to the end of the response, by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
	}
	reg.MustRegister(m.authFailures, m.throttled, m.inFlight, m.requests, m.duration)
	m.ipRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_ip_refusals_total",
		Help: "Requests refused by IP rules (403 ip-forbidden), by route and the rules that refused (scope: global or route).",
	}, []string{"route", "scope"})
	reg.MustRegister(m.ipRefusals)
	m.tunnels = tunnel.NewMetrics(reg)
	m.mirrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_mirror_requests_total",
		Help: "Mirrored copies of requests, by route, mirror service and outcome (2xx..5xx, error, timeout; dropped over max_concurrent, too_large, incomplete body: not sent).",
	}, []string{"route", "service", "outcome"})
	reg.MustRegister(m.mirrors)
	m.responses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_response_validation_total",
		Help: "Answers checked against the route's response schema, report only, by route and outcome (ok, invalid, not_json, too_large: not checked, dropped: too many checks at once).",
	}, []string{"route", "outcome"})
	reg.MustRegister(m.responses)
	return m
}

// mirrored is stage.Env.Mirrored; nil without metrics.
func (m *Metrics) mirrored() func(route, service, outcome string) {
	if m == nil {
		return nil
	}
	return func(route, service, outcome string) { m.mirrors.WithLabelValues(route, service, outcome).Inc() }
}

// tunnelMetrics is nil-safe: handlers made without metrics count nothing.
func (m *Metrics) tunnelMetrics() *tunnel.Metrics {
	if m == nil {
		return nil
	}
	return m.tunnels
}

func (m *Metrics) observe(route, method string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, methodLabel(method), statusClass(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// methodLabel keeps label cardinality bounded: clients choose the method.
func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "OTHER"
}

func statusClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	case code >= 200:
		return "2xx"
	}
	return "1xx"
}
