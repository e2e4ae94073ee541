package proxy

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// metaConfig is a configuration as the control plane keeps it: every
// object carries the version and revision of its last change.
type metaConfig struct {
	cfg  config.Config
	rev  int64
	next int // next route number
}

func (m *metaConfig) touch(meta *config.Meta) {
	meta.Version++
	meta.Revision = m.rev
}

func newMetaConfig(routes int) *metaConfig {
	m := &metaConfig{rev: 1}
	for i := range 4 {
		s := config.Service{Name: fmt.Sprintf("svc%d", i), Targets: []config.Target{{URL: fmt.Sprintf("http://10.0.%d.1:8080", i)}}}
		m.touch(&s.Meta)
		m.cfg.Services = append(m.cfg.Services, s)
	}
	iss := config.Issuer{Name: "corp", Issuer: "https://id.example.com", Algorithms: []string{"HS256"}, Keys: []string{hmacSecret}}
	m.touch(&iss.Meta)
	m.cfg.Issuers = []config.Issuer{iss}
	for range routes {
		m.addRoute()
	}
	m.cfg.Sort()
	return m
}

func (m *metaConfig) addRoute() {
	i := m.next
	m.next++
	r := config.Route{Name: fmt.Sprintf("route-%04d", i), Service: fmt.Sprintf("svc%d", i%4),
		Paths: []string{fmt.Sprintf("/r%d/{id}", i)}}
	if i%3 == 0 {
		r.RateLimit = &config.RateLimit{Limit: 10 + i, Window: config.Duration(time.Second)}
	}
	if i%7 == 0 {
		r.Auth = &config.RouteAuth{JWT: true, Issuers: []string{"corp"}}
	}
	if i%5 == 0 {
		r.Aggregate = []config.AggregateBackend{{Service: fmt.Sprintf("svc%d", (i+1)%4), Path: "/a", Key: "a"}}
		r.Service = ""
	}
	m.touch(&r.Meta)
	m.cfg.Routes = append(m.cfg.Routes, &r)
}

// mutate applies one random change, the way the control plane would: the
// changed object's metadata moves to the new revision.
func (m *metaConfig) mutate(rng *rand.Rand) string {
	m.rev++
	routes := m.cfg.Routes
	switch op := rng.IntN(10); {
	case op == 0 || len(routes) < 2:
		m.addRoute()
		m.cfg.Sort()
		return "add route"
	case op == 1:
		i := rng.IntN(len(routes))
		m.cfg.Routes = slices.Delete(routes, i, i+1)
		return "delete route"
	case op == 2:
		r := routes[rng.IntN(len(routes))]
		r.Timeout = config.Duration(time.Duration(1+rng.IntN(60)) * time.Second)
		m.touch(&r.Meta)
		return "route timeout"
	case op == 3:
		r := routes[rng.IntN(len(routes))]
		r.Paths = []string{fmt.Sprintf("/moved%d/%s/*", m.rev, r.Name)}
		m.touch(&r.Meta)
		return "route paths"
	case op == 4:
		s := &m.cfg.Services[rng.IntN(len(m.cfg.Services))]
		s.Targets = []config.Target{{URL: fmt.Sprintf("http://10.1.%d.1:8080", m.rev%250)}}
		m.touch(&s.Meta)
		return "service targets"
	case op == 5:
		if rng.IntN(2) == 0 {
			m.cfg.Global.RateLimit = &config.RateLimit{Limit: int(m.rev), Window: config.Duration(time.Minute)}
		} else {
			m.cfg.Global.RateLimit = nil
		}
		return "global rate limit"
	case op == 6:
		// Claim exactly the requests another route claims: one of the two
		// is rejected.
		r, o := routes[rng.IntN(len(routes))], routes[rng.IntN(len(routes))]
		r.Paths, r.Methods, r.Hosts = slices.Clone(o.Paths), slices.Clone(o.Methods), slices.Clone(o.Hosts)
		m.touch(&r.Meta)
		return "conflicting route"
	case op == 7:
		r := routes[rng.IntN(len(routes))]
		r.Paths = []string{"no-leading-slash"}
		m.touch(&r.Meta)
		return "invalid route"
	case op == 8:
		// The issuer routes name turns invalid (rejected) or valid again.
		is := &m.cfg.Issuers[0]
		if is.Keys[0] == hmacSecret {
			is.Keys = []string{"short"}
		} else {
			is.Keys = []string{hmacSecret}
		}
		m.touch(&is.Meta)
		return "issuer keys"
	default:
		// A cache purge: only the metadata moves.
		m.touch(&routes[rng.IntN(len(routes))].Meta)
		return "purge"
	}
}

func (m *metaConfig) snapshot(t testing.TB) *snapshot.Snapshot {
	t.Helper()
	cfg := m.cfg.Clone()
	s, _, err := snapshot.Encode(m.rev, cfg, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sameTables fails unless two tables serve alike: the same compiled routes
// (described as in the golden files, every stage with it, plus the spec
// each was built from) and the same router answers for every route's paths.
func sameTables(t *testing.T, step string, got, want *Table) {
	t.Helper()
	// Which objects are rejected must agree; the reason may be worded by
	// validation in one and by the router in the other.
	rejected := func(tab *Table) (out []string) {
		for _, r := range tab.Rejected() {
			out = append(out, string(r.Kind)+"/"+r.Name)
		}
		slices.Sort(out)
		return out
	}
	if g, w := rejected(got), rejected(want); !slices.Equal(g, w) {
		t.Fatalf("after %s: rejected %v, scratch rejects %v", step, g, w)
	}
	reasonless := cmp.FilterPath(func(p cmp.Path) bool {
		return strings.HasSuffix(p.String(), "Rejected") || strings.HasSuffix(p.String(), "Reason")
	}, cmp.Ignore())
	if diff := cmp.Diff(describe(want), describe(got), reasonless); diff != "" {
		t.Fatalf("after %s: incremental table differs from scratch (-scratch +incremental):\n%s", step, diff)
	}
	for i, w := range want.routes {
		g := got.routes[i]
		if !reflect.DeepEqual(g.spec, w.spec) {
			t.Fatalf("after %s: route %s: incremental %+v, scratch %+v", step, w.Name, g.spec, w.spec)
		}
		if g.Upstream != nil && g.Upstream != got.upstreams[g.spec.Service] {
			t.Fatalf("after %s: route %s points at an Upstream the table does not hold", step, w.Name)
		}
		for _, p := range w.spec.Paths {
			path := strings.ReplaceAll(strings.ReplaceAll(p, "{id}", "7"), "*", "x")
			var gm, wm router.Match
			gok, wok := got.router.Match("h", "GET", path, &gm), want.router.Match("h", "GET", path, &wm)
			if gok != wok || gok && got.routes[gm.Route].Name != want.routes[wm.Route].Name {
				t.Fatalf("after %s: %s matches differently: incremental %v, scratch %v", step, path, gok, wok)
			}
		}
	}
}

// TestIncrementalCompileMatchesScratch drives random sequences of changes
// through an incremental compile (each table compiled against the one in
// service) and a compile from scratch, and requires the same table.
func TestIncrementalCompileMatchesScratch(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 12))
			m := newMetaConfig(40)
			deps := testDeps()
			cur, err := Compile(m.snapshot(t), nil, deps)
			if err != nil {
				t.Fatal(err)
			}
			for range 60 {
				step := m.mutate(rng)
				s := m.snapshot(t)
				inc, err := Compile(s, cur, deps)
				if err != nil {
					t.Fatalf("after %s: %v", step, err)
				}
				cur.Retire(inc)
				cur = inc
				scratch, err := Compile(s, nil, deps)
				if err != nil {
					t.Fatalf("after %s: scratch: %v", step, err)
				}
				sameTables(t, step, inc, scratch)
				scratch.Retire(nil)
			}
			cur.Retire(nil)
		})
	}
}

// TestUnchangedRoutesKeepCompiledObject: a write to one route (or to one
// service) rebuilds only what depends on it; every other route keeps its
// compiled *Route, and the router is kept while no route's paths moved.
func TestUnchangedRoutesKeepCompiledObject(t *testing.T) {
	deps := testDeps()
	m := newMetaConfig(50)
	first, err := Compile(m.snapshot(t), nil, deps)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { first.Retire(nil) }()
	byName := first.routesByName()

	type want struct {
		rebuilt func(r *config.Route) bool
		router  bool
	}
	cases := []struct {
		name   string
		change func()
		want   want
	}{
		{"one route's timeout", func() {
			r, _ := m.cfg.Route("route-0007")
			r.Timeout = config.Duration(3 * time.Second)
			m.touch(&r.Meta)
		}, want{func(r *config.Route) bool { return r.Name == "route-0007" }, true}},
		{"a service's targets", func() {
			s, _ := m.cfg.Service("svc2")
			s.Targets = []config.Target{{URL: "http://10.9.9.9:8080"}}
			m.touch(&s.Meta)
		}, want{func(r *config.Route) bool { return slices.Contains(r.Backends(), "svc2") }, true}},
		{"a new route", func() {
			m.addRoute()
			m.cfg.Sort()
		}, want{func(r *config.Route) bool { return r.Name == fmt.Sprintf("route-%04d", m.next-1) }, false}},
		{"the global rate limit", func() {
			m.cfg.Global.RateLimit = &config.RateLimit{Limit: 5, Window: config.Duration(time.Second)}
		}, want{func(r *config.Route) bool { return r.RateLimit == nil }, true}},
	}
	prev := first
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m.rev++
			tc.change()
			next, err := Compile(m.snapshot(t), prev, deps)
			if err != nil {
				t.Fatal(err)
			}
			prev.Retire(next)
			prev = next
			rebuilt := 0
			for i := range m.cfg.Routes {
				r := m.cfg.Routes[i]
				got, old := next.routes[i], byName[r.Name]
				if tc.want.rebuilt(r) {
					rebuilt++
					if got == old {
						t.Errorf("route %s kept its compiled object though it (or what it uses) changed", r.Name)
					}
				} else if got != old {
					t.Errorf("route %s was compiled again though nothing it uses changed", r.Name)
				}
			}
			if rebuilt == 0 {
				t.Fatal("the case changes no route: it tests nothing")
			}
			if routes, router := next.Reused(); routes != len(m.cfg.Routes)-rebuilt || router != tc.want.router {
				t.Errorf("Reused() = %d routes, router %v; want %d, %v", routes, router, len(m.cfg.Routes)-rebuilt, tc.want.router)
			}
			byName = next.routesByName()
		})
	}
	first = prev
}

// BenchmarkCompileOneChange is what a data plane pays per revision that
// changes one route of many: an incremental compile against the table in
// service.
func BenchmarkCompileOneChange(b *testing.B) {
	benchCompileRevisions(b, func(m *metaConfig) {
		r := m.cfg.Routes[int(m.rev)%len(m.cfg.Routes)]
		r.Timeout = config.Duration(time.Duration(1+m.rev%50) * time.Second)
		m.touch(&r.Meta)
	})
}

// BenchmarkCompileOneAdd is BenchmarkCompileOneChange for a write that
// adds a route: the router is rebuilt.
func BenchmarkCompileOneAdd(b *testing.B) {
	benchCompileRevisions(b, func(m *metaConfig) {
		m.addRoute()
		m.cfg.Sort()
	})
}

// benchCompileRevisions times the compile of one revision after another,
// each made by change, against the table in service.
func benchCompileRevisions(b *testing.B, change func(m *metaConfig)) {
	for _, n := range []int{5000, 100000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			m := newMetaConfig(n)
			deps := testDeps()
			prev, err := Compile(m.snapshot(b), nil, deps)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				m.rev++
				change(m)
				s := m.snapshot(b)
				b.StartTimer()
				next, err := Compile(s, prev, deps)
				if err != nil {
					b.Fatal(err)
				}
				prev.Retire(next)
				prev = next
			}
		})
	}
}
