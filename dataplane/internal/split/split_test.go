package split

import (
	"fmt"
	"math"
	"net/http"
	"testing"

	"github.com/portico-gw/portico/dataplane/internal/stage"
	"github.com/portico-gw/portico/dataplane/internal/upstream"
	"github.com/portico-gw/portico/shared/config"
)

func compile(t *testing.T, sticky string, weights ...int) *Split {
	t.Helper()
	r := &config.Route{Sticky: sticky}
	ups := map[string]*upstream.Upstream{}
	for i, w := range weights {
		name := fmt.Sprintf("v%d", i+1)
		r.Split = append(r.Split, config.SplitBackend{Service: name, Weight: w})
		ups[name] = &upstream.Upstream{Name: name}
	}
	return Compile(r, ups)
}

// TestPointIsStable: the hash is part of the contract between data planes
// and between versions (a changed hash moves every sticky user at the
// next upgrade), so its values are pinned.
func TestPointIsStable(t *testing.T) {
	for key, want := range map[string]uint64{"": 0xf52a15e9a9b5e89b, "alice": 0xc5d1556d66774a5c, "user-1": 0xc499b5f8a721df58} {
		if got := Point(key); got != want {
			t.Errorf("Point(%q) = %#x, pinned %#x: every sticky key would move", key, got, want)
		}
	}
}

// TestWeightsWithoutKey: random points give each backend its share.
func TestWeightsWithoutKey(t *testing.T) {
	s := compile(t, "", 90, 10, 0)
	const n = 200_000
	counts := make([]int, 3)
	req := &stage.Request{R: &http.Request{Header: http.Header{}}}
	for range n {
		counts[s.index(s.key(req))]++
	}
	// 5 standard deviations of a binomial: fails by chance about once in
	// 3.5 million runs.
	sd := math.Sqrt(n * 0.9 * 0.1)
	if d := math.Abs(float64(counts[1]) - n*0.1); d > 5*sd {
		t.Fatalf("v2 got %d of %d, want %d ± %.0f", counts[1], n, n/10, 5*sd)
	}
	if counts[2] != 0 {
		t.Fatalf("a drained backend got %d requests", counts[2])
	}
}

// TestStickyKeysMoveOnlyAcrossTheBoundary: a key stays with its backend
// while the weights allow; moving 90/10 to 50/50 moves keys from v1 to v2
// only, about 40% of them, and back again when the weights return.
func TestStickyKeysMoveOnlyAcrossTheBoundary(t *testing.T) {
	before, after := compile(t, "header:X-User", 90, 10), compile(t, "header:x-user", 50, 50)
	const n = 50_000
	moved := 0
	onV2 := 0
	for i := range n {
		key := fmt.Sprintf("user-%d", i)
		req := &stage.Request{R: &http.Request{Header: http.Header{"X-User": {key}}}}
		a, b := before.Choose(req).Name, after.Choose(req).Name
		if a != before.Choose(req).Name {
			t.Fatalf("%s: not deterministic", key)
		}
		switch {
		case a == "v2" && b != "v2":
			t.Fatalf("%s left v2 when v2 grew", key)
		case a != b:
			moved++
		}
		if a == "v2" {
			onV2++
		}
		if back := before.Choose(req).Name; back != a {
			t.Fatalf("%s did not return to %s", key, a)
		}
	}
	if f := float64(onV2) / n; math.Abs(f-0.1) > 0.01 {
		t.Fatalf("%.3f of keys on v2 at 90/10", f)
	}
	if f := float64(moved) / n; math.Abs(f-0.4) > 0.01 {
		t.Fatalf("%.3f of keys moved from 90/10 to 50/50, want 0.4", f)
	}
}

func TestStickyKeys(t *testing.T) {
	cases := []struct {
		sticky string
		req    *stage.Request
		want   string
	}{
		{"consumer", &stage.Request{Identity: &stage.Identity{Consumer: "alice"}}, "alice"},
		{"consumer", &stage.Request{}, ""},
		{"header:X-User", &stage.Request{R: &http.Request{Header: http.Header{"X-User": {"u1", "u2"}}}}, "u1"},
		{"cookie:uid", &stage.Request{R: &http.Request{Header: http.Header{"Cookie": {"a=1; uid=\"u7\"; uid=u8"}}}}, "u7"},
		{"cookie:uid", &stage.Request{R: &http.Request{Header: http.Header{"Cookie": {"a=1"}}}}, ""},
	}
	for _, c := range cases {
		s := compile(t, c.sticky, 1, 1)
		if got := s.key(c.req); got != c.want {
			t.Errorf("%s: key %q, want %q", c.sticky, got, c.want)
		}
	}
}

func TestChooseDoesNotAllocate(t *testing.T) {
	s := compile(t, "cookie:uid", 3, 1)
	req := &stage.Request{R: &http.Request{Header: http.Header{"Cookie": {"a=1; uid=42"}}}}
	if n := testing.AllocsPerRun(100, func() { s.Choose(req) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
