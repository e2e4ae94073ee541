// Package promreg registers Prometheus collectors that may be registered
// again on the same registry: components rebuilt on a reload (a discovery
// watcher, a rate limiter) get the collector already there instead of a
// panic.
package promreg

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg, or returns the collector of the same
// description already registered. Any other registration error is a
// programming error (conflicting metric definitions) and panics.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("register metrics: %v", err))
	}
	return c
}
