package proxy

import (
	"fmt"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// Table is a snapshot compiled for serving: the route matcher, and per route
// everything a request needs, resolved in advance. It is never modified after
// Compile returns; a new revision builds a new Table and swaps it in whole.
type Table struct {
	Revision  int64
	Checksum  string
	router    *router.Table
	routes    []*Route
	upstreams map[string]*upstream.Upstream
}

// Route is a compiled route.
type Route struct {
	Name         string
	Upstream     *upstream.Upstream
	StripPrefix  bool
	Timeout      time.Duration
	MaxBodyBytes int64
}

// Compile turns a snapshot into a Table. It re-validates the configuration:
// a data plane never trusts that what it received is sound. prev is the
// table in service (or nil): services whose configuration did not change
// keep their Upstream, with its breaker, budget and instance state; changed
// ones inherit the instance state.
func Compile(s *snapshot.Snapshot, prev *Table, deps upstream.Deps) (_ *Table, err error) {
	cfg := &s.Config
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("compile snapshot %d: %w", s.Revision, err)
	}
	t := &Table{
		Revision:  s.Revision,
		Checksum:  s.Checksum,
		routes:    make([]*Route, len(cfg.Routes)),
		upstreams: make(map[string]*upstream.Upstream, len(cfg.Services)),
	}
	defer func() {
		if err != nil {
			t.Retire(prev)
		}
	}()
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		var old *upstream.Upstream
		if prev != nil {
			old = prev.upstreams[svc.Name]
		}
		if upstream.Reusable(old, svc) {
			t.upstreams[svc.Name] = old
			continue
		}
		u, err := upstream.Build(svc, old, deps)
		if err != nil {
			return nil, fmt.Errorf("compile snapshot %d: %w", s.Revision, err)
		}
		t.upstreams[svc.Name] = u
	}
	rules := make([]router.Rule, len(cfg.Routes))
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		t.routes[i] = &Route{
			Name:         r.Name,
			Upstream:     t.upstreams[r.Service],
			StripPrefix:  r.StripPrefix,
			Timeout:      orDefault(r.Timeout.Std(), config.DefaultRouteTimeout),
			MaxBodyBytes: orDefault(r.MaxBodyBytes, config.DefaultMaxBodyBytes),
		}
		rules[i] = router.Rule{Paths: r.Paths, Methods: r.Methods, Hosts: r.Hosts}
	}
	rt, err := router.Compile(rules)
	if err != nil {
		return nil, fmt.Errorf("compile snapshot %d routes: %w", s.Revision, err)
	}
	t.router = rt
	return t, nil
}

// Start brings the table's new Upstreams into service (discovery
// subscriptions, health checks). Call it before swapping the table in.
func (t *Table) Start() {
	for _, u := range t.upstreams {
		u.Start()
	}
}

// Retire stops the Upstreams of t that next does not use. Requests still
// running on t finish on the endpoint sets they hold.
func (t *Table) Retire(next *Table) {
	for name, u := range t.upstreams {
		if next != nil && next.upstreams[name] == u {
			continue
		}
		u.Retire()
	}
}

// Upstreams reports the state of every service's pool, for /status.
func (t *Table) Upstreams() []upstream.Status {
	out := make([]upstream.Status, 0, len(t.upstreams))
	for _, u := range t.upstreams {
		out = append(out, u.Status())
	}
	return out
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Routes returns the number of routes.
func (t *Table) Routes() int { return len(t.routes) }
