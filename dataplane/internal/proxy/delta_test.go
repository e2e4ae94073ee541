package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// mutateRoutes applies one random change to routes only, the kind of
// write compileChange takes on its own: creating, deleting, re-pathing,
// retiming, purging, breaking, making conflicts, changing conditions or
// priority, and routes that forward claims or read API keys in headers
// (the stripped set).
//
// The routes it breaks are added to broken, and later steps repair them
// (a new path of their own): the control plane refuses such routes, and
// while the router leaves one out every delta is compiled whole.
func (m *metaConfig) mutateRoutes(rng *rand.Rand, broken *[]string) string {
	m.rev++
	routes := m.cfg.Routes
	pick := func() *config.Route { return routes[rng.IntN(len(routes))] }
	if n := len(*broken); n > 0 && rng.IntN(3) == 0 {
		name := (*broken)[n-1]
		*broken = (*broken)[:n-1]
		if r, ok := m.cfg.Route(name); ok {
			r.Paths = []string{fmt.Sprintf("/repaired%d/%s", m.rev, name)}
			m.touch(&r.Meta)
			return "repair route"
		}
	}
	switch op := rng.IntN(30); {
	case op == 0 || op == 10 || len(routes) < 2:
		m.addRoute()
		m.cfg.Sort()
		return "add route"
	case op == 1 || op == 11:
		i := rng.IntN(len(routes))
		m.cfg.Routes = slices.Delete(routes, i, i+1)
		return "delete route"
	case op == 2 || op == 12:
		r := pick()
		r.Timeout = config.Duration(time.Duration(1+rng.IntN(60)) * time.Second)
		m.touch(&r.Meta)
		return "route timeout"
	case op == 3 || op >= 20:
		r := pick()
		r.Paths = []string{fmt.Sprintf("/moved%d/%s/*", m.rev, r.Name)}
		m.touch(&r.Meta)
		return "route paths"
	case op == 4 && rng.IntN(4) == 0:
		r, o := pick(), routes[rng.IntN(len(routes))]
		r.Paths, r.Methods, r.Hosts = slices.Clone(o.Paths), slices.Clone(o.Methods), slices.Clone(o.Hosts)
		m.touch(&r.Meta)
		*broken = append(*broken, r.Name)
		return "conflicting route"
	case op == 5 && rng.IntN(4) == 0:
		r := pick()
		r.Paths = []string{"no-leading-slash"}
		m.touch(&r.Meta)
		*broken = append(*broken, r.Name)
		return "invalid route"
	case op == 6 || op == 16:
		r := pick()
		r.Auth = &config.RouteAuth{JWT: true, Issuers: []string{"corp"},
			ForwardClaims: map[string]string{"sub": fmt.Sprintf("X-Sub-%d", rng.IntN(3))}}
		m.touch(&r.Meta)
		return "forward a claim"
	case op == 7 || op == 17:
		r := pick()
		r.Auth = &config.RouteAuth{APIKey: true, APIKeyHeader: fmt.Sprintf("X-Key-%d", rng.IntN(2))}
		m.touch(&r.Meta)
		return "api key header"
	case op == 8 || op == 18:
		// Conditions and priority are part of the match: a route with
		// another header condition or priority is re-matched.
		r := pick()
		if rng.IntN(2) == 0 {
			r.Priority = rng.IntN(3)
		} else {
			r.Match = &config.RouteMatch{Headers: map[string]config.ValueMatch{"X-Version": {Exact: fmt.Sprint(rng.IntN(3))}}}
		}
		m.touch(&r.Meta)
		return "conditions or priority"
	default:
		m.touch(&pick().Meta)
		return "purge"
	}
}

// mutateShared changes what routes depend on: a service, the global rate
// limit or the issuer (valid or not): such deltas are compiled whole.
func (m *metaConfig) mutateShared(rng *rand.Rand) string {
	m.rev++
	switch rng.IntN(3) {
	case 0:
		s := &m.cfg.Services[rng.IntN(len(m.cfg.Services))]
		s.Targets = []config.Target{{URL: fmt.Sprintf("http://10.1.%d.1:8080", m.rev%250)}}
		m.touch(&s.Meta)
		return "service targets"
	case 1:
		if rng.IntN(2) == 0 {
			m.cfg.Global.RateLimit = &config.RateLimit{Limit: int(m.rev), Window: config.Duration(time.Minute)}
		} else {
			m.cfg.Global.RateLimit = nil
		}
		return "global rate limit"
	default:
		is := &m.cfg.Issuers[0]
		if is.Keys[0] == hmacSecret {
			is.Keys = []string{"short"}
		} else {
			is.Keys = []string{hmacSecret}
		}
		m.touch(&is.Meta)
		return "issuer keys"
	}
}

// deltaStep turns the change from base to m's configuration into a delta
// the way the control plane does (snapshot.Changes, NewDelta, encoded and
// decoded) and applies it to base the way the syncer does (Delta.Apply),
// returning the resulting snapshot and the Change the Applier gets.
func deltaStep(t testing.TB, m *metaConfig, base *snapshot.Snapshot) (*snapshot.Snapshot, *snapshot.Change) {
	t.Helper()
	cur := m.cfg.Clone()
	touched := snapshot.Changes(&base.Config, cur)
	raw, err := snapshot.EncodeDelta(snapshot.NewDelta(base.Revision, m.rev, base.Epoch, cur, &touched, snapshot.Digest{}, time.Unix(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	d, err := snapshot.DecodeDelta(raw)
	if err != nil {
		t.Fatal(err)
	}
	cfg, applied, err := d.Apply(&base.Config)
	if err != nil {
		t.Fatal(err)
	}
	s := &snapshot.Snapshot{Revision: d.Revision, Epoch: d.Epoch, Checksum: fmt.Sprintf("delta-%d", d.Revision), Config: *cfg}
	return s, &snapshot.Change{Base: base, Touched: applied}
}

// TestChangeCompileMatchesScratch drives random sequences of deltas through
// the Applier as the syncer does (ApplyChange with the delta's Change: a
// compile of the touched routes only, compileChange) and, for each
// revision, compiles the same snapshot whole against its own previous
// table (Compile) and from scratch. The table in service must equal the
// one from scratch, and say exactly what the whole compile says was
// rejected. Most steps change routes only, some a service, the global
// section or an issuer (those compile whole); the test fails if the
// change compile did not take most route-only steps.
func TestChangeCompileMatchesScratch(t *testing.T) {
	for seed := range uint64(12) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 6))
			m := newMetaConfig(40)
			deps := testDeps()
			h := NewHandler(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: NewMetrics(prometheus.NewRegistry())})
			a := NewApplier(h, deps)
			defer a.Close()
			base := m.snapshot(t)
			if _, err := a.Apply(base); err != nil {
				t.Fatal(err)
			}
			whole, err := Compile(base, nil, deps)
			if err != nil {
				t.Fatal(err)
			}
			routeSteps, changeSteps := 0, 0
			var broken []string
			for range 80 {
				var step string
				if rng.IntN(8) == 0 {
					step = m.mutateShared(rng)
				} else {
					step = m.mutateRoutes(rng, &broken)
				}
				s, ch := deltaStep(t, m, base)
				routesOnly := len(ch.Touched.Services)+len(ch.Touched.Issuers)+len(ch.Touched.Consumers) == 0 && !ch.Touched.Global
				got, err := a.ApplyChange(s, ch)
				if err != nil {
					t.Fatalf("after %s: %v", step, err)
				}
				inc := h.Table()
				if routesOnly {
					routeSteps++
					if inc.fromChange {
						changeSteps++
					}
				} else if inc.fromChange {
					t.Fatalf("after %s: a change to more than routes was compiled on its own", step)
				}

				next, err := Compile(s, whole, deps)
				if err != nil {
					t.Fatalf("after %s: whole: %v", step, err)
				}
				whole.Retire(next)
				whole = next
				if diff := cmp.Diff(whole.Rejected(), got); diff != "" {
					t.Fatalf("after %s (from change: %v): rejected differs from the whole compile's (-whole +change):\n%s", step, inc.fromChange, diff)
				}
				scratch, err := Compile(s, nil, deps)
				if err != nil {
					t.Fatalf("after %s: scratch: %v", step, err)
				}
				sameTables(t, step, inc, scratch)
				sameStripped(t, step, inc, scratch)
				scratch.Retire(nil)
				base = s
			}
			whole.Retire(nil)
			if changeSteps*4 < routeSteps*3 {
				t.Fatalf("only %d of %d route-only deltas were compiled as a change", changeSteps, routeSteps)
			}
		})
	}
}

// sameStripped fails unless two tables strip the same client headers.
func sameStripped(t *testing.T, step string, got, want *Table) {
	t.Helper()
	if g, w := slices.Sorted(maps.Keys(got.stripped.names)), slices.Sorted(maps.Keys(want.stripped.names)); !slices.Equal(g, w) {
		t.Fatalf("after %s: strips %v, scratch strips %v", step, g, w)
	}
	if got.stripped.first != want.stripped.first {
		t.Fatalf("after %s: stripped first-byte index differs", step)
	}
}

// TestChangeCompileFallsBack: a Change that does not describe the
// snapshot (not from the table's base, or naming a route in neither
// configuration) is compiled whole, never half.
func TestChangeCompileFallsBack(t *testing.T) {
	deps := testDeps()
	m := newMetaConfig(20)
	base := m.snapshot(t)
	prev, err := Compile(base, nil, deps)
	if err != nil {
		t.Fatal(err)
	}
	defer prev.Retire(nil)
	m.mutateRoutes(rand.New(rand.NewPCG(1, 1)), new([]string))
	s, ch := deltaStep(t, m, base)
	if got := compileChange(s, ch, prev, deps); got == nil {
		t.Fatal("a route delta to the table's own base was not compiled as a change")
	}
	other := *base
	other.Checksum = "other"
	cases := map[string]*snapshot.Change{
		"another base":  {Base: &other, Touched: ch.Touched},
		"unknown route": {Base: base, Touched: &snapshot.Touched{Routes: map[string]struct{}{"no-such-route": {}}}},
		"service":       {Base: base, Touched: &snapshot.Touched{Services: map[string]struct{}{"svc1": {}}}},
		"no touched":    {Base: base},
	}
	for name, c := range cases {
		if got := compileChange(s, c, prev, deps); got != nil {
			t.Errorf("%s: compiled as a change", name)
		}
	}
}

// BenchmarkApplyChangeOneAdd is what a data plane pays per delta that adds
// one route to many: ApplyChange with the delta's Change (compare
// BenchmarkCompileOneAdd, the whole snapshot's incremental compile).
// Delta.Apply, which the syncer runs before, is not timed.
func BenchmarkApplyChangeOneAdd(b *testing.B) {
	for _, n := range []int{5000, 100000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			m := newMetaConfig(n)
			h := NewHandler(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: NewMetrics(prometheus.NewRegistry())})
			a := NewApplier(h, testDeps())
			defer a.Close()
			base := m.snapshot(b)
			if _, err := a.Apply(base); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				m.rev++
				m.addRoute()
				m.cfg.Sort()
				s, ch := deltaStep(b, m, base)
				b.StartTimer()
				if _, err := a.ApplyChange(s, ch); err != nil {
					b.Fatal(err)
				}
				if !h.Table().fromChange {
					b.Fatal("the delta was compiled whole")
				}
				base = s
			}
		})
	}
}

// BenchmarkDeltaOneAdd is a data plane's work per write that adds one
// route to many, as the syncer does it: decode the delta, Delta.Apply it
// to the applied configuration, then ApplyChange. The control plane's
// share (the delta's encoding) is not timed. Compare
// BenchmarkApplyChangeOneAdd, which leaves Delta.Apply out.
func BenchmarkDeltaOneAdd(b *testing.B) {
	for _, n := range []int{5000, 100000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			m := newMetaConfig(n)
			h := NewHandler(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: NewMetrics(prometheus.NewRegistry())})
			a := NewApplier(h, testDeps())
			defer a.Close()
			base := m.snapshot(b)
			if _, err := a.Apply(base); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				m.rev++
				m.addRoute()
				m.cfg.Sort()
				touched := snapshot.Changes(&base.Config, &m.cfg)
				raw, err := snapshot.EncodeDelta(snapshot.NewDelta(base.Revision, m.rev, base.Epoch, &m.cfg, &touched, snapshot.Digest{}, time.Unix(0, 0)))
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				d, err := snapshot.DecodeDelta(raw)
				if err != nil {
					b.Fatal(err)
				}
				cfg, applied, err := d.Apply(&base.Config)
				if err != nil {
					b.Fatal(err)
				}
				s := &snapshot.Snapshot{Revision: d.Revision, Epoch: d.Epoch, Checksum: fmt.Sprintf("delta-%d", d.Revision), Config: *cfg}
				if _, err := a.ApplyChange(s, &snapshot.Change{Base: base, Touched: applied}); err != nil {
					b.Fatal(err)
				}
				if !h.Table().fromChange {
					b.Fatal("the delta was compiled whole")
				}
				base = s
			}
		})
	}
}

// TestChangeCompileSetsEveryField guards compileChange against a field
// added to Table later: every field a whole compile of the same snapshot
// fills must be filled by the change compile too (the property test above
// compares what tables serve, not fields it does not know of).
func TestChangeCompileSetsEveryField(t *testing.T) {
	deps := testDeps()
	m := newMetaConfig(30)
	m.cfg.Global.RateLimit = &config.RateLimit{Limit: 100, Window: config.Duration(time.Minute)}
	base := m.snapshot(t)
	prev, err := Compile(base, nil, deps)
	if err != nil {
		t.Fatal(err)
	}
	defer prev.Retire(nil)
	// A new route with forwarded claims: the header counts move too.
	m.rev++
	m.addRoute()
	r := m.cfg.Routes[len(m.cfg.Routes)-1]
	r.Auth = &config.RouteAuth{JWT: true, Issuers: []string{"corp"}, ForwardClaims: map[string]string{"sub": "X-Sub"}}
	m.cfg.Sort()
	s, ch := deltaStep(t, m, base)
	got := compileChange(s, ch, prev, deps)
	if got == nil {
		t.Fatal("a one-route delta was not compiled as a change")
	}
	want, err := Compile(s, prev, deps)
	if err != nil {
		t.Fatal(err)
	}
	gv, wv := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	for i := range wv.NumField() {
		name := wv.Type().Field(i).Name
		if !wv.Field(i).IsZero() && gv.Field(i).IsZero() {
			t.Errorf("Table.%s is set by Compile but not by compileChange", name)
		}
	}
}
