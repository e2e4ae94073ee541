package config

import (
	"fmt"
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
