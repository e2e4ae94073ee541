package config

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSortByName: Sort leaves a list in name order as it is and sorts any
// other, wherever the first object out of order is.
func TestSortByName(t *testing.T) {
	cases := []struct {
		name string
		in   []string
	}{
		{"empty", nil},
		{"one", []string{"a"}},
		{"sorted", []string{"a", "b", "c", "d"}},
		{"reversed", []string{"d", "c", "b", "a"}},
		{"last out of place", []string{"b", "c", "d", "a"}},
		{"first out of place", []string{"d", "a", "b", "c"}},
		{"duplicate", []string{"b", "a", "b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{}
			for _, n := range tc.in {
				c.Routes = append(c.Routes, &Route{Name: n})
				c.Services = append(c.Services, Service{Name: n})
			}
			c.Sort()
			want := slices.Sorted(slices.Values(tc.in))
			for i := range want {
				if c.Routes[i].Name != want[i] || c.Services[i].Name != want[i] {
					t.Fatalf("Sort(%v): routes %v, services %v", tc.in, c.Routes, c.Services)
				}
			}
		})
	}
}

// TestRoutesInOrderAgreesWithNames: for random edits of a list in order
// (routes added, removed, replaced with a new one of the same or another
// name, moved, repeated, unnamed), RoutesInOrder says what comparing every
// name says, and SortFrom leaves the list as Sort does.
func TestRoutesInOrderAgreesWithNames(t *testing.T) {
	plain := func(routes []*Route) bool {
		for i, r := range routes {
			if r.Name == "" || i > 0 && routes[i-1].Name >= r.Name {
				return false
			}
		}
		return true
	}
	rng := rand.New(rand.NewPCG(12, 6))
	for step := range 3000 {
		var prev []*Route
		for i := range rng.IntN(300) {
			prev = append(prev, &Route{Name: fmt.Sprintf("r%04d", 3*i)})
		}
		routes := slices.Clone(prev)
		// Many edits (more than RoutesInOrder's searches) now and then.
		edits := 1 + rng.IntN(4)
		if step%10 == 0 {
			edits = 100 + rng.IntN(200)
		}
		for range edits {
			n := len(routes)
			at := 0
			if n > 0 {
				at = rng.IntN(n)
			}
			switch op := rng.IntN(8); {
			case op == 0 || n == 0: // a new route, usually where it belongs
				name := fmt.Sprintf("r%04d", rng.IntN(1000))
				i, _ := slices.BinarySearchFunc(routes, name, func(r *Route, n string) int { return cmpStrings(r.Name, n) })
				if rng.IntN(4) == 0 {
					i = rng.IntN(n + 1)
				}
				routes = slices.Insert(routes, i, &Route{Name: name})
			case op == 1:
				routes = slices.Delete(routes, at, at+1)
			case op == 2: // changed: a new Route of the same name
				routes[at] = &Route{Name: routes[at].Name}
			case op == 3: // renamed in place
				routes[at] = &Route{Name: fmt.Sprintf("r%04d", rng.IntN(1000))}
			case op == 4: // moved
				r := routes[at]
				routes = slices.Insert(slices.Delete(routes, at, at+1), rng.IntN(n), r)
			case op == 5: // the same route twice
				routes = slices.Insert(routes, at, routes[at])
			case op == 6:
				routes[at] = &Route{}
			default: // two swapped
				j := rng.IntN(n)
				routes[at], routes[j] = routes[j], routes[at]
			}
		}
		if got, want := RoutesInOrder(routes, prev), plain(routes); got != want {
			t.Fatalf("step %d: RoutesInOrder = %v, names say %v", step, got, want)
		}
		if got, want := RoutesInOrder(routes, nil), plain(routes); got != want {
			t.Fatalf("step %d: RoutesInOrder without prev = %v, names say %v", step, got, want)
		}
		a, b := Config{Routes: slices.Clone(routes)}, Config{Routes: slices.Clone(routes)}
		a.SortFrom(&Config{Routes: prev})
		b.Sort()
		if !slices.Equal(a.Routes, b.Routes) {
			t.Fatalf("step %d: SortFrom and Sort differ", step)
		}
	}
}

func cmpStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// BenchmarkRoutesInOrder is the control plane's order check after a write
// of one route into 100,000 (compare BenchmarkSortSorted).
func BenchmarkRoutesInOrder(b *testing.B) {
	prev := make([]*Route, 100000)
	for i := range prev {
		prev[i] = &Route{Name: fmt.Sprintf("route-%06d", 2*i)}
	}
	next := slices.Insert(slices.Clone(prev), 50000, &Route{Name: "route-099999"})
	b.ReportAllocs()
	for b.Loop() {
		if !RoutesInOrder(next, prev) {
			b.Fatal("not in order")
		}
	}
}

// BenchmarkSortSorted is the control plane's Sort after a write: 100,000
// routes already in order.
func BenchmarkSortSorted(b *testing.B) {
	c := Config{Routes: make([]*Route, 100000)}
	for i := range c.Routes {
		c.Routes[i] = &Route{Name: fmt.Sprintf("route-%06d", i)}
	}
	b.ReportAllocs()
	for b.Loop() {
		c.Sort()
	}
}
