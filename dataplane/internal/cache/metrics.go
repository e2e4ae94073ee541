package cache

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/dataplane/internal/promreg"
)

// metrics are a Cache's metrics; a nil *metrics records nothing.
type metrics struct {
	lookups     *prometheus.CounterVec
	storeErrors *prometheus.CounterVec
}

// memoryGauges reports the size of the current memory store. It is one
// collector with a swappable store rather than two GaugeFuncs because a
// reload registers again: promreg then hands back the collector already
// registered, and a GaugeFunc would keep reading the first store forever.
type memoryGauges struct {
	mem            atomic.Pointer[Memory]
	bytes, entries *prometheus.Desc
}

func newMemoryGauges() *memoryGauges {
	return &memoryGauges{
		bytes:   prometheus.NewDesc("portico_cache_memory_bytes", "Bytes of keys and values in the in-memory response cache.", nil, nil),
		entries: prometheus.NewDesc("portico_cache_memory_entries", "Entries in the in-memory response cache.", nil, nil),
	}
}

func (g *memoryGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.bytes
	ch <- g.entries
}

func (g *memoryGauges) Collect(ch chan<- prometheus.Metric) {
	m := g.mem.Load()
	if m == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(g.bytes, prometheus.GaugeValue, float64(m.Bytes()))
	ch <- prometheus.MustNewConstMetric(g.entries, prometheus.GaugeValue, float64(m.Len()))
}

func newMetrics(reg prometheus.Registerer, mem Store) *metrics {
	if reg == nil {
		return nil
	}
	if m, ok := mem.(*Memory); ok {
		promreg.Register(reg, newMemoryGauges()).mem.Store(m)
	}
	return &metrics{
		lookups: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_cache_lookups_total",
			Help: "Response cache lookups by route and result (hit, miss, bypass).",
		}, []string{"route", "result"})),
		storeErrors: promreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_cache_store_errors_total",
			Help: "Response cache store calls that failed or overran their budget, by store (memory, redis).",
		}, []string{"store"})),
	}
}

func (m *metrics) lookup(route, result string) {
	if m != nil {
		m.lookups.WithLabelValues(route, result).Inc()
	}
}

func (m *metrics) storeError(store string) {
	if m != nil {
		m.storeErrors.WithLabelValues(store).Inc()
	}
}
