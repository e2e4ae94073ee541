package tunnel

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count tunnels. A nil *Metrics counts nothing.
type Metrics struct {
	openedTotal *prometheus.CounterVec
	open        *prometheus.GaugeVec
	closedTotal *prometheus.CounterVec
	duration    *prometheus.HistogramVec
}

// NewMetrics registers the tunnel metrics on reg. Labels stay bounded:
// routes come from the configuration, protocols from the routes' allowed
// lists (the proxy drops any other Upgrade header), HTTP versions are two
// ("1.1": an Upgrade; "2": an extended CONNECT, RFC 8441), reasons are
// three.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		openedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_tunnels_opened_total",
			Help: "Upgraded connections (WebSocket, upgrade_protocols) opened, by route, protocol and the client's HTTP version (1.1 Upgrade, 2 extended CONNECT).",
		}, []string{"route", "protocol", "http_version"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portico_tunnels_open",
			Help: "Upgraded connections open now, by route.",
		}, []string{"route"}),
		closedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_tunnels_closed_total",
			Help: "Upgraded connections closed, by route and reason: idle (idle timeout), lifetime (max lifetime), ended (either side closed).",
		}, []string{"route", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portico_tunnel_duration_seconds",
			Help:    "How long upgraded connections stayed open, by route.",
			Buckets: []float64{.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
		}, []string{"route"}),
	}
	reg.MustRegister(m.openedTotal, m.open, m.closedTotal, m.duration)
	return m
}

func (m *Metrics) opened(route, protocol, httpVersion string) {
	if m == nil {
		return
	}
	m.openedTotal.WithLabelValues(route, protocol, httpVersion).Inc()
	m.open.WithLabelValues(route).Inc()
}

func (m *Metrics) closed(route, reason string, d time.Duration) {
	if m == nil {
		return
	}
	m.open.WithLabelValues(route).Dec()
	m.closedTotal.WithLabelValues(route, reason).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}
