package catalog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// randomRoute draws a route from a small vocabulary, so that claims clash
// often: shared shapes with other parameter names, hosts and methods that
// overlap or not, an invalid path.
func randomRoute(rng *rand.Rand, name string, rev int64) config.Route {
	paths := []string{"/a", "/a/{x}", "/a/{y}", "/b/*", "/a/b", "no-slash", "/c/{id}/d", "/c/{k}/d"}
	hosts := []string{"h1.example", "h2.example", "*.example"}
	methods := []string{"GET", "POST"}
	r := config.Route{Name: name, Service: "s", Meta: config.Meta{Version: rev, Revision: rev}}
	for range 1 + rng.IntN(2) {
		r.Paths = append(r.Paths, paths[rng.IntN(len(paths))])
	}
	if rng.IntN(2) == 0 {
		r.Hosts = []string{hosts[rng.IntN(len(hosts))]}
	}
	if rng.IntN(2) == 0 {
		r.Methods = []string{methods[rng.IntN(len(methods))]}
	}
	return r
}

// TestShapeIndexAgreesWithCheckRoute: the route check Put runs through the
// index of path shapes gives exactly config.CheckRoute's and
// CheckRouteAuth's verdict and message, and the index advanced over a write
// is the index built from scratch.
func TestShapeIndexAgreesWithCheckRoute(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			cur := &store.State{Revision: 1, Epoch: snapshot.Epoch{ID: "e"}, Config: config.Config{Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: "http://h:1"}}}}}}
			for i := range 60 {
				cur.Config.Routes = append(cur.Config.Routes, new(randomRoute(rng, fmt.Sprintf("r%03d", i), 1)))
			}
			var x shapeIndex
			for step := range 30 {
				idx := x.at(cur)
				for k := range 20 {
					name := fmt.Sprintf("r%03d", rng.IntN(80)) // existing or new
					r := randomRoute(rng, name, cur.Revision+1)
					got := idx.checkRoute(&cur.Config, &r)
					want := errors.Join(cur.Config.CheckRoute(&r), cur.Config.CheckRouteAuth(&r))
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("step %d check %d, route %+v:\nindexed: %v\nwhole:   %v", step, k, r, got, want)
					}
				}
				// A write: some routes changed, added or deleted.
				next := &store.State{Revision: cur.Revision + 1, Epoch: cur.Epoch, Config: *nextOf(&cur.Config)}
				for range 1 + rng.IntN(3) {
					name := fmt.Sprintf("r%03d", rng.IntN(80))
					i, found := slices.BinarySearchFunc(next.Config.Routes, name, func(r *config.Route, n string) int { return cmpString(r.Name, n) })
					switch {
					case found && rng.IntN(3) == 0:
						next.Config.Routes = slices.Delete(next.Config.Routes, i, i+1)
					case found:
						next.Config.Routes[i] = new(randomRoute(rng, name, next.Revision))
					default:
						next.Config.Routes = slices.Insert(next.Config.Routes, i, new(randomRoute(rng, name, next.Revision)))
					}
				}
				touched := snapshot.Changes(&cur.Config, &next.Config)
				x.advance(cur, next, &touched)
				var fresh shapeIndex
				fresh.at(next)
				if x.shapes == nil || !reflect.DeepEqual(x.shapes, fresh.shapes) || x.rev != next.Revision {
					t.Fatalf("step %d: advanced index differs from a fresh one:\n%v\n%v", step, x.shapes, fresh.shapes)
				}
				cur = next
			}
		})
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
