package store

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Instrument wraps s so that every operation gets a span and its latency is
// recorded (portico_cp_store_duration_seconds{op}). reg may be nil.
func Instrument(s Store, reg prometheus.Registerer) Store {
	i := &instrumented{Store: s, tracer: otel.Tracer("github.com/portico-gw/portico/controlplane/store")}
	i.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "portico_cp_store_duration_seconds",
		Help:    "Latency of configuration store operations (WaitRevision excluded: it blocks by design).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op", "result"})
	if reg != nil {
		reg.MustRegister(i.latency)
	}
	return i
}

type instrumented struct {
	Store
	tracer  trace.Tracer
	latency *prometheus.HistogramVec
}

// Where passes Describe through to the wrapped store.
func (i *instrumented) Where() string { return Describe(i.Store) }

func (i *instrumented) op(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, func(error)) {
	ctx, span := i.tracer.Start(ctx, "store "+name, trace.WithAttributes(attrs...))
	start := time.Now()
	return ctx, func(err error) {
		result := "ok"
		if err != nil {
			result = "error"
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		i.latency.WithLabelValues(name, result).Observe(time.Since(start).Seconds())
		span.End()
	}
}

func (i *instrumented) Load(ctx context.Context) (*State, error) {
	ctx, done := i.op(ctx, "load")
	s, err := i.Store.Load(ctx)
	done(err)
	return s, err
}

func (i *instrumented) Commit(ctx context.Context, next *State, entry AuditEntry) error {
	ctx, done := i.op(ctx, "commit", attribute.Int64("portico.revision", next.Revision))
	err := i.Store.Commit(ctx, next, entry)
	done(err)
	return err
}

func (i *instrumented) Audit(ctx context.Context, after int64, limit int) ([]AuditEntry, error) {
	ctx, done := i.op(ctx, "audit")
	e, err := i.Store.Audit(ctx, after, limit)
	done(err)
	return e, err
}
