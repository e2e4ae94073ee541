package proxy

import (
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"

	"github.com/portico-gw/portico/dataplane/internal/ipfilter"
	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
)

// Incremental compile. A configuration of 100,000 routes changes one route
// at a time; compiling every route again on each revision costs the data
// plane tens of milliseconds of CPU per 10,000 routes, taken from the
// request path's cores. So Compile carries over what did not change:
//
//   - A route is reused (the same *Route, pointer-equal) when the previous
//     table has a route of that name that was not rejected, the object's
//     config.Meta (version and revision, which the control plane moves on
//     every change of the object, a cache purge included) is the same and
//     not zero, and its dependencies are the same objects: every service it
//     sends to kept its *upstream.Upstream (which holds only when the
//     service's spec is unchanged), every issuer it names serves in the new
//     table (was not rejected), for a route with auth the table kept its
//     verifier (no consumer or issuer changed: the auth stage holds it),
//     and, for a route without a rate limit of its own, the global section
//     is unchanged. Objects without metadata
//     (hand-written snapshots, tests) are always rebuilt.
//   - Only new and changed routes are validated again (validateObjects),
//     with every other object and every cross-reference.
//   - The router is reused when every route kept its place and its matching
//     part (paths, methods, hosts), and otherwise updated in place of a
//     rebuild (router.Table.Update, for up to 64 routes added, deleted or
//     re-pathed): the old matcher then gives the right
//     route index for the new table. Adding, deleting or re-pathing a route
//     rebuilds it.
//
// The result equals a compile from scratch (TestIncrementalCompileMatches-
// Scratch drives random sequences of changes through both).

// validateObjects is cfg.ValidateObjects, incrementally: with a previous
// table, a route it compiled from the same object (same name, same non-zero
// metadata, not rejected) whose services did not change and whose
// references still resolve is a candidate for reuse and is not validated
// again; everything else is (every service, consumer, issuer and the
// global section, and every new or changed route, checked among
// themselves). A changed route that claims the same requests as an
// unchanged one is then caught by the router, which rejects the later one
// as validation would have. Validating 100,000 routes is most of a
// compile; a revision changes a handful.
//
// It returns the candidates by route index (nil: compile the route), for
// Table.reuser.
func validateObjects(cfg *config.Config, prev *Table) (config.InvalidObjects, []*Route, error) {
	if prev == nil {
		in, err := cfg.ValidateObjects()
		return in, nil, err
	}
	kept := make(map[string]bool, len(cfg.Services))
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		kept[svc.Name] = upstream.Reusable(prev.upstreams[svc.Name], svc)
	}
	cand := make([]*Route, len(cfg.Routes))
	shadow := config.Config{Services: cfg.Services, Consumers: cfg.Consumers, Issuers: cfg.Issuers, Global: cfg.Global}
	var index []int // shadow route → cfg route
	j := 0          // cursor in prev.routes, which is in name order too
	for i := range cfg.Routes {
		r := cfg.Routes[i]
		if i > 0 && cfg.Routes[i-1].Name >= r.Name {
			// Not in canonical order (or a duplicate name): only the
			// whole-configuration check says the right thing.
			in, err := cfg.ValidateObjects()
			return in, nil, err
		}
		for j < len(prev.routes) && prev.routes[j].Name < r.Name {
			j++
		}
		if j < len(prev.routes) {
			if old := prev.routes[j]; old.Name == r.Name && old.rejected == "" && r.Meta.Revision != 0 &&
				old.revision == r.Meta.Revision && old.version == r.Meta.Version && refsHold(cfg, r, kept) {
				cand[i] = old
				continue
			}
		}
		shadow.Routes = append(shadow.Routes, r)
		index = append(index, i)
	}
	in, err := shadow.ValidateObjects()
	if err != nil {
		return in, nil, err
	}
	routes := make(map[int]string, len(in.Routes))
	for k, reason := range in.Routes {
		// Field paths name the route's place in the whole configuration.
		routes[index[k]] = strings.Replace(reason, fmt.Sprintf("routes[%d]", k), fmt.Sprintf("routes[%d]", index[k]), 1)
	}
	in.Routes = routes
	return in, cand, nil
}

// refsHold says whether the services route r names exist unchanged (kept)
// and the issuers it names exist.
func refsHold(cfg *config.Config, r *config.Route, kept map[string]bool) bool {
	if r.Service != "" && !kept[r.Service] {
		return false
	}
	for k := range r.Aggregate {
		if !kept[r.Aggregate[k].Service] {
			return false
		}
	}
	for k := range r.Split {
		if !kept[r.Split[k].Service] {
			return false
		}
	}
	if r.Mirror != nil && !kept[r.Mirror.Service] {
		return false
	}
	if r.Auth != nil {
		for _, name := range r.Auth.Issuers {
			if _, ok := cfg.Issuer(name); !ok {
				return false
			}
		}
	}
	return true
}

// yieldEvery is how many routes Compile builds between two runtime.Gosched
// calls, so that a long compile does not hold a core for its whole length
// while requests wait in the run queue.
const yieldEvery = 256

// reuser decides which compiled routes of the previous table carry over.
type reuser struct {
	prev *Table
	cand []*Route
	// globalSame: the global section (the rate limit routes without one
	// inherit) did not change.
	globalSame bool
	// globalIPSame: the global IP rules, which every route's stage holds,
	// did not change (when they did, no route carries over).
	globalIPSame bool
	t            *Table
}

func (t *Table) reuser(prev *Table, cand []*Route, cfg *config.Config) *reuser {
	t.global = cfg.Global
	ipSame := prev != nil && reflect.DeepEqual(prev.global.IP, cfg.Global.IP)
	if ipSame {
		t.globalIP = prev.globalIP
	} else {
		t.globalIP = ipfilter.CompileRules(cfg.Global.IP)
	}
	return &reuser{prev: prev, cand: cand, t: t,
		globalSame: prev != nil && reflect.DeepEqual(prev.global, cfg.Global), globalIPSame: ipSame}
}

// route returns the previous table's compiled route for route i when it
// can serve unchanged in the new table, nil otherwise. invalid is r's
// validation failure, if any. Calls come in route order; every so often it
// yields the processor (see yieldEvery).
func (u *reuser) route(i int, r *config.Route, invalid string) *Route {
	if i%yieldEvery == yieldEvery-1 {
		runtime.Gosched()
	}
	if u.cand == nil || u.cand[i] == nil || invalid != "" {
		return nil
	}
	if r.RateLimit == nil && !u.globalSame || !u.globalIPSame {
		return nil
	}
	// The candidate's services kept their spec; it must also hold the
	// very Upstream this table uses for them.
	old := u.cand[i]
	if !u.sameUpstream(r.Service) {
		return nil
	}
	for k := range r.Aggregate {
		if !u.sameUpstream(r.Aggregate[k].Service) {
			return nil
		}
	}
	for k := range r.Split {
		if !u.sameUpstream(r.Split[k].Service) {
			return nil
		}
	}
	if r.Mirror != nil && !u.sameUpstream(r.Mirror.Service) {
		return nil
	}
	if r.Auth != nil {
		// The auth stage verifies with the verifier of the table it was
		// compiled for: a new one (a consumer, a key or an issuer changed)
		// means a new stage.
		if u.t.verifier != u.prev.verifier {
			return nil
		}
		// An issuer the route names may have been rejected in this table:
		// then the route must be rebuilt to answer 503 (routeRejection).
		for _, name := range r.Auth.Issuers {
			if u.t.issuers[name] == nil {
				return nil
			}
		}
	}
	u.t.reused++
	return old
}

// sameUpstream says whether the named service (none: "") kept its
// Upstream. It does not allocate: it runs once per route per compile.
func (u *reuser) sameUpstream(name string) bool {
	if name == "" {
		return true
	}
	up := u.t.upstreams[name]
	return up != nil && up == u.prev.upstreams[name]
}

// matcher returns the router of t's routes (each one's matching part is
// in its spec): the previous table's when every route kept its index and
// its matching part, a new one otherwise. The rules are built only then:
// at 100,000 routes they are megabytes.
func (t *Table) matcher(prev *Table) (*router.Table, error) {
	if prev != nil && prev.router != nil && len(prev.routes) == len(t.routes) {
		same := true
		for i, r := range t.routes {
			o := prev.routes[i]
			if o != r && (o.Name != r.Name || !sameRule(&o.spec, &r.spec)) {
				same = false
				break
			}
		}
		if same {
			t.reusedRouter = true
			return prev.router, nil
		}
	}
	if rt := t.updateRouter(prev); rt != nil {
		return rt, nil
	}
	rules := make([]router.Rule, len(t.routes))
	for i, r := range t.routes {
		rules[i] = matchRule(&r.spec)
	}
	return t.compileRouter(rules)
}

// maxRouterUpdate is the most rules added or removed for which the
// previous router is updated rather than compiled again.
const maxRouterUpdate = 64

// updateRouter returns the previous table's router updated for t's routes
// (router.Table.Update: only the paths of the routes added, deleted or
// re-pathed are copied), or nil when a compile from scratch is due: no
// previous router, routes not in name order, many changes, or a change the
// update refuses (a conflict, which the full compile turns into a
// rejection).
func (t *Table) updateRouter(prev *Table) *router.Table {
	if prev == nil || prev.router == nil || prev.router.Len() != len(prev.routes) || !prev.sorted || !t.sorted {
		return nil
	}
	rule := func(r *Route) router.Rule {
		return matchRule(&r.spec)
	}
	c := router.Change{Kept: make([]int, len(prev.routes)), Removed: map[int]router.Rule{}, Added: map[int]router.Rule{}, Len: len(t.routes)}
	i, j := 0, 0
	for i < len(prev.routes) || j < len(t.routes) {
		if len(c.Removed)+len(c.Added) > maxRouterUpdate {
			return nil
		}
		switch {
		case j == len(t.routes) || i < len(prev.routes) && prev.routes[i].Name < t.routes[j].Name:
			c.Kept[i], c.Removed[i] = -1, rule(prev.routes[i])
			i++
		case i == len(prev.routes) || t.routes[j].Name < prev.routes[i].Name:
			c.Added[j] = rule(t.routes[j])
			j++
		default:
			if o, r := prev.routes[i], t.routes[j]; o == r || sameRule(&o.spec, &r.spec) {
				c.Kept[i] = j
			} else {
				c.Kept[i], c.Removed[i], c.Added[j] = -1, rule(o), rule(r)
			}
			i++
			j++
		}
	}
	rt, err := prev.router.Update(c)
	if err != nil {
		return nil
	}
	return rt
}

// sameRule reports whether two route specs have the same matching part.
func sameRule(a, b *config.Route) bool {
	return slices.Equal(a.Paths, b.Paths) && slices.Equal(a.Methods, b.Methods) && slices.Equal(a.Hosts, b.Hosts) && sameMatch(a, b)
}

// routeLookup returns a function that finds a route of t by name (nil for
// a nil table). Routes come in name order from the control plane, so it
// searches in place rather than building an index of every route per
// compile; a table compiled from an unordered snapshot gets a map.
func (t *Table) routeLookup() func(string) *Route {
	if t == nil {
		return func(string) *Route { return nil }
	}
	if !t.sorted {
		m := t.routesByName()
		return func(name string) *Route { return m[name] }
	}
	return func(name string) *Route {
		i, ok := slices.BinarySearchFunc(t.routes, name, func(r *Route, n string) int { return strings.Compare(r.Name, n) })
		if !ok {
			return nil
		}
		return t.routes[i]
	}
}

// Reused reports how many routes of t were carried over unchanged from the
// table it was compiled against, and whether its router was.
func (t *Table) Reused() (routes int, router bool) { return t.reused, t.reusedRouter }
