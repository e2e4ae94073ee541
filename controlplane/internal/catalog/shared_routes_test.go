package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

// TestDeltasOfSharedRoutes: random writes through the catalog (routes
// created, changed, deleted, cache-purged, refused; a service changed; now
// and then a small import), whose revisions share the routes they did not
// touch. After each, the delta from the previous revision, encoded and
// decoded, applied to the configuration a data plane built from the deltas
// so far (which shares routes between revisions too), gives the catalog's
// configuration byte for byte with the digest the delta names, and every
// revision seen so far still encodes as it did when it was published.
func TestDeltasOfSharedRoutes(t *testing.T) {
	ctx := context.Background()
	actor := Actor{Principal: "test"}
	for seed := range uint64(4) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 21))
			c := newBoltCatalog(t)
			seedPaths(t, c, 40, "/p")
			name := func() string { return fmt.Sprintf("r%06d", rng.IntN(60)) }
			encode := func(cfg *config.Config) string {
				b, err := json.Marshal(cfg)
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			dp := c.Current().State.Config.Clone() // the data plane's applied configuration
			var published []*config.Config
			var encoded []string
			for step := range 150 {
				prev := c.Current()
				var err error
				switch op := rng.IntN(10); {
				case op < 4: // create or change a route
					r := config.Route{Name: name(), Paths: []string{fmt.Sprintf("/s%d/%d", step, rng.IntN(3))}, Service: "s"}
					if rng.IntN(3) == 0 {
						r.Cache = &config.RouteCache{TTL: config.Duration(60e9)}
					}
					_, err = Put(ctx, c, Routes, r, Upsert, Precondition{}, actor)
				case op < 6:
					_, err = Delete(ctx, c, Routes, name(), Precondition{}, actor)
				case op == 6:
					_, _, err = c.PurgeRouteCache(ctx, name(), Precondition{}, actor)
				case op == 7: // refused: claims another route's path
					if rs := prev.State.Config.Routes; len(rs) > 1 {
						r := *rs[rng.IntN(len(rs))]
						r.Name, r.Meta = name()+"x", config.Meta{}
						_, err = Put(ctx, c, Routes, r, Upsert, Precondition{}, actor)
					}
				case op == 8:
					_, err = Put(ctx, c, Services, config.Service{Name: "s", Targets: []config.Target{{URL: fmt.Sprintf("http://h:%d", 1+rng.IntN(9))}}}, Upsert, Precondition{}, actor)
				default: // an import keeping most routes, changing a few
					want := prev.State.Config.Clone()
					for _, r := range want.Routes {
						if rng.IntN(8) == 0 {
							r.Paths = []string{fmt.Sprintf("/i%d/%s", step, r.Name)}
						}
					}
					_, err = c.Import(ctx, want, false, nil, actor)
				}
				_ = err // refusals (not found, conflicts, no cache) are part of the sequence
				cur := c.Current()
				published = append(published, &cur.State.Config)
				encoded = append(encoded, encode(&cur.State.Config))
				if cur.State.Revision == prev.State.Revision {
					continue
				}
				raw, err := c.Delta(cur, prev.State.Revision, cur.State.Epoch.ID)
				if err != nil {
					t.Fatal(err)
				}
				if raw == nil { // a bulk change: the data plane takes the snapshot
					dp = cur.State.Config.Clone()
					continue
				}
				d, err := snapshot.DecodeDelta(raw)
				if err != nil {
					t.Fatal(err)
				}
				got, touched, err := d.Apply(dp)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				from, _ := snapshot.DigestOf(dp)
				adv, err := from.Advance(dp, got, touched)
				if err != nil {
					t.Fatal(err)
				}
				if adv.String() != d.Digest {
					t.Fatalf("step %d: advanced digest %s, the delta says %s", step, adv, d.Digest)
				}
				if g, w := encode(got), encode(&cur.State.Config); g != w {
					t.Fatalf("step %d: delta-applied configuration differs from the catalog's:\n%s\n%s", step, g, w)
				}
				if !config.RoutesInOrder(got.Routes, nil) {
					t.Fatalf("step %d: routes out of order", step)
				}
				dp = got
			}
			for i, cfg := range published {
				if encode(cfg) != encoded[i] {
					t.Fatalf("published revision %d changed after later writes", i)
				}
			}
		})
	}
}
