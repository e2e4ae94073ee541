package catalog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/portico-gw/portico/controlplane/internal/store"
	"github.com/portico-gw/portico/shared/config"
	"github.com/portico-gw/portico/shared/snapshot"
)

func newBoltCatalog(t testing.TB) *Catalog {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := New(context.Background(), st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func seed(t testing.TB, c *Catalog, routes int) { seedPaths(t, c, routes, "/p") }

func seedPaths(t testing.TB, c *Catalog, routes int, prefix string) {
	t.Helper()
	cfg := &config.Config{Services: []config.Service{{Name: "s", Targets: []config.Target{{URL: "http://h:1"}}}}}
	for i := range routes {
		cfg.Routes = append(cfg.Routes, &config.Route{Name: fmt.Sprintf("r%06d", i), Paths: []string{fmt.Sprintf("%s%d", prefix, i)}, Service: "s"})
	}
	if _, err := c.Import(context.Background(), cfg, false, nil, Actor{Principal: "test"}); err != nil {
		t.Fatal(err)
	}
}

// TestHistoryDeltas: after writes through the catalog, the delta from
// each earlier revision applied to that revision's configuration gives the
// current one with the digest the delta names; a base the history does not
// start a step at, another epoch, or a bulk change get no delta.
func TestHistoryDeltas(t *testing.T) {
	ctx := context.Background()
	c := newBoltCatalog(t)
	seed(t, c, 10)
	actor := Actor{Principal: "test"}
	past := map[int64]*config.Config{}
	note := func() { p := c.Current(); past[p.State.Revision] = p.State.Config.Clone() }
	note()
	writes := []func() error{
		func() error {
			_, err := Put(ctx, c, Routes, config.Route{Name: "new", Paths: []string{"/new"}, Service: "s"}, Upsert, Precondition{}, actor)
			return err
		},
		func() error { _, err := Delete(ctx, c, Routes, "r000003", Precondition{}, actor); return err },
		func() error {
			_, err := Put(ctx, c, Services, config.Service{Name: "s", Targets: []config.Target{{URL: "http://h:2"}}}, Upsert, Precondition{}, actor)
			return err
		},
		func() error {
			_, err := Put(ctx, c, Routes, config.Route{Name: "r000003", Paths: []string{"/back"}, Service: "s"}, Upsert, Precondition{}, actor)
			return err
		},
	}
	for _, w := range writes {
		if err := w(); err != nil {
			t.Fatal(err)
		}
		note()
	}
	cur := c.Current()
	want, err := snapshot.DigestOf(&cur.State.Config)
	if err != nil {
		t.Fatal(err)
	}
	for base, cfg := range past {
		raw, err := c.Delta(cur, base, cur.State.Epoch.ID)
		if err != nil {
			t.Fatal(err)
		}
		if base == cur.State.Revision {
			if raw != nil {
				t.Fatalf("a delta from the current revision to itself")
			}
			continue
		}
		if raw == nil {
			t.Fatalf("no delta from revision %d to %d", base, cur.State.Revision)
		}
		d, err := snapshot.DecodeDelta(raw)
		if err != nil {
			t.Fatal(err)
		}
		got, touched, err := d.Apply(cfg)
		if err != nil {
			t.Fatal(err)
		}
		bd, _ := snapshot.DigestOf(cfg)
		adv, err := bd.Advance(cfg, got, touched)
		if err != nil {
			t.Fatal(err)
		}
		if d.Digest != want.String() || adv != want {
			t.Fatalf("delta %d..%d: digest %s, advanced %s, want %s", base, d.Revision, d.Digest, adv, want)
		}
		if g, _ := snapshot.DigestOf(got); g != want {
			t.Fatalf("delta %d..%d does not reproduce the configuration", base, d.Revision)
		}
	}
	for _, tc := range []struct {
		name  string
		base  int64
		epoch string
	}{
		{"another epoch", cur.State.Revision - 1, cur.State.Epoch.ID + "x"},
		{"a revision before the history", 0, cur.State.Epoch.ID},
		{"a revision after the current one", cur.State.Revision + 1, cur.State.Epoch.ID},
	} {
		if raw, err := c.Delta(cur, tc.base, tc.epoch); raw != nil || err != nil {
			t.Errorf("%s: delta %q, %v; want none", tc.name, raw, err)
		}
	}
	// A bulk change starts the history over: older bases get no delta.
	seedPaths(t, c, 12, "/q")
	cur = c.Current()
	if raw, _ := c.Delta(cur, cur.State.Revision-1, cur.State.Epoch.ID); raw != nil {
		t.Fatal("a delta across a bulk import")
	}
}

// BenchmarkWriteOneRoute is an admin write of one route into a catalog of
// many, on the bolt store: what a write costs the control plane before any
// data plane hears of it.
func BenchmarkWriteOneRoute(b *testing.B) {
	for _, n := range []int{5000, 100000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			c := newBoltCatalog(b)
			seed(b, c, n)
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r := config.Route{Name: fmt.Sprintf("w%06d", i), Paths: []string{fmt.Sprintf("/w%d", i)}, Service: "s"}
				if _, err := Put(ctx, c, Routes, r, Upsert, Precondition{}, Actor{Principal: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
