package catalog

import (
	"errors"
	"slices"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// A route written through Put is checked against every other route for
// requests claimed twice (config.CheckRoute), which takes the path shape
// of every route and a map of all their claims: at 100,000 routes, tens of
// milliseconds per write, more than the rest of it. Two routes can only
// claim the same request if they have a path of the same shape
// (config.PathShape), so the catalog keeps, for the published revision, the
// names of the routes with each shape, updated with what each write
// touched, and runs CheckRoute against those routes only: the same routes
// in the same order as far as the claims of the checked route go, so the
// same verdict and the same message (TestShapeIndexAgreesWithCheckRoute).

// shapeIndex maps each path shape to the routes that have a path of it, for
// one published revision. Only the writer (under writeMu) uses it.
type shapeIndex struct {
	epoch  string
	rev    int64
	shapes map[string]map[string]struct{}
}

// shapesOf lists the shapes of r's valid paths (an invalid path claims
// nothing).
func shapesOf(r *config.Route) []string {
	var out []string
	for _, p := range r.Paths {
		if s, err := config.PathShape(p); err == nil && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (x *shapeIndex) add(r *config.Route) {
	for _, s := range shapesOf(r) {
		m := x.shapes[s]
		if m == nil {
			m = map[string]struct{}{}
			x.shapes[s] = m
		}
		m[r.Name] = struct{}{}
	}
}

func (x *shapeIndex) remove(r *config.Route) {
	for _, s := range shapesOf(r) {
		if m := x.shapes[s]; m != nil {
			delete(m, r.Name)
			if len(m) == 0 {
				delete(x.shapes, s)
			}
		}
	}
}

// at returns the index of st, rebuilding it when it is of another revision.
func (x *shapeIndex) at(st *store.State) *shapeIndex {
	if x.shapes != nil && x.rev == st.Revision && x.epoch == st.Epoch.ID {
		return x
	}
	*x = shapeIndex{epoch: st.Epoch.ID, rev: st.Revision, shapes: map[string]map[string]struct{}{}}
	for _, r := range st.Config.Routes {
		x.add(r)
	}
	return x
}

// advance moves the index from old to next, the revision committed after
// it, given what next touched; any other step drops it (rebuilt on use).
func (x *shapeIndex) advance(old, next *store.State, t *snapshot.Touched) {
	if x.shapes == nil || x.rev != old.Revision || x.epoch != old.Epoch.ID || next.Epoch.ID != old.Epoch.ID || t == nil {
		x.shapes = nil
		return
	}
	for name := range t.Routes {
		if r, ok := old.Config.Route(name); ok {
			x.remove(r)
		}
		if r, ok := next.Config.Route(name); ok {
			x.add(r)
		}
	}
	x.rev = next.Revision
}

// checkRoute is config.CheckRoute and CheckRouteAuth of r in cfg, the
// configuration of the revision x indexes (plus, at most, r itself).
func (x *shapeIndex) checkRoute(cfg *config.Config, r *config.Route) error {
	var names []string
	for _, s := range shapesOf(r) {
		for n := range x.shapes[s] {
			if n != r.Name && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names) // the configuration's order
	shadow := config.Config{Services: cfg.Services, Consumers: cfg.Consumers, Issuers: cfg.Issuers,
		Certificates: cfg.Certificates, Global: cfg.Global, Routes: make([]*config.Route, 0, len(names))}
	for _, n := range names {
		if o, ok := cfg.Route(n); ok {
			shadow.Routes = append(shadow.Routes, o)
		}
	}
	return errors.Join(shadow.CheckRoute(r), cfg.CheckRouteAuth(r))
}
