package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/portico-gw/portico/shared/config"
)

// history is a configuration edited the way the control plane edits one:
// each write moves the changed object's version and revision.
type history struct {
	cfg  config.Config
	rev  int64
	next int
}

func (h *history) touch(m *config.Meta) {
	m.Version++
	m.Revision = h.rev
	m.UpdatedAt = time.Unix(h.rev, 0).UTC()
}

func (h *history) write(rng *rand.Rand) {
	h.rev++
	c := &h.cfg
	switch op := rng.IntN(8); {
	case op == 0 || len(c.Routes) == 0:
		r := config.Route{Name: fmt.Sprintf("r%03d", h.next), Paths: []string{fmt.Sprintf("/r%d", h.next)}, Service: c.Services[h.next%len(c.Services)].Name}
		h.next++
		h.touch(&r.Meta)
		c.Routes = append(c.Routes, &r)
	case op == 1:
		i := rng.IntN(len(c.Routes))
		c.Routes = slices.Delete(c.Routes, i, i+1)
	case op == 2:
		k := rng.IntN(len(c.Routes))
		r := *c.Routes[k] // routes are shared between revisions: change a copy
		r.Timeout = config.Duration(time.Duration(rng.IntN(50)+1) * time.Second)
		h.touch(&r.Meta)
		c.Routes[k] = &r
	case op == 3:
		s := &c.Services[rng.IntN(len(c.Services))]
		s.Targets = []config.Target{{URL: fmt.Sprintf("http://10.0.0.%d:80", h.rev%250)}}
		h.touch(&s.Meta)
	case op == 4:
		cs := config.Consumer{Name: fmt.Sprintf("c%03d", h.next), Groups: []string{"g"}}
		h.next++
		h.touch(&cs.Meta)
		c.Consumers = append(c.Consumers, cs)
	case op == 5 && len(c.Consumers) > 0:
		i := rng.IntN(len(c.Consumers))
		c.Consumers = slices.Delete(c.Consumers, i, i+1)
	case op == 6:
		c.Global.RateLimit = &config.RateLimit{Limit: int(h.rev), Window: config.Duration(time.Minute)}
	default:
		// Delete a route and create another of the same name.
		i := rng.IntN(len(c.Routes))
		r := config.Route{Name: c.Routes[i].Name, Paths: []string{fmt.Sprintf("/again%d", h.rev)}, Service: c.Services[0].Name}
		h.touch(&r.Meta)
		r.Meta.Version = 1
		c.Routes[i] = &r
	}
	c.Sort()
}

// roundTrip is cfg as a data plane holds it: decoded from the JSON the
// control plane sent.
func roundTrip(t *testing.T, cfg *config.Config) *config.Config {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out config.Config
	if err := config.Decode(raw, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDeltaReproducesConfig: over random write sequences, the delta from
// any earlier revision, sent as JSON and applied to that revision's
// configuration as a data plane holds it, gives exactly the later
// configuration, and the digest advanced over the touched objects is the
// digest of the whole result.
func TestDeltaReproducesConfig(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			h := &history{rev: 1}
			for i := range 3 {
				s := config.Service{Name: fmt.Sprintf("s%d", i), Targets: []config.Target{{URL: "http://10.0.0.1:80"}}}
				h.touch(&s.Meta)
				h.cfg.Services = append(h.cfg.Services, s)
			}
			type rev struct {
				n   int64
				cfg *config.Config
			}
			var past []rev
			for range 40 {
				past = append(past, rev{h.rev, h.cfg.Clone()})
				h.write(rng)
				cur := h.cfg.Clone()
				want, err := DigestOf(cur)
				if err != nil {
					t.Fatal(err)
				}
				// From the previous revision and from a random older one.
				for _, b := range []rev{past[len(past)-1], past[rng.IntN(len(past))]} {
					touched := Changes(b.cfg, cur)
					raw, err := EncodeDelta(NewDelta(b.n, h.rev, Epoch{ID: "e"}, cur, &touched, want, time.Unix(0, 0)))
					if err != nil {
						t.Fatal(err)
					}
					d, err := DecodeDelta(raw)
					if err != nil {
						t.Fatal(err)
					}
					dpBase := roundTrip(t, b.cfg)
					got, applied, err := d.Apply(dpBase)
					if err != nil {
						t.Fatalf("%d..%d: %v", b.n, h.rev, err)
					}
					if g, w := jsonOf(t, got), jsonOf(t, cur); g != w {
						t.Fatalf("%d..%d: delta gives\n%s\nwant\n%s", b.n, h.rev, g, w)
					}
					baseDigest, err := DigestOf(dpBase)
					if err != nil {
						t.Fatal(err)
					}
					adv, err := baseDigest.Advance(dpBase, got, applied)
					if err != nil {
						t.Fatal(err)
					}
					if adv.String() != d.Digest || adv != want {
						t.Fatalf("%d..%d: advanced digest %s, delta says %s, whole config %s", b.n, h.rev, adv, d.Digest, want)
					}
					if jsonOf(t, dpBase) != jsonOf(t, roundTrip(t, b.cfg)) {
						t.Fatalf("%d..%d: Apply changed its base", b.n, h.rev)
					}
				}
			}
		})
	}
}

// TestDeltaRefusesWrongBase: a delta applied to a base it was not made for
// fails to apply or fails the digest, never passes silently.
func TestDeltaRefusesWrongBase(t *testing.T) {
	mk := func(routes ...string) *config.Config {
		c := &config.Config{Services: []config.Service{{Name: "s", Meta: config.Meta{Version: 1, Revision: 1}}}}
		for i, r := range routes {
			c.Routes = append(c.Routes, &config.Route{Name: r, Paths: []string{"/" + r}, Service: "s", Meta: config.Meta{Version: 1, Revision: int64(2 + i)}})
		}
		return c
	}
	base, next := mk("a", "b"), mk("a", "c")
	next.Routes[1].Meta.Revision = 9
	touched := Changes(base, next)
	dg, _ := DigestOf(next)
	d := NewDelta(3, 9, Epoch{}, next, &touched, dg, time.Unix(0, 0))
	if !slices.Equal(d.Deleted.Routes, []string{"b"}) || len(d.Routes) != 1 || d.Routes[0].Name != "c" {
		t.Fatalf("delta = %+v, want route c upserted and b deleted", d)
	}
	cases := []struct {
		name string
		base *config.Config
	}{
		{"a base without the deleted route", mk("a")},
		{"a base with an extra route", mk("a", "b", "x")},
		{"a base where a route differs", func() *config.Config { c := mk("a", "b"); c.Routes[0].StripPrefix = true; return c }()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, applied, err := d.Apply(tc.base)
			if err != nil {
				return // refused outright
			}
			bd, _ := DigestOf(tc.base)
			adv, err := bd.Advance(tc.base, got, applied)
			if err != nil {
				t.Fatal(err)
			}
			if adv.String() == d.Digest {
				t.Fatalf("applied to the wrong base, the digest still matches")
			}
		})
	}
	if _, err := DecodeDelta([]byte(`{"base":3,"revision":2,"digest":"` + dg.String() + `"}`)); err == nil {
		t.Fatal("a delta going back in revisions decoded")
	}
	if _, err := ParseDigest("sha256:00"); err == nil || errors.Is(err, ErrDigest) {
		t.Fatalf("ParseDigest of a malformed digest: %v", err)
	}
}

// TestComposeEqualsSteps: the deltas of consecutive revisions, composed
// from any earlier revision, apply to that revision's configuration (as a
// data plane holds it) to give exactly the later one and its digest, as
// applying them one by one does. Objects created and deleted in between
// leave no trace.
func TestComposeEqualsSteps(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			h := &history{rev: 1}
			for i := range 3 {
				s := config.Service{Name: fmt.Sprintf("s%d", i), Targets: []config.Target{{URL: "http://10.0.0.1:80"}}}
				h.touch(&s.Meta)
				h.cfg.Services = append(h.cfg.Services, s)
			}
			var cfgs []*config.Config // cfgs[i] at revision i+1
			var steps []*Delta        // steps[i] from revision i+1 to i+2
			cfgs = append(cfgs, h.cfg.Clone())
			for range 40 {
				prev := cfgs[len(cfgs)-1]
				h.write(rng)
				cur := h.cfg.Clone()
				dg, err := DigestOf(cur)
				if err != nil {
					t.Fatal(err)
				}
				touched := Changes(prev, cur)
				raw, err := EncodeDelta(NewDelta(h.rev-1, h.rev, Epoch{ID: "e"}, cur, &touched, dg, time.Unix(h.rev, 0)))
				if err != nil {
					t.Fatal(err)
				}
				d, err := DecodeDelta(raw)
				if err != nil {
					t.Fatal(err)
				}
				steps = append(steps, d)
				cfgs = append(cfgs, cur)
			}
			for range 20 {
				from := rng.IntN(len(steps))
				to := from + 1 + rng.IntN(len(steps)-from)
				base := roundTrip(t, cfgs[from])
				c, err := Compose(base, steps[from:to])
				if err != nil {
					t.Fatal(err)
				}
				got, applied, err := c.Apply(base)
				if err != nil {
					t.Fatalf("%d..%d: %v", from+1, to+1, err)
				}
				if g, w := jsonOf(t, got), jsonOf(t, cfgs[to]); g != w {
					t.Fatalf("%d..%d: composed delta gives\n%s\nwant\n%s", from+1, to+1, g, w)
				}
				bd, err := DigestOf(base)
				if err != nil {
					t.Fatal(err)
				}
				if adv, err := bd.Advance(base, got, applied); err != nil || adv.String() != c.Digest {
					t.Fatalf("%d..%d: advanced digest %s (%v), composed delta says %s", from+1, to+1, adv, err, c.Digest)
				}
			}
			if _, err := Compose(&h.cfg, []*Delta{steps[0], steps[2]}); err == nil {
				t.Fatal("composed deltas that do not follow each other")
			}
		})
	}
}

// BenchmarkApplyOneRoute is a data plane applying a delta of one changed
// and one added route to 100,000.
func BenchmarkApplyOneRoute(b *testing.B) {
	base := &config.Config{Services: []config.Service{{Name: "s"}}}
	for i := range 100_000 {
		base.Routes = append(base.Routes, &config.Route{Name: fmt.Sprintf("r%06d", i), Paths: []string{fmt.Sprintf("/r%d", i)}, Service: "s"})
	}
	changed := base.Routes[50_000]
	changed.Timeout = config.Duration(time.Second)
	d := &Delta{Base: 1, Revision: 2, Routes: []*config.Route{changed, {Name: "r050000x", Paths: []string{"/x"}, Service: "s"}}, Deleted: Deleted{Routes: []string{"r000007"}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := d.Apply(base); err != nil {
			b.Fatal(err)
		}
	}
}
