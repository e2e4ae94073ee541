package proxy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/portico-gw/portico/dataplane/internal/router"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// Compiling a change. Compile, even incremental, passes over every route:
// at 100,000 routes checking each one for reuse, validating, checking the
// order and counting headers took ~60 ms of a data plane's CPU per write,
// taken from the request path. A data plane that applied a delta knows
// which objects it touched (snapshot.Change), and compileChange does work
// in proportion to those:
//
//   - it applies only when the change is to the snapshot the table in
//     service was compiled from (same revision and checksum), that table
//     holds every route of it in name order, and the change touches routes
//     (and certificates, which the table does not hold) only: a service,
//     consumer, issuer or global change reaches routes that did not change
//     themselves, which Compile's pass finds;
//   - every untouched route keeps its compiled *Route, exactly as Compile
//     would reuse it (its object, its services, issuers, verifier and the
//     global section are all unchanged), and keeps the rejection it had;
//     routes the previous table rejected are compiled again (a rejection
//     names the route's index in the configuration, which insertions
//     move; and there are few);
//   - the touched routes are validated among themselves with every other
//     object (as Compile's validateObjects does), compiled against the
//     previous route of their name, and recounted in the stripped headers;
//   - the router is kept, or updated for the touched routes
//     (router.Table.Update, index arithmetic over the rest).
//
// Anything it cannot settle on its own (too many routes touched, a name the
// change names that is in neither configuration, a route claiming what
// another claims, which the router refuses) makes it return nil, and the
// whole snapshot is compiled: compileChange never decides differently
// from Compile (TestChangeCompileMatchesScratch drives random deltas
// through both and through a compile from scratch).

// compileChange compiles s, which is ch.Base with ch.Touched changed, from
// prev, the table compiled from ch.Base; nil when it cannot (see above).
func compileChange(s *snapshot.Snapshot, ch *snapshot.Change, prev *Table, deps Deps) *Table {
	if ch == nil || ch.Base == nil || ch.Touched == nil || prev == nil || prev.router == nil || prev.headers == nil {
		return nil
	}
	tc := ch.Touched
	if !prev.sorted || prev.Revision != ch.Base.Revision || prev.Checksum != ch.Base.Checksum ||
		len(prev.routes) != len(ch.Base.Config.Routes) || prev.router.Len() != len(prev.routes) ||
		len(tc.Services)+len(tc.Consumers)+len(tc.Issuers) > 0 || tc.Global {
		return nil
	}
	cfg := &s.Config
	names := make([]string, 0, len(tc.Routes)+len(prev.rejectedRoutes))
	for n := range tc.Routes {
		names = append(names, n)
	}
	names = append(names, prev.rejectedRoutes...)
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) > maxRouterUpdate {
		return nil
	}
	p := planChange(cfg, prev, names)
	if p == nil {
		return nil
	}

	// Validate the routes to compile among themselves and with every other
	// object; field paths name their place in the whole configuration.
	shadow := config.Config{Services: cfg.Services, Consumers: cfg.Consumers, Issuers: cfg.Issuers, Global: cfg.Global}
	for _, j := range p.jobs {
		shadow.Routes = append(shadow.Routes, cfg.Routes[j.at])
	}
	in, err := shadow.ValidateObjects()
	if err != nil {
		return nil
	}
	invalid := make(map[int]string, len(in.Routes))
	for k, reason := range in.Routes {
		at := p.jobs[k].at
		invalid[at] = strings.Replace(reason, fmt.Sprintf("routes[%d]", k), fmt.Sprintf("routes[%d]", at), 1)
	}

	t := &Table{
		Revision:   s.Revision,
		Checksum:   s.Checksum,
		routes:     p.routes,
		upstreams:  prev.upstreams,
		issuers:    prev.issuers,
		verifier:   prev.verifier,
		consumers:  prev.consumers,
		limiter:    cmp.Or(deps.Limiter, prev.limiter),
		cache:      cmp.Or(deps.Cache, prev.cache),
		global:     prev.global,
		globalIP:   prev.globalIP,
		sorted:     true,
		fromChange: true,
		reused:     len(p.routes) - len(p.jobs),
	}
	deps.Limiter, deps.Cache = t.limiter, t.cache
	// Services, issuers and consumers did not change: neither did their
	// rejections, which come first in Rejected as in Compile.
	for _, r := range prev.rejected {
		if r.Kind != config.KindRoute {
			t.rejected = append(t.rejected, r)
		}
	}
	// The stripped headers are recounted for the routes that leave or
	// come, copied only when one of those carries headers (few do).
	headers, counted := prev.headers, false
	count := func(r *Route, n int) {
		if fwd, key := routeHeaders(r); len(fwd) > 0 || key != "" {
			if !counted {
				headers, counted = prev.headers.clone(), true
			}
			headers.add(r, n)
		}
	}
	for _, j := range p.jobs {
		r := cfg.Routes[j.at]
		var rt *Route
		if reason := t.routeRejection(r, invalid[j.at]); reason != "" {
			t.reject(config.KindRoute, r.Name, reason)
			rt = &Route{Name: r.Name, spec: *r, rejected: reason, MaxBodyBytes: config.DefaultMaxBodyBytes}
			rt.spec.Meta = config.Meta{}
		} else {
			rt = t.compileRoute(cfg, r, j.prev, &deps)
		}
		t.routes[j.at] = rt
		count(j.prev, -1)
		count(rt, 1)
	}
	for _, r := range p.deleted {
		count(r, -1)
	}
	t.headers, t.stripped = headers, prev.stripped
	if counted {
		t.stripped = headers.stripped()
	}

	if len(p.change.Added)+len(p.change.Removed) == 0 {
		t.router, t.reusedRouter = prev.router, true
	} else if t.router, err = prev.router.Update(p.change); err != nil {
		// A route claims what another claims (or cannot be matched): the
		// whole compile decides which one serves.
		return nil
	}
	return t
}

// CompileStats say how a table was compiled, for /status: from a change
// (the delta's touched routes only) or from the whole snapshot, and how
// many routes were compiled rather than carried over from the table before.
type CompileStats struct {
	Change bool `json:"change"`
	Routes int  `json:"routes"`
}

// CompileStats says how t was compiled.
func (t *Table) CompileStats() CompileStats {
	return CompileStats{Change: t.fromChange, Routes: len(t.routes) - t.reused}
}

// changePlan is how a change maps the previous table's routes onto the
// new configuration's.
type changePlan struct {
	// routes is the new table's route list: the previous table's untouched
	// routes in their new places, nil where a job compiles one.
	routes []*Route
	jobs   []changeJob
	// deleted are the previous table's routes the change removed.
	deleted []*Route
	change  router.Change
}

// changeJob is a route to compile: at its index in the new configuration,
// with the previous table's route of its name (nil for a new one).
type changeJob struct {
	at   int
	prev *Route
}

// planChange lines up prev's routes and cfg's around names (sorted), the
// routes to compile or delete; every other route of cfg must be prev's
// route of that place, unchanged. It returns nil when cfg does not line up
// so (the change does not describe it).
func planChange(cfg *config.Config, prev *Table, names []string) *changePlan {
	p := &changePlan{
		routes: make([]*Route, 0, len(cfg.Routes)),
		change: router.Change{Kept: make([]int, len(prev.routes)), Removed: map[int]router.Rule{}, Added: map[int]router.Rule{}, Len: len(cfg.Routes)},
	}
	pi := 0 // next route of prev to place
	// keep places prev's routes up to index to unchanged, checking the ends
	// of the run against cfg (routes in between are as in the base).
	keep := func(to int) bool {
		if to == pi {
			return true
		}
		first, n := len(p.routes), to-pi
		if first+n > len(cfg.Routes) || cfg.Routes[first].Name != prev.routes[pi].Name ||
			cfg.Routes[first+n-1].Name != prev.routes[to-1].Name {
			return false
		}
		for ; pi < to; pi++ {
			p.change.Kept[pi] = len(p.routes)
			p.routes = append(p.routes, prev.routes[pi])
		}
		return true
	}
	byName := func(r *Route, n string) int { return strings.Compare(r.Name, n) }
	for _, n := range names {
		at, inPrev := slices.BinarySearchFunc(prev.routes[pi:], n, byName)
		if !keep(pi + at) {
			return nil
		}
		var old *Route
		oldAt := pi
		if inPrev {
			old = prev.routes[pi]
			p.change.Kept[pi] = -1
			pi++
		}
		at = len(p.routes)
		if at < len(cfg.Routes) && cfg.Routes[at].Name == n {
			// Created or changed (or compiled again): its neighbours must
			// keep the order.
			if at > 0 && cfg.Routes[at-1].Name >= n || at+1 < len(cfg.Routes) && cfg.Routes[at+1].Name <= n {
				return nil
			}
			p.jobs = append(p.jobs, changeJob{at: at, prev: old})
			p.routes = append(p.routes, nil)
			// Every route of prev, rejected or not, has its rule in the
			// router (prev.router.Len() == len(prev.routes)).
			r := cfg.Routes[at]
			if old != nil {
				if sameRule(&old.spec, r) {
					p.change.Kept[oldAt] = at
					continue
				}
				p.change.Removed[oldAt] = matchRule(&old.spec)
			}
			p.change.Added[at] = matchRule(r)
			continue
		}
		if !inPrev {
			return nil // in neither configuration: not the base of cfg
		}
		p.deleted = append(p.deleted, old)
		p.change.Removed[oldAt] = matchRule(&old.spec)
	}
	if !keep(len(prev.routes)) || len(p.routes) != len(cfg.Routes) {
		return nil
	}
	return p
}

// namesSorted reports whether routes are in strictly increasing name
// order (which also means no name twice).
func namesSorted(routes []*config.Route) bool {
	for i := 1; i < len(routes); i++ {
		if routes[i-1].Name >= routes[i].Name {
			return false
		}
	}
	return true
}
