package extauthz

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics count decisions and errors; a nil *metrics counts nothing.
type metrics struct {
	decisions *prometheus.CounterVec
	errors    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_ext_authz_decisions_total",
			Help: "External authorization decisions, by route, decision (allowed, denied; error_allowed with fail_open, error_denied with fail_closed) and whether the decision cache answered.",
		}, []string{"route", "decision", "cached"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_ext_authz_errors_total",
			Help: "External authorization checks that failed, by route, protocol (http, grpc) and reason (timeout, unavailable, bad_answer, canceled: the client left).",
		}, []string{"route", "mode", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portico_ext_authz_duration_seconds",
			Help:    "Time a decision service took to answer a check (not cached ones), by route and protocol.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "mode"}),
	}
	reg.MustRegister(m.decisions, m.errors, m.duration)
	return m
}

func (m *metrics) decided(route, decision string, cached bool) {
	if m != nil {
		m.decisions.WithLabelValues(route, decision, strconv.FormatBool(cached)).Inc()
	}
}

func (m *metrics) errored(route, mode, reason string) {
	if m != nil {
		m.errors.WithLabelValues(route, mode, reason).Inc()
	}
}

func (m *metrics) observe(route, mode string, d time.Duration) {
	if m != nil {
		m.duration.WithLabelValues(route, mode).Observe(d.Seconds())
	}
}
