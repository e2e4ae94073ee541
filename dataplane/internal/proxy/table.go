package proxy

import (
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// Table is a snapshot compiled for serving: the route matcher, and per route
// everything a request needs, resolved in advance. It is never modified after
// Compile returns; a new revision builds a new Table and swaps it in whole.
type Table struct {
	Revision int64
	Checksum string
	router   *router.Table
	routes   []*Route
	services map[string]*Service
}

// Route is a compiled route.
type Route struct {
	Name         string
	Service      *Service
	StripPrefix  bool
	Timeout      time.Duration
	MaxBodyBytes int64
}

// Service is a compiled upstream with its balancer state. Balancer state
// lives in the Table, so a new revision starts a fresh rotation.
type Service struct {
	Name           string
	ConnectTimeout time.Duration
	targets        []*Target
	// schedule lists target indexes in smooth weighted round-robin order.
	schedule []uint16
	next     atomic.Uint64
}

// Target is one upstream address.
type Target struct {
	URL    *url.URL
	Weight int
	// Addr is host:port, for logs and metrics.
	Addr string
}

// maxSchedule bounds the weighted round-robin schedule; larger weight sums
// are scaled down proportionally.
const maxSchedule = 4096

// Compile turns a snapshot into a Table. It re-validates the configuration:
// a data plane never trusts that what it received is sound.
func Compile(s *snapshot.Snapshot) (*Table, error) {
	cfg := &s.Config
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("compile snapshot %d: %w", s.Revision, err)
	}
	t := &Table{
		Revision: s.Revision,
		Checksum: s.Checksum,
		routes:   make([]*Route, len(cfg.Routes)),
		services: make(map[string]*Service, len(cfg.Services)),
	}
	for i := range cfg.Services {
		svc, err := compileService(&cfg.Services[i])
		if err != nil {
			return nil, fmt.Errorf("compile snapshot %d: %w", s.Revision, err)
		}
		t.services[svc.Name] = svc
	}
	rules := make([]router.Rule, len(cfg.Routes))
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		t.routes[i] = &Route{
			Name:         r.Name,
			Service:      t.services[r.Service],
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

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func compileService(s *config.Service) (*Service, error) {
	svc := &Service{Name: s.Name, ConnectTimeout: orDefault(s.ConnectTimeout.Std(), config.DefaultConnectTimeout)}
	weights := make([]int, len(s.Targets))
	for i, t := range s.Targets {
		u, err := url.Parse(t.URL)
		if err != nil {
			return nil, fmt.Errorf("service %q target %d: %w", s.Name, i, err)
		}
		u.Path = strings.TrimRight(u.Path, "/")
		addr := u.Host
		if u.Port() == "" {
			addr = u.Host + map[bool]string{true: ":443", false: ":80"}[u.Scheme == "https"]
		}
		svc.targets = append(svc.targets, &Target{URL: u, Weight: max(t.Weight, 1), Addr: addr})
		weights[i] = max(t.Weight, 1)
	}
	svc.schedule = smoothSchedule(weights)
	return svc, nil
}

// smoothSchedule lays out nginx's smooth weighted round robin once, so that
// picking is one atomic increment: weights 5,1,1 give a,a,b,a,c,a,a rather
// than a,a,a,a,a,b,c.
func smoothSchedule(weights []int) []uint16 {
	total := 0
	for _, w := range weights {
		total += w
	}
	if total > maxSchedule {
		scaled := make([]int, len(weights))
		newTotal := 0
		for i, w := range weights {
			scaled[i] = max(1, w*maxSchedule/total)
			newTotal += scaled[i]
		}
		weights, total = scaled, newTotal
	}
	current := make([]int, len(weights))
	out := make([]uint16, 0, total)
	for range total {
		best := 0
		for i, w := range weights {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		out = append(out, uint16(best))
	}
	return out
}

// pick returns the next target in weighted rotation.
func (s *Service) pick() *Target {
	if len(s.targets) == 0 {
		return nil
	}
	n := s.next.Add(1) - 1
	return s.targets[s.schedule[n%uint64(len(s.schedule))]]
}

// Routes returns the number of routes.
func (t *Table) Routes() int { return len(t.routes) }
