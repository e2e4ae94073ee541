package ratelimit

import (
	"time"

	"github.com/portico-gw/portico/dataplane/internal/promreg"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a RedisLimiter's metrics; a nil *metrics records nothing.
type metrics struct {
	// decisions is indexed [allowed][source]: resolved once, so that a
	// decision costs an atomic add rather than a label lookup.
	decisions [2][2]prometheus.Counter
	errors    prometheus.Counter
	up        prometheus.Gauge
	seconds   prometheus.Observer
}

const (
	srcRedis = iota
	srcLocal
)

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	decisions := promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_ratelimit_decisions_total",
		Help: "Rate-limit decisions by result (allowed, refused) and source (redis, or local while Redis is unavailable).",
	}, []string{"result", "source"}))
	m := &metrics{
		errors: promreg.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portico_ratelimit_redis_errors_total",
			Help: "Rate-limit calls to Redis that failed or overran their time budget.",
		})),
		up: promreg.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portico_ratelimit_redis_up",
			Help: "1 while rate-limit decisions go to Redis, 0 while the breaker keeps them local.",
		})),
		seconds: promreg.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "portico_ratelimit_redis_seconds",
			Help:    "Duration of rate-limit calls to Redis, failed ones included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		})),
	}
	for i, result := range []string{"refused", "allowed"} {
		for j, source := range []string{SourceRedis, SourceLocal} {
			m.decisions[i][j] = decisions.WithLabelValues(result, source)
		}
	}
	return m
}

func (m *metrics) decision(d Decision) {
	if m == nil {
		return
	}
	i, j := 0, srcRedis
	if d.Allowed {
		i = 1
	}
	if d.Source != SourceRedis {
		j = srcLocal
	}
	m.decisions[i][j].Inc()
}

func (m *metrics) redisError() {
	if m != nil {
		m.errors.Inc()
	}
}

func (m *metrics) setUp(up bool) {
	if m == nil {
		return
	}
	if up {
		m.up.Set(1)
	} else {
		m.up.Set(0)
	}
}

func (m *metrics) observe(d time.Duration) {
	if m != nil {
		m.seconds.Observe(d.Seconds())
	}
}
