package upstream

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the upstream-side metrics of a data plane. A nil *Metrics
// records nothing.
type Metrics struct {
	latency      *prometheus.HistogramVec
	attempts     *prometheus.CounterVec
	retries      *prometheus.CounterVec
	ejections    *prometheus.CounterVec
	endpoints    *prometheus.GaugeVec
	breakerState *prometheus.GaugeVec
}

// NewMetrics registers the upstream metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portico_upstream_duration_seconds",
			Help:    "Time from sending an attempt to the upstream's response headers, by service.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"service"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_upstream_attempts_total",
			Help: "Attempts sent to upstream instances, by service and result (ok, 5xx, error).",
		}, []string{"service", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_upstream_retries_total",
			Help: "Attempts that were retries on another instance.",
		}, []string{"service"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_upstream_ejections_total",
			Help: "Instances ejected by passive outlier detection.",
		}, []string{"service"}),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portico_upstream_endpoints",
			Help: "Instances in the service's pool (discovered or static).",
		}, []string{"service"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portico_circuit_breaker_state",
			Help: "Circuit breaker state per service: 0 closed, 1 half-open, 2 open.",
		}, []string{"service"}),
	}
	reg.MustRegister(m.latency, m.attempts, m.retries, m.ejections, m.endpoints, m.breakerState)
	return m
}

// serviceMetrics are one service's series, resolved once when its Upstream
// is built: attempts are counted per request, and a label lookup hashes the
// labels and takes the vector's lock each time. The zero value records
// nothing (no Metrics configured).
type serviceMetrics struct {
	ok, fiveXX, failed prometheus.Counter
	retries            prometheus.Counter
	latency            prometheus.Observer
}

func (m *Metrics) forService(service string) serviceMetrics {
	if m == nil {
		return serviceMetrics{}
	}
	return serviceMetrics{
		ok:      m.attempts.WithLabelValues(service, "ok"),
		fiveXX:  m.attempts.WithLabelValues(service, "5xx"),
		failed:  m.attempts.WithLabelValues(service, "error"),
		retries: m.retries.WithLabelValues(service),
		latency: m.latency.WithLabelValues(service),
	}
}

func (sm serviceMetrics) observeLatency(d time.Duration) {
	if sm.latency != nil {
		sm.latency.Observe(d.Seconds())
	}
}

// attempt counts one attempt by what it said about the instance: "5xx"
// is an answer that failed (an HTTP 5xx, or a gRPC status counted against
// the instance), "error" no answer at all.
func (sm serviceMetrics) attempt(o Outcome) {
	if sm.ok == nil {
		return
	}
	switch o {
	case Broken:
		sm.failed.Inc()
	case Failed:
		sm.fiveXX.Inc()
	default:
		sm.ok.Inc()
	}
}

func (sm serviceMetrics) retry() {
	if sm.retries != nil {
		sm.retries.Inc()
	}
}
