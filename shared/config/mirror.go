package config

import (
	"math"
	"time"
)

// Mirroring (issue 16): a share of a route's requests is copied to another
// service, fire and forget. The copy's answer is read and dropped; the
// client's answer and latency never depend on it (the copy leaves after
// the client's exchange, on a goroutine of its own, within a bounded
// number in flight and a timeout).

// Limits and defaults of a mirror.
const (
	DefaultMirrorBody        = 64 << 10
	MaxMirrorBody            = 1 << 20
	DefaultMirrorConcurrency = 32
	MaxMirrorConcurrency     = 1024
	DefaultMirrorTimeout     = 10 * time.Second
	MaxMirrorTimeout         = time.Minute
)

// Mirror copies Percent of a route's requests to Service.
type Mirror struct {
	Service string `json:"service"`
	// Percent of requests mirrored, above 0 and up to 100 (fractions
	// allowed: 0.5).
	Percent float64 `json:"percent"`
	// MaxBodyBytes: a request whose body is larger is not mirrored
	// (counted as too_large). 0: 64 KiB; at most 1 MiB.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// MaxConcurrent copies in flight per route and data plane; beyond it
	// a copy is dropped (counted). 0: 32.
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	// Timeout bounds one copy's exchange. 0: 10s.
	Timeout Duration `json:"timeout,omitzero"`
}

func (m *Mirror) validate(l *errorList, p string, r *Route) {
	if msg := nameProblem(m.Service); msg != "" {
		l.add(join(p, "service"), "%s", msg)
	} else if m.Service == r.Service {
		l.add(join(p, "service"), "is the route's own service")
	}
	if !(m.Percent > 0 && m.Percent <= 100) || math.IsNaN(m.Percent) {
		l.add(join(p, "percent"), "must be above 0 and at most 100")
	}
	if m.MaxBodyBytes < 0 || m.MaxBodyBytes > MaxMirrorBody {
		l.add(join(p, "max_body_bytes"), "must be between 0 (default %d) and %d", DefaultMirrorBody, MaxMirrorBody)
	}
	if m.MaxConcurrent < 0 || m.MaxConcurrent > MaxMirrorConcurrency {
		l.add(join(p, "max_concurrent"), "must be between 0 (default %d) and %d", DefaultMirrorConcurrency, MaxMirrorConcurrency)
	}
	if d := m.Timeout.Std(); d < 0 || d > MaxMirrorTimeout {
		l.add(join(p, "timeout"), "must be between 0 (default %s) and %s", DefaultMirrorTimeout, MaxMirrorTimeout)
	}
	switch {
	case len(r.Aggregate) > 0:
		l.add(p, "does not combine with aggregate")
	case r.GRPC != nil:
		l.add(p, "does not combine with grpc")
	case r.SOAP != nil:
		l.add(p, "does not combine with soap")
	}
}

// checkMirrorService: the mirror's service exists and speaks HTTP.
func checkMirrorService(l *errorList, p string, r *Route, service func(string) (*Service, bool)) {
	if r.Mirror == nil {
		return
	}
	f := join(p, "mirror.service")
	if svc, ok := service(r.Mirror.Service); !ok {
		l.add(f, "service %q does not exist", r.Mirror.Service)
	} else if svc.Protocol != "" && svc.Protocol != ProtocolHTTP {
		l.add(f, "service %q speaks %s; mirroring copies HTTP requests", r.Mirror.Service, svc.Protocol)
	}
}
