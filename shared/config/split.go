package config

import (
	"fmt"
	"strings"
)

// Weighted split (issue 16): a route sends each request to one of several
// services, in proportion to their weights, through the one call path.
// With Sticky, a request's key (its consumer, a header, a cookie) picks the
// service by consistent hashing: the key's point in [0, 1) falls in the
// share of one backend, the shares laid out in list order. Moving weights
// moves only the keys whose point changes sides (from 90/10 to 50/50, the
// keys between 0.5 and 0.9; the others stay), so users stay on one version
// while a canary grows, and every data plane agrees (the hash has no
// per-process seed). Requests without the key are spread by weight at
// random.

// Limits of a split.
const (
	MaxSplitBackends = 16
	MaxSplitWeight   = 10000
)

// SplitBackend is one service of a split and its weight (0 drains it).
type SplitBackend struct {
	Service string `json:"service"`
	Weight  int    `json:"weight"`
}

// Sticky keys.
const StickyConsumer = "consumer"

func (r *Route) validateSplit(l *errorList, p string) {
	if len(r.Split) == 0 {
		if r.Sticky != "" {
			l.add(join(p, "sticky"), "only applies with backends")
		}
		return
	}
	switch {
	case r.Service != "":
		l.add(join(p, "service"), "a split route names its services in backends, not here")
	case len(r.Aggregate) > 0:
		l.add(join(p, "aggregate"), "does not combine with backends")
	case r.GRPC != nil:
		l.add(join(p, "grpc"), "does not combine with backends")
	case r.SOAP != nil:
		l.add(join(p, "soap"), "does not combine with backends")
	}
	if len(r.Split) < 2 || len(r.Split) > MaxSplitBackends {
		l.add(join(p, "backends"), "2 to %d services", MaxSplitBackends)
	}
	total := 0
	seen := map[string]int{}
	for i, b := range r.Split {
		bp := join(p, fmt.Sprintf("backends[%d]", i))
		if msg := nameProblem(b.Service); msg != "" {
			l.add(join(bp, "service"), "%s", msg)
		} else if j, dup := seen[b.Service]; dup {
			l.add(join(bp, "service"), "service %q is already backends[%d]", b.Service, j)
		}
		seen[b.Service] = i
		if b.Weight < 0 || b.Weight > MaxSplitWeight {
			l.add(join(bp, "weight"), "must be between 0 (drained) and %d", MaxSplitWeight)
		} else {
			total += b.Weight
		}
	}
	if total == 0 && len(r.Split) > 0 {
		l.add(join(p, "backends"), "at least one weight must be above 0")
	}
	if r.Sticky != "" {
		if msg := stickyProblem(r.Sticky); msg != "" {
			l.add(join(p, "sticky"), "%s", msg)
		} else if r.Sticky == StickyConsumer && r.Auth == nil {
			l.add(join(p, "sticky"), "%q needs auth on the route to know the consumer", r.Sticky)
		}
	}
}

// stickyProblem checks a sticky key: "consumer", "header:<Name>" or
// "cookie:<name>".
func stickyProblem(s string) string {
	if s == StickyConsumer {
		return ""
	}
	kind, name, _ := strings.Cut(s, ":")
	if (kind == "header" || kind == "cookie") && isToken(name) {
		return ""
	}
	return `must be "consumer", "header:<Name>" or "cookie:<name>"`
}

// checkSplitServices: every service of a split exists and speaks HTTP.
func checkSplitServices(l *errorList, p string, r *Route, service func(string) (*Service, bool)) {
	for i, b := range r.Split {
		f := join(p, fmt.Sprintf("backends[%d].service", i))
		if svc, ok := service(b.Service); !ok {
			l.add(f, "service %q does not exist", b.Service)
		} else if svc.Protocol != "" && svc.Protocol != ProtocolHTTP {
			l.add(f, "service %q speaks %s; a split forwards HTTP", b.Service, svc.Protocol)
		}
	}
}
